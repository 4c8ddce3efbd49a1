// test_ops_contracts.c — op contracts a test-table entry cannot state: gradients
// accumulate (conv2d_backward twice is twice once), top-k's tie order, the ReLU
// tape, rows_gather_sum equal to rows_scatter_add bit for bit, and the backend
// tables: what ops_list.h says each holds, and the CUDA plug-in complete.
#include "test_ops_table.h"
#include "ops/backend.h"
#include "ops/cpu/cpu.h"
#if HAVE_CUDA
#include "ops/cuda/cuda.h"
#include <dlfcn.h>
#include <unistd.h>
#endif
#include <string.h>

// The host tables hold what the list's columns say, and an empty slot is named.
TEST(op_backend_tables_follow_the_list) {
    char buf[1024];
    CHECKF(ops_backend_missing(&ops_cpu, buf, sizeof buf) == 0, "the CPU table lacks %s", buf);
#define REF_HAS_REF 1
#define REF_HAS_CPU 0
#define REF_HAS_NONE 0
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) \
    CHECKF(!ops_ref_f32.name == !REF_HAS_##ref && !ops_ref_f64.name == !REF_HAS_##ref, \
           "ops_ref_f32/f64: the slot of " #name " does not follow its reference column (" #ref ")");
#include "ops/ops_list.h"
#undef OP
    OpsBackend b = ops_cpu;
    b.fill = NULL, b.ema_blend = NULL;
    CHECK(ops_backend_missing(&b, buf, sizeof buf) == 2 && !strcmp(buf, "fill, ema_blend"));
    char small[12];
    CHECK(ops_backend_missing(&b, small, sizeof small) == 2 && !strcmp(small, "fill, em..."));
}

