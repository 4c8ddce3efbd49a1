// cmd_eval.c — `camoxpert eval`: the standard COD metrics of predicted maps against
// ground-truth masks, equal to PySODMetrics' numbers (docs/METRICS.md), as papers print
// them: one table per dataset, one row per method, the best of each column marked.
//
//   camoxpert eval --pred DIR --gt DIR                          one folder against one folder
//   camoxpert eval --pred-root P --data-root D                  P/<set>/ for every test set under D
//   camoxpert eval --pred A=P1 --pred B=P2 --data-root D        several methods side by side
//   camoxpert eval --methods-root R --data-root D --format md   R/<method>/<set>/
//   camoxpert eval ... --json all.json --plot curves.html       scores, curves, per image; a page
//
// The work (pairing, measuring, JSON) is eval_run.c; the tables are eval/table.c.
#include "cli.h"
#include "eval_run.h"
#include "core/text.h"
#include "core/outpath.h"
#include "eval/table.h"
#include "report/report.h"
#include <dirent.h>
#include <string.h>
#include <time.h>

typedef struct { char *name, *dir; } EvalMethod;   // dir: a folder (--gt) or a root (--data-root)

static const char *base_of(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    const char *b = path + len;
    while (b > path && b[-1] != '/') b--;
    snprintf(buf, n, "%.*s", (int)(path + len - b), b);
    return buf;
}

// --pred NAME=DIR or --pred DIR (named after the folder). A value that is an existing
// path is a folder even when it holds '='.
static void method_from_arg(EvalMethod *m, const char *arg) {
    const char *eq = strchr(arg, '=');
    char b[256];
    if (eq && eq > arg && !io_path_exists(arg) && !memchr(arg, '/', (size_t)(eq - arg))) {
        m->name = cx_malloc((size_t)(eq - arg) + 1);
        memcpy(m->name, arg, (size_t)(eq - arg));
        m->name[eq - arg] = 0;
        m->dir = cx_strdup(eq + 1);
    } else {
        m->name = cx_strdup(base_of(arg, b, sizeof b));
        m->dir = cx_strdup(arg);
    }
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// --methods-root R: every sub-folder of R is a method, named after it.
static cx_status methods_from_root(const char *root, EvalMethod **m, int *n) {
    DIR *d = opendir(root);
    if (!d) return CX_FAIL(CX_EIO, "--methods-root %s: cannot open the folder (does it exist?)", root);
    char **names = NULL;
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", root, e->d_name);
        if (!io_path_is_dir(p)) continue;
        names = cx_realloc(names, sizeof *names * (size_t)(k + 1));
        names[k++] = cx_strdup(e->d_name);
    }
    closedir(d);
    if (k) qsort(names, (size_t)k, sizeof *names, cmp_cstr);
    for (int i = 0; i < k; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", root, names[i]);
        *m = cx_realloc(*m, sizeof **m * (size_t)(*n + 1));
        (*m)[*n].name = names[i];
        (*m)[(*n)++].dir = cx_strdup(p);
    }
    free(names);
    if (!k) return CX_FAIL(CX_ENOTFOUND, "--methods-root %s has no sub-folders (one per method: %s/<method>/<set>/)", root, root);
    return CX_OK;
}

// The sub-folder of a method's root that holds its predictions for set `id`, or NULL.
static char *pred_folder_for(const char *root, int id) {
    DIR *d = opendir(root);
    if (!d) return NULL;
    char *found = NULL;
    struct dirent *e;
    while ((e = readdir(d)) && !found) {
        if (e->d_name[0] == '.' || testset_match(e->d_name) != id) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", root, e->d_name);
        if (io_path_is_dir(p)) found = cx_strdup(p);
    }
    closedir(d);
    return found;
}

