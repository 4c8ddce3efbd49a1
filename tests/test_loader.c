// test_loader.c — augmentation (determinism, probabilities, geometry, jitter,
// normalisation) and the threaded loader (same batches with 1 or 2 workers, equal
// to the synchronous path, resume from a cursor, sharding, partial batches,
// cache, and a file that disappears mid-run).
#include "test.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include <string.h>
#include <stdio.h>
#include <unistd.h>

TEST(augment_is_deterministic_with_reference_probabilities) {
    AugParams a, b;
    augment_draw(&a, 5, 3, 17);
    augment_draw(&b, 5, 3, 17);
    CHECK(!memcmp(&a, &b, sizeof a));
    int diff = 0;
    for (int i = 0; i < 50; i++) {
        augment_draw(&b, 5, 4, i);
        augment_draw(&a, 5, 3, i);
        diff += memcmp(&a, &b, sizeof a) != 0;
    }
    CHECK(diff > 30);
    int n = 20000, h = 0, v = 0, r = 0, j = 0, rk[4] = { 0 };
    for (int i = 0; i < n; i++) {
        augment_draw(&a, 1, 0, i);
        h += a.hflip; v += a.vflip; r += a.rot90 != 0; j += a.jitter; rk[a.rot90]++;
        if (a.jitter) CHECK(a.brightness >= 0.9f && a.brightness <= 1.1f && a.saturation >= 0.9f && a.contrast <= 1.1f);
    }
    CHECK_NEAR(h / (double)n, 0.5, 0.02);
    CHECK_NEAR(v / (double)n, 0.2, 0.015);
    CHECK_NEAR(r / (double)n, 0.15, 0.015);   // p 0.2, k uniform in 0..3
    CHECK_NEAR(j / (double)n, 0.2, 0.015);
    CHECK(rk[1] > 800 && rk[2] > 800 && rk[3] > 800);
}

TEST(augment_geometry_jitter_and_normalisation) {
    enum { S = 4 };
    uint8_t src[S * S * 3], m[S * S];
    for (int i = 0; i < S * S; i++) { src[3 * i] = (uint8_t)(i * 10); src[3 * i + 1] = 100; src[3 * i + 2] = 200; m[i] = i == 1; }
    float img[S * S * 3], mask[S * S];
    AugParams p;
    augment_none(&p);
    augment_apply(img, mask, src, m, S, &p);
    // (x / 255 - mean) / std, per channel.
    CHECK_NEAR(img[3 * 5], (50 / 255.0 - 0.485) / 0.229, 1e-5);
    CHECK_NEAR(img[3 * 5 + 1], (100 / 255.0 - 0.456) / 0.224, 1e-5);
    CHECK_NEAR(img[3 * 5 + 2], (200 / 255.0 - 0.406) / 0.225, 1e-5);
    CHECK(mask[1] == 1 && mask[0] == 0);
    // Decode the red channel back to the source pixel index.
#define SRC_AT(k) ((int)((img[3 * (k)] * 0.229f + 0.485f) * 255 + 0.5f) / 10)
    p.hflip = 1;
    augment_apply(img, mask, src, m, S, &p);
    CHECK(SRC_AT(0) == 3 && SRC_AT(5) == 6 && mask[2] == 1);
    augment_none(&p);
    p.vflip = 1;
    augment_apply(img, mask, src, m, S, &p);
    CHECK(SRC_AT(0) == 12 && mask[13] == 1);
    augment_none(&p);
    p.rot90 = 1;   // np.rot90(a)[0][0] == a[0][S-1]; a[0][1] lands at row S-2, column 0
    augment_apply(img, mask, src, m, S, &p);
    CHECK(SRC_AT(0) == 3 && SRC_AT(S) == 2 && mask[2 * S] == 1);
    p.rot90 = 2;
    augment_apply(img, mask, src, m, S, &p);
    CHECK(SRC_AT(0) == 15 && mask[14] == 1);
    // All three: hflip, then vflip, then two quarter turns is the identity.
    p.hflip = p.vflip = 1;
    augment_apply(img, mask, src, m, S, &p);
    CHECK(SRC_AT(0) == 0 && SRC_AT(7) == 7 && mask[1] == 1);
#undef SRC_AT
    // Brightness alone: 100 -> 110 (rounded, clipped).
    augment_none(&p);
    p.jitter = 1;
    p.brightness = 1.1f;
    augment_apply(img, NULL, src, NULL, S, &p);
    CHECK_NEAR(img[1] * 0.224 + 0.456, 110 / 255.0, 1e-5);
    CHECK_NEAR(img[2] * 0.225 + 0.406, 220 / 255.0, 1e-5);
    // Saturation 0.9 on a gray pixel changes nothing; contrast pulls towards the mean.
    uint8_t g[S * S * 3];
    for (int i = 0; i < S * S * 3; i++) g[i] = i < S * S * 3 / 2 ? 50 : 150;
    augment_none(&p);
    p.jitter = 1; p.saturation = 0.9f;
    augment_apply(img, NULL, g, NULL, S, &p);
    CHECK_NEAR(img[0] * 0.229 + 0.485, 50 / 255.0, 1e-5);
    p.saturation = 1; p.contrast = 0.9f;   // mean 100: 50 -> 55, 150 -> 145
    augment_apply(img, NULL, g, NULL, S, &p);
    CHECK_NEAR(img[0] * 0.229 + 0.485, 55 / 255.0, 1e-5);
    CHECK_NEAR(img[S * S * 3 - 1] * 0.225 + 0.406, 145 / 255.0, 1e-5);
}

