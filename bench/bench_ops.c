// bench_ops.c — `make bench`: the CPU op benchmark behind docs/PERF.md.
// Measures, in one run, the machine's sgemm peak (square 2048 sgemm) and copy
// bandwidth, then GFLOP/s of conv2d forward, backward-data (dx) and
// backward-weights (dw) for the shapes that dominate CamoXpert at 352×352
// (batch 1), and GB/s of depthwise and element-wise ops, each as a fraction of
// the measured peak. Timings are the best of a few repetitions. On a CPU with
// native bf16 (ops_cpu_bf16) the conv and linear tables add a `bf16` row: the
// dispatcher under OpCtx.cpu_bf16, its conversions of the operands included.
// Usage: camoxpert_bench [--quick] [--threads N] [conv|linear|dw|ew]
//   --quick: fewer shapes, for the demo; --threads: N threads (default: the
//   cores); a section name runs only that table.
#include "ops/ops.h"
#include "ops/cpu/cpu.h"
#include <cblas.h>
#include <string.h>

static Arena g_arena, g_scratch;
static OpCtx g_ctx;
static Rng g_rng;

static Tensor rand_t(int ndim, const int64_t *shape) {
    Tensor t = tensor_new(&g_arena, DT_F32, ndim, shape);
    float *p = tensor_f32(&t);
    for (int64_t i = 0; i < tensor_numel(&t); i++) p[i] = (float)(rng_uniform(&g_rng) * 2 - 1);
    return t;
}
static Tensor rand4(int64_t n, int64_t h, int64_t w, int64_t c) { return rand_t(4, (int64_t[]){ n, h, w, c }); }

// Best-of time of fn: at least 3 runs after a warm-up, until ~0.3 s is spent
// (at most 200 runs). On a machine shared with other jobs a run that loses a
// thread to the scheduler for a time slice is several times slower (every
// OpenMP barrier waits for it), so small ops need many runs for one clean one.
typedef void (*bench_fn)(void *);
static double time_best(bench_fn fn, void *arg) {
    fn(arg);
    double best = 1e30, spent = 0;
    for (int r = 0; r < 200 && (r < 3 || spent < 0.3); r++) {
        double t0 = cx_time_s();
        fn(arg);
        double dt = cx_time_s() - t0;
        spent += dt;
        if (dt < best) best = dt;
    }
    return best;
}

// ---- peaks ------------------------------------------------------------------------------------
typedef struct { int n; float *a, *b, *c; } SgemmArg;
static void run_sgemm(void *p) {
    SgemmArg *s = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->n, s->n, s->n, 1, s->a, s->n, s->b, s->n, 0, s->c, s->n);
}
typedef struct { float *a, *b; int64_t n; } CopyArg;
static void run_copy(void *p) {
    CopyArg *c = p;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < c->n; i += 16384) memcpy(c->b + i, c->a + i, sizeof(float) * (size_t)(c->n - i < 16384 ? c->n - i : 16384));
}

// ---- convolution -------------------------------------------------------------------------------
typedef struct { Tensor x, w, b, y, dy, dx, dw; ConvArgs a; int pass; } ConvArg;
static void run_conv(void *p) {
    ConvArg *c = p;
    if (c->pass == 0) conv2d_forward(&g_ctx, &c->y, &c->x, &c->w, &c->b, c->a);
    else if (c->pass == 1) conv2d_backward(&g_ctx, &c->dx, NULL, NULL, &c->dy, &c->x, &c->w, c->a);
    else conv2d_backward(&g_ctx, NULL, &c->dw, NULL, &c->dy, &c->x, &c->w, c->a);
}

static double g_peak, g_bw;

