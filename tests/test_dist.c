// test_dist.c — data-parallel plumbing that needs no GPU (train/dist.h): the
// launchers' environment (torchrun, Open MPI, Slurm), and the TCP rendezvous
// with its collective decisions between real processes (fork): every rank
// connected, a broadcast, sums equal on every rank, one rank's stop seen by
// all, and the faults — a rank that dies is named at once, a missing rank or
// rank 0 is a clear error within the timeout, a port in use is named.
#include "test.h"
#include "train/comm.h"
#include "train/dist.h"
#include "train/valshard.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *env_names[] = { "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                                   "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                   "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_NODE_RANK", "SLURM_PROCID",
                                   "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODEID",
                                   "SLURM_JOB_NODELIST", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE" };

// Clears every variable above, then sets "NAME=value" pairs (NULL-terminated).
static void env_only(const char *const *kv) {
    for (size_t i = 0; i < sizeof env_names / sizeof *env_names; i++) unsetenv(env_names[i]);
    for (; kv && *kv; kv++) {
        char name[64];
        const char *eq = strchr(*kv, '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - *kv), *kv);
        setenv(name, eq + 1, 1);
    }
}

TEST(dist_env_reads_torchrun_openmpi_and_slurm) {
    DistEnv e;
    env_only(NULL);
    REQUIRE_OK(dist_env_read(&e));
    CHECK(e.world == 1 && e.rank == 0 && !strcmp(e.source, "single"));
    env_only((const char *[]){ "RANK=3", "WORLD_SIZE=4", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=2", "GROUP_RANK=1",
                               "MASTER_ADDR=10.1.2.3", "MASTER_PORT=1234", NULL });
    REQUIRE_OK(dist_env_read(&e));
    CHECK(e.rank == 3 && e.world == 4 && e.local_rank == 1 && e.local_world == 2 && e.node_rank == 1 &&
          !strcmp(e.master_addr, "10.1.2.3") && e.master_port == 1234 && !strcmp(e.source, "torchrun"));
    // torchrun's agent keeps its own store on MASTER_PORT: the ranks meet on the next port
    env_only((const char *[]){ "RANK=0", "WORLD_SIZE=2", "MASTER_PORT=29500", "TORCHELASTIC_USE_AGENT_STORE=True", NULL });
    REQUIRE_OK(dist_env_read(&e));
    CHECK(e.master_port == 29501);
    // one machine, no MASTER_ADDR: the loopback and the default port
    env_only((const char *[]){ "OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_LOCAL_RANK=1",
                               "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL });
    REQUIRE_OK(dist_env_read(&e));
    CHECK(e.rank == 1 && e.world == 2 && !strcmp(e.master_addr, "127.0.0.1") && e.master_port == 29500 &&
          !strcmp(e.source, "openmpi"));
    env_only((const char *[]){ "SLURM_PROCID=2", "SLURM_NTASKS=4", "SLURM_LOCALID=0", "SLURM_NTASKS_PER_NODE=2",
                               "SLURM_NODEID=1", "SLURM_JOB_NODELIST=gpu[03-04,07]", NULL });
    REQUIRE_OK(dist_env_read(&e));
    CHECK(e.rank == 2 && e.node_rank == 1 && !strcmp(e.master_addr, "gpu03") && !strcmp(e.source, "slurm"));
    // what is wrong is named
    const struct { const char *kv[4]; const char *want; } bad[] = {
        { { "RANK=2", "WORLD_SIZE=2", NULL }, "RANK=2 is not below WORLD_SIZE=2" },
        { { "RANK=0", NULL }, "WORLD_SIZE is not" },
        { { "RANK=x", "WORLD_SIZE=2", NULL }, "RANK=x is not an integer" },
        { { "RANK=0", "WORLD_SIZE=2", "MASTER_PORT=70000", NULL }, "MASTER_PORT=70000" },
        { { "OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL },
          "MASTER_ADDR is not set" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        env_only(bad[i].kv);
        cx_status st = dist_env_read(&e);
        CHECKF(st != CX_OK && strstr(cx_errmsg(), bad[i].want), "case %zu: %s", i, cx_errmsg());
    }
    env_only(NULL);
}


static DistEnv env_of(int rank, int world, int port) {
    DistEnv e = { .rank = rank, .world = world, .local_rank = rank, .local_world = world, .master_port = port,
                  .source = "test" };
    snprintf(e.master_addr, sizeof e.master_addr, "127.0.0.1");
    return e;
}

// What every rank does in the happy case; returns 0 when all its checks hold.
// Runs work(rank, arg) as ranks 0..world-1 of one run: ranks 1.. in forked processes
// (a rank's result is its exit status), rank 0 in this one. rc[r] is rank r's result (0:
// its checks passed; -1: it did not exit normally). Returns 0 when every rank gave 0.
typedef int (*rank_fn)(int rank, void *arg);
static int run_ranks(int world, rank_fn work, void *arg, int *rc) {
    pid_t kids[8];
    CX_ASSERT(world >= 1 && world <= 8, "run_ranks: %d ranks", world);
    for (int r = 1; r < world; r++) {
        kids[r - 1] = fork();
        if (kids[r - 1] == 0) _exit(work(r, arg));
    }
    rc[0] = work(0, arg);
    int bad = rc[0] != 0;
    for (int r = 1; r < world; r++) {
        int st = 0;
        waitpid(kids[r - 1], &st, 0);
        rc[r] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        bad |= rc[r] != 0;
    }
    return bad;
}

static int rank_work(int rank, int world, int port) {
    DistEnv e = env_of(rank, world, port);
    DistStore s;
    if (dist_store_open(&s, &e, 20)) return 1;
    unsigned char id[128];
    for (int i = 0; i < 128; i++) id[i] = rank == 0 ? (unsigned char)(i * 7 + 3) : 0;
    if (dist_broadcast(&s, id, sizeof id)) return 2;
    for (int i = 0; i < 128; i++)
        if (id[i] != (unsigned char)(i * 7 + 3)) return 3;
    double v[2] = { rank, 0.1 * (rank + 1) };
    if (dist_sum(&s, v, 2)) return 4;
    double want1 = 0;
    for (int r = 0; r < world; r++) want1 += 0.1 * (r + 1);   // rank order, as the hub adds
    if (v[0] != world * (world - 1) / 2 || v[1] != want1) return 5;
    int any;
    if (dist_any(&s, rank == world - 1, &any) || !any) return 6;   // the last rank asks to stop: all stop
    if (dist_any(&s, 0, &any) || any) return 7;
    if (dist_barrier(&s)) return 8;
    dist_store_close(&s);
    return 0;
}

static int rank_work_3(int rank, void *port) { return rank_work(rank, 3, *(int *)port); }

TEST(dist_rendezvous_broadcast_sum_and_stop_across_processes) {
    int port = test_free_port(), rc[3];
    REQUIRE(port > 0);
    run_ranks(3, rank_work_3, &port, rc);
    CHECKF(rc[0] == 0, "rank 0: check %d failed: %s", rc[0], cx_errmsg());
    for (int r = 1; r < 3; r++) CHECKF(rc[r] == 0, "rank %d: exit status %d", r, rc[r]);
}

TEST(dist_a_dead_rank_is_named_and_nothing_hangs) {
    const int world = 3, port = test_free_port();
    REQUIRE(port > 0);
    pid_t kids[2];
    for (int r = 1; r < world; r++) {
        kids[r - 1] = fork();
        if (kids[r - 1] == 0) {
            DistEnv e = env_of(r, world, port);
            DistStore s;
            if (dist_store_open(&s, &e, 20)) _exit(1);
            if (r == 2) _exit(0);   // dies without a word: the kernel closes its socket
            double v = 1;
            cx_status st = dist_sum(&s, &v, 1);   // rank 0 gives up on rank 2, closes: rank 1 hears of it
            _exit(st != CX_OK && strstr(cx_errmsg(), "rank 0 closed its connection") ? 0 : 2);
        }
    }
    DistEnv e = env_of(0, world, port);
    DistStore s;
    REQUIRE_OK(dist_store_open(&s, &e, 20));
    double t0 = cx_time_s(), v = 1;
    cx_status st = dist_sum(&s, &v, 1);
    CHECKF(st != CX_OK && strstr(cx_errmsg(), "rank 2 closed its connection"), "rank 0: %s", cx_errmsg());
    CHECKF(cx_time_s() - t0 < 10, "the dead rank was noticed after %.1f s", cx_time_s() - t0);
    dist_store_close(&s);
    for (int r = 1; r < world; r++) {
        int ws = 0;
        waitpid(kids[r - 1], &ws, 0);
        CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "rank %d: exit status %d", r, WEXITSTATUS(ws));
    }
}

TEST_SLOW(dist_missing_ranks_and_busy_ports_are_clear_errors) {
    // rank 2 never comes
    int port = test_free_port();
    REQUIRE(port > 0);
    pid_t kid = fork();
    if (kid == 0) {
        DistEnv e = env_of(1, 3, port);
        DistStore s;
        cx_status st = dist_store_open(&s, &e, 5);   // connected, then rank 0 gives up and closes
        _exit(st == CX_OK ? 0 : 1);
    }
    DistEnv e = env_of(0, 3, port);
    DistStore s;
    double t0 = cx_time_s();
    cx_status st = dist_store_open(&s, &e, 1.5);
    CHECKF(st != CX_OK && strstr(cx_errmsg(), "2 of 3 ranks arrived") && strstr(cx_errmsg(), "missing: 2"), "%s",
           cx_errmsg());
    CHECKF(cx_time_s() - t0 < 5, "gave up after %.1f s", cx_time_s() - t0);
    int ws;
    waitpid(kid, &ws, 0);
    // rank 0 never comes
    e = env_of(1, 2, test_free_port());
    st = dist_store_open(&s, &e, 0.5);
    CHECKF(st != CX_OK && strstr(cx_errmsg(), "did not answer within"), "%s", cx_errmsg());
    // the port is taken
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    socklen_t n = sizeof a;
    REQUIRE(fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !listen(fd, 1) &&
            !getsockname(fd, (struct sockaddr *)&a, &n));
    e = env_of(0, 2, ntohs(a.sin_port));
    st = dist_store_open(&s, &e, 1);
    CHECKF(st != CX_OK && strstr(cx_errmsg(), "is in use") && strstr(cx_errmsg(), "MASTER_PORT"), "%s", cx_errmsg());
    close(fd);
}

// The host communicator (train/comm.h) between 3 processes: an all-reduce larger than
// one exchange chunk gives every rank the float64 rank-ordered sum, rounded once, bit
// for bit; float64 and a broadcast too; a gather of unequal pieces arrives in rank order.
static float comm_val(int rank, int64_t i) { return (float)(0.1 * (rank + 1) + 1e-3 * (double)(i % 977) - 0.3 * (i % 3)); }

static int comm_rank_work(int rank, int world, int port) {
    DistEnv e = env_of(rank, world, port);
    DistStore s;
    if (dist_store_open(&s, &e, 20)) return 1;
    Comm c;
    if (comm_open(&c, &s, NULL, DEV_CPU, 0)) return 2;
    if (strcmp(c.ops->name, "host") || c.rank != rank || c.world != world) return 3;
    const int64_t n = (1 << 20) + 4321;   // two exchanges
    float *g = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) g[i] = comm_val(rank, i);
    Tensor t = tensor_view(g, DT_F32, 1, &n);
    if (comm_allreduce_sum(&c, &t)) return 4;
    for (int64_t i = 0; i < n; i++) {
        double want = 0;
        for (int r = 0; r < world; r++) want += (double)comm_val(r, i);
        if (g[i] != (float)want) return 5;
    }
    free(g);
    double d[3] = { rank, 1e-17 * rank, 1.0 / (rank + 1) }, want2 = 0;
    int64_t n3 = 3;
    Tensor td = tensor_view(d, DT_F64, 1, &n3);
    if (comm_allreduce_sum(&c, &td)) return 6;
    for (int r = 0; r < world; r++) want2 += 1.0 / (r + 1);
    if (d[0] != world * (world - 1) / 2 || d[2] != want2) return 7;
    float b[4] = { rank, rank, rank, rank };
    int64_t n4 = 4;
    Tensor tb = tensor_view(b, DT_F32, 1, &n4);
    if (comm_broadcast(&c, &tb) || b[0] != 0 || b[3] != 0) return 8;
    int32_t iv[2] = { 1, 2 };
    int64_t n2 = 2;
    Tensor ti = tensor_view(iv, DT_I32, 1, &n2);
    if (comm_allreduce_sum(&c, &ti) != CX_EARG || !strstr(cx_errmsg(), "float32 or float64")) return 9;
    // unequal pieces: rank r sends r + 1 bytes of value r
    unsigned char piece[8];
    memset(piece, rank, sizeof piece);
    void *all;
    size_t sizes[3] = { 0 };
    if (dist_gather(&s, piece, (size_t)rank + 1, &all, sizes)) return 10;
    if (rank == 0) {
        const unsigned char want[6] = { 0, 1, 1, 2, 2, 2 };
        if (!all || sizes[0] != 1 || sizes[1] != 2 || sizes[2] != 3 || memcmp(all, want, 6)) return 11;
        free(all);
    } else if (all) {
        return 12;
    }
    comm_close(&c);
    dist_store_close(&s);
    return 0;
}

static int comm_rank_work_3(int rank, void *port) { return comm_rank_work(rank, 3, *(int *)port); }

TEST(comm_host_allreduce_is_rank_ordered_and_identical_on_every_rank) {
    int port = test_free_port(), rc[3];
    REQUIRE(port > 0);
    run_ranks(3, comm_rank_work_3, &port, rc);
    CHECKF(rc[0] == 0, "rank 0: check %d failed: %s", rc[0], cx_errmsg());
    for (int r = 1; r < 3; r++) CHECKF(rc[r] == 0, "rank %d: check %d failed", r, rc[r]);
    // one process: nothing to exchange, nothing changed
    DistEnv e = env_of(0, 1, 0);
    DistStore s;
    REQUIRE_OK(dist_store_open(&s, &e, 1));
    Comm c;
    REQUIRE_OK(comm_open(&c, &s, NULL, DEV_CPU, 0));
    float v = 1.5f;
    int64_t one = 1;
    Tensor t = tensor_view(&v, DT_F32, 1, &one);
    REQUIRE_OK(comm_allreduce_sum(&c, &t));
    CHECK(v == 1.5f);
    comm_close(&c);
    dist_store_close(&s);
}

// Sharded validation (train/valshard.h): the shards are whole batches that cover the
// split in order; 3 ranks scoring their shards of 11 real prediction/GT pairs of
// different sizes give every rank the dataset scores one process gives, bit for bit.
static void val_pair(int i, float *prob, uint8_t *gt, int *h, int *w) {
    *h = 9 + i % 4, *w = 12 - i % 3;
    Rng r = rng_init(100 + (uint64_t)i);
    for (int p = 0; p < *h * *w; p++) {
        int y = p / *w, x = p % *w;
        gt[p] = (x - 3 - i % 5) * (x - 3 - i % 5) + (y - 4) * (y - 4) < 9 + i % 7 ? 255 : 0;
        prob[p] = (float)(0.6 * (gt[p] > 128) + 0.4 * rng_uniform(&r));
    }
}

static int val_rank_work(int rank, int world, int port, int n, int batch, const ValResult *want) {
    DistEnv e = env_of(rank, world, port);
    DistStore s;
    if (dist_store_open(&s, &e, 20)) return 1;
    int first, count;
    val_shard(n, batch, rank, world, &first, &count);
    ValImage *mine = calloc((size_t)(count > 0 ? count : 1), sizeof *mine);
    float prob[16 * 16];
    uint8_t gt[16 * 16];
    for (int i = 0; i < count; i++) {
        int h, w;
        val_pair(first + i, prob, gt, &h, &w);
        MetricsAccum scratch;
        metrics_accum_init(&scratch);
        if (metrics_accum_prob(&scratch, prob, gt, h, w, &mine[i].m)) return 2;
        mine[i].index = first + i;
        mine[i].iou = 0.01 * (first + i);
    }
    ValResult vr;
    if (val_reduce(&s, mine, count, n, &vr)) return 3;
    free(mine);
    dist_store_close(&s);
    return memcmp(&vr.s, &want->s, sizeof vr.s) || vr.iou != want->iou || vr.n != want->n ? 4 : 0;
}

typedef struct { int world, port, n, batch; const ValResult *want; } ValArgs;
static int val_rank_fn(int rank, void *arg) {
    const ValArgs *a = arg;
    return val_rank_work(rank, a->world, a->port, a->n, a->batch, a->want);
}

TEST(valshard_three_ranks_give_the_one_process_scores_bit_for_bit) {
    // the shards: whole batches, in order, covering the split (some ranks may have none)
    const int cases[][3] = { { 11, 3, 3 }, { 10, 4, 3 }, { 3, 2, 4 }, { 0, 2, 2 }, { 7, 7, 2 }, { 100, 8, 5 } };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int n = cases[c][0], batch = cases[c][1], world = cases[c][2], next = 0;
        for (int r = 0; r < world; r++) {
            int first, count;
            val_shard(n, batch, r, world, &first, &count);
            CHECKF(first == next && count >= 0 && (first % batch == 0 || count == 0), "case %zu rank %d: [%d, +%d)", c, r,
                   first, count);
            next = first + count;
        }
        CHECKF(next == n, "case %zu: the shards cover %d of %d", c, next, n);
    }
    // one process: every image in order
    const int n = 11, batch = 3, world = 3;
    ValImage all[11];
    float prob[16 * 16];
    uint8_t gt[16 * 16];
    for (int i = 0; i < n; i++) {
        int h, w;
        val_pair(i, prob, gt, &h, &w);
        MetricsAccum scratch;
        metrics_accum_init(&scratch);
        REQUIRE_OK(metrics_accum_prob(&scratch, prob, gt, h, w, &all[i].m));
        all[i].index = i;
        all[i].iou = 0.01 * i;
    }
    DistEnv e1 = env_of(0, 1, 0);
    DistStore s1;
    REQUIRE_OK(dist_store_open(&s1, &e1, 1));
    ValResult want;
    REQUIRE_OK(val_reduce(&s1, all, n, n, &want));
    CHECK(want.n == n && want.s.sm > 0 && want.s.sm < 1);
    // shards that do not add up are named
    CHECK(val_reduce(&s1, all, n - 1, n, &want) == CX_EIO && strstr(cx_errmsg(), "10 of the 11 images"));
    REQUIRE_OK(val_reduce(&s1, all, n, n, &want));
    dist_store_close(&s1);
    ValArgs va = { .world = world, .port = test_free_port(), .n = n, .batch = batch, .want = &want };
    REQUIRE(va.port > 0);
    int rc[3];
    run_ranks(world, val_rank_fn, &va, rc);
    CHECKF(rc[0] == 0, "rank 0: check %d failed: %s", rc[0], cx_errmsg());
    for (int r = 1; r < world; r++) CHECKF(rc[r] == 0, "rank %d: check %d failed", r, rc[r]);
}

// ---- synchronised BatchNorm (NNCtx.sync_sum) ------------------------------------------------------------
#include "nn/layers.h"
#include "nn/runtime.h"

static cx_status store_sum(void *arg, double *v, int n) { return dist_sum((DistStore *)arg, v, n); }

// conv (so the BatchNorm input has a non-zero mean per channel) + BN + ReLU on a batch
// of 4 in float64; rank r of `world` (0: one process, the whole batch) runs images
// [r·4/world, (r+1)·4/world). Fills the rank's slice of y and dx, and the whole dγ, dβ
// (summed over the ranks) and running statistics.
typedef struct { double y[4 * 3 * 5 * 6], dx[4 * 3 * 5 * 6], dg[6], db[6], rm[6], rv[6]; } SyncBnOut;

static int sync_bn_run(int rank, int world, int port, int sync, SyncBnOut *o) {
    enum { N = 4, H = 3, W = 5, C = 6 };
    DistStore st = { .rank = 0, .world = 1 };
    if (world > 1) {
        DistEnv e = env_of(rank, world, port);
        if (dist_store_open(&st, &e, 20)) return 1;
    }
    Runtime rt;
    runtime_init_reference(&rt, DT_F64, 1);
    ParamTable pt;
    params_init(&pt);
    Seq s = { 0 };
    seq_cbr(&s, &pt, "b", C, C, 3, 1, PG_REST);
    params_alloc(&pt, DT_F64);
    Rng rng = rng_init(3);
    seq_init(&s, &pt, &rng);
    Tensor gam = params_value(&pt, s.l[1].w_idx), bet = params_value(&pt, s.l[1].b_idx);
    for (int c = 0; c < C; c++) tensor_set(&gam, c, 0.5 + rng_uniform(&rng)), tensor_set(&bet, c, rng_uniform(&rng) - 0.5);
    rt.ctx.pt = &pt;
    if (world > 1 && sync) rt.ctx.sync_sum = store_sum, rt.ctx.sync_arg = &st, rt.ctx.sync_rank = rank, rt.ctx.sync_world = world;
    Arena a;
    arena_init(&a, "inputs", 1 << 16);
    Tensor x = tensor_new4(&a, DT_F64, N, H, W, C), dy = tensor_new4(&a, DT_F64, N, H, W, C);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_set(&x, i, 2 * rng_uniform(&rng) + 0.3 * (i % C));
    for (int64_t i = 0; i < tensor_numel(&dy); i++) tensor_set(&dy, i, rng_normal(&rng));
    const int64_t n0 = N * rank / world, nb = N / world, per = H * W * C;
    Tensor xs = tensor_slice0(&x, n0, nb), dys = tensor_slice0(&dy, n0, nb);
    Tensor y = seq_forward(&rt.ctx, &s, &xs);
    Tensor dx = tensor_new4(&a, DT_F64, nb, H, W, C);
    for (int64_t i = 0; i < tensor_numel(&dx); i++) tensor_set(&dx, i, 0);
    seq_backward(&rt.ctx, &s, &dys, &dx);
    for (int64_t i = 0; i < nb * per; i++) o->y[n0 * per + i] = tensor_get(&y, i), o->dx[n0 * per + i] = tensor_get(&dx, i);
    Tensor dg = params_grad(&pt, s.l[1].w_idx), db = params_grad(&pt, s.l[1].b_idx);
    Tensor rm = params_value(&pt, s.l[1].rmean_idx), rv = params_value(&pt, s.l[1].rvar_idx);
    for (int c = 0; c < C; c++)
        o->dg[c] = tensor_get(&dg, c), o->db[c] = tensor_get(&db, c), o->rm[c] = tensor_get(&rm, c), o->rv[c] = tensor_get(&rv, c);
    int rc = 0;
    if (world > 1) {   // the parameter gradients as the step's all-reduce sums them; the slices to rank 0
        if (dist_sum(&st, o->dg, C) || dist_sum(&st, o->db, C)) rc = 2;
        void *all = NULL;
        size_t sz[8];
        double mine[2 * 2 * H * W * C];
        memcpy(mine, o->y + n0 * per, sizeof(double) * (size_t)(nb * per));
        memcpy(mine + nb * per, o->dx + n0 * per, sizeof(double) * (size_t)(nb * per));
        if (!rc && dist_gather(&st, mine, sizeof(double) * (size_t)(2 * nb * per), &all, sz)) rc = 3;
        if (!rc && rank == 0) {
            for (int r = 0; r < world; r++) {
                const double *p = (const double *)((const char *)all + r * sz[0]);
                memcpy(o->y + r * nb * per, p, sizeof(double) * (size_t)(nb * per));
                memcpy(o->dx + r * nb * per, p + nb * per, sizeof(double) * (size_t)(nb * per));
            }
        }
        free(all);
        dist_store_close(&st);
    }
    arena_free(&a);
    params_free(&pt);
    runtime_free(&rt);
    return rc;
}

// Two ranks of a 2-rank run (sync or not), rank 0's results into *two; returns 0 when both ranks ran.
typedef struct { int port, sync; SyncBnOut *two; } SyncBnArgs;
static int sync_bn_rank(int rank, void *arg) {
    const SyncBnArgs *a = arg;
    SyncBnOut mine;
    return sync_bn_run(rank, 2, a->port, a->sync, rank ? &mine : a->two);
}
static int sync_bn_two(int sync, SyncBnOut *two) {
    SyncBnArgs a = { test_free_port(), sync, two };
    int rc[2];
    return a.port <= 0 || run_ranks(2, sync_bn_rank, &a, rc);
}

static double sync_bn_diff(const SyncBnOut *a, const SyncBnOut *b) {
    double worst = 0;
#define CMP(field, n) for (int i = 0; i < (n); i++) worst = fmax(worst, fabs(a->field[i] - b->field[i]) / fmax(fabs(a->field[i]), 1e-3))
    CMP(y, 4 * 3 * 5 * 6);
    CMP(dx, 4 * 3 * 5 * 6);
    CMP(dg, 6);
    CMP(db, 6);
    CMP(rm, 6);
    CMP(rv, 6);
#undef CMP
    return worst;
}

TEST(dist_sync_batchnorm_over_two_ranks_equals_one_process_on_the_whole_batch) {
    SyncBnOut one, two, local;
    memset(&one, 0, sizeof one);
    memset(&two, 0, sizeof two);
    memset(&local, 0, sizeof local);
    REQUIRE(sync_bn_run(0, 1, 0, 0, &one) == 0);
    REQUIRE(sync_bn_two(1, &two) == 0);
    REQUIRE(sync_bn_two(0, &local) == 0);
    // outputs, input gradients, parameter gradients (summed as the step's all-reduce does)
    // and running statistics, float64
    const double w = sync_bn_diff(&one, &two), wl = sync_bn_diff(&one, &local);
    CHECKF(w < 1e-10, "two ranks with synchronised BatchNorm vs one process: worst relative difference %.3g", w);
    CHECKF(wl > 1e-3, "two ranks with their own statistics should differ from one process: %.3g", wl);
}

// The whole dense model in float64: two ranks with synchronised BatchNorm and batch
// maximum, each on half of 4 images, against one process on all 4 — the loss (mean of
// the ranks') and every parameter gradient (mean of the ranks', as the step's
// all-reduce makes it) to 1e-9. This checks the uncertainty maximum's exchange, forward
// and backward, besides BatchNorm's.
#include "infer/open.h"
#include "train/step.h"

typedef struct { double loss; double *grad; int64_t n; } ModelGrad;

static int sync_model_run(int rank, int world, int port, nn_recompute level, ModelGrad *o) {
    enum { B = 4, S = 32 };
    DistStore store = { .rank = 0, .world = 1 };
    if (world > 1) {
        DistEnv e = env_of(rank, world, port);
        if (dist_store_open(&store, &e, 60)) return 1;
    }
    CamoXpertConfig cfg;
    if (camoxpert_config(&cfg, "edgenext_xx_small", 0, 4, 4)) return 2;
    Model mo;   // float64 on the reference kernels
    if (model_open(&mo, &(ModelSpec){ .config = &cfg, .reference = 1, .training = 1, .init_seed = 9 })) return 2;
    ParamTable *pt = &mo.pt;
    Runtime *rt = mo.rt;
    CamoXpert *m = mo.net;
    Rng rng = rng_init(10);   // the inputs
    if (world > 1) rt->ctx.sync_sum = store_sum, rt->ctx.sync_arg = &store, rt->ctx.sync_rank = rank, rt->ctx.sync_world = world;
    rt->ctx.recompute = level;
    Arena a;
    arena_init(&a, "inputs", 1 << 20);
    Tensor x = tensor_new4(&a, DT_F32, B, S, S, 3), y = tensor_new4(&a, DT_F32, B, S, S, 1);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&rng);
    for (int b = 0; b < B; b++)   // a disc per image, off centre by image
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                double di = i - S * (0.3 + 0.1 * b), dj = j - S * 0.5;
                tensor_f32(&y)[((int64_t)b * S + i) * S + j] = di * di + dj * dj < S * S / 12.0;
            }
    const int64_t nb = B / world;
    Tensor xs = tensor_slice0(&x, rank * nb, nb), ys = tensor_slice0(&y, rank * nb, nb);
    AdamW opt;
    adamw_init(&opt, pt, 1e-4);
    CamoLossWeights w = camo_loss_default_weights();
    TrainStep ts;
    train_step_init(&ts, rt, m, pt, &opt, NULL, &w);
    train_step_begin(&ts);
    CamoXpertOutputs out;
    train_step_accumulate(&ts, &xs, &ys, 0, &out);
    Tensor terms = nn_to_host(&rt->ctx, &ts.stats);
    double t[CL_TERMS];
    for (int i = 0; i < CL_TERMS; i++) t[i] = tensor_get(&terms, i);
    CamoLoss L;
    camo_loss_from_terms(&w, t, 0, &L);
    o->loss = L.total;
    o->n = pt->numel;
    o->grad = cx_malloc(sizeof(double) * (size_t)pt->numel);
    memcpy(o->grad, pt->grad, sizeof(double) * (size_t)pt->numel);
    int rc = 0;
    if (world > 1) {   // the means over the ranks, on every rank
        if (dist_sum(&store, &o->loss, 1) || dist_sum(&store, o->grad, (int)o->n)) rc = 3;
        o->loss /= world;
        for (int64_t i = 0; i < o->n; i++) o->grad[i] /= world;
        dist_store_close(&store);
    }
    train_step_free(&ts);
    adamw_free(&opt);
    model_close(&mo);
    arena_free(&a);
    return rc;
}

