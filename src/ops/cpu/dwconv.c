// dwconv.c — direct depthwise conv2d (groups == C == K, one filter per channel)
// on NHWC, forward and backward. reference: F.conv2d(x, w, groups=C).
// EdgeNeXt's conv encoders run depthwise 3/5/7/9 convolutions at every stage;
// as a GEMM they have an inner dimension of only kh·kw, so they are written
// directly: the weight is transposed to (kh, kw, C) and every loop runs over
// contiguous channels in blocks of DW_CB, accumulating in registers over all
// taps. The op is memory-bound; the target is a fraction of copy bandwidth.
#include "cpu.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DW_CB 64   // channels per register block (4 AVX-512 or 8 AVX2 vectors)

typedef struct { int64_t N, H, W, C, kh, kw, Ho, Wo; int s, p, d; } DwGeom;

static DwGeom dw_geom(const Tensor *x, const Tensor *w, const Tensor *y, ConvArgs a) {
    DwGeom g = { T_N(x), T_H(x), T_W(x), T_C(x), w->shape[2], w->shape[3], T_H(y), T_W(y), a.stride, a.pad, a.dil };
    return g;
}

// (C, 1, kh, kw) -> (kh, kw, C)
static float *dw_w_hwc(OpCtx *ctx, const Tensor *w) {
    int64_t C = w->shape[0], T = w->shape[2] * w->shape[3];
    float *wt = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(C * T));   // (kh, kw, C)
    for (int64_t c = 0; c < C; c++)
        for (int64_t t = 0; t < T; t++) wt[t * C + c] = tensor_f32(w)[c * T + t];
    return wt;
}

void cpu_dwconv_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a) {
    DwGeom g = dw_geom(x, w, y, a);
    ArenaMark m = arena_mark(ctx->scratch);
    const float *wt = dw_w_hwc(ctx, w), *xp = tensor_f32(x), *bp = b ? tensor_f32(b) : NULL;
    float *yp = tensor_f32(y);
    int64_t C = g.C;
#pragma omp parallel for schedule(static) collapse(2)
    for (int64_t n = 0; n < g.N; n++)
        for (int64_t oh = 0; oh < g.Ho; oh++) {
            int64_t i0 = 0, i1 = g.kh;   // taps whose input row is inside the image
            while (i0 < i1 && oh * g.s - g.p + i0 * g.d < 0) i0++;
            while (i1 > i0 && oh * g.s - g.p + (i1 - 1) * g.d >= g.H) i1--;
            for (int64_t ow = 0; ow < g.Wo; ow++) {
                int64_t j0 = 0, j1 = g.kw;
                while (j0 < j1 && ow * g.s - g.p + j0 * g.d < 0) j0++;
                while (j1 > j0 && ow * g.s - g.p + (j1 - 1) * g.d >= g.W) j1--;
                float *yr = yp + ((n * g.Ho + oh) * g.Wo + ow) * C;
                int64_t xb = ((n * g.H + oh * g.s - g.p) * g.W + ow * g.s - g.p) * C;   // tap (0,0); may lie outside
                for (int64_t c0 = 0; c0 < C; c0 += DW_CB) {
                    int64_t cb = C - c0 < DW_CB ? C - c0 : DW_CB;
                    float acc[DW_CB];
                    for (int64_t c = 0; c < cb; c++) acc[c] = bp ? bp[c0 + c] : 0.0f;
                    for (int64_t i = i0; i < i1; i++)
                        for (int64_t j = j0; j < j1; j++) {
                            const float *xr = xp + xb + (i * g.d * g.W + j * g.d) * C + c0, *wr = wt + (i * g.kw + j) * C + c0;
                            if (cb == DW_CB) {
#pragma omp simd
                                for (int64_t c = 0; c < DW_CB; c++) acc[c] += xr[c] * wr[c];
                            } else {
                                for (int64_t c = 0; c < cb; c++) acc[c] += xr[c] * wr[c];
                            }
                        }
                    memcpy(yr + c0, acc, sizeof(float) * (size_t)cb);
                }
            }
        }
    arena_release(ctx->scratch, m);
}

