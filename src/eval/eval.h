// eval.h — what `camoxpert eval` needs beyond the metrics themselves: image
// categories from file names, and the toolkit's names for the scores (JSON keys).
//
//   char super[EVAL_CATEGORY_MAX], sub[EVAL_CATEGORY_MAX];
//   if (eval_category_of("COD10K-CAM-1-Aquatic-3-Crab-32.png", super, sub))
//       ...   // super = "Aquatic", sub = "Crab"
#pragma once
#include "eval/metrics.h"

#define EVAL_CATEGORY_MAX 64   // size of the super / sub buffers, NUL included

// Category of an image from its file name (extension optional):
//   COD10K-CAM-<super#>-<Super>-<sub#>-<Sub>-<n>   -> Super, Sub (also COD10K-NonCAM-...)
//   SYN-CAM-<Family>-<n>                            -> Family, "" (the synthetic generator)
// core/names.h's name_category with EVAL_CATEGORY_MAX buffers. Returns 1 and fills super and sub (EVAL_CATEGORY_MAX bytes each) when the
// name carries a category; 0 with both empty otherwise.
int eval_category_of(const char *name, char *super, char *sub);

// The toolkit's score names (PySODMetrics / the COD papers' JSON), in table order.
enum { EVAL_N_MAIN = 9, EVAL_N_EXTRA = 4 };
extern const char *const eval_json_keys[EVAL_N_MAIN + EVAL_N_EXTRA];
// The scores of s in the order of eval_json_keys: v (13,).
void eval_summary_values(const MetricsSummary *s, double *v);
void eval_image_values(const MetricsImage *m, double *v);
