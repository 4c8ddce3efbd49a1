// test_eval_benchmarks.c — `camoxpert eval --data-root` on generated folders in the
// layouts and with the names and counts of the real test sets: CHAMELEON (76, packaged
// TestDataset/CHAMELEON), CAMO-test (250, the CAMO-V.1.0 release with its train masks in
// the same GT folder), COD10K-test (2,026 camouflaged + 1,974 NonCAM, COD10K-v3/Test),
// NC4K (4,121, TestDataset/NC4K). Masks are 16×16 so the whole set is written and scored
// in seconds. Two methods: A predicts every set (with predict's side files, a stray
// file and COD10K's NonCAM images), B misses one CAMO image and has no NC4K folder. The
// tests read the detection, the counts, the per-dataset and multi-method tables in every
// format, the JSON's curves, and the --plot page in headless Chromium. Then `predict
// --data-root` on the same four layouts made small (a few photos of `camoxpert synth`
// each), and `eval` finding every prediction it wrote.
#include "test.h"
#include "browser.h"
#include "hostile.h"
#include "data/image.h"
#include "data/testsets.h"
#include "eval/table.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <string.h>

enum { SIDE = 16 };

// A 16×16 mask or map: a disc around a centre that varies with i; inside `in`, outside
// `out`, plus a little texture (t) so predictions are not binary. dx shifts the disc.
static void write_map(const char *path, int i, uint8_t in, uint8_t out, int t, int dx) {
    Image8 im = { 0 };
    image_alloc(&im, SIDE, SIDE, 1);
    int cx = 8 + i % 5 - 2 + dx, cy = 8 + i % 3 - 1, r = 3 + i % 4;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            int v = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r ? in : out;
            v += t ? ((x * 7 + y * 13 + i) % (2 * t + 1)) - t : 0;
            im.px[y * SIDE + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    // encoded and written plainly: thousands of files, no fsync each (image_save_png's atomic write)
    uint8_t *buf = NULL;
    size_t n = 0;
    FILE *f = NULL;
    if (image_encode_png(&im, 1, &buf, &n) || !(f = fopen(path, "wb")) || fwrite(buf, 1, n, f) != n)
        test_fail(__FILE__, __LINE__, "writing %s: %s", path, cx_errmsg());
    if (f) fclose(f);
    free(buf);
    image_free(&im);
}

static void mkdirs(const char *fmt, const char *a, const char *b) {
    char p[1024];
    snprintf(p, sizeof p, fmt, a, b);
    if (io_make_dirs(p)) test_fail(__FILE__, __LINE__, "%s", cx_errmsg());
}

// One sample of a set: its base name and whether its mask is empty (COD10K NonCAM).
static void sample_name(int set, int i, char *name, size_t n, int *empty) {
    static const char *const cats[4][2] = { { "1-Aquatic", "3-Crab" }, { "2-Terrestrial", "9-Cat" },
                                            { "3-Flying", "53-Bird" }, { "4-Amphibian", "2-Frog" } };
    *empty = 0;
    switch (set) {
    case TESTSET_CHAMELEON: snprintf(name, n, "animal-%d", i + 1); break;
    case TESTSET_CAMO: snprintf(name, n, "camourflage_%05d", i + 1); break;
    case TESTSET_COD10K:
        if (i < 2026) snprintf(name, n, "COD10K-CAM-%s-%s-%d", cats[i % 4][0], cats[i % 4][1], i + 1);
        else { snprintf(name, n, "COD10K-NonCAM-5-Background-2-Grassland-%d", i + 1); *empty = 1; }
        break;
    default: snprintf(name, n, "%d", i + 1);
    }
}

static const int n_files[TESTSET_N] = { 76, 250, 4000, 4121 };

// The data root and the methods root R (R/A, R/B), written once per run.
static const char *bench_root(void) {
    static char root[600];
    if (root[0]) return root;
    snprintf(root, sizeof root, "%s", test_tmpdir());
    static const char *const gt_dirs[TESTSET_N] = { "data/TestDataset/CHAMELEON/GT", "data/CAMO-V.1.0-CVIU2019/GT",
                                                    "data/COD10K-v3/Test/GT_Object", "data/TestDataset/NC4K/GT" };
    char p[1024], name[128];
    for (int s = 0; s < TESTSET_N; s++) {
        mkdirs("%s/%s", root, gt_dirs[s]);
        mkdirs("%s/R/A/%s", root, testset_info[s].name);
        if (s != TESTSET_NC4K) mkdirs("%s/R/B/%s", root, testset_info[s].name);
        for (int i = 0; i < n_files[s]; i++) {
            int empty;
            sample_name(s, i, name, sizeof name, &empty);
            snprintf(p, sizeof p, "%s/%s/%s.png", root, gt_dirs[s], name);
            write_map(p, i, empty ? 0 : 255, 0, 0, 0);
            snprintf(p, sizeof p, "%s/R/A/%s/%s.png", root, testset_info[s].name, name);
            write_map(p, i, empty ? 20 : 220, 20, 12, 0);
            if (s == TESTSET_NC4K || (s == TESTSET_CAMO && i == 7) || empty) continue;
            snprintf(p, sizeof p, "%s/R/B/%s/%s.png", root, testset_info[s].name, name);
            write_map(p, i, 160, 60, 30, 2);
        }
    }
    // CAMO-V.1.0: the test images define the test set; the GT folder holds train masks too.
    mkdirs("%s/%s", root, "data/CAMO-V.1.0-CVIU2019/Images/Test");
    mkdirs("%s/%s", root, "data/CAMO-V.1.0-CVIU2019/Images/Train");
    for (int i = 0; i < 260; i++) {
        snprintf(p, sizeof p, "%s/data/CAMO-V.1.0-CVIU2019/%s/camourflage_%05d.png", root, i < 250 ? "Images/Test" :
                 "Images/Train", i + 1);
        write_map(p, i, 90, 40, 5, 0);
        if (i >= 250) {
            snprintf(p, sizeof p, "%s/data/CAMO-V.1.0-CVIU2019/GT/camourflage_%05d.png", root, i + 1);
            write_map(p, i, 255, 0, 0, 0);
        }
    }
    // camoxpert predict's side files, and a stray file, beside A's masks
    snprintf(p, sizeof p, "%s/R/A/CAMO/camourflage_00001_overlay.jpg", root);
    write_map(p, 1, 255, 0, 0, 0);
    snprintf(p, sizeof p, "%s/R/A/CAMO/camourflage_00001_routing_s0.png", root);
    write_map(p, 1, 255, 0, 0, 0);
    snprintf(p, sizeof p, "%s/R/A/CHAMELEON/stray.png", root);
    write_map(p, 1, 255, 0, 0, 0);
    return root;
}

TEST_SLOW(eval_data_root_finds_the_four_test_sets_with_their_counts) {
    const char *r = bench_root();
    char *o;
    int rc = test_run_bin(&o, "eval --pred-root %s/R/A --data-root %s/data --threads 2", r, r);
    CHECKF(rc == 0, "exit %d: %s", rc, o);
    // the detection and the counts
    CHECKF(strstr(o, "CHAMELEON       76 masks in") && strstr(o, "CAMO-test      250 masks in") &&
           strstr(o, "COD10K-test   2026 masks in") && strstr(o, "NC4K          4121 masks in"), "%s", o);
    CHECKF(strstr(o, "1974 NonCAM masks left out"), "%s", o);
    CHECKF(strstr(o, "1974 predictions of COD10K NonCAM images") && strstr(o, "2 side files of camoxpert predict"), "%s", o);
    CHECKF(strstr(o, "stray.png has no ground truth"), "%s", o);
    // one table per set, named as papers name them, every column with its variant
    CHECKF(strstr(o, "CAMO-test (250 images") && strstr(o, "COD10K-test (2026 images, camouflaged only") &&
           strstr(o, "NC4K (4121 images") && strstr(o, "CHAMELEON (76 images"), "%s", o);
    CHECKF(strstr(o, "Sα(α=.5)") && strstr(o, "meanEφ") && strstr(o, "maxEφ") && strstr(o, "adpEφ") &&
           strstr(o, "maxFβ(β²=.3)") && strstr(o, "PySODMetrics 1.6") && strstr(o, "camoxpert 0.1.0"), "%s", o);
    CHECKF(strstr(o, "A       4121") && strstr(o, "A       2026"), "%s", o);
    // --include-noncam scores all 4,000 COD10K images; the empty masks pull Fβw down
    char *o2;
    rc = test_run_bin(&o2, "eval --pred-root %s/R/A --data-root %s/data --include-noncam --format json --threads 2", r, r);
    CHECKF(rc == 0, "exit %d: %s", rc, o2);
    cJSON *j = cJSON_Parse(strchr(o2, '{'));
    REQUIRE(j);
    const cJSON *cod = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "datasets"), 2);
    CHECK(!strcmp(cJSON_GetObjectItem(cod, "name")->valuestring, "COD10K"));
    const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(cod, "methods"), 0);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "overall"), "n")->valuedouble == 4000);
    CHECKF(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "overall"), "wFmeasure")->valuedouble < 0.6, "%s", o2);
    cJSON_Delete(j);
    // a root with no test set names what it looked for
    rc = test_run_bin(&o, "eval --pred-root %s/R/A --data-root %s/R --threads 1", r, r);
    CHECKF(rc == 1 && strstr(o, "no test set found") && strstr(o, "GT_Object"), "exit %d: %s", rc, o);
}

