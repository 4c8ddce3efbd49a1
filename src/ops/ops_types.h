// ops_types.h — the types the op interface passes around: the context every op
// runs in (OpCtx) and the argument structs of the ops that take more than
// tensors and numbers. Split from ops.h so that the op list (ops_list.h) and
// every backend's table can name them without the whole API. Shape letters as
// in ops.h: N batch, H W spatial, C channels in, K channels out.
#pragma once
#include "core/core.h"
#include <string.h>

typedef enum { OPS_CPU = 0, OPS_REF, OPS_CUDA } ops_backend;

struct CudaState;
struct ReluTape;
struct OpProfile;
struct ZeroSet;

#define OP_MAX_WRITES 8

typedef struct OpCtx {
    ops_backend backend;
    Arena *scratch;           // temporaries inside one op call (host arena, or device arena under OPS_CUDA)
    struct CudaState *cuda;   // OPS_CUDA: stream, cuDNN/cuBLASLt handles, plan caches of one GPU (ops/cuda)
    double *macs;             // non-NULL: conv2d/linear/gemm_batched calls add their multiply-accumulates (FLOP counting)
    int64_t *calls;           // non-NULL: every op call adds 1 (camoxpert bench: op calls per step)
    struct ReluTape *relu_tape;   // non-NULL: ReLU decisions recorded or replayed (parity checks; see below)
    struct OpProfile *prof;   // non-NULL: every op timed between two synchronisations (camoxpert bench --profile)
    struct ZeroSet *zeros;    // non-NULL: buffers made zero by ops_zeros_defer are zero-filled only when
                              // needed (first-write gradients, ops.h); NULL: ops_zeros_defer fills at once
    // Set by an op's wrapper for the one kernel call: the accumulated outputs (the list's
    // first column) that the kernel writes (=) instead of adding into (op_overwrites).
    const Tensor *write[OP_MAX_WRITES];
    int nwrite;
    int cpu_bf16;             // OPS_CPU: convolutions and matmuls in bf16 where the CPU has it natively (ops_cpu_bf16):
                              // float32 in and out, bf16 operands, float32 accumulation (ops/cpu/bf16.c)
} OpCtx;

// In a kernel: whether accumulated output t (the pointer the kernel was given) is to be
// written whole (=) in this call instead of added into (+=): it was a deferred zero.
static inline int op_overwrites(const OpCtx *ctx, const Tensor *t) {
    for (int i = 0; i < ctx->nwrite; i++)
        if (ctx->write[i] == t) return 1;
    return 0;
}

// In a host kernel that only knows how to add into t (the reference loops, a few CPU
// paths): a t to be written is zeroed first, the same result as the fill it replaces.
static inline void op_zero_first(OpCtx *ctx, Tensor *t) {
    if (t && t->data && op_overwrites(ctx, t)) memset(t->data, 0, tensor_nbytes(t));
}

// ---- first-write gradients: deferred zeros (ops.h) ---------------------------------------
// The buffers that are logically zero but not yet filled: each a 1-D view of the
// registered tensor's memory. Few are pending at once (a backward registers a gradient
// and its first writer usually comes next); past ZEROSET_MAX a new one is filled at once.
#define ZEROSET_MAX 64
typedef struct ZeroSet {
    Tensor e[ZEROSET_MAX];
    int n;
    Arena *arena;                 // the arena the buffers come from (its release drops the freed ones)
    int64_t deferred;             // counters since zeroset_init: buffers registered,
    int64_t written;              // ... written whole by their first op (no fill),
    int64_t filled;               // ... filled before an op that could not write them,
    int64_t dropped;              // ... freed while still pending (never touched: no fill)
} ZeroSet;

// ---- profiling (ops.h) ----------------------------------------------------------------
typedef struct {
    const char *op;      // "conv2d_backward"
    char kind[48];       // the variant: "depthwise 7x7", "3x3 dil 2", "1x1", ... ("" for most ops)
    int64_t calls;
    double seconds, flops, bytes;
} OpProfileEntry;
typedef struct OpProfile {
    OpProfileEntry e[384];
    int n;
    int shapes;              // set by the caller: a convolution's variant also names its shape,
                             // "3x3 176x176 65->64" (input size, channels in->out): one entry per shape
    double pending_flops;    // set by an op's wrapper for the call being timed
    char pending_kind[48];
} OpProfile;

