// loss.c — the reference CamoXpert training loss and its gradient (loss.h).
// reference: the reference implementation's CamoXpertLoss (train_ultimate.py);
// BCE terms follow F.binary_cross_entropy(_with_logits) including PyTorch's log
// clamp at −100 and its backward's max(p(1−p), 1e-12) denominator.
#include "train/loss.h"
#include <math.h>
#include <string.h>

#define LOGIT_CLAMP 15.0
#define PROB_CLAMP 1e-7

CamoLossWeights camo_loss_default_weights(void) {
    return (CamoLossWeights){ .bce = 2.0, .iou = 1.5, .edge = 1.0, .boundary = 1.5, .uncertainty = 0.3,
                              .reverse_attention = 0.8, .search = 0.5, .deep = 0.4, .refinement = 0.3,
                              .balance = 1.0 };
}

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

// reference: F.interpolate(bilinear, align_corners=False, size=(h,w)) of one plane.
static void resize_plane(const double *x, int64_t H, int64_t W, double *y, int64_t h, int64_t w) {
    for (int64_t i = 0; i < h; i++) {
        double sy = fmax((i + 0.5) * (double)H / (double)h - 0.5, 0.0);
        int64_t y0 = (int64_t)sy, y1 = y0 + (y0 < H - 1);
        double ly = sy - (double)y0;
        for (int64_t j = 0; j < w; j++) {
            double sx = fmax((j + 0.5) * (double)W / (double)w - 0.5, 0.0);
            int64_t x0 = (int64_t)sx, x1 = x0 + (x0 < W - 1);
            double lx = sx - (double)x0;
            y[i * w + j] = (1 - ly) * ((1 - lx) * x[y0 * W + x0] + lx * x[y0 * W + x1]) +
                           ly * ((1 - lx) * x[y1 * W + x0] + lx * x[y1 * W + x1]);
        }
    }
}

static Tensor grad_tensor(Arena *a, const Tensor *like, const double *g) {
    Tensor t = tensor_new(a, like->dtype, like->ndim, like->shape);
    Tensor v = tensor_view((void *)g, DT_F64, like->ndim, like->shape);
    tensor_copy(&t, &v);
    return t;
}