static void bench_conv(const char *label, int64_t H, int64_t C, int64_t K, int k, int dil, int groups) {
    ArenaMark m = arena_mark(&g_arena);
    ConvArg c = { .a = { .stride = 1, .pad = dil * (k - 1) / 2, .dil = dil, .groups = groups } };
    c.x = rand4(1, H, H, C);
    c.w = rand_t(4, (int64_t[]){ K, C / groups, k, k });
    c.b = rand_t(1, (int64_t[]){ K });
    int64_t Ho = conv2d_out_size(H, k, c.a);
    c.y = rand4(1, Ho, Ho, K);
    c.dy = rand4(1, Ho, Ho, K);
    c.dx = tensor_zeros_like(&g_arena, &c.x);
    c.dw = tensor_zeros_like(&g_arena, &c.w);
    double flop = 2.0 * Ho * Ho * K * (C / groups) * k * k, t[3];
    // Each implementation, then the one the dispatcher picks (conv.c), then that in bf16.
    const struct { CpuImpl impl; const char *name; int bf16; } impls[] = {
        { CPU_IMPL_OWN, groups == 1 ? "im2col" : "direct", 0 }, { CPU_IMPL_DNNL, "oneDNN", 0 },
        { CPU_IMPL_AUTO, "auto", 0 }, { CPU_IMPL_AUTO, "bf16", 1 } };
    for (int i = 0; i < (HAVE_DNNL ? 3 + (groups == 1 && cpu_bf16_native()) : 1); i++) {
        cpu_conv_impl = impls[i].impl;
        g_ctx.cpu_bf16 = impls[i].bf16;
        for (c.pass = 0; c.pass < 3; c.pass++) t[c.pass] = time_best(run_conv, &c);
        if (groups == 1) {
            printf("| %-20s %-7s | %7.2f | %6.1f (%3.0f%%) | %6.1f (%3.0f%%) | %6.1f (%3.0f%%) |\n", label,
                   impls[i].name, flop * 1e-9, flop / t[0] * 1e-9, 100 * flop / t[0] / g_peak, flop / t[1] * 1e-9,
                   100 * flop / t[1] / g_peak, flop / t[2] * 1e-9, 100 * flop / t[2] / g_peak);
        } else {
            // Depthwise: bytes that must move at least once (fp32): forward x + y;
            // dx reads dy, reads and writes dx; dw reads x and dy.
            double ex = 4.0 * H * H * C, ey = 4.0 * Ho * Ho * K, by[3] = { ex + ey, ey + 2 * ex, ex + ey };
            printf("| %-20s %-7s | %6.1f (%3.0f%%) | %6.1f (%3.0f%%) | %6.1f (%3.0f%%) | %5.1f %5.1f %5.1f |\n", label,
                   impls[i].name, by[0] / t[0] * 1e-9, 100 * by[0] / t[0] / g_bw, by[1] / t[1] * 1e-9,
                   100 * by[1] / t[1] / g_bw, by[2] / t[2] * 1e-9, 100 * by[2] / t[2] / g_bw, flop / t[0] * 1e-9,
                   flop / t[1] * 1e-9, flop / t[2] * 1e-9);
        }
    }
    cpu_conv_impl = CPU_IMPL_AUTO;
    g_ctx.cpu_bf16 = 0;
    arena_release(&g_arena, m);
}

// ---- linear (1x1 layers of the MLPs, qkv, proj) ---------------------------------------------------
typedef struct { Tensor x, w, b, y, dy, dx, dw; int pass; } LinArg;
static void run_linear(void *p) {
    LinArg *l = p;
    if (l->pass == 0) linear_forward(&g_ctx, &l->y, &l->x, &l->w, &l->b);
    else if (l->pass == 1) linear_backward(&g_ctx, &l->dx, NULL, NULL, &l->dy, &l->x, &l->w);
    else linear_backward(&g_ctx, NULL, &l->dw, NULL, &l->dy, &l->x, &l->w);
}

