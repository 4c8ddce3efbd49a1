// backend.cu — opening a GPU: device selection, the cuBLASLt and cuDNN
// handles, the cuBLASLt workspace, and core's device-memory hooks
// (core/device.h: cudaMalloc, synchronous copies on the legacy stream), and CUDA
// graphs of a captured forward.
//
// The compute stream is a created, blocking stream (not the legacy default one, on
// which no graph can be captured): the synchronous copies on the legacy stream still
// wait for its work and it for theirs, as before.
// A machine without a driver or GPU is not an error until a GPU is asked for:
// cuda_device_count says why there is none. A card the plug-in holds no code for
// (GPU_ARCH in the Makefile) is refused when it is opened, in one line naming the
// card, its compute capability and the GPU_ARCH to build with.
#include "ops/cuda/common.cuh"
#include <dlfcn.h>
#include <string.h>

#ifndef CX_GPU_ARCHS
#define CX_GPU_ARCHS "?"   // the Makefile passes GPU_ARCH's list
#endif
#define CX_STR_(...) #__VA_ARGS__
#define CX_STR(...) CX_STR_(__VA_ARGS__)

// The GPU code this plug-in holds: "sm_80 sm_86 sm_89 sm_90 compute_90", or with
// GPU_ARCH=native the architectures nvcc found ("native: sm_89").
extern "C" const char *cuda_arch_list(void) {
    static char list[256];
    if (strcmp(CX_GPU_ARCHS, "native")) return CX_GPU_ARCHS;
    if (!list[0]) {
#ifdef __CUDA_ARCH_LIST__
        const char *a = CX_STR(__CUDA_ARCH_LIST__);   // "890" or "800,900"
#else
        const char *a = "";
#endif
        snprintf(list, sizeof list, "native:");
        for (const char *p = a; *p;) {
            const int v = atoi(p);
            snprintf(list + strlen(list), sizeof list - strlen(list), " sm_%d", v / 10);
            p += strcspn(p, ",");
            p += *p == ',';
        }
    }
    return list;
}

// A kernel whose presence for the open card says the plug-in holds code it can run.
__global__ static void arch_probe(void) {}

#define LT_WORKSPACE (32u << 20)   // cuBLASLt's recommended 32 MiB on Hopper

void cuda_fatal(const char *file, int line, const char *what, const char *msg) {
    fprintf(stderr, "%s:%d: CUDA error: %s failed: %s\n", file, line, what, msg);
    fflush(stderr);
    abort();
}

// ---- core's device hooks ------------------------------------------------------------------
static void *dev_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();   // clear the sticky-free error so later calls work
        return NULL;
    }
    CUDA_CHECK(e);
    return p;
}
static void dev_free(void *p) { CUDA_CHECK(cudaFree(p)); }
static cudaStream_t g_stream;   // the open GPU's compute stream (one GPU per process): core's async hooks queue there
// Asynchronous uploads go through pinned staging memory, used front to back: a region is
// free again once the device has copied it, which every synchronous copy guarantees (they
// wait for the compute stream), so those rewind it, and a rewind that saw more asked for
// since the last one than the staging holds grows it then (no copy in flight), with half
// again to spare. An upload that finds it full before that waits for the copies in flight:
// a counted synchronisation, in the first step of a shape only.
static char *g_stage;             // pinned host memory
static size_t g_stage_cap, g_stage_used, g_stage_asked;
static cudaEvent_t g_stage_done;  // recorded after the last asynchronous upload
static void stage_alloc(size_t cap) {   // no copy from the staging in flight
    if (g_stage) CUDA_CHECK(cudaFreeHost(g_stage));
    g_stage_cap = cap > (4u << 20) ? cap : 4u << 20;
    CUDA_CHECK(cudaHostAlloc((void **)&g_stage, g_stage_cap, cudaHostAllocDefault));
}
static void stage_rewind(void) {
    if (g_stage_asked > g_stage_cap) stage_alloc(g_stage_asked + g_stage_asked / 2);
    g_stage_used = g_stage_asked = 0;
}
static void dev_upload(void *dst, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
    stage_rewind();
}
static void dev_download(void *dst, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
    stage_rewind();
}
static int dev_upload_async(void *dst, const void *src, size_t n) {
    const size_t a = (n + 255) / 256 * 256;
    int waited = 0;
    if (!g_stage_done) CUDA_CHECK(cudaEventCreateWithFlags(&g_stage_done, cudaEventDisableTiming));
    g_stage_asked += a;
    if (g_stage_used + a > g_stage_cap) {   // full: wait for the copies in flight
        if (g_stage_used) {
            const cudaError_t q = cudaEventQuery(g_stage_done);
            if (q == cudaErrorNotReady) {   // not an error: the copies are still in flight
                waited = 1;
                cudaGetLastError();
                CUDA_CHECK(cudaEventSynchronize(g_stage_done));
            } else {
                CUDA_CHECK(q);
            }
            g_stage_used = 0;
        }
        if (a > g_stage_cap) stage_alloc(a > 2 * g_stage_cap ? a : 2 * g_stage_cap);
    }
    char *h = g_stage + g_stage_used;
    g_stage_used += a;
    memcpy(h, src, n);
    CUDA_CHECK(cudaMemcpyAsync(dst, h, n, cudaMemcpyHostToDevice, g_stream));
    CUDA_CHECK(cudaEventRecord(g_stage_done, g_stream));
    return waited;
}
static void dev_copy(void *dst, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, g_stream));
}
static void dev_zero(void *dst, size_t n) { CUDA_CHECK(cudaMemsetAsync(dst, 0, n, g_stream)); }
static void dev_mem_info(size_t *fr, size_t *tot) { CUDA_CHECK(cudaMemGetInfo(fr, tot)); }