// The CSV data rows of `out` (after the header line) whose first field is `set`.
static int csv_rows(const char *out, const char *set) {
    int n = 0;
    size_t l = strlen(set);
    for (const char *p = strstr(out, "dataset,method,"); p && (p = strchr(p, '\n')); p++)
        n += !strncmp(p + 1, set, l) && p[1 + l] == ',';
    return n;
}

TEST(eval_methods_side_by_side_in_every_format) {
    const char *r = bench_root();
    char *o;
    // Markdown: B misses a CAMO prediction (named; not scored) and has no NC4K folder
    int rc = test_run_bin(&o, "eval --pred A=%s/R/A --pred B=%s/R/B --data-root %s/data --format md --threads 2", r, r, r);
    CHECKF(rc == 1, "exit %d: %s", rc, o);
    CHECKF(strstr(o, "no prediction for") && strstr(o, "camourflage_00008.png"), "%s", o);
    CHECKF(strstr(o, "| B | not scored: 1 of 250 predictions missing |") && strstr(o, "| B | not scored: no folder "), "%s", o);
    CHECKF(strstr(o, "### CHAMELEON (76 images") && strstr(o, "| Method | Sα ↑ | Fβw ↑ | MAE ↓ | Eφ mean ↑ |"), "%s", o);
    // A is better everywhere on the two sets both scored: all 11 cells bold
    const char *row = strstr(strstr(o, "### COD10K-test"), "| A |");
    REQUIRE(row);
    int bold = 0;
    for (const char *p = row; *p && *p != '\n'; p++) bold += !strncmp(p, "**", 2);
    CHECKF(bold == 2 * EVAL_N_COLS, "%d bold marks in A's row: %.300s", bold, row);
    // --methods-root: one folder per method; CSV with formula-proof names
    rc = test_run_bin(&o, "eval --methods-root %s/R --pred @evil=%s/R/B --data-root %s/data --format csv --threads 2", r, r, r);
    CHECKF(rc == 1, "exit %d: %s", rc, o);
    CHECKF(strstr(o, eval_tables_csv_header()), "%s", o);
    CHECKF(csv_rows(o, "CAMO-test") == 3 && csv_rows(o, "NC4K") == 3 && csv_rows(o, "COD10K-test") == 3, "%s", o);
    CHECKF(strstr(o, "\nCOD10K-test,\"'@evil\",2026,"), "%s", o);
    CHECKF(strstr(o, "\nCOD10K-test,A,2026,") && strstr(o, "Smeasure wFmeasure MAE"), "%s", o);
    // LaTeX: a tabular per set, the best in bold, the definitions in a comment
    rc = test_run_bin(&o, "eval --methods-root %s/R --data-root %s/data --format latex --threads 2", r, r);
    CHECKF(rc == 1 && browser_count(o, "\\begin{tabular}") == 4 && strstr(o, "\\textbf{") &&
           strstr(o, "% camoxpert 0.1.0 eval"), "exit %d: %s", rc, o);
    // JSON on stdout: the same tables, with the best columns named
    rc = test_run_bin(&o, "eval --methods-root %s/R --data-root %s/data --format json --average dataset --threads 2", r, r);
    CHECK(rc == 1);
    cJSON *j = strchr(o, '{') ? cJSON_Parse(strchr(o, '{')) : NULL;
    CHECKF(j, "not JSON: %s", o);
    if (!j) return;
    CHECK(!strcmp(cJSON_GetObjectItem(j, "averaging")->valuestring, "dataset"));
    const cJSON *cham = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "datasets"), 0);
    const cJSON *ma = cJSON_GetArrayItem(cJSON_GetObjectItem(cham, "methods"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(ma, "method")->valuestring, "A") && cJSON_GetArraySize(cJSON_GetObjectItem(ma, "best")) == EVAL_N_COLS);
    const cJSON *nb = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "datasets"), 3), "methods"), 1);
    CHECK(strstr(cJSON_GetObjectItem(nb, "not_scored")->valuestring, "no folder"));
    cJSON_Delete(j);
}

