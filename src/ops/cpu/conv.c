// conv.c — fast float32 conv2d on NHWC activations, forward and backward.
// reference: torch.nn.functional.conv2d.
//
// Dense and grouped convolutions lower to OpenBLAS sgemm on im2col matrices:
//   forward   y[r, g·Kg:(g+1)·Kg]  = col_g (R×KC) · W_g(Kg×KC)ᵀ
//   dx        dcol_g (R×KC)       = dy_g (R×Kg) · W_g,   then col2im (+=) into dx
//   dw        dW_g (Kg×KC)       += dy_gᵀ · col_g
// where R = N·Ho·Wo output pixels, KC = kh·kw·C/G and W_g is the weight in
// (K, kh, kw, C/G) order (transposed once from OIHW). Output rows are processed
// in chunks so the im2col buffer stays around 16 MB whatever the image size.
// 1×1 stride-1 unpadded convolutions skip im2col: x itself is the matrix.
// Depthwise convolutions (groups == C == K) use a direct kernel that runs over
// contiguous channels (dwconv.c); the GEMM form would have KC = kh·kw and waste
// the machine.
// With oneDNN (HAVE_DNNL) the dispatcher below sends dense and grouped
// convolutions, and the depthwise passes where it wins, to conv_dnnl.c
// (conv_use_dnnl); this file's paths remain for the rest, for builds without
// oneDNN and for shapes oneDNN has no kernel for. Under OpCtx.cpu_bf16 the dense
// and grouped ones large enough to gain (conv_bf16) run oneDNN's bf16 primitive
// first; depthwise convolutions stay float32 (memory-bound: a bf16 copy of x would
// cost what the convolution does).
#include "cpu.h"
#include <cblas.h>
#include <string.h>

typedef struct {
    int64_t N, H, W, C, K, Cg, Kg, G, kh, kw, Ho, Wo, R, KC;
    int s, p, d;
} ConvGeom;

static ConvGeom conv_geom(const Tensor *x, const Tensor *w, const Tensor *y, ConvArgs a) {
    ConvGeom g = { .N = T_N(x), .H = T_H(x), .W = T_W(x), .C = T_C(x), .K = w->shape[0], .Cg = w->shape[1],
                   .G = a.groups, .kh = w->shape[2], .kw = w->shape[3], .Ho = T_H(y), .Wo = T_W(y),
                   .s = a.stride, .p = a.pad, .d = a.dil };
    g.Kg = g.K / g.G;
    g.R = g.N * g.Ho * g.Wo;
    g.KC = g.kh * g.kw * g.Cg;
    CX_ASSERT(g.Cg * g.G == g.C && g.Kg * g.G == g.K && T_C(y) == g.K && T_N(y) == g.N, "conv2d: channels/groups");
    CX_ASSERT(g.Ho == conv2d_out_size(g.H, (int)g.kh, a) && g.Wo == conv2d_out_size(g.W, (int)g.kw, a),
              "conv2d: output size");
    return g;
}

static int conv_is_pointwise(const ConvGeom *g) { return g->kh == 1 && g->kw == 1 && g->s == 1 && g->p == 0; }
static int conv_is_depthwise(const ConvGeom *g) { return g->Cg == 1 && g->Kg == 1 && g->G > 1; }

CpuImpl cpu_conv_impl = CPU_IMPL_AUTO;

#if HAVE_DNNL
// Where oneDNN runs only its AVX2 kernels (AMD Zen 3, older Intel; or
// ONEDNN_MAX_CPU_ISA=AVX2): `make bench` conv and dw sections under
// ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell, side by side with the
// AVX-512 run (docs/PERF.md, "Kernel choice on AVX2 hosts"). oneDNN's AVX2
// weight gradient of a 3×3 convolution runs at a third of im2col + sgemm (27.9
// against 87.5 GFLOP/s at 352²), its dilated forward at half from dilation 4.
static int conv_use_dnnl_avx2(const ConvGeom *g, int pass) {
    int64_t taps = g->kh * g->kw, hw = g->Ho * g->Wo;
    if (conv_is_depthwise(g)) {
        // against dwconv.c: oneDNN ties or wins on the small maps (22² and below,
        // 11² for the input gradient) and for 3×3 forward; dwconv.c wins elsewhere
        if (pass == 0) return taps <= 9 || hw <= 22 * 22;
        if (pass == 1) return hw < 22 * 22;
        return taps <= 9 && hw <= 22 * 22;
    }
    if (pass == 0) return g->d < 4;
    if (pass == 1) return !(taps == 1 && g->Cg >= 160);
    if (taps == 1) return g->Cg < 288;
    return taps == 25 || (taps == 49 && hw <= 44 * 44);
}

