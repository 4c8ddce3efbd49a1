// ref.c — instantiates the reference kernels (ref_tmpl.h) for float32 and
// float64, plus the shape helpers the fast kernels share.
#include "ref.h"
#include <math.h>
#include <string.h>

MulBcast mul_bcast_plan(const Tensor *x, const Tensor *s) {
    int64_t C = x->shape[x->ndim - 1], N = x->ndim >= 2 ? x->shape[0] : 1, n = tensor_numel(x);
    int64_t P = n / (N * C);
    MulBcast b = { N, P, C, 0, 0, 0 };
    if (s->ndim == 1) {                                   // (C)
        CX_ASSERT(s->shape[0] == C, "mul: (C) scale has %lld, x has C=%lld", (long long)s->shape[0], (long long)C);
        b.sc = 1;
    } else if (s->ndim == 2 && x->ndim > 2) {             // (N, C)
        CX_ASSERT(s->shape[0] == N && s->shape[1] == C, "mul: (N,C) scale shape");
        b.sn = C; b.sc = 1;
    } else if (tensor_numel(s) == n) {                    // element-wise
        b.sn = P * C; b.sp = C; b.sc = 1;
    } else if (s->shape[s->ndim - 1] == 1 && tensor_numel(s) == P) {   // (1, H, W, 1)
        b.sn = 0; b.sp = 1;
    } else {                                              // (N, H, W, 1)
        CX_ASSERT(s->shape[s->ndim - 1] == 1 && tensor_numel(s) == N * P, "mul: unsupported broadcast of s");
        b.sn = P; b.sp = 1;
    }
    return b;
}

#define real float
#define SFX f32
#include "ref_tmpl.h"
#undef real
#undef SFX

#define real double
#define SFX f64
#include "ref_tmpl.h"
#undef real
#undef SFX
