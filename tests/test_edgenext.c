// test_edgenext.c — the EdgeNeXt backbone: configuration and parameter counts
// against the spec, key order against timm's fixture, loading (both spellings,
// prefixes, strict errors), initialisation, feature sizes, finite-difference
// gradient checks of every block type on tiny float64 models, partial backward,
// and `camoxpert verify` on the shared timm fixture and the twin's fixtures
// (run as the built program, which sits beside this test runner).
#include "test.h"
#include "nn/edgenext.h"
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// ---- configuration, registration, loading ---------------------------------------------

TEST(edgenext_param_counts_match_spec) {
    // §4.4, features_only column
    static const struct { const char *v; int64_t n; int keys; } want[] = {
        { "edgenext_xx_small", 1157880, 156 }, { "edgenext_x_small", 2143420, -1 }, { "edgenext_small", 5281224, -1 },
        { "edgenext_base", 17925124, 210 },    { "edgenext_small_rw", 7440744, -1 },
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        EdgeNeXtConfig cfg;
        REQUIRE_OK(edgenext_config(want[i].v, &cfg));
        ParamTable pt;
        params_init(&pt);
        EdgeNeXt *m = edgenext_create(&cfg, &pt, "backbone.");
        CHECKF(params_count(&pt, 0) == want[i].n, "%s: %lld parameters, spec says %lld", want[i].v,
               (long long)params_count(&pt, 0), (long long)want[i].n);
        if (want[i].keys > 0) CHECKF(pt.n == want[i].keys, "%s: %d keys", want[i].v, pt.n);
        CHECK(!strncmp(pt.p[0].name, "backbone.stem_0.weight", 64));
        for (int k = 0; k < pt.n; k++) CHECK(pt.p[k].group == PG_BACKBONE);
        edgenext_free(m);
        params_free(&pt);
    }
    EdgeNeXtConfig cfg;
    CHECK(edgenext_config("edgenext_tiny", &cfg) == CX_EARG);
    CHECK(strstr(cx_errmsg(), "edgenext_small_rw") != NULL);
}

TEST(edgenext_keys_in_timm_order) {
    StFile f;
    REQUIRE_OK(st_open(&f, test_shared_path("fixtures/edgenext_xx_small.safetensors")));
    EdgeNeXtConfig cfg;
    REQUIRE_OK(edgenext_config("edgenext_xx_small", &cfg));
    ParamTable pt;
    params_init(&pt);
    EdgeNeXt *m = edgenext_create(&cfg, &pt, "");
    // The fixture stores param/<key> in state_dict order (by data offset).
    int k = 0;
    for (int e = 0; e < f.n && k < pt.n; e++) {
        const char *name = f.entries[e].name;
        if (strncmp(name, "param/", 6) || !strncmp(name, "param/head.", 11)) continue;
        char want[256];
        edgenext_key_to_feature_name(name + 6, want, sizeof want);
        CHECKF(!strcmp(pt.p[k].name, want), "key %d: table %s, timm %s", k, pt.p[k].name, want);
        k++;
    }
    CHECK(k == pt.n);
    char buf[64];
    edgenext_key_to_feature_name("stages.3.blocks.1.xca.qkv.weight", buf, sizeof buf);
    CHECK(!strcmp(buf, "stages_3.blocks.1.xca.qkv.weight"));
    edgenext_key_to_feature_name("head.fc.weight", buf, sizeof buf);
    CHECK(!strcmp(buf, "head.fc.weight"));
    edgenext_free(m);
    params_free(&pt);
    st_close(&f);
}

