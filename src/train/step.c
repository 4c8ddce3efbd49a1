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
    const char *tg = getenv("CAMOXPERT_TRAIN_GRAPH");
    s->graph = !(tg && !strcmp(tg, "0"));
    s->graph_after = 2;
}

static void graph_drop(TrainStep *s) {
    if (s->g.exec) ops_graph_free(&s->rt->ctx.op, s->g.exec);
    free(s->g.counter_delta);
    memset(&s->g, 0, sizeof s->g);
}

void train_step_free(TrainStep *s) {
    graph_drop(s);
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

// Fewer values per channel than this in a BatchNorm's batch statistics is a warning:
// with 2 (1x1 maps at batch 2) x̂ = ±1 whatever the values, and the gradients through
// it reach 1e6 (issue 35); PyTorch refuses 1.
#define BN_MIN_VALUES 4

// Says once, on rank 0, which BatchNorm of the forward just run normalised over the
// fewest values, when they are too few, and the options that give it more.
static void warn_degenerate_bn(TrainStep *s, const Tensor *image) {
    NNCtx *ctx = &s->rt->ctx;
    const BnFewest f = ctx->bn_fewest;
    ctx->bn_fewest.values = 0;
    if (s->bn_warned || !f.values || f.values >= BN_MIN_VALUES) return;
    s->bn_warned = 1;
    if (s->comm && s->comm->rank != 0) return;
    const char *name = s->pt->p[f.param].name, *dot = strrchr(name, '.');   // "<layer>.weight"
    const int len = dot ? (int)(dot - name) : (int)strlen(name);
    const int S = (int)T_H(image), N = (int)T_N(image);
    // Twice the input size gives 4x the values; the batch that gives BN_MIN_VALUES when
    // this layer sees the whole batch (not a routed part of it).
    char batch[64] = "";
    if (f.n == N) snprintf(batch, sizeof batch, " or --batch-size %lld",
                           (long long)((BN_MIN_VALUES * N + f.values - 1) / f.values));
    log_warn("BatchNorm %.*s normalises each channel over %lld value%s (%d image%s of %dx%d at 1/%d of the %dx%d "
             "input): its batch statistics are degenerate and its gradients blow up; a larger --img-size (%d)%s gives "
             "every BatchNorm at least %d values per channel", len, name,
             (long long)f.values, f.values == 1 ? "" : "s", f.n, f.n == 1 ? "" : "s", f.h, f.w, f.h ? S / f.h : 0, S, S,
             2 * S, batch, BN_MIN_VALUES);
}

// The batch on the device: uploaded as it is (float32, into act) — on the CPU the host
// tensors themselves. The conversion to the step's dtypes is an op (step_work), so that
// a captured graph does it again on every replay while the uploads stay outside.
static void step_upload(Runtime *rt, const Tensor *image, const Tensor *mask, Tensor *xu, Tensor *yu) {
    tensor_require_host(image, "train_step_accumulate");
    tensor_require_host(mask, "train_step_accumulate");
    *xu = *image, *yu = *mask;
    if (rt->device != DEV_CUDA) return;
    *xu = tensor_new(&rt->act, image->dtype, image->ndim, image->shape);
    tensor_upload(xu, image);
    *yu = tensor_new(&rt->act, mask->dtype, mask->ndim, mask->shape);
    tensor_upload(yu, mask);
}

static Tensor step_convert(Runtime *rt, const Tensor *up, cx_dtype dt) {
    if (up->dtype == dt) return *up;
    Tensor t = tensor_new(&rt->act, dt, up->ndim, up->shape);
    copy(&rt->ctx.op, &t, up);
    return t;
}

// Forward, loss and backward of one micro-batch whose inputs are uploaded (xu, yu): device
// work only (dense, one rank), so that it can be captured as a graph.
static void step_work(TrainStep *s, const Tensor *xu, const Tensor *yu, int skip_backbone, int bucketed,
                      CamoXpertOutputs *o) {
    Runtime *rt = s->rt;
    NNCtx *ctx = &rt->ctx;
    Tensor x = step_convert(rt, xu, rt->dtype), y = step_convert(rt, yu, nn_stat_dtype(ctx));
    // First-write gradients (ops.h): the step's zeroed buffers are deferred zeros, written
    // by their first op; what is still pending at the end is filled (normally nothing).
    ZeroSet zs;
    if (s->first_write) {
        zeroset_init(&zs, ctx->act);
        ctx->op.zeros = ctx->host_op.zeros = &zs;
    }
    camoxpert_forward(ctx, s->m, &x, o);
    warn_degenerate_bn(s, xu);
    Tensor terms = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ CL_TERMS });
    CodOutputs g;
    camo_loss_terms(ctx, &s->w, &o->maps, &y, &terms, &g);
    Tensor acc = tensor_slice0(&s->stats, 0, CL_TERMS);
    axpy(&ctx->op, &acc, 1.0, &terms);
    s->balance += o->balance_loss;
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
}

