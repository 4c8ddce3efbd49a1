// test_onnx.c — `camoxpert export` (infer/onnx.h) against ONNX Runtime: tiny models
// (edgenext_xx_small, dense and sparse, every parameter random and live: layer scales,
// BatchNorm statistics, temperatures) exported with every output, run by ONNX Runtime
// (onnxruntime-node, CPU: tools/node/run_onnx.mjs) at two sizes and two batch sizes,
// and compared with camoxpert's own CPU forward: every map to 1e-4 (float32) or 2e-2
// (float16) relative (tests/test.h: max|a−b| / max|b|), the sparse model's chosen
// experts exactly. One op exported wrongly (the exporter's fault hook) must fail that
// parity. Also: the protobuf and float16 encoders, `camoxpert export`'s command line
// and metadata. Without Node or onnxruntime-node (scripts/deps.sh installs both) the
// ONNX Runtime tests say "skipped" and why.
#include "test.h"
#include "infer/onnx.h"
#include "infer/onnx_pb.h"
#include "nn/runtime.h"
#include "nn/weights.h"
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// ---- the encoders ----------------------------------------------------------------------------

TEST(onnx_pb_writes_protobuf_wire_format) {
    PbBuf b = { 0 };
    pb_uint(&b, 1, 300);   // tag 0x08, varint 300 = AC 02
    pb_int(&b, 2, -1);     // tag 0x10, ten bytes: two's complement
    pb_float(&b, 3, 1.0f); // tag 0x1d, 00 00 80 3f
    pb_str(&b, 4, "ab");   // tag 0x22, length 2
    pb_packed_int(&b, 5, (int64_t[]){ 3, 270 }, 2);   // tag 0x2a, length 3: 03 8E 02
    const unsigned char want[] = { 0x08, 0xac, 0x02, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                                   0x1d, 0x00, 0x00, 0x80, 0x3f, 0x22, 0x02, 'a', 'b', 0x2a, 0x03, 0x03, 0x8e, 0x02 };
    CHECKF(b.n == sizeof want && !memcmp(b.p, want, sizeof want), "%zu bytes, want %zu", b.n, sizeof want);
    PbBuf head = { 0 }, m = { 0 }, viacopy = { 0 };
    pb_str(&head, 8, "w");
    pb_msg_tail(&m, 5, &head, 9, "xyz", 3);   // one message written in place ...
    PbBuf whole = { 0 };
    pb_raw(&whole, head.p, head.n);
    pb_bytes(&whole, 9, "xyz", 3);
    pb_msg(&viacopy, 5, &whole);               // ... equals the same message built and copied
    CHECK(m.n == viacopy.n && !memcmp(m.p, viacopy.p, m.n));
    CHECK(pb_len_prefix(5, 200) == 3);
    pb_free(&b), pb_free(&head), pb_free(&m), pb_free(&viacopy), pb_free(&whole);
}

TEST(onnx_f16_rounds_to_nearest_even) {
    const struct { float f; uint16_t h; } c[] = {
        { 1.0f, 0x3c00 }, { -2.0f, 0xc000 }, { 0.1f, 0x2e66 }, { 65504.0f, 0x7bff }, { 65520.0f, 0x7c00 },
        { 1e6f, 0x7c00 }, { 6.103515625e-05f, 0x0400 }, { 5.960464477539063e-08f, 0x0001 }, { 2.98e-08f, 0x0000 },
        { 1e-8f, 0x0000 }, { 1.00048828125f, 0x3c00 },   // halfway between 1 and the next: to even
        { 1.00146484375f, 0x3c02 },                        // halfway, odd below: up
        { 0.0f, 0x0000 }, { -0.0f, 0x8000 }, { INFINITY, 0x7c00 },
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        CHECKF(pb_f16(c[i].f) == c[i].h, "%.9g -> 0x%04x, want 0x%04x", c[i].f, pb_f16(c[i].f), c[i].h);
    CHECK((pb_f16(NAN) & 0x7c00) == 0x7c00 && (pb_f16(NAN) & 0x3ff));
}

// ---- ONNX Runtime through Node --------------------------------------------------------------------

// tools/node/run_onnx.mjs of this checkout (beside build/), or NULL with the reason in why.
static const char *ort_runner(char *why, size_t n) {
    static char script[4200];
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) { snprintf(why, n, "cannot find the test runner's path"); return NULL; }
    exe[len] = 0;
    for (int up = 0; up < 2; up++) *strrchr(exe, '/') = 0;   // build/camoxpert_tests -> the checkout
    if (system("command -v node >/dev/null 2>&1")) {
        snprintf(why, n, "no node (scripts/deps.sh installs Node and onnxruntime-node)");
        return NULL;
    }
    char pkg[4300];
    snprintf(pkg, sizeof pkg, "%s/tools/node/node_modules/onnxruntime-node/package.json", exe);
    if (access(pkg, R_OK)) {
        snprintf(why, n, "no onnxruntime-node in %.400s/tools/node (run scripts/deps.sh)", exe);
        return NULL;
    }
    snprintf(script, sizeof script, "%s/tools/node/run_onnx.mjs", exe);
    return script;
}

