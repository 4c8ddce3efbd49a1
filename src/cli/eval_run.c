// eval_run.c — see eval_run.h. Images are measured in parallel (OpenMP over images) and
// added in mask order, so the scores do not depend on the thread count.
#include "eval_run.h"
#include "data/dataset.h"
#include "data/image.h"
#include "core/text.h"
#include <dirent.h>
#include <omp.h>
#include <string.h>

#define EVAL_NAMED 10   // missing / extra files named one by one, then counted

const char eval_curves_order[] =
    "index i: foreground where floor(255 * pred) >= 255 - i (PySODMetrics' order); each curve is the mean of "
    "the per-image curves";

static int evalfile_cmp(const void *a, const void *b) {
    return strcmp(((const EvalFile *)a)->stem, ((const EvalFile *)b)->stem);
}

static void evalfiles_free(EvalFile *f, int n) {
    for (int i = 0; i < n; i++) { free(f[i].stem); free(f[i].file); }
    free(f);
}

static void evalfile_set(EvalFile *f, const char *file) {
    f->file = cx_strdup(file);
    f->stem = cx_strdup(file);
    char *dot = strrchr(f->stem, '.');
    if (dot) *dot = 0;
}

// Lists the image files of dir, sorted by base name. Two files with one base name
// (a.png, a.jpg) are an error naming both.
static cx_status eval_list_dir(const char *dir, const char *what, EvalFile **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return CX_FAIL(CX_EIO, "cannot open the %s folder '%s' (does it exist?)", what, dir);
    EvalFile *f = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!dataset_is_image_name(e->d_name)) continue;
        if (n == cap) { cap = cap ? 2 * cap : 256; f = cx_realloc(f, sizeof *f * (size_t)cap); }
        evalfile_set(&f[n++], e->d_name);
    }
    closedir(d);
    if (n) qsort(f, (size_t)n, sizeof *f, evalfile_cmp);
    for (int i = 1; i < n; i++)
        if (!strcmp(f[i].stem, f[i - 1].stem)) {
            cx_status st = CX_FAIL(CX_EARG, "the %s folder '%s' has two files for '%s': %s and %s; delete one", what,
                                   dir, f[i].stem, f[i - 1].file, f[i].file);
            evalfiles_free(f, n);
            return st;
        }
    *out = f;
    *n_out = n;
    return CX_OK;
}

static const EvalFile *eval_find(const EvalFile *f, int n, const char *stem) {
    if (!n) return NULL;
    EvalFile key = { (char *)stem, NULL };
    return bsearch(&key, f, (size_t)n, sizeof *f, evalfile_cmp);
}

// ---- sets ------------------------------------------------------------------------------
cx_status eval_set_from_dir(EvalSet *s, const char *gt_dir) {
    memset(s, 0, sizeof *s);
    CX_TRY(eval_list_dir(gt_dir, "ground-truth", &s->gt, &s->n_gt));
    if (!s->n_gt) return CX_FAIL(CX_ENOTFOUND, "no image files in the ground-truth folder %s", gt_dir);
    size_t len = strlen(gt_dir);
    while (len > 1 && gt_dir[len - 1] == '/') len--;
    const char *b = gt_dir + len;
    while (b > gt_dir && b[-1] != '/') b--;
    s->name = cx_malloc((size_t)(gt_dir + len - b) + 1);
    memcpy(s->name, b, (size_t)(gt_dir + len - b));
    s->name[gt_dir + len - b] = 0;
    s->title = cx_strdup(s->name);
    s->gt_dir = cx_strdup(gt_dir);
    return CX_OK;
}

void eval_set_from_testset(EvalSet *s, const TestSet *t) {
    memset(s, 0, sizeof *s);
    s->name = cx_strdup(testset_info[t->id].name);
    s->title = cx_strdup(testset_info[t->id].title);
    s->gt_dir = cx_strdup(t->gt_dir);
    s->expected = testset_info[t->id].expected;
    s->cod10k = t->id == TESTSET_COD10K;
    s->n_noncam_left = t->n_noncam;
    s->gt = cx_calloc((size_t)(t->n ? t->n : 1), sizeof *s->gt);
    s->n_gt = t->n;
    for (int i = 0; i < t->n; i++) evalfile_set(&s->gt[i], t->files[i]);
}

void eval_set_free(EvalSet *s) {
    free(s->name);
    free(s->title);
    free(s->gt_dir);
    evalfiles_free(s->gt, s->n_gt);
    memset(s, 0, sizeof *s);
}

// ---- pairing -----------------------------------------------------------------------------
// camoxpert predict's side files: <name>_overlay.<ext>, <name>_routing_s<k>.png.
static int is_side_file(const char *stem) {
    size_t n = strlen(stem);
    if (n > 8 && !strcmp(stem + n - 8, "_overlay")) return 1;
    const char *r = strstr(stem, "_routing");
    return r && (r[8] == 0 || (r[8] == '_' && r[9] == 's'));
}

