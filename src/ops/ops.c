// ops.c — the public op dispatcher (ops.h). Every op of ops_list.h gets a
// run_<op> made here from the list: it picks the table of ctx's backend
// (OpsBackend, ops/backend.h) — on OPS_REF the reference instantiation of the
// tensors' dtype, on OPS_CPU the fast kernels, on OPS_CUDA the GPU plug-in's —
// calls the op's slot, and times it when ctx->prof is set. The public wrapper is
// made from the list too (GEN), after the op's pre_<op> below (PRE: argument
// checks, FLOP counting, the profile's variant), or written here (OWN: the ReLU
// tape, batchnorm_relu's reference composition, conv2d_backward's split timing).
#include "ops.h"
#include "backend.h"
#include <stdlib.h>
#include <string.h>
#if HAVE_CUDA
#include "cuda/cuda.h"
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>
#endif

// The open GPU's kernels (one GPU per process), set by ops_cuda_open.
static const OpsBackend *cuda_ops;

#if HAVE_CUDA
// The CUDA backend is a plug-in, build/libcamoxpert_cuda.so (ops/cuda/*.cu with
// cudart, linked against cuDNN and cuBLASLt), opened on the first call that needs
// it: a CPU run maps none of the GPU libraries (about 630 MB of address space and
// 160 MB resident when they were linked in). Searched: $CAMOXPERT_CUDA_PLUGIN, the
// program's directory, ../lib beside it (the GPU bundle), then the loader's path.
// The plug-in resolves the library's functions (arenas, errors, tensors) in the
// program, which exports them (-rdynamic). It exports one function, returning its
// CudaPlugin (ops/cuda/cuda.h): the kernel table and the GPU's other entry points.
static void *cuda_lib;
static const CudaPlugin *cuda_plug;   // the plug-in's table, once its op list is this program's
static char cuda_lib_err[600];
static pthread_once_t cuda_lib_once = PTHREAD_ONCE_INIT;

static void cuda_lib_open(void) {
    char exe[4096], dir[4096], path[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    dir[0] = 0;
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) { *slash = 0; snprintf(dir, sizeof dir, "%s", exe); }
    }
    const char *env = getenv("CAMOXPERT_CUDA_PLUGIN");
    for (int i = 0; i < 4 && !cuda_lib; i++) {
        if (i == 0 && !(env && *env)) continue;
        if ((i == 1 || i == 2) && !dir[0]) continue;
        if (i == 0) snprintf(path, sizeof path, "%s", env);
        else if (i == 1) snprintf(path, sizeof path, "%s/libcamoxpert_cuda.so", dir);
        else if (i == 2) snprintf(path, sizeof path, "%s/../lib/libcamoxpert_cuda.so", dir);
        else snprintf(path, sizeof path, "libcamoxpert_cuda.so");
        if (i != 3 && access(path, F_OK)) continue;
        cuda_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!cuda_lib) snprintf(cuda_lib_err, sizeof cuda_lib_err, "%s", dlerror());
    }
    if (!cuda_lib) {
        if (!cuda_lib_err[0])
            snprintf(cuda_lib_err, sizeof cuda_lib_err, "libcamoxpert_cuda.so is not beside the program (%s)", dir);
        return;
    }
    // A plug-in of another build would call its kernels with another list's arguments: refused.
    const CudaPlugin *(*get)(void) = (const CudaPlugin *(*)(void))dlsym(cuda_lib, "camoxpert_cuda_plugin");
    const CudaPlugin *p = get ? get() : NULL;
    if (p && !strcmp(p->op_list, ops_list_signature())) cuda_plug = p;
    else snprintf(cuda_lib_err, sizeof cuda_lib_err, "%.450s is from another build (%s): rebuild with make", path,
                  p ? "its op list differs from this program's" : "it has no camoxpert_cuda_plugin");
}

static const CudaPlugin *cuda_lib_get(void) {
    pthread_once(&cuda_lib_once, cuda_lib_open);
    return cuda_plug;
}

void ops_cuda_set_conv_impl(int impl) {
    if (cuda_lib_get()) *cuda_plug->conv_impl = impl;
}
#else
void ops_cuda_set_conv_impl(int impl) { (void)impl; }
#endif

// ---- profiling (ops.h) ---------------------------------------------------------
static double prof_tbytes(const Tensor *t) { return t ? (double)tensor_numel(t) * (double)dtype_size(t->dtype) : 0; }
// The bytes of one argument when it is a tensor, else 0; summed over an op's arguments.
#define PB_(a) prof_tbytes(_Generic((a), Tensor *: (a), const Tensor *: (a), default: (const Tensor *)0))
#define PB_1(a) PB_(a)
#define PB_2(a, ...) PB_(a) + PB_1(__VA_ARGS__)
#define PB_3(a, ...) PB_(a) + PB_2(__VA_ARGS__)
#define PB_4(a, ...) PB_(a) + PB_3(__VA_ARGS__)
#define PB_5(a, ...) PB_(a) + PB_4(__VA_ARGS__)
#define PB_6(a, ...) PB_(a) + PB_5(__VA_ARGS__)
#define PB_7(a, ...) PB_(a) + PB_6(__VA_ARGS__)
#define PB_8(a, ...) PB_(a) + PB_7(__VA_ARGS__)
#define PB_9(a, ...) PB_(a) + PB_8(__VA_ARGS__)
#define PB_10(a, ...) PB_(a) + PB_9(__VA_ARGS__)
#define PB_11(a, ...) PB_(a) + PB_10(__VA_ARGS__)
#define PB_12(a, ...) PB_(a) + PB_11(__VA_ARGS__)
#define PB_13(a, ...) PB_(a) + PB_12(__VA_ARGS__)
#define PB_14(a, ...) PB_(a) + PB_13(__VA_ARGS__)
#define PB_NTH(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, N, ...) N
#define PB_CAT_(a, b) a##b
#define PB_CAT(a, b) PB_CAT_(a, b)
#define PROF_BYTES(...) (PB_CAT(PB_, PB_NTH(__VA_ARGS__, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1))(__VA_ARGS__))