// A 10-sample dataset of small PNGs with distinct content and sizes.
static void make_set(Dataset *ds, char *root, size_t rn) {
    snprintf(root, rn, "%s", test_tmpdir());
    char p[1024];
    snprintf(p, sizeof p, "%s/Imgs", root); io_make_dirs(p);
    snprintf(p, sizeof p, "%s/GT", root); io_make_dirs(p);
    for (int i = 0; i < 10; i++) {
        Image8 im, m;
        int w = 20 + 3 * i, h = 16 + 2 * i;
        image_alloc(&im, w, h, 3);
        image_alloc(&m, w, h, 1);
        for (int k = 0; k < w * h; k++) {
            im.px[3 * k] = (uint8_t)(i * 20 + k % 7); im.px[3 * k + 1] = (uint8_t)(k * 3); im.px[3 * k + 2] = (uint8_t)(255 - i);
            m.px[k] = (k % w) < w / 2 ? 255 : 0;
        }
        snprintf(p, sizeof p, "%s/Imgs/s%d.png", root, i); image_save_png(p, &im);
        snprintf(p, sizeof p, "%s/GT/s%d.png", root, i); image_save_png(p, &m);
        image_free(&im);
        image_free(&m);
    }
    DatasetOptions o = { .root = root };
    dataset_open(ds, &o);
}

// Reads every batch of the stream into one buffer (image floats then mask floats per batch).
static float *drain(const Dataset *ds, LoaderConfig c, int64_t e0, int64_t s0, int64_t e1, int *nb, int64_t *first_epoch) {
    Loader *L;
    if (loader_open(&L, ds, &c, e0, s0, e1)) { test_fail(__FILE__, __LINE__, "%s", cx_errmsg()); return NULL; }
    size_t per = (size_t)c.batch_size * c.size * c.size * 4;
    float *all = NULL;
    const Batch *b;
    int k = 0;
    while (!loader_next(L, &b) && b) {
        all = cx_realloc(all, sizeof(float) * per * (k + 1));
        memset(all + per * k, 0, sizeof(float) * per);
        memcpy(all + per * k, b->image.data, tensor_nbytes(&b->image));
        memcpy(all + per * k + (size_t)c.batch_size * c.size * c.size * 3, b->mask.data, tensor_nbytes(&b->mask));
        if (k == 0 && first_epoch) *first_epoch = b->epoch;
        k++;
    }
    *nb = k;
    loader_close(L);
    return all;
}

