// test_ops.c — the op test table: one entry per op and shape set (ggml's
// test-backend-ops idea). Every entry is two tests. op_<case> (CPU):
//   1. PyTorch golden: the float64 reference path against outputs and gradients
//      that tools/make_op_goldens.py computed with PyTorch in float64
//      (tests/fixtures/ops_golden.safetensors, which also holds the inputs and
//      therefore every shape), and the float32 fast path against the same;
//   2. central finite differences of loss = Σ out·dout in float64 through the
//      reference kernels (sampled elements of every differentiable input);
//   3. float32 fast kernels against float32 reference kernels.
// op_<case>_cuda (the CUDA column; skipped without a GPU):
//   4. float32 on the GPU against the float32 reference kernels (tolerance
//      `fast`, as the CPU's) and the float64 golden (`g32`);
//   5. bf16 activations on the GPU (parameters, statistics and the inputs named
//      in f32_in stay float32) against the float32 reference, tolerance `b16`.
// Errors are max|a−b| / max|b| (test_rel_err); tolerances are per entry:
//   g64 — float64 vs golden, fd — finite differences, fast — fast vs reference,
//   g32 — float32 fast vs float64 golden, b16 — bf16 GPU vs float32 reference.
// Entries register themselves (OPCASE); op_table_covers_goldens checks that every
// golden case has one, op_table_covers_every_op that every op of ops_list.h runs
// in one. Ops with no gradient (fill, the optimizer) have forward-only entries.
//
// Filters (the runner's name filter): `camoxpert_tests op_` runs every entry and
// the table's own checks, `op_bn` the entries whose case name has "bn", `_cuda`
// only the CUDA column, `op_ -_cuda` only the CPU backends.
// Adding an op: a case in tools/make_op_goldens.py (appended last), regenerate the
// file, an OPCASE entry here (docs/ARCHITECTURE.md).
#include "test.h"
#include "ops/ops.h"
#include "ops/backend.h"
#include "ops/cpu/cpu.h"
#if HAVE_CUDA
#include "ops/cuda/cuda.h"
#include <dlfcn.h>
#include <unistd.h>
#endif
#include <string.h>

#define GOLDEN_PATH "tests/fixtures/ops_golden.safetensors"
#define MAXT 12   // inputs or outputs of one entry at most (cod_loss: 8 maps and 4 masks)

typedef struct OpTest OpTest;
// fwd: outputs from inputs (must not modify inputs). bwd: adds gradients of
// Σ out·dout into din[i] for every input whose din[i].data is set.
typedef void (*op_fwd_fn)(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in);
typedef void (*op_bwd_fn)(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in);
struct OpTest {
    const char *name;   // case name in the golden file
    op_fwd_fn fwd;
    op_bwd_fn bwd;
    ConvArgs conv;
    int k;              // topk k, softmax/l2norm axis split, ...
    double f[3];        // scalar parameters (scales, bounds, eps)
    double g64, fd, fast, g32, b16;
    unsigned f32_in;    // bf16 column: inputs that stay float32 (parameters, statistics: bit i = input i)
    unsigned f32_out;   // bf16 column: outputs that stay float32 (running statistics)
    unsigned f32_in_always, f32_out_always;   // float32 in every run, the float64 one too (AdamW's moments)
    int no_bf16;        // no bf16 column (topk: routing runs in float32)
    int no_fd;          // 1: inputs sit on kinks on purpose (clamp boundaries)
    int ties;           // topk with ties: PyTorch's order among equal values is
                        // unspecified (CPU topk uses an unstable partial sort), so
                        // indices are checked to point at the golden values in
                        // ascending order within each run of equal values (ops.h).
};

#define D(i) (din[i].data ? &din[i] : NULL)

// ---- forward/backward adapters, one pair per op ----------------------------------------------
static void conv_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    int has_b = in[2].data != NULL;
    conv2d_forward(c, &out[0], &in[0], &in[1], has_b ? &in[2] : NULL, t->conv);
}
static void conv_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    conv2d_backward(c, D(0), D(1), D(2), &dout[0], &in[0], &in[1], t->conv);
}
static void linear_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    linear_forward(c, &out[0], &in[0], &in[1], in[2].data ? &in[2] : NULL);
}
static void linear_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    linear_backward(c, D(0), D(1), D(2), &dout[0], &in[0], &in[1]);
}
// gemm_nt: C (b,M,N) = α·A (b,M,K)·B (b,N,K)ᵀ. dA += α·dC·B, dB += α·dCᵀ·A. The
// batch is split into two levels (b = 2 × b/2 when even) to exercise both strides.
static GemmArgs gemm_levels(GemmArgs g, int b, int64_t sa, int64_t sb, int64_t sc) {
    int outer = b % 2 == 0 ? 2 : 1, inner = b / outer;
    g.nb1 = outer, g.nb2 = inner;
    g.sa1 = sa * inner, g.sb1 = sb * inner, g.sc1 = sc * inner;
    g.sa2 = sa, g.sb2 = sb, g.sc2 = sc;
    return g;
}
static void gemm_nt_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    int b = (int)in[0].shape[0], M = (int)in[0].shape[1], K = (int)in[0].shape[2], N = (int)in[1].shape[1];
    GemmArgs g = gemm_levels((GemmArgs){ .tb = 1, .M = M, .N = N, .K = K, .alpha = t->f[0], .lda = K, .ldb = K, .ldc = N },
                             b, M * K, N * K, M * N);
    gemm_batched(c, &out[0], &in[0], &in[1], &g);
}
static void gemm_nt_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    int b = (int)in[0].shape[0], M = (int)in[0].shape[1], K = (int)in[0].shape[2], N = (int)in[1].shape[1];
    GemmArgs g1 = gemm_levels((GemmArgs){ .M = M, .N = K, .K = N, .alpha = t->f[0], .beta = 1, .lda = N, .ldb = K, .ldc = K },
                              b, M * N, N * K, M * K);
    gemm_batched(c, &din[0], &dout[0], &in[1], &g1);
    GemmArgs g2 = gemm_levels((GemmArgs){ .ta = 1, .M = N, .N = K, .K = M, .alpha = t->f[0], .beta = 1, .lda = N, .ldb = K,
                                          .ldc = K }, b, M * N, M * K, N * K);
    gemm_batched(c, &din[1], &dout[0], &in[0], &g2);
}
// gemm_tn_beta: C = α·A (b,K,M)ᵀ·B (b,K,N) + β·C0. dA += α·B·dCᵀ, dB += α·A·dC, dC0 += β·dC.
static void gemm_tn_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    int b = (int)in[0].shape[0], K = (int)in[0].shape[1], M = (int)in[0].shape[2], N = (int)in[1].shape[2];
    copy(c, &out[0], &in[2]);
    GemmArgs g = gemm_levels((GemmArgs){ .ta = 1, .M = M, .N = N, .K = K, .alpha = t->f[0], .beta = t->f[1], .lda = M,
                                         .ldb = N, .ldc = N }, b, K * M, K * N, M * N);
    gemm_batched(c, &out[0], &in[0], &in[1], &g);
}
static void gemm_tn_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    int b = (int)in[0].shape[0], K = (int)in[0].shape[1], M = (int)in[0].shape[2], N = (int)in[1].shape[2];
    GemmArgs g1 = gemm_levels((GemmArgs){ .tb = 1, .M = K, .N = M, .K = N, .alpha = t->f[0], .beta = 1, .lda = N, .ldb = N,
                                          .ldc = M }, b, K * N, M * N, K * M);
    gemm_batched(c, &din[0], &in[1], &dout[0], &g1);
    GemmArgs g2 = gemm_levels((GemmArgs){ .M = K, .N = N, .K = M, .alpha = t->f[0], .beta = 1, .lda = M, .ldb = N, .ldc = N },
                              b, K * M, M * N, K * N);
    gemm_batched(c, &din[1], &in[0], &dout[0], &g2);
    axpy(c, &din[2], t->f[1], &dout[0]);
}
// Statistics are float32 beside bf16 data (float64 in a float64 run).
static cx_dtype stat_dt(const Tensor *x) { return x->dtype == DT_F64 ? DT_F64 : DT_F32; }
// batchnorm: inputs x, gamma, beta, running_mean, running_var; training
// outputs y and the updated running statistics. relu: through the fused
// batchnorm_relu op (its backward takes the output y).
static void bn_any_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in, int relu) {
    int train = t->k;
    ArenaMark m = arena_mark(c->scratch);
    Tensor sm = tensor_like(c->scratch, &in[3]), si = tensor_like(c->scratch, &in[3]);
    if (train) {
        copy(c, &out[1], &in[3]);
        copy(c, &out[2], &in[4]);
    }
    (relu ? batchnorm_relu_forward : batchnorm_forward)(c, &out[0], &sm, &si, &in[0], &in[1], &in[2],
                                                        train ? &out[1] : &in[3], train ? &out[2] : &in[4], train, 0.1,
                                                        1e-5);
    arena_release(c->scratch, m);
}
static void bn_any_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, Tensor *in, int relu) {
    int train = t->k;
    ArenaMark m = arena_mark(c->scratch);
    Tensor sm = tensor_like(c->scratch, &in[3]), si = tensor_like(c->scratch, &in[3]), y = tensor_like(c->scratch, &in[0]);
    Tensor rm = tensor_like(c->scratch, &in[3]), rv = tensor_like(c->scratch, &in[3]);
    copy(c, &rm, &in[3]);
    copy(c, &rv, &in[4]);
    if (relu) {
        batchnorm_relu_forward(c, &y, &sm, &si, &in[0], &in[1], &in[2], &rm, &rv, train, 0.1, 1e-5);
        batchnorm_relu_backward(c, D(0), D(1), D(2), &dout[0], &y, &in[0], &sm, &si, &in[1], train);
    } else {
        batchnorm_forward(c, &y, &sm, &si, &in[0], &in[1], &in[2], &rm, &rv, train, 0.1, 1e-5);
        batchnorm_backward(c, D(0), D(1), D(2), &dout[0], &in[0], &sm, &si, &in[1], train);
    }
    arena_release(c->scratch, m);
}
static void bn_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { bn_any_fwd(c, t, out, in, 0); }
static void bn_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    bn_any_bwd(c, t, din, dout, in, 0);
}
static void bn_relu_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { bn_any_fwd(c, t, out, in, 1); }
static void bn_relu_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    bn_any_bwd(c, t, din, dout, in, 1);
}
static Tensor rows_stat(Arena *a, const Tensor *x) {
    int64_t n = tensor_numel(x) / x->shape[x->ndim - 1];
    return tensor_new(a, stat_dt(x), 1, &n);
}
static void ln_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor sm = rows_stat(c->scratch, &in[0]), sr = rows_stat(c->scratch, &in[0]);
    layernorm_forward(c, &out[0], &sm, &sr, &in[0], &in[1], &in[2], t->f[0]);
    arena_release(c->scratch, m);
}
static void ln_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor sm = rows_stat(c->scratch, &in[0]), sr = rows_stat(c->scratch, &in[0]), y = tensor_like(c->scratch, &in[0]);
    layernorm_forward(c, &y, &sm, &sr, &in[0], &in[1], &in[2], t->f[0]);
    layernorm_backward(c, D(0), D(1), D(2), &dout[0], &in[0], &sm, &sr, &in[1]);
    arena_release(c->scratch, m);
}
#define UNARY(op, bwd_arg) \
    static void op##_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { op##_forward(c, &out[0], &in[0]); } \
    static void op##_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) { \
        op##_backward(c, &din[0], &dout[0], bwd_arg); }