// Copies every entry of f whose name passes keep() into w (data from arena a),
// renaming with ren when non-NULL.
static void copy_entries(StWriter *w, const StFile *f, Arena *a, int (*keep)(const char *),
                         void (*ren)(const char *, char *, size_t)) {
    for (int e = 0; e < f->n; e++) {
        const StEntry *en = &f->entries[e];
        if (keep && !keep(en->name)) continue;
        Tensor t = tensor_new(a, en->dtype, en->ndim, en->shape);
        CX_ASSERT(st_entry_read(f, en, &t) == CX_OK, "%s", cx_errmsg());
        char name[256];
        if (ren) ren(en->name, name, sizeof name);
        else snprintf(name, sizeof name, "%s", en->name);
        st_writer_add(w, name, &t);
    }
}
static int is_param(const char *n) { return !strncmp(n, "param/", 6); }
static int is_param_but_one(const char *n) { return is_param(n) && strcmp(n, "param/stages.2.blocks.3.norm.bias"); }

TEST(edgenext_load_spellings_prefixes_and_errors) {
    StFile f;
    REQUIRE_OK(st_open(&f, test_shared_path("fixtures/edgenext_xx_small.safetensors")));
    EdgeNeXtConfig cfg;
    REQUIRE_OK(edgenext_config("edgenext_xx_small", &cfg));
    ParamTable pt;
    params_init(&pt);
    EdgeNeXt *m = edgenext_create(&cfg, &pt, "backbone.");
    params_alloc(&pt, DT_F32);
    // hub names with head.* (ignored) into a prefixed table
    REQUIRE_OK(edgenext_load(&pt, &f, "param/", "backbone."));
    int iq = params_find(&pt, "backbone.stages_2.blocks.5.xca.qkv.weight");
    REQUIRE(iq >= 0);
    Arena a;
    arena_init(&a, "test", 1 << 20);
    Tensor ref = tensor_new(&a, DT_F32, 2, (int64_t[]){ 264, 88 });
    REQUIRE_OK(st_read(&f, "param/stages.2.blocks.5.xca.qkv.weight", &ref));
    Tensor v = params_value(&pt, iq);
    CHECK(test_rel_err(&v, &ref, 0) == 0);

    // save (feature-extractor names under the prefix), reload into a fresh table
    const char *dir = test_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/backbone.safetensors", dir);
    StWriter w;
    st_writer_init(&w);
    params_save(&pt, &w, "backbone.", &a);
    REQUIRE_OK(st_writer_save(&w, path));
    st_writer_free(&w);
    StFile g;
    REQUIRE_OK(st_open(&g, path));
    CHECK(st_find(&g, "backbone.stem_0.weight") != NULL);
    ParamTable p2;
    params_init(&p2);
    EdgeNeXt *m2 = edgenext_create(&cfg, &p2, "");
    params_alloc(&p2, DT_F64);
    REQUIRE_OK(edgenext_load(&p2, &g, "backbone.", ""));
    Tensor v2 = params_value(&p2, params_find(&p2, "stages_2.blocks.5.xca.qkv.weight"));
    CHECK(test_rel_err(&v2, &ref, 0) == 0);
    st_close(&g);

    // a missing key names the key and its shape
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    st_writer_init(&w);
    copy_entries(&w, &f, &a, is_param_but_one, NULL);
    REQUIRE_OK(st_writer_save(&w, path));
    st_writer_free(&w);
    REQUIRE_OK(st_open(&g, path));
    CHECK(edgenext_load(&p2, &g, "param/", "") == CX_ESHAPE);
    CHECKF(strstr(cx_errmsg(), "missing key 'param/stages_2.blocks.3.norm.bias'") && strstr(cx_errmsg(), "[88]"), "%s",
           cx_errmsg());
    st_close(&g);

    // a shape mismatch names the key and both shapes
    EdgeNeXtConfig xs;
    REQUIRE_OK(edgenext_config("edgenext_x_small", &xs));
    ParamTable p3;
    params_init(&p3);
    EdgeNeXt *m3 = edgenext_create(&xs, &p3, "");
    params_alloc(&p3, DT_F32);
    CHECK(edgenext_load(&p3, &f, "param/", "") == CX_ESHAPE);
    CHECKF(strstr(cx_errmsg(), "has shape [") && strstr(cx_errmsg(), "in the file but [") && strstr(cx_errmsg(), "param/"),
           "%s", cx_errmsg());

    // an unexpected key (xx_small has no stages.0.blocks.2) is an error
    st_writer_init(&w);
    copy_entries(&w, &f, &a, is_param, NULL);
    Tensor extra = tensor_zeros(&a, DT_F32, 1, (int64_t[]){ 24 });
    st_writer_add(&w, "param/stages.0.blocks.2.gamma", &extra);
    snprintf(path, sizeof path, "%s/extra.safetensors", dir);
    REQUIRE_OK(st_writer_save(&w, path));
    st_writer_free(&w);
    REQUIRE_OK(st_open(&g, path));
    CHECK(edgenext_load(&p2, &g, "param/", "") == CX_ESHAPE);
    CHECKF(strstr(cx_errmsg(), "unexpected key 'param/stages.0.blocks.2.gamma'"), "%s", cx_errmsg());
    st_close(&g);

    edgenext_free(m);
    edgenext_free(m2);
    edgenext_free(m3);
    params_free(&pt);
    params_free(&p2);
    params_free(&p3);
    arena_free(&a);
    st_close(&f);
}

