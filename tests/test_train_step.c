// test_train_step.c — the training step's fast paths against the step they replace:
// first-write gradients (ops.h: the backward's zeroed buffers written by their first
// op) against filling every one, on the CPU and, where there is one, on the GPU in
// float32 and bf16. The gradients and loss terms must agree value for value.
#include "test.h"
#include "infer/open.h"
#include "train/step.h"
#include <string.h>

// What one training step (forward, loss, backward) leaves: the loss terms and the
// gradient buffer, copied to the host as float32.
typedef struct {
    Tensor terms, grad;
    int64_t deferred, written, filled;
} StepOut;

static Tensor host_f32(Arena *keep, const Tensor *t) {
    Tensor h = tensor_new(keep, DT_F32, t->ndim, t->shape);
    if (t->device == DEV_CPU) {
        tensor_copy(&h, t);
        return h;
    }
    Tensor raw = tensor_new(keep, t->dtype, t->ndim, t->shape);
    tensor_download(&raw, t);
    tensor_copy(&h, &raw);
    return h;
}

// An edgenext_xx_small model at 64², batch 2 (dense; sparse E=4 k=2 with global or spatial
// routing), one step from seed 5's weights.
static void step_once(const char *device, const char *precision, const char *model, int first_write, Arena *keep,
                      StepOut *out) {
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", strcmp(model, "dense") != 0, 4, 2));
    if (!strcmp(model, "spatial")) REQUIRE_OK(camoxpert_config_routing(&cfg, "spatial", 2));
    Model mo;
    REQUIRE_OK(model_open(&mo, &(ModelSpec){ .config = &cfg, .init_seed = 5, .device = device, .precision = precision,
                                             .training = 1, .img_size = 64 }));
    Rng r = rng_init(17);
    Tensor x = tensor_new4(keep, DT_F32, 2, 64, 64, 3), mask = tensor_new4(keep, DT_F32, 2, 64, 64, 1);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&r);
    for (int64_t i = 0; i < tensor_numel(&mask); i++) tensor_f32(&mask)[i] = rng_uniform(&r) < 0.3;
    AdamW opt;
    adamw_init(&opt, &mo.pt, 1e-4);
    CamoLossWeights w = camo_loss_default_weights();
    TrainStep s;
    train_step_init(&s, mo.rt, mo.net, &mo.pt, &opt, NULL, &w);
    s.first_write = first_write;
    mo.rt->ctx.training = 1;
    train_step_begin(&s);
    CamoXpertOutputs o;
    train_step_accumulate(&s, &x, &mask, 0, &o);
    Tensor terms = tensor_slice0(&s.stats, 0, CL_TERMS);
    out->terms = host_f32(keep, &terms);
    Tensor g = tensor_view(mo.pt.grad, mo.pt.dtype, 1, &mo.pt.numel);
    g.device = mo.pt.device;
    out->grad = host_f32(keep, &g);
    out->deferred = s.zeros_deferred, out->written = s.zeros_written, out->filled = s.zeros_filled;
    train_step_free(&s);
    adamw_free(&opt);
    model_close(&mo);
}

// Value for value (NaN equals NaN; a zero's sign is not compared).
static int64_t first_difference(const Tensor *a, const Tensor *b) {
    for (int64_t i = 0; i < tensor_numel(a); i++) {
        float u = tensor_f32(a)[i], v = tensor_f32(b)[i];
        if (!(u == v || (isnan(u) && isnan(v)))) return i;
    }
    return -1;
}

static void first_write_case(const char *device, const char *precision, const char *model) {
    Arena keep;
    arena_init(&keep, "keep", 1 << 20);
    StepOut filled, firstw;
    step_once(device, precision, model, 0, &keep, &filled);
    step_once(device, precision, model, 1, &keep, &firstw);
    if (test_failed()) { arena_free(&keep); return; }
    int64_t dt = first_difference(&firstw.terms, &filled.terms), dg = first_difference(&firstw.grad, &filled.grad);
    CHECKF(dt < 0, "%s %s %s: loss term %lld differs", model, device, precision, (long long)dt);
    CHECKF(dg < 0, "%s %s %s: gradient element %lld: %.9g first-write, %.9g filled", model, device, precision, (long long)dg,
           dg < 0 ? 0 : tensor_f32(&firstw.grad)[dg], dg < 0 ? 0 : tensor_f32(&filled.grad)[dg]);
    CHECK(filled.deferred == 0);
    // most of the backward's zeroed buffers are written by their first op, not filled (the MoE's
    // scatters write theirs in part: those are filled)
    const int64_t ratio = strcmp(model, "dense") ? 2 : 10;
    CHECKF(firstw.written > ratio * firstw.filled, "%s: %lld written, %lld filled", model, (long long)firstw.written,
           (long long)firstw.filled);
    printf("    %s %s %s: %lld deferred zeros, %lld written by their first op, %lld filled; gradients equal\n", model,
           device, precision, (long long)firstw.deferred, (long long)firstw.written, (long long)firstw.filled);
    arena_free(&keep);
}

