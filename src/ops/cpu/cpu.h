// cpu.h — the fast float32 CPU kernels (OpenMP; OpenBLAS sgemm, oneDNN where built). Signatures
// and accumulation contracts are those of ops.h; ops.c routes OPS_CPU calls here. Ops not declared here use their float32 reference
// kernel as the fast path (see ops.c).
#pragma once
#include "ops/ops.h"

void cpu_conv2d_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
void cpu_conv2d_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
    const Tensor *w, ConvArgs a);
void cpu_linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b);
void cpu_linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
    const Tensor *w);
void cpu_gemm_batched(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g);
void cpu_batchnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
    const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
    int training, double momentum, double eps);
void cpu_batchnorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
    const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
    const Tensor *gamma, int training);
void cpu_batchnorm_relu_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                                const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                                int training, double momentum, double eps);
void cpu_batchnorm_relu_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                                 const Tensor *y, const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                                 const Tensor *gamma, int training);
void cpu_layernorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x,
    const Tensor *w, const Tensor *b, double eps);
void cpu_layernorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
    const Tensor *save_mean, const Tensor *save_rstd, const Tensor *w);
void cpu_l2norm_forward(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L,
    int64_t inner, double eps);
void cpu_l2norm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm,
    int64_t outer, int64_t L, int64_t inner, double eps);
void cpu_gelu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cpu_gelu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
void cpu_relu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cpu_relu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y);
void cpu_sigmoid_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cpu_sigmoid_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y);
void cpu_softplus_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cpu_softplus_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
void cpu_clamp_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi);
void cpu_clamp_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi);
void cpu_add_forward(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b);
void cpu_axpy(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x);
void cpu_scale_inplace(OpCtx *ctx, Tensor *y, double alpha);
void cpu_fill(OpCtx *ctx, Tensor *y, double v);
void cpu_mul_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s);
void cpu_mul_backward(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s);
void cpu_resize_bilinear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w);
void cpu_resize_bilinear_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w);
void cpu_avgpool_global_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cpu_avgpool_global_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy);
void cpu_channels_copy(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate);
void cpu_softmax_forward(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner);
void cpu_softmax_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L,
    int64_t inner);
// The optimizer's kernels, for float32 and float64 tables (optim.c); they serve the
// reference backend too.
void cpu_adamw_update(OpCtx *ctx, Tensor *param, Tensor *m, Tensor *v, const Tensor *grad, const Tensor *gscale,
    const AdamSeg *seg, int nseg, double beta1, double beta2, double eps);
void cpu_grad_norm_clip(OpCtx *ctx, Tensor *stats, const Tensor *x, const AdamSeg *seg, int nseg, double max_norm);
void cpu_ema_blend(OpCtx *ctx, Tensor *shadow, const Tensor *x, const EmaSeg *seg, int nseg);

// Internal helpers shared by the CPU kernels.
// Depthwise conv2d (groups == C == K), direct NHWC kernels (dwconv.c).
void cpu_dwconv_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
void cpu_dwconv_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                         const Tensor *w, ConvArgs a);
// conv2d through oneDNN (conv_dnnl.c, HAVE_DNNL only): each returns 0, having
// done nothing, where oneDNN has no implementation for the shape.
int cpu_conv_dnnl_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
int cpu_conv_dnnl_backward_data(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *w,
                                ConvArgs a);
int cpu_conv_dnnl_backward_weights(OpCtx *ctx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                                   const Tensor *w, ConvArgs a);
// Whether oneDNN runs its AVX-512 kernels (dnnl_get_effective_cpu_isa; AVX2-only
// hosts such as AMD Zen 3, or ONEDNN_MAX_CPU_ISA=AVX2, give 0). HAVE_DNNL only.
int cpu_dnnl_avx512(void);
// C (batch, M, N) = alpha·op(A)·op(B) + beta·C (+ bias (N) broadcast over rows)
// through oneDNN's matmul (matmul_dnnl.c, HAVE_DNNL only); op(X) = Xᵀ when t*.
// Returns 0, having done nothing, where oneDNN has no implementation.
int cpu_matmul_dnnl(OpCtx *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, int64_t sA,
                    const float *B, int ldb, int64_t sB, float beta, float *C, int ldc, int64_t sC, int batch,
                    const float *bias);
// Which implementation runs: CPU_IMPL_AUTO (the per-shape choice in conv.c and
// gemm.c), or one forced by the benchmark and the tests to compare them:
// camoxpert's own kernels (im2col + sgemm, direct depthwise; OpenBLAS sgemm for
// linear and gemm_batched) or oneDNN.
typedef enum { CPU_IMPL_AUTO, CPU_IMPL_OWN, CPU_IMPL_DNNL } CpuImpl;
extern CpuImpl cpu_conv_impl, cpu_gemm_impl;
// dst[k] += Σ_r src[r*ld + k] for r < R, k < K (column sums, e.g. bias gradients).
void cpu_colsum_add(OpCtx *ctx, float *dst, const float *src, int64_t R, int64_t K, int64_t ld);
