// schedule.c — see schedule.h.
#include "schedule.h"
#include <math.h>
#include <string.h>

static double cos_anneal(double start, double end, double pct) {
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

double lr_at(const LrSchedule *s, int64_t step) {
    int64_t total = (int64_t)s->epochs * s->steps_per_epoch;
    if (total < 1) total = 1;
    double ep = s->steps_per_epoch > 0 ? (double)step / (double)s->steps_per_epoch : 0;
    double lr = s->base_lr;
    switch (s->kind) {
    case LR_ONECYCLE: {
        double init = s->base_lr / 25.0, fin = init / 1e4;
        double end1 = 0.1 * (double)total - 1, end2 = (double)total - 1;
        double t = (double)(step < total ? step : total - 1);
        if (end1 <= 0) lr = cos_anneal(s->base_lr, fin, end2 > 0 ? t / end2 : 1);
        else if (t <= end1) lr = cos_anneal(init, s->base_lr, t / end1);
        else lr = cos_anneal(s->base_lr, fin, (t - end1) / (end2 - end1));
        return lr;   // one-cycle has its own warm-up
    }
    case LR_COSINE: {
        double T = s->epochs > 0 ? s->epochs : 1;
        lr = s->min_lr + (s->base_lr - s->min_lr) * (1 + cos(M_PI * fmin(ep, T) / T)) / 2;
        break;
    }
    case LR_COSINE_RESTART: {
        double T0 = s->epochs / 4 > 0 ? s->epochs / 4 : 1, Ti = T0, t = ep;
        int mult = s->t_mult > 0 ? s->t_mult : 1;
        while (t >= Ti) { t -= Ti; Ti *= mult; }
        lr = s->min_lr + (s->base_lr - s->min_lr) * (1 + cos(M_PI * t / Ti)) / 2;
        break;
    }
    case LR_NONE: break;
    }
    if (s->warmup_epochs > 0 && ep < s->warmup_epochs) lr *= (ep + 1.0 / (double)(s->steps_per_epoch ? s->steps_per_epoch : 1)) / s->warmup_epochs;
    return lr;
}

int lr_kind_parse(const char *name, lr_kind *k) {
    static const char *names[] = { "onecycle", "cosine", "cosine_restart", "none" };
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) { *k = (lr_kind)i; return 1; }
    return 0;
}

const char *lr_kind_name(lr_kind k) {
    static const char *names[] = { "onecycle", "cosine", "cosine_restart", "none" };
    return (unsigned)k < 4 ? names[k] : "?";
}
