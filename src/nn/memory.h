// memory.h — what a CamoXpert model asks of its input and of the machine: the one
// input-size rule every command checks (train, predict, bench, checkpoint
// metadata), and an estimate of the peak memory of a training step or an
// inference before any of it runs, so a job that cannot fit is refused with a
// size that fits instead of growing until the machine kills it.
//
// The estimate counts what the model code holds: parameters, gradients, AdamW moments
// and the EMA (float32), and the per-step arenas — activations saved for backward plus
// the backward's temporaries, and the kernels' scratch. Activations are linear in
// batch × S² with a per-pixel cost that follows the model's widths and depths (the
// backbone stages, the experts each image runs, the stride-4 decoder width); one set
// of coefficients per mode — inference (activations given back once read), and a
// training step at each recomputation level (nn/recompute.h) — fitted to the arenas'
// measured peaks (every backbone, dense and sparse, k = 1..6: build/camoxpert_bench memfit
// measures, tools/memfit.py fits; tests/test_hostile.c checks the estimate against
// measurement) to lie within 0..10 % above them. act_bytes is the size of one stored
// activation element: 4 for float32 on the CPU, 2 for bf16 on a GPU.
// Inference (training 0) has no gradients, optimizer state or recomputation.
//
//   CX_TRY(camoxpert_check_img_size(S, "--img-size"));
//   MemEstimate m;
//   camoxpert_memory_estimate(&cfg, pt.numel, 16, 352, 1, NN_RECOMPUTE_NONE, 0, 4, &m);   // a training step
//   printf("%.1f GiB\n", m.total / (1 << 30));
#pragma once
#include "nn/camoxpert.h"

#define CAMOXPERT_MIN_IMG 32
#define CAMOXPERT_MAX_IMG 8192

// S must be a multiple of 32 (the backbone's stride) in [32, 8192]. The error
// names `what` (an option, or a file's metadata key), the value and the nearest
// valid sizes.
cx_status camoxpert_check_img_size(int64_t S, const char *what);

typedef struct {
    double params, grads, optimizer, ema;   // bytes: values, gradients, AdamW m and v, EMA shadow
    double activations, scratch;            // bytes: the activation and scratch arenas' peaks
    double total;                           // the sum
} MemEstimate;

// Peak memory of one training step (training = 1) at recomputation level `recompute`,
// or of inference (0; the level is ignored), of the model on batch images of S×S.
// n_params: the parameter table's numel; ema: 1 when an EMA is kept.
void camoxpert_memory_estimate(const CamoXpertConfig *c, int64_t n_params, int batch, int S, int training,
                               nn_recompute recompute, int ema, int act_bytes, MemEstimate *m);
// The per-pixel features the activation estimate is linear in (memory.c): 1, X, Y·k (sparse),
// Y·4 (dense), d0. Exposed for the tool that fits the coefficients (build/camoxpert_bench
// memfit, tools/memfit.py).
#define MEM_FEATURES 5
void camoxpert_memory_features(const CamoXpertConfig *c, double f[MEM_FEATURES]);
// The largest batch (up to max_batch) whose estimate plus `other` bytes fits budget; 0 when batch 1 does not.
int camoxpert_memory_fit_batch(const CamoXpertConfig *c, int64_t n_params, int S, int training, nn_recompute recompute,
                               int ema, int act_bytes, double other, double budget, int max_batch);
// The largest input size (a multiple of 32, up to max_S) that fits budget at `batch`; 0 when 32 does not.
int camoxpert_memory_fit_size(const CamoXpertConfig *c, int64_t n_params, int batch, int training, nn_recompute recompute,
                              int ema, int act_bytes, double other, double budget, int max_S);
// "1.3 GiB", "412 MiB": bytes for messages, into buf.
const char *memory_str(double bytes, char *buf, size_t n);
