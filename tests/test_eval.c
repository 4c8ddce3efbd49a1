// test_eval.c — acceptance of `camoxpert eval` against PySODMetrics' own output
// (../shared/fixtures/metrics_camo4/expected.json) through the library and through
// the program's --json, plus categories from names and the command's error reports
// (missing / extra predictions, size mismatches, --resize-pred), the test sets' folder
// names, the tables' best marks and formula-proof CSV cells.
#include "test.h"
#include "core/text.h"
#include "data/image.h"
#include "data/testsets.h"
#include "eval/eval.h"
#include "eval/table.h"
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const fixture_names[4] = { "camourflage_00012.png", "camourflage_00018.png",
                                              "camourflage_00061.png", "camourflage_00064.png" };

static cJSON *load_json(const char *path) {
    unsigned char *buf = NULL;
    size_t n = 0;
    if (io_read_file(path, &buf, &n)) return NULL;
    cJSON *j = cJSON_Parse((const char *)buf);
    free(buf);
    return j;
}

// Largest |got − expected| over the nine toolkit scores of one JSON object each.
static double json_scores_err(const cJSON *got, const cJSON *exp, const char *where) {
    double worst = 0;
    for (int k = 0; k < EVAL_N_MAIN; k++) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(got, eval_json_keys[k]);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(exp, eval_json_keys[k]);
        if (!cJSON_IsNumber(g) || !cJSON_IsNumber(e)) {
            test_fail(__FILE__, __LINE__, "%s: key %s missing", where, eval_json_keys[k]);
            return INFINITY;
        }
        double d = fabs(g->valuedouble - e->valuedouble);
        CHECKF(d <= 1e-6, "%s %s: got %.12g, PySODMetrics %.12g", where, eval_json_keys[k], g->valuedouble, e->valuedouble);
        if (d > worst) worst = d;
    }
    return worst;
}

// The path of the camoxpert program beside this test binary (build/ or build-debug/).
static const char *camoxpert_bin(void) {
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    if (n <= 0) return "build/camoxpert";
    path[n] = 0;
    char *slash = strrchr(path, '/');
    strcpy(slash + 1, "camoxpert");
    return path;
}

static int run_cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_cmd(const char *fmt, ...) {
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(eval_library_reproduces_pysodmetrics_fixture) {
    cJSON *exp = load_json(test_shared_path("fixtures/metrics_camo4/expected.json"));
    REQUIRE(exp);
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(exp, "per_image");
    MetricsAccum acc;
    metrics_accum_init(&acc);
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        char rel[256];
        Image8 p = { 0 }, g = { 0 };
        snprintf(rel, sizeof rel, "fixtures/metrics_camo4/pred/%s", fixture_names[i]);
        REQUIRE_OK(image_load(test_shared_path(rel), 1, &p));
        snprintf(rel, sizeof rel, "data/camo4/GT/%s", fixture_names[i]);
        REQUIRE_OK(image_load(test_shared_path(rel), 1, &g));
        REQUIRE(p.w == g.w && p.h == g.h);
        MetricsImage m;
        REQUIRE_OK(metrics_image_u8(p.px, g.px, g.h, g.w, &m));
        metrics_accum_add(&acc, &m);
        image_free(&p);
        image_free(&g);
        double v[EVAL_N_MAIN + EVAL_N_EXTRA];
        eval_image_values(&m, v);
        cJSON *got = cJSON_CreateObject();
        for (int k = 0; k < EVAL_N_MAIN; k++) cJSON_AddNumberToObject(got, eval_json_keys[k], v[k]);
        double e = json_scores_err(got, cJSON_GetObjectItemCaseSensitive(per, fixture_names[i]), fixture_names[i]);
        if (e > worst) worst = e;
        cJSON_Delete(got);
    }
    MetricsSummary s;
    metrics_accum_summary(&acc, &s);
    double v[EVAL_N_MAIN + EVAL_N_EXTRA];
    eval_summary_values(&s, v);
    cJSON *got = cJSON_CreateObject();
    for (int k = 0; k < EVAL_N_MAIN; k++) cJSON_AddNumberToObject(got, eval_json_keys[k], v[k]);
    double e = json_scores_err(got, cJSON_GetObjectItemCaseSensitive(exp, "overall"), "overall");
    if (e > worst) worst = e;
    cJSON_Delete(got);
    CHECK(s.n == 4);
    // observed: 7.8e-16 (float64 rounding only)
    CHECKF(worst <= 1e-12, "worst error vs PySODMetrics %.3g (expected float64 rounding only)", worst);
    cJSON_Delete(exp);
}

