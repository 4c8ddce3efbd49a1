// loader.c — see loader.h. Work items are single samples (batch g, row j), so
// two workers share one batch; a ring of prefetch+1 slots holds the batch the
// consumer is using plus up to `prefetch` being filled. One mutex and two
// condition variables: `work` wakes workers when a slot frees, `ready` wakes the
// consumer when a batch completes.
#include "loader.h"
#include "augment.h"
#include "image.h"
#include <pthread.h>
#include <string.h>

LoaderConfig loader_config_default(void) {
    return (LoaderConfig){ .batch_size = 8, .size = 352, .workers = 2, .prefetch = 4, .seed = 0, .shuffle = 1,
                           .augment = 1, .drop_last = 0, .rank = 0, .world = 1, .cache = 0 };
}

#define SHUFFLE_STREAM 0x73687566666c65ULL   // "shuffle"

static int64_t per_rank(const Dataset *ds, const LoaderConfig *c) {
    return ((int64_t)ds->n + c->world - 1) / c->world;
}

void loader_epoch_order(const Dataset *ds, const LoaderConfig *c, int64_t epoch, int *order) {
    int n = ds->n;
    int *perm = cx_malloc(sizeof(int) * (size_t)n);   // (n) the epoch's permutation of all samples
    for (int i = 0; i < n; i++) perm[i] = i;
    if (c->shuffle) {
        Rng root = rng_init(c->seed);
        Rng sh = rng_split(&root, SHUFFLE_STREAM);
        Rng r = rng_split(&sh, (uint64_t)epoch);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint64_t)i + 1);
            int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
        }
    }
    // Pad by wrapping to a multiple of world; global batch j is positions [j·B·W, ...)
    // of the permutation, and rank r takes the r-th contiguous block of b_j of it (b_j:
    // the ranks' batch size, B or the shorter last one).
    const int64_t m = per_rank(ds, c), B = c->batch_size, W = c->world;
    for (int64_t k = 0; k < m; k++) {
        int64_t j = k / B, i = k % B, bj = m - j * B < B ? m - j * B : B;
        order[k] = perm[(j * B * W + c->rank * bj + i) % n];
    }
    free(perm);
}

cx_status loader_load_resized(const DataSample *s, int S, uint8_t *img, uint8_t *mask01, int *w, int *h) {
    Image8 im, m, r;
    CX_TRY(image_load(s->image, 3, &im));
    if (mask01) {
        cx_status st = image_load(s->mask, 1, &m);
        if (st) { image_free(&im); return st; }
        if (m.w != im.w || m.h != im.h) {
            st = CX_FAIL(CX_EFORMAT, "%s is %dx%d but its mask %s is %dx%d; the pair does not match",
                         s->image, im.w, im.h, s->mask, m.w, m.h);
            image_free(&im); image_free(&m);
            return st;
        }
        image_mask_resize_nearest(mask01, S, S, &m);
        image_free(&m);
    }
    if (w) *w = im.w;
    if (h) *h = im.h;
    if (im.w == S && im.h == S) memcpy(img, im.px, (size_t)S * S * 3);
    else {
        image_resize_bilinear(&im, S, S, &r);
        memcpy(img, r.px, (size_t)S * S * 3);
        image_free(&r);
    }
    image_free(&im);
    return CX_OK;
}

cx_status loader_load_sample(const Dataset *ds, const LoaderConfig *c, int64_t epoch, int index,
                             float *img, float *mask, int *w, int *h) {
    int S = c->size;
    uint8_t *buf = cx_malloc((size_t)S * S * 4);   // (S, S, 3) image then (S, S) mask
    cx_status st = loader_load_resized(&ds->s[index], S, buf, mask ? buf + (size_t)S * S * 3 : NULL, w, h);
    if (!st) {
        AugParams p;
        if (c->augment) augment_draw(&p, c->seed, epoch, index);
        else augment_none(&p);
        augment_apply(img, mask, buf, mask ? buf + (size_t)S * S * 3 : NULL, S, &p);
    }
    free(buf);
    return st;
}

// ---- the threaded loader --------------------------------------------------------------
typedef struct {
    uint8_t *px;   // (S, S, 3) image then (S, S) mask, u8
    int w, h;
} CacheEntry;

typedef struct {
    int64_t g;            // global batch number held (epoch * steps_per_epoch + step); -1 free
    int n, done;          // samples in the batch, samples finished
    cx_status st;         // first failure among its samples
    char err[1024];
    Batch b;
    float *img, *mask;    // (N, S, S, 3), (N, S, S, 1)
    int *index, *ow, *oh; // (N) each
    const DataSample **sample;  // (N)
} Slot;

struct Loader {
    const Dataset *ds;
    LoaderConfig c;
    int64_t spe;              // steps (batches) per epoch for this rank
    int64_t m;                // samples per epoch for this rank
    int64_t end_g;            // stop before this global batch
    int nslots;
    Slot *slots;              // (nslots)
    pthread_t *threads;       // (workers)
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    int stop;
    int64_t claim_g; int claim_j;   // the next work item
    int64_t out_g;            // the next batch the consumer gets
    int64_t held_g;           // the batch the consumer holds (its slot is not reused); -1 none
    int64_t order_epoch;      // epoch whose order is in `order`
    int *order;               // (m) this rank's order for order_epoch
    CacheEntry **cache;       // (ds->n) NULL until loaded; entries published by compare-and-swap
    size_t cache_bytes;       // updated atomically
};

