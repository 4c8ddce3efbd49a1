// moe.c — router, grouped dispatch and load balancing of the sparse MoE layer
// (moe.h). reference: the reference's SparseMoELayer with global routing, except
// that the routing weights stay differentiable and images are grouped by expert
// (reference/camoxpert.md §4).
//
// A step reads the routing on the host once: the routers of every layer run, the
// decisions and the plan are made on the device (route_topk_plan), one download
// brings every layer's decisions to the host (group sizes, balancing loss,
// statistics), and nothing comes back up but spatial routing's index lists, as
// copies the device queues (cx_dev_upload_async). The routing's backward runs on
// the device too (route_topk_backward). Host memory of a step comes from ctx->host.
// The former scheme (a download and uploads per layer, the host's backward, a
// gather and a scatter per expert) stays under CAMOXPERT_MOE_PLAN=old ("legacy_"
// below) until the GPU has timed both (docs/PERF.md).
#include "nn/moe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOE_RENORM_EPS 1e-8

const char *moe_balance_name(moe_balance b) {
    static const char *names[] = { "mse", "switch", "zloss", "bias" };
    return b >= 0 && b <= MOE_BALANCE_BIAS ? names[b] : "?";
}

cx_status moe_balance_parse(const char *s, moe_balance *b) {
    if (!strcmp(s, "sqdev")) { *b = MOE_BALANCE_MSE; return CX_OK; }   // the name checkpoints and inspect used before
    for (int i = 0; i <= MOE_BALANCE_BIAS; i++)
        if (!strcmp(s, moe_balance_name((moe_balance)i))) { *b = (moe_balance)i; return CX_OK; }
    return CX_FAIL(CX_EARG, "unknown balancing scheme '%s' (expected mse, switch, zloss or bias)", s);
}

const char *moe_routing_name(moe_routing r) { return r == MOE_ROUTING_SPATIAL ? "spatial" : r == MOE_ROUTING_GLOBAL ? "global" : "?"; }

cx_status moe_routing_parse(const char *s, moe_routing *r) {
    if (!strcmp(s, "global")) *r = MOE_ROUTING_GLOBAL;
    else if (!strcmp(s, "spatial")) *r = MOE_ROUTING_SPATIAL;
    else return CX_FAIL(CX_EARG, "unknown routing '%s' (expected global or spatial)", s);
    return CX_OK;
}

int moe_tiles(int64_t side, int grid, int64_t *bounds) {
    int64_t n = side / MOE_MIN_TILE;
    if (n > grid) n = grid;
    if (n < 1) n = 1;
    for (int64_t i = 0; i <= n; i++) bounds[i] = i * side / n;
    return (int)n;
}

void moe_set_spatial(Moe *m, int grid) {
    CX_ASSERT(grid >= 1 && grid <= MOE_MAX_GRID, "route grid %d", grid);
    m->routing = MOE_ROUTING_SPATIAL;
    m->grid = grid;
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
    m->router_w_idx = params_add(pt, p, 2, (int64_t[]){ E, d }, PG_ROUTER, 0);
    snprintf(p, sizeof p, "%s.router.2.bias", prefix);
    m->router_b_idx = params_add(pt, p, 1, (int64_t[]){ E }, PG_ROUTER, PF_NO_DECAY);
}

void moe_init(Moe *m, ParamTable *pt, Rng *rng) {
    for (int e = 0; e < m->E; e++) expert_init(&m->experts[e], pt, rng);
    // nn.Linear default: U(±1/√fan_in) for weight and bias
    double bound = 1.0 / sqrt((double)m->d);
    Tensor w = params_value(pt, m->router_w_idx), b = params_value(pt, m->router_b_idx);
    for (int64_t i = 0; i < tensor_numel(&w); i++) tensor_set(&w, i, (2 * rng_uniform(rng) - 1) * bound);
    for (int64_t i = 0; i < tensor_numel(&b); i++) tensor_set(&b, i, (2 * rng_uniform(rng) - 1) * bound);
    memset(m->sel_bias, 0, sizeof m->sel_bias);
}

static int legacy_plan = -1;

int moe_plan_legacy(void) {
    if (legacy_plan < 0) {
        const char *v = getenv("CAMOXPERT_MOE_PLAN");
        legacy_plan = v && !strcmp(v, "old");
    }
    return legacy_plan;
}

void moe_plan_set_legacy(int legacy) { legacy_plan = legacy != 0; }

// ---- host plans: index lists built on the host --------------------------------------------------
// Host float tensors of the plans are the stat dtype: F32, or F64 in float64 runs.
static inline void fput(Tensor *t, int64_t i, double v) {
    if (t->dtype == DT_F64) ((double *)t->data)[i] = v;
    else ((float *)t->data)[i] = (float)v;
}
static inline double fget(const Tensor *t, int64_t i) {
    return t->dtype == DT_F64 ? ((const double *)t->data)[i] : (double)((const float *)t->data)[i];
}

