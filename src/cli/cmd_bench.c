// cmd_bench.c — `camoxpert bench`: what a training step and an inference cost,
// dense against sparse (any E, k), for one backbone, batch and image size (the
// option names are train's). One training step = forward, the reference loss
// and its gradient, backward, gradient clipping and the AdamW update, on random
// images and masks. Reported per configuration: step time (median), images/s,
// forward latency at batch 1 (evaluation mode), peak memory (parameters,
// gradients, AdamW moments and the arenas' peaks; and the process's peak RSS),
// forward FLOPs per image counted at every conv/linear/GEMM call (2 per
// multiply-accumulate; the sparse model's from the routing of the timed batches),
// and the achieved GFLOP/s of the training step taken as 3 × forward FLOPs,
// the host<->device copies per step that wait for the device (core/device.h counts
// them), op calls per training step and per batch-1 forward (OpCtx.calls), and for
// sparse models the MoE's planning time on the host (nn/moe.h host_s). --sweep
// E:K,... runs one sparse model per (experts, top-k) and tabulates step time against
// FLOPs beside dense (issue 28). CAMOXPERT_MOE_PLAN=old times the former MoE
// dispatch (nn/moe.h), named in the header line and the JSON's moe_plan. On the
// device --device names, in the precision --precision names; the step is
// train/step.h's, the trainer's own. --profile adds, per configuration, a profile
// of the training step: every op timed between two synchronisations (ops.h
// OpProfile), grouped by kernel class, with achieved TFLOP/s and GB/s.
// Data parallel: `--gpus N` starts N ranks (launch.c), or a launcher's environment
// (torchrun, Slurm, Open MPI) makes this process one rank; every rank runs the same
// step on its own batch and the gradients are all-reduced (train/comm.h, NCCL on
// GPUs), as in training. Rank 0 prints and writes the JSON; images/s counts every
// rank's images and the JSON gains world_size.
#include "cli.h"
#include "infer/infer.h"
#include "core/outpath.h"
#include "nn/camoxpert.h"
#include "train/step.h"
#include "train/comm.h"
#include "train/dist.h"
#include "nn/memory.h"
#include "train/loss.h"
#include "train/optim.h"
#include <cjson/cJSON.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cpu_time_s(void) {   // this process's CPU time, all threads
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

typedef struct {
    int sparse;
    double infer_graph_ms;   // batch 1 replayed as a CUDA graph (dense on a GPU; 0: none)
    char graph_why[160];
    int E, k;                // sparse: experts per scale and per unit
    double train_ms, images_per_s, infer_ms, peak_mb, rss_mb, gflop_img, gflops, params_m, loss, syncs_per_step;
    double calls_per_step;   // op calls (kernel launches, cuDNN/cuBLASLt calls counted once) per training step
    double infer_calls, infer_syncs;   // the same for one batch-1 forward
    double moe_host_ms;      // sparse: the MoE's planning on the host per training step (moe.h host_s)
    double train_cpu_s;      // the process's CPU time per training step (median; every thread): steadier than
                             // the wall clock where other work shares the cores
    double estimate_mb;      // the training step's estimate (nn/memory.h) at the level it ran, beside peak_mb
    double infer_peak_mb, infer_estimate_mb;   // the batch-1 inference: parameters + arena peaks, and the estimate
    double device_mb;        // GPU: device memory the configuration took (free memory before it, less the least after)
    double allreduce_ms;     // several ranks: one all-reduce of the whole gradient buffer alone (median)
    int64_t graph_nodes;     // the micro-batch replayed as a CUDA graph: its kernels and copies (0: eager)
    int64_t graph_replays;   // timed steps that replayed it
    char step_graph[160];    // the step's graph ("1234 nodes") or why there is none
    double zeros_deferred, zeros_written, zeros_filled;   // first-write gradients, per step (ops.h)
    int first_write, fuse;   // the switches as the run had them
    int buckets;             // several ranks: gradient buckets per step
    double params_bytes;     // the gradient buffer
    OpProfile *prof;         // --profile: the ops of PROF_STEPS training steps, else NULL
    OpProfile *prof_infer;   // --profile: the ops of PROF_STEPS batch-1 forwards, else NULL
} BenchRow;

enum { PROF_STEPS = 3 };

static int cmp_entry_time(const void *a, const void *b) {
    double x = ((const OpProfileEntry *)a)->seconds, y = ((const OpProfileEntry *)b)->seconds;
    return (x < y) - (x > y);
}