UNARY(gelu, &in[0])
UNARY(relu, &out[0])
UNARY(sigmoid, &out[0])
UNARY(softplus, &in[0])
static void clamp_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { clamp_forward(c, &out[0], &in[0], t->f[0], t->f[1]); }
static void clamp_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    clamp_backward(c, &din[0], &dout[0], &in[0], t->f[0], t->f[1]);
}
static void add_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { add_forward(c, &out[0], &in[0], &in[1]); }
static void add_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    axpy(c, &din[0], 1, &dout[0]);
    axpy(c, &din[1], 1, &dout[0]);
}
// axpy: out = in0 + α·in1, exercised in place on a copy of in0.
static void axpy_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[0]);
    axpy(c, &out[0], t->f[0], &in[1]);
}
static void axpy_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    axpy(c, &din[0], 1, &dout[0]);
    axpy(c, &din[1], t->f[0], &dout[0]);
}
static void scale_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[0]);
    scale_inplace(c, &out[0], t->f[0]);
}
static void scale_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    axpy(c, &din[0], t->f[0], &dout[0]);
}
static void mul_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { mul_forward(c, &out[0], &in[0], &in[1]); }
static void mul_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    mul_backward(c, D(0), D(1), &dout[0], &in[0], &in[1]);
}
static void resize_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    resize_bilinear_forward(c, &out[0], &in[0], t->f[0], t->f[1]);
}
static void resize_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    resize_bilinear_backward(c, &din[0], &dout[0], t->f[0], t->f[1]);
}
static void avgpool_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { avgpool_global_forward(c, &out[0], &in[0]); }
static void avgpool_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    avgpool_global_backward(c, &din[0], &dout[0]);
}
static void concat_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    const Tensor *xs[3] = { &in[0], &in[1], &in[2] };
    concat_forward(c, &out[0], xs, 3);
}
static void concat_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    Tensor *dxs[3] = { D(0), D(1), D(2) };
    concat_backward(c, dxs, 3, &dout[0]);
}
// out = in0 with channels [2,5) += in1[..., 1:4]; backward is two channel copies.
static void chcopy_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[0]);
    channels_copy(c, &out[0], 2, &in[1], 1, 3, 1);
}
static void chcopy_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    axpy(c, &din[0], 1, &dout[0]);
    channels_copy(c, &din[1], 1, &dout[0], 2, 3, 1);
}
// Axis views: x (outer, L, inner) with L = shape[k], outer/inner the products around it.
static void axis_split(const Tensor *x, int k, int64_t *outer, int64_t *L, int64_t *inner) {
    *outer = 1; *inner = 1; *L = x->shape[k];
    for (int i = 0; i < k; i++) *outer *= x->shape[i];
    for (int i = k + 1; i < x->ndim; i++) *inner *= x->shape[i];
}
static void softmax_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    int64_t o, L, n;
    axis_split(&in[0], t->k, &o, &L, &n);
    softmax_forward(c, &out[0], &in[0], o, L, n);
}
static void softmax_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    int64_t o, L, n;
    axis_split(&in[0], t->k, &o, &L, &n);
    softmax_backward(c, &din[0], &dout[0], &out[0], o, L, n);
}
static void l2norm_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    int64_t o, L, n;
    axis_split(&in[0], t->k, &o, &L, &n);
    ArenaMark m = arena_mark(c->scratch);
    int64_t ns = o * n;
    Tensor nrm = tensor_new(c->scratch, stat_dt(&in[0]), 1, &ns);
    l2norm_forward(c, &out[0], &nrm, &in[0], o, L, n, t->f[0]);
    arena_release(c->scratch, m);
}
static void l2norm_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    int64_t o, L, n;
    axis_split(&in[0], t->k, &o, &L, &n);
    ArenaMark m = arena_mark(c->scratch);
    int64_t ns = o * n;
    Tensor nrm = tensor_new(c->scratch, stat_dt(&in[0]), 1, &ns), y = tensor_like(c->scratch, &in[0]);
    l2norm_forward(c, &y, &nrm, &in[0], o, L, n, t->f[0]);
    l2norm_backward(c, &din[0], &dout[0], &in[0], &nrm, o, L, n, t->f[0]);
    arena_release(c->scratch, m);
}
static void topk_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { topk_rows(c, &out[1], &out[0], &in[0], t->k); }
// maxnorm: y = x / (max + 1e-8), the maximum kept in a statistics tensor.
static void maxnorm_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor mx = tensor_new(c->scratch, stat_dt(&in[0]), 1, (int64_t[]){ 1 });
    maxnorm_forward(c, &out[0], &mx, &in[0], 1e-8);
    arena_release(c->scratch, m);
}
static void maxnorm_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor mx = tensor_new(c->scratch, stat_dt(&in[0]), 1, (int64_t[]){ 1 }), y = tensor_like(c->scratch, &in[0]);
    maxnorm_forward(c, &y, &mx, &in[0], 1e-8);
    maxnorm_backward(c, &din[0], &dout[0], &in[0], &mx, 1e-8);
    arena_release(c->scratch, m);
}
// rows_add_bcast: out = in0 + in1 broadcast over rows; backward: axpy and rows_sum.
static void addb_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[0]);
    rows_add_bcast(c, &out[0], &in[1]);
}
static void addb_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    axpy(c, &din[0], 1, &dout[0]);
    rows_sum(c, &din[1], &dout[0]);
}
// gather's backward is a scatter-add of the output gradient.
static void gather_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { rows_gather(c, &out[0], &in[0], &in[1]); }
static void gather_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    rows_scatter_add(c, &din[0], &dout[0], &in[1], NULL);
}
// scatter: out = in0 (dst) + index_add(in2 (idx), in3 (w) · in1 (src)).
static void scatter_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[0]);
    rows_scatter_add(c, &out[0], &in[1], &in[2], in[3].data ? &in[3] : NULL);
}
static void scatter_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    axpy(c, &din[0], 1, &dout[0]);
    rows_scatter_add_backward(c, D(1), in[3].data ? D(3) : NULL, &dout[0], &in[1], &in[2], in[3].data ? &in[3] : NULL);
}

