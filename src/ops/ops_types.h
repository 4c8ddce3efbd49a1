// ops_types.h — the types the op interface passes around: the context every op
// runs in (OpCtx) and the argument structs of the ops that take more than
// tensors and numbers. Split from ops.h so that the op list (ops_list.h) and
// every backend's table can name them without the whole API. Shape letters as
// in ops.h: N batch, H W spatial, C channels in, K channels out.
#pragma once
#include "core/core.h"

typedef enum { OPS_CPU = 0, OPS_REF, OPS_CUDA } ops_backend;

struct CudaState;
struct ReluTape;
struct OpProfile;

typedef struct OpCtx {
    ops_backend backend;
    Arena *scratch;           // temporaries inside one op call (host arena, or device arena under OPS_CUDA)
    struct CudaState *cuda;   // OPS_CUDA: stream, cuDNN/cuBLASLt handles, plan caches of one GPU (ops/cuda)
    double *macs;             // non-NULL: conv2d/linear/gemm_batched calls add their multiply-accumulates (FLOP counting)
    struct ReluTape *relu_tape;   // non-NULL: ReLU decisions recorded or replayed (parity checks; see below)
    struct OpProfile *prof;   // non-NULL: every op timed between two synchronisations (camoxpert bench --profile)
    int cpu_bf16;             // OPS_CPU: convolutions and matmuls in bf16 where the CPU has it natively (ops_cpu_bf16):
                              // float32 in and out, bf16 operands, float32 accumulation (ops/cpu/bf16.c)
} OpCtx;

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
