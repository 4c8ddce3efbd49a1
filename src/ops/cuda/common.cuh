// common.cuh — what every CUDA kernel file of the backend shares: the per-GPU
// state (CudaState), error checks, dtype-generic element access, grid sizing
// and deterministic block reductions.
//
// dtypes are a run-time property of a Tensor here: ldf/stf read and write one
// element of an F32 or BF16 buffer as float (the branch is uniform across a
// warp, so it costs a few instructions, not divergence). Kernels compute in
// float32 whatever they read. Reductions never use atomics: a fixed block size
// and a fixed tree make every result bit-reproducible run to run.
//
//   __global__ void k(float *y, const void *x, int xdt, int64_t n) {
//       CUDA_LOOP(i, n) y[i] = 2 * ldf(x, xdt, i);
//   }
//   k<<<cuda_grid(n), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(...);
//   CUDA_KCHECK("k");
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublasLt.h>
#include <cudnn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
extern "C" {
#include "ops/ops.h"
}
#include "ops/cuda/cuda.h"

#define CUDA_BLOCK 256

struct ConvPlan;   // conv.cu: one cached cuDNN algorithm choice per shape and pass

struct CudaState {
    int device;
    cudaStream_t stream;          // the compute stream: created blocking, so ordered with core's synchronous copies
    cudaDeviceProp prop;
    cublasLtHandle_t lt;
    void *lt_ws;                  // cuBLASLt workspace (persistent)
    size_t lt_ws_bytes;
    cudnnHandle_t dnn;
    struct ConvPlan *plans;       // conv.cu's algorithm cache
    int n_plans, cap_plans;
};

