// rank.c — see rank.h.
#include "train/rank.h"
#include <stdlib.h>
#include <string.h>

static cx_status sync_sum_store(void *arg, double *v, int n) { return dist_sum((DistStore *)arg, v, n); }

cx_status rank_start(DistEnv *env, DistStore *store, Runtime *rt, Comm *comm, const char *device,
                     const char *precision, int sync_bn, volatile sig_atomic_t *stop, FILE *out) {
    CX_TRY(dist_env_read(env));
    const int rank = env->rank, world = env->world;
    if (rank != 0) out = NULL;   // rank 0 prints; the others speak only of errors
    const char *dev = device ? device : "auto";
    char mine[32];
    // A launcher that gives each rank one GPU of its own (Slurm --gpus-per-task) leaves it GPU 0.
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    const int gpu_of_rank = vis && *vis && !strchr(vis, ',') ? 0 : env->local_rank;
    if (world > 1 && env->local_world > 1 && !strncmp(dev, "cuda:", 5) && gpu_of_rank != 0)
        return CX_FAIL(CX_EARG, "--device %s with %d ranks on this machine (%s): every rank would use the same GPU; "
                       "use --device cuda (rank i takes GPU LOCAL_RANK) or give each rank one CUDA_VISIBLE_DEVICES", dev,
                       env->local_world, env->source);
    if (world > 1 && !strcmp(dev, "cuda")) {
        snprintf(mine, sizeof mine, "cuda:%d", gpu_of_rank);
        dev = mine;
    }
    if (world > 1) {
        if (out)
            fprintf(out, "data parallel: %d ranks (%s), rendezvous at %s:%d\n", world,
                    getenv("CAMOXPERT_LAUNCHED") ? "camoxpert train --gpus/--procs" : env->source, env->master_addr,
                    env->master_port);
        CX_TRY(dist_store_open_watched(store, env, RANK_TIMEOUT_S, stop, out));
    } else {
        store->rank = 0, store->world = 1;
    }
    CX_TRY(runtime_init(rt, dev, precision, 1, 1));
    if (world > 1 && rt->device == DEV_CUDA && !strcmp(dev, "auto") && rt->gpu != gpu_of_rank) {
        runtime_free(rt);   // auto found a GPU: this rank's is LOCAL_RANK's
        snprintf(mine, sizeof mine, "cuda:%d", gpu_of_rank);
        CX_TRY(runtime_init(rt, mine, precision, 1, 1));
    }
    if (sync_bn && world > 1) {   // BatchNorm over the global batch: its sums through the rendezvous
        rt->ctx.sync_sum = sync_sum_store;
        rt->ctx.sync_arg = store;
        rt->ctx.sync_rank = rank, rt->ctx.sync_world = world;
    } else if (sync_bn && out) {
        fprintf(out, "note: --sync-bn with one process: BatchNorm sees the whole batch anyway\n");
    }
    CX_TRY(comm_open(comm, store, &rt->ctx.op, rt->device, rt->gpu));
    comm->stop = stop;   // a survivor told to stop does not wait out the 60 s deadline
    return CX_OK;
}
