// ref.c — instantiates the reference kernels (ref_tmpl.h) for float32 and
// float64, fills the reference backend's two tables with them, and holds the
// shape helpers the fast kernels share.
#include "ref.h"
#include "ops/backend.h"
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

// The reference backend's tables: the ops whose reference column in ops_list.h is
// REF. The others' slots stay empty: ops.c runs the CPU kernel there (CPU) or
// composes the op from others (NONE).
#define REF_SLOT_REF(name, S) .name = ref_##name##_##S,
#define REF_SLOT_CPU(name, S)
#define REF_SLOT_NONE(name, S)
const OpsBackend ops_ref_f32 = {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) REF_SLOT_##ref(name, f32)
#include "ops/ops_list.h"
#undef OP
};
const OpsBackend ops_ref_f64 = {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) REF_SLOT_##ref(name, f64)
#include "ops/ops_list.h"
#undef OP
};
