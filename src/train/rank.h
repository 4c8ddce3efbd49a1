// rank.h — a training process's start in a data-parallel run (docs/MULTIGPU.md):
// who it is (train/dist.h: torchrun, Slurm, Open MPI, `train --gpus`/`--procs`, or one
// process), its device (rank i on GPU LOCAL_RANK under --device cuda or auto), the
// rendezvous (a port in use or a missing rank is a clear error before any work),
// synchronised BatchNorm through it when asked, and the gradients' communicator.
// With one process the store is a stand-in (rank 0 of 1) and the communicator a no-op.
//
//   DistEnv env; DistStore store = { .fd = -1 }; Runtime rt; Comm comm = { 0 };
//   CX_TRY(rank_start(&env, &store, &rt, &comm, "auto", "auto", sync_bn, &stop_flag, stdout));
//   ... train ...
//   comm_close(&comm); runtime_free(&rt); dist_store_close(&store);
#pragma once
#include "nn/runtime.h"
#include "train/comm.h"
#include <signal.h>
#include <stdio.h>

// Seconds any one exchange between the ranks may wait (a rank that dies is noticed at
// once: its connection closes; this bounds a rank that hangs). Rank 0 writing a
// checkpoint or a report while the others wait must fit in it.
#define RANK_TIMEOUT_S 600

// Fills env, store, rt and comm (each the caller's, to close). device: --device
// (NULL: auto); precision: --precision; sync_bn: BatchNorm statistics over the global
// batch; stop: the flag a stop request sets, which a survivor's wait for a dead rank
// watches. out: where rank 0 says what it started (NULL: nothing).
cx_status rank_start(DistEnv *env, DistStore *store, Runtime *rt, Comm *comm, const char *device,
                     const char *precision, int sync_bn, volatile sig_atomic_t *stop, FILE *out);
