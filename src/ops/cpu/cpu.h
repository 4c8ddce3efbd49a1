// cpu.h — the fast float32 CPU kernels (OpenMP; OpenBLAS sgemm, oneDNN where built).
// Signatures and accumulation contracts are those of ops_list.h; the CPU backend's
// table (backend.c) holds them, and the float32 reference kernel of each op whose
// CPU column is REF.
#pragma once
#include "ops/ops.h"

// cpu_<op> of every op whose CPU column in ops_list.h is CPU. The optimizer's
// kernels (optim.c) take float32 and float64 tables and serve the reference
// backend too.
#define CPU_DECL_CPU(name, params) void cpu_##name params;
#define CPU_DECL_REF(name, params)
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) CPU_DECL_##cpu(name, params)
#include "ops/ops_list.h"
#undef OP

// Internal helpers shared by the CPU kernels.
// Depthwise conv2d (groups == C == K), direct NHWC kernels (dwconv.c).
void cpu_dwconv_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
void cpu_dwconv_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                         const Tensor *w, ConvArgs a);
// conv2d through oneDNN (conv_dnnl.c, HAVE_DNNL only): each returns 0, having
// done nothing, where oneDNN has no implementation for the shape. With xb/dyb (the
// bf16 copies of x and dy, cpu_bf16_copy) the bf16 primitive runs: weights reordered
// into bf16, float32 accumulation and outputs; NULL: float32.
int cpu_conv_dnnl_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a,
                          const uint16_t *xb);
int cpu_conv_dnnl_backward_data(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *w,
                                ConvArgs a, const uint16_t *dyb);
int cpu_conv_dnnl_backward_weights(OpCtx *ctx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                                   const Tensor *w, ConvArgs a, const uint16_t *dyb, const uint16_t *xb);
// Whether oneDNN runs its AVX-512 kernels (dnnl_get_effective_cpu_isa; AVX2-only
// hosts such as AMD Zen 3, or ONEDNN_MAX_CPU_ISA=AVX2, give 0). HAVE_DNNL only.
int cpu_dnnl_avx512(void);
// C (batch, M, N) = alpha·op(A)·op(B) + beta·C (+ bias (N) broadcast over rows)
// through oneDNN's matmul (matmul_dnnl.c, HAVE_DNNL only); op(X) = Xᵀ when t*.
// A and B are float32, or with bf16 set both bf16 (cpu_bf16_copy; float32
// accumulation, C and bias float32). Returns 0, having done nothing, where oneDNN
// has no implementation.
int cpu_matmul_dnnl(OpCtx *ctx, int bf16, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                    int64_t sA, const void *B, int ldb, int64_t sB, float beta, float *C, int ldc, int64_t sC,
                    int batch, const float *bias);
// ---- bf16 (bf16.c): OpCtx.cpu_bf16 ----
// ops_cpu_bf16 without the words: AMX-BF16 or AVX512-BF16 under oneDNN.
int cpu_bf16_native(void);
// Whether a product of rows × outs outputs, each a sum of terms products, runs in bf16
// under ctx: ctx->cpu_bf16, a native CPU, and large enough in every direction to earn
// the conversions (the thin float32 ones the GPU keeps — the router, one-channel
// heads — stay float32).
int cpu_bf16_wanted(const OpCtx *ctx, int64_t rows, int64_t outs, int64_t terms);
// Tests: every product under ctx->cpu_bf16 runs in bf16, whatever its size (the op
// table's shapes are all below the rule's).
extern int cpu_bf16_all;
// src (n floats) rounded to bf16 (nearest even) into ctx->scratch.
uint16_t *cpu_bf16_copy(OpCtx *ctx, const float *src, int64_t n);
// Which implementation runs: CPU_IMPL_AUTO (the per-shape choice in conv.c and
// gemm.c), or one forced by the benchmark and the tests to compare them:
// camoxpert's own kernels (im2col + sgemm, direct depthwise; OpenBLAS sgemm for
// linear and gemm_batched) or oneDNN.
typedef enum { CPU_IMPL_AUTO, CPU_IMPL_OWN, CPU_IMPL_DNNL } CpuImpl;
extern CpuImpl cpu_conv_impl, cpu_gemm_impl;
// dst[k] += Σ_r src[r*ld + k] for r < R, k < K (column sums, e.g. bias gradients; reduce.c).
void cpu_colsum_add(OpCtx *ctx, float *dst, const float *src, int64_t R, int64_t K, int64_t ld);
