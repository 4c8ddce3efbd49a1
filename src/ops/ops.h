// ops.h — the op interface: every numerical kernel camoxpert's modules call.
// Model code (nn/) is written once against this header; backends differ only
// below it. Each op has a forward and a backward.
//
// Backends (OpCtx.backend; ops dispatch on it, never on dtype):
//   OPS_CPU   the fast float32 CPU kernels (ops/cpu/; OpenMP, OpenBLAS, oneDNN)
//   OPS_REF   the plain reference kernels (ops/ref/), float32 or float64: the
//             ground truth of the tests and of float64 gradient parity
//   OPS_CUDA  NVIDIA GPUs (ops/cuda/; cuDNN, cuBLASLt and our kernels), float32
//             or bfloat16 activations; every tensor of a call in GPU memory
//
// Conventions (all ops):
// * Activations are NHWC tensors; "rows × C" ops (linear, layernorm) treat the
//   last axis as features and every other axis as rows.
// * Parameters keep PyTorch layouts: conv weights OIHW (K, C/G, kh, kw), linear
//   weights (K, C).
// * dtypes, per argument. "act" = the activation dtype of the call: F64 or F32
//   on OPS_REF, F32 on OPS_CPU, F32 or BF16 on OPS_CUDA. Parameters, their
//   gradients, normalisation statistics and running statistics are F32 (F64
//   when act is F64): under BF16, conv/linear convert their F32 master weights
//   to bf16 themselves and accumulate in F32. Where an argument is said to be
//   "float" it may be F32 or act (the router's F32 logits beside bf16
//   activations, a per-channel F32 scale of a bf16 map); index tensors are I32.
// * **Every backward ADDS into every gradient it is given (+=), inputs and
//   parameters alike**; pass NULL for a gradient that is not needed. Callers
//   zero gradient buffers once per step. Branch joins need no special care.
// * Shapes are the caller's responsibility: a mismatch is a bug (CX_ASSERT),
//   not a user error.
// * Temporary buffers come from ctx->scratch (on the backend's device; released
//   before the op returns).
//
//   OpCtx ctx = { .backend = OPS_CPU, .scratch = &scratch };
//   ConvArgs a = { .stride = 1, .pad = 1, .dil = 1, .groups = 1 };
//   conv2d_forward(&ctx, &y, &x, &w, &b, a);
//   conv2d_backward(&ctx, &dx, &dw, &db, &dy, &x, &w, a);
#pragma once
#include "core/core.h"
#include <signal.h>

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
} OpCtx;

const char *ops_backend_name(ops_backend b);   // "cpu", "reference", "cuda"

// ---- GPUs ----------------------------------------------------------------------------
// Number of usable CUDA GPUs (0 without a driver or a CUDA build); *why gets the
// reason when 0 ("built without CUDA (USE_CUDA=0)", "no NVIDIA driver", ...).
int ops_cuda_device_count(char *why, size_t n);
// Opens GPU `gpu` for ctx (backend OPS_CUDA): its handles, and core's device
// hooks (core/device.h). One process drives one GPU. The arithmetic follows the
// tensors: bf16 operands use the tensor cores with float32 accumulation, float32
// operands are computed in float32 exactly (TF32 off).
cx_status ops_cuda_open(OpCtx *ctx, int gpu);
void ops_cuda_close(OpCtx *ctx);
// "NVIDIA H100 80GB HBM3 (GPU 0, 79.1 GiB, sm_90)"
void ops_cuda_describe(const OpCtx *ctx, char *buf, size_t n);
// Tests: the GPU's convolution implementation (CUDA_CONV_AUTO or CUDA_CONV_DIRECT
// of ops/cuda/cuda.h); a no-op without the CUDA plug-in.
void ops_cuda_set_conv_impl(int impl);
// Waits for every queued kernel (timing, before reading host clocks).
void ops_sync(OpCtx *ctx);
// CUDA graphs (OPS_CUDA only): the device work queued between begin and end,
// replayed by launch with the same device pointers and no host work per kernel.
// end returns NULL (and in why the reason) when the work could not be captured
// (a synchronous copy, a host read): the caller then runs it eagerly.
void ops_graph_begin(OpCtx *ctx);
void *ops_graph_end(OpCtx *ctx, char *why, size_t n);
void ops_graph_launch(OpCtx *ctx, void *graph);
void ops_graph_free(OpCtx *ctx, void *graph);