// ---- the micro-batch as a CUDA graph ------------------------------------------------------------
// A dense model on one GPU (no gradient buckets, no profiler, no synchronised BatchNorm,
// no ReLU tape) queues the same work at the same addresses for every batch of one shape:
// after graph_after eager micro-batches of a shape (arenas at their peaks, algorithms
// chosen) the next is captured, and from then on each is two uploads into the captured
// input buffers and one replay. The host-side effects of the work — BatchNorm's batch
// counters, the FLOP count, the first-write counters — are measured at the capture and
// applied per replay. Another shape, skip_backbone or the arenas having moved (an eager
// pass that needed more memory) capture anew; a capture that fails leaves the step eager
// for good, the reason in s->graph_why. CAMOXPERT_TRAIN_GRAPH=0: always eager.
static int graph_allowed(const TrainStep *s, int bucketed) {
    const NNCtx *ctx = &s->rt->ctx;
    return s->graph && s->rt->device == DEV_CUDA && !s->m->cfg.sparse && !bucketed &&
           !(s->comm && s->comm->world > 1) && !ctx->op.prof && !ctx->op.relu_tape && !ctx->sync_sum && ctx->training;
}

// The graph's key: what the captured work depends on besides the weights.
static int graph_key_same(const TrainStep *s, const Tensor *image, const Tensor *mask, int skip_backbone) {
    return s->g.key_set && !memcmp(s->g.ishape, image->shape, sizeof s->g.ishape) &&
           !memcmp(s->g.mshape, mask->shape, sizeof s->g.mshape) && s->g.skip_backbone == skip_backbone &&
           image->ndim == 4 && mask->ndim == 4;
}

// Whether the arenas still hold the memory the graph names: the activations one block at
// the captured base (a reset that coalesced several would have moved it), the scratch
// arena's blocks (never reset, only grown: their number and sizes) as they were.
static int graph_arenas_same(const TrainStep *s) {
    const Runtime *rt = s->rt;
    return rt->act.top && !rt->act.top->prev && !rt->act.spare && rt->act.top->data == s->g.act_base &&
           arena_capacity(&rt->act) == s->g.act_cap && arena_capacity(&rt->scratch) == s->g.scr_cap;
}

static void graph_replay(TrainStep *s, const Tensor *image, const Tensor *mask, CamoXpertOutputs *o) {
    Runtime *rt = s->rt;
    NNCtx *ctx = &rt->ctx;
    runtime_step_reset(rt);
    Tensor xu = tensor_view(s->g.xu, image->dtype, image->ndim, image->shape);
    Tensor yu = tensor_view(s->g.yu, mask->dtype, mask->ndim, mask->shape);
    xu.device = yu.device = DEV_CUDA;
    tensor_upload(&xu, image);
    tensor_upload(&yu, mask);
    ops_graph_launch(&ctx->op, s->g.exec);
    // the graph's tensors (its outputs in *o among them) stay where later eager work cannot take them
    arena_alloc(&rt->act, s->g.act_used);
    for (int i = 0; i < s->pt->n; i++) s->pt->counter[i] += s->g.counter_delta[i];
    if (ctx->op.macs) *ctx->op.macs += s->g.macs;
    if (ctx->op.calls) *ctx->op.calls += s->g.calls;
    s->zeros_deferred += s->g.zs[0], s->zeros_written += s->g.zs[1];
    s->zeros_filled += s->g.zs[2], s->zeros_dropped += s->g.zs[3];
    s->balance += s->g.balance;
    *o = s->g.out;
    s->graph_replays++;
}

