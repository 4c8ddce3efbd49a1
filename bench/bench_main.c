// bench_main.c — the benchmark program (`make bench`, build/camoxpert_bench):
// the first argument picks a benchmark; anything else goes to the op benchmark.
//
//   build/camoxpert_bench [--quick] [--threads N] [SECTION]   op kernels (docs/PERF.md "CPU ops")
//   build/camoxpert_bench edgenext [--iters N] [--size S] [--no-torch]
//   build/camoxpert_bench camoxpert [--iters N] [--size S] [--batch B] [--no-torch]
#include <string.h>

int bench_ops_main(int argc, char **argv);
int bench_edgenext_main(int argc, char **argv);
int bench_camoxpert_main(int argc, char **argv);

int main(int argc, char **argv) {
    static const struct { const char *name; int (*fn)(int, char **); } benches[] = {
        { "edgenext", bench_edgenext_main },
        { "camoxpert", bench_camoxpert_main },
    };
    for (size_t i = 0; argc > 1 && i < sizeof benches / sizeof *benches; i++)
        if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc, argv);
    return bench_ops_main(argc, argv);
}
