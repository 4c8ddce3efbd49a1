// loss.c — the reference CamoXpert training loss (loss.h) over the op cod_loss:
// the masks for deep supervision are resized here (F.interpolate bilinear, as
// the reference does), the terms are weighted and summed on the host.
#include "train/loss.h"
#include <math.h>
#include <string.h>

CamoLossWeights camo_loss_default_weights(void) {
    return (CamoLossWeights){ .bce = 2.0, .iou = 1.5, .edge = 1.0, .boundary = 1.5, .uncertainty = 0.3,
                              .reverse_attention = 0.8, .search = 0.5, .deep = 0.4, .refinement = 0.3,
                              .balance = 1.0 };
}

void camo_loss_terms(NNCtx *ctx, const CamoLossWeights *w, const CodOutputs *out, const Tensor *mask, Tensor *terms,
                     CodOutputs *grad) {
    OpCtx *op = &ctx->op;
    CX_ASSERT(tensor_numel(&out->pred) == tensor_numel(mask), "loss: pred has %lld elements, mask %lld",
              (long long)tensor_numel(&out->pred), (long long)tensor_numel(mask));
    CodLossIn in = { .pred = &out->pred, .fg = &out->fg_map, .search = &out->search_map, .unc = &out->uncertainty,
                     .refine0 = &out->refine[0], .mask = mask };
    const double wt[CL_TERMS] = { w->bce, w->iou, w->edge, w->boundary, w->uncertainty, w->reverse_attention, w->search,
                                  w->deep, w->refinement };
    memcpy(in.w, wt, sizeof wt);
    Tensor dmask[3];
    for (int j = 0; j < 3; j++) {
        in.deep[j] = &out->deep[j];
        dmask[j] = nn_new(ctx, mask->dtype, 4, (int64_t[]){ T_N(mask), T_H(&out->deep[j]), T_W(&out->deep[j]), 1 });
        resize_bilinear_forward(op, &dmask[j], mask, 0, 0);
        in.deep_mask[j] = &dmask[j];
    }
    CodLossGrad g = { 0 };
    if (grad) {
        memset(grad, 0, sizeof *grad);
        grad->pred = nn_zeros_like(ctx, &out->pred);
        grad->fg_map = nn_zeros_like(ctx, &out->fg_map);
        grad->search_map = nn_zeros_like(ctx, &out->search_map);
        grad->uncertainty = nn_zeros_like(ctx, &out->uncertainty);
        grad->refine[0] = nn_zeros_like(ctx, &out->refine[0]);
        for (int j = 0; j < 3; j++) grad->deep[j] = nn_zeros_like(ctx, &out->deep[j]);
        g = (CodLossGrad){ &grad->pred, &grad->fg_map, &grad->search_map, &grad->uncertainty, &grad->refine[0],
                           { &grad->deep[0], &grad->deep[1], &grad->deep[2] } };
    }
    cod_loss(op, terms, grad ? &g : NULL, &in);
}

void camo_loss_from_terms(const CamoLossWeights *w, const double *t, double balance, CamoLoss *L) {
    memset(L, 0, sizeof *L);
    L->bce = t[CL_BCE], L->iou = t[CL_IOU], L->edge = t[CL_EDGE], L->boundary = t[CL_BOUNDARY];
    L->uncertainty = t[CL_UNCERT], L->reverse_attention = t[CL_RA], L->search = t[CL_SEARCH], L->deep = t[CL_DEEP];
    L->refinement = t[CL_REFINE], L->balance = balance;
    L->total = w->bce * L->bce + w->iou * L->iou + w->edge * L->edge + w->boundary * L->boundary +
               w->uncertainty * L->uncertainty + w->reverse_attention * L->reverse_attention +
               w->search * L->search + w->deep * L->deep + L->refinement + w->balance * L->balance;
}

void camo_loss_forward_backward(NNCtx *ctx, const CamoLossWeights *w, const CodOutputs *out, const Tensor *mask,
                                double balance, CamoLoss *L, CodOutputs *grad) {
    Tensor terms = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ CL_TERMS });
    camo_loss_terms(ctx, w, out, mask, &terms, grad);
    Tensor th = nn_to_host(ctx, &terms);
    double t[CL_TERMS];
    for (int i = 0; i < CL_TERMS; i++) t[i] = tensor_get(&th, i);
    camo_loss_from_terms(w, t, balance, L);
}