// Folders of a method root that stand for no test set found: named, so nothing is dropped unseen.
static void warn_unused_folders(const EvalMethod *m, const EvalSet *sets, int n_sets) {
    DIR *d = opendir(m->dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", m->dir, e->d_name);
        if (!io_path_is_dir(p)) continue;
        int id = testset_match(e->d_name), used = 0;
        for (int s = 0; s < n_sets && id >= 0; s++) used |= !strcmp(sets[s].name, testset_info[id].name);
        if (!used)
            fprintf(stderr, "warning: %s: %s is %s; not scored\n", m->name, p,
                    id < 0 ? "not a test set's folder (CHAMELEON, CAMO, COD10K, NC4K)" : "a test set the data root lacks");
    }
    closedir(d);
}

// ---- output ---------------------------------------------------------------------------
static void definitions(char *buf, size_t n, int whole) {
    snprintf(buf, n,
             "camoxpert %s eval; metrics as PySODMetrics 1.6 defines them (docs/METRICS.md): Sα α=0.5, Fβw β²=1, "
             "Fβ β²=0.3; mean/max Eφ and Fβ: mean and max of the image-averaged curve over 256 thresholds "
             "(floor(255·pred) >= t); adp: threshold min(2·mean(pred), 1); every other score a mean over images, "
             "IoU/Dice@.5 (pred > 0.5) %s", CAMOXPERT_VERSION,
             whole ? "from the counts summed over the dataset (--average dataset)" : "per image (--average image)");
}

static cJSON *doc_new(int whole) {
    char def[1024];
    definitions(def, sizeof def, whole);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "software", OWNER_EVAL);
    cJSON_AddStringToObject(d, "version", CAMOXPERT_VERSION);
    cJSON_AddStringToObject(d, "definitions", def);
    cJSON_AddStringToObject(d, "averaging", whole ? "dataset" : "image");
    cJSON_AddStringToObject(d, "curves_order", eval_curves_order);
    return d;
}

static void add_best(cJSON *o, const EvalTable *t, int r, int whole) {
    cJSON *b = cJSON_AddArrayToObject(o, "best");
    for (int c = 0; c < EVAL_N_COLS; c++)
        if (eval_table_best(t, r, c, whole, -1)) cJSON_AddItemToArray(b, cJSON_CreateString(eval_col_keys[c]));
}

// The nested document: datasets, each with its methods (scores, best marks, and the
// curves and per-image scores when asked).
static cJSON *doc_nested(const EvalSet *sets, int n_sets, const EvalMethod *m, int n_m, EvalCell *cells,
                         const EvalTable *tables, int whole, int curves, int per_image) {
    cJSON *d = doc_new(whole);
    cJSON *ds = cJSON_AddArrayToObject(d, "datasets");
    for (int s = 0; s < n_sets; s++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sets[s].name);
        cJSON_AddStringToObject(o, "title", sets[s].title);
        cJSON_AddStringToObject(o, "caption", tables[s].caption);
        char *gt = text_utf8_safe(sets[s].gt_dir);
        cJSON_AddStringToObject(o, "gt", gt);
        free(gt);
        cJSON_AddNumberToObject(o, "masks", sets[s].n_gt);
        if (sets[s].expected) cJSON_AddNumberToObject(o, "expected", sets[s].expected);
        if (sets[s].cod10k) cJSON_AddNumberToObject(o, "noncam_left_out", sets[s].n_noncam_left);
        cJSON *ms = cJSON_AddArrayToObject(o, "methods");
        for (int k = 0; k < n_m; k++) {
            const EvalCell *c = &cells[s * n_m + k];
            cJSON *mo = c->scored ? eval_cell_json(c, curves, per_image) : cJSON_CreateObject();
            char *name = text_utf8_safe(m[k].name);
            cJSON_AddStringToObject(mo, "method", name);
            free(name);
            if (c->pred_dir) {
                char *p = text_utf8_safe(c->pred_dir);
                cJSON_AddStringToObject(mo, "pred", p);
                free(p);
            }
            if (c->scored) add_best(mo, &tables[s], k, whole);
            else cJSON_AddStringToObject(mo, "not_scored", c->why);
            cJSON_AddItemToArray(ms, mo);
        }
        cJSON_AddItemToArray(ds, o);
    }
    return d;
}

