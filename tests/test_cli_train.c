// test_cli_train.c — the train, predict and bench commands as users run them:
// bad options and a missing dataset give exit status 2 and a message naming the
// option and the fix; --help documents the reference trainer's options; Ctrl-C
// checkpoints and a bare --resume-from continues with the run's own options;
// predict writes masks at each photo's own size (camo4), overlays and routing
// JSON; bench writes the documented JSON keys; a validation split drawn from a test set
// is refused unless --val-from-test, which warns and is recorded for the report.
#include "test.h"
#include "browser.h"
#include <dirent.h>
#include "data/image.h"
#include "nn/camoxpert.h"
#include "train/checkpoint.h"
#include "infer/open.h"
#include "nn/weights.h"
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(cli_train_rejects_bad_options_with_hints) {
    char *o;
    CHECK(test_run_bin(&o, "train --dataset-path x --use-sparse-moe --num-experts 4 --top-k 7") == 2);
    CHECKF(strstr(o, "--top-k 7") && strstr(o, "--num-experts 4"), "%s", o);
    CHECK(test_run_bin(&o, "train --dataset-path x --epochs 3 --stage1-epochs 5") == 2);
    CHECKF(strstr(o, "--stage1-epochs 5") && strstr(o, "--epochs 3"), "%s", o);
    CHECK(test_run_bin(&o, "train --dataset-path x --num-experts 4") == 2);
    CHECKF(strstr(o, "--num-experts") && strstr(o, "--use-sparse-moe"), "%s", o);
    CHECK(test_run_bin(&o, "train --dataset-path x --ema-decay 0.99") == 2);
    CHECKF(strstr(o, "--use-ema"), "%s", o);
    CHECK(test_run_bin(&o, "train --dataset-path x --stage1-epoch 3") == 2);
    CHECKF(strstr(o, "did you mean --stage1-epochs"), "%s", o);
    CHECK(test_run_bin(&o, "train --dataset-path x --img-size 300") == 2);
    CHECKF(strstr(o, "--img-size 300") && strstr(o, "288"), "%s", o);
    CHECK(test_run_bin(&o, "train --dataset-path x --balance fancy --use-sparse-moe") == 2);
    CHECKF(strstr(o, "--balance"), "%s", o);
    CHECK(test_run_bin(&o, "train --epochs 2") == 2);
    CHECKF(strstr(o, "--dataset-path"), "%s", o);
    int rc = test_run_bin(&o, "train --dataset-path /nonexistent/cod --threads 1");
    CHECKF(rc != 0 && strstr(o, "/nonexistent/cod"), "rc %d: %s", rc, o);
    CHECK(test_run_bin(&o, "train --dataset-path x --resume-from /nonexistent/last.safetensors") == 2);
    CHECKF(strstr(o, "/nonexistent/last.safetensors"), "%s", o);
}

// --device and --precision: a GPU that is not there, an index past the last GPU,
// bf16 on the CPU and unknown spellings are clear errors naming the fix; the
// first line of a run says which device it uses.
TEST(cli_device_options_fail_clearly) {
    char *o;
    char why[256] = "";
    int ngpu = ops_cuda_device_count(why, sizeof why);
    int rc = test_run_bin(&o, "predict --weights x --input x --out x --device cuda:%d", ngpu);
    CHECKF(rc == 2 && strstr(o, "--device cuda:") && (ngpu ? strstr(o, "GPU") != NULL : strstr(o, "--device cpu") != NULL),
           "rc %d: %s", rc, o);
    char isa[128];
    if (!ops_cpu_bf16(isa, sizeof isa)) {   // a CPU with native bf16 runs it (tests/test_cpu_bf16.c)
        rc = test_run_bin(&o, "bench --device cpu --precision bf16 --backbone edgenext_xx_small --img-size 64");
        CHECKF(rc == 2 && strstr(o, "needs native bf16") && strstr(o, "--precision fp32") && strstr(o, "--device cuda"),
               "rc %d: %s", rc, o);
    }
    rc = test_run_bin(&o, "bench --device gpu0 --backbone edgenext_xx_small --img-size 64");
    CHECKF(rc == 2 && strstr(o, "--device gpu0") && strstr(o, "cuda:N"), "rc %d: %s", rc, o);
    rc = test_run_bin(&o, "bench --device cpu --backbone edgenext_xx_small --img-size 64 --batch-size 1 --steps 1 --mode dense");
    CHECKF(rc == 0 && !strncmp(o, "device: cpu", 11), "rc %d: %s", rc, o);
}

