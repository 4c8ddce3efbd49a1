// metrics.c — per-image COD metrics and their dataset aggregation (see metrics.h).
// reference: PySODMetrics 1.6, py_sod_metrics/sod_metrics.py (Smeasure, Emeasure,
// Fmeasure, WeightedFmeasure, MAE) and fmeasurev2.py (IoU / Dice handlers).
//
// Exactness. The toolkit's scores are mostly continuous in their inputs, so float64
// with any summation order agrees to ~1e-15. Three places are not continuous and are
// reproduced bit for bit: (1) the adaptive threshold 2·mean(pred) compared with >=,
// (2) the S-measure's SSIM branch `alpha != 0 / beta == 0`, which for a constant
// prediction depends on whether mean(c, c, ..., c) rounds back to c, and (3) the
// S-measure centroid rounding (np.round: half to even). For (1) and (2) every mean
// the toolkit takes with numpy is taken here in numpy's summation order (np_sum),
// and the normalised prediction is computed with numpy's operation order (a 256-entry
// table, since the input is 8-bit).
#include "eval/metrics.h"
#include "core/pixels.h"
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#define EPS DBL_EPSILON          // np.spacing(1), MATLAB's eps
#define FM_BETA2 0.3             // β² of the F-measure
#define NP_BUFSIZE 8192          // numpy's ufunc buffer: reductions go in chunks of this
#define NP_PW_BLOCK 128          // numpy's pairwise-summation block

// ---- numpy-compatible summation ------------------------------------------------
// numpy (1.2x) sums float64 with pairwise summation (8 accumulators per block of
// 128, halving above that) inside each buffer of 8192 elements, and adds the buffer
// sums in order. Verified bit for bit against numpy 1.24 on 1-D arrays and 2-D slices.
static double np_pairwise(const double *a, int64_t n) {
    if (n < 8) {
        double r = 0.0;
        for (int64_t i = 0; i < n; i++) r += a[i];
        return r;
    }
    if (n <= NP_PW_BLOCK) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return np_pairwise(a, n2) + np_pairwise(a + n2, n - n2);
}

// np.sum of a contiguous float64 array a: (n,)
static double np_sum(const double *a, int64_t n) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i += NP_BUFSIZE)
        acc += np_pairwise(a + i, n - i < NP_BUFSIZE ? n - i : NP_BUFSIZE);
    return acc;
}

// ---- scratch -----------------------------------------------------------------
// Buffers for one image, kept between images so a dataset pass touches fresh pages
// only once (first-touch page faults were a fifth of the time).
#define WFM_EXP_LUT (1 << 18)   // cached 2 − exp(log(0.5)/5 · √d²) for d² below this

struct MetricsWork {
    size_t cap_n, cap_m;   // capacities: pixels, max(H, W)
    double *p;      // (H, W) normalised prediction
    double *buf0;   // (H·W,) gathers, quadrant copies
    double *buf1;   // (H·W,) elementwise temporaries
    double *buf2;   // (H·W,) elementwise temporaries
    double *tmp;    // (H, W) horizontal Gaussian pass
    uint8_t *g;     // (H, W) 0/1 ground truth
    int32_t *fr;    // (H, W) row of the nearest foreground pixel (feature transform)
    int32_t *fc;    // (H, W) its column
    int32_t *vg;    // (max(H, W),) Voronoi stack of the feature transform
    int32_t *vfr;   // (max(H, W),) copy of one line's feature rows
    int32_t *vfc;   // (max(H, W),) ... and columns
    double *wlut;   // (WFM_EXP_LUT,) background weight per squared distance; NaN = not yet
};
typedef struct MetricsWork Scratch;

MetricsWork *metrics_work_new(void) { return cx_calloc(1, sizeof(MetricsWork)); }

void metrics_work_free(MetricsWork *s) {
    if (!s) return;
    free(s->p); free(s->buf0); free(s->buf1); free(s->buf2); free(s->tmp); free(s->g);
    free(s->fr); free(s->fc); free(s->vg); free(s->vfr); free(s->vfc); free(s->wlut);
    free(s);
}