cx_status eval_cell_pair(EvalCell *c, const EvalSet *s, const char *pred_dir, const char *label) {
    c->pred_dir = cx_strdup(pred_dir);
    CX_TRY(eval_list_dir(pred_dir, "prediction", &c->pred, &c->n_pred));
    c->img = cx_calloc((size_t)(s->n_gt ? s->n_gt : 1), sizeof *c->img);
    for (int i = 0; i < s->n_gt; i++) {
        const EvalFile *p = eval_find(c->pred, c->n_pred, s->gt[i].stem);
        if (!p) {
            if (c->n_missing++ < EVAL_NAMED)
                fprintf(stderr, "error: %sno prediction for %s/%s in %s\n", label, s->gt_dir, s->gt[i].file, pred_dir);
            continue;
        }
        c->img[c->n_img].gt = &s->gt[i];
        c->img[c->n_img++].pred = p;
    }
    for (int i = 0; i < c->n_pred; i++) {
        const char *stem = c->pred[i].stem;
        if (eval_find(s->gt, s->n_gt, stem)) continue;
        if (is_side_file(stem)) c->n_side++;
        else if (s->cod10k && s->n_noncam_left && testset_is_noncam(stem)) c->n_noncam_pred++;
        else if (c->n_extra++ < EVAL_NAMED)
            fprintf(stderr, "warning: %s%s/%s has no ground truth in %s; not scored\n", label, pred_dir, c->pred[i].file,
                    s->gt_dir);
    }
    if (c->n_missing > EVAL_NAMED) fprintf(stderr, "error: %s... %d predictions missing in all\n", label, c->n_missing);
    if (c->n_extra > EVAL_NAMED) fprintf(stderr, "warning: %s... %d extra predictions in all\n", label, c->n_extra);
    if (c->n_side)
        fprintf(stderr, "note: %s%d side file%s of camoxpert predict (*_overlay.*, *_routing*) in %s not scored\n", label,
               c->n_side, c->n_side == 1 ? "" : "s", pred_dir);
    if (c->n_noncam_pred)
        fprintf(stderr, "note: %s%d predictions of COD10K NonCAM images in %s not scored (the convention; --include-noncam "
               "scores them)\n", label, c->n_noncam_pred, pred_dir);
    c->pairs_ok = c->n_missing == 0 && c->n_img > 0;
    if (c->n_missing) {
        snprintf(c->why, sizeof c->why, "%d of %d predictions missing", c->n_missing, s->n_gt);
        fprintf(stderr, "error: %s%d of %d ground-truth masks have no prediction; not scored\n", label, c->n_missing, s->n_gt);
    } else if (!c->n_img) {
        snprintf(c->why, sizeof c->why, "no masks");
    }
    return CX_OK;
}

// ---- measuring -----------------------------------------------------------------------------
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

static cx_status eval_one(MetricsWork *w, const char *pred_dir, const char *gt_dir, int resize, const EvalImage *it,
                          MetricsImage *m) {
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
    if (!st && (st = metrics_image_u8_work(w, p.px, g.px, g.h, g.w, m))) cx_error_context("%s", gp);
    image_free(&p);
    image_free(&g);
    return st;
}

static EvalCategory *category_get(EvalCell *c, int *cap, const char *name) {
    for (int i = 0; i < c->n_cats; i++)
        if (!strcmp(c->cats[i].name, name)) return &c->cats[i];
    if (c->n_cats == *cap) { *cap = *cap ? 2 * *cap : 16; c->cats = cx_realloc(c->cats, sizeof *c->cats * (size_t)*cap); }
    EvalCategory *k = &c->cats[c->n_cats++];
    snprintf(k->name, sizeof k->name, "%s", name);
    metrics_accum_init(&k->acc);
    return k;
}

static int category_cmp(const void *a, const void *b) {
    return strcmp(((const EvalCategory *)a)->name, ((const EvalCategory *)b)->name);
}

