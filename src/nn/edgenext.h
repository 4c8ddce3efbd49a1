// edgenext.h — the EdgeNeXt backbone (timm `edgenext_*`, features_only=True):
// an image (N,H,W,3) becomes four NHWC feature maps at strides 4, 8, 16, 32.
// All five timm variants; forward and backward of every block (stem, LayerNorm
// + 2×2 downsample, conv encoder block, SDTA block with Res2Net split, Fourier
// positional encoding and cross-covariance attention); gradients reach the
// input. reference: timm/models/edgenext.py; spec: ../shared/reference/edgenext.md.
//
// Parameters are registered in a ParamTable under feature-extractor names
// (`stem_0.weight`, `stages_2.blocks.5.xca.qkv.weight`, ...) after a prefix, in
// PyTorch's state_dict order, group PG_BACKBONE. The module holds indices only,
// so one EdgeNeXt runs in float32 (fast kernels) or float64 (reference kernels)
// depending on which table ctx->pt points at.
//
//   EdgeNeXtConfig cfg; CX_TRY(edgenext_config("edgenext_base", &cfg));
//   ParamTable pt; params_init(&pt);
//   EdgeNeXt *m = edgenext_create(&cfg, &pt, "backbone.");
//   params_alloc(&pt, DT_F32);
//   CX_TRY(edgenext_load(&pt, &file, "", "backbone."));   // hub or stem_0 names
//   Tensor feats[4];
//   edgenext_forward(&ctx, m, feats, &image);               // feats in ctx->act
//   edgenext_backward(&ctx, m, dfeats, &dimage);            // += into grads
//   edgenext_free(m);
#pragma once
#include "nn/nn.h"

typedef struct {
    char name[32];       // "edgenext_xx_small", ...
    int depths[4];       // blocks per stage; the last block of stages 1-3 is SDTA
    int dims[4];         // channels per stage (C0..C3)
    int heads[4];        // XCA heads per stage (stage 0 has no SDTA block)
    int kernel[4];       // conv-block depthwise kernel per stage (3,5,7,9)
    int d2_scales[4];    // Res2Net split count of each stage's SDTA block
    int conv_bias;       // 1: stem, downsample, depthwise and split convs have biases
    int stem_overlap;    // 1: 9×9 stride-4 pad-4 stem (small_rw); 0: 4×4 patch stem
    int downsample_block;// 1: no downsample modules; block 0 of stages 1-3 is a stride-2
                         //    depthwise conv with channel multiplier 2 (small_rw)
} EdgeNeXtConfig;

// Fills cfg for one of the five timm variant names; the error lists them.
cx_status edgenext_config(const char *variant, EdgeNeXtConfig *cfg);

typedef struct EdgeNeXt EdgeNeXt;

// Registers the parameters (call before params_alloc) and builds the module.
// prefix: "" or e.g. "backbone.".
EdgeNeXt *edgenext_create(const EdgeNeXtConfig *cfg, ParamTable *pt, const char *prefix);
const EdgeNeXtConfig *edgenext_get_config(const EdgeNeXt *m);
// timm's initialisation: conv and linear weights truncated normal (std 0.02,
// cut at ±2 std), biases 0, LayerNorms 1/0, layer scales 1e-6, temperatures 1.
void edgenext_init_weights(const EdgeNeXt *m, ParamTable *pt, Rng *rng);
// Feature map sizes for an H×W input (timm's floor rule); returns 0 when the
// stride-32 map would be empty (the input is too small).
int edgenext_feature_sizes(const EdgeNeXt *m, int H, int W, int fh[4], int fw[4]);

// x (N,H,W,3) -> feats[i] (N, H_i, W_i, dims[i]), allocated from ctx->act.
// Keeps what backward needs in m and ctx->act (valid until ctx->act is reset).
// Runs in ctx->dtype, which must equal x->dtype; the table is F32 (F64 in a
// float64 run) whatever the activations are.
void edgenext_forward(NNCtx *ctx, EdgeNeXt *m, Tensor feats[4], const Tensor *x);
// dfeats[i] (like feats[i]) are the gradients of the loss w.r.t. the features;
// an entry whose data is NULL counts as zero (stages above the highest non-zero
// one are skipped). Parameter gradients (ctx->pt->grad) +=, dx (N,H,W,3) += when
// non-NULL. Temporaries come from ctx->act and are released before returning.
void edgenext_backward(NNCtx *ctx, EdgeNeXt *m, const Tensor dfeats[4], Tensor *dx);

// Loads the backbone from a safetensors file whose keys are `file_prefix` + either
// hub names (`stem.0.weight`, `stages.1.blocks.0.gamma`, with `head.*`, which is
// ignored) or feature-extractor names (`stem_0.weight`, ...), into the entries
// under `table_prefix`. Strict: a missing or unexpected key or a shape mismatch is
// an error naming the key and both shapes. Every table entry under table_prefix
// must be a backbone entry (use a prefix when the table holds more).
cx_status edgenext_load(ParamTable *pt, const StFile *f, const char *file_prefix, const char *table_prefix);
// Maps a hub key (`stages.2.blocks.0.gamma`) to its feature-extractor spelling
// (`stages_2.blocks.0.gamma`); other keys are copied unchanged.
void edgenext_key_to_feature_name(const char *key, char *out, size_t n);

void edgenext_free(EdgeNeXt *m);