// Fatal CUDA/cuDNN/cuBLASLt errors: a kernel or library call that fails is a
// bug or a broken device, not bad user input. Prints where and what, aborts.
[[noreturn]] void cuda_fatal(const char *file, int line, const char *what, const char *msg);
#define CUDA_CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) \
    cuda_fatal(__FILE__, __LINE__, #x, cudaGetErrorString(e_)); } while (0)
#define CUDNN_CHECK(x) do { cudnnStatus_t e_ = (x); if (e_ != CUDNN_STATUS_SUCCESS) \
    cuda_fatal(__FILE__, __LINE__, #x, cudnnGetErrorString(e_)); } while (0)
#define CUBLAS_CHECK(x) do { cublasStatus_t e_ = (x); if (e_ != CUBLAS_STATUS_SUCCESS) { \
    char m_[32]; snprintf(m_, sizeof m_, "cublas status %d", (int)e_); cuda_fatal(__FILE__, __LINE__, #x, m_); } } while (0)
// After a kernel launch: launch errors (bad configuration) surface here.
#define CUDA_KCHECK(name) CUDA_CHECK(cudaGetLastError())

static inline cudaStream_t cuda_stream(const OpCtx *ctx) { return ctx->cuda->stream; }

// Grid for a grid-stride loop over n elements (at most 65536 blocks of CUDA_BLOCK).
static inline unsigned cuda_grid(int64_t n) {
    int64_t b = (n + CUDA_BLOCK - 1) / CUDA_BLOCK;
    if (b < 1) b = 1;
    if (b > 65536) b = 65536;
    return (unsigned)b;
}
#define CUDA_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n); i += (int64_t)gridDim.x * blockDim.x)
// A grid-stride launch's configuration on the caller's stream (a function with `ctx` in scope).
#define LAUNCH_1D(n) cuda_grid(n), CUDA_BLOCK, 0, cuda_stream(ctx)

// Smallest power of two >= v, at most cap (cap a power of two).
static inline int pow2_at_least(int64_t v, int cap) {
    int p = 1;
    while (p < cap && p < v) p <<= 1;
    return p;
}

// Blocks for one warp per item over n items; WARP_ID() is a thread's item.
static inline unsigned warps_grid(int64_t n) {
    int64_t b = (n * 32 + CUDA_BLOCK - 1) / CUDA_BLOCK;
    CX_ASSERT(b >= 1 && b <= INT32_MAX, "warp grid: %lld blocks", (long long)b);
    return (unsigned)b;
}
#define WARP_ID() (((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5)

// One element of an F32 or BF16 buffer, as float.
__device__ __forceinline__ float ldf(const void *p, int dt, int64_t i) {
    return dt == DT_BF16 ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}
__device__ __forceinline__ void stf(void *p, int dt, int64_t i, float v) {
    if (dt == DT_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
    else ((float *)p)[i] = v;
}
// p[i] += v
__device__ __forceinline__ void addf(void *p, int dt, int64_t i, float v) { stf(p, dt, i, ldf(p, dt, i) + v); }
// p[i] += v when acc, else p[i] = v + 0: an accumulated output written by its first
// writer (ops.h, first-write gradients). The + 0 makes a −0 into +0, as adding v to a
// zero-filled buffer does, so both ways give the same bits.
__device__ __forceinline__ void putf(void *p, int dt, int64_t i, float v, int acc) {
    if (acc) stf(p, dt, i, ldf(p, dt, i) + v);
    else stf(p, dt, i, v + 0.0f);
}
// Host side: 1 when the kernel adds into t, 0 when it writes it (op_overwrites).
static inline int cuda_acc(const OpCtx *ctx, const Tensor *t) { return !op_overwrites(ctx, t); }

// ---- 16-byte vectors ------------------------------------------------------------------------------
// When the tensors of a memory-bound kernel share one dtype, the element count (or the
// channel count C) is a multiple of the vector width and the data are 16-byte aligned,
// its passes move 16 bytes per load (8 bf16 or 4 float32 values) and index in 32 bits;
// the arithmetic per element is the scalar kernel's (BatchNorm, the element-wise ops).
template <int DT> struct VecW { static constexpr int N = DT == DT_BF16 ? 8 : 4; };

template <int DT>
static __device__ __forceinline__ void vld(float *out, const void *p, int64_t v) {
    uint4 raw = ((const uint4 *)p)[v];
    if (DT == DT_BF16) {
        const __nv_bfloat16 *h = (const __nv_bfloat16 *)&raw;
#pragma unroll
        for (int k = 0; k < 8; k++) out[k] = __bfloat162float(h[k]);
    } else {
        const float *f = (const float *)&raw;
#pragma unroll
        for (int k = 0; k < 4; k++) out[k] = f[k];
    }
}

template <int DT>
static __device__ __forceinline__ void vst(void *p, int64_t v, const float *in) {
    uint4 raw;
    if (DT == DT_BF16) {
        __nv_bfloat16 *h = (__nv_bfloat16 *)&raw;
#pragma unroll
        for (int k = 0; k < 8; k++) h[k] = __float2bfloat16(in[k]);
    } else {
        float *f = (float *)&raw;
#pragma unroll
        for (int k = 0; k < 4; k++) f[k] = in[k];
    }
    ((uint4 *)p)[v] = raw;
}

// Whether the tensors (NULL: absent) allow the vector path for dtype dt and C channels.
static inline bool vec_ok(int dt, int64_t C, int64_t n, const void *a, const void *b, const void *c) {
    const int w = dt == DT_BF16 ? 8 : dt == DT_F32 ? 4 : 0;
    return w && C % w == 0 && n / w < (1 << 30) && !(((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15);
}

// Host-side check that a tensor is a float GPU tensor this backend handles.
static inline int cuda_fdt(const Tensor *t, const char *op) {
    if (t->dtype != DT_F32 && t->dtype != DT_BF16) {
        fprintf(stderr, "internal error: %s: dtype %s on the CUDA backend (F32 or BF16)\n", op, dtype_name(t->dtype));
        abort();
    }
    return (int)t->dtype;
}

// Reductions over a warp and over the block (blockDim.x a multiple of 32, at most
// 1024) with an associative op; every thread gets the result. Fixed order:
// deterministic. warp_sum/block_sum take float, or double where a sum of many terms
// cancels (as the CPU kernels accumulate), or long long for exact counts.
struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T identity, Op op) {
    __shared__ T part[32];
    __shared__ T total;
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads();   // part[] may still be read by a previous call
    if (lane == 0) part[wid] = v;
    __syncthreads();
    if (wid == 0) {
        T s = lane < (int)(blockDim.x >> 5) ? part[lane] : identity;
        s = warp_reduce(s, op);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}
template <typename T> __device__ __forceinline__ T warp_sum(T v) { return warp_reduce(v, SumOp()); }
template <typename T> __device__ __forceinline__ T block_sum(T v) { return block_reduce(v, (T)0, SumOp()); }

// Scratch from ctx->scratch (GPU memory); release with arena_release.
static inline void *cuda_scratch(OpCtx *ctx, size_t bytes) { return arena_alloc(ctx->scratch, bytes); }

// Shared by the kernel files (gemm.cu):
// the float32 master weight w in operand dtype dt (w itself, or a converted copy in scratch)
const void *cuda_weight_as(OpCtx *ctx, const Tensor *w, cx_dtype dt);
// dst (K) F32 += Σ_r src[r·ld + k] over R rows, deterministically
void cuda_colsum_add(OpCtx *ctx, float *dst, const void *src, cx_dtype dt, int64_t R, int64_t K, int64_t ld);
// y (R,K) += b (K)
void cuda_bias_add(OpCtx *ctx, Tensor *y, const Tensor *b);