typedef struct { int port; nn_recompute level; ModelGrad *two; } ModelArgs;
static int sync_model_rank(int rank, void *arg) {
    const ModelArgs *a = arg;
    ModelGrad mine = { 0 };
    int rc = sync_model_run(rank, 2, a->port, a->level, rank ? &mine : a->two);
    free(mine.grad);
    return rc;
}

TEST_SLOW(dist_sync_whole_model_two_ranks_equal_one_process_float64) {
    ModelGrad one = { 0 }, two = { 0 };
    REQUIRE(sync_model_run(0, 1, 0, NN_RECOMPUTE_NONE, &one) == 0);
    ModelArgs a = { test_free_port(), NN_RECOMPUTE_NONE, &two };
    REQUIRE(a.port > 0);
    int rc[2];
    REQUIRE(run_ranks(2, sync_model_rank, &a, rc) == 0 && one.n == two.n);
    CHECKF(fabs(one.loss - two.loss) <= 1e-12 * fabs(one.loss), "loss %.17g vs %.17g", two.loss, one.loss);
    double num = 0, den = 0, worst = 0;
    for (int64_t i = 0; i < one.n; i++) {
        num += (one.grad[i] - two.grad[i]) * (one.grad[i] - two.grad[i]);
        den += one.grad[i] * one.grad[i];
        worst = fmax(worst, fabs(one.grad[i] - two.grad[i]));
    }
    CHECKF(den > 0 && sqrt(num / den) < 1e-9, "gradients: relative L2 %.3g (largest difference %.3g)", sqrt(num / den),
           worst);
    printf("    float64, 2 ranks vs 1: loss %.3g relative, gradients %.3g relative L2\n",
           fabs(one.loss - two.loss) / fabs(one.loss), sqrt(num / den));
    // Recomputation under synchronised BatchNorm: a re-run normalises by the statistics the
    // forward exchanged (no second exchange): the same loss and gradients to the last bit.
    ModelGrad rb = { 0 };
    ModelArgs ab = { test_free_port(), NN_RECOMPUTE_BLOCKS, &rb };
    REQUIRE(ab.port > 0);
    REQUIRE(run_ranks(2, sync_model_rank, &ab, rc) == 0 && rb.n == two.n);
    CHECKF(rb.loss == two.loss && !memcmp(rb.grad, two.grad, sizeof(double) * (size_t)two.n),
           "2 ranks, --sync-bn, --recompute blocks: loss %.17g vs %.17g; the gradients %s", rb.loss, two.loss,
           memcmp(rb.grad, two.grad, sizeof(double) * (size_t)two.n) ? "differ" : "agree");
    free(rb.grad);
    free(one.grad);
    free(two.grad);
}

