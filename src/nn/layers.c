// layers.c — Seq: conv / BatchNorm / activation sequences indexed like PyTorch's
// nn.Sequential (see layers.h). 1×1 convolutions run as a linear layer over the
// channel axis (identical arithmetic on NHWC data, and the GEMM path is faster).
#include "nn/layers.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define BN_MOMENTUM 0.1
#define BN_EPS 1e-5

Tensor nn_new4(NNCtx *ctx, int64_t n, int64_t h, int64_t w, int64_t c) {
    return tensor_new4(ctx->act, ctx->dtype, n, h, w, c);
}
Tensor nn_new(NNCtx *ctx, cx_dtype dt, int ndim, const int64_t *shape) { return tensor_new(ctx->act, dt, ndim, shape); }
// A deferred zero under first-write gradients (ops.h): its first op writes it.
Tensor nn_zeros(NNCtx *ctx, cx_dtype dt, int ndim, const int64_t *shape) {
    Tensor t = tensor_new(ctx->act, dt, ndim, shape);
    ops_zeros_defer(&ctx->op, &t);
    return t;
}
Tensor nn_zeros4(NNCtx *ctx, int64_t n, int64_t h, int64_t w, int64_t c) {
    return nn_zeros(ctx, ctx->dtype, 4, (int64_t[]){ n, h, w, c });
}
Tensor nn_zeros_like(NNCtx *ctx, const Tensor *t) { return nn_zeros(ctx, t->dtype, t->ndim, t->shape); }
Tensor nn_param(NNCtx *ctx, int i) { return params_value(ctx->pt, i); }
Tensor nn_grad(NNCtx *ctx, int i) { return params_grad(ctx->pt, i); }

Tensor nn_to_host(NNCtx *ctx, const Tensor *t) {
    ops_zeros_touch(&ctx->op, t);   // a deferred zero is read: filled first
    if (t->device == DEV_CPU) return *t;
    Tensor h = tensor_new(ctx->host, t->dtype, t->ndim, t->shape);
    tensor_download(&h, t);
    return h;
}

Tensor nn_to_device(NNCtx *ctx, const Tensor *host_t) {
    if (ctx->act->device == DEV_CPU) return *host_t;
    Tensor d = tensor_new(ctx->act, host_t->dtype, host_t->ndim, host_t->shape);
    tensor_upload(&d, host_t);
    return d;
}