TEST(loader_same_batches_with_any_worker_count_and_resume) {
    Dataset ds;
    char root[512];
    make_set(&ds, root, sizeof root);
    REQUIRE(ds.n == 10);
    LoaderConfig c = loader_config_default();
    c.batch_size = 4; c.size = 16; c.seed = 9; c.workers = 1; c.prefetch = 2;
    int n1, n2, n3;
    float *a = drain(&ds, c, 0, 0, 2, &n1, NULL);
    c.workers = 2; c.prefetch = 1;
    float *b = drain(&ds, c, 0, 0, 2, &n2, NULL);
    REQUIRE(a && b);
    size_t per = (size_t)c.batch_size * 16 * 16 * 4;
    CHECK(n1 == 6 && n2 == 6);   // 3 steps per epoch (4 + 4 + 2), 2 epochs
    CHECK(!memcmp(a, b, sizeof(float) * per * 6));
    // Resuming at (1, 1) gives exactly the last two batches.
    int64_t fe = -1;
    float *r = drain(&ds, c, 1, 1, 2, &n3, &fe);
    CHECK(n3 == 2 && fe == 1);
    CHECK(r && !memcmp(r, a + per * 4, sizeof(float) * per * 2));
    // Epochs differ (shuffle and augmentation are epoch-seeded).
    CHECK(memcmp(a, a + per * 3, sizeof(float) * per) != 0);
    free(r);
    // The cache changes nothing but speed.
    c.cache = 1;
    float *cc = drain(&ds, c, 0, 0, 2, &n3, NULL);
    CHECK(n3 == 6 && cc && !memcmp(a, cc, sizeof(float) * per * 6));
    free(a); free(b); free(cc);
    dataset_free(&ds);
}

TEST(loader_rows_match_synchronous_path_and_metadata) {
    Dataset ds;
    char root[512];
    make_set(&ds, root, sizeof root);
    LoaderConfig c = loader_config_default();
    c.batch_size = 3; c.size = 24; c.seed = 4; c.workers = 2; c.cache = 1;
    Loader *L;
    REQUIRE_OK(loader_open(&L, &ds, &c, 0, 0, 1));
    CHECK(loader_steps_per_epoch(L) == 4);
    int order[10];
    loader_epoch_order(&ds, &c, 0, order);
    float img[24 * 24 * 3], mask[24 * 24];
    const Batch *b;
    int seen = 0, steps = 0;
    while (!loader_next(L, &b) && b) {
        CHECK(b->epoch == 0 && b->step == steps);
        CHECK(b->image.ndim == 4 && T_N(&b->image) == b->n && T_H(&b->image) == 24 && T_C(&b->image) == 3 && T_C(&b->mask) == 1);
        for (int j = 0; j < b->n; j++) {
            int idx = b->index[j];
            CHECK(idx == order[seen]);
            CHECK(b->sample[j] == &ds.s[idx] && strstr(b->sample[j]->mask, "/GT/"));
            int w, h;
            REQUIRE_OK(loader_load_sample(&ds, &c, 0, idx, img, mask, &w, &h));
            CHECK(b->orig_w[j] == w && b->orig_h[j] == h);
            int i = ds.s[idx].name[1] - '0';
            CHECK(w == 20 + 3 * i && h == 16 + 2 * i);
            CHECK(!memcmp(img, tensor_f32(&b->image) + (size_t)j * 24 * 24 * 3, sizeof img));
            CHECK(!memcmp(mask, tensor_f32(&b->mask) + (size_t)j * 24 * 24, sizeof mask));
            double fg = 0;
            for (int k = 0; k < 24 * 24; k++) fg += mask[k];
            CHECK(fg > 200 && fg < 376);   // about half the mask is object
            seen++;
        }
        steps++;
    }
    CHECK(seen == 10 && steps == 4);
    CHECK(loader_cache_bytes(L) == 10 * 24 * 24 * 4);
    CHECK(loader_next(L, &b) == CX_OK && b == NULL);   // stays at the end
    loader_close(L);
    dataset_free(&ds);
}