// Gradient buckets (train/step.h): during the backward each range of the gradient
// buffer is all-reduced as soon as the backward is done with it (the head, the experts,
// each backbone stage). Were a range started before its last contribution, that
// contribution would stay this rank's alone. Through the host communicator (float64
// sums in rank order, the same bits however the buffer is cut), 2 ranks reduce to
// exactly the gradients of one all-reduce after the backward: dense and sparse models
// (global and spatial routing), with and without the frozen backbone (stage 1), float64
// reference kernels.
typedef struct { double *grad; int64_t n; int buckets; } BucketOut;

static int bucket_run(int rank, int port, int sparse, int skip_backbone, int buckets, BucketOut *o) {
    const int spatial = sparse == 2;   // sparse 2: spatial routing (docs/ROUTING.md)
    enum { B = 2, S = 32 };
    DistEnv e = env_of(rank, 2, port);
    DistStore store;
    if (dist_store_open(&store, &e, 60)) return 1;
    Comm c;
    if (comm_open(&c, &store, NULL, DEV_CPU, 0)) return 2;
    CamoXpertConfig cfg;
    if (camoxpert_config(&cfg, "edgenext_xx_small", sparse != 0, 4, 2)) return 3;
    if (spatial && camoxpert_config_routing(&cfg, "spatial", 2)) return 3;
    Model mo;   // float64 on the reference kernels
    if (model_open(&mo, &(ModelSpec){ .config = &cfg, .reference = 1, .training = 1, .init_seed = 5 })) return 2;
    ParamTable *pt = &mo.pt;
    Runtime *rt = mo.rt;
    CamoXpert *m = mo.net;
    Arena a;
    arena_init(&a, "inputs", 1 << 20);
    Tensor x = tensor_new4(&a, DT_F32, B, S, S, 3), y = tensor_new4(&a, DT_F32, B, S, S, 1);
    Rng ri = rng_init(40 + (uint64_t)rank);   // each rank its own images
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&ri);
    for (int64_t i = 0; i < tensor_numel(&y); i++) tensor_f32(&y)[i] = rng_uniform(&ri) < 0.3;
    AdamW opt;
    adamw_init(&opt, pt, 1e-4);
    CamoLossWeights w = camo_loss_default_weights();
    TrainStep ts;
    train_step_init(&ts, rt, m, pt, &opt, NULL, &w);
    ts.comm = &c;
    ts.buckets = buckets;
    train_step_begin(&ts);
    CamoXpertOutputs out;
    train_step_accumulate(&ts, &x, &y, skip_backbone, &out);
    const int started = ts.n_buckets;   // during the backward
    StepResult r;
    int rc = train_step_finish(&ts, 1e-4, 0, &r) ? 4 : 0;
    o->n = pt->numel;
    o->buckets = started;
    o->grad = cx_malloc(sizeof(double) * (size_t)pt->numel);
    memcpy(o->grad, pt->grad, sizeof(double) * (size_t)pt->numel);
    train_step_free(&ts);
    adamw_free(&opt);
    model_close(&mo);
    arena_free(&a);
    comm_close(&c);
    dist_store_close(&store);
    return rc;
}