static Layer *seq_push(Seq *s, layer_kind kind) {
    CX_ASSERT(s->n < SEQ_MAX, "Seq holds at most %d layers", SEQ_MAX);
    Layer *l = &s->l[s->n++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->w_idx = l->b_idx = l->rmean_idx = l->rvar_idx = l->nbt_idx = -1;
    return l;
}

static void conv_register(Layer *l, ParamTable *pt, const char *name, int cin, int cout, int k, int dil,
                          param_group g) {
    char key[256];
    l->cin = cin, l->cout = cout, l->k = k, l->dil = dil;
    snprintf(key, sizeof key, "%s.weight", name);
    l->w_idx = params_add(pt, key, 4, (int64_t[]){ cout, cin, k, k }, g, 0);
    snprintf(key, sizeof key, "%s.bias", name);
    l->b_idx = params_add(pt, key, 1, (int64_t[]){ cout }, g, PF_NO_DECAY);
}

void seq_conv(Seq *s, ParamTable *pt, const char *prefix, int cin, int cout, int k, int dil, param_group g) {
    char name[256];
    snprintf(name, sizeof name, "%s.%d", prefix, s->n);
    conv_register(seq_push(s, LAYER_CONV), pt, name, cin, cout, k, dil, g);
}

void seq_conv_named(Seq *s, ParamTable *pt, const char *name, int cin, int cout, int k, param_group g) {
    conv_register(seq_push(s, LAYER_CONV), pt, name, cin, cout, k, 1, g);
}

void seq_bn(Seq *s, ParamTable *pt, const char *prefix, int c, param_group g) {
    char key[256];
    int idx = s->n;
    Layer *l = seq_push(s, LAYER_BN);
    l->cin = l->cout = c;
    int64_t sh[1] = { c };
#define BN_KEY(field, suffix, flags) \
    snprintf(key, sizeof key, "%s.%d.%s", prefix, idx, suffix); \
    l->field = params_add(pt, key, 1, sh, g, flags)
    BN_KEY(w_idx, "weight", PF_NO_DECAY);
    BN_KEY(b_idx, "bias", PF_NO_DECAY);
    BN_KEY(rmean_idx, "running_mean", PF_BUFFER);
    BN_KEY(rvar_idx, "running_var", PF_BUFFER);
#undef BN_KEY
    snprintf(key, sizeof key, "%s.%d.num_batches_tracked", prefix, idx);
    l->nbt_idx = params_add(pt, key, 0, NULL, g, PF_BUFFER | PF_COUNTER);
}

void seq_act(Seq *s, layer_kind kind) {
    CX_ASSERT(kind == LAYER_RELU || kind == LAYER_SIGMOID || kind == LAYER_SOFTPLUS || kind == LAYER_POOL,
              "seq_act: kind %d is not parameter-free", kind);
    Layer *l = seq_push(s, kind);
    // ReLU/sigmoid may overwrite the output of a conv or BN (whose backward
    // needs only its input); softplus needs its input, the pool changes shape.
    l->inplace = (kind == LAYER_RELU || kind == LAYER_SIGMOID) && s->n >= 2 &&
                 (s->l[s->n - 2].kind == LAYER_CONV || s->l[s->n - 2].kind == LAYER_BN);
}

void seq_cbr(Seq *s, ParamTable *pt, const char *prefix, int cin, int cout, int k, int dil, param_group g) {
    seq_conv(s, pt, prefix, cin, cout, k, dil, g);
    seq_bn(s, pt, prefix, cout, g);
    seq_act(s, LAYER_RELU);
}

int seq_out_channels(const Seq *s, int cin) {
    int c = cin;
    for (int i = 0; i < s->n; i++)
        if (s->l[i].kind == LAYER_CONV || s->l[i].kind == LAYER_BN) c = s->l[i].cout;
    return c;
}

// Weight (K,C,1,1) seen as the linear layer's (K,C).
static Tensor conv_weight_2d(Tensor w) {
    w.ndim = 2;
    return w;
}

static ConvArgs conv_args(const Layer *l) {
    return (ConvArgs){ .stride = 1, .pad = l->dil * (l->k - 1) / 2, .dil = l->dil, .groups = 1 };
}

// ---- synchronised BatchNorm (NNCtx.sync_sum) ---------------------------------------
void nn_stat_load(NNCtx *ctx, const Tensor *t, double *v) {
    Tensor h = nn_to_host(ctx, t);
    for (int64_t c = 0; c < tensor_numel(t); c++) v[c] = tensor_get(&h, c);
}
void nn_stat_store(NNCtx *ctx, Tensor *t, const double *v) {
    Tensor h = t->device == DEV_CPU ? *t : tensor_new(ctx->host, t->dtype, t->ndim, t->shape);
    for (int64_t c = 0; c < tensor_numel(t); c++) tensor_set(&h, c, v[c]);
    if (t->device != DEV_CPU) tensor_upload(t, &h);
}
static Tensor stat_new(NNCtx *ctx, const double *v, int C) {
    Tensor t = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ C });
    nn_stat_store(ctx, &t, v);
    return t;
}

