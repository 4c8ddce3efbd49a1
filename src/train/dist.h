// dist.h — several processes training one model (data parallel): who is who,
// from the environment the standard launchers set, and the TCP rendezvous every
// rank joins before any work. The rendezvous doubles as a small host
// communicator over which the ranks take their collective decisions (stop, a
// non-finite loss, the NCCL unique id, validation sums): rank 0 is the hub,
// every exchange is one round trip, and a rank that dies is named by the
// others within the timeout instead of hanging them.
//
//   DistEnv e;
//   CX_TRY(dist_env_read(&e));                 // torchrun, Slurm, Open MPI or one process
//   DistStore s;
//   CX_TRY(dist_store_open(&s, &e, 60));      // every rank connected, or a clear error
//   int stop;
//   CX_TRY(dist_any(&s, local_stop, &stop));  // one rank's Ctrl-C stops them all
//   dist_store_close(&s);
#pragma once
#include "core/core.h"
#include <signal.h>
#include <stdio.h>

typedef struct {
    int rank, world;               // global
    int local_rank, local_world;   // on this machine
    int node_rank;                 // which machine
    char master_addr[256];         // rank 0's address (the rendezvous)
    int master_port;
    const char *source;            // "torchrun", "slurm", "openmpi" or "single"
} DistEnv;

// Reads, in this order: torchrun's RANK / WORLD_SIZE / LOCAL_RANK /
// LOCAL_WORLD_SIZE / GROUP_RANK; Open MPI's OMPI_COMM_WORLD_{RANK,SIZE,
// LOCAL_RANK,LOCAL_SIZE}; Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID /
// SLURM_NODEID; none of them: one process. MASTER_ADDR and MASTER_PORT name the
// rendezvous (Slurm: the first host of SLURM_JOB_NODELIST when MASTER_ADDR is
// unset; a run on one machine: 127.0.0.1; default port 29500). A malformed or
// inconsistent value is an error naming the variable and the fix. Under torchrun,
// whose agent keeps its own store on MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True),
// the rendezvous is MASTER_PORT + 1.
cx_status dist_env_read(DistEnv *e);

typedef struct {
    int rank, world;
    int fd;          // rank > 0: the connection to rank 0
    int *peer;       // rank 0: the connection of rank r at peer[r] (peer[0] = -1)
    double timeout;  // seconds any one exchange may wait
    volatile sig_atomic_t *stop;   // the rendezvous: a stop request (Ctrl-C, SIGTERM) ends the wait (may be NULL)
    FILE *log;                     // the rendezvous: where the waiting ranks say whom they wait for (NULL: stderr)
} DistStore;

// Rank 0 listens on MASTER_ADDR:MASTER_PORT and waits for every other rank;
// the others connect (retrying until the timeout). Errors: the port is in use,
// a rank did not arrive, rank 0 did not answer, a rank number arrived twice.
cx_status dist_store_open(DistStore *s, const DistEnv *e, double timeout_s);
// The same, as a training rank waits (the signal rule, docs/RELIABILITY.md): a stop
// request (*stop set by the Ctrl-C/SIGTERM handler) ends the wait within a second with
// an error naming whom it waited for, and after 2 s, then every RENDEZVOUS_REPORT_S, a
// line on log (NULL: stderr) says whom it waits for (rank 0: the ranks missing; the
// others: rank 0, or the ranks rank 0 still waits for).
#define RENDEZVOUS_REPORT_S 10
cx_status dist_store_open_watched(DistStore *s, const DistEnv *e, double timeout_s, volatile sig_atomic_t *stop,
                                  FILE *log);
void dist_store_close(DistStore *s);
// buf (n bytes) from rank 0 to every rank.
cx_status dist_broadcast(DistStore *s, void *buf, size_t n);
// v[0..n) summed over the ranks, the result on every rank (summed in rank order:
// every rank gets the same bits).
cx_status dist_sum(DistStore *s, double *v, int n);
// *any = 1 on every rank when flag is non-zero on any rank.
cx_status dist_any(DistStore *s, int flag, int *any);
// Every rank waits for every other.
cx_status dist_barrier(DistStore *s);
// A TCP port nobody listens on right now (bound once on every interface, then
// released), or 0: the local launchers' rendezvous and the tests'.
int dist_free_port(void);
// Each rank's n bytes at `mine` (n may differ between ranks) to rank 0: there *all
// gets a malloc'd buffer holding them in rank order and sizes[r] rank r's byte count
// (sizes: world entries); elsewhere *all = NULL and sizes is left alone.
//   void *all; size_t sz[world];
//   CX_TRY(dist_gather(&s, mine, n, &all, sz));   // rank 0: free(all) when done
cx_status dist_gather(DistStore *s, const void *mine, size_t n, void **all, size_t *sizes);