static void bench_linear(const char *label, int64_t R, int64_t C, int64_t K) {
    ArenaMark m = arena_mark(&g_arena);
    LinArg l = { 0 };
    l.x = rand_t(2, (int64_t[]){ R, C });
    l.w = rand_t(2, (int64_t[]){ K, C });
    l.b = rand_t(1, (int64_t[]){ K });
    l.y = rand_t(2, (int64_t[]){ R, K });
    l.dy = rand_t(2, (int64_t[]){ R, K });
    l.dx = tensor_zeros_like(&g_arena, &l.x);
    l.dw = tensor_zeros_like(&g_arena, &l.w);
    double flop = 2.0 * R * C * K, t[3];
    const struct { CpuImpl impl; const char *name; int bf16; } impls[] = {
        { CPU_IMPL_OWN, "OpenBLAS", 0 }, { CPU_IMPL_DNNL, "oneDNN", 0 }, { CPU_IMPL_AUTO, "auto", 0 },
        { CPU_IMPL_AUTO, "bf16", 1 } };
    for (int i = 0; i < (HAVE_DNNL ? 3 + cpu_bf16_native() : 1); i++) {
        cpu_gemm_impl = impls[i].impl;
        g_ctx.cpu_bf16 = impls[i].bf16;
        for (l.pass = 0; l.pass < 3; l.pass++) t[l.pass] = time_best(run_linear, &l);
        printf("| %-24s %-8s | %7.2f | %6.1f (%3.0f%%) | %6.1f (%3.0f%%) | %6.1f (%3.0f%%) |\n", label, impls[i].name,
               flop * 1e-9, flop / t[0] * 1e-9, 100 * flop / t[0] / g_peak, flop / t[1] * 1e-9,
               100 * flop / t[1] / g_peak, flop / t[2] * 1e-9, 100 * flop / t[2] / g_peak);
    }
    cpu_gemm_impl = CPU_IMPL_AUTO;
    g_ctx.cpu_bf16 = 0;
    arena_release(&g_arena, m);
}

// ---- element-wise ---------------------------------------------------------------------------------
typedef struct { Tensor x, y, z, g, b, sm, sr; int op; } EwArg;
static void run_ew(void *p) {
    EwArg *e = p;
    switch (e->op) {
    case 0: gelu_forward(&g_ctx, &e->y, &e->x); break;
    case 1: gelu_backward(&g_ctx, &e->z, &e->y, &e->x); break;
    case 2: add_forward(&g_ctx, &e->z, &e->x, &e->y); break;
    case 3: mul_forward(&g_ctx, &e->y, &e->x, &e->g); break;
    case 4: layernorm_forward(&g_ctx, &e->y, &e->sm, &e->sr, &e->x, &e->g, &e->b, 1e-6); break;
    case 5: layernorm_backward(&g_ctx, &e->z, NULL, NULL, &e->y, &e->x, &e->sm, &e->sr, &e->g); break;
    case 6: batchnorm_forward(&g_ctx, &e->y, &e->sm, &e->sr, &e->x, &e->g, &e->b, NULL, NULL, 1, 0.1, 1e-5); break;
    case 7: batchnorm_backward(&g_ctx, &e->z, NULL, NULL, &e->y, &e->x, &e->sm, &e->sr, &e->g, 1); break;
    case 8: sigmoid_forward(&g_ctx, &e->y, &e->x); break;
    case 9: axpy(&g_ctx, &e->z, 0.5, &e->x); break;
    }
}

static void bench_ew(const char *label, int op, int64_t H, int64_t C, double tensors_moved) {
    ArenaMark m = arena_mark(&g_arena);
    EwArg e = { .op = op };
    e.x = rand4(1, H, H, C);
    e.y = rand4(1, H, H, C);
    e.z = tensor_zeros_like(&g_arena, &e.x);
    e.g = rand_t(1, (int64_t[]){ C });
    e.b = rand_t(1, (int64_t[]){ C });
    int64_t rows = op == 6 || op == 7 ? C : H * H;
    e.sm = rand_t(1, &rows);
    e.sr = rand_t(1, &rows);
    if (op == 5 || op == 7) run_ew(&(EwArg){ .op = op - 1, .x = e.x, .y = e.z, .g = e.g, .b = e.b, .sm = e.sm, .sr = e.sr });
    double t = time_best(run_ew, &e), by = tensors_moved * 4.0 * H * H * C;
    printf("| %-36s | %6.2f | %6.1f (%3.0f%%) |\n", label, t * 1e3, by / t * 1e-9, 100 * by / t / g_bw);
    arena_release(&g_arena, m);
}

