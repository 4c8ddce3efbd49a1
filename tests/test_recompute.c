// test_recompute.c — recomputation (train --recompute) and evaluation liveness
// (nn/recompute.h): training steps with every level give the same losses, gradient
// norms, weights, BatchNorm running statistics and counters as keeping everything,
// bit for bit, dense and sparse (global and spatial routing), while the activation
// arena's peak falls level by level; evaluation's peak is a fraction of the
// training forward's and grows with the batch, not with the depth.
#include "test.h"
#include "infer/open.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/step.h"
#include <string.h>

typedef struct {
    double loss[4], norm[4];
    double *values;       // the table after the steps (values, then the counters)
    int64_t n;
    size_t act_peak;
    char where[160];      // set by a comparison: the entry of the first difference
} Run;

// The table entry holding element i of Run.values (the counters follow the values).
static void entry_name(const ParamTable *pt, int64_t i, char *buf, size_t n) {
    if (i >= pt->numel) { snprintf(buf, n, "counter of %s", pt->p[i - pt->numel].name); return; }
    for (int e = 0; e < pt->n; e++)
        if (i >= pt->p[e].offset && i < pt->p[e].offset + pt->p[e].numel) {
            snprintf(buf, n, "%s[%lld]", pt->p[e].name, (long long)(i - pt->p[e].offset));
            return;
        }
    snprintf(buf, n, "padding at %lld", (long long)i);
}

static void run_free(Run *r) { free(r->values); }

// `steps` optimizer steps of the trainer's step (train/step.h) on fixed random
// batches, on the CPU's fast kernels, one thread.
// ref: a run to compare with (its first differing element is named in r->where), or NULL.
static void run_steps(const CamoXpertConfig *cfg, nn_recompute level, int B, int S, int steps, const Run *ref, Run *r) {
    memset(r, 0, sizeof *r);
    Model mo;
    if (model_open(&mo, &(ModelSpec){ .config = cfg, .init_seed = 5, .training = 1 })) {
        test_fail(__FILE__, __LINE__, "model_open: %s", cx_errmsg());
        return;
    }
    Runtime *rt = mo.rt;
    rt->ctx.recompute = level;
    AdamW opt;
    adamw_init(&opt, &mo.pt, 1e-3);
    CamoLossWeights w = camo_loss_default_weights();
    TrainStep st;
    train_step_init(&st, rt, mo.net, &mo.pt, &opt, NULL, &w);
    Arena io;
    arena_init(&io, "inputs", 1 << 20);
    Rng rng = rng_init(11);
    for (int it = 0; it < steps; it++) {
        Tensor x = tensor_new4(&io, DT_F32, B, S, S, 3), mask = tensor_new4(&io, DT_F32, B, S, S, 1);
        for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&rng);
        for (int b = 0; b < B; b++)   // a disc per image, off centre by the image index
            for (int i = 0; i < S; i++)
                for (int j = 0; j < S; j++) {
                    double dy = i - S * (0.4 + 0.05 * b), dx = j - S * 0.5;
                    tensor_f32(&mask)[((int64_t)b * S + i) * S + j] = dy * dy + dx * dx < S * S / 9.0;
                }
        train_step_begin(&st);
        CamoXpertOutputs o;
        train_step_accumulate(&st, &x, &mask, 0, &o);
        StepResult sr;
        if (train_step_finish(&st, 1e-3, 0.5, &sr)) test_fail(__FILE__, __LINE__, "step: %s", cx_errmsg());
        r->loss[it] = sr.loss.total;
        r->norm[it] = sr.grad_norm;
        arena_reset(&io);
    }
    r->act_peak = rt->act.peak;
    r->n = mo.pt.numel + mo.pt.n;
    r->values = cx_malloc(sizeof(double) * (size_t)r->n);
    Tensor v = tensor_view(mo.pt.data, mo.pt.dtype, 1, &mo.pt.numel);
    for (int64_t i = 0; i < mo.pt.numel; i++) r->values[i] = tensor_get(&v, i);
    for (int i = 0; i < mo.pt.n; i++) r->values[mo.pt.numel + i] = (double)mo.pt.counter[i];
    for (int64_t i = 0; ref && i < r->n; i++)
        if (memcmp(&r->values[i], &ref->values[i], sizeof(double))) {
            entry_name(&mo.pt, i, r->where, sizeof r->where);
            break;
        }
    arena_free(&io);
    train_step_free(&st);
    adamw_free(&opt);
    model_close(&mo);
}

