// test_report.c — what `camoxpert report` makes of a train_log.jsonl (report/runlog.h):
// a cut-off last line, a line that is not JSON, a resume with and without a "run"
// record, nulls, a run stopped by a non-finite loss, decimation that never mixes
// stages, the best epoch, routing and per-category heat maps; the page's JSON cannot
// end its <script> element; base64; and the command's errors.
#include "test.h"
#include "report/report.h"
#include "report/runlog.h"
#include "report/samples.h"
#include "train/trainer.h"
#include <cjson/cJSON.h>
#include <string.h>

// A step record; loss = 1/step so means are easy to check.
static void add_step(char **log, size_t *n, size_t *cap, int step, int stage, int epoch) {
    char line[512];
    int len = snprintf(line, sizeof line,
                       "{\"type\":\"step\",\"step\":%d,\"stage\":%d,\"epoch\":%d,\"batch\":1,\"lr\":0.001,\"loss\":%.17g,"
                       "\"bce\":0.5,\"iou\":0.4,\"edge\":1,\"boundary\":0.3,\"uncertainty\":0.1,\"reverse_attention\":0.6,"
                       "\"search\":0.7,\"deep\":0.6,\"refinement\":0.2,\"balance\":null,\"grad_norm\":2,\"images_per_s\":10}\n",
                       step, stage, epoch, 1.0 / step);
    if (*n + (size_t)len + 1 > *cap) *log = cx_realloc(*log, *cap = 2 * (*cap + (size_t)len + 1));
    memcpy(*log + *n, line, (size_t)len + 1);
    *n += (size_t)len;
}

static void add_text(char **log, size_t *n, size_t *cap, const char *s) {
    size_t len = strlen(s);
    if (*n + len + 1 > *cap) *log = cx_realloc(*log, *cap = 2 * (*cap + len + 1));
    memcpy(*log + *n, s, len + 1);
    *n += len;
}

static const char *EPOCH1 =
    "{\"type\":\"epoch\",\"epoch\":1,\"stage\":1,\"step\":4,\"loss\":0.5,\"seconds\":3,\"val\":{\"images\":8,"
    "\"Smeasure\":0.4,\"wFmeasure\":0.2,\"MAE\":0.3,\"adpEm\":0.5,\"meanEm\":0.4,\"maxEm\":0.6,\"adpFm\":0.1,"
    "\"meanFm\":0.2,\"maxFm\":0.3,\"IoU\":0.1,\"best\":true},\"routing\":{\"scales\":["
    "{\"share\":[1,0.5,0.5],\"mean_weight\":[0.5,0.4,0.6],\"mean_prob\":[0.4,0.3,0.3],\"balance_loss\":0.001},"
    "{\"share\":[0.5,1,0.5],\"mean_weight\":[0.5,0.5,0.5],\"mean_prob\":[0.3,0.4,0.3],\"balance_loss\":0.002}],"
    "\"categories\":{\"sand\":{\"images\":5,\"share\":[[1,1,0],[0,1,1]]}}}}\n";
static const char *EPOCH2 =
    "{\"type\":\"epoch\",\"epoch\":2,\"stage\":2,\"step\":8,\"loss\":0.25,\"seconds\":4,\"val\":{\"images\":8,"
    "\"Smeasure\":0.35,\"wFmeasure\":null,\"MAE\":0.3,\"adpEm\":0.5,\"meanEm\":0.4,\"maxEm\":0.6,\"adpFm\":0.1,"
    "\"meanFm\":0.2,\"maxFm\":0.3,\"IoU\":0.1,\"best\":false},\"routing\":{\"scales\":["
    "{\"share\":[0.5,0.5,1],\"mean_weight\":[0.5,0.4,0.6],\"mean_prob\":[0.4,0.3,0.3],\"balance_loss\":0.003},"
    "{\"share\":[0.5,1,0.5],\"mean_weight\":[0.5,0.5,0.5],\"mean_prob\":[0.3,0.4,0.3],\"balance_loss\":0.004}],"
    "\"categories\":{\"water\":{\"images\":3,\"share\":[[0,1,1],[1,0,1]]},\"sand\":{\"images\":5,\"share\":[[1,0,1],[1,1,0]]}}}}\n";

