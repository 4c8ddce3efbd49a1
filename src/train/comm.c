// comm.c — see comm.h: the dispatch, and the host backend over the rendezvous.
#include "train/comm.h"
#include "core/device.h"
#include <stdlib.h>
#include <string.h>

#define COMM_CHUNK (1 << 20)   // elements per exchange of the host backend (8 MiB of float64)

static cx_status nccl_open(Comm *c);
static comm_backend_open_fn gpu_backend = nccl_open;   // NCCL unless replaced (tests) or CAMOXPERT_COMM=host

void comm_backend_set(cx_device dev, comm_backend_open_fn open) {
    if (dev == DEV_CUDA) gpu_backend = open;
}

static cx_status check_buf(const Comm *c, const Tensor *buf, const char *what) {
    if (buf->dtype != DT_F32 && buf->dtype != DT_F64)
        return CX_FAIL(CX_EARG, "%s: a %s tensor; the collectives take float32 or float64", what, dtype_name(buf->dtype));
    return CX_OK;
}

// ---- the host backend --------------------------------------------------------------
// The tensor's values on the host: itself, or a downloaded copy (*owned set).
static void *host_values(const Tensor *buf, int *owned) {
    size_t bytes = tensor_nbytes(buf);
    *owned = buf->device == DEV_CUDA;
    if (!*owned) return buf->data;
    void *h = cx_malloc(bytes ? bytes : 1);
    cx_dev_download(h, buf->data, bytes);
    return h;
}

static void host_values_done(Tensor *buf, void *h, int owned, int changed) {
    if (!owned) return;
    if (changed) cx_dev_upload(buf->data, h, tensor_nbytes(buf));
    free(h);
}

// In chunks: each rank's values as float64, summed by rank 0 in rank order
// (dist_sum), rounded once back to float32 when that is the buffer's type.
static cx_status host_allreduce_sum(Comm *c, Tensor *buf) {
    int owned;
    void *h = host_values(buf, &owned);
    int64_t n = tensor_numel(buf);
    double *v = buf->dtype == DT_F64 ? NULL : cx_malloc(sizeof(double) * (size_t)(n < COMM_CHUNK ? (n ? n : 1) : COMM_CHUNK));
    cx_status st = CX_OK;
    for (int64_t i0 = 0; i0 < n && st == CX_OK; i0 += COMM_CHUNK) {
        int k = (int)(n - i0 < COMM_CHUNK ? n - i0 : COMM_CHUNK);
        if (buf->dtype == DT_F64) {
            st = dist_sum(c->store, (double *)h + i0, k);
            continue;
        }
        float *f = (float *)h + i0;
        for (int i = 0; i < k; i++) v[i] = f[i];
        st = dist_sum(c->store, v, k);
        for (int i = 0; st == CX_OK && i < k; i++) f[i] = (float)v[i];
    }
    free(v);
    host_values_done(buf, h, owned, st == CX_OK);
    return st;
}

static cx_status host_broadcast(Comm *c, Tensor *buf) {
    int owned;
    void *h = host_values(buf, &owned);
    cx_status st = dist_broadcast(c->store, h, tensor_nbytes(buf));
    host_values_done(buf, h, owned, st == CX_OK && c->rank != 0);
    return st;
}

static void host_close(Comm *c) { (void)c; }

static const CommOps host_ops = { .name = "host", .allreduce_sum = host_allreduce_sum, .broadcast = host_broadcast,
                                  .close = host_close };

// ---- the NCCL backend (GPU tensors; ops.h ops_nccl_*) ----------------------------------
// Every step's decisions about it are collective: rank 0 makes the NCCL id and says
// whether it could; every rank says whether its NCCL started. One rank's failure (no
// libnccl.so.2, a GPU NCCL cannot use) is then every rank's error, not a hang.
#define NCCL_TIMEOUT_S 60.0   // an all-reduce the other ranks do not join within this stops training

static cx_status nccl_allreduce_sum(Comm *c, Tensor *buf) {
    if (buf->dtype != DT_F32 || !c->impl) return host_allreduce_sum(c, buf);
    return ops_nccl_allreduce_sum(c->op, &c->impl, buf, NCCL_TIMEOUT_S, c->stop);
}

static cx_status nccl_allreduce_start(Comm *c, Tensor *buf) {
    if (buf->dtype != DT_F32 || !c->impl) return host_allreduce_sum(c, buf);
    return ops_nccl_allreduce_start(c->op, &c->impl, buf);
}

