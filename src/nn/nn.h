// nn.h — what every module's forward and backward receive.
// Modules follow llm.c: `X_forward(NNCtx*, X*, outputs..., inputs...)` writes its
// outputs and keeps what backward needs (in ctx->act, reset every step);
// `X_backward(NNCtx*, X*, d_outputs..., d_inputs...)` adds (+=) into parameter
// and input gradients, as every op does (ops/ops.h).
#pragma once
#include "ops/ops.h"
#include "nn/params.h"

// Modules hold parameter *indices* (params.h), not pointers, and read values and
// gradients through ctx->pt. The same module tree therefore runs in float32 or
// float64 just by pointing ctx->pt at a table of that dtype with the same layout.
typedef struct NNCtx {
    ParamTable *pt;  // values and gradients of the model being run
    OpCtx op;        // kernels' context (scratch arena, force_ref)
    Arena *act;      // activations saved for backward; reset by the caller every step
    cx_dtype dtype;  // DT_F32 (fast kernels) or DT_F64 (reference kernels) — the whole model runs in it
    int training;    // 1: BatchNorm uses batch statistics and updates running ones
} NNCtx;
