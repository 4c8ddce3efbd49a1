// cod_head.h — everything of CamoXpert after the experts (reference/camoxpert.md
// §5): search module, decoder, reverse attention, boundary uncertainty, two-step
// iterative refinement and deep supervision heads. Input: the four enhanced
// feature maps e_0..e_3 (strides 4, 8, 16, 32) and the input size H×W.
//
//   CodHead h;
//   cod_head_create(&h, pt, (int[]){24, 48, 88, 168});
//   CodOutputs out;
//   cod_head_forward(ctx, &h, e, 64, 64, &out);
//   cod_head_backward(ctx, &h, &dout, de);     // de[s] += ; parameter gradients +=
#pragma once
#include "nn/layers.h"

// The boundary-uncertainty map: softplus clamped to [UNC_LO, UNC_HI], then divided by its
// maximum + UNC_NORM_EPS (the reference's constants; the ONNX export writes the same graph).
// The logits' clamp, LOGIT_CLAMP, is ops_types.h's (the loss clamps with it too).
#define UNC_LO 1e-8
#define UNC_HI 10.0
#define UNC_NORM_EPS 1e-8

// The model's outputs; every map is (N,h,w,1). The same struct carries their
// gradients for backward (a tensor with data == NULL has no gradient).
typedef struct {
    Tensor pred;          // (N,H,W,1) final logits, clamp(pred_2, ±15); statistics dtype (F32 beside bf16)
    Tensor fg_map;        // (N,H,W,1) 1 − background probability, resized
    Tensor search_map;    // (N,H,W,1) search probability, resized
    Tensor uncertainty;   // (N,H,W,1) softplus, clamped to [1e-8, 10]; statistics dtype (F32 beside bf16)
    Tensor initial_pred;  // (N,H,W,1) boundary mean head, clamped to ±15 (= pred_0)
    Tensor refine[2];     // (N,H,W,1) pred_1, pred_2 (unclamped); statistics dtype (F32 beside bf16)
    Tensor deep[3];       // (N,H/16,W/16,1), (N,H/8,W/8,1), (N,H/4,W/4,1), clamped to ±15
} CodOutputs;

typedef struct {
    int dims[4];                 // d_0..d_3
    Seq search_conv;             // (N,h3,w3,d3) -> (N,h3,w3,1) sigmoid
    Seq identify_conv;           // (N,h3,w3,d3) -> (N,h3,w3,d3)
    Seq dec_conv1[4], dec_conv2[4];
    Seq ra_bg, ra_refine;        // reverse_attention.background_pred / .refine
    Seq bu_shared, bu_mean, bu_unc;
    Seq ir_block[2], ir_head[2];
    Seq deep[3];
    // saved by forward
    Tensor sm_small, id, x4;     // (N,h3,w3,1), (N,h3,w3,d3), (N,h3,w3,d3)
    Tensor dec_in[4];            // decoder inputs before upsampling
    Tensor dec_out[4];           // x3, x2, x1, x0
    Tensor bg, fg, ra_r, x0r;    // (N,H/2,W/2,1|1|64|64)
    Tensor x0u;                  // (N,H,W,64)
    Tensor ip_raw;               // (N,H,W,1) before the clamp
    Tensor u_conv;               // (N,H,W,1) the uncertainty head's conv output (softplus input)
    // The uncertainty path is in the statistics dtype (F32 beside bf16 activations):
    Tensor u_raw;                // (N,H,W,1) softplus(u_conv), before the clamp
    Tensor u;                    // (N,H,W,1) uncertainty / (max + 1e-8)
    Tensor onepu;                // (N,H,W,1) 1 + u
    Tensor u_act;                // (N,H,W,1) u in the activation dtype (the refinement blocks' input), or u itself
    Tensor u_max;                // (1) the batch maximum of the uncertainty (statistics dtype)
    int max_synced;              // 1: u_max is the global batch's (NNCtx.sync_sum)
    Tensor ir_b[2];              // refinement block outputs (N,H,W,64)
    Tensor deep_raw[3];
    Tensor e[4];                 // the enhanced features the forward was given (a replay's inputs)
    CodOutputs out;
    // Units (nn/recompute.h): the decoder blocks, reverse attention (to x0r and fg), the
    // boundary-uncertainty heads and the refinement iterations.
    NNUnit u_dec[4], u_ra, u_bu, u_ir[2];
} CodHead;

void cod_head_create(CodHead *h, ParamTable *pt, const int dims[4]);
void cod_head_init(const CodHead *h, ParamTable *pt, Rng *rng);
// e[s] (N, H/2^(s+2), W/2^(s+2), d_s). Fills *out (tensors in ctx->act).
void cod_head_forward(NNCtx *ctx, CodHead *h, const Tensor e[4], int64_t H, int64_t W, CodOutputs *out);
// dout: gradients of the outputs (absent ones with data NULL). de[s] += .
void cod_head_backward(NNCtx *ctx, CodHead *h, const CodOutputs *dout, Tensor de[4]);
