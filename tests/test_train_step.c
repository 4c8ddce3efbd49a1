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

// The dense edgenext_xx_small model at 64², batch 2, one step from seed 5's weights.
static void step_once(const char *device, const char *precision, int first_write, Arena *keep, StepOut *out) {
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", 0, 4, 2));
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

static void first_write_case(const char *device, const char *precision) {
    Arena keep;
    arena_init(&keep, "keep", 1 << 20);
    StepOut filled, firstw;
    step_once(device, precision, 0, &keep, &filled);
    step_once(device, precision, 1, &keep, &firstw);
    if (test_failed()) { arena_free(&keep); return; }
    int64_t dt = first_difference(&firstw.terms, &filled.terms), dg = first_difference(&firstw.grad, &filled.grad);
    CHECKF(dt < 0, "%s %s: loss term %lld differs", device, precision, (long long)dt);
    CHECKF(dg < 0, "%s %s: gradient element %lld: %.9g first-write, %.9g filled", device, precision, (long long)dg,
           dg < 0 ? 0 : tensor_f32(&firstw.grad)[dg], dg < 0 ? 0 : tensor_f32(&filled.grad)[dg]);
    CHECK(filled.deferred == 0);
    // most of the backward's zeroed buffers are written by their first op, not filled
    CHECKF(firstw.written > 10 * firstw.filled, "%lld written, %lld filled", (long long)firstw.written,
           (long long)firstw.filled);
    printf("    %s %s: %lld deferred zeros, %lld written by their first op, %lld filled; gradients equal\n", device,
           precision, (long long)firstw.deferred, (long long)firstw.written, (long long)firstw.filled);
    arena_free(&keep);
}

TEST(train_step_first_write_equals_filled_zeros) { first_write_case("cpu", "fp32"); }

TEST(cuda_train_step_first_write_equals_filled_zeros) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    first_write_case("cuda", "fp32");
    first_write_case("cuda", "bf16");
}
