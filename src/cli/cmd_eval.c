// cmd_eval.c — `camoxpert eval`: the standard COD metrics of a folder of predictions
// against a folder of ground-truth masks, equal to PySODMetrics' numbers
// (docs/METRICS.md). Files pair by base name (any image extension); missing
// predictions, extra files and size mismatches are reported by name. Images are
// measured in parallel (OpenMP over images) and aggregated in file order, so the
// result does not depend on the thread count.
#include "cli.h"
#include "core/text.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/owner.h"
#include "eval/eval.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <omp.h>
#include <string.h>

typedef struct { char *stem, *file; } EvalFile;   // base name without extension, file name

static int evalfile_cmp(const void *a, const void *b) {
    return strcmp(((const EvalFile *)a)->stem, ((const EvalFile *)b)->stem);
}

static void evalfiles_free(EvalFile *f, int n) {
    for (int i = 0; i < n; i++) { free(f[i].stem); free(f[i].file); }
    free(f);
}

// Lists the image files of dir, sorted by base name. Two files with one base name
// (a.png, a.jpg) are an error naming both.
static cx_status eval_list_dir(const char *dir, const char *what, EvalFile **out, int *n_out) {
    DIR *d = opendir(dir);
    if (!d) return CX_FAIL(CX_EIO, "cannot open the %s folder '%s' (does it exist?)", what, dir);
    EvalFile *f = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !dataset_is_image_name(e->d_name)) continue;
        if (n == cap) { cap = cap ? 2 * cap : 256; f = cx_realloc(f, sizeof *f * (size_t)cap); }
        f[n].file = cx_strdup(e->d_name);
        f[n].stem = cx_strdup(e->d_name);
        char *dot = strrchr(f[n].stem, '.');
        if (dot) *dot = 0;
        n++;
    }
    closedir(d);
    qsort(f, (size_t)n, sizeof *f, evalfile_cmp);
    for (int i = 1; i < n; i++)
        if (!strcmp(f[i].stem, f[i - 1].stem)) {
            cx_status st = CX_FAIL(CX_EARG, "the %s folder '%s' has two files for '%s': %s and %s", what, dir,
                                   f[i].stem, f[i - 1].file, f[i].file);
            evalfiles_free(f, n);
            return st;
        }
    *out = f;
    *n_out = n;
    return CX_OK;
}

static const EvalFile *eval_find(const EvalFile *f, int n, const char *stem) {
    EvalFile key = { (char *)stem, NULL };
    return bsearch(&key, f, (size_t)n, sizeof *f, evalfile_cmp);
}

// Is path a PNG stored as gray (colour type 0, or 4 = gray + alpha)? Reads the header.
static int eval_png_is_gray(const char *path) {
    unsigned char h[26];
    FILE *fp;
    if (io_open_regular(path, &fp)) return 0;   // the load that follows names the problem
    size_t n = fread(h, 1, sizeof h, fp);
    fclose(fp);
    static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    return n == sizeof h && !memcmp(h, sig, 8) && !memcmp(h + 12, "IHDR", 4) && (h[25] == 0 || h[25] == 4);
}

// Loads an image as 8-bit gray the way cv2.imread(path, IMREAD_GRAYSCALE) does for
// PNG/BMP: colour is converted with BT.601 in 14-bit fixed point, rounded
// ((R·4899 + G·9617 + B·1868 + 8192) >> 14); gray files pass through unchanged
// (decoded as gray directly: the formula is the identity on R = G = B).
static cx_status eval_load_gray(const char *path, Image8 *out) {
    if (eval_png_is_gray(path)) return image_load(path, 1, out);
    Image8 rgb = { 0 };
    CX_TRY(image_load(path, 3, &rgb));
    image_alloc(out, rgb.w, rgb.h, 1);
    size_t n = (size_t)rgb.w * rgb.h;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgb.px + 3 * i;
        out->px[i] = (uint8_t)(((uint32_t)p[0] * 4899u + (uint32_t)p[1] * 9617u + (uint32_t)p[2] * 1868u + 8192u) >> 14);
    }
    image_free(&rgb);
    return CX_OK;
}