// The CSR form (ptr (rows+1), list (n)) of an index idx (n) over `rows` rows: each
// row's entries in ascending i (rows_gather_sum's order, ops.h).
static void csr_build(const int32_t *idx, int64_t n, int64_t rows, int32_t *ptr, int32_t *list) {
    memset(ptr, 0, sizeof(int32_t) * (size_t)(rows + 1));
    for (int64_t i = 0; i < n; i++) ptr[idx[i] + 1]++;
    for (int64_t r = 0; r < rows; r++) ptr[r + 1] += ptr[r];   // ptr[r]: row r's first entry
    for (int64_t i = 0; i < n; i++) list[ptr[idx[i]]++] = (int32_t)i;   // ptr[r] moves to row r+1's first
    memmove(ptr + 1, ptr, sizeof(int32_t) * (size_t)rows);
    ptr[0] = 0;
}

static Tensor host_i32(NNCtx *ctx, int64_t n) { return tensor_new(ctx->host, DT_I32, 1, &n); }
static Tensor host_f(NNCtx *ctx, int64_t n) { return tensor_new(ctx->host, nn_stat_dtype(ctx), 1, &n); }
static Tensor csr_ptr(NNCtx *ctx, const Tensor *idx, int64_t rows, Tensor *list) {
    Tensor ptr = host_i32(ctx, rows + 1);
    *list = host_i32(ctx, tensor_numel(idx));
    csr_build(tensor_i32(idx), tensor_numel(idx), rows, tensor_i32(&ptr), tensor_i32(list));
    return ptr;
}
// Host plan tensors (index lists; weights kept in the stat dtype, which every MoE op
// accepts as "float") to the model's device in one copy: packed into one host buffer (each at a
// 256-byte boundary), uploaded once, each replaced by its view of the device copy. The
// copy is queued behind the device's work (legacy: a synchronous upload).
// Tensors without data are left alone; on the CPU nothing moves.
static void to_dev_packed(NNCtx *ctx, Tensor *const *all, size_t n) {
    if (ctx->act->device == DEV_CPU) return;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (all[i]->data) total += (tensor_nbytes(all[i]) + 255) / 256 * 256;
    if (!total) return;
    int64_t bytes = (int64_t)total;
    Tensor h = tensor_new(ctx->host, DT_U8, 1, &bytes), d = tensor_new(ctx->act, DT_U8, 1, &bytes);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!all[i]->data) continue;
        memcpy((char *)h.data + off, all[i]->data, tensor_nbytes(all[i]));
        off += (tensor_nbytes(all[i]) + 255) / 256 * 256;
    }
    if (moe_plan_legacy()) tensor_upload(&d, &h);
    else cx_dev_upload_async(d.data, h.data, total);
    off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!all[i]->data) continue;
        size_t nb = tensor_nbytes(all[i]);
        Tensor v = tensor_view((char *)d.data + off, all[i]->dtype, all[i]->ndim, all[i]->shape);
        v.device = d.device;
        *all[i] = v;
        off += (nb + 255) / 256 * 256;
    }
}

// The tiling of x's map and the tile pooling plan (each tile's pixels, 1/area).
static void spatial_tiling(NNCtx *ctx, Moe *m, const Tensor *x) {
    const double t0 = cx_time_s();
    MoeRoute *r = &m->route;
    int64_t N = T_N(x), H = T_H(x), W = T_W(x), HW = H * W;
    r->gh = moe_tiles(H, m->grid, r->ty);
    r->gw = moe_tiles(W, m->grid, r->tx);
    const int64_t T = (int64_t)r->gh * r->gw;
    m->U = N * T;
    Tensor tile = host_i32(ctx, N * HW), tw = host_f(ctx, N * HW);
    int32_t *tp = tensor_i32(&tile);
    for (int a = 0; a < r->gh; a++)
        for (int b = 0; b < r->gw; b++) {
            double area = (double)((r->ty[a + 1] - r->ty[a]) * (r->tx[b + 1] - r->tx[b]));
            for (int64_t n = 0; n < N; n++)
                for (int64_t y = r->ty[a]; y < r->ty[a + 1]; y++)
                    for (int64_t xx = r->tx[b]; xx < r->tx[b + 1]; xx++) {
                        int64_t p = n * HW + y * W + xx;
                        tp[p] = (int32_t)(n * T + a * r->gw + b);
                        fput(&tw, p, 1.0 / area);
                    }
        }
    m->pool_ptr = csr_ptr(ctx, &tile, m->U, &m->pool_list);
    m->pool_w = host_f(ctx, N * HW);
    const int32_t *pl = tensor_i32(&m->pool_list);
    for (int64_t j = 0; j < N * HW; j++) fput(&m->pool_w, j, fget(&tw, pl[j]));
    m->pix_tile = tile, m->pix_tile_w = tw;
    m->tile_img = m->timg_ptr = m->timg_list = (Tensor){ 0 };
    if (m->route_by_image) {
        m->tile_img = host_i32(ctx, m->U);
        for (int64_t u = 0; u < m->U; u++) tensor_i32(&m->tile_img)[u] = (int32_t)(u / T);
        m->timg_ptr = csr_ptr(ctx, &m->tile_img, N, &m->timg_list);
    }
    Tensor *all[] = { &m->pool_ptr, &m->pool_list, &m->pool_w, &m->pix_tile, &m->pix_tile_w, &m->tile_img,
                      &m->timg_ptr, &m->timg_list };
    to_dev_packed(ctx, all, sizeof all / sizeof *all);
    m->host_s += cx_time_s() - t0;
}