TEST(edgenext_init_weights_like_timm) {
    EdgeNeXtConfig cfg;
    REQUIRE_OK(edgenext_config("edgenext_xx_small", &cfg));
    ParamTable pt;
    params_init(&pt);
    EdgeNeXt *m = edgenext_create(&cfg, &pt, "");
    params_alloc(&pt, DT_F32);
    Rng r = rng_init(7);
    edgenext_init_weights(m, &pt, &r);
    Tensor g = params_value(&pt, params_find(&pt, "stages_1.blocks.1.gamma_xca"));
    CHECK_NEAR(tensor_get(&g, 5), 1e-6, 1e-12);
    Tensor t = params_value(&pt, params_find(&pt, "stages_3.blocks.1.xca.temperature"));
    CHECK(tensor_get(&t, 3) == 1.0);
    Tensor nw = params_value(&pt, params_find(&pt, "stem_1.weight"));
    Tensor nb = params_value(&pt, params_find(&pt, "stages_2.blocks.0.mlp.fc1.bias"));
    CHECK(tensor_get(&nw, 0) == 1.0 && tensor_get(&nb, 7) == 0.0);
    Tensor w = params_value(&pt, params_find(&pt, "stages_3.blocks.1.mlp.fc1.weight"));
    double s = 0, s2 = 0, mx = 0;
    int64_t n = tensor_numel(&w);
    for (int64_t i = 0; i < n; i++) {
        double x = tensor_get(&w, i);
        s += x;
        s2 += x * x;
        if (fabs(x) > mx) mx = fabs(x);
    }
    const double sd = sqrt(s2 / n - (s / n) * (s / n));
    CHECKF(sd > 0.0170 && sd < 0.0185 && mx <= 0.04, "std %.4f max %.4f (truncated normal 0.02 at ±2σ: std 0.0176)", sd, mx);
    edgenext_free(m);
    params_free(&pt);
}