TEST_SLOW(train_step_first_write_equals_filled_zeros) {
    first_write_case("cpu", "fp32", "dense");
    first_write_case("cpu", "fp32", "sparse");
    first_write_case("cpu", "fp32", "spatial");
}

TEST(cuda_train_step_first_write_equals_filled_zeros) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    first_write_case("cuda", "fp32", "dense");
    first_write_case("cuda", "bf16", "dense");
    first_write_case("cuda", "fp32", "sparse");
}

// ---- the training step as a CUDA graph -------------------------------------------------------------
// Four optimizer steps of the dense model (bf16 and float32) with the micro-batch replayed as
// a graph from the second on, against four eager ones from the same weights: every loss
// term of every step and the final weights the same bits.
static void graph_case(const char *precision) {
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", 0, 4, 2));
    Arena keep;
    arena_init(&keep, "keep", 1 << 20);
    Rng r = rng_init(23);
    enum { STEPS = 4 };
    Tensor x[STEPS], mask[STEPS];
    for (int k = 0; k < STEPS; k++) {   // a new batch every step: the replay must read it
        x[k] = tensor_new4(&keep, DT_F32, 2, 64, 64, 3), mask[k] = tensor_new4(&keep, DT_F32, 2, 64, 64, 1);
        for (int64_t i = 0; i < tensor_numel(&x[k]); i++) tensor_f32(&x[k])[i] = (float)rng_normal(&r);
        for (int64_t i = 0; i < tensor_numel(&mask[k]); i++) tensor_f32(&mask[k])[i] = rng_uniform(&r) < 0.3;
    }
    double loss[2][STEPS];
    Tensor wts[2];
    int64_t captures = 0, replays = 0, nbt[2] = { 0, 0 };
    for (int run = 0; run < 2; run++) {   // run 0: eager; run 1: the graph
        Model mo;
        REQUIRE_OK(model_open(&mo, &(ModelSpec){ .config = &cfg, .init_seed = 7, .device = "cuda",
                                                 .precision = precision, .training = 1, .img_size = 64 }));
        AdamW opt;
        adamw_init(&opt, &mo.pt, 1e-3);
        CamoLossWeights w = camo_loss_default_weights();
        TrainStep s;
        train_step_init(&s, mo.rt, mo.net, &mo.pt, &opt, NULL, &w);
        s.graph = run, s.graph_after = 1;
        mo.rt->ctx.training = 1;
        for (int k = 0; k < STEPS; k++) {
            train_step_begin(&s);
            CamoXpertOutputs o;
            train_step_accumulate(&s, &x[k], &mask[k], 0, &o);
            StepResult sr;
            REQUIRE_OK(train_step_finish(&s, 1e-3, 1.0, &sr));
            loss[run][k] = sr.loss.total;
        }
        if (run) captures = s.graph_captures, replays = s.graph_replays;
        if (run) printf("    %s: %s, captured %lld, replayed %lld\n", precision, s.graph_why, (long long)captures,
                        (long long)replays);
        for (int i = 0; i < mo.pt.n; i++)
            if (mo.pt.p[i].flags & PF_COUNTER) nbt[run] += params_counter(&mo.pt, i);
        Tensor v = tensor_view(mo.pt.data, mo.pt.dtype, 1, &mo.pt.numel);
        v.device = mo.pt.device;
        wts[run] = host_f32(&keep, &v);
        train_step_free(&s);
        adamw_free(&opt);
        model_close(&mo);
    }
    CHECKF(captures == 1 && replays == STEPS - 2, "%s: captured %lld times, replayed %lld", precision,
           (long long)captures, (long long)replays);
    for (int k = 0; k < STEPS; k++)
        CHECKF(loss[1][k] == loss[0][k], "%s step %d: loss %.9g with the graph, %.9g eager", precision, k + 1, loss[1][k],
               loss[0][k]);
    int64_t d = first_difference(&wts[1], &wts[0]);
    CHECKF(d < 0, "%s: weight %lld differs after %d steps", precision, (long long)d, STEPS);
    CHECKF(nbt[1] == nbt[0], "%s: BatchNorm batch counters %lld with the graph, %lld eager", precision,
           (long long)nbt[1], (long long)nbt[0]);
    arena_free(&keep);
}

TEST(cuda_train_graph_step_equals_the_eager_step) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    graph_case("bf16");
    graph_case("fp32");
}
