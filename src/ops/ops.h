// ops.h — the op interface: every numerical kernel camoxpert's modules call.
// Model code (nn/) is written once against this header; backends differ only
// below it. Each op has a forward and a backward. The ops are declared in one
// list, ops_list.h (one line each, its contract above it), the types they take
// in ops_types.h; this header makes the list into prototypes and adds what is
// not an op: GPUs and NCCL, profiling, and a few helpers built from ops.
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
//   parameters alike**; pass NULL for a gradient that is not needed. Branch joins
//   need no special care. A gradient buffer is made zero by ops_zeros_defer
//   (below): with ctx->zeros set the zero is not written; the buffer's first op
//   writes it (=) instead of adding, and only an op that cannot do that finds it
//   filled first (first-write gradients).
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
#include "ops/ops_types.h"
#include <signal.h>

// The ops: one prototype per line of ops_list.h, where each op's contract is written.
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) void name params;
#include "ops/ops_list.h"
#undef OP

const char *ops_backend_name(ops_backend b);   // "cpu", "reference", "cuda"

// ---- GPUs ----------------------------------------------------------------------------
// Number of usable CUDA GPUs (0 without a driver or a CUDA build); *why gets the
// reason when 0 ("built without CUDA (USE_CUDA=0)", "no NVIDIA driver", ...).
int ops_cuda_device_count(char *why, size_t n);
// The GPU code the CUDA plug-in holds ("sm_80 sm_86 sm_89 sm_90 compute_90", the
// Makefile's GPU_ARCH), or NULL without a plug-in (a build without CUDA, or none found).
const char *ops_cuda_arch_list(void);
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

// ---- photos in and masks out on the GPU (`camoxpert predict`, infer/pipeline.h) ------------
// OPS_CUDA only; the CPU's path is infer.h's per-photo functions, whose arithmetic
// (core/pixels.h) these share. box: I64 (N, 4) on the GPU, one row a photo or mask:
// its byte offset in the U8 buffer, its rows, its columns, and 1 when the photo is
// stored as three planes (R, G, B; rows·columns apart) instead of interleaved RGB
// (masks: 0).
// y (N,S,S,3) F32 or BF16 = infer_image_input of each photo of src (U8): the bilinear
// resize to S×S rounded to 8 bits, then (v/255 - mean[c]) / std[c]. Equal to the CPU's
// bit for bit.
void ops_photo_input(OpCtx *ctx, Tensor *y, const Tensor *src, const Tensor *box, const float mean[3], const float std[3]);
// dst (U8) = infer_mask of each image's logits (N,S,S,1) F32: the bilinear resize to
// box's rows × columns, the sigmoid, the 8-bit min–max export. Equal to the CPU's up
// to a probability's last bit (exp), that is at most one level at rare pixels.
void ops_mask_export(OpCtx *ctx, Tensor *dst, const Tensor *logits, const Tensor *box);
// nvJPEG's hardware decoder on ctx's GPU, loaded on first use. open fails (saying
// why: no nvJPEG, no decoding engine on this GPU) when there is none; *desc gets
// "nvJPEG 13.0.1, hardware decoder". supported: 1 when the decoder takes the JPEG
// (it parses the header). decode: the n JPEGs (host bytes, kept until the GPU's work
// queued so far has run) as planar RGB of w[i]×h[i] at dst[i] (GPU memory, 3·w·h
// bytes), queued on ctx's stream; an error leaves dst undefined and the caller
// decodes them another way.
cx_status ops_jpeg_open(OpCtx *ctx, void **dec, char *desc, size_t n);
int ops_jpeg_supported(void *dec, const uint8_t *data, size_t n);
cx_status ops_jpeg_decode(OpCtx *ctx, void *dec, int n, const uint8_t *const *data, const size_t *len, uint8_t *const *dst,
                          const int *w, const int *h);
void ops_jpeg_close(void *dec);