TEST(cli_train_help_documents_the_reference_options) {
    char *o;
    REQUIRE(test_run_bin(&o, "train --help") == 0);
    static const char *const names[] = { "dataset-path", "checkpoint-dir", "backbone", "backbone-weights", "batch-size",
        "stage2-batch-size", "img-size", "epochs", "stage1-epochs", "lr", "stage2-lr", "weight-decay", "scheduler",
        "min-lr", "warmup-epochs", "t-mult", "accumulation-steps", "deep-supervision", "use-ema", "ema-decay",
        "progressive-unfreeze", "resume-from", "skip-stage1", "seed", "num-workers", "use-sparse-moe", "num-experts",
        "top-k", "lb-coef", "balance", "router-lr-scale", "val-fraction", "threads", "val-every", NULL };
    for (int i = 0; names[i]; i++) {
        char k[64];
        snprintf(k, sizeof k, "--%s ", names[i]);
        CHECKF(strstr(o, k), "--help lacks %s", k);
    }
}

// A tiny synthetic set in the COD10K-v3 layout, made by the program itself.
static const char *tiny_set(void) {
    static char d[700];
    if (d[0]) return d;
    snprintf(d, sizeof d, "%s/tiny", test_tmpdir());
    if (test_run_bin(NULL, "synth --out %s --train 12 --test 2 --size 64 --seed 4 --threads 1", d)) d[0] = 0;
    return d;
}

TEST_SLOW(cli_train_ctrl_c_checkpoints_and_resume_takes_the_run_options) {
    REQUIRE(tiny_set()[0]);
    char ck[700], cmd[8192];
    snprintf(ck, sizeof ck, "%s/ck", test_tmpdir());
    REQUIRE_OK(io_make_dirs(ck));
    // Start a long run, wait for its first logged step, send SIGINT: it checkpoints and exits 130.
    snprintf(cmd, sizeof cmd,
             "%s train --dataset-path %s --checkpoint-dir %s --backbone edgenext_xx_small --img-size 32 --batch-size 2 "
             "--epochs 40 --stage1-epochs 1 --use-sparse-moe --num-experts 3 --top-k 1 --threads 1 --progress 0 "
             "--val-fraction 0.25 > %s/run.out 2>&1 & pid=$!; "
             "for i in $(seq 600); do grep -q '\"step\"' %s/train_log.jsonl 2>/dev/null && break; sleep 0.1; done; "
             "kill -INT $pid; wait $pid; exit $?",
             test_bin_path(), tiny_set(), ck, ck, ck);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char p[800];
    snprintf(p, sizeof p, "%s/run.out", ck);
    unsigned char *out = NULL;
    size_t n;
    io_read_file(p, &out, &n);
    CHECKF(rc == 130, "exit %d after SIGINT: %s", rc, out ? (char *)out : "");
    CHECKF(out && strstr((char *)out, "--resume-from"), "%s", out ? (char *)out : "");
    free(out);
    snprintf(p, sizeof p, "%s/last.safetensors", ck);
    uint64_t tok = 0;
    REQUIRE(checkpoint_read_token(p, &tok) == CX_OK && tok != 0);
    char sp[1000];
    checkpoint_state_path(p, tok, sp, sizeof sp);
    REQUIRE(io_path_exists(sp));
    // Resume with no model or data options: they come from the checkpoint.
    char *o;
    rc = test_run_bin(&o, "train --resume-from %s/last.safetensors --threads 1 --max-steps 1000000 --epochs 2", ck);
    CHECKF(rc == 0, "rc %d: %s", rc, o);
    CHECKF(strstr(o, "--use-sparse-moe=1") && strstr(o, "resumed from") && strstr(o, "done: 2 epochs"), "%s", o);
    // A checkpoint of another model is refused with both configurations named.
    rc = test_run_bin(&o, "train --resume-from %s/last.safetensors --backbone edgenext_x_small --threads 1", ck);
    CHECKF(rc == 2 && strstr(o, "edgenext_x_small") && strstr(o, "edgenext_xx_small"), "rc %d: %s", rc, o);
}