// Training-mode BatchNorm over the global batch: each rank's mean and variance (the
// op's training form), their count-weighted sums over the ranks in float64 (one
// exchange: rows, Σ n·mean, Σ n·(var + mean²)), then the op's evaluation form with the
// global mean and variance as its statistics. Running statistics as SyncBatchNorm:
// the global mean and unbiased variance. Several small host round trips per layer: the
// correct form first (docs/MULTIGPU.md).
// rm, rv NULL: the running statistics are left alone (a unit's replay).
static void bn_sync_forward(NNCtx *ctx, Layer *l, const Tensor *x, Tensor *y, const Tensor *g, const Tensor *b,
                            Tensor *rm, Tensor *rv) {
    OpCtx *op = &ctx->op;
    const int C = l->cout;
    const double M = (double)(tensor_numel(x) / C);
    batchnorm_forward(op, y, &l->mean, &l->invstd, x, g, b, NULL, NULL, 1, BN_MOMENTUM, BN_EPS);   // local
    double *v = cx_malloc(sizeof(double) * (size_t)(6 * C + 1)), *mean = v + 2 * C + 1, *istd = mean + C,
           *var = istd + C, *run = var + C;
    nn_stat_load(ctx, &l->mean, mean);
    nn_stat_load(ctx, &l->invstd, istd);
    v[0] = M;
    for (int c = 0; c < C; c++) {
        double vl = 1 / (istd[c] * istd[c]) - BN_EPS;
        v[1 + c] = M * mean[c];
        v[1 + C + c] = M * ((vl > 0 ? vl : 0) + mean[c] * mean[c]);
    }
    if (ctx->sync_sum(ctx->sync_arg, v, 2 * C + 1)) {   // a rank gone: local statistics, the step reports it
        ctx->sync_failed = 1;
        batchnorm_forward(op, y, &l->mean, &l->invstd, x, g, b, rm, rv, 1, BN_MOMENTUM, BN_EPS);
        free(v);
        return;
    }
    const double N = v[0];
    for (int c = 0; c < C; c++) {
        mean[c] = v[1 + c] / N;
        var[c] = v[1 + C + c] / N - mean[c] * mean[c];
        if (var[c] < 0) var[c] = 0;
    }
    l->gmean = stat_new(ctx, mean, C);
    l->gvar = stat_new(ctx, var, C);
    l->gcount = N;
    nn_unit_keep(ctx, &l->gmean);   // a replay normalises by them again (no second exchange)
    nn_unit_keep(ctx, &l->gvar);
    batchnorm_forward(op, y, &l->mean, &l->invstd, x, g, b, &l->gmean, &l->gvar, 0, BN_MOMENTUM, BN_EPS);
    if (rm && rv && rm->data && rv->data) {
        nn_stat_load(ctx, rm, run);
        for (int c = 0; c < C; c++) run[c] = (1 - BN_MOMENTUM) * run[c] + BN_MOMENTUM * mean[c];
        nn_stat_store(ctx, rm, run);
        nn_stat_load(ctx, rv, run);
        for (int c = 0; c < C; c++) run[c] = (1 - BN_MOMENTUM) * run[c] + BN_MOMENTUM * var[c] * (N > 1 ? N / (N - 1) : 1);
        nn_stat_store(ctx, rv, run);
    }
    free(v);
}

// dx = γ·istd·(dy − Σdy/N − x̂·Σ(dy·x̂)/N) with the sums over the global batch: the
// op's evaluation-form backward (γ·istd·dy) plus the evaluation-form forward of x with
// scale −γ·istd·S2/N and shift −γ·istd·S1/N. The parameter gradients take this rank's
// sums (the step's all-reduce adds the ranks').
static void bn_sync_backward(NNCtx *ctx, Layer *l, const Tensor *dy, const Tensor *x, Tensor *dx, const Tensor *g,
                             Tensor *dg, Tensor *db) {
    OpCtx *op = &ctx->op;
    const int C = l->cout;
    Tensor s1 = nn_zeros(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ C }), s2 = nn_zeros(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ C });
    batchnorm_backward(op, NULL, &s2, &s1, dy, x, &l->mean, &l->invstd, g, 1);   // Σ dy·x̂, Σ dy on this rank
    if (dg->data) axpy(op, dg, 1, &s2);
    if (db->data) axpy(op, db, 1, &s1);
    if (!dx) return;
    double *v = cx_malloc(sizeof(double) * (size_t)(6 * C)), *gam = v + 2 * C, *istd = gam + C, *sc = istd + C,
           *sh = sc + C;
    nn_stat_load(ctx, &s1, v);
    nn_stat_load(ctx, &s2, v + C);
    if (ctx->sync_failed || ctx->sync_sum(ctx->sync_arg, v, 2 * C)) {   // a rank gone: the local form
        ctx->sync_failed = 1;
        batchnorm_backward(op, dx, NULL, NULL, dy, x, &l->mean, &l->invstd, g, 1);
        free(v);
        return;
    }
    nn_stat_load(ctx, g, gam);
    nn_stat_load(ctx, &l->invstd, istd);
    for (int c = 0; c < C; c++) {
        sc[c] = -gam[c] * istd[c] * v[C + c] / l->gcount;
        sh[c] = -gam[c] * istd[c] * v[c] / l->gcount;
    }
    batchnorm_backward(op, dx, NULL, NULL, dy, x, &l->mean, &l->invstd, g, 0);
    Tensor tsc = stat_new(ctx, sc, C), tsh = stat_new(ctx, sh, C), t = tensor_like(ctx->act, x);
    batchnorm_forward(op, &t, NULL, NULL, x, &tsc, &tsh, &l->gmean, &l->gvar, 0, BN_MOMENTUM, BN_EPS);
    axpy(op, dx, 1, &t);
    free(v);
}