static const CxDeviceHooks hooks = { "CUDA", dev_alloc, dev_free, dev_upload, dev_download, dev_copy, dev_zero,
                                     dev_mem_info, dev_upload_async };

// ---- devices -------------------------------------------------------------------------------
extern "C" int cuda_device_count(char *why, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        if (why) {
            void *drv = dlopen("libcuda.so.1", RTLD_LAZY);
            if (drv) dlclose(drv);
            if (e == cudaErrorNoDevice) snprintf(why, n, "no NVIDIA GPU found");
            else if (!drv) snprintf(why, n, "no NVIDIA driver on this machine (libcuda.so.1 not found)");
            else if (e == cudaErrorInsufficientDriver) snprintf(why, n, "the NVIDIA driver is older than CUDA 13 needs (%s)", cudaGetErrorString(e));
            else snprintf(why, n, "the NVIDIA driver did not start (%s)", cudaGetErrorString(e));
        }
        cudaGetLastError();
        return 0;
    }
    if (count == 0 && why) snprintf(why, n, "no NVIDIA GPU found");
    return count;
}

extern "C" cx_status cuda_open(CudaState **out, int gpu) {
    char why[256];
    int n = cuda_device_count(why, sizeof why);
    if (n == 0) return CX_FAIL(CX_EARG, "--device cuda:%d: %s (use --device cpu)", gpu, why);
    if (gpu < 0 || gpu >= n) return CX_FAIL(CX_EARG, "--device cuda:%d: this machine has %d GPU%s", gpu, n, n == 1 ? "" : "s");
    cudaError_t e = cudaSetDevice(gpu);
    if (e != cudaSuccess) return CX_FAIL(CX_ELIB, "cuda:%d: cannot use the GPU: %s", gpu, cudaGetErrorString(e));
    CudaState *s = (CudaState *)cx_calloc(1, sizeof *s);
    s->device = gpu;
    CUDA_CHECK(cudaGetDeviceProperties(&s->prop, gpu));
    if (s->prop.major < 8) {
        cx_status st = CX_FAIL(CX_EARG, "cuda:%d is a %s (compute capability %d.%d); camoxpert's GPU backend needs 8.0 or "
                               "newer (bfloat16)", gpu, s->prop.name, s->prop.major, s->prop.minor);
        free(s);
        return st;
    }
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, (const void *)arch_probe);
    if (e != cudaSuccess) {   // no machine code for this card and no PTX it can compile
        cudaGetLastError();
        const int cc = s->prop.major * 10 + s->prop.minor;
        cx_status st = CX_FAIL(CX_EARG, "cuda:%d is a %s (compute capability %d.%d), which this camoxpert's CUDA plug-in "
                               "has no code for (it holds %s: %s); rebuild with make GPU_ARCH=native, or "
                               "GPU_ARCH=\"-gencode arch=compute_%d,code=sm_%d\" beside the default list",
                               gpu, s->prop.name, s->prop.major, s->prop.minor, cuda_arch_list(), cudaGetErrorString(e),
                               cc, cc);
        free(s);
        return st;
    }
    if (cudaStreamCreate(&s->stream) != cudaSuccess) {
        cudaGetLastError();
        free(s);
        return CX_FAIL(CX_ELIB, "cuda:%d: could not create a stream", gpu);
    }
    if (cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(s->stream);
        free(s);
        return CX_FAIL(CX_ELIB, "cuda:%d: cuBLASLt did not start (is libcublasLt from CUDA 13 installed?)", gpu);
    }
    cudnnStatus_t ds = cudnnCreate(&s->dnn);
    if (ds != CUDNN_STATUS_SUCCESS) {
        cublasLtDestroy(s->lt);
        cudaStreamDestroy(s->stream);
        free(s);
        return CX_FAIL(CX_ELIB, "cuda:%d: cuDNN did not start: %s (is cuDNN 9 installed?)", gpu, cudnnGetErrorString(ds));
    }
    CUDNN_CHECK(cudnnSetStream(s->dnn, s->stream));
    s->lt_ws_bytes = LT_WORKSPACE;
    s->lt_ws = dev_alloc(s->lt_ws_bytes);
    if (!s->lt_ws) {
        cudnnDestroy(s->dnn);
        cublasLtDestroy(s->lt);
        cudaStreamDestroy(s->stream);
        free(s);
        return CX_FAIL(CX_ENOMEM, "cuda:%d: not even 32 MiB of GPU memory free", gpu);
    }
    // CAMOXPERT_CUDA_CONV=direct: every convolution on the direct kernels (a diagnostic, docs/GPU.md)
    const char *cv = getenv("CAMOXPERT_CUDA_CONV");
    if (cv && !strcmp(cv, "direct")) cuda_conv_impl = CUDA_CONV_DIRECT;
    g_stream = s->stream;
    cx_device_hooks_set(&hooks);
    *out = s;
    return CX_OK;
}

