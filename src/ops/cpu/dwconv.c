// dwconv.c — direct depthwise conv2d (groups == C == K, one filter per channel)
// on NHWC, forward and backward. reference: F.conv2d(x, w, groups=C).
// EdgeNeXt's conv encoders run depthwise 3/5/7/9 convolutions at every stage;
// as a GEMM they have an inner dimension of only kh·kw, so they are written
// directly, with the weight transposed to (kh, kw, C).
//
// The hot loops are register-blocked: a block of DW_OB output pixels along a
// row × one vector of DW_VL channels stays in registers over all taps, so each
// tap costs one weight load and DW_OB input loads + FMAs (the plain loop
// loaded and stored its accumulators at every tap). Vectors are GCC/Clang
// vector extensions: AVX-512 registers with -march=native on this machine,
// pairs of AVX2 registers or scalar code elsewhere, from the same source.
// Pixels whose taps leave the image (row ends) and channels past the last
// whole vector take the plain per-pixel loop. 3×3 is memory-bound; 5×5 and up
// do 25-81 FMAs per 8 bytes moved and are compute-bound on two cores.
#include "cpu.h"
#include <string.h>

#define DW_VL 16   // channels per vector (64 bytes)
typedef float vf __attribute__((vector_size(DW_VL * sizeof(float))));
// The same vector at float alignment, for loads and stores anywhere in a
// tensor. Macros rather than functions: passing 64-byte vectors by value
// changes the ABI where AVX-512 is off (the -O0 DEBUG build warns).
typedef float vf_unaligned __attribute__((vector_size(DW_VL * sizeof(float)), aligned(sizeof(float)), may_alias));
#define vload(p) ((vf)*(const vf_unaligned *)(p))
#define vstore(p, v) (*(vf_unaligned *)(p) = (v))
// Output pixels per register block: with AVX-512's 32 registers 8 accumulators
// leave room for the weight and loads; AVX2 has 16 registers of half the width.
#ifdef __AVX512F__
#define DW_OB 8
#else
#define DW_OB 4
#endif

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

// [lo, hi): the positions o in [0, n) whose taps all lie inside [0, len), for
// input position o·step + off + j·dj, j in [0, k) (dj may be negative).
static void dw_inside(int64_t n, int64_t len, int64_t step, int64_t off, int64_t k, int64_t dj, int64_t *lo,
                      int64_t *hi) {
    int64_t jmin = dj < 0 ? (k - 1) * dj : 0, jmax = dj < 0 ? 0 : (k - 1) * dj;
    int64_t a = 0, b = n;
    while (a < n && a * step + off + jmin < 0) a++;
    while (b > a && (b - 1) * step + off + jmax >= len) b--;
    *lo = a;
    *hi = b;
}

// On small maps most pixels of a row are border pixels (9×9 taps on an 11-wide
// row leave 3 inside), which the row kernel does one at a time. There the
// rows are first copied with zero margins, so that every pixel is "inside":
// the copy is one pass over the input, the kernel does kh·kw FMAs per element.
// Returns src (rows, len, C) widened to (rows, pl + len + pr, C), pointing at column 0
// of the original rows, with *ld its row length and [*o0, *o1) = [0, n): every one of
// the n pixels of a row inside; or NULL, the rest unchanged, when a margin is negative or
// the border pixels are under a quarter of the n per row (not worth a copy).
static const float *dw_pad_rows(OpCtx *ctx, const float *src, int64_t rows, int64_t len, int64_t C, int64_t n,
                                int64_t *o0, int64_t *o1, int64_t pl, int64_t pr, int64_t *ld) {
    if (pl < 0 || pr < 0 || (n - (*o1 - *o0)) * 4 <= n) return NULL;
    int64_t lp = pl + len + pr;
    float *dst = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(rows * lp * C));   // (rows, lp, C)
#pragma omp parallel for schedule(static) if (rows * lp * C > 65536)
    for (int64_t r = 0; r < rows; r++) {
        float *d = dst + r * lp * C;
        memset(d, 0, sizeof(float) * (size_t)(pl * C));
        memcpy(d + pl * C, src + r * len * C, sizeof(float) * (size_t)(len * C));
        memset(d + (pl + len) * C, 0, sizeof(float) * (size_t)(pr * C));
    }
    *ld = lp;
    *o0 = 0;
    *o1 = n;
    return dst + pl * C;
}

