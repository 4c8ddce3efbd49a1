// runtime.c — see runtime.h.
#include "nn/runtime.h"
#include "core/sysmem.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cx_status runtime_resolve_device(const char *spec, int *gpu) {
    char why[256] = "";
    if (!spec || !strcmp(spec, "auto")) {
        *gpu = ops_cuda_device_count(why, sizeof why) > 0 ? 0 : -1;
        return CX_OK;
    }
    if (!strcmp(spec, "cpu")) { *gpu = -1; return CX_OK; }
    int idx = 0;
    if (!strcmp(spec, "cuda")) idx = 0;
    else if (!strncmp(spec, "cuda:", 5) && spec[5]) {
        char *end;
        long v = strtol(spec + 5, &end, 10);
        if (*end || v < 0 || v > 1023)
            return CX_FAIL(CX_EARG, "--device %s: the GPU index must be a number (e.g. cuda:0)", spec);
        idx = (int)v;
    } else {
        return CX_FAIL(CX_EARG, "--device %s: expected cpu, cuda, cuda:N or auto", spec);
    }
    int n = ops_cuda_device_count(why, sizeof why);
    if (n == 0) return CX_FAIL(CX_EARG, "--device %s: no usable GPU: %s (use --device cpu)", spec, why);
    if (idx >= n)
        return CX_FAIL(CX_EARG, "--device %s: this machine has %d GPU%s (cuda:0%s%d)", spec, n, n == 1 ? "" : "s",
                       n > 1 ? " .. cuda:" : "", n > 1 ? n - 1 : 0);
    *gpu = idx;
    return CX_OK;
}

static void ctx_setup(Runtime *rt, ops_backend b, int training) {
    rt->ctx = (NNCtx){ .op = { .backend = b, .scratch = &rt->scratch },
                       .host_op = { .backend = b == OPS_REF ? OPS_REF : OPS_CPU, .scratch = &rt->hscratch },
                       .act = &rt->act, .host = &rt->host, .dtype = rt->dtype, .training = training };
}

cx_status runtime_init(Runtime *rt, const char *device, const char *precision, int training_default_bf16,
                       int training) {
    memset(rt, 0, sizeof *rt);
    int gpu;
    CX_TRY(runtime_resolve_device(device, &gpu));
    const char *p = precision ? precision : "auto";
    // The CPU computes in bf16 only where it does so natively (AMX-BF16, AVX512-BF16):
    // elsewhere oneDNN would emulate it, slower than float32.
    char isa[128] = "";
    const int native = gpu < 0 && ops_cpu_bf16(isa, sizeof isa), is_auto = !strcmp(p, "auto");
    int bf16;
    if (!strcmp(p, "fp32")) bf16 = 0;
    else if (!strcmp(p, "bf16")) bf16 = 1;
    else if (is_auto) bf16 = training_default_bf16 && (gpu >= 0 || native);
    else return CX_FAIL(CX_EARG, "--precision %s: expected fp32, bf16 or auto", p);
    if (bf16 && gpu < 0 && !native)
        return CX_FAIL(CX_EARG, "--precision bf16 on the CPU needs native bf16 (AMX-BF16 or AVX512-BF16), and this "
                       "one has %s; use --precision fp32 (or auto), or --device cuda", isa);
    rt->gpu = gpu;
    rt->device = gpu >= 0 ? DEV_CUDA : DEV_CPU;
    rt->bf16 = bf16;
    rt->dtype = bf16 && gpu >= 0 ? DT_BF16 : DT_F32;   // the CPU's bf16 keeps float32 activations
    arena_init_on(&rt->act, "activations", 64 << 20, rt->device);
    arena_init_on(&rt->scratch, "scratch", 16 << 20, rt->device);
    arena_init(&rt->host, "host tensors", 1 << 20);
    arena_init(&rt->hscratch, "host scratch", 1 << 20);
    ctx_setup(rt, gpu >= 0 ? OPS_CUDA : OPS_CPU, training);
    if (gpu >= 0) {
        cx_status st = ops_cuda_open(&rt->ctx.op, gpu);
        if (st) { runtime_free(rt); return st; }
        char d[160];
        ops_cuda_describe(&rt->ctx.op, d, sizeof d);
        snprintf(rt->desc, sizeof rt->desc, "cuda:%d (%s), %s", gpu, d, bf16 ? "bf16 (fp32 accumulation and master "
                 "weights)" : "fp32 (TF32 off)");
    } else if (bf16) {
        rt->ctx.op.cpu_bf16 = 1;   // the routing island's host_op stays float32
        snprintf(rt->desc, sizeof rt->desc, "cpu (%d threads), bf16 convolutions and matmuls (%s; fp32 activations, "
                 "accumulation and master weights)%s", cx_threads_get(), isa, is_auto ? "; --precision auto chose bf16" : "");
    } else {
        snprintf(rt->desc, sizeof rt->desc, "cpu (%d threads), fp32%s%s%s", cx_threads_get(),
                 is_auto && training_default_bf16 ? " (--precision auto: " : "", is_auto && training_default_bf16 ? isa : "",
                 is_auto && training_default_bf16 ? ")" : "");
    }
    return CX_OK;
}

