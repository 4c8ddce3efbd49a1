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

void moe_route_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    int64_t U = T_N(x);
    int E = m->E, k = m->k;
    MoeRoute *r = &m->route;
    m->x = *x;
    m->pooled = tensor_new(ctx->act, ctx->dtype, 2, (int64_t[]){ U, m->d });
    avgpool_global_forward(&ctx->op, &m->pooled, x);
    r->logits = tensor_new(ctx->act, ctx->dtype, 2, (int64_t[]){ U, E });
    Tensor w = nn_param(ctx, m->router_w), b = nn_param(ctx, m->router_b);
    linear_forward(&ctx->op, &r->logits, &m->pooled, &w, &b);
    r->probs = tensor_like(ctx->act, &r->logits);
    softmax_forward(&ctx->op, &r->probs, &r->logits, U, E, 1);
    // choose on p (+ the aux-free selection bias); weights always come from p
    Tensor scores = r->probs;
    if (m->balance == MOE_BALANCE_BIAS) {
        scores = tensor_like(ctx->act, &r->probs);
        for (int64_t u = 0; u < U; u++)
            for (int e = 0; e < E; e++) tensor_set(&scores, u * E + e, tensor_get(&r->probs, u * E + e) + m->sel_bias[e]);
    }
    r->idx = tensor_new(ctx->act, DT_I32, 2, (int64_t[]){ U, k });
    Tensor val = tensor_new(ctx->act, ctx->dtype, 2, (int64_t[]){ U, k });
    topk_rows(&ctx->op, &r->idx, &val, &scores, k);
    r->w = tensor_new(ctx->act, ctx->dtype, 2, (int64_t[]){ U, k });
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
    Tensor dlogits = tensor_zeros_like(ctx->act, &r->logits);
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
    Tensor w = nn_param(ctx, m->router_w), gw = nn_grad(ctx, m->router_w), gb = nn_grad(ctx, m->router_b);
    Tensor dpooled = tensor_zeros_like(ctx->act, &m->pooled);
    linear_backward(&ctx->op, &dpooled, &gw, &gb, &dlogits, &m->pooled, &w);
    if (dx) avgpool_global_backward(&ctx->op, dx, &dpooled);
}

Tensor moe_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    MoeRoute *r = &m->route;
    int64_t U = T_N(x), H = T_H(x), W = T_W(x), P = U * m->k;
    const int32_t *idx = tensor_i32(&r->idx);
    // counting sort of the (unit, expert) pairs by expert, stable in unit order
    m->offset[0] = 0;
    for (int e = 0; e < m->E; e++) m->offset[e + 1] = m->offset[e] + r->count[e];
    CX_ASSERT(m->offset[m->E] == P, "routing counts %lld != pairs %lld", (long long)m->offset[m->E], (long long)P);
    m->pair_order = arena_alloc(ctx->act, (size_t)P * sizeof(int32_t));
    int64_t fill[MOE_MAX_EXPERTS];
    memcpy(fill, m->offset, sizeof(int64_t) * (size_t)m->E);
    for (int64_t p = 0; p < P; p++) m->pair_order[fill[idx[p]]++] = (int32_t)p;

    Tensor y = nn_zeros4(ctx, U, H, W, m->d);
    for (int e = 0; e < m->E; e++) {
        int64_t c = r->count[e];
        if (!c) continue;
        m->rows[e] = tensor_new(ctx->act, DT_I32, 1, &c);
        m->wts[e] = tensor_new(ctx->act, ctx->dtype, 1, &c);
        for (int64_t i = 0; i < c; i++) {
            int32_t p = m->pair_order[m->offset[e] + i];
            tensor_i32(&m->rows[e])[i] = p / m->k;
            tensor_set(&m->wts[e], i, tensor_get(&r->w, p));
        }
        Tensor xe = nn_new4(ctx, c, H, W, m->d);
        rows_gather(&ctx->op, &xe, x, &m->rows[e]);
        m->ys[e] = expert_forward(ctx, &m->experts[e], &xe);       // one call for the whole group
        rows_scatter_add(&ctx->op, &y, &m->ys[e], &m->rows[e], &m->wts[e]);
    }
    return y;
}

void moe_dispatch_backward(NNCtx *ctx, Moe *m, const Tensor *dy, Tensor *dx, Tensor *dw) {
    for (int e = 0; e < m->E; e++) {
        int64_t c = m->route.count[e];
        if (!c) continue;
        ArenaMark mk = arena_mark(ctx->act);   // this group's gradients are temporaries
        Tensor dye = nn_zeros_like(ctx, &m->ys[e]);
        Tensor dwe = tensor_zeros_like(ctx->act, &m->wts[e]);
        rows_scatter_add_backward(&ctx->op, &dye, dw ? &dwe : NULL, dy, &m->ys[e], &m->rows[e], &m->wts[e]);
        Tensor dxe = dx ? nn_zeros_like(ctx, &m->ys[e]) : (Tensor){ 0 };
        expert_backward(ctx, &m->experts[e], &dye, dx ? &dxe : NULL);
        if (dx) rows_scatter_add(&ctx->op, dx, &dxe, &m->rows[e], NULL);
        for (int64_t i = 0; i < c && dw; i++) {
            int32_t p = m->pair_order[m->offset[e] + i];
            tensor_set(dw, p, tensor_get(dw, p) + tensor_get(&dwe, i));
        }
        arena_release(ctx->act, mk);
    }
}

Tensor moe_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    moe_route_forward(ctx, m, x);
    return moe_dispatch_forward(ctx, m, x);
}

void moe_backward(NNCtx *ctx, Moe *m, const Tensor *dy, double dbalance, Tensor *dx) {
    Tensor dw = tensor_zeros_like(ctx->act, &m->route.w);
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
