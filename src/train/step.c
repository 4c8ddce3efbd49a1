// step.c — see step.h.
#include "train/step.h"
#include <math.h>
#include <string.h>

void train_step_init(TrainStep *s, Runtime *rt, CamoXpert *m, ParamTable *pt, AdamW *opt, Ema *ema,
                     const CamoLossWeights *w) {
    memset(s, 0, sizeof *s);
    s->rt = rt, s->m = m, s->pt = pt, s->opt = opt, s->ema = ema, s->w = *w;
    arena_init_on(&s->keep, "training step", 4096, rt->device);
    s->stats = tensor_new(&s->keep, nn_stat_dtype(&rt->ctx), 1, (int64_t[]){ CL_TERMS + 3 });
}

void train_step_free(TrainStep *s) { arena_free(&s->keep); }

void train_step_begin(TrainStep *s) {
    params_zero_grad(s->pt);
    fill(&s->rt->ctx.op, &s->stats, 0);
    s->balance = 0;
    s->n_micro = 0;
}

void train_step_accumulate(TrainStep *s, const Tensor *image, const Tensor *mask, int skip_backbone,
                           CamoXpertOutputs *o) {
    Runtime *rt = s->rt;
    NNCtx *ctx = &rt->ctx;
    runtime_step_reset(rt);
    Tensor x = runtime_input(rt, image, rt->dtype), y = runtime_input(rt, mask, nn_stat_dtype(ctx));
    camoxpert_forward(ctx, s->m, &x, o);
    Tensor terms = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ CL_TERMS });
    CodOutputs g;
    camo_loss_terms(ctx, &s->w, &o->maps, &y, &terms, &g);
    Tensor acc = tensor_slice0(&s->stats, 0, CL_TERMS);
    axpy(&ctx->op, &acc, 1.0, &terms);
    s->balance += o->balance_loss;
    if (skip_backbone) camoxpert_backward_features(ctx, s->m, &g, s->w.balance, NULL);
    else camoxpert_backward(ctx, s->m, &g, s->w.balance, NULL);
    s->n_micro++;
}

void train_step_finish(TrainStep *s, double lr, double grad_clip, StepResult *r) {
    Runtime *rt = s->rt;
    OpCtx *op = &rt->ctx.op;
    memset(r, 0, sizeof *r);
    CX_ASSERT(s->n_micro > 0, "train_step_finish without a micro-batch");
    if (s->n_micro > 1) grad_scale(op, s->pt, 1.0 / s->n_micro);
    Tensor norm = tensor_slice0(&s->stats, CL_TERMS, 3);
    grad_clip_stats(op, s->pt, s->opt, grad_clip, &norm);
    // the step's one synchronisation: the terms and the norm together
    Tensor h = s->stats;
    if (s->stats.device == DEV_CUDA) {
        h = tensor_new(&rt->host, s->stats.dtype, 1, s->stats.shape);
        tensor_download(&h, &s->stats);
    }
    double t[CL_TERMS];
    for (int i = 0; i < CL_TERMS; i++) t[i] = tensor_get(&h, i) / s->n_micro;
    camo_loss_from_terms(&s->w, t, s->balance / s->n_micro, &r->loss);
    r->grad_norm = tensor_get(&h, CL_TERMS + 1);
    r->loss_finite = isfinite(r->loss.total);
    for (int i = 0; i < CL_TERMS; i++) r->loss_finite &= isfinite(t[i]) != 0;
    r->grad_finite = isfinite(r->grad_norm);
    if (!r->loss_finite || !r->grad_finite) return;
    Tensor scale = tensor_slice0(&s->stats, CL_TERMS + 2, 1);
    adamw_step(op, s->opt, s->pt, lr, &scale);
    if (s->ema) ema_update(op, s->ema, s->pt);
    r->applied = 1;
}
