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
    s->wstats = tensor_new(&s->keep, nn_stat_dtype(&rt->ctx), 1, (int64_t[]){ 3 });
    s->wseg = cx_calloc((size_t)pt->n + 1, sizeof *s->wseg);
}

void train_step_free(TrainStep *s) {
    arena_free(&s->keep);
    free(s->wseg);
}

// Whether every weight is finite after the update: Σw² over the table on the device
// (non-finite iff some weight is), one small download. A non-finite one is then found
// on the host (the failure path) and named.
static int weights_finite(TrainStep *s, StepResult *r) {
    Runtime *rt = s->rt;
    ParamTable *pt = s->pt;
    for (int i = 0; i < pt->n; i++) s->wseg[i] = (AdamSeg){ .offset = pt->p[i].offset, .numel = pt->p[i].numel };
    Tensor w = tensor_view(pt->data, pt->dtype, 1, &pt->numel);
    w.device = pt->device;
    grad_norm_clip(&rt->ctx.op, &s->wstats, &w, s->wseg, pt->n, 0);
    Tensor h = nn_to_host(&rt->ctx, &s->wstats);
    if (isfinite(tensor_get(&h, 0))) return 1;
    params_sync_host(pt);
    r->bad_param = params_first_nonfinite(pt, &r->bad_index);
    if (r->bad_param >= 0) {
        Tensor v = params_host_value(pt, r->bad_param);
        r->bad_value = tensor_get(&v, r->bad_index);
    }
    return r->bad_param < 0;   // Σw² overflowed with every weight finite: not a failure
}

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

// Data parallel: the gradients, the loss terms and the balance sum of every rank, summed.
static cx_status allreduce_step(TrainStep *s) {
    ParamTable *pt = s->pt;
    Tensor g = tensor_view(pt->grad, pt->dtype, 1, &pt->numel);
    g.device = pt->device;
    CX_TRY(comm_allreduce_sum(s->comm, &g));
    Tensor terms = tensor_slice0(&s->stats, 0, CL_TERMS);
    CX_TRY(comm_allreduce_sum(s->comm, &terms));
    int64_t one = 1;
    Tensor bal = tensor_view(&s->balance, DT_F64, 1, &one);
    return comm_allreduce_sum(s->comm, &bal);
}

cx_status train_step_finish(TrainStep *s, double lr, double grad_clip, StepResult *r) {
    Runtime *rt = s->rt;
    OpCtx *op = &rt->ctx.op;
    memset(r, 0, sizeof *r);
    r->bad_param = -1;
    CX_ASSERT(s->n_micro > 0, "train_step_finish without a micro-batch");
    int n = s->n_micro;   // micro-batches in the mean (over all ranks)
    if (s->comm && s->comm->world > 1) {
        CX_TRY(allreduce_step(s));
        n *= s->comm->world;
    }
    if (n > 1) grad_scale(op, s->pt, 1.0 / n);
    Tensor norm = tensor_slice0(&s->stats, CL_TERMS, 3);
    grad_clip_stats(op, s->pt, s->opt, grad_clip, &norm);
    // the step's one synchronisation: the terms and the norm together
    Tensor h = nn_to_host(&rt->ctx, &s->stats);
    double t[CL_TERMS];
    for (int i = 0; i < CL_TERMS; i++) t[i] = tensor_get(&h, i) / n;
    camo_loss_from_terms(&s->w, t, s->balance / n, &r->loss);
    r->grad_norm = tensor_get(&h, CL_TERMS + 1);
    r->loss_finite = isfinite(r->loss.total);
    for (int i = 0; i < CL_TERMS; i++) r->loss_finite &= isfinite(t[i]) != 0;
    r->grad_finite = isfinite(r->grad_norm);
    if (!r->loss_finite || !r->grad_finite) return CX_OK;
    Tensor scale = tensor_slice0(&s->stats, CL_TERMS + 2, 1);
    adamw_step(op, s->opt, s->pt, lr, &scale);
    r->applied = 1;
    // an update that made a weight non-finite stops here: it reaches neither the EMA nor a checkpoint
    r->weights_finite = weights_finite(s, r);
    if (!r->weights_finite) return CX_OK;
    if (s->ema) ema_update(op, s->ema, s->pt);
    return CX_OK;
}
