// test_train_e2e.c — the trainer end to end on a tiny synthetic set: the loss
// falls and the validation Sα ends above the colour-threshold baseline's on the
// same held-out images; a run stopped mid-epoch (in stage 1, and again in stage
// 2) and resumed gives bit for bit the losses, learning rates and validation
// scores of the uninterrupted run (one thread, so reductions are ordered); a
// non-finite loss stops with a message naming the step and the last checkpoint;
// bad configurations are rejected with the option named. The same run on a GPU
// (bf16, skipped without one) learns and resumes bit for bit too.
#include "test.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/synth.h"
#include "eval/metrics.h"
#include "infer/open.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include <cjson/cJSON.h>
#include <string.h>

// Under AddressSanitizer at -O0 a step is ~10x slower: a smaller run there, which
// checks everything but beating the baseline.
#if defined(__SANITIZE_ADDRESS__)
#define E2E_SMALL 1
#else
#define E2E_SMALL 0
#endif

static const char *synth_dir(void) {
    static char dir[700];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/e2e_synth", test_tmpdir());
    SynthConfig c = synth_config_default();
    c.size = 96, c.seed = 7, c.difficulty = 0.3, c.empty_fraction = 0;
    SynthStats s;
    if (synth_write_dataset(dir, &c, E2E_SMALL ? 16 : 40, 4, 92, NULL, &s)) dir[0] = 0;
    return dir;
}

static void tiny_config(TrainConfig *c, const char *ckdir) {
    train_config_default(c);
    c->dataset_path = synth_dir();
    c->checkpoint_dir = ckdir;
    c->backbone = "edgenext_xx_small";
    c->img_size = 64;
    c->batch_size = 4;
    c->epochs = E2E_SMALL ? 2 : 4;
    c->stage1_epochs = 1;
    c->lr = 2e-3;
    c->stage2_lr = 1e-3;
    c->scheduler = LR_ONECYCLE;
    c->sparse = 1, c->num_experts = 4, c->top_k = 2;
    c->use_ema = 1;
    c->ema_decay = 0.8;   // a short run: the default 0.999 would keep the EMA at the initial weights
    c->accumulation_steps = 1;
    c->val_fraction = 0.25;
    c->num_workers = 2;
    c->seed = 3;
    c->quiet = 1;
    c->progress = 0;
    c->device = "cpu";
}

typedef struct { int n; int64_t step[256]; double loss[256], lr[256]; int ne; double sm[16]; } Log;

