// loss_ref.c — the CamoXpert training loss (ops_list.h cod_loss) on the host, in
// double precision whatever the maps' dtype: the reference backend's kernel
// and the CPU backend's too (the loss is a few passes over N·H·W maps).
// reference: the reference implementation's CamoXpertLoss (train_ultimate.py);
// BCE terms follow F.binary_cross_entropy(_with_logits) including PyTorch's log
// clamp at −100 and its backward's max(p(1−p), 1e-12) denominator.
#include "ref.h"
#include <math.h>
#include <string.h>

static double *to_f64(Arena *a, const Tensor *t) {
    int64_t n = tensor_numel(t);
    double *p = arena_alloc(a, (size_t)n * sizeof *p);
    Tensor v = tensor_view(p, DT_F64, t->ndim, t->shape);
    tensor_copy(&v, t);
    return p;
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

// BCEwithLogits, element-wise, PyTorch's stable form.
static double bce_logit(double x, double y) {
    double m = fmax(-x, 0.0);
    return (1 - y) * x + m + log(exp(-m) + exp(-x - m));
}

// mean BCEwithLogits(clamp(x, ±15), y) over n; g += scale · ∂/∂x.
static double bce_logits_mean(const double *x, const double *y, int64_t n, double *g, double scale) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double xc = fmin(fmax(x[i], -LOGIT_CLAMP), LOGIT_CLAMP);
        s += bce_logit(xc, y[i]);
        if (g && x[i] >= -LOGIT_CLAMP && x[i] <= LOGIT_CLAMP) g[i] += scale * (sigmoid(xc) - y[i]) / (double)n;
    }
    return s / (double)n;
}

// mean BCE(clamp(p, 1e-7, 1−1e-7), y) over n; g += scale · ∂/∂p.
static double bce_prob_mean(const double *p, const double *y, int64_t n, double *g, double scale) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double pc = fmin(fmax(p[i], PROB_CLAMP), 1 - PROB_CLAMP);
        s -= y[i] * fmax(log(pc), -100.0) + (1 - y[i]) * fmax(log(1 - pc), -100.0);
        if (g && p[i] >= PROB_CLAMP && p[i] <= 1 - PROB_CLAMP)
            g[i] += scale * (pc - y[i]) / fmax((1 - pc) * pc, 1e-12) / (double)n;
    }
    return s / (double)n;
}

// 3×3 cross-correlation with zero padding 1 of one (H,W) plane.
static void stencil3(const double *x, double *y, int64_t H, int64_t W, const double k[3][3]) {
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
            double s = 0;
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    int64_t ii = i + a - 1, jj = j + b - 1;
                    if (ii >= 0 && ii < H && jj >= 0 && jj < W) s += k[a][b] * x[ii * W + jj];
                }
            y[i * W + j] = s;
        }
}

// dx += transpose of stencil3 applied to dy.
static void stencil3_backward(double *dx, const double *dy, int64_t H, int64_t W, const double k[3][3]) {
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++)
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    int64_t ii = i + a - 1, jj = j + b - 1;
                    if (ii >= 0 && ii < H && jj >= 0 && jj < W) dx[ii * W + jj] += k[a][b] * dy[i * W + j];
                }
}

static const double SOBEL_X[3][3] = { { -1, 0, 1 }, { -2, 0, 2 }, { -1, 0, 1 } };
static const double SOBEL_Y[3][3] = { { -1, -2, -1 }, { 0, 0, 0 }, { 1, 2, 1 } };
static const double BOX[3][3] = { { 1. / 9, 1. / 9, 1. / 9 }, { 1. / 9, 1. / 9, 1. / 9 }, { 1. / 9, 1. / 9, 1. / 9 } };

// g (a tensor of the map's dtype, may be NULL) += src (double, same numel).
static void add_grad(Tensor *g, const double *src) {
    if (!g) return;
    for (int64_t i = 0, n = tensor_numel(g); i < n; i++) tensor_set(g, i, tensor_get(g, i) + src[i]);
}

