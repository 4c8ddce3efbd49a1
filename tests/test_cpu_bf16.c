// test_cpu_bf16.c — bf16 on the CPU (`--precision bf16|auto` with --device cpu;
// OpCtx.cpu_bf16, src/ops/cpu/bf16.c): the op table's convolution and GEMM rows in
// the CPU's bf16 against the float32 reference at their bf16 tolerance, the
// precision the runtime chooses and says, the fall-back where oneDNN is held below
// AVX512-BF16, and `camoxpert verify --device cpu --precision bf16` on the shared
// fixtures under the GPU's bf16 rules. Where this CPU has no native bf16 the tests
// that need it are skipped with the reason ops_cpu_bf16 gives.
#include "test_ops_table.h"
#include "ops/cpu/cpu.h"
#include "nn/runtime.h"
#include <stdlib.h>
#include <string.h>

static int no_bf16_here(void) {
    char what[128];
    if (ops_cpu_bf16(what, sizeof what)) return 0;
    test_skip("this CPU has no native bf16: %s", what);
    return 1;
}

// Every conv and GEMM row (the ones whose kernels take bf16; depthwise rows stay float32
// and must still pass) on the CPU with bf16 operands and float32 accumulation.
TEST(cpu_bf16_op_table) {
    if (no_bf16_here()) return;
    const OpTest *const *rows;
    int n = op_rows_all(&rows), ran = 0;
    double worst_dense = 0;   // the dense conv and GEMM rows: bf16 must show (not a float32 run in disguise)
    for (int i = 0; i < n; i++) {
        const OpTest *t = rows[i];
        if (t->impls == OPT_ONE || t->no_bf16) continue;
        double worst;
        op_case_run_cpu_bf16(t, &worst);
        printf("    %-20s cpu bf16 vs ref f32: worst rel err %.3g (tol %.3g)\n", t->name, worst, t->b16);
        if (t->impls == OPT_GEMM || t->conv.groups == 1) worst_dense = fmax(worst_dense, worst);
        ran++;
    }
    CHECKF(ran >= 10, "only %d conv and GEMM rows in the op table", ran);
    CHECKF(worst_dense > 1e-4, "the conv and GEMM rows match float32 to %.3g: bf16 did not run", worst_dense);
}

// --precision auto picks bf16 exactly where the CPU has it and says which; bf16 asked of a
// CPU without it is an error that names the fix.
TEST(cpu_bf16_runtime_choice) {
    char what[128];
    const int native = ops_cpu_bf16(what, sizeof what);
    Runtime rt;
    REQUIRE_OK(runtime_init(&rt, "cpu", "auto", 1, 0));
    CHECK(rt.bf16 == native && rt.dtype == DT_F32 && rt.ctx.op.cpu_bf16 == native);
    CHECKF(strstr(rt.desc, what) && strstr(rt.desc, "--precision auto"), "desc: %s (ISA: %s)", rt.desc, what);
    runtime_free(&rt);
    REQUIRE_OK(runtime_init(&rt, "cpu", "auto", 0, 0));   // verify's default: fp32, nothing to say
    CHECK(!rt.bf16 && !rt.ctx.op.cpu_bf16 && !strstr(rt.desc, "auto"));
    runtime_free(&rt);
    REQUIRE_OK(runtime_init(&rt, "cpu", "fp32", 1, 0));
    CHECK(!rt.bf16 && !rt.ctx.op.cpu_bf16);
    runtime_free(&rt);
    cx_status st = runtime_init(&rt, "cpu", "bf16", 1, 1);
    if (native) {
        CHECK(st == CX_OK && rt.bf16 && rt.ctx.op.cpu_bf16 && !rt.ctx.host_op.cpu_bf16 && rt.dtype == DT_F32);
        CHECKF(strstr(rt.desc, "bf16 convolutions and matmuls"), "desc: %s", rt.desc);
        if (st == CX_OK) runtime_free(&rt);
    } else {
        CHECKF(st != CX_OK && strstr(cx_errmsg(), "--precision fp32"), "%s", cx_errmsg());
    }
}