TEST(eval_cli_json_reproduces_pysodmetrics_fixture) {
    const char *dir = test_tmpdir();
    char json[600];
    snprintf(json, sizeof json, "%s/out.json", dir);
    int rc = run_cmd("'%s' eval --pred '%s' --gt '%s' --json '%s' --threads 2 > '%s/stdout.txt' 2>&1", camoxpert_bin(),
                     test_shared_path("fixtures/metrics_camo4/pred"), test_shared_path("data/camo4/GT"), json, dir);
    REQUIRE(rc == 0);
    cJSON *got = load_json(json), *exp = load_json(test_shared_path("fixtures/metrics_camo4/expected.json"));
    REQUIRE(got && exp);
    CHECK(cJSON_GetObjectItemCaseSensitive(got, "n")->valuedouble == 4);
    double worst = json_scores_err(cJSON_GetObjectItemCaseSensitive(got, "overall"),
                                   cJSON_GetObjectItemCaseSensitive(exp, "overall"), "overall");
    const cJSON *gp = cJSON_GetObjectItemCaseSensitive(got, "per_image"), *ep = cJSON_GetObjectItemCaseSensitive(exp, "per_image");
    CHECK(cJSON_GetArraySize(gp) == 4);
    for (int i = 0; i < 4; i++) {
        double e = json_scores_err(cJSON_GetObjectItemCaseSensitive(gp, fixture_names[i]),
                                   cJSON_GetObjectItemCaseSensitive(ep, fixture_names[i]), fixture_names[i]);
        if (e > worst) worst = e;
    }
    CHECKF(worst <= 1e-12, "worst error vs PySODMetrics %.3g", worst);
    cJSON_Delete(got);
    cJSON_Delete(exp);
}

TEST(eval_category_of_parses_cod10k_and_synthetic_names) {
    char sup[EVAL_CATEGORY_MAX], sub[EVAL_CATEGORY_MAX];
    CHECK(eval_category_of("COD10K-CAM-1-Aquatic-3-Crab-32.png", sup, sub) && !strcmp(sup, "Aquatic") && !strcmp(sub, "Crab"));
    CHECK(eval_category_of("COD10K-CAM-3-Flying-53-Bird-3081", sup, sub) && !strcmp(sup, "Flying") && !strcmp(sub, "Bird"));
    CHECK(eval_category_of("COD10K-NonCAM-5-Background-2-Grassland-100.jpg", sup, sub) && !strcmp(sub, "Grassland"));
    CHECK(eval_category_of("SYN-CAM-sand-000123.png", sup, sub) && !strcmp(sup, "sand") && sub[0] == 0);
    CHECK(!eval_category_of("camourflage_00012.png", sup, sub) && sup[0] == 0 && sub[0] == 0);
    CHECK(!eval_category_of("COD10K-CAM-x-Aquatic-3-Crab-32.png", sup, sub));
    CHECK(!eval_category_of("COD10K-CAM-1-Aquatic-3-Crab-32-extra.png", sup, sub));
    CHECK(!eval_category_of("SYN-CAM-sand.png", sup, sub));
    CHECK(!eval_category_of("", sup, sub));
}