static int read_log(const char *dir, Log *L) {
    char p[800];
    snprintf(p, sizeof p, "%s/train_log.jsonl", dir);
    unsigned char *buf;
    size_t n;
    if (io_read_file(p, &buf, &n)) return 0;
    memset(L, 0, sizeof *L);
    for (char *line = strtok((char *)buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        const char *type = cJSON_GetObjectItem(j, "type")->valuestring;
        if (!strcmp(type, "step") && L->n < 256) {
            L->step[L->n] = (int64_t)cJSON_GetObjectItem(j, "step")->valuedouble;
            L->loss[L->n] = cJSON_GetObjectItem(j, "loss")->valuedouble;
            L->lr[L->n++] = cJSON_GetObjectItem(j, "lr")->valuedouble;
        } else if (!strcmp(type, "epoch") && L->ne < 16) {
            const cJSON *v = cJSON_GetObjectItem(j, "val");
            L->sm[L->ne++] = v ? cJSON_GetObjectItem(v, "Smeasure")->valuedouble : -1;
        }
        cJSON_Delete(j);
    }
    free(buf);
    return 1;
}

// Sα of the colour-threshold baseline on the trainer's validation split (same split rule).
static double baseline_sm(const TrainConfig *c) {
    Dataset all, tr, va;
    DatasetOptions o = { .root = c->dataset_path, .split = "train" };
    if (dataset_open(&all, &o)) return NAN;
    dataset_split(&all, c->val_fraction, c->seed, &tr, &va);
    MetricsAccum acc;
    metrics_accum_init(&acc);
    for (int i = 0; i < va.n; i++) {
        Image8 im, gt;
        if (image_load(va.s[i].image, 3, &im) || image_load(va.s[i].mask, 1, &gt)) return NAN;
        uint8_t *pred = malloc((size_t)im.w * im.h);
        synth_threshold_baseline(im.px, im.w * im.h, pred);
        MetricsImage m;
        if (!metrics_image_u8(pred, gt.px, gt.h, gt.w, &m)) metrics_accum_add(&acc, &m);
        free(pred);
        image_free(&im);
        image_free(&gt);
    }
    MetricsSummary s;
    metrics_accum_summary(&acc, &s);
    dataset_free(&all), dataset_free(&tr), dataset_free(&va);
    return s.sm;
}

TEST_SLOW(train_learns_and_resumes_bit_for_bit) {
    REQUIRE(synth_dir()[0]);
    cx_threads_set(1);
    char da[800], db[800];
    snprintf(da, sizeof da, "%s/run_a", test_tmpdir());
    snprintf(db, sizeof db, "%s/run_b", test_tmpdir());
    // A: uninterrupted.
    TrainConfig c;
    tiny_config(&c, da);
    REQUIRE_OK(train_config_check(&c));
    TrainResult ra;
    REQUIRE_OK(trainer_run(&c, &ra));
    CHECK(ra.epochs == c.epochs && !ra.interrupted);
    CHECKF(ra.last_loss < ra.first_loss, "mean training loss: first epoch %.4f, last %.4f", ra.first_loss, ra.last_loss);
    double base = baseline_sm(&c);
    printf("  loss %.4f -> %.4f; validation Sα %.4f (colour-threshold baseline %.4f)\n", ra.first_loss, ra.last_loss,
           ra.best_sm, base);
    // The sanitizer build's shorter run (4 validation images) is too small to beat the baseline reliably.
    if (!E2E_SMALL)
        CHECKF(ra.best_sm > base, "validation Sα %.4f is not above the colour-threshold baseline's %.4f", ra.best_sm, base);
    char p[900];
    snprintf(p, sizeof p, "%s/best.safetensors", da);
    CHECK(io_path_exists(p));
    snprintf(p, sizeof p, "%s/last.safetensors", da);
    uint64_t tok = 0;
    CHECK(checkpoint_read_token(p, &tok) == CX_OK && tok != 0);
    char sp[1000];
    checkpoint_state_path(p, tok, sp, sizeof sp);
    CHECK(io_path_exists(sp));
    // B: stopped mid-epoch in stage 1, resumed, stopped mid-epoch in stage 2, resumed.
    TrainConfig cb;
    tiny_config(&cb, db);
    TrainResult rb;
    const int64_t spe = ra.steps / c.epochs;   // optimizer steps per epoch
    cb.max_steps = 2;
    REQUIRE_OK(trainer_run(&cb, &rb));
    CHECK(rb.interrupted && rb.steps == 2);
    char last[900];
    snprintf(last, sizeof last, "%s/last.safetensors", db);
    cb.resume_from = last;
    cb.max_steps = spe + 2;
    REQUIRE_OK(trainer_run(&cb, &rb));
    CHECK(rb.interrupted && rb.steps == spe + 2);
    cb.max_steps = 0;
    REQUIRE_OK(trainer_run(&cb, &rb));
    CHECK(!rb.interrupted && rb.steps == ra.steps);
    Log la, lb;
    REQUIRE(read_log(da, &la) && read_log(db, &lb));
    CHECKF(la.n == ra.steps && lb.n == la.n, "steps logged: %d uninterrupted, %d resumed, %lld taken", la.n, lb.n,
           (long long)ra.steps);
    for (int i = 0; i < la.n && i < lb.n; i++) {
        CHECKF(la.step[i] == lb.step[i] && la.loss[i] == lb.loss[i] && la.lr[i] == lb.lr[i],
               "step %lld: loss %.17g lr %.17g uninterrupted vs step %lld: loss %.17g lr %.17g resumed",
               (long long)la.step[i], la.loss[i], la.lr[i], (long long)lb.step[i], lb.loss[i], lb.lr[i]);
        if (test_failed()) break;
    }
    CHECK(la.ne == lb.ne);
    for (int i = 0; i < la.ne && i < lb.ne; i++) CHECKF(la.sm[i] == lb.sm[i], "epoch %d Sα %.17g vs %.17g", i + 1, la.sm[i], lb.sm[i]);
    cx_threads_set(0);
}

// The GPU run of the same recipe (bf16, the training default): the loss falls, the
// validation Sα beats the colour-threshold baseline, and a run stopped mid-epoch
// in both stages and resumed repeats the uninterrupted run's losses bit for bit
// (every GPU kernel is deterministic: fixed-order reductions, deterministic cuDNN
// algorithms).
TEST_SLOW(train_gpu_learns_and_resumes_bit_for_bit) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    REQUIRE(synth_dir()[0]);
    char da[800], db[800], last[900];
    snprintf(da, sizeof da, "%s/gpu_a", test_tmpdir());
    snprintf(db, sizeof db, "%s/gpu_b", test_tmpdir());
    snprintf(last, sizeof last, "%s/last.safetensors", db);
    TrainConfig c;
    tiny_config(&c, da);
    c.device = "cuda";
    TrainResult ra, rb;
    REQUIRE_OK(trainer_run(&c, &ra));
    CHECKF(ra.last_loss < ra.first_loss, "mean training loss: first epoch %.4f, last %.4f", ra.first_loss, ra.last_loss);
    double base = baseline_sm(&c);
    printf("  gpu: loss %.4f -> %.4f; validation Sα %.4f (colour-threshold baseline %.4f)\n", ra.first_loss, ra.last_loss,
           ra.best_sm, base);
    CHECKF(ra.best_sm > base, "validation Sα %.4f is not above the colour-threshold baseline's %.4f", ra.best_sm, base);
    TrainConfig cb;
    tiny_config(&cb, db);
    cb.device = "cuda";
    const int64_t spe = ra.steps / c.epochs;
    cb.max_steps = 2;
    REQUIRE_OK(trainer_run(&cb, &rb));
    cb.resume_from = last;
    cb.max_steps = spe + 2;
    REQUIRE_OK(trainer_run(&cb, &rb));
    cb.max_steps = 0;
    REQUIRE_OK(trainer_run(&cb, &rb));
    CHECK(!rb.interrupted && rb.steps == ra.steps);
    Log la, lb;
    REQUIRE(read_log(da, &la) && read_log(db, &lb));
    CHECK(la.n == lb.n);
    double worst = 0;
    for (int i = 0; i < la.n && i < lb.n; i++) worst = fmax(worst, fabs(la.loss[i] - lb.loss[i]) / fabs(la.loss[i]));
    printf("  gpu resume: %d steps, largest relative loss difference %.3g\n", la.n, worst);
    CHECKF(worst == 0, "a resumed GPU run differs from the uninterrupted one by %.3g (relative loss)", worst);
    for (int i = 0; i < la.ne && i < lb.ne; i++) CHECKF(la.sm[i] == lb.sm[i], "epoch %d Sα %.17g vs %.17g", i + 1, la.sm[i], lb.sm[i]);
}

