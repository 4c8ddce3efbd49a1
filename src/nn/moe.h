// moe.h — the sparse mixture-of-experts layer (reference/camoxpert.md §4) with
// grouped execution and selectable load balancing, routing whole images (global)
// or the tiles of a grid over each map (spatial).
//
// Units of work are images (global routing, U = N) or tiles (spatial, U = N·T
// with T tiles per image, docs/ROUTING.md):
//   * global: a unit is a row of x; each expert runs once on the images routed to it.
//   * spatial: each map is cut into gh×gw tiles (moe_tiles: at most --route-grid
//     per side, each tile at least 4 pixels a side); the router scores each tile
//     from its own pooled features. The (tile, expert) pairs are sorted by
//     expert; each expert runs once on the batch of its tiles, each tile cut from
//     x as a window with a halo of the expert's receptive-field radius
//     (expert_radius; the window shifted inside the map at its borders, so its
//     zero padding is the map's), so a tile's output equals the expert run on the
//     whole map there; the tiles' own pixels are scattered back with their
//     routing weights (experts.h, ExpertTiles: BatchNorm over the tiles' pixels).
//
//   route:    pooled = avgpool over each unit (U,d); logits = router.2(pooled) (U,E);
//             p = softmax(logits); idx = top-k of p (+ selection bias, aux-free);
//             w_j = p_idx_j / (Σ_j p_idx_j + 1e-8)   — differentiable
//   plan:     on the device (route_topk_plan): the top-k, the weights and a counting sort
//             of the U·k (unit, expert) pairs by expert; then ONE download of every
//             layer's routing (moe_route_forward_n: the four scales of a model together,
//             the step's one host synchronisation), from which the host takes the
//             groups' sizes and the balancing loss. Nothing is uploaded back: global
//             routing's plan is on the device already; spatial routing's index lists
//             (built on the host) go up as asynchronous copies (cx_dev_upload_async).
//   dispatch: global: ONE rows_gather of the pairs' rows in plan order, ONE expert call
//             per group on its slice (BatchNorm statistics over the group in training),
//             ONE weighted rows_gather_sum of the outputs into y. Backward mirrors it,
//             and the routing's backward runs on the device (route_topk_backward).
//   balance:  MOE_BALANCE_MSE     coef · Σ_e (mean_u p[u,e] − 1/E)²  (reference, 0.01)
//             MOE_BALANCE_SWITCH  coef · E · Σ_e f_e · P_e  (f_e: share of pairs, P_e: mean p)
//             MOE_BALANCE_ZLOSS   coef · mean_u logsumexp(logits_u)²
//             MOE_BALANCE_BIAS    no loss; a per-expert bias added to p for choosing only,
//                                 nudged toward balance by moe_balance_update after a step
//
//   Moe m;
//   moe_create(&m, pt, "moe_layers.0", 80, 6, 2, MOE_BALANCE_MSE, 0.01);
//   Tensor y = moe_forward(ctx, &m, &x);    // x, y (N,H,W,80); m.route holds the routing
//   moe_backward(ctx, &m, &dy, 1.0, &dx);   // dx +=; router and expert gradients +=
//   // several layers (a model's scales) routed with one download, then run:
//   moe_route_forward_n(ctx, layers, xs, 4);
//   for (int s = 0; s < 4; s++) ys[s] = moe_dispatch_forward(ctx, &layers[s], &xs[s]);
//
// CAMOXPERT_MOE_PLAN=old runs the former dispatch (decisions on the host and per layer,
// plans uploaded, per-expert gathers and scatters, the routing's backward on the host),
// kept beside the new one to time both in one binary (docs/PERF.md); same results in float32.
#pragma once
#include "nn/experts.h"

typedef enum { MOE_BALANCE_MSE = 0, MOE_BALANCE_SWITCH, MOE_BALANCE_ZLOSS, MOE_BALANCE_BIAS } moe_balance;
typedef enum { MOE_ROUTING_GLOBAL = 0, MOE_ROUTING_SPATIAL } moe_routing;

#define MOE_MAX_EXPERTS 64
#define MOE_MAX_GRID 16
#define MOE_MIN_TILE 4   // a tile's smallest side in pixels (fewer tiles on smaller maps)

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
    int gh, gw;      // spatial: tiles per column and per row (U = N·gh·gw, tile t of image n is unit n·gh·gw + t,
                     // row-major); global: 1, 1
    int64_t ty[MOE_MAX_GRID + 1], tx[MOE_MAX_GRID + 1];   // tile boundaries in the map (rows, columns)
} MoeRoute;

// The host plan and saved state of one expert's group under spatial routing.
typedef struct {
    int64_t h, w;              // window size (tile + halo, at most the map)
    ExpertTiles t;             // the kept pixels (experts.h)
    Tensor win_idx;            // (c·h·w) I32: pixel of x (row of (N·H·W)) of each window pixel
    Tensor win_ptr, win_list;  // its CSR over x's pixels (the windows' backward)
    Tensor out_idx;            // (M) I32: pixel of y of each kept pixel
    Tensor out_ptr, out_list, out_w;   // its CSR over y's pixels, with each entry's routing weight
    Tensor pix_w;              // (M,1,1,1) routing weight of each kept pixel's pair
    Tensor pair_ptr, pair_list;        // the kept pixels of each pair: (c+1), (M)
} MoeTiles;