// The pooled features of each unit: (U,d).
static void route_pool(NNCtx *ctx, Moe *m, const Tensor *x) {
    const cx_dtype sdt = nn_stat_dtype(ctx);
    MoeRoute *r = &m->route;
    if (m->routing == MOE_ROUTING_GLOBAL) {
        m->U = T_N(x);
        r->gh = r->gw = 1;
        r->ty[0] = r->tx[0] = 0, r->ty[1] = T_H(x), r->tx[1] = T_W(x);
        m->pooled = nn_new(ctx, sdt, 2, (int64_t[]){ m->U, m->d });
        avgpool_global_forward(&ctx->op, &m->pooled, x);
        return;
    }
    spatial_tiling(ctx, m, x);
    m->pooled = nn_zeros(ctx, sdt, 2, (int64_t[]){ m->U, m->d });
    if (m->route_by_image) {
        m->img_pooled = nn_new(ctx, sdt, 2, (int64_t[]){ T_N(x), m->d });
        avgpool_global_forward(&ctx->op, &m->img_pooled, x);
        rows_gather(&ctx->op, &m->pooled, &m->img_pooled, &m->tile_img);
        return;
    }
    Tensor x2 = tensor_reshape(x, 2, (int64_t[]){ tensor_numel(x) / m->d, m->d });
    rows_gather_sum(&ctx->op, &m->pooled, &x2, &m->pool_ptr, &m->pool_list, &m->pool_w);
}

// dx += the pooling's backward of dpooled (U,d).
static void route_pool_backward(NNCtx *ctx, Moe *m, const Tensor *dpooled, Tensor *dx) {
    if (m->routing == MOE_ROUTING_GLOBAL) {
        avgpool_global_backward(&ctx->op, dx, dpooled);
        return;
    }
    if (m->route_by_image) {
        Tensor dimg = nn_zeros_like(ctx, &m->img_pooled);
        rows_gather_sum(&ctx->op, &dimg, dpooled, &m->timg_ptr, &m->timg_list, NULL);
        avgpool_global_backward(&ctx->op, dx, &dimg);
        return;
    }
    Tensor dx2 = tensor_reshape(dx, 2, (int64_t[]){ tensor_numel(dx) / m->d, m->d });
    rows_scatter_add_backward(&ctx->op, &dx2, NULL, dpooled, NULL, &m->pix_tile, &m->pix_tile_w);   // dx[p] += dpooled[tile(p)]/area
}

// ---- the host's part of a routing: counts, balancing loss, the pairs sorted by expert -------------
// The balancing loss of m->route (coefficient included), from its host probabilities,
// logits and counts.
static double balance_loss(const Moe *m) {
    const MoeRoute *r = &m->route;
    const int64_t U = m->U;
    const int E = m->E, k = m->k;
    double lb = 0;
    for (int e = 0; e < E && m->balance != MOE_BALANCE_ZLOSS; e++) {
        double P = 0;
        for (int64_t u = 0; u < U; u++) P += fget(&r->probs, u * E + e);
        P /= (double)U;
        if (m->balance == MOE_BALANCE_MSE) lb += (P - 1.0 / E) * (P - 1.0 / E);
        else if (m->balance == MOE_BALANCE_SWITCH) lb += E * ((double)r->count[e] / ((double)U * k)) * P;
    }
    if (m->balance == MOE_BALANCE_ZLOSS) {
        for (int64_t u = 0; u < U; u++) {
            double mx = -INFINITY, s = 0;
            for (int e = 0; e < E; e++) mx = fmax(mx, fget(&r->logits, u * E + e));
            for (int e = 0; e < E; e++) s += exp(fget(&r->logits, u * E + e) - mx);
            double lse = mx + log(s);
            lb += lse * lse / (double)U;
        }
    }
    return lb * m->coef;
}

// A counting sort of the (unit, expert) pairs by expert, stable in unit order: offset
// and pair_order (route_topk_plan's order, made again on the host for the spatial plans).
static void pairs_sort(NNCtx *ctx, Moe *m) {
    const MoeRoute *r = &m->route;
    const int64_t P = m->U * m->k;
    const int32_t *idx = tensor_i32(&r->idx);
    m->offset[0] = 0;
    for (int e = 0; e < m->E; e++) m->offset[e + 1] = m->offset[e] + r->count[e];
    CX_ASSERT(m->offset[m->E] == P, "routing counts %lld != pairs %lld", (long long)m->offset[m->E], (long long)P);
    m->pair_order = arena_alloc(ctx->host, (size_t)(P ? P : 1) * sizeof(int32_t));
    int64_t fill_at[MOE_MAX_EXPERTS];
    memcpy(fill_at, m->offset, sizeof(int64_t) * (size_t)m->E);
    for (int64_t p = 0; p < P; p++) m->pair_order[fill_at[idx[p]]++] = (int32_t)p;
}

static moe_lb balance_term(moe_balance b) {
    return b == MOE_BALANCE_MSE ? MOE_LB_MSE : b == MOE_BALANCE_SWITCH ? MOE_LB_SWITCH
         : b == MOE_BALANCE_ZLOSS ? MOE_LB_ZLOSS : MOE_LB_NONE;
}