static cx_status nccl_wait(Comm *c) {
    if (!c->impl) return CX_FAIL(CX_EIO, "rank %d: the GPU communicator was aborted by an earlier failure", c->rank);
    return ops_nccl_wait(c->op, &c->impl, NCCL_TIMEOUT_S, c->stop);
}

static void nccl_close(Comm *c) {
    ops_nccl_close(c->impl);
    c->impl = NULL;
}

// Broadcasts (BatchNorm buffers before validation, a few per epoch) take the host path.
static const CommOps nccl_ops = { .name = "nccl", .allreduce_sum = nccl_allreduce_sum, .broadcast = host_broadcast,
                                  .close = nccl_close, .allreduce_start = nccl_allreduce_start, .wait = nccl_wait };

static cx_status nccl_open(Comm *c) {
    unsigned char id[128] = { 0 };
    char why[512] = "";
    int bad = 0, any = 0;
    if (c->rank == 0 && ops_nccl_unique_id(id)) {
        snprintf(why, sizeof why, "%s", cx_errmsg());
        bad = 1;
    }
    CX_TRY(dist_any(c->store, bad, &any));
    if (any) return bad ? CX_FAIL(CX_ELIB, "%s", why) : CX_FAIL(CX_ELIB, "rank 0 could not start NCCL (its message says why)");
    CX_TRY(dist_broadcast(c->store, id, sizeof id));
    if (ops_nccl_open(c->op, &c->impl, id, c->rank, c->world)) {
        snprintf(why, sizeof why, "%s", cx_errmsg());
        bad = 1;
    }
    CX_TRY(dist_any(c->store, bad, &any));
    if (any) {
        if (c->impl) ops_nccl_close(c->impl), c->impl = NULL;
        return bad ? CX_FAIL(CX_ELIB, "%s", why) : CX_FAIL(CX_ELIB, "another rank's NCCL did not start (its message says why)");
    }
    c->ops = &nccl_ops;
    return CX_OK;
}

// ---- the interface --------------------------------------------------------------------
cx_status comm_open(Comm *c, DistStore *store, OpCtx *op, cx_device dev, int gpu) {
    memset(c, 0, sizeof *c);
    c->rank = store->rank, c->world = store->world, c->device = dev, c->gpu = gpu, c->store = store, c->op = op;
    c->ops = &host_ops;
    if (dev != DEV_CUDA || c->world == 1) return CX_OK;
    const char *want = getenv("CAMOXPERT_COMM");
    if (!gpu_backend || (want && !strcmp(want, "host"))) {
        if (c->rank == 0)
            log_warn("data parallel on GPUs through the host communicator (CAMOXPERT_COMM=host): gradients go through "
                     "the host over TCP, correct but slow (docs/MULTIGPU.md)");
        return CX_OK;
    }
    cx_status st = gpu_backend(c);
    if (st) {
        cx_error_context("rank %d: opening the GPU communicator on GPU %d", c->rank, gpu);
        c->ops = &host_ops;
    }
    return st;
}

void comm_close(Comm *c) {
    if (c->ops && c->ops->close) c->ops->close(c);
    c->ops = NULL, c->impl = NULL;
}

cx_status comm_allreduce_sum(Comm *c, Tensor *buf) {
    if (c->world == 1) return CX_OK;
    CX_TRY(check_buf(c, buf, "comm_allreduce_sum"));
    return buf->device == DEV_CPU ? host_allreduce_sum(c, buf) : c->ops->allreduce_sum(c, buf);
}

cx_status comm_allreduce_start(Comm *c, Tensor *buf) {
    if (c->world == 1) return CX_OK;
    CX_TRY(check_buf(c, buf, "comm_allreduce_start"));
    if (buf->device == DEV_CPU) return host_allreduce_sum(c, buf);
    return c->ops->allreduce_start ? c->ops->allreduce_start(c, buf) : c->ops->allreduce_sum(c, buf);
}

cx_status comm_wait(Comm *c) {
    if (c->world == 1 || !c->ops->wait) return CX_OK;
    return c->ops->wait(c);
}

cx_status comm_broadcast(Comm *c, Tensor *buf) {
    if (c->world == 1) return CX_OK;
    CX_TRY(check_buf(c, buf, "comm_broadcast"));
    return buf->device == DEV_CPU ? host_broadcast(c, buf) : c->ops->broadcast(c, buf);
}
