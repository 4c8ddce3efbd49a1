// infer.h — what training's validation, `camoxpert predict` and `camoxpert bench`
// share: the model config stored in a checkpoint (JSON in the safetensors
// metadata, key `camoxpert_config`), a photo turned into the network's input,
// and logits turned into a probability map at the photo's own resolution
// (bilinear resize of the logits, align_corners=False, then sigmoid — the
// community's export, which metrics_export_u8 finishes with min–max and 8 bits).
//
//   CamoXpertConfig mc; int size;
//   CX_TRY(infer_config_from_checkpoint("runs/a/best.safetensors", &mc, &size));
//   infer_prob_at(logits_plane, 352, 352, gt_h, gt_w, prob);   // prob (gt_h, gt_w)
#pragma once
#include "data/image.h"
#include "nn/camoxpert.h"

// The config as JSON (malloc'd): {"model", "backbone", "sparse", "num_experts",
// "top_k", "balance", "lb_coef", "img_size"}.
char *infer_config_json(const CamoXpertConfig *c, int img_size);
// Parses infer_config_json's output. *img_size gets 0 when absent.
cx_status infer_config_parse(const char *json, CamoXpertConfig *c, int *img_size);
// The model config of a weights file: our `camoxpert_config` JSON, or the
// `model`/`backbone`/`num_experts`/`top_k` keys camoxpert_save writes. A file
// without either (a reference PyTorch checkpoint) is CX_ENOTFOUND with a hint.
cx_status infer_config_from_checkpoint(const char *weights_path, CamoXpertConfig *c, int *img_size);

// A RuntimeForward (nn/runtime.h) of a CamoXpert model (arg): the prediction logits
// of camoxpert_forward. For CUDA graphs of inference.
Tensor infer_forward_pred(void *model, NNCtx *ctx, const Tensor *x);

// The network input for one photo: bilinear resize to S×S (8-bit, as the loader
// does) and ImageNet normalisation. dst (S, S, 3) f32; im is RGB.
void infer_image_input(const Image8 *im, int S, float *dst);
// prob (H, W) = sigmoid(bilinear resize of logits (h, w) to H×W).
void infer_prob_at(const float *logits, int h, int w, int H, int W, float *prob);