TEST(edgenext_feature_sizes_floor) {
    EdgeNeXtConfig cfg;
    REQUIRE_OK(edgenext_config("edgenext_base", &cfg));
    ParamTable pt;
    params_init(&pt);
    EdgeNeXt *m = edgenext_create(&cfg, &pt, "");
    int fh[4], fw[4];
    CHECK(edgenext_feature_sizes(m, 190, 250, fh, fw));   // §2.8: checked against timm
    CHECK(fh[0] == 47 && fw[0] == 62 && fh[1] == 23 && fw[1] == 31 && fh[2] == 11 && fw[2] == 15 && fh[3] == 5 && fw[3] == 7);
    CHECK(edgenext_feature_sizes(m, 352, 352, fh, fw) && fh[3] == 11 && fw[0] == 88);
    CHECK(edgenext_feature_sizes(m, 32, 33, fh, fw) && fh[3] == 1);
    CHECK(!edgenext_feature_sizes(m, 31, 64, fh, fw));
    edgenext_free(m);
    params_free(&pt);
    REQUIRE_OK(edgenext_config("edgenext_small_rw", &cfg));
    params_init(&pt);
    m = edgenext_create(&cfg, &pt, "");
    CHECK(edgenext_feature_sizes(m, 97, 75, fh, fw));   // overlap stem and ceil halving (§2.9)
    CHECK(fh[0] == 25 && fw[0] == 19 && fh[1] == 13 && fw[1] == 10 && fh[2] == 7 && fw[2] == 5 && fh[3] == 4 && fw[3] == 3);
    edgenext_free(m);
    params_free(&pt);
}

// ---- finite differences on tiny float64 models ---------------------------------------------

typedef struct {
    ParamTable pt;
    EdgeNeXt *m;
    Arena act, scratch;
    NNCtx ctx;
    Tensor x, probe[4];
} Tiny;

static int ends(const char *s, const char *t) {
    size_t a = strlen(s), b = strlen(t);
    return a >= b && !strcmp(s + a - b, t);
}

static void tiny_init(Tiny *t, const EdgeNeXtConfig *cfg, int N, int H, int W, uint64_t seed) {
    params_init(&t->pt);
    t->m = edgenext_create(cfg, &t->pt, "");
    params_alloc(&t->pt, DT_F64);
    arena_init(&t->act, "act", 8 << 20);
    arena_init(&t->scratch, "scratch", 8 << 20);
    t->ctx = (NNCtx){ .pt = &t->pt, .op = { .backend = OPS_REF, .scratch = &t->scratch }, .act = &t->act, .dtype = DT_F64,
                      .training = 1 };
    Rng r = rng_init(seed);
    // O(1) random values everywhere (layer scales too), so every path shows in the loss.
    for (int i = 0; i < t->pt.n; i++) {
        const ParamInfo *e = &t->pt.p[i];
        Tensor v = params_value(&t->pt, i);
        const int unit = ends(e->name, "gamma") || ends(e->name, "gamma_xca") || ends(e->name, "temperature") ||
                         (e->ndim == 1 && ends(e->name, ".weight"));
        const double sc = ends(e->name, ".bias") ? 0.2 : 1.0 / sqrt((double)(e->numel / e->shape[0]));
        for (int64_t k = 0; k < e->numel; k++) tensor_set(&v, k, unit ? 1.0 + 0.5 * rng_normal(&r) : sc * rng_normal(&r));
    }
    t->x = tensor_new4(&t->scratch, DT_F64, N, H, W, 3);
    for (int64_t k = 0; k < tensor_numel(&t->x); k++) tensor_set(&t->x, k, rng_normal(&r));
    int fh[4], fw[4];
    CX_ASSERT(edgenext_feature_sizes(t->m, H, W, fh, fw), "tiny input too small");
    for (int s = 0; s < 4; s++) {
        t->probe[s] = tensor_new4(&t->scratch, DT_F64, N, fh[s], fw[s], cfg->dims[s]);
        for (int64_t k = 0; k < tensor_numel(&t->probe[s]); k++) tensor_set(&t->probe[s], k, rng_normal(&r));
    }
}

static void tiny_free(Tiny *t) {
    edgenext_free(t->m);
    params_free(&t->pt);
    arena_free(&t->act);
    arena_free(&t->scratch);
}

// Σ_s Σ feat_s · probe_s
static double tiny_loss(Tiny *t, const Tensor *x) {
    Tensor f[4];
    arena_reset(&t->act);
    edgenext_forward(&t->ctx, t->m, f, x);
    double L = 0;
    for (int s = 0; s < 4; s++)
        for (int64_t k = 0; k < tensor_numel(&f[s]); k++) L += tensor_f64(&f[s])[k] * tensor_f64(&t->probe[s])[k];
    return L;
}

