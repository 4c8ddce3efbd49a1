// cuda.h — the CUDA backend's entry points (C linkage). Its kernels are cuda_<op>
// for the ops of ops_list.h, with ops_list.h's signatures and accumulation
// contracts; every tensor is in GPU memory, activations F32 or BF16, parameters,
// statistics and routing F32, indices I32. Kernels run on the GPU's compute stream
// (backend.cu), ordered with core's copies (core/device.h).
//
// The plug-in (build/libcamoxpert_cuda.so) exports one function,
// camoxpert_cuda_plugin (plugin.cu), whose CudaPlugin holds the kernel table and
// the entry points that are not ops; ops.c looks it up once and checks, when a GPU
// is opened, that no op's slot is empty.
//
// Files: plugin.cu (the table), backend.cu (devices, handles, memory hooks), conv.cu
// (cuDNN and direct convolutions), gemm.cu (cuBLASLt linear, batched GEMM), norm.cu
// (BatchNorm, LayerNorm), axisnorm.cu (softmax, l2norm, maxnorm), fused.cu
// (residual_scale, gelu_bias_backward), photo.cu (predict's photos in and masks out, nvJPEG),
// eltwise.cu (element-wise, broadcast,
// resampling, pooling, channels, top-k), moe.cu (routing decisions and plan), rows.cu
// (the MoE's row gathers and scatters), loss.cu (the CamoXpert loss), optim.cu (AdamW,
// gradient norm, EMA), nccl.cu (all-reduce over several GPUs); common.cuh and reduce.cuh
// the helpers they share.
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
#include "ops/backend.h"

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

// Photos in and masks out on the GPU, and JPEG decoding by nvJPEG (photo.cu; ops.h
// ops_photo_input, ops_mask_export, ops_jpeg_*).
void cuda_photo_input(OpCtx *ctx, Tensor *y, const Tensor *src, const Tensor *box, const float mean[3], const float std[3]);
void cuda_mask_export(OpCtx *ctx, Tensor *dst, const Tensor *logits, const Tensor *box);
cx_status cuda_jpeg_open(struct CudaState *s, void **dec, char *desc, size_t n);
int cuda_jpeg_supported(void *dec, const uint8_t *data, size_t n);
cx_status cuda_jpeg_decode(struct CudaState *s, void *dec, int n, const uint8_t *const *data, const size_t *len,
                           uint8_t *const *dst, const int *w, const int *h);
void cuda_jpeg_close(void *dec);
// The kernels: cuda_<op> for every op of ops_list.h.
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) void cuda_##name params;
#include "ops/ops_list.h"
#undef OP

// What the plug-in gives the program: the kernels and the GPU's other entry points.
typedef struct CudaPlugin {
    const char *op_list;       // ops_list_signature() of the build that made the plug-in
    const OpsBackend *ops;     // cuda_<op> in every slot whose kernel ops/cuda/ defines, else NULL
    int *conv_impl;            // &cuda_conv_impl
    const char *(*arch_list)(void);   // the architectures the plug-in was built for (camoxpert --version)
    int (*device_count)(char *why, size_t n);
    cx_status (*open)(struct CudaState **out, int gpu);
    void (*close)(struct CudaState *s);
    void (*describe)(const struct CudaState *s, char *buf, size_t n);
    void (*sync)(struct CudaState *s);
    void (*graph_begin)(struct CudaState *s);
    void *(*graph_end)(struct CudaState *s, char *why, size_t n);
    void (*graph_launch)(struct CudaState *s, void *exec);
    void (*graph_destroy)(void *exec);
    cx_status (*nccl_version)(int *version);
    cx_status (*nccl_unique_id)(unsigned char id[128]);
    cx_status (*nccl_open)(struct CudaState *st, void **comm, const unsigned char id[128], int rank, int world);
    cx_status (*nccl_allreduce_sum)(struct CudaState *st, void **comm, void *buf, int64_t n, double timeout_s,
                                    const volatile sig_atomic_t *stop);
    cx_status (*nccl_allreduce_start)(struct CudaState *st, void **comm, void *buf, int64_t n);
    cx_status (*nccl_wait)(struct CudaState *st, void **comm, double timeout_s, const volatile sig_atomic_t *stop);
    void (*nccl_close)(void *comm, int abort_it);
    void (*photo_input)(OpCtx *ctx, Tensor *y, const Tensor *src, const Tensor *box, const float mean[3], const float std[3]);
    void (*mask_export)(OpCtx *ctx, Tensor *dst, const Tensor *logits, const Tensor *box);
    cx_status (*jpeg_open)(struct CudaState *s, void **dec, char *desc, size_t n);
    int (*jpeg_supported)(void *dec, const uint8_t *data, size_t n);
    cx_status (*jpeg_decode)(struct CudaState *s, void *dec, int n, const uint8_t *const *data, const size_t *len,
                             uint8_t *const *dst, const int *w, const int *h);
    void (*jpeg_close)(void *dec);
} CudaPlugin;
// The plug-in's one exported function (the only name ops.c looks up).
const CudaPlugin *camoxpert_cuda_plugin(void);

#ifdef __cplusplus
}
#endif