TEST_SLOW(eval_json_curves_and_plot_page_in_headless_chromium) {
    const char *r = bench_root();
    char *o, json[700], page[700];
    snprintf(json, sizeof json, "%s/all.json", test_tmpdir());
    snprintf(page, sizeof page, "%s/curves.html", test_tmpdir());
    int rc = test_run_bin(&o, "eval --pred A=%s/R/A --pred B=%s/R/B --data-root %s/data --json %s --plot %s --threads 2",
                          r, r, r, json, page);
    CHECKF(rc == 1 && strstr(o, "plot: "), "exit %d: %s", rc, o);   // 1: B misses an image
    unsigned char *b;
    size_t n;
    REQUIRE_OK(io_read_file(json, &b, &n));
    cJSON *j = cJSON_ParseWithLength((const char *)b, n);
    free(b);
    REQUIRE(j);
    const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "datasets"), 0), "methods"), 0);
    const cJSON *cv = cJSON_GetObjectItem(a, "curves");
    static const char *const keys[4] = { "precision", "recall", "Fmeasure", "Emeasure" };
    for (int k = 0; k < 4; k++) CHECKF(cJSON_GetArraySize(cJSON_GetObjectItem(cv, keys[k])) == 256, "%s", keys[k]);
    // PySODMetrics' order: threshold 255 first, so recall grows along the array
    const cJSON *rec = cJSON_GetObjectItem(cv, "recall");
    CHECK(cJSON_GetArrayItem(rec, 0)->valuedouble <= cJSON_GetArrayItem(rec, 255)->valuedouble);
    CHECK(cJSON_GetArrayItem(rec, 255)->valuedouble == 1);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(a, "per_image")) == 76);
    cJSON_Delete(j);
    // a rerun replaces its own files; a file eval did not write is refused
    rc = test_run_bin(&o, "eval --pred-root %s/R/A --data-root %s/data --plot %s --threads 2", r, r, page);
    CHECKF(rc == 0, "exit %d: %s", rc, o);
    char foreign[700];
    snprintf(foreign, sizeof foreign, "%s/mine.html", test_tmpdir());
    FILE *f = fopen(foreign, "w");
    REQUIRE(f);
    fputs("<!DOCTYPE html>\n<p>my notes</p>\n", f);
    fclose(f);
    rc = test_run_bin(&o, "eval --pred-root %s/R/A --data-root %s/data --plot %s --threads 1", r, r, foreign);
    CHECKF(rc == 2 && strstr(o, "mine.html") && strstr(o, "--overwrite"), "exit %d: %s", rc, o);

    rc = test_run_bin(&o, "eval --pred A=%s/R/A --pred B=%s/R/B --data-root %s/data --plot %s --threads 2", r, r, r, page);
    const char *browser = browser_find();
    if (!browser) {
        test_skip("Chromium is not installed (scripts/deps.sh installs Debian's chromium)");
        return;
    }
    char *dom, *console;
    REQUIRE(browser_load(browser, page, NULL, &dom, &console) == 0);
    CHECKF(!strcmp(browser_status_attr(dom, "data-state"), "ok"), "page status %s: %.400s", browser_status_attr(dom, "data-state"),
           strstr(dom, "id=\"status\"") ? strstr(dom, "id=\"status\"") : dom);
    CHECKF(!console[0], "console messages:\n%s", console);
    // per set: a score table and three charts (PR, Fβ and Eφ against the threshold), both methods drawn
    CHECKF(!strcmp(browser_status_attr(dom, "data-tables"), "4"), "%s tables", browser_status_attr(dom, "data-tables"));
    CHECKF(browser_count(dom, "class=\"chart\"") == 12, "%d charts", browser_count(dom, "class=\"chart\""));
    CHECKF(browser_count(dom, "class=\"series\"") >= 2 * 3 * 2 + 3 * 2, "%d curves", browser_count(dom, "class=\"series\""));
    CHECKF(browser_count(dom, "class=\"ylabel\"") == 12 && browser_count(dom, ">recall</text>") == 4 &&
           browser_count(dom, ">precision</text>") == 4 && browser_count(dom, ">threshold</text>") == 8 &&
           browser_count(dom, ">Fβ</text>") == 4 && browser_count(dom, ">Eφ</text>") == 4, "axis labels missing");
    CHECK(strstr(dom, "best-score") && strstr(dom, "not scored: 1 of 250 predictions missing"));
    free(dom), free(console);
}

