// loss.h — the reference training loss of CamoXpert (reference/camoxpert.md §6),
// every term with its gradient, on the model's device (the op cod_loss: double
// precision on the CPU, float32 accumulation on a GPU):
//   L = 2.0·BCEwithLogits(pred) + 1.5·IoU + 1.0·Edge + 1.5·Boundary + 0.3·Uncert
//     + 0.8·BCE(fg_map) + 0.5·BCE(search_map) + 0.4·mean_i BCEwithLogits(deep_i, resize(y))
//     + 0.3·BCEwithLogits(pred_1) + balance (the MoE layers' loss, sparse only)
// Terms are reported unweighted, except `refinement`, which includes its 0.3 as
// the reference reports it.
//
//   CamoLossWeights w = camo_loss_default_weights();
//   CamoLoss L;
//   CodOutputs grad;
//   camo_loss_forward_backward(ctx, &w, &out.maps, &mask, out.balance_loss, &L, &grad);
//   camoxpert_backward(ctx, model, &grad, 1.0 /* d total / d balance */, NULL);
#pragma once
#include "nn/cod_head.h"

typedef struct {
    double bce, iou, edge, boundary, uncertainty, reverse_attention, search, deep, refinement, balance;
} CamoLossWeights;

typedef struct {
    double total;
    double bce, iou, edge, boundary, uncertainty, reverse_attention, search, deep, refinement, balance;
} CamoLoss;

CamoLossWeights camo_loss_default_weights(void);   // 2, 1.5, 1, 1.5, 0.3, 0.8, 0.5, 0.4, 0.3, 1
// out: the model's outputs (pred, fg_map, search_map, uncertainty, refine[0], deep[0..2]);
// mask (N,H,W,1) binary, on the model's device in the statistics dtype (F32;
// F64 in a float64 run). balance: the MoE balancing loss (0 for dense).
// If grad is non-NULL it receives ∂L/∂(each output) as tensors in ctx->act (the
// outputs' dtype; pred, fg_map, search_map, uncertainty, refine[0], deep[] set,
// the others data == NULL). On a GPU the terms come down in one counted download.
void camo_loss_forward_backward(NNCtx *ctx, const CamoLossWeights *w, const CodOutputs *out, const Tensor *mask,
                                double balance, CamoLoss *L, CodOutputs *grad);
// The same without the download: the unweighted terms land in terms (CL_TERMS,
// ops.h) on the model's device, for a training step that reads them later
// together with the gradient norm.
void camo_loss_terms(NNCtx *ctx, const CamoLossWeights *w, const CodOutputs *out, const Tensor *mask, Tensor *terms,
                     CodOutputs *grad);
// L from the unweighted terms (CL_TERMS values) and the balance loss: the
// terms, and the total weighted as above.
void camo_loss_from_terms(const CamoLossWeights *w, const double *terms, double balance, CamoLoss *L);
