// schedule.h — learning-rate schedules of the reference trainer, as a pure
// function of the position in training (so a resumed run gets the same rates).
// reference: torch.optim.lr_scheduler.OneCycleLR (pct_start 0.1, cos, div 25,
// final div 1e4), CosineAnnealingLR (T_max = epochs, eta_min = min_lr),
// CosineAnnealingWarmRestarts (T_0 = max(1, epochs/4), T_mult), plus linear warm-up.
// Cosine forms are evaluated at the fractional epoch (per step, smoothly).
//
//   LrSchedule s = { .kind = LR_COSINE, .base_lr = 1e-4, .min_lr = 1e-6, .epochs = 30,
//                    .steps_per_epoch = 250, .warmup_epochs = 1, .t_mult = 2 };
//   double lr = lr_at(&s, global_step);
#pragma once
#include <stdint.h>

typedef enum { LR_ONECYCLE = 0, LR_COSINE, LR_COSINE_RESTART, LR_NONE } lr_kind;

typedef struct {
    lr_kind kind;
    double base_lr, min_lr;
    int epochs;
    int64_t steps_per_epoch;   // optimizer steps per epoch (after accumulation)
    double warmup_epochs;
    int t_mult;
} LrSchedule;

double lr_at(const LrSchedule *s, int64_t step);
int lr_kind_parse(const char *name, lr_kind *k);   // "onecycle|cosine|cosine_restart|none"
const char *lr_kind_name(lr_kind k);