// A run directory as train writes it, reduced to what the report reads: one run record
// (its seed), a step and a validated epoch; plus RUN/eval.json from `camoxpert eval`.
static void fake_run(const char *run, int seed, double sm, const char *pred) {
    REQUIRE_OK(io_make_dirs(run));
    char p[900], log[2048];
    snprintf(p, sizeof p, "%s/train_log.jsonl", run);
    snprintf(log, sizeof log,
             "{\"type\":\"run\",\"time\":\"2026-01-01T00:00:00Z\",\"seed\":%d,\"dataset\":\"syn\",\"epochs\":1}\n"
             "{\"type\":\"step\",\"step\":1,\"stage\":1,\"epoch\":1,\"batch\":1,\"lr\":0.001,\"loss\":1,\"grad_norm\":1,"
             "\"images_per_s\":10}\n"
             "{\"type\":\"epoch\",\"epoch\":1,\"stage\":1,\"step\":1,\"loss\":0.5,\"seconds\":3,\"val\":{\"images\":8,"
             "\"Smeasure\":%g,\"wFmeasure\":0.2,\"MAE\":0.3,\"adpEm\":0.5,\"meanEm\":0.4,\"maxEm\":0.6,\"adpFm\":0.1,"
             "\"meanFm\":0.2,\"maxFm\":0.3,\"IoU\":0.1,\"best\":true}}\n", seed, sm);
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fputs(log, f);
    fclose(f);
    char *o;
    int rc = test_run_bin(&o, "eval --pred %s --gt %s --json %s/eval.json --threads 1", pred,
                          test_shared_path("data/camo4/GT"), run);
    CHECKF(rc == 0, "exit %d: %s", rc, o);
}