// ---- several GPUs: NCCL ---------------------------------------------------------------
// One communicator per process (one process per GPU). NCCL is loaded on first use
// (libnccl.so.2); without it these fail with how to install it.
//
//   unsigned char id[128];
//   if (rank == 0) CX_TRY(ops_nccl_unique_id(id));
//   ...broadcast id to every rank (train/dist.h)...
//   void *comm;
//   CX_TRY(ops_nccl_open(&ctx, &comm, id, rank, world));       // after ops_cuda_open
//   CX_TRY(ops_nccl_allreduce_sum(&ctx, &comm, &grads, 60, NULL));   // in place, float32
//   CX_TRY(ops_nccl_allreduce_start(&ctx, &comm, &bucket));    // or: queued beside the backward,
//   CX_TRY(ops_nccl_wait(&ctx, &comm, 60, &stop_flag));        // waited for before the update
//   ops_nccl_close(comm);
cx_status ops_nccl_version(int *version);   // e.g. 22803 for 2.28.3
cx_status ops_nccl_unique_id(unsigned char id[128]);
cx_status ops_nccl_open(OpCtx *ctx, void **comm, const unsigned char id[128], int rank, int world);
// buf (float32, on ctx's GPU, contiguous) = its sum over the ranks, waited for. A rank
// that does not join within timeout_s seconds, or a failure NCCL reports, is an error
// after which *comm is aborted and NULL. stop (may be NULL): a flag a SIGTERM or Ctrl-C
// handler sets; once it is set the wait gives the other ranks OPS_NCCL_STOP_GRACE_S more,
// not the rest of timeout_s (ranks asked to stop together are all alive and join at once;
// one that died never will, and the launcher that sent the signal is waiting).
#define OPS_NCCL_STOP_GRACE_S 3.0
cx_status ops_nccl_allreduce_sum(OpCtx *ctx, void **comm, Tensor *buf, double timeout_s,
                                 const volatile sig_atomic_t *stop);
// The same in two halves, for gradient buckets: _start queues the all-reduce on the
// communicator's own stream after the work queued so far on ctx's stream and returns
// at once (the backward goes on beside it); _wait waits for every started one with
// the deadline (the same errors), and orders ctx's stream after them.
cx_status ops_nccl_allreduce_start(OpCtx *ctx, void **comm, Tensor *buf);
cx_status ops_nccl_wait(OpCtx *ctx, void **comm, double timeout_s, const volatile sig_atomic_t *stop);
void ops_nccl_close(void *comm);

// ---- profiling ----------------------------------------------------------------------
// With ctx->prof set, every op synchronises the device before and after itself and
// adds its wall time to an entry per (op, variant): the time of the op's kernels
// plus one launch, with nothing queued behind it. The sum over a step is therefore
// larger than the unprofiled step by the launch latencies the queue normally hides;
// bench --profile reports both. flops: 2 per multiply-accumulate (conv, linear,
// GEMM; a backward with both gradients counts twice the forward); bytes: the size
// of every tensor argument counted once, a lower bound of the memory traffic.
//
//   OpProfile p = { 0 };  ctx.prof = &p;  ...ops...;  ctx.prof = NULL;
//   for (int i = 0; i < p.n; i++) printf("%s %s %.3f\n", op_profile_class(&p.e[i]), p.e[i].op, p.e[i].seconds);
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
// The kernel class an entry belongs to: "convolution", "depthwise conv", "GEMM",
// "norm", "element-wise", "resize", "MoE dispatch", "loss", "optimizer".
const char *op_profile_class(const OpProfileEntry *e);

// ---- convolution --------------------------------------------------------------
// reference: torch.nn.functional.conv2d (cross-correlation, zero padding,
// symmetric stride/padding/dilation in H and W).
typedef struct { int stride, pad, dil, groups; } ConvArgs;
// y (N,Ho,Wo,K) act = conv(x (N,H,W,C) act, w (K,C/G,kh,kw)) + b (K) [b may be NULL]
// Ho = (H + 2*pad - dil*(kh-1) - 1) / stride + 1
void conv2d_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
// dx (N,H,W,C) act +=, dw (K,C/G,kh,kw) +=, db (K) += ; any may be NULL.
void conv2d_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy,
                     const Tensor *x, const Tensor *w, ConvArgs a);
int64_t conv2d_out_size(int64_t in, int k, ConvArgs a);

// ---- linear / GEMM ----------------------------------------------------------------
// y (..., K) = x (..., C) · w (K, C)^T + b (K) [b may be NULL]; a 1×1 conv on NHWC.
// x, y float of one dtype (the router runs in F32 beside bf16 activations).
void linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b);
void linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy,
                     const Tensor *x, const Tensor *w);
