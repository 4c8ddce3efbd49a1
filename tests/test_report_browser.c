// test_report_browser.c — the report page in a real browser: a small run shaped like
// the demo's (synthetic data, a sparse model, two stages, stopped mid-epoch and
// resumed with `train --report`) and a dense run beside it; headless Chromium loads
// `camoxpert report`'s page and the two-run comparison from file URLs with JavaScript
// on and no network, and the test reads the drawn DOM: the charts, the stage-2,
// resume and best-epoch marks, the heat maps, the prediction rows, the page's own
// status (the script writes any error there) and no console message. A screenshot
// is left in build/report-test/ for a person to look at. Without Chromium the test
// says "skipped" (scripts/deps.sh installs Debian's chromium).
#include "test.h"
#include "browser.h"
#include <string.h>

TEST_SLOW(report_page_in_headless_chromium) {
    const char *browser = browser_find();
    if (!browser) {
        test_skip("Chromium is not installed (the README's test command, scripts/deps.sh, installs Debian's chromium)");
        return;
    }
    const char *dir = test_tmpdir();
    char data[700], a[700], b[700], *o;
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(a, sizeof a, "%s/sparse", dir);
    snprintf(b, sizeof b, "%s/dense", dir);
    REQUIRE(test_run_bin(&o, "synth --out %s --train 24 --test 2 --size 64 --seed 4 --threads 1", data) == 0);
    // The demo's shape, small: sparse, stage 1 then 2, stopped inside epoch 2 and resumed with --report.
    const char *common = "--backbone edgenext_xx_small --img-size 32 --batch-size 4 --val-fraction 0.25 --threads 1 "
                         "--progress 0 --seed 1 --cache";
    int rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s --epochs 3 --stage1-epochs 1 "
                          "--use-sparse-moe --num-experts 4 --top-k 2 --max-steps 7", data, a, common);
    REQUIRE(rc == 0);
    rc = test_run_bin(&o, "train --resume-from %s/last.safetensors --report --threads 1 --max-steps 100000", a);
    CHECKF(rc == 0 && strstr(o, "report: ") && strstr(o, "report.html"), "rc %d: %s", rc, o);
    rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s --epochs 2 --stage1-epochs 1", data, b, common);
    REQUIRE(rc == 0);
    // The page of the sparse run, and the two runs overlaid.
    char page[800], cmp[800], shot_dir[4200], shot[4300];
    snprintf(page, sizeof page, "%s/report.html", a);
    snprintf(cmp, sizeof cmp, "%s/compare.html", dir);
    rc = test_run_bin(&o, "report %s --max-images 6 --threads 1", a);
    CHECKF(rc == 0 && strstr(o, page), "rc %d: %s", rc, o);
    rc = test_run_bin(&o, "report %s %s --out %s --max-images 3 --threads 1", a, b, cmp);
    CHECKF(rc == 0 && strstr(o, "2 runs"), "rc %d: %s", rc, o);
    snprintf(shot_dir, sizeof shot_dir, "%s", test_bin_path());
    strcpy(strrchr(shot_dir, '/'), "/report-test");
    REQUIRE_OK(io_make_dirs(shot_dir));
    snprintf(shot, sizeof shot, "%s/report.png", shot_dir);
    remove(shot);

    char *dom, *console;
    rc = browser_load(browser, page, shot, &dom, &console);
    REQUIRE(rc == 0);
    CHECKF(!strcmp(browser_status_attr(dom, "data-state"), "ok"), "page status %s: %.400s", browser_status_attr(dom, "data-state"),
           strstr(dom, "id=\"status\"") ? strstr(dom, "id=\"status\"") : dom);
    CHECKF(!console[0], "console messages:\n%s", console);
    // 14 step charts, 8 epoch charts, 9 routing charts; a curve in each; the marks.
    int charts = browser_count(dom, "class=\"chart\"");
    CHECKF(charts >= 31, "%d charts", charts);
    CHECKF(browser_count(dom, "class=\"series\"") >= charts, "%d curves for %d charts", browser_count(dom, "class=\"series\""), charts);
    CHECKF(browser_count(dom, "class=\"stage2\"") >= 14, "%d stage-2 marks", browser_count(dom, "class=\"stage2\""));
    CHECKF(browser_count(dom, "class=\"resume\"") >= 14, "%d resume marks", browser_count(dom, "class=\"resume\""));
    CHECKF(browser_count(dom, "class=\"best\"") >= 6, "%d best-epoch marks", browser_count(dom, "class=\"best\""));
    // Heat maps: all images and each synthetic family seen.
    CHECKF(browser_count(dom, "class=\"heatmap\"") >= 3, "%d heat maps", browser_count(dom, "class=\"heatmap\""));
    // Prediction rows: 6 sampled, worst and best among them, each with embedded images.
    int rows = browser_count(dom, "class=\"pred-row\"");
    CHECKF(rows >= 6, "%d prediction rows", rows);
    CHECKF(browser_count(dom, "src=\"data:image/png;base64,") >= 2 * rows && browser_count(dom, "src=\"data:image/jpeg;base64,") >= 2 * rows,
           "images in %d rows: %d png, %d jpeg", rows, browser_count(dom, "src=\"data:image/png;base64,"),
           browser_count(dom, "src=\"data:image/jpeg;base64,"));
    CHECKF(strstr(dom, "Sα 0.") && strstr(dom, "MAE 0."), "no per-image scores");
    CHECK(strstr(dom, "resumed at step 7"));
    CHECKF(io_path_exists(shot), "no screenshot %s", shot);
    printf("    screenshot of the report page: %s\n", shot);
    free(dom), free(console);

    rc = browser_load(browser, cmp, NULL, &dom, &console);
    REQUIRE(rc == 0);
    CHECKF(!strcmp(browser_status_attr(dom, "data-state"), "ok"), "compare page status %s", browser_status_attr(dom, "data-state"));
    CHECKF(!console[0], "console messages:\n%s", console);
    CHECK(strstr(dom, "sparse vs dense"));
    // Each of the 22 step and epoch charts draws both runs.
    CHECKF(browser_count(dom, "class=\"series\"") >= 2 * 22, "%d curves", browser_count(dom, "class=\"series\""));
    CHECKF(browser_count(dom, "class=\"pred-row\"") >= 6, "%d prediction rows", browser_count(dom, "class=\"pred-row\""));
    free(dom), free(console);
}
