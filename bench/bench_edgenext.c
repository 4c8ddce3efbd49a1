// bench_edgenext.c — EdgeNeXt-base throughput, side by side with PyTorch in one
// run (docs/PERF.md, ## EdgeNeXt): a training step (forward + backward of the
// loss Σ feat·probe, batch 2) and inference (forward, batch 1) at 352×352 in
// float32 on the fast kernels, then the same through tools/edgenext_twin.py on
// Debian's PyTorch with torch.set_num_threads equal to our thread count.
//
//   make bench BENCH=edgenext           (or: build/camoxpert_bench edgenext [--iters N] [--size S] [--no-torch])
#include "bench.h"
#include "nn/edgenext.h"
#include <string.h>

#define FWD_MACS_352 7236768726.0   // edgenext_base backbone at 352×352 (spec §4.2)


typedef struct {
    EdgeNeXt *m;
    ParamTable *pt;
    NNCtx ctx;
    Tensor x, probe[4];
    int train;
} Job;

static void job_step(void *arg) {
    Job *j = arg;
    Tensor f[4];
    arena_reset(j->ctx.act);
    edgenext_forward(&j->ctx, j->m, f, &j->x);
    if (!j->train) return;
    params_zero_grad(j->pt);
    edgenext_backward(&j->ctx, j->m, j->probe, NULL);
}

// Runs the twin's bench and returns its median seconds (or -1).
static double torch_time(int batch, int size, int train, int threads, int iters) {
    char cmd[512], line[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tools/edgenext_twin.py bench --variant edgenext_base --batch %d --size %dx%d --train %d "
             "--threads %d --iters %d 2>&1",
             batch, size, size, train, threads, iters);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    double med = -1;
    while (fgets(line, sizeof line, p)) {
        const char *s = strstr(line, "\"median_s\": ");
        if (s) med = strtod(s + 12, NULL);
        else fputs(line, stderr);
    }
    pclose(p);
    return med;
}

int bench_edgenext_main(int argc, char **argv) {
    int iters = 5, size = 352, torch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else if (strcmp(argv[i], "edgenext")) {
            fprintf(stderr, "usage: camoxpert_bench edgenext [--iters N] [--size S] [--no-torch]\n");
            return 2;
        }
    }
    cx_threads_set(0);
    const int threads = cx_threads_get();
    EdgeNeXtConfig cfg;
    if (edgenext_config("edgenext_base", &cfg)) return 1;
    ParamTable pt;
    params_init(&pt);
    EdgeNeXt *m = edgenext_create(&cfg, &pt, "");
    params_alloc(&pt, DT_F32);
    Rng rng = rng_init(1);
    edgenext_init_weights(m, &pt, &rng);
    Arena act, scratch, io;
    arena_init(&act, "activations", 256 << 20);
    arena_init(&scratch, "scratch", 64 << 20);
    arena_init(&io, "inputs", 16 << 20);
    const double macs = FWD_MACS_352 * ((double)size * size) / (352.0 * 352.0);
    printf("EdgeNeXt-base, %dx%d, float32, %d threads (%lld parameters)\n", size, size, threads,
           (long long)params_count(&pt, 0));
    printf("%-28s %12s %10s %10s %12s %10s %8s\n", "case", "camoxpert ms", "img/s", "GFLOP/s", "pytorch ms", "img/s", "ratio");
    static const struct { const char *name; int batch, train; } cases[] = {
        { "train fwd+bwd, batch 2", 2, 1 },
        { "inference fwd, batch 1", 1, 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int B = cases[c].batch;
        Job j = { .m = m, .pt = &pt, .train = cases[c].train };
        j.ctx = (NNCtx){ .pt = &pt, .op = { .backend = OPS_CPU, .scratch = &scratch }, .act = &act, .dtype = DT_F32,
                         .training = 1 };
        arena_reset(&io);
        j.x = tensor_new4(&io, DT_F32, B, size, size, 3);
        for (int64_t i = 0; i < tensor_numel(&j.x); i++) tensor_f32(&j.x)[i] = (float)rng_normal(&rng);
        int fh[4], fw[4];
        edgenext_feature_sizes(m, size, size, fh, fw);
        for (int s = 0; s < 4; s++) {
            j.probe[s] = tensor_new4(&io, DT_F32, B, fh[s], fw[s], cfg.dims[s]);
            for (int64_t i = 0; i < tensor_numel(&j.probe[s]); i++) tensor_f32(&j.probe[s])[i] = (float)rng_normal(&rng);
        }
        Timing t = bench_time(job_step, &j, 1, iters);
        // training = forward + backward ≈ 3× the forward FLOPs (dx and dw of every layer)
        const double flops = 2.0 * macs * B * (cases[c].train ? 3 : 1);
        double tt = torch ? torch_time(B, size, cases[c].train, threads, iters) : -1;
        printf("%-28s %12.1f %10.2f %10.1f", cases[c].name, t.med * 1e3, B / t.med, flops / t.med * 1e-9);
        if (tt > 0) printf(" %12.1f %10.2f %7.2fx\n", tt * 1e3, B / tt, tt / t.med);
        else printf(" %12s\n", torch ? "(failed)" : "-");
        fflush(stdout);
    }
    printf("peak activation arena: %.1f MB\n", act.peak / 1048576.0);
    edgenext_free(m);
    params_free(&pt);
    arena_free(&act);
    arena_free(&scratch);
    arena_free(&io);
    return 0;
}
