// cmd_report.c — `camoxpert report`: one self-contained HTML page of a training run
// (report/report.h), or of several overlaid (dense vs sparse, one setting vs another).
// It reads each RUN_DIR's train_log.jsonl — also while the run is still writing it —
// and predicts a sample of the validation split on the CPU with the run's best
// checkpoint, or shows the photos and masks the options name.
//
//   camoxpert report runs/a                          -> runs/a/report.html
//   camoxpert report runs/dense runs/sparse --out compare.html
//   camoxpert report runs/a --images photos/ --gt masks/ --max-images 12
#include "cli.h"
#include "report/report.h"

int cmd_report(int argc, char **argv) {
    ReportOptions ro = report_options_default();
    int threads = 0;
    CliOpt opts[] = {
        { "out", OPT_STR, &ro.out, "the page to write (default RUN_DIR/report.html; with several runs "
          "RUN_DIR/compare.html of the first)", "FILE", NULL, 0 },
        { "images", OPT_STR, &ro.images_dir, "prediction rows for these photos instead of the run's validation split", "DIR", NULL, 0 },
        { "gt", OPT_STR, &ro.gt_dir, "ground-truth masks for --images or --pred, matched by name (per-image Sα and MAE)", "DIR", NULL, 0 },
        { "pred", OPT_STR, &ro.pred_dir, "masks already predicted (camoxpert predict --out DIR): shown instead of "
          "running the model", "DIR", NULL, 0 },
        { "max-images", OPT_INT, &ro.max_images, "photos predicted and shown per run, spread evenly over the sorted "
          "list (0: no prediction rows)", "N", NULL, 0 },
        { "max-points", OPT_INT, &ro.max_points, "step curves keep at most N points per run (means of consecutive "
          "steps beyond that)", "N", NULL, 0 },
        { "threads", OPT_INT, &threads, "compute threads for the predictions (0: all cores)", "N", NULL, 0 },
        { "overwrite", OPT_FLAG, &ro.overwrite, "replace an --out file that camoxpert report did not write", NULL, NULL, 0 },
    };
    const char *runs[16];
    int n_runs = 0;
    int parsed = cli_parse(argc, argv, "report", opts, CLI_N(opts), runs, 16, &n_runs,
                           "RUN_DIR [RUN_DIR2 ...] [--out FILE] [--images DIR] [--gt DIR] [--pred DIR] [--max-images N]");
    if (parsed) return parsed == CLI_HELP ? 0 : 2;
    if (n_runs < 1) {
        fprintf(stderr, "error: camoxpert report needs a run directory (a training run's camoxpert train --checkpoint-dir, which "
                "holds train_log.jsonl); several overlay their curves\n");
        return 2;
    }
    if (ro.max_images < 0 || ro.max_points < 10) {
        fprintf(stderr, "error: camoxpert report: --max-images must be >= 0 and --max-points >= 10 (got %d, %d)\n",
                ro.max_images, ro.max_points);
        return 2;
    }
    if (ro.gt_dir && !ro.images_dir && !ro.pred_dir) {
        fprintf(stderr, "error: camoxpert report: --gt %s scores --images or --pred masks; add --images DIR or "
                "--pred DIR\n", ro.gt_dir);
        return 2;
    }
    const char *dirs[3][2] = { { "images", ro.images_dir }, { "gt", ro.gt_dir }, { "pred", ro.pred_dir } };
    for (int i = 0; i < 3; i++)
        if (dirs[i][1] && !io_path_is_dir(dirs[i][1])) {
            fprintf(stderr, "error: camoxpert report: --%s %s: no such directory\n", dirs[i][0], dirs[i][1]);
            return 2;
        }
    Report *r;
    cx_status cs = report_open(&r, runs, n_runs, &ro);
    if (!cs) cs = report_write(r, stdout);
    report_close(r);
    if (cs) {
        fprintf(stderr, "error: camoxpert report: %s\n", cx_errmsg());
        return cs == CX_ENOTFOUND || cs == CX_EARG ? 2 : 1;
    }
    return 0;
}