TEST(train_non_finite_loss_stops_naming_step_and_checkpoint) {
    REQUIRE(synth_dir()[0]);
    cx_threads_set(1);
    char d[800];
    snprintf(d, sizeof d, "%s/run_nan", test_tmpdir());
    TrainConfig c;
    tiny_config(&c, d);
    c.epochs = 2, c.stage1_epochs = 2, c.val_fraction = 0.25, c.use_ema = 0;
    c.lr = 1e30;   // the first update sends the weights to infinity; the next loss is not finite
    c.scheduler = LR_NONE;
    c.grad_clip = 0;
    TrainResult r;
    cx_status st = trainer_run(&c, &r);
    CHECKF(st == CX_ENUMERIC, "status %d: %s", st, cx_errmsg());
    CHECKF(strstr(cx_errmsg(), "step ") && strstr(cx_errmsg(), "not finite") && strstr(cx_errmsg(), "bce"),
           "message: %s", cx_errmsg());
    cx_threads_set(0);
}

TEST(train_config_check_names_contradictions) {
    TrainConfig c;
    train_config_default(&c);
    c.dataset_path = "x";
    c.sparse = 1, c.num_experts = 4, c.top_k = 5;
    CHECK(train_config_check(&c) == CX_EARG && strstr(cx_errmsg(), "--top-k 5") && strstr(cx_errmsg(), "--num-experts 4"));
    train_config_default(&c);
    c.dataset_path = "x";
    c.epochs = 10, c.stage1_epochs = 12;
    CHECK(train_config_check(&c) == CX_EARG && strstr(cx_errmsg(), "--stage1-epochs 12"));
    train_config_default(&c);
    c.dataset_path = "x";
    c.img_size = 100;
    CHECK(train_config_check(&c) == CX_EARG && strstr(cx_errmsg(), "96") && strstr(cx_errmsg(), "128"));
    train_config_default(&c);
    CHECK(train_config_check(&c) == CX_EARG && strstr(cx_errmsg(), "--dataset-path"));
    train_config_default(&c);
    c.dataset_path = "x";
    c.resume_from = "/nonexistent/last.safetensors";
    CHECK(train_config_check(&c) == CX_EARG && strstr(cx_errmsg(), "/nonexistent/last.safetensors"));
}

