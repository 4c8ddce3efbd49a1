// test_train_optim.c — AdamW, gradient clipping and LR schedules against
// PyTorch goldens (tests/fixtures/train_golden.safetensors, made by
// tools/make_train_goldens.py), and EMA arithmetic.
#include "test.h"
#include "train/optim.h"
#include "train/schedule.h"

TEST(adamw_matches_torch_with_groups_and_clipping) {
    StFile f;
    REQUIRE_OK(st_open(&f, "tests/fixtures/train_golden.safetensors"));
    ParamTable pt;
    params_init(&pt);
    int iw = params_add(&pt, "w", 2, (int64_t[]){ 4, 3 }, PG_REST, 0);
    int ib = params_add(&pt, "b", 1, (int64_t[]){ 5 }, PG_ROUTER, PF_NO_DECAY);
    params_alloc(&pt, DT_F64);
    Tensor w = params_value(&pt, iw), b = params_value(&pt, ib);
    Tensor gw = params_grad(&pt, iw), gb = params_grad(&pt, ib);
    REQUIRE_OK(st_read(&f, "init/w", &w));
    REQUIRE_OK(st_read(&f, "init/b", &b));
    AdamW o;
    adamw_init(&o, &pt, 1e-2);
    o.group_scale[PG_ROUTER] = 0.1;
    Arena a;
    arena_init(&a, "t", 1 << 14);
    OpCtx op = { .backend = OPS_REF, .scratch = &a };
    Tensor ew = tensor_like(&a, &w), eb = tensor_like(&a, &b), en = tensor_new(&a, DT_F64, 1, (int64_t[]){ 1 });
    Tensor stats = tensor_new(&a, DT_F64, 1, (int64_t[]){ 3 });
    for (int s = 0; s < 6; s++) {
        char k[64];
        snprintf(k, sizeof k, "grad%d/w", s); REQUIRE_OK(st_read(&f, k, &gw));
        snprintf(k, sizeof k, "grad%d/b", s); REQUIRE_OK(st_read(&f, k, &gb));
        optim_grad_clip_stats(&op, &pt, &o, 0.5, &stats);
        double norm = tensor_f64(&stats)[1];
        snprintf(k, sizeof k, "norm%d", s); REQUIRE_OK(st_read(&f, k, &en));
        CHECK_NEAR(norm, tensor_f64(&en)[0], 1e-12);
        Tensor scale = tensor_slice0(&stats, 2, 1);
        adamw_step(&op, &o, &pt, 1e-2, &scale);
        snprintf(k, sizeof k, "step%d/w", s); REQUIRE_OK(st_read(&f, k, &ew));
        snprintf(k, sizeof k, "step%d/b", s); REQUIRE_OK(st_read(&f, k, &eb));
        // m and v are kept in float32, so agreement is to float32 rounding.
        CHECKF(test_rel_err(&w, &ew, 0) < 1e-6, "step %d w err %g", s, test_rel_err(&w, &ew, 0));
        CHECKF(test_rel_err(&b, &eb, 0) < 1e-6, "step %d b err %g", s, test_rel_err(&b, &eb, 0));
    }
    adamw_free(&o);
    params_free(&pt);
    arena_free(&a);
    st_close(&f);
}

static void check_lrs(const StFile *f, const char *name, LrSchedule s, int n) {
    Arena a;
    arena_init(&a, "t", 1 << 12);
    Tensor e = tensor_new(&a, DT_F64, 1, (int64_t[]){ n });
    if (st_read(f, name, &e) != CX_OK) { test_fail(__FILE__, __LINE__, "%s", cx_errmsg()); arena_free(&a); return; }
    for (int i = 0; i < n; i++) {
        int64_t step = i * s.steps_per_epoch;   // epoch-level schedulers are sampled at epoch starts
        double got = lr_at(&s, step), want = tensor_f64(&e)[i];
        CHECKF(fabs(got - want) <= 1e-12 + 1e-9 * want, "%s[%d]: %.12g vs torch %.12g", name, i, got, want);
    }
    arena_free(&a);
}

TEST(lr_schedules_match_torch) {
    StFile f;
    REQUIRE_OK(st_open(&f, "tests/fixtures/train_golden.safetensors"));
    check_lrs(&f, "onecycle_50", (LrSchedule){ .kind = LR_ONECYCLE, .base_lr = 1e-3, .epochs = 50, .steps_per_epoch = 1 }, 50);
    check_lrs(&f, "cosine_10ep", (LrSchedule){ .kind = LR_COSINE, .base_lr = 1e-3, .min_lr = 1e-6, .epochs = 10, .steps_per_epoch = 7 }, 10);
    check_lrs(&f, "restart_8ep", (LrSchedule){ .kind = LR_COSINE_RESTART, .base_lr = 1e-3, .min_lr = 1e-6, .epochs = 8, .steps_per_epoch = 3, .t_mult = 2 }, 12);
    st_close(&f);
    LrSchedule w = { .kind = LR_NONE, .base_lr = 1.0, .epochs = 4, .steps_per_epoch = 10, .warmup_epochs = 1 };
    CHECK(lr_at(&w, 0) > 0 && lr_at(&w, 0) < 0.2);
    CHECK(lr_at(&w, 5) < lr_at(&w, 9));
    CHECK_NEAR(lr_at(&w, 10), 1.0, 1e-12);
}

TEST(ema_averages_params_and_copies_buffers) {
    ParamTable pt;
    params_init(&pt);
    int iw = params_add(&pt, "w", 1, (int64_t[]){ 3 }, PG_REST, 0);
    int ir = params_add(&pt, "bn.running_mean", 1, (int64_t[]){ 3 }, PG_REST, PF_BUFFER);
    params_alloc(&pt, DT_F32);
    Tensor w = params_value(&pt, iw), r = params_value(&pt, ir);
    tensor_fill(&w, 1.0);
    tensor_fill(&r, 1.0);
    Ema e;
    ema_init(&e, &pt, 0.9);
    tensor_fill(&w, 2.0);
    tensor_fill(&r, 5.0);
    Arena a;
    arena_init(&a, "t", 1 << 12);
    OpCtx op = { .backend = OPS_CPU, .scratch = &a };
    ema_update(&op, &e, &pt);
    ema_swap(&e, &pt);
    w = params_value(&pt, iw), r = params_value(&pt, ir);   // the table now points at the EMA weights
    CHECK_NEAR(tensor_f32(&w)[1], 1.1, 1e-6);
    CHECK_NEAR(tensor_f32(&r)[2], 5.0, 0);
    ema_swap(&e, &pt);
    w = params_value(&pt, iw);
    CHECK_NEAR(tensor_f32(&w)[1], 2.0, 0);
    ema_free(&e);
    params_free(&pt);
    arena_free(&a);
}