static void scratch_reserve(Scratch *s, int H, int W) {
    size_t n = (size_t)H * (size_t)W, m = (size_t)(H > W ? H : W);
    if (n > s->cap_n) {
        free(s->p); free(s->buf0); free(s->buf1); free(s->buf2); free(s->tmp); free(s->g);
        free(s->fr); free(s->fc);
        s->p = cx_malloc(n * sizeof(double));
        s->buf0 = cx_malloc(n * sizeof(double));
        s->buf1 = cx_malloc(n * sizeof(double));
        s->buf2 = cx_malloc(n * sizeof(double));
        s->tmp = cx_malloc(n * sizeof(double));
        s->g = cx_malloc(n);
        s->fr = cx_malloc(n * sizeof(int32_t));
        s->fc = cx_malloc(n * sizeof(int32_t));
        s->cap_n = n;
    }
    if (m > s->cap_m) {
        free(s->vg); free(s->vfr); free(s->vfc);
        s->vg = cx_malloc(m * sizeof(int32_t));
        s->vfr = cx_malloc(m * sizeof(int32_t));
        s->vfc = cx_malloc(m * sizeof(int32_t));
        s->cap_m = m;
    }
    if (!s->wlut) {
        s->wlut = cx_malloc(WFM_EXP_LUT * sizeof(double));
        for (int i = 0; i < WFM_EXP_LUT; i++) s->wlut[i] = NAN;
    }
}

// ---- S-measure -----------------------------------------------------------------
// 2·mean / (mean² + 1 + std + eps), std with ddof = 1, over v: (n,) (overwrites tmp: (n,)).
// n <= 1 gives NaN, as numpy does (the toolkit then clamps the S-measure to 0).
static double sm_object_part(const double *v, int64_t n, double *tmp) {
    double mean = np_sum(v, n) / (double)n;
    for (int64_t i = 0; i < n; i++) { double d = v[i] - mean; tmp[i] = d * d; }
    double var = n > 1 ? np_sum(tmp, n) / (double)(n - 1) : NAN;
    double sd = sqrt(var);
    return 2 * mean / (mean * mean + 1 + sd + EPS);
}

// SSIM-like score of the quadrant rows [r0, r1) × cols [c0, c1) of p and g.
// Empty or one-pixel quadrants give NaN, as in the toolkit (0/0 in numpy).
static double sm_ssim(const double *p, const uint8_t *g, int W, int r0, int r1, int c0, int c1,
                      Scratch *s) {
    int64_t n = (int64_t)(r1 - r0) * (c1 - c0);
    if (n <= 1) return NAN;
    double *q = s->buf0, *dq = s->buf1, *t = s->buf2;   // (n,) each
    int64_t k = 0, fg = 0;
    for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) { q[k++] = p[(size_t)r * W + c]; fg += g[(size_t)r * W + c]; }
    double x = np_sum(q, n) / (double)n;
    double y = (double)fg / (double)n;
    for (int64_t i = 0; i < n; i++) { dq[i] = q[i] - x; t[i] = dq[i] * dq[i]; }
    double sigma_x = np_sum(t, n) / (double)(n - 1);
    // (g − y): the quadrant's gt again, read through the same index order
    k = 0;
    for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) q[k++] = (double)g[(size_t)r * W + c] - y;
    for (int64_t i = 0; i < n; i++) t[i] = q[i] * q[i];
    double sigma_y = np_sum(t, n) / (double)(n - 1);
    for (int64_t i = 0; i < n; i++) t[i] = dq[i] * q[i];
    double sigma_xy = np_sum(t, n) / (double)(n - 1);
    double alpha = 4 * x * y * sigma_xy;
    double beta = (x * x + y * y) * (sigma_x + sigma_y);
    if (alpha != 0) return alpha / (beta + EPS);
    if (beta == 0) return 1;
    return 0;
}

