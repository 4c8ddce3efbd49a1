// train_config.c — see train_config.h.
#include "train/train_config.h"
#include "nn/memory.h"
#include <string.h>

void train_config_default(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    c->checkpoint_dir = "checkpoints";
    c->backbone = "edgenext_base";
    c->batch_size = 16;
    c->stage2_batch_size = 0;   // 0: same as batch_size
    c->img_size = 352;
    c->epochs = 120;
    c->stage1_epochs = 30;
    c->lr = 1e-3;
    c->stage2_lr = 1e-4;
    c->weight_decay = 1e-4;
    c->min_lr = 1e-6;
    c->warmup_epochs = 0;
    c->scheduler = LR_COSINE;
    c->t_mult = 2;
    c->accumulation_steps = 1;
    c->ema_decay = 0.999;
    c->seed = 42;
    c->num_workers = 2;
    c->num_experts = 6;
    c->top_k = 2;
    c->lb_coef = 0.01;
    c->balance = MOE_BALANCE_MSE;
    c->bias_rate = 1e-3;
    c->routing = "global";
    c->route_grid = 4;
    c->router_lr_scale = 0.1;
    c->val_fraction = 0.1;
    c->val_every = 1;
    c->grad_clip = 0.5;
    c->progress = -1;
    c->device = "auto";
    c->precision = "auto";
    c->recompute = -1;
}

// A double option in [lo, hi] (NaN fails every comparison, so it is refused too).
#define CHECK_RANGE(v, lo, hi, opt, hint)                                                                    \
    do {                                                                                                 \
        if (!((v) >= (lo) && (v) <= (hi)))                                                               \
            return CX_FAIL(CX_EARG, "%s %g: must be a finite number from %g to %g%s", opt, (double)(v),  \
                           (double)(lo), (double)(hi), hint);                                            \
    } while (0)
#define CHECK_IRANGE(v, lo, hi, opt, hint)                                                                   \
    do {                                                                                                 \
        if ((v) < (lo) || (v) > (hi))                                                                    \
            return CX_FAIL(CX_EARG, "%s %lld: must be from %lld to %lld%s", opt, (long long)(v),          \
                           (long long)(lo), (long long)(hi), hint);                                       \
    } while (0)

