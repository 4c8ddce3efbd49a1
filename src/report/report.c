// report.c — see report.h. The page is a fixed shell (style, a status line the
// script fills, the data as JSON, the script); everything it shows is drawn by
// page.js from the data, so this file only gathers the data and writes the file.
#include "report.h"
#include "report/runlog.h"
#include "report/samples.h"
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct {
    char *dir, *log, *name;
    char weights[4200];           // the checkpoint the prediction rows came from
    double weights_mtime;
    cJSON *predictions;           // cached prediction rows (NULL: not made yet)
} RunRef;

struct Report {
    ReportOptions o;
    char *out;
    RunRef *run;
    int n_run;
};

ReportOptions report_options_default(void) {
    return (ReportOptions){ .max_images = 24, .max_points = 2000 };
}

static double file_mtime(const char *path) {
    struct stat sb;
    return stat(path, &sb) ? NAN : (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec * 1e-9;
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = cx_malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

cx_status report_open(Report **out, const char *const *runs, int n_runs, const ReportOptions *o) {
    *out = NULL;
    if (n_runs < 1) return CX_FAIL(CX_EARG, "no run directory given (camoxpert report RUN_DIR [RUN_DIR2 ...])");
    Report *r = cx_calloc(1, sizeof *r);
    r->o = *o;
    r->n_run = n_runs;
    r->run = cx_calloc((size_t)n_runs, sizeof *r->run);
    for (int i = 0; i < n_runs; i++) {
        RunRef *rr = &r->run[i];
        rr->dir = cx_strdup(runs[i]);
        size_t len = strlen(rr->dir);
        while (len > 1 && rr->dir[len - 1] == '/') rr->dir[--len] = 0;
        rr->log = join(rr->dir, "train_log.jsonl");
        const char *slash = strrchr(rr->dir, '/');
        rr->name = cx_strdup(slash && slash[1] ? slash + 1 : rr->dir);
    }
    // Two runs named alike ("a/run", "b/run") are told apart by their paths.
    for (int i = 0; i < n_runs; i++)
        for (int k = 0; k < n_runs; k++)
            if (i != k && !strcmp(r->run[i].name, r->run[k].name)) {
                free(r->run[i].name);
                r->run[i].name = cx_strdup(r->run[i].dir);
                break;
            }
    r->out = o->out ? cx_strdup(o->out) : join(r->run[0].dir, n_runs == 1 ? "report.html" : "compare.html");
    cx_status st = outpath_check(r->out, OWNER_REPORT, o->overwrite, o->opt ? o->opt : "--out");
    if (st) {
        report_close(r);
        return st;
    }
    *out = r;
    return CX_OK;
}

const char *report_path(const Report *r) { return r->out; }

void report_close(Report *r) {
    if (!r) return;
    for (int i = 0; i < r->n_run; i++) {
        free(r->run[i].dir), free(r->run[i].log), free(r->run[i].name);
        cJSON_Delete(r->run[i].predictions);
    }
    free(r->run);
    free(r->out);
    free(r);
}

// The prediction rows of one run, made again only when their checkpoint changed.
static cJSON *run_predictions(Report *r, RunRef *rr, const cJSON *facts) {
    const ReportOptions *o = &r->o;
    char best[4200], last[4200];
    snprintf(best, sizeof best, "%s/best.safetensors", rr->dir);
    snprintf(last, sizeof last, "%s/last.safetensors", rr->dir);
    const char *w = io_path_exists(best) ? best : io_path_exists(last) ? last : NULL;
    double mt = w ? file_mtime(w) : NAN;
    int same = rr->predictions && w && !strcmp(w, rr->weights) && mt == rr->weights_mtime;
    if (!same) {
        cJSON_Delete(rr->predictions);
        rr->predictions = NULL;
        SampleOptions so = { .weights = w, .images_dir = o->images_dir, .gt_dir = o->gt_dir, .pred_dir = o->pred_dir,
                             .max_images = o->max_images };
        cJSON *p = NULL;
        if (samples_json(&so, facts, &p)) {
            p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "error", cx_errmsg());
        }
        rr->predictions = p;
        snprintf(rr->weights, sizeof rr->weights, "%s", w ? w : "");
        rr->weights_mtime = mt;
    }
    return cJSON_Duplicate(rr->predictions, 1);
}

static void add_checkpoints(cJSON *page, const RunRef *rr) {
    cJSON *c = cJSON_AddObjectToObject(page, "checkpoints");
    static const char *const names[2] = { "best", "last" };
    for (int i = 0; i < 2; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s.safetensors", rr->dir, names[i]);
        if (io_path_exists(p)) cJSON_AddStringToObject(c, names[i], p);
        else cJSON_AddNullToObject(c, names[i]);
    }
}

// RUN/eval.json when `camoxpert eval --json` wrote it (the run's test-set scores and
// curves), without its per-image scores and categories; NULL when there is none.
static cJSON *run_test_eval(const RunRef *rr) {
    char *path = join(rr->dir, "eval.json");
    unsigned char *buf = NULL;
    size_t n = 0;
    cJSON *j = io_path_exists(path) && !io_read_file(path, &buf, &n) ? cJSON_ParseWithLength((const char *)buf, n) : NULL;
    free(buf);
    free(path);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(j, "software");
    if (!cJSON_IsString(sw) || strcmp(sw->valuestring, "camoxpert eval")) { cJSON_Delete(j); return NULL; }
    cJSON_DeleteItemFromObjectCaseSensitive(j, "per_image");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "categories");
    const cJSON *d, *m;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "datasets"))
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(d, "methods")) {
            cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)m, "per_image");
            cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)m, "categories");
        }
    return j;
}