// Two-level strided batched GEMM, row-major: for i < nb1, j < nb2,
//   C_ij (M,N) = alpha · op(A_ij) · op(B_ij) + beta · C_ij,  op = transpose when ta/tb,
// where X_ij starts at element offX + i·sX1 + j·sX2 of tensor X, and lda/ldb/ldc
// are row strides. beta 0 ignores C's old contents (BLAS). A, B, C float.
// This is the primitive for channel attention (XCA): for every image i and head
// j, q, k and v are strided column blocks of one qkv tensor.
typedef struct {
    int ta, tb, M, N, K;
    double alpha, beta;
    int64_t offa, offb, offc;   // element offsets of the first matrices
    int lda, ldb, ldc;
    int nb1, nb2;               // batch counts, outer and inner (0 counts as 1)
    int64_t sa1, sb1, sc1;      // element strides of the outer batch
    int64_t sa2, sb2, sc2;      // element strides of the inner batch
} GemmArgs;
void gemm_batched(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g);

// ---- normalisation ---------------------------------------------------------------
// reference: torch.nn.BatchNorm2d. Training: statistics over N,H,W per channel
// (biased variance for normalising); running stats updated in place when
// non-NULL: r = (1-momentum)·r + momentum·batch (unbiased variance for
// running_var). Evaluation: running stats. save_mean/save_invstd (C) receive the
// mean and 1/sqrt(var+eps) used, for backward. x, y act; the rest F32 (F64).
void batchnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                       const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                       int training, double momentum, double eps);
void batchnorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                        const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                        const Tensor *gamma, int training);
// BatchNorm then ReLU (a ConvBNReLU's last two layers): y = relu(batchnorm(x)), the
// arguments and statistics of batchnorm_forward; y must not alias x. Its backward
// takes the pair's output y and is batchnorm_backward of dy·[y > 0] (dx, dγ, dβ +=).
// One pass each on the CPU and GPU backends (no ReLU pass, no masked-gradient tensor);
// on the reference backend, and while a ReluTape records or replays, the two ops in turn.
void batchnorm_relu_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                            const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                            int training, double momentum, double eps);
void batchnorm_relu_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *y,
                             const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                             const Tensor *gamma, int training);
// reference: torch.nn.LayerNorm over the last axis (C); biased variance.
// save_mean/save_rstd have numel(x)/C elements (F32, or F64).
void layernorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x,
                       const Tensor *w, const Tensor *b, double eps);
void layernorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                        const Tensor *save_mean, const Tensor *save_rstd, const Tensor *w);

// ---- element-wise ------------------------------------------------------------------
// y and x may alias in forward (in place). Backward takes x (the input) except
// where noted. All act.
void gelu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);                 // exact erf form
void gelu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
void relu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
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
void relu_tape_rewind(ReluTape *t, int replay);   // replay from the start (or record anew)
void relu_tape_free(ReluTape *t);
void relu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y);   // takes the OUTPUT y
void sigmoid_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void sigmoid_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y); // takes the OUTPUT y
void softplus_forward(OpCtx *ctx, Tensor *y, const Tensor *x);             // beta 1, threshold 20
void softplus_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
// reference: torch.clamp; gradient passes where lo <= x <= hi, zero outside.
void clamp_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi);
void clamp_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi);
// y = a + b (same shapes); y may alias a or b.
void add_forward(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b);
// y += alpha · x (same numel; float, the dtypes may differ). Also the gradient-accumulation primitive.
void axpy(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x);
void scale_inplace(OpCtx *ctx, Tensor *y, double alpha);
// y = v everywhere (any float dtype).
void fill(OpCtx *ctx, Tensor *y, double v);
// dst = src, same numel, converting between float dtypes (F32 <-> BF16, F32 <-> F64).
void copy(OpCtx *ctx, Tensor *dst, const Tensor *src);
// Broadcast multiply: y = x ⊙ s, where x is (N,H,W,C) act, y float (F32 beside bf16 x: the
// refinement's h = b·(1 + u), cod_head.c) and s (float) is one of
//   (C)         per channel (layer scale γ),
//   (N,C)       per image and channel (contrast amplification, router weights),
//   (N,H,W,1)   per pixel (search map, foreground map, 1+u),
//   (1,H,W,1)   per pixel, the same for every image (XCA temperature per head),
//   (N,H,W,C)   element-wise.
void mul_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s);
// dx += dy ⊙ s ; ds += Σ over broadcast axes of dy ⊙ x. Either may be NULL.
void mul_backward(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s);
// y (R, L) += b (L) for every row, where L = numel(b) and R = numel(y)/L (the
// positional encoding added to every image). b float.
void rows_add_bcast(OpCtx *ctx, Tensor *y, const Tensor *b);
// db (L) += Σ over rows of dy (R, L): rows_add_bcast's backward.
void rows_sum(OpCtx *ctx, Tensor *db, const Tensor *dy);