// Captures this micro-batch's work and runs it (1), or leaves it to the eager path (0:
// nothing of it has run, nothing changed).
static int graph_capture(TrainStep *s, const Tensor *image, const Tensor *mask, int skip_backbone,
                         CamoXpertOutputs *o) {
    Runtime *rt = s->rt;
    NNCtx *ctx = &rt->ctx;
    ParamTable *pt = s->pt;
    graph_drop(s);
    runtime_step_reset(rt);
    Tensor xu, yu;
    step_upload(rt, image, mask, &xu, &yu);
    runtime_sync(rt);
    int64_t *counter0 = cx_malloc(sizeof(int64_t) * (size_t)(pt->n ? pt->n : 1));
    memcpy(counter0, pt->counter, sizeof(int64_t) * (size_t)pt->n);
    const int64_t zs0[4] = { s->zeros_deferred, s->zeros_written, s->zeros_filled, s->zeros_dropped };
    const double balance0 = s->balance;
    double macs = 0, *macs_caller = ctx->op.macs;
    int64_t calls = 0, *calls_caller = ctx->op.calls;
    ctx->op.macs = &macs, ctx->op.calls = &calls;
    s->g.act_base = rt->act.top ? rt->act.top->data : NULL, s->g.act_cap = arena_capacity(&rt->act);
    s->g.scr_cap = arena_capacity(&rt->scratch);
    ops_graph_begin(&ctx->op);
    step_work(s, &xu, &yu, skip_backbone, 0, o);
    s->g.exec = ops_graph_end(&ctx->op, s->graph_why, sizeof s->graph_why);
    ctx->op.macs = macs_caller, ctx->op.calls = calls_caller;
    if (s->g.exec && !graph_arenas_same(s)) {   // an arena grew under capture: the graph would name freed memory
        ops_graph_free(&ctx->op, s->g.exec);
        s->g.exec = NULL;
        snprintf(s->graph_why, sizeof s->graph_why, "the arenas grew during the capture");
    }
    if (!s->g.exec) {   // nothing ran: undo the host-side effects, the caller runs the batch eagerly
        memcpy(pt->counter, counter0, sizeof(int64_t) * (size_t)pt->n);
        s->zeros_deferred = zs0[0], s->zeros_written = zs0[1], s->zeros_filled = zs0[2], s->zeros_dropped = zs0[3];
        s->balance = balance0;
        free(counter0);
        s->graph_failed = 1;
        fprintf(stderr, "note: the training step runs op by op: no CUDA graph (%s)\n", s->graph_why);
        return 0;
    }
    s->g.nodes = strtol(s->graph_why, NULL, 10);
    s->g.counter_delta = counter0;
    for (int i = 0; i < pt->n; i++) s->g.counter_delta[i] = pt->counter[i] - counter0[i];
    s->g.macs = macs, s->g.calls = calls;
    if (macs_caller) *macs_caller += macs;
    if (calls_caller) *calls_caller += calls;
    s->g.zs[0] = s->zeros_deferred - zs0[0], s->g.zs[1] = s->zeros_written - zs0[1];
    s->g.zs[2] = s->zeros_filled - zs0[2], s->g.zs[3] = s->zeros_dropped - zs0[3];
    s->g.balance = s->balance - balance0;
    s->g.xu = xu.data, s->g.yu = yu.data;
    s->g.act_used = rt->act.used;
    s->g.out = *o;
    memcpy(s->g.ishape, image->shape, sizeof s->g.ishape);
    memcpy(s->g.mshape, mask->shape, sizeof s->g.mshape);
    s->g.skip_backbone = skip_backbone;
    s->g.key_set = 1;
    ops_graph_launch(&ctx->op, s->g.exec);   // this micro-batch's work
    s->graph_captures++;
    return 1;
}

void train_step_accumulate(TrainStep *s, const Tensor *image, const Tensor *mask, int skip_backbone,
                           CamoXpertOutputs *o) {
    Runtime *rt = s->rt;
    CX_ASSERT(s->reduced_from == s->pt->numel, "train_step_accumulate: a micro-batch after the step's last one "
              "(TrainStep.accum = %d) — its gradients would miss the all-reduce", s->accum);
    const int bucketed = s->buckets && s->comm && s->comm->world > 1 && s->n_micro + 1 == s->accum;
    if (graph_allowed(s, bucketed) && !s->graph_failed && image->ndim == 4 && mask->ndim == 4) {
        if (graph_key_same(s, image, mask, skip_backbone) && s->g.exec && graph_arenas_same(s)) {
            graph_replay(s, image, mask, o);
            s->n_micro++;
            return;
        }
        if (!graph_key_same(s, image, mask, skip_backbone) || s->g.exec) {   // a new shape, or the arenas moved
            graph_drop(s);
            memcpy(s->g.ishape, image->shape, sizeof s->g.ishape);
            memcpy(s->g.mshape, mask->shape, sizeof s->g.mshape);
            s->g.skip_backbone = skip_backbone;
            s->g.key_set = 1;
        }
        if (++s->g.eager >= s->graph_after + 1 && graph_capture(s, image, mask, skip_backbone, o)) {
            s->n_micro++;
            return;
        }
    }
    runtime_step_reset(rt);
    Tensor xu, yu;
    step_upload(rt, image, mask, &xu, &yu);
    step_work(s, &xu, &yu, skip_backbone, bucketed, o);
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