// In training, a k×k conv's bias before a BatchNorm is left to the BatchNorm (fused ops on:
// ops_fuse): on the GPU the bias is a pass of its own over the conv's output (a 1×1 conv's
// is in cuBLASLt's epilogue: kept). BN(x + c) with batch statistics is BN(x) — the mean
// moves by c, the variance not — so only the running mean needs c: momentum·c added after
// the op, the batch mean being mean(x) + c. The conv's backward is unchanged: its bias
// gradient is Σ of the gradient at its output, which does not depend on c. Under synchronised
// BatchNorm likewise (bn_sync_forward: the global mean of x + c is that of x, plus c). (Evaluation keeps
// the pass: there BN(x + c) needs the running mean less c, two tiny ops a layer, more
// launches than the pass costs at small batches.)
static Tensor layer_forward(NNCtx *ctx, Layer *l, const Tensor *x) {
    OpCtx *op = &ctx->op;
    switch (l->kind) {
    case LAYER_CONV: {
        CX_ASSERT(T_C(x) == l->cin, "conv expects %d input channels, got %lld", l->cin, (long long)T_C(x));
        // the output in the input's dtype: a logit head may take F32 beside bf16 activations (cod_head.c)
        Tensor y = nn_new(ctx, x->dtype, 4, (int64_t[]){ T_N(x), T_H(x), T_W(x), l->cout });
        Tensor w = nn_param(ctx, l->w_idx), b = nn_param(ctx, l->b_idx);
        const Tensor *bp = l->bias_to_bn ? NULL : &b;   // the BatchNorm after it takes the bias (above)
        if (l->k == 1) {
            Tensor w2 = conv_weight_2d(w);
            nn_linear_forward(ctx, &y, x, &w2, bp);
        } else {
            nn_conv2d_forward(ctx, &y, x, &w, bp, conv_args(l));
        }
        return y;
    }
    case LAYER_BN: {
        Tensor y = tensor_like(ctx->act, x);
        l->mean = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ l->cout });
        l->invstd = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ l->cout });
        Tensor g = nn_param(ctx, l->w_idx), b = nn_param(ctx, l->b_idx);
        Tensor rm = nn_param(ctx, l->rmean_idx), rv = nn_param(ctx, l->rvar_idx);
        // A replay recomputes the same batch statistics; the running ones were updated once, by the forward.
        Tensor *prm = ctx->replay ? NULL : &rm, *prv = ctx->replay ? NULL : &rv;
        if (ctx->replay && l->gcount > 0) {   // synchronised: the forward's global statistics, as its last op used them
            batchnorm_forward(op, &y, &l->mean, &l->invstd, x, &g, &b, &l->gmean, &l->gvar, 0, BN_MOMENTUM, BN_EPS);
        } else {
            l->gcount = 0;
            if (ctx->training && ctx->sync_sum && !ctx->sync_failed) bn_sync_forward(ctx, l, x, &y, &g, &b, prm, prv);
            else if (l->relu_fused)
                batchnorm_relu_forward(op, &y, &l->mean, &l->invstd, x, &g, &b, prm, prv, ctx->training, BN_MOMENTUM,
                                       BN_EPS);
            else batchnorm_forward(op, &y, &l->mean, &l->invstd, x, &g, &b, prm, prv, ctx->training, BN_MOMENTUM, BN_EPS);
        }
        if (ctx->training && !ctx->replay) {
            if (l->pre_bias_idx >= 0) {   // the batch mean of conv + bias: r += momentum·bias
                Tensor cb = nn_param(ctx, l->pre_bias_idx);
                axpy(op, &rm, BN_MOMENTUM, &cb);
            }
            params_counter_add(ctx->pt, l->nbt_idx, 1);   // on the host: no device access
            const int64_t v = l->gcount > 0 ? (int64_t)l->gcount : tensor_numel(x) / l->cout;
            if (!ctx->bn_fewest.values || v < ctx->bn_fewest.values)
                ctx->bn_fewest = (BnFewest){ v, l->w_idx, (int)T_N(x), (int)T_H(x), (int)T_W(x) };
        }
        return y;
    }
    case LAYER_RELU: case LAYER_SIGMOID: case LAYER_SOFTPLUS: {
        // In place over a conv's output, except a sigmoid while that output is a CHEAP unit's
        // record (a replay would apply it twice; a ReLU's second application changes nothing).
        int inplace = l->inplace && !(l->kind == LAYER_SIGMOID && nn_taping(ctx));
        Tensor y = inplace ? *x : tensor_like(ctx->act, x);
        if (l->kind == LAYER_RELU) relu_forward(op, &y, x);
        else if (l->kind == LAYER_SIGMOID) sigmoid_forward(op, &y, x);
        else softplus_forward(op, &y, x);
        return y;
    }
    case LAYER_POOL: {
        Tensor y = nn_new4(ctx, T_N(x), 1, 1, T_C(x));
        Tensor y2 = tensor_reshape(&y, 2, (int64_t[]){ T_N(x), T_C(x) });
        avgpool_global_forward(op, &y2, x);
        return y;
    }
    }
    CX_ASSERT(0, "layer kind %d", l->kind);
    return (Tensor){ 0 };
}