typedef struct {
    const EvalFile *gt, *pred;
    MetricsImage m;
    char *err;                       // malloc'd message when this image failed
    char super[EVAL_CATEGORY_MAX], sub[EVAL_CATEGORY_MAX];
} EvalItem;

static cx_status eval_one(MetricsWork *w, const char *pred_dir, const char *gt_dir, int resize, EvalItem *it) {
    char pp[4096], gp[4096];
    snprintf(pp, sizeof pp, "%s/%s", pred_dir, it->pred->file);
    snprintf(gp, sizeof gp, "%s/%s", gt_dir, it->gt->file);
    Image8 p = { 0 }, g = { 0 };
    cx_status st = eval_load_gray(gp, &g);
    if (!st) st = eval_load_gray(pp, &p);
    if (!st && (p.w != g.w || p.h != g.h)) {
        if (resize) {
            Image8 r = { 0 };
            image_resize_bilinear(&p, g.w, g.h, &r);
            image_free(&p);
            p = r;
        } else {
            st = CX_FAIL(CX_ESHAPE, "size mismatch: prediction %s is %dx%d, ground truth %s is %dx%d "
                         "(--resize-pred resizes predictions bilinearly)", pp, p.w, p.h, gp, g.w, g.h);
        }
    }
    if (!st && (st = metrics_image_u8_work(w, p.px, g.px, g.h, g.w, &it->m))) cx_error_context("%s", gp);
    image_free(&p);
    image_free(&g);
    return st;
}

// ---- output ----------------------------------------------------------------------
static const char *const eval_headers[EVAL_N_MAIN + EVAL_N_EXTRA] = {
    "Sα(α=.5)", "Fβw(β²=1)", "MAE", "adpEφ", "meanEφ", "maxEφ", "adpFβ(β²=.3)", "meanFβ(β²=.3)",
    "maxFβ(β²=.3)", "IoU@.5", "Dice@.5", "IoU@adp", "Dice@adp",
};

// Prints s padded to width display columns (UTF-8 aware).
static void print_padded(const char *s, int width) {
    int cols = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) cols += (*p & 0xC0) != 0x80;
    fputs(s, stdout);
    for (; cols < width; cols++) putchar(' ');
}

static void eval_print_header(int label_w) {
    print_padded("", label_w);
    print_padded("n", 7);
    for (int k = 0; k < EVAL_N_MAIN + EVAL_N_EXTRA; k++) print_padded(eval_headers[k], k < EVAL_N_MAIN ? 15 : 10);
    putchar('\n');
}

static void eval_print_row(const char *label, int label_w, const MetricsSummary *s) {
    double v[EVAL_N_MAIN + EVAL_N_EXTRA];
    eval_summary_values(s, v);
    print_padded(label, label_w);
    printf("%-7lld", (long long)s->n);
    for (int k = 0; k < EVAL_N_MAIN + EVAL_N_EXTRA; k++) printf(k < EVAL_N_MAIN ? "%-15.4f" : "%-10.4f", v[k]);
    putchar('\n');
}

static cJSON *eval_json_scores(const double *v, int64_t n) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < EVAL_N_MAIN + EVAL_N_EXTRA; k++) cJSON_AddNumberToObject(o, eval_json_keys[k], v[k]);
    if (n >= 0) cJSON_AddNumberToObject(o, "n", (double)n);
    return o;
}

static cJSON *eval_json_summary(const MetricsSummary *s) {
    double v[EVAL_N_MAIN + EVAL_N_EXTRA];
    eval_summary_values(s, v);
    return eval_json_scores(v, s->n);
}

