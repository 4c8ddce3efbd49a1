// test_compat.c — checkpoints written by an earlier version still open and resume.
// tests/fixtures/compat_edc5414/ holds the headers of what the program at edc5414
// wrote (README there): a dense run stopped mid-epoch, a sparse run with EMA and its
// best checkpoint (balance written "sqdev"), and a camoxpert_save file in the flat
// metadata dialect. Each file is written back with deterministic data, then opened
// (model config, input size, a forward), predicted from, and resumed to the end.
#include "test.h"
#include "infer/predictor.h"
#include <cjson/cJSON.h>
#include <string.h>

#define COMPAT "tests/fixtures/compat_edc5414"

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

// DST: the header in HEAD (8-byte length, JSON) followed by data at its offsets:
// running variances 1, optimizer moments, counters and extras 0, every other
// float a small value drawn from its name and index.
static cx_status rebuild(const char *head, const char *dst) {
    unsigned char *h;
    size_t n;
    CX_TRY(io_read_file(head, &h, &n));
    uint64_t hn = 0;
    memcpy(&hn, h, 8);
    cJSON *j = n >= 8 + hn ? cJSON_ParseWithLength((const char *)h + 8, hn) : NULL;
    if (!j) { free(h); return CX_FAIL(CX_EFORMAT, "%s: not a safetensors header", head); }
    size_t end = 0;
    for (cJSON *e = j->child; e; e = e->next) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (cJSON_IsArray(off) && (size_t)cJSON_GetArrayItem(off, 1)->valuedouble > end)
            end = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    }
    unsigned char *data = cx_calloc(end + 1, 1);
    for (cJSON *e = j->child; e; e = e->next) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        if (!cJSON_IsArray(off) || !cJSON_IsString(dt) || strcmp(dt->valuestring, "F32")) continue;
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        const char *name = e->string;
        if (!strncmp(name, "adamw.", 6)) continue;   // moments 0
        uint64_t seed = 1469598103934665603ull;
        for (const char *c = name; *c; c++) seed = (seed ^ (unsigned char)*c) * 1099511628211ull;
        float *v = (float *)(data + a);
        for (size_t i = 0; i < (b - a) / 4; i++)
            v[i] = ends_with(name, "running_var") ? 1.0f : 0.02f * (float)((double)(mix64(seed + i) >> 11) * 0x1p-52 - 1.0);
    }
    cJSON_Delete(j);
    FILE *fp = fopen(dst, "wb");
    cx_status st = fp && fwrite(h, 1, 8 + hn, fp) == 8 + hn && fwrite(data, 1, end, fp) == end ? CX_OK
                   : CX_FAIL(CX_EIO, "%s: cannot write", dst);
    if (fp && fclose(fp)) st = CX_FAIL(CX_EIO, "%s: cannot write", dst);
    free(data);
    free(h);
    return st;
}

// Writes every file of the fixture folder SUB (dense, sparse) back into DIR.
static void rebuild_dir(const char *sub, const char *dir) {
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp %s/%s/train_log.jsonl '%s/'", dir, COMPAT, sub, dir);
    REQUIRE(system(cmd) == 0);
    static const char *const files[] = { "dense/last.safetensors", "dense/last.state.ae919f92d0f7057d.safetensors",
                                         "sparse/last.safetensors", "sparse/last.state.832e7ae343fc58ce.safetensors",
                                         "sparse/best.safetensors" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (strncmp(files[i], sub, strlen(sub)) || files[i][strlen(sub)] != '/') continue;
        char head[600], out[1200];
        snprintf(head, sizeof head, "%s/%s.head", COMPAT, files[i]);
        snprintf(out, sizeof out, "%s/%s", dir, files[i] + strlen(sub) + 1);
        REQUIRE_OK(rebuild(head, out));
    }
}

// The data set the fixtures were trained on (same seed, same files).
static const char *compat_data(void) {
    static char ds[700];
    snprintf(ds, sizeof ds, "%s/compat_data", test_tmpdir());
    if (!io_path_is_dir(ds) && test_run_bin(NULL, "synth --out %s --train 8 --test 2 --size 64 --seed 1 --threads 1", ds))
        return NULL;
    return ds;
}

