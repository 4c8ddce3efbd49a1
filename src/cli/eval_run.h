// eval_run.h — the work of `camoxpert eval` (cmd_eval.c prints it): datasets of
// ground-truth masks, methods' prediction folders, pairing them by base name with every
// missing and extra file counted and named, measuring each pair in parallel, and the
// results as JSON. A "cell" is one method on one dataset.
//
//   EvalSet set;   CX_TRY(eval_set_from_dir(&set, "data/GT"));
//   EvalCell cell = { 0 };
//   CX_TRY(eval_cell_pair(&cell, &set, "pred/", ""));  // prints what is missing or extra
//   if (cell.pairs_ok) eval_cell_measure(&cell, &set, 0, "");
//   if (cell.scored) j = eval_cell_json(&cell, 1, 1);  // scores, curves, per image
//   eval_cell_free(&cell); eval_set_free(&set);
#pragma once
#include "data/testsets.h"
#include "eval/eval.h"
#include <cjson/cJSON.h>

typedef struct { char *stem, *file; } EvalFile;   // base name without extension, file name

typedef struct {
    char *name;          // "CAMO" (its prediction folder's name), or the GT folder's base name
    char *title;         // "CAMO-test" as papers print it
    char *gt_dir;        // the masks
    int expected;        // images in the standard set; 0 for a plain folder
    int cod10k;          // predictions of COD10K-NonCAM-... images are counted, not named
    int n_noncam_left;   // NonCAM masks left out
    EvalFile *gt;        // (n_gt) sorted by stem
    int n_gt;
} EvalSet;

typedef struct {          // one image's scores, kept for the JSON and the per-image CSV
    const EvalFile *gt;
    const EvalFile *pred;
    double v[EVAL_N_MAIN + EVAL_N_EXTRA];
    char super[EVAL_CATEGORY_MAX], sub[EVAL_CATEGORY_MAX];
} EvalImage;

typedef struct { char name[2 * EVAL_CATEGORY_MAX + 1]; MetricsAccum acc; } EvalCategory;

typedef struct {
    char *pred_dir;            // NULL: the method has no folder for this set
    EvalFile *pred;            // (n_pred) the folder's image files
    int n_pred;
    int n_missing, n_extra, n_side, n_noncam_pred, n_failed;
    int pairs_ok;              // every mask has a prediction: measure it
    int scored;                // measured without an error
    char why[256];             // when not scored
    EvalImage *img;            // (n_img) in mask order
    int n_img;
    MetricsAccum acc;
    MetricsSummary s;
    MetricsCurves curves;
    EvalCategory *cats;        // (n_cats) sorted: super-classes and "super/sub"
    int n_cats;
} EvalCell;

// A plain folder of masks (--gt DIR) as a set named after the folder.
cx_status eval_set_from_dir(EvalSet *s, const char *gt_dir);
// A standard test set found by testsets_find.
void eval_set_from_testset(EvalSet *s, const TestSet *t);
void eval_set_free(EvalSet *s);

// Lists pred_dir and pairs it with the set's masks. Prints, prefixed by label ("" or
// "ours on CAMO-test: "), every missing prediction and extra file by name (the first
// 10 of each, then the count); camoxpert predict's side files (<name>_overlay.*,
// <name>_routing*) are counted only; so are COD10K NonCAM predictions when the set left
// those masks out. Sets pairs_ok when nothing is missing, else why.
cx_status eval_cell_pair(EvalCell *c, const EvalSet *s, const char *pred_dir, const char *label);
// Measures every pair (OpenMP over images, added in mask order), then fills s, curves
// and the categories. Errors name the files; the cell is then not scored.
void eval_cell_measure(EvalCell *c, const EvalSet *s, int resize_pred, const char *label);
void eval_cell_free(EvalCell *c);

// {"n", "overall": {...}, "curves": {...}, "categories": {...}, "per_image": {...},
// "files": {counts}}: curves and per_image when asked. Curves are in PySODMetrics'
// order (index i: threshold 255 - i), as eval_curves_order says.
cJSON *eval_cell_json(const EvalCell *c, int curves, int per_image);
cJSON *eval_summary_json(const MetricsSummary *s);
extern const char eval_curves_order[];
