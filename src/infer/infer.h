// infer.h — the steps from a photo to a mask that training's validation,
// `camoxpert predict` (infer/pipeline.h) and `camoxpert report` (infer/predictor.h)
// share, so a mask is the same whichever of them made it: the photo resized to the
// network's input and normalised; the forward in evaluation mode; the logits resized
// bilinearly to the photo's own size (align_corners=False) and passed through a
// sigmoid; then the community's export (min–max, 8 bits: eval/metrics.h).
//
//   float *x = cx_malloc(sizeof(float) * S * S * 3);
//   infer_image_input(&photo, S, x);                       // x (S, S, 3)
//   CamoXpertOutputs o;
//   Tensor in = tensor_view4(x, DT_F32, 1, S, S, 3);
//   Tensor pred = infer_forward(&model, &in, &o);          // host (1, S, S, 1) logits
//   Image8 mask;
//   image_alloc(&mask, photo.w, photo.h, 1);
//   infer_mask(tensor_f32(&pred), S, &mask);               // what predict writes
#pragma once
#include "data/image.h"
#include "infer/open.h"

// The network input for one photo: bilinear resize to S×S (8-bit, as the loader
// does) and ImageNet normalisation. dst (S, S, 3) f32; im is RGB.
void infer_image_input(const Image8 *im, int S, float *dst);
// The model's forward on a host batch x (N, S, S, 3), in the mode its runtime was
// opened in: the prediction logits as a host float32 tensor (N, S, S, 1), and o (the
// routing of sparse models), both valid until the next forward on the runtime.
Tensor infer_forward(Model *m, const Tensor *x, CamoXpertOutputs *o);
// The same on a batch x (N, S, S, 3) already on the runtime's device in its dtype
// (ops_photo_input made it): the prediction logits on the device, in the runtime's
// dtype; the activation arena is not reset (the caller did, before making x).
Tensor infer_forward_device(Model *m, const Tensor *x, CamoXpertOutputs *o);
// After a forward of N images: which went non-finite anywhere in the network (a ReLU
// further on can turn a NaN into a plausible mask). what[n] gets the first module whose
// output went non-finite for image n, in the order the forward makes them
// ("backbone.stages_1 (the backbone's features at scale 1)"), or "" when image n is
// finite throughout. Returns how many images went non-finite. One small reduction and
// copy per output: cheap beside the forward.
int infer_nonfinite_images(Model *m, const CamoXpertOutputs *o, int N, char (*what)[200]);
// A RuntimeForward (nn/runtime.h) of a CamoXpert module tree (arg): the prediction
// logits of camoxpert_forward, on the device. For CUDA graphs of inference.
Tensor infer_forward_pred(void *net, NNCtx *ctx, const Tensor *x);
// prob (H, W) = sigmoid(bilinear resize of logits (h, w) to H×W).
void infer_prob_at(const float *logits, int h, int w, int H, int W, float *prob);
// mask (allocated, one channel, at the photo's size) = the 8-bit export of the
// probability map of logits (S, S) at that size.
void infer_mask(const float *logits, int S, Image8 *mask);