static void levels_agree(const char *bb, int sparse, const char *routing, int B, int S) {
    cx_threads_set(1);
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, bb, sparse, 4, 2));
    if (sparse) REQUIRE_OK(camoxpert_config_routing(&cfg, routing, 2));
    const int steps = 3;
    Run r[3];
    for (int l = 0; l < 3; l++) run_steps(&cfg, (nn_recompute)l, B, S, steps, l ? &r[0] : NULL, &r[l]);
    for (int l = 1; l < 3 && !test_failed(); l++) {
        for (int it = 0; it < steps; it++)
            CHECKF(r[l].loss[it] == r[0].loss[it] && r[l].norm[it] == r[0].norm[it],
                   "%s %s step %d: loss %.17g, gradient norm %.17g; without recomputation %.17g, %.17g",
                   bb, nn_recompute_name((nn_recompute)l), it + 1, r[l].loss[it], r[l].norm[it], r[0].loss[it], r[0].norm[it]);
        int64_t bad = -1;
        for (int64_t i = 0; i < r[0].n && bad < 0; i++)
            if (memcmp(&r[l].values[i], &r[0].values[i], sizeof(double))) bad = i;
        CHECKF(bad < 0, "%s %s: %s is %.17g, without recomputation %.17g", bb, nn_recompute_name((nn_recompute)l),
               r[l].where, bad >= 0 ? r[l].values[bad] : 0, bad >= 0 ? r[0].values[bad] : 0);
    }
    printf("  %s%s%s: activation peaks none %.1f, cheap %.1f, blocks %.1f MiB; losses %.6f .. %.6f\n", bb,
           sparse ? " sparse " : " dense", sparse ? routing : "", r[0].act_peak / 1048576.0, r[1].act_peak / 1048576.0,
           r[2].act_peak / 1048576.0, r[0].loss[0], r[0].loss[steps - 1]);
    CHECKF(r[1].act_peak < r[0].act_peak && r[2].act_peak < r[1].act_peak, "peaks none %zu, cheap %zu, blocks %zu",
           r[0].act_peak, r[1].act_peak, r[2].act_peak);
    for (int l = 0; l < 3; l++) run_free(&r[l]);
    cx_threads_set(0);
}

TEST_SLOW(recompute_levels_train_bit_for_bit_dense) { levels_agree("edgenext_xx_small", 0, "global", 2, 64); }
TEST_SLOW(recompute_levels_train_bit_for_bit_sparse) { levels_agree("edgenext_xx_small", 1, "global", 3, 64); }
TEST_SLOW(recompute_levels_train_bit_for_bit_spatial) { levels_agree("edgenext_xx_small", 1, "spatial", 2, 64); }

// bytes of "N MiB" / "N.N GiB" at s (memory_str's forms), or -1
static double parse_mem(const char *s) {
    double v;
    char unit[8];
    if (!s || sscanf(s, "%lf %3s", &v, unit) != 2) return -1;
    return !strcmp(unit, "GiB") ? v * 1073741824.0 : !strcmp(unit, "MiB") ? v * 1048576.0 : !strcmp(unit, "TiB") ? v * 1099511627776.0 : -1;
}

// --recompute auto under a faked small budget (CAMOXPERT_MEMORY_LIMIT_MB): none and cheap
// do not fit, so train says it takes blocks on its first lines, and the run — its arenas'
// peak and the whole process's RSS — stays inside the budget. Under a smaller budget still
// it is refused before any step with the batch size that fits at blocks.
TEST_SLOW(recompute_auto_picks_the_level_that_fits_a_faked_budget) {
    char ds[700], ck[700];
    snprintf(ds, sizeof ds, "%s/auto_set", test_tmpdir());
    snprintf(ck, sizeof ck, "%s/auto_ck", test_tmpdir());
    char *o;
    REQUIRE(test_run_bin(NULL, "synth --out %s --train 16 --test 2 --size 128 --seed 2 --threads 1", ds) == 0);
    const char *common = "--device cpu --backbone edgenext_xx_small --img-size 128 --batch-size 8 --stage1-epochs 0 "
                         "--epochs 1 --max-steps 2 --val-fraction 0 --progress 0 --threads 1 --num-workers 1 --overwrite";
    const double limit_mb = 1100;   // none needs about 1.4 GiB here, cheap 1.1 GiB, blocks under 1 GiB
    setenv("CAMOXPERT_MEMORY_LIMIT_MB", "1100", 1);
    int rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s", ds, ck, common);
    CHECKF(rc == 0 && strstr(o, "recompute: blocks (auto: the cheapest level that fits"), "exit %d: %s", rc, o);
    const char *peak = strstr(o, "memory: peak "), *rss = strstr(o, "process RSS ");
    double pb = parse_mem(peak ? peak + 13 : NULL), rb = parse_mem(rss ? rss + 12 : NULL);
    CHECKF(pb > 0 && rb > 0 && pb <= limit_mb * 1048576 && rb <= limit_mb * 1048576,
           "under a %.0f MiB budget the run took %.0f MiB (arenas and tables), %.0f MiB RSS: %s", limit_mb, pb / 1048576,
           rb / 1048576, o);
    // The same run without the budget keeps everything: the losses are the same to the last bit.
    unsetenv("CAMOXPERT_MEMORY_LIMIT_MB");
    char ck2[760];
    snprintf(ck2, sizeof ck2, "%s_none", ck);
    rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s %s --recompute none", ds, ck2, common);
    CHECKF(rc == 0 && strstr(o, "recompute: none (--recompute)"), "exit %d: %s", rc, o);
    char pa[800], pn[800];
    snprintf(pa, sizeof pa, "%s/train_log.jsonl", ck);
    snprintf(pn, sizeof pn, "%s/train_log.jsonl", ck2);
    unsigned char *la = NULL, *ln = NULL;
    size_t na = 0, nn = 0;
    REQUIRE_OK(io_read_file(pa, &la, &na));
    REQUIRE_OK(io_read_file(pn, &ln, &nn));
    int steps = 0, same = 1;
    const char *a = (const char *)la, *n = (const char *)ln;
    while ((a = strstr(a, "\"loss\":")) && (n = strstr(n, "\"loss\":"))) {
        same &= strtod(a + 7, NULL) == strtod(n + 7, NULL);
        steps++, a++, n++;
    }
    CHECKF(steps >= 2 && same, "%d steps logged; losses %s", steps, same ? "agree" : "differ");
    free(la);
    free(ln);
    setenv("CAMOXPERT_MEMORY_LIMIT_MB", "700", 1);
    rc = test_run_bin(&o, "train --dataset-path %s --checkpoint-dir %s_small %s", ds, ck, common);
    CHECKF(rc == 2 && strstr(o, "with --recompute blocks") && strstr(o, "--batch-size") && strstr(o, "fits") &&
           !strstr(o, "stopped at step"), "exit %d: %s", rc, o);
    unsetenv("CAMOXPERT_MEMORY_LIMIT_MB");
}