TEST(report_shows_test_set_curves_and_the_spread_over_seeds) {
    char a[700], b[700], page[800];
    snprintf(a, sizeof a, "%s/seed1", test_tmpdir());
    snprintf(b, sizeof b, "%s/seed2", test_tmpdir());
    fake_run(a, 1, 0.5, test_shared_path("fixtures/metrics_camo4/pred"));
    fake_run(b, 2, 0.7, test_shared_path("data/camo4/GT"));
    snprintf(page, sizeof page, "%s/compare.html", test_tmpdir());
    char *o;
    int rc = test_run_bin(&o, "report %s %s --out %s --max-images 0 --threads 1", a, b, page);
    CHECKF(rc == 0, "exit %d: %s", rc, o);
    unsigned char *buf;
    size_t n;
    REQUIRE_OK(io_read_file(page, &buf, &n));
    CHECK(strstr((char *)buf, "\"test_eval\":{") && !strstr((char *)buf, "per_image"));
    free(buf);
    const char *browser = browser_find();
    if (!browser) {
        test_skip("Chromium is not installed (scripts/deps.sh installs Debian's chromium)");
        return;
    }
    char *dom, *console;
    REQUIRE(browser_load(browser, page, NULL, &dom, &console) == 0);
    CHECKF(!strcmp(browser_status_attr(dom, "data-state"), "ok"), "page status %s", browser_status_attr(dom, "data-state"));
    CHECKF(!console[0], "console messages:\n%s", console);
    CHECKF(browser_count(dom, "Test sets (camoxpert eval, /") == 2 && browser_count(dom, ">recall</text>") == 2,
           "%d test-set sections, %d PR charts", browser_count(dom, "Test sets (camoxpert eval, /"),
           browser_count(dom, ">recall</text>"));
    // validation Sα over the two seeds: 0.6 ± 0.1414; the test set's Sα too
    CHECKF(strstr(dom, "Across the 2 runs") && strstr(dom, "0.6000 ± 0.1414"), "no mean ± std table");
    free(dom), free(console);
}

// The library call predict --data-root will use too: the sets, their masks and photos.
TEST(eval_testsets_find_returns_masks_and_photo_folders) {
    const char *r = bench_root();
    char data[700];
    snprintf(data, sizeof data, "%s/data", r);
    TestSet *ts;
    int n;
    REQUIRE_OK(testsets_find(data, 0, &ts, &n));
    REQUIRE(n == TESTSET_N);
    CHECK(ts[TESTSET_CAMO].n == 250 && strstr(ts[TESTSET_CAMO].img_dir, "CAMO-V.1.0-CVIU2019/Images/Test"));
    CHECK(ts[TESTSET_COD10K].n == 2026 && ts[TESTSET_COD10K].n_noncam == 1974 && !ts[TESTSET_COD10K].img_dir);
    CHECK(ts[TESTSET_NC4K].n == 4121 && !strcmp(ts[TESTSET_NC4K].names[0], "1") && !ts[TESTSET_CHAMELEON].img_dir);
    testsets_free(ts, n);
    // the root may be one set's own folder
    snprintf(data, sizeof data, "%s/data/TestDataset/CHAMELEON", r);
    REQUIRE_OK(testsets_find(data, 0, &ts, &n));
    CHECK(n == 1 && ts[0].id == TESTSET_CHAMELEON && ts[0].n == 76);
    testsets_free(ts, n);
}