// Whether oneDNN runs this pass (0 forward, 1 dx, 2 dw and db) of this convolution.
static int conv_use_dnnl(const ConvGeom *g, int pass) {
    if (cpu_conv_impl != CPU_IMPL_AUTO) return cpu_conv_impl == CPU_IMPL_DNNL;
    if (!cpu_dnnl_avx512()) return conv_use_dnnl_avx2(g, pass);
    // make bench, AVX-512 host: for dense and grouped convolutions oneDNN is 2-3x
    // im2col + sgemm in every shape and pass (OpenBLAS runs its AVX2 kernels here,
    // oneDNN AVX-512), 1×1 included.
    if (!conv_is_depthwise(g)) return 1;
    // Depthwise against dwconv.c: oneDNN's forward ties or wins (1.5x on 11²
    // maps); its backward-data wins for k <= 5 and on maps from 44², loses on
    // 7×7 and 9×9 at 22² and 11²; its backward-weights wins only for 3×3 and is
    // 10-100x slower from 5×5 up.
    int64_t taps = g->kh * g->kw;
    if (pass == 0) return 1;
    if (pass == 1) return taps <= 25 || g->Ho * g->Wo >= 44 * 44;
    return taps <= 9;
}
#endif

#if HAVE_DNNL
// Whether the (dilated) kernel's extent fits inside the unpadded input.
static int conv_kernel_fits(const ConvGeom *g) {
    return g->d * (g->kh - 1) + 1 <= g->H && g->d * (g->kw - 1) + 1 <= g->W;
}

// Whether this convolution runs in bf16 (bf16.c's rule: output pixels × output
// channels per group × terms per output).
static int conv_bf16(const OpCtx *ctx, const ConvGeom *g) {
    if (cpu_conv_impl == CPU_IMPL_OWN || conv_is_depthwise(g)) return 0;
    return cpu_bf16_wanted(ctx, g->R, g->Kg, g->KC);
}
#endif

// Output rows per im2col chunk: about 16 MB of columns, at least 64 rows.
static int64_t conv_chunk_rows(const ConvGeom *g) {
    int64_t r = (int64_t)(4 << 20) / g->KC;
    if (r < 64) r = 64;
    return r < g->R ? r : g->R;
}

// OIHW (K, Cg, kh, kw) -> (K, kh, kw, Cg).
static float *conv_w_ohwi(OpCtx *ctx, const Tensor *w) {
    int64_t K = w->shape[0], Cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    float *wt = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(K * Cg * kh * kw));   // (K, kh, kw, Cg)
    const float *wp = tensor_f32(w);
#pragma omp parallel for if (K * Cg * kh * kw > 65536)
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t t = 0; t < kh * kw; t++) wt[(k * kh * kw + t) * Cg + c] = wp[(k * Cg + c) * kh * kw + t];
    return wt;
}

// col (rows × KC) for output rows [r0, r0+rows) of group gi.
static void conv_im2col(const ConvGeom *g, float *col, const float *x, int64_t r0, int64_t rows, int64_t gi) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t q = r0 + r, ow = q % g->Wo, oh = (q / g->Wo) % g->Ho, n = q / (g->Wo * g->Ho);
        float *cr = col + r * g->KC;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t ih = oh * g->s - g->p + i * g->d;
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t iw = ow * g->s - g->p + j * g->d;
                float *dst = cr + (i * g->kw + j) * g->Cg;
                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) memset(dst, 0, sizeof(float) * (size_t)g->Cg);
                else memcpy(dst, x + ((n * g->H + ih) * g->W + iw) * g->C + gi * g->Cg, sizeof(float) * (size_t)g->Cg);
            }
        }
    }
}

