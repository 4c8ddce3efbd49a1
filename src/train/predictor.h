// predictor.h — a checkpoint loaded for inference on the CPU, one photo at a time:
// the model config from the checkpoint's metadata, the weights, the arenas, and
// infer.h's input and output conventions (so a probability map here is what
// `camoxpert predict` writes and training's validation scores). `camoxpert report`
// predicts its sample of photos with it.
//
//   Predictor p;
//   CX_TRY(predictor_open(&p, "runs/a/best.safetensors", 0));   // 0: the checkpoint's input size
//   float *prob = cx_malloc(sizeof(float) * im.w * im.h);
//   CamoXpertOutputs o;
//   predictor_run(&p, &im, prob, &o);        // prob (im.h, im.w); o.route[s] for sparse models
//   predictor_close(&p);
#pragma once
#include "nn/runtime.h"
#include "train/infer.h"

typedef struct {
    CamoXpertConfig mc;
    int S;                 // network input side
    ParamTable pt;
    CamoXpert *m;
    Runtime rt;            // the CPU in float32, evaluation mode
    float *x;              // (S, S, 3) the network input
} Predictor;

// Loads weights (a checkpoint with our model config in its metadata). img_size 0:
// the size the checkpoint was trained at, else 352. Errors name the file and the fix.
cx_status predictor_open(Predictor *p, const char *weights, int img_size);
// prob (rgb->h, rgb->w) = sigmoid of the logits resized to the photo. o (may be NULL)
// gets the model's outputs (routing per scale), valid until the next call.
void predictor_run(Predictor *p, const Image8 *rgb, float *prob, CamoXpertOutputs *o);
void predictor_close(Predictor *p);
