// moe.h — the sparse mixture-of-experts layer (reference/camoxpert.md §4) with
// grouped execution and selectable load balancing.
//
// Units of work are the rows (first axis) of the layer's input: images for
// global routing (this module's router), image regions for per-region routing
// later — the dispatch (moe_dispatch_*) only sees rows and (row, expert) pairs.
//
//   route:    pooled = avgpool(x) (U,d); logits = router.2(pooled) (U,E);
//             p = softmax(logits); idx = top-k of p (+ selection bias, aux-free);
//             w_j = p_idx_j / (Σ_j p_idx_j + 1e-8)   — differentiable
//   dispatch: counting sort of the U·k (row, expert) pairs by expert; per expert
//             one rows_gather, ONE expert call on the whole group (BatchNorm
//             statistics over the group in training), one weighted
//             rows_scatter_add into y. Backward mirrors it.
//   balance:  MOE_BALANCE_SQDEV   coef · Σ_e (mean_u p[u,e] − 1/E)²  (reference, 0.01)
//             MOE_BALANCE_SWITCH  coef · E · Σ_e f_e · P_e  (f_e: share of pairs, P_e: mean p)
//             MOE_BALANCE_ZLOSS   coef · mean_u logsumexp(logits_u)²
//             MOE_BALANCE_BIAS    no loss; a per-expert bias added to p for choosing only,
//                                 nudged toward balance by moe_balance_update after a step
//
//   Moe m;
//   moe_create(&m, pt, "moe_layers.0", 80, 6, 2, MOE_BALANCE_SQDEV, 0.01);
//   Tensor y = moe_forward(ctx, &m, &x);    // x, y (N,H,W,80); m.route holds the routing
//   moe_backward(ctx, &m, &dy, 1.0, &dx);   // dx +=; router and expert gradients +=
#pragma once
#include "nn/experts.h"

typedef enum { MOE_BALANCE_SQDEV = 0, MOE_BALANCE_SWITCH, MOE_BALANCE_ZLOSS, MOE_BALANCE_BIAS } moe_balance;

#define MOE_MAX_EXPERTS 64

// One routing decision for U units (a forward's output). Host tensors in
// ctx->host (a GPU run downloads the router's logits and probabilities once per
// layer and decides there), float32 (float64 in a float64 run).
typedef struct {
    Tensor logits;   // (U,E)
    Tensor probs;    // (U,E) softmax
    Tensor idx;      // (U,k) I32, chosen experts in descending score
    Tensor w;        // (U,k) renormalised weights
    double lb_loss;  // the balancing loss of this layer (coefficient included; 0 for BIAS)
    int64_t count[MOE_MAX_EXPERTS];   // pairs per expert
} MoeRoute;

typedef struct {
    int d, E, k;
    moe_balance balance;
    double coef;
    Expert experts[MOE_MAX_EXPERTS];   // types cycle texture, frequency, edge, contrast
    int router_w, router_b;            // router.2.weight (E,d), router.2.bias (E), group PG_ROUTER
    double sel_bias[MOE_MAX_EXPERTS];  // MOE_BALANCE_BIAS selection bias (not a checkpoint entry)
    // saved by forward
    MoeRoute route;
    Tensor x;                          // (U,H,W,d)
    Tensor pooled;                     // (U,d)
    int32_t *pair_order;               // (U·k) pair ids sorted by expert (counting sort; host)
    int64_t offset[MOE_MAX_EXPERTS + 1];
    Tensor rows[MOE_MAX_EXPERTS];      // (c_e) I32 unit of each pair of expert e (model's device)
    Tensor wts[MOE_MAX_EXPERTS];       // (c_e) weight of each pair (model's device)
    Tensor ys[MOE_MAX_EXPERTS];        // (c_e,H,W,d) expert outputs
} Moe;

const char *moe_balance_name(moe_balance b);
cx_status moe_balance_parse(const char *s, moe_balance *b);   // "sqdev|switch|zloss|bias"
void moe_create(Moe *m, ParamTable *pt, const char *prefix, int d, int E, int k, moe_balance balance, double coef);
void moe_init(Moe *m, ParamTable *pt, Rng *rng);

// Routing alone: fills m->route from x (U,H,W,d).
void moe_route_forward(NNCtx *ctx, Moe *m, const Tensor *x);
// dw (U,k), a host tensor: gradient of the loss w.r.t. the routing weights;
// dbalance: weight of the balancing loss in the total. dx += router's contribution.
void moe_route_backward(NNCtx *ctx, Moe *m, const Tensor *dw, double dbalance, Tensor *dx);
// Grouped execution of the routed pairs: y (U,H,W,d) = Σ_j w_j · Expert_idx_j(x_u).
Tensor moe_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x);
// dx += through the experts; dw (U,k, host) += gradient of the routing weights.
void moe_dispatch_backward(NNCtx *ctx, Moe *m, const Tensor *dy, Tensor *dx, Tensor *dw);

// Route + dispatch, and their backward.
Tensor moe_forward(NNCtx *ctx, Moe *m, const Tensor *x);
void moe_backward(NNCtx *ctx, Moe *m, const Tensor *dy, double dbalance, Tensor *dx);

// MOE_BALANCE_BIAS: after an optimizer step, sel_bias[e] += rate · sign(mean load − load_e),
// with loads from the last forward. No-op for the other schemes.
void moe_balance_update(Moe *m, double rate);