cx_status train_config_check(const TrainConfig *c) {
    if (!c->dataset_path || !*c->dataset_path)
        return CX_FAIL(CX_EARG, "--dataset-path is required (a COD10K-v3, packaged, CAMO or Imgs/GT folder; "
                       "`camoxpert synth --out DIR` makes one)");
    CX_TRY(camoxpert_check_img_size(c->img_size, "--img-size"));
    if (c->sync_bn && c->sparse)
        return CX_FAIL(CX_EARG, "--sync-bn with --use-sparse-moe is not supported yet: an expert runs only on the images routed "
                       "to it, so a rank whose batch sends it none would skip its BatchNorm exchanges and the ranks "
                       "would no longer pair up; use --sync-bn with the dense model, or leave it out (per-rank "
                       "statistics, as the reference's DDP)");
    CHECK_IRANGE(c->batch_size, 1, 65536, "--batch-size", "");
    CHECK_IRANGE(c->stage2_batch_size, 0, 65536, "--stage2-batch-size", " (0: --batch-size)");
    CHECK_IRANGE(c->epochs, 1, 1000000, "--epochs", "");
    if (c->stage1_epochs < 0)
        return CX_FAIL(CX_EARG, "--stage1-epochs %d: must be from 0 to --epochs (%d)", c->stage1_epochs, c->epochs);
    if (c->stage1_epochs > c->epochs)
        return CX_FAIL(CX_EARG, "--stage1-epochs %d is more than --epochs %d (epochs counts both stages); "
                       "raise --epochs or lower --stage1-epochs", c->stage1_epochs, c->epochs);
    if (c->skip_stage1 && c->stage1_epochs == c->epochs)
        return CX_FAIL(CX_EARG, "--skip-stage1 with --stage1-epochs = --epochs (%d) leaves nothing to train; "
                       "lower --stage1-epochs", c->epochs);
    // Learning rates above 1 only ever diverge with AdamW (its steps are about lr in size).
    if (!(c->lr > 0 && c->lr <= 1)) return CX_FAIL(CX_EARG, "--lr %g: must be a finite number above 0 and at most 1", c->lr);
    if (!(c->stage2_lr > 0 && c->stage2_lr <= 1))
        return CX_FAIL(CX_EARG, "--stage2-lr %g: must be a finite number above 0 and at most 1", c->stage2_lr);
    if (!(c->weight_decay >= 0 && c->weight_decay < 1))
        return CX_FAIL(CX_EARG, "--weight-decay %g: must be a finite number from 0 to below 1", c->weight_decay);
    CHECK_RANGE(c->min_lr, 0, 1, "--min-lr", "");
    if (c->min_lr >= c->lr && c->scheduler != LR_NONE && c->scheduler != LR_ONECYCLE)
        return CX_FAIL(CX_EARG, "--min-lr %g is not below --lr %g; lower --min-lr or use --scheduler none", c->min_lr, c->lr);
    CHECK_RANGE(c->warmup_epochs, 0, c->epochs, "--warmup-epochs", " (at most --epochs)");
    CHECK_IRANGE(c->t_mult, 1, 100, "--t-mult", "");
    CHECK_IRANGE(c->accumulation_steps, 1, 65536, "--accumulation-steps", "");
    if (!(c->ema_decay > 0 && c->ema_decay < 1)) return CX_FAIL(CX_EARG, "--ema-decay %g: must be in (0, 1)", c->ema_decay);
    if (c->num_workers < 1 || c->num_workers > cx_threads_max())
        return CX_FAIL(CX_EARG, "--num-workers %d: must be between 1 and %d", c->num_workers, cx_threads_max());
    if (c->sparse) {
        if (c->num_experts < 1 || c->num_experts > MOE_MAX_EXPERTS)
            return CX_FAIL(CX_EARG, "--num-experts %d: must be between 1 and %d", c->num_experts, MOE_MAX_EXPERTS);
        if (c->top_k < 1)
            return CX_FAIL(CX_EARG, "--top-k %d: must be from 1 to --num-experts (%d): each image picks k of the E "
                           "experts", c->top_k, c->num_experts);
        if (c->top_k > c->num_experts)
            return CX_FAIL(CX_EARG, "--top-k %d is more than --num-experts %d (each image picks k of the E experts); "
                           "lower --top-k or raise --num-experts", c->top_k, c->num_experts);
        CHECK_RANGE(c->lb_coef, 0, 100, "--lb-coef", "");
        CHECK_RANGE(c->router_lr_scale, 0, 100, "--router-lr-scale", "");
        CHECK_RANGE(c->bias_rate, 0, 1, "--bias-update-rate", "");
    }
    if (!(c->val_fraction >= 0 && c->val_fraction < 1))
        return CX_FAIL(CX_EARG, "--val-fraction %g: must be in [0, 1) (0 turns validation off)", c->val_fraction);
    CHECK_IRANGE(c->val_every, 1, 1000000, "--val-every", "");
    CHECK_RANGE(c->grad_clip, 0, 1e30, "--grad-clip", " (0 turns clipping off)");
    CHECK_IRANGE(c->max_steps, 0, INT64_MAX, "--max-steps", " (0: no limit)");
    CHECK_IRANGE(c->progress, -1, 1, "--progress", " (-1: a bar on a terminal)");
    if (c->resume_from && !io_path_exists(c->resume_from))
        return CX_FAIL(CX_EARG, "--resume-from %s: no such file (checkpoints are DIR/last.safetensors or DIR/best.safetensors)",
                       c->resume_from);
    if (c->backbone_weights && !io_path_exists(c->backbone_weights))
        return CX_FAIL(CX_EARG, "--backbone-weights %s: no such file (a timm EdgeNeXt checkpoint in safetensors)",
                       c->backbone_weights);
    return CX_OK;
}