// Inference liveness (ctx->inference): every output — the maps, the features, the
// enhanced features — is bit for bit the forward's that keeps every activation, while the
// activation arena's peak is a small fraction of it; dense, sparse global and spatial.
static void inference_outputs(const CamoXpertConfig *cfg, int inference, int B, int S, Tensor *copies, int *n,
                              size_t *peak) {
    Model mo;
    if (model_open(&mo, &(ModelSpec){ .config = cfg, .init_seed = 3, .inference = inference })) {
        test_fail(__FILE__, __LINE__, "model_open: %s", cx_errmsg());
        return;
    }
    Arena io;
    arena_init(&io, "inputs", 1 << 20);
    Rng rng = rng_init(4);
    Tensor x = tensor_new4(&io, DT_F32, B, S, S, 3);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)rng_normal(&rng);
    CamoXpertOutputs o;
    camoxpert_forward(&mo.rt->ctx, mo.net, &x, &o);
    const Tensor *all[] = { &o.maps.pred, &o.maps.fg_map, &o.maps.search_map, &o.maps.uncertainty,
                            &o.maps.initial_pred, &o.maps.refine[0], &o.maps.refine[1], &o.maps.deep[0],
                            &o.maps.deep[1], &o.maps.deep[2], &o.feats[0], &o.feats[1], &o.feats[2], &o.feats[3],
                            &o.enhanced[0], &o.enhanced[1], &o.enhanced[2], &o.enhanced[3] };
    *n = (int)(sizeof all / sizeof *all);
    for (int i = 0; i < *n; i++) {
        copies[i] = tensor_view(cx_malloc(tensor_nbytes(all[i])), all[i]->dtype, all[i]->ndim, all[i]->shape);
        memcpy(copies[i].data, all[i]->data, tensor_nbytes(all[i]));
    }
    *peak = mo.rt->act.peak;
    arena_free(&io);
    model_close(&mo);
}

static void inference_agrees(int sparse, const char *routing) {
    cx_threads_set(1);
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", sparse, 4, 2));
    if (sparse) REQUIRE_OK(camoxpert_config_routing(&cfg, routing, 2));
    Tensor keep[24], live[24];
    int nk = 0, nl = 0;
    size_t pk = 0, pl = 0;
    inference_outputs(&cfg, 0, 2, 64, keep, &nk, &pk);
    inference_outputs(&cfg, 1, 2, 64, live, &nl, &pl);
    REQUIRE(nk == nl && nk > 0);
    for (int i = 0; i < nk; i++) {
        CHECKF(tensor_nbytes(&keep[i]) == tensor_nbytes(&live[i]) &&
               !memcmp(keep[i].data, live[i].data, tensor_nbytes(&keep[i])), "output %d differs under liveness", i);
        free(keep[i].data);
        free(live[i].data);
    }
    printf("  %s%s: activation peak %.1f MiB keeping everything, %.1f MiB giving each back once read\n",
           sparse ? "sparse " : "dense", sparse ? routing : "", pk / 1048576.0, pl / 1048576.0);
    CHECKF(pl * 5 < pk, "inference peak %zu, keeping everything %zu", pl, pk);
    cx_threads_set(0);
}

TEST(recompute_inference_liveness_gives_the_same_outputs_dense) { inference_agrees(0, "global"); }
TEST(recompute_inference_liveness_gives_the_same_outputs_sparse) { inference_agrees(1, "global"); }
TEST(recompute_inference_liveness_gives_the_same_outputs_spatial) { inference_agrees(1, "spatial"); }
