// test_train_checkpoint.c — checkpoints round-trip weights, optimizer state,
// EMA and counters exactly; each save names its state by a new token and removes
// the previous one; a state file renamed by hand is refused.
#include "test.h"
#include "nn/weights.h"
#include "train/checkpoint.h"
#include <string.h>

static void make_table(ParamTable *pt) {
    params_init(pt);
    params_add(pt, "conv.weight", 4, (int64_t[]){ 2, 3, 3, 3 }, PG_REST, 0);
    params_add(pt, "bn.running_mean", 1, (int64_t[]){ 2 }, PG_REST, PF_BUFFER);
    params_add(pt, "bn.num_batches_tracked", 0, NULL, PG_REST, PF_BUFFER | PF_COUNTER);
    params_alloc(pt, DT_F32);
}

TEST(checkpoint_round_trip_is_exact) {
    ParamTable a, b;
    make_table(&a);
    make_table(&b);
    Rng r = rng_init(3);
    for (int k = 0; k < 2; k++) {
        Tensor v = params_value(&a, k), g = params_grad(&a, k);
        for (int64_t i = 0; i < tensor_numel(&v); i++) { tensor_f32(&v)[i] = (float)rng_normal(&r); tensor_f32(&g)[i] = (float)rng_normal(&r); }
    }
    params_counter_add(&a, 2, 17);
    Arena sa;
    arena_init(&sa, "scratch", 1 << 16);
    OpCtx op = { .backend = OPS_CPU, .scratch = &sa };
    AdamW oa, ob;
    adamw_init(&oa, &a, 1e-4);
    adamw_init(&ob, &b, 1e-4);
    adamw_step(&op, &oa, &a, 1e-3, NULL);
    Ema ea, eb;
    ema_init(&ea, &a, 0.99);
    ema_init(&eb, &b, 0.99);
    ema_update(&op, &ea, &a);
    TrainState ts = { .stage = 2, .epoch = 5, .global_step = 123, .stage_step = 23, .batch_in_epoch = 7,
                      .best_score = 0.8125, .best_epoch = 4, .seed = 99 }, tb = { 0 };
    const char *dir = test_tmpdir();
    REQUIRE_OK(checkpoint_save(dir, "last", &a, "{\"backbone\":\"x\"}", &ts, &oa, &ea));
    char path[600];
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    int has = 0;
    REQUIRE_OK(weights_load(&b, path));
    REQUIRE_OK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has));
    CHECK(has);
    CHECK(memcmp(a.data, b.data, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(memcmp(oa.host_m, ob.host_m, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(memcmp(oa.host_v, ob.host_v, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(params_counter(&b, 2) == 17);
    CHECK(memcmp(oa.steps, ob.steps, sizeof(int64_t) * (size_t)a.n) == 0);
    CHECK(memcmp(ea.shadow, eb.shadow, sizeof(float) * (size_t)a.numel) == 0);
    CHECK(tb.stage == 2 && tb.epoch == 5 && tb.global_step == 123 && tb.stage_step == 23 && tb.batch_in_epoch == 7);
    CHECK(tb.best_score == 0.8125 && tb.best_epoch == 4 && tb.seed == 99);
    char *cfg = NULL;
    REQUIRE_OK(weights_read_config_json(path, &cfg));
    CHECK(cfg && !strcmp(cfg, "{\"backbone\":\"x\"}"));
    free(cfg);
    // The counter is an I64 scalar, as PyTorch writes num_batches_tracked.
    StFile f;
    REQUIRE_OK(st_open(&f, path));
    const StEntry *e = st_find(&f, "bn.num_batches_tracked");
    CHECK(e && e->dtype == DT_I64 && e->ndim == 0);
    st_close(&f);
    // A second save commits a new state and removes the first one's; the weights name the new one.
    char first[700], second[700];
    checkpoint_state_path(path, ts.token, first, sizeof first);
    CHECK(io_path_exists(first));
    REQUIRE_OK(checkpoint_save(dir, "last", &a, NULL, &ts, &oa, &ea));
    checkpoint_state_path(path, ts.token, second, sizeof second);
    CHECK(strcmp(first, second) != 0 && !io_path_exists(first) && io_path_exists(second));
    REQUIRE_OK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has));
    CHECK(has && tb.token == ts.token);
    // A state renamed by hand to another token's name is refused, naming both files.
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "mv '%s' '%s.keep' && cp '%s.keep' '%s'", second, second, second, first);
    REQUIRE(system(cmd) == 0);
    REQUIRE_OK(checkpoint_save(dir, "last", &a, NULL, &ts, &oa, &ea));   // removes `first`: not the named one
    char third[700];
    checkpoint_state_path(path, ts.token, third, sizeof third);
    snprintf(cmd, sizeof cmd, "mv '%s.keep' '%s'", second, third);
    REQUIRE(system(cmd) == 0);
    CHECK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has) == CX_EFORMAT);
    CHECK(strstr(cx_errmsg(), "is not the training state") != NULL);
    // A checkpoint from before the token was in the state's name (NAME.state.safetensors) still resumes.
    REQUIRE_OK(checkpoint_save(dir, "last", &a, NULL, &ts, &oa, &ea));
    char named[700], legacy[700];
    checkpoint_state_path(path, ts.token, named, sizeof named);
    checkpoint_state_path(path, 0, legacy, sizeof legacy);
    REQUIRE(rename(named, legacy) == 0);
    has = 0;
    REQUIRE_OK(checkpoint_load_state(path, &b, &tb, &ob, &eb, &has));
    CHECK(has && tb.token == ts.token && tb.global_step == 123);
    adamw_free(&oa); adamw_free(&ob); ema_free(&ea); ema_free(&eb);
    params_free(&a); params_free(&b);
    arena_free(&sa);
}
