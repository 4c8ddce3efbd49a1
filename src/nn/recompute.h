// recompute.h — what a forward keeps, unit by unit: recomputation in training
// (train --recompute none|cheap|blocks) and liveness in inference.
//
// A unit is a piece of a model whose forward can be run again from what it was
// given: an EdgeNeXt block (its downsample, the stem), an expert's call, a head
// stage. The caller brackets the unit's forward with nn_unit_begin/nn_unit_end,
// naming the tensors that flow out of it; what else the unit allocated from
// ctx->act is then handled by the level:
//   inference   (ctx->inference: no backward follows) everything but the outputs is
//               given back to the arena at the end of the unit, a Seq gives back each
//               layer's output once the next layer has read it, and the modules give
//               back a unit's input after its last reader (nn_drop), so the peak is one
//               unit's working set above the maps that flow between units: it grows
//               with the batch, not with the depth;
//   NONE        everything is kept for the backward (as without units; also any
//               forward, training or evaluation mode, that is not inference);
//   CHEAP       the outputs and the unit's convolution and GEMM outputs are kept (the
//               modules compute them through nn_conv2d_forward, nn_linear_forward and
//               nn_gemm_batched, which record them); element-wise, norm and activation
//               outputs are given back;
//   BLOCKS      only the outputs are kept (the inputs are earlier units' outputs).
// Under CHEAP and BLOCKS a unit's internals are given back when the next unit begins:
// the forward's last unit (the last refinement iteration) is still whole when the
// backward starts with it, and is not run again.
// In the backward the unit's own backward code calls nn_unit_replay_begin first: when
// it returns 1 the caller re-runs the unit's forward on its saved input, then calls
// nn_unit_replay_end and runs the backward as before; nn_unit_done after it gives back
// internals the forward left in place. The re-run uses the same kernels
// on the same inputs in the same order, so its tensors are bit for bit the stored
// ones would have been: under CHEAP the convolutions and GEMMs are not run again at
// all (their recorded outputs are taken), BatchNorm recomputes the same batch
// statistics and leaves the running statistics and its counter alone (ctx->replay).
// The recomputed tensors live in ctx->act until the caller's own scope (an arena
// mark around its backward) releases them.
//
//   nn_unit_begin(ctx, &b->unit);                        // forward
//   conv_block_forward(ctx, b, &out, &x);
//   nn_unit_end(ctx, &b->unit, (Tensor *[]){ &out }, 1);
//   ...
//   ArenaMark mk = arena_mark(ctx->act);                 // backward
//   if (nn_unit_replay_begin(ctx, &b->unit)) {
//       Tensor o;
//       conv_block_forward(ctx, b, &o, &b->x);
//       nn_unit_replay_end(ctx, &b->unit);
//   }
//   ... the block's backward ...
//   nn_unit_done(ctx, &b->unit);
//   arena_release(ctx->act, mk);
#pragma once
#include "nn/nn.h"

#define NN_UNIT_TAPE 32   // convolution and GEMM outputs one unit may keep under CHEAP

typedef enum {
    NN_UNIT_WHOLE = 0,   // everything the forward made is in place (NONE), or there is no backward (evaluation)
    NN_UNIT_PENDING,     // CHEAP, BLOCKS: in place until the next unit begins or its backward is done
    NN_UNIT_RELEASED,    // CHEAP, BLOCKS: internals given back; the backward re-runs the unit
} nn_unit_state;

#define NN_UNIT_OUTS 8    // tensors one unit hands on
#define NN_UNIT_KEEP 16   // small tensors a unit's forward asks to keep (nn_unit_keep)

typedef struct NNUnit {
    ArenaMark mark;           // where the unit's allocations began (forward)
    size_t end_chunk;         // ... and ended (the arena's chunk count)
    uint64_t resets;          // the arena's reset count then (a later step's chunks are not the unit's)
    nn_unit_state state;
    nn_recompute level;       // the level of that forward
    int n_out, n_keep;
    const void *out[NN_UNIT_OUTS];   // what the unit handed on
    const void *keep[NN_UNIT_KEEP];  // what its forward asked to keep
    int n_tape, pos;          // CHEAP: recorded outputs; the replay's next one
    Tensor tape[NN_UNIT_TAPE];
    double *macs;             // the FLOP counter set aside during a replay
} NNUnit;

// "none", "cheap", "blocks", or "auto" (*level = -1: the caller picks by memory).
cx_status nn_recompute_parse(const char *s, int *level);
const char *nn_recompute_name(nn_recompute r);   // "none", "cheap", "blocks"

void nn_unit_begin(NNCtx *ctx, NNUnit *u);
// outs[0..n): the tensors that flow out of the unit (NULL entries or tensors without
// data are ignored); everything else the unit allocated is given back as its level says.
// An output may be memory the caller allocated before the unit (a slice of its buffer,
// as expert_forward_into writes): it stays where it is.
void nn_unit_end(NNCtx *ctx, NNUnit *u, Tensor *const *outs, int n);
int nn_unit_replay_begin(NNCtx *ctx, NNUnit *u);
void nn_unit_replay_end(NNCtx *ctx, NNUnit *u);
void nn_unit_done(NNCtx *ctx, NNUnit *u);

// The forward's convolutions and GEMMs inside units: the ops of ops.h, recorded under
// CHEAP (the output is kept) and, during a CHEAP replay, not run: y takes the recorded
// output's memory and the allocation the caller made for it is given back.
void nn_conv2d_forward(NNCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
void nn_linear_forward(NNCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b);
void nn_gemm_batched(NNCtx *ctx, Tensor *c, const Tensor *a, const Tensor *b, const GemmArgs *g);
// Inside a unit's forward (not its replay): t is kept for the backward whatever the
// level (synchronised BatchNorm's exchanged statistics, which a replay reuses rather than
// exchanging again). A no-op outside a unit.
void nn_unit_keep(NNCtx *ctx, const Tensor *t);
// 1 while a CHEAP unit's forward records or replays its tape: an in-place op must then
// not write over a recorded output (layers.c computes a sigmoid after a conv out of place).
int nn_taping(const NNCtx *ctx);
// Inference liveness: gives t's chunk back to ctx->act when t is a whole chunk of it
// (not a view) and no backward follows (ctx->inference); a no-op otherwise.
void nn_drop(NNCtx *ctx, const Tensor *t);
