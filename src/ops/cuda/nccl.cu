// nccl.cu — the collectives of data-parallel training on several GPUs, over
// NCCL. libnccl.so.2 is opened with dlopen on first use (a one-GPU run never
// loads it, and a machine without NCCL trains on one GPU): the loader's path,
// then $CUDA_HOME/lib and /usr/local/cuda/lib*. The few NCCL types used are
// declared here from nccl.h's stable ABI, so building needs no NCCL header.
//
// An all-reduce is queued on the GPU's stream and then waited for on the host
// with a deadline: a rank that died never joins the collective, and NCCL alone
// would wait forever. Past the deadline the communicator is aborted and the
// caller gets an error to stop on (the launcher names the rank that died).
#include "ops/cuda/common.cuh"
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ---- nccl.h (ABI-stable since NCCL 2.0) ------------------------------------------------------
typedef struct { char internal[128]; } ncclUniqueId;
typedef struct ncclComm *ncclComm_t;
typedef int ncclResult_t;   // 0 = ncclSuccess, 7 = ncclInProgress
enum { ncclSuccess = 0, ncclInProgress = 7 };
enum { ncclFloat32 = 7 };
enum { ncclSum = 0 };

static struct {
    void *lib;
    char err[512];
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*AllReduce)(const void *, void *, size_t, int, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*CommAbort)(ncclComm_t);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
    const char *(*GetErrorString)(ncclResult_t);
    ncclResult_t (*GetVersion)(int *);
} nc;
static pthread_once_t nc_once = PTHREAD_ONCE_INIT;

static void nc_open(void) {
    const char *home = getenv("CUDA_HOME");
    char path[4096];
    const char *tries[] = { "libnccl.so.2", NULL, "/usr/local/cuda/lib64/libnccl.so.2", "/usr/local/cuda/lib/libnccl.so.2" };
    if (home) {
        snprintf(path, sizeof path, "%s/lib/libnccl.so.2", home);
        tries[1] = path;
    }
    for (size_t i = 0; i < sizeof tries / sizeof tries[0] && !nc.lib; i++)
        if (tries[i]) nc.lib = dlopen(tries[i], RTLD_NOW | RTLD_LOCAL);
    if (!nc.lib) {
        snprintf(nc.err, sizeof nc.err, "libnccl.so.2 was not found (install NCCL 2, e.g. Debian's libnccl2 or NVIDIA's "
                 "package, or set LD_LIBRARY_PATH to its directory)");
        return;
    }
#define NC_SYM(name) \
    if (!(*(void **)&nc.name = dlsym(nc.lib, "nccl" #name))) { \
        snprintf(nc.err, sizeof nc.err, "libnccl.so.2 has no nccl" #name " (NCCL 2.12 or newer is needed)"); \
        dlclose(nc.lib); nc.lib = NULL; return; }
    NC_SYM(GetUniqueId) NC_SYM(CommInitRank) NC_SYM(AllReduce) NC_SYM(CommDestroy) NC_SYM(CommAbort)
    NC_SYM(CommGetAsyncError) NC_SYM(GetErrorString) NC_SYM(GetVersion)
#undef NC_SYM
}

static cx_status nc_ready(void) {
    pthread_once(&nc_once, nc_open);
    return nc.lib ? CX_OK : CX_FAIL(CX_ELIB, "several GPUs need NCCL: %s", nc.err);
}

extern "C" cx_status cuda_nccl_version(int *version) {
    CX_TRY(nc_ready());
    *version = 0;
    nc.GetVersion(version);
    return CX_OK;
}

extern "C" cx_status cuda_nccl_unique_id(unsigned char id[128]) {
    CX_TRY(nc_ready());
    ncclUniqueId u;
    ncclResult_t r = nc.GetUniqueId(&u);
    if (r != ncclSuccess) return CX_FAIL(CX_ELIB, "ncclGetUniqueId: %s", nc.GetErrorString(r));
    memcpy(id, u.internal, 128);
    return CX_OK;
}

extern "C" cx_status cuda_nccl_open(CudaState *st, void **comm, const unsigned char id[128], int rank, int world) {
    CX_TRY(nc_ready());
    CUDA_CHECK(cudaSetDevice(st->device));
    ncclUniqueId u;
    memcpy(u.internal, id, 128);
    ncclComm_t c = NULL;
    ncclResult_t r = nc.CommInitRank(&c, world, u, rank);
    if (r != ncclSuccess)
        return CX_FAIL(CX_ELIB, "rank %d of %d: NCCL did not start: %s (NCCL_DEBUG=INFO in the environment says more)", rank,
                       world, nc.GetErrorString(r));
    *comm = c;
    return CX_OK;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// In place: buf (n float32 on this GPU) = its sum over the ranks. Returns once the
// result is there, or with an error (the communicator then aborted) when the ranks
// did not all join within timeout_s seconds or NCCL reported a failure; *comm is
// then NULL.
extern "C" cx_status cuda_nccl_allreduce_sum(CudaState *st, void **comm, void *buf, int64_t n, double timeout_s) {
    CX_TRY(nc_ready());
    ncclComm_t c = (ncclComm_t)*comm;
    CX_ASSERT(c, "cuda_nccl_allreduce_sum: no communicator");
    ncclResult_t r = nc.AllReduce(buf, buf, (size_t)n, ncclFloat32, ncclSum, c, st->stream);
    if (r != ncclSuccess && r != ncclInProgress) {
        nc.CommAbort(c);
        *comm = NULL;
        return CX_FAIL(CX_EIO, "the gradient all-reduce failed: %s (another rank stopped?)", nc.GetErrorString(r));
    }
    const double t0 = now_s();
    for (int spin = 0;; spin++) {
        cudaError_t e = cudaStreamQuery(st->stream);
        if (e == cudaSuccess) return CX_OK;
        if (e != cudaErrorNotReady) CUDA_CHECK(e);
        ncclResult_t ae = ncclSuccess;
        nc.CommGetAsyncError(c, &ae);
        if (ae != ncclSuccess && ae != ncclInProgress) {
            nc.CommAbort(c);
            *comm = NULL;
            return CX_FAIL(CX_EIO, "the gradient all-reduce failed: %s (another rank stopped?)", nc.GetErrorString(ae));
        }
        if (now_s() - t0 > timeout_s) {
            nc.CommAbort(c);
            *comm = NULL;
            return CX_FAIL(CX_EIO, "the gradient all-reduce did not complete in %.0f s: another rank stopped or hangs "
                           "(the launcher names it)", timeout_s);
        }
        if (spin > 1000) usleep(50);   // a long wait: let the CPU go
    }
}

extern "C" void cuda_nccl_close(void *comm, int abort_it) {
    if (!comm || !nc.lib) return;
    if (abort_it) nc.CommAbort((ncclComm_t)comm);
    else nc.CommDestroy((ncclComm_t)comm);
}