// An untrained sparse checkpoint with its config in the metadata (predict does not care how good it is).
static const char *make_checkpoint(void) {
    static char dir[700];
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    CamoXpertConfig mc;
    Model m;
    if (camoxpert_config(&mc, "edgenext_xx_small", 1, 4, 2) || model_open(&m, &(ModelSpec){ .config = &mc, .init_seed = 5 }))
        return NULL;
    char *cfg = weights_config_json(&mc, 64);
    cx_status st = checkpoint_save(dir, "model", &m.pt, cfg, NULL, NULL, NULL);
    free(cfg);
    model_close(&m);
    return st ? NULL : dir;
}

TEST(cli_predict_writes_masks_at_each_photo_size) {
    const char *imgs = test_shared_path("data/camo4/Imgs");
    if (!io_path_is_dir(imgs)) { printf("  (skipped: %s not present)\n", imgs); return; }
    const char *dir = make_checkpoint();
    REQUIRE(dir);
    char ck[800], out[800];
    snprintf(ck, sizeof ck, "%s/model.safetensors", dir);
    snprintf(out, sizeof out, "%s/pred", dir);
    char *o;
    int rc = test_run_bin(&o, "predict --weights %s --input %s --out %s --overlay --routing --threads 1", ck, imgs, out);
    REQUIRE(rc == 0);
    CHECKF(strstr(o, "input 64x64") && strstr(o, "wrote 4 masks"), "%s", o);
    static const char *const names[] = { "camourflage_00012", "camourflage_00018", "camourflage_00061", "camourflage_00064" };
    for (int i = 0; i < 4; i++) {
        char p[1200];
        Image8 photo = { 0 }, mask = { 0 }, ov = { 0 };
        snprintf(p, sizeof p, "%s/%s.jpg", imgs, names[i]);
        REQUIRE_OK(image_load(p, 3, &photo));
        snprintf(p, sizeof p, "%s/%s.png", out, names[i]);
        REQUIRE_OK(image_load(p, 1, &mask));
        CHECKF(mask.w == photo.w && mask.h == photo.h, "%s: mask %dx%d, photo %dx%d", names[i], mask.w, mask.h, photo.w, photo.h);
        int lo = 255, hi = 0;   // min–max export: the full 8-bit range
        for (int64_t k = 0; k < (int64_t)mask.w * mask.h; k++) {
            if (mask.px[k] < lo) lo = mask.px[k];
            if (mask.px[k] > hi) hi = mask.px[k];
        }
        CHECKF(lo == 0 && hi == 255, "%s: mask range %d..%d", names[i], lo, hi);
        snprintf(p, sizeof p, "%s/%s_overlay.jpg", out, names[i]);
        REQUIRE_OK(image_load(p, 3, &ov));
        CHECK(ov.w == photo.w && ov.h == photo.h);
        snprintf(p, sizeof p, "%s/%s_routing.json", out, names[i]);
        unsigned char *buf = NULL;
        size_t n;
        REQUIRE_OK(io_read_file(p, &buf, &n));
        cJSON *j = cJSON_Parse((char *)buf);
        free(buf);
        REQUIRE(j);
        const cJSON *sc = cJSON_GetObjectItem(j, "scales");
        CHECK(cJSON_GetArraySize(sc) == 4);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(sc, 0), "experts")) == 2);
        cJSON_Delete(j);
        image_free(&photo), image_free(&mask), image_free(&ov);
    }
    // One photo at another input size; errors name the file.
    char one[1200];
    snprintf(one, sizeof one, "%s/camourflage_00064.jpg", imgs);
    CHECK(test_run_bin(&o, "predict --weights %s --input %s --out %s/one --img-size 96 --threads 1", ck, one, dir) == 0);
    CHECK(test_run_bin(&o, "predict --weights %s --input %s --out %s/one --img-size 90", ck, one, dir) == 2);
    CHECKF(strstr(o, "--img-size 90"), "%s", o);
    CHECK(test_run_bin(&o, "predict --weights %s/missing.safetensors --input %s --out %s/one", dir, one, dir) == 2);
    CHECKF(strstr(o, "missing.safetensors"), "%s", o);
    CHECK(test_run_bin(&o, "predict --weights %s --input %s/nothing_here --out %s/one", ck, dir, dir) == 2);
    CHECKF(strstr(o, "nothing_here"), "%s", o);
}