// ob output pixels [o, o+ob) × one channel vector c, all taps inside: the ob
// accumulators stay in registers over all taps. Always inlined, so that each
// constant ob unrolls completely.
static inline __attribute__((always_inline)) void dw_block(int ob, float *out, int64_t o, int64_t c,
                                                          const float *const *in, const float *const *w, int nt,
                                                          int64_t off, int64_t kw, int64_t dj, int64_t C,
                                                          const float *bias, int accumulate) {
    vf acc[DW_OB];
#pragma GCC unroll 8
    for (int u = 0; u < ob; u++) acc[u] = accumulate ? vload(out + (o + u) * C + c) : bias ? vload(bias + c) : (vf){ 0 };
    for (int t = 0; t < nt; t++)
        for (int64_t j = 0; j < kw; j++) {
            vf wv = vload(w[t] + j * C + c);
            const float *src = in[t] + (o + off + j * dj) * C + c;
#pragma GCC unroll 8
            for (int u = 0; u < ob; u++) acc[u] += vload(src + u * C) * wv;
        }
#pragma GCC unroll 8
    for (int u = 0; u < ob; u++) vstore(out + (o + u) * C + c, acc[u]);
}

// One output row in channel vectors [0, C/DW_VL·DW_VL):
//   out[o, c] (+)= Σ_{t<nt} Σ_{j<kw} in_t[(o + off + j·dj)·C + c] · w_t[j·C + c],  o in [0, n),
// where in_t / w_t are the nt tap rows, taps reading outside [0, len) count as
// zero, and the row has unit stride. Pixels in [o0, o1) (all taps inside) go
// in register blocks of DW_OB, DW_OB/2 and DW_OB/4; the rest one by one.
// acc starts from out when accumulate, else from bias (or 0).
static void dw_row_vec(float *out, int64_t n, int64_t o0, int64_t o1, int64_t len, const float *const *in,
                       const float *const *w, int nt, int64_t off, int64_t kw, int64_t dj, int64_t C, const float *bias,
                       int accumulate) {
    int64_t Cv = C / DW_VL * DW_VL;
    for (int64_t c = 0; c < Cv; c += DW_VL) {
        for (int64_t o = 0; o < n;) {
            if (o >= o0 && o + DW_OB <= o1) {
                dw_block(DW_OB, out, o, c, in, w, nt, off, kw, dj, C, bias, accumulate);
                o += DW_OB;
            } else if (o >= o0 && o + DW_OB / 2 <= o1) {
                dw_block(DW_OB / 2, out, o, c, in, w, nt, off, kw, dj, C, bias, accumulate);
                o += DW_OB / 2;
            } else if (o >= o0 && o + DW_OB / 4 <= o1) {
                dw_block(DW_OB / 4, out, o, c, in, w, nt, off, kw, dj, C, bias, accumulate);
                o += DW_OB / 4;
            } else {
                vf acc = accumulate ? vload(out + o * C + c) : bias ? vload(bias + c) : (vf){ 0 };
                for (int t = 0; t < nt; t++)
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t q = o + off + j * dj;
                        if (q >= 0 && q < len) acc += vload(in[t] + q * C + c) * vload(w[t] + j * C + c);
                    }
                vstore(out + o * C + c, acc);
                o++;
            }
        }
    }
}