// ---- bf16 on the CPU -----------------------------------------------------------------
// Whether the CPU backend computes convolutions and matmuls in bf16 natively
// (OpCtx.cpu_bf16): oneDNN is built in and its kernels for AMX-BF16 or AVX512-BF16 run
// on this CPU (oneDNN's ISA query, which ONEDNN_MAX_CPU_ISA caps). *what gets the
// kernels. ISA ("AMX-BF16: oneDNN avx512_core_amx") or why not ("no AVX512-BF16 or
// AMX-BF16 (oneDNN's kernels here: avx2)", "built without oneDNN (USE_DNNL=0)").
int ops_cpu_bf16(char *what, size_t n);

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
//
// (OpProfile and OpProfileEntry: ops_types.h.) The kernel class an entry belongs to,
// its op's class in ops_list.h: "convolution" ("depthwise conv" for a depthwise
// variant), "GEMM", "norm", "element-wise", "resize", "MoE dispatch", "loss", "optimizer".
const char *op_profile_class(const OpProfileEntry *e);

// ---- first-write gradients: deferred zeros ----------------------------------------------
// A gradient buffer that ops only add into (+=) need not be zero-filled first: its first
// writer may write (=). ops_zeros_defer registers a buffer as logically zero in ctx->zeros
// (a ZeroSet, ops_types.h) instead of filling it. Every op's wrapper then looks at its
// tensor arguments: a registered buffer passed whole as an accumulated output that the
// list's first column names is written by the kernel (op_overwrites; cuDNN's and
// cuBLASLt's beta 0); one that is read, partly written (a channel slice, a scatter) or
// added into by a kernel that cannot write is filled first. Results are the same bits as
// filling at once: x + 0 is x (but for the sign of a zero: −0 + 0 is +0, and a written −0
// stays −0; nothing downstream divides by a gradient). Host access to such a buffer
// (downloads, the CPU's host loops) must call ops_zeros_touch first (nn_to_host does).
// Without ctx->zeros, ops_zeros_defer fills at once.
//
//   ZeroSet z;  zeroset_init(&z, &act);  ctx.zeros = &z;      // act: the buffers' arena
//   Tensor dx = tensor_new(&act, DT_F32, 4, shape);
//   ops_zeros_defer(&ctx, &dx);                                // no kernel runs
//   conv2d_backward(&ctx, &dx, &dw, &db, &dy, &x, &w, a);      // writes dx (beta 0)
//   ops_zeros_flush(&ctx);  ctx.zeros = NULL;  zeroset_free(&z);
//
// The arena's release drops the buffers it frees (Arena.on_release); a buffer outside the
// arena, or past ZEROSET_MAX pending ones, is filled at once.
void zeroset_init(ZeroSet *z, Arena *arena);
void zeroset_free(ZeroSet *z);               // forgets what is pending (flush first if it is read later)
void ops_zeros_defer(OpCtx *ctx, const Tensor *t);
void ops_zeros_touch(OpCtx *ctx, const Tensor *t);   // fills the pending buffers t overlaps
void ops_zeros_flush(OpCtx *ctx);                    // fills every pending buffer

// ---- fused ops --------------------------------------------------------------------------
// Whether the modules call the fused ops (residual_scale_*, ...) where they replace a
// sequence, and the GPU's libraries run their epilogues: 1, unless CAMOXPERT_FUSE=0 in
// the environment (read once), which gives the unfused sequences back (side-by-side timing).
int ops_fuse(void);

// ---- helpers beside the ops ----------------------------------------------------------
// The output size of a convolution along one axis (conv2d_forward). Inline: the
// backends' kernels check with it, and ops.c calls into them, not the other way.
static inline int64_t conv2d_out_size(int64_t in, int k, ConvArgs a) {
    return (in + 2 * (int64_t)a.pad - (int64_t)a.dil * (k - 1) - 1) / a.stride + 1;
}
// ReluTape (ops_types.h): replay from the start (or record anew), and free.
void relu_tape_rewind(ReluTape *t, int replay);
void relu_tape_free(ReluTape *t);
// y = cat(xs[0..n), axis C), built from channels_copy. Backward: dxs[i] += dy[..., slice i].
// Trailing NULL entries are skipped; a slice before others needs its tensor (its width).
void concat_forward(OpCtx *ctx, Tensor *y, const Tensor *const *xs, int n);
void concat_backward(OpCtx *ctx, Tensor *const *dxs, int n, const Tensor *dy);