static cx_status eval_write_text(const char *path, const char *text) {
    AtomicFile af;
    CX_TRY(io_atomic_begin(&af, path));
    if (fputs(text, af.fp) == EOF) { io_atomic_abort(&af); return CX_FAIL(CX_EIO, "writing %s failed", path); }
    return io_atomic_commit(&af);
}

// The CSV's header line, which is also its mark (data/owner.h): a rerun may replace the file.
static void eval_csv_header(char *buf, size_t n) {
    int len = snprintf(buf, n, "name,category,subcategory");
    for (int k = 0; k < EVAL_N_MAIN + EVAL_N_EXTRA && len < (int)n; k++) len += snprintf(buf + len, n - len, ",%s", eval_json_keys[k]);
}

static cx_status eval_write_csv(const char *path, const EvalItem *it, int n) {
    AtomicFile af;
    CX_TRY(io_atomic_begin(&af, path));
    char header[512];
    eval_csv_header(header, sizeof header);
    fprintf(af.fp, "%s\n", header);
    for (int i = 0; i < n; i++) {
        double v[EVAL_N_MAIN + EVAL_N_EXTRA];
        eval_image_values(&it[i].m, v);
        // Names are quoted as CSV needs (a comma, a quote or a newline in a file name).
        text_csv_field(af.fp, it[i].gt->file);
        fputc(',', af.fp);
        text_csv_field(af.fp, it[i].super);
        fputc(',', af.fp);
        text_csv_field(af.fp, it[i].sub);
        for (int k = 0; k < EVAL_N_MAIN + EVAL_N_EXTRA; k++) fprintf(af.fp, ",%.17g", v[k]);
        fputc('\n', af.fp);
    }
    if (ferror(af.fp)) { io_atomic_abort(&af); return CX_FAIL(CX_EIO, "writing %s failed", path); }
    return io_atomic_commit(&af);
}

// Categories: super-classes and super/sub pairs, each with its own accumulator.
typedef struct { char name[2 * EVAL_CATEGORY_MAX + 1]; MetricsAccum acc; } EvalCategory;

static EvalCategory *eval_category_get(EvalCategory **cats, int *n, int *cap, const char *name) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*cats)[i].name, name)) return &(*cats)[i];
    if (*n == *cap) { *cap = *cap ? 2 * *cap : 16; *cats = cx_realloc(*cats, sizeof **cats * (size_t)*cap); }
    EvalCategory *c = &(*cats)[(*n)++];
    snprintf(c->name, sizeof c->name, "%s", name);
    metrics_accum_init(&c->acc);
    return c;
}

static int eval_category_cmp(const void *a, const void *b) {
    return strcmp(((const EvalCategory *)a)->name, ((const EvalCategory *)b)->name);
}