static double prof_begin(OpCtx *ctx) {
    ops_sync(ctx);
    return cx_time_s();
}

static void prof_end(OpCtx *ctx, const char *op, double t0, double bytes) {
    ops_sync(ctx);
    double dt = cx_time_s() - t0;
    OpProfile *p = ctx->prof;
    int i = 0;
    while (i < p->n && (strcmp(p->e[i].op, op) || strcmp(p->e[i].kind, p->pending_kind))) i++;
    if (i == p->n) {
        if (p->n == (int)(sizeof p->e / sizeof p->e[0])) i = p->n - 1;   // full: the last entry takes the rest
        else {
            p->n++;
            p->e[i] = (OpProfileEntry){ .op = op };
            snprintf(p->e[i].kind, sizeof p->e[i].kind, "%s", p->pending_kind);
        }
    }
    p->e[i].calls++;
    p->e[i].seconds += dt;
    p->e[i].flops += p->pending_flops;
    p->e[i].bytes += bytes;
    p->pending_flops = 0;
    p->pending_kind[0] = 0;
}

// Each op's name and kernel class, by op id.
static const struct { const char *name, *cls; } op_info[OP_COUNT] = {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) [OP_ID_##name] = { #name, cls },
#include "ops_list.h"
#undef OP
};

const char *op_profile_class(const OpProfileEntry *e) {
    for (int i = 0; i < OP_COUNT; i++)
        if (!strcmp(e->op, op_info[i].name)) {
            const char *cls = op_info[i].cls;
            if (!strcmp(cls, "convolution") && !strncmp(e->kind, "depthwise", 9)) return "depthwise conv";
            return cls;
        }
    return "element-wise";
}

int ops_backend_missing(const OpsBackend *b, char *buf, size_t n) {
    int missing = 0;
    size_t len = 0;
    buf[0] = 0;
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) \
    if (!b->name) { \
        if (len < n) len += (size_t)snprintf(buf + len, n - len, "%s" #name, missing ? ", " : ""); \
        missing++; \
    }
#include "ops_list.h"
#undef OP
    if (len >= n && n > 4) strcpy(buf + n - 4, "...");
    return missing;
}

// The table an op runs from: ctx's backend's, and on the reference backend the
// instantiation of t's dtype; t's device must be the backend's. cpu_both: the op's
// CPU kernel takes either table dtype and serves the reference backend too (its
// reference column in ops_list.h is CPU: the optimizer).
static const OpsBackend *ops_pick(const OpCtx *ctx, const Tensor *t, const char *op, int cpu_both) {
    switch (ctx->backend) {
    case OPS_CUDA:
        CX_ASSERT(t->device == DEV_CUDA, "%s: a host tensor given to the CUDA backend", op);
        CX_ASSERT(cuda_ops, "%s: OPS_CUDA on a context that ops_cuda_open did not open", op);
        return cuda_ops;
    case OPS_REF:
        CX_ASSERT(t->device == DEV_CPU, "%s: a GPU tensor given to the reference backend", op);
        if (cpu_both) return &ops_cpu;
        if (t->dtype == DT_F64) return &ops_ref_f64;
        CX_ASSERT(t->dtype == DT_F32, "%s: dtype %s (F32 or F64 expected)", op, dtype_name(t->dtype));
        return &ops_ref_f32;
    case OPS_CPU:
        CX_ASSERT(t->device == DEV_CPU, "%s: a GPU tensor given to the CPU backend", op);
        CX_ASSERT(cpu_both || t->dtype == DT_F32, "%s: dtype %s on the CPU backend (F32; F64 runs on the reference backend)",
                  op, dtype_name(t->dtype));
        return &ops_cpu;
    }
    CX_ASSERT(0, "%s: unknown backend %d", op, (int)ctx->backend);
    return NULL;
}
#define CPU_BOTH_REF 0
#define CPU_BOTH_CPU 1
#define CPU_BOTH_NONE 0

// ---- first-write gradients: deferred zeros (ops.h) ------------------------------------------
static void fill_zero(OpCtx *ctx, Tensor *t, const char *op);

static size_t zs_bytes(const Tensor *t) { return (size_t)tensor_numel(t) * dtype_size(t->dtype); }
static int zs_overlap(const Tensor *a, const Tensor *b) {
    const char *pa = a->data, *pb = b->data;
    return pa < pb + zs_bytes(b) && pb < pa + zs_bytes(a);
}
static void zs_remove(ZeroSet *z, int k) { z->e[k] = z->e[--z->n]; }
// The pending buffer that is exactly t's memory, or -1.
static int zs_exact(const ZeroSet *z, const Tensor *t) {
    for (int k = 0; k < z->n; k++)
        if (z->e[k].data == t->data && zs_bytes(&z->e[k]) == zs_bytes(t)) return k;
    return -1;
}
// Fills (and forgets) every pending buffer t overlaps; op names who needed it (profile).
static void zs_fill_overlapping(OpCtx *ctx, const Tensor *t, const char *op) {
    ZeroSet *z = ctx->zeros;
    if (!t || !t->data || !zs_bytes(t)) return;
    for (int k = 0; k < z->n;) {
        if (!zs_overlap(&z->e[k], t)) { k++; continue; }
        Tensor e = z->e[k];
        zs_remove(z, k);
        z->filled++;
        fill_zero(ctx, &e, op);
    }
}

static void zs_on_release(void *arg) {
    ZeroSet *z = arg;
    for (int k = 0; k < z->n;)
        if (arena_holds_range(z->arena, z->e[k].data, zs_bytes(&z->e[k]))) k++;
        else zs_remove(z, k), z->dropped++;
}