static cx_status write_text(const char *path, const char *text) {
    AtomicFile af;
    CX_TRY(io_atomic_begin(&af, path));
    if (fputs(text, af.fp) == EOF) { io_atomic_abort(&af); return CX_FAIL(CX_EIO, "writing %s failed", path); }
    return io_atomic_commit(&af);
}

static cx_status write_json(const char *path, cJSON *doc) {
    char *text = cJSON_Print(doc);
    if (!text) return CX_FAIL(CX_ENOMEM, "out of memory printing the JSON for %s", path);
    cx_status st = write_text(path, text);
    cJSON_free(text);
    return st;
}

// The per-image CSV's header, which is also its mark (core/outpath.h): a rerun may replace the file.
static void csv_header(char *buf, size_t n) {
    int len = snprintf(buf, n, "dataset,method,name,category,subcategory");
    for (int k = 0; k < EVAL_N_MAIN + EVAL_N_EXTRA && len < (int)n; k++)
        len += snprintf(buf + len, n - (size_t)len, ",%s", eval_json_keys[k]);
}

static cx_status write_per_image_csv(const char *path, const EvalSet *sets, int n_sets, const EvalMethod *m, int n_m,
                                     const EvalCell *cells) {
    AtomicFile af;
    CX_TRY(io_atomic_begin(&af, path));
    char header[512];
    csv_header(header, sizeof header);
    fprintf(af.fp, "%s\n", header);
    for (int s = 0; s < n_sets; s++)
        for (int k = 0; k < n_m; k++) {
            const EvalCell *c = &cells[s * n_m + k];
            for (int i = 0; c->scored && i < c->n_img; i++) {
                // Names are quoted as CSV needs (a comma, a quote, a newline, a formula).
                const char *f[5] = { sets[s].name, m[k].name, c->img[i].gt->file, c->img[i].super, c->img[i].sub };
                for (int j = 0; j < 5; j++) {
                    if (j) fputc(',', af.fp);
                    text_csv_field(af.fp, f[j]);
                }
                for (int j = 0; j < EVAL_N_MAIN + EVAL_N_EXTRA; j++) fprintf(af.fp, ",%.17g", c->img[i].v[j]);
                fputc('\n', af.fp);
            }
        }
    if (ferror(af.fp)) { io_atomic_abort(&af); return CX_FAIL(CX_EIO, "writing %s failed", path); }
    return io_atomic_commit(&af);
}