// Weight gradient of one tap row over one output row, channels [0, Cv):
//   rb[j, c] += Σ_ow dy[ow, c] · x[ow·s - p + j·d, c]   (x zero outside [0, W)).
// In the interior columns [ow0, ow1) the kw accumulators of one channel vector
// stay in registers along the row; always inlined so that calls with a
// constant kw unroll completely. Border columns go tap by tap.
#define DW_KWMAX 16
#define DW_FLUSH 64   // output pixels per float partial sum of the weight gradient
static inline __attribute__((always_inline)) void dw_wgrad_row(int64_t kw, float *rb, const float *dyr,
                                                              const float *xr, int64_t Wo, int64_t W, int64_t ow0,
                                                              int64_t ow1, int64_t s, int64_t p, int64_t d, int64_t C,
                                                              int64_t Cv) {
    for (int64_t c = 0; c < Cv; c += DW_VL) {
        vf acc[DW_KWMAX] = { { 0 } };
        for (int64_t ow = ow0; ow < ow1; ow++) {
            vf dv = vload(dyr + ow * C + c);
            const float *src = xr + (ow * s - p) * C + c;
#pragma GCC unroll 16
            for (int64_t j = 0; j < kw; j++) acc[j] += vload(src + j * d * C) * dv;
        }
        const int64_t border[2][2] = { { 0, ow0 }, { ow1, Wo } };
        for (int r = 0; r < 2; r++)
            for (int64_t ow = border[r][0]; ow < border[r][1]; ow++) {
                vf dv = vload(dyr + ow * C + c);
#pragma GCC unroll 16
                for (int64_t j = 0; j < kw; j++) {
                    int64_t iw = ow * s - p + j * d;
                    if (iw >= 0 && iw < W) acc[j] += vload(xr + iw * C + c) * dv;
                }
            }
#pragma GCC unroll 16
        for (int64_t j = 0; j < kw; j++) vstore(rb + j * C + c, vload(rb + j * C + c) + acc[j]);
    }
}