void zeroset_init(ZeroSet *z, Arena *arena) {
    memset(z, 0, sizeof *z);
    z->arena = arena;
    if (arena) {
        CX_ASSERT(!arena->on_release, "zeroset_init: the %s arena already has a release listener", arena->name);
        arena->on_release = zs_on_release;
        arena->on_release_arg = z;
    }
}

void zeroset_free(ZeroSet *z) {
    if (z->arena && z->arena->on_release_arg == z) z->arena->on_release = NULL, z->arena->on_release_arg = NULL;
    z->n = 0;
}

void ops_zeros_defer(OpCtx *ctx, const Tensor *t) {
    ZeroSet *z = ctx->zeros;
    const size_t bytes = zs_bytes(t);
    if (!t->data || !bytes) return;
    if (!z || z->n == ZEROSET_MAX || (z->arena && !arena_holds_range(z->arena, t->data, bytes))) {
        fill(ctx, (Tensor *)t, 0);
        return;
    }
    for (int k = 0; k < z->n;)   // memory taken again for a new buffer: the old one is dead
        if (zs_overlap(&z->e[k], t)) zs_remove(z, k);
        else k++;
    int64_t n = tensor_numel(t);
    Tensor e = tensor_view(t->data, t->dtype, 1, &n);
    e.device = t->device;
    z->e[z->n++] = e;
    z->deferred++;
}

void ops_zeros_touch(OpCtx *ctx, const Tensor *t) {
    if (ctx->zeros && ctx->zeros->n) zs_fill_overlapping(ctx, t, "host access");
}

void ops_zeros_flush(OpCtx *ctx) {
    ZeroSet *z = ctx->zeros;
    while (z && z->n) {
        Tensor e = z->e[z->n - 1];
        z->n--;
        z->filled++;
        fill_zero(ctx, &e, "flush");
    }
}

// Whether t, an accumulated output of an op whose wrapper can turn the accumulation
// into a write (gemm_batched's beta, channels_copy's accumulate flag), is exactly one
// pending buffer that none of the op's other tensors overlaps; if so it is forgotten
// (the op writes all of it).
static int zs_claim(OpCtx *ctx, const Tensor *t, const Tensor *const *others, int n) {
    ZeroSet *z = ctx->zeros;
    if (!z || !z->n || !t || !t->data) return 0;
    int k = zs_exact(z, t);
    if (k < 0) return 0;
    for (int i = 0; i < n; i++)
        if (others[i] && others[i]->data && zs_overlap(others[i], t)) return 0;
    zs_remove(z, k);
    z->written++;
    return 1;
}

// Before an op's kernel: ta are its tensor arguments (NULL for the others), fw those
// the list's first column names. A first-write output that is exactly one pending
// buffer, which no other argument overlaps, goes in ctx->write (the kernel writes it);
// every other pending buffer an argument overlaps is filled now.
static void zeros_prepare(OpCtx *ctx, const char *op, const Tensor *const *ta, int nt, const Tensor *const *fw,
                          int nfw) {
    ZeroSet *z = ctx->zeros;
    for (int i = 0; i < nt; i++) {
        const Tensor *t = ta[i];
        if (!t || !t->data) continue;
        int first = 0, k;
        for (int j = 0; j < nfw && !first; j++) first = fw[j] == t;
        if (first && ctx->nwrite < OP_MAX_WRITES && (k = zs_exact(z, t)) >= 0) {
            int others = 0;
            for (int j = 0; j < nt; j++) others += j != i && ta[j] && ta[j]->data && zs_overlap(ta[j], &z->e[k]);
            if (!others) {
                zs_remove(z, k);
                z->written++;
                ctx->write[ctx->nwrite++] = t;
                continue;
            }
        }
        zs_fill_overlapping(ctx, t, op);
    }
}

// An op's tensor arguments as `const Tensor *`, NULL in the place of the others.
#define ZT_(a) _Generic((a), Tensor *: (a), const Tensor *: (a), default: (const Tensor *)0)
#define ZT_1(a) ZT_(a)
#define ZT_2(a, ...) ZT_(a), ZT_1(__VA_ARGS__)
#define ZT_3(a, ...) ZT_(a), ZT_2(__VA_ARGS__)
#define ZT_4(a, ...) ZT_(a), ZT_3(__VA_ARGS__)
#define ZT_5(a, ...) ZT_(a), ZT_4(__VA_ARGS__)
#define ZT_6(a, ...) ZT_(a), ZT_5(__VA_ARGS__)
#define ZT_7(a, ...) ZT_(a), ZT_6(__VA_ARGS__)
#define ZT_8(a, ...) ZT_(a), ZT_7(__VA_ARGS__)
#define ZT_9(a, ...) ZT_(a), ZT_8(__VA_ARGS__)
#define ZT_10(a, ...) ZT_(a), ZT_9(__VA_ARGS__)
#define ZT_11(a, ...) ZT_(a), ZT_10(__VA_ARGS__)
#define ZT_12(a, ...) ZT_(a), ZT_11(__VA_ARGS__)
#define ZT_13(a, ...) ZT_(a), ZT_12(__VA_ARGS__)
#define ZT_14(a, ...) ZT_(a), ZT_13(__VA_ARGS__)
#define ZT_LIST(...) PB_CAT(ZT_, PB_NTH(__VA_ARGS__, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1))(__VA_ARGS__)
#define ZT_EXPAND(...) __VA_ARGS__