typedef struct { int port, sparse, skip_backbone, buckets; BucketOut *o; } BucketArgs;
static int bucket_rank(int rank, void *arg) {
    const BucketArgs *a = arg;
    BucketOut mine = { 0 };
    return bucket_run(rank, a->port, a->sparse, a->skip_backbone, a->buckets, rank ? &mine : a->o);
}

static int bucket_two(int sparse, int skip_backbone, int buckets, BucketOut *o) {
    BucketArgs a = { test_free_port(), sparse, skip_backbone, buckets, o };
    if (a.port <= 0) return 1;
    // one thread: a forked child must not use OpenMP's pool of the parent (the optimizer step would hang)
    const int threads = cx_threads_get();
    cx_threads_set(1);
    int rc[2];
    int bad = run_ranks(2, bucket_rank, &a, rc);
    cx_threads_set(threads);
    return bad;
}

TEST_SLOW(dist_gradient_buckets_equal_one_all_reduce_after_the_backward) {
    static const struct { int sparse, skip_backbone, buckets; } cases[] = {
        { 0, 0, 7 },   // head, experts, stages 3..0, stem
        { 1, 0, 7 },
        { 2, 0, 7 },   // spatial routing
        { 0, 1, 2 },   // stage 1: head and experts during the backward, the backbone's zeros at the end
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        BucketOut with = { 0 }, without = { 0 };
        REQUIRE(bucket_two(cases[k].sparse, cases[k].skip_backbone, 1, &with) == 0);
        REQUIRE(bucket_two(cases[k].sparse, cases[k].skip_backbone, 0, &without) == 0);
        REQUIRE(with.n == without.n);
        CHECKF(with.buckets == cases[k].buckets && without.buckets == 0, "case %zu: %d buckets during the backward (want %d)",
               k, with.buckets, cases[k].buckets);
        int64_t diff = 0, first = -1;
        double norm = 0;
        for (int64_t i = 0; i < with.n; i++) {
            if (memcmp(&with.grad[i], &without.grad[i], sizeof(double))) diff++, first = first < 0 ? i : first;
            norm += with.grad[i] * with.grad[i];
        }
        CHECKF(diff == 0, "case %zu (sparse %d, frozen backbone %d): %lld of %lld gradients differ from one all-reduce "
               "after the backward (the first at element %lld)", k, cases[k].sparse, cases[k].skip_backbone,
               (long long)diff, (long long)with.n, (long long)first);
        CHECK(norm > 0);
        free(with.grad);
        free(without.grad);
    }
}