void camo_loss_forward_backward(Arena *a, const CamoLossWeights *w, const CodOutputs *out, const Tensor *mask,
                                double balance, CamoLoss *L, CodOutputs *grad) {
    int64_t N = T_N(mask), H = T_H(mask), W = T_W(mask), HW = H * W, n = N * HW;
    CX_ASSERT(tensor_numel(&out->pred) == n, "loss: pred has %lld elements, mask %lld",
              (long long)tensor_numel(&out->pred), (long long)n);
    ArenaMark mk = arena_mark(a);
    const double *y = to_f64(a, mask), *x = to_f64(a, &out->pred), *fg = to_f64(a, &out->fg_map);
    const double *sm = to_f64(a, &out->search_map), *u = to_f64(a, &out->uncertainty);
    const double *r0 = to_f64(a, &out->refine[0]);
    double *gx = NULL, *gfg = NULL, *gsm = NULL, *gu = NULL, *gr0 = NULL, *gd[3] = { 0 };
    if (grad) {
        gx = arena_calloc(a, (size_t)n * sizeof *gx);
        gfg = arena_calloc(a, (size_t)n * sizeof *gfg);
        gsm = arena_calloc(a, (size_t)n * sizeof *gsm);
        gu = arena_calloc(a, (size_t)n * sizeof *gu);
        gr0 = arena_calloc(a, (size_t)n * sizeof *gr0);
    }
    memset(L, 0, sizeof *L);
    // p = sigmoid(clamp(pred)); dp collects ∂L/∂p, turned into ∂L/∂pred at the end
    double *p = arena_alloc(a, (size_t)n * sizeof *p), *dp = arena_calloc(a, (size_t)n * sizeof *dp);
    for (int64_t i = 0; i < n; i++) p[i] = sigmoid(fmin(fmax(x[i], -LOGIT_CLAMP), LOGIT_CLAMP));

    L->bce = bce_logits_mean(x, y, n, gx, w->bce);

    // IoU: 1 − mean over images of (Σpy + 1e-5) / (Σp + Σy − Σpy + 1e-5)
    for (int64_t b = 0; b < N; b++) {
        const double *pb = p + b * HW, *yb = y + b * HW;
        double I = 0, sp = 0, sy = 0;
        for (int64_t i = 0; i < HW; i++) I += pb[i] * yb[i], sp += pb[i], sy += yb[i];
        double num = I + 1e-5, den = sp + sy - I + 1e-5;
        L->iou += num / den / (double)N;
        if (grad)   // d(num/den)/dp_i = y_i/den − num·(1 − y_i)/den²
            for (int64_t i = 0; i < HW; i++)
                dp[b * HW + i] -= w->iou * (yb[i] / den - num * (1 - yb[i]) / (den * den)) / (double)N;
    }
    L->iou = 1 - L->iou;

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
                L->edge += (pe - te) * (pe - te) / (double)n;
                double g = w->edge * 2 * (pe - te) / (double)n / pe;
                px[i] *= g, py[i] *= g;   // now ∂L/∂gx, ∂L/∂gy
            }
            if (grad) {
                stencil3_backward(dp + b * HW, px, H, W, SOBEL_X);
                stencil3_backward(dp + b * HW, py, H, W, SOBEL_Y);
            }
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
                L->boundary += wt * bce_logit(xc, yb[i]) / (double)n;
                if (grad) gx[b * HW + i] += w->boundary * wt * (sigmoid(xc) - yb[i]) / (double)n;
            }
        }
    }

    // Uncert: mean(|p − y| · log(1/(u + 1e-8)))
    for (int64_t i = 0; i < n; i++) {
        double e = p[i] - y[i], lg = log(1 / (u[i] + 1e-8));
        L->uncertainty += fabs(e) * lg / (double)n;
        if (grad) {
            dp[i] += w->uncertainty * (e > 0 ? 1.0 : e < 0 ? -1.0 : 0.0) * lg / (double)n;
            gu[i] += w->uncertainty * fabs(e) * (-1 / (u[i] + 1e-8)) / (double)n;
        }
    }

    L->reverse_attention = bce_prob_mean(fg, y, n, gfg, w->reverse_attention);
    L->search = bce_prob_mean(sm, y, n, gsm, w->search);

    // Deep supervision against the bilinearly resized mask
    for (int j = 0; j < 3; j++) {
        const Tensor *dj = &out->deep[j];
        int64_t h = T_H(dj), ww = T_W(dj), m = N * h * ww;
        const double *xd = to_f64(a, dj);
        double *yd = arena_alloc(a, (size_t)m * sizeof *yd);
        for (int64_t b = 0; b < N; b++) resize_plane(y + b * HW, H, W, yd + b * h * ww, h, ww);
        if (grad) gd[j] = arena_calloc(a, (size_t)m * sizeof(double));
        L->deep += bce_logits_mean(xd, yd, m, gd[j], w->deep / 3) / 3;
    }

    L->refinement = w->refinement * bce_logits_mean(r0, y, n, gr0, w->refinement);
    L->balance = balance;

    L->total = w->bce * L->bce + w->iou * L->iou + w->edge * L->edge + w->boundary * L->boundary +
               w->uncertainty * L->uncertainty + w->reverse_attention * L->reverse_attention +
               w->search * L->search + w->deep * L->deep + L->refinement + w->balance * L->balance;

    if (grad) {
        // ∂p/∂pred = p(1 − p) inside the clamp
        for (int64_t i = 0; i < n; i++)
            if (x[i] >= -LOGIT_CLAMP && x[i] <= LOGIT_CLAMP) gx[i] += dp[i] * p[i] * (1 - p[i]);
        memset(grad, 0, sizeof *grad);
        // the gradients must outlive the scratch above: copy them below the mark
        Tensor tg[8];
        const Tensor *like[8] = { &out->pred, &out->fg_map, &out->search_map, &out->uncertainty, &out->refine[0],
                                  &out->deep[0], &out->deep[1], &out->deep[2] };
        double *src[8] = { gx, gfg, gsm, gu, gr0, gd[0], gd[1], gd[2] };
        int64_t total = 0;
        for (int i = 0; i < 8; i++) total += tensor_numel(like[i]);
        double *keep = cx_malloc((size_t)total * sizeof(double));
        for (int i = 0, o = 0; i < 8; o += (int)tensor_numel(like[i]), i++)
            memcpy(keep + o, src[i], (size_t)tensor_numel(like[i]) * sizeof(double));
        arena_release(a, mk);
        for (int i = 0, o = 0; i < 8; o += (int)tensor_numel(like[i]), i++) tg[i] = grad_tensor(a, like[i], keep + o);
        free(keep);
        grad->pred = tg[0], grad->fg_map = tg[1], grad->search_map = tg[2], grad->uncertainty = tg[3];
        grad->refine[0] = tg[4], grad->deep[0] = tg[5], grad->deep[1] = tg[6], grad->deep[2] = tg[7];
    } else {
        arena_release(a, mk);
    }
}