// Opens PATH for inference and checks the model it describes; a photo gets a mask.
static void opens_as(const char *path, int sparse, int E, int k, int S) {
    Predictor p;
    REQUIRE_OK(predictor_open(&p, path, 0));
    const CamoXpertConfig *c = &p.model.cfg;
    CHECKF(!strcmp(c->backbone, "edgenext_xx_small") && c->sparse == sparse && p.model.img_size == S,
           "%s: %s sparse %d, size %d", path, c->backbone, c->sparse, p.model.img_size);
    if (sparse)
        CHECKF(c->num_experts == E && c->top_k == k && c->balance == MOE_BALANCE_MSE && c->routing == MOE_ROUTING_GLOBAL,
               "%s: E %d k %d balance %d", path, c->num_experts, c->top_k, c->balance);
    Image8 im = { 0 }, mask = { 0 };
    image_alloc(&im, 50, 37, 3);
    for (int i = 0; i < 50 * 37 * 3; i++) im.px[i] = (uint8_t)(i * 7);
    CamoXpertOutputs o;
    predictor_run(&p, &im, &mask, &o);
    CHECK(mask.w == 50 && mask.h == 37 && mask.c == 1);
    CHECK(o.n_route == (sparse ? 4 : 0));
    image_free(&im);
    image_free(&mask);
    predictor_close(&p);
}

TEST_SLOW(compat_edc5414_checkpoints_open_and_predict) {
    char t[600], d[700], path[800];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    snprintf(d, sizeof d, "%s/open_dense", t);
    rebuild_dir("dense", d);
    snprintf(path, sizeof path, "%s/last.safetensors", d);
    opens_as(path, 0, 0, 0, 64);
    snprintf(d, sizeof d, "%s/open_sparse", t);
    rebuild_dir("sparse", d);
    snprintf(path, sizeof path, "%s/last.safetensors", d);
    opens_as(path, 1, 2, 1, 64);
    snprintf(path, sizeof path, "%s/best.safetensors", d);
    opens_as(path, 1, 2, 1, 64);
    snprintf(path, sizeof path, "%s/flat.safetensors", t);
    REQUIRE_OK(rebuild(COMPAT "/flat.safetensors.head", path));
    opens_as(path, 1, 2, 1, 352);   // no input size in that dialect: predict's default
    const char *ds = compat_data();
    REQUIRE(ds);
    char *o;
    int rc = test_run_bin(&o, "predict --weights %s/open_sparse/best.safetensors --input %s/Test/Image --out %s/pred "
                          "--routing --threads 1", t, ds, t);
    CHECKF(rc == 0 && strstr(o, "wrote 2 masks"), "rc %d: %s", rc, o);
}

// Each run resumes from the fixture's training state and trains to its end; the
// checkpoint it writes opens again.
TEST_SLOW(compat_edc5414_resume_continues) {
    const char *ds = compat_data();
    REQUIRE(ds);
    char t[600];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    static const struct { const char *sub, *opts, *resumed; } runs[] = {
        { "dense", "", "stage 1, 0 epochs and 2 batches done, step 2," },
        { "sparse", "--use-sparse-moe --num-experts 2 --top-k 1 --use-ema --balance mse",
          "stage 1, 1 epoch and 0 batches done, step 3," },
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        char d[700], path[800];
        snprintf(d, sizeof d, "%s/resume_%s", t, runs[i].sub);
        rebuild_dir(runs[i].sub, d);
        char *o;
        int rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s --resume-from %s/last.safetensors "
                              "--backbone edgenext_xx_small --img-size 64 --batch-size 2 --epochs 2 --stage1-epochs 1 "
                              "--val-fraction 0.25 --threads 1 --device cpu --num-workers 1 --seed 3 --progress 0 %s",
                              ds, d, d, runs[i].opts);
        CHECKF(rc == 0 && strstr(o, runs[i].resumed) && strstr(o, "done: 2 epochs, 6 steps"), "%s: rc %d: %s",
               runs[i].sub, rc, o);
        snprintf(path, sizeof path, "%s/last.safetensors", d);
        opens_as(path, i == 1, 2, 1, 64);
    }
}
