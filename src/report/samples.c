// samples.c — see samples.h. Lists the photos (and masks), picks an evenly spread
// sample, predicts or reads each mask, scores it against its ground truth with
// eval/metrics, and embeds thumbnails as data URLs.
#include "samples.h"
#include "core/names.h"
#include "data/dataset.h"
#include "data/image.h"
#include "eval/metrics.h"
#include "infer/predictor.h"
#include "nn/weights.h"
#include <dirent.h>
#include <math.h>
#include <string.h>

char *samples_data_url(const char *mime, const unsigned char *buf, size_t n) {
    static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t head = strlen(mime) + 13, len = head + 4 * ((n + 2) / 3) + 1;
    char *out = cx_malloc(len), *o = out + snprintf(out, len, "data:%s;base64,", mime);
    size_t i = 0;
    for (; i + 2 < n; i += 3, o += 4) {
        uint32_t v = (uint32_t)buf[i] << 16 | (uint32_t)buf[i + 1] << 8 | buf[i + 2];
        o[0] = tb[v >> 18], o[1] = tb[v >> 12 & 63], o[2] = tb[v >> 6 & 63], o[3] = tb[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)buf[i] << 16 | (i + 1 < n ? (uint32_t)buf[i + 1] << 8 : 0);
        o[0] = tb[v >> 18], o[1] = tb[v >> 12 & 63];
        o[2] = i + 1 < n ? tb[v >> 6 & 63] : '=';
        o[3] = '=';
        o += 4;
    }
    *o = 0;
    return out;
}

// ---- the photos ------------------------------------------------------------------------

typedef struct { char *name, *photo, *gt, *pred; } Item;   // base name and paths (NULL: none)

typedef struct { char **file; int n; const char *dir; } Listing;   // image files of dir, sorted

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static cx_status listing_read(Listing *l, const char *dir, const char *opt) {
    memset(l, 0, sizeof *l);
    l->dir = dir;
    DIR *d = io_path_is_dir(dir) ? opendir(dir) : NULL;
    if (!d) return CX_FAIL(CX_ENOTFOUND, "%s %s: not a readable directory", opt, dir);
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        if (!dataset_is_image_name(e->d_name)) continue;
        if (l->n == cap) l->file = cx_realloc(l->file, sizeof *l->file * (size_t)(cap = cap ? 2 * cap : 64));
        l->file[l->n++] = cx_strdup(e->d_name);
    }
    closedir(d);
    if (!l->n) return CX_FAIL(CX_ENOTFOUND, "%s %s: no .jpg/.jpeg/.png/.bmp images in the directory", opt, dir);
    qsort(l->file, (size_t)l->n, sizeof *l->file, cmp_str);
    return CX_OK;
}

static void listing_free(Listing *l) {
    for (int i = 0; i < l->n; i++) free(l->file[i]);
    free(l->file);
}

static char *base_of(const char *file) {
    const char *s = strrchr(file, '/');
    char *b = cx_strdup(s ? s + 1 : file), *dot = strrchr(b, '.');
    if (dot && dot != b) *dot = 0;
    return b;
}

// DIR/FILE for the file of l whose base name is base, or NULL.
static char *listing_find(const Listing *l, const char *base) {
    if (!l || !l->dir) return NULL;
    size_t n = strlen(base);
    for (int i = 0; i < l->n; i++)
        if (!strncmp(l->file[i], base, n) && l->file[i][n] == '.') {
            size_t len = strlen(l->dir) + strlen(l->file[i]) + 2;
            char *p = cx_malloc(len);
            snprintf(p, len, "%s/%s", l->dir, l->file[i]);
            return p;
        }
    return NULL;
}