// Batches and worker threads change the order of work, not the results: predict at
// --batch-size 3 with 3 workers writes the masks and routing of --batch-size 1 with one
// worker (a photo's outputs depend on it alone); a photo that does not decode, in the
// middle of a batch, is an error naming it while the others are written.
TEST(cli_predict_batches_write_what_one_at_a_time_writes) {
    const char *imgs = test_shared_path("data/camo4/Imgs");
    if (!io_path_is_dir(imgs)) { printf("  (skipped: %s not present)\n", imgs); return; }
    const char *dir = make_checkpoint();
    REQUIRE(dir);
    static const char *const names[] = { "camourflage_00012", "camourflage_00018", "camourflage_00061", "camourflage_00064" };
    char in[800], ck[800], p[4200], q[4200];
    snprintf(ck, sizeof ck, "%s/model.safetensors", dir);
    snprintf(in, sizeof in, "%s/photos", dir);
    REQUIRE_OK(io_make_dirs(in));
    for (int i = 0; i < 4; i++) {   // links to the shared photos, and a broken JPEG between them
        snprintf(q, sizeof q, "%s/%s.jpg", imgs, names[i]);
        REQUIRE(realpath(q, p));
        snprintf(q, sizeof q, "%s/%s.jpg", in, names[i]);
        REQUIRE(symlink(p, q) == 0);
    }
    snprintf(q, sizeof q, "%s/camourflage_00015.jpg", in);
    FILE *f = fopen(q, "wb");
    REQUIRE(f);
    fputs("\xff\xd8\xff\xe0 not a photo", f);
    fclose(f);
    char *o;
    int rc = test_run_bin(&o, "predict --weights %s --input %s --out %s/one --routing --batch-size 1 --workers 1 "
                              "--threads 1 --precision fp32", ck, in, dir);
    CHECKF(rc == 1 && strstr(o, "camourflage_00015.jpg") && strstr(o, "wrote 4 masks") && strstr(o, "1 of 5"),
           "rc %d: %s", rc, o);
    rc = test_run_bin(&o, "predict --weights %s --input %s --out %s/three --routing --batch-size 3 --workers 3 "
                          "--threads 1 --precision fp32", ck, in, dir);
    CHECKF(rc == 1 && strstr(o, "camourflage_00015.jpg") && strstr(o, "wrote 4 masks") && strstr(o, "batch 3, 3 workers"),
           "rc %d: %s", rc, o);
    for (int i = 0; i < 4; i++) {
        Image8 a = { 0 }, b = { 0 };
        snprintf(p, sizeof p, "%s/one/%s.png", dir, names[i]);
        snprintf(q, sizeof q, "%s/three/%s.png", dir, names[i]);
        REQUIRE_OK(image_load(p, 1, &a));
        REQUIRE_OK(image_load(q, 1, &b));
        REQUIRE(a.w == b.w && a.h == b.h);
        int worst = 0;   // 8-bit min–max export of float32 logits: summation order may move a level
                         // (float32 asked: auto takes bf16 convolutions on a CPU with AVX512-BF16 or AMX)
        for (int64_t k = 0; k < (int64_t)a.w * a.h; k++) {
            int d = abs((int)a.px[k] - (int)b.px[k]);
            if (d > worst) worst = d;
        }
        CHECKF(worst <= 1, "%s: masks differ by %d levels between batch 1 and batch 3", names[i], worst);
        image_free(&a), image_free(&b);
        unsigned char *ja = NULL, *jb = NULL;
        size_t na, nb;
        snprintf(p, sizeof p, "%s/one/%s_routing.json", dir, names[i]);
        snprintf(q, sizeof q, "%s/three/%s_routing.json", dir, names[i]);
        REQUIRE_OK(io_read_file(p, &ja, &na));
        REQUIRE_OK(io_read_file(q, &jb, &nb));
        cJSON *x = cJSON_Parse((char *)ja), *y = cJSON_Parse((char *)jb);
        free(ja), free(jb);
        REQUIRE(x && y);
        const cJSON *sx = cJSON_GetObjectItem(x, "scales"), *sy = cJSON_GetObjectItem(y, "scales");
        REQUIRE(cJSON_GetArraySize(sx) == 4 && cJSON_GetArraySize(sy) == 4);
        for (int s = 0; s < 4; s++) {
            const cJSON *ex = cJSON_GetObjectItem(cJSON_GetArrayItem(sx, s), "experts");
            const cJSON *ey = cJSON_GetObjectItem(cJSON_GetArrayItem(sy, s), "experts");
            for (int e = 0; e < 2; e++)
                CHECKF(cJSON_GetArrayItem(ex, e)->valueint == cJSON_GetArrayItem(ey, e)->valueint,
                       "%s scale %d: expert %d differs between batch 1 and batch 3", names[i], s, e);
            const cJSON *px = cJSON_GetObjectItem(cJSON_GetArrayItem(sx, s), "probs");
            const cJSON *py = cJSON_GetObjectItem(cJSON_GetArrayItem(sy, s), "probs");
            for (int e = 0; e < cJSON_GetArraySize(px); e++)
                CHECK_NEAR(cJSON_GetArrayItem(px, e)->valuedouble, cJSON_GetArrayItem(py, e)->valuedouble, 1e-5);
        }
        cJSON_Delete(x), cJSON_Delete(y);
    }
    CHECK(test_run_bin(&o, "predict --weights %s --input %s --out %s/bad --batch-size -1", ck, in, dir) == 2);
    CHECKF(strstr(o, "--batch-size -1"), "%s", o);
}

