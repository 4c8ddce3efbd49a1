// gemm.c — linear layers and strided batched GEMM on OpenBLAS sgemm.
// reference: torch.nn.functional.linear, torch.baddbmm.
// linear: x (R, C) · w (K, C)ᵀ + b, with R every leading axis flattened;
// backward dx += dy·w, dw += dyᵀ·x, db += Σ_r dy.
#include "cpu.h"
#include <cblas.h>
#include <string.h>

void cpu_linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b) {
    int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    CX_ASSERT(x->shape[x->ndim - 1] == C && tensor_numel(y) == R * K, "linear: shapes");
    float *yp = tensor_f32(y);   // (R, K)
    float beta = 0;
    if (b) {
        const float *bp = tensor_f32(b);
#pragma omp parallel for schedule(static) if (R * K > 65536)
        for (int64_t r = 0; r < R; r++) memcpy(yp + r * K, bp, sizeof(float) * (size_t)K);
        beta = 1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)K, (int)C, 1.0f, tensor_f32(x), (int)C,
                tensor_f32(w), (int)C, beta, yp, (int)K);
}

void cpu_linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                         const Tensor *w) {
    int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    const float *dyp = tensor_f32(dy);   // (R, K)
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)K, 1.0f, dyp, (int)K,
                    tensor_f32(w), (int)C, 1.0f, tensor_f32(dx), (int)C);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)C, (int)R, 1.0f, dyp, (int)K, tensor_f32(x),
                    (int)C, 1.0f, tensor_f32(dw), (int)C);
    if (db) cpu_colsum_add(ctx, tensor_f32(db), dyp, R, K, K);
}

void cpu_gemm_batched(int ta, int tb, int M, int N, int K, double alpha, const void *A, int lda, int64_t sA,
                      const void *B, int ldb, int64_t sB, double beta, void *C, int ldc, int64_t sC, int batch) {
    for (int i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                    (float)alpha, (const float *)A + i * sA, lda, (const float *)B + i * sB, ldb, (float)beta,
                    (float *)C + i * sC, ldc);
}
