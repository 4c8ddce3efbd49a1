// gemm.c — linear layers and strided batched GEMM: oneDNN's matmul where it is
// built (matmul_dnnl.c; AVX-512 whatever OPENBLAS_CORETYPE says), else
// OpenBLAS sgemm.
// reference: torch.nn.functional.linear, torch.baddbmm.
// linear: x (R, C) · w (K, C)ᵀ + b, with R every leading axis flattened;
// backward dx += dy·w, dw += dyᵀ·x, db += Σ_r dy.
// dw's product is made apart (beta 0) and added once. sgemm with beta 1 adds
// each block of R rows into dw as it goes once R passes the block depth of the
// kernel OpenBLAS picked for the CPU (384 to 1024 rows with 0.3.21's x86 kernels),
// so a second micro-batch accumulated into dw would round differently from the
// same micro-batch on another rank, whose whole gradient the all-reduce adds
// (issue 35: `train --procs 2` against one process with accumulation).
// Under OpCtx.cpu_bf16 a product large enough to gain (bf16.c) runs oneDNN's bf16
// matmul on bf16 copies of A and B, the same strides over the same span.
#include "cpu.h"
#include <cblas.h>
#include <string.h>

CpuImpl cpu_gemm_impl = CPU_IMPL_AUTO;

#if HAVE_DNNL
// The bf16 copy of a strided operand X (batch, rows, cols) — element (b, r, c) at b·s + r·ld + c,
// or b·s + r + c·ld when transposed — over its whole span, gaps included.
static const uint16_t *bf16_operand(OpCtx *ctx, const float *X, int t, int rows, int cols, int ld, int64_t s,
                                    int batch) {
    int64_t span = (int64_t)(batch - 1) * s + (t ? (int64_t)(cols - 1) * ld + rows : (int64_t)(rows - 1) * ld + cols);
    return cpu_bf16_copy(ctx, X, span);
}
#endif

// C (batch, M, N) = alpha·op(A)·op(B) + beta·C (+ bias (N) on every row). Ah, Bh: bf16 copies of
// A and B the caller already made (bf16_operand's span), or NULL.
static void gemm(OpCtx *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, int64_t sA,
                 const float *B, int ldb, int64_t sB, float beta, float *C, int ldc, int64_t sC, int batch,
                 const float *bias, const uint16_t *Ah, const uint16_t *Bh) {
#if HAVE_DNNL
    if (cpu_gemm_impl != CPU_IMPL_OWN && cpu_bf16_wanted(ctx, M, N, K)) {
        ArenaMark m = arena_mark(ctx->scratch);
        if (!Ah) Ah = bf16_operand(ctx, A, ta, M, K, lda, sA, batch);
        if (!Bh) Bh = bf16_operand(ctx, B, tb, K, N, ldb, sB, batch);
        int done = cpu_matmul_dnnl(ctx, 1, ta, tb, M, N, K, alpha, Ah, lda, sA, Bh, ldb, sB, beta, C, ldc, sC, batch,
                                   bias);
        arena_release(ctx->scratch, m);
        if (done) return;
    }
    // Where oneDNN runs its AVX2 kernels, OpenBLAS's (Haswell) sgemm is ~1.2x its
    // matmul on the Aᵀ·B products (the linear layers' weight gradients: 140-152
    // against 113-128 GFLOP/s, `camoxpert_bench linear`, docs/PERF.md)
    const int dnnl = cpu_gemm_impl == CPU_IMPL_DNNL || (cpu_gemm_impl == CPU_IMPL_AUTO && !(ta && !cpu_dnnl_avx512()));
    if (dnnl &&
        cpu_matmul_dnnl(ctx, 0, ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch, bias))
        return;
#else
    (void)Ah, (void)Bh;
#endif
    if (bias) {   // C = bias, then accumulate into it
        CX_ASSERT(batch == 1 && beta == 0, "gemm: bias only on a single product with beta = 0");
#pragma omp parallel for schedule(static) if ((int64_t)M * N > 65536)
        for (int64_t r = 0; r < M; r++) memcpy(C + r * ldc, bias, sizeof(float) * (size_t)N);
        beta = 1;
    }
    for (int i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                    A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
}

void cpu_linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b) {
    int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    CX_ASSERT(x->shape[x->ndim - 1] == C && tensor_numel(y) == R * K, "linear: shapes");
    gemm(ctx, 0, 1, (int)R, (int)K, (int)C, 1, tensor_f32(x), (int)C, 0, tensor_f32(w), (int)C, 0, 0,
         tensor_f32(y), (int)K, 0, 1, b ? tensor_f32(b) : NULL, NULL, NULL);
}

void cpu_linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                         const Tensor *w) {
    int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    const float *dyp = tensor_f32(dy);   // (R, K)
    ArenaMark m = arena_mark(ctx->scratch);
    // one bf16 copy of dy for both products when either runs in bf16
    const uint16_t *dyh = (dx && cpu_bf16_wanted(ctx, R, C, K)) || (dw && cpu_bf16_wanted(ctx, K, C, R))
                        ? cpu_bf16_copy(ctx, dyp, R * K) : NULL;
    if (dx)   // beta 0 for dx's first write (ops.h)
        gemm(ctx, 0, 0, (int)R, (int)C, (int)K, 1, dyp, (int)K, 0, tensor_f32(w), (int)C, 0,
             op_overwrites(ctx, dx) ? 0.0f : 1.0f, tensor_f32(dx), (int)C, 0, 1, NULL, dyh, NULL);
    if (dw) {
        float *g = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(K * C));   // (K, C) this call's dyᵀ·x
        gemm(ctx, 1, 0, (int)K, (int)C, (int)R, 1, dyp, (int)K, 0, tensor_f32(x), (int)C, 0, 0, g, (int)C, 0, 1, NULL,
             dyh, NULL);
        float *d = tensor_f32(dw);
#pragma omp parallel for simd schedule(static) if (K * C > 65536)
        for (int64_t i = 0; i < K * C; i++) d[i] += g[i];
    }
    arena_release(ctx->scratch, m);
    if (db) cpu_colsum_add(ctx, tensor_f32(db), dyp, R, K, K);
}

// The outer batch level is a loop; the inner one is the strided batch of one call.
void cpu_gemm_batched(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g) {
    for (int i = 0; i < g->nb1; i++)
        gemm(ctx, g->ta, g->tb, g->M, g->N, g->K, (float)g->alpha, tensor_f32(A) + g->offa + i * g->sa1, g->lda, g->sa2,
             tensor_f32(B) + g->offb + i * g->sb1, g->ldb, g->sb2, (float)g->beta, tensor_f32(C) + g->offc + i * g->sc1,
             g->ldc, g->sc2, g->nb2, NULL, NULL, NULL);
}