// Writes a gray PNG of w × h: a disc of value fg on bg.
static void write_disc(const char *path, int w, int h, uint8_t fg, uint8_t bg) {
    Image8 im = { 0 };
    image_alloc(&im, w, h, 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            im.px[y * w + x] = (x - w / 2) * (x - w / 2) + (y - h / 2) * (y - h / 2) < h * h / 9 ? fg : bg;
    cx_status st = image_save_png(path, &im);
    CHECKF(st == CX_OK, "%s", cx_errmsg());
    image_free(&im);
}

TEST(eval_cli_reports_missing_extra_and_mismatched_files_by_name) {
    const char *t = test_tmpdir();
    char root[512], p[700];
    snprintf(root, sizeof root, "%s", t);
    snprintf(p, sizeof p, "%s/gt", root); io_make_dirs(p);
    snprintf(p, sizeof p, "%s/pred", root); io_make_dirs(p);
    const char *names[3] = { "COD10K-CAM-1-Aquatic-3-Crab-1", "COD10K-CAM-1-Aquatic-4-Fish-2", "COD10K-CAM-2-Terrestrial-9-Cat-3" };
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/gt/%s.png", root, names[i]);
        write_disc(p, 40, 30, 255, 0);
        snprintf(p, sizeof p, "%s/pred/%s.png", root, names[i]);
        write_disc(p, 40, 30, 200, 10);
    }
    const char *bin = camoxpert_bin();
    // complete: categories in the table and the JSON, a CSV row per image
    int rc = run_cmd("'%s' eval --pred '%s/pred' --gt '%s/gt' --categories --json '%s/o.json' --per-image '%s/o.csv' > '%s/out.txt' 2>&1",
                     bin, root, root, root, root, root);
    CHECK(rc == 0);
    snprintf(p, sizeof p, "%s/o.json", root);
    cJSON *j = load_json(p);
    REQUIRE(j);
    const cJSON *cats = cJSON_GetObjectItemCaseSensitive(j, "categories");
    CHECK(cJSON_GetObjectItemCaseSensitive(cats, "Aquatic") && cJSON_GetObjectItemCaseSensitive(cats, "Aquatic/Crab"));
    CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cats, "Aquatic"), "n")->valuedouble == 2);
    CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "overall"), "Smeasure")->valuedouble > 0.99);
    cJSON_Delete(j);
    snprintf(p, sizeof p, "%s/o.csv", root);
    unsigned char *csv = NULL;
    size_t n = 0;
    REQUIRE_OK(io_read_file(p, &csv, &n));
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += csv[i] == '\n';
    CHECK(lines == 4 && strstr((char *)csv, "COD10K-CAM-2-Terrestrial-9-Cat-3.png,Terrestrial,Cat,"));
    free(csv);

    // an extra prediction is a warning naming it; a missing one is an error naming it
    snprintf(p, sizeof p, "%s/pred/stray.png", root);
    write_disc(p, 40, 30, 255, 0);
    snprintf(p, sizeof p, "%s/pred/%s.png", root, names[1]);
    remove(p);
    rc = run_cmd("'%s' eval --pred '%s/pred' --gt '%s/gt' > '%s/out.txt' 2>&1", bin, root, root, root);
    CHECK(rc == 1);
    snprintf(p, sizeof p, "%s/out.txt", root);
    unsigned char *out = NULL;
    REQUIRE_OK(io_read_file(p, &out, &n));
    CHECKF(strstr((char *)out, "no prediction for") && strstr((char *)out, "Aquatic-4-Fish-2.png"), "%s", out);
    CHECKF(strstr((char *)out, "stray.png has no ground truth"), "%s", out);
    free(out);

    // a prediction of another size fails by name, or is resized with --resize-pred
    snprintf(p, sizeof p, "%s/pred/%s.png", root, names[1]);
    write_disc(p, 20, 15, 200, 10);
    rc = run_cmd("'%s' eval --pred '%s/pred' --gt '%s/gt' > '%s/out.txt' 2>&1", bin, root, root, root);
    CHECK(rc == 1);
    snprintf(p, sizeof p, "%s/out.txt", root);
    REQUIRE_OK(io_read_file(p, &out, &n));
    CHECKF(strstr((char *)out, "size mismatch") && strstr((char *)out, "Fish-2.png is 20x15"), "%s", out);
    free(out);
    rc = run_cmd("'%s' eval --pred '%s/pred' --gt '%s/gt' --resize-pred > '%s/out.txt' 2>&1", bin, root, root, root);
    CHECK(rc == 0);

    // a missing folder is an error naming it
    rc = run_cmd("'%s' eval --pred '%s/nope' --gt '%s/gt' > '%s/out.txt' 2>&1", bin, root, root, root);
    CHECK(rc == 1);
    REQUIRE_OK(io_read_file(p, &out, &n));
    CHECKF(strstr((char *)out, "/nope"), "%s", out);
    free(out);
}

// Folder names of the test sets, as packaged and as released; names that are not one.
TEST(eval_testset_folder_names) {
    CHECK(testset_match("CAMO") == TESTSET_CAMO && testset_match("camo") == TESTSET_CAMO);
    CHECK(testset_match("CAMO-V.1.0-CVIU2019") == TESTSET_CAMO && testset_match("CAMO_test") == TESTSET_CAMO);
    CHECK(testset_match("COD10K-v3") == TESTSET_COD10K && testset_match("COD10K-Test") == TESTSET_COD10K);
    CHECK(testset_match("CHAMELEON") == TESTSET_CHAMELEON && testset_match("NC4K") == TESTSET_NC4K);
    CHECK(testset_match("CAMOUFLAGE") < 0 && testset_match("COD10K-train") < 0 && testset_match("NC4K2") < 0);
    CHECK(testset_is_noncam("COD10K-NonCAM-5-Background-2-Grassland-100") && !testset_is_noncam("COD10K-CAM-1-Aquatic-3-Crab-1"));
}

// Table marks compare values as printed; CSV cells cannot become spreadsheet formulas.
TEST(eval_table_best_marks_and_csv_cells) {
    MetricsSummary a = { .n = 2, .sm = 0.81234, .mae = 0.05 }, b = { .n = 2, .sm = 0.81231, .mae = 0.04 };
    EvalRow rows[3] = { { "a", &a, NULL }, { "b", &b, NULL }, { "c", NULL, "no folder" } };
    EvalTable t = { "CAMO-test", "250 images", rows, 3 };
    CHECK(eval_table_best(&t, 0, 0, 0, 3) && eval_table_best(&t, 1, 0, 0, 3));   // 0.812 both: a tie
    CHECK(eval_table_best(&t, 0, 0, 0, -1) && !eval_table_best(&t, 1, 0, 0, -1));
    CHECK(eval_table_best(&t, 1, 2, 0, 3) && !eval_table_best(&t, 0, 2, 0, 3));   // MAE: lower is better
    CHECK(!eval_table_best(&t, 2, 0, 0, 3));
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    REQUIRE(f);
    static const char *const cells[] = { "=1+2", "+x", "-3", "@SUM(A1)", "plain", "a,b", NULL };
    for (int i = 0; cells[i]; i++) { text_csv_field(f, cells[i]); fputc('|', f); }
    fclose(f);
    CHECKF(!strcmp(buf, "\"'=1+2\"|\"'+x\"|\"'-3\"|\"'@SUM(A1)\"|plain|\"a,b\"|"), "%s", buf);
    free(buf);
}
