// metrics.h — the standard camouflaged/salient-object-detection metrics, numerically
// equal to PySODMetrics 1.6 (py_sod_metrics/sod_metrics.py) and CODToolbox:
// S-measure Sα (α = 0.5), E-measure Eφ (adaptive / mean / max), weighted F-measure
// Fβw (β² = 1), F-measure Fβ (β² = 0.3; adaptive / mean / max), MAE, IoU / Dice at
// 0.5 and at the adaptive threshold, and the 256-threshold curves (precision, recall,
// Fβ, Eφ) the PR and threshold plots draw. docs/METRICS.md lists every convention.
//
// Inputs are 8-bit grayscale maps of one size, as the toolkits read them
// (cv2.IMREAD_GRAYSCALE): the prediction is scaled by 1/255 and min–max normalised
// (left as is when constant); the ground truth is foreground where > 128.
// One image is measured by metrics_image_u8; a dataset score is the mean of the
// per-image scores, except mean/max Eφ and Fβ, which are the mean and max of the
// per-image threshold curves averaged over the dataset (MetricsAccum does this).
//
//   MetricsAccum acc; metrics_accum_init(&acc);
//   for (each image) {
//       MetricsImage m;
//       CX_TRY(metrics_image_u8(pred, gt, H, W, &m));       // pred, gt: (H, W) u8
//       metrics_accum_add(&acc, &m);
//   }
//   MetricsSummary s; metrics_accum_summary(&acc, &s);    // s.sm, s.max_em, ...
//   MetricsCurves c; metrics_accum_curves(&acc, &c);      // c.pre[t], c.rec[t], ...
//
// During training validation, a sigmoid probability map at the GT's resolution goes
// through metrics_accum_prob, which exports it the way predictions are written to
// disk (metrics_export_u8) and measures the 8-bit result, so validation numbers equal
// what `camoxpert eval` gives on the saved PNGs.
#pragma once
#include "core/core.h"
#include <stdint.h>

#define METRICS_NTHR 256   // threshold levels of the Eφ / Fβ curves

// Scores of one image. Curves are indexed by threshold t = 0..255: the prediction
// is foreground where floor(255 · pred) >= t (pred normalised to [0, 1]).
typedef struct {
    double sm;                         // S-measure, α = 0.5
    double wfm;                        // weighted F-measure, β² = 1
    double mae;                        // mean absolute error
    double adp_em, mean_em, max_em;    // E-measure: adaptive threshold; mean, max of em_curve
    double adp_fm, mean_fm, max_fm;    // F-measure β² = 0.3: adaptive; mean, max of fm_curve
    double iou_50, dice_50;            // binarised at pred > 0.5 (PySODMetrics' "binary")
    double iou_adp, dice_adp;          // binarised at pred >= min(2 · mean(pred), 1)
    int64_t tp_50, fp_50, fn_50;       // the confusion counts at pred > 0.5
    double em_curve[METRICS_NTHR];     // (256,) Eφ at each threshold t
    double fm_curve[METRICS_NTHR];     // (256,) Fβ at each threshold t
    double pre_curve[METRICS_NTHR];    // (256,) precision TP / max(TP + FP, 1) at each t
    double rec_curve[METRICS_NTHR];    // (256,) recall TP / max(|gt|, 1) at each t
} MetricsImage;

// Dataset scores (n images). Field names follow MetricsImage; JSON names in eval.h.
// Every score is a mean over images (PySODMetrics' sample-based scores), except
// iou_50_all and dice_50_all: computed once from the confusion counts summed over
// the dataset (FmeasureV2's sample_based=False, "whole-based").
typedef struct {
    int64_t n;
    double sm, wfm, mae;
    double adp_em, mean_em, max_em;
    double adp_fm, mean_fm, max_fm;
    double iou_50, dice_50, iou_adp, dice_adp;
    double iou_50_all, dice_50_all;
} MetricsSummary;

// A dataset's curves: the per-image curves averaged over its images, indexed by
// threshold t = 0..255 (PySODMetrics stores them in the opposite order, t = 255 first).
typedef struct {
    double pre[METRICS_NTHR], rec[METRICS_NTHR];   // (256,) each: the PR curve
    double fm[METRICS_NTHR], em[METRICS_NTHR];     // (256,) each: Fβ and Eφ against the threshold
} MetricsCurves;

// Running sums over images, float64. Add images in a fixed order for reproducible
// last bits (the CLI measures in parallel and adds in file order).
typedef struct {
    int64_t n;
    double sm, wfm, mae, adp_em, adp_fm, iou_50, dice_50, iou_adp, dice_adp;
    int64_t tp_50, fp_50, fn_50;       // Σ over images of the counts at pred > 0.5
    double em_curve[METRICS_NTHR];     // (256,) Σ over images of em_curve
    double fm_curve[METRICS_NTHR];     // (256,) Σ over images of fm_curve
    double pre_curve[METRICS_NTHR];    // (256,) Σ over images of pre_curve
    double rec_curve[METRICS_NTHR];    // (256,) Σ over images of rec_curve
} MetricsAccum;

// Measures one image. pred, gt: (H, W) row-major u8. Fails (CX_EARG) only on
// non-positive sizes; never aborts. Thread-safe (allocates its own scratch).
cx_status metrics_image_u8(const uint8_t *pred, const uint8_t *gt, int H, int W, MetricsImage *out);

// The same with reusable scratch (about 50 bytes per pixel of the largest image seen),
// for measuring many images: one MetricsWork per thread.
//   MetricsWork *w = metrics_work_new();
//   for (...) CX_TRY(metrics_image_u8_work(w, pred, gt, H, W, &m));
//   metrics_work_free(w);
typedef struct MetricsWork MetricsWork;
MetricsWork *metrics_work_new(void);
void metrics_work_free(MetricsWork *w);
cx_status metrics_image_u8_work(MetricsWork *w, const uint8_t *pred, const uint8_t *gt, int H, int W,
                                MetricsImage *out);

void metrics_accum_init(MetricsAccum *a);
void metrics_accum_add(MetricsAccum *a, const MetricsImage *m);
void metrics_accum_merge(MetricsAccum *dst, const MetricsAccum *src);
// Dataset scores; all zero (with n = 0) when nothing was added.
void metrics_accum_summary(const MetricsAccum *a, MetricsSummary *out);
// Dataset curves (the mean of the per-image curves); all zero when nothing was added.
void metrics_accum_curves(const MetricsAccum *a, MetricsCurves *out);

// Writes a probability map the way COD code exports predictions:
// (p − min) / (max − min + 1e-8), times 255, rounded to nearest, as u8.
// prob: (n,) float, already sigmoid'ed; out: (n,) u8.
void metrics_export_u8(const float *prob, int64_t n, uint8_t *out);

// Validation during training: exports prob (H, W) with metrics_export_u8, measures
// it against gt (H, W) u8 and adds it to a. m (may be NULL) receives the image's scores.
cx_status metrics_accum_prob(MetricsAccum *a, const float *prob, const uint8_t *gt, int H, int W,
                             MetricsImage *m);