typedef struct {
    ParamTable pt;
    CamoXpert *m;
} Model;

// edgenext_xx_small, dense or sparse (E=4, top-2), every parameter random and live: the
// backbone's convolution and linear weights at unit gain (U(±√(3/fan_in)), where timm's
// std 0.02 leaves GELU's inputs near 0), layer scales and temperatures far from their
// 1e-6 / 1 initial values, BatchNorm statistics and affine terms away from 0/1, so that
// every op changes the output.
static void model_make(Model *md, int sparse, uint64_t seed) {
    CamoXpertConfig cfg;
    CX_ASSERT(camoxpert_config(&cfg, "edgenext_xx_small", sparse, 4, 2) == CX_OK, "config");
    params_init(&md->pt);
    md->m = camoxpert_create(&cfg, &md->pt);
    params_alloc(&md->pt, DT_F32);
    Rng r = rng_init(seed);
    camoxpert_init(md->m, &md->pt, &r);
    for (int i = 0; i < md->pt.n; i++) {
        const char *nm = md->pt.p[i].name;
        Tensor v = params_value(&md->pt, i);
        const char *leaf = strrchr(nm, '.') + 1;
        double lo = 0, hi = 0;
        if (!strcmp(leaf, "gamma") || !strcmp(leaf, "gamma_xca")) lo = 0.2, hi = 0.6;
        else if (!strcmp(leaf, "temperature")) lo = 0.5, hi = 2.0;
        else if (!strcmp(leaf, "running_mean")) lo = -0.1, hi = 0.1;
        else if (!strcmp(leaf, "running_var")) lo = 0.5, hi = 1.5;
        else if (md->pt.p[i].ndim == 1 && !strcmp(leaf, "weight")) lo = 0.8, hi = 1.2;   // BN and LN scales
        else if (md->pt.p[i].ndim == 1 && !strcmp(leaf, "bias") && !strncmp(nm, "backbone.", 9)) lo = -0.1, hi = 0.1;
        else if (md->pt.p[i].ndim >= 2 && !strncmp(nm, "backbone.", 9)) {
            const double fan_in = (double)md->pt.p[i].numel / (double)md->pt.p[i].shape[0];
            hi = sqrt(3 / fan_in), lo = -hi;
        }
        if (hi > lo)
            for (int64_t j = 0; j < tensor_numel(&v); j++) tensor_set(&v, j, lo + (hi - lo) * rng_uniform(&r));
    }
}

// The model as a checkpoint at path, with its config in the metadata (nn/weights.h).
static cx_status model_save(const Model *md, const char *path) {
    char *cfg = weights_config_json(&md->m->cfg, 0);
    cx_status cs = weights_save(&md->pt, cfg, NULL, path);
    free(cfg);
    return cs;
}

static void model_free(Model *md) {
    camoxpert_free(md->m);
    params_free(&md->pt);
}

typedef struct { int N, H, W; } Shape;