// Directional central differences, one random direction per parameter tensor and
// one for the input (`what` names the model in messages). Returns the worst
// relative error.
static double fd_check(Tiny *t, const char *what) {
    Tensor f[4];
    arena_reset(&t->act);
    params_zero_grad(&t->pt);
    edgenext_forward(&t->ctx, t->m, f, &t->x);
    Tensor dx = tensor_zeros_like(&t->scratch, &t->x);
    edgenext_backward(&t->ctx, t->m, t->probe, &dx);
    Rng r = rng_init(99);
    const double eps = 1e-4;
    double worst = 0;
    for (int i = 0; i <= t->pt.n; i++) {
        Tensor v = i < t->pt.n ? params_value(&t->pt, i) : t->x;
        Tensor g = i < t->pt.n ? params_grad(&t->pt, i) : dx;
        const char *name = i < t->pt.n ? t->pt.p[i].name : "input";
        int64_t n = tensor_numel(&v);
        double *dir = malloc(sizeof(double) * (size_t)n), *orig = malloc(sizeof(double) * (size_t)n);
        double an = 0;
        for (int64_t k = 0; k < n; k++) {
            dir[k] = rng_normal(&r);
            orig[k] = tensor_f64(&v)[k];
            an += dir[k] * tensor_f64(&g)[k];
        }
        // fourth-order central difference: truncation O(eps^4)
        double l[4];
        static const double off[4] = { 2, 1, -1, -2 };
        for (int q = 0; q < 4; q++) {
            for (int64_t k = 0; k < n; k++) tensor_f64(&v)[k] = orig[k] + off[q] * eps * dir[k];
            l[q] = tiny_loss(t, &t->x);
        }
        memcpy(v.data, orig, sizeof(double) * (size_t)n);
        double fd = (8 * (l[1] - l[2]) - (l[0] - l[3])) / (12 * eps);
        double err = fabs(fd - an) / fmax(fmax(fabs(fd), fabs(an)), 1e-6);
        CHECKF(err < 1e-6, "%s: %s: analytic %.10g, finite difference %.10g (rel err %.2e)", what, name, an, fd, err);
        if (err > worst) worst = err;
        free(dir);
        free(orig);
    }
    return worst;
}

static EdgeNeXtConfig tiny_cfg(int rw) {
    EdgeNeXtConfig c;
    CX_ASSERT(edgenext_config(rw ? "edgenext_small_rw" : "edgenext_xx_small", &c) == CX_OK, "config");
    // st0 C; st1 C + SDTA(PE); st2 C + SDTA; st3 SDTA (4-way split), or C + SDTA where
    // small_rw's block 0 must change the width
    static const int depths[4] = { 1, 2, 2, 1 }, depths_rw[4] = { 1, 2, 2, 2 };
    static const int dims[4] = { 8, 12, 16, 24 }, dims_rw[4] = { 8, 16, 32, 64 };
    for (int s = 0; s < 4; s++) {
        c.depths[s] = rw ? depths_rw[s] : depths[s];
        c.dims[s] = rw ? dims_rw[s] : dims[s];
        c.heads[s] = 2;
    }
    return c;
}

TEST(edgenext_fd_patch_stem_downsample_conv_sdta) {
    // Patch stem, LN + 2×2 downsample, conv blocks (k 3, 5, 7), SDTA with the positional
    // encoding (stage 1, 2-way split), SDTA without it (stages 2 and 3, 3- and 4-way
    // splits), every parameter and the input.
    EdgeNeXtConfig c = tiny_cfg(0);
    Tiny t;
    tiny_init(&t, &c, 2, 70, 75, 1);   // features 17×18, 8×9, 4×4, 2×2 (odd, floored)
    double w = fd_check(&t, "patch-stem model");
    CHECKF(w < 1e-6, "worst %.2e", w);
    tiny_free(&t);
}