// dx += col2im(dcol) for output rows [r0, r0+rows) of group gi. For one tap
// distinct output pixels hit distinct input pixels, so each tap is a race-free
// parallel loop.
static void conv_col2im_add(const ConvGeom *g, float *dx, const float *dcol, int64_t r0, int64_t rows, int64_t gi) {
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                int64_t q = r0 + r, ow = q % g->Wo, oh = (q / g->Wo) % g->Ho, n = q / (g->Wo * g->Ho);
                int64_t ih = oh * g->s - g->p + i * g->d, iw = ow * g->s - g->p + j * g->d;
                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                float *d = dx + ((n * g->H + ih) * g->W + iw) * g->C + gi * g->Cg;
                const float *s = dcol + r * g->KC + (i * g->kw + j) * g->Cg;
#pragma omp simd
                for (int64_t c = 0; c < g->Cg; c++) d[c] += s[c];
            }
        }
}

void cpu_conv2d_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a) {
    ConvGeom g = conv_geom(x, w, y, a);
#if HAVE_DNNL
    if (conv_bf16(ctx, &g)) {
        ArenaMark m = arena_mark(ctx->scratch);
        int done = cpu_conv_dnnl_forward(ctx, y, x, w, b, a, cpu_bf16_copy(ctx, tensor_f32(x), tensor_numel(x)));
        arena_release(ctx->scratch, m);
        if (done) return;
    }
    if (conv_use_dnnl(&g, 0) && cpu_conv_dnnl_forward(ctx, y, x, w, b, a, NULL)) return;
#endif
    if (conv_is_depthwise(&g)) { cpu_dwconv_forward(ctx, y, x, w, b, a); return; }
    ArenaMark m = arena_mark(ctx->scratch);
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);   // (R, K)
    float beta = 0;
    if (b) {
        const float *bp = tensor_f32(b);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < g.R; r++) memcpy(yp + r * g.K, bp, sizeof(float) * (size_t)g.K);
        beta = 1;
    }
    const float *wt = g.kh * g.kw == 1 ? tensor_f32(w) : conv_w_ohwi(ctx, w);   // (K, kh, kw, Cg)
    if (conv_is_pointwise(&g)) {
        for (int64_t gi = 0; gi < g.G; gi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.R, (int)g.Kg, (int)g.Cg, 1.0f,
                        xp + gi * g.Cg, (int)g.C, wt + gi * g.Kg * g.KC, (int)g.KC, beta, yp + gi * g.Kg, (int)g.K);
    } else {
        int64_t cr = conv_chunk_rows(&g);
        float *col = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(cr * g.KC));   // (cr, KC)
        for (int64_t r0 = 0; r0 < g.R; r0 += cr) {
            int64_t rows = g.R - r0 < cr ? g.R - r0 : cr;
            for (int64_t gi = 0; gi < g.G; gi++) {
                conv_im2col(&g, col, xp, r0, rows, gi);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)g.Kg, (int)g.KC, 1.0f, col,
                            (int)g.KC, wt + gi * g.Kg * g.KC, (int)g.KC, beta, yp + r0 * g.K + gi * g.Kg, (int)g.K);
            }
        }
    }
    arena_release(ctx->scratch, m);
}

