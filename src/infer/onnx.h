// onnx.h — a CamoXpert model as an ONNX file (`camoxpert export`), for ONNX
// Runtime, TensorRT, OpenVINO and the browser: the standard operator set 17
// (LayerNormalization is native), batch, height and width dynamic (multiples of
// 32), the weights inside the file, the model's configuration in its
// metadata_props. The graph computes what camoxpert_forward computes in
// evaluation mode (BatchNorm with its running statistics), op for op; the parity
// test (tests/test_onnx.c) runs it with ONNX Runtime against camoxpert's logits.
// Written with our own protobuf writer (onnx_pb.h): no Python, no libprotobuf.
//
// Input `image`: float32 (batch, 3, height, width), RGB, ImageNet-normalised
// ((pixel/255 − mean)/std, mean 0.485 0.456 0.406, std 0.229 0.224 0.225) — NCHW,
// as PyTorch feeds the reference. Outputs: see ONNX_OUT_*; every map is float32
// (batch, 1, h, w). With `half`, weights and arithmetic are float16 (inputs and
// outputs stay float32; the router, the XCA normalisation, the positional
// encoding and the uncertainty normalisation run in float32).
//
// Sparse models: per scale, the router's top-k (TopK), then per expert the images
// routed to it (NonZero), gathered (Gather), run through that expert once, weighted
// and added back (Gather, Add, ScatterND) — as camoxpert groups images by
// expert: each image runs k of the E experts, never all of them. Global routing only.
//
//   OnnxExportOpts o = { .half = 0, .outputs = ONNX_OUT_LOGITS };
//   CX_TRY(onnx_export(model, &pt, &o, "camoxpert.onnx"));
#pragma once
#include "nn/camoxpert.h"

enum {
    ONNX_OUT_LOGITS = 1,   // logits: the final prediction clamp(pred_2, ±15), (batch, 1, height, width)
    ONNX_OUT_MAPS = 2,     // fg_map, search_map (probabilities) and uncertainty, at the input size
    ONNX_OUT_REFINE = 4,   // initial_pred (clamped), refine_1 and refine_2 (pred_1, pred_2 unclamped)
    ONNX_OUT_DEEP = 8,     // deep_0, deep_1, deep_2: the deep-supervision logits at strides 16, 8, 4
    ONNX_OUT_ROUTE = 16,   // sparse models: route_experts_s<S> (batch, k) int64 (chosen experts, descending
                           // probability), route_weights_s<S> (batch, k) and route_probs_s<S> (batch, E), S = 0..3
    ONNX_OUT_ALL = 0x3f,   // every group the model has (route only for sparse models)
};

// Tests only: export one op wrongly, to show that parity catches it.
typedef enum {
    ONNX_FAULT_NONE = 0,
    ONNX_FAULT_GELU_TANH,          // GELU's tanh approximation instead of the erf form
    ONNX_FAULT_RESIZE_ASYMMETRIC,  // bilinear resizes with asymmetric coordinates instead of half-pixel
} onnx_fault;

typedef struct {
    int half;                  // 1: float16 weights and arithmetic (see the header comment)
    unsigned outputs;          // ONNX_OUT_* bits; 0 means ONNX_OUT_LOGITS
    const char *const *meta;   // NULL or key, value, ..., NULL: metadata_props beside the model configuration
    onnx_fault fault;
} OnnxExportOpts;

// "logits,maps,refine,deep,route" (any of them, comma-separated) or "all" -> ONNX_OUT_* bits.
// Errors name the unknown word and the valid ones.
cx_status onnx_outputs_parse(const char *list, unsigned *bits);
// Writes the model (parameters read from pt's host values) to path, atomically.
// A model without a backbone or with spatial routing is CX_EARG, saying why.
cx_status onnx_export(const CamoXpert *m, const ParamTable *pt, const OnnxExportOpts *o, const char *path);