// ---- convolution: symmetric stride, padding and dilation in H and W; groups G ------------
typedef struct { int stride, pad, dil, groups; } ConvArgs;

// ---- gemm_batched: two-level strided batched GEMM, row-major -----------------------------
// For i < nb1, j < nb2: C_ij (M,N) = alpha · op(A_ij) · op(B_ij) + beta · C_ij, op =
// transpose when ta/tb, where X_ij starts at element offX + i·sX1 + j·sX2 of tensor X,
// and lda/ldb/ldc are row strides.
typedef struct {
    int ta, tb, M, N, K;
    double alpha, beta;
    int64_t offa, offb, offc;   // element offsets of the first matrices
    int lda, ldb, ldc;
    int nb1, nb2;               // batch counts, outer and inner (0 counts as 1)
    int64_t sa1, sb1, sc1;      // element strides of the outer batch
    int64_t sa2, sb2, sc2;      // element strides of the inner batch
} GemmArgs;

// ---- the ReLU decision tape ------------------------------------------------------------
// ReLU decisions shared between two runs of the same pass (verify's and the tests'
// gradient parity). Two float32 implementations round pre-activations differently;
// one that lies within rounding of 0 is kept by one run and cut by the other, and
// that one element moves a small layer's parameter gradient by ~1e-3 (measured: a
// 1e-7 relative change of the input moves exact float64 gradients by 5.6e-4, 1e-8
// by 1e-7). A recording run (replay = 0) stores y > 0 per element, in call order;
// a replaying run takes those decisions instead of its own (y = x where the
// recording kept the element, at least 1e-30 so that relu_backward keeps it too;
// 0 elsewhere) and counts where its own would have differed. Host round trips
// for GPU tensors: for checks, never for training.
typedef struct ReluTape {
    int replay;
    uint8_t *keep;           // one decision per element over all recorded calls
    int64_t n, cap, pos;     // recorded, allocated, replay position
    int64_t differed;        // replay: elements whose own decision differed
} ReluTape;

// ---- cod_loss: the CamoXpert training loss's maps, weights and terms ----------------------
// Maps (N,H,W,1) act; mask (N,H,W,1) and deep_mask[j] (the mask resized to deep[j]) F32 (F64).
// The logits' clamp: the head clamps its prediction logits to ±LOGIT_CLAMP, and the loss
// clamps every logit it takes the sigmoid of the same (the reference's torch.clamp(x, -15, 15));
// one number for the head (nn/cod_head.c) and every backend's loss.
#define LOGIT_CLAMP 15.0
// Probabilities the BCE terms take a log of are clamped to [PROB_CLAMP, 1 − PROB_CLAMP]: a
// double on every backend (1 − 1e-7 has no float of its own).
#define PROB_CLAMP 1e-7
enum { CL_BCE = 0, CL_IOU, CL_EDGE, CL_BOUNDARY, CL_UNCERT, CL_RA, CL_SEARCH, CL_DEEP, CL_REFINE, CL_TERMS };
typedef struct {
    const Tensor *pred, *fg, *search, *unc, *refine0, *deep[3];
    const Tensor *mask, *deep_mask[3];
    double w[CL_TERMS];
} CodLossIn;
typedef struct { Tensor *pred, *fg, *search, *unc, *refine0, *deep[3]; } CodLossGrad;

// ---- the optimizer: segments of a parameter table ---------------------------------------
// A segment is one table entry (element offset and count) with its coefficients. The
// segment lists live on the host and travel with the call.
typedef struct {
    int64_t offset, numel;
    double step_size;   // lr / (1 − β1^t)
    double decay_mul;   // 1 − lr·weight_decay (1: no decay)
    double sqrt_bc2;    // sqrt(1 − β2^t)
} AdamSeg;
// EMA: shadow = decay·shadow + (1−decay)·x, or shadow = x when `copy` (BatchNorm buffers).
typedef struct { int64_t offset, numel; int copy; double decay; } EmaSeg;

// ---- mixture-of-experts routing (route_topk_backward) --------------------------------------
// The balancing term whose gradient route_topk_backward adds (nn/moe.h's schemes; the
// aux-loss-free bias has none). MOE_MAX_EXPERTS (nn/moe.h) bounds E for the GPU's kernels.
typedef enum { MOE_LB_NONE = 0, MOE_LB_MSE, MOE_LB_SWITCH, MOE_LB_ZLOSS } moe_lb;
#define MOE_ROUTE_MAX_E 64