// The CUDA plug-in beside this program (as ops.c finds it: here, or ../lib in the GPU
// bundle) is of this build and fills every op's slot; no GPU needed.
TEST(op_cuda_plugin_has_every_op) {
#if HAVE_CUDA
    char exe[4096], path[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(path, sizeof path, "%s/libcamoxpert_cuda.so", exe);
    if (access(path, F_OK)) snprintf(path, sizeof path, "%s/../lib/libcamoxpert_cuda.so", exe);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { test_skip("the CUDA plug-in does not load here: %s", dlerror()); return; }
    const CudaPlugin *(*get)(void) = (const CudaPlugin *(*)(void))dlsym(h, "camoxpert_cuda_plugin");
    REQUIRE(get);
    const CudaPlugin *p = get();
    CHECKF(!strcmp(p->op_list, ops_list_signature()), "%s: another build's op list", path);
    char buf[1024];
    CHECKF(ops_backend_missing(p->ops, buf, sizeof buf) == 0, "the CUDA plug-in has no kernel for %s", buf);
    dlclose(h);
#else
    test_skip("built without CUDA");
#endif
}

// ops_list.h's tie rule, stated directly: equal values keep ascending index order.
TEST(op_topk_tie_order) {
    Arena a;
    arena_init(&a, "test", 1 << 12);
    OpCtx ctx = { .scratch = &a };
    double v[2][6] = { { 2, 2, 2, 2, 2, 2 }, { 1, 3, 0, 3, 2, 3 } };
    int32_t want[2][4] = { { 0, 1, 2, 3 }, { 1, 3, 5, 4 } };
    for (int fr = 0; fr < 2; fr++) {
        ctx.backend = fr ? OPS_REF : OPS_CPU;
        Tensor x = tensor_new(&a, DT_F32, 2, (int64_t[]){ 2, 6 }), idx = tensor_new(&a, DT_I32, 2, (int64_t[]){ 2, 4 });
        Tensor val = tensor_new(&a, DT_F32, 2, (int64_t[]){ 2, 4 });
        for (int i = 0; i < 12; i++) tensor_set(&x, i, v[i / 6][i % 6]);
        topk_rows(&ctx, &idx, &val, &x, 4);
        for (int i = 0; i < 8; i++) CHECKF(tensor_i32(&idx)[i] == want[i / 4][i % 4], "idx[%d] = %d", i, tensor_i32(&idx)[i]);
    }
    arena_free(&a);
}

// ops.h's contract: conv2d_backward ADDS into dx, dw and db. Running it twice
// into the same buffers must give twice one run, for every implementation
// (oneDNN's sum post-ops and scratch-then-add paths, im2col's beta = 1).
TEST(op_conv_backward_accumulates) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 22);
    arena_init(&scratch, "scratch", 1 << 22);
    OpCtx ctx = { .scratch = &scratch };
    Rng rng = rng_init(5);
    // dense 3×3, strided grouped 5×5, 1×1, depthwise 3×3 (16 channels: one vector)
    ConvArgs args[4] = { { 1, 1, 1, 1 }, { 2, 2, 1, 2 }, { 1, 0, 1, 1 }, { 1, 1, 1, 16 } };
    int ks[4] = { 3, 5, 1, 3 };
    for (int im = CPU_IMPL_OWN; im <= (HAVE_DNNL ? CPU_IMPL_DNNL : CPU_IMPL_OWN); im++)
        for (int s = 0; s < 4; s++) {
            cpu_conv_impl = (CpuImpl)im;
            ArenaMark m = arena_mark(&a);
            ConvArgs ca = args[s];
            int64_t H = 11, C = s == 3 ? 16 : 8, K = s == 3 ? 16 : 12, k = ks[s], Ho = conv2d_out_size(H, (int)k, ca);
            Tensor x = tensor_new(&a, DT_F32, 4, (int64_t[]){ 2, H, H, C });
            Tensor w = tensor_new(&a, DT_F32, 4, (int64_t[]){ K, C / ca.groups, k, k });
            Tensor dy = tensor_new(&a, DT_F32, 4, (int64_t[]){ 2, Ho, Ho, K });
            Tensor *all[3] = { &x, &w, &dy };
            for (int t = 0; t < 3; t++)
                for (int64_t j = 0; j < tensor_numel(all[t]); j++) tensor_set(all[t], j, rng_normal(&rng));
            Tensor g1[3] = { tensor_zeros_like(&a, &x), tensor_zeros_like(&a, &w),
                             tensor_zeros(&a, DT_F32, 1, (int64_t[]){ K }) };
            Tensor g2[3] = { tensor_zeros_like(&a, &x), tensor_zeros_like(&a, &w),
                             tensor_zeros(&a, DT_F32, 1, (int64_t[]){ K }) };
            conv2d_backward(&ctx, &g1[0], &g1[1], &g1[2], &dy, &x, &w, ca);
            conv2d_backward(&ctx, &g2[0], &g2[1], &g2[2], &dy, &x, &w, ca);
            conv2d_backward(&ctx, &g2[0], &g2[1], &g2[2], &dy, &x, &w, ca);
            for (int t = 0; t < 3; t++) {
                scale_inplace(&ctx, &g1[t], 2.0);
                check_err("conv backward twice", "grad", t, &g2[t], &g1[t], 1e-6);
            }
            arena_release(&a, m);
        }
    cpu_conv_impl = CPU_IMPL_AUTO;
    arena_free(&a);
    arena_free(&scratch);
}