cx_status train_config_check_memory(const TrainConfig *c, const Model *model, const Dataset *tr, const Dataset *va,
                                    FILE *out, TrainMemPlan *plan) {
    const int b1 = c->batch_size, b2 = c->stage2_batch_size ? c->stage2_batch_size : c->batch_size;
    const int stage2 = c->stage1_epochs < c->epochs;
    const int B = stage2 && b2 > b1 ? b2 : b1;
    const char *opt = stage2 && b2 > b1 ? "--stage2-batch-size" : "--batch-size";
    const double S2 = (double)c->img_size * c->img_size;
    double data = 256.0 * (1 << 20) + 64.0 * (1 << 20) * c->num_workers;   // the runtime, and a photo per worker
    for (int i = 0; i < va->n; i++) data += (double)va->s[i].w * va->s[i].h;
    if (c->cache) data += 4.0 * S2 * tr->n;
    const double per_batch = 6.0 * 16.0 * S2;   // loader: prefetched and in-flight batches, images + masks in float32
    // On a GPU the model's memory is checked against the GPU's free memory (activations
    // in the run's precision), the data's stays on the host.
    const int gpu = model->rt->device == DEV_CUDA, act = model->rt->dtype == DT_BF16 ? 2 : 4;
    const double fixed = gpu ? 256.0 * (1 << 20) : data, growth = gpu ? 0 : per_batch;
    char how[64], a[32], b[32], d[32], e[32];
    double budget = runtime_mem_budget(model->rt, how, sizeof how);
    // The level: the one asked for, or (auto) the first of none, cheap, blocks that fits.
    const int autolvl = c->recompute < 0;
    nn_recompute lv = autolvl ? NN_RECOMPUTE_NONE : (nn_recompute)c->recompute;
    double need[3] = { 0 };
    MemEstimate m;
    double total;
    for (;;) {
        camoxpert_memory_estimate(&model->cfg, model->pt.numel, B, c->img_size, 1, lv, c->use_ema, act, &m);
        total = need[lv] = m.total + fixed + growth * B;
        if (!autolvl || budget <= 0 || total <= budget || lv == NN_RECOMPUTE_BLOCKS) break;
        lv = (nn_recompute)(lv + 1);
    }
    if (plan) *plan = (TrainMemPlan){ .level = lv, .bytes = total, .model = m };
    if (out)
        fprintf(out, "memory: about %s at peak (weights, gradients, optimizer %s; activations %s at batch %d, %dx%d; data %s)",
                memory_str(total, a, sizeof a), memory_str(m.params + m.grads + m.optimizer + m.ema, b, sizeof b),
                memory_str(m.activations + m.scratch, d, sizeof d), B, c->img_size, c->img_size,
                memory_str(data + per_batch * B, e, sizeof e));
    if (out && budget > 0) fprintf(out, " of %s available (%s)", memory_str(budget, a, sizeof a), how);
    if (out) {
        fprintf(out, "\nrecompute: %s", nn_recompute_name(lv));
        if (!autolvl) fprintf(out, " (--recompute)\n");
        else if (lv == NN_RECOMPUTE_NONE) fprintf(out, " (auto: every activation is kept for the backward)\n");
        else {
            fprintf(out, " (auto: the cheapest level that fits; a step needs about %s without recomputation",
                    memory_str(need[0], a, sizeof a));
            if (lv == NN_RECOMPUTE_BLOCKS) fprintf(out, ", %s with --recompute cheap", memory_str(need[1], b, sizeof b));
            fprintf(out, ")\n");
        }
    }
    if (budget <= 0 || total <= budget) return CX_OK;
    int fit = camoxpert_memory_fit_batch(&model->cfg, model->pt.numel, c->img_size, 1, lv, c->use_ema, act, fixed, budget,
                                         65536);
    while (fit > 0) {   // the loader's batches grow with the batch too
        MemEstimate f;
        camoxpert_memory_estimate(&model->cfg, model->pt.numel, fit, c->img_size, 1, lv, c->use_ema, act, &f);
        if (f.total + fixed + growth * fit <= budget) break;
        fit--;
    }
    // An explicit level that does not fit where a more frugal one would.
    nn_recompute better = lv;
    for (int l = lv + 1; !autolvl && l <= NN_RECOMPUTE_BLOCKS && better == lv; l++) {
        MemEstimate f;
        camoxpert_memory_estimate(&model->cfg, model->pt.numel, B, c->img_size, 1, (nn_recompute)l, c->use_ema, act, &f);
        if (f.total + fixed + growth * B <= budget) better = (nn_recompute)l;
    }
    char advice[256], with[64] = "";
    if (lv != NN_RECOMPUTE_NONE) snprintf(with, sizeof with, " with --recompute %s", nn_recompute_name(lv));
    if (better != lv) snprintf(advice, sizeof advice, "--recompute %s fits%s", nn_recompute_name(better),
                               fit > 0 ? "" : " (or a smaller batch)");
    else if (fit > 0) snprintf(advice, sizeof advice, "%s %d fits%s", opt, fit, with);
    else {
        int S = camoxpert_memory_fit_size(&model->cfg, model->pt.numel, 1, 1, lv, c->use_ema, act, fixed + growth, budget,
                                          c->img_size);
        if (S > 0) snprintf(advice, sizeof advice, "even batch 1 does not fit at %dx%d; --img-size %d with %s 1 fits%s",
                            c->img_size, c->img_size, S, opt, with);
        else snprintf(advice, sizeof advice, "even batch 1 at 32x32 does not fit: the model is too large for this machine");
    }
    if (better != lv && fit > 0) {
        size_t l = strlen(advice);
        snprintf(advice + l, sizeof advice - l, ", or %s %d%s", opt, fit, with);
    }
    return CX_FAIL(CX_EARG, "%s %d at --img-size %d: a training step needs about %s at peak%s, more than the %s this "
                   "machine has available (%s); %s (set CAMOXPERT_MEMORY_LIMIT_MB if its memory grows on demand)", opt, B,
                   c->img_size, memory_str(total, a, sizeof a), with, memory_str(budget, b, sizeof b), how, advice);
}
