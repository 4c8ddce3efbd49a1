// ref.h — the plain reference kernels, one instantiation per float dtype
// (ref_<op>_f32 and ref_<op>_f64), generated from ref_tmpl.h. They are the
// ground truth for tests (finite differences, fast-vs-reference, PyTorch
// goldens) and the float64 path of whole-model gradient parity. Written for
// clarity, not speed; reductions accumulate in double in both dtypes.
// Signatures and accumulation contracts are those of ops.h.
#pragma once
#include "ops/ops.h"

#define REF_DECLARE(S) \
    void ref_conv2d_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a); \
    void ref_conv2d_backward_##S(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x, \
                                 const Tensor *w, ConvArgs a); \
    void ref_linear_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b); \
    void ref_linear_backward_##S(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x, \
                                 const Tensor *w); \
    void ref_gemm_batched_##S(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g); \
    void ref_batchnorm_forward_##S(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x, \
                                   const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var, \
                                   int training, double momentum, double eps); \
    void ref_batchnorm_backward_##S(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, \
                                    const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd, \
                                    const Tensor *gamma, int training); \
    void ref_layernorm_forward_##S(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x, \
                                   const Tensor *w, const Tensor *b, double eps); \
    void ref_layernorm_backward_##S(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x, \
                                    const Tensor *save_mean, const Tensor *save_rstd, const Tensor *w); \
    void ref_gelu_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x); \
    void ref_gelu_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x); \
    void ref_relu_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x); \
    void ref_relu_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y); \
    void ref_sigmoid_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x); \
    void ref_sigmoid_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y); \
    void ref_softplus_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x); \
    void ref_softplus_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x); \
    void ref_clamp_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi); \
    void ref_clamp_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi); \
    void ref_add_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b); \
    void ref_axpy_##S(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x); \
    void ref_scale_inplace_##S(OpCtx *ctx, Tensor *y, double alpha); \
    void ref_fill_##S(OpCtx *ctx, Tensor *y, double v); \
    void ref_copy_##S(OpCtx *ctx, Tensor *dst, const Tensor *src); \
    void ref_rows_add_bcast_##S(OpCtx *ctx, Tensor *y, const Tensor *b); \
    void ref_rows_sum_##S(OpCtx *ctx, Tensor *db, const Tensor *dy); \
    void ref_maxnorm_forward_##S(OpCtx *ctx, Tensor *y, Tensor *save_max, const Tensor *x, double eps); \
    void ref_maxnorm_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_max, \
                                  double eps); \
    void ref_mul_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s); \
    void ref_mul_backward_##S(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s); \
    void ref_resize_bilinear_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w); \
    void ref_resize_bilinear_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w); \
    void ref_avgpool_global_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x); \
    void ref_avgpool_global_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy); \
    void ref_channels_copy_##S(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate); \
    void ref_softmax_forward_##S(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner); \
    void ref_softmax_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L, \
                                  int64_t inner); \
    void ref_l2norm_forward_##S(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L, \
                                int64_t inner, double eps); \
    void ref_l2norm_backward_##S(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm, \
                                 int64_t outer, int64_t L, int64_t inner, double eps); \
    void ref_topk_rows_##S(OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k); \
    void ref_rows_gather_##S(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx); \
    void ref_rows_scatter_add_##S(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w); \
    void ref_rows_scatter_add_backward_##S(OpCtx *ctx, Tensor *dsrc, Tensor *dw, const Tensor *ddst, const Tensor *src, \
                                           const Tensor *idx, const Tensor *w); \
    void ref_rows_gather_sum_##S(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr, const Tensor *list, \
                                 const Tensor *w);

REF_DECLARE(f32)
REF_DECLARE(f64)

// The loss works in double whatever the maps' dtype (loss_ref.c): one function for both.
void ref_cod_loss(OpCtx *ctx, Tensor *terms, const CodLossGrad *g, const CodLossIn *in);
#define ref_cod_loss_f32 ref_cod_loss
#define ref_cod_loss_f64 ref_cod_loss

// Shape helpers shared by the reference and fast kernels.
// Mode of a broadcast multiply (ops.h mul_forward): x viewed as (N, P, C) and
// s indexed as n*sn + p*sp + c*sc.
typedef struct { int64_t N, P, C, sn, sp, sc; } MulBcast;
MulBcast mul_bcast_plan(const Tensor *x, const Tensor *s);