static cx_status write_plot(const char *path, cJSON *doc, const EvalSet *sets, int n_sets) {
    cJSON_AddStringToObject(doc, "kind", "eval");
    char iso[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(doc, "generated", iso);
    char *json = cJSON_PrintUnformatted(doc);
    if (!json) return CX_FAIL(CX_ENOMEM, "out of memory printing the page data for %s", path);
    char title[512] = "camoxpert eval:";
    for (int s = 0; s < n_sets; s++)
        snprintf(title + strlen(title), sizeof title - strlen(title), " %s", sets[s].title);
    AtomicFile af;
    cx_status st = io_atomic_begin(&af, path);
    if (!st) {
        report_page_put(af.fp, title, OWNER_EVAL, json, 0);
        st = io_atomic_commit(&af);
    }
    cJSON_free(json);
    return st;
}

// Rows per category of one cell (COD10K super/sub classes, synthetic families), as a table.
static void print_categories(eval_format fmt, const EvalSet *s, const EvalMethod *m, const EvalCell *c, int whole) {
    EvalRow *rows = cx_calloc((size_t)c->n_cats + 1, sizeof *rows);
    MetricsSummary *cs = cx_calloc((size_t)c->n_cats + 1, sizeof *cs);
    char (*label)[2 * EVAL_CATEGORY_MAX + 4] = cx_calloc((size_t)c->n_cats + 1, sizeof *label);
    rows[0] = (EvalRow){ "all", &c->s, NULL };
    for (int i = 0; i < c->n_cats; i++) {
        metrics_accum_summary(&c->cats[i].acc, &cs[i]);
        snprintf(label[i], sizeof label[i], "%s%s", strchr(c->cats[i].name, '/') ? "  " : "", c->cats[i].name);
        rows[i + 1] = (EvalRow){ label[i], &cs[i], NULL };
    }
    char title[512], caption[256];
    snprintf(title, sizeof title, "%s by category: %s", s->title, m->name);
    snprintf(caption, sizeof caption, "%d categories", c->n_cats);
    EvalTable t = { title, caption, rows, c->n_cats + 1 };
    if (!c->n_cats) printf("(no categories in %s: names are neither COD10K-CAM-... nor SYN-CAM-...)\n", s->title);
    else eval_tables_print(stdout, fmt, &t, 1, whole);
    free(rows);
    free(cs);
    free(label);
}

// ---- the command ---------------------------------------------------------------------
int cmd_eval(int argc, char **argv) {
    CliStrs preds = { 0 };
    const char *gt_dir = NULL, *data_root = NULL, *pred_root = NULL, *methods_root = NULL, *json_path = NULL,
               *csv_path = NULL, *plot_path = NULL, *format = "text", *average = "image";
    int categories = 0, resize = 0, threads = 0, overwrite = 0, include_noncam = 0;
    CliOpt opts[] = {
        { "pred", OPT_STRS, &preds, "predictions of one method: a folder (with --gt) or a root of <set>/ folders "
          "(with --data-root); NAME=DIR names the method", "[NAME=]DIR", NULL, 0 },
        { "gt", OPT_STR, &gt_dir, "folder of ground-truth masks (foreground > 128)", "DIR", NULL, 0 },
        { "data-root", OPT_STR, &data_root, "find the test sets CHAMELEON, CAMO, COD10K, NC4K under DIR "
          "(docs/METRICS.md lists the layouts)", "DIR", NULL, 0 },
        { "pred-root", OPT_STR, &pred_root, "one method's predictions, P/<set>/<name>.png (with --data-root)", "P", NULL, 0 },
        { "methods-root", OPT_STR, &methods_root, "several methods: R/<method>/<set>/<name>.png (with --data-root)", "R",
          NULL, 0 },
        { "include-noncam", OPT_FLAG, &include_noncam, "score COD10K's non-camouflaged test images too (papers leave "
          "them out)", NULL, NULL, 0 },
        { "format", OPT_STR, &format, "how the tables are printed on stdout", NULL, "text|md|csv|json|latex", 0 },
        { "average", OPT_STR, &average, "IoU/Dice@.5: the mean of per-image scores, or one score from the counts "
          "summed over the dataset (PySODMetrics' sample_based=False)", NULL, "image|dataset", 0 },
        { "json", OPT_STR, &json_path, "write the scores, the curves and per-image scores as JSON", "FILE", NULL, 0 },
        { "per-image", OPT_STR, &csv_path, "write one CSV row of scores per image", "FILE.csv", NULL, 0 },
        { "plot", OPT_STR, &plot_path, "write a self-contained HTML page of the PR, Fβ and Eφ curves", "FILE.html",
          NULL, 0 },
        { "categories", OPT_FLAG, &categories, "print a table per category (COD10K super/sub classes, synthetic "
          "families)", NULL, NULL, 0 },
        { "resize-pred", OPT_FLAG, &resize, "resize predictions of another size to the GT's bilinearly instead of failing",
          NULL, NULL, 0 },
        { "threads", OPT_INT, &threads, "worker threads (0: all cores)", "N", NULL, 0 },
        { "overwrite", OPT_FLAG, &overwrite, "replace a --json, --per-image or --plot file that camoxpert eval did not "
          "write", NULL, NULL, 0 },
    };
    const char *synopsis = "--pred DIR --gt DIR | --pred-root P --data-root D | --pred NAME=P ... --data-root D "
                           "[--format md] [--json FILE] [--plot FILE.html]";
    int pst = cli_parse(argc, argv, "eval", opts, CLI_N(opts), NULL, 0, NULL, synopsis);
    if (pst) return pst == CLI_HELP ? 0 : 2;
    const char *usage = NULL;
    if (!!gt_dir == !!data_root) usage = "give --gt DIR (one folder of masks) or --data-root DIR (the test sets), not both";
    else if (gt_dir && (pred_root || methods_root)) usage = "--pred-root and --methods-root go with --data-root; with --gt use --pred";
    else if (!preds.n && !pred_root && !methods_root)
        usage = data_root ? "--data-root needs predictions: --pred-root P, --pred NAME=P or --methods-root R" : "--pred DIR is required";
    if (usage) {
        fprintf(stderr, "error: camoxpert eval: %s\nusage: camoxpert eval %s\n", usage, synopsis);
        return 2;
    }
    eval_format fmt = !strcmp(format, "md") ? EVAL_FMT_MD : !strcmp(format, "csv") ? EVAL_FMT_CSV
                    : !strcmp(format, "latex") ? EVAL_FMT_LATEX : EVAL_FMT_TEXT;
    int as_json = !strcmp(format, "json"), whole = !strcmp(average, "dataset");
    // Files replace only what camoxpert eval wrote (checked before the work).
    char csv_mark[512];
    csv_header(csv_mark, sizeof csv_mark);
    if ((json_path && outpath_check(json_path, OWNER_EVAL, overwrite, "--json")) ||
        (csv_path && outpath_check(csv_path, csv_mark, overwrite, "--per-image")) ||
        (plot_path && outpath_check(plot_path, OWNER_EVAL, overwrite, "--plot"))) {
        fprintf(stderr, "error: camoxpert eval: %s\n", cx_errmsg());
        return 2;
    }
    double t0 = cx_time_s();
    int rc = 0;

    // methods
    EvalMethod *m = NULL;
    int n_m = 0;
    for (int i = 0; i < preds.n; i++) {
        m = cx_realloc(m, sizeof *m * (size_t)(n_m + 1));
        method_from_arg(&m[n_m++], preds.v[i]);
    }
    if (pred_root) {
        m = cx_realloc(m, sizeof *m * (size_t)(n_m + 1));
        method_from_arg(&m[n_m++], pred_root);
    }
    if (methods_root && methods_from_root(methods_root, &m, &n_m)) {
        fprintf(stderr, "error: camoxpert eval: %s\n", cx_errmsg());
        rc = 2;
    }
    for (int i = 0; !rc && i < n_m; i++)
        for (int k = 0; k < i; k++)
            if (!strcmp(m[i].name, m[k].name)) {
                fprintf(stderr, "error: camoxpert eval: two methods are named '%s' (%s and %s); name them with "
                        "--pred NAME=DIR\n", m[i].name, m[k].dir, m[i].dir);
                rc = 2;
            }

    // datasets
    EvalSet *sets = NULL;
    int n_sets = 0;
    FILE *info = !as_json && fmt == EVAL_FMT_TEXT ? stdout : stderr;   // what is not the table
    if (!rc && gt_dir) {
        sets = cx_calloc(1, sizeof *sets);
        if (eval_set_from_dir(&sets[0], gt_dir)) {
            fprintf(stderr, "error: %s\n", cx_errmsg());
            rc = 1;
        } else n_sets = 1;
    } else if (!rc) {
        TestSet *ts;
        int nt;
        if (testsets_find(data_root, include_noncam, &ts, &nt)) {
            fprintf(stderr, "error: %s\n", cx_errmsg());
            rc = 1;
        } else if (!nt) {
            fprintf(stderr, "error: no test set found under %s; looked for:\n%s\n", data_root, testsets_layouts());
            rc = 1;
        } else {
            sets = cx_calloc((size_t)nt, sizeof *sets);
            n_sets = nt;
            fprintf(info, "test sets under %s:\n", data_root);
            for (int i = 0; i < nt; i++) {
                eval_set_from_testset(&sets[i], &ts[i]);
                const EvalSet *s = &sets[i];
                fprintf(info, "  %-12s %5d masks", s->title, s->n_gt);
                if (s->n_gt != s->expected) fprintf(info, " (the standard set has %d)", s->expected);
                fprintf(info, " in %s", s->gt_dir);
                if (s->cod10k && include_noncam) fprintf(info, " (NonCAM images included: --include-noncam)");
                else if (s->cod10k)
                    fprintf(info, "; %d NonCAM masks left out (the convention; --include-noncam scores them)", s->n_noncam_left);
                fputc('\n', info);
            }
            for (int id = 0; id < TESTSET_N; id++) {
                int have = 0;
                for (int i = 0; i < nt; i++) have |= ts[i].id == (testset_id)id;
                if (!have) fprintf(info, "  %-12s not found\n", testset_info[id].title);
            }
        }
        testsets_free(ts, nt);
    }

    // pair and measure every method on every set
    EvalCell *cells = cx_calloc((size_t)(n_sets * n_m + 1), sizeof *cells);
    int n_scored = 0, n_folders = 0, single = n_sets == 1 && n_m == 1, fatal = rc;
    for (int k = 0; !fatal && k < n_m; k++) {
        if (data_root) warn_unused_folders(&m[k], sets, n_sets);
        for (int s = 0; s < n_sets; s++) {
            EvalCell *c = &cells[s * n_m + k];
            char label[512] = "";
            if (!single) snprintf(label, sizeof label, "%s on %s: ", m[k].name, sets[s].title);
            char *dir = gt_dir ? cx_strdup(m[k].dir) : pred_folder_for(m[k].dir, testset_match(sets[s].name));
            if (!dir) {
                snprintf(c->why, sizeof c->why, "no folder %s/%s", m[k].dir, sets[s].name);
                continue;
            }
            n_folders++;
            cx_status st = eval_cell_pair(c, &sets[s], dir, label);
            free(dir);
            if (st) {
                fprintf(stderr, "error: %s%s\n", label, cx_errmsg());
                snprintf(c->why, sizeof c->why, "the folder cannot be read");
                rc = 1;
                continue;
            }
            if (!c->pairs_ok) { rc = 1; continue; }
            eval_cell_measure(c, &sets[s], resize, label);
            if (c->scored) n_scored++;
            else rc = 1;
        }
    }
    if (!fatal && !n_folders) {
        fprintf(stderr, "error: nothing was scored: none of the methods has a folder for a test set found under %s "
                "(P/CAMO, P/NC4K, ...)\n", data_root ? data_root : "the data root");
        rc = 1;
    }

    // the tables
    EvalTable *tables = cx_calloc((size_t)(n_sets + 1), sizeof *tables);
    EvalRow *rows = cx_calloc((size_t)(n_sets * n_m + 1), sizeof *rows);
    char (*captions)[512] = cx_calloc((size_t)(n_sets + 1), sizeof *captions);
    for (int s = 0; s < n_sets; s++) {
        for (int k = 0; k < n_m; k++) {
            const EvalCell *c = &cells[s * n_m + k];
            rows[s * n_m + k] = (EvalRow){ m[k].name, c->scored ? &c->s : NULL, c->why };
        }
        int len = snprintf(captions[s], sizeof captions[s], "%d images", sets[s].n_gt);
        if (sets[s].expected && sets[s].n_gt != sets[s].expected)
            len += snprintf(captions[s] + len, sizeof captions[s] - (size_t)len, ", the standard set has %d", sets[s].expected);
        if (sets[s].cod10k && sets[s].n_noncam_left)
            len += snprintf(captions[s] + len, sizeof captions[s] - (size_t)len, ", camouflaged only");
        snprintf(captions[s] + len, sizeof captions[s] - (size_t)len, "; GT %s", sets[s].gt_dir);
        tables[s] = (EvalTable){ sets[s].title, captions[s], &rows[s * n_m], n_m };
    }
    if (n_sets && n_scored) {
        char def[1024];
        definitions(def, sizeof def, whole);
        if (as_json) {
            cJSON *d = doc_nested(sets, n_sets, m, n_m, cells, tables, whole, 0, 0);
            char *text = cJSON_Print(d);
            if (text) puts(text);
            cJSON_free(text);
            cJSON_Delete(d);
        } else {
            if (fmt == EVAL_FMT_TEXT) printf("%s\n", def);
            else if (fmt == EVAL_FMT_MD) printf("_%s_\n\n", def);
            else if (fmt == EVAL_FMT_LATEX) printf("%% %s\n%% needs \\usepackage{booktabs}\n\n", def);
            else fprintf(stderr, "%s\n", def);
            if (fmt == EVAL_FMT_TEXT) putchar('\n');
            eval_tables_print(stdout, fmt, tables, n_sets, whole);
            if (categories && fmt != EVAL_FMT_CSV)
                for (int s = 0; s < n_sets; s++)
                    for (int k = 0; k < n_m; k++)
                        if (cells[s * n_m + k].scored) {
                            putchar('\n');
                            print_categories(fmt, &sets[s], &m[k], &cells[s * n_m + k], whole);
                        }
        }
        fflush(stdout);   // the tables before the line below, when both go to one file
        fprintf(info, "%d method%s on %d set%s in %.2f s (%d threads)\n", n_m, n_m == 1 ? "" : "s", n_sets,
                n_sets == 1 ? "" : "s", cx_time_s() - t0, cx_threads_get());
    }

    // files
    if (n_scored && json_path) {
        cJSON *d;
        if (single) {   // one folder: the toolkit's layout, {"n", "overall", "per_image", ...} at the top
            d = doc_new(whole);
            char *name = text_utf8_safe(m[0].name), *gt = text_utf8_safe(sets[0].gt_dir), *pred = text_utf8_safe(m[0].dir);
            cJSON_AddStringToObject(d, "method", name);
            cJSON_AddStringToObject(d, "gt", gt);
            cJSON_AddStringToObject(d, "pred", pred);
            free(name), free(gt), free(pred);
            cJSON *c = eval_cell_json(&cells[0], 1, 1);
            cJSON *it;
            while ((it = c->child)) {
                cJSON_DetachItemViaPointer(c, it);
                cJSON_AddItemToObject(d, it->string, it);
            }
            cJSON_Delete(c);
        } else {
            d = doc_nested(sets, n_sets, m, n_m, cells, tables, whole, 1, 1);
        }
        if (write_json(json_path, d)) { fprintf(stderr, "error: %s\n", cx_errmsg()); rc = 1; }
        cJSON_Delete(d);
    }
    if (n_scored && csv_path && write_per_image_csv(csv_path, sets, n_sets, m, n_m, cells)) {
        fprintf(stderr, "error: %s\n", cx_errmsg());
        rc = 1;
    }
    if (n_scored && plot_path) {
        cJSON *d = doc_nested(sets, n_sets, m, n_m, cells, tables, whole, 1, 0);
        if (write_plot(plot_path, d, sets, n_sets)) { fprintf(stderr, "error: %s\n", cx_errmsg()); rc = 1; }
        else fprintf(info, "plot: %s\n", plot_path);
        cJSON_Delete(d);
    }

    for (int i = 0; i < n_sets * n_m; i++) eval_cell_free(&cells[i]);
    for (int s = 0; s < n_sets; s++) eval_set_free(&sets[s]);
    for (int k = 0; k < n_m; k++) { free(m[k].name); free(m[k].dir); }
    free(cells), free(sets), free(m), free(tables), free(rows), free(captions);
    return rc;
}
