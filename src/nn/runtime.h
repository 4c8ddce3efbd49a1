// runtime.h — where and how a model runs, set up in one place for every
// command (train, predict, bench, verify) and test: the device
// (`--device cpu|cuda|cuda:N|auto`), the precision (`--precision fp32|bf16|auto`),
// the op backend, the arenas (activations and scratch on the device, host
// tensors of the routing island) and the NNCtx the modules take.
//
//   Runtime rt;
//   CX_TRY(runtime_init(&rt, "auto", "auto", 1));     // GPU if usable, else CPU
//   printf("device: %s\n", rt.desc);
//   runtime_place(&rt, &pt);                           // the table onto the device
//   runtime_step_reset(&rt);                           // every step
//   Tensor x = runtime_input(&rt, &host_image, rt.dtype);
//   camoxpert_forward(&rt.ctx, m, &x, &out);
//   runtime_free(&rt);
#pragma once
#include "nn/nn.h"

typedef struct {
    cx_device device;      // DEV_CPU or DEV_CUDA
    int gpu;               // GPU index (DEV_CUDA)
    cx_dtype dtype;        // activation dtype: F32, BF16 (GPU), F64 (reference runs)
    int bf16;              // the arithmetic is bf16: bf16 activations (GPU), or on the CPU the convolutions
                           // and matmuls (OpCtx.cpu_bf16; float32 activations)
    Arena act, scratch;    // activations (reset every step) and op temporaries, on the device
    Arena host, hscratch;  // host tensors inside a step (routing decisions) and their ops' temporaries
    NNCtx ctx;             // what modules take: ctx.pt is set by the caller
    char desc[256];        // "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB), bf16"
} Runtime;

// Parses --device: "cpu", "cuda" (GPU 0), "cuda:N", "auto" (a GPU when one is
// usable, else the CPU). *gpu < 0 means the CPU. Errors name the value and the fix.
cx_status runtime_resolve_device(const char *spec, int *gpu);
// device: as above; precision "fp32", "bf16" or "auto" (bf16 when `training_default_bf16`
// on a GPU, and on a CPU with native bf16 — AMX-BF16 or AVX512-BF16, ops_cpu_bf16 —
// else fp32; desc says which and why). bf16 on the CPU: float32 activations, the
// convolutions and matmuls in bf16 (OpCtx.cpu_bf16); on a CPU without native bf16 an
// error. training: BatchNorm mode of ctx.
cx_status runtime_init(Runtime *rt, const char *device, const char *precision, int training_default_bf16,
                       int training);
// The float64 reference kernels on the CPU (verify, tests): dtype F64 or F32.
void runtime_init_reference(Runtime *rt, cx_dtype dtype, int training);
void runtime_free(Runtime *rt);
// Resets the per-step arenas (activations, host tensors).
void runtime_step_reset(Runtime *rt);
// Sizes the first block of the activation and scratch arenas (before they hold any
// memory; a no-op after): with a step's estimated peaks (nn/memory.h) the first step
// runs in one block each — no block added mid-step, no space lost between blocks — so
// its footprint is its peak from the start.
void runtime_reserve(Runtime *rt, double act_bytes, double scratch_bytes);
// Moves a host table onto the runtime's device (a no-op on the CPU); its values only
// when the runtime is for inference (ctx.inference: no backward, no gradients).
void runtime_place(Runtime *rt, ParamTable *pt);
// A host tensor as the runtime needs it: on its device, in dtype dt (converted;
// allocated in act). On the CPU with the same dtype, the tensor itself.
Tensor runtime_input(Runtime *rt, const Tensor *host, cx_dtype dt);
// A device (or host) tensor as a host float32 tensor (in rt->host; one
// download on a GPU). Its shape is kept.
Tensor runtime_output_f32(Runtime *rt, const Tensor *t);
// Waits for queued device work (before reading a host clock).
void runtime_sync(Runtime *rt);
// ---- a forward replayed as a CUDA graph (GPU inference at a fixed input shape) -------------
// The forward fn must queue device work only (no host reads: dense models, not
// sparse ones, whose routing is read on the host) and allocate the same way every
// call. runtime_graph_capture runs it once eagerly (the arenas settle at their
// peaks, algorithms are chosen), then once under capture; runtime_graph_run uploads
// a new input into the captured input's place, replays, and downloads the output.
// A capture that does not hold (g->exec NULL, g->why says why) leaves the caller to
// run eagerly. The graph's tensors live in the activation arena: eager work on rt
// between runs of a graph must not need more of it than the captured forward did.
typedef Tensor (*RuntimeForward)(void *arg, NNCtx *ctx, const Tensor *x);   // -> the output on the device
typedef struct {
    void *exec;         // the graph, or NULL
    int64_t shape[4];   // the input shape it was captured at
    void *in_data;      // where the captured forward reads its input
    Tensor out;         // where it leaves its output (float32, on the device)
    size_t act_bytes;   // the activation arena's capacity at the capture (a larger eager run in between
                        // would move it: runtime_graph_run checks)
    char why[160];      // "1412 nodes", or why there is no graph
} RuntimeGraph;
void runtime_graph_capture(Runtime *rt, RuntimeGraph *g, const Tensor *host_x, RuntimeForward fn, void *arg);
// The output (host float32, in rt->host) for host_x, which has the captured shape.
Tensor runtime_graph_run(Runtime *rt, RuntimeGraph *g, const Tensor *host_x);
void runtime_graph_free(Runtime *rt, RuntimeGraph *g);

// Bytes a job on rt's device may plan for, and in `how` where the number comes from:
// the GPU's free memory ("free memory of the GPU"; CAMOXPERT_GPU_MEMORY_LIMIT_MB caps
// it: a smaller card, or a share of this one), or the host's (core/sysmem.h,
// cx_mem_budget); 0 when unknown or turned off.
double runtime_mem_budget(const Runtime *rt, char *how, size_t n);