extern "C" void cuda_close(CudaState *s) {
    if (!s) return;
    CUDA_CHECK(cudaDeviceSynchronize());
    dev_free(s->lt_ws);
    cudnnDestroy(s->dnn);
    cublasLtDestroy(s->lt);
    if (g_stream == s->stream) g_stream = 0;
    if (g_stage) CUDA_CHECK(cudaFreeHost(g_stage));
    if (g_stage_done) CUDA_CHECK(cudaEventDestroy(g_stage_done));
    g_stage = NULL, g_stage_cap = g_stage_used = g_stage_asked = 0, g_stage_done = NULL;
    CUDA_CHECK(cudaStreamDestroy(s->stream));
    free(s->plans);
    free(s);
}

extern "C" void cuda_describe(const CudaState *s, char *buf, size_t n) {
    snprintf(buf, n, "%s, %.1f GiB, sm_%d%d", s->prop.name, (double)s->prop.totalGlobalMem / (1 << 30), s->prop.major,
             s->prop.minor);
}

extern "C" void cuda_sync(CudaState *s) {
    CUDA_CHECK(cudaStreamSynchronize(s->stream));
    stage_rewind();
}

// ---- CUDA graphs -----------------------------------------------------------------------------
// The work queued on the compute stream between begin and end becomes a graph,
// replayed by cuda_graph_launch with the same device pointers. A capture that fails
// (a call that cannot be captured, such as a synchronous copy or a host read) is not an
// error: end returns NULL and the caller runs the work eagerly.
extern "C" void cuda_graph_begin(CudaState *s) {
    CUDA_CHECK(cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeRelaxed));
}

extern "C" void *cuda_graph_end(CudaState *s, char *why, size_t n) {
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(s->stream, &g);
    if (e != cudaSuccess || !g) {
        if (why) snprintf(why, n, "capture failed: %s", cudaGetErrorString(e));
        cudaGetLastError();
        if (g) cudaGraphDestroy(g);
        return NULL;
    }
    cudaGraphExec_t x = NULL;
    e = cudaGraphInstantiate(&x, g, 0);
    size_t nodes = 0;
    cudaGraphGetNodes(g, NULL, &nodes);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        if (why) snprintf(why, n, "instantiation failed: %s", cudaGetErrorString(e));
        cudaGetLastError();
        return NULL;
    }
    if (why) snprintf(why, n, "%zu nodes", nodes);
    return x;
}

extern "C" void cuda_graph_launch(CudaState *s, void *exec) {
    CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)exec, s->stream));
}

extern "C" void cuda_graph_destroy(void *exec) {
    if (exec) CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)exec));
}