// ---- resampling and pooling ----------------------------------------------------------
// reference: F.interpolate(mode='bilinear', align_corners=False). With
// scale_h/scale_w > 0 (the scale_factor form) the source coordinate is
// (dst + 0.5) / scale - 0.5; with 0 (the size form) scale = out/in, i.e.
// (dst + 0.5) · in/out - 0.5; negative coordinates clamp to 0 as PyTorch does.
void resize_bilinear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w);
void resize_bilinear_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w);
// y (N,C) = mean over H,W of x (N,H,W,C). y float (the router pools bf16 maps into F32).
void avgpool_global_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void avgpool_global_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy);

// ---- channel slicing ------------------------------------------------------------------
// dst[..., dc0 : dc0+nc] (=, or += when accumulate) src[..., sc0 : sc0+nc];
// both NHWC with the same N,H,W. Concat and split are built from this.
void channels_copy(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate);
// y = cat(xs[0..n), axis C). Backward: dxs[i] += dy[..., slice i]. Trailing NULL
// entries are skipped; a slice before others needs its tensor (its width).
void concat_forward(OpCtx *ctx, Tensor *y, const Tensor *const *xs, int n);
void concat_backward(OpCtx *ctx, Tensor *const *dxs, int n, const Tensor *dy);

// ---- reductions ------------------------------------------------------------------------------
// x viewed as (outer, L, inner); the op runs along L for each (outer, inner).
// reference: torch.softmax(dim)
void softmax_forward(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner);
void softmax_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L, int64_t inner);
// reference: F.normalize(p=2, eps): y = x / max(||x||_2, eps); save_norm gets
// (outer·inner) norms (before the max), F32 (F64).
void l2norm_forward(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L,
                    int64_t inner, double eps);
void l2norm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm,
                     int64_t outer, int64_t L, int64_t inner, double eps);
// reference: torch.topk(x, k, dim=-1) on x (R, L): idx (R,k) I32 and val (R,k),
// in descending order; among equal values the lower index comes first.
void topk_rows(OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k);
// y = x / (max(x) + eps), the maximum over every element (the boundary-uncertainty
// map normalised by its batch maximum); save_max (1) F32 (F64) gets max(x).
// Backward: the maximum's gradient is shared evenly by the elements equal to it.
void maxnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_max, const Tensor *x, double eps);
void maxnorm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_max, double eps);

// ---- the CamoXpert training loss -----------------------------------------------------------
// reference: the reference implementation's CamoXpertLoss (reference/camoxpert.md §6):
//   terms[CL_BCE]   BCEwithLogits(clamp(pred, ±15), y)        (mean)
//   terms[CL_IOU]   1 − mean over images of (Σpy + 1e-5)/(Σp + Σy − Σpy + 1e-5), p = σ(clamp(pred))
//   terms[CL_EDGE]  mean((sqrt(Sx(p)² + Sy(p)² + 1e-5) − sqrt(Sx(y)² + Sy(y)² + 1e-5))²), S Sobel, zero padding
//   terms[CL_BOUNDARY] mean((1 + 4·(box(y) − (1 − box(1 − y)))) · BCEwithLogits(clamp(pred), y)), box 3×3 mean
//   terms[CL_UNCERT] mean(|p − y| · log(1/(u + 1e-8)))
//   terms[CL_RA], terms[CL_SEARCH]  BCE(clamp(fg|search, 1e-7, 1 − 1e-7), y), PyTorch's log clamp at −100
//   terms[CL_DEEP]  mean over the three deep maps of BCEwithLogits(clamp(deep_j), deep_mask_j)
//   terms[CL_REFINE] w[CL_REFINE] · BCEwithLogits(clamp(refine0), y)  (includes its weight, as the reference reports it)
// Maps (N,H,W,1) act; mask (N,H,W,1) and deep_mask[j] (the mask resized to deep[j]) F32 (F64).
// terms (CL_TERMS) F32 (F64) receive the unweighted terms (=). When g is non-NULL, the
// gradient of Σ w[t]·terms[t] (w[CL_REFINE] counted once) is added (+=) into each
// non-NULL g tensor (shapes and dtypes of the maps). Sums accumulate in F32 on the
// GPU, in double elsewhere.
enum { CL_BCE = 0, CL_IOU, CL_EDGE, CL_BOUNDARY, CL_UNCERT, CL_RA, CL_SEARCH, CL_DEEP, CL_REFINE, CL_TERMS };
typedef struct {
    const Tensor *pred, *fg, *search, *unc, *refine0, *deep[3];
    const Tensor *mask, *deep_mask[3];
    double w[CL_TERMS];
} CodLossIn;
typedef struct { Tensor *pred, *fg, *search, *unc, *refine0, *deep[3]; } CodLossGrad;
void cod_loss(OpCtx *ctx, Tensor *terms, const CodLossGrad *g, const CodLossIn *in);