static int batch_rows(const Loader *L, int64_t step) {
    int64_t left = L->m - step * L->c.batch_size;
    return (int)(left < L->c.batch_size ? left : L->c.batch_size);
}

// Called with the lock held when a worker claims row 0 of batch g: fills its indices.
static void slot_begin(Loader *L, Slot *s, int64_t g) {
    int64_t e = g / L->spe, step = g % L->spe;
    if (L->order_epoch != e) {
        loader_epoch_order(L->ds, &L->c, e, L->order);
        L->order_epoch = e;
    }
    s->g = g;
    s->n = batch_rows(L, step);
    s->done = 0;
    s->st = CX_OK;
    s->err[0] = 0;
    for (int j = 0; j < s->n; j++) {
        int idx = L->order[step * L->c.batch_size + j];
        s->index[j] = idx;
        s->sample[j] = &L->ds->s[idx];
    }
    int S = L->c.size;
    s->b.n = s->n;
    s->b.epoch = e;
    s->b.step = step;
    s->b.image = tensor_view4(s->img, DT_F32, s->n, S, S, 3);
    s->b.mask = tensor_view4(s->mask, DT_F32, s->n, S, S, 1);
    s->b.index = s->index;
    s->b.sample = s->sample;
    s->b.orig_w = s->ow;
    s->b.orig_h = s->oh;
}

