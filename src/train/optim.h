// optim.h — AdamW with decoupled weight decay over a parameter table, per-group
// learning-rate scales and freezing, global gradient-norm clipping, and an
// exponential moving average of the weights, on the table's device: each is a
// host loop over the table's entries that builds a segment list and one op
// (ops.h adamw_update, grad_norm_clip, ema_update) that does the arithmetic.
// reference: torch.optim.AdamW (amsgrad=False), torch.nn.utils.clip_grad_norm_,
// and the reference trainer's EMA (shadow = decay·shadow + (1−decay)·param).
//
//   AdamW opt; adamw_init(&opt, &pt, 1e-4 /* weight decay */);
//   opt.group_scale[PG_ROUTER] = 0.1;      // --router-lr-scale
//   opt.group_frozen[PG_BACKBONE] = 1;     // stage 1
//   optim_grad_clip_stats(&op, &pt, &opt, 0.5, &stats);   // stats (3): Σg², norm, clipping factor
//   Tensor scale = tensor_slice0(&stats, 2, 1);
//   adamw_step(&op, &opt, &pt, lr, &scale);
#pragma once
#include "nn/params.h"
#include "ops/ops.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
    double group_scale[PG_COUNT];   // learning-rate multiplier per group (router: --router-lr-scale)
    int group_frozen[PG_COUNT];     // 1: the group is neither updated nor clipped (stage 1 backbone)
    const unsigned char *entry_frozen;  // (pt->n) or NULL, caller-owned: 1 = this entry is frozen too
                                        // (progressive unfreezing of backbone stages)
    Tensor m, v;                    // (numel) first and second moments, float32, on the table's device
    float *host_m, *host_v;         // (numel) their host copies for checkpoints (adamw_sync_host/device)
    int64_t *steps;                 // (pt->n) steps taken per entry (PyTorch keeps a step per parameter)
    AdamSeg *seg;                   // (pt->n) the segment list built for each call
    int n_entries;
    int64_t numel;
} AdamW;

void adamw_init(AdamW *o, const ParamTable *pt, double weight_decay);   // moments zero, on pt's device
void adamw_free(AdamW *o);
// Is entry i updated by the optimizer right now (trainable, not a buffer, group not frozen)?
int adamw_active(const AdamW *o, const ParamTable *pt, int i);
// One update with learning rate lr (times the entry's group scale). gscale: a
// 1-element clipping factor on the table's device (optim_grad_clip_stats' stats[2]), or NULL.
void adamw_step(OpCtx *op, AdamW *o, ParamTable *pt, double lr, const Tensor *gscale);
// Forgets the moments (a fresh optimizer for stage 2, as the reference builds one).
void adamw_reset(AdamW *o);
// Moments between the device and their host copies (checkpoints); no-ops on a host table.
void adamw_sync_host(AdamW *o);
void adamw_sync_device(AdamW *o);

// stats (3) in the table's dtype on its device: Σ g² over the active entries, the
// global L2 norm, and the factor max_norm / (norm + 1e-6) when norm > max_norm > 0
// (else 1) that adamw_step applies. A norm that is NaN/Inf means a gradient is
// not finite: the caller does not step.
void optim_grad_clip_stats(OpCtx *op, const ParamTable *pt, const AdamW *o, double max_norm, Tensor *stats);
// Scales all gradients (gradient accumulation: 1/accumulation_steps).
void optim_grad_scale(OpCtx *op, ParamTable *pt, double s);

typedef struct {
    double decay;
    void *shadow;     // (numel) in the table's dtype on its device; buffers are copied, not averaged
    void *host;       // (numel) host copy for checkpoints (GPU tables; == shadow on the host)
    int64_t numel;
    cx_dtype dtype;
    cx_device device;
    EmaSeg *seg;      // (n) the segment list
} Ema;

void ema_init(Ema *e, const ParamTable *pt, double decay);   // shadow = the table's values
void ema_update(OpCtx *op, Ema *e, const ParamTable *pt);
// Exchanges the table's values with the shadow (pointers: for evaluation with EMA
// weights; call twice to undo).
void ema_swap(Ema *e, ParamTable *pt);
void ema_sync_host(Ema *e);
void ema_sync_device(Ema *e);
void ema_free(Ema *e);