// The ReLU decision tape (ops_types.h): a replaying pass follows the recording's decisions
// (elements within rounding of 0 included), counts where its own differ, and its
// output keeps relu_backward on the recorded elements; float64 replays a float32 tape.
TEST(op_relu_tape_shares_decisions) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    OpCtx cpu = { .backend = OPS_CPU, .scratch = &scratch }, ref = { .backend = OPS_REF, .scratch = &scratch };
    const float xv[6] = { 1.5f, -2.0f, 1e-9f, -1e-9f, 0.0f, 3.0f };
    Tensor x = tensor_new(&a, DT_F32, 1, (int64_t[]){ 6 }), y = tensor_new(&a, DT_F32, 1, (int64_t[]){ 6 });
    memcpy(x.data, xv, sizeof xv);
    ReluTape t = { 0 };
    cpu.relu_tape = &t;
    relu_forward(&cpu, &y, &x);
    relu_forward(&cpu, &y, &x);   // a second call: recorded after the first
    CHECK(t.n == 12 && t.differed == 0);
    // the other run's pre-activations: the two tiny values have the other sign
    Tensor x2 = tensor_new(&a, DT_F64, 1, (int64_t[]){ 6 }), y2 = tensor_new(&a, DT_F64, 1, (int64_t[]){ 6 });
    const double x2v[6] = { 1.5, -2.0, -1e-9, 1e-9, 0.0, 3.0 };
    memcpy(x2.data, x2v, sizeof x2v);
    relu_tape_rewind(&t, 1);
    ref.relu_tape = &t;
    relu_forward(&ref, &y2, &x2);
    CHECKF(t.differed == 2 && t.pos == 6, "differed %lld at %lld", (long long)t.differed, (long long)t.pos);
    const double want[6] = { 1.5, 0, 1e-30, 0, 0, 3.0 };
    for (int i = 0; i < 6; i++) CHECKF(tensor_f64(&y2)[i] == want[i], "element %d: %g", i, tensor_f64(&y2)[i]);
    Tensor dy = tensor_new(&a, DT_F64, 1, (int64_t[]){ 6 }), dx = tensor_zeros(&a, DT_F64, 1, (int64_t[]){ 6 });
    for (int i = 0; i < 6; i++) tensor_f64(&dy)[i] = 1;
    relu_backward(&ref, &dx, &dy, &y2);
    for (int i = 0; i < 6; i++) CHECKF(tensor_f64(&dx)[i] == (want[i] > 0), "gradient %d: %g", i, tensor_f64(&dx)[i]);
    // in place (y aliases x), as the layers call it
    memcpy(x2.data, x2v, sizeof x2v);
    relu_forward(&ref, &x2, &x2);
    for (int i = 0; i < 6; i++) CHECKF(tensor_f64(&x2)[i] == want[i], "in place, element %d: %g", i, tensor_f64(&x2)[i]);
    relu_tape_free(&t);
    arena_free(&a);
    arena_free(&scratch);
}

// rows_gather_sum on the CSR form of a rows_scatter_add index is rows_scatter_add,
// term for term (same products, same order: equal bits, float64 and float32), so
// it inherits rows_scatter_add's golden parity with torch index_add_. It is linear:
// its finite-difference gradient is the weighted gather, checked as an adjoint
// (<gather_sum(s), g> = <s, w·g[idx]>). The CUDA column compares with the CPU.
static void gather_sum_case(Arena *a, Rng *r, cx_dtype dt, Tensor *src, Tensor *idx, Tensor *w, Tensor *ptr, Tensor *list,
                            Tensor *wl, int64_t n, int64_t rows, int64_t D) {
    *src = tensor_new(a, dt, 2, (int64_t[]){ n, D });
    *w = tensor_new(a, dt, 1, &n);
    *idx = tensor_new(a, DT_I32, 1, &n);
    for (int64_t i = 0; i < n * D; i++) tensor_set(src, i, 2 * rng_uniform(r) - 1);
    for (int64_t i = 0; i < n; i++) {
        tensor_set(w, i, rng_uniform(r));
        tensor_i32(idx)[i] = (int32_t)rng_below(r, (uint64_t)(rows - 1));   // the last row is never named
    }
    *ptr = tensor_zeros(a, DT_I32, 1, (int64_t[]){ rows + 1 });
    *list = tensor_new(a, DT_I32, 1, &n);
    int32_t *pp = tensor_i32(ptr), *fill_at = arena_alloc(a, sizeof(int32_t) * (size_t)rows);
    for (int64_t i = 0; i < n; i++) pp[tensor_i32(idx)[i] + 1]++;
    for (int64_t q = 0; q < rows; q++) pp[q + 1] += pp[q];
    memcpy(fill_at, pp, sizeof(int32_t) * (size_t)rows);
    for (int64_t i = 0; i < n; i++) tensor_i32(list)[fill_at[tensor_i32(idx)[i]]++] = (int32_t)i;
    *wl = tensor_like(a, w);   // the weights in list order
    for (int64_t j = 0; j < n; j++) tensor_set(wl, j, tensor_get(w, tensor_i32(list)[j]));
}