// predict commits each batch's masks together (one flush, then the renames): a kill
// at either moment of each batch's commit leaves every mask absent or complete, and a
// second run finishes the folder.
TEST_SLOW(cli_predict_killed_mid_commit_leaves_no_partial_mask) {
    const char *imgs = test_shared_path("data/camo4/Imgs");
    if (!io_path_is_dir(imgs)) { printf("  (skipped: %s not present)\n", imgs); return; }
    const char *dir = make_checkpoint();
    REQUIRE(dir);
    static const char *const names[] = { "camourflage_00012", "camourflage_00018", "camourflage_00061", "camourflage_00064" };
    char ck[800];
    snprintf(ck, sizeof ck, "%s/model.safetensors", dir);
    int n = 1, kills = 0;
    for (; n < 12; n++) {
        char *o, num[16];
        snprintf(num, sizeof num, "%d", n);
        setenv("CAMOXPERT_CRASH_AT", num, 1);
        int rc = test_run_bin(&o, "predict --weights %s --input %s --out %s/k%d --batch-size 2 --workers 2 --threads 1",
                              ck, imgs, dir, n);
        unsetenv("CAMOXPERT_CRASH_AT");
        if (rc == 0) break;   // past the last crash point
        CHECKF(rc != 1 && rc != 2, "crash point %d: exit %d (expected a kill): %s", n, rc, o);
        kills++;
        int present = 0;
        for (int i = 0; i < 4; i++) {
            char p[1200];
            snprintf(p, sizeof p, "%s/k%d/%s.png", dir, n, names[i]);
            if (!io_path_exists(p)) continue;
            present++;
            Image8 m = { 0 };
            CHECKF(image_load(p, 1, &m) == CX_OK, "crash point %d: %s is not a whole PNG: %s", n, p, cx_errmsg());
            image_free(&m);
        }
        CHECKF(present == 0 || present == 2 || present == 4, "crash point %d: %d masks (batches of 2 commit together)",
               n, present);
        rc = test_run_bin(&o, "predict --weights %s --input %s --out %s/k%d --batch-size 2 --threads 1", ck, imgs, dir, n);
        CHECKF(rc == 0 && strstr(o, "wrote 4 masks"), "after a kill at crash point %d: exit %d: %s", n, rc, o);
        char kd[900];   // and the rerun removed the killed run's temporary files
        snprintf(kd, sizeof kd, "%s/k%d", dir, n);
        CHECKF(io_atomic_cleanup_dir(kd) == 0, "crash point %d: the rerun left temporary files in %s", n, kd);
    }
    // The folder's record of the weights (.camoxpert-predict.json, written first: 2 moments),
    // then each batch's commit.
    CHECKF(kills == 6 && n == 7, "%d kills before a whole run at crash point %d (the record's 2 moments, then 2 batches "
           "x 2 moments expected)", kills, n);
}