// ---- optimizer ---------------------------------------------------------------------------------
// The optimizer works on whole parameter tables: a segment is one table entry
// (element offset and count) with its coefficients. The segment lists live on
// the host and travel with the call.
typedef struct {
    int64_t offset, numel;
    double step_size;   // lr / (1 − β1^t)
    double decay_mul;   // 1 − lr·weight_decay (1: no decay)
    double sqrt_bc2;    // sqrt(1 − β2^t)
} AdamSeg;
// reference: torch.optim.AdamW (single-tensor path, amsgrad off). Per element of every segment:
//   g = grad·gscale; p *= decay_mul; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
//   p −= step_size · m / (sqrt(v)/sqrt_bc2 + eps)
// param, grad: the table's dtype (F32, or F64 on OPS_REF); m, v F32; gscale (1) F32 (F64)
// or NULL (1): the clipping factor clip_scale computed on the same device.
void adamw_update(OpCtx *ctx, Tensor *param, Tensor *m, Tensor *v, const Tensor *grad, const Tensor *gscale,
                  const AdamSeg *seg, int nseg, double beta1, double beta2, double eps);
// stats (3) F32 (F64): [0] = Σ over the segments of x², [1] = its square root (the
// global gradient norm), [2] = the clipping factor max_norm / (norm + 1e-6) when
// norm > max_norm > 0, else 1. (reference: torch.nn.utils.clip_grad_norm_)
void grad_norm_clip(OpCtx *ctx, Tensor *stats, const Tensor *x, const AdamSeg *seg, int nseg, double max_norm);
// EMA of the weights: per segment, shadow = decay·shadow + (1−decay)·x, or shadow = x
// when `copy` (BatchNorm buffers are copied, not averaged). shadow, x: the table's dtype.
typedef struct { int64_t offset, numel; int copy; double decay; } EmaSeg;
void ema_blend(OpCtx *ctx, Tensor *shadow, const Tensor *x, const EmaSeg *seg, int nseg);

// ---- mixture-of-experts dispatch ------------------------------------------------------------
// Rows are the first axis (images, or tiles in spatial routing).
// dst[i] = src[idx[i]] for i < n (idx I32 (n)).
void rows_gather(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx);
// dst[idx[i]] += w[i] · src[i]  (w (n) float; NULL means 1); repeated indices
// add up in index order (deterministically).
void rows_scatter_add(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w);
// Backward of rows_scatter_add: dsrc[i] += w[i] · ddst[idx[i]]; dw[i] += <ddst[idx[i]], src[i]>.
void rows_scatter_add_backward(OpCtx *ctx, Tensor *dsrc, Tensor *dw, const Tensor *ddst, const Tensor *src,
                               const Tensor *idx, const Tensor *w);
// The same sum written as a gather, for scatters whose destination rows the host
// has listed (spatial routing's plans): for every row r of dst,
//   dst[r] += Σ_{j = ptr[r]}^{ptr[r+1]-1} w[j] · src[list[j]]   (w (n) float; NULL means 1)
// with ptr (rows+1) and list (n) I32, in list order. With ptr/list the CSR form of a
// rows_scatter_add index (each row's entries in ascending i) it is rows_scatter_add's
// sum, term for term; each dst row is written by one thread on a GPU (deterministic,
// no atomics, O(n·D) work) where rows_scatter_add loops over every index per element.
// It is itself a backward (of rows_gather with weights): no backward of its own.
void rows_gather_sum(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr, const Tensor *list, const Tensor *w);
