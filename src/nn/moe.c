// moe.c — router, grouped dispatch and load balancing of the sparse MoE layer
// (moe.h). reference: the reference's SparseMoELayer with global routing, except
// that the routing weights stay differentiable and images are grouped by expert
// (reference/camoxpert.md §4).
#include "nn/moe.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MOE_RENORM_EPS 1e-8

const char *moe_balance_name(moe_balance b) {
    static const char *names[] = { "sqdev", "switch", "zloss", "bias" };
    return b >= 0 && b <= MOE_BALANCE_BIAS ? names[b] : "?";
}

cx_status moe_balance_parse(const char *s, moe_balance *b) {
    for (int i = 0; i <= MOE_BALANCE_BIAS; i++)
        if (!strcmp(s, moe_balance_name((moe_balance)i))) { *b = (moe_balance)i; return CX_OK; }
    return CX_FAIL(CX_EARG, "unknown balancing scheme '%s' (expected sqdev, switch, zloss or bias)", s);
}

void moe_create(Moe *m, ParamTable *pt, const char *prefix, int d, int E, int k, moe_balance balance, double coef) {
    CX_ASSERT(E >= 1 && E <= MOE_MAX_EXPERTS && k >= 1 && k <= E, "MoE with E=%d, k=%d", E, k);
    memset(m, 0, sizeof *m);
    m->d = d, m->E = E, m->k = k, m->balance = balance, m->coef = coef;
    char p[256];
    for (int e = 0; e < E; e++) {
        snprintf(p, sizeof p, "%s.experts.%d", prefix, e);
        expert_create(&m->experts[e], pt, p, (expert_kind)(e % EXPERT_KINDS), d, PG_REST);
    }
    snprintf(p, sizeof p, "%s.router.2.weight", prefix);
    m->router_w = params_add(pt, p, 2, (int64_t[]){ E, d }, PG_ROUTER, 0);
    snprintf(p, sizeof p, "%s.router.2.bias", prefix);
    m->router_b = params_add(pt, p, 1, (int64_t[]){ E }, PG_ROUTER, PF_NO_DECAY);
}

void moe_init(Moe *m, ParamTable *pt, Rng *rng) {
    for (int e = 0; e < m->E; e++) expert_init(&m->experts[e], pt, rng);
    // nn.Linear default: U(±1/√fan_in) for weight and bias
    double bound = 1.0 / sqrt((double)m->d);
    Tensor w = params_value(pt, m->router_w), b = params_value(pt, m->router_b);
    for (int64_t i = 0; i < tensor_numel(&w); i++) tensor_set(&w, i, (2 * rng_uniform(rng) - 1) * bound);
    for (int64_t i = 0; i < tensor_numel(&b); i++) tensor_set(&b, i, (2 * rng_uniform(rng) - 1) * bound);
    memset(m->sel_bias, 0, sizeof m->sel_bias);
}

