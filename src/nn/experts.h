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
    NNUnit unit;       // an expert's call is a unit (nn/recompute.h); its callers bracket it
    // saved by forward
    Tensor in;         // the input: x (N,H,W,d), or the windows xw (P,h,w,d) of expert_forward_tiles
    Tensor cat;        // (N,H,W,d) concatenated branches
    Tensor c;          // (N,H,W,d) fused features
    Tensor w;          // (N,1,1,d) contrast weights
    // saved by expert_forward_tiles
    Tensor xc;         // (M,1,1,d) the tiles' own pixels of x
    Tensor wpix;       // (M,1,1,d) contrast weights of each pixel's image
} Expert;

// Spatial routing (nn/moe.h) runs an expert on P halo windows of x at once and
// keeps M pixels: the windows' tiles, each pixel once. Branch convolutions run on
// the windows (a halo at least the expert's receptive-field radius makes every
// kept pixel equal to the whole map's); after a branch's last spatial conv its
// map is cropped to the kept pixels, so BatchNorm sees exactly the tiles' pixels
// (the batch statistics of the pixels routed here), as fusion and the residual do.
// Contrast's channel amplification pools, per image, over that image's pixels in
// the batch. When every tile of an image is here, it is the whole-map expert.
typedef struct {
    int64_t M;                  // kept pixels
    Tensor centre;              // (M) I32: window pixel (a row of the (P·h·w) window pixels) of each kept pixel
    Tensor uncrop_ptr, uncrop_list;   // centre's CSR over the window pixels: (P·h·w + 1), (M) I32
    int64_t n_img;              // images of the map
    Tensor img;                 // (M) I32: image of each kept pixel
    Tensor img_ptr, img_list;   // img's CSR over the images: (n_img + 1), (M) I32
    Tensor img_w;               // (M) float: 1 / (kept pixels of that image)
} ExpertTiles;

const char *expert_kind_name(expert_kind k);   // "texture", ...
void expert_create(Expert *e, ParamTable *pt, const char *prefix, expert_kind kind, int d, param_group g);
void expert_init(const Expert *e, ParamTable *pt, Rng *rng);
// y (N,H,W,d) in ctx->act.
Tensor expert_forward(NNCtx *ctx, Expert *e, const Tensor *x);
// The same into a given y (N·H·W·d elements: the MoE's slice of its experts' outputs).
void expert_forward_into(NNCtx *ctx, Expert *e, const Tensor *x, Tensor *y);
// dx += ∂L/∂x (dx may be NULL); parameter gradients +=.
void expert_backward(NNCtx *ctx, Expert *e, const Tensor *dy, Tensor *dx);
// xw (P,h,w,d) windows -> y (M,1,1,d), the kept pixels (ExpertTiles).
Tensor expert_forward_tiles(NNCtx *ctx, Expert *e, const Tensor *xw, const ExpertTiles *t);
// dy (M,1,1,d); dxw (P,h,w,d) += (may be NULL); parameter gradients +=.
void expert_backward_tiles(NNCtx *ctx, Expert *e, const ExpertTiles *t, const Tensor *dy, Tensor *dxw);
// The receptive-field radius of an expert kind in pixels (texture 8: a 3×3 conv at
// dilation 8; frequency and contrast 3: 7×7; edge 1: 3×3), its amplification's pool aside.
int expert_radius(expert_kind k);
