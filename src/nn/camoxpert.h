// camoxpert.h — the whole CamoXpert model (reference/camoxpert.md): an EdgeNeXt
// backbone, per-scale experts (dense: texture → frequency → edge → contrast;
// sparse: a top-k routed MoE layer), and the COD head. Any EdgeNeXt variant:
// the expert and decoder widths come from the backbone.
//
// Parameters are registered in the reference's PyTorch state_dict order and
// names (backbone.*, texture_experts.* / moe_layers.*, search_module.*, ...),
// so the table is the checkpoint format; router parameters are group PG_ROUTER,
// the backbone PG_BACKBONE, everything else PG_REST.
//
//   CamoXpertConfig cfg;
//   CX_TRY(camoxpert_config(&cfg, "edgenext_base", 1 /*sparse*/, 6, 2));
//   ParamTable pt; params_init(&pt);
//   CamoXpert *m = camoxpert_create(&cfg, &pt);
//   params_alloc(&pt, DT_F32);
//   camoxpert_init(m, &pt, &rng);                     // or weights_load(&pt, path) (nn/weights.h)
//   CamoXpertOutputs out;
//   camoxpert_forward(&ctx, m, &image, &out);         // image (N,H,W,3), H, W multiples of 32
//   camo_loss_forward_backward(ctx.act, &w, &out.maps, &mask, out.balance_loss, &L, &grad);   // train/loss.h
//   camoxpert_backward(&ctx, m, &grad, 1.0, NULL);    // parameter gradients +=
#pragma once
#include "nn/cod_head.h"
#include "nn/edgenext.h"
#include "nn/moe.h"

typedef struct {
    char backbone[32];     // EdgeNeXt variant, e.g. "edgenext_base"; "" = no backbone (features given)
    int dims[4];           // feature widths d_0..d_3 (from the backbone)
    int sparse;            // 0: CamoXpertCOD (dense), 1: CamoXpertSparseMoE
    int num_experts, top_k;
    moe_balance balance;   // default MOE_BALANCE_MSE
    double lb_coef;        // default 0.01
    moe_routing routing;   // default MOE_ROUTING_GLOBAL (sparse); spatial: docs/ROUTING.md
    int route_grid;        // spatial: at most route_grid × route_grid tiles per scale (default 4)
} CamoXpertConfig;

typedef struct {
    CodOutputs maps;       // pred, fg_map, search_map, uncertainty, initial_pred, refine[2], deep[3]
    Tensor feats[4];       // backbone features f_s (N,h_s,w_s,d_s)
    Tensor enhanced[4];    // expert outputs e_s
    int n_route;           // 4 (sparse) or 0
    MoeRoute route[4];     // per scale: logits, probs, topk idx, weights, lb_loss, counts
    double balance_loss;   // Σ over scales of route[s].lb_loss
} CamoXpertOutputs;

typedef struct {
    CamoXpertConfig cfg;
    EdgeNeXt *backbone;    // NULL when cfg.backbone is ""
    Expert dense[4][4];    // [kind][scale], dense mode
    Moe *moe;              // [4], sparse mode
    CodHead head;
    int p_experts, p_head; // the first table entries of the experts (or MoE layers) and of the head
    int64_t H, W;          // input size of the last forward
} CamoXpert;

// Dense or sparse model over a backbone variant ("" with dims set by hand: no
// backbone). Balancing defaults to the reference's squared deviation, 0.01;
// routing to global (camoxpert_config_routing sets spatial and its grid).
cx_status camoxpert_config_routing(CamoXpertConfig *cfg, const char *routing, int route_grid);
cx_status camoxpert_config(CamoXpertConfig *cfg, const char *backbone, int sparse, int num_experts, int top_k);
CamoXpert *camoxpert_create(const CamoXpertConfig *cfg, ParamTable *pt);
void camoxpert_free(CamoXpert *m);
// PyTorch default initialisation of the CamoXpert modules (conv/linear weights
// kaiming_uniform(a=√5), biases U(±1/√fan_in), BN 1/0) and timm's for the backbone.
void camoxpert_init(CamoXpert *m, ParamTable *pt, Rng *rng);

// image (N,H,W,3) -> out (tensors in ctx->act).
void camoxpert_forward(NNCtx *ctx, CamoXpert *m, const Tensor *image, CamoXpertOutputs *out);
// The model after the backbone, on given features f_s (N, H/2^(s+2), W/2^(s+2), d_s).
void camoxpert_forward_features(NNCtx *ctx, CamoXpert *m, const Tensor feats[4], int64_t H, int64_t W,
                                CamoXpertOutputs *out);
// dout: gradients of the output maps (data NULL = none); dbalance: weight of the
// balancing loss in the total (1 in the reference). Parameter gradients +=,
// dimage += when non-NULL.
void camoxpert_backward(NNCtx *ctx, CamoXpert *m, const CodOutputs *dout, double dbalance, Tensor *dimage);
// Backward of camoxpert_forward_features: dfeats[s] += (allocate zeroed).
void camoxpert_backward_features(NNCtx *ctx, CamoXpert *m, const CodOutputs *dout, double dbalance, Tensor dfeats[4]);

// Strict load of a reference state_dict (or our own file): keys are
// file_prefix + PyTorch key for parameters, buffer_prefix + key for BatchNorm
// buffers (NULL: same as file_prefix). Backbone keys may use hub spelling
// (backbone.stem.0...) or feature-extractor spelling (backbone.stem_0...).
// Files on disk: nn/weights.h (weights_load, weights_save).
cx_status camoxpert_load(ParamTable *pt, const StFile *f, const char *file_prefix, const char *buffer_prefix);
// The table's name of a state_dict key: backbone keys in the feature extractor's
// spelling ("backbone.stem.0.weight" -> "backbone.stem_0.weight"), the rest unchanged.
void camoxpert_table_key(const char *key, char *out, size_t n);
// MOE_BALANCE_BIAS: nudge every layer's selection bias after an optimizer step.
void camoxpert_balance_update(CamoXpert *m, double rate);