// dx += ∂/∂x given dy; parameter gradients +=. x is the layer's input.
static void layer_backward(NNCtx *ctx, Layer *l, const Tensor *dy, const Tensor *x, Tensor *dx) {
    OpCtx *op = &ctx->op;
    switch (l->kind) {
    case LAYER_CONV: {
        Tensor w = nn_param(ctx, l->w_idx), dw = nn_grad(ctx, l->w_idx), db = nn_grad(ctx, l->b_idx);
        if (l->k == 1) {
            Tensor w2 = conv_weight_2d(w), dw2 = conv_weight_2d(dw);
            linear_backward(op, dx, &dw2, &db, dy, x, &w2);
        } else {
            conv2d_backward(op, dx, &dw, &db, dy, x, &w, conv_args(l));
        }
        return;
    }
    case LAYER_BN: {
        Tensor g = nn_param(ctx, l->w_idx), dg = nn_grad(ctx, l->w_idx), db = nn_grad(ctx, l->b_idx);
        if (ctx->training && l->gcount > 0) bn_sync_backward(ctx, l, dy, x, dx, &g, &dg, &db);
        else if (l->relu_fused)   // dy is the ReLU's output gradient (masking twice, if a range split them, is once)
            batchnorm_relu_backward(op, dx, &dg, &db, dy, &l->out, x, &l->mean, &l->invstd, &g, ctx->training);
        else batchnorm_backward(op, dx, &dg, &db, dy, x, &l->mean, &l->invstd, &g, ctx->training);
        return;
    }
    case LAYER_RELU: if (dx) relu_backward(op, dx, dy, &l->out); return;
    case LAYER_SIGMOID: if (dx) sigmoid_backward(op, dx, dy, &l->out); return;
    case LAYER_SOFTPLUS: if (dx) softplus_backward(op, dx, dy, x); return;
    case LAYER_POOL: {
        if (!dx) return;
        Tensor dy2 = tensor_reshape(dy, 2, (int64_t[]){ T_N(x), T_C(x) });
        avgpool_global_backward(op, dx, &dy2);
        return;
    }
    }
}

// consume: x dies with the first layer (evaluation liveness).
static Tensor seq_run(NNCtx *ctx, Seq *s, int from, int to, const Tensor *x, int consume) {
    CX_ASSERT(0 <= from && from < to && to <= s->n, "seq range [%d, %d) of %d layers", from, to, s->n);
    if (from == 0) s->in = *x;
    const Tensor *cur = x;
    Tensor dead = consume ? *x : (Tensor){ 0 };   // inference: the input of the layer just run, once it is read
    // A BatchNorm followed (in this range) by its in-place ReLU runs both in one op, except
    // synchronised BatchNorm (its exchange sits between the statistics and the output).
    const int sync_bn = ctx->training && ctx->sync_sum && !ctx->sync_failed;
    for (int i = from; i < to; i++) {
        Layer *l = &s->l[i];
        l->in = *cur;
        l->relu_fused = l->kind == LAYER_BN && i + 1 < to && s->l[i + 1].kind == LAYER_RELU && s->l[i + 1].inplace &&
                        !sync_bn;
        // a k×k conv's bias to the BatchNorm after it in training (above; synchronised
        // BatchNorm too: it normalises by the global batch's mean, which moves by c alike)
        l->bias_to_bn = l->kind == LAYER_CONV && l->k > 1 && i + 1 < to && s->l[i + 1].kind == LAYER_BN &&
                        ctx->training && ops_fuse() && l->b_idx >= 0;
        if (l->kind == LAYER_BN) l->pre_bias_idx = i > from && s->l[i - 1].bias_to_bn ? s->l[i - 1].b_idx : -1;
        l->out = layer_forward(ctx, l, cur);
        if (l->relu_fused) s->l[++i].in = l->out, s->l[i].out = l->out;
        cur = &s->l[i].out;
        if (ctx->inference) {
            if (dead.data && dead.data != cur->data) nn_drop(ctx, &dead);   // an in-place layer wrote over it
            dead = *cur;
        }
    }
    return *cur;
}