// The run's validation split, as training made it: dataset, fraction and seed from
// the log's "run" record, else from the checkpoint's options.
static cx_status val_items(const char *weights, const cJSON *facts, Item **items, int *n, char *src, size_t nsrc) {
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(facts, "dataset");
    const cJSON *vf = cJSON_GetObjectItemCaseSensitive(facts, "val_fraction");
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(facts, "seed");
    const char *root = cJSON_IsString(ds) ? ds->valuestring : NULL;
    double frac = cJSON_IsNumber(vf) ? vf->valuedouble : 0.1;   // train's defaults
    uint64_t seed = cJSON_IsNumber(sd) ? (uint64_t)sd->valuedouble : 42;
    char *cfg = NULL;
    cJSON *cj = NULL;
    if (!root && weights && !weights_read_config_json(weights, &cfg) && cfg && (cj = cJSON_Parse(cfg))) {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(cj, "train_options");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(to, "dataset-path"), *f = cJSON_GetObjectItemCaseSensitive(to, "val-fraction"),
                    *s = cJSON_GetObjectItemCaseSensitive(to, "seed");
        if (cJSON_IsString(d)) root = d->valuestring;
        if (cJSON_IsString(f)) frac = atof(f->valuestring);
        if (cJSON_IsString(s)) seed = strtoull(s->valuestring, NULL, 10);
    }
    // A relative dataset path is relative to where training ran.
    const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(facts, "cwd");
    char rel[4200];
    if (root && root[0] != '/' && !io_path_exists(root) && cJSON_IsString(cwd)) {
        snprintf(rel, sizeof rel, "%s/%s", cwd->valuestring, root);
        if (io_path_exists(rel)) root = rel;
    }
    cx_status st = CX_OK;
    Dataset all = { 0 }, tr = { 0 }, va = { 0 };
    if (!root) {
        st = CX_FAIL(CX_ENOTFOUND, "the run names no dataset (no \"run\" record, no options in %s); pass --images DIR "
                     "[--gt DIR]", weights ? weights : "the checkpoint");
    } else if (!(frac > 0)) {
        st = CX_FAIL(CX_ENOTFOUND, "the run held out no validation images (--val-fraction 0); pass --images DIR [--gt DIR]");
    } else {
        DatasetOptions dop = { .root = root, .split = "train" };
        if ((st = dataset_open(&all, &dop))) {
            cx_error_context("the run's dataset %s (moved? pass --images DIR [--gt DIR])", root);
        } else {
            dataset_split(&all, frac, seed, &tr, &va);
            *items = cx_calloc((size_t)(va.n > 0 ? va.n : 1), sizeof **items);
            for (int i = 0; i < va.n; i++)
                (*items)[i] = (Item){ cx_strdup(va.s[i].name), cx_strdup(va.s[i].image), cx_strdup(va.s[i].mask), NULL };
            *n = va.n;
            snprintf(src, nsrc, "the run's validation split: %d of the %d images of %s (fraction %g, seed %llu)", va.n,
                     all.n, root, frac, (unsigned long long)seed);
        }
    }
    dataset_free(&all), dataset_free(&tr), dataset_free(&va);
    cJSON_Delete(cj);
    free(cfg);
    return st;
}

// Photos from images_dir, or predicted masks from pred_dir, each with what matches its name.
static cx_status dir_items(const SampleOptions *o, Item **items, int *n, char *src, size_t nsrc) {
    Listing im = { 0 }, gt = { 0 }, pr = { 0 };
    cx_status st = CX_OK;
    if (o->images_dir && (st = listing_read(&im, o->images_dir, "--images"))) goto out;
    if (o->gt_dir && (st = listing_read(&gt, o->gt_dir, "--gt"))) goto out;
    if (o->pred_dir && (st = listing_read(&pr, o->pred_dir, "--pred"))) goto out;
    const Listing *lead = o->pred_dir ? &pr : &im;
    *items = cx_calloc((size_t)lead->n, sizeof **items);
    for (int i = 0; i < lead->n; i++) {
        Item *it = &(*items)[i];
        it->name = base_of(lead->file[i]);
        it->photo = listing_find(o->images_dir ? &im : NULL, it->name);
        it->gt = listing_find(o->gt_dir ? &gt : NULL, it->name);
        it->pred = listing_find(o->pred_dir ? &pr : NULL, it->name);
    }
    *n = lead->n;
    snprintf(src, nsrc, "%s %s (%d images)%s%s%s%s", o->pred_dir ? "masks in" : "photos in", o->pred_dir ? o->pred_dir : o->images_dir,
             lead->n, o->pred_dir && o->images_dir ? ", photos from " : "", o->pred_dir && o->images_dir ? o->images_dir : "",
             o->gt_dir ? ", ground truth from " : "", o->gt_dir ? o->gt_dir : "");
out:
    listing_free(&im), listing_free(&gt), listing_free(&pr);
    return st;
}