// run_<op>: the op on ctx's backend, timed when ctx->prof is set. Pending deferred zeros
// among its arguments are written by the kernel or filled first (zeros_prepare); the
// write list is the call's own (a kernel that calls an op leaves it as it found it).
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) \
    static void run_##name params { \
        const Tensor *saved_w_[OP_MAX_WRITES] = { 0 }; \
        const int saved_n_ = ctx->nwrite; \
        if (saved_n_) memcpy(saved_w_, ctx->write, sizeof saved_w_); \
        ctx->nwrite = 0; \
        if (ctx->calls) ++*ctx->calls; \
        if (ctx->zeros && ctx->zeros->n) { \
            const Tensor *fw_[] = { NULL, ZT_EXPAND fw }; \
            const Tensor *ta_[] = { ZT_LIST args }; \
            zeros_prepare(ctx, #name, ta_, (int)(sizeof ta_ / sizeof *ta_), fw_ + 1, (int)(sizeof fw_ / sizeof *fw_) - 1); \
        } \
        double prof_t0_ = ctx->prof ? prof_begin(ctx) : 0; \
        if (ctx->calls) (*ctx->calls)++; \
        const OpsBackend *b_ = ops_pick(ctx, by, #name, CPU_BOTH_##ref); \
        CX_ASSERT(b_->name, #name ": the %s backend has no kernel for it", ops_backend_name(ctx->backend)); \
        b_->name args; \
        if (ctx->prof) prof_end(ctx, #name, prof_t0_, PROF_BYTES args); \
        ctx->nwrite = saved_n_; \
        if (saved_n_) memcpy(ctx->write, saved_w_, sizeof saved_w_); \
    }
#include "ops_list.h"
#undef OP

// A deferred zero filled because op needs it: a fill of its own in the profile, its
// variant naming the op ("for conv2d_backward"), the op's own pending profile kept.
static void fill_zero(OpCtx *ctx, Tensor *t, const char *op) {
    OpProfile *p = ctx->prof;
    double flops = 0;
    char kind[sizeof p->pending_kind] = "";
    if (p) {
        flops = p->pending_flops;
        memcpy(kind, p->pending_kind, sizeof kind);
        p->pending_flops = 0;
        snprintf(p->pending_kind, sizeof p->pending_kind, "for %s", op);
    }
    run_fill(ctx, t, 0);
    if (p) {
        p->pending_flops = flops;
        memcpy(p->pending_kind, kind, sizeof kind);
    }
}

int ops_fuse(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("CAMOXPERT_FUSE");
        v = !(e && !strcmp(e, "0"));
    }
    return v;
}

const char *ops_backend_name(ops_backend b) {
    static const char *names[] = { "cpu", "reference", "cuda" };
    return (unsigned)b < 3 ? names[b] : "?";
}

int ops_cuda_device_count(char *why, size_t n) {
#if HAVE_CUDA
    if (!cuda_lib_get()) {
        if (why) snprintf(why, n, "the CUDA plug-in could not be loaded: %s", cuda_lib_err);
        return 0;
    }
    return cuda_plug->device_count(why, n);
#else
    if (why) snprintf(why, n, "this camoxpert was built without CUDA (nvcc was not found, or USE_CUDA=0)");
    return 0;
#endif
}

const char *ops_cuda_arch_list(void) {
#if HAVE_CUDA
    return cuda_lib_get() ? cuda_plug->arch_list() : NULL;
#else
    return NULL;
#endif
}

cx_status ops_cuda_open(OpCtx *ctx, int gpu) {
#if HAVE_CUDA
    if (!cuda_lib_get())
        return CX_FAIL(CX_ELIB, "--device cuda: the CUDA plug-in could not be loaded: %s; rebuild with make (it "
                       "writes build/libcamoxpert_cuda.so beside the program), or use --device cpu", cuda_lib_err);
    char missing[1024];
    int n = ops_backend_missing(cuda_plug->ops, missing, sizeof missing);
    if (n)
        return CX_FAIL(CX_ELIB, "--device cuda: the CUDA plug-in has no kernel for %d op%s: %s; each needs its cuda_<op> "
                       "in src/ops/cuda/ (docs/ARCHITECTURE.md), or use --device cpu", n, n == 1 ? "" : "s", missing);
    CX_TRY(cuda_plug->open(&ctx->cuda, gpu));
    cuda_ops = cuda_plug->ops;
    ctx->backend = OPS_CUDA;
    return CX_OK;
#else
    (void)ctx, (void)gpu;
    return CX_FAIL(CX_EARG, "--device cuda: this camoxpert was built without CUDA (nvcc was not found, or USE_CUDA=0); "
                   "rebuild with the CUDA toolkit installed, or use --device cpu");
#endif
}

void ops_cuda_close(OpCtx *ctx) {
#if HAVE_CUDA
    if (ctx->cuda) cuda_plug->close(ctx->cuda);
#endif
    ctx->cuda = NULL;
}

void ops_cuda_describe(const OpCtx *ctx, char *buf, size_t n) {
#if HAVE_CUDA
    if (ctx->cuda) { cuda_plug->describe(ctx->cuda, buf, n); return; }
#endif
    (void)ctx;
    snprintf(buf, n, "no GPU");
}

void ops_sync(OpCtx *ctx) {
#if HAVE_CUDA
    if (ctx->backend == OPS_CUDA) cuda_plug->sync(ctx->cuda);
#endif
    (void)ctx;
}

void ops_graph_begin(OpCtx *ctx) {
    CX_ASSERT(ctx->backend == OPS_CUDA, "ops_graph_begin: CUDA graphs need the CUDA backend");
#if HAVE_CUDA
    cuda_plug->graph_begin(ctx->cuda);
#endif
}

void *ops_graph_end(OpCtx *ctx, char *why, size_t n) {
#if HAVE_CUDA
    if (ctx->backend == OPS_CUDA) return cuda_plug->graph_end(ctx->cuda, why, n);
#endif
    (void)ctx;
    snprintf(why, n, "no GPU");
    return NULL;
}

void ops_graph_launch(OpCtx *ctx, void *graph) {
#if HAVE_CUDA
    if (ctx->backend == OPS_CUDA && graph) { cuda_plug->graph_launch(ctx->cuda, graph); return; }
#endif
    (void)ctx, (void)graph;
    CX_ASSERT(0, "ops_graph_launch: no graph");
}

void ops_graph_free(OpCtx *ctx, void *graph) {
#if HAVE_CUDA
    if (ctx->backend == OPS_CUDA && graph) cuda_plug->graph_destroy(graph);
#endif
    (void)ctx, (void)graph;
}

void ops_photo_input(OpCtx *ctx, Tensor *y, const Tensor *src, const Tensor *box, const float mean[3], const float std[3]) {
    CX_ASSERT(ctx->backend == OPS_CUDA && src->dtype == DT_U8 && box->dtype == DT_I64 && y->ndim == 4 && T_C(y) == 3 &&
              T_H(y) == T_W(y) && box->shape[0] == T_N(y), "ops_photo_input: shapes or dtypes");
#if HAVE_CUDA
    cuda_plug->photo_input(ctx, y, src, box, mean, std);
#endif
    (void)mean, (void)std;
}

void ops_mask_export(OpCtx *ctx, Tensor *dst, const Tensor *logits, const Tensor *box) {
    CX_ASSERT(ctx->backend == OPS_CUDA && dst->dtype == DT_U8 && logits->dtype == DT_F32 && box->dtype == DT_I64 &&
              logits->ndim == 4 && T_C(logits) == 1 && box->shape[0] == T_N(logits), "ops_mask_export: shapes or dtypes");
#if HAVE_CUDA
    cuda_plug->mask_export(ctx, dst, logits, box);
#endif
}

cx_status ops_jpeg_open(OpCtx *ctx, void **dec, char *desc, size_t n) {
    *dec = NULL;
#if HAVE_CUDA
    if (ctx->backend == OPS_CUDA && ctx->cuda) return cuda_plug->jpeg_open(ctx->cuda, dec, desc, n);
#endif
    (void)ctx, (void)desc, (void)n;
    return CX_FAIL(CX_EARG, "nvJPEG: no GPU is open");
}

int ops_jpeg_supported(void *dec, const uint8_t *data, size_t n) {
#if HAVE_CUDA
    if (dec) return cuda_plug->jpeg_supported(dec, data, n);
#endif
    (void)dec, (void)data, (void)n;
    return 0;
}

cx_status ops_jpeg_decode(OpCtx *ctx, void *dec, int n, const uint8_t *const *data, const size_t *len, uint8_t *const *dst,
                          const int *w, const int *h) {
#if HAVE_CUDA
    if (dec && ctx->backend == OPS_CUDA) return cuda_plug->jpeg_decode(ctx->cuda, dec, n, data, len, dst, w, h);
#endif
    (void)ctx, (void)dec, (void)n, (void)data, (void)len, (void)dst, (void)w, (void)h;
    return CX_FAIL(CX_EINTERNAL, "ops_jpeg_decode: no decoder");
}

void ops_jpeg_close(void *dec) {
#if HAVE_CUDA
    if (dec) cuda_plug->jpeg_close(dec);
#endif
    (void)dec;
}

#if HAVE_CUDA
#define NCCL_PLUGIN_OR_FAIL() \
    if (!cuda_lib_get()) return CX_FAIL(CX_ELIB, "several GPUs: the CUDA plug-in could not be loaded: %s", cuda_lib_err)
cx_status ops_nccl_version(int *version) {
    NCCL_PLUGIN_OR_FAIL();
    return cuda_plug->nccl_version(version);
}
cx_status ops_nccl_unique_id(unsigned char id[128]) {
    NCCL_PLUGIN_OR_FAIL();
    return cuda_plug->nccl_unique_id(id);
}
cx_status ops_nccl_open(OpCtx *ctx, void **comm, const unsigned char id[128], int rank, int world) {
    CX_ASSERT(ctx->backend == OPS_CUDA && ctx->cuda, "ops_nccl_open: the GPU is not open");
    return cuda_plug->nccl_open(ctx->cuda, comm, id, rank, world);
}
cx_status ops_nccl_allreduce_sum(OpCtx *ctx, void **comm, Tensor *buf, double timeout_s,
                                 const volatile sig_atomic_t *stop) {
    CX_ASSERT(ctx->backend == OPS_CUDA && buf->device == DEV_CUDA && buf->dtype == DT_F32,
              "ops_nccl_allreduce_sum: a float32 GPU tensor");
    return cuda_plug->nccl_allreduce_sum(ctx->cuda, comm, buf->data, tensor_numel(buf), timeout_s, stop);
}
cx_status ops_nccl_allreduce_start(OpCtx *ctx, void **comm, Tensor *buf) {
    CX_ASSERT(ctx->backend == OPS_CUDA && buf->device == DEV_CUDA && buf->dtype == DT_F32,
              "ops_nccl_allreduce_start: a float32 GPU tensor");
    return cuda_plug->nccl_allreduce_start(ctx->cuda, comm, buf->data, tensor_numel(buf));
}
cx_status ops_nccl_wait(OpCtx *ctx, void **comm, double timeout_s, const volatile sig_atomic_t *stop) {
    CX_ASSERT(ctx->backend == OPS_CUDA, "ops_nccl_wait: the GPU is not open");
    return cuda_plug->nccl_wait(ctx->cuda, comm, timeout_s, stop);
}
void ops_nccl_close(void *comm) {
    if (comm) cuda_plug->nccl_close(comm, 0);
}
#else
static cx_status no_nccl(void) {
    return CX_FAIL(CX_EARG, "several GPUs: this camoxpert was built without CUDA (nvcc was not found, or USE_CUDA=0)");
}
cx_status ops_nccl_version(int *version) { *version = 0; return no_nccl(); }
cx_status ops_nccl_unique_id(unsigned char id[128]) { (void)id; return no_nccl(); }
cx_status ops_nccl_open(OpCtx *ctx, void **comm, const unsigned char id[128], int rank, int world) {
    (void)ctx, (void)comm, (void)id, (void)rank, (void)world;
    return no_nccl();
}
cx_status ops_nccl_allreduce_sum(OpCtx *ctx, void **comm, Tensor *buf, double timeout_s,
                                 const volatile sig_atomic_t *stop) {
    (void)ctx, (void)comm, (void)buf, (void)timeout_s, (void)stop;
    return no_nccl();
}
cx_status ops_nccl_allreduce_start(OpCtx *ctx, void **comm, Tensor *buf) {
    (void)ctx, (void)comm, (void)buf;
    return no_nccl();
}
cx_status ops_nccl_wait(OpCtx *ctx, void **comm, double timeout_s, const volatile sig_atomic_t *stop) {
    (void)ctx, (void)comm, (void)timeout_s, (void)stop;
    return no_nccl();
}
void ops_nccl_close(void *comm) { (void)comm; }
#endif

// ---- pre_<op>: what a PRE op's wrapper does before the op runs ------------------------
// Profiling: the convolution's variant and its FLOPs (ops.h).
static void prof_conv(OpCtx *ctx, const Tensor *y, const Tensor *x, const Tensor *w, ConvArgs a, int grads) {
    OpProfile *p = ctx->prof;
    if (!p) return;
    p->pending_flops = 2.0 * grads * (double)tensor_numel(y) * (double)(w->shape[1] * w->shape[2] * w->shape[3]);
    const int k = (int)w->shape[2];
    if (a.groups > 1 && a.groups == x->shape[3]) snprintf(p->pending_kind, sizeof p->pending_kind, "depthwise %dx%d", k, k);
    else if (a.groups > 1) snprintf(p->pending_kind, sizeof p->pending_kind, "grouped %dx%d", k, k);
    else if (a.dil > 1) snprintf(p->pending_kind, sizeof p->pending_kind, "%dx%d dil %d", k, k, a.dil);
    else snprintf(p->pending_kind, sizeof p->pending_kind, "%dx%d%s", k, k, a.stride > 1 ? " strided" : "");
    if (p->shapes) {
        const size_t n = strlen(p->pending_kind);
        snprintf(p->pending_kind + n, sizeof p->pending_kind - n, " %lldx%lld %lld->%lld", (long long)x->shape[1],
                 (long long)x->shape[2], (long long)x->shape[3], (long long)w->shape[0]);
    }
}

static void pre_conv2d_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a) {
    if (ctx->macs) *ctx->macs += (double)tensor_numel(y) * (double)(w->shape[1] * w->shape[2] * w->shape[3]);
    prof_conv(ctx, y, x, w, a, 1);
}
static void pre_linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b) {
    if (ctx->macs) *ctx->macs += (double)tensor_numel(y) * (double)w->shape[1];
    if (ctx->prof) ctx->prof->pending_flops = 2.0 * (double)tensor_numel(y) * (double)w->shape[1];
}
static void pre_linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                                const Tensor *w) {
    if (ctx->prof) ctx->prof->pending_flops = 2.0 * ((dx != NULL) + (dw != NULL)) * (double)tensor_numel(dy) * (double)w->shape[1];
}
static void pre_add_forward(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b) {
    CX_ASSERT(tensor_numel(a) == tensor_numel(b) && tensor_numel(a) == tensor_numel(y), "add: sizes differ");
}
static void pre_axpy(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x) {
    CX_ASSERT(tensor_numel(x) == tensor_numel(y), "axpy: sizes differ");
}
static void pre_copy(OpCtx *ctx, Tensor *dst, const Tensor *src) {
    CX_ASSERT(tensor_numel(dst) == tensor_numel(src), "copy: %lld vs %lld elements", (long long)tensor_numel(dst),
              (long long)tensor_numel(src));
    CX_ASSERT(dst->device == src->device, "copy: between devices (use tensor_upload/tensor_download)");
}
static void pre_rows_add_bcast(OpCtx *ctx, Tensor *y, const Tensor *b) {
    CX_ASSERT(tensor_numel(b) > 0 && tensor_numel(y) % tensor_numel(b) == 0, "rows_add_bcast: %lld elements into %lld",
              (long long)tensor_numel(b), (long long)tensor_numel(y));
}
static void pre_rows_sum(OpCtx *ctx, Tensor *db, const Tensor *dy) {
    CX_ASSERT(tensor_numel(db) > 0 && tensor_numel(dy) % tensor_numel(db) == 0, "rows_sum: %lld elements into %lld",
              (long long)tensor_numel(dy), (long long)tensor_numel(db));
}
static void pre_topk_rows(OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k) {
    CX_ASSERT(!idx || idx->dtype == DT_I32, "topk_rows: idx must be I32");
}
static void pre_rows_gather(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx) {
    CX_ASSERT(idx->dtype == DT_I32 && dst->shape[0] == tensor_numel(idx), "rows_gather: idx I32 (n), dst (n, ...)");
}
static void pre_rows_scatter_add(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w) {
    CX_ASSERT(idx->dtype == DT_I32 && src->shape[0] == tensor_numel(idx), "rows_scatter_add: idx I32 (n), src (n, ...)");
}
static void pre_rows_gather_sum(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr, const Tensor *list,
                                const Tensor *w) {
    CX_ASSERT(ptr->dtype == DT_I32 && list->dtype == DT_I32 && tensor_numel(ptr) == dst->shape[0] + 1,
              "rows_gather_sum: ptr I32 (rows+1), list I32 (n)");
    CX_ASSERT(!w || tensor_numel(w) == tensor_numel(list), "rows_gather_sum: w must have one weight per list entry");
    CX_ASSERT(tensor_numel(dst) / (dst->shape[0] ? dst->shape[0] : 1) == tensor_numel(src) / (src->shape[0] ? src->shape[0] : 1),
              "rows_gather_sum: dst and src rows differ in size");
}
static void pre_route_topk_plan(OpCtx *ctx, Tensor *idx, Tensor *w, Tensor *plan, Tensor *plan_w, const Tensor *probs,
                               const double *sel) {
    const int64_t U = probs->shape[0], E = probs->ndim == 2 ? probs->shape[1] : 0, k = idx->ndim == 2 ? idx->shape[1] : 0;
    const int64_t P = U * k;
    CX_ASSERT(probs->ndim == 2 && E >= 1 && E <= MOE_ROUTE_MAX_E && k >= 1 && k <= E, "route_topk_plan: probs (U,E) with "
              "E <= %d, idx (U,k) with k <= E", MOE_ROUTE_MAX_E);
    CX_ASSERT(idx->dtype == DT_I32 && idx->shape[0] == U && tensor_numel(w) == P && w->dtype == probs->dtype,
              "route_topk_plan: idx I32 (U,k), w (U,k) in probs's dtype");
    CX_ASSERT(plan->dtype == DT_I32 && tensor_numel(plan) == 3 * P + U + 1 && plan_w->dtype == probs->dtype &&
              tensor_numel(plan_w) == 2 * P, "route_topk_plan: plan I32 (3·U·k + U + 1), plan_w (2·U·k)");
}
static void pre_route_topk_backward(OpCtx *ctx, Tensor *dlogits, const Tensor *dw, const Tensor *idx, const Tensor *probs,
                                   const Tensor *logits, int lb, double cb) {
    const int64_t U = probs->shape[0], E = probs->ndim == 2 ? probs->shape[1] : 0, k = idx->ndim == 2 ? idx->shape[1] : 0;
    CX_ASSERT(probs->ndim == 2 && E >= 1 && E <= MOE_ROUTE_MAX_E && idx->dtype == DT_I32 && idx->shape[0] == U &&
              k >= 1 && k <= E, "route_topk_backward: probs (U,E) with E <= %d, idx I32 (U,k)", MOE_ROUTE_MAX_E);
    CX_ASSERT(tensor_numel(dlogits) == U * E && tensor_numel(logits) == U * E && dlogits->dtype == probs->dtype &&
              logits->dtype == probs->dtype && (!dw || (tensor_numel(dw) == U * k && dw->dtype == probs->dtype)),
              "route_topk_backward: dlogits, logits (U,E) and dw (U,k) in probs's dtype");
    CX_ASSERT(lb >= MOE_LB_NONE && lb <= MOE_LB_ZLOSS, "route_topk_backward: balancing term %d", lb);
}