void cpu_dwconv_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                         const Tensor *w, ConvArgs a) {
    DwGeom g = dw_geom(x, w, dy, a);
    ArenaMark m = arena_mark(ctx->scratch);
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy);
    int64_t C = g.C, T = g.kh * g.kw;
    if (db) cpu_colsum_add(ctx, tensor_f32(db), dyp, g.N * g.Ho * g.Wo, C, C);
    if (dx) {
        // Gather form: each input pixel sums the output pixels its taps reach,
        // so threads write disjoint rows of dx.
        const float *wt = dw_w_hwc(ctx, w);   // (kh, kw, C)
        float *dxp = tensor_f32(dx);
#pragma omp parallel for schedule(static) collapse(2)
        for (int64_t n = 0; n < g.N; n++)
            for (int64_t ih = 0; ih < g.H; ih++)
                for (int64_t iw = 0; iw < g.W; iw++) {
                    float *dr = dxp + ((n * g.H + ih) * g.W + iw) * C;
                    for (int64_t c0 = 0; c0 < C; c0 += DW_CB) {
                        int64_t cb = C - c0 < DW_CB ? C - c0 : DW_CB;
                        float acc[DW_CB];
                        memcpy(acc, dr + c0, sizeof(float) * (size_t)cb);
                        for (int64_t i = 0; i < g.kh; i++) {
                            int64_t hn = ih + g.p - i * g.d;   // = oh·s
                            if (hn < 0 || hn % g.s || hn / g.s >= g.Ho) continue;
                            for (int64_t j = 0; j < g.kw; j++) {
                                int64_t wn = iw + g.p - j * g.d;
                                if (wn < 0 || wn % g.s || wn / g.s >= g.Wo) continue;
                                const float *d = dyp + ((n * g.Ho + hn / g.s) * g.Wo + wn / g.s) * C + c0;
                                const float *wr = wt + (i * g.kw + j) * C + c0;
                                if (cb == DW_CB) {
#pragma omp simd
                                    for (int64_t c = 0; c < DW_CB; c++) acc[c] += d[c] * wr[c];
                                } else {
                                    for (int64_t c = 0; c < cb; c++) acc[c] += d[c] * wr[c];
                                }
                            }
                        }
                        memcpy(dr + c0, acc, sizeof(float) * (size_t)cb);
                    }
                }
    }
    if (dw) {
        // Each thread sums its output rows into a float row buffer, flushed into
        // its own double partial after every row (accuracy over large maps);
        // partials are added in thread order.
        int nt = cx_threads_get();
        double *part = arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * T * C));   // (nt, kh, kw, C)
        float *rowbuf = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(nt * T * C));   // (nt, kh, kw, C)
#pragma omp parallel num_threads(nt)
        {
#ifdef _OPENMP
            int t = omp_get_thread_num(), nth = omp_get_num_threads();
#else
            int t = 0, nth = 1;
#endif
            double *pp = part + (int64_t)t * T * C;
            float *rb = rowbuf + (int64_t)t * T * C;
            int64_t rows = g.N * g.Ho, lo = rows * t / nth, hi = rows * (t + 1) / nth;
            for (int64_t q = lo; q < hi; q++) {
                int64_t n = q / g.Ho, oh = q % g.Ho;
                memset(rb, 0, sizeof(float) * (size_t)(T * C));
                for (int64_t ow = 0; ow < g.Wo; ow++) {
                    const float *d = dyp + ((n * g.Ho + oh) * g.Wo + ow) * C;
                    for (int64_t i = 0; i < g.kh; i++) {
                        int64_t ih = oh * g.s - g.p + i * g.d;
                        if (ih < 0 || ih >= g.H) continue;
                        for (int64_t j = 0; j < g.kw; j++) {
                            int64_t iw = ow * g.s - g.p + j * g.d;
                            if (iw < 0 || iw >= g.W) continue;
                            const float *xr = xp + ((n * g.H + ih) * g.W + iw) * C;
                            float *r = rb + (i * g.kw + j) * C;
#pragma omp simd
                            for (int64_t c = 0; c < C; c++) r[c] += d[c] * xr[c];
                        }
                    }
                }
#pragma omp simd
                for (int64_t k = 0; k < T * C; k++) pp[k] += rb[k];
            }
        }
        float *dwp = tensor_f32(dw);   // (C, 1, kh, kw)
        for (int tt = 0; tt < nt; tt++)
            for (int64_t k = 0; k < T; k++)
                for (int64_t c = 0; c < C; c++) dwp[c * T + k] += (float)part[((int64_t)tt * T + k) * C + c];
    }
    arena_release(ctx->scratch, m);
}
