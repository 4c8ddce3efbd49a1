// pipeline.c — see pipeline.h. The photos are listed and every output planned, the
// model opened (infer/open.h) with a batch that fits in memory, then, for each group of
// photos (one without groups), a ring of batch slots runs: workers decode photos into a
// slot and write the masks of slots the network has run; the calling thread runs the
// network on each slot in order and writes the routing files (the routing is read while
// the batch's outputs live).
#include "infer/pipeline.h"
#include "core/text.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "core/outpath.h"
#include "infer/infer.h"
#include "nn/memory.h"
#include "nn/weights.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The photos to predict: IMAGE, or every image file in DIR (sorted by name),
// leaving out the masks and overlays an earlier predict wrote there (*n_own).
static cx_status list_inputs(const char *in, char ***out, int *n, int *n_own, int *n_hidden) {
    *out = NULL, *n = 0, *n_own = 0, *n_hidden = 0;
    if (!io_path_exists(in)) return CX_FAIL(CX_ENOTFOUND, "--input %s: no such file or directory", in);
    if (!io_path_is_dir(in)) {
        *out = cx_malloc(sizeof **out);
        (*out)[0] = cx_strdup(in);
        *n = 1;
        return CX_OK;
    }
    DIR *d = opendir(in);
    if (!d) return CX_FAIL(CX_EIO, "--input %s: cannot list the directory", in);
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {   // hidden (macOS "._x.jpg" forks too): left out, and said (pipeline_predict)
            *n_hidden += e->d_name[1] && dataset_is_image_name(e->d_name + 1);
            continue;
        }
        if (!dataset_is_image_name(e->d_name)) continue;
        char p[4200], mark[64];
        snprintf(p, sizeof p, "%s/%s", in, e->d_name);
        if (!outpath_read_mark(p, mark, sizeof mark) && !strcmp(mark, OWNER_PREDICT)) { (*n_own)++; continue; }
        if (*n == cap) *out = cx_realloc(*out, sizeof **out * (size_t)(cap = cap ? 2 * cap : 64));
        (*out)[(*n)++] = cx_strdup(p);
    }
    closedir(d);
    if (*n == 0)
        return CX_FAIL(CX_ENOTFOUND, "--input %s: no .jpg/.jpeg/.png/.bmp photos in the directory%s%s", in,
                       *n_own ? " (only masks and overlays written by camoxpert predict)" : "",
                       *n_hidden ? " (only hidden files, whose names start with '.': rename them to predict them)" : "");
    qsort(*out, (size_t)*n, sizeof **out, cmp_str);
    return CX_OK;
}

static void base_name(const char *path, char *out, size_t n) {
    const char *s = strrchr(path, '/');
    snprintf(out, n, "%s", s ? s + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot) *dot = 0;
}

static int same_file(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

typedef struct { const char *file; const char *suffix; char name[1200]; } PlanItem;

static int cmp_name(const void *a, const void *b) { return strcmp(((const PlanItem *)a)->name, ((const PlanItem *)b)->name); }

// What a suffix is, for messages.
static const char *suffix_what(const char *suffix) {
    return !strcmp(suffix, ".png") ? "mask" : !strcmp(suffix, "_overlay.jpg") ? "overlay"
         : !strcmp(suffix, "_routing.json") ? "routing JSON" : "routing map";
}

// Checks every output before any is written (see the header comment). suffix: what is
// written for each photo (".png", "_overlay.jpg", "_routing.json", "_routing_s0.png", ...).
static cx_status plan_outputs(char **files, int nf, const char *input, const char *in_opt, const char *out,
                              const char *const *suffix, int n_suffix, int overwrite) {
    char in_dir[4200];
    if (io_path_is_dir(input)) snprintf(in_dir, sizeof in_dir, "%s", input);
    else {
        const char *sl = strrchr(input, '/');
        if (!sl) snprintf(in_dir, sizeof in_dir, ".");
        else snprintf(in_dir, sizeof in_dir, "%.*s", sl == input ? 1 : (int)(sl - input), input);
    }
    char run[200];
    if (outpath_dir_holds_run(out, run, sizeof run))
        return CX_FAIL(CX_EARG, "--out %s holds a training run (%s): masks would mix with its checkpoints and log; "
                       "choose another --out", out, run);
    if (io_path_is_dir(out) && same_file(out, in_dir))
        return CX_FAIL(CX_EARG, "--out %s is the folder of the photos (%s %s): the masks would mix with the photos and "
                       "could replace some; choose another --out", out, in_opt, input);
    // Every output name of every photo, sorted: two alike are two photos (or two outputs of
    // different kinds: a.jpg's routing map a_routing_s0.png, a_routing_s0.jpg's mask) that
    // would write one file.
    const size_t n = (size_t)nf * (size_t)n_suffix;
    PlanItem *it = cx_calloc(n + 1, sizeof *it);
    cx_status st = CX_OK;
    for (int i = 0; i < nf && !st; i++) {
        char stem[1024];
        base_name(files[i], stem, sizeof stem);
        for (int k = 0; k < n_suffix && !st; k++) {
            PlanItem *p = &it[(size_t)i * n_suffix + k];
            p->file = files[i], p->suffix = suffix[k];
            snprintf(p->name, sizeof p->name, "%s%s", stem, suffix[k]);
            if (strlen(p->name) > NAME_MAX)
                st = CX_FAIL(CX_EARG, "%s: the output name %s is %zu bytes, more than the file system allows (%d); "
                             "shorten the photo's name", files[i], p->name, strlen(p->name), NAME_MAX);
        }
    }
    if (!st) qsort(it, n, sizeof *it, cmp_name);
    for (size_t i = 1; i < n && !st; i++)
        if (!strcmp(it[i].name, it[i - 1].name)) {
            const PlanItem *x = &it[i - 1], *y = &it[i];
            if (!strcmp(x->suffix, y->suffix))
                st = CX_FAIL(CX_EARG, "%s: photos %s and %s would both write %s/%s: outputs are named by the "
                             "photo's name without its extension; rename one of them", in_opt, x->file, y->file, out,
                             x->name);
            else
                st = CX_FAIL(CX_EARG, "%s: photos %s and %s would both write %s/%s (the %s of one, the %s of the "
                             "other); rename one of them", in_opt, x->file, y->file, out, x->name, suffix_what(x->suffix),
                             suffix_what(y->suffix));
        }
    for (size_t i = 0; i < n && !st; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", out, it[i].name);
        for (int f = 0; f < nf && !st; f++)
            if (same_file(path, files[f]))
                st = CX_FAIL(CX_EARG, "--out %s: %s would replace the photo %s; choose another --out", out, path, files[f]);
        if (!st) st = outpath_check(path, OWNER_PREDICT, overwrite, "--out");
    }
    free(it);
    return st;
}

// One unit's choice: {"experts": [...], "weights": [...], "probs": [...]} into x.
static void unit_json(cJSON *x, const MoeRoute *r, int64_t u) {
    int64_t k = r->idx.shape[1], E = r->probs.shape[1];
    cJSON *ex = cJSON_AddArrayToObject(x, "experts"), *w = cJSON_AddArrayToObject(x, "weights"),
          *p = cJSON_AddArrayToObject(x, "probs");
    for (int64_t i = 0; i < k; i++) {
        cJSON_AddItemToArray(ex, cJSON_CreateNumber(tensor_i32(&r->idx)[u * k + i]));
        cJSON_AddItemToArray(w, cJSON_CreateNumber(tensor_get(&r->w, u * k + i)));
    }
    for (int64_t e = 0; e < E; e++) cJSON_AddItemToArray(p, cJSON_CreateNumber(tensor_get(&r->probs, u * E + e)));
}

// Spatial routing: each scale's tiles as a picture at the photo's size, every tile in
// the colour of its first (highest-weight) expert, lighter as that weight falls toward
// 1/k, tile borders dark: <name>_routing_s<scale>.png.
static const uint8_t expert_rgb[12][3] = { { 230, 25, 75 }, { 60, 180, 75 }, { 0, 130, 200 }, { 245, 130, 48 },
                                            { 145, 30, 180 }, { 70, 240, 240 }, { 240, 50, 230 }, { 210, 245, 60 },
                                            { 128, 128, 0 }, { 0, 128, 128 }, { 170, 110, 40 }, { 128, 0, 0 } };
static cx_status write_routing_map(const char *path, const MoeRoute *r, int n, int W, int H) {
    Image8 im = { 0 };
    image_alloc(&im, W, H, 3);
    int64_t mh = r->ty[r->gh], mw = r->tx[r->gw], k = r->idx.shape[1];
    for (int a = 0; a < r->gh; a++)
        for (int b = 0; b < r->gw; b++) {
            int64_t u = ((int64_t)n * r->gh + a) * r->gw + b;
            int e = tensor_i32(&r->idx)[u * k];
            double w = tensor_get(&r->w, u * k), sat = k > 1 ? (w - 1.0 / k) / (1 - 1.0 / k) : 1;
            sat = 0.45 + 0.55 * (sat < 0 ? 0 : sat > 1 ? 1 : sat);
            int y0 = (int)(r->ty[a] * H / mh), y1 = (int)(r->ty[a + 1] * H / mh);
            int x0 = (int)(r->tx[b] * W / mw), x1 = (int)(r->tx[b + 1] * W / mw);
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) {
                    uint8_t *px = im.px + ((int64_t)y * W + x) * 3;
                    int edge = y == y0 || x == x0 || y == y1 - 1 || x == x1 - 1;
                    for (int ch = 0; ch < 3; ch++)
                        px[ch] = edge ? 40 : (uint8_t)(255 - sat * (255 - expert_rgb[e % 12][ch]));
                }
        }
    cx_status st = image_save_png_as(path, &im, OWNER_PREDICT);
    image_free(&im);
    return st;
}