void cpu_dwconv_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a) {
    DwGeom g = dw_geom(x, w, y, a);
    ArenaMark m = arena_mark(ctx->scratch);
    const float *wt = dw_w_hwc(ctx, w), *xp = tensor_f32(x), *bp = b ? tensor_f32(b) : NULL;
    float *yp = tensor_f32(y);
    int64_t C = g.C, Cv = g.s == 1 ? C / DW_VL * DW_VL : 0;   // channels the vector kernel does
    int64_t ow0, ow1;   // output columns whose taps are all inside the row
    dw_inside(g.Wo, g.W, g.s, -g.p, g.kw, g.d, &ow0, &ow1);
    // Stride 1 reads input columns [-p, Wo - 1 - p + (kw-1)·d].
    int64_t pl = g.p, pr = g.Wo - 1 - g.p + (g.kw - 1) * g.d - (g.W - 1), ldx = g.W;   // ldx: padded row length
    // x with zero margins: then every column is inside
    const float *xpad = Cv ? dw_pad_rows(ctx, xp, g.N * g.H, g.W, C, g.Wo, &ow0, &ow1, pl, pr, &ldx) : NULL;
#pragma omp parallel for schedule(static) collapse(2)
    for (int64_t n = 0; n < g.N; n++)
        for (int64_t oh = 0; oh < g.Ho; oh++) {
            int64_t i0 = 0, i1 = g.kh;   // taps whose input row is inside the image
            while (i0 < i1 && oh * g.s - g.p + i0 * g.d < 0) i0++;
            while (i1 > i0 && oh * g.s - g.p + (i1 - 1) * g.d >= g.H) i1--;
            float *yr = yp + (n * g.Ho + oh) * g.Wo * C;
            if (Cv) {
                const float *in[32], *wr[32];   // kh <= 32 tap rows
                CX_ASSERT(g.kh <= 32, "depthwise kernel height %lld > 32", (long long)g.kh);
                for (int64_t i = i0; i < i1; i++) {
                    in[i - i0] = xpad ? xpad + (n * g.H + oh - g.p + i * g.d) * ldx * C
                                      : xp + (n * g.H + oh - g.p + i * g.d) * g.W * C;
                    wr[i - i0] = wt + i * g.kw * C;
                }
                dw_row_vec(yr, g.Wo, ow0, ow1, g.W, in, wr, (int)(i1 - i0), -g.p, g.kw, g.d, C, bp, 0);
            }
            // The channels past Cv (all of them with stride > 1), plain loop.
            for (int64_t ow = 0; ow < g.Wo && Cv < C; ow++) {
                int64_t c0 = Cv;
                int64_t j0 = 0, j1 = g.kw;
                while (j0 < j1 && ow * g.s - g.p + j0 * g.d < 0) j0++;
                while (j1 > j0 && ow * g.s - g.p + (j1 - 1) * g.d >= g.W) j1--;
                float *yo = yr + ow * C;
                int64_t xb = ((n * g.H + oh * g.s - g.p) * g.W + ow * g.s - g.p) * C;   // tap (0,0); may lie outside
                for (int64_t c = c0; c < C; c++) yo[c] = bp ? bp[c] : 0.0f;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j1; j++) {
                        const float *xr = xp + xb + (i * g.d * g.W + j * g.d) * C, *wr = wt + (i * g.kw + j) * C;
#pragma omp simd
                        for (int64_t c = c0; c < C; c++) yo[c] += xr[c] * wr[c];
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
        // so threads write disjoint rows of dx. With stride 1 this is a
        // correlation of dy with the taps mirrored: dx[iw] += Σ_j dy[iw + p - j·d]·w[j],
        // the same register-blocked row kernel as forward with tap step -d.
        const float *wt = dw_w_hwc(ctx, w);   // (kh, kw, C)
        float *dxp = tensor_f32(dx);
        int64_t Cv = g.s == 1 ? C / DW_VL * DW_VL : 0, iw0, iw1;
        dw_inside(g.W, g.Wo, 1, g.p, g.kw, -g.d, &iw0, &iw1);
        // dy columns read: [p - (kw-1)·d, W - 1 + p]; zero margins as in forward.
        int64_t pl = (g.kw - 1) * g.d - g.p, pr = g.W - 1 + g.p - (g.Wo - 1), ldy = g.Wo;
        const float *dypad = Cv ? dw_pad_rows(ctx, dyp, g.N * g.Ho, g.Wo, C, g.W, &iw0, &iw1, pl, pr, &ldy) : NULL;
#pragma omp parallel for schedule(static) collapse(2)
        for (int64_t n = 0; n < g.N; n++)
            for (int64_t ih = 0; ih < g.H; ih++) {
                float *dr = dxp + (n * g.H + ih) * g.W * C;
                if (Cv) {
                    const float *in[32], *wr[32];
                    CX_ASSERT(g.kh <= 32, "depthwise kernel height %lld > 32", (long long)g.kh);
                    int nt = 0;
                    for (int64_t i = 0; i < g.kh; i++) {
                        int64_t oh = ih + g.p - i * g.d;
                        if (oh < 0 || oh >= g.Ho) continue;
                        in[nt] = dypad ? dypad + (n * g.Ho + oh) * ldy * C : dyp + (n * g.Ho + oh) * g.Wo * C;
                        wr[nt++] = wt + i * g.kw * C;
                    }
                    dw_row_vec(dr, g.W, iw0, iw1, g.Wo, in, wr, nt, g.p, g.kw, -g.d, C, NULL, 1);
                }
                // The channels past Cv (all of them with stride > 1), plain loop.
                for (int64_t iw = 0; iw < g.W && Cv < C; iw++) {
                    int64_t c0 = Cv;
                    float *d = dr + iw * C;
                    for (int64_t i = 0; i < g.kh; i++) {
                        int64_t hn = ih + g.p - i * g.d;   // = oh·s
                        if (hn < 0 || hn % g.s || hn / g.s >= g.Ho) continue;
                        for (int64_t j = 0; j < g.kw; j++) {
                            int64_t wn = iw + g.p - j * g.d;
                            if (wn < 0 || wn % g.s || wn / g.s >= g.Wo) continue;
                            const float *dv = dyp + ((n * g.Ho + hn / g.s) * g.Wo + wn / g.s) * C;
                            const float *wr = wt + (i * g.kw + j) * C;
#pragma omp simd
                            for (int64_t c = c0; c < C; c++) d[c] += dv[c] * wr[c];
                        }
                    }
                }
            }
    }
    if (dw) {
        // Each thread sums its output rows into a float row buffer rb (kh, kw, C),
        // flushed into its own double partial every DW_FLUSH output pixels or so
        // (float sums stay short: accuracy over large maps; flushing every row
        // cost as much as the FMAs on 11-wide rows); partials are added in
        // thread order (deterministic). In
        // the interior columns the kw taps of one tap row × one channel vector
        // accumulate in registers along the row: per output pixel one dy load
        // and kw input loads + FMAs.
        int nt = cx_threads_get();
        double *part = arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * T * C));   // (nt, kh, kw, C)
        float *rowbuf = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(nt * T * C));   // (nt, kh, kw, C)
        int64_t Cv = g.kw <= DW_KWMAX ? C / DW_VL * DW_VL : 0, ow0, ow1;
        dw_inside(g.Wo, g.W, g.s, -g.p, g.kw, g.d, &ow0, &ow1);