void runtime_init_reference(Runtime *rt, cx_dtype dtype, int training) {
    memset(rt, 0, sizeof *rt);
    rt->gpu = -1;
    rt->device = DEV_CPU;
    rt->dtype = dtype;
    arena_init(&rt->act, "activations", 64 << 20);
    arena_init(&rt->scratch, "scratch", 16 << 20);
    arena_init(&rt->host, "host tensors", 1 << 20);
    arena_init(&rt->hscratch, "host scratch", 1 << 20);
    ctx_setup(rt, OPS_REF, training);
    snprintf(rt->desc, sizeof rt->desc, "cpu reference kernels, %s", dtype == DT_F64 ? "fp64" : "fp32");
}

void runtime_free(Runtime *rt) {
    arena_free(&rt->act);
    arena_free(&rt->scratch);
    arena_free(&rt->host);
    arena_free(&rt->hscratch);
    if (rt->ctx.op.backend == OPS_CUDA) ops_cuda_close(&rt->ctx.op);
}

void runtime_step_reset(Runtime *rt) {
    arena_reset(&rt->act);
    arena_reset(&rt->host);
}

static void reserve(Arena *a, double bytes) {
    if (!a->top && !a->spare && bytes > (double)a->block_size) a->block_size = (size_t)bytes;
}

void runtime_reserve(Runtime *rt, double act_bytes, double scratch_bytes) {
    reserve(&rt->act, act_bytes);
    reserve(&rt->scratch, scratch_bytes);
}

void runtime_place(Runtime *rt, ParamTable *pt) {
    if (rt->device != DEV_CUDA || pt->device == DEV_CUDA) return;
    if (rt->ctx.inference) params_to_device_values(pt);   // no backward: no gradient buffer
    else params_to_device(pt);
}

Tensor runtime_input(Runtime *rt, const Tensor *host, cx_dtype dt) {
    tensor_require_host(host, "runtime_input");
    if (rt->device == DEV_CPU && host->dtype == dt) return *host;
    Tensor up = *host;
    if (rt->device == DEV_CUDA) {
        up = tensor_new(&rt->act, host->dtype, host->ndim, host->shape);
        tensor_upload(&up, host);
    }
    if (up.dtype == dt) return up;
    Tensor t = tensor_new(&rt->act, dt, host->ndim, host->shape);
    copy(&rt->ctx.op, &t, &up);
    if (up.data != host->data) arena_release_one(&rt->act, up.data);   // no float32 copy kept beside it
    return t;
}

Tensor runtime_output_f32(Runtime *rt, const Tensor *t) {
    Tensor f = *t;
    if (t->dtype != DT_F32) {
        f = tensor_new(t->device == DEV_CUDA ? &rt->act : &rt->host, DT_F32, t->ndim, t->shape);
        copy(t->device == DEV_CUDA ? &rt->ctx.op : &rt->ctx.host_op, &f, t);
    }
    if (f.device == DEV_CPU) return f;
    Tensor h = tensor_new(&rt->host, DT_F32, t->ndim, t->shape);
    tensor_download(&h, &f);
    return h;
}

