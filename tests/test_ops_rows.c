// test_ops_rows.c — the op test table's entries: an adapter pair per op (its
// forward and backward called on an entry's tensors) and one OPCASE line per
// case of tests/fixtures/ops_golden.safetensors, with its tolerances. The runner
// and what each entry checks: test_ops.c. Also the fast-vs-reference runs on
// large shapes, which reuse the adapters.
#include "test_ops_table.h"
#include "ops/cpu/cpu.h"
#include <string.h>

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
// gelu_bias: y = GELU(x + b); the backward through gelu_bias_backward at t = x + b.
static Tensor gelu_bias_t(OpCtx *c, Tensor *in) {
    Tensor t = tensor_like(c->scratch, &in[0]);
    copy(c, &t, &in[0]);
    rows_add_bcast(c, &t, &in[1]);
    return t;
}
static void gelu_bias_fwd(OpCtx *c, const OpTest *tc, Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor t = gelu_bias_t(c, in);
    gelu_forward(c, &out[0], &t);
    arena_release(c->scratch, m);
}
static void gelu_bias_bwd(OpCtx *c, const OpTest *tc, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    ArenaMark m = arena_mark(c->scratch);
    Tensor t = gelu_bias_t(c, in);
    gelu_bias_backward(c, D(0), D(1), &dout[0], &t);
    arena_release(c->scratch, m);
}
static void rscale_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    residual_scale_forward(c, &out[0], &in[0], &in[1], &in[2]);
}
static void rscale_bwd(OpCtx *c, const OpTest *t, Tensor *din, const Tensor *dout, const Tensor *out, Tensor *in) {
    residual_scale_backward(c, D(0), D(1), D(2), &dout[0], &in[1], &in[2]);
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
// route_topk_plan: in0 probs -> out0 idx, out1 w, out2 plan, out3 plan_w (k from idx's shape);
// t->k set: the selection bias route_sel (tools/make_op_goldens.py ROUTE_SEL).
static const double route_sel[5] = { 0.05, -0.1, 0.0, 0.2, -0.05 };
static void rplan_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    route_topk_plan(c, &out[0], &out[1], &out[2], &out[3], &in[0], t->k ? route_sel : NULL);
}
// route_topk_backward: in0 logits, in1 probs, in2 idx, in3 dw -> out0 dlogits (+=); the balancing
// term t->k (moe_lb) of weight f[0]. It is itself a backward: forward-only entries.
static void rback_fwd(OpCtx *c, const OpTest *t, Tensor *out, Tensor *in) {
    route_topk_backward(c, &out[0], &in[3], &in[2], &in[1], &in[0], t->k, t->f[0]);
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
    .impls = OPT_CONV, .f32_in = 6

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
OPCASE(linear_rows, .fwd = linear_fwd, .bwd = linear_bwd, .impls = OPT_GEMM, TOL_GEMM, .f32_in = 6)
OPCASE(linear_nobias, .fwd = linear_fwd, .bwd = linear_bwd, .impls = OPT_GEMM, TOL_GEMM, .f32_in = 6)
OPCASE(gemm_nt, .fwd = gemm_nt_fwd, .bwd = gemm_nt_bwd, .impls = OPT_GEMM, .f = { 0.7 }, TOL_GEMM)
OPCASE(gemm_tn_beta, .fwd = gemm_tn_fwd, .bwd = gemm_tn_bwd, .impls = OPT_GEMM, .f = { 1.3, 0.5 }, TOL_GEMM)
// BatchNorm: gamma, beta and the running statistics stay float32 (inputs 1-4, outputs 1-2)
#define BN_F32 .f32_in = 0x1e, .f32_out = 6
OPCASE(bn_train, .fwd = bn_fwd, .bwd = bn_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_train_b1, .fwd = bn_fwd, .bwd = bn_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_eval, .fwd = bn_fwd, .bwd = bn_bwd, .k = 0, TOL_NORM, BN_F32)
// channels a multiple of 8: the GPU's 16-byte vector path (norm.cu)
OPCASE(bn_train_c16, .fwd = bn_fwd, .bwd = bn_bwd, .k = 1, TOL_NORM, BN_F32)
OPCASE(bn_eval_c8, .fwd = bn_fwd, .bwd = bn_bwd, .k = 0, TOL_NORM, BN_F32)
// BatchNorm then ReLU in one op (ops_list.h batchnorm_relu_*): scalar and vector paths
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
OPCASE(residual_scale, .fwd = rscale_fwd, .bwd = rscale_bwd, TOL_NORM, .f32_in = 4)
OPCASE(gelu_bias, .fwd = gelu_bias_fwd, .bwd = gelu_bias_bwd, TOL_NORM)
OPCASE(gelu_bias_c5, .fwd = gelu_bias_fwd, .bwd = gelu_bias_bwd, TOL_NORM)
OPCASE(residual_scale_c5, .fwd = rscale_fwd, .bwd = rscale_bwd, TOL_NORM, .f32_in = 4)
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
// rows of 16 and 8 elements: the GPU's 16-byte vector paths of the same ops
OPCASE(rows_gather_c16, .fwd = gather_fwd, .bwd = gather_bwd, TOL_ELEM)
OPCASE(rows_scatter_add_c8, .fwd = scatter_fwd, .bwd = scatter_bwd, TOL_ELEM, .f32_in = 8)
OPCASE(rows_gather_sum_c8, .fwd = gsum_fwd, .bwd = gsum_bwd, TOL_ELEM, .f32_in = 16)
// Routing runs in float32 beside bf16 activations (no bf16 column). The plan is integers and
// weights divided once in double: the GPU equals the reference exactly; the backward's
// exp and log may differ in the last bit there.
OPCASE(route_topk_plan, .fwd = rplan_fwd, .g64 = 1e-15, .fast = 0, .g32 = 1e-6, .no_bf16 = 1)
OPCASE(route_topk_plan_k3_sel, .fwd = rplan_fwd, .k = 1, .g64 = 1e-15, .fast = 0, .g32 = 1e-6, .no_bf16 = 1)
#define TOL_ROUTE_BWD .fwd = rback_fwd, .g64 = 1e-12, .fast = 1e-6, .g32 = 1e-5, .no_bf16 = 1
OPCASE(route_topk_backward_mse, TOL_ROUTE_BWD, .k = MOE_LB_MSE, .f = { 0.7 })
OPCASE(route_topk_backward_switch, TOL_ROUTE_BWD, .k = MOE_LB_SWITCH, .f = { 0.3 })
OPCASE(route_topk_backward_zloss, TOL_ROUTE_BWD, .k = MOE_LB_ZLOSS, .f = { 0.2 })
OPCASE(route_topk_backward_none, TOL_ROUTE_BWD, .k = MOE_LB_NONE, .f = { 0.5 })
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

// ---- fast vs reference on large shapes -----------------------------------------------------------
// Shapes large enough to take the kernels' parallel paths (above their 32768-element
// threshold) and, for conv, several im2col chunks (KC = 2304 gives 1820-row chunks
// over 2304 output rows).
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

TEST(op_fast_big_norm_eltwise) {
    OpTest bn = { .fwd = bn_fwd, .bwd = bn_bwd, .k = 1 };
    fast_vs_ref_big(&bn, 5, (Tensor[]){ SH(2, 40, 40, 24), SH(24), SH(24), SH(24), SH(24) }, 3,
                    (Tensor[]){ SH(2, 40, 40, 24), SH(24), SH(24) }, 1e-5);
    OpTest ln = { .fwd = ln_fwd, .bwd = ln_bwd, .f = { 1e-6 } };
    fast_vs_ref_big(&ln, 3, (Tensor[]){ SH(2, 40, 40, 24), SH(24), SH(24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-5);
    OpTest mul = { .fwd = mul_fwd, .bwd = mul_bwd };
    fast_vs_ref_big(&mul, 2, (Tensor[]){ SH(2, 40, 40, 24), SH(24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-5);
    OpTest gb = { .fwd = gelu_bias_fwd, .bwd = gelu_bias_bwd };
    fast_vs_ref_big(&gb, 2, (Tensor[]){ SH(2, 40, 40, 24), SH(24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) }, 1e-5);
    OpTest rsc = { .fwd = rscale_fwd, .bwd = rscale_bwd };
    fast_vs_ref_big(&rsc, 3, (Tensor[]){ SH(2, 40, 40, 24), SH(2, 40, 40, 24), SH(24) }, 1, (Tensor[]){ SH(2, 40, 40, 24) },
                    1e-5);
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