// stem: <out>/<name>; spatial models also get one PNG map per scale (write_routing_map).
// Image n of the batch: units n (global) or n·gh·gw + tile (spatial).
static cx_status write_routing(const char *stem, const char *image, const CamoXpertOutputs *o, int n, int spatial, int W,
                               int H) {
    char path[4300];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "software", OWNER_PREDICT);
    char *safe = text_utf8_safe(image);   // JSON text is UTF-8; file names are bytes
    cJSON_AddStringToObject(j, "image", safe);
    free(safe);
    cJSON_AddStringToObject(j, "routing", spatial ? "spatial" : "global");
    cJSON *sc = cJSON_AddArrayToObject(j, "scales");
    cx_status st = CX_OK;
    for (int s = 0; s < o->n_route; s++) {
        const MoeRoute *r = &o->route[s];
        cJSON *x = cJSON_CreateObject();
        if (!spatial) {
            unit_json(x, r, n);
        } else {   // tiles in row-major order, with their bounds in the scale's map
            cJSON_AddItemToObject(x, "grid", cJSON_CreateIntArray((int[]){ r->gh, r->gw }, 2));
            cJSON_AddItemToObject(x, "map", cJSON_CreateIntArray((int[]){ (int)r->ty[r->gh], (int)r->tx[r->gw] }, 2));
            cJSON *tl = cJSON_AddArrayToObject(x, "tiles");
            for (int a = 0; a < r->gh; a++)
                for (int b = 0; b < r->gw; b++) {
                    cJSON *t = cJSON_CreateObject();
                    cJSON_AddItemToObject(t, "rows", cJSON_CreateIntArray((int[]){ (int)r->ty[a], (int)r->ty[a + 1] }, 2));
                    cJSON_AddItemToObject(t, "cols", cJSON_CreateIntArray((int[]){ (int)r->tx[b], (int)r->tx[b + 1] }, 2));
                    unit_json(t, r, ((int64_t)n * r->gh + a) * r->gw + b);
                    cJSON_AddItemToArray(tl, t);
                }
            snprintf(path, sizeof path, "%s_routing_s%d.png", stem, s);
            if (!st) st = write_routing_map(path, r, n, W, H);
            const char *slash = strrchr(path, '/');
            cJSON_AddStringToObject(x, "map_png", slash ? slash + 1 : path);
        }
        cJSON_AddItemToArray(sc, x);
    }
    snprintf(path, sizeof path, "%s_routing.json", stem);
    if (!st) st = io_atomic_write_json(path, j);
    cJSON_Delete(j);
    return st;
}

