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

TEST(recompute_levels_train_bit_for_bit_dense) { levels_agree("edgenext_xx_small", 0, "global", 2, 64); }
TEST(recompute_levels_train_bit_for_bit_sparse) { levels_agree("edgenext_xx_small", 1, "global", 3, 64); }
TEST(recompute_levels_train_bit_for_bit_spatial) { levels_agree("edgenext_xx_small", 1, "spatial", 2, 64); }