// ---- the public wrappers of GEN and PRE ops ---------------------------------------------
#define WRAP_GEN(name, params, args) void name params { run_##name args; }
#define WRAP_PRE(name, params, args) void name params { pre_##name args; run_##name args; }
#define WRAP_OWN(name, params, args)
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) WRAP_##wrap(name, params, args)
#include "ops_list.h"
#undef OP

// ---- the OWN ops' wrappers -------------------------------------------------------------
void conv2d_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                     const Tensor *w, ConvArgs a) {
    if (ctx->prof && dx && (dw || db)) {   // profiled: the input gradient and the weight gradient timed apart
        conv2d_backward(ctx, dx, NULL, NULL, dy, x, w, a);
        conv2d_backward(ctx, NULL, dw, db, dy, x, w, a);
        return;
    }
    prof_conv(ctx, dy, x, w, a, (dx != NULL) + (dw != NULL));
    if (ctx->prof) {
        const size_t n = strlen(ctx->prof->pending_kind);
        snprintf(ctx->prof->pending_kind + n, sizeof ctx->prof->pending_kind - n, "%s", dx ? " dx" : " dw");
    }
    run_conv2d_backward(ctx, dx, dw, db, dy, x, w, a);
}

// Batch counts below 1 count as 1 (GemmArgs); the kernels see them normalised. A C
// that is a deferred zero and that the batch covers whole (contiguous blocks, one
// after the other) is written with beta 0: beta·0 adds nothing.
void gemm_batched(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g) {
    GemmArgs a = *g;
    if (a.nb1 < 1) a.nb1 = 1;
    if (a.nb2 < 1) a.nb2 = 1;
    const int64_t mn = (int64_t)a.M * a.N;
    const int covers = a.offc == 0 && a.ldc == a.N && (a.nb2 == 1 || a.sc2 == mn) &&
                       (a.nb1 == 1 || a.sc1 == mn * a.nb2) && tensor_numel(C) == mn * a.nb1 * a.nb2;
    const Tensor *ab[2] = { A, B };
    if (covers && zs_claim(ctx, C, ab, 2)) a.beta = 0;
    if (ctx->macs) *ctx->macs += (double)a.M * a.N * a.K * a.nb1 * a.nb2;
    if (ctx->prof) ctx->prof->pending_flops = 2.0 * a.M * a.N * a.K * a.nb1 * a.nb2;
    run_gemm_batched(ctx, C, A, B, &a);
}