// Routing runs on the device up to the router's softmax (F32 beside bf16
// activations); the decisions (top-k, renormalised weights, counts, balance
// loss) are made on the host from one download of the logits and
// probabilities — U×E numbers — and the dispatch plan goes back in one upload.
// On the CPU the "downloads" are the tensors themselves.
void moe_route_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    int64_t U = T_N(x);
    int E = m->E, k = m->k;
    MoeRoute *r = &m->route;
    const cx_dtype sdt = nn_stat_dtype(ctx);
    m->x = *x;
    m->pooled = nn_new(ctx, sdt, 2, (int64_t[]){ U, m->d });
    avgpool_global_forward(&ctx->op, &m->pooled, x);
    Tensor logits = nn_new(ctx, sdt, 2, (int64_t[]){ U, E }), probs = nn_new(ctx, sdt, 2, (int64_t[]){ U, E });
    Tensor w = nn_param(ctx, m->router_w), b = nn_param(ctx, m->router_b);
    linear_forward(&ctx->op, &logits, &m->pooled, &w, &b);
    softmax_forward(&ctx->op, &probs, &logits, U, E, 1);
    // ---- host island: one download of (logits, probs) ----
    if (logits.device == DEV_CUDA) {
        Tensor both = nn_new(ctx, sdt, 2, (int64_t[]){ 2 * U, E });   // logits and probs side by side: one copy
        Tensor l2 = tensor_slice0(&both, 0, U), p2 = tensor_slice0(&both, U, U);
        copy(&ctx->op, &l2, &logits);
        copy(&ctx->op, &p2, &probs);
        Tensor h = nn_to_host(ctx, &both);
        r->logits = tensor_slice0(&h, 0, U);
        r->probs = tensor_slice0(&h, U, U);
    } else {
        r->logits = logits;
        r->probs = probs;
    }
    // choose on p (+ the aux-free selection bias); weights always come from p
    Tensor scores = r->probs;
    if (m->balance == MOE_BALANCE_BIAS) {
        scores = tensor_like(ctx->host, &r->probs);
        for (int64_t u = 0; u < U; u++)
            for (int e = 0; e < E; e++) tensor_set(&scores, u * E + e, tensor_get(&r->probs, u * E + e) + m->sel_bias[e]);
    }
    r->idx = tensor_new(ctx->host, DT_I32, 2, (int64_t[]){ U, k });
    Tensor val = tensor_new(ctx->host, sdt, 2, (int64_t[]){ U, k });
    topk_rows(&ctx->host_op, &r->idx, &val, &scores, k);
    r->w = tensor_new(ctx->host, sdt, 2, (int64_t[]){ U, k });
    const int32_t *idx = tensor_i32(&r->idx);
    memset(r->count, 0, sizeof r->count);
    for (int64_t u = 0; u < U; u++) {
        double s = 0;
        for (int j = 0; j < k; j++) s += tensor_get(&r->probs, u * E + idx[u * k + j]);
        for (int j = 0; j < k; j++) {
            tensor_set(&r->w, u * k + j, tensor_get(&r->probs, u * E + idx[u * k + j]) / (s + MOE_RENORM_EPS));
            r->count[idx[u * k + j]]++;
        }
    }
    // balancing loss
    r->lb_loss = 0;
    for (int e = 0; e < E && m->balance != MOE_BALANCE_ZLOSS; e++) {
        double P = 0;
        for (int64_t u = 0; u < U; u++) P += tensor_get(&r->probs, u * E + e);
        P /= (double)U;
        if (m->balance == MOE_BALANCE_SQDEV) r->lb_loss += (P - 1.0 / E) * (P - 1.0 / E);
        else if (m->balance == MOE_BALANCE_SWITCH) r->lb_loss += E * ((double)r->count[e] / ((double)U * k)) * P;
    }
    if (m->balance == MOE_BALANCE_ZLOSS) {
        for (int64_t u = 0; u < U; u++) {
            double mx = -INFINITY, s = 0;
            for (int e = 0; e < E; e++) mx = fmax(mx, tensor_get(&r->logits, u * E + e));
            for (int e = 0; e < E; e++) s += exp(tensor_get(&r->logits, u * E + e) - mx);
            double lse = mx + log(s);
            r->lb_loss += lse * lse / (double)U;
        }
    }
    r->lb_loss *= m->coef;
}