// fill: out = in0 overwritten everywhere with f[0] (no gradient).
static void fill_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[0]);
    fill(c, &out[0], t->f[0]);
}
// copy: out = in0, converting where the dtypes differ (the bf16 column: float32 into bf16);
// backward: dout copied into a tensor of din's dtype, then added.
static void copy_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) { copy(c, &out[0], &in[0]); }
static void copy_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor g = tensor_like(c->scratch, &din[0]);
    copy(c, &g, &dout[0]);
    axpy(c, &din[0], 1, &g);
    arena_release(c->scratch, m);
}
// rows_sum: out = in1 + Σ over rows of in0; backward: rows_add_bcast and axpy.
static void rsum_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[1]);
    rows_sum(c, &out[0], &in[0]);
}
static void rsum_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    rows_add_bcast(c, &din[0], &dout[0]);
    axpy(c, &din[1], 1, &dout[0]);
}
// rows_gather_sum: out = in0 (dst) + the gather-sum of in1 (src) over in2 (ptr), in3 (list),
// in4 (w). It has no backward op; the gradient is written with the scatter ops, in5 giving
// the destination row of each list entry: dsrc[list[j]] += w[j]·dout[row[j]] and
// dw[j] += <dout[row[j]], src[list[j]]>.
static void gsum_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    copy(c, &out[0], &in[0]);
    rows_gather_sum(c, &out[0], &in[1], &in[2], &in[3], &in[4]);
}
static void gsum_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    axpy(c, &din[0], 1, &dout[0]);
    Tensor rows = tensor_like(c->scratch, &in[1]);   // (n, ...): row j of dout, or src[list[j]]
    if (D(1)) {
        rows_gather(c, &rows, &dout[0], &in[5]);
        rows_scatter_add(c, &din[1], &rows, &in[3], &in[4]);
    }
    if (D(4)) {
        rows_gather(c, &rows, &in[1], &in[3]);
        rows_scatter_add_backward(c, NULL, &din[4], &dout[0], &rows, &in[5], &in[4]);
    }
    arena_release(c->scratch, m);
}
// cod_loss: in0..7 the maps (pred, fg, search, unc, refine0, deep0..2), in8 the mask, in9..11
// the deep masks; out0 the terms. The weights are train/loss.c's defaults, as in the golden.
static CodLossIn closs_in(const Tensor *in) {
    CodLossIn ci = { .pred = &in[0], .fg = &in[1], .search = &in[2], .unc = &in[3], .refine0 = &in[4],
                     .deep = { &in[5], &in[6], &in[7] }, .mask = &in[8], .deep_mask = { &in[9], &in[10], &in[11] },
                     .w = { 2.0, 1.5, 1.0, 1.5, 0.3, 0.8, 0.5, 0.4, 0.3 } };
    return ci;
}
static void closs_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    CodLossIn ci = closs_in(in);
    cod_loss(c, &out[0], NULL, &ci);
}
static void closs_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor terms = tensor_like(c->scratch, &out[0]);
    CodLossIn ci = closs_in(in);
    CodLossGrad g = { D(0), D(1), D(2), D(3), D(4), { D(5), D(6), D(7) } };
    cod_loss(c, &terms, &g, &ci);
    arena_release(c->scratch, m);
}
// adamw_update on a table of two segments, [0, 12) with weight decay and [12, 30) without:
// lr f[0], weight decay f[1], step k; in0..3 param, m, v, grad, in4 the clipping scale (if
// any); out0..2 the updated param, m and v.
static void adamw_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    const double lr = t->f[0], b1 = 0.9, b2 = 0.999, step = lr / (1 - pow(b1, t->k)), bc2 = sqrt(1 - pow(b2, t->k));
    const AdamSeg seg[2] = { { 0, 12, step, 1 - lr * t->f[1], bc2 }, { 12, 18, step, 1, bc2 } };
    for (int i = 0; i < 3; i++) copy(c, &out[i], &in[i]);
    adamw_update(c, &out[0], &out[1], &out[2], &in[3], in[4].data ? &in[4] : NULL, seg, 2, b1, b2, 1e-8);
}
// grad_norm_clip over [0, 10) and [14, 28) with max_norm f[0].
static void gnorm_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    const AdamSeg seg[2] = { { .offset = 0, .numel = 10 }, { .offset = 14, .numel = 14 } };
    grad_norm_clip(c, &out[0], &in[0], seg, 2, t->f[0]);
}
// ema_blend of in1 into a copy of in0: [0, 10) decay 0.9, [10, 16) copied, [18, 24) decay 0.5.
static void ema_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    const EmaSeg seg[3] = { { 0, 10, 0, 0.9 }, { 10, 6, 1, 0 }, { 18, 6, 0, 0.5 } };
    copy(c, &out[0], &in[0]);
    ema_blend(c, &out[0], &in[1], seg, 3);
}

// ---- the runner -------------------------------------------------------------------------------
typedef struct {
    int nin, nout, ngout;
    Tensor in[MAXT], out[MAXT], dout[MAXT], din[MAXT];
    const StEntry *gin[MAXT], *gout[MAXT], *gdout[MAXT], *ggrad[MAXT];
} CaseData;

static const StEntry *golden(const StFile *f, const char *name, const char *what, int i) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s%d", name, what, i);
    return st_find(f, key);
}

static Tensor load_as(Arena *a, const StFile *f, const StEntry *e, cx_dtype dt) {
    Tensor t = tensor_new(a, e->dtype == DT_I32 ? DT_I32 : dt, e->ndim, e->shape);
    cx_status st = st_entry_read(f, e, &t);
    CX_ASSERT(st == CX_OK, "%s", cx_errmsg());
    return t;
}

// Loads inputs (as dt), allocates outputs, zeroed input gradients and douts.
static void case_setup(CaseData *d, Arena *a, const StFile *f, const OpTest *t, cx_dtype dt) {
    memset(d, 0, sizeof *d);
    while (d->nin < MAXT && (d->gin[d->nin] = golden(f, t->name, "in", d->nin))) {
        d->in[d->nin] = load_as(a, f, d->gin[d->nin], (t->f32_in_always >> d->nin) & 1 ? DT_F32 : dt);
        if ((d->ggrad[d->nin] = golden(f, t->name, "grad", d->nin))) d->din[d->nin] = tensor_zeros_like(a, &d->in[d->nin]);
        d->nin++;
    }
    while (d->nout < MAXT && (d->gout[d->nout] = golden(f, t->name, "out", d->nout))) {
        const StEntry *e = d->gout[d->nout];
        cx_dtype odt = e->dtype == DT_I32 ? DT_I32 : (t->f32_out_always >> d->nout) & 1 ? DT_F32 : dt;
        d->out[d->nout] = tensor_zeros(a, odt, e->ndim, e->shape);
        d->nout++;
    }
    while (d->ngout < d->nout && (d->gdout[d->ngout] = golden(f, t->name, "dout", d->ngout))) {
        d->dout[d->ngout] = load_as(a, f, d->gdout[d->ngout], dt);
        d->ngout++;
    }
}

static double case_loss(const CaseData *d) {
    double s = 0;
    for (int o = 0; o < d->ngout; o++)
        for (int64_t i = 0; i < tensor_numel(&d->out[o]); i++) s += tensor_get(&d->out[o], i) * tensor_get(&d->dout[o], i);
    return s;
}

static void check_err(const char *what, const char *tname, int i, const Tensor *a, const Tensor *b, double tol) {
    double e = test_rel_err(a, b, 1e-30);
    if (a->dtype == DT_I32) tol = 0;
    CHECKF(e <= tol, "%s: %s%d rel err %.3g > tol %.3g", what, tname, i, e, tol);
}

// idx (R,k) points at val (R,k) in x (R,L); equal values come in ascending index order.
static void check_topk_ties(const Tensor *idx, const Tensor *val, const Tensor *x) {
    int64_t R = idx->shape[0], k = idx->shape[1], L = x->shape[1];
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < k; j++) {
            int32_t i = tensor_i32(idx)[r * k + j];
            REQUIRE(i >= 0 && i < L);
            CHECKF(tensor_get(x, r * L + i) == tensor_get(val, r * k + j), "topk: idx[%lld][%lld] = %d is not its value",
                   (long long)r, (long long)j, i);
            if (j > 0 && tensor_get(val, r * k + j) == tensor_get(val, r * k + j - 1))
                CHECKF(i > tensor_i32(idx)[r * k + j - 1], "topk: tie at row %lld not in ascending index order", (long long)r);
        }
}

static void op_case_run(const OpTest *t) {
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    OpCtx ctx = { .backend = OPS_REF, .scratch = &scratch };
    CaseData d;
    case_setup(&d, &a, &f, t, DT_F64);
    REQUIRE(d.nin > 0 && d.nout > 0);

    // 1. float64 reference vs the PyTorch golden.
    t->fwd(&ctx, t, d.out, d.in);
    for (int o = 0; o < d.nout; o++) {
        Tensor g = load_as(&a, &f, d.gout[o], DT_F64);
        if (t->ties && d.out[o].dtype == DT_I32) check_topk_ties(&d.out[o], &d.out[0], &d.in[0]);
        else check_err("golden f64", "out", o, &d.out[o], &g, t->g64);
    }
    if (t->bwd && d.ngout) {
        t->bwd(&ctx, t, d.din, d.dout, d.out, d.in);
        for (int i = 0; i < d.nin; i++) {
            if (!d.ggrad[i]) continue;
            Tensor g = load_as(&a, &f, d.ggrad[i], DT_F64);
            check_err("golden f64", "grad", i, &d.din[i], &g, t->g64);
        }
    }

    // 2. Central finite differences (float64, reference kernels), up to 40
    //    evenly spread elements per differentiable input.
    if (t->bwd && d.ngout && !t->no_fd) {
        for (int i = 0; i < d.nin; i++) {
            if (!d.ggrad[i]) continue;
            int64_t n = tensor_numel(&d.in[i]), step = n > 40 ? n / 40 : 1;
            double md = 0, mg = 0;
            for (int64_t j = 0; j < n; j++) mg = fmax(mg, fabs(tensor_get(&d.din[i], j)));
            for (int64_t j = 0; j < n; j += step) {
                double x0 = tensor_get(&d.in[i], j), h = 1e-5 * fmax(1.0, fabs(x0)), lp, lm;
                tensor_set(&d.in[i], j, x0 + h);
                t->fwd(&ctx, t, d.out, d.in);
                lp = case_loss(&d);
                tensor_set(&d.in[i], j, x0 - h);
                t->fwd(&ctx, t, d.out, d.in);
                lm = case_loss(&d);
                tensor_set(&d.in[i], j, x0);
                md = fmax(md, fabs((lp - lm) / (2 * h) - tensor_get(&d.din[i], j)));
            }
            double e = mg > 0 ? md / mg : md;
            CHECKF(e <= t->fd, "finite differences: grad%d rel err %.3g > tol %.3g", i, e, t->fd);
        }
    }

    // 3. float32: fast vs reference, and fast vs the golden. Dense convolutions
    //    and GEMMs run every implementation the dispatchers may choose (conv.c,
    //    gemm.c).
    CaseData r;
    case_setup(&r, &a, &f, t, DT_F32);
    t->fwd(&ctx, t, r.out, r.in);
    if (t->bwd && r.ngout) t->bwd(&ctx, t, r.din, r.dout, r.out, r.in);
    ctx.backend = OPS_CPU;
    CpuImpl impls[] = { CPU_IMPL_OWN, CPU_IMPL_DNNL };
    int is_conv = t->fwd == conv_fwd, is_gemm = t->fwd == linear_fwd || t->fwd == gemm_nt_fwd || t->fwd == gemm_tn_fwd;
    int nimpl = is_conv || is_gemm ? 1 + HAVE_DNNL : 1;
    for (int im = 0; im < nimpl; im++) {
        cpu_conv_impl = is_conv ? impls[im] : CPU_IMPL_AUTO;
        cpu_gemm_impl = is_gemm ? impls[im] : CPU_IMPL_AUTO;
        CaseData q;
        case_setup(&q, &a, &f, t, DT_F32);
        t->fwd(&ctx, t, q.out, q.in);
        if (t->bwd && q.ngout) t->bwd(&ctx, t, q.din, q.dout, q.out, q.in);
        for (int o = 0; o < d.nout; o++) {
            Tensor g = load_as(&a, &f, d.gout[o], DT_F64);
            check_err("fast vs ref f32", "out", o, &q.out[o], &r.out[o], t->fast);
            if (t->ties && q.out[o].dtype == DT_I32) check_topk_ties(&q.out[o], &q.out[0], &q.in[0]);
            else check_err("golden f32 fast", "out", o, &q.out[o], &g, t->g32);
        }
        for (int i = 0; i < d.nin && t->bwd && d.ngout; i++) {
            if (!d.ggrad[i]) continue;
            Tensor g = load_as(&a, &f, d.ggrad[i], DT_F64);
            check_err("fast vs ref f32", "grad", i, &q.din[i], &r.din[i], t->fast);
            check_err("golden f32 fast", "grad", i, &q.din[i], &g, t->g32);
        }
    }
    cpu_conv_impl = cpu_gemm_impl = CPU_IMPL_AUTO;
    CHECKF(scratch.used == 0, "scratch arena not released: %zu bytes", scratch.used);
    arena_free(&a);
    arena_free(&scratch);
    st_close(&f);
}