TEST(op_rows_gather_sum_equals_scatter_add) {
    Arena a, scratch;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    const int64_t n = 300, rows = 37, D = 5;
    for (int pass = 0; pass < 3; pass++) {   // reference f64, reference f32, the CPU backend
        cx_dtype dt = pass == 0 ? DT_F64 : DT_F32;
        OpCtx c = { .backend = pass == 2 ? OPS_CPU : OPS_REF, .scratch = &scratch };
        Rng r = rng_init(17);
        Tensor src, idx, w, ptr, list, wl;
        gather_sum_case(&a, &r, dt, &src, &idx, &w, &ptr, &list, &wl, n, rows, D);
        Tensor base = tensor_new(&a, dt, 2, (int64_t[]){ rows, D }), y1 = tensor_like(&a, &base), y2 = tensor_like(&a, &base);
        for (int64_t i = 0; i < rows * D; i++) tensor_set(&base, i, rng_uniform(&r));
        for (int wt = 0; wt < 2; wt++) {
            tensor_copy(&y1, &base);
            tensor_copy(&y2, &base);
            rows_scatter_add(&c, &y1, &src, &idx, wt ? &w : NULL);
            rows_gather_sum(&c, &y2, &src, &ptr, &list, wt ? &wl : NULL);
            CHECKF(!memcmp(y1.data, y2.data, (size_t)(rows * D) * dtype_size(dt)), "pass %d weights %d: not bit-equal (%.3g)",
                   pass, wt, test_rel_err(&y2, &y1, 0));
        }
        if (pass == 0) {   // the adjoint: d<gather_sum(src), g>/dsrc[i] = w_i·g[idx_i]
            Tensor g = tensor_like(&a, &base), dsrc = tensor_zeros_like(&a, &src), out = tensor_zeros_like(&a, &base);
            for (int64_t i = 0; i < rows * D; i++) tensor_set(&g, i, rng_uniform(&r) - 0.5);
            rows_scatter_add_backward(&c, &dsrc, NULL, &g, NULL, &idx, &w);
            const double h = 1e-6;
            for (int s = 0; s < 20; s++) {
                int64_t j = (int64_t)rng_below(&r, (uint64_t)(n * D));
                double x0 = tensor_get(&src, j), L[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    tensor_set(&src, j, x0 + (sgn ? -h : h));
                    tensor_zero(&out);
                    rows_gather_sum(&c, &out, &src, &ptr, &list, &wl);
                    L[sgn] = 0;
                    for (int64_t i = 0; i < rows * D; i++) L[sgn] += tensor_get(&out, i) * tensor_get(&g, i);
                }
                tensor_set(&src, j, x0);
                CHECK_NEAR((L[0] - L[1]) / (2 * h), tensor_get(&dsrc, j), 1e-8);
            }
        }
    }
    arena_free(&a);
    arena_free(&scratch);
}

TEST(op_rows_gather_sum_many_rows_cuda) {
    OpCtx *g = test_cuda();
    if (!g) { test_skip("%s", test_no_gpu()); return; }
    Arena a, scratch, dev;
    arena_init(&a, "test", 1 << 20);
    arena_init(&scratch, "scratch", 1 << 20);
    arena_init_on(&dev, "gpu test", 1 << 20, DEV_CUDA);
    OpCtx c = { .backend = OPS_CPU, .scratch = &scratch };
    Rng r = rng_init(19);
    Tensor src, idx, w, ptr, list, wl;
    const int64_t n = 5000, rows = 700, D = 24;
    gather_sum_case(&a, &r, DT_F32, &src, &idx, &w, &ptr, &list, &wl, n, rows, D);
    Tensor y = tensor_zeros(&a, DT_F32, 2, (int64_t[]){ rows, D });
    rows_gather_sum(&c, &y, &src, &ptr, &list, &wl);
    for (int act = 0; act < 2; act++) {   // float32, then bf16 src and dst (weights float32)
        cx_dtype dt = act ? DT_BF16 : DT_F32;
        Tensor ds = to_gpu(g, &dev, &src, dt), dw = to_gpu(g, &dev, &wl, DT_F32), dp = to_gpu(g, &dev, &ptr, DT_I32),
               dl = to_gpu(g, &dev, &list, DT_I32), dy = tensor_new(&dev, dt, 2, (int64_t[]){ rows, D });
        fill(g, &dy, 0);
        rows_gather_sum(g, &dy, &ds, &dp, &dl, &dw);
        Tensor h = from_gpu(g, &dev, &a, &dy);
        double e = test_rel_err(&h, &y, 0);
        printf("    cuda %s vs cpu f32: rel err %.3g\n", act ? "bf16" : "f32", e);
        CHECKF(e < (act ? 3e-2 : 1e-6), "cuda %s: %.3g", act ? "bf16" : "f32", e);
        arena_reset(&dev);
    }
    arena_free(&dev);
    arena_free(&a);
    arena_free(&scratch);
}