// p: (H, W) normalised prediction; g: (H, W) 0/1 ground truth with fg foreground pixels.
static double sm_compute(const double *p, const uint8_t *g, int H, int W, int64_t fg, Scratch *s) {
    int64_t n = (int64_t)H * W;
    if (fg == 0) return 1 - np_sum(p, n) / (double)n;
    if (fg == n) return np_sum(p, n) / (double)n;
    double gt_mean = (double)fg / (double)n;

    // object term: foreground values p[g], background values (1 − p)[~g]
    int64_t nf = 0, nb = 0;
    double *vf = s->buf0, *vb = s->buf0 + fg;   // (fg,) and (n − fg,)
    int64_t sum_r = 0, sum_c = 0;
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            size_t i = (size_t)r * W + c;
            if (g[i]) { vf[nf++] = p[i]; sum_r += r; sum_c += c; }
            else vb[nb++] = 1 - p[i];
        }
    double fg_score = sm_object_part(vf, nf, s->buf1) * gt_mean;
    double bg_score = sm_object_part(vb, nb, s->buf1) * (1 - gt_mean);
    double object = fg_score + bg_score;

    // region term: split at the centroid, rounded half to even (np.round) and + 1
    int cy = (int)nearbyint((double)sum_r / (double)fg) + 1;
    int cx = (int)nearbyint((double)sum_c / (double)fg) + 1;
    double area = (double)n;
    double w_lt = (double)((int64_t)cx * cy) / area;
    double w_rt = (double)((int64_t)cy * (W - cx)) / area;
    double w_lb = (double)((int64_t)(H - cy) * cx) / area;
    double w_rb = 1 - w_lt - w_rt - w_lb;
    double region = sm_ssim(p, g, W, 0, cy, 0, cx, s) * w_lt
                  + sm_ssim(p, g, W, 0, cy, cx, W, s) * w_rt
                  + sm_ssim(p, g, W, cy, H, 0, cx, s) * w_lb
                  + sm_ssim(p, g, W, cy, H, cx, W, s) * w_rb;

    double sm = object * 0.5 + region * 0.5;
    return sm > 0 ? sm : 0;   // Python's max(0, sm): NaN becomes 0
}

// ---- weighted F-measure ----------------------------------------------------------
// Feature transform of scipy.ndimage.distance_transform_edt(gt == 0, return_indices=True):
// for every pixel, the nearest foreground pixel (fr, fc), with scipy's tie-breaking.
// scipy runs Maurer's algorithm along axis 0, then along axis 1 (ni_morphology.c,
// _ComputeFT / _VoronoiFT); this is the same algorithm with the same comparisons.
static void wfm_feature_transform(const uint8_t *g, int H, int W, Scratch *s) {
    int32_t *fr = s->fr, *fc = s->fc;
    // axis 0: nearest foreground row in the same column; ties go to the upper one
    // (scipy keeps the earlier feature when delta1 <= delta2).
    int32_t *up = s->vg;   // (W,) last foreground row seen, scanning down
    for (int c = 0; c < W; c++) up[c] = -1;
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            size_t i = (size_t)r * W + c;
            if (g[i]) up[c] = r;
            fr[i] = up[c];
        }
    for (int c = 0; c < W; c++) up[c] = -1;   // now: next foreground row, scanning up
    for (int r = H - 1; r >= 0; r--)
        for (int c = 0; c < W; c++) {
            size_t i = (size_t)r * W + c;
            if (g[i]) up[c] = r;
            int a = fr[i], b = up[c];
            if (b >= 0 && (a < 0 || (int64_t)(r - a) * (r - a) > (int64_t)(b - r) * (b - r))) fr[i] = b;
            fc[i] = c;
        }
    // axis 1: for each row, the lower envelope of the parabolas of its features
    int32_t *vg = s->vg, *vr = s->vfr, *vc = s->vfc;
    for (int r = 0; r < H; r++) {
        int32_t *rowr = fr + (size_t)r * W, *rowc = fc + (size_t)r * W;
        memcpy(vr, rowr, (size_t)W * sizeof *vr);
        memcpy(vc, rowc, (size_t)W * sizeof *vc);
        int l = -1;
        for (int ii = 0; ii < W; ii++) {
            if (vr[ii] < 0) continue;
            int64_t fd = vc[ii], wr = (int64_t)(vr[ii] - r) * (vr[ii] - r);
            while (l >= 1) {
                int i1 = vg[l], i2 = vg[l - 1];
                int64_t f1 = vc[i1], a = f1 - vc[i2], b = fd - f1, cc = a + b;
                int64_t ur = (int64_t)(vr[i2] - r) * (vr[i2] - r);
                int64_t vrr = (int64_t)(vr[i1] - r) * (vr[i1] - r);
                if (cc * vrr - b * ur - a * wr - a * b * cc <= 0) break;
                --l;
            }
            vg[++l] = ii;
        }
        int maxl = l;
        if (maxl < 0) continue;   // a row with no feature in reach (only if gt is empty)
        l = 0;
        for (int ii = 0; ii < W; ii++) {
            int k = vg[l];
            int64_t d1 = (int64_t)(vr[k] - r) * (vr[k] - r) + (int64_t)(vc[k] - ii) * (vc[k] - ii);
            while (l < maxl) {
                k = vg[l + 1];
                int64_t d2 = (int64_t)(vr[k] - r) * (vr[k] - r) + (int64_t)(vc[k] - ii) * (vc[k] - ii);
                if (d1 <= d2) break;
                d1 = d2;
                ++l;
            }
            rowr[ii] = vr[vg[l]];
            rowc[ii] = vc[vg[l]];
        }
    }
}