// ---- routing: every layer's decisions in one download ---------------------------------------------
static Tensor blk_view(const Tensor *blk, size_t off, cx_dtype dt, int ndim, const int64_t *shape) {
    Tensor v = tensor_view((char *)blk->data + off, dt, ndim, shape);
    v.device = blk->device;
    return v;
}

static void legacy_route_forward(NNCtx *ctx, Moe *m, const Tensor *x);

#define MOE_ROUTE_LAYERS 8   // layers routed together at most (a model has 4)
#define ALIGN256(b) (((b) + 255) / 256 * 256)

// One block on the model's device holds, per layer, [logits | probs | w | idx] (the part
// read on the host, first, so that one copy reads every layer) and then [plan | plan_w].
void moe_route_forward_n(NNCtx *ctx, Moe *m, const Tensor *x, int n) {
    if (moe_plan_legacy()) {
        for (int i = 0; i < n; i++) legacy_route_forward(ctx, &m[i], &x[i]);
        return;
    }
    CX_ASSERT(n >= 1 && n <= MOE_ROUTE_LAYERS, "moe_route_forward_n: %d layers", n);
    const cx_dtype sdt = nn_stat_dtype(ctx);
    const size_t fs = dtype_size(sdt);
    size_t at[MOE_ROUTE_LAYERS][6], read = 0, total;
    for (int i = 0; i < n; i++) {
        m[i].x = x[i];
        m[i].host_s = 0;
        route_pool(ctx, &m[i], &x[i]);
        const size_t UE = (size_t)(m[i].U * m[i].E), Uk = (size_t)(m[i].U * m[i].k);
        at[i][0] = read, read += ALIGN256(UE * fs);               // logits
        at[i][1] = read, read += ALIGN256(UE * fs);               // probs
        at[i][2] = read, read += ALIGN256(Uk * fs);               // w
        at[i][3] = read, read += ALIGN256(Uk * sizeof(int32_t));  // idx
    }
    total = read;
    for (int i = 0; i < n; i++) {
        const size_t U = (size_t)m[i].U, Uk = (size_t)(m[i].U * m[i].k);
        at[i][4] = total, total += ALIGN256((3 * Uk + U + 1) * sizeof(int32_t));   // plan
        at[i][5] = total, total += ALIGN256(2 * Uk * fs);                           // plan_w
    }
    int64_t tb = (int64_t)total;
    Tensor blk = nn_new(ctx, DT_U8, 1, &tb);
    for (int i = 0; i < n; i++) {
        Moe *l = &m[i];
        const int64_t U = l->U, E = l->E, k = l->k, P = U * k;
        l->d_logits = blk_view(&blk, at[i][0], sdt, 2, (int64_t[]){ U, E });
        l->d_probs = blk_view(&blk, at[i][1], sdt, 2, (int64_t[]){ U, E });
        Tensor w = blk_view(&blk, at[i][2], sdt, 2, (int64_t[]){ U, k });
        l->d_idx = blk_view(&blk, at[i][3], DT_I32, 2, (int64_t[]){ U, k });
        l->plan = blk_view(&blk, at[i][4], DT_I32, 1, (int64_t[]){ 3 * P + U + 1 });
        l->plan_w = blk_view(&blk, at[i][5], sdt, 1, (int64_t[]){ 2 * P });
        Tensor rw = nn_param(ctx, l->router_w_idx), rb = nn_param(ctx, l->router_b_idx);
        linear_forward(&ctx->op, &l->d_logits, &l->pooled, &rw, &rb);
        softmax_forward(&ctx->op, &l->d_probs, &l->d_logits, U, E, 1);
        route_topk_plan(&ctx->op, &l->d_idx, &w, &l->plan, &l->plan_w, &l->d_probs,
                        l->balance == MOE_BALANCE_BIAS ? l->sel_bias : NULL);
    }
    // ---- the one download: every layer's logits, probabilities, weights and choices ----
    int64_t rb = (int64_t)read;
    Tensor head = blk_view(&blk, 0, DT_U8, 1, &rb);
    Tensor h = nn_to_host(ctx, &head);
    for (int i = 0; i < n; i++) {
        const double t0 = cx_time_s();
        Moe *l = &m[i];
        MoeRoute *r = &l->route;
        const int64_t U = l->U, E = l->E, k = l->k;
        r->logits = blk_view(&h, at[i][0], sdt, 2, (int64_t[]){ U, E });
        r->probs = blk_view(&h, at[i][1], sdt, 2, (int64_t[]){ U, E });
        r->w = blk_view(&h, at[i][2], sdt, 2, (int64_t[]){ U, k });
        r->idx = blk_view(&h, at[i][3], DT_I32, 2, (int64_t[]){ U, k });
        memset(r->count, 0, sizeof r->count);
        const int32_t *idx = tensor_i32(&r->idx);
        for (int64_t p = 0; p < U * k; p++) r->count[idx[p]]++;
        r->lb_loss = balance_loss(l);
        pairs_sort(ctx, l);
        l->host_s += cx_time_s() - t0;
    }
}

void moe_route_forward(NNCtx *ctx, Moe *m, const Tensor *x) { moe_route_forward_n(ctx, m, x, 1); }