// ---- the CUDA column ------------------------------------------------------------------------------
// A host tensor on the GPU in dtype dt (float tensors converted there; I32 as is).
static Tensor to_gpu(OpCtx *g, Arena *dev, const Tensor *h, cx_dtype dt) {
    if (!h->data) return (Tensor){ 0 };
    Tensor up = tensor_new(dev, h->dtype, h->ndim, h->shape);
    tensor_upload(&up, h);
    if (h->dtype == DT_I32 || dt == h->dtype) return up;
    Tensor t = tensor_new(dev, dt, h->ndim, h->shape);
    copy(g, &t, &up);
    return t;
}

// A GPU tensor back on the host as float32 (I32 as is).
static Tensor from_gpu(OpCtx *g, Arena *dev, Arena *host, const Tensor *d) {
    Tensor f = *d;
    if (d->dtype != DT_F32 && d->dtype != DT_I32) {
        f = tensor_new(dev, DT_F32, d->ndim, d->shape);
        copy(g, &f, d);
    }
    Tensor h = tensor_new(host, f.dtype, d->ndim, d->shape);
    tensor_download(&h, &f);
    return h;
}

// One GPU run of a case with float tensors in `act` (F32 or BF16) except the
// inputs/outputs the entry keeps in float32; results downloaded as float32 into q.
static void gpu_case(OpCtx *g, Arena *dev, Arena *host, const OpTest *t, const CaseData *h, cx_dtype act, CaseData *q) {
    CaseData d;
    memset(&d, 0, sizeof d);
    d.nin = h->nin, d.nout = h->nout, d.ngout = h->ngout;
    for (int i = 0; i < h->nin; i++) {
        cx_dtype dt = (t->f32_in >> i) & 1 ? DT_F32 : act;
        d.in[i] = to_gpu(g, dev, &h->in[i], dt);
        if (h->din[i].data) {
            d.din[i] = tensor_new(dev, d.in[i].dtype, d.in[i].ndim, d.in[i].shape);
            fill(g, &d.din[i], 0);
        }
    }
    for (int o = 0; o < h->nout; o++) {
        cx_dtype dt = h->out[o].dtype == DT_I32 ? DT_I32 : (t->f32_out >> o) & 1 ? DT_F32 : act;
        d.out[o] = tensor_new(dev, dt, h->out[o].ndim, h->out[o].shape);
        if (dt != DT_I32) fill(g, &d.out[o], 0);
        if (o < h->ngout) d.dout[o] = to_gpu(g, dev, &h->dout[o], dt);
    }
    t->fwd(g, t, d.out, d.in);
    if (t->bwd && d.ngout) t->bwd(g, t, d.din, d.dout, d.out, d.in);
    memset(q, 0, sizeof *q);
    q->nin = d.nin, q->nout = d.nout, q->ngout = d.ngout;
    for (int o = 0; o < d.nout; o++) q->out[o] = from_gpu(g, dev, host, &d.out[o]);
    for (int i = 0; i < d.nin; i++) {
        q->in[i] = from_gpu(g, dev, host, &d.in[i]);
        if (d.din[i].data) q->din[i] = from_gpu(g, dev, host, &d.din[i]);
    }
}

static void op_case_run_cuda(const OpTest *t) {
    OpCtx *g = test_cuda();
    if (!g) { test_skip("%s", test_no_gpu()); return; }
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    Arena a, scratch, dev;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    arena_init_on(&dev, "gpu test", 1 << 20, DEV_CUDA);
    OpCtx ref = { .backend = OPS_REF, .scratch = &scratch };
    // the float32 reference results
    CaseData r;
    case_setup(&r, &a, &f, t, DT_F32);
    t->fwd(&ref, t, r.out, r.in);
    if (t->bwd && r.ngout) t->bwd(&ref, t, r.din, r.dout, r.out, r.in);
    // convolutions run both implementations: cuDNN (with its direct fallback) and the direct kernels
    const int nimpl = t->fwd == conv_fwd ? 2 : 1;
    for (int run = 0; run < 2 * nimpl; run++) {
        int pass = run % 2;
        if (pass == 1 && t->no_bf16) continue;
#if HAVE_CUDA
        ops_cuda_set_conv_impl(run / 2 ? CUDA_CONV_DIRECT : CUDA_CONV_AUTO);
#endif
        cx_dtype act = pass ? DT_BF16 : DT_F32;
        const char *tag = run / 2 ? (pass ? "cuda direct bf16 vs ref f32" : "cuda direct f32 vs ref f32")
                                  : (pass ? "cuda bf16 vs ref f32" : "cuda f32 vs ref f32");
        double tol = pass ? t->b16 : t->fast, worst = 0;
        CaseData h, q;
        case_setup(&h, &a, &f, t, DT_F32);
        gpu_case(g, &dev, &a, t, &h, act, &q);
        for (int o = 0; o < r.nout; o++) {
            if (t->ties && q.out[o].dtype == DT_I32) { check_topk_ties(&q.out[o], &q.out[0], &h.in[0]); continue; }
            check_err(tag, "out", o, &q.out[o], &r.out[o], tol);
            worst = fmax(worst, test_rel_err(&q.out[o], &r.out[o], 1e-30));
            if (!pass) {
                Tensor gold = load_as(&a, &f, r.gout[o], DT_F64);
                check_err("golden f32 cuda", "out", o, &q.out[o], &gold, t->g32);
            }
        }
        for (int i = 0; i < r.nin && t->bwd && r.ngout; i++) {
            if (!r.ggrad[i]) continue;
            check_err(tag, "grad", i, &q.din[i], &r.din[i], tol);
            worst = fmax(worst, test_rel_err(&q.din[i], &r.din[i], 1e-30));
            if (!pass) {
                Tensor gold = load_as(&a, &f, r.ggrad[i], DT_F64);
                check_err("golden f32 cuda", "grad", i, &q.din[i], &gold, t->g32);
            }
        }
        printf("    %s: worst rel err %.3g (tol %.3g)\n", tag, worst, tol);
        arena_reset(&dev);
    }
#if HAVE_CUDA
    ops_cuda_set_conv_impl(CUDA_CONV_AUTO);
#endif
    CHECKF(g->scratch->used == 0, "GPU scratch arena not released: %zu bytes", g->scratch->used);
    arena_free(&dev);
    arena_free(&a);
    arena_free(&scratch);
    st_close(&f);
}

