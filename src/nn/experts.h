// experts.h — the four CamoXpert experts (reference/camoxpert.md §2), each a
// map d -> d channels at the same spatial size, for any width d:
//   texture    4 branches 1×1 conv -> 3×3 conv (dilation 1,2,4,8) -> BN -> ReLU
//   frequency  ConvBNReLU 3×3 / 5×5 / 7×7 and a 1×1 ConvBNReLU
//   edge       ConvBNReLU 3×3 ×3 and a 1×1 ConvBNReLU
//   contrast   ConvBNReLU 3×3 / 5×5 / 7×7, then channel amplification
// Branch outputs are concatenated and fused (1×1 ConvBNReLU); out = fused + x,
// except contrast: c = fused, out = x + c · amplify(c).
//
//   Expert e;
//   expert_create(&e, pt, "texture_experts.0", EXPERT_TEXTURE, 80, PG_REST);
//   Tensor y = expert_forward(ctx, &e, &x);   // x, y (N,H,W,80)
//   expert_backward(ctx, &e, &dy, &dx);       // dx += ; parameter gradients +=
#pragma once
#include "nn/layers.h"

typedef enum { EXPERT_TEXTURE = 0, EXPERT_FREQUENCY, EXPERT_EDGE, EXPERT_CONTRAST, EXPERT_KINDS } expert_kind;

typedef struct {
    expert_kind kind;
    int d;             // channels in and out
    int nb;            // branches (4, or 3 for contrast)
    Seq branch[4];     // (N,H,W,d) -> (N,H,W,c_i)
    Seq fusion;        // (N,H,W,d) -> (N,H,W,d)
    Seq amplify;       // contrast only: (N,H,W,d) -> (N,1,1,d) channel weights
    // saved by forward
    Tensor cat;        // (N,H,W,d) concatenated branches
    Tensor c;          // (N,H,W,d) fused features
    Tensor w;          // (N,1,1,d) contrast weights
} Expert;

const char *expert_kind_name(expert_kind k);   // "texture", ...
void expert_create(Expert *e, ParamTable *pt, const char *prefix, expert_kind kind, int d, param_group g);
void expert_init(const Expert *e, ParamTable *pt, Rng *rng);
// y (N,H,W,d) in ctx->act.
Tensor expert_forward(NNCtx *ctx, Expert *e, const Tensor *x);
// dx += ∂L/∂x (dx may be NULL); parameter gradients +=.
void expert_backward(NNCtx *ctx, Expert *e, const Tensor *dy, Tensor *dx);