static int has_note(const RunLog *L, const char *a, const char *b) {
    for (int i = 0; i < L->n_notes; i++)
        if (strstr(L->notes[i], a) && (!b || strstr(L->notes[i], b))) return 1;
    return 0;
}

static double arr_at(const cJSON *o, const char *key, int i) {
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, key), i);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

TEST(report_runlog_reads_steps_epochs_and_skips_a_cut_off_line) {
    char *log = NULL;
    size_t n = 0, cap = 0;
    add_text(&log, &n, &cap, "{\"type\":\"run\",\"time\":\"2026-01-01T00:00:00Z\",\"unix\":100,\"command\":\"camoxpert train x\","
                             "\"device\":\"cpu\",\"precision\":\"fp32\",\"parameters\":1234,\"start_step\":0,\"start_epoch\":0,"
                             "\"epochs\":4,\"stage1_epochs\":1}\n");
    for (int s = 1; s <= 4; s++) add_step(&log, &n, &cap, s, 1, 1);
    add_text(&log, &n, &cap, EPOCH1);
    add_text(&log, &n, &cap, "this is not json\n");
    for (int s = 5; s <= 8; s++) add_step(&log, &n, &cap, s, 2, 2);
    add_text(&log, &n, &cap, EPOCH2);
    add_text(&log, &n, &cap, "{\"type\":\"step\",\"step\":9,\"sta");   // being written
    RunLog L;
    REQUIRE_OK(runlog_parse(log, n, "t.jsonl", &L));
    free(log);
    CHECK(L.n_steps == 8 && L.n_epochs == 2 && L.n_seg == 1 && !L.seg[0].inferred);
    CHECK(L.skipped == 2);
    CHECKF(has_note(&L, "line 13", "without a newline"), "%s", L.n_notes ? L.notes[0] : "");
    CHECK(has_note(&L, "line 7", "not a log record"));
    CHECK(isnan(L.steps[0].term[9]));   // "balance": null
    CHECK_NEAR(L.steps[3].loss, 0.25, 1e-12);
    CHECK(L.epochs[1].has_val && isnan(L.epochs[1].val[1]));   // wFmeasure null
    const RunEpoch *b = runlog_best_epoch(&L);
    REQUIRE(b && b->epoch == 1);
    CHECK(L.epochs[0].has_routing && L.epochs[0].E == 3 && L.epochs[0].n_scales == 2 && L.epochs[0].n_cat == 1);
    CHECK_NEAR(L.epochs[1].cat_share[(1 * 2 + 0) * 3 + 0], 1.0, 0);   // sand, scale 0, expert 0 (second category)

    cJSON *p = runlog_page_json(&L, 2000);
    const cJSON *f = cJSON_GetObjectItem(p, "facts");
    CHECK(!strcmp(cJSON_GetObjectItem(f, "command")->valuestring, "camoxpert train x"));
    CHECK(!strcmp(cJSON_GetObjectItem(f, "device")->valuestring, "cpu"));
    CHECK(!strcmp(cJSON_GetObjectItem(f, "status")->valuestring, "no-end"));
    CHECK(arr_at(cJSON_GetObjectItem(p, "steps"), "step", 7) == 8);
    CHECK(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "epochs"), "val"),
                                                              "wFmeasure"), 1)));
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "best"), "epoch")->valueint == 1);
    const cJSON *s2 = cJSON_GetObjectItem(p, "stage2");
    CHECK(cJSON_GetObjectItem(s2, "step")->valueint == 4 && cJSON_GetObjectItem(s2, "epoch")->valueint == 1);
    // Routing: series per scale and expert; categories are the union over epochs (water appears in epoch 2).
    const cJSON *r = cJSON_GetObjectItem(p, "routing");
    REQUIRE(r && cJSON_GetObjectItem(r, "E")->valueint == 3 && cJSON_GetObjectItem(r, "scales")->valueint == 2);
    CHECK(cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "share"), 0), 2), 1)->valuedouble == 1);
    const cJSON *cats = cJSON_GetObjectItem(r, "categories");
    REQUIRE(cJSON_GetArraySize(cats) == 2);
    const cJSON *water = cJSON_GetArrayItem(cats, 1);
    CHECK(!strcmp(cJSON_GetObjectItem(water, "name")->valuestring, "water"));
    CHECK(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(water, "share"), 0)));   // not in epoch 1
    CHECK(arr_at(water, "images", 1) == 3);
    cJSON_Delete(p);
    runlog_free(&L);
}

