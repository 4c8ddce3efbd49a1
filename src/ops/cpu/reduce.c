// reduce.c — column sums, the reduction the CPU kernels share: bias gradients of
// convolutions (conv.c, dwconv.c) and linear layers (gemm.c), and the global
// average pool (eltwise.c). Its own file, so that dwconv.c does not call back
// into conv.c, which calls it.
#include "cpu.h"

void cpu_colsum_add(OpCtx *ctx, float *dst, const float *src, int64_t R, int64_t K, int64_t ld) {
    // Each thread sums a block of rows into its own partial vector (double), then
    // the partials are summed in thread order (deterministic for a fixed thread
    // count) and added to dst once: one rounding per call, so micro-batches
    // accumulated into a gradient add as the all-reduce adds whole ones (gemm.c).
    int nt = cx_threads_get();
    if (R < 256) nt = 1;
    ArenaMark m = arena_mark(ctx->scratch);
    double *part = arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * K));   // (nt, K)
#pragma omp parallel num_threads(nt)
    {
        int t, T;
        cx_thread_team(&t, &T);
        double *p = part + t * K;
        int64_t lo = R * t / T, hi = R * (t + 1) / T;
        for (int64_t r = lo; r < hi; r++) {
            const float *s = src + r * ld;
#pragma omp simd
            for (int64_t k = 0; k < K; k++) p[k] += s[k];
        }
    }
    for (int t = 1; t < nt; t++)
        for (int64_t k = 0; k < K; k++) part[k] += part[t * K + k];
    for (int64_t k = 0; k < K; k++) dst[k] += (float)part[k];
    arena_release(ctx->scratch, m);
}