// ---- the command ---------------------------------------------------------------------
int cmd_eval(int argc, char **argv) {
    const char *pred_dir = NULL, *gt_dir = NULL, *json_path = NULL, *csv_path = NULL;
    int categories = 0, resize = 0, threads = 0, overwrite = 0;
    CliOpt opts[] = {
        { "pred", OPT_STR, &pred_dir, "folder of predicted maps (8-bit, any image format)", "DIR", NULL, 0 },
        { "gt", OPT_STR, &gt_dir, "folder of ground-truth masks (foreground > 128)", "DIR", NULL, 0 },
        { "json", OPT_STR, &json_path, "write overall, per-category and per-image scores as JSON", "FILE", NULL, 0 },
        { "per-image", OPT_STR, &csv_path, "write one CSV row of scores per image", "FILE.csv", NULL, 0 },
        { "categories", OPT_FLAG, &categories, "print a row per category (COD10K super/sub classes, synthetic families)", NULL, NULL, 0 },
        { "resize-pred", OPT_FLAG, &resize, "resize predictions of another size to the GT's bilinearly instead of failing", NULL, NULL, 0 },
        { "threads", OPT_INT, &threads, "worker threads (0: all cores)", "N", NULL, 0 },
        { "overwrite", OPT_FLAG, &overwrite, "replace a --json or --per-image file that camoxpert eval did not write", NULL, NULL, 0 },
    };
    const char *synopsis = "--pred DIR --gt DIR [--json FILE] [--per-image FILE.csv] [--categories] [--resize-pred]";
    int pst = cli_parse(argc, argv, "eval", opts, CLI_N(opts), NULL, 0, NULL, synopsis);
    if (pst) return pst == CLI_HELP ? 0 : 2;
    if (cli_threads("eval", threads)) return 2;
    if (!pred_dir || !gt_dir) {
        fprintf(stderr, "error: camoxpert eval: --pred and --gt are required\nusage: camoxpert eval %s\n", synopsis);
        return 2;
    }
    double t0 = cx_time_s();
    // Reports replace only what camoxpert eval wrote (checked before the work).
    char csv_mark[512];
    eval_csv_header(csv_mark, sizeof csv_mark);
    if ((json_path && owner_check_replace(json_path, OWNER_EVAL, overwrite, "--json")) ||
        (csv_path && owner_check_replace(csv_path, csv_mark, overwrite, "--per-image"))) {
        fprintf(stderr, "error: camoxpert eval: %s\n", cx_errmsg());
        return 2;
    }

    EvalFile *gts = NULL, *preds = NULL;
    int n_gt = 0, n_pred = 0;
    if (eval_list_dir(gt_dir, "ground-truth", &gts, &n_gt) || eval_list_dir(pred_dir, "prediction", &preds, &n_pred)) {
        fprintf(stderr, "error: %s\n", cx_errmsg());
        evalfiles_free(gts, n_gt);
        return 1;
    }

    // pair by base name; report every missing prediction and every extra file
    EvalItem *items = cx_calloc((size_t)(n_gt ? n_gt : 1), sizeof *items);
    int n = 0, n_missing = 0, n_extra = 0;
    for (int i = 0; i < n_gt; i++) {
        const EvalFile *p = eval_find(preds, n_pred, gts[i].stem);
        if (!p) {
            if (n_missing++ < 50) fprintf(stderr, "error: no prediction for %s/%s in %s\n", gt_dir, gts[i].file, pred_dir);
            continue;
        }
        items[n].gt = &gts[i];
        items[n].pred = p;
        n++;
    }
    for (int i = 0; i < n_pred; i++)
        if (!eval_find(gts, n_gt, preds[i].stem) && n_extra++ < 50)
            fprintf(stderr, "warning: %s/%s has no ground truth in %s; ignored\n", pred_dir, preds[i].file, gt_dir);
    if (n_missing > 50) fprintf(stderr, "error: ... %d predictions missing in all\n", n_missing);
    if (n_extra > 50) fprintf(stderr, "warning: ... %d extra predictions in all\n", n_extra);
    int rc = 0;
    if (n_missing) {
        fprintf(stderr, "error: %d of %d ground-truth masks have no prediction; nothing evaluated\n", n_missing, n_gt);
        rc = 1;
    } else if (n == 0) {
        fprintf(stderr, "error: no image files in %s\n", gt_dir);
        rc = 1;
    }

    // measure, in parallel over images; errors are kept per image and reported in order
    if (!rc) {
        int nt = cx_threads_get();
        #pragma omp parallel num_threads(nt)
        {
            MetricsWork *w = metrics_work_new();   // scratch reused across this thread's images
            #pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < n; i++) {
                if (eval_one(w, pred_dir, gt_dir, resize, &items[i])) items[i].err = cx_strdup(cx_errmsg());
                eval_category_of(items[i].gt->file, items[i].super, items[i].sub);
            }
            metrics_work_free(w);
        }
        int n_err = 0;
        for (int i = 0; i < n; i++)
            if (items[i].err) { fprintf(stderr, "error: %s\n", items[i].err); n_err++; }
        if (n_err) {
            fprintf(stderr, "error: %d of %d images could not be evaluated\n", n_err, n);
            rc = 1;
        }
    }

    if (!rc) {
        MetricsAccum all;
        metrics_accum_init(&all);
        EvalCategory *cats = NULL;
        int n_cats = 0, cap_cats = 0;
        for (int i = 0; i < n; i++) {
            metrics_accum_add(&all, &items[i].m);
            if (!items[i].super[0]) continue;
            metrics_accum_add(&eval_category_get(&cats, &n_cats, &cap_cats, items[i].super)->acc, &items[i].m);
            if (items[i].sub[0]) {
                char key[2 * EVAL_CATEGORY_MAX + 1];
                snprintf(key, sizeof key, "%s/%s", items[i].super, items[i].sub);
                metrics_accum_add(&eval_category_get(&cats, &n_cats, &cap_cats, key)->acc, &items[i].m);
            }
        }
        if (n_cats) qsort(cats, (size_t)n_cats, sizeof *cats, eval_category_cmp);
        MetricsSummary s;
        metrics_accum_summary(&all, &s);

        int label_w = 10;
        if (categories)
            for (int c = 0; c < n_cats; c++) {
                int l = (int)strlen(cats[c].name) + 3;
                if (l > label_w) label_w = l;
            }
        printf("camoxpert eval: %d images, pred %s, gt %s (%.2f s, %d threads)\n", n, pred_dir, gt_dir,
               cx_time_s() - t0, cx_threads_get());
        eval_print_header(label_w);
        eval_print_row("all", label_w, &s);
        if (categories) {
            if (!n_cats) printf("(no categories: names are neither COD10K-CAM-... nor SYN-CAM-...)\n");
            for (int c = 0; c < n_cats; c++) {
                MetricsSummary cs;
                metrics_accum_summary(&cats[c].acc, &cs);
                char label[2 * EVAL_CATEGORY_MAX + 4];
                snprintf(label, sizeof label, "%s%s", strchr(cats[c].name, '/') ? "  " : "", cats[c].name);
                eval_print_row(label, label_w, &cs);
            }
        }

        if (json_path) {
            cJSON *root = cJSON_CreateObject();
            cJSON_AddStringToObject(root, "software", OWNER_EVAL);
            cJSON_AddNumberToObject(root, "n", (double)n);
            cJSON_AddItemToObject(root, "overall", eval_json_summary(&s));
            if (n_cats) {
                cJSON *jc = cJSON_AddObjectToObject(root, "categories");
                for (int c = 0; c < n_cats; c++) {
                    MetricsSummary cs;
                    metrics_accum_summary(&cats[c].acc, &cs);
                    char *key = text_utf8_safe(cats[c].name);   // JSON text is UTF-8; names are bytes
                    cJSON_AddItemToObject(jc, key, eval_json_summary(&cs));
                    free(key);
                }
            }
            cJSON *per = cJSON_AddObjectToObject(root, "per_image");
            for (int i = 0; i < n; i++) {
                double v[EVAL_N_MAIN + EVAL_N_EXTRA];
                eval_image_values(&items[i].m, v);
                char *key = text_utf8_safe(items[i].gt->file);
                cJSON_AddItemToObject(per, key, eval_json_scores(v, -1));
                free(key);
            }
            char *text = cJSON_Print(root);
            cJSON_Delete(root);
            if (!text || eval_write_text(json_path, text)) {
                fprintf(stderr, "error: %s\n", text ? cx_errmsg() : "out of memory printing JSON");
                rc = 1;
            }
            free(text);
        }
        if (csv_path && eval_write_csv(csv_path, items, n)) {
            fprintf(stderr, "error: %s\n", cx_errmsg());
            rc = 1;
        }
        free(cats);
    }

    for (int i = 0; i < n; i++) free(items[i].err);
    free(items);
    evalfiles_free(gts, n_gt);
    evalfiles_free(preds, n_pred);
    return rc;
}