TEST(report_runlog_resume_replaces_the_redone_steps) {
    char *log = NULL;
    size_t n = 0, cap = 0;
    add_text(&log, &n, &cap, "{\"type\":\"run\",\"unix\":100,\"start_step\":0,\"start_epoch\":0}\n");
    for (int s = 1; s <= 6; s++) add_step(&log, &n, &cap, s, 1, 1);   // killed at step 6, checkpoint at step 4
    add_text(&log, &n, &cap, "{\"type\":\"run\",\"unix\":200,\"resumed_from\":\"r/last.safetensors\",\"start_step\":4,\"start_epoch\":0}\n");
    for (int s = 5; s <= 8; s++) add_step(&log, &n, &cap, s, 1, 1);
    add_text(&log, &n, &cap, "{\"type\":\"end\",\"unix\":260,\"status\":\"done\",\"step\":8}\n");
    RunLog L;
    REQUIRE_OK(runlog_parse(log, n, "t.jsonl", &L));
    free(log);
    CHECK(L.n_seg == 2 && L.n_steps == 8 && L.replaced_steps == 2);
    for (int i = 0; i < L.n_steps; i++) CHECKF(L.steps[i].step == i + 1, "step[%d] = %lld", i, (long long)L.steps[i].step);
    CHECK(L.steps[3].segment == 0 && L.steps[4].segment == 1);
    CHECK(has_note(&L, "restarts from step 4", "steps 5-6"));
    CHECK(!L.seg[0].end && L.seg[1].end);
    cJSON *p = runlog_page_json(&L, 2000);
    const cJSON *f = cJSON_GetObjectItem(p, "facts");
    CHECK(!strcmp(cJSON_GetObjectItem(f, "status")->valuestring, "done"));
    CHECK_NEAR(cJSON_GetObjectItem(f, "wall_seconds")->valuedouble, 60, 1e-9);   // the killed attempt's time is unknown
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "segments"), 1), "start_step")->valueint == 4);
    cJSON_Delete(p);
    runlog_free(&L);

    // A log from before run records: the step counter going back is the resume.
    log = NULL, n = cap = 0;
    for (int s = 1; s <= 5; s++) add_step(&log, &n, &cap, s, 1, 1);
    for (int s = 3; s <= 6; s++) add_step(&log, &n, &cap, s, 1, 1);
    REQUIRE_OK(runlog_parse(log, n, "old.jsonl", &L));
    free(log);
    CHECK(L.n_seg == 2 && L.seg[1].inferred && L.seg[1].start_step == 2 && L.n_steps == 6);
    CHECK(has_note(&L, "goes back from 5 to 3", NULL) && has_note(&L, "no \"run\" record", NULL) == 1);
    runlog_free(&L);
}