#pragma omp parallel num_threads(nt)
        {
            int t, nth;
            cx_thread_team(&t, &nth);
            double *pp = part + (int64_t)t * T * C;
            float *rb = rowbuf + (int64_t)t * T * C;
            int64_t rows = g.N * g.Ho, lo = rows * t / nth, hi = rows * (t + 1) / nth;
            int64_t pending = 0;   // output pixels summed in rb since the last flush
            memset(rb, 0, sizeof(float) * (size_t)(T * C));
            for (int64_t q = lo; q < hi; q++) {
                int64_t n = q / g.Ho, oh = q % g.Ho;
                const float *dyr = dyp + (n * g.Ho + oh) * g.Wo * C;
                for (int64_t i = 0; i < g.kh; i++) {
                    int64_t ih = oh * g.s - g.p + i * g.d;
                    if (ih < 0 || ih >= g.H) continue;
                    const float *xr = xp + (n * g.H + ih) * g.W * C;
                    float *rbi = rb + i * g.kw * C;
                    switch (g.kw) {   // constant kw: the accumulators unroll into registers
                    case 3: dw_wgrad_row(3, rbi, dyr, xr, g.Wo, g.W, ow0, ow1, g.s, g.p, g.d, C, Cv); break;
                    case 5: dw_wgrad_row(5, rbi, dyr, xr, g.Wo, g.W, ow0, ow1, g.s, g.p, g.d, C, Cv); break;
                    case 7: dw_wgrad_row(7, rbi, dyr, xr, g.Wo, g.W, ow0, ow1, g.s, g.p, g.d, C, Cv); break;
                    case 9: dw_wgrad_row(9, rbi, dyr, xr, g.Wo, g.W, ow0, ow1, g.s, g.p, g.d, C, Cv); break;
                    default: dw_wgrad_row(g.kw, rbi, dyr, xr, g.Wo, g.W, ow0, ow1, g.s, g.p, g.d, C, Cv);
                    }
                    // The channels past Cv, plain loop.
                    for (int64_t ow = 0; ow < g.Wo && Cv < C; ow++) {
                        const float *dv = dyr + ow * C;
                        for (int64_t j = 0; j < g.kw; j++) {
                            int64_t iw = ow * g.s - g.p + j * g.d;
                            if (iw < 0 || iw >= g.W) continue;
                            const float *xv = xr + iw * C;
                            float *r = rbi + j * C;
#pragma omp simd
                            for (int64_t c = Cv; c < C; c++) r[c] += dv[c] * xv[c];
                        }
                    }
                }
                pending += g.Wo;
                if (pending >= DW_FLUSH || q == hi - 1) {
#pragma omp simd
                    for (int64_t k = 0; k < T * C; k++) pp[k] += rb[k];
                    memset(rb, 0, sizeof(float) * (size_t)(T * C));
                    pending = 0;
                }
            }
        }
        float *dwp = tensor_f32(dw);   // (C, 1, kh, kw)
        for (int tt = 1; tt < nt; tt++)   // the partials in thread order, then one add (cpu_colsum_add)
            for (int64_t k = 0; k < T * C; k++) part[k] += part[(int64_t)tt * T * C + k];
        for (int64_t k = 0; k < T; k++)
            for (int64_t c = 0; c < C; c++) dwp[c * T + k] += (float)part[k * C + c];
    }
    arena_release(ctx->scratch, m);
}
