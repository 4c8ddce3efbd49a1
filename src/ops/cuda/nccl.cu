// nccl.cu — the collectives of data-parallel training on several GPUs, over
// NCCL. libnccl.so.2 is opened with dlopen on first use (a one-GPU run never
// loads it, and a machine without NCCL trains on one GPU): the loader's path,
// then $CUDA_HOME/lib and /usr/local/cuda/lib*. The few NCCL types used are
// declared here from nccl.h's stable ABI, so building needs no NCCL header.
//
// An all-reduce is queued on the communicator's own stream, after the work queued
// so far on the compute stream, so that the backward goes on beside it (gradient
// buckets); it is then waited for on the host with a deadline: a rank that died
// never joins the collective, and NCCL alone would wait forever. Past the deadline
// the communicator is aborted and the caller gets an error to stop on (the
// launcher names the rank that died).
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

// A communicator: NCCL's, with its own stream (all-reduces run there, beside the
// compute stream, so the backward's later kernels overlap them) and the events
// that order the two streams.
typedef struct {
    ncclComm_t c;
    cudaStream_t s;
    cudaEvent_t ready;   // recorded on the compute stream before each start
    cudaEvent_t done;    // recorded on the communicator's stream after the last start
    int pending;         // starts not waited for yet
} NcComm;

static void nc_free(NcComm *n, int abort_it) {
    if (!n) return;
    if (n->c) abort_it ? nc.CommAbort(n->c) : nc.CommDestroy(n->c);
    if (n->ready) cudaEventDestroy(n->ready);
    if (n->done) cudaEventDestroy(n->done);
    if (n->s) cudaStreamDestroy(n->s);
    free(n);
}

extern "C" cx_status cuda_nccl_open(CudaState *st, void **comm, const unsigned char id[128], int rank, int world) {
    CX_TRY(nc_ready());
    CUDA_CHECK(cudaSetDevice(st->device));
    NcComm *n = (NcComm *)calloc(1, sizeof *n);
    CX_ASSERT(n, "out of host memory");
    int lo = 0, hi = 0;   // the highest priority: a gradient bucket's kernel is not queued behind the backward's
    cudaDeviceGetStreamPriorityRange(&lo, &hi);
    if (cudaStreamCreateWithPriority(&n->s, cudaStreamNonBlocking, hi) != cudaSuccess ||
        cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming) != cudaSuccess) {
        nc_free(n, 0);
        return CX_FAIL(CX_ELIB, "rank %d: could not create the communicator's stream and events on GPU %d", rank,
                       st->device);
    }
    ncclUniqueId u;
    memcpy(u.internal, id, 128);
    ncclResult_t r = nc.CommInitRank(&n->c, world, u, rank);
    if (r != ncclSuccess) {
        n->c = NULL;
        nc_free(n, 0);
        return CX_FAIL(CX_ELIB, "rank %d of %d: NCCL did not start: %s (NCCL_DEBUG=INFO in the environment says more)", rank,
                       world, nc.GetErrorString(r));
    }
    *comm = n;
    return CX_OK;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Queues buf (n float32 on this GPU) = its sum over the ranks on the communicator's
// stream, after everything queued so far on the compute stream; returns at once.
extern "C" cx_status cuda_nccl_allreduce_start(CudaState *st, void **comm, void *buf, int64_t n) {
    CX_TRY(nc_ready());
    NcComm *c = (NcComm *)*comm;
    CX_ASSERT(c, "cuda_nccl_allreduce_start: no communicator");
    CUDA_CHECK(cudaEventRecord(c->ready, st->stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->s, c->ready, 0));
    ncclResult_t r = nc.AllReduce(buf, buf, (size_t)n, ncclFloat32, ncclSum, c->c, c->s);
    if (r != ncclSuccess && r != ncclInProgress) {
        nc_free(c, 1);
        *comm = NULL;
        return CX_FAIL(CX_EIO, "the gradient all-reduce failed: %s (another rank stopped?)", nc.GetErrorString(r));
    }
    CUDA_CHECK(cudaEventRecord(c->done, c->s));
    c->pending++;
    return CX_OK;
}

// Waits on the host for every started all-reduce, then orders the compute stream
// after them. The ranks that did not all join within timeout_s seconds, or a failure
// NCCL reports, is an error after which the communicator is aborted and *comm NULL.
extern "C" cx_status cuda_nccl_wait(CudaState *st, void **comm, double timeout_s, const volatile sig_atomic_t *stop) {
    NcComm *c = (NcComm *)*comm;
    CX_ASSERT(c, "cuda_nccl_wait: no communicator");
    if (!c->pending) return CX_OK;
    const double t0 = now_s();
    double deadline = t0 + timeout_s, stopped_at = 0;
    for (int spin = 0;; spin++) {
        cudaError_t e = cudaEventQuery(c->done);
        if (e == cudaSuccess) break;
        if (e != cudaErrorNotReady) CUDA_CHECK(e);
        ncclResult_t ae = ncclSuccess;
        nc.CommGetAsyncError(c->c, &ae);
        if (ae != ncclSuccess && ae != ncclInProgress) {
            nc_free(c, 1);
            *comm = NULL;
            return CX_FAIL(CX_EIO, "the gradient all-reduce failed: %s (another rank stopped?)", nc.GetErrorString(ae));
        }
        const double t = now_s();
        if (stop && *stop && !stopped_at) {   // asked to stop: live ranks join at once, a dead one never
            stopped_at = t;
            if (t + OPS_NCCL_STOP_GRACE_S < deadline) deadline = t + OPS_NCCL_STOP_GRACE_S;
        }
        if (t > deadline && stopped_at) {
            nc_free(c, 1);
            *comm = NULL;
            return CX_FAIL(CX_EIO, "this rank was asked to stop while it waited for the gradient all-reduce, and the "
                           "other ranks did not join within %.0f s: one of them stopped or died (the launcher names it)",
                           OPS_NCCL_STOP_GRACE_S);
        }
        if (t > deadline) {
            nc_free(c, 1);
            *comm = NULL;
            return CX_FAIL(CX_EIO, "the gradient all-reduce did not complete in %.0f s: another rank stopped or hangs "
                           "(the launcher names it)", timeout_s);
        }
        if (spin > 1000) usleep(50);   // a long wait: let the CPU go
    }
    c->pending = 0;
    CUDA_CHECK(cudaStreamWaitEvent(st->stream, c->done, 0));
    return CX_OK;
}

// In place, waited for: start, then wait.
extern "C" cx_status cuda_nccl_allreduce_sum(CudaState *st, void **comm, void *buf, int64_t n, double timeout_s,
                                             const volatile sig_atomic_t *stop) {
    CX_TRY(cuda_nccl_allreduce_start(st, comm, buf, n));
    return cuda_nccl_wait(st, comm, timeout_s, stop);
}

extern "C" void cuda_nccl_close(void *comm, int abort_it) {
    if (!comm || !nc.lib) return;
    nc_free((NcComm *)comm, abort_it);
}