// The routing's backward on the device: dw (U,k) on the model's device (NULL: none), then
// the router's linear and the pooling. dx += the router's contribution.
static void route_backward(NNCtx *ctx, Moe *m, const Tensor *dw, double dbalance, Tensor *dx) {
    Tensor dlogits = nn_zeros(ctx, m->d_logits.dtype, 2, m->d_logits.shape);
    route_topk_backward(&ctx->op, &dlogits, dw, &m->d_idx, &m->d_probs, &m->d_logits, balance_term(m->balance),
                        dbalance * m->coef);
    Tensor w = nn_param(ctx, m->router_w_idx), gw = nn_grad(ctx, m->router_w_idx), gb = nn_grad(ctx, m->router_b_idx);
    Tensor dpooled = nn_zeros_like(ctx, &m->pooled);
    linear_backward(&ctx->op, &dpooled, &gw, &gb, &dlogits, &m->pooled, &w);
    if (dx) route_pool_backward(ctx, m, &dpooled, dx);
}

// ---- grouped execution ------------------------------------------------------------------------------
static Tensor spatial_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x);
static void spatial_dispatch_backward(NNCtx *ctx, Moe *m, const Tensor *dy, Tensor *dx, Tensor *dwp);
static Tensor legacy_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x);

// The plan's parts (route_topk_plan): rows, pos, ulist, uptr; wts, uw.
static Tensor plan_part(const Moe *m, int part) {
    const int64_t P = m->U * m->k;
    return tensor_slice0(&m->plan, part * P, part == 3 ? m->U + 1 : P);
}
static Tensor plan_w_part(const Moe *m, int part) { return tensor_slice0(&m->plan_w, part * m->U * m->k, m->U * m->k); }

// Global routing: one gather of the pairs' images in plan order (expert by expert), one
// expert call per group on its slice, each writing its slice of yall, and one gather-sum
// of every unit's k outputs with their weights (in expert order: the former per-expert
// scatters' sum term for term, rounded once instead of k times).
Tensor moe_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    if (moe_plan_legacy()) return legacy_dispatch_forward(ctx, m, x);
    if (m->routing == MOE_ROUTING_SPATIAL) return spatial_dispatch_forward(ctx, m, x);
    const int64_t U = m->U, H = T_H(x), W = T_W(x), P = U * m->k;
    Tensor rows = plan_part(m, 0), ulist = plan_part(m, 2), uptr = plan_part(m, 3), uw = plan_w_part(m, 1);
    // y first: below the groups' rows and outputs, which inference gives back once summed
    // (above it they would leave a hole of k maps under it)
    Tensor y = nn_zeros4(ctx, U, H, W, m->d);
    m->yall = nn_new4(ctx, P, H, W, m->d);
    Tensor xg = nn_new4(ctx, P, H, W, m->d);
    rows_gather(&ctx->op, &xg, x, &rows);
    for (int e = 0; e < m->E; e++) {
        const int64_t c = m->route.count[e];
        if (!c) continue;
        Tensor xe = tensor_slice0(&xg, m->offset[e], c);
        m->ys[e] = tensor_slice0(&m->yall, m->offset[e], c);
        Expert *ex = &m->experts[e];
        nn_unit_begin(ctx, &ex->unit);   // a unit (nn/recompute.h): its backward re-runs it on xe when asked
        expert_forward_into(ctx, ex, &xe, &m->ys[e]);   // one call for the whole group
        nn_unit_end(ctx, &ex->unit, (Tensor *[]){ &m->ys[e] }, 1);
    }
    nn_drop(ctx, &xg);   // inference: every group has read its rows
    rows_gather_sum(&ctx->op, &y, &m->yall, &uptr, &ulist, &uw);
    nn_drop(ctx, &m->yall);   // inference: summed
    return y;
}

// dx += through the experts; dwp (P, plan order, model's device) += the routing weights' gradient.
static void global_dispatch_backward(NNCtx *ctx, Moe *m, const Tensor *dy, Tensor *dx, Tensor *dwp) {
    Tensor rows = plan_part(m, 0), ulist = plan_part(m, 2), uptr = plan_part(m, 3), wts = plan_w_part(m, 0);
    ArenaMark mk = arena_mark(ctx->act);   // the groups' gradients are temporaries
    Tensor dyall = nn_zeros_like(ctx, &m->yall);
    rows_scatter_add_backward(&ctx->op, &dyall, dwp, dy, &m->yall, &rows, &wts);   // w·dy per pair; <dy, y_e>
    Tensor dxall = dx ? nn_zeros_like(ctx, &m->yall) : (Tensor){ 0 };
    for (int e = 0; e < m->E; e++) {
        const int64_t c = m->route.count[e];
        if (!c) continue;
        Tensor dye = tensor_slice0(&dyall, m->offset[e], c);
        Tensor dxe = dx ? tensor_slice0(&dxall, m->offset[e], c) : (Tensor){ 0 };
        expert_backward(ctx, &m->experts[e], &dye, dx ? &dxe : NULL);
    }
    if (dx) rows_gather_sum(&ctx->op, dx, &dxall, &uptr, &ulist, NULL);
    arena_release(ctx->act, mk);
}

