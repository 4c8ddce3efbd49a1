// bench_precision.c — float32 against bf16 on the CPU (issue 32; docs/PERF.md, "bf16 on
// the CPU"), alternated in one process so that both see the same minutes of a shared
// machine: the same model (same seed, same weights) opened twice on the CPU, once per
// precision, then the batch-1 forward in evaluation mode (predict's path, infer/infer.h)
// and the training step (train/step.h, the trainer's: forward, loss, backward,
// clipping, AdamW) taking turns, fp32 then bf16, --iters times each after two
// untimed rounds. Per precision: the median and the minimum wall time, and the median
// CPU time of the process over the call (all threads; waiting threads sleep under
// OMP_WAIT_POLICY=passive, so on a loaded machine it is the work, where wall time is
// the work plus the time slices other jobs took).
//
//   build/camoxpert_bench precision [--backbone B] [--size S] [--batch N] [--iters N]
//                                   [--mode dense|sparse|both] [--no-train] [--threads T]
#include "bench.h"
#include "infer/infer.h"
#include "train/step.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double med(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    Model mo;
    AdamW opt;
    CamoLossWeights w;
    TrainStep step;
    double wall[64], cpu[64];
} Side;

enum { PASS_INFER, PASS_TRAIN };

// One timed call on s: a batch-1 forward (x1) or a training step (x, mask).
static void run_once(Side *s, int pass, const Tensor *x1, const Tensor *x, const Tensor *mask, int slot) {
    CamoXpertOutputs o;
    double w0 = cx_time_s(), c0 = cpu_s();
    if (pass == PASS_INFER) {
        s->mo.rt->ctx.training = 0;
        infer_forward(&s->mo, x1, &o);
    } else {
        StepResult r;
        s->mo.rt->ctx.training = 1;
        train_step_begin(&s->step);
        train_step_accumulate(&s->step, x, mask, 0, &o);
        train_step_finish(&s->step, 1e-4, 0.5, &r);
    }
    if (slot >= 0) s->wall[slot] = cx_time_s() - w0, s->cpu[slot] = cpu_s() - c0;
}

int bench_precision_main(int argc, char **argv) {
    int iters = 5, size = 352, batch = 2, train = 1, threads = 0;
    const char *backbone = "edgenext_base", *mode = "dense";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backbone") && i + 1 < argc) backbone = argv[++i];
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-train")) train = 0;
        else {
            fprintf(stderr, "usage: camoxpert_bench precision [--backbone B] [--size S] [--batch N] [--iters N] "
                            "[--mode dense|sparse|both] [--no-train] [--threads T]\n");
            return 2;
        }
    }
    if (iters < 1 || iters > 64 || size % 32 || batch < 1) {
        fprintf(stderr, "error: --iters 1..64, --size a multiple of 32, --batch >= 1\n");
        return 2;
    }
    char what[128];
    if (!ops_cpu_bf16(what, sizeof what)) {
        fprintf(stderr, "camoxpert_bench precision: this CPU has no native bf16: %s\n", what);
        return 1;
    }
    cx_threads_set(threads);
    printf("fp32 against bf16 on the CPU (%s), %s %dx%d, training batch %d, %d threads, alternated, %d timed rounds "
           "after 2; load ", what, backbone, size, size, batch, cx_threads_get(), iters);
    FILE *la = fopen("/proc/loadavg", "r");
    char l[128] = "?\n";
    if (la && !fgets(l, sizeof l, la)) snprintf(l, sizeof l, "?\n");
    if (la) fclose(la);
    printf("%s", l);
    printf("%-8s %-26s %10s %10s %10s   %s\n", "model", "pass, precision", "median ms", "min ms", "cpu ms", "fp32/bf16 (median wall, cpu)");
    for (int sparse = 0; sparse <= 1; sparse++) {
        if ((sparse && !strcmp(mode, "dense")) || (!sparse && !strcmp(mode, "sparse"))) continue;
        CamoXpertConfig cfg;
        if (camoxpert_config(&cfg, backbone, sparse, 6, 2)) { fprintf(stderr, "error: %s\n", cx_errmsg()); return 1; }
        static Side side[2];
        const char *prec[2] = { "fp32", "bf16" };
        for (int p = 0; p < 2; p++) {
            Side *s = &side[p];
            if (model_open(&s->mo, &(ModelSpec){ .config = &cfg, .img_size = size, .init_seed = 1, .training = 1,
                                                  .device = "cpu", .precision = prec[p] })) {
                fprintf(stderr, "error: %s\n", cx_errmsg());
                return 1;
            }
            adamw_init(&s->opt, &s->mo.pt, 1e-4);
            s->w = camo_loss_default_weights();
            train_step_init(&s->step, s->mo.rt, s->mo.net, &s->mo.pt, &s->opt, NULL, &s->w);
        }
        Arena io;
        arena_init(&io, "inputs", 16 << 20);
        Rng rng = rng_init(2);
        Tensor x = tensor_new4(&io, DT_F32, batch, size, size, 3), mask = tensor_new4(&io, DT_F32, batch, size, size, 1);
        for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&rng);
        for (int64_t i = 0; i < tensor_numel(&mask); i++) tensor_f32(&mask)[i] = rng_uniform(&rng) < 0.3f;
        Tensor x1 = tensor_view4(tensor_f32(&x), DT_F32, 1, size, size, 3);
        for (int pass = PASS_INFER; pass <= (train ? PASS_TRAIN : PASS_INFER); pass++) {
            for (int it = -2; it < iters; it++)
                for (int p = 0; p < 2; p++) run_once(&side[p], pass, &x1, &x, &mask, it);
            double m[2], c[2], mn[2];
            for (int p = 0; p < 2; p++) {
                mn[p] = 1e30;
                for (int i = 0; i < iters; i++) mn[p] = side[p].wall[i] < mn[p] ? side[p].wall[i] : mn[p];
                m[p] = med(side[p].wall, iters), c[p] = med(side[p].cpu, iters);
            }
            for (int p = 0; p < 2; p++) {
                char lab[64];
                snprintf(lab, sizeof lab, "%s, %s", pass == PASS_INFER ? "forward batch 1" : "train step", prec[p]);
                printf("%-8s %-26s %10.1f %10.1f %10.1f", sparse ? "sparse" : "dense", lab, m[p] * 1e3, mn[p] * 1e3,
                       c[p] * 1e3);
                if (p) printf("   %.2fx, %.2fx", m[0] / m[1], c[0] / c[1]);
                printf("\n");
            }
            fflush(stdout);
        }
        for (int p = 0; p < 2; p++) {
            train_step_free(&side[p].step);
            adamw_free(&side[p].opt);
            model_close(&side[p].mo);
        }
        arena_free(&io);
    }
    if ((la = fopen("/proc/loadavg", "r"))) {
        if (fgets(l, sizeof l, la)) printf("load at the end %s", l);
        fclose(la);
    }
    return 0;
}
