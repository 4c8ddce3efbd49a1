// cuda.h — the CUDA backend's entry points (C linkage; ops.c dispatches here
// when ctx->backend is OPS_CUDA). Signatures and accumulation contracts are
// ops.h's; every tensor is in GPU memory, activations F32 or BF16, parameters,
// statistics and routing F32, indices I32. Kernels run on the legacy default
// stream, so core's copies (core/device.h) are ordered with them.
//
// Files: backend.cu (devices, handles, memory hooks), conv.cu (cuDNN and direct
// convolutions), gemm.cu (cuBLASLt linear, batched GEMM), norm.cu (BatchNorm,
// LayerNorm, softmax, l2norm, maxnorm), eltwise.cu (element-wise, broadcast,
// resampling, pooling, channels, top-k, MoE rows), loss.cu (the CamoXpert loss),
// optim.cu (AdamW, gradient norm, EMA), nccl.cu (all-reduce over several GPUs).
#pragma once
#include "ops/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

int cuda_device_count(char *why, size_t n);
// The GPU code the plug-in was built with (the Makefile's GPU_ARCH): "sm_80 sm_86 sm_89 sm_90 compute_90".
const char *cuda_arch_list(void);
// Which convolution implementation runs: cuDNN with the direct kernels where it
// declines a shape (the default), or the direct kernels only (tests compare both).
enum { CUDA_CONV_AUTO = 0, CUDA_CONV_DIRECT };
extern int cuda_conv_impl;
cx_status cuda_open(struct CudaState **out, int gpu);
void cuda_close(struct CudaState *s);
void cuda_describe(const struct CudaState *s, char *buf, size_t n);
void cuda_sync(struct CudaState *s);
void cuda_graph_begin(struct CudaState *s);
void *cuda_graph_end(struct CudaState *s, char *why, size_t n);
void cuda_graph_launch(struct CudaState *s, void *exec);
void cuda_graph_destroy(void *exec);
// NCCL (nccl.cu; ops.h ops_nccl_*).
cx_status cuda_nccl_version(int *version);
cx_status cuda_nccl_unique_id(unsigned char id[128]);
cx_status cuda_nccl_open(struct CudaState *st, void **comm, const unsigned char id[128], int rank, int world);
cx_status cuda_nccl_allreduce_sum(struct CudaState *st, void **comm, void *buf, int64_t n, double timeout_s,
                                  const volatile sig_atomic_t *stop);
cx_status cuda_nccl_allreduce_start(struct CudaState *st, void **comm, void *buf, int64_t n);
cx_status cuda_nccl_wait(struct CudaState *st, void **comm, double timeout_s, const volatile sig_atomic_t *stop);
void cuda_nccl_close(void *comm, int abort_it);

void cuda_conv2d_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
void cuda_conv2d_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                          const Tensor *w, ConvArgs a);
void cuda_linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b);
void cuda_linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                          const Tensor *w);
void cuda_gemm_batched(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g);

void cuda_batchnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                            const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                            int training, double momentum, double eps);
void cuda_batchnorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *x,
                             const Tensor *save_mean, const Tensor *save_invstd, const Tensor *gamma, int training);
void cuda_batchnorm_relu_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                                 const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                                 int training, double momentum, double eps);
void cuda_batchnorm_relu_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                                  const Tensor *y, const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                                  const Tensor *gamma, int training);
void cuda_layernorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x,
                            const Tensor *w, const Tensor *b, double eps);
void cuda_layernorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                             const Tensor *save_mean, const Tensor *save_rstd, const Tensor *w);
void cuda_softmax_forward(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner);
void cuda_softmax_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L,
                           int64_t inner);
void cuda_l2norm_forward(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L,
                         int64_t inner, double eps);
void cuda_l2norm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm,
                          int64_t outer, int64_t L, int64_t inner, double eps);
void cuda_maxnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_max, const Tensor *x, double eps);
void cuda_maxnorm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_max,
                           double eps);

void cuda_gelu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cuda_gelu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
void cuda_relu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cuda_relu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y);
void cuda_sigmoid_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cuda_sigmoid_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y);
void cuda_softplus_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cuda_softplus_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
void cuda_clamp_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi);
void cuda_clamp_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi);
void cuda_add_forward(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b);
void cuda_axpy(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x);
void cuda_scale_inplace(OpCtx *ctx, Tensor *y, double alpha);
void cuda_fill(OpCtx *ctx, Tensor *y, double v);
void cuda_copy(OpCtx *ctx, Tensor *dst, const Tensor *src);
void cuda_mul_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s);
void cuda_mul_backward(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s);
void cuda_rows_add_bcast(OpCtx *ctx, Tensor *y, const Tensor *b);
void cuda_rows_sum(OpCtx *ctx, Tensor *db, const Tensor *dy);
void cuda_resize_bilinear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w);
void cuda_resize_bilinear_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w);
void cuda_avgpool_global_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void cuda_avgpool_global_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy);
void cuda_channels_copy(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate);
void cuda_topk_rows(OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k);
void cuda_rows_gather(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx);
void cuda_rows_scatter_add(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w);
void cuda_rows_scatter_add_backward(OpCtx *ctx, Tensor *dsrc, Tensor *dw, const Tensor *ddst, const Tensor *src,
                                    const Tensor *idx, const Tensor *w);
void cuda_rows_gather_sum(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr, const Tensor *list,
                          const Tensor *w);

void cuda_cod_loss(OpCtx *ctx, Tensor *terms, const CodLossGrad *g, const CodLossIn *in);

void cuda_adamw_update(OpCtx *ctx, Tensor *param, Tensor *m, Tensor *v, const Tensor *grad, const Tensor *gscale,
                       const AdamSeg *seg, int nseg, double beta1, double beta2, double eps);
void cuda_grad_norm_clip(OpCtx *ctx, Tensor *stats, const Tensor *x, const AdamSeg *seg, int nseg, double max_norm);
void cuda_ema_blend(OpCtx *ctx, Tensor *shadow, const Tensor *x, const EmaSeg *seg, int nseg);

#ifdef __cplusplus
}
#endif