// ---- predict --data-root ------------------------------------------------------------------
static void copy_file(const char *from, const char *to) {
    unsigned char *b = NULL;
    size_t n = 0;
    FILE *f = NULL;
    if (io_read_file(from, &b, &n) || !(f = fopen(to, "wb")) || fwrite(b, 1, n, f) != n)
        test_fail(__FILE__, __LINE__, "copying %s to %s: %s", from, to, cx_errmsg());
    if (f) fclose(f);
    free(b);
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Photos per set in the small layouts; COD10K's last two are NonCAM images.
static const int n_small[TESTSET_N] = { 3, 3, 5, 3 };

// The name of photo i of set s in the small layouts (COD10K: 3 camouflaged, then NonCAM).
static void small_name(int s, int i, char *name, size_t n) {
    int empty;
    sample_name(s, s == TESTSET_COD10K && i >= 3 ? 2026 + i : i, name, n, &empty);
}

// The four layouts of bench_root, small: each set's photos and masks are `camoxpert synth`
// test images (48²) renamed as the real sets name theirs, in TestDataset/CHAMELEON/{Imgs,GT},
// CAMO-V.1.0-CVIU2019/{Images/Test,Images/Train,GT} (two train images' masks in GT),
// COD10K-v3/Test/{Image,GT_Object} (three camouflaged, two NonCAM), TestDataset/NC4K/{Imgs,GT}.
// ROOT/data; made once per run ("" when synth failed).
static const char *small_root(void) {
    static char root[600];
    if (root[0]) return root[0] == '-' ? "" : root;
    snprintf(root, sizeof root, "%s", test_tmpdir());
    char syn[700];
    snprintf(syn, sizeof syn, "%s/syn", root);
    if (run_bin(NULL, "synth --out %s --train 2 --test 16 --size 48 --seed 3 --threads 1", syn)) {
        test_fail(__FILE__, __LINE__, "synth failed");
        root[0] = '-';
        return "";
    }
    char dir[800];
    snprintf(dir, sizeof dir, "%s/Test/Image", syn);
    DIR *d = opendir(dir);
    char *stems[16];
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (dataset_is_image_name(e->d_name) && n < 16) {
            stems[n] = cx_strdup(e->d_name);
            *strrchr(stems[n++], '.') = 0;
        }
    if (d) closedir(d);
    qsort(stems, (size_t)n, sizeof *stems, cmp_name);
    CHECKF(n == 16, "synth wrote %d test photos", n);
    static const char *const img_dirs[TESTSET_N] = { "data/TestDataset/CHAMELEON/Imgs", "data/CAMO-V.1.0-CVIU2019/Images/Test",
                                                     "data/COD10K-v3/Test/Image", "data/TestDataset/NC4K/Imgs" };
    static const char *const gt_dirs[TESTSET_N] = { "data/TestDataset/CHAMELEON/GT", "data/CAMO-V.1.0-CVIU2019/GT",
                                                    "data/COD10K-v3/Test/GT_Object", "data/TestDataset/NC4K/GT" };
    char from[1200], to[1200], name[128];
    int k = 0;
    for (int s = 0; s < TESTSET_N; s++) {
        mkdirs("%s/%s", root, img_dirs[s]);
        mkdirs("%s/%s", root, gt_dirs[s]);
        for (int i = 0; i < n_small[s] && k < n; i++, k++) {
            small_name(s, i, name, sizeof name);
            snprintf(from, sizeof from, "%s/Test/Image/%s.jpg", syn, stems[k]);
            snprintf(to, sizeof to, "%s/%s/%s.jpg", root, img_dirs[s], name);
            copy_file(from, to);
            snprintf(from, sizeof from, "%s/Test/GT_Object/%s.png", syn, stems[k]);
            snprintf(to, sizeof to, "%s/%s/%s.png", root, gt_dirs[s], name);
            copy_file(from, to);
        }
    }
    // CAMO-V.1.0's train images: their masks share the GT folder, and are not the test set's
    mkdirs("%s/%s", root, "data/CAMO-V.1.0-CVIU2019/Images/Train");
    for (int i = 0; i < 2 && k < n; i++, k++) {
        snprintf(from, sizeof from, "%s/Test/Image/%s.jpg", syn, stems[k]);
        snprintf(to, sizeof to, "%s/data/CAMO-V.1.0-CVIU2019/Images/Train/camourflage_%05d.jpg", root, 1001 + i);
        copy_file(from, to);
        snprintf(from, sizeof from, "%s/Test/GT_Object/%s.png", syn, stems[k]);
        snprintf(to, sizeof to, "%s/data/CAMO-V.1.0-CVIU2019/GT/camourflage_%05d.png", root, 1001 + i);
        copy_file(from, to);
    }
    for (int i = 0; i < n; i++) free(stems[i]);
    return root;
}

// Does P/<set>/<name>.png exist for every photo of the small layouts (NonCAM ones: as asked),
// at the photo's size (48²)? The number of masks found.
static int masks_present(const char *P, int noncam) {
    int found = 0;
    for (int s = 0; s < TESTSET_N; s++)
        for (int i = 0; i < n_small[s]; i++) {
            char name[128], p[1200];
            small_name(s, i, name, sizeof name);
            snprintf(p, sizeof p, "%s/%s/%s.png", P, testset_info[s].name, name);
            int want = noncam || !testset_is_noncam(name);
            Image8 m = { 0 };
            int have = io_path_exists(p) && !image_load(p, 1, &m) && m.w == 48 && m.h == 48;
            image_free(&m);
            CHECKF(have == want, "%s: %s", p, want ? "missing, or not 48x48" : "written, but NonCAM images are left out");
            found += have;
        }
    return found;
}

// eval --pred-root P --data-root D as JSON: every set scored, no prediction missing or extra.
static void eval_finds_all(const char *P, const char *data, int noncam) {
    char *o;
    int rc = run_bin(&o, "eval --pred-root %s --data-root %s --format json --threads 1%s", P, data,
                     noncam ? " --include-noncam" : "");
    CHECKF(rc == 0, "eval: exit %d: %s", rc, o);
    cJSON *j = strchr(o, '{') ? cJSON_Parse(strchr(o, '{')) : NULL;
    REQUIRE(j);
    const cJSON *ds = cJSON_GetObjectItem(j, "datasets");
    CHECKF(cJSON_GetArraySize(ds) == TESTSET_N, "%d sets scored", cJSON_GetArraySize(ds));
    for (int s = 0; s < cJSON_GetArraySize(ds); s++) {
        const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(ds, s), "methods"), 0);
        const cJSON *f = cJSON_GetObjectItem(a, "files");
        int n = n_small[s] - (s == TESTSET_COD10K && !noncam ? 2 : 0);
        CHECKF(cJSON_GetObjectItem(a, "n") && cJSON_GetObjectItem(a, "n")->valuedouble == n &&
               cJSON_GetObjectItem(f, "missing")->valuedouble == 0 && cJSON_GetObjectItem(f, "extra")->valuedouble == 0,
               "%s: %s", testset_info[s].title, cJSON_PrintUnformatted(a));
    }
    cJSON_Delete(j);
}