// The pipeline: `workers` threads decode photos into a ring of batch slots and
// write the masks (and overlays) of batches the network has run; the main thread
// runs the network on each batch in order and writes routing files. A photo's
// outputs depend on the photo (evaluation-mode BatchNorm, routing per image or tile),
// up to the summation order a batch changes (pipeline.h).
typedef struct {
    int64_t batch;   // the batch this slot holds; -1: none left
    int n;           // photos in it
    int decoded, written, forwarded;
    Image8 *im;      // (B) the photos decoded on the host
    int *failed;     // (B) 1: not decoded (its outputs are not written)
    int *pw, *ph;    // (B) each photo's width and height
    uint8_t **jpeg;  // (B) GPU path: a photo's file, for the GPU's JPEG decoder (NULL: decoded on the host)
    size_t *jpeg_n;  // (B) its bytes
    uint8_t *masks;  // GPU path: the batch's masks, photo i's at moff[i]
    int64_t *moff;   // (B)
    float *x;        // (B, S, S, 3) network input
    float *logits;   // (B, S, S)
    AtomicFile *pend;   // (2B) written files waiting for the batch's commit (io.h io_atomic_commit_group)
    int *pend_mask;     // (2B) 1: a mask (counted when committed)
    int n_pend;
} PredSlot;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    PredSlot *slot;
    int R, B, S, nf, overlay;
    char **files;
    const char *name;   // the group's, for progress lines (NULL: none)
    const char *out;
    int64_t next_decode, next_write;
    int gpu_io;      // photos resized and masks made on the GPU (run_batches' gpu_batch)
    void *jpeg_dec;  // the GPU's JPEG decoder (ops_jpeg_open), or NULL: photos decode on the host
    int n_gpu_jpeg;  // photos the GPU decoded (the main thread's count)
    int jpeg_noted;  // a failed GPU decode was said
    double gpu_s[3]; // the GPU path's main thread: photos in (decode, upload, resize), the network, masks out
    Arena io;        // the GPU path's photos, masks and their boxes in GPU memory (reset every batch), apart from
                     // the activations so that the forward's memory is the CPU path's
    int n_masks, n_failed;
    double decode_s, write_s;   // summed over the workers
} PredPipe;

static void pred_slot_fill(PredPipe *p, PredSlot *s, int64_t batch) {
    int64_t nb = (p->nf + p->B - 1) / p->B;
    s->batch = batch < nb ? batch : -1;
    s->n = s->batch < 0 ? 0 : (int)(p->nf - batch * p->B < p->B ? p->nf - batch * p->B : p->B);
    s->decoded = s->written = s->forwarded = s->n_pend = 0;
}

// Adds a closed, unflushed file to the slot's commit group.
static void pred_pending(PredPipe *p, PredSlot *s, const AtomicFile *af, int is_mask) {
    pthread_mutex_lock(&p->mu);
    s->pend[s->n_pend] = *af;
    s->pend_mask[s->n_pend++] = is_mask;
    pthread_mutex_unlock(&p->mu);
}

static void pred_error(PredPipe *p) {
    fprintf(stderr, "error: %s\n", cx_errmsg());   // one write; the count under the lock
    pthread_mutex_lock(&p->mu);
    p->n_failed++;
    pthread_mutex_unlock(&p->mu);
}

static void pred_decode(PredPipe *p, PredSlot *s, int i, int64_t f) {
    size_t plane = (size_t)p->S * p->S;
    s->jpeg[i] = NULL;
    s->failed[i] = 1, s->pw[i] = s->ph[i] = 1;
    if (p->gpu_io) {   // the file, kept whole for the GPU's decoder when it takes it; else decoded here
        uint8_t *buf = NULL;
        size_t n = 0;
        int w, h;
        cx_status st = io_read_file(p->files[f], &buf, &n);
        if (!st && p->jpeg_dec && image_jpeg_plain(buf, n, &w, &h)) {
            s->jpeg[i] = buf, s->jpeg_n[i] = n, s->pw[i] = w, s->ph[i] = h, s->failed[i] = 0;
            return;
        }
        if (!st) st = image_decode(buf, n, p->files[f], 3, &s->im[i]);
        free(buf);
        if (st) {
            pred_error(p);
            return;
        }
        s->pw[i] = s->im[i].w, s->ph[i] = s->im[i].h, s->failed[i] = 0;
        return;
    }
    if (image_load(p->files[f], 3, &s->im[i])) {
        pred_error(p);
        memset(s->x + i * plane * 3, 0, sizeof(float) * plane * 3);
        return;
    }
    s->failed[i] = 0, s->pw[i] = s->im[i].w, s->ph[i] = s->im[i].h;
    infer_image_input(&s->im[i], p->S, s->x + i * plane * 3);
}

static void pred_write(PredPipe *p, PredSlot *s, int i, int64_t f) {
    if (s->failed[i]) return;
    const Image8 *im = &s->im[i];
    Image8 mask = { .w = s->pw[i], .h = s->ph[i], .c = 1 };
    if (p->gpu_io) mask.px = s->masks + s->moff[i];   // made on the GPU
    else {
        image_alloc(&mask, s->pw[i], s->ph[i], 1);
        infer_mask(s->logits + (size_t)i * p->S * p->S, p->S, &mask);
    }
    char name[1024], path[4200];
    base_name(p->files[f], name, sizeof name);
    snprintf(path, sizeof path, "%s/%s.png", p->out, name);
    AtomicFile af;
    cx_status cs = image_save_png_pending(path, &mask, OWNER_PREDICT, &af);
    if (!cs) pred_pending(p, s, &af, 1);
    if (!cs && p->overlay) {   // the photo with the mask (> 128) laid over it in red at half opacity
        Image8 ov = { 0 };
        snprintf(path, sizeof path, "%s/%s_overlay.jpg", p->out, name);
        cs = image_overlay_mask(&ov, im, &mask, 255, 0, 0, 0.5f);
        if (!cs) cs = image_save_jpeg_pending(path, &ov, 90, OWNER_PREDICT, &af);
        if (!cs) pred_pending(p, s, &af, 0);
        image_free(&ov);
    }
    if (cs) pred_error(p);
    if (!p->gpu_io) image_free(&mask);
}

// Runs one photo's stage (decode or write) with the lock released; its seconds.
static double pred_unlocked(PredPipe *p, void (*stage)(PredPipe *, PredSlot *, int, int64_t), PredSlot *s, int i,
                            int64_t f) {
    pthread_mutex_unlock(&p->mu);
    double t0 = cx_time_s();
    stage(p, s, i, f);
    double dt = cx_time_s() - t0;
    pthread_mutex_lock(&p->mu);
    return dt;
}