void ref_cod_loss(OpCtx *ctx, Tensor *terms, const CodLossGrad *grad, const CodLossIn *in) {
    const Tensor *mask = in->mask;
    const double *w = in->w;
    int64_t N = T_N(mask), H = T_H(mask), W = T_W(mask), HW = H * W, n = N * HW;
    CX_ASSERT(tensor_numel(in->pred) == n, "cod_loss: pred has %lld elements, mask %lld",
              (long long)tensor_numel(in->pred), (long long)n);
    Arena *a = ctx->scratch;
    ArenaMark mk = arena_mark(a);
    const double *y = to_f64(a, mask), *x = to_f64(a, in->pred), *fg = to_f64(a, in->fg);
    const double *sm = to_f64(a, in->search), *u = to_f64(a, in->unc), *r0 = to_f64(a, in->refine0);
    double *gx = arena_calloc(a, (size_t)n * sizeof *gx), *gfg = arena_calloc(a, (size_t)n * sizeof *gfg);
    double *gsm = arena_calloc(a, (size_t)n * sizeof *gsm), *gu = arena_calloc(a, (size_t)n * sizeof *gu);
    double *gr0 = arena_calloc(a, (size_t)n * sizeof *gr0);
    double L[CL_TERMS] = { 0 };
    // p = sigmoid(clamp(pred)); dp collects ∂L/∂p, turned into ∂L/∂pred at the end
    double *p = arena_alloc(a, (size_t)n * sizeof *p), *dp = arena_calloc(a, (size_t)n * sizeof *dp);
    for (int64_t i = 0; i < n; i++) p[i] = sigmoid(fmin(fmax(x[i], -LOGIT_CLAMP), LOGIT_CLAMP));

    L[CL_BCE] = bce_logits_mean(x, y, n, gx, w[CL_BCE]);

    // IoU: 1 − mean over images of (Σpy + 1e-5) / (Σp + Σy − Σpy + 1e-5)
    for (int64_t b = 0; b < N; b++) {
        const double *pb = p + b * HW, *yb = y + b * HW;
        double I = 0, sp = 0, sy = 0;
        for (int64_t i = 0; i < HW; i++) I += pb[i] * yb[i], sp += pb[i], sy += yb[i];
        double num = I + 1e-5, den = sp + sy - I + 1e-5;
        L[CL_IOU] += num / den / (double)N;
        // d(num/den)/dp_i = y_i/den − num·(1 − y_i)/den²
        for (int64_t i = 0; i < HW; i++)
            dp[b * HW + i] -= w[CL_IOU] * (yb[i] / den - num * (1 - yb[i]) / (den * den)) / (double)N;
    }
    L[CL_IOU] = 1 - L[CL_IOU];

    // Edge: mean((sqrt(max(gx²+gy²,0)+1e-5) − sqrt(tx²+ty²+1e-5))²)
    {
        double *px = arena_alloc(a, (size_t)HW * sizeof(double)), *py = arena_alloc(a, (size_t)HW * sizeof(double));
        double *tx = arena_alloc(a, (size_t)HW * sizeof(double)), *ty = arena_alloc(a, (size_t)HW * sizeof(double));
        for (int64_t b = 0; b < N; b++) {
            stencil3(p + b * HW, px, H, W, SOBEL_X), stencil3(p + b * HW, py, H, W, SOBEL_Y);
            stencil3(y + b * HW, tx, H, W, SOBEL_X), stencil3(y + b * HW, ty, H, W, SOBEL_Y);
            for (int64_t i = 0; i < HW; i++) {
                double pe = sqrt(fmax(px[i] * px[i] + py[i] * py[i], 0.0) + 1e-5);
                double te = sqrt(tx[i] * tx[i] + ty[i] * ty[i] + 1e-5);
                L[CL_EDGE] += (pe - te) * (pe - te) / (double)n;
                double g = w[CL_EDGE] * 2 * (pe - te) / (double)n / pe;
                px[i] *= g, py[i] *= g;   // now ∂L/∂gx, ∂L/∂gy
            }
            stencil3_backward(dp + b * HW, px, H, W, SOBEL_X);
            stencil3_backward(dp + b * HW, py, H, W, SOBEL_Y);
        }
    }

    // Boundary: mean((1 + 4·(box(y) − (1 − box(1 − y)))) · BCEwithLogits(pred, y))
    {
        double *dil = arena_alloc(a, (size_t)HW * sizeof(double)), *ero = arena_alloc(a, (size_t)HW * sizeof(double));
        double *inv = arena_alloc(a, (size_t)HW * sizeof(double));
        for (int64_t b = 0; b < N; b++) {
            const double *yb = y + b * HW;
            for (int64_t i = 0; i < HW; i++) inv[i] = 1 - yb[i];
            stencil3(yb, dil, H, W, BOX), stencil3(inv, ero, H, W, BOX);
            for (int64_t i = 0; i < HW; i++) {
                double wt = 1 + 4 * (dil[i] - (1 - ero[i]));
                double xc = fmin(fmax(x[b * HW + i], -LOGIT_CLAMP), LOGIT_CLAMP);
                L[CL_BOUNDARY] += wt * bce_logit(xc, yb[i]) / (double)n;
                gx[b * HW + i] += w[CL_BOUNDARY] * wt * (sigmoid(xc) - yb[i]) / (double)n;
            }
        }
    }

    // Uncert: mean(|p − y| · log(1/(u + 1e-8)))
    for (int64_t i = 0; i < n; i++) {
        double e = p[i] - y[i], lg = log(1 / (u[i] + 1e-8));
        L[CL_UNCERT] += fabs(e) * lg / (double)n;
        dp[i] += w[CL_UNCERT] * (e > 0 ? 1.0 : e < 0 ? -1.0 : 0.0) * lg / (double)n;
        gu[i] += w[CL_UNCERT] * fabs(e) * (-1 / (u[i] + 1e-8)) / (double)n;
    }

    L[CL_RA] = bce_prob_mean(fg, y, n, gfg, w[CL_RA]);
    L[CL_SEARCH] = bce_prob_mean(sm, y, n, gsm, w[CL_SEARCH]);

    // Deep supervision against the resized masks
    for (int j = 0; j < 3; j++) {
        int64_t m = tensor_numel(in->deep[j]);
        CX_ASSERT(tensor_numel(in->deep_mask[j]) == m, "cod_loss: deep %d and its mask differ", j);
        const double *xd = to_f64(a, in->deep[j]), *yd = to_f64(a, in->deep_mask[j]);
        double *gd = arena_calloc(a, (size_t)m * sizeof(double));
        L[CL_DEEP] += bce_logits_mean(xd, yd, m, gd, w[CL_DEEP] / 3) / 3;
        if (grad) add_grad(grad->deep[j], gd);
    }

    L[CL_REFINE] = w[CL_REFINE] * bce_logits_mean(r0, y, n, gr0, w[CL_REFINE]);

    if (grad) {
        // ∂p/∂pred = p(1 − p) inside the clamp
        for (int64_t i = 0; i < n; i++)
            if (x[i] >= -LOGIT_CLAMP && x[i] <= LOGIT_CLAMP) gx[i] += dp[i] * p[i] * (1 - p[i]);
        add_grad(grad->pred, gx);
        add_grad(grad->fg, gfg);
        add_grad(grad->search, gsm);
        add_grad(grad->unc, gu);
        add_grad(grad->refine0, gr0);
    }
    for (int t = 0; t < CL_TERMS; t++) tensor_set(terms, t, L[t]);
    arena_release(a, mk);
}