// p: (H, W), g: (H, W) 0/1 with fg > 0 foreground pixels.
static double wfm_compute(const double *p, const uint8_t *g, int H, int W, int64_t fg, Scratch *s) {
    int64_t n = (int64_t)H * W;
    wfm_feature_transform(g, H, W, s);
    double *E = s->buf1, *Et = s->buf2;   // (H, W) each
    for (int64_t i = 0; i < n; i++) E[i] = fabs(p[i] - (double)g[i]);
    for (int64_t i = 0; i < n; i++)
        Et[i] = g[i] ? E[i] : E[(size_t)s->fr[i] * W + s->fc[i]];

    // K = fspecial('gaussian', 7, 5) = k ⊗ k with k the normalised 1-D Gaussian; no entry
    // falls under eps·max, so MATLAB's cut-off never applies. EA = K * Et with zero
    // padding (ndimage.convolve mode='constant'); EA is only read on the foreground, so
    // the horizontal pass covers the foreground's rows ± 3 and the vertical pass only
    // foreground pixels.
    double k[7], ks = 0;
    for (int j = 0; j < 7; j++) { double x = j - 3; k[j] = exp(-(x * x) / (2.0 * 5 * 5)); ks += k[j]; }
    for (int j = 0; j < 7; j++) k[j] /= ks;
    int rmin = H, rmax = -1, cmin = W, cmax = -1;   // the foreground's bounding box
    for (int r = 0; r < H; r++) {
        const uint8_t *gr = g + (size_t)r * W;
        int c0 = 0, c1 = W - 1;
        while (c0 < W && !gr[c0]) c0++;
        if (c0 == W) continue;
        while (!gr[c1]) c1--;
        if (r < rmin) rmin = r;
        rmax = r;
        if (c0 < cmin) cmin = c0;
        if (c1 > cmax) cmax = c1;
    }
    int h0 = rmin - 3 < 0 ? 0 : rmin - 3, h1 = rmax + 3 >= H ? H - 1 : rmax + 3;
    int w0 = cmin, w1 = cmax;   // T is read on foreground columns only
    double *T = s->tmp;   // (H, W), valid on rows h0..h1, columns w0..w1
    for (int r = h0; r <= h1; r++) {
        const double *src = Et + (size_t)r * W;
        double *dst = T + (size_t)r * W;
        for (int c = w0; c <= w1; c++) {
            double acc = 0;
            if (c >= 3 && c + 3 < W) {
                for (int j = -3; j <= 3; j++) acc += k[j + 3] * src[c + j];
            } else {
                for (int j = -3; j <= 3; j++) {
                    int cc = c + j;
                    if (cc >= 0 && cc < W) acc += k[j + 3] * src[cc];
                }
            }
            dst[c] = acc;
        }
    }

    // Ew = min(E, EA) on the foreground, E · (2 − exp(log(0.5)/5 · dist)) on the background
    double *ewf = s->buf0, *ewb = s->buf0 + fg;   // (fg,) and (n − fg,)
    int64_t nf = 0, nb = 0;
    const double c5 = log(0.5) / 5;
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            size_t i = (size_t)r * W + c;
            if (g[i]) {
                double ea = 0;
                if (r >= 3 && r + 3 < H) {
                    for (int j = -3; j <= 3; j++) ea += k[j + 3] * T[i + (ptrdiff_t)j * W];
                } else {
                    for (int j = -3; j <= 3; j++) {
                        int rr = r + j;
                        if (rr >= 0 && rr < H) ea += k[j + 3] * T[(size_t)rr * W + c];
                    }
                }
                ewf[nf++] = ea < E[i] ? ea : E[i];
            } else if (E[i] == 0) {
                ewb[nb++] = 0;   // 0 · weight, whatever the distance
            } else {
                int64_t dy = s->fr[i] - r, dx = s->fc[i] - c, d2 = dy * dy + dx * dx;
                double wgt;
                if (d2 < WFM_EXP_LUT) {
                    wgt = s->wlut[d2];
                    if (isnan(wgt)) wgt = s->wlut[d2] = 2 - exp(c5 * sqrt((double)d2));
                } else {
                    wgt = 2 - exp(c5 * sqrt((double)d2));
                }
                ewb[nb++] = E[i] * wgt;
            }
        }
    double sum_f = np_sum(ewf, nf), sum_b = np_sum(ewb, nb);
    double tpw = (double)fg - sum_f;
    double fpw = sum_b;
    double R = 1 - sum_f / (double)nf;
    double P = tpw / (tpw + fpw + EPS);
    return 2 * R * P / (R + P + EPS);   // (1 + β²) R P / (R + β² P + eps), β² = 1
}