typedef struct {
    int d, E, k;
    moe_balance balance;
    double coef;
    moe_routing routing;
    int grid;                          // spatial: at most grid×grid tiles per map (--route-grid)
    int route_by_image;                // spatial, tests: every tile scored from its image's pooled features
                                       // (so every tile gets its image's global choice and weights)
    Expert experts[MOE_MAX_EXPERTS];   // types cycle texture, frequency, edge, contrast
    int router_w_idx, router_b_idx;    // table entries: router.2.weight (E,d), router.2.bias (E), group PG_ROUTER
    double sel_bias[MOE_MAX_EXPERTS];  // MOE_BALANCE_BIAS selection bias (not a checkpoint entry)
    // Checks only (verify's bf16 rule: outputs compared under the reference's decisions): non-NULL, the
    // (U,k) choices (force_n = U·k of them) every forward takes instead of its own top-k (the weights
    // still come from its p); force_differed counts the units whose own top-k chose otherwise.
    const int32_t *force_idx;
    int64_t force_n, force_differed;
    // saved by forward
    MoeRoute route;
    Tensor x;                          // (U,H,W,d)
    Tensor pooled;                     // (U,d)
    int32_t *pair_order;               // (U·k) pair ids sorted by expert (counting sort; host)
    int64_t offset[MOE_MAX_EXPERTS + 1];
    Tensor d_logits, d_probs, d_idx;   // (U,E), (U,E), (U,k) I32: the routing on the model's device
    Tensor plan, plan_w;               // route_topk_plan's (3·U·k + U + 1) I32 and (2·U·k) float (ops_list.h)
    Tensor yall;                       // global: (U·k,H,W,d) the experts' outputs in plan order
    Tensor rows[MOE_MAX_EXPERTS];      // legacy: (c_e) I32 unit of each pair of expert e (model's device)
    Tensor wts[MOE_MAX_EXPERTS];       // legacy: (c_e) weight of each pair (model's device)
    Tensor ys[MOE_MAX_EXPERTS];        // (c_e,H,W,d) expert outputs; spatial: (M_e,1,1,d) kept pixels
    // spatial routing, saved by forward
    int64_t U;                         // units of the last forward
    Tensor pool_ptr, pool_list, pool_w;   // tile pooling: CSR of the pixels of each tile (U+1), (N·H·W), 1/area
    Tensor pix_tile, pix_tile_w;       // (N·H·W) I32 tile of each pixel, float 1/area (pooling's backward)
    Tensor img_pooled;                 // route_by_image: (N,d)
    Tensor tile_img, timg_ptr, timg_list;   // route_by_image: image of each tile (U), its CSR (N+1), (U)
    MoeTiles tiles[MOE_MAX_EXPERTS];
    double host_s;                     // seconds the last forward spent planning on the host (the routing read
                                       // back, spatial routing's index lists; bench reports it)
} Moe;

const char *moe_balance_name(moe_balance b);
// "mse|switch|zloss|bias"; "sqdev", the name of mse in files and commands before, is read as mse.
cx_status moe_balance_parse(const char *s, moe_balance *b);
const char *moe_routing_name(moe_routing r);
cx_status moe_routing_parse(const char *s, moe_routing *r);   // "global|spatial"
// Spatial routing's tiles along one side of a map: n = min(grid, side / MOE_MIN_TILE)
// tiles (at least 1), tile i spanning [bounds[i], bounds[i+1]) with bounds[i] = i·side/n
// (integer division: sizes differ by at most one, each at least MOE_MIN_TILE when the
// side has that many pixels). Returns n; bounds holds n+1 entries.
int moe_tiles(int64_t side, int grid, int64_t *bounds);
void moe_create(Moe *m, ParamTable *pt, const char *prefix, int d, int E, int k, moe_balance balance, double coef);
// Spatial routing on a grid of at most grid×grid tiles (grid 1..MOE_MAX_GRID); after moe_create.
void moe_set_spatial(Moe *m, int grid);
void moe_init(Moe *m, ParamTable *pt, Rng *rng);

// Routing alone: fills m->route from x (N,H,W,d) (U = N, or N·T tiles).
void moe_route_forward(NNCtx *ctx, Moe *m, const Tensor *x);
// The routing of n layers m[0..n) on their inputs x[0..n), read on the host in one download.
void moe_route_forward_n(NNCtx *ctx, Moe *m, const Tensor *x, int n);
// Grouped execution of the routed pairs: y (N,H,W,d) = Σ_j w_j · Expert_idx_j(x_u) (over each tile,
// spatial); after moe_route_forward(_n).
Tensor moe_dispatch_forward(NNCtx *ctx, Moe *m, const Tensor *x);

// The former dispatch (CAMOXPERT_MOE_PLAN=old; read once): 1 legacy, 0 new.
int moe_plan_legacy(void);
void moe_plan_set_legacy(int legacy);   // tests: both in one process

// Route + dispatch, and their backward.
Tensor moe_forward(NNCtx *ctx, Moe *m, const Tensor *x);
void moe_backward(NNCtx *ctx, Moe *m, const Tensor *dy, double dbalance, Tensor *dx);

// MOE_BALANCE_BIAS: after an optimizer step, sel_bias[e] += rate · sign(mean load − load_e),
// with loads from the last forward. No-op for the other schemes.
void moe_balance_update(Moe *m, double rate);