// With oneDNN held to AVX2 (as on AMD Zen 3 or older Intel), auto stays fp32 and says why, and
// bf16 is refused before any work. oneDNN reads ONEDNN_MAX_CPU_ISA once per process: the
// program runs as a child.
TEST(cpu_bf16_avx2_falls_back) {
#if !HAVE_DNNL
    test_skip("built without oneDNN");
    return;
#endif
    const char *was = getenv("ONEDNN_MAX_CPU_ISA");
    char saved[64] = "";
    if (was) snprintf(saved, sizeof saved, "%s", was);
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    char *out;
    int rc = test_run_bin(&out, "bench --device cpu --backbone edgenext_xx_small --img-size 32 --batch-size 1 "
                                "--steps 1 --mode dense --threads 1");
    CHECKF(rc == 0 && strstr(out, "device: cpu (1 threads), fp32 (--precision auto: no AVX512-BF16 or AMX-BF16"),
           "exit %d:\n%s", rc, out);
    rc = test_run_bin(&out, "verify --device cpu --precision bf16 '%s'",
                      test_shared_path("fixtures/edgenext_xx_small.safetensors"));
    CHECKF(rc == 2 && strstr(out, "needs native bf16") && strstr(out, "--precision fp32"), "exit %d:\n%s", rc, out);
    if (saved[0]) setenv("ONEDNN_MAX_CPU_ISA", saved, 1);
    else unsetenv("ONEDNN_MAX_CPU_ISA");
}

// The fixtures under the GPU's bf16 rules (cli/verify.h): evaluation outputs within 2e-2
// relative L2 of the reference, the training-mode prediction within 6e-2, the loss terms
// and BatchNorm state within 2e-2.
static void verify_bf16_passes(const char *fixture) {
    if (no_bf16_here()) return;
    char *out;
    int rc = test_run_bin(&out, "verify --device cpu --precision bf16 --quiet '%s'", test_shared_path(fixture));
    CHECKF(rc == 0 && strstr(out, "PASS") && strstr(out, "bf16 convolutions and matmuls"), "verify %s: exit %d\n%s",
           fixture, rc, out);
}
TEST_SLOW(cpu_bf16_verify_shared_edgenext_fixture) { verify_bf16_passes("fixtures/edgenext_xx_small.safetensors"); }
TEST_SLOW(cpu_bf16_verify_shared_dense_fixture) { verify_bf16_passes("fixtures/camoxpert_dense_xx_small.safetensors"); }
TEST_SLOW(cpu_bf16_verify_shared_sparse_fixture) { verify_bf16_passes("fixtures/camoxpert_sparse_xx_small.safetensors"); }

// The weight gradient of a convolution whose kernel passes its input (the frequency expert's
// 7x7 at the 2x2 maps of a 64x64 input, 196 channels) in the CPU's bf16 against float32: the
// bf16 weight-gradient primitive gave |dW| ~ 1e37 there (a non-finite gradient norm at the
// first step of a 64x64 training run), so that pass stays float32 (conv.c, conv_kernel_fits).
TEST(cpu_bf16_conv_weight_gradient_where_the_kernel_passes_the_input) {
    if (no_bf16_here()) return;
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    Rng rng = rng_init(7);
    const int64_t N = 8, H = 2, W = 2, C = 196, K = 196;
    Tensor x = tensor_new4(&a, DT_F32, N, H, W, C), dy = tensor_new4(&a, DT_F32, N, H, W, K);
    Tensor w = tensor_new(&a, DT_F32, 4, (int64_t[]){ K, C, 7, 7 });
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&rng);
    for (int64_t i = 0; i < tensor_numel(&dy); i++) tensor_f32(&dy)[i] = (float)rng_normal(&rng);
    for (int64_t i = 0; i < tensor_numel(&w); i++) tensor_f32(&w)[i] = (float)(0.02 * rng_normal(&rng));
    ConvArgs ca = { .stride = 1, .pad = 3, .dil = 1, .groups = 1 };
    Tensor dw[2], dx[2];
    for (int b = 0; b < 2; b++) {   // float32, then bf16
        OpCtx ctx = { .backend = OPS_CPU, .scratch = &scratch, .cpu_bf16 = b };
        dw[b] = tensor_new(&a, DT_F32, 4, w.shape), dx[b] = tensor_new4(&a, DT_F32, N, H, W, C);
        memset(dw[b].data, 0, tensor_nbytes(&dw[b]));
        memset(dx[b].data, 0, tensor_nbytes(&dx[b]));
        conv2d_backward(&ctx, &dx[b], &dw[b], NULL, &dy, &x, &w, ca);
    }
    const double ew = test_rel_err(&dw[1], &dw[0], 1e-30), ex = test_rel_err(&dx[1], &dx[0], 1e-30);
    printf("    7x7 conv on 2x2 maps, 196 channels: bf16 against float32, dW %.3g, dx %.3g relative\n", ew, ex);
    CHECKF(ew <= 2e-2 && ex <= 2e-2, "dW %.3g, dx %.3g relative to float32 (bound 2e-2)", ew, ex);
    arena_free(&a);
    arena_free(&scratch);
}