TEST(predict_data_root_writes_each_test_set_where_eval_finds_it) {
    const char *r = small_root(), *ck = tiny_checkpoint();
    REQUIRE(r[0] && ck);
    char *o;
    int rc = run_bin(&o, "predict --weights %s --data-root %s/data --out %s/P --img-size 32 --threads 1", ck, r, r);
    CHECKF(rc == 0, "exit %d: %s", rc, o);
    // the sets found, named, with their counts; each set's progress
    CHECKF(strstr(o, "CHAMELEON        3 photos") && strstr(o, "CAMO-test        3 photos") &&
           strstr(o, "COD10K-test      3 photos") && strstr(o, "NC4K             3 photos") &&
           strstr(o, "2 NonCAM images left out"), "%s", o);
    CHECKF(strstr(o, "CHAMELEON: wrote 3 masks") && strstr(o, "CAMO-test: wrote 3 masks") &&
           strstr(o, "COD10K-test: wrote 3 masks") && strstr(o, "NC4K: wrote 3 masks") &&
           strstr(o, "wrote 12 masks") && strstr(o, "camoxpert eval --pred-root"), "%s", o);
    char P[700], data[700];
    snprintf(P, sizeof P, "%s/P", r);
    snprintf(data, sizeof data, "%s/data", r);
    CHECK(masks_present(P, 0) == 12);
    eval_finds_all(P, data, 0);
    // a rerun replaces its own masks
    rc = run_bin(&o, "predict --weights %s --data-root %s --out %s --img-size 32 --threads 1", ck, data, P);
    CHECKF(rc == 0, "rerun: exit %d: %s", rc, o);
    // --include-noncam: COD10K's NonCAM photos too, which eval --include-noncam scores
    rc = run_bin(&o, "predict --weights %s --data-root %s --out %s/P2 --include-noncam --img-size 32 --threads 1", ck, data, r);
    CHECKF(rc == 0 && strstr(o, "COD10K-test      5 photos") && strstr(o, "--include-noncam"), "exit %d: %s", rc, o);
    snprintf(P, sizeof P, "%s/P2", r);
    CHECK(masks_present(P, 1) == 14);
    eval_finds_all(P, data, 1);
}