// ---- the former scheme (CAMOXPERT_MOE_PLAN=old) ----------------------------------------------------
// Routing runs on the device up to the router's softmax (F32 beside bf16
// activations); the decisions (top-k, renormalised weights, counts, balance
// loss) are made on the host from one download per layer of the logits and
// probabilities — U×E numbers — and the dispatch plan goes back in one upload.
// On the CPU the "downloads" are the tensors themselves.
static void legacy_route_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    int E = m->E, k = m->k;
    MoeRoute *r = &m->route;
    const cx_dtype sdt = nn_stat_dtype(ctx);
    m->x = *x;
    m->host_s = 0;
    route_pool(ctx, m, x);
    const int64_t U = m->U;
    Tensor logits = nn_new(ctx, sdt, 2, (int64_t[]){ U, E }), probs = nn_new(ctx, sdt, 2, (int64_t[]){ U, E });
    Tensor w = nn_param(ctx, m->router_w_idx), b = nn_param(ctx, m->router_b_idx);
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
    if (m->force_idx) {
        CX_ASSERT(m->force_n == U * k, "moe: %lld forced choices for %lld units of top-%d", (long long)m->force_n,
                  (long long)U, k);
        int32_t *own = tensor_i32(&r->idx);
        for (int64_t u = 0; u < U; u++) {
            m->force_differed += memcmp(own + u * k, m->force_idx + u * k, sizeof *own * (size_t)k) != 0;
            memcpy(own + u * k, m->force_idx + u * k, sizeof *own * (size_t)k);
        }
    }
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
    r->lb_loss = balance_loss(m);
}

// The routing backward is host arithmetic on U×E numbers (dw is a host tensor):
// dlogits goes up in one upload, the router's linear runs on the device.
static void legacy_route_backward(NNCtx *ctx, Moe *m, const Tensor *dw, double dbalance, Tensor *dx) {
    MoeRoute *r = &m->route;
    int64_t U = m->U;
    int E = m->E, k = m->k;
    double *dp = arena_calloc(ctx->host, sizeof(double) * (size_t)(U * E));
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
        if (m->balance == MOE_BALANCE_MSE) g = cb * 2 * (P - 1.0 / E) / (double)U;
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
    Tensor dl = nn_to_device(ctx, &dlogits);
    Tensor w = nn_param(ctx, m->router_w_idx), gw = nn_grad(ctx, m->router_w_idx), gb = nn_grad(ctx, m->router_b_idx);
    Tensor dpooled = nn_zeros_like(ctx, &m->pooled);
    linear_backward(&ctx->op, &dpooled, &gw, &gb, &dl, &m->pooled, &w);
    if (dx) route_pool_backward(ctx, m, &dpooled, dx);
}

// The plan (each expert's rows and weights, sorted by expert) is built on the
// host and uploaded in one copy; expert e then runs once on its whole group, between
// a gather and a scatter of its own.
static Tensor legacy_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    MoeRoute *r = &m->route;
    int64_t U = m->U, H = T_H(x), W = T_W(x), P = U * m->k;
    const cx_dtype sdt = nn_stat_dtype(ctx);
    pairs_sort(ctx, m);
    if (m->routing == MOE_ROUTING_SPATIAL) return spatial_dispatch_forward(ctx, m, x);
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
        Expert *ex = &m->experts[e];
        nn_unit_begin(ctx, &ex->unit);   // a unit (nn/recompute.h): its backward re-runs it on xe when asked
        m->ys[e] = expert_forward(ctx, ex, &xe);                   // one call for the whole group
        nn_unit_end(ctx, &ex->unit, (Tensor *[]){ &m->ys[e] }, 1);
        rows_scatter_add(&ctx->op, &y, &m->ys[e], &m->rows[e], &m->wts[e]);
        nn_drop(ctx, &m->ys[e]);   // inference: scattered
        nn_drop(ctx, &xe);
    }
    return y;
}