// A copy that adds into all of a deferred zero's channels writes them instead.
void channels_copy(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate) {
    CX_ASSERT(dst->dtype == src->dtype, "channels_copy: dtypes differ");
    const Tensor *others[1] = { src };
    if (accumulate && dc0 == 0 && nc == dst->shape[dst->ndim - 1] && zs_claim(ctx, dst, others, 1)) accumulate = 0;
    run_channels_copy(ctx, dst, dc0, src, sc0, nc, accumulate);
}

// The loss's maps and masks are inside its two structs, where run_cod_loss does not
// look for deferred zeros: they are filled here.
void cod_loss(OpCtx *ctx, Tensor *terms, const CodLossGrad *g, const CodLossIn *in) {
    CX_ASSERT(tensor_numel(terms) == CL_TERMS, "cod_loss: terms has %lld elements", (long long)tensor_numel(terms));
    if (ctx->zeros && ctx->zeros->n) {
        const Tensor *all[] = { in->pred, in->fg, in->search, in->unc, in->refine0, in->deep[0], in->deep[1],
                                in->deep[2], in->mask, in->deep_mask[0], in->deep_mask[1], in->deep_mask[2],
                                g ? g->pred : NULL, g ? g->fg : NULL, g ? g->search : NULL, g ? g->unc : NULL,
                                g ? g->refine0 : NULL, g ? g->deep[0] : NULL, g ? g->deep[1] : NULL,
                                g ? g->deep[2] : NULL };
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) zs_fill_overlapping(ctx, all[i], "cod_loss");
    }
    run_cod_loss(ctx, terms, g, in);
}