// The profile of one configuration: by kernel class, then the ops that take the most
// time; per training step (JSON "profile") or batch-1 forward ("profile_infer_batch1").
// what: "training step" or "batch-1 forward"; key: the JSON object's name; ms: the
// unprofiled time of one.
static void profile_report(OpProfile *p, const char *what, const char *key, double unprofiled_ms, cJSON *j) {
    qsort(p->e, (size_t)p->n, sizeof p->e[0], cmp_entry_time);
    double total = 0;
    for (int i = 0; i < p->n; i++) total += p->e[i].seconds;
    const char *cls[16];
    double ms[16] = { 0 }, fl[16] = { 0 }, by[16] = { 0 };
    int64_t calls[16] = { 0 };
    int nc = 0;
    for (int i = 0; i < p->n; i++) {
        const char *c = op_profile_class(&p->e[i]);
        int k = 0;
        while (k < nc && strcmp(cls[k], c)) k++;
        if (k == nc) cls[nc++] = c;
        ms[k] += p->e[i].seconds, fl[k] += p->e[i].flops, by[k] += p->e[i].bytes, calls[k] += p->e[i].calls;
    }
    for (int a = 1; a < nc; a++)   // classes by time, largest first
        for (int b = a; b > 0 && ms[b] > ms[b - 1]; b--) {
            const char *tc = cls[b]; cls[b] = cls[b - 1]; cls[b - 1] = tc;
            double t = ms[b]; ms[b] = ms[b - 1]; ms[b - 1] = t;
            t = fl[b]; fl[b] = fl[b - 1]; fl[b - 1] = t;
            t = by[b]; by[b] = by[b - 1]; by[b - 1] = t;
            int64_t tn = calls[b]; calls[b] = calls[b - 1]; calls[b - 1] = tn;
        }
    cJSON *jp = cJSON_AddObjectToObject(j, key);
    cJSON_AddNumberToObject(jp, "steps", PROF_STEPS);
    cJSON_AddNumberToObject(jp, "ops_ms_per_step", total / PROF_STEPS * 1e3);
    cJSON_AddNumberToObject(jp, "step_ms_unprofiled", unprofiled_ms);
    printf("  profile, per %s (%d of them, each op between two synchronisations): ops %.2f ms; the %s "
           "without them %.2f ms\n", what, PROF_STEPS, total / PROF_STEPS * 1e3, what, unprofiled_ms);
    printf("  %-16s %9s %7s %8s %9s %9s\n", "class", "ms", "share", "calls", "TFLOP/s", "GB/s");
    cJSON *jc = cJSON_AddArrayToObject(jp, "classes");
    for (int k = 0; k < nc; k++) {
        const double t = ms[k] > 0 ? ms[k] : 1e-30;
        printf("  %-16s %9.2f %6.1f%% %8.0f %9.2f %9.0f\n", cls[k], ms[k] / PROF_STEPS * 1e3, 100 * ms[k] / total,
               (double)calls[k] / PROF_STEPS, fl[k] / t * 1e-12, by[k] / t * 1e-9);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "class", cls[k]);
        cJSON_AddNumberToObject(o, "ms_per_step", ms[k] / PROF_STEPS * 1e3);
        cJSON_AddNumberToObject(o, "share", ms[k] / total);
        cJSON_AddNumberToObject(o, "calls_per_step", (double)calls[k] / PROF_STEPS);
        cJSON_AddNumberToObject(o, "tflop_per_s", fl[k] / t * 1e-12);
        cJSON_AddNumberToObject(o, "gb_per_s", by[k] / t * 1e-9);
        cJSON_AddItemToArray(jc, o);
    }
    printf("  %-28s %-16s %9s %6s %8s %9s %9s\n", "op", "variant", "ms", "share", "calls", "TFLOP/s", "GB/s");
    cJSON *jo = cJSON_AddArrayToObject(jp, "ops");
    for (int i = 0; i < p->n; i++) {
        const OpProfileEntry *e = &p->e[i];
        const double t = e->seconds > 0 ? e->seconds : 1e-30;
        if (i < 25)
            printf("  %-28s %-16s %9.2f %5.1f%% %8.0f %9.2f %9.0f\n", e->op, e->kind, e->seconds / PROF_STEPS * 1e3,
                   100 * e->seconds / total, (double)e->calls / PROF_STEPS, e->flops / t * 1e-12, e->bytes / t * 1e-9);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", e->op);
        cJSON_AddStringToObject(o, "variant", e->kind);
        cJSON_AddStringToObject(o, "class", op_profile_class(e));
        cJSON_AddNumberToObject(o, "ms_per_step", e->seconds / PROF_STEPS * 1e3);
        cJSON_AddNumberToObject(o, "calls_per_step", (double)e->calls / PROF_STEPS);
        cJSON_AddNumberToObject(o, "gflop_per_step", e->flops / PROF_STEPS * 1e-9);
        cJSON_AddNumberToObject(o, "mb_per_step", e->bytes / PROF_STEPS / 1048576.0);
        cJSON_AddItemToArray(jo, o);
    }
    printf("  (GB/s counts each tensor argument once: a lower bound of the traffic)\n");
}

// One configuration on rt's device: the training step of train/step.h (the
// trainer's), then batch-1 inference. Times read after a device synchronisation.
// The sparse model's routing (--routing, --route-grid), applied to every sparse configuration.
static const char *bench_routing = "global";
static int bench_grid = 4;