cx_status report_write(Report *r, FILE *console) {
    cJSON *data = cJSON_CreateObject();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char iso[32];
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(data, "generated", iso);
    cJSON_AddNumberToObject(data, "generated_unix", (double)now.tv_sec);
    cJSON *runs = cJSON_AddArrayToObject(data, "runs");
    int ongoing = 0, n_notes = 0, n_rows = 0;
    long n_steps = 0, n_epochs = 0;
    for (int i = 0; i < r->n_run; i++) {
        RunRef *rr = &r->run[i];
        RunLog L;
        cx_status st = !io_path_is_dir(rr->dir)
            ? CX_FAIL(CX_ENOTFOUND, "%s: not a directory; give a training run's folder, camoxpert train --checkpoint-dir (it holds "
                      "train_log.jsonl)", rr->dir)
            : runlog_load(rr->log, &L);
        if (st) { cJSON_Delete(data); return st; }
        cJSON *page = runlog_page_json(&L, r->o.max_points);
        cJSON_AddStringToObject(page, "name", rr->name);
        cJSON_AddStringToObject(page, "dir", rr->dir);
        add_checkpoints(page, rr);
        cJSON *te = run_test_eval(rr);
        if (te) cJSON_AddItemToObject(page, "test_eval", te);
        else cJSON_AddNullToObject(page, "test_eval");
        ongoing |= L.n_seg && !L.seg[L.n_seg - 1].end;
        n_notes += L.n_notes, n_steps += L.n_steps, n_epochs += L.n_epochs;
        for (int k = 0; console && k < L.n_notes; k++) fprintf(console, "note: %s: %s\n", rr->log, L.notes[k]);
        if (r->o.max_images > 0) {
            cJSON *p = run_predictions(r, rr, cJSON_GetObjectItemCaseSensitive(page, "facts"));
            n_rows += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "items"));
            const cJSON *err = cJSON_GetObjectItemCaseSensitive(p, "error"), *sk;
            if (console && cJSON_IsString(err)) fprintf(console, "note: %s: no prediction rows: %s\n", rr->dir, err->valuestring);
            cJSON_ArrayForEach(sk, cJSON_GetObjectItemCaseSensitive(p, "skipped"))
                if (console && cJSON_IsString(sk)) fprintf(console, "note: %s: prediction rows: %s\n", rr->dir, sk->valuestring);
            cJSON_AddItemToObject(page, "predictions", p);
        } else {
            cJSON_AddNullToObject(page, "predictions");
        }
        cJSON_AddItemToArray(runs, page);
        runlog_free(&L);
    }
    int live = r->o.live && ongoing;
    cJSON_AddBoolToObject(data, "live", live);
    char *json = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    AtomicFile af;
    cx_status st = outpath_check(r->out, OWNER_REPORT, r->o.overwrite, r->o.opt ? r->o.opt : "--out");   // again: it may have changed since
    if (!st) st = io_atomic_begin(&af, r->out);
    if (st) { cJSON_free(json); cx_error_context("writing the report"); return st; }
    size_t tl = 64;
    for (int i = 0; i < r->n_run; i++) tl += strlen(r->run[i].name) + 4;
    char *title = cx_malloc(tl);
    int len = snprintf(title, tl, "camoxpert report: ");
    for (int i = 0; i < r->n_run; i++) len += snprintf(title + len, tl - (size_t)len, "%s%s", i ? " vs " : "", r->run[i].name);
    report_page_put(af.fp, title, OWNER_REPORT, json, live);
    free(title);
    cJSON_free(json);
    if ((st = io_atomic_commit(&af))) { cx_error_context("writing the report"); return st; }
    if (console)
        fprintf(console, "report: %s (%d run%s: %ld steps, %d epochs, %d prediction rows%s%s)\n", r->out, r->n_run,
                 r->n_run == 1 ? "" : "s", n_steps, (int)n_epochs, n_rows, n_notes ? "; the notes above are on the page too" : "", live ? "; reloads every 60 s while the run goes on" : "");
    return CX_OK;
}