// ---- E-measure -------------------------------------------------------------------
// Closed form of the enhanced-alignment sum from the confusion counts at one
// threshold: tp = fg∧fg, fp = pred fg ∧ gt bg; fgn foreground pixels in gt; n pixels.
static double em_from_counts(int64_t tp, int64_t fp, int64_t fgn, int64_t n) {
    int64_t pred_fg = tp + fp, pred_bg = n - pred_fg;
    double sum;
    if (fgn == 0) sum = (double)pred_bg;
    else if (fgn == n) sum = (double)pred_fg;
    else {
        int64_t fn = fgn - tp, tn = pred_bg - fn;
        double mp = (double)pred_fg / (double)n, mg = (double)fgn / (double)n;
        double dpf = 1 - mp, dpb = 0 - mp, dgf = 1 - mg, dgb = 0 - mg;
        const int64_t part[4] = { tp, fp, fn, tn };
        const double ca[4] = { dpf, dpf, dpb, dpb }, cb[4] = { dgf, dgb, dgf, dgb };
        sum = 0;
        for (int i = 0; i < 4; i++) {
            double align = 2 * (ca[i] * cb[i]) / (ca[i] * ca[i] + cb[i] * cb[i] + EPS);
            double enh = (align + 1) * (align + 1) / 4;
            sum += enh * (double)part[i];
        }
    }
    return sum / ((double)(n - 1) + EPS);
}

