// predictor.h — one photo at a time on the CPU: a checkpoint opened for inference
// (infer/open.h: the model config and input size from its metadata) and infer.h's
// steps, so a mask here is the one `camoxpert predict` writes for the photo.
// `camoxpert report` predicts its sample of photos with it.
//
//   Predictor p;
//   CX_TRY(predictor_open(&p, "runs/a/best.safetensors", 0));   // 0: the checkpoint's input size
//   Image8 mask;
//   CamoXpertOutputs o;
//   predictor_run(&p, &photo, &mask, &o);   // mask (photo.h, photo.w); o.route[s] for sparse models
//   image_free(&mask);
//   predictor_close(&p);
#pragma once
#include "infer/infer.h"

typedef struct {
    Model model;           // the CPU in float32, evaluation mode
    float *x;              // (S, S, 3) the network input, S = model.img_size
} Predictor;

// Opens weights (a checkpoint with our model config in its metadata). img_size 0:
// the size the checkpoint was trained at, else 352. Errors name the file and the fix.
cx_status predictor_open(Predictor *p, const char *weights, int img_size);
// *mask (allocated here: rgb's size, one channel) = the 8-bit mask of the photo. o (may
// be NULL) gets the model's outputs (routing per scale), valid until the next call.
void predictor_run(Predictor *p, const Image8 *rgb, Image8 *mask, CamoXpertOutputs *o);
void predictor_close(Predictor *p);