TEST(report_runlog_non_finite_stop_and_empty_logs) {
    const char *txt =
        "{\"type\":\"run\",\"unix\":10,\"start_step\":0,\"start_epoch\":0}\n"
        "{\"type\":\"step\",\"step\":1,\"stage\":1,\"epoch\":1,\"loss\":5,\"lr\":1e30,\"grad_norm\":null}\n"
        "{\"type\":\"end\",\"unix\":12,\"status\":\"failed\",\"error\":\"step 2 (stage 1, epoch 1, batch 2): the loss is "
        "not finite\",\"non_finite\":true,\"step\":1}\n";
    RunLog L;
    REQUIRE_OK(runlog_parse(txt, strlen(txt), "nan.jsonl", &L));
    cJSON *p = runlog_page_json(&L, 2000);
    const cJSON *f = cJSON_GetObjectItem(p, "facts");
    CHECK(!strcmp(cJSON_GetObjectItem(f, "status")->valuestring, "failed"));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(f, "non_finite")));
    CHECK(strstr(cJSON_GetObjectItem(f, "error")->valuestring, "not finite"));
    CHECK(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "steps"), "grad_norm"), 0)));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(p, "best")) && cJSON_IsNull(cJSON_GetObjectItem(p, "routing")));
    cJSON_Delete(p);
    runlog_free(&L);
    REQUIRE_OK(runlog_parse("", 0, "empty.jsonl", &L));
    CHECK(L.n_steps == 0 && has_note(&L, "no step or epoch record", NULL));
    p = runlog_page_json(&L, 2000);   // still a page
    CHECK(p && cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "steps"), "step")) == 0);
    cJSON_Delete(p);
    runlog_free(&L);
    CHECK(runlog_load("/nonexistent/train_log.jsonl", &L) == CX_ENOTFOUND && strstr(cx_errmsg(), "--checkpoint-dir"));
}

TEST(report_runlog_decimates_steps_within_a_stage) {
    char *log = NULL;
    size_t n = 0, cap = 0;
    for (int s = 1; s <= 5000; s++) add_step(&log, &n, &cap, s, s <= 1234 ? 1 : 2, 1 + (s - 1) / 100);
    RunLog L;
    REQUIRE_OK(runlog_parse(log, n, "big.jsonl", &L));
    free(log);
    cJSON *p = runlog_page_json(&L, 100);
    const cJSON *st = cJSON_GetObjectItem(p, "steps");
    int every = cJSON_GetObjectItem(st, "every")->valueint, np = cJSON_GetArraySize(cJSON_GetObjectItem(st, "step"));
    CHECK(every == 50);
    CHECKF(np <= 102 && np >= 100, "%d points", np);
    CHECK(arr_at(st, "step", np - 1) == 5000);
    // Buckets end at the stage boundary (1234) and never mix stages; a bucket's loss is its mean of 1/step.
    int found = 0;
    double prev = 0;
    for (int i = 0; i < np; i++) {
        double x = arr_at(st, "step", i);
        if (x == 1234) {
            found = 1;
            double mean = 0;
            for (int s = (int)prev + 1; s <= 1234; s++) mean += 1.0 / s;
            mean /= 1234 - prev;
            CHECK_NEAR(arr_at(st, "loss", i), mean, mean * 1e-5);
            CHECK(arr_at(st, "stage", i) == 1 && arr_at(st, "stage", i + 1) == 2);
        }
        prev = x;
    }
    CHECK(found);
    cJSON_Delete(p);
    runlog_free(&L);
}

TEST(report_base64_data_urls) {
    static const char *const in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (int i = 0; i < 7; i++) {
        char *u = samples_data_url("text/plain", (const unsigned char *)in[i], strlen(in[i]));
        char want[64];
        snprintf(want, sizeof want, "data:text/plain;base64,%s", out[i]);
        CHECKF(!strcmp(u, want), "%s -> %s", in[i], u);
        free(u);
    }
}