// One input (NHWC for camoxpert, NCHW written to `path` for ONNX Runtime).
static Tensor input_make(Arena *a, Shape s, uint64_t seed, const char *path) {
    Tensor x = tensor_new4(a, DT_F32, s.N, s.H, s.W, 3);
    Rng r = rng_init(seed);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)(2 * rng_uniform(&r) - 1);
    float *nchw = cx_malloc(sizeof(float) * (size_t)tensor_numel(&x));
    for (int n = 0; n < s.N; n++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < s.H; y++)
                for (int xx = 0; xx < s.W; xx++)
                    nchw[(((int64_t)n * 3 + c) * s.H + y) * s.W + xx] = tensor_f32(&x)[(((int64_t)n * s.H + y) * s.W + xx) * 3 + c];
    FILE *f = fopen(path, "wb");
    CX_ASSERT(f && fwrite(nchw, sizeof(float), (size_t)tensor_numel(&x), f) == (size_t)tensor_numel(&x), "writing %s", path);
    fclose(f);
    free(nchw);
    return x;
}

// ONNX Runtime on every input: node run_onnx.mjs MODEL IN DIMS PREFIX ...; 0 when it ran.
static int ort_run(const char *script, const char *model, const char *dir, const Shape *s, int n, char **log) {
    char cmd[8192];
    int o = snprintf(cmd, sizeof cmd, "node '%s' '%s'", script, model);
    for (int i = 0; i < n; i++)
        o += snprintf(cmd + o, sizeof cmd - (size_t)o, " %s/in%d.f32 %d,3,%d,%d %s/out%d", dir, i, s[i].N, s[i].H, s[i].W, dir, i);
    snprintf(cmd + o, sizeof cmd - (size_t)o, " > %s/ort.log 2>&1", dir);
    int st = system(cmd);
    char p[600];
    size_t len;
    snprintf(p, sizeof p, "%s/ort.log", dir);
    if (io_read_file(p, (unsigned char **)log, &len)) *log = cx_strdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// ONNX Runtime's output `name` of run i, as a float32 tensor of numel n (NULL data if absent).
static Tensor ort_output(Arena *a, const char *dir, int i, const char *name, int64_t n) {
    char p[600];
    unsigned char *buf;
    size_t len;
    snprintf(p, sizeof p, "%s/out%d.%s.f32", dir, i, name);
    if (io_read_file(p, &buf, &len) || len != (size_t)n * 4) return (Tensor){ 0 };
    Tensor t = tensor_new(a, DT_F32, 1, &n);
    memcpy(t.data, buf, len);
    free(buf);
    return t;
}

typedef struct {
    double worst;            // the largest relative error over every compared output
    char worst_name[64];
    int route_mismatch;      // chosen experts that differ
} Parity;

static void parity_map(Parity *p, Arena *a, const char *dir, int i, const char *name, const Tensor *ours) {
    Tensor mine = tensor_reshape(ours, 1, (int64_t[]){ tensor_numel(ours) });
    Tensor theirs = ort_output(a, dir, i, name, tensor_numel(&mine));
    if (!theirs.data) {
        test_fail(__FILE__, __LINE__, "run %d: ONNX Runtime gave no output %s of %lld values", i, name,
                  (long long)tensor_numel(&mine));
        return;
    }
    double e = test_rel_err(&theirs, &mine, 1e-3);
    if (!(e <= p->worst)) {
        p->worst = e;
        snprintf(p->worst_name, sizeof p->worst_name, "%s (run %d)", name, i);
    }
}

// Exports md with every output (half or not, with a fault), runs ONNX Runtime and
// camoxpert on each shape, and returns the worst relative error over the maps.
static Parity parity(const char *script, Model *md, int half, onnx_fault fault, const Shape *shapes, int n) {
    Parity p = { 0 };
    const char *dir = test_tmpdir();
    char model[600];
    snprintf(model, sizeof model, "%s/model.onnx", dir);
    OnnxExportOpts o = { .half = half, .fault = fault,
                         .outputs = ONNX_OUT_LOGITS | ONNX_OUT_MAPS | ONNX_OUT_REFINE | ONNX_OUT_DEEP |
                                    (md->m->cfg.sparse ? ONNX_OUT_ROUTE : 0) };
    cx_status st = onnx_export(md->m, &md->pt, &o, model);
    if (st) { test_fail(__FILE__, __LINE__, "onnx_export: %s", cx_errmsg()); return p; }
    Arena a;
    arena_init(&a, "onnx test", 1 << 20);
    Tensor x[4];
    for (int i = 0; i < n; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/in%d.f32", dir, i);
        x[i] = input_make(&a, shapes[i], 100 + (uint64_t)i, path);
    }
    char *log = NULL;
    int rc = ort_run(script, model, dir, shapes, n, &log);
    if (rc) {
        test_fail(__FILE__, __LINE__, "ONNX Runtime failed (exit %d): %.2000s", rc, log);
        free(log);
        arena_free(&a);
        return p;
    }
    free(log);
    Runtime rt;
    if (runtime_init(&rt, "cpu", "fp32", 0, 0)) {
        test_fail(__FILE__, __LINE__, "runtime_init: %s", cx_errmsg());
        arena_free(&a);
        return p;
    }
    rt.ctx.pt = &md->pt;
    for (int i = 0; i < n; i++) {
        runtime_step_reset(&rt);
        CamoXpertOutputs out;
        camoxpert_forward(&rt.ctx, md->m, &x[i], &out);
        const CodOutputs *c = &out.maps;
        const struct { const char *name; const Tensor *t; } maps[] = {
            { "logits", &c->pred }, { "fg_map", &c->fg_map }, { "search_map", &c->search_map },
            { "uncertainty", &c->uncertainty }, { "initial_pred", &c->initial_pred }, { "refine_1", &c->refine[0] },
            { "refine_2", &c->refine[1] }, { "deep_0", &c->deep[0] }, { "deep_1", &c->deep[1] }, { "deep_2", &c->deep[2] },
        };
        for (size_t j = 0; j < sizeof maps / sizeof *maps; j++) parity_map(&p, &a, dir, i, maps[j].name, maps[j].t);
        for (int s = 0; s < out.n_route; s++) {
            const MoeRoute *r = &out.route[s];
            char nm[64];
            snprintf(nm, sizeof nm, "route_experts_s%d", s);
            Tensor ex = ort_output(&a, dir, i, nm, tensor_numel(&r->idx));
            if (!ex.data) { test_fail(__FILE__, __LINE__, "run %d: no output %s", i, nm); continue; }
            for (int64_t j = 0; j < tensor_numel(&r->idx); j++) p.route_mismatch += tensor_f32(&ex)[j] != tensor_i32(&r->idx)[j];
            snprintf(nm, sizeof nm, "route_weights_s%d", s);
            parity_map(&p, &a, dir, i, nm, &r->w);
            snprintf(nm, sizeof nm, "route_probs_s%d", s);
            parity_map(&p, &a, dir, i, nm, &r->probs);
        }
    }
    runtime_free(&rt);
    arena_free(&a);
    return p;
}

static const Shape SHAPES[4] = { { 1, 64, 64 }, { 2, 64, 64 }, { 1, 96, 64 }, { 2, 64, 96 } };

static void check_parity(int sparse, int half, double tol) {
    char why[600];
    const char *script = ort_runner(why, sizeof why);
    if (!script) { test_skip("%s", why); return; }
    Model md;
    model_make(&md, sparse, sparse ? 7 : 3);
    Parity p = parity(script, &md, half, ONNX_FAULT_NONE, SHAPES, half ? 2 : 4);
    printf("    %s %s: worst relative error %.3g (%s)%s\n", sparse ? "sparse" : "dense", half ? "float16" : "float32",
           p.worst, p.worst_name, sparse ? (p.route_mismatch ? ", experts differ" : ", the same experts") : "");
    CHECKF(p.worst <= tol, "%s: relative error %.3g > %.3g", p.worst_name, p.worst, tol);
    CHECKF(p.route_mismatch == 0, "%d chosen experts differ from camoxpert's", p.route_mismatch);
    model_free(&md);
}

TEST_SLOW(onnx_export_dense_matches_onnxruntime) { check_parity(0, 0, 1e-4); }
TEST_SLOW(onnx_export_sparse_matches_onnxruntime) { check_parity(1, 0, 1e-4); }
TEST_SLOW(onnx_export_half_dense_matches_onnxruntime) { check_parity(0, 1, 2e-2); }
TEST_SLOW(onnx_export_half_sparse_matches_onnxruntime) { check_parity(1, 1, 2e-2); }

// Parity must fail when one op is exported wrongly: GELU's tanh form (within 1e-3 of the
// erf form everywhere) and the resizes' coordinates.
TEST_SLOW(onnx_export_parity_catches_one_wrong_op) {
    char why[600];
    const char *script = ort_runner(why, sizeof why);
    if (!script) { test_skip("%s", why); return; }
    Model md;
    model_make(&md, 0, 3);
    const struct { onnx_fault f; const char *name; } faults[] = {
        { ONNX_FAULT_GELU_TANH, "GELU as its tanh approximation" },
        { ONNX_FAULT_RESIZE_ASYMMETRIC, "resize with asymmetric coordinates" },
    };
    for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) {
        Parity p = parity(script, &md, 0, faults[i].f, SHAPES, 1);
        printf("    %s: worst relative error %.3g (%s)\n", faults[i].name, p.worst, p.worst_name);
        CHECKF(p.worst > 1e-4, "%s passed the 1e-4 parity (%.3g): the test cannot see that op", faults[i].name, p.worst);
    }
    model_free(&md);
}