void cpu_conv2d_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                         const Tensor *w, ConvArgs a) {
    ConvGeom g = conv_geom(x, w, dy, a);
#if HAVE_DNNL
    // Passes oneDNN has done are dropped from what our kernels below do.
    if ((dx || dw) && conv_bf16(ctx, &g)) {   // one bf16 copy of dy for both passes
        ArenaMark m = arena_mark(ctx->scratch);
        const uint16_t *dyb = cpu_bf16_copy(ctx, tensor_f32(dy), tensor_numel(dy));
        if (dx && cpu_conv_dnnl_backward_data(ctx, dx, dy, x, w, a, dyb)) dx = NULL;
        // The bf16 weight gradient came out as garbage (|dW| ~ 1e37, or NaN) where the kernel's
        // extent passes the input with many channels — the frequency expert's 7x7 at the 2x2 maps
        // of a 64x64 input, 196 channels (oneDNN 2.6, avx512_core_bf16; not traced further, the
        // same shape with 3 channels is right): such a pass stays float32 (a handful of pixels).
        // Test: cpu_bf16_conv_weight_gradient_where_the_kernel_passes_the_input.
        if (dw && conv_kernel_fits(&g) &&
            cpu_conv_dnnl_backward_weights(ctx, dw, db, dy, x, w, a, dyb,
                                           cpu_bf16_copy(ctx, tensor_f32(x), tensor_numel(x))))
            dw = db = NULL;
        arena_release(ctx->scratch, m);
    }
    if (dx && conv_use_dnnl(&g, 1) && cpu_conv_dnnl_backward_data(ctx, dx, dy, x, w, a, NULL)) dx = NULL;
    if (dw && conv_use_dnnl(&g, 2) && cpu_conv_dnnl_backward_weights(ctx, dw, db, dy, x, w, a, NULL, NULL))
        dw = db = NULL;
    if (!dx && !dw && !db) return;
#endif
    op_zero_first(ctx, dx);   // a first write (ops.h): the kernels below add
    if (conv_is_depthwise(&g)) { cpu_dwconv_backward(ctx, dx, dw, db, dy, x, w, a); return; }
    ArenaMark m = arena_mark(ctx->scratch);
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy);   // (N,H,W,C), (R,K)
    int one = g.kh * g.kw == 1;
    const float *wt = !dx ? NULL : one ? tensor_f32(w) : conv_w_ohwi(ctx, w);   // (K, kh, kw, Cg)
    // dW accumulates in (K, kh, kw, Cg) order apart from dw, 1×1 too, and is added to dw
    // once: sgemm with beta 1 straight into dw would round a second micro-batch's sum
    // differently from a rank's whole gradient added by the all-reduce (gemm.c).
    float *dwt = !dw ? NULL : arena_calloc(ctx->scratch, sizeof(float) * (size_t)(g.K * g.KC));
    if (db) cpu_colsum_add(ctx, tensor_f32(db), dyp, g.R, g.K, g.K);
    if (conv_is_pointwise(&g)) {
        for (int64_t gi = 0; gi < g.G; gi++) {
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.R, (int)g.Cg, (int)g.Kg, 1.0f,
                            dyp + gi * g.Kg, (int)g.K, wt + gi * g.Kg * g.Cg, (int)g.Cg, 1.0f,
                            tensor_f32(dx) + gi * g.Cg, (int)g.C);
            if (dw)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.Kg, (int)g.Cg, (int)g.R, 1.0f,
                            dyp + gi * g.Kg, (int)g.K, xp + gi * g.Cg, (int)g.C, 1.0f, dwt + gi * g.Kg * g.Cg, (int)g.Cg);
        }
    } else if (dx || dw) {
        int64_t cr = conv_chunk_rows(&g);
        float *col = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(cr * g.KC));   // (cr, KC)
        for (int64_t r0 = 0; r0 < g.R; r0 += cr) {
            int64_t rows = g.R - r0 < cr ? g.R - r0 : cr;
            for (int64_t gi = 0; gi < g.G; gi++) {
                if (dw) {
                    conv_im2col(&g, col, xp, r0, rows, gi);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.Kg, (int)g.KC, (int)rows, 1.0f,
                                dyp + r0 * g.K + gi * g.Kg, (int)g.K, col, (int)g.KC, 1.0f, dwt + gi * g.Kg * g.KC,
                                (int)g.KC);
                }
                if (dx) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)g.KC, (int)g.Kg, 1.0f,
                                dyp + r0 * g.K + gi * g.Kg, (int)g.K, wt + gi * g.Kg * g.KC, (int)g.KC, 0.0f, col,
                                (int)g.KC);
                    conv_col2im_add(&g, tensor_f32(dx), col, r0, rows, gi);
                }
            }
        }
    }
    if (dw) {
        float *dwp = tensor_f32(dw);   // (K, Cg, kh, kw)
        int64_t T = g.kh * g.kw;
        for (int64_t k = 0; k < g.K; k++)
            for (int64_t c = 0; c < g.Cg; c++)
                for (int64_t t = 0; t < T; t++) dwp[(k * g.Cg + c) * T + t] += dwt[(k * T + t) * g.Cg + c];
    }
    arena_release(ctx->scratch, m);
}