// One entry = two tests, op_<case> (CPU) and op_<case>_cuda (the CUDA column), and a
// row of op_rows, registered before main as the runner registers tests.
#define MAX_ROWS 256
static const OpTest *op_rows[MAX_ROWS];
static int n_op_rows;
static void op_row_register(const OpTest *t) {
    CX_ASSERT(n_op_rows < MAX_ROWS, "the op table has more than %d entries: raise MAX_ROWS", MAX_ROWS);
    op_rows[n_op_rows++] = t;
}
#define OPCASE(id, ...) \
    static const OpTest opcase_##id = { .name = #id, __VA_ARGS__ }; \
    __attribute__((constructor)) static void opcase_reg_##id(void) { op_row_register(&opcase_##id); } \
    TEST(op_##id) { op_case_run(&opcase_##id); } \
    TEST(op_##id##_cuda) { op_case_run_cuda(&opcase_##id); }

// Tolerance sets (g64, fd, fast, g32, b16). float64 vs PyTorch float64 differs
// only by summation order (~1e-15); 1e-12 leaves room for long sums without
// hiding a wrong index. Finite differences with h = 1e-5 are good to ~1e-9; 1e-6
// allows for curvature. float32 fast vs float32 reference (double sums) and vs
// the float64 golden: sgemm/vector float sums over at most a few hundred terms;
// the GPU's float32 column is held to the same. bf16 keeps 8 significant bits
// (rounding 2^-9 ≈ 2e-3 per value): an element-wise op rounds its input and its
// output; a GEMM or a norm sums many rounded products, and a norm's backward
// subtracts nearly equal means.
#define TOL_GEMM .g64 = 1e-12, .fd = 1e-6, .fast = 1e-5, .g32 = 1e-5, .b16 = 2e-2
#define TOL_ELEM .g64 = 1e-12, .fd = 1e-6, .fast = 1e-6, .g32 = 1e-6, .b16 = 1e-2
#define TOL_NORM .g64 = 1e-12, .fd = 1e-6, .fast = 1e-5, .g32 = 1e-5, .b16 = 3e-2
// conv weights and bias (inputs 1, 2) are float32 master parameters under bf16
#define CONV(s_, p_, d_, g_) .fwd = conv_fwd, .bwd = conv_bwd, .conv = { .stride = s_, .pad = p_, .dil = d_, .groups = g_ }, \
    .f32_in = 6

OPCASE(conv_k3_7x5_c3, CONV(1, 1, 1, 1), TOL_GEMM)
OPCASE(conv_k1_7x5, CONV(1, 0, 1, 1), TOL_GEMM)
OPCASE(conv_k1_s2_nobias, CONV(2, 0, 1, 1), TOL_GEMM)
OPCASE(conv_k3_s2_b1, CONV(2, 1, 1, 1), TOL_GEMM)
OPCASE(conv_k5_s2_g2, CONV(2, 2, 1, 2), TOL_GEMM)
OPCASE(conv_k7_p3, CONV(1, 3, 1, 1), TOL_GEMM)
OPCASE(conv_k3_d8_6x6, CONV(1, 8, 8, 1), TOL_GEMM)
OPCASE(conv_k3_d2, CONV(1, 2, 2, 1), TOL_GEMM)
OPCASE(conv_k3_d4_g3, CONV(1, 4, 4, 3), TOL_GEMM)
OPCASE(dwconv_k3, CONV(1, 1, 1, 5), TOL_GEMM)
OPCASE(dwconv_k5_s2, CONV(2, 2, 1, 6), TOL_GEMM)
OPCASE(dwconv_k7, CONV(1, 3, 1, 8), TOL_GEMM)
OPCASE(dwconv_k9_nobias, CONV(1, 4, 1, 3), TOL_GEMM)
OPCASE(dwconv_k3_d2_c70, CONV(1, 2, 2, 70), TOL_GEMM)
OPCASE(linear_rows, .fwd = linear_fwd, .bwd = linear_bwd, TOL_GEMM, .f32_in = 6)
OPCASE(linear_nobias, .fwd = linear_fwd, .bwd = linear_bwd, TOL_GEMM, .f32_in = 6)
OPCASE(gemm_nt, .fwd = gemm_nt_fwd, .bwd = gemm_nt_bwd, .f = { 0.7 }, TOL_GEMM)
OPCASE(gemm_tn_beta, .fwd = gemm_tn_fwd, .bwd = gemm_tn_bwd, .f = { 1.3, 0.5 }, TOL_GEMM)
// BatchNorm: gamma, beta and the running statistics stay float32 (inputs 1-4, outputs 1-2)
#define BN_F32 .f32_in = 0x1e, .f32_out = 6
OPCASE(bn_train, .fwd = bn_fwd, .bwd = bn_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_train_b1, .fwd = bn_fwd, .bwd = bn_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_eval, .fwd = bn_fwd, .bwd = bn_bwd, .k = 0, TOL_NORM, BN_F32)
// channels a multiple of 8: the GPU's 16-byte vector path (norm.cu)
OPCASE(bn_train_c16, .fwd = bn_fwd, .bwd = bn_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_eval_c8, .fwd = bn_fwd, .bwd = bn_bwd, .k = 0, TOL_NORM, BN_F32)
// BatchNorm then ReLU in one op (ops.h batchnorm_relu_*): scalar and vector paths
OPCASE(bn_relu_train, .fwd = bn_relu_fwd, .bwd = bn_relu_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_relu_train_c16, .fwd = bn_relu_fwd, .bwd = bn_relu_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_relu_eval_c8, .fwd = bn_relu_fwd, .bwd = bn_relu_bwd, .k = 0, TOL_NORM, BN_F32)
OPCASE(ln, .fwd = ln_fwd, .bwd = ln_bwd, .f = { 1e-6 }, TOL_NORM, .f32_in = 6)
OPCASE(ln_c80, .fwd = ln_fwd, .bwd = ln_bwd, .f = { 1e-5 }, TOL_NORM, .f32_in = 6)
OPCASE(gelu, .fwd = gelu_fwd, .bwd = gelu_bwd, TOL_ELEM)
OPCASE(relu, .fwd = relu_fwd, .bwd = relu_bwd, TOL_ELEM)
OPCASE(sigmoid, .fwd = sigmoid_fwd, .bwd = sigmoid_bwd, TOL_ELEM)
OPCASE(softplus, .fwd = softplus_fwd, .bwd = softplus_bwd, TOL_ELEM)
OPCASE(clamp, .fwd = clamp_fwd, .bwd = clamp_bwd, .f = { -0.5, 0.8 }, TOL_ELEM)
OPCASE(clamp_bounds, .fwd = clamp_fwd, .bwd = clamp_bwd, .f = { -0.5, 0.8 }, TOL_ELEM, .no_fd = 1)
OPCASE(add, .fwd = add_fwd, .bwd = add_bwd, TOL_ELEM)
OPCASE(axpy, .fwd = axpy_fwd, .bwd = axpy_bwd, .f = { 0.3 }, TOL_ELEM)
OPCASE(scale, .fwd = scale_fwd, .bwd = scale_bwd, .f = { 1.7 }, TOL_ELEM)
OPCASE(mul_c, .fwd = mul_fwd, .bwd = mul_bwd, TOL_NORM, .f32_in = 2)
OPCASE(mul_nc, .fwd = mul_fwd, .bwd = mul_bwd, TOL_NORM)
OPCASE(mul_pix, .fwd = mul_fwd, .bwd = mul_bwd, TOL_NORM)
OPCASE(mul_elem, .fwd = mul_fwd, .bwd = mul_bwd, TOL_ELEM)
OPCASE(mul_head, .fwd = mul_fwd, .bwd = mul_bwd, TOL_NORM, .f32_in = 2)
OPCASE(rows_add_bcast, .fwd = addb_fwd, .bwd = addb_bwd, TOL_NORM)
OPCASE(resize_scale2, .fwd = resize_fwd, .bwd = resize_bwd, .f = { 2.0, 2.0 }, TOL_NORM)
OPCASE(resize_scale1p5, .fwd = resize_fwd, .bwd = resize_bwd, .f = { 1.5, 1.5 }, TOL_NORM)
OPCASE(resize_scale0p5, .fwd = resize_fwd, .bwd = resize_bwd, .f = { 0.5, 0.5 }, TOL_NORM)
OPCASE(resize_size_up, .fwd = resize_fwd, .bwd = resize_bwd, TOL_NORM)
OPCASE(resize_size_down, .fwd = resize_fwd, .bwd = resize_bwd, TOL_NORM)
OPCASE(resize_size_4x, .fwd = resize_fwd, .bwd = resize_bwd, TOL_NORM)
OPCASE(avgpool, .fwd = avgpool_fwd, .bwd = avgpool_bwd, TOL_NORM)
OPCASE(concat, .fwd = concat_fwd, .bwd = concat_bwd, TOL_ELEM)
OPCASE(channels_copy_acc, .fwd = chcopy_fwd, .bwd = chcopy_bwd, TOL_ELEM)
OPCASE(softmax_last, .fwd = softmax_fwd, .bwd = softmax_bwd, .k = 1, TOL_NORM)
OPCASE(softmax_mid, .fwd = softmax_fwd, .bwd = softmax_bwd, .k = 1, TOL_NORM)
OPCASE(l2norm_last, .fwd = l2norm_fwd, .bwd = l2norm_bwd, .k = 1, .f = { 1e-12 }, TOL_NORM)
OPCASE(l2norm_mid, .fwd = l2norm_fwd, .bwd = l2norm_bwd, .k = 1, .f = { 1e-12 }, TOL_NORM)
OPCASE(l2norm_eps, .fwd = l2norm_fwd, .bwd = l2norm_bwd, .k = 1, .f = { 1e-3 }, TOL_NORM)
OPCASE(topk_ties, .fwd = topk_fwd, .k = 4, .ties = 1, .g64 = 0, .fast = 0, .g32 = 0, .no_bf16 = 1)
OPCASE(topk_k1, .fwd = topk_fwd, .k = 1, .g64 = 0, .fast = 0, .g32 = 1e-7, .no_bf16 = 1)
OPCASE(maxnorm, .fwd = maxnorm_fwd, .bwd = maxnorm_bwd, TOL_NORM, .no_fd = 1)   // the tied maximum is a kink
OPCASE(rows_gather, .fwd = gather_fwd, .bwd = gather_bwd, TOL_ELEM)
OPCASE(rows_scatter_add, .fwd = scatter_fwd, .bwd = scatter_bwd, TOL_ELEM, .f32_in = 8)
OPCASE(rows_scatter_add_now, .fwd = scatter_fwd, .bwd = scatter_bwd, TOL_ELEM)
OPCASE(rows_gather_sum, .fwd = gsum_fwd, .bwd = gsum_bwd, TOL_ELEM, .f32_in = 16)   // w float32 under bf16
OPCASE(rows_sum, .fwd = rsum_fwd, .bwd = rsum_bwd, TOL_NORM)
OPCASE(fill, .fwd = fill_fwd, .f = { -1.75 }, TOL_ELEM)
OPCASE(copy, .fwd = copy_fwd, .bwd = copy_bwd, TOL_ELEM, .f32_in = 1)   // bf16 column: float32 -> bf16 and back
// The loss: the masks (inputs 8-11) and the terms stay float32 under bf16. On the CPU
// the fast path is the reference; the GPU sums in float32 (`fast`, `g32`: the GPU loss
// test's 1e-4). bf16: the BCE of a probability p has the gradient (p − y)/(p(1 − p)),
// which magnifies the rounding of p near 0 and 1 (fg and search lie in [0.05, 0.95]):
// 3.1e-2 for these maps in a float64 model of the bf16 column, hence 6e-2.
OPCASE(cod_loss, .fwd = closs_fwd, .bwd = closs_bwd, .g64 = 1e-12, .fd = 1e-6, .fast = 1e-4, .g32 = 1e-4, .b16 = 6e-2,
       .f32_in = 0xf00, .f32_out = 1)
// The optimizer: forward only (no gradient), float32 tables on the GPU (no bf16 column).
// AdamW's moments are float32 in every run (1e-7 against the float64 golden); the GPU's
// float32 arithmetic is held to the GPU optimizer test's 1e-5.
#define TOL_OPTIM .g64 = 1e-12, .fast = 1e-5, .g32 = 1e-5, .no_bf16 = 1
#define ADAMW(step) .fwd = adamw_fwd, .f = { 1e-2, 0.05 }, .k = step, .f32_in_always = 6, .f32_out_always = 6, \
    .g64 = 1e-7, .fast = 1e-5, .g32 = 1e-5, .no_bf16 = 1
OPCASE(adamw_update, ADAMW(3))
OPCASE(adamw_update_first, ADAMW(1))
OPCASE(grad_norm_clip, .fwd = gnorm_fwd, .f = { 1.0 }, TOL_OPTIM)
OPCASE(grad_norm_clip_under, .fwd = gnorm_fwd, .f = { 100.0 }, TOL_OPTIM)
OPCASE(ema_blend, .fwd = ema_fwd, TOL_OPTIM)

// Every case in the golden file has an entry above (and vice versa through REQUIRE).
TEST(op_table_covers_goldens) {
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    for (int i = 0; i < f.n; i++) {
        const char *nm = f.entries[i].name, *dot = strrchr(nm, '.');
        if (!dot || strncmp(dot, ".in0", 5)) continue;
        int found = 0;
        for (int j = 0; j < n_op_rows && !found; j++)
            found = strlen(op_rows[j]->name) == (size_t)(dot - nm) && !strncmp(op_rows[j]->name, nm, (size_t)(dot - nm));
        CHECKF(found, "golden case %.*s has no table entry", (int)(dot - nm), nm);
    }
    st_close(&f);
}

// Every op of ops_list.h runs in some entry: each entry's forward and backward run
// once on the CPU backend with the profiler on, which records each op called.
TEST(op_table_covers_every_op) {
    static const char *const ops[] = {
#define OP(name, ...) #name,
#include "ops/ops_list.h"
#undef OP
    };
    StFile f;
    REQUIRE_OK(st_open(&f, GOLDEN_PATH));
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    OpProfile *p = cx_calloc(1, sizeof *p);
    OpCtx ctx = { .backend = OPS_CPU, .scratch = &scratch, .prof = p };
    for (int r = 0; r < n_op_rows; r++) {
        CaseData d;
        case_setup(&d, &a, &f, op_rows[r], DT_F32);
        op_rows[r]->fwd(&ctx, op_rows[r], d.out, d.in);
        if (op_rows[r]->bwd && d.ngout) op_rows[r]->bwd(&ctx, op_rows[r], d.din, d.dout, d.out, d.in);
        arena_reset(&a);
    }
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        int found = 0;
        for (int e = 0; e < p->n && !found; e++) found = !strcmp(p->e[e].op, ops[i]);
        CHECKF(found, "op %s: no entry of the op table runs it (add one: docs/ARCHITECTURE.md)", ops[i]);
    }
    free(p);
    arena_free(&a);
    arena_free(&scratch);
    st_close(&f);
}

// The host tables hold what the list's columns say, and an empty slot is named.
TEST(op_backend_tables_follow_the_list) {
    char buf[1024];
    CHECKF(ops_backend_missing(&ops_cpu, buf, sizeof buf) == 0, "the CPU table lacks %s", buf);
#define REF_HAS_REF 1
#define REF_HAS_CPU 0
#define REF_HAS_NONE 0
#define OP(name, cls, by, wrap, ref, cpu, params, args) \
    CHECKF(!ops_ref_f32.name == !REF_HAS_##ref && !ops_ref_f64.name == !REF_HAS_##ref, \
           "ops_ref_f32/f64: the slot of " #name " does not follow its reference column (" #ref ")");
#include "ops/ops_list.h"
#undef OP
    OpsBackend b = ops_cpu;
    b.fill = NULL, b.ema_blend = NULL;
    CHECK(ops_backend_missing(&b, buf, sizeof buf) == 2 && !strcmp(buf, "fill, ema_blend"));
    char small[12];
    CHECK(ops_backend_missing(&b, small, sizeof small) == 2 && !strcmp(small, "fill, em..."));
}

// The CUDA plug-in beside this program (as ops.c finds it: here, or ../lib in the GPU
// bundle) is of this build and fills every op's slot; no GPU needed.
TEST(op_cuda_plugin_has_every_op) {
#if HAVE_CUDA
    char exe[4096], path[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(path, sizeof path, "%s/libcamoxpert_cuda.so", exe);
    if (access(path, F_OK)) snprintf(path, sizeof path, "%s/../lib/libcamoxpert_cuda.so", exe);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { test_skip("the CUDA plug-in does not load here: %s", dlerror()); return; }
    const CudaPlugin *(*get)(void) = (const CudaPlugin *(*)(void))dlsym(h, "camoxpert_cuda_plugin");
    REQUIRE(get);
    const CudaPlugin *p = get();
    CHECKF(!strcmp(p->op_list, ops_list_signature()), "%s: another build's op list", path);
    char buf[1024];
    CHECKF(ops_backend_missing(p->ops, buf, sizeof buf) == 0, "the CUDA plug-in has no kernel for %s", buf);
    dlclose(h);
#else
    test_skip("built without CUDA");
#endif
}

// ops.h's tie rule, stated directly: equal values keep ascending index order.
TEST(op_topk_tie_order) {
    Arena a;
    arena_init(&a, "test", 1 << 12);
    OpCtx ctx = { .scratch = &a };
    double v[2][6] = { { 2, 2, 2, 2, 2, 2 }, { 1, 3, 0, 3, 2, 3 } };
    int32_t want[2][4] = { { 0, 1, 2, 3 }, { 1, 3, 5, 4 } };
    for (int fr = 0; fr < 2; fr++) {
        ctx.backend = fr ? OPS_REF : OPS_CPU;
        Tensor x = tensor_new(&a, DT_F32, 2, (int64_t[]){ 2, 6 }), idx = tensor_new(&a, DT_I32, 2, (int64_t[]){ 2, 4 });
        Tensor val = tensor_new(&a, DT_F32, 2, (int64_t[]){ 2, 4 });
        for (int i = 0; i < 12; i++) tensor_set(&x, i, v[i / 6][i % 6]);
        topk_rows(&ctx, &idx, &val, &x, 4);
        for (int i = 0; i < 8; i++) CHECKF(tensor_i32(&idx)[i] == want[i / 4][i % 4], "idx[%d] = %d", i, tensor_i32(&idx)[i]);
    }
    arena_free(&a);
}

// Fast vs reference (float32) on shapes large enough to take the parallel
// paths (above the kernels' 32768-element threshold) and, for conv, several
// im2col chunks (KC = 2304 gives 1820-row chunks over 2304 output rows).
static void fast_vs_ref_big(const OpTest *t, int nin, Tensor *in_shapes, int nout, Tensor *out_shapes, double tol) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 24);
    arena_init(&scratch, "scratch", 1 << 24);
    OpCtx ctx = { .backend = OPS_CPU, .scratch = &scratch };
    Rng rng = rng_init(99);
    CaseData cd[2];
    for (int v = 0; v < 2; v++) {
        CaseData *d = &cd[v];
        memset(d, 0, sizeof *d);
        d->nin = nin; d->nout = nout; d->ngout = 1;
        for (int i = 0; i < nin; i++) {
            if (!in_shapes[i].ndim) continue;
            d->in[i] = tensor_new(&a, DT_F32, in_shapes[i].ndim, in_shapes[i].shape);
            d->din[i] = tensor_zeros_like(&a, &d->in[i]);
        }
        for (int o = 0; o < nout; o++) d->out[o] = tensor_zeros(&a, DT_F32, out_shapes[o].ndim, out_shapes[o].shape);
        d->dout[0] = tensor_like(&a, &d->out[0]);
    }
    for (int i = 0; i < nin; i++)   // same random values for both runs (positive: running variances)
        for (int64_t j = 0; j < tensor_numel(&cd[0].in[i]); j++) {
            double u = rng_uniform(&rng) + 0.1;
            tensor_set(&cd[0].in[i], j, u);
            tensor_set(&cd[1].in[i], j, u);
        }
    for (int64_t j = 0; j < tensor_numel(&cd[0].dout[0]); j++) {
        double u = rng_normal(&rng);
        tensor_set(&cd[0].dout[0], j, u);
        tensor_set(&cd[1].dout[0], j, u);
    }
    for (int v = 0; v < 2; v++) {
        ctx.backend = v ? OPS_REF : OPS_CPU;
        t->fwd(&ctx, t, cd[v].out, cd[v].in);
        t->bwd(&ctx, t, cd[v].din, cd[v].dout, cd[v].out, cd[v].in);
    }
    for (int o = 0; o < nout; o++) check_err("big fast vs ref", "out", o, &cd[0].out[o], &cd[1].out[o], tol);
    for (int i = 0; i < nin; i++)
        if (cd[0].din[i].data) check_err("big fast vs ref", "grad", i, &cd[0].din[i], &cd[1].din[i], tol);
    // the same shapes on the GPU in float32 (many blocks per kernel), when there is one
    OpCtx *g = test_cuda();
    if (g) {
        Arena dev;
        arena_init_on(&dev, "gpu test", 1 << 24, DEV_CUDA);
        CaseData q;
        gpu_case(g, &dev, &a, t, &cd[1], DT_F32, &q);
        for (int o = 0; o < nout; o++) check_err("big cuda vs ref", "out", o, &q.out[o], &cd[1].out[o], tol);
        for (int i = 0; i < nin; i++)
            if (cd[1].din[i].data) check_err("big cuda vs ref", "grad", i, &q.din[i], &cd[1].din[i], tol);
        arena_free(&dev);
    }
    arena_free(&a);
    arena_free(&scratch);
}

#define SH(...) ((Tensor){ .ndim = (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), .shape = { __VA_ARGS__ } })

TEST(op_fast_big_conv) {
    OpTest c = { CONV(1, 1, 1, 1) };
    for (int im = CPU_IMPL_OWN; im <= (HAVE_DNNL ? CPU_IMPL_DNNL : CPU_IMPL_OWN); im++) {
        cpu_conv_impl = (CpuImpl)im;
        fast_vs_ref_big(&c, 3, (Tensor[]){ SH(1, 48, 48, 256), SH(8, 256, 3, 3), SH(8) }, 1,
                        (Tensor[]){ SH(1, 48, 48, 8) }, 1e-5);
    }
    cpu_conv_impl = CPU_IMPL_AUTO;
    OpTest dw = { CONV(2, 3, 1, 96) };
    fast_vs_ref_big(&dw, 3, (Tensor[]){ SH(2, 33, 31, 96), SH(96, 1, 7, 7), SH(96) }, 1, (Tensor[]){ SH(2, 17, 16, 96) }, 1e-5);
    // Stride 1 takes dwconv.c's register-blocked rows: 40 channels are two
    // vectors and a tail of 8; rows of 29 have blocks, a remainder and borders.
    OpTest dw5 = { CONV(1, 2, 1, 40) };
    fast_vs_ref_big(&dw5, 3, (Tensor[]){ SH(2, 23, 29, 40), SH(40, 1, 5, 5), SH(40) }, 1, (Tensor[]){ SH(2, 23, 29, 40) }, 1e-5);
    OpTest dw9 = { CONV(1, 8, 2, 48) };
    fast_vs_ref_big(&dw9, 3, (Tensor[]){ SH(1, 37, 41, 48), SH(48, 1, 9, 9), SH(48) }, 1, (Tensor[]){ SH(1, 37, 41, 48) }, 1e-5);
    OpTest lin = { .fwd = linear_fwd, .bwd = linear_bwd };
    fast_vs_ref_big(&lin, 3, (Tensor[]){ SH(1, 40, 40, 48), SH(72, 48), SH(72) }, 1, (Tensor[]){ SH(1, 40, 40, 72) }, 1e-5);
}

// ops.h's contract: conv2d_backward ADDS into dx, dw and db. Running it twice
// into the same buffers must give twice one run, for every implementation
// (oneDNN's sum post-ops and scratch-then-add paths, im2col's beta = 1).
TEST(op_conv_backward_accumulates) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 22);
    arena_init(&scratch, "scratch", 1 << 22);
    OpCtx ctx = { .scratch = &scratch };
    Rng rng = rng_init(5);
    // dense 3×3, strided grouped 5×5, 1×1, depthwise 3×3 (16 channels: one vector)
    ConvArgs args[4] = { { 1, 1, 1, 1 }, { 2, 2, 1, 2 }, { 1, 0, 1, 1 }, { 1, 1, 1, 16 } };
    int ks[4] = { 3, 5, 1, 3 };
    for (int im = CPU_IMPL_OWN; im <= (HAVE_DNNL ? CPU_IMPL_DNNL : CPU_IMPL_OWN); im++)
        for (int s = 0; s < 4; s++) {
            cpu_conv_impl = (CpuImpl)im;
            ArenaMark m = arena_mark(&a);
            ConvArgs ca = args[s];
            int64_t H = 11, C = s == 3 ? 16 : 8, K = s == 3 ? 16 : 12, k = ks[s], Ho = conv2d_out_size(H, (int)k, ca);
            Tensor x = tensor_new(&a, DT_F32, 4, (int64_t[]){ 2, H, H, C });
            Tensor w = tensor_new(&a, DT_F32, 4, (int64_t[]){ K, C / ca.groups, k, k });
            Tensor dy = tensor_new(&a, DT_F32, 4, (int64_t[]){ 2, Ho, Ho, K });
            Tensor *all[3] = { &x, &w, &dy };
            for (int t = 0; t < 3; t++)
                for (int64_t j = 0; j < tensor_numel(all[t]); j++) tensor_set(all[t], j, rng_normal(&rng));
            Tensor g1[3] = { tensor_zeros_like(&a, &x), tensor_zeros_like(&a, &w),
                             tensor_zeros(&a, DT_F32, 1, (int64_t[]){ K }) };
            Tensor g2[3] = { tensor_zeros_like(&a, &x), tensor_zeros_like(&a, &w),
                             tensor_zeros(&a, DT_F32, 1, (int64_t[]){ K }) };
            conv2d_backward(&ctx, &g1[0], &g1[1], &g1[2], &dy, &x, &w, ca);
            conv2d_backward(&ctx, &g2[0], &g2[1], &g2[2], &dy, &x, &w, ca);
            conv2d_backward(&ctx, &g2[0], &g2[1], &g2[2], &dy, &x, &w, ca);
            for (int t = 0; t < 3; t++) {
                scale_inplace(&ctx, &g1[t], 2.0);
                check_err("conv backward twice", "grad", t, &g2[t], &g1[t], 1e-6);
            }
            arena_release(&a, m);
        }
    cpu_conv_impl = CPU_IMPL_AUTO;
    arena_free(&a);
    arena_free(&scratch);
}