void runtime_sync(Runtime *rt) { ops_sync(&rt->ctx.op); }

// The forward's output as float32 on the device (a conversion queued on the stream).
static Tensor graph_forward(Runtime *rt, RuntimeForward fn, void *arg, const Tensor *x) {
    Tensor y = fn(arg, &rt->ctx, x);
    if (y.dtype == DT_F32) return y;
    Tensor f = tensor_new(&rt->act, DT_F32, y.ndim, y.shape);
    copy(&rt->ctx.op, &f, &y);
    return f;
}

void runtime_graph_capture(Runtime *rt, RuntimeGraph *g, const Tensor *host_x, RuntimeForward fn, void *arg) {
    memset(g, 0, sizeof *g);
    CX_ASSERT(host_x->ndim == 4, "runtime_graph_capture: a 4-d input");
    memcpy(g->shape, host_x->shape, sizeof g->shape);
    if (rt->device != DEV_CUDA) {
        snprintf(g->why, sizeof g->why, "CUDA graphs need a GPU");
        return;
    }
    // one eager run: algorithms chosen, the arenas at their peaks (the reset below makes
    // the activations one block)
    runtime_step_reset(rt);
    Tensor x0 = runtime_input(rt, host_x, rt->dtype);
    graph_forward(rt, fn, arg, &x0);
    runtime_sync(rt);
    runtime_step_reset(rt);
    Tensor x = runtime_input(rt, host_x, rt->dtype);
    runtime_sync(rt);
    size_t act = arena_capacity(&rt->act), scr = arena_capacity(&rt->scratch);
    ops_graph_begin(&rt->ctx.op);
    Tensor out = graph_forward(rt, fn, arg, &x);
    g->exec = ops_graph_end(&rt->ctx.op, g->why, sizeof g->why);
    if (g->exec && (arena_capacity(&rt->act) != act || arena_capacity(&rt->scratch) != scr)) {
        // an arena grew under capture: its next reset would move the memory the graph names
        ops_graph_free(&rt->ctx.op, g->exec);
        g->exec = NULL;
        snprintf(g->why, sizeof g->why, "the arenas grew during the capture");
    }
    g->in_data = x.data;
    g->out = out;
    g->act_bytes = arena_capacity(&rt->act);
}

Tensor runtime_graph_run(Runtime *rt, RuntimeGraph *g, const Tensor *host_x) {
    CX_ASSERT(g->exec && !memcmp(host_x->shape, g->shape, sizeof g->shape), "runtime_graph_run: no graph for this shape");
    runtime_step_reset(rt);
    CX_ASSERT(arena_capacity(&rt->act) == g->act_bytes, "runtime_graph_run: the activation arena moved since the capture "
              "(an eager run in between needed more)");
    Tensor x = runtime_input(rt, host_x, rt->dtype);   // the same allocations as at the capture: the same place
    CX_ASSERT(x.data == g->in_data, "runtime_graph_run: the input moved since the capture");
    ops_graph_launch(&rt->ctx.op, g->exec);
    Tensor h = tensor_new(&rt->host, DT_F32, g->out.ndim, g->out.shape);
    tensor_download(&h, &g->out);
    return h;
}

void runtime_graph_free(Runtime *rt, RuntimeGraph *g) {
    if (g->exec) ops_graph_free(&rt->ctx.op, g->exec);
    memset(g, 0, sizeof *g);
}

double runtime_mem_budget(const Runtime *rt, char *how, size_t n) {
    if (rt->device == DEV_CUDA) {
        size_t fr = 0, tot = 0;
        cx_dev_mem_info(&fr, &tot);
        const char *env = getenv("CAMOXPERT_GPU_MEMORY_LIMIT_MB");
        double lim = env && *env ? strtod(env, NULL) * 1048576.0 : 0;
        if (lim > 0 && lim < (double)fr) {   // a smaller card, or a share of this one
            snprintf(how, n, "CAMOXPERT_GPU_MEMORY_LIMIT_MB of the GPU's free memory");
            return lim;
        }
        snprintf(how, n, "free memory of the GPU");
        return (double)fr;
    }
    return (double)cx_mem_budget(how, n);
}