TEST_SLOW(cli_bench_writes_the_documented_json) {
    char js[800];
    snprintf(js, sizeof js, "%s/bench.json", test_tmpdir());
    char *o;
    int rc = test_run_bin(&o, "bench --backbone edgenext_xx_small --img-size 64 --batch-size 2 --steps 1 --mode both "
                         "--num-experts 4 --top-k 1 --threads 1 --json %s", js);
    REQUIRE(rc == 0);
    unsigned char *buf = NULL;
    size_t n;
    REQUIRE_OK(io_read_file(js, &buf, &n));
    cJSON *a = cJSON_Parse((char *)buf);
    free(buf);
    REQUIRE(a && cJSON_GetArraySize(a) == 2);
    static const char *const keys[] = { "mode", "backbone", "num_experts", "top_k", "batch", "img_size",
        "train_ms_per_step", "images_per_s", "infer_ms_batch1", "peak_mem_mb", "gflop_per_image", NULL };
    for (int i = 0; i < 2; i++)
        for (int k = 0; keys[k]; k++) CHECKF(cJSON_GetObjectItem(cJSON_GetArrayItem(a, i), keys[k]), "missing %s", keys[k]);
    double gd = cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "gflop_per_image")->valuedouble;
    double gs = cJSON_GetObjectItem(cJSON_GetArrayItem(a, 1), "gflop_per_image")->valuedouble;
    // Dense runs 4 experts per scale, sparse k = 1 of 4: fewer FLOPs, but the same backbone and head.
    CHECKF(gd > 0 && gs > 0 && gs < gd, "GFLOP/image dense %g, sparse %g", gd, gs);
    cJSON_Delete(a);
    // --profile: the step's time by kernel class; convolutions and GEMMs carry FLOPs.
    rc = test_run_bin(&o, "bench --backbone edgenext_xx_small --img-size 64 --batch-size 2 --steps 1 --mode dense "
                      "--threads 1 --profile --json %s", js);
    REQUIRE(rc == 0);
    REQUIRE_OK(io_read_file(js, &buf, &n));
    a = cJSON_Parse((char *)buf);
    free(buf);
    cJSON *prof = cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "profile");
    REQUIRE(prof);
    double share = 0, conv_tflops = -1;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(prof, "classes")) {
        share += cJSON_GetObjectItem(c, "share")->valuedouble;
        if (!strcmp(cJSON_GetObjectItem(c, "class")->valuestring, "convolution"))
            conv_tflops = cJSON_GetObjectItem(c, "tflop_per_s")->valuedouble;
    }
    CHECKF(fabs(share - 1) < 1e-9, "class shares sum to %g", share);
    CHECKF(conv_tflops > 0, "convolution TFLOP/s %g", conv_tflops);
    CHECKF(cJSON_GetObjectItem(prof, "ops_ms_per_step")->valuedouble > 0, "no op time");
    int dw = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(prof, "ops")) dw += !strncmp(cJSON_GetObjectItem(c, "variant")->valuestring, "depthwise", 9);
    CHECKF(dw >= 2, "depthwise forward and backward entries: %d", dw);   // EdgeNeXt's 7x7 depthwise convolutions
    CHECKF(strstr(o, "depthwise conv"), "%s", o);
    // and the batch-1 forward's: forward ops only
    const cJSON *pi = cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "profile_infer_batch1");
    REQUIRE(pi);
    int fwd = 0, bwd = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(pi, "ops")) {
        const char *op = cJSON_GetObjectItem(c, "op")->valuestring;
        fwd += strstr(op, "_forward") != NULL, bwd += strstr(op, "_backward") != NULL;
    }
    CHECKF(fwd >= 5 && bwd == 0, "batch-1 forward profile: %d forward ops, %d backward ops", fwd, bwd);
    CHECKF(strstr(o, "per batch-1 forward"), "%s", o);
    cJSON_Delete(a);
    // --profile-shapes: a convolution entry per shape, "3x3 64x64 3->24 dx" (input size, channels in->out)
    rc = test_run_bin(&o, "bench --backbone edgenext_xx_small --img-size 64 --batch-size 2 --steps 1 --mode dense "
                      "--threads 1 --profile-shapes --json %s --overwrite", js);
    REQUIRE(rc == 0);
    REQUIRE_OK(io_read_file(js, &buf, &n));
    a = cJSON_Parse((char *)buf);
    free(buf);
    REQUIRE(a);
    int shaped = 0, plain = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "profile"), "ops")) {
        const char *op = cJSON_GetObjectItem(c, "op")->valuestring, *v = cJSON_GetObjectItem(c, "variant")->valuestring;
        if (strncmp(op, "conv2d", 6)) continue;
        int h, w, ci, co;
        const char *sp = strchr(v, ' ');
        while (sp && sscanf(sp, " %dx%d %d->%d", &h, &w, &ci, &co) != 4) sp = strchr(sp + 1, ' ');
        if (sp) shaped++;
        else plain++;
    }
    CHECKF(shaped >= 10 && plain == 0, "--profile-shapes: %d convolution entries with a shape, %d without", shaped, plain);
    cJSON_Delete(a);
    CHECK(test_run_bin(&o, "bench --mode sparse --num-experts 2 --top-k 3") == 2);
    CHECKF(strstr(o, "--top-k 3"), "%s", o);
}