// A worker: writes first (they free slots), else decodes the next photo whose
// slot is ready for it, else waits.
static void *pred_worker(void *arg) {
    PredPipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->next_write < p->nf) {
            int64_t f = p->next_write, j = f / p->B;
            PredSlot *s = &p->slot[j % p->R];
            if (s->batch == j && s->forwarded) {
                p->next_write++;
                p->write_s += pred_unlocked(p, pred_write, s, (int)(f - j * p->B), f);
                if (++s->written == s->n) {   // commit the batch's files; the slot takes the batch R ahead
                    AtomicFile *pend = s->pend;
                    int *pend_mask = s->pend_mask, n_pend = s->n_pend;
                    s->pend = cx_malloc(sizeof(AtomicFile) * 2 * (size_t)p->B);
                    s->pend_mask = cx_malloc(sizeof(int) * 2 * (size_t)p->B);
                    for (int i = 0; i < s->n; i++) image_free(&s->im[i]), free(s->jpeg[i]), s->jpeg[i] = NULL;
                    pred_slot_fill(p, s, j + p->R);
                    pthread_cond_broadcast(&p->cv);
                    pthread_mutex_unlock(&p->mu);
                    int failed = 0, masks = 0;
                    io_atomic_commit_group(pend, n_pend, &failed);
                    for (int i = 0; i < n_pend; i++) masks += pend_mask[i] && pend[i].path[0];
                    free(pend), free(pend_mask);
                    pthread_mutex_lock(&p->mu);
                    p->n_masks += masks;
                    p->n_failed += failed;
                }
                continue;
            }
        }
        if (p->next_decode < p->nf) {
            int64_t f = p->next_decode, j = f / p->B;
            PredSlot *s = &p->slot[j % p->R];
            if (s->batch == j) {
                p->next_decode++;
                p->decode_s += pred_unlocked(p, pred_decode, s, (int)(f - j * p->B), f);
                if (++s->decoded == s->n) pthread_cond_broadcast(&p->cv);
                continue;
            }
        }
        if (p->next_write >= p->nf) break;
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}


// Everything decided before the model is allocated (ModelSpec.check), in the order
// the errors should come: the photos, every output planned, and the batch — the one
// asked for, else (auto) 1 on the CPU, 32 on a GPU, fewer when memory is short; at most
// the number of photos. Memory: a batch of photos in evaluation mode, against the
// GPU's free memory on a GPU (activations in the run's precision), the machine's
// otherwise.
typedef struct {
    const char *name, *input, *out;   // PipelineGroup's (name NULL without groups)
    char **files;                     // (nf) the photos (listed, or copied from the group)
    int nf, n_own, n_hidden;          // n_own, n_hidden: list_inputs'
    int lock;                         // the out folder's lock (core/io.h), -1: not held
} PlanGroup;

typedef struct {
    const PipelineOptions *o;
    PlanGroup *g;   // (n_g) one without groups
    int n_g;
    int nf;         // photos in all groups
    int batch;
    MemEstimate me;
    double other;   // the runtime, and one decoded photo with its mask
} Plan;

static cx_status plan_work(void *arg, const Model *m) {
    Plan *p = arg;
    const PipelineOptions *o = p->o;
    int nf_max = 0;
    p->nf = 0;
    for (int i = 0; i < p->n_g; i++) {
        PlanGroup *g = &p->g[i];
        if (!o->groups) CX_TRY(list_inputs(o->input, &g->files, &g->nf, &g->n_own, &g->n_hidden));
        p->nf += g->nf;
        if (g->nf > nf_max) nf_max = g->nf;
    }
    const char *suffix[7] = { ".png" };
    int n_suffix = 1;
    if (o->overlay) suffix[n_suffix++] = "_overlay.jpg";
    if (o->routing && m->cfg.sparse) suffix[n_suffix++] = "_routing.json";
    static const char *const maps[4] = { "_routing_s0.png", "_routing_s1.png", "_routing_s2.png", "_routing_s3.png" };
    for (int s = 0; s < 4 && o->routing && m->cfg.sparse && m->cfg.routing == MOE_ROUTING_SPATIAL; s++)
        suffix[n_suffix++] = maps[s];
    for (int i = 0; i < p->n_g; i++)
        CX_TRY(plan_outputs(p->g[i].files, p->g[i].nf, p->g[i].input, o->input_opt ? o->input_opt : "--input", p->g[i].out,
                            suffix, n_suffix, o->overwrite));
    const int on_gpu = m->rt->device == DEV_CUDA, act_bytes = m->rt->dtype == DT_BF16 ? 2 : 4, S = m->img_size;
    const int64_t numel = m->pt.numel;
    const int auto_batch = o->batch == 0;
    char how[64], ma[32], mb[32];
    const double budget = runtime_mem_budget(m->rt, how, sizeof how);
    p->batch = auto_batch ? (on_gpu ? 32 : 1) : o->batch;
    if (p->batch > nf_max) p->batch = nf_max > 0 ? nf_max : 1;
    camoxpert_memory_estimate(&m->cfg, numel, p->batch, S, 0, NN_RECOMPUTE_NONE, 0, act_bytes, &p->me);
    if (budget > 0 && p->me.total + p->other > budget && auto_batch && p->batch > 1) {
        int fit = camoxpert_memory_fit_batch(&m->cfg, numel, S, 0, NN_RECOMPUTE_NONE, 0, act_bytes, p->other, budget, p->batch);
        if (fit >= 1) {
            p->batch = fit;
            camoxpert_memory_estimate(&m->cfg, numel, p->batch, S, 0, NN_RECOMPUTE_NONE, 0, act_bytes, &p->me);
        }
    }
    if (budget <= 0 || p->me.total + p->other <= budget) return CX_OK;
    int fitb = camoxpert_memory_fit_batch(&m->cfg, numel, S, 0, NN_RECOMPUTE_NONE, 0, act_bytes, p->other, budget, p->batch);
    int fit = camoxpert_memory_fit_size(&m->cfg, numel, 1, 0, NN_RECOMPUTE_NONE, 0, act_bytes, p->other, budget, S);
    char advice[128];
    if (fitb >= 1) snprintf(advice, sizeof advice, "--batch-size %d fits", fitb);
    else if (fit) snprintf(advice, sizeof advice, "--img-size %d fits", fit);
    else snprintf(advice, sizeof advice, "the model does not fit even at --img-size 32");
    return CX_FAIL(CX_EARG, "--img-size %d, --batch-size %d: inference needs about %s at peak, more than the %s this "
                   "machine has available (%s); %s (set CAMOXPERT_MEMORY_LIMIT_MB if its memory grows on demand)", S,
                   p->batch, memory_str(p->me.total + p->other, ma, sizeof ma), memory_str(budget, mb, sizeof mb), how,
                   advice);
}