// ---- one row ---------------------------------------------------------------------------

static char *thumb_url(const Image8 *im, int tw, int th, int jpeg) {
    Image8 t = { 0 };
    image_resize_bilinear(im, tw, th, &t);
    uint8_t *buf = NULL;
    size_t n = 0;
    cx_status st = jpeg ? image_encode_jpeg(&t, 85, &buf, &n) : image_encode_png(&t, 6, &buf, &n);
    char *url = st ? NULL : samples_data_url(jpeg ? "image/jpeg" : "image/png", buf, n);
    free(buf);
    image_free(&t);
    return url;
}

static void add_url(cJSON *o, const char *key, char *url) {
    if (url) cJSON_AddStringToObject(o, key, url);
    else cJSON_AddNullToObject(o, key);
    free(url);
}

static cJSON *routing_json(const CamoXpertOutputs *o) {
    cJSON *a = cJSON_CreateArray();
    for (int s = 0; s < o->n_route; s++) {
        const MoeRoute *r = &o->route[s];
        cJSON *x = cJSON_CreateObject(), *ex = cJSON_AddArrayToObject(x, "experts"), *w = cJSON_AddArrayToObject(x, "weights");
        for (int64_t i = 0; i < r->idx.shape[1]; i++) {
            cJSON_AddItemToArray(ex, cJSON_CreateNumber(tensor_i32(&r->idx)[i]));
            cJSON_AddItemToArray(w, cJSON_CreateNumber(round(tensor_get(&r->w, i) * 1000) / 1000));
        }
        cJSON_AddItemToArray(a, x);
    }
    return a;
}

// One row, or NULL with *why set when the image cannot be shown.
static cJSON *item_row(const Item *it, Predictor *p, double *sm, char *why, size_t nwhy) {
    Image8 photo = { 0 }, gt = { 0 }, mask = { 0 };
    cJSON *row = NULL, *routing = NULL;
    *sm = NAN;
    if (it->photo && image_load(it->photo, 3, &photo)) goto fail;
    if (it->gt && image_load(it->gt, 1, &gt)) goto fail;
    if (it->pred) {
        if (image_load(it->pred, 1, &mask)) goto fail;
    } else if (p && photo.px) {
        CamoXpertOutputs o;
        predictor_run(p, &photo, &mask, &o);
        if (o.n_route) routing = routing_json(&o);
    } else {
        snprintf(why, nwhy, "%s: no photo and no mask", it->name);
        goto out;
    }
    row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "name", it->name);
    char super[64], sub[64];
    if (name_category(it->name, super, sizeof super, sub, sizeof sub)) cJSON_AddStringToObject(row, "category", super);
    if (gt.px && (gt.w != mask.w || gt.h != mask.h)) {
        snprintf(why, nwhy, "%s: the mask is %dx%d but the ground truth %dx%d; not scored", it->name, mask.w, mask.h, gt.w, gt.h);
    } else if (gt.px) {
        MetricsImage m;
        if (!metrics_image_u8(mask.px, gt.px, mask.h, mask.w, &m)) {
            *sm = m.sm;
            cJSON_AddNumberToObject(row, "sm", round(m.sm * 1e4) / 1e4);
            cJSON_AddNumberToObject(row, "mae", round(m.mae * 1e4) / 1e4);
        }
    }
    // Thumbnails share one size: the photo's (else the mask's) shape within SAMPLES_THUMB.
    const Image8 *ref = photo.px ? &photo : &mask;
    double sc = fmin(1.0, (double)SAMPLES_THUMB / (ref->w > ref->h ? ref->w : ref->h));
    int tw = (int)fmax(1, round(ref->w * sc)), th = (int)fmax(1, round(ref->h * sc));
    cJSON_AddNumberToObject(row, "w", tw);
    cJSON_AddNumberToObject(row, "h", th);
    add_url(row, "photo", photo.px ? thumb_url(&photo, tw, th, 1) : NULL);
    add_url(row, "gt", gt.px ? thumb_url(&gt, tw, th, 0) : NULL);
    add_url(row, "mask", thumb_url(&mask, tw, th, 0));
    char *ov = NULL;
    if (photo.px && photo.w == mask.w && photo.h == mask.h) {
        Image8 o = { 0 };
        if (!image_overlay_mask(&o, &photo, &mask, 255, 0, 0, 0.5f)) ov = thumb_url(&o, tw, th, 1);
        image_free(&o);
    }
    add_url(row, "overlay", ov);
    if (routing) cJSON_AddItemToObject(row, "routing", routing), routing = NULL;
    goto out;