TEST(edgenext_fd_overlap_stem_and_strided_blocks) {
    // small_rw layout: 9×9 overlap stem without bias, stride-2 depthwise blocks with
    // channel multiplier 2 and the depthwise output as shortcut, no conv biases.
    EdgeNeXtConfig c = tiny_cfg(1);
    Tiny t;
    tiny_init(&t, &c, 2, 37, 45, 2);   // features 10×12, 5×6, 3×3, 2×2
    double w = fd_check(&t, "overlap-stem model");
    CHECKF(w < 1e-6, "worst %.2e", w);
    tiny_free(&t);
}

TEST(edgenext_backward_partial_features) {
    // Gradients of feat1 alone: stages 2-3 receive none, and the result equals a full
    // backward whose probes for stages 0, 2, 3 are zero.
    EdgeNeXtConfig c = tiny_cfg(0);
    Tiny t;
    tiny_init(&t, &c, 1, 40, 36, 3);
    Tensor f[4], d[4] = { { 0 } };
    d[1] = t.probe[1];
    arena_reset(&t.act);
    params_zero_grad(&t.pt);
    edgenext_forward(&t.ctx, t.m, f, &t.x);
    Tensor dx1 = tensor_zeros_like(&t.scratch, &t.x);
    edgenext_backward(&t.ctx, t.m, d, &dx1);
    Tensor g1 = tensor_new(&t.scratch, DT_F64, 1, &t.pt.numel);
    memcpy(g1.data, t.pt.grad, sizeof(double) * (size_t)t.pt.numel);
    const int i3 = params_find(&t.pt, "stages_3.blocks.0.xca.qkv.weight"), i0 = params_find(&t.pt, "stem_0.weight");
    Tensor gq = params_grad(&t.pt, i3), gs = params_grad(&t.pt, i0);
    double s3 = 0, s0 = 0;
    for (int64_t k = 0; k < tensor_numel(&gq); k++) s3 += fabs(tensor_f64(&gq)[k]);
    for (int64_t k = 0; k < tensor_numel(&gs); k++) s0 += fabs(tensor_f64(&gs)[k]);
    CHECK(s3 == 0 && s0 > 0);
    Tensor z[4];
    for (int s = 0; s < 4; s++) {
        z[s] = tensor_zeros_like(&t.scratch, &t.probe[s]);
        if (s == 1) tensor_copy(&z[s], &t.probe[1]);
    }
    params_zero_grad(&t.pt);
    Tensor dx2 = tensor_zeros_like(&t.scratch, &t.x);
    edgenext_backward(&t.ctx, t.m, z, &dx2);
    Tensor g2 = tensor_view(t.pt.grad, DT_F64, 1, &t.pt.numel);
    CHECK(test_rel_err(&g2, &g1, 0) < 1e-14);
    CHECK(test_rel_err(&dx2, &dx1, 0) < 1e-14);
    // backward adds: a second call doubles the gradients
    edgenext_backward(&t.ctx, t.m, z, NULL);
    Tensor g1x2 = tensor_new(&t.scratch, DT_F64, 1, &t.pt.numel);
    for (int64_t k = 0; k < t.pt.numel; k++) tensor_f64(&g1x2)[k] = 2 * tensor_f64(&g1)[k];
    CHECK(test_rel_err(&g2, &g1x2, 0) < 1e-14);
    tiny_free(&t);
}

// ---- camoxpert verify, as the built program ---------------------------------------------------