// The page from a log whose command holds "</script>": the data cannot end its element.
TEST(report_page_keeps_the_data_inside_its_script) {
    const char *dir = test_tmpdir();
    char p[800];
    snprintf(p, sizeof p, "%s/train_log.jsonl", dir);
    FILE *fp = fopen(p, "w");
    REQUIRE(fp);
    fprintf(fp, "{\"type\":\"run\",\"command\":\"camoxpert train </script><script>alert(1)</script>\",\"start_step\":0}\n");
    fprintf(fp, "{\"type\":\"step\",\"step\":1,\"stage\":1,\"epoch\":1,\"loss\":1}\n");
    fclose(fp);
    ReportOptions ro = report_options_default();
    ro.max_images = 0;
    Report *r;
    REQUIRE_OK(report_open(&r, &dir, 1, &ro));
    REQUIRE_OK(report_write(r, NULL));
    snprintf(p, sizeof p, "%s", report_path(r));
    report_close(r);
    unsigned char *buf = NULL;
    size_t n;
    REQUIRE_OK(io_read_file(p, &buf, &n));
    int closes = 0;
    for (const char *s = (char *)buf; (s = strstr(s, "</script>")); s++) closes++;
    CHECKF(closes == 2, "%d </script> in the page", closes);   // the data's and the script's own
    CHECK(strstr((char *)buf, "\\u003c/script>"));
    CHECK(!strstr((char *)buf, "http-equiv=\"refresh\""));     // not live: no reload
    free(buf);
}

TEST(cli_report_errors_name_the_run_and_the_fix) {
    char *o;
    CHECK(test_run_bin(&o, "report") == 2);
    CHECKF(strstr(o, "run directory"), "%s", o);
    CHECK(test_run_bin(&o, "report /nonexistent/run") == 2);
    CHECKF(strstr(o, "/nonexistent/run") && strstr(o, "--checkpoint-dir"), "%s", o);
    CHECK(test_run_bin(&o, "report %s", test_tmpdir()) == 2);
    CHECKF(strstr(o, "train_log.jsonl"), "%s", o);
    CHECK(test_run_bin(&o, "report x --gt y") == 2);
    CHECKF(strstr(o, "--images"), "%s", o);
    CHECK(test_run_bin(&o, "report x --images /nonexistent/photos") == 2);
    CHECKF(strstr(o, "--images /nonexistent/photos"), "%s", o);
    CHECK(test_run_bin(&o, "report --help") == 0);
    CHECKF(strstr(o, "--max-images") && strstr(o, "--pred"), "%s", o);
}

// A run stopped by a non-finite loss still gets its page, saying so. (The command line
// refuses an --lr that diverges at once, so the run is the trainer's own with lr 1e30.)
TEST(report_after_a_non_finite_stop) {
    const char *dir = test_tmpdir();
    char data[700], run[700], *o;
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    REQUIRE(test_run_bin(&o, "synth --out %s --train 8 --test 1 --size 64 --seed 2 --threads 1", data) == 0);
    TrainConfig c;
    train_config_default(&c);
    c.dataset_path = data, c.checkpoint_dir = run, c.backbone = "edgenext_xx_small";
    c.img_size = 32, c.batch_size = 2, c.epochs = 3, c.stage1_epochs = 1, c.val_fraction = 0.25;
    c.lr = 1e30, c.grad_clip = 0, c.scheduler = LR_NONE, c.use_ema = 0;
    c.quiet = 1, c.progress = 0, c.device = "cpu";
    TrainResult r;
    cx_threads_set(1);
    cx_status st = trainer_run(&c, &r);
    cx_threads_set(0);
    CHECKF(st == CX_ENUMERIC && strstr(cx_errmsg(), "not finite"), "status %d: %s", st, cx_errmsg());
    int rc = test_run_bin(&o, "report %s --threads 1", run);
    CHECKF(rc == 0 && strstr(o, "report.html"), "rc %d: %s", rc, o);
    char p[800];
    snprintf(p, sizeof p, "%s/report.html", run);
    unsigned char *buf = NULL;
    size_t n;
    REQUIRE_OK(io_read_file(p, &buf, &n));
    CHECK(strstr((char *)buf, "\"status\":\"failed\"") && strstr((char *)buf, "\"non_finite\":true"));
    CHECK(!strstr((char *)buf, "http-equiv=\"refresh\""));   // ended: no more reloading
    free(buf);
}