// F-measure from counts: precision tp / (tp + fp), recall tp / gt; 0 without overlap.
// *pre and *rec get the precision and recall (PySODMetrics' cal_pr: a zero denominator is 1).
static double fm_from_counts(int64_t tp, int64_t fp, int64_t fgn, double *pre_out, double *rec_out) {
    int64_t ps = tp + fp;
    double pre = (double)tp / (double)(ps ? ps : 1);
    double rec = (double)tp / (double)(fgn > 0 ? fgn : 1);
    *pre_out = pre;
    *rec_out = rec;
    double num = (1 + FM_BETA2) * pre * rec;
    double den = num == 0 ? 1 : FM_BETA2 * pre + rec;
    return num / den;
}

static void iou_dice_from_counts(int64_t tp, int64_t fp, int64_t fgn, double *iou, double *dice) {
    int64_t fn = fgn - tp;
    int64_t di = tp + fp + fn, dd = tp + fn + tp + fp;   // 0/0 is 0, as in fmeasurev2
    *iou = di ? (double)tp / (double)di : 0;
    *dice = dd ? (double)(2 * tp) / (double)dd : 0;
}

// ---- one image -------------------------------------------------------------------
cx_status metrics_image_u8(const uint8_t *pred, const uint8_t *gt, int H, int W, MetricsImage *out) {
    MetricsWork *w = metrics_work_new();
    cx_status st = metrics_image_u8_work(w, pred, gt, H, W, out);
    metrics_work_free(w);
    return st;
}

cx_status metrics_image_u8_work(MetricsWork *work, const uint8_t *pred, const uint8_t *gt, int H, int W,
                                MetricsImage *out) {
    if (H <= 0 || W <= 0) return CX_FAIL(CX_EARG, "metrics: image size %dx%d is empty", W, H);
    // The E-measure divides by (pixels - 1): a one-pixel image gives 1/eps = 4.5e15 in the
    // toolkit, a number that breaks every mean it enters. Such a mask cannot be scored.
    if ((int64_t)H * W < 2)
        return CX_FAIL(CX_EARG, "metrics: the image is %dx%d; the COD metrics need at least 2 pixels (the E-measure "
                       "divides by pixels - 1)", W, H);
    int64_t n = (int64_t)H * W;
    memset(out, 0, sizeof *out);
    Scratch *sp = work;
    scratch_reserve(sp, H, W);

    // prepare_data: pred / 255, min–max normalised unless constant; gt > 128.
    // The prediction is 8-bit, so a table of the 256 normalised values gives the
    // same doubles numpy computes element by element.
    int vmin = 255, vmax = 0;
    int64_t hist_f[256] = { 0 }, hist_b[256] = { 0 };   // (256,) pred values on gt fg / bg
    uint8_t *g = sp->g;                                 // (H, W) 0/1
    for (int64_t i = 0; i < n; i++) {
        uint8_t v = pred[i];
        if (v < vmin) vmin = v;
        if (v > vmax) vmax = v;
        g[i] = gt[i] > 128;
        if (g[i]) hist_f[v]++; else hist_b[v]++;
    }
    double lut[256];
    double mn = vmin / 255.0, mx = vmax / 255.0;
    for (int v = 0; v < 256; v++) {
        double x = v / 255.0;
        lut[v] = vmax != vmin ? (x - mn) / (mx - mn) : x;
    }
    int64_t fgn = 0;
    for (int v = 0; v < 256; v++) fgn += hist_f[v];

    Scratch s = *sp;   // (a copy of the pointers, for brevity below)
    for (int64_t i = 0; i < n; i++) s.p[i] = lut[pred[i]];

    // MAE = mean |p − g|, summed per 8-bit level (exact counts, float64)
    double mae = 0;
    for (int v = 0; v < 256; v++) mae += (double)hist_b[v] * lut[v] + (double)hist_f[v] * (1 - lut[v]);
    out->mae = mae / (double)n;

    // curves: floor(255 · p) per level, cumulative counts from the top
    int64_t cf[METRICS_NTHR] = { 0 }, cb[METRICS_NTHR] = { 0 };   // (256,) counts per bin
    for (int v = vmin; v <= vmax; v++) {   // levels outside [vmin, vmax] normalise outside [0, 1]
        int bin = (int)(lut[v] * 255);
        cf[bin] += hist_f[v];
        cb[bin] += hist_b[v];
    }
    int64_t tp = 0, fp = 0;
    for (int t = METRICS_NTHR - 1; t >= 0; t--) {
        tp += cf[t];
        fp += cb[t];
        out->em_curve[t] = em_from_counts(tp, fp, fgn, n);
        out->fm_curve[t] = fm_from_counts(tp, fp, fgn, &out->pre_curve[t], &out->rec_curve[t]);
    }
    double se = 0, sf = 0;
    out->max_em = out->em_curve[0];
    out->max_fm = out->fm_curve[0];
    for (int t = 0; t < METRICS_NTHR; t++) {
        se += out->em_curve[t];
        sf += out->fm_curve[t];
        if (out->em_curve[t] > out->max_em) out->max_em = out->em_curve[t];
        if (out->fm_curve[t] > out->max_fm) out->max_fm = out->fm_curve[t];
    }
    out->mean_em = se / METRICS_NTHR;
    out->mean_fm = sf / METRICS_NTHR;

    // adaptive threshold min(2 · mean(p), 1), applied with >=
    double thr = 2 * (np_sum(s.p, n) / (double)n);
    if (thr > 1) thr = 1;
    int64_t atp = 0, afp = 0, htp = 0, hfp = 0;
    for (int v = 0; v < 256; v++) {
        if (lut[v] >= thr) { atp += hist_f[v]; afp += hist_b[v]; }
        if (lut[v] > 0.5) { htp += hist_f[v]; hfp += hist_b[v]; }   // FmeasureV2's binary: pred > 0.5
    }
    out->adp_em = em_from_counts(atp, afp, fgn, n);
    if (atp == 0) out->adp_fm = 0;
    else {
        double pre = (double)atp / (double)(atp + afp), rec = (double)atp / (double)fgn;
        out->adp_fm = (1 + FM_BETA2) * pre * rec / (FM_BETA2 * pre + rec);
    }
    iou_dice_from_counts(atp, afp, fgn, &out->iou_adp, &out->dice_adp);
    iou_dice_from_counts(htp, hfp, fgn, &out->iou_50, &out->dice_50);
    out->tp_50 = htp;
    out->fp_50 = hfp;
    out->fn_50 = fgn - htp;

    out->sm = sm_compute(s.p, g, H, W, fgn, &s);
    out->wfm = fgn == 0 ? 0 : wfm_compute(s.p, g, H, W, fgn, &s);

    return CX_OK;
}