// Stage 1 leaves the backbone exactly as initialised; stage 2 with progressive
// unfreezing changes only backbone.stages_3 in its first third, then everything.
TEST_SLOW(train_freezes_the_backbone_in_stage1_and_unfreezes_progressively) {
    REQUIRE(synth_dir()[0]);
    cx_threads_set(1);
    char d[800], last[900];
    snprintf(d, sizeof d, "%s/run_freeze", test_tmpdir());
    snprintf(last, sizeof last, "%s/last.safetensors", d);
    TrainConfig c;
    tiny_config(&c, d);
    c.epochs = 4, c.stage1_epochs = 1, c.progressive_unfreeze = 1, c.use_ema = 0, c.val_fraction = 0.25;
    c.val_every = 100;   // validation only after the last epoch
    // The initial weights: same config and seed.
    CamoXpertConfig mc;
    REQUIRE_OK(camoxpert_config(&mc, c.backbone, c.sparse, c.num_experts, c.top_k));
    Model m0;
    REQUIRE_OK(model_open(&m0, &(ModelSpec){ .config = &mc, .init_seed = c.seed }));
    const ParamTable *p0 = &m0.pt;
    TrainResult r;
    // After stage 1 (epoch 1), then after the first stage-2 epoch (first third of 3).
    for (int phase = 0; phase < 2; phase++) {
        c.max_steps = 0;
        c.epochs = phase == 0 ? 1 : 4;
        if (phase == 1) {   // resume stage 2 and stop after its first epoch
            c.resume_from = last;
            c.max_steps = 2 * (r.steps);
        }
        REQUIRE_OK(trainer_run(&c, &r));
        Model m1;
        REQUIRE_OK(model_open(&m1, &(ModelSpec){ .weights = last }));
        int changed_stem = 0, changed_s2 = 0, changed_s3 = 0, changed_head = 0;
        for (int i = 0; i < p0->n; i++) {
            Tensor a = params_value(p0, i), b = params_value(&m1.pt, i);
            int diff = memcmp(a.data, b.data, tensor_nbytes(&a)) != 0;
            const char *n = p0->p[i].name;
            if (p0->p[i].flags & PF_BUFFER) continue;
            if (!strncmp(n, "backbone.stem_", 14)) changed_stem |= diff;
            else if (!strncmp(n, "backbone.stages_2.", 18)) changed_s2 |= diff;
            else if (!strncmp(n, "backbone.stages_3.", 18)) changed_s3 |= diff;
            else if (strncmp(n, "backbone.", 9)) changed_head |= diff;
        }
        CHECKF(changed_head, "phase %d: the head did not train", phase);
        CHECKF(!changed_stem && !changed_s2, "phase %d: a frozen backbone stage changed (stem %d, stages_2 %d)", phase,
               changed_stem, changed_s2);
        CHECKF(changed_s3 == (phase == 1), "phase %d: backbone.stages_3 changed: %d", phase, changed_s3);
        model_close(&m1);
    }
    model_close(&m0);
    cx_threads_set(0);
}

// An update that makes a weight non-finite (here a learning rate no option allows,
// set past train_config_check) stops the run naming the parameter; nothing
// non-finite is saved.
TEST(train_non_finite_update_stops_before_any_save) {
    REQUIRE(synth_dir()[0]);
    cx_threads_set(1);
    char d[800];
    snprintf(d, sizeof d, "%s/run_inf_update", test_tmpdir());
    TrainConfig c;
    tiny_config(&c, d);
    c.epochs = 1, c.stage1_epochs = 1, c.use_ema = 1;
    c.lr = 1e300;
    c.scheduler = LR_NONE;
    TrainResult r;
    cx_status st = trainer_run(&c, &r);
    CHECKF(st == CX_ENUMERIC && strstr(cx_errmsg(), "made parameter '") && strstr(cx_errmsg(), "not finite"),
           "status %d: %s", st, cx_errmsg());
    char p[900];
    snprintf(p, sizeof p, "%s/last.safetensors", d);
    CHECK(!io_path_exists(p));
    snprintf(p, sizeof p, "%s/best.safetensors", d);
    CHECK(!io_path_exists(p));
    cx_threads_set(0);
}