fail:
    snprintf(why, nwhy, "%s", cx_errmsg());
out:
    cJSON_Delete(routing);
    image_free(&photo), image_free(&gt), image_free(&mask);
    return row;
}

typedef struct { double sm; int i; } Scored;
static int cmp_scored(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    return x->sm < y->sm ? -1 : x->sm > y->sm ? 1 : x->i - y->i;
}

cx_status samples_json(const SampleOptions *o, const cJSON *facts, cJSON **out) {
    *out = NULL;
    Item *items = NULL;
    int n = 0;
    char src[4600];
    cx_status st = o->images_dir || o->pred_dir ? dir_items(o, &items, &n, src, sizeof src)
                                                : val_items(o->weights, facts, &items, &n, src, sizeof src);
    Predictor p;
    int have_p = 0;
    if (!st && !o->pred_dir) {
        if (!o->weights) st = CX_FAIL(CX_ENOTFOUND, "the run has no checkpoint to predict with (best.safetensors or "
                                      "last.safetensors); pass --pred DIR with masks already predicted");
        else if (!(st = predictor_open(&p, o->weights, 0))) have_p = 1;
    }
    if (st) goto out;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "source", src);
    if (o->weights && !o->pred_dir) cJSON_AddStringToObject(j, "weights", o->weights);
    cJSON *rows = cJSON_AddArrayToObject(j, "items"), *skipped = cJSON_AddArrayToObject(j, "skipped");
    int m = o->max_images < n ? o->max_images : n;
    Scored *sc = cx_malloc(sizeof *sc * (size_t)(m > 0 ? m : 1));
    int n_rows = 0, n_scored = 0;
    for (int k = 0; k < m; k++) {
        const Item *it = &items[(int64_t)k * n / m];   // evenly spread over the sorted list
        char why[1200] = "";
        double sm;
        cJSON *row = item_row(it, have_p ? &p : NULL, &sm, why, sizeof why);
        if (why[0]) cJSON_AddItemToArray(skipped, cJSON_CreateString(why));
        if (!row) continue;
        if (isfinite(sm)) sc[n_scored++] = (Scored){ sm, n_rows };
        cJSON_AddItemToArray(rows, row);
        n_rows++;
    }
    // Worst and best by Sα: up to 4 each, never the same image in both.
    qsort(sc, (size_t)n_scored, sizeof *sc, cmp_scored);
    int k = n_scored / 2 < 4 ? n_scored / 2 : 4;
    cJSON *worst = cJSON_AddArrayToObject(j, "worst"), *best = cJSON_AddArrayToObject(j, "best");
    for (int i = 0; i < k; i++) {
        cJSON_AddItemToArray(worst, cJSON_CreateNumber(sc[i].i));
        cJSON_AddItemToArray(best, cJSON_CreateNumber(sc[n_scored - 1 - i].i));
    }
    free(sc);
    *out = j;
out:
    if (have_p) predictor_close(&p);
    for (int i = 0; i < n; i++) free(items[i].name), free(items[i].photo), free(items[i].gt), free(items[i].pred);
    free(items);
    return st;
}