// Each expert's routing-weight gradients land in one (P) buffer in plan order on
// the model's device, brought down once and permuted into dw (host) there.
static void legacy_dispatch_backward(NNCtx *ctx, Moe *m, const Tensor *dy, Tensor *dx, Tensor *dw) {
    int64_t P = m->U * m->k;
    Tensor dwp = nn_zeros(ctx, nn_stat_dtype(ctx), 1, &P);   // plan order
    if (m->routing == MOE_ROUTING_SPATIAL) spatial_dispatch_backward(ctx, m, dy, dx, dw ? &dwp : NULL);
    for (int e = 0; e < m->E && m->routing == MOE_ROUTING_GLOBAL; e++) {
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

// ---- spatial dispatch ---------------------------------------------------------------------------
// Expert e's plan: its c pairs (plan order, units ascending) as windows of h×w pixels
// (the tile grown by the expert's radius on every side, at most the map, shifted
// inside the map), the M kept pixels (each pair's tile, row-major), and the CSR
// lists that turn every scatter into a gather (rows_gather_sum).
static void spatial_plan(NNCtx *ctx, Moe *m, int e, const Tensor *x) {
    const double t0 = cx_time_s();
    MoeRoute *r = &m->route;
    MoeTiles *pl = &m->tiles[e];
    const int64_t N = T_N(x), H = T_H(x), W = T_W(x), HW = H * W, c = r->count[e];
    const int64_t T = (int64_t)r->gh * r->gw;
    const int rad = expert_radius(m->experts[e].kind);
    const int32_t *order = m->pair_order + m->offset[e];
    int64_t th = 0, tw = 0;
    for (int a = 0; a < r->gh; a++) th = r->ty[a + 1] - r->ty[a] > th ? r->ty[a + 1] - r->ty[a] : th;
    for (int b = 0; b < r->gw; b++) tw = r->tx[b + 1] - r->tx[b] > tw ? r->tx[b + 1] - r->tx[b] : tw;
    pl->h = th + 2 * rad < H ? th + 2 * rad : H;
    pl->w = tw + 2 * rad < W ? tw + 2 * rad : W;
    const int64_t hw = pl->h * pl->w;
    int64_t M = 0;
    for (int64_t q = 0; q < c; q++) {
        int64_t t = (order[q] / m->k) % T;
        int a = (int)(t / r->gw), b = (int)(t % r->gw);
        M += (r->ty[a + 1] - r->ty[a]) * (r->tx[b + 1] - r->tx[b]);
    }
    ExpertTiles *et = &pl->t;
    et->M = M;
    et->n_img = N;
    pl->win_idx = host_i32(ctx, c * hw);
    et->centre = host_i32(ctx, M);
    et->img = host_i32(ctx, M);
    et->img_w = host_f(ctx, M);
    pl->out_idx = host_i32(ctx, M);
    Tensor pair = host_i32(ctx, M);
    pl->pix_w = tensor_new(ctx->host, nn_stat_dtype(ctx), 4, (int64_t[]){ M, 1, 1, 1 });
    int32_t *wi = tensor_i32(&pl->win_idx), *ce = tensor_i32(&et->centre), *im = tensor_i32(&et->img),
            *oi = tensor_i32(&pl->out_idx), *pa = tensor_i32(&pair);
    int64_t *img_count = arena_calloc(ctx->host, sizeof(int64_t) * (size_t)N);
    int64_t mi = 0;
    for (int64_t q = 0; q < c; q++) {
        int32_t p = order[q];
        int64_t u = p / m->k, n = u / T, t = u % T;
        int a = (int)(t / r->gw), b = (int)(t % r->gw);
        int64_t y0 = r->ty[a], y1 = r->ty[a + 1], x0 = r->tx[b], x1 = r->tx[b + 1];
        int64_t wy = y0 - rad, wx = x0 - rad;   // the window's corner, shifted inside the map
        if (wy > H - pl->h) wy = H - pl->h;
        if (wy < 0) wy = 0;
        if (wx > W - pl->w) wx = W - pl->w;
        if (wx < 0) wx = 0;
        for (int64_t i = 0; i < pl->h; i++) {
            int32_t *row = wi + q * hw + i * pl->w;
            const int32_t base = (int32_t)(n * HW + (wy + i) * W + wx);
            for (int64_t j = 0; j < pl->w; j++) row[j] = base + (int32_t)j;
        }
        const double wq = fget(&r->w, p);
        const int64_t m0 = mi;
        for (int64_t y = y0; y < y1; y++)
            for (int64_t xx = x0; xx < x1; xx++, mi++) {
                ce[mi] = (int32_t)(q * hw + (y - wy) * pl->w + (xx - wx));
                oi[mi] = (int32_t)(n * HW + y * W + xx);
                im[mi] = (int32_t)n;
                pa[mi] = (int32_t)q;
                fput(&pl->pix_w, mi, wq);
            }
        img_count[n] += mi - m0;
    }
    for (int64_t i = 0; i < M; i++) fput(&et->img_w, i, 1.0 / (double)img_count[im[i]]);
    pl->win_ptr = csr_ptr(ctx, &pl->win_idx, N * HW, &pl->win_list);
    et->uncrop_ptr = csr_ptr(ctx, &et->centre, c * hw, &et->uncrop_list);
    et->img_ptr = csr_ptr(ctx, &et->img, N, &et->img_list);
    pl->out_ptr = csr_ptr(ctx, &pl->out_idx, N * HW, &pl->out_list);
    pl->out_w = host_f(ctx, M);
    const int32_t *ol = tensor_i32(&pl->out_list);
    for (int64_t j = 0; j < M; j++) fput(&pl->out_w, j, fget(&pl->pix_w, ol[j]));
    pl->pair_ptr = csr_ptr(ctx, &pair, c, &pl->pair_list);
    Tensor *all[] = { &pl->win_idx, &pl->win_ptr, &pl->win_list, &et->centre, &et->uncrop_ptr, &et->uncrop_list,
                      &et->img, &et->img_ptr, &et->img_list, &et->img_w, &pl->out_idx, &pl->out_ptr, &pl->out_list,
                      &pl->out_w, &pl->pix_w, &pl->pair_ptr, &pl->pair_list };
    to_dev_packed(ctx, all, sizeof all / sizeof *all);
    m->host_s += cx_time_s() - t0;
}

static Tensor spatial_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    const int64_t N = T_N(x), H = T_H(x), W = T_W(x);
    Tensor y = nn_zeros4(ctx, N, H, W, m->d);
    Tensor x2 = tensor_reshape(x, 2, (int64_t[]){ N * H * W, m->d }), y2 = tensor_reshape(&y, 2, (int64_t[]){ N * H * W, m->d });
    for (int e = 0; e < m->E; e++) {
        int64_t c = m->route.count[e];
        if (!c) continue;
        MoeTiles *pl = &m->tiles[e];
        spatial_plan(ctx, m, e, x);
        Tensor xw = nn_new4(ctx, c, pl->h, pl->w, m->d);
        Tensor xw2 = tensor_reshape(&xw, 2, (int64_t[]){ c * pl->h * pl->w, m->d });
        rows_gather(&ctx->op, &xw2, &x2, &pl->win_idx);
        Expert *ex = &m->experts[e];
        nn_unit_begin(ctx, &ex->unit);
        m->ys[e] = expert_forward_tiles(ctx, ex, &xw, &pl->t);   // one call for the whole group
        nn_unit_end(ctx, &ex->unit, (Tensor *[]){ &m->ys[e] }, 1);
        Tensor ye2 = tensor_reshape(&m->ys[e], 2, (int64_t[]){ pl->t.M, m->d });
        rows_gather_sum(&ctx->op, &y2, &ye2, &pl->out_ptr, &pl->out_list, &pl->out_w);   // y += w·ye at the tiles
        nn_drop(ctx, &m->ys[e]);   // inference: scattered
        nn_drop(ctx, &xw);
    }
    return y;
}

// dwp (P, plan order) += each pair's routing-weight gradient: Σ over its pixels of <dy, ye>.
static void spatial_dispatch_backward(NNCtx *ctx, Moe *m, const Tensor *dy, Tensor *dx, Tensor *dwp) {
    const int64_t NHW = tensor_numel(dy) / m->d;
    Tensor dy2 = tensor_reshape(dy, 2, (int64_t[]){ NHW, m->d });
    for (int e = 0; e < m->E; e++) {
        int64_t c = m->route.count[e];
        if (!c) continue;
        MoeTiles *pl = &m->tiles[e];
        ArenaMark mk = arena_mark(ctx->act);   // this group's gradients are temporaries
        Tensor g = nn_new4(ctx, pl->t.M, 1, 1, m->d), g2 = tensor_reshape(&g, 2, (int64_t[]){ pl->t.M, m->d });
        rows_gather(&ctx->op, &g2, &dy2, &pl->out_idx);   // dy at each kept pixel
        Tensor dye = nn_zeros_like(ctx, &m->ys[e]);
        Tensor dwpix = dwp ? nn_zeros_like(ctx, &pl->pix_w) : (Tensor){ 0 };
        mul_backward(&ctx->op, &dye, dwp ? &dwpix : NULL, &g, &m->ys[e], &pl->pix_w);
        if (dwp) {
            Tensor dwe = tensor_slice0(dwp, m->offset[e], c), dwpix2 = tensor_reshape(&dwpix, 2, (int64_t[]){ pl->t.M, 1 });
            Tensor dwe2 = tensor_reshape(&dwe, 2, (int64_t[]){ c, 1 });
            rows_gather_sum(&ctx->op, &dwe2, &dwpix2, &pl->pair_ptr, &pl->pair_list, NULL);
        }
        Tensor dxw = dx ? nn_zeros4(ctx, c, pl->h, pl->w, m->d) : (Tensor){ 0 };
        expert_backward_tiles(ctx, &m->experts[e], &pl->t, &dye, dx ? &dxw : NULL);
        if (dx) {
            Tensor dx2 = tensor_reshape(dx, 2, (int64_t[]){ NHW, m->d });
            Tensor dxw2 = tensor_reshape(&dxw, 2, (int64_t[]){ c * pl->h * pl->w, m->d });
            rows_gather_sum(&ctx->op, &dx2, &dxw2, &pl->win_ptr, &pl->win_list, NULL);
        }
        arena_release(ctx->act, mk);
    }
}

Tensor moe_forward(NNCtx *ctx, Moe *m, const Tensor *x) {
    moe_route_forward(ctx, m, x);
    return moe_dispatch_forward(ctx, m, x);
}

void moe_backward(NNCtx *ctx, Moe *m, const Tensor *dy, double dbalance, Tensor *dx) {
    const int64_t P = m->U * m->k;
    if (moe_plan_legacy()) {
        Tensor dw = tensor_new(ctx->host, m->route.w.dtype, 2, m->route.w.shape);   // (U,k) on the host
        tensor_zero(&dw);
        legacy_dispatch_backward(ctx, m, dy, dx, &dw);
        legacy_route_backward(ctx, m, &dw, dbalance, dx);
        return;
    }
    Tensor dwp = nn_zeros(ctx, nn_stat_dtype(ctx), 1, &P);   // plan order
    if (m->routing == MOE_ROUTING_SPATIAL) spatial_dispatch_backward(ctx, m, dy, dx, &dwp);
    else global_dispatch_backward(ctx, m, dy, dx, &dwp);
    // to (unit, slot) order, on the device: dw[p] = dwp[pos[p]]
    Tensor pos = plan_part(m, 1), dw = nn_new(ctx, nn_stat_dtype(ctx), 2, (int64_t[]){ P, 1 });
    Tensor dwp2 = tensor_reshape(&dwp, 2, (int64_t[]){ P, 1 });
    rows_gather(&ctx->op, &dw, &dwp2, &pos);
    Tensor dw2 = tensor_reshape(&dw, 2, (int64_t[]){ m->U, m->k });
    route_backward(ctx, m, &dw2, dbalance, dx);
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