static void bench_one(Runtime *rt, Comm *comm, const char *backbone, int sparse, int E, int k, int B, int S, int steps,
                      int profile, nn_recompute level, BenchRow *r) {
    CamoXpertConfig cfg;
    CX_ASSERT(camoxpert_config(&cfg, backbone, sparse, E, k) == CX_OK, "%s", cx_errmsg());
    if (sparse) CX_ASSERT(camoxpert_config_routing(&cfg, bench_routing, bench_grid) == CX_OK, "%s", cx_errmsg());
    size_t dev_free0 = 0, dev_free = 0, dev_tot = 0;
    if (rt->device == DEV_CUDA) cx_dev_mem_info(&dev_free0, &dev_tot);
    // Each configuration's own peaks (the arenas are the runtime's, shared by the configurations).
    runtime_step_reset(rt);
    rt->act.peak = rt->scratch.peak = 0;
    Model mo;
    CX_ASSERT(model_open(&mo, &(ModelSpec){ .config = &cfg, .rt = rt, .init_seed = 1 }) == CX_OK, "%s", cx_errmsg());
    ParamTable *pt = &mo.pt;
    CamoXpert *m = mo.net;
    rt->ctx.training = 1;
    rt->ctx.recompute = level;
    MemEstimate est;
    camoxpert_memory_estimate(&cfg, pt->numel, B, S, 1, level, 0, rt->dtype == DT_BF16 ? 2 : 4, &est);
    runtime_reserve(rt, est.activations, est.scratch);
    Rng rng = rng_init(2);   // the inputs
    AdamW opt;
    adamw_init(&opt, pt, 1e-4);
    opt.group_scale[PG_ROUTER] = 0.1;
    Arena io;
    arena_init(&io, "inputs", 1 << 20);
    Tensor x = tensor_new4(&io, DT_F32, B, S, S, 3), mask = tensor_new4(&io, DT_F32, B, S, S, 1);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&rng);
    // Masks: a disc per image, so the loss sees both classes.
    for (int b = 0; b < B; b++)
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                double dy = i - S * 0.5, dx = j - S * 0.45;
                tensor_f32(&mask)[((int64_t)b * S + i) * S + j] = dy * dy + dx * dx < S * S / 10.0;
            }
    CamoLossWeights w = camo_loss_default_weights();
    TrainStep step;
    train_step_init(&step, rt, m, pt, &opt, NULL, &w);
    step.comm = comm;
    const int world = comm ? comm->world : 1;
    double *t = cx_malloc(sizeof(double) * (size_t)(steps + 2)), *tc = cx_malloc(sizeof(double) * (size_t)(steps + 2));
    double macs = 0, host_s = 0;
    int64_t sync0 = 0, calls = 0, zs0[3] = { 0, 0, 0 }, replays0 = 0;
    for (int it = 0; it <= steps + 1; it++) {   // iterations 0 and 1 size the arenas and plans (not timed)
        runtime_sync(rt);
        double t0 = cx_time_s(), c0 = cpu_time_s();
        if (it == 2) {
            sync0 = cx_sync_count();
            zs0[0] = step.zeros_deferred, zs0[1] = step.zeros_written, zs0[2] = step.zeros_filled;
            replays0 = step.graph_replays;
        }
        train_step_begin(&step);
        CamoXpertOutputs o;
        rt->ctx.op.macs = it > 1 ? &macs : NULL;
        rt->ctx.op.calls = it > 1 ? &calls : NULL;
        train_step_accumulate(&step, &x, &mask, 0, &o);
        for (int s = 0; s < 4 && sparse && it > 1; s++) host_s += m->moe[s].host_s;
        StepResult sr;
        if (train_step_finish(&step, 1e-4, 0.5, &sr)) {   // the all-reduce: another rank stopped
            fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
            exit(1);
        }
        rt->ctx.op.macs = NULL, rt->ctx.op.calls = NULL;
        runtime_sync(rt);
        if (it > 1) t[it - 2] = cx_time_s() - t0, tc[it - 2] = cpu_time_s() - c0;
        r->loss = sr.loss.total;
    }
    r->zeros_deferred = (double)(step.zeros_deferred - zs0[0]) / steps;
    r->zeros_written = (double)(step.zeros_written - zs0[1]) / steps;
    r->zeros_filled = (double)(step.zeros_filled - zs0[2]) / steps;
    r->graph_nodes = step.g.exec ? step.g.nodes : 0;
    r->graph_replays = step.graph_replays - replays0;
    snprintf(r->step_graph, sizeof r->step_graph, "%s", step.graph_why[0] ? step.graph_why
             : rt->device != DEV_CUDA ? "CUDA graphs need a GPU" : !step.graph ? "CAMOXPERT_TRAIN_GRAPH=0"
             : sparse ? "sparse models read their routing on the host" : world > 1 ? "several ranks" : "not captured");
    r->first_write = step.first_write;
    r->fuse = ops_fuse();
    r->syncs_per_step = (double)(cx_sync_count() - sync0) / steps;
    r->calls_per_step = (double)calls / steps;
    r->moe_host_ms = host_s / steps * 1e3;
    r->train_ms = median(t, steps) * 1e3;   // before t is reused
    r->train_cpu_s = median(tc, steps);
    free(tc);
    r->buckets = step.n_buckets;
    r->params_bytes = (double)pt->numel * (double)dtype_size(pt->dtype);
    r->allreduce_ms = 0;
    if (world > 1) {   // the gradient all-reduce alone: what the buckets hide behind the backward
        const ParamTable *p = pt;
        Tensor g = tensor_view(p->grad, p->dtype, 1, &p->numel);
        g.device = p->device;
        for (int it = 0; it <= steps; it++) {
            runtime_sync(rt);
            double t0 = cx_time_s();
            if (comm_allreduce_sum(comm, &g)) {
                fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
                exit(1);
            }
            runtime_sync(rt);
            if (it > 0) t[it - 1] = cx_time_s() - t0;
        }
        r->allreduce_ms = median(t, steps) * 1e3;
    }
    r->prof = NULL;
    if (profile) {   // after the timed steps: the profiled ones are slower
        r->prof = cx_calloc(1, sizeof *r->prof);
        r->prof->shapes = profile > 1;   // --profile-shapes
        rt->ctx.op.prof = r->prof;
        for (int it = 0; it < PROF_STEPS; it++) {
            train_step_begin(&step);
            CamoXpertOutputs o;
            train_step_accumulate(&step, &x, &mask, 0, &o);
            StepResult sr;
            if (train_step_finish(&step, 1e-4, 0.5, &sr)) {
                fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
                exit(1);
            }
        }
        rt->ctx.op.prof = NULL;
    }
    r->images_per_s = (double)B * world / (r->train_ms * 1e-3);
    r->gflop_img = 2 * macs / steps / B * 1e-9;
    r->gflops = 3 * r->gflop_img * B / (r->train_ms * 1e-3);
    size_t train_peak = rt->act.peak + rt->scratch.peak;
    if (rt->device == DEV_CUDA) cx_dev_mem_info(&dev_free, &dev_tot);
    r->device_mb = rt->device == DEV_CUDA ? ((double)dev_free0 - (double)dev_free) / 1048576.0 : 0;
    r->estimate_mb = est.total / 1048576.0;
    runtime_step_reset(rt);
    rt->act.peak = rt->scratch.peak = 0;
    // Inference: batch 1, evaluation mode, no backward (activations go once read: nn/recompute.h).
    rt->ctx.training = 0;
    rt->ctx.inference = 1;
    Tensor x1 = tensor_slice0(&x, 0, 1);
    int64_t icalls = 0, isync0 = 0;
    for (int it = 0; it <= steps; it++) {
        runtime_sync(rt);
        double t0 = cx_time_s();
        if (it == 1) isync0 = cx_sync_count();
        rt->ctx.op.calls = it > 0 ? &icalls : NULL;
        runtime_step_reset(rt);
        CamoXpertOutputs o;
        Tensor xi = runtime_input(rt, &x1, rt->dtype);
        camoxpert_forward(&rt->ctx, m, &xi, &o);
        rt->ctx.op.calls = NULL;
        runtime_sync(rt);
        if (it > 0) t[it - 1] = cx_time_s() - t0;
    }
    r->infer_syncs = (double)(cx_sync_count() - isync0) / steps;   // the input's upload included
    r->infer_calls = (double)icalls / steps;
    r->infer_ms = median(t, steps) * 1e3;
    r->infer_peak_mb = ((double)pt->numel * 4 + (double)(rt->act.peak + rt->scratch.peak)) / 1048576.0;
    camoxpert_memory_estimate(&cfg, pt->numel, 1, S, 0, NN_RECOMPUTE_NONE, 0, rt->dtype == DT_BF16 ? 2 : 4, &est);
    r->infer_estimate_mb = est.total / 1048576.0;
    r->prof_infer = NULL;
    if (profile) {
        r->prof_infer = cx_calloc(1, sizeof *r->prof_infer);
        r->prof_infer->shapes = profile > 1;
        rt->ctx.op.prof = r->prof_infer;
        for (int it = 0; it < PROF_STEPS; it++) {
            runtime_step_reset(rt);
            CamoXpertOutputs o;
            Tensor xi = runtime_input(rt, &x1, rt->dtype);
            camoxpert_forward(&rt->ctx, m, &xi, &o);
        }
        rt->ctx.op.prof = NULL;
    }
    rt->ctx.inference = 0;
    r->infer_graph_ms = 0;
    r->graph_why[0] = 0;
    if (rt->device == DEV_CUDA && !sparse) {   // the same forward as a CUDA graph (upload, replay, download)
        RuntimeGraph g;
        runtime_graph_capture(rt, &g, &x1, infer_forward_pred, m);
        snprintf(r->graph_why, sizeof r->graph_why, "%s", g.why);
        for (int it = 0; g.exec && it <= steps; it++) {
            runtime_sync(rt);
            double t0 = cx_time_s();
            runtime_graph_run(rt, &g, &x1);
            if (it > 0) t[it - 1] = cx_time_s() - t0;
        }
        if (g.exec) r->infer_graph_ms = median(t, steps) * 1e3;
        runtime_graph_free(rt, &g);
    }
    r->sparse = sparse, r->E = E, r->k = k;
    r->params_m = params_count(pt, PF_BUFFER) * 1e-6;
    // parameters + gradients (table dtype) + AdamW m, v (f32) + the arenas' peaks
    r->peak_mb = ((double)pt->numel * 4 * 4 + (double)train_peak) / 1048576.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->rss_mb = ru.ru_maxrss / 1024.0;
    free(t);
    train_step_free(&step);
    adamw_free(&opt);
    model_close(&mo);
    arena_free(&io);
    runtime_step_reset(rt);
}