// OUT/.camoxpert-predict.json: which weights wrote the folder's masks. A predict with
// other weights is refused (their masks would interleave unnoticed) unless overwrite;
// then (write) the record is written — the folder's first write, which also proves it
// writable before any photo is run (a read-only or full disk fails here, not after
// every photo). Without write only the check: every group's, before any is written.
static cx_status out_record(const PipelineOptions *o, const Model *m, const char *out, int write) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.camoxpert-predict.json", out);
    unsigned char *buf = NULL;
    size_t n = 0;
    char mark[64] = "";
    if (io_path_exists(path) && !o->overwrite) {
        CX_TRY(outpath_check(path, OWNER_PREDICT, 0, "--out"));
        if (!outpath_read_mark(path, mark, sizeof mark) && !io_read_file(path, &buf, &n)) {
            cJSON *j = cJSON_ParseWithLength((const char *)buf, n);
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "sha256"), *w = cJSON_GetObjectItemCaseSensitive(j, "weights");
            cx_status st = CX_OK;
            if (cJSON_IsString(h) && strcmp(h->valuestring, m->weights_sha256))
                st = CX_FAIL(CX_EARG, "--out %s holds masks predicted with other weights (%s, SHA-256 %.12s...; these are "
                             "%s, %.12s...): the two would mix unnoticed. Choose another --out, or pass --overwrite to "
                             "predict into it anyway", out, cJSON_IsString(w) ? w->valuestring : "?", h->valuestring,
                             o->weights, m->weights_sha256);
            cJSON_Delete(j);
            free(buf);
            CX_TRY(st);
        }
    }
    if (!write) return CX_OK;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "software", OWNER_PREDICT);
    char *safe = text_utf8_safe(o->weights);
    cJSON_AddStringToObject(j, "weights", safe);
    free(safe);
    cJSON_AddStringToObject(j, "sha256", m->weights_sha256);
    cJSON_AddNumberToObject(j, "img_size", m->img_size);
    cx_status st = io_atomic_write_json(path, j);
    cJSON_Delete(j);
    if (st) cx_error_context("--out %s: nothing was predicted", out);
    return st;
}