// ---- dataset -----------------------------------------------------------------------
void metrics_accum_init(MetricsAccum *a) { memset(a, 0, sizeof *a); }

void metrics_accum_add(MetricsAccum *a, const MetricsImage *m) {
    a->n++;
    a->sm += m->sm; a->wfm += m->wfm; a->mae += m->mae;
    a->adp_em += m->adp_em; a->adp_fm += m->adp_fm;
    a->iou_50 += m->iou_50; a->dice_50 += m->dice_50;
    a->iou_adp += m->iou_adp; a->dice_adp += m->dice_adp;
    a->tp_50 += m->tp_50; a->fp_50 += m->fp_50; a->fn_50 += m->fn_50;
    for (int t = 0; t < METRICS_NTHR; t++) {
        a->em_curve[t] += m->em_curve[t];
        a->fm_curve[t] += m->fm_curve[t];
        a->pre_curve[t] += m->pre_curve[t];
        a->rec_curve[t] += m->rec_curve[t];
    }
}

void metrics_accum_merge(MetricsAccum *dst, const MetricsAccum *src) {
    dst->n += src->n;
    dst->sm += src->sm; dst->wfm += src->wfm; dst->mae += src->mae;
    dst->adp_em += src->adp_em; dst->adp_fm += src->adp_fm;
    dst->iou_50 += src->iou_50; dst->dice_50 += src->dice_50;
    dst->iou_adp += src->iou_adp; dst->dice_adp += src->dice_adp;
    dst->tp_50 += src->tp_50; dst->fp_50 += src->fp_50; dst->fn_50 += src->fn_50;
    for (int t = 0; t < METRICS_NTHR; t++) {
        dst->em_curve[t] += src->em_curve[t];
        dst->fm_curve[t] += src->fm_curve[t];
        dst->pre_curve[t] += src->pre_curve[t];
        dst->rec_curve[t] += src->rec_curve[t];
    }
}

