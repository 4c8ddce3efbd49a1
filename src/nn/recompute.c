// recompute.c — units: what a forward keeps, and the backward's re-run (recompute.h).
#include "nn/recompute.h"
#include <string.h>

cx_status nn_recompute_parse(const char *s, int *level) {
    if (!strcmp(s, "auto")) *level = -1;
    else if (!strcmp(s, "none")) *level = NN_RECOMPUTE_NONE;
    else if (!strcmp(s, "cheap")) *level = NN_RECOMPUTE_CHEAP;
    else if (!strcmp(s, "blocks")) *level = NN_RECOMPUTE_BLOCKS;
    else return CX_FAIL(CX_EARG, "--recompute %s: expected none, cheap, blocks or auto", s);
    return CX_OK;
}

const char *nn_recompute_name(nn_recompute r) {
    return r == NN_RECOMPUTE_CHEAP ? "cheap" : r == NN_RECOMPUTE_BLOCKS ? "blocks" : "none";
}

// Gives back what u's forward made but its outputs and recorded tape (if this step's).
static void unit_release(NNCtx *ctx, NNUnit *u) {
    if (u->resets == ctx->act->resets) {
        const void *keep[NN_UNIT_OUTS + NN_UNIT_KEEP + NN_UNIT_TAPE];
        int k = 0;
        for (int i = 0; i < u->n_out; i++) keep[k++] = u->out[i];
        for (int i = 0; i < u->n_keep; i++) keep[k++] = u->keep[i];
        for (int i = 0; i < u->n_tape; i++) keep[k++] = u->tape[i].data;
        arena_release_range(ctx->act, u->mark.n_chunk, u->end_chunk, keep, k);
    }
    u->state = NN_UNIT_RELEASED;
    if (ctx->pending == u) ctx->pending = NULL;
}

void nn_unit_begin(NNCtx *ctx, NNUnit *u) {
    CX_ASSERT(!ctx->replay && !ctx->unit, "nn_unit_begin: units do not nest");
    if (ctx->pending) unit_release(ctx, ctx->pending);
    u->level = ctx->inference ? NN_RECOMPUTE_NONE : ctx->recompute;
    u->state = NN_UNIT_WHOLE;
    u->n_tape = u->pos = u->n_out = u->n_keep = 0;
    u->mark = arena_mark(ctx->act);
    if (u->level != NN_RECOMPUTE_NONE) ctx->unit = u;   // recording: its tape (CHEAP), what it keeps
}

void nn_unit_end(NNCtx *ctx, NNUnit *u, Tensor *const *outs, int n) {
    ctx->unit = NULL;
    if (!ctx->inference && u->level == NN_RECOMPUTE_NONE) return;   // everything stays for the backward
    CX_ASSERT(n <= NN_UNIT_OUTS, "nn_unit_end: %d outputs (at most %d)", n, NN_UNIT_OUTS);
    for (int i = 0; i < n; i++) u->out[u->n_out++] = outs[i] ? outs[i]->data : NULL;
    if (ctx->inference) {   // nothing is needed again but the outputs, moved down into the holes left
        arena_release_except(ctx->act, u->mark, u->out, u->n_out);
        for (int i = 0; i < n; i++) {
            if (!outs[i] || !outs[i]->data) continue;
            void *old = outs[i]->data, *q = arena_move_down(ctx->act, u->mark, old);   // not one from before the unit
            for (int j = i; q && j < n; j++)   // every output in that chunk (a chunk moves whole)
                if (outs[j] && outs[j]->data == old) outs[j]->data = q;
        }
        return;
    }
    u->end_chunk = ctx->act->n_chunk;
    u->resets = ctx->act->resets;
    u->state = NN_UNIT_PENDING;
    ctx->pending = u;
}

int nn_unit_replay_begin(NNCtx *ctx, NNUnit *u) {
    if (ctx->inference) return 0;
    if (ctx->pending && ctx->pending != u) unit_release(ctx, ctx->pending);   // a unit whose backward never came
    if (u->state != NN_UNIT_RELEASED) return 0;
    CX_ASSERT(!ctx->replay && !ctx->unit, "nn_unit_replay_begin: a replay inside a replay");
    ctx->replay = 1;
    ctx->unit = u;
    u->pos = 0;
    u->macs = ctx->op.macs;   // the forward's FLOPs were counted once
    ctx->op.macs = NULL;
    return 1;
}

void nn_unit_replay_end(NNCtx *ctx, NNUnit *u) {
    CX_ASSERT(ctx->unit == u && ctx->replay, "nn_unit_replay_end without nn_unit_replay_begin");
    CX_ASSERT(u->level != NN_RECOMPUTE_CHEAP || u->pos == u->n_tape,
              "a unit's replay took %d of its %d recorded outputs (the re-run differs from the forward)", u->pos,
              u->n_tape);
    ctx->replay = 0;
    ctx->unit = NULL;
    ctx->op.macs = u->macs;
}

void nn_unit_done(NNCtx *ctx, NNUnit *u) {
    if (u->state == NN_UNIT_PENDING) unit_release(ctx, u);
}

int nn_taping(const NNCtx *ctx) { return ctx->unit && ctx->unit->level == NN_RECOMPUTE_CHEAP; }

// During a CHEAP replay: y becomes the next recorded output (the caller's fresh
// allocation for it is given back). 1 when taken.
static int tape_take(NNCtx *ctx, Tensor *y) {
    NNUnit *u = ctx->unit;
    if (!ctx->replay || !u || u->level != NN_RECOMPUTE_CHEAP) return 0;
    CX_ASSERT(u->pos < u->n_tape, "a unit's replay asked for more recorded outputs than its forward made (%d)",
              u->n_tape);
    const Tensor *t = &u->tape[u->pos++];
    CX_ASSERT(t->dtype == y->dtype && tensor_numel(t) == tensor_numel(y), "a unit's replay differs from its forward "
              "(recorded output %d)", u->pos - 1);
    arena_release_one(ctx->act, y->data);
    y->data = t->data;
    return 1;
}

static void tape_put(NNCtx *ctx, const Tensor *y) {
    if (!nn_taping(ctx) || ctx->replay) return;
    NNUnit *u = ctx->unit;
    CX_ASSERT(u->n_tape < NN_UNIT_TAPE, "a unit records more than %d convolution and GEMM outputs", NN_UNIT_TAPE);
    u->tape[u->n_tape++] = *y;
}

void nn_conv2d_forward(NNCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a) {
    if (tape_take(ctx, y)) return;
    conv2d_forward(&ctx->op, y, x, w, b, a);
    tape_put(ctx, y);
}

void nn_linear_forward(NNCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b) {
    if (tape_take(ctx, y)) return;
    linear_forward(&ctx->op, y, x, w, b);
    tape_put(ctx, y);
}

void nn_gemm_batched(NNCtx *ctx, Tensor *c, const Tensor *a, const Tensor *b, const GemmArgs *g) {
    if (tape_take(ctx, c)) return;
    gemm_batched(&ctx->op, c, a, b, g);
    tape_put(ctx, c);
}

void nn_unit_keep(NNCtx *ctx, const Tensor *t) {
    NNUnit *u = ctx->unit;
    if (!u || ctx->replay) return;
    CX_ASSERT(u->n_keep < NN_UNIT_KEEP, "a unit keeps more than %d tensors", NN_UNIT_KEEP);
    u->keep[u->n_keep++] = t->data;
}

void nn_drop(NNCtx *ctx, const Tensor *t) {
    if (ctx->inference && t->data) arena_release_one(ctx->act, t->data);
}
