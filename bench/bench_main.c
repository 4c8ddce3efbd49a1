// bench_main.c — the benchmark program (`make bench`, build/camoxpert_bench):
// the first argument picks a benchmark; anything else goes to the op benchmark.
// Also the shared timing loop (bench.h).
//
//   build/camoxpert_bench [--quick] [--threads N] [SECTION]   op kernels (docs/PERF.md "CPU ops")
//   build/camoxpert_bench edgenext [--iters N] [--size S] [--no-torch]
//   build/camoxpert_bench camoxpert [--iters N] [--size S] [--batch B] [--no-torch]
//   build/camoxpert_bench precision [--backbone B] [--size S] [--batch N] [--iters N] [--mode M] [--no-train]
//   build/camoxpert_bench memfit [--quick] [BACKBONE:SPARSE:E:K:BATCH:SIZE...]   nn/memory.c's fit (tools/memfit.py)
#include "bench.h"
#include "core/log.h"
#include <stdlib.h>
#include <string.h>

int bench_ops_main(int argc, char **argv);
int bench_edgenext_main(int argc, char **argv);
int bench_camoxpert_main(int argc, char **argv);
int bench_precision_main(int argc, char **argv);
int bench_memfit_main(int argc, char **argv);

int main(int argc, char **argv) {
    static const struct { const char *name; int (*fn)(int, char **); } benches[] = {
        { "edgenext", bench_edgenext_main },
        { "camoxpert", bench_camoxpert_main },
        { "precision", bench_precision_main },
        { "memfit", bench_memfit_main },
    };
    for (size_t i = 0; argc > 1 && i < sizeof benches / sizeof *benches; i++)
        if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc, argv);
    return bench_ops_main(argc, argv);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

Timing bench_time(void (*step)(void *), void *arg, int warmup, int iters) {
    for (int i = 0; i < warmup; i++) step(arg);
    double t[64];
    if (iters > 64) iters = 64;
    if (iters < 1) iters = 1;
    for (int i = 0; i < iters; i++) {
        double t0 = cx_time_s();
        step(arg);
        t[i] = cx_time_s() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_d);
    return (Timing){ t[iters / 2], t[0] };
}
