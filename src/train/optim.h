// optim.h — AdamW with decoupled weight decay over a parameter table, per-group
// learning-rate scales and freezing, global gradient-norm clipping, and an
// exponential moving average of the weights.
// reference: torch.optim.AdamW (amsgrad=False), torch.nn.utils.clip_grad_norm_,
// and the reference trainer's EMA (shadow = decay·shadow + (1−decay)·param).
//
//   AdamW opt; adamw_init(&opt, &pt, 1e-4 /* weight decay */);
//   opt.group_scale[PG_ROUTER] = 0.1;      // --router-lr-scale
//   opt.group_frozen[PG_BACKBONE] = 1;     // stage 1
//   double norm = grad_clip_norm(&pt, &opt, 0.5);
//   adamw_step(&opt, &pt, lr);
#pragma once
#include "nn/params.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
    double group_scale[PG_COUNT];   // learning-rate multiplier per group (router: --router-lr-scale)
    int group_frozen[PG_COUNT];     // 1: the group is neither updated nor clipped (stage 1 backbone)
    const unsigned char *entry_frozen;  // (pt->n) or NULL, caller-owned: 1 = this entry is frozen too
                                        // (progressive unfreezing of backbone stages)
    float *m, *v;                   // (pt->numel) first and second moments, always float32
    int64_t *steps;                 // (pt->n) steps taken per entry (PyTorch keeps a step per parameter)
    int n_entries;
    int64_t numel;
} AdamW;

void adamw_init(AdamW *o, const ParamTable *pt, double weight_decay);
void adamw_free(AdamW *o);
// Is entry i updated by the optimizer right now (trainable, not a buffer, group not frozen)?
int adamw_active(const AdamW *o, const ParamTable *pt, int i);
// One update with learning rate lr (times the entry's group scale).
void adamw_step(AdamW *o, ParamTable *pt, double lr);
// Forgets the moments of a group (a fresh optimizer for stage 2, as the reference builds one).
void adamw_reset(AdamW *o, const ParamTable *pt);

// Global L2 norm of the active entries' gradients; if it exceeds max_norm > 0,
// scales them by max_norm / (norm + 1e-6). Returns the norm before clipping
// (NaN/Inf when a gradient is not finite — the caller stops the step).
double grad_clip_norm(ParamTable *pt, const AdamW *o, double max_norm);
// Scales all gradients (gradient accumulation: 1/accumulation_steps).
void grad_scale(ParamTable *pt, double s);

typedef struct {
    double decay;
    void *shadow;   // (pt->numel) in the table's dtype; buffers are copied, not averaged
    int64_t numel;
    cx_dtype dtype;
} Ema;

void ema_init(Ema *e, const ParamTable *pt, double decay);
void ema_update(Ema *e, const ParamTable *pt);
// Exchanges the table's values with the shadow (for evaluation with EMA weights; call twice to undo).
void ema_swap(Ema *e, ParamTable *pt);
void ema_free(Ema *e);
