// report.h — `camoxpert report`: one self-contained HTML page that shows one training
// run, or overlays several: the run's facts, every curve of its log (runlog.h), the
// routing statistics and per-category heat maps of sparse models, and prediction rows
// for a sample of photos (samples.h). The page needs no server and no network: the
// data is JSON inside the page, drawn as inline SVG by a script built into the program
// (src/report/page.js, page.css), and the images are data URLs.
//
// A Report is opened once and written as often as wanted: `train --report` writes it
// after every epoch, and the prediction rows are made again only when the checkpoint
// they come from has changed.
//
//   ReportOptions ro = report_options_default();
//   const char *runs[] = { "runs/a" };
//   Report *r;
//   CX_TRY(report_open(&r, runs, 1, &ro));
//   CX_TRY(report_write(r, stdout));   // writes runs/a/report.html, says so on stdout
//   report_close(r);
#pragma once
#include "core/core.h"

typedef struct {
    const char *out;          // the page; NULL: RUN/report.html (one run), RUN_A/compare.html (several)
    const char *images_dir;   // prediction rows for these photos instead of the validation split
    const char *gt_dir;       // their ground truth (scores need it)
    const char *pred_dir;     // masks already predicted, shown instead of running the model
    int max_images;           // photos predicted per run (0: no prediction rows)
    int max_points;           // step curves keep at most this many points per run (bucket means)
    int live;                 // 1: while the run has no end record, the page reloads itself every 60 s
    int overwrite;            // 1: the page may replace a file camoxpert report did not write (core/outpath.h)
    const char *opt;          // the option messages about the page's path name (NULL: "--out")
} ReportOptions;

ReportOptions report_options_default(void);   // max_images 24, max_points 2000

typedef struct Report Report;
// runs: run directories (each holds train_log.jsonl, or will: report_write reads them).
// The page's path is checked first (core/outpath.h: a file the report did not write,
// a checkpoint, a FIFO or a directory there is CX_EARG naming it).
cx_status report_open(Report **r, const char *const *runs, int n_runs, const ReportOptions *o);
// Reads the logs again and writes the page atomically. A missing directory or log is
// CX_ENOTFOUND naming it and the fix. console (may be NULL) gets
// what was skipped or inferred in each log ("note: ...") and one line saying where
// the page is and what it holds.
cx_status report_write(Report *r, FILE *console);
const char *report_path(const Report *r);
void report_close(Report *r);

// The page itself (page.c): a self-contained HTML document that page.js draws from json,
// the page's data. generator is its <meta name="generator"> (the writer's mark,
// core/outpath.h); live: reload every 60 s. `camoxpert eval --plot` writes one too:
//   report_page_put(fp, "camoxpert eval: CAMO", "camoxpert eval", "{\"kind\": \"eval\", ...}", 0);
void report_page_put(FILE *fp, const char *title, const char *generator, const char *json, int live);