// Decodes (or takes from the cache) and augments row j of slot s.
static cx_status load_row(Loader *L, Slot *s, int j, uint8_t *scratch) {
    int S = L->c.size, idx = s->index[j];
    size_t plane = (size_t)S * S;
    const uint8_t *px;
    int w, h;
    CacheEntry *ce = L->c.cache ? __atomic_load_n(&L->cache[idx], __ATOMIC_ACQUIRE) : NULL;
    if (ce) { px = ce->px; w = ce->w; h = ce->h; }
    else {
        CX_TRY(loader_load_resized(&L->ds->s[idx], S, scratch, scratch + plane * 3, &w, &h));
        px = scratch;
        if (L->c.cache) {
            CacheEntry *e = cx_malloc(sizeof *e);
            e->px = cx_malloc(plane * 4);
            memcpy(e->px, scratch, plane * 4);
            e->w = w; e->h = h;
            CacheEntry *expect = NULL;
            if (__atomic_compare_exchange_n(&L->cache[idx], &expect, e, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
                __atomic_add_fetch(&L->cache_bytes, plane * 4, __ATOMIC_RELAXED);
            else { free(e->px); free(e); }   // another worker cached it first
        }
    }
    AugParams p;
    if (L->c.augment) augment_draw(&p, L->c.seed, s->b.epoch, idx);
    else augment_none(&p);
    augment_apply(s->img + (size_t)j * plane * 3, s->mask + (size_t)j * plane, px, px + plane * 3, S, &p);
    s->ow[j] = w;
    s->oh[j] = h;
    return CX_OK;
}

static void *worker_main(void *arg) {
    Loader *L = arg;
    int S = L->c.size;
    uint8_t *scratch = cx_malloc((size_t)S * S * 4);   // (S, S, 3) image + (S, S) mask
    pthread_mutex_lock(&L->mu);
    for (;;) {
        // A slot is free for batch g when g is fewer than nslots ahead of the held batch.
        int64_t base = L->held_g >= 0 ? L->held_g : L->out_g;
        while (!L->stop && (L->claim_g >= L->end_g || L->claim_g >= base + L->nslots)) {
            pthread_cond_wait(&L->work, &L->mu);
            base = L->held_g >= 0 ? L->held_g : L->out_g;
        }
        if (L->stop) break;
        int64_t g = L->claim_g;
        int j = L->claim_j;
        Slot *s = &L->slots[g % L->nslots];
        if (j == 0) slot_begin(L, s, g);
        if (++L->claim_j == s->n) { L->claim_g++; L->claim_j = 0; }
        int failed = s->st != CX_OK;   // after a failure in this batch, skip its other rows
        pthread_mutex_unlock(&L->mu);
        cx_status st = failed ? CX_OK : load_row(L, s, j, scratch);
        pthread_mutex_lock(&L->mu);
        if (st && !s->st) { s->st = st; snprintf(s->err, sizeof s->err, "%s", cx_errmsg()); }
        if (++s->done == s->n) pthread_cond_broadcast(&L->ready);
    }
    pthread_mutex_unlock(&L->mu);
    free(scratch);
    return NULL;
}

cx_status loader_open(Loader **out, const Dataset *ds, const LoaderConfig *cfg, int64_t epoch, int64_t step, int64_t end_epoch) {
    *out = NULL;
    LoaderConfig c = *cfg;
    if (ds->n <= 0) return CX_FAIL(CX_EARG, "the dataset is empty; nothing to load");
    if (c.batch_size < 1 || c.size < 8 || c.size > 4096 || c.workers < 1 || c.workers > 256 || c.prefetch < 1 || c.world < 1 ||
        c.rank < 0 || c.rank >= c.world)
        return CX_FAIL(CX_EARG, "bad loader settings: batch %d, size %d, workers %d, prefetch %d, rank %d of %d "
                       "(need batch >= 1, 8 <= size <= 4096, workers 1..256, prefetch >= 1, 0 <= rank < world)",
                       c.batch_size, c.size, c.workers, c.prefetch, c.rank, c.world);
    Loader *L = cx_calloc(1, sizeof *L);
    L->ds = ds;
    L->c = c;
    L->m = per_rank(ds, &c);
    L->spe = c.drop_last ? L->m / c.batch_size : (L->m + c.batch_size - 1) / c.batch_size;
    if (L->spe == 0) {
        free(L);
        return CX_FAIL(CX_EARG, "batch size %d is larger than this rank's %lld samples and the last partial batch is dropped; lower the batch size",
                       c.batch_size, (long long)per_rank(ds, &c));
    }
    if (epoch < 0 || step < 0 || step >= L->spe) {
        int64_t spe = L->spe;
        free(L);
        return CX_FAIL(CX_EARG, "cannot resume at epoch %lld step %lld: an epoch has %lld steps",
                       (long long)epoch, (long long)step, (long long)spe);
    }
    L->end_g = end_epoch > 0 ? end_epoch * L->spe : INT64_MAX;
    L->claim_g = L->out_g = epoch * L->spe + step;
    L->held_g = -1;
    L->order_epoch = -1;
    L->order = cx_malloc(sizeof(int) * (size_t)L->m);
    if (c.cache) L->cache = cx_calloc((size_t)ds->n, sizeof *L->cache);
    L->nslots = c.prefetch + 1;
    L->slots = cx_calloc((size_t)L->nslots, sizeof *L->slots);
    size_t plane = (size_t)c.size * c.size, N = (size_t)c.batch_size;
    for (int i = 0; i < L->nslots; i++) {
        Slot *s = &L->slots[i];
        s->g = -1;
        s->img = cx_malloc(sizeof(float) * N * plane * 3);
        s->mask = cx_malloc(sizeof(float) * N * plane);
        s->index = cx_malloc(sizeof(int) * N * 3);
        s->ow = s->index + N;
        s->oh = s->ow + N;
        s->sample = cx_malloc(sizeof *s->sample * N);
    }
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->work, NULL);
    pthread_cond_init(&L->ready, NULL);
    L->threads = cx_calloc((size_t)c.workers, sizeof *L->threads);
    for (int i = 0; i < c.workers; i++) {
        if (pthread_create(&L->threads[i], NULL, worker_main, L) != 0) {
            L->c.workers = i;
            loader_close(L);
            return CX_FAIL(CX_EINTERNAL, "cannot start loader thread %d of %d", i + 1, c.workers);
        }
    }
    *out = L;
    return CX_OK;
}

cx_status loader_next(Loader *L, const Batch **b) {
    *b = NULL;
    pthread_mutex_lock(&L->mu);
    // Give the previous batch's slot back to the workers.
    L->held_g = -1;
    pthread_cond_broadcast(&L->work);
    if (L->out_g >= L->end_g) { pthread_mutex_unlock(&L->mu); return CX_OK; }
    Slot *s = &L->slots[L->out_g % L->nslots];
    while (!(s->g == L->out_g && s->done == s->n)) pthread_cond_wait(&L->ready, &L->mu);
    if (s->st) {
        cx_status st = s->st;
        pthread_mutex_unlock(&L->mu);
        return CX_FAIL(st, "%s", s->err);
    }
    L->held_g = L->out_g++;
    pthread_mutex_unlock(&L->mu);
    *b = &s->b;
    return CX_OK;
}

int64_t loader_steps_per_epoch(const Loader *L) { return L->spe; }
int64_t loader_samples_per_epoch(const Loader *L) { return L->m; }
size_t loader_cache_bytes(const Loader *L) { return __atomic_load_n(&L->cache_bytes, __ATOMIC_RELAXED); }

void loader_close(Loader *L) {
    if (!L) return;
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_broadcast(&L->work);
    pthread_mutex_unlock(&L->mu);
    for (int i = 0; i < L->c.workers; i++) pthread_join(L->threads[i], NULL);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->work);
    pthread_cond_destroy(&L->ready);
    for (int i = 0; i < L->nslots; i++) {
        free(L->slots[i].img); free(L->slots[i].mask); free(L->slots[i].index); free(L->slots[i].sample);
    }
    if (L->cache) {
        for (int i = 0; i < L->ds->n; i++) if (L->cache[i]) { free(L->cache[i]->px); free(L->cache[i]); }
        free(L->cache);
    }
    free(L->slots);
    free(L->threads);
    free(L->order);
    free(L);
}