// ---- the command line -------------------------------------------------------------------------

static int file_has(const char *path, const char *s) {
    unsigned char *buf;
    size_t n;
    if (io_read_file(path, &buf, &n)) return 0;
    int found = memmem(buf, n, s, strlen(s)) != NULL;
    free(buf);
    return found;
}

// `camoxpert export` from a checkpoint: the file, its metadata (the checkpoint's model
// configuration, the input convention), the same bytes twice, and the errors.
TEST(onnx_export_cli_writes_the_checkpoints_model) {
    Model md;
    model_make(&md, 1, 5);
    const char *dir = test_tmpdir();
    char ck[600], a[600], b[600];
    snprintf(ck, sizeof ck, "%s/sparse.safetensors", dir);
    snprintf(a, sizeof a, "%s/a.onnx", dir);
    snprintf(b, sizeof b, "%s/b.onnx", dir);
    REQUIRE_OK(model_save(&md, ck));
    char *out;
    int rc = test_run_bin(&out, "export --weights %s --onnx %s --outputs logits,route", ck, a);
    CHECKF(rc == 0 && strstr(out, "sparse edgenext_xx_small (E=4, top-2)"), "exit %d: %s", rc, out);
    for (const char *const *k = (const char *const[]){ "CamoXpertSparseMoE", "edgenext_xx_small", "num_experts", "top_k",
                                                       "route_experts_s3", "route_probs_s0", "ImageNet", "source", NULL }; *k; k++)
        CHECKF(file_has(a, *k), "%s is not in the exported file", *k);
    rc = test_run_bin(&out, "export --weights %s --onnx %s --outputs logits,route", ck, b);
    unsigned char *fa = NULL, *fb = NULL;
    size_t na = 0, nb = 0;
    CHECK(rc == 0 && !io_read_file(a, &fa, &na) && !io_read_file(b, &fb, &nb));
    CHECKF(na > 1000000 && na == nb && !memcmp(fa, fb, na), "two exports differ (%zu and %zu bytes)", na, nb);
    free(fa), free(fb);
    rc = test_run_bin(&out, "export --weights %s --onnx %s --outputs logits,mask", ck, b);
    CHECKF(rc == 2 && strstr(out, "unknown output group 'mask'"), "exit %d: %s", rc, out);
    rc = test_run_bin(&out, "export --weights %s/none.safetensors --onnx %s", dir, b);
    CHECKF(rc != 0 && strstr(out, "none.safetensors: no such"), "exit %d: %s", rc, out);
    rc = test_run_bin(&out, "export --onnx %s", b);
    CHECKF(rc == 2 && strstr(out, "needs --weights CKPT and --onnx OUT.onnx"), "exit %d: %s", rc, out);
    model_free(&md);
    model_make(&md, 0, 5);
    REQUIRE_OK(model_save(&md, ck));
    rc = test_run_bin(&out, "export --weights %s --onnx %s --outputs route", ck, b);
    CHECKF(rc != 0 && strstr(out, "dense model"), "exit %d: %s", rc, out);
    rc = test_run_bin(&out, "export --weights %s --onnx %s --half --outputs all", ck, b);   // all: what a dense model has
    CHECKF(rc == 0 && strstr(out, "dense edgenext_xx_small, opset 17, float16"), "exit %d: %s", rc, out);
    CHECK(file_has(b, "deep_2") && file_has(b, "refine_2") && file_has(b, "fg_map") && !file_has(b, "route_experts"));
    model_free(&md);
}
