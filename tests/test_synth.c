// test_synth.c — the synthetic camouflage generator: determinism per seed and
// thread count, the written layout read back by the dataset layer with families
// as categories, empty images, difficulty's effect, and the colour-threshold
// baseline not solving it.
#include "test.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/synth.h"
#include <string.h>
#include <stdio.h>

TEST(synth_is_deterministic_per_seed_and_index) {
    SynthConfig c = synth_config_default();
    c.size = 64; c.seed = 11;
    uint8_t a[64 * 64 * 3], am[64 * 64], b[64 * 64 * 3], bm[64 * 64];
    int fa = synth_generate(&c, 5, a, am), fb = synth_generate(&c, 5, b, bm);
    CHECK(fa == fb && !memcmp(a, b, sizeof a) && !memcmp(am, bm, sizeof am));
    synth_generate(&c, 6, b, bm);
    CHECK(memcmp(a, b, sizeof a) != 0);
    c.seed = 12;
    synth_generate(&c, 5, b, bm);
    CHECK(memcmp(a, b, sizeof a) != 0);
    for (int i = 0; i < 64 * 64; i++) CHECK(am[i] == 0 || am[i] == 255);
}

TEST(synth_difficulty_controls_object_contrast) {
    // Mean colour distance between object and background pixels, over many images.
    double dist[2] = { 0, 0 };
    for (int k = 0; k < 2; k++) {
        SynthConfig c = synth_config_default();
        c.size = 96; c.seed = 3; c.difficulty = k ? 1.0 : 0.0; c.empty_fraction = 0;
        static uint8_t img[96 * 96 * 3], m[96 * 96];
        for (int i = 0; i < 30; i++) {
            synth_generate(&c, i, img, m);
            double in[3] = { 0 }, out[3] = { 0 };
            int ni = 0, no = 0;
            for (int p = 0; p < 96 * 96; p++)
                for (int ch = 0; ch < 3; ch++) {
                    if (m[p]) in[ch] += img[3 * p + ch]; else out[ch] += img[3 * p + ch];
                    if (ch == 0) { ni += m[p] != 0; no += m[p] == 0; }
                }
            if (!ni || !no) continue;
            double d2 = 0;
            for (int ch = 0; ch < 3; ch++) { double d = in[ch] / ni - out[ch] / no; d2 += d * d; }
            dist[k] += sqrt(d2) / 30;
        }
    }
    CHECKF(dist[0] > 2 * dist[1], "easy %.1f vs hard %.1f", dist[0], dist[1]);
}

TEST(synth_writes_a_cod10k_layout_the_loader_reads) {
    char out[600], base[700];
    snprintf(out, sizeof out, "%s/syn", test_tmpdir());
    snprintf(base, sizeof base, "%s/baseline", out);
    SynthConfig c = synth_config_default();
    c.size = 64; c.seed = 5; c.empty_fraction = 0.2;
    SynthStats s;
    cx_threads_set(2);
    REQUIRE_OK(synth_write_dataset(out, &c, 40, 30, 90, base, &s));
    CHECK(s.n_train == 40 && s.n_test == 30 && s.baseline_n == 30);
    CHECK(s.n_empty > 3 && s.n_empty < 30);
    int fams = 0;
    for (int k = 0; k < SYNTH_N_FAMILIES; k++) fams += s.per_family[k] > 0;
    CHECK(fams == SYNTH_N_FAMILIES);
    // A plain colour threshold must not solve it.
    CHECKF(s.baseline_iou < 0.4, "threshold baseline IoU %.3f", s.baseline_iou);
    Dataset tr, te;
    DatasetOptions o = { .root = out, .split = "train" };
    REQUIRE_OK(dataset_open(&tr, &o));
    o.split = "test";
    REQUIRE_OK(dataset_open(&te, &o));
    CHECK(!strcmp(tr.layout, "COD10K-v3") && tr.n == 40 && te.n == 30);
    CHECK(tr.n_categories == SYNTH_N_FAMILIES);
    for (int i = 0; i < tr.n; i++) CHECK(tr.s[i].category >= 0 && strstr(tr.s[i].name, tr.categories[tr.s[i].category]));
    REQUIRE_OK(dataset_scan(&te, 0));
    CHECK(te.s[0].w == 64 && te.s[0].h == 64);
    // Baseline predictions exist for each test image and are 8-bit masks.
    char p[1400];
    snprintf(p, sizeof p, "%s/%s.png", base, te.s[0].name);
    Image8 pm;
    REQUIRE_OK(image_load(p, 1, &pm));
    CHECK(pm.w == 64 && pm.h == 64);
    image_free(&pm);
    // One thread writes the same bytes as two.
    char out1[700];
    snprintf(out1, sizeof out1, "%s1", out);
    cx_threads_set(1);
    REQUIRE_OK(synth_write_dataset(out1, &c, 40, 30, 90, NULL, &s));
    cx_threads_set(0);
    for (int i = 0; i < 3; i++) {
        unsigned char *a, *b;
        size_t na, nb;
        snprintf(p, sizeof p, "%s1/Test/Image/%s.jpg", out, te.s[i * 7].name);
        REQUIRE_OK(io_read_file(p, &a, &na));
        REQUIRE_OK(io_read_file(te.s[i * 7].image, &b, &nb));
        CHECK(na == nb && !memcmp(a, b, na));
        free(a); free(b);
    }
    dataset_free(&tr);
    dataset_free(&te);
    CHECK(synth_write_dataset(out, &(SynthConfig){ .size = 64, .difficulty = 2 }, 1, 1, 90, NULL, &s) == CX_EARG);
    CHECK(synth_write_dataset(out, &c, 0, 0, 90, NULL, &s) == CX_EARG);
}

TEST(synth_threshold_baseline_finds_an_obvious_object) {
    // On an image that *is* solvable by colour, the baseline must work (so its
    // failure on the generator's images says something about the images).
    enum { S = 32 };
    uint8_t img[S * S * 3], pred[S * S];
    for (int i = 0; i < S * S; i++) {
        int in = (i % S) > 10 && (i % S) < 20 && i / S > 8 && i / S < 18;
        img[3 * i] = img[3 * i + 1] = img[3 * i + 2] = in ? 200 : 40;
    }
    synth_threshold_baseline(img, S * S, pred);
    int ok = 1;
    for (int i = 0; i < S * S; i++) ok &= (pred[i] == 255) == (img[3 * i] == 200);
    CHECK(ok);
}