int cmd_bench(int argc, char **argv) {
    const char *routing = "global";
    int grid = 4;
    const char *backbone = "edgenext_base", *mode = "both", *json = NULL, *device = "auto", *precision = "auto";
    const char *recompute = "auto";
    int B = 4, S = 352, E = 6, k = 2, steps = 3, threads = 0, overwrite = 0, profile = 0, gpus = 0, shapes = 0;
    const char *sweep = NULL;
    CliOpt opts[] = {
        { "backbone", OPT_STR, &backbone, "EdgeNeXt variant", "NAME", NULL, 0 },
        { "batch-size", OPT_INT, &B, "training batch", "N", NULL, 0 },
        { "img-size", OPT_INT, &S, "image side (a multiple of 32)", "S", NULL, 0 },
        { "num-experts", OPT_INT, &E, "experts per scale (sparse)", "E", NULL, 0 },
        { "top-k", OPT_INT, &k, "experts per image (sparse)", "K", NULL, 0 },
        { "steps", OPT_INT, &steps, "timed iterations (after one untimed); the median is reported", "N", NULL, 0 },
        { "mode", OPT_STR, &mode, "which models", "dense|sparse|both", "dense|sparse|both", 0 },
        { "routing", OPT_STR, &routing, "the sparse model's routing (docs/ROUTING.md)", "global|spatial", "global|spatial", 0 },
        { "route-grid", OPT_INT, &grid, "--routing spatial: at most GxG tiles per scale", "G", NULL, 0 },
        { "sweep", OPT_STR, &sweep, "sparse models with each of these (experts, top-k) instead of --num-experts/--top-k, "
          "e.g. 4:1,6:2,8:1,8:2; a table of time against FLOPs follows (dense = 1 when --mode both)", "E:K,...", NULL, 0 },
        { "json", OPT_STR, &json, "also write one JSON object per configuration (an array) to FILE", "FILE", NULL, 0 },
        { "threads", OPT_INT, &threads, "compute threads (0: all cores)", "N", NULL, 0 },
        { "device", OPT_STR, &device, "cpu, cuda, cuda:N or auto (a GPU when one is usable)", "cpu|cuda|cuda:N|auto", NULL, 0 },
        { "precision", OPT_STR, &precision, "fp32, bf16 (a GPU, or a CPU with AMX-BF16 or AVX512-BF16: its convolutions "
          "and matmuls) or auto (bf16 on a GPU or on such a CPU)", "fp32|bf16|auto", "fp32|bf16|auto", 0 },
        { "recompute", OPT_STR, &recompute, "what the training forward keeps for the backward (as train: none, cheap, "
          "blocks, or auto: the cheapest level that fits the device's memory)", "none|cheap|blocks|auto",
          "none|cheap|blocks|auto", 0 },
        { "profile", OPT_FLAG, &profile, "also time every op of a few training steps and batch-1 forwards, each "
          "between two device synchronisations, and print their time per kernel class (convolution, depthwise, GEMM, "
          "norm, ...)",
          NULL, NULL, 0 },
        { "profile-shapes", OPT_FLAG, &shapes, "--profile with one entry per convolution shape (input size, channels "
          "in->out) instead of per kernel size", NULL, NULL, 0 },
        { "gpus", OPT_INT, &gpus, "data parallel on N GPUs of this machine (N ranks, rank i on GPU i, --batch-size "
          "each; gradients all-reduced as in training); under torchrun/Slurm/Open MPI each process is one rank", "N",
          NULL, 0 },
        { "overwrite", OPT_FLAG, &overwrite, "replace a --json file that camoxpert bench did not write", NULL, NULL, 0 },
    };
    int parsed = cli_parse(argc, argv, "bench", opts, CLI_N(opts), NULL, 0, NULL,
                           "[--backbone NAME] [--batch-size N] [--img-size S] [--num-experts E] [--top-k K] [--steps N] "
                           "[--mode dense|sparse|both] [--json FILE]");
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    if (!strcmp(mode, "dense") && (cli_seen(opts, CLI_N(opts), "routing") || cli_seen(opts, CLI_N(opts), "route-grid") ||
                                   cli_seen(opts, CLI_N(opts), "num-experts") || cli_seen(opts, CLI_N(opts), "top-k"))) {
        fprintf(stderr, "error: camoxpert bench: --mode dense has no experts to route: --routing, --route-grid, "
                "--num-experts and --top-k are for --mode sparse or both\n");
        return 2;
    }
    if (shapes) profile = 2;   // --profile, by convolution shape
    cx_oom_hint("reduce --batch-size or --img-size");
    DistEnv de;
    if (dist_env_read(&de)) {
        fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
        return 2;
    }
    const int launched = getenv("CAMOXPERT_LAUNCHED") != NULL;
    if (gpus < 0 || gpus > 1024) {
        fprintf(stderr, "error: camoxpert bench: --gpus %d: must be from 1 to 1024\n", gpus);
        return 2;
    }
    if (gpus > 1 && !launched) {
        if (de.world > 1) {
            fprintf(stderr, "error: camoxpert bench: --gpus %d inside a %s launch (%d ranks already); drop --gpus\n", gpus,
                    de.source, de.world);
            return 2;
        }
        char why[160] = "";
        const int have = ops_cuda_device_count(why, sizeof why);
        if (have < gpus) {
            fprintf(stderr, "error: camoxpert bench: --gpus %d but this machine has %d usable GPU%s%s%s; lower --gpus\n",
                    gpus, have, have == 1 ? "" : "s", why[0] ? ": " : "", why);
            return 2;
        }
        return launch_ranks("bench", gpus, 0, argc, argv);
    }
    // One rank of several: its own GPU (LOCAL_RANK, or the one CUDA_VISIBLE_DEVICES leaves it).
    char mine[32];
    if (de.world > 1 && (!strcmp(device, "cuda") || !strcmp(device, "auto") || gpus > 1)) {
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        snprintf(mine, sizeof mine, "cuda:%d", vis && *vis && !strchr(vis, ',') ? 0 : de.local_rank);
        device = mine;
    }
    if (de.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;   // rank 0 prints; the others report errors
    bench_routing = routing, bench_grid = grid;
    CamoXpertConfig probe;
    if (camoxpert_config(&probe, backbone, !strcmp(mode, "dense") ? 0 : 1, E, k) ||
        camoxpert_config_routing(&probe, probe.sparse ? routing : "global", grid)) {
        fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
        return 2;
    }
    if (camoxpert_check_img_size(S, "--img-size")) {
        fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
        return 2;
    }
    int asked;
    if (nn_recompute_parse(recompute, &asked)) {
        fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
        return 2;
    }
    if (B < 1 || B > 65536 || steps < 1 || steps > 100000) {
        fprintf(stderr, "error: camoxpert bench: --batch-size %d (1..65536) and --steps %d (1..100000) must be in range\n",
                B, steps);
        return 2;
    }
    if (json && outpath_check(json, OWNER_BENCH, overwrite, "--json")) {
        fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
        return 2;
    }
    // the configurations: dense, then the sparse one (or each of --sweep's)
    enum { MAX_CONFIGS = 17 };
    struct { int sparse, E, k; } conf[MAX_CONFIGS];
    int nm = 0;
    if (strcmp(mode, "sparse")) conf[nm].sparse = 0, conf[nm].E = 4, conf[nm].k = 4, nm++;
    if (strcmp(mode, "dense") && !sweep) conf[nm].sparse = 1, conf[nm].E = E, conf[nm].k = k, nm++;
    for (const char *p = sweep; p && *p && strcmp(mode, "dense");) {
        int e, kk, used = 0;
        CamoXpertConfig c;
        if (sscanf(p, "%d:%d%n", &e, &kk, &used) != 2 || (p[used] && p[used] != ',') || nm == MAX_CONFIGS ||
            camoxpert_config(&c, backbone, 1, e, kk)) {
            fprintf(stderr, "error: camoxpert bench: --sweep %s: expected up to %d pairs E:K (experts:top-k, 1 <= K <= E "
                    "<= %d) separated by commas, e.g. 4:1,6:2,8:1,8:2\n", sweep, MAX_CONFIGS - 1, MOE_MAX_EXPERTS);
            return 2;
        }
        conf[nm].sparse = 1, conf[nm].E = e, conf[nm].k = kk, nm++;
        p += used + (p[used] == ',');
    }
    Runtime rt;
    if (runtime_init(&rt, device, precision, 1, 1)) {
        fprintf(stderr, "error: camoxpert bench: %s\n", cx_errmsg());
        return 2;
    }
    DistStore store = { .rank = 0, .world = 1 };
    Comm comm = { 0 };
    if (de.world > 1) {
        if (dist_store_open(&store, &de, 120) || comm_open(&comm, &store, &rt.ctx.op, rt.device, rt.gpu)) {
            fprintf(stderr, "error: camoxpert bench: rank %d: %s\n", de.rank, cx_errmsg());
            runtime_free(&rt);
            return 1;
        }
        printf("data parallel: %d ranks (%s), %s communicator; images/s counts every rank's\n", de.world,
               launched ? "camoxpert bench --gpus" : de.source, comm.ops->name);
    }
    printf("device: %s\n", rt.desc);
    // Know the memory before the work: the larger model's training step (one model is built
    // at a time), against the GPU's free memory on a GPU, the machine's on the CPU.
    const int act_bytes = rt.dtype == DT_BF16 ? 2 : 4;
    const double other = 256.0 * (1 << 20) + 32.0 * B * S * S;   // the runtime, the random images and masks
    char how[64], ma[32], mb[32];
    const double budget = runtime_mem_budget(&rt, how, sizeof how);
    // The level: the one asked for, or (auto) the first of none, cheap, blocks at which the
    // larger model's step fits.
    nn_recompute level = asked < 0 ? NN_RECOMPUTE_NONE : (nn_recompute)asked;
    double peak, none_peak = 0;
    CamoXpertConfig big;
    int64_t big_n;
    for (;;) {
        peak = 0, big = probe, big_n = 0;
        for (int i = 0; i < nm; i++) {
            CamoXpertConfig cfg;
            camoxpert_config(&cfg, backbone, conf[i].sparse, conf[i].E, conf[i].k);
            if (conf[i].sparse) camoxpert_config_routing(&cfg, bench_routing, bench_grid);
            ParamTable pt;
            params_init(&pt);
            CamoXpert *m = camoxpert_create(&cfg, &pt);
            MemEstimate me;
            camoxpert_memory_estimate(&cfg, pt.numel, B, S, 1, level, 0, act_bytes, &me);
            if (me.total > peak) peak = me.total, big = cfg, big_n = pt.numel;
            camoxpert_free(m);
            params_free(&pt);
        }
        if (level == NN_RECOMPUTE_NONE) none_peak = peak;
        if (asked >= 0 || budget <= 0 || peak + other <= budget || level == NN_RECOMPUTE_BLOCKS) break;
        level = (nn_recompute)(level + 1);
    }
    if (budget > 0 && peak + other > budget) {
        int fit = camoxpert_memory_fit_batch(&big, big_n, S, 1, level, 0, act_bytes, 256.0 * (1 << 20), budget, B);
        while (fit > 0 && fit * 32.0 * S * S + 256.0 * (1 << 20) > budget) fit--;
        char advice[128];
        if (fit) snprintf(advice, sizeof advice, "--batch-size %d fits", fit);
        else {
            int fs = camoxpert_memory_fit_size(&big, big_n, 1, 1, level, 0, act_bytes, 256.0 * (1 << 20) + 32.0 * S * S,
                                               budget, S);
            if (fs) snprintf(advice, sizeof advice, "--img-size %d with --batch-size 1 fits", fs);
            else snprintf(advice, sizeof advice, "the model does not fit even at --img-size 32");
        }
        fprintf(stderr, "error: camoxpert bench: --batch-size %d at --img-size %d: a training step needs about %s at peak%s%s, "
                "more than the %s this machine has available (%s); %s (set CAMOXPERT_MEMORY_LIMIT_MB if its memory grows "
                "on demand)\n", B, S, memory_str(peak + other, ma, sizeof ma), level ? " with --recompute " : "",
                level ? nn_recompute_name(level) : "", memory_str(budget, mb, sizeof mb), how, advice);
        runtime_free(&rt);
        return 2;
    }
    const int legacy = moe_plan_legacy();
    printf("camoxpert bench: %s, batch %d, %dx%d, %d threads, median of %d steps; memory about %s at peak "
           "(estimate)%s\n", backbone, B, S, S, cx_threads_get(), steps, memory_str(peak + other, ma, sizeof ma),
           legacy ? "; MoE dispatch: the former one (CAMOXPERT_MOE_PLAN=old)" : "");
    if (asked >= 0) printf("recompute: %s (--recompute)\n", nn_recompute_name(level));
    else if (level == NN_RECOMPUTE_NONE) printf("recompute: none (auto: every activation is kept for the backward)\n");
    else printf("recompute: %s (auto: the cheapest level that fits; a step needs about %s without recomputation)\n",
                nn_recompute_name(level), memory_str(none_peak + other, mb, sizeof mb));
    printf("%-18s %8s %10s %9s %12s %10s %9s %12s %9s %7s %7s\n", "model", "params M", "train ms", "img/s", "infer ms b1",
           "GFLOP/img", "GFLOP/s", "peak MB", "RSS MB", "syncs", "ops");
    cJSON *arr = cJSON_CreateArray();
    BenchRow rows[MAX_CONFIGS];
    for (int i = 0; i < nm; i++) {
        BenchRow r;
        bench_one(&rt, de.world > 1 ? &comm : NULL, backbone, conf[i].sparse, conf[i].E, conf[i].k, B, S, steps, profile,
                  level, &r);
        rows[i] = r;
        char name[64];
        if (r.sparse && !strcmp(routing, "spatial")) snprintf(name, sizeof name, "spatial E=%d k=%d G=%d", r.E, r.k, grid);
        else if (r.sparse) snprintf(name, sizeof name, "sparse E=%d k=%d", r.E, r.k);
        else snprintf(name, sizeof name, "dense");
        printf("%-18s %8.2f %10.2f %9.2f %12.2f %10.2f %9.1f %12.0f %9.0f %7.1f %7.0f\n", name, r.params_m, r.train_ms,
               r.images_per_s, r.infer_ms, r.gflop_img, r.gflops, r.peak_mb, r.rss_mb, r.syncs_per_step, r.calls_per_step);
        printf("%-18s batch-1 forward: %.0f op calls, %.0f host syncs (the input's upload included)", "", r.infer_calls,
               r.infer_syncs);
        if (r.sparse) printf("; MoE planning on the host %.2f ms a training step", r.moe_host_ms);
        printf("; process CPU time %.2f s a training step\n", r.train_cpu_s);
        printf("%-18s memory (recompute %s): training peak %.0f MB, estimate %.0f MB (%+.1f %%)", "", nn_recompute_name(level),
               r.peak_mb, r.estimate_mb, 100 * (r.estimate_mb / r.peak_mb - 1));
        if (rt.device == DEV_CUDA) printf(", GPU memory taken %.0f MB", r.device_mb);
        printf("; batch-1 inference peak %.0f MB, estimate %.0f MB (%+.1f %%)\n", r.infer_peak_mb, r.infer_estimate_mb,
               100 * (r.infer_estimate_mb / r.infer_peak_mb - 1));
        if (r.infer_graph_ms > 0)
            printf("%-18s batch-1 forward as a CUDA graph (%s): %.2f ms with the upload and the download\n", "",
                   r.graph_why, r.infer_graph_ms);
        else if (r.graph_why[0])
            printf("%-18s no CUDA graph of the batch-1 forward: %s\n", "", r.graph_why);
        if (de.world > 1)
            printf("%-18s gradient all-reduce alone %.2f ms (%.0f MB); in the step: %d buckets beside the backward\n", "",
                   r.allreduce_ms, r.params_bytes / 1e6, r.buckets);
        // launches: the op calls of a step, counted (each queues one to a few kernels); with the
        // micro-batch as a graph, the graph's nodes are the exact kernels (and copies) of that part
        if (r.graph_nodes > 0)
            printf("%-18s training step: %.0f op calls; forward+loss+backward replayed as one CUDA graph of %lld "
                   "kernels and copies (%lld of %d timed steps); %.1f host syncs\n", "", r.calls_per_step,
                   (long long)r.graph_nodes, (long long)r.graph_replays, steps, r.syncs_per_step);
        else
            printf("%-18s training step: %.0f op calls launched one by one (no graph: %s); %.1f host syncs\n", "",
                   r.calls_per_step, r.step_graph, r.syncs_per_step);
        printf("%-18s first-write gradients %s: per step %.0f zeroed buffers, %.0f written by their first op, %.0f "
               "filled; fused ops %s\n", "", r.first_write ? "on" : "off (CAMOXPERT_FIRST_WRITE=0)", r.zeros_deferred,
               r.zeros_written, r.zeros_filled, r.fuse ? "on" : "off (CAMOXPERT_FUSE=0)");
        fflush(stdout);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "software", OWNER_BENCH);
        cJSON_AddStringToObject(j, "mode", r.sparse ? "sparse" : "dense");
        cJSON_AddStringToObject(j, "backbone", backbone);
        cJSON_AddNumberToObject(j, "num_experts", r.sparse ? r.E : 4);
        cJSON_AddNumberToObject(j, "top_k", r.sparse ? r.k : 4);
        if (r.sparse) cJSON_AddStringToObject(j, "moe_plan", legacy ? "old" : "new");
        if (r.sparse) cJSON_AddStringToObject(j, "routing", routing);
        if (r.sparse && !strcmp(routing, "spatial")) cJSON_AddNumberToObject(j, "route_grid", grid);
        cJSON_AddNumberToObject(j, "batch", B);
        cJSON_AddNumberToObject(j, "world_size", de.world);
        if (de.world > 1) {
            cJSON_AddNumberToObject(j, "allreduce_ms", r.allreduce_ms);
            cJSON_AddNumberToObject(j, "gradient_buckets", r.buckets);
        }
        cJSON_AddNumberToObject(j, "img_size", S);
        cJSON_AddNumberToObject(j, "threads", cx_threads_get());
        cJSON_AddStringToObject(j, "device", rt.desc);
        cJSON_AddStringToObject(j, "precision", rt.bf16 ? "bf16" : "fp32");
        cJSON_AddNumberToObject(j, "host_syncs_per_step", r.syncs_per_step);
        cJSON_AddNumberToObject(j, "op_calls_per_step", r.calls_per_step);
        cJSON_AddNumberToObject(j, "step_graph_nodes", (double)r.graph_nodes);
        cJSON_AddNumberToObject(j, "step_graph_replays", (double)r.graph_replays);
        cJSON_AddStringToObject(j, "step_graph", r.step_graph);
        cJSON_AddBoolToObject(j, "first_write", r.first_write);
        cJSON_AddBoolToObject(j, "fused_ops", r.fuse);
        cJSON_AddNumberToObject(j, "zeroed_buffers_per_step", r.zeros_deferred);
        cJSON_AddNumberToObject(j, "zeroed_written_per_step", r.zeros_written);
        cJSON_AddNumberToObject(j, "zeroed_filled_per_step", r.zeros_filled);
        cJSON_AddNumberToObject(j, "infer_batch1_op_calls", r.infer_calls);
        cJSON_AddNumberToObject(j, "infer_batch1_host_syncs", r.infer_syncs);
        if (r.sparse) cJSON_AddNumberToObject(j, "moe_host_ms_per_step", r.moe_host_ms);
        cJSON_AddNumberToObject(j, "params_m", r.params_m);
        cJSON_AddNumberToObject(j, "train_ms_per_step", r.train_ms);
        cJSON_AddNumberToObject(j, "train_cpu_s_per_step", r.train_cpu_s);
        cJSON_AddNumberToObject(j, "images_per_s", r.images_per_s);
        cJSON_AddNumberToObject(j, "infer_ms_batch1", r.infer_ms);
        if (r.infer_graph_ms > 0) cJSON_AddNumberToObject(j, "infer_ms_batch1_graph", r.infer_graph_ms);
        cJSON_AddNumberToObject(j, "peak_mem_mb", r.peak_mb);
        cJSON_AddStringToObject(j, "recompute", nn_recompute_name(level));
        cJSON_AddNumberToObject(j, "estimate_mb", r.estimate_mb);
        cJSON_AddNumberToObject(j, "infer_peak_mem_mb_batch1", r.infer_peak_mb);
        cJSON_AddNumberToObject(j, "infer_estimate_mb_batch1", r.infer_estimate_mb);
        if (rt.device == DEV_CUDA) cJSON_AddNumberToObject(j, "device_mem_mb", r.device_mb);
        cJSON_AddNumberToObject(j, "peak_rss_mb", r.rss_mb);
        cJSON_AddNumberToObject(j, "gflop_per_image", r.gflop_img);
        cJSON_AddNumberToObject(j, "achieved_gflop_per_s", r.gflops);
        if (r.prof_infer) {
            profile_report(r.prof_infer, "batch-1 forward", "profile_infer_batch1", r.infer_ms, j);
            free(r.prof_infer);
        }
        if (r.prof) {
            profile_report(r.prof, "training step", "profile", r.train_ms, j);
            free(r.prof);
        }
        cJSON_AddItemToArray(arr, j);
    }
    printf("(dense runs all four experts per scale; GFLOP/img is the forward pass; GFLOP/s takes a training step as 3x "
           "forward; peak MB = parameters + gradients + AdamW moments + activation/scratch arenas; syncs = host<->device "
           "copies per training step that wait for the device; ops = op calls per training step)\n");
    if (sweep && !conf[0].sparse && nm > 1) {   // time against FLOPs, dense = 1
        printf("\n(E, k) sweep against dense: does the step time follow the FLOPs? (CPU s: the process's CPU time "
               "per training step)\n");
        printf("%-18s %10s %10s %10s %9s %10s %12s %10s %9s\n", "model", "GFLOP/img", "FLOPs", "train ms", "time", "img/s",
               "time/FLOPs", "CPU s", "CPU time");
        for (int i = 0; i < nm; i++) {
            const BenchRow *r = &rows[i];
            char name[32];
            if (r->sparse) snprintf(name, sizeof name, "sparse E=%d k=%d", r->E, r->k);
            else snprintf(name, sizeof name, "dense");
            const double fr = r->gflop_img / rows[0].gflop_img, tr = r->train_ms / rows[0].train_ms;
            printf("%-18s %10.2f %10.3f %10.2f %9.3f %10.2f %12.3f %10.2f %9.3f\n", name, r->gflop_img, fr, r->train_ms, tr,
                   r->images_per_s, tr / fr, r->train_cpu_s, r->train_cpu_s / rows[0].train_cpu_s);
        }
    }
    int rc = 0;
    if (json && de.rank == 0) {
        if (io_atomic_write_json(json, arr)) { fprintf(stderr, "error: --json %s: %s\n", json, cx_errmsg()); rc = 1; }
    }
    cJSON_Delete(arr);
    if (de.world > 1) {
        comm_close(&comm);
        dist_store_close(&store);
    }
    runtime_free(&rt);
    return rc;
}
