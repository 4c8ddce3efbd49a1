// nn.h — what every module's forward and backward receive.
// Modules follow llm.c: `X_forward(NNCtx*, X*, outputs..., inputs...)` writes its
// outputs and keeps what backward needs (in ctx->act, reset every step);
// `X_backward(NNCtx*, X*, d_outputs..., d_inputs...)` adds (+=) into parameter
// and input gradients, as every op does (ops/ops.h).
#pragma once
#include "ops/ops.h"
#include "nn/params.h"

// The BatchNorm whose batch statistics came from the fewest values per channel:
// values = N·H·W (over the ranks under sync_sum), param its weight's table entry,
// n, h, w its input's images and map size. Statistics over a few values are
// degenerate (two: x̂ = ±1 whatever they are) and blow the gradients up; the
// training step warns (train/step.c). values 0: none since it was cleared.
typedef struct { int64_t values; int param, n, h, w; } BnFewest;

// What a training forward keeps for its backward (nn/recompute.h; train --recompute):
// NONE every activation; CHEAP inside each unit (a backbone block, an expert, a head
// stage) only the convolution and GEMM outputs, the element-wise, norm and activation
// outputs recomputed in the backward; BLOCKS only each unit's input and output, the
// whole unit re-run in the backward.
typedef enum { NN_RECOMPUTE_NONE = 0, NN_RECOMPUTE_CHEAP, NN_RECOMPUTE_BLOCKS } nn_recompute;
struct NNUnit;

// Modules hold parameter *indices* (params.h), not pointers, and read values and
// gradients through ctx->pt. The same module tree therefore runs in float32 or
// float64, on the CPU or a GPU, just by pointing ctx->pt at a table of that
// dtype and device with the same layout (nn/runtime.h sets all of this up).
typedef struct NNCtx {
    ParamTable *pt;  // values and gradients of the model being run
    OpCtx op;        // kernels' context: backend, scratch arena
    OpCtx host_op;   // CPU kernels for host tensors inside a step (the MoE routing island)
    Arena *act;      // activations saved for backward; reset by the caller every step (GPU memory on a GPU)
    Arena *host;     // host tensors made inside a step (routing decisions); reset with act
    cx_dtype dtype;  // activation dtype: F32 (CPU), F64 (reference kernels), F32 or BF16 (GPU)
    int training;    // 1: BatchNorm uses batch statistics and updates running ones
    int inference;   // 1: no backward follows the forward: each activation is given back to act once
                     // its last reader is done (nn/recompute.h); the inference paths set it (infer/)
    nn_recompute recompute;   // training: what each unit keeps for the backward (above)
    struct NNUnit *unit;      // the unit whose forward is recording (CHEAP) or being replayed, or NULL
    struct NNUnit *pending;   // the last unit ended in training: its internals go when the next one begins
    int replay;               // 1 while a unit's forward is re-run in the backward: BatchNorm leaves its
                              // running statistics and counter alone, FLOPs are not counted again
    // Synchronised BatchNorm (data parallel, train --sync-bn): non-NULL sums v[0..n) over
    // the ranks in place, on the host, the same bits on every rank. In training mode
    // every BatchNorm then normalises by the statistics of the global batch and its
    // input gradient uses the global sums, as torch.nn.SyncBatchNorm; the uncertainty
    // map's batch maximum (cod_head.c) is the global batch's too. A failed exchange
    // (a rank gone) sets sync_failed; the layers then use local statistics and the
    // step's own all-reduce reports the fault.
    cx_status (*sync_sum)(void *arg, double *v, int n);
    void *sync_arg;
    int sync_rank, sync_world;   // this rank and the number of ranks (with sync_sum)
    int sync_failed;
    // Gradient buckets (data parallel, train/step.c): non-NULL, a backward calls it as
    // soon as the gradients of every table entry from index `first` on are final — no
    // later op of this backward adds to them — with `first` decreasing from call to
    // call (the table is in forward order: backbone stem to stages 3, experts, head;
    // the backward finishes them from the end). The last call of a whole backward has
    // first = 0.
    void (*grad_ready)(void *arg, int first);
    void *grad_ready_arg;
    BnFewest bn_fewest;   // training-mode BatchNorm's fewest values per channel (above)
} NNCtx;

static inline void nn_grad_ready(NNCtx *ctx, int first) {
    if (ctx->grad_ready) ctx->grad_ready(ctx->grad_ready_arg, first);
}

// Statistics, routing and losses stay in float32 under bf16 activations (F64 in a float64 run).
static inline cx_dtype nn_stat_dtype(const NNCtx *ctx) { return ctx->dtype == DT_F64 ? DT_F64 : DT_F32; }