// The fused pair on the CPU and GPU; on the reference backend, and while a ReluTape
// records or replays, batchnorm then relu through their own wrappers.
void batchnorm_relu_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                            const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                            int training, double momentum, double eps) {
    if (ctx->backend != OPS_REF && !ctx->relu_tape) {
        run_batchnorm_relu_forward(ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training,
                                   momentum, eps);
        return;
    }
    batchnorm_forward(ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training, momentum, eps);
    relu_forward(ctx, y, y);
}
void batchnorm_relu_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *y,
                             const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                             const Tensor *gamma, int training) {
    if (ctx->backend != OPS_REF) {
        run_batchnorm_relu_backward(ctx, dx, dgamma, dbeta, dy, y, x, save_mean, save_invstd, gamma, training);
        return;
    }
    ArenaMark m = arena_mark(ctx->scratch);
    Tensor g = tensor_like(ctx->scratch, dy);
    fill(ctx, &g, 0);
    relu_backward(ctx, &g, dy, y);
    batchnorm_backward(ctx, dx, dgamma, dbeta, &g, x, save_mean, save_invstd, gamma, training);
    arena_release(ctx->scratch, m);
}

// ---- the ReLU tape (ops_types.h) ------------------------------------------------------------
void relu_tape_rewind(ReluTape *t, int replay) {
    t->replay = replay;
    t->pos = t->differed = 0;
    if (!replay) t->n = 0;
}