// --routing spatial end to end: one epoch on the tiny set logs the routing table over
// tiles (object and background apart), the checkpoint carries the routing, and predict
// --routing writes per-tile JSON and one PNG map per scale at the photo's size.
TEST(cli_train_and_predict_spatial_routing) {
    REQUIRE(tiny_set()[0]);
    char ck[700], out[800];
    snprintf(ck, sizeof ck, "%s/spatial", test_tmpdir());
    char *o;
    int rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s --backbone edgenext_xx_small --img-size 64 "
                          "--batch-size 4 --epochs 1 --stage1-epochs 0 --use-sparse-moe --num-experts 3 --top-k 2 "
                          "--routing spatial --route-grid 4 --threads 1 --progress 0 --val-fraction 0.25", tiny_set(), ck);
    CHECKF(rc == 0, "rc %d: %s", rc, o);
    CHECKF(strstr(o, "share of tiles per expert") && strstr(o, "s0 object tiles"), "%s", o);
    rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/x --backbone edgenext_xx_small --route-grid 3", tiny_set(), ck);
    CHECKF(rc == 2 && strstr(o, "--route-grid"), "rc %d: %s", rc, o);
    char p[2400];
    snprintf(p, sizeof p, "%s/train_log.jsonl", ck);
    unsigned char *buf = NULL;
    size_t n;
    REQUIRE_OK(io_read_file(p, &buf, &n));
    CHECKF(strstr((char *)buf, "\"unit\":\"tile\"") && strstr((char *)buf, "\"object_share\""), "%.400s", (char *)buf);
    free(buf);
    snprintf(out, sizeof out, "%s/pred", ck);
    rc = test_run_bin(&o, "predict --weights %s/best.safetensors --input %s/Test/Image --out %s --routing --threads 1", ck,
                      tiny_set(), out);
    CHECKF(rc == 0, "rc %d: %s", rc, o);
    char name[600] = "", photo_path[3100];
    snprintf(p, sizeof p, "%s/Test/Image", tiny_set());
    DIR *dir = opendir(p);
    REQUIRE(dir);
    for (struct dirent *de; (de = readdir(dir));)
        if (de->d_name[0] != '.') snprintf(name, sizeof name, "%s", de->d_name);
    closedir(dir);
    snprintf(photo_path, sizeof photo_path, "%s/%s", p, name);
    char *dot = strrchr(name, '.');
    REQUIRE(dot);
    *dot = 0;
    snprintf(p, sizeof p, "%s/%s_routing.json", out, name);
    REQUIRE_OK(io_read_file(p, &buf, &n));
    cJSON *j = cJSON_Parse((char *)buf);
    free(buf);
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "routing")->valuestring, "spatial"));
    const cJSON *s0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "scales"), 0);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(s0, "tiles")) == 16);   // a 16×16 map on a 4-grid
    cJSON_Delete(j);
    for (int s = 0; s < 4; s++) {
        Image8 m = { 0 }, photo = { 0 };
        snprintf(p, sizeof p, "%s/%s_routing_s%d.png", out, name, s);
        REQUIRE_OK(image_load(p, 3, &m));
        REQUIRE_OK(image_load(photo_path, 3, &photo));
        CHECK(m.w == photo.w && m.h == photo.h);
        image_free(&m), image_free(&photo);
    }
}