Tensor seq_forward_range(NNCtx *ctx, Seq *s, int from, int to, const Tensor *x) { return seq_run(ctx, s, from, to, x, 0); }
Tensor seq_forward(NNCtx *ctx, Seq *s, const Tensor *x) { return seq_run(ctx, s, 0, s->n, x, 0); }
Tensor seq_forward_consume(NNCtx *ctx, Seq *s, const Tensor *x) { return seq_run(ctx, s, 0, s->n, x, 1); }

void seq_backward_range(NNCtx *ctx, Seq *s, int from, int to, const Tensor *dy, Tensor *dx) {
    // The gradients between layers are temporaries, released before returning. Each is
    // dead once the layer below has read it, so from three of them on two buffers take
    // turns (a conv-BN-ReLU pair at full resolution held five 64-channel maps at once).
    ArenaMark mk = arena_mark(ctx->act);
    Tensor buf[2] = { { 0 } };
    int64_t most = 0;
    int turns = to - from > 3;
    for (int i = from + 1; i < to && turns; i++) {
        const Tensor *in = &s->l[i].in;
        turns = in->dtype == s->l[to - 1].in.dtype;
        if (tensor_numel(in) > most) most = tensor_numel(in);
    }
    for (int k = 0; k < 2 && turns; k++) buf[k] = tensor_new(ctx->act, s->l[to - 1].in.dtype, 1, &most);
    Tensor g = *dy;
    for (int i = to - 1, k = 0; i >= from; i--) {
        const Tensor *in = &s->l[i].in;
        if (i > from && s->l[i].kind == LAYER_RELU && s->l[i - 1].relu_fused) continue;   // in the BN's backward
        if (i == from) {
            layer_backward(ctx, &s->l[i], &g, in, dx);
        } else {
            Tensor gin;
            if (turns) {
                gin = tensor_view(buf[k].data, in->dtype, in->ndim, in->shape);
                gin.device = buf[k].device;
                ops_zeros_defer(&ctx->op, &gin);
                k ^= 1;
            } else {
                gin = nn_zeros_like(ctx, in);
            }
            layer_backward(ctx, &s->l[i], &g, in, &gin);
            g = gin;
        }
    }
    arena_release(ctx->act, mk);
}

void seq_backward(NNCtx *ctx, Seq *s, const Tensor *dy, Tensor *dx) { seq_backward_range(ctx, s, 0, s->n, dy, dx); }

void seq_init(const Seq *s, ParamTable *pt, Rng *rng) {
    for (int i = 0; i < s->n; i++) {
        const Layer *l = &s->l[i];
        if (l->kind == LAYER_CONV) {
            double bound = 1.0 / sqrt((double)l->cin * l->k * l->k);
            Tensor w = params_value(pt, l->w_idx), b = params_value(pt, l->b_idx);
            for (int64_t j = 0; j < tensor_numel(&w); j++) tensor_set(&w, j, (2 * rng_uniform(rng) - 1) * bound);
            for (int64_t j = 0; j < tensor_numel(&b); j++) tensor_set(&b, j, (2 * rng_uniform(rng) - 1) * bound);
        } else if (l->kind == LAYER_BN) {
            Tensor g = params_value(pt, l->w_idx), b = params_value(pt, l->b_idx);
            Tensor rm = params_value(pt, l->rmean_idx), rv = params_value(pt, l->rvar_idx);
            tensor_fill(&g, 1), tensor_fill(&b, 0), tensor_fill(&rm, 0), tensor_fill(&rv, 1);
            pt->counter[l->nbt_idx] = 0;
        }
    }
}