int bench_ops_main(int argc, char **argv) {
    int quick = 0, threads = 0;
    const char *only = NULL;   // run only this section
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else only = argv[i];
    }
#define SECTION(name) (!only || !strcmp(only, name))
    cx_threads_set(threads);
    arena_init(&g_arena, "bench", 512 << 20);
    arena_init(&g_scratch, "scratch", 256 << 20);
    // Size the scratch arena once up front, as a training loop's first step
    // does, so no timed call pays for fresh pages (measured: 3x on small
    // depthwise convs when every call page-faulted its scratch).
    arena_alloc(&g_scratch, 1);
    arena_reset(&g_scratch);
    g_ctx = (OpCtx){ .backend = OPS_CPU, .scratch = &g_scratch };
    g_rng = rng_init(7);
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("camoxpert op benchmark: %d threads, HAVE_DNNL=%d, OPENBLAS_CORETYPE=%s\n\n", cx_threads_get(), HAVE_DNNL,
           ct ? ct : "(unset)");

    {
        ArenaMark m = arena_mark(&g_arena);
        int n = quick ? 1024 : 2048;
        SgemmArg s = { n, arena_alloc(&g_arena, 4ull * n * n), arena_alloc(&g_arena, 4ull * n * n), arena_alloc(&g_arena, 4ull * n * n) };
        for (int64_t i = 0; i < (int64_t)n * n; i++) s.a[i] = s.b[i] = (float)(i % 7) * 0.1f;
        double t = time_best(run_sgemm, &s);
        g_peak = 2.0 * n * n * n / t;
        int64_t nf = 32 << 20;   // 128 MB each way
        CopyArg c = { arena_alloc(&g_arena, 4ull * nf), arena_alloc(&g_arena, 4ull * nf), nf };
        memset(c.a, 1, 4ull * nf);
        memset(c.b, 0, 4ull * nf);
        t = time_best(run_copy, &c);
        g_bw = 8.0 * nf / t;
        printf("sgemm %dx%dx%d peak: %.1f GFLOP/s; copy bandwidth (read + write, 128 MB): %.1f GB/s\n\n", n, n, n,
               g_peak * 1e-9, g_bw * 1e-9);
        arena_release(&g_arena, m);
    }

    if (SECTION("conv")) {
        printf("### Convolutions (batch 1, stride 1, same padding), GFLOP/s (%% of sgemm peak)\n\n");
        printf("| shape (H=W, C->K, k, dil), impl | GFLOP   | forward        | backward dx    | backward dw    |\n");
        printf("|---------------------------------|---------|----------------|----------------|----------------|\n");
        bench_conv("3x3 64->64 @352", 352, 64, 64, 3, 1, 1);
        bench_conv("3x3 64->64 @176", 176, 64, 64, 3, 1, 1);
        bench_conv("3x3 160->80 @88", 88, 160, 80, 3, 1, 1);
        if (!quick) {
            bench_conv("3x3 d2 64->64 @88", 88, 64, 64, 3, 2, 1);
            bench_conv("3x3 d4 64->64 @88", 88, 64, 64, 3, 4, 1);
            bench_conv("3x3 d8 64->64 @88", 88, 64, 64, 3, 8, 1);
            bench_conv("5x5 64->64 @88", 88, 64, 64, 5, 1, 1);
            bench_conv("5x5 64->64 @44", 44, 64, 64, 5, 1, 1);
            bench_conv("7x7 64->64 @88", 88, 64, 64, 7, 1, 1);
            bench_conv("7x7 64->64 @44", 44, 64, 64, 7, 1, 1);
            bench_conv("1x1 64->64 @176", 176, 64, 64, 1, 1, 1);
            bench_conv("1x1 80->320 @88", 88, 80, 320, 1, 1, 1);
            bench_conv("1x1 160->640 @44", 44, 160, 640, 1, 1, 1);
            bench_conv("1x1 288->1152 @22", 22, 288, 1152, 1, 1, 1);
            bench_conv("1x1 584->2336 @11", 11, 584, 2336, 1, 1, 1);
        }
    }

    if (SECTION("linear")) {
        printf("\n### Linear layers of EdgeNeXt-base (rows = N·H·W at batch 2), GFLOP/s (%% of sgemm peak)\n\n");
        printf("| shape (rows x C -> K), impl         | GFLOP   | forward        | backward dx    | backward dw    |\n");
        printf("|-------------------------------------|---------|----------------|----------------|----------------|\n");
        int64_t widths[4] = { 80, 160, 288, 584 }, sizes[4] = { 88, 44, 22, 11 };
        for (int s = 0; s < 4; s++) {
            int64_t R = 2 * sizes[s] * sizes[s], C = widths[s];
            char lab[64];
            snprintf(lab, sizeof lab, "%lldx%lld->%lld", (long long)R, (long long)C, (long long)(4 * C));
            bench_linear(lab, R, C, 4 * C);
            snprintf(lab, sizeof lab, "%lldx%lld->%lld", (long long)R, (long long)(4 * C), (long long)C);
            bench_linear(lab, R, 4 * C, C);
            if (s >= 1 && !quick) {   // XCA blocks: qkv
                snprintf(lab, sizeof lab, "%lldx%lld->%lld", (long long)R, (long long)C, (long long)(3 * C));
                bench_linear(lab, R, C, 3 * C);
            }
        }
    }

    if (SECTION("dw")) {
        printf("\n### Depthwise convolutions (batch 1), GB/s (%% of copy bandwidth); last column GFLOP/s fwd/dx/dw\n\n");
        printf("| shape (k, C @ H=W), impl        | forward        | backward dx    | backward dw    | GFLOP/s           |\n");
        printf("|---------------------------------|----------------|----------------|----------------|-------------------|\n");
        int64_t widths[4] = { 80, 160, 288, 584 }, sizes[4] = { 88, 44, 22, 11 };
        int ks[4] = { 3, 5, 7, 9 };
        for (int s = 0; s < 4; s++)
            for (int kk = 0; kk < 4; kk++) {
                if (quick && kk != 2) continue;
                char lab[64];
                snprintf(lab, sizeof lab, "dw %dx%d C=%lld @%lld", ks[kk], ks[kk], (long long)widths[s], (long long)sizes[s]);
                bench_conv(lab, sizes[s], widths[s], widths[s], ks[kk], 1, (int)widths[s]);
            }
    }

    if (SECTION("ew")) {
        printf("\n### Element-wise and normalisation (1x88x88x320 fp32 = 9.9 MB per tensor), GB/s (%% of copy bandwidth)\n\n");
        printf("| op (tensors moved)                   | ms     | GB/s           |\n");
        printf("|--------------------------------------|--------|----------------|\n");
        bench_ew("gelu forward (2)", 0, 88, 320, 2);
        bench_ew("gelu backward (4: x, dy, dx rw)", 1, 88, 320, 4);
        bench_ew("add (3)", 2, 88, 320, 3);
        bench_ew("axpy (3)", 9, 88, 320, 3);
        bench_ew("mul by (C) (2)", 3, 88, 320, 2);
        bench_ew("sigmoid forward (2)", 8, 88, 320, 2);
        bench_ew("layernorm forward (2)", 4, 88, 320, 2);
        bench_ew("layernorm backward (4)", 5, 88, 320, 4);
        bench_ew("batchnorm train forward (2)", 6, 88, 320, 2);
        bench_ew("batchnorm train backward (4)", 7, 88, 320, 4);
    }
    arena_free(&g_arena);
    arena_free(&g_scratch);
    return 0;
}