void relu_tape_free(ReluTape *t) {
    free(t->keep);
    memset(t, 0, sizeof *t);
}

// The element values of x (F32 or F64, host or GPU) as doubles in a malloc'd buffer.
static double *relu_tape_values(const Tensor *x) {
    int64_t n = tensor_numel(x);
    double *v = cx_malloc(sizeof(double) * (size_t)(n ? n : 1));
    CX_ASSERT(x->dtype == DT_F32 || x->dtype == DT_F64, "relu tape: dtype %s (F32 or F64)", dtype_name(x->dtype));
    Tensor h = *x;
    void *buf = NULL;
    if (x->device == DEV_CUDA) {
        buf = cx_malloc(dtype_size(x->dtype) * (size_t)(n ? n : 1));
        h = tensor_view(buf, x->dtype, x->ndim, x->shape);
        tensor_download(&h, x);
    }
    for (int64_t i = 0; i < n; i++) v[i] = h.dtype == DT_F64 ? tensor_f64(&h)[i] : tensor_f32(&h)[i];
    free(buf);
    return v;
}

static void relu_tape_forward(OpCtx *ctx, ReluTape *t, Tensor *y, const Tensor *x) {
    ops_zeros_touch(ctx, x);   // read and written on the host below
    ops_zeros_touch(ctx, y);
    int64_t n = tensor_numel(x);
    double *v = relu_tape_values(x);
    if (!t->replay) {
        if (t->n + n > t->cap) {
            t->cap = (t->n + n) * 2;
            t->keep = cx_realloc(t->keep, (size_t)t->cap);
        }
        for (int64_t i = 0; i < n; i++) t->keep[t->n + i] = v[i] > 0;
        t->n += n;
        free(v);
        run_relu_forward(ctx, y, x);
        return;
    }
    CX_ASSERT(t->pos + n <= t->n, "relu tape: the replaying pass made more ReLU calls than the recording one");
    for (int64_t i = 0; i < n; i++) {
        int keep = t->keep[t->pos + i];
        t->differed += keep != (v[i] > 0);
        v[i] = keep ? (v[i] > 1e-30 ? v[i] : 1e-30) : 0;
    }
    t->pos += n;
    void *buf = cx_malloc(dtype_size(y->dtype) * (size_t)(n ? n : 1));
    Tensor h = tensor_view(buf, y->dtype, y->ndim, y->shape);
    for (int64_t i = 0; i < n; i++) {
        if (h.dtype == DT_F64) tensor_f64(&h)[i] = v[i];
        else tensor_f32(&h)[i] = (float)v[i];
    }
    if (y->device == DEV_CUDA) tensor_upload(y, &h);
    else memcpy(y->data, buf, dtype_size(y->dtype) * (size_t)n);
    free(buf);
    free(v);
}

void relu_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    if (ctx->relu_tape) relu_tape_forward(ctx, ctx->relu_tape, y, x);
    else run_relu_forward(ctx, y, x);
}

// ---- concat: channel copies -----------------------------------------------------------------
void concat_forward(OpCtx *ctx, Tensor *y, const Tensor *const *xs, int n) {
    int c0 = 0;
    for (int i = 0; i < n; i++) {
        int nc = (int)xs[i]->shape[xs[i]->ndim - 1];
        channels_copy(ctx, y, c0, xs[i], 0, nc, 0);
        c0 += nc;
    }
    CX_ASSERT(c0 == y->shape[y->ndim - 1], "concat: inputs have %d channels, output %lld", c0,
              (long long)y->shape[y->ndim - 1]);
}
void concat_backward(OpCtx *ctx, Tensor *const *dxs, int n, const Tensor *dy) {
    int c0 = 0;
    for (int i = 0; i < n; i++) {
        if (!dxs[i]) {   // the widths of NULL entries are unknown: only trailing ones may be NULL
            for (int j = i + 1; j < n; j++) CX_ASSERT(!dxs[j], "concat_backward: NULL entry %d before a non-NULL one", i);
            break;
        }
        int nc = (int)dxs[i]->shape[dxs[i]->ndim - 1];
        channels_copy(ctx, dxs[i], 0, dy, c0, nc, 1);
        c0 += nc;
    }
}