// Runs `camoxpert verify ARGS` (the program beside this test runner); returns its exit
// status and leaves its output in *out (static buffer).
static int run_verify(const char *args, const char **out) {
    static char text[1 << 16];
    char exe[4096], cmd[8192], log[700];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CX_ASSERT(n > 0, "readlink /proc/self/exe");
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(log, sizeof log, "%s/verify.log", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s/camoxpert' verify %s > '%s' 2>&1", exe, args, log);
    int st = system(cmd);
    FILE *fp = fopen(log, "r");
    size_t len = fp ? fread(text, 1, sizeof text - 1, fp) : 0;
    text[len] = 0;
    if (fp) fclose(fp);
    *out = text;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void verify_passes(const char *path) {
    const char *out;
    char args[4200];
    snprintf(args, sizeof args, "--quiet '%s'", path);
    int rc = run_verify(args, &out);
    CHECKF(rc == 0 && strstr(out, "PASS"), "camoxpert verify %s: exit %d\n%s", path, rc, out);
}

TEST_SLOW(edgenext_verify_shared_timm_fixture) { verify_passes(test_shared_path("fixtures/edgenext_xx_small.safetensors")); }
TEST_SLOW(edgenext_verify_twin_x_small_2x97x75) { verify_passes("tests/fixtures/edgenext_x_small_2x97x75.safetensors"); }
TEST_SLOW(edgenext_verify_twin_base_1x65x47) { verify_passes("tests/fixtures/edgenext_base_1x65x47.safetensors"); }
TEST_SLOW(edgenext_verify_twin_small_rw_2x70x53) { verify_passes("tests/fixtures/edgenext_small_rw_2x70x53.safetensors"); }

static void perturb_rename(const char *in, char *out, size_t n) { snprintf(out, n, "%s", in); }

TEST(edgenext_verify_detects_wrong_results) {
    // A fixture whose stage-2 feature and one gradient are off by 1e-3 of their range
    // must fail on exactly those lines; one without `kind` is unusable (exit 2).
    StFile f;
    REQUIRE_OK(st_open(&f, "tests/fixtures/edgenext_x_small_2x97x75.safetensors"));
    Arena a;
    arena_init(&a, "test", 8 << 20);
    StWriter w;
    st_writer_init(&w);
    copy_entries(&w, &f, &a, NULL, perturb_rename);
    for (int i = 0; i < w.n; i++) {
        const char *nm = w.items[i].name;
        if (strcmp(nm, "output/feat2") && strcmp(nm, "grad/param/stages.1.blocks.2.xca.temperature")) continue;
        Tensor *t = &w.items[i].t;
        double mx = 0;
        for (int64_t k = 0; k < tensor_numel(t); k++) mx = fmax(mx, fabs(tensor_get(t, k)));
        tensor_set(t, 1, tensor_get(t, 1) + 1e-3 * mx);
    }
    for (int k = 0; k < f.n_meta; k++) st_writer_meta(&w, f.meta_keys[k], f.meta_vals[k]);
    char path[600];
    snprintf(path, sizeof path, "%s/bad.safetensors", test_tmpdir());
    REQUIRE_OK(st_writer_save(&w, path));
    st_writer_free(&w);
    const char *out;
    char args[700];
    snprintf(args, sizeof args, "--device cpu '%s'", path);   // the CPU checks alone: the count below is theirs
    int rc = run_verify(args, &out);
    CHECKF(rc == 1, "exit %d\n%s", rc, out);
    CHECK(strstr(out, "FAIL: 3 of") != NULL);   // feat2 in f32 and f64, and the temperature gradient
    CHECK(strstr(out, "output/feat1 (f64, ref)") && strstr(out, "temperature"));

    st_writer_init(&w);
    copy_entries(&w, &f, &a, is_param, NULL);
    snprintf(path, sizeof path, "%s/nokind.safetensors", test_tmpdir());
    REQUIRE_OK(st_writer_save(&w, path));
    st_writer_free(&w);
    snprintf(args, sizeof args, "'%s'", path);
    rc = run_verify(args, &out);
    CHECKF(rc == 2 && strstr(out, "rtol_fwd_f32"), "exit %d\n%s", rc, out);
    rc = run_verify("/nonexistent.safetensors", &out);
    CHECK(rc == 2);
    arena_free(&a);
    st_close(&f);
}
