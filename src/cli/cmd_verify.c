// cmd_verify.c — `camoxpert verify FIXTURE.safetensors`: runs what a fixture
// (outputs of a reference implementation, ../shared/fixtures/README.md)
// describes and compares every stored result with the project's error rule,
// one line per tensor, then PASS or FAIL. Exit status: 0 pass, 1 fail, 2 the
// fixture could not be used. Dispatches on `__metadata__` `kind`.
// The checks themselves are verify.c's and the checkers'.
#include "cli.h"
#include "verify.h"
#include <string.h>

int cmd_verify(int argc, char **argv) {
    int quiet = 0, threads = 0;
    const char *device = "auto", *precision = "fp32";
    CliOpt opts[] = {
        { "quiet", OPT_FLAG, &quiet, "print only failing tensors and the verdict", NULL, NULL, 0 },
        { "threads", OPT_INT, &threads, "CPU threads (default: all cores)", "N", NULL, 0 },
        { "device", OPT_STR, &device, "cpu: the CPU checks (float32 fast kernels, float64 reference kernels); cuda, "
          "cuda:N: the GPU's too; auto: cuda when a GPU is usable", "cpu|cuda|cuda:N|auto", NULL, 0 },
        { "precision", OPT_STR, &precision, "the GPU run's arithmetic; bf16 with --device cpu: a second CPU run with "
          "bf16 convolutions and matmuls (AMX-BF16 or AVX512-BF16), held to the GPU's bf16 rules", "fp32|bf16",
          "fp32|bf16", 0 },
    };
    const char *pos[1] = { NULL };
    int npos = 0;
    int parsed = cli_parse(argc, argv, "verify", opts, CLI_N(opts), pos, 1, &npos, "FIXTURE.safetensors");
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    if (npos != 1) {
        fprintf(stderr, "error: verify needs one fixture file (camoxpert verify FIXTURE.safetensors)\n");
        return 2;
    }
    int gpu, second = 0;   // second: the checks' second run (rt), a GPU or the CPU in bf16
    Runtime rt;
    if (runtime_resolve_device(device, &gpu) ||
        ((second = gpu >= 0 || !strcmp(precision, "bf16")) && runtime_init(&rt, device, precision, 0, 0))) {
        fprintf(stderr, "error: camoxpert verify: %s\n", cx_errmsg());
        return 2;
    }
    if (second && gpu < 0) printf("device: cpu (float32 fast and float64 reference kernels), and %s\n", rt.desc);
    else printf("device: %s\n", gpu >= 0 ? rt.desc : "cpu (float32 fast and float64 reference kernels)");
    StFile f;
    if (st_open(&f, pos[0])) {
        fprintf(stderr, "error: %s\n", cx_errmsg());
        if (second) runtime_free(&rt);
        return 2;
    }
    VerifyRun v = { .quiet = quiet, .gpu = second ? &rt : NULL };
    int rc = 2;
    const char *kind = st_meta(&f, "kind");
    int tol_ok = verify_read_tolerances(&v, &f) == CX_OK;
    if (tol_ok)
        printf("tolerances (the fixture's): forward float32 %g, forward float64 %g, gradients float64 %g (floor %g of "
               "the largest gradient)\n", v.rtol_fwd_f32, v.rtol_fwd_f64, v.rtol_grad_f64, v.grad_floor);
    if (!tol_ok) {
        fprintf(stderr, "error: camoxpert verify: %s\n", cx_errmsg());
    } else if (!kind) {
        fprintf(stderr, "error: %s: __metadata__ has no 'kind' (known kinds: edgenext, camoxpert)\n", f.path);
    } else if (!strcmp(kind, "edgenext")) {
        rc = verify_edgenext(&v, &f);
    } else if (!strcmp(kind, "camoxpert")) {
        rc = verify_camoxpert(&v, &f);
    } else {
        fprintf(stderr, "error: %s: unknown fixture kind '%s' (known kinds: edgenext, camoxpert)\n", f.path, kind);
    }
    if (rc != 2) {
        rc = v.n_failed || !v.n_checked ? 1 : 0;
        if (rc) printf("FAIL: %d of %d tensors out of tolerance (worst: %s)\n", v.n_failed, v.n_checked, v.worst_name);
        else printf("PASS: %d tensors within tolerance (closest to its tolerance: %s at %.3g of it)\n", v.n_checked,
                    v.worst_name, v.worst);
    }
    st_close(&f);
    if (second) runtime_free(&rt);
    return rc;
}