// The validation split comes from the training data (--val-fraction): a --dataset-path that
// is a test set's folder would choose the best epoch on test images. Refused, naming the
// set and --val-from-test; accepted with it, with a warning, the run record naming the set
// and the report showing it. The training split of the same data, and --val-fraction 0,
// are not refused.
TEST(cli_train_refuses_validation_drawn_from_a_test_set_unless_val_from_test) {
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());   // (its buffer is the next call's)
    char *o;
    int rc = test_run_bin(&o, "synth --out %s/syn --train 8 --test 8 --size 48 --seed 2 --threads 1", t);
    REQUIRE(rc == 0);
    const char *fast = "--backbone edgenext_xx_small --img-size 32 --batch-size 4 --epochs 1 --stage1-epochs 1 "
                       "--max-steps 1 --threads 1 --num-workers 1 --progress 0";
    // COD10K-v3's Test/ folder as the training data
    rc = test_run_bin(&o, "train --dataset-path %s/syn/Test --checkpoint-dir %s/r1 %s --val-fraction 0.25", t, t, fast);
    CHECKF(rc == 2 && strstr(o, "validation split (--val-fraction 0.25) would be drawn from a test split") &&
           strstr(o, "syn/Test") && strstr(o, "--val-from-test") && strstr(o, "model selection would see the test set"),
           "exit %d: %s", rc, o);
    char p[900];
    snprintf(p, sizeof p, "%s/r1", t);
    CHECKF(!io_path_exists(p), "the refused run created %s", p);
    // a packaged test set (TestDataset/CAMO/{Image,GT_Object}) names the set
    snprintf(p, sizeof p, "%s/data/TestDataset", t);
    REQUIRE_OK(io_make_dirs(p));
    char from[900], to[900];
    snprintf(from, sizeof from, "%s/syn/Test", t);
    snprintf(to, sizeof to, "%s/data/TestDataset/CAMO", t);
    REQUIRE(rename(from, to) == 0);
    rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/r1 %s --val-fraction 0.25", to, t, fast);
    CHECKF(rc == 2 && strstr(o, "drawn from the test set CAMO-test (") && strstr(o, "--val-from-test"), "exit %d: %s", rc, o);
    // --val-from-test: trained, with a warning; the run record and the report say so
    rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/r2 %s --val-fraction 0.25 --val-from-test", to, t,
                      fast);
    CHECKF(rc == 0 && strstr(o, "warning: --val-from-test: the validation split is drawn from the test set CAMO-test"),
           "exit %d: %s", rc, o);
    snprintf(p, sizeof p, "%s/r2/train_log.jsonl", t);
    unsigned char *b;
    size_t n;
    REQUIRE_OK(io_read_file(p, &b, &n));
    CHECKF(strstr((char *)b, "\"val_from_test\":\"the test set CAMO-test (") && strstr((char *)b, "\"val-from-test\":\"1\""),
           "%s", (char *)b);
    free(b);
    char page[900];
    snprintf(page, sizeof page, "%s/r2.html", t);
    rc = test_run_bin(&o, "report %s/r2 --out %s --max-images 0 --threads 1", t, page);
    CHECKF(rc == 0, "report: exit %d: %s", rc, o);
    REQUIRE_OK(io_read_file(page, &b, &n));
    CHECK(strstr((char *)b, "\"val_from_test\":\"the test set CAMO-test ("));
    free(b);
    const char *browser = browser_find();
    if (browser) {
        char *dom, *console;
        REQUIRE(browser_load(browser, page, NULL, &dom, &console) == 0);
        CHECKF(!console[0], "console messages:\n%s", console);
        CHECKF(strstr(dom, "class=\"error val-from-test\"") &&
               strstr(dom, "validation split drawn from the test set CAMO-test") &&
               strstr(dom, "validation from the test set CAMO-test"), "the page does not show the test-set validation");
        free(dom), free(console);
    }
    // not refused: no validation (--val-fraction 0: a warning that it trains on test images), and
    // the training split with --val-from-test (a note)
    rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/r3 %s --val-fraction 0", to, t, fast);
    CHECKF(rc == 0 && strstr(o, "warning: --dataset-path holds the test set CAMO-test (") &&
           strstr(o, "trains on test images") && !strstr(o, "--val-from-test"), "exit %d: %s", rc, o);
    rc = test_run_bin(&o, "train --dataset-path %s/syn --checkpoint-dir %s/r4 %s --val-fraction 0.25 --val-from-test", t,
                      t, fast);
    CHECKF(rc == 0 && strstr(o, "note: --val-from-test: the validation split is not drawn from a test set"), "exit %d: %s",
           rc, o);
    snprintf(p, sizeof p, "%s/r4/train_log.jsonl", t);
    REQUIRE_OK(io_read_file(p, &b, &n));
    CHECK(!strstr((char *)b, "\"val_from_test\":\"the"));
    free(b);
}