TEST(predict_data_root_refuses_before_writing_anything) {
    const char *r = small_root(), *ck = tiny_checkpoint();
    REQUIRE(r[0] && ck);
    char *o;
    // --input and --data-root exclude each other
    int rc = run_bin(&o, "predict --weights %s --data-root %s/data --input %s/syn/Test/Image --out %s/Q", ck, r, r, r);
    CHECKF(rc == 2 && strstr(o, "--input and --data-root both given"), "exit %d: %s", rc, o);
    // a root with no test set names the layouts looked for
    rc = run_bin(&o, "predict --weights %s --data-root %s/syn --out %s/Q --threads 1", ck, r, r);
    CHECKF(rc == 2 && strstr(o, "no test set found") && strstr(o, "GT_Object") && strstr(o, "CAMO-V.1.0"), "exit %d: %s", rc, o);
    // a set with masks and no photos
    char gt[800];
    snprintf(gt, sizeof gt, "%s/masks_only/TestDataset/CHAMELEON/GT", r);
    REQUIRE_OK(io_make_dirs(gt));
    char from[1200], to[1200], name[128];
    small_name(TESTSET_CHAMELEON, 0, name, sizeof name);
    snprintf(from, sizeof from, "%s/data/TestDataset/CHAMELEON/GT/%s.png", r, name);
    snprintf(to, sizeof to, "%s/%s.png", gt, name);
    copy_file(from, to);
    rc = run_bin(&o, "predict --weights %s --data-root %s/masks_only --out %s/Q --threads 1", ck, r, r);
    CHECKF(rc == 2 && strstr(o, "no folder of photos") && strstr(o, "has photos to predict"), "exit %d: %s", rc, o);
    snprintf(to, sizeof to, "%s/Q", r);
    CHECKF(!io_path_exists(to), "%s was created", to);
    // a file of P that predict did not write: refused before any set is predicted
    char P[700];
    snprintf(P, sizeof P, "%s/P3", r);
    mkdirs("%s/%s", P, "NC4K");
    small_name(TESTSET_NC4K, 2, name, sizeof name);
    snprintf(to, sizeof to, "%s/NC4K/%s.png", P, name);
    write_map(to, 0, 255, 0, 0, 0);
    uint64_t before = dir_hash(P);
    rc = run_bin(&o, "predict --weights %s --data-root %s/data --out %s --img-size 32 --threads 1", ck, r, P);
    CHECKF(rc == 2 && strstr(o, to) && strstr(o, "--overwrite"), "exit %d: %s", rc, o);
    char cham[800];
    snprintf(cham, sizeof cham, "%s/CHAMELEON", P);
    CHECKF(dir_hash(P) == before && !io_path_exists(cham), "the refused predict wrote into %s", P);
    rc = run_bin(&o, "predict --weights %s --data-root %s/data --out %s --img-size 32 --threads 1 --overwrite", ck, r, P);
    CHECKF(rc == 0, "--overwrite: exit %d: %s", rc, o);
    CHECK(masks_present(P, 0) == 12);
    // another folder eval would read for a set (P/camo-test beside P/CAMO) is refused
    mkdirs("%s/%s", P, "camo-test");
    rc = run_bin(&o, "predict --weights %s --data-root %s/data --out %s --img-size 32 --threads 1", ck, r, P);
    CHECKF(rc == 2 && strstr(o, "camo-test stands for CAMO-test too"), "exit %d: %s", rc, o);
}

// The split a training folder belongs to, from its folder names (train's validation rule).
TEST(testsets_folder_is_test_reads_the_split_from_folder_names) {
    static const struct { const char *dir; int test; const char *what; } cases[] = {
        { "x/COD10K-v3/Test/Image", 1, "a test split (x/COD10K-v3/Test)" },
        { "x/COD10K-v3/Train/Image", 0, NULL },
        { "x/TestDataset/CAMO/Imgs", 1, "the test set CAMO-test (x/TestDataset/CAMO)" },
        { "x/TrainDataset/CAMO/Imgs", 0, NULL },
        { "x/TrainValDataset/Imgs", 0, NULL },
        { "x/NC4K/Imgs", 1, "the test set NC4K (x/NC4K)" },
        { "x/chameleon/Image", 1, "the test set CHAMELEON (x/chameleon)" },
        { "x/COD10K_test/Imgs", 1, "the test set COD10K-test (x/COD10K_test)" },
        { "x/CAMO-V.1.0-CVIU2019/Images/Test", 1, "a test split (x/CAMO-V.1.0-CVIU2019/Images/Test)" },
        { "x/CAMO/Imgs", 0, NULL },                 // CAMO has a training split too: undecided
        { "test/x/y/CAMO/Imgs", 0, NULL },          // a test folder too far up is not the data's split
        { "tests/data/Imgs", 0, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char what[512] = "";
        int t = testset_folder_is_test(cases[i].dir, what, sizeof what);
        CHECKF(t == cases[i].test && (!t || !strcmp(what, cases[i].what)), "%s: %d, '%s'", cases[i].dir, t, what);
    }
}