// Accumulation (train --accumulation-steps) adds a micro-batch's parameter gradients
// to what the earlier micro-batches left; the all-reduce adds each rank's, computed
// into zeros, and rounds the sum once. The two give the same bits when every CPU
// backward adds its whole contribution to a parameter gradient in one rounding: then
// one process with accumulation trains as the ranks do (issue 35). Each op below
// writes parameter gradients; the shapes reach past sgemm's blocking over the rows
// (2048 rows: blocked by every x86 kernel of OpenBLAS 0.3.21, which from there added
// each block into the gradient as it went) and into the kernels' per-thread partials.
enum { ACC_LINEAR, ACC_CONV1X1, ACC_CONV3X3, ACC_DWCONV7X7, ACC_LAYERNORM, ACC_BATCHNORM, ACC_LAYER_SCALE, ACC_OPS };
static const char *const acc_names[ACC_OPS] = { "linear", "1x1 conv", "3x3 conv", "7x7 depthwise conv", "LayerNorm",
                                                "BatchNorm", "layer scale" };

typedef struct {
    int op;
    Tensor x, w, b, mean, rstd;   // the input, the parameters, what the forward saved
    Tensor dy[2];                 // two micro-batches' output gradients
    Tensor g[2];                  // the parameter gradients' shapes (weight; bias, or none)
    ConvArgs conv;
} AccCase;