TEST(op_fast_big_norm_eltwise) {
    OpTest bn = { .fwd = bn_fwd, .bwd = bn_bwd, .k = 1 };
    fast_vs_ref_big(&bn, 5, (Tensor[]){ SH(2, 40, 40, 24), SH(24), SH(24), SH(24), SH(24) }, 3,
                    (Tensor[]){ SH(2, 40, 40, 24), SH(24), SH(24) }, 1e-5);
    OpTest ln = { .fwd = ln_fwd, .bwd = ln_bwd, .f = { 1e-6 } };
    fast_vs_ref_big(&ln, 3, (Tensor[]){ SH(2, 40, 40, 24), SH(24), SH(24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-5);
    OpTest mul = { .fwd = mul_fwd, .bwd = mul_bwd };
    fast_vs_ref_big(&mul, 2, (Tensor[]){ SH(2, 40, 40, 24), SH(24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-5);
    fast_vs_ref_big(&mul, 2, (Tensor[]){ SH(2, 40, 40, 24), SH(2, 24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-5);
    fast_vs_ref_big(&mul, 2, (Tensor[]){ SH(2, 40, 40, 24), SH(2, 40, 40, 1) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-5);
    OpTest rs = { .fwd = resize_fwd, .bwd = resize_bwd };
    fast_vs_ref_big(&rs, 1, (Tensor[]){ SH(2, 23, 21, 40) }, 1, (Tensor[]){ SH(2, 45, 50, 40) }, 1e-5);
    OpTest sm = { .fwd = softmax_fwd, .bwd = softmax_bwd, .k = 1 };
    fast_vs_ref_big(&sm, 1, (Tensor[]){ SH(64, 40, 24) }, 1, (Tensor[]){ SH(64, 40, 24) }, 1e-5);
    OpTest ge = { .fwd = gelu_fwd, .bwd = gelu_bwd };
    fast_vs_ref_big(&ge, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-6);
    OpTest ap = { .fwd = avgpool_fwd, .bwd = avgpool_bwd };
    fast_vs_ref_big(&ap, 1, (Tensor[]){ SH(2, 64, 64, 24) }, 1, (Tensor[]){ SH(2, 24) }, 1e-5);
}

// The ReLU decision tape (ops.h): a replaying pass follows the recording's decisions
// (elements within rounding of 0 included), counts where its own differ, and its
// output keeps relu_backward on the recorded elements; float64 replays a float32 tape.
TEST(op_relu_tape_shares_decisions) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    OpCtx cpu = { .backend = OPS_CPU, .scratch = &scratch }, ref = { .backend = OPS_REF, .scratch = &scratch };
    const float xv[6] = { 1.5f, -2.0f, 1e-9f, -1e-9f, 0.0f, 3.0f };
    Tensor x = tensor_new(&a, DT_F32, 1, (int64_t[]){ 6 }), y = tensor_new(&a, DT_F32, 1, (int64_t[]){ 6 });
    memcpy(x.data, xv, sizeof xv);
    ReluTape t = { 0 };
    cpu.relu_tape = &t;
    relu_forward(&cpu, &y, &x);
    relu_forward(&cpu, &y, &x);   // a second call: recorded after the first
    CHECK(t.n == 12 && t.differed == 0);
    // the other run's pre-activations: the two tiny values have the other sign
    Tensor x2 = tensor_new(&a, DT_F64, 1, (int64_t[]){ 6 }), y2 = tensor_new(&a, DT_F64, 1, (int64_t[]){ 6 });
    const double x2v[6] = { 1.5, -2.0, -1e-9, 1e-9, 0.0, 3.0 };
    memcpy(x2.data, x2v, sizeof x2v);
    relu_tape_rewind(&t, 1);
    ref.relu_tape = &t;
    relu_forward(&ref, &y2, &x2);
    CHECKF(t.differed == 2 && t.pos == 6, "differed %lld at %lld", (long long)t.differed, (long long)t.pos);
    const double want[6] = { 1.5, 0, 1e-30, 0, 0, 3.0 };
    for (int i = 0; i < 6; i++) CHECKF(tensor_f64(&y2)[i] == want[i], "element %d: %g", i, tensor_f64(&y2)[i]);
    Tensor dy = tensor_new(&a, DT_F64, 1, (int64_t[]){ 6 }), dx = tensor_zeros(&a, DT_F64, 1, (int64_t[]){ 6 });
    for (int i = 0; i < 6; i++) tensor_f64(&dy)[i] = 1;
    relu_backward(&ref, &dx, &dy, &y2);
    for (int i = 0; i < 6; i++) CHECKF(tensor_f64(&dx)[i] == (want[i] > 0), "gradient %d: %g", i, tensor_f64(&dx)[i]);
    // in place (y aliases x), as the layers call it
    memcpy(x2.data, x2v, sizeof x2v);
    relu_forward(&ref, &x2, &x2);
    for (int i = 0; i < 6; i++) CHECKF(tensor_f64(&x2)[i] == want[i], "in place, element %d: %g", i, tensor_f64(&x2)[i]);
    relu_tape_free(&t);
    arena_free(&a);
    arena_free(&scratch);
}

// rows_gather_sum on the CSR form of a rows_scatter_add index is rows_scatter_add,
// term for term (same products, same order: equal bits, float64 and float32), so
// it inherits rows_scatter_add's golden parity with torch index_add_. It is linear:
// its finite-difference gradient is the weighted gather, checked as an adjoint
// (<gather_sum(s), g> = <s, w·g[idx]>). The CUDA column compares with the CPU.
static void gather_sum_case(Arena *a, Rng *r, cx_dtype dt, Tensor *src, Tensor *idx, Tensor *w, Tensor *ptr, Tensor *list,
                            Tensor *wl, int64_t n, int64_t rows, int64_t D) {
    *src = tensor_new(a, dt, 2, (int64_t[]){ n, D });
    *w = tensor_new(a, dt, 1, &n);
    *idx = tensor_new(a, DT_I32, 1, &n);
    for (int64_t i = 0; i < n * D; i++) tensor_set(src, i, 2 * rng_uniform(r) - 1);
    for (int64_t i = 0; i < n; i++) {
        tensor_set(w, i, rng_uniform(r));
        tensor_i32(idx)[i] = (int32_t)rng_below(r, (uint64_t)(rows - 1));   // the last row is never named
    }
    *ptr = tensor_zeros(a, DT_I32, 1, (int64_t[]){ rows + 1 });
    *list = tensor_new(a, DT_I32, 1, &n);
    int32_t *pp = tensor_i32(ptr), *fill_at = arena_alloc(a, sizeof(int32_t) * (size_t)rows);
    for (int64_t i = 0; i < n; i++) pp[tensor_i32(idx)[i] + 1]++;
    for (int64_t q = 0; q < rows; q++) pp[q + 1] += pp[q];
    memcpy(fill_at, pp, sizeof(int32_t) * (size_t)rows);
    for (int64_t i = 0; i < n; i++) tensor_i32(list)[fill_at[tensor_i32(idx)[i]]++] = (int32_t)i;
    *wl = tensor_like(a, w);   // the weights in list order
    for (int64_t j = 0; j < n; j++) tensor_set(wl, j, tensor_get(w, tensor_i32(list)[j]));
}

TEST(op_rows_gather_sum_equals_scatter_add) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    const int64_t n = 300, rows = 37, D = 5;
    for (int pass = 0; pass < 3; pass++) {   // reference f64, reference f32, the CPU backend
        cx_dtype dt = pass == 0 ? DT_F64 : DT_F32;
        OpCtx c = { .backend = pass == 2 ? OPS_CPU : OPS_REF, .scratch = &scratch };
        Rng r = rng_init(17);
        Tensor src, idx, w, ptr, list, wl;
        gather_sum_case(&a, &r, dt, &src, &idx, &w, &ptr, &list, &wl, n, rows, D);
        Tensor base = tensor_new(&a, dt, 2, (int64_t[]){ rows, D }), y1 = tensor_like(&a, &base), y2 = tensor_like(&a, &base);
        for (int64_t i = 0; i < rows * D; i++) tensor_set(&base, i, rng_uniform(&r));
        for (int wt = 0; wt < 2; wt++) {
            tensor_copy(&y1, &base);
            tensor_copy(&y2, &base);
            rows_scatter_add(&c, &y1, &src, &idx, wt ? &w : NULL);
            rows_gather_sum(&c, &y2, &src, &ptr, &list, wt ? &wl : NULL);
            CHECKF(!memcmp(y1.data, y2.data, (size_t)(rows * D) * dtype_size(dt)), "pass %d weights %d: not bit-equal (%.3g)",
                   pass, wt, test_rel_err(&y2, &y1, 0));
        }
        if (pass == 0) {   // the adjoint: d<gather_sum(src), g>/dsrc[i] = w_i·g[idx_i]
            Tensor g = tensor_like(&a, &base), dsrc = tensor_zeros_like(&a, &src), out = tensor_zeros_like(&a, &base);
            for (int64_t i = 0; i < rows * D; i++) tensor_set(&g, i, rng_uniform(&r) - 0.5);
            rows_scatter_add_backward(&c, &dsrc, NULL, &g, NULL, &idx, &w);
            const double h = 1e-6;
            for (int s = 0; s < 20; s++) {
                int64_t j = (int64_t)rng_below(&r, (uint64_t)(n * D));
                double x0 = tensor_get(&src, j), L[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    tensor_set(&src, j, x0 + (sgn ? -h : h));
                    tensor_zero(&out);
                    rows_gather_sum(&c, &out, &src, &ptr, &list, &wl);
                    L[sgn] = 0;
                    for (int64_t i = 0; i < rows * D; i++) L[sgn] += tensor_get(&out, i) * tensor_get(&g, i);
                }
                tensor_set(&src, j, x0);
                CHECK_NEAR((L[0] - L[1]) / (2 * h), tensor_get(&dsrc, j), 1e-8);
            }
        }
    }
    arena_free(&a);
    arena_free(&scratch);
}

TEST(op_rows_gather_sum_many_rows_cuda) {
    OpCtx *g = test_cuda();
    if (!g) { test_skip("%s", test_no_gpu()); return; }
    Arena a, scratch, dev;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    arena_init_on(&dev, "gpu test", 1 << 20, DEV_CUDA);
    OpCtx c = { .backend = OPS_CPU, .scratch = &scratch };
    Rng r = rng_init(19);
    Tensor src, idx, w, ptr, list, wl;
    const int64_t n = 5000, rows = 700, D = 24;
    gather_sum_case(&a, &r, DT_F32, &src, &idx, &w, &ptr, &list, &wl, n, rows, D);
    Tensor y = tensor_zeros(&a, DT_F32, 2, (int64_t[]){ rows, D });
    rows_gather_sum(&c, &y, &src, &ptr, &list, &wl);
    for (int act = 0; act < 2; act++) {   // float32, then bf16 src and dst (weights float32)
        cx_dtype dt = act ? DT_BF16 : DT_F32;
        Tensor ds = to_gpu(g, &dev, &src, dt), dw = to_gpu(g, &dev, &wl, DT_F32), dp = to_gpu(g, &dev, &ptr, DT_I32),
               dl = to_gpu(g, &dev, &list, DT_I32), dy = tensor_new(&dev, dt, 2, (int64_t[]){ rows, D });
        fill(g, &dy, 0);
        rows_gather_sum(g, &dy, &ds, &dp, &dl, &dw);
        Tensor h = from_gpu(g, &dev, &a, &dy);
        double e = test_rel_err(&h, &y, 0);
        printf("    cuda %s vs cpu f32: rel err %.3g\n", act ? "bf16" : "f32", e);
        CHECKF(e < (act ? 3e-2 : 1e-6), "cuda %s: %.3g", act ? "bf16" : "f32", e);
        arena_reset(&dev);
    }
    arena_free(&dev);
    arena_free(&a);
    arena_free(&scratch);
}
