// step.c — see step.h.
#include "train/step.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void train_step_init(TrainStep *s, Runtime *rt, CamoXpert *m, ParamTable *pt, AdamW *opt, Ema *ema,
                     const CamoLossWeights *w) {
    memset(s, 0, sizeof *s);
    s->rt = rt, s->m = m, s->pt = pt, s->opt = opt, s->ema = ema, s->w = *w;
    arena_init_on(&s->keep, "training step", 4096, rt->device);
    s->stats = tensor_new(&s->keep, nn_stat_dtype(&rt->ctx), 1, (int64_t[]){ CL_TERMS + 3 });
    s->wstats = tensor_new(&s->keep, nn_stat_dtype(&rt->ctx), 1, (int64_t[]){ 3 });
    s->wseg = cx_calloc((size_t)pt->n + 1, sizeof *s->wseg);
    s->accum = 1;
    const char *b = getenv("CAMOXPERT_GRAD_BUCKETS");
    s->buckets = !(b && !strcmp(b, "0"));
    s->reduced_from = pt->numel;
    const char *fw = getenv("CAMOXPERT_FIRST_WRITE");
    s->first_write = !(fw && !strcmp(fw, "0"));
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
    s->reduced_from = s->pt->numel;
    s->n_buckets = 0;
    s->bucket_err = CX_OK;
}

// Gradient elements [from, reduced_from) summed over the ranks, started now.
static void start_bucket(TrainStep *s, int64_t from) {
    if (s->bucket_err || from >= s->reduced_from) return;
    ParamTable *pt = s->pt;
    int64_t n = s->reduced_from - from;
    Tensor g = tensor_view((char *)pt->grad + from * (int64_t)dtype_size(pt->dtype), pt->dtype, 1, &n);
    g.device = pt->device;
    s->bucket_err = comm_allreduce_start(s->comm, &g);
    if (s->bucket_err) snprintf(s->bucket_msg, sizeof s->bucket_msg, "%s", cx_errmsg());
    s->reduced_from = from;
    s->n_buckets++;
}

// nn.h grad_ready: the table from entry `first` on is final.
static void grad_ready(void *arg, int first) {
    TrainStep *s = arg;
    start_bucket(s, s->pt->p[first].offset);
}

void train_step_accumulate(TrainStep *s, const Tensor *image, const Tensor *mask, int skip_backbone,
                           CamoXpertOutputs *o) {
    Runtime *rt = s->rt;
    NNCtx *ctx = &rt->ctx;
    runtime_step_reset(rt);
    Tensor x = runtime_input(rt, image, rt->dtype), y = runtime_input(rt, mask, nn_stat_dtype(ctx));
    // First-write gradients (ops.h): the step's zeroed buffers are deferred zeros, written
    // by their first op; what is still pending at the end is filled (normally nothing).
    ZeroSet zs;
    if (s->first_write) {
        zeroset_init(&zs, ctx->act);
        ctx->op.zeros = ctx->host_op.zeros = &zs;
    }
    camoxpert_forward(ctx, s->m, &x, o);
    Tensor terms = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ CL_TERMS });
    CodOutputs g;
    camo_loss_terms(ctx, &s->w, &o->maps, &y, &terms, &g);
    Tensor acc = tensor_slice0(&s->stats, 0, CL_TERMS);
    axpy(&ctx->op, &acc, 1.0, &terms);
    s->balance += o->balance_loss;
    CX_ASSERT(s->reduced_from == s->pt->numel, "train_step_accumulate: a micro-batch after the step's last one "
              "(TrainStep.accum = %d) — its gradients would miss the all-reduce", s->accum);
    const int bucketed = s->buckets && s->comm && s->comm->world > 1 && s->n_micro + 1 == s->accum;
    if (bucketed) ctx->grad_ready = grad_ready, ctx->grad_ready_arg = s;
    if (skip_backbone) camoxpert_backward_features(ctx, s->m, &g, s->w.balance, NULL);
    else camoxpert_backward(ctx, s->m, &g, s->w.balance, NULL);
    ctx->grad_ready = NULL, ctx->grad_ready_arg = NULL;
    if (s->first_write) {
        ops_zeros_flush(&ctx->op);
        ctx->op.zeros = ctx->host_op.zeros = NULL;
        zeroset_free(&zs);
        s->zeros_deferred += zs.deferred, s->zeros_written += zs.written;
        s->zeros_filled += zs.filled, s->zeros_dropped += zs.dropped;
    }
    s->n_micro++;
}

// Data parallel: the gradients, the loss terms and the balance sum of every rank, summed.
// The gradient buffer's buckets started during the backward, the rest now, then waited for.
static cx_status allreduce_step(TrainStep *s) {
    start_bucket(s, 0);
    if (s->bucket_err) return CX_FAIL(s->bucket_err, "%s", s->bucket_msg);
    CX_TRY(comm_wait(s->comm));
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
    if (n > 1) optim_grad_scale(op, s->pt, 1.0 / n);
    Tensor norm = tensor_slice0(&s->stats, CL_TERMS, 3);
    optim_grad_clip_stats(op, s->pt, s->opt, grad_clip, &norm);
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