static Tensor acc_random(Arena *a, Rng *rng, int ndim, const int64_t *shape) {
    Tensor t = tensor_new(a, DT_F32, ndim, shape);
    for (int64_t i = 0; i < tensor_numel(&t); i++) tensor_f32(&t)[i] = (float)rng_normal(rng);
    return t;
}

static AccCase acc_case(OpCtx *ctx, Arena *a, Rng *rng, int op) {
    AccCase c = { .op = op, .conv = { 1, 0, 1, 1 } };
    const int64_t N = 2, S = 32, R = N * S * S;
    int64_t C = 48, K = 48, k = 1;   // channels in and out, kernel size
    if (op == ACC_LINEAR || op == ACC_CONV1X1 || op == ACC_LAYERNORM) C = 96;
    if (op == ACC_CONV3X3) C = 16, K = 24, k = 3, c.conv.pad = 1;
    if (op == ACC_DWCONV7X7) C = K = 32, k = 7, c.conv.pad = 3, c.conv.groups = 32;
    const int rows = op == ACC_LINEAR || op == ACC_LAYERNORM;   // (R, C) rather than (N, S, S, C)
    c.x = rows ? acc_random(a, rng, 2, (int64_t[]){ R, C }) : acc_random(a, rng, 4, (int64_t[]){ N, S, S, C });
    for (int i = 0; i < 2; i++)
        c.dy[i] = rows ? acc_random(a, rng, 2, (int64_t[]){ R, K }) : acc_random(a, rng, 4, (int64_t[]){ N, S, S, K });
    if (op <= ACC_DWCONV7X7) {
        c.w = rows ? acc_random(a, rng, 2, (int64_t[]){ K, C })
                   : acc_random(a, rng, 4, (int64_t[]){ K, C / c.conv.groups, k, k });
        c.g[0] = tensor_like(a, &c.w);
        c.g[1] = tensor_new(a, DT_F32, 1, (int64_t[]){ K });
        return c;
    }
    c.w = acc_random(a, rng, 1, (int64_t[]){ C });
    c.g[0] = tensor_like(a, &c.w);
    if (op == ACC_LAYER_SCALE) return c;
    c.b = acc_random(a, rng, 1, (int64_t[]){ C });
    c.g[1] = tensor_like(a, &c.w);
    Tensor y = tensor_like(a, &c.x);
    if (op == ACC_LAYERNORM) {
        c.mean = tensor_new(a, DT_F32, 1, (int64_t[]){ R }), c.rstd = tensor_like(a, &c.mean);
        layernorm_forward(ctx, &y, &c.mean, &c.rstd, &c.x, &c.w, &c.b, 1e-6);
    } else {
        c.mean = tensor_like(a, &c.w), c.rstd = tensor_like(a, &c.w);
        batchnorm_forward(ctx, &y, &c.mean, &c.rstd, &c.x, &c.w, &c.b, NULL, NULL, 1, 0.1, 1e-5);
    }
    return c;
}

