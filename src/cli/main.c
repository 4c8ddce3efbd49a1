// main.c — the camoxpert program: dispatches to a subcommand.
#include "cli.h"
#include "core/sysmem.h"
#include "ops/ops.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { const char *name; int (*fn)(int, char **); const char *help; } Command;

static const Command commands[] = {
    { "version", cmd_version, "print the version and build configuration" },
    { "train", cmd_train, "train a CamoXpert model (two stages, validation, checkpoints, exact resume)" },
    { "predict", cmd_predict, "masks (and overlays, routing) for photos from a checkpoint" },
    { "export", cmd_export, "a checkpoint as an ONNX file (opset 17, dynamic sizes) for ONNX Runtime, TensorRT, OpenVINO" },
    { "bench", cmd_bench, "training and inference speed, memory and FLOPs, dense vs sparse" },
    { "eval", cmd_eval, "COD metrics of predicted maps against GT masks (PySODMetrics numbers)" },
    { "synth", cmd_synth, "write a synthetic camouflage dataset (COD10K-v3 layout)" },
    { "inspect", cmd_inspect, "print a model's module tree with parameter counts and the exact total" },
    { "verify", cmd_verify, "check a fixture of reference outputs (kind=edgenext, ...) against this build" },
    { "data", cmd_data, "check a dataset (layout, pairs, bad files) and time the loader" },
    { "report", cmd_report, "one self-contained HTML page of a training run (curves, routing, predictions), or several overlaid" },
};

int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    char why[160] = "";
    const int gpus = ops_cuda_device_count(why, sizeof why);
    char cuda[200];
    if (gpus > 0) snprintf(cuda, sizeof cuda, "%d usable GPU%s", gpus, gpus > 1 ? "s" : "");
    else snprintf(cuda, sizeof cuda, "no GPU: %s", why[0] ? why : "none found");
    const char *archs = ops_cuda_arch_list();
    printf("camoxpert %s (C11; CPU backend%s; CUDA: %s; %d threads)\n", CAMOXPERT_VERSION, HAVE_DNNL ? " with oneDNN" : "",
           cuda, cx_threads_get());
    if (archs) printf("CUDA plug-in built for: %s\n", archs);
    return 0;
}

static void usage(FILE *fp) {
    fprintf(fp, "usage: camoxpert <command> [options]   (camoxpert <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(fp, "\nglobal: --version, --help\n");
}

// OpenMP threads that wait for work sleep instead of spinning (OMP_WAIT_POLICY=
// passive), unless the environment says otherwise: on a machine shared with other
// jobs a spinning thread waiting for a descheduled one made a training step up
// to 10x slower (docs/PERF.md, "Thread waiting policy"). libgomp reads it when it is
// loaded, before main(), so the program starts itself again once with it set.
// Not under valgrind (its launcher is /proc/self/exe there).
static void omp_wait_policy_default(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1)) return;
    execv("/proc/self/exe", argv);
    // exec failed (no /proc): run on with libgomp's default policy
}

int main(int argc, char **argv) {
    cx_threads_set(0);
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) return cmd_version(0, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int help = 0;
            for (int a = 2; a < argc; a++) help |= !strcmp(argv[a], "--help") || !strcmp(argv[a], "-h");
            if (!help && cx_mem_limit_check()) {   // the environment every command reads
                fprintf(stderr, "error: camoxpert %s: %s\n", argv[1], cx_errmsg());
                return 2;
            }
            omp_wait_policy_default(argv);   // a command that computes: ~70 ms to start again
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