// The routing backward is host arithmetic on U×E numbers (dw is a host tensor):
// dlogits goes up in one upload, the router's linear runs on the device.
void moe_route_backward(NNCtx *ctx, Moe *m, const Tensor *dw, double dbalance, Tensor *dx) {
    MoeRoute *r = &m->route;
    int64_t U = T_N(&r->probs);
    int E = m->E, k = m->k;
    double *dp = cx_calloc((size_t)(U * E), sizeof *dp);
    const int32_t *idx = tensor_i32(&r->idx);
    // renormalisation w_j = p_j / (S + eps), S = Σ_chosen p
    for (int64_t u = 0; u < U && dw; u++) {
        double S = 0, s2 = 0;
        for (int j = 0; j < k; j++) {
            double pj = tensor_get(&r->probs, u * E + idx[u * k + j]);
            S += pj;
            s2 += tensor_get(dw, u * k + j) * pj;
        }
        double D = S + MOE_RENORM_EPS;
        for (int j = 0; j < k; j++) dp[u * E + idx[u * k + j]] += tensor_get(dw, u * k + j) / D - s2 / (D * D);
    }
    double cb = dbalance * m->coef;
    for (int e = 0; e < E && cb != 0; e++) {
        double P = 0;
        for (int64_t u = 0; u < U; u++) P += tensor_get(&r->probs, u * E + e);
        P /= (double)U;
        double g = 0;
        if (m->balance == MOE_BALANCE_SQDEV) g = cb * 2 * (P - 1.0 / E) / (double)U;
        else if (m->balance == MOE_BALANCE_SWITCH) g = cb * E * ((double)r->count[e] / ((double)U * k)) / (double)U;
        for (int64_t u = 0; u < U; u++) dp[u * E + e] += g;
    }
    // softmax backward, plus the z-loss which acts on the logits directly
    Tensor dlogits = tensor_new(ctx->host, r->logits.dtype, 2, (int64_t[]){ U, E });
    for (int64_t u = 0; u < U; u++) {
        double dot = 0, mx = -INFINITY, s = 0;
        for (int e = 0; e < E; e++) dot += dp[u * E + e] * tensor_get(&r->probs, u * E + e);
        for (int e = 0; e < E; e++) mx = fmax(mx, tensor_get(&r->logits, u * E + e));
        for (int e = 0; e < E; e++) s += exp(tensor_get(&r->logits, u * E + e) - mx);
        double lse = mx + log(s);
        for (int e = 0; e < E; e++) {
            double p = tensor_get(&r->probs, u * E + e);
            double g = p * (dp[u * E + e] - dot);
            if (m->balance == MOE_BALANCE_ZLOSS) g += cb * 2 * lse * p / (double)U;
            tensor_set(&dlogits, u * E + e, g);
        }
    }
    free(dp);
    Tensor dl = nn_to_device(ctx, &dlogits);
    Tensor w = nn_param(ctx, m->router_w), gw = nn_grad(ctx, m->router_w), gb = nn_grad(ctx, m->router_b);
    Tensor dpooled = nn_zeros_like(ctx, &m->pooled);
    linear_backward(&ctx->op, &dpooled, &gw, &gb, &dl, &m->pooled, &w);
    if (dx) avgpool_global_backward(&ctx->op, dx, &dpooled);
}

// The plan (each expert's rows and weights, sorted by expert) is built on the
// host and uploaded in one copy; expert e then runs once on its whole group.
Tensor moe_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    MoeRoute *r = &m->route;
    int64_t U = T_N(x), H = T_H(x), W = T_W(x), P = U * m->k;
    const int32_t *idx = tensor_i32(&r->idx);
    const cx_dtype sdt = nn_stat_dtype(ctx);
    // counting sort of the (unit, expert) pairs by expert, stable in unit order
    m->offset[0] = 0;
    for (int e = 0; e < m->E; e++) m->offset[e + 1] = m->offset[e] + r->count[e];
    CX_ASSERT(m->offset[m->E] == P, "routing counts %lld != pairs %lld", (long long)m->offset[m->E], (long long)P);
    m->pair_order = arena_alloc(ctx->host, (size_t)P * sizeof(int32_t));
    int64_t fill_at[MOE_MAX_EXPERTS];
    memcpy(fill_at, m->offset, sizeof(int64_t) * (size_t)m->E);
    for (int64_t p = 0; p < P; p++) m->pair_order[fill_at[idx[p]]++] = (int32_t)p;
    // plan (host): rows (P) I32 then weights (P) in the stat dtype, one block
    Tensor rows_h = tensor_new(ctx->host, DT_I32, 1, &P), wts_h = tensor_new(ctx->host, sdt, 1, &P);
    for (int64_t i = 0; i < P; i++) {
        int32_t p = m->pair_order[i];
        tensor_i32(&rows_h)[i] = p / m->k;
        tensor_set(&wts_h, i, tensor_get(&r->w, p));
    }
    Tensor rows_all = nn_to_device(ctx, &rows_h), wts_all = nn_to_device(ctx, &wts_h);
    Tensor y = nn_zeros4(ctx, U, H, W, m->d);
    for (int e = 0; e < m->E; e++) {
        int64_t c = r->count[e];
        if (!c) continue;
        m->rows[e] = tensor_slice0(&rows_all, m->offset[e], c);
        m->wts[e] = tensor_slice0(&wts_all, m->offset[e], c);
        Tensor xe = nn_new4(ctx, c, H, W, m->d);
        rows_gather(&ctx->op, &xe, x, &m->rows[e]);
        m->ys[e] = expert_forward(ctx, &m->experts[e], &xe);       // one call for the whole group
        rows_scatter_add(&ctx->op, &y, &m->ys[e], &m->rows[e], &m->wts[e]);
    }
    return y;
}

