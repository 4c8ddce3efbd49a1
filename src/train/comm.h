// comm.h — the collectives of data-parallel training on tensors: the gradient
// all-reduce and the broadcast of rank 0's BatchNorm running statistics. One
// interface, several backends behind it:
//   host  over the rendezvous (train/dist.h): TCP through rank 0, which adds the
//         ranks' values in rank order in float64, so every rank gets the same bits
//         on every run. A GPU tensor is downloaded and uploaded around it: correct,
//         slow — the fallback when no GPU backend is registered.
//   NCCL  (GPU tensors, float32; the default on GPUs): ops.h ops_nccl_*, through the
//         CUDA plug-in; the gradient buckets' all-reduces run on the communicator's own
//         stream while the backward goes on (comm_allreduce_start), waited for with a
//         60 s deadline (comm_wait). CAMOXPERT_COMM=host selects the host path
//         instead (diagnosis). This file holds no CUDA.
// A host tensor always takes the host path, whatever backend is open, so small
// host-side values (a balance-loss sum) need no device round trip.
// With world == 1 every call returns at once and changes nothing.
//
//   Comm c;
//   CX_TRY(comm_open(&c, &store, &rt.ctx.op, rt.device, rt.gpu));   // picks the backend for the device
//   Tensor g = tensor_view(pt.grad, pt.dtype, 1, &pt.numel); g.device = pt.device;
//   CX_TRY(comm_allreduce_sum(&c, &g));                 // Σ over ranks, in place, on every rank
//   CX_TRY(comm_broadcast(&c, &bn_mean));               // rank 0's values on every rank
//   comm_close(&c);
#pragma once
#include "core/core.h"
#include "ops/ops.h"
#include "train/dist.h"

typedef struct Comm Comm;

// A backend: what the NCCL glue (or any other) fills in. Each function works on a
// contiguous float32 or float64 tensor on the backend's device, in place, and
// returns an error naming the rank and what failed (never aborts on a peer's fault).
typedef struct {
    const char *name;                                  // "host", "nccl"
    cx_status (*allreduce_sum)(Comm *c, Tensor *buf);  // Σ over ranks, the same bits on every rank
    cx_status (*broadcast)(Comm *c, Tensor *buf);      // rank 0's values to every rank
    // optional (NULL: allreduce_sum at once): queued beside the caller's later work,
    // and the wait for every one queued
    cx_status (*allreduce_start)(Comm *c, Tensor *buf);
    cx_status (*wait)(Comm *c);
    void (*close)(Comm *c);                            // frees c->impl
} CommOps;

struct Comm {
    const CommOps *ops;
    int rank, world;
    cx_device device;    // where the tensors it reduces live
    int gpu;             // DEV_CUDA: this rank's GPU index
    OpCtx *op;           // the device's kernel context (its stream, for a GPU backend); may be NULL on the CPU
    DistStore *store;    // the rendezvous: the host path, and the backend's id exchange (NCCL unique id)
    void *impl;          // the backend's state (an ncclComm_t, its stream)
    // set by the owner after comm_open (may stay NULL): the flag its SIGTERM / Ctrl-C
    // handler sets; a GPU wait then gives the other ranks seconds, not its full deadline
    const volatile sig_atomic_t *stop;
};

// A GPU backend's constructor: fills c->ops and c->impl for c->device / c->gpu / c->op,
// using c->store to exchange what it needs (rank 0: ops_nccl_unique_id, then
// dist_broadcast of the id; every rank: ops_nccl_open(c->op, &c->impl, id, rank, world)).
// Called on every rank together; an error on one rank must reach the others (they
// time out on the store otherwise, with a message naming the rank).
typedef cx_status (*comm_backend_open_fn)(Comm *c);
// The GPU backend's constructor: NCCL's by default; another one (tests), or NULL for the
// host path.
void comm_backend_set(cx_device dev, comm_backend_open_fn open);

// Opens the communicator of the ranks joined in store for tensors on dev (gpu: the
// GPU index when dev is DEV_CUDA; op: that device's kernel context). The host backend
// on the CPU, and on a GPU when no GPU backend is registered (a warning says it is
// slow). The store and op must outlive c.
cx_status comm_open(Comm *c, DistStore *store, OpCtx *op, cx_device dev, int gpu);
void comm_close(Comm *c);
// Σ over the ranks of buf (float32 or float64, contiguous), in place, on every rank.
cx_status comm_allreduce_sum(Comm *c, Tensor *buf);
// The same for a gradient bucket: queued after the work queued so far on the device
// and returning at once where the backend can (NCCL: its own stream, overlapping the
// rest of the backward), else done at once. buf must not change until comm_wait.
cx_status comm_allreduce_start(Comm *c, Tensor *buf);
// Waits for every comm_allreduce_start (an error names what failed, as above); the
// device's later work is ordered after them.
cx_status comm_wait(Comm *c);
// Rank 0's buf on every rank.
cx_status comm_broadcast(Comm *c, Tensor *buf);
