// comm.c — see comm.h: the dispatch, and the host backend over the rendezvous.
#include "train/comm.h"
#include "core/device.h"
#include <stdlib.h>
#include <string.h>

#define COMM_CHUNK (1 << 20)   // elements per exchange of the host backend (8 MiB of float64)

static comm_backend_open_fn gpu_backend;   // the NCCL glue's constructor, when registered

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

static const CommOps host_ops = { "host", host_allreduce_sum, host_broadcast, host_close };

// ---- the interface --------------------------------------------------------------------
cx_status comm_open(Comm *c, DistStore *store, OpCtx *op, cx_device dev, int gpu) {
    memset(c, 0, sizeof *c);
    c->rank = store->rank, c->world = store->world, c->device = dev, c->gpu = gpu, c->store = store, c->op = op;
    c->ops = &host_ops;
    if (dev != DEV_CUDA || c->world == 1) return CX_OK;
    if (!gpu_backend) {
        if (c->rank == 0)
            log_warn("data parallel on GPUs without a GPU communicator: gradients go through the host over TCP (correct "
                     "but slow; see docs/MULTIGPU.md)");
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

cx_status comm_broadcast(Comm *c, Tensor *buf) {
    if (c->world == 1) return CX_OK;
    CX_TRY(check_buf(c, buf, "comm_broadcast"));
    return buf->device == DEV_CPU ? host_broadcast(c, buf) : c->ops->broadcast(c, buf);
}