static void say(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(FILE *log, const char *fmt, ...) {
    if (!log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fflush(log);
}

// A JPEG that the GPU's decoder was to take, decoded here after all (the decoder
// declined it or failed on its batch); its size is the header's, as planned.
static void pred_decode_here(PredPipe *p, PredSlot *s, int i, int64_t f) {
    cx_status st = image_decode(s->jpeg[i], s->jpeg_n[i], p->files[f], 3, &s->im[i]);
    free(s->jpeg[i]);
    s->jpeg[i] = NULL;
    if (st || s->im[i].w != s->pw[i] || s->im[i].h != s->ph[i]) {
        if (!st) CX_FAIL(CX_EFORMAT, "%s: the JPEG's header and its image disagree on the size", p->files[f]);
        pred_error(p);
        s->failed[i] = 1;
    }
}

// Batches of at most 8 photos of a dense model on a GPU replay the forward as one CUDA
// graph, where launching ~1,200 kernels one by one costs more than they run (batch 1 on
// an H100: 16.4 -> 7.7 ms a photo); at 64 the GPU is the limit and a graph measured no
// faster (docs/PERF.md, "predict"). CAMOXPERT_CUDA_GRAPH=0: op by op (docs/GPU.md).
static int graph_batches(const Model *m, int B) {
    const char *cg = getenv("CAMOXPERT_CUDA_GRAPH");
    return m->rt->device == DEV_CUDA && !m->cfg.sparse && B <= 8 && !(cg && !strcmp(cg, "0"));
}

// One batch on the GPU path (pipeline.h): photos decoded on the host go up as they are,
// JPEGs the GPU's decoder takes go up as files and are decoded there; the network's
// input (ops_photo_input) and the masks at each photo's size (ops_mask_export) are made
// there; the masks and the logits (for the check of non-finite values) come down into
// the slot. *out: the forward's outputs (routing), on the device.
static void gpu_batch(PredPipe *pp, PredSlot *sl, Model *m, const PipelineOptions *o, CamoXpertOutputs *out) {
    Runtime *rt = m->rt;
    OpCtx *op = &rt->ctx.op;
    const int n = sl->n, S = pp->S;
    const int64_t f0 = sl->batch * pp->B;
    const double t0 = cx_time_s();
    int *gj = cx_malloc(sizeof(int) * (size_t)n), ng = 0;
    for (int i = 0; i < n; i++)
        if (sl->jpeg[i]) {
            if (ops_jpeg_supported(pp->jpeg_dec, sl->jpeg[i], sl->jpeg_n[i])) gj[ng++] = i;
            else pred_decode_here(pp, sl, i, f0 + i);   // a sub-sampling the engine lacks (4:1:1)
        }
    runtime_step_reset(rt);
    arena_reset(&pp->io);
    int64_t *box = cx_malloc(sizeof(int64_t) * 4 * (size_t)n), tot = 0;
    for (int i = 0; i < n; i++) {
        box[4 * i] = tot, box[4 * i + 1] = sl->ph[i], box[4 * i + 2] = sl->pw[i], box[4 * i + 3] = sl->jpeg[i] != NULL;
        tot += 3 * (int64_t)sl->pw[i] * sl->ph[i];
    }
    Tensor src = tensor_new(&pp->io, DT_U8, 1, (int64_t[]){ tot });
    if (ng) {
        const uint8_t **data = cx_malloc(sizeof *data * (size_t)ng);
        size_t *len = cx_malloc(sizeof *len * (size_t)ng);
        uint8_t **dst = cx_malloc(sizeof *dst * (size_t)ng);
        int *w = cx_malloc(sizeof(int) * 2 * (size_t)ng), *h = w + ng;
        for (int k = 0; k < ng; k++) {
            int i = gj[k];
            data[k] = sl->jpeg[i], len[k] = sl->jpeg_n[i], dst[k] = (uint8_t *)src.data + box[4 * i];
            w[k] = sl->pw[i], h[k] = sl->ph[i];
        }
        if (ops_jpeg_decode(op, pp->jpeg_dec, ng, data, len, dst, w, h)) {
            if (!pp->jpeg_noted)
                say(o->log, "note: %s; this batch's JPEGs decode on the CPU\n", cx_errmsg());
            pp->jpeg_noted = 1;
            for (int k = 0; k < ng; k++) pred_decode_here(pp, sl, gj[k], f0 + gj[k]), box[4 * gj[k] + 3] = 0;
        } else pp->n_gpu_jpeg += ng;
        free(data), free(len), free(dst), free(w);
    }
    for (int i = 0; i < n; i++)
        if (!sl->jpeg[i] && !sl->failed[i]) {
            Tensor d = tensor_slice0(&src, box[4 * i], box[4 * i + 1] * box[4 * i + 2] * 3);
            Tensor hv = tensor_view(sl->im[i].px, DT_U8, 1, d.shape);
            tensor_upload(&d, &hv);
        }
    Tensor bh = tensor_view(box, DT_I64, 2, (int64_t[]){ n, 4 }), bd = tensor_new(&pp->io, DT_I64, 2, bh.shape);
    tensor_upload(&bd, &bh);
    Tensor x = tensor_new4(&rt->act, rt->dtype, n, S, S, 3);
    ops_photo_input(op, &x, &src, &bd, AUG_MEAN, AUG_STD);
    runtime_sync(rt);   // the three parts timed apart (a sync costs microseconds beside a batch's 100 ms)
    const double t1 = cx_time_s();
    Tensor pred = infer_forward_device(m, &x, out), lg = pred;
    if (pred.dtype != DT_F32) {
        lg = tensor_new(&rt->act, DT_F32, pred.ndim, pred.shape);
        copy(op, &lg, &pred);
    }
    runtime_sync(rt);
    const double t2 = cx_time_s();
    int64_t mt = 0;
    for (int i = 0; i < n; i++) {
        box[4 * i] = sl->moff[i] = mt, box[4 * i + 1] = sl->ph[i], box[4 * i + 2] = sl->pw[i], box[4 * i + 3] = 0;
        mt += (int64_t)sl->pw[i] * sl->ph[i];
    }
    Tensor md = tensor_new(&pp->io, DT_I64, 2, bh.shape);
    tensor_upload(&md, &bh);
    Tensor masks = tensor_new(&pp->io, DT_U8, 1, (int64_t[]){ mt });
    ops_mask_export(op, &masks, &lg, &md);
    sl->masks = cx_realloc(sl->masks, (size_t)mt);
    Tensor mh = tensor_view(sl->masks, DT_U8, 1, masks.shape), lh = tensor_view(sl->logits, DT_F32, lg.ndim, lg.shape);
    tensor_download(&mh, &masks);
    tensor_download(&lh, &lg);
    free(box), free(gj);
    pp->gpu_s[0] += t1 - t0, pp->gpu_s[1] += t2 - t1, pp->gpu_s[2] += cx_time_s() - t2;
}

// Runs the network on every batch in order, as the workers decode them; writes the
// routing files. The slots' bookkeeping is PredPipe's.
static void run_batches(PredPipe *pp, Model *m, const PipelineOptions *o, PipelineResult *r, double t0) {
    const int B = pp->B, S = pp->S, nf = pp->nf, sparse = m->cfg.sparse;
    const int64_t nb = (nf + B - 1) / B;
    const int use_graph = !pp->gpu_io && graph_batches(m, B);
    RuntimeGraph graph = { 0 };
    int graph_tried = 0;
    double last_report = t0;
    for (int64_t j = 0; j < nb; j++) {
        PredSlot *sl = &pp->slot[j % pp->R];
        double tw = cx_time_s();
        pthread_mutex_lock(&pp->mu);
        while (!(sl->batch == j && sl->decoded == sl->n)) pthread_cond_wait(&pp->cv, &pp->mu);
        pthread_mutex_unlock(&pp->mu);
        double tn = cx_time_s();
        r->wait_s += tn - tw;
        Tensor in = tensor_view4(sl->x, DT_F32, sl->n, S, S, 3), pred = { 0 };
        CamoXpertOutputs out;
        if (use_graph && sl->n == B) {   // full small batches of a dense model on a GPU: one CUDA graph
            if (!graph_tried) {
                runtime_graph_capture(m->rt, &graph, &in, infer_forward_pred, m->net);
                graph_tried = 1;
                if (!graph.exec) say(o->log, "note: no CUDA graph of the forward (%s): running it op by op\n", graph.why);
            }
            if (graph.exec) pred = runtime_graph_run(m->rt, &graph, &in);
        }
        int forwarded = 0;
        if (pp->gpu_io) gpu_batch(pp, sl, m, o, &out), forwarded = 1;
        else {
            if (!pred.data) pred = infer_forward(m, &in, &out), forwarded = 1;
            memcpy(sl->logits, tensor_f32(&pred), sizeof(float) * (size_t)sl->n * S * S);
        }
        r->net_s += cx_time_s() - tn;
        // A non-finite value anywhere in the network is an error naming the photo and the
        // first module whose output went non-finite: no mask of NaN (black) or of what a ReLU
        // made of one (plausible, wrong) is written as if it were one. Under a CUDA graph only
        // the final logits are seen (its intermediates are not kept): those are checked.
        char (*what)[200] = cx_calloc((size_t)sl->n, sizeof *what);
        if (forwarded) infer_nonfinite_images(m, &out, sl->n, what);
        for (int i = 0; i < sl->n; i++) {
            const float *lg = sl->logits + (size_t)i * S * S;
            int64_t k = 0;
            while (k < (int64_t)S * S && isfinite(lg[k])) k++;
            if (k < (int64_t)S * S && !what[i][0]) snprintf(what[i], 200, "the final prediction");
            if (!what[i][0] || sl->failed[i]) continue;
            CX_FAIL(CX_ENUMERIC, "%s: the network computed a non-finite value on this photo, first in the output of "
                    "%s: the weights are damaged or from a run that diverged; no mask written", pp->files[j * B + i],
                    what[i]);
            pred_error(pp);
            sl->failed[i] = 1;
        }
        free(what);
        for (int i = 0; i < sl->n && o->routing && sparse; i++) {
            if (sl->failed[i]) continue;
            char name[1024], path[4200];
            int64_t f = j * B + i;
            base_name(pp->files[f], name, sizeof name);
            snprintf(path, sizeof path, "%s/%s", pp->out, name);
            if (write_routing(path, pp->files[f], &out, i, m->cfg.routing == MOE_ROUTING_SPATIAL, sl->pw[i], sl->ph[i]))
                pred_error(pp);
        }
        pthread_mutex_lock(&pp->mu);
        sl->forwarded = 1;
        pthread_cond_broadcast(&pp->cv);
        pthread_mutex_unlock(&pp->mu);
        double now = cx_time_s();
        if (now - last_report >= 10 && j + 1 < nb) {
            int64_t done_n = (j + 1) * B;
            say(o->log, "predict: %s%s%lld/%d photos through the network, %.1f images/s\n", pp->name ? pp->name : "",
                pp->name ? ": " : "", (long long)done_n, nf, done_n / (now - t0));
            last_report = now;
        }
    }
    runtime_graph_free(m->rt, &graph);
}

cx_status pipeline_predict(const PipelineOptions *o, PipelineResult *r) {
    memset(r, 0, sizeof *r);
    // An --img-size other than the checkpoint's training size: said first (a wide
    // departure changes what the network sees).
    CamoXpertConfig ck;
    int ck_size = 0;
    if (o->img_size && !weights_read_config(o->weights, &ck, &ck_size) && ck_size && ck_size != o->img_size)
        say(o->log, "note: --img-size %d: the checkpoint was trained at %dx%d; predicting at %dx%d as asked\n",
            o->img_size, ck_size, ck_size, o->img_size, o->img_size);
    cx_error_clear();
    if (o->groups && o->n_groups < 1) return CX_FAIL(CX_EINTERNAL, "pipeline_predict: no groups of photos");
    for (int i = 0; o->groups && i < o->n_groups; i++)
        if (o->groups[i].n < 1) return CX_FAIL(CX_EINTERNAL, "pipeline_predict: the group %s has no photos", o->groups[i].out);
    Runtime rt;
    CX_TRY(runtime_init(&rt, o->device, o->precision, 1, 0));
    say(o->log, "device: %s\n", rt.desc);
    int workers = o->workers ? o->workers : rt.device == DEV_CUDA ? cx_threads_default() : 1;
    Model m = { 0 };
    Plan plan = { .o = o, .other = 256.0 * (1 << 20) + 64.0 * (1 << 20), .n_g = o->groups ? o->n_groups : 1 };
    plan.g = cx_calloc((size_t)plan.n_g, sizeof *plan.g);
    for (int i = 0; i < plan.n_g; i++) {
        PlanGroup *g = &plan.g[i];
        g->lock = -1;
        if (!o->groups) {
            g->input = o->input, g->out = o->out;
            continue;
        }
        const PipelineGroup *pg = &o->groups[i];
        g->name = pg->name, g->input = pg->input, g->out = pg->out, g->nf = pg->n;
        g->files = cx_malloc(sizeof *g->files * (size_t)pg->n);
        for (int f = 0; f < pg->n; f++) g->files[f] = cx_strdup(pg->files[f]);
    }
    PredPipe pp = { .R = 3, .overlay = o->overlay };
    pthread_t *th = NULL;
    cx_status st = model_open(&m, &(ModelSpec){ .weights = o->weights, .config = o->config,
                                                .config_given = o->config_given, .img_size = o->img_size,
                                                .hash_weights = 1, .inference = 1,
                                                .rt = &rt, .check = plan_work, .check_arg = &plan });
    // Every group's folder is checked before any is written (the weights that wrote it).
    for (int i = 0; !st && i < plan.n_g; i++) st = out_record(o, &m, plan.g[i].out, 0);
    if (!st) runtime_reserve(&rt, plan.me.activations, plan.me.scratch);
    if (st) goto done;
    for (int i = 0; i < plan.n_g; i++) {
        PlanGroup *g = &plan.g[i];
        if ((st = io_make_dirs(g->out))) goto done;
        if (g->n_hidden)
            say(o->log, "note: %d hidden file%s (a name starting with '.') in %s left out; rename %s to predict %s\n",
                g->n_hidden, g->n_hidden == 1 ? "" : "s", g->input, g->n_hidden == 1 ? "it" : "them",
                g->n_hidden == 1 ? "it" : "them");
        if (g->n_own)
            say(o->log, "note: %d file%s in %s written by camoxpert predict (masks, overlays) are not photos: left out\n",
                g->n_own, g->n_own == 1 ? "" : "s", g->input);
        // The directory's lock (core/io.h, the lock rule): shared with other predicts, refused
        // while train or synth owns the folder; the first to hold it alone removes the
        // temporary files of killed earlier writes.
        IoDirLock lk;
        if ((st = io_dir_lock(g->out, 0, &lk))) {
            cx_error_context("--out %s", g->out);
            goto done;
        }
        g->lock = lk.fd;
        if ((st = out_record(o, &m, g->out, 1))) goto done;
        int stale = lk.removed;
        if (stale > 0)
            say(o->log, "note: removed %d temporary file%s a killed earlier run left in %s\n", stale, stale == 1 ? "" : "s",
                g->out);
    }
    const int B = plan.batch, S = m.img_size, nf = plan.nf;
    char mem[32];
    say(o->log, "model: %s on %s from %s; input %dx%d; %d image%s; batch %d, %d worker%s; memory about %s at peak\n",
        m.cfg.sparse ? "sparse" : "dense", m.cfg.backbone, o->weights, S, S, nf, nf == 1 ? "" : "s", B, workers,
        workers == 1 ? "" : "s", memory_str(plan.me.total + plan.other, mem, sizeof mem));
    pp.B = B, pp.S = S;
    // The GPU path (pipeline.h): on a GPU unless the batches are graphs, or
    // CAMOXPERT_PREDICT_GPU_IO=0 (docs/GPU.md); JPEGs decode there unless overlays need
    // the photos on the host, or CAMOXPERT_NVJPEG=0.
    const char *gio = getenv("CAMOXPERT_PREDICT_GPU_IO"), *nvj = getenv("CAMOXPERT_NVJPEG");
    pp.gpu_io = rt.device == DEV_CUDA && !(gio && !strcmp(gio, "0")) && !graph_batches(&m, B);
    if (pp.gpu_io) {
        char desc[96] = "", why[200] = "";
        if (o->overlay) snprintf(why, sizeof why, "overlays need the photos on the host");
        else if (nvj && !strcmp(nvj, "0")) snprintf(why, sizeof why, "CAMOXPERT_NVJPEG=0");
        else if (ops_jpeg_open(&rt.ctx.op, &pp.jpeg_dec, desc, sizeof desc)) snprintf(why, sizeof why, "%s", cx_errmsg());
        cx_error_clear();
        if (pp.jpeg_dec)
            say(o->log, "photos: JPEGs decoded on the GPU (%s; other photos on the CPU), resized and their masks made "
                "there\n", desc);
        else
            say(o->log, "photos: decoded on the CPU (%s), resized and their masks made on the GPU\n", why);
    }
    if (pp.gpu_io) arena_init_on(&pp.io, "predict's photos and masks", 64 << 20, DEV_CUDA);
    pthread_mutex_init(&pp.mu, NULL);
    pthread_cond_init(&pp.cv, NULL);
    pp.slot = cx_calloc((size_t)pp.R, sizeof(PredSlot));
    for (int k = 0; k < pp.R; k++) {
        PredSlot *sl = &pp.slot[k];
        sl->im = cx_calloc((size_t)B, sizeof(Image8));
        sl->failed = cx_calloc((size_t)B, sizeof(int));
        sl->pw = cx_calloc((size_t)B * 2, sizeof(int)), sl->ph = sl->pw + B;
        sl->jpeg = cx_calloc((size_t)B, sizeof *sl->jpeg);
        sl->jpeg_n = cx_calloc((size_t)B, sizeof *sl->jpeg_n);
        sl->moff = cx_calloc((size_t)B, sizeof *sl->moff);
        sl->x = pp.gpu_io ? NULL : cx_malloc(sizeof(float) * (size_t)B * S * S * 3);
        sl->logits = cx_malloc(sizeof(float) * (size_t)B * S * S);
        sl->pend = cx_malloc(sizeof(AtomicFile) * 2 * (size_t)B);
        sl->pend_mask = cx_malloc(sizeof(int) * 2 * (size_t)B);
    }
    th = cx_calloc((size_t)workers, sizeof(pthread_t));
    const double t_all = cx_time_s();
    for (int i = 0; i < plan.n_g; i++) {   // each group through the ring in turn
        const PlanGroup *g = &plan.g[i];
        if (g->name) say(o->log, "%s: %d photo%s from %s into %s\n", g->name, g->nf, g->nf == 1 ? "" : "s", g->input, g->out);
        pp.nf = g->nf, pp.files = g->files, pp.name = g->name, pp.out = g->out;
        pp.next_decode = pp.next_write = 0;
        pp.n_masks = pp.n_failed = 0;
        for (int k = 0; k < pp.R; k++) pred_slot_fill(&pp, &pp.slot[k], k);
        const double t0 = cx_time_s();
        int n_th = 0;
        for (; n_th < workers; n_th++)
            if (pthread_create(&th[n_th], NULL, pred_worker, &pp)) break;
        if (n_th == 0) {
            st = CX_FAIL(CX_EINTERNAL, "could not start a worker thread");
            goto done;
        }
        run_batches(&pp, &m, o, r, t0);
        for (int k = 0; k < n_th; k++) pthread_join(th[k], NULL);
        r->n_masks += pp.n_masks, r->n_failed += pp.n_failed;
        if (g->name)
            say(o->log, "%s: wrote %d mask%s in %.2f s%s\n", g->name, pp.n_masks, pp.n_masks == 1 ? "" : "s",
                cx_time_s() - t0, pp.n_failed ? " (some photos failed: errors above)" : "");
    }
    r->seconds = cx_time_s() - t_all;
    {   // the model's memory as it ran, beside the estimate it was planned with
        const double pb = 4.0 * (double)m.pt.numel, ab = (double)rt.act.peak, sb = (double)rt.scratch.peak;
        const double ib = pp.gpu_io ? (double)pp.io.peak : 0;
        char e1[32], e2[32], e3[32], e4[32], e5[32], e6[32], io[64] = "";
        r->peak_bytes = pb + ab + sb + ib;
        if (pp.gpu_io) snprintf(io, sizeof io, ", photos and masks %s", memory_str(ib, e6, sizeof e6));
        say(o->log, "memory: peak %s (parameters %s, activations %s, kernels' scratch %s%s; the estimate was %s)\n",
            memory_str(r->peak_bytes, e1, sizeof e1), memory_str(pb, e2, sizeof e2), memory_str(ab, e3, sizeof e3),
            memory_str(sb, e4, sizeof e4), io, memory_str(plan.me.total, e5, sizeof e5));
    }
    r->decode_s = pp.decode_s, r->write_s = pp.write_s;
    r->gpu_io = pp.gpu_io, r->n_gpu_decoded = pp.n_gpu_jpeg;
    for (int k = 0; k < 3; k++) r->gpu_s[k] = pp.gpu_s[k];
done:
    r->n_photos = plan.nf, r->batch = plan.batch, r->workers = workers, r->sparse = m.cfg.sparse;
    if (pp.slot) {
        for (int k = 0; k < pp.R; k++) {
            for (int i = 0; i < pp.B; i++) image_free(&pp.slot[k].im[i]), free(pp.slot[k].jpeg[i]);
            free(pp.slot[k].im), free(pp.slot[k].failed), free(pp.slot[k].x), free(pp.slot[k].logits);
            free(pp.slot[k].pw), free(pp.slot[k].jpeg), free(pp.slot[k].jpeg_n), free(pp.slot[k].moff), free(pp.slot[k].masks);
            free(pp.slot[k].pend), free(pp.slot[k].pend_mask);
        }
        free(pp.slot);
        pthread_mutex_destroy(&pp.mu);
        pthread_cond_destroy(&pp.cv);
    }
    free(th);
    ops_jpeg_close(pp.jpeg_dec);
    if (pp.gpu_io) arena_free(&pp.io);
    for (int i = 0; i < plan.n_g; i++) {
        if (plan.g[i].lock >= 0) close(plan.g[i].lock);
        for (int f = 0; f < plan.g[i].nf; f++) free(plan.g[i].files[f]);
        free(plan.g[i].files);
    }
    free(plan.g);
    model_close(&m);
    runtime_free(&rt);
    return st;
}