void metrics_accum_summary(const MetricsAccum *a, MetricsSummary *out) {
    memset(out, 0, sizeof *out);
    out->n = a->n;
    if (a->n == 0) return;
    double n = (double)a->n;
    out->sm = a->sm / n; out->wfm = a->wfm / n; out->mae = a->mae / n;
    out->adp_em = a->adp_em / n; out->adp_fm = a->adp_fm / n;
    out->iou_50 = a->iou_50 / n; out->dice_50 = a->dice_50 / n;
    out->iou_adp = a->iou_adp / n; out->dice_adp = a->dice_adp / n;
    // whole-based: one IoU / Dice from the dataset's summed counts
    iou_dice_from_counts(a->tp_50, a->fp_50, a->tp_50 + a->fn_50, &out->iou_50_all, &out->dice_50_all);
    // mean and max of the dataset-averaged curves (not means of per-image maxima)
    double se = 0, sf = 0, me = -INFINITY, mf = -INFINITY;
    for (int t = 0; t < METRICS_NTHR; t++) {
        double e = a->em_curve[t] / n, f = a->fm_curve[t] / n;
        se += e; sf += f;
        if (e > me) me = e;
        if (f > mf) mf = f;
    }
    out->mean_em = se / METRICS_NTHR; out->max_em = me;
    out->mean_fm = sf / METRICS_NTHR; out->max_fm = mf;
}

void metrics_accum_curves(const MetricsAccum *a, MetricsCurves *out) {
    memset(out, 0, sizeof *out);
    if (a->n == 0) return;
    double n = (double)a->n;
    for (int t = 0; t < METRICS_NTHR; t++) {
        out->pre[t] = a->pre_curve[t] / n;
        out->rec[t] = a->rec_curve[t] / n;
        out->fm[t] = a->fm_curve[t] / n;
        out->em[t] = a->em_curve[t] / n;
    }
}

// ---- training validation -------------------------------------------------------------
void metrics_export_u8(const float *prob, int64_t n, uint8_t *out) {
    if (n <= 0) return;
    double mn = prob[0], mx = prob[0];
    for (int64_t i = 1; i < n; i++) {
        if (prob[i] < mn) mn = prob[i];
        if (prob[i] > mx) mx = prob[i];
    }
    const double scale = px_export_scale(mn, mx);
    for (int64_t i = 0; i < n; i++) out[i] = px_export_u8(prob[i], mn, scale);   // round to nearest (cv2.imwrite of a float map)
}

cx_status metrics_accum_prob(MetricsAccum *a, const float *prob, const uint8_t *gt, int H, int W,
                             MetricsImage *m) {
    if (H <= 0 || W <= 0) return CX_FAIL(CX_EARG, "metrics: image size %dx%d is empty", W, H);
    // The E-measure divides by (pixels - 1): a one-pixel image gives 1/eps = 4.5e15 in the
    // toolkit, a number that breaks every mean it enters. Such a mask cannot be scored.
    if ((int64_t)H * W < 2)
        return CX_FAIL(CX_EARG, "metrics: the image is %dx%d; the COD metrics need at least 2 pixels (the E-measure "
                       "divides by pixels - 1)", W, H);
    uint8_t *pred = cx_malloc((size_t)H * W);
    MetricsImage local, *mi = m ? m : &local;
    metrics_export_u8(prob, (int64_t)H * W, pred);
    cx_status st = metrics_image_u8(pred, gt, H, W, mi);
    free(pred);
    if (st) return st;
    metrics_accum_add(a, mi);
    return CX_OK;
}