// g[i] += the parameter gradients of c's op for output gradient dy.
static void acc_backward(OpCtx *ctx, const AccCase *c, const Tensor *dy, Tensor *g) {
    Tensor *gb = c->g[1].data ? &g[1] : NULL;
    switch (c->op) {
    case ACC_LINEAR: linear_backward(ctx, NULL, &g[0], gb, dy, &c->x, &c->w); break;
    case ACC_LAYERNORM: layernorm_backward(ctx, NULL, &g[0], gb, dy, &c->x, &c->mean, &c->rstd, &c->w); break;
    case ACC_BATCHNORM: batchnorm_backward(ctx, NULL, &g[0], gb, dy, &c->x, &c->mean, &c->rstd, &c->w, 1); break;
    case ACC_LAYER_SCALE: mul_backward(ctx, NULL, &g[0], dy, &c->x, &c->w); break;
    default: conv2d_backward(ctx, NULL, &g[0], gb, dy, &c->x, &c->w, c->conv); break;
    }
}

TEST(dist_cpu_parameter_gradients_accumulate_micro_batches_as_the_all_reduce_adds_ranks) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 24);
    arena_init(&scratch, "scratch", 1 << 24);
    OpCtx ctx = { .backend = OPS_CPU, .scratch = &scratch };
    for (int threads = 1; threads <= 2; threads++) {
        cx_threads_set(threads);
        for (int op = 0; op < ACC_OPS; op++) {
            Rng rng = rng_init(70 + (uint64_t)op);
            AccCase c = acc_case(&ctx, &a, &rng, op);
            const int ng = c.g[1].data ? 2 : 1;
            Tensor first[2], acc[2], alone[2];
            for (int i = 0; i < ng; i++) first[i] = tensor_zeros_like(&a, &c.g[i]), alone[i] = tensor_zeros_like(&a, &c.g[i]);
            acc_backward(&ctx, &c, &c.dy[0], first);   // the earlier micro-batch's gradients
            for (int i = 0; i < ng; i++) {
                acc[i] = tensor_like(&a, &c.g[i]);
                memcpy(acc[i].data, first[i].data, tensor_nbytes(&c.g[i]));
            }
            acc_backward(&ctx, &c, &c.dy[1], acc);     // the next one accumulated into them
            acc_backward(&ctx, &c, &c.dy[1], alone);   // the next one as another rank computes it
            for (int i = 0; i < ng; i++) {
                int64_t bad = 0, n = tensor_numel(&c.g[i]);
                for (int64_t j = 0; j < n; j++)
                    bad += tensor_f32(&acc[i])[j] != tensor_f32(&first[i])[j] + tensor_f32(&alone[i])[j];
                CHECKF(bad == 0, "%s, %d thread%s: %lld of %lld %s gradients accumulated differ from the earlier ones plus "
                       "this micro-batch's alone", acc_names[op], threads, threads > 1 ? "s" : "", (long long)bad,
                       (long long)n, i ? "bias" : "weight");
            }
            arena_reset(&a);
        }
    }
    cx_threads_set(0);
    arena_free(&a);
    arena_free(&scratch);
}
