// eval.c — categories from file names and the scores' JSON names (see eval.h).
#include "eval/eval.h"
#include "core/names.h"
#include <string.h>

const char *const eval_json_keys[EVAL_N_MAIN + EVAL_N_EXTRA] = {
    "Smeasure", "wFmeasure", "MAE", "adpEm", "meanEm", "maxEm", "adpFm", "meanFm", "maxFm",
    "IoU50", "Dice50", "adpIoU", "adpDice",
};

void eval_summary_values(const MetricsSummary *s, double *v) {
    const double x[] = { s->sm, s->wfm, s->mae, s->adp_em, s->mean_em, s->max_em, s->adp_fm, s->mean_fm,
                         s->max_fm, s->iou_50, s->dice_50, s->iou_adp, s->dice_adp };
    memcpy(v, x, sizeof x);
}

void eval_image_values(const MetricsImage *m, double *v) {
    const double x[] = { m->sm, m->wfm, m->mae, m->adp_em, m->mean_em, m->max_em, m->adp_fm, m->mean_fm,
                         m->max_fm, m->iou_50, m->dice_50, m->iou_adp, m->dice_adp };
    memcpy(v, x, sizeof x);
}

int eval_category_of(const char *name, char *super, char *sub) {
    return name_category(name, super, EVAL_CATEGORY_MAX, sub, EVAL_CATEGORY_MAX);
}