TEST(loader_shards_are_disjoint_and_cover_the_epoch) {
    Dataset ds;
    char root[512];
    make_set(&ds, root, sizeof root);
    LoaderConfig c = loader_config_default();
    c.seed = 3;
    int seen[10] = { 0 };
    for (int r = 0; r < 2; r++) {
        c.rank = r; c.world = 2;
        int o[5];
        loader_epoch_order(&ds, &c, 7, o);
        for (int k = 0; k < 5; k++) seen[o[k]]++;
    }
    for (int i = 0; i < 10; i++) CHECK(seen[i] == 1);
    // world 3: padded to 12 by wrapping, so two samples appear twice.
    memset(seen, 0, sizeof seen);
    for (int r = 0; r < 3; r++) {
        c.rank = r; c.world = 3;
        int o[4];
        loader_epoch_order(&ds, &c, 7, o);
        for (int k = 0; k < 4; k++) seen[o[k]]++;
    }
    int twice = 0;
    for (int i = 0; i < 10; i++) { CHECK(seen[i] >= 1); twice += seen[i] == 2; }
    CHECK(twice == 2);
    // By global batch: at batch 2, rank r's batch j is positions 4j+2r, 4j+2r+1 of one process's order.
    int one[10], sh[2][5];
    c.batch_size = 2; c.rank = 0; c.world = 1;
    loader_epoch_order(&ds, &c, 7, one);
    for (int r = 0; r < 2; r++) { c.rank = r; c.world = 2; loader_epoch_order(&ds, &c, 7, sh[r]); }
    for (int k = 0; k < 5; k++)
        for (int r = 0; r < 2; r++) {
            int j = k / 2, i = k % 2, bj = k < 4 ? 2 : 1;
            CHECKF(sh[r][k] == one[4 * j + r * bj + i], "rank %d position %d", r, k);
        }
    c.batch_size = 8;
    // Different epochs, different orders; shuffle off keeps dataset order.
    int a[10], b[10];
    c.rank = 0; c.world = 1;
    loader_epoch_order(&ds, &c, 0, a);
    loader_epoch_order(&ds, &c, 1, b);
    CHECK(memcmp(a, b, sizeof a) != 0);
    c.shuffle = 0;
    loader_epoch_order(&ds, &c, 1, b);
    for (int i = 0; i < 10; i++) CHECK(b[i] == i);
    // drop_last and bad settings.
    c.batch_size = 4; c.drop_last = 1;
    Loader *L;
    REQUIRE_OK(loader_open(&L, &ds, &c, 0, 0, 1));
    CHECK(loader_steps_per_epoch(L) == 2);
    loader_close(L);
    c.batch_size = 11;
    CHECK(loader_open(&L, &ds, &c, 0, 0, 1) == CX_EARG);
    c.batch_size = 4;
    CHECK(loader_open(&L, &ds, &c, 0, 5, 1) == CX_EARG && strstr(cx_errmsg(), "2 steps"));
    c.rank = 2; c.world = 2;
    CHECK(loader_open(&L, &ds, &c, 0, 0, 1) == CX_EARG);
    dataset_free(&ds);
}

TEST(loader_reports_a_file_that_went_bad) {
    Dataset ds;
    char root[512];
    make_set(&ds, root, sizeof root);
    REQUIRE(unlink(ds.s[3].image) == 0);
    LoaderConfig c = loader_config_default();
    c.batch_size = 2; c.size = 16; c.shuffle = 0; c.workers = 2;
    Loader *L;
    REQUIRE_OK(loader_open(&L, &ds, &c, 0, 0, 1));
    const Batch *b;
    REQUIRE_OK(loader_next(L, &b));
    CHECK(b && b->n == 2);
    CHECK(loader_next(L, &b) == CX_EIO && b == NULL);
    CHECKF(strstr(cx_errmsg(), "s3.png") != NULL, "%s", cx_errmsg());
    loader_close(L);
    dataset_free(&ds);
}