void eval_cell_measure(EvalCell *c, const EvalSet *s, int resize, const char *label) {
    int n = c->n_img;
    MetricsImage *m = cx_malloc(sizeof *m * (size_t)(n ? n : 1));   // (n) ~8 KiB each: curves
    char **err = cx_calloc((size_t)(n ? n : 1), sizeof *err);        // (n) message per failed image
    int nt = cx_threads_get();
    #pragma omp parallel num_threads(nt)
    {
        MetricsWork *w = metrics_work_new();   // scratch reused across this thread's images
        #pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n; i++) {
            if (eval_one(w, c->pred_dir, s->gt_dir, resize, &c->img[i], &m[i])) err[i] = cx_strdup(cx_errmsg());
            eval_category_of(c->img[i].gt->file, c->img[i].super, c->img[i].sub);
        }
        metrics_work_free(w);
    }
    metrics_accum_init(&c->acc);
    int cap = 0;
    for (int i = 0; i < n; i++) {
        if (err[i]) {
            if (c->n_failed++ < EVAL_NAMED) fprintf(stderr, "error: %s%s\n", label, err[i]);
            free(err[i]);
            continue;
        }
        eval_image_values(&m[i], c->img[i].v);
        metrics_accum_add(&c->acc, &m[i]);
        if (!c->img[i].super[0]) continue;
        metrics_accum_add(&category_get(c, &cap, c->img[i].super)->acc, &m[i]);
        if (c->img[i].sub[0]) {
            char key[2 * EVAL_CATEGORY_MAX + 1];
            snprintf(key, sizeof key, "%s/%s", c->img[i].super, c->img[i].sub);
            metrics_accum_add(&category_get(c, &cap, key)->acc, &m[i]);
        }
    }
    free(err);
    free(m);
    if (c->n_cats) qsort(c->cats, (size_t)c->n_cats, sizeof *c->cats, category_cmp);
    if (c->n_failed) {
        fprintf(stderr, "error: %s%d of %d images could not be evaluated; not scored\n", label, c->n_failed, n);
        snprintf(c->why, sizeof c->why, "%d of %d images could not be read or measured", c->n_failed, n);
        return;
    }
    metrics_accum_summary(&c->acc, &c->s);
    metrics_accum_curves(&c->acc, &c->curves);
    c->scored = 1;
}

void eval_cell_free(EvalCell *c) {
    free(c->pred_dir);
    evalfiles_free(c->pred, c->n_pred);
    free(c->img);
    free(c->cats);
    memset(c, 0, sizeof *c);
}

// ---- JSON ------------------------------------------------------------------------------------
static cJSON *scores_json(const double *v) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < EVAL_N_MAIN + EVAL_N_EXTRA; k++) cJSON_AddNumberToObject(o, eval_json_keys[k], v[k]);
    return o;
}

cJSON *eval_summary_json(const MetricsSummary *s) {
    double v[EVAL_N_MAIN + EVAL_N_EXTRA];
    eval_summary_values(s, v);
    cJSON *o = scores_json(v);
    cJSON_AddNumberToObject(o, "IoU50_dataset", s->iou_50_all);
    cJSON_AddNumberToObject(o, "Dice50_dataset", s->dice_50_all);
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    return o;
}

// A curve in PySODMetrics' order (threshold 255 first).
static cJSON *curve_json(const double *c) {
    cJSON *a = cJSON_CreateArray();
    for (int i = METRICS_NTHR - 1; i >= 0; i--) cJSON_AddItemToArray(a, cJSON_CreateNumber(c[i]));
    return a;
}

cJSON *eval_cell_json(const EvalCell *c, int curves, int per_image) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)c->s.n);
    cJSON_AddItemToObject(o, "overall", eval_summary_json(&c->s));
    if (curves) {
        cJSON *k = cJSON_AddObjectToObject(o, "curves");
        cJSON_AddItemToObject(k, "precision", curve_json(c->curves.pre));
        cJSON_AddItemToObject(k, "recall", curve_json(c->curves.rec));
        cJSON_AddItemToObject(k, "Fmeasure", curve_json(c->curves.fm));
        cJSON_AddItemToObject(k, "Emeasure", curve_json(c->curves.em));
    }
    if (c->n_cats) {
        cJSON *jc = cJSON_AddObjectToObject(o, "categories");
        for (int i = 0; i < c->n_cats; i++) {
            MetricsSummary cs;
            metrics_accum_summary(&c->cats[i].acc, &cs);
            char *key = text_utf8_safe(c->cats[i].name);   // JSON text is UTF-8; names are bytes
            cJSON_AddItemToObject(jc, key, eval_summary_json(&cs));
            free(key);
        }
    }
    if (per_image) {
        cJSON *per = cJSON_AddObjectToObject(o, "per_image");
        for (int i = 0; i < c->n_img; i++) {
            char *key = text_utf8_safe(c->img[i].gt->file);
            cJSON_AddItemToObject(per, key, scores_json(c->img[i].v));
            free(key);
        }
    }
    cJSON *f = cJSON_AddObjectToObject(o, "files");
    cJSON_AddNumberToObject(f, "predictions", c->n_pred);
    cJSON_AddNumberToObject(f, "missing", c->n_missing);
    cJSON_AddNumberToObject(f, "extra", c->n_extra);
    cJSON_AddNumberToObject(f, "side_files", c->n_side);
    cJSON_AddNumberToObject(f, "noncam_predictions", c->n_noncam_pred);
    return o;
}