// Each expert's routing-weight gradients land in one (P) buffer in plan order on
// the model's device, brought down once and permuted into dw (host) there.
void moe_dispatch_backward(NNCtx *ctx, Moe *m, const Tensor *dy, Tensor *dx, Tensor *dw) {
    int64_t P = T_N(&m->x) * m->k;
    Tensor dwp = nn_zeros(ctx, nn_stat_dtype(ctx), 1, &P);   // plan order
    for (int e = 0; e < m->E; e++) {
        int64_t c = m->route.count[e];
        if (!c) continue;
        ArenaMark mk = arena_mark(ctx->act);   // this group's gradients are temporaries
        Tensor dye = nn_zeros_like(ctx, &m->ys[e]);
        Tensor dwe = tensor_slice0(&dwp, m->offset[e], c);
        rows_scatter_add_backward(&ctx->op, &dye, dw ? &dwe : NULL, dy, &m->ys[e], &m->rows[e], &m->wts[e]);
        Tensor dxe = dx ? nn_zeros_like(ctx, &m->ys[e]) : (Tensor){ 0 };
        expert_backward(ctx, &m->experts[e], &dye, dx ? &dxe : NULL);
        if (dx) rows_scatter_add(&ctx->op, dx, &dxe, &m->rows[e], NULL);
        arena_release(ctx->act, mk);
    }
    if (!dw) return;
    // back to (unit, slot) order on the host: dw[pair_order[i]] += dwp[i]
    Tensor dwp_h = nn_to_host(ctx, &dwp);
    for (int64_t i = 0; i < P; i++) {
        int32_t p = m->pair_order[i];
        tensor_set(dw, p, tensor_get(dw, p) + tensor_get(&dwp_h, i));
    }
}

Tensor moe_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    moe_route_forward(ctx, m, x);
    return moe_dispatch_forward(ctx, m, x);
}

void moe_backward(NNCtx *ctx, Moe *m, const Tensor *dy, double dbalance, Tensor *dx) {
    Tensor dw = tensor_new(ctx->host, m->route.w.dtype, 2, m->route.w.shape);   // (U,k) on the host
    tensor_zero(&dw);
    moe_dispatch_backward(ctx, m, dy, dx, &dw);
    moe_route_backward(ctx, m, &dw, dbalance, dx);
}

void moe_balance_update(Moe *m, double rate) {
    if (m->balance != MOE_BALANCE_BIAS) return;
    double mean = 0;
    for (int e = 0; e < m->E; e++) mean += (double)m->route.count[e] / m->E;
    for (int e = 0; e < m->E; e++) {
        double load = (double)m->route.count[e];
        m->sel_bias[e] += rate * (load < mean ? 1.0 : load > mean ? -1.0 : 0.0);
    }
}
