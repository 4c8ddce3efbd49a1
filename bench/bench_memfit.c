// bench_memfit.c — the measurements nn/memory.c's coefficients are fitted to: the
// activation arena's peak of an inference and of a training step at each recomputation
// level (none, cheap, blocks), per model configuration, on the CPU in float32. Each run
// is what tests/test_hostile.c's hostile_memory_estimate_matches_the_measured_peaks does
// (the same seeds, one thread, the arenas reserved first so the run lies in one block)
// except that the reservation is generous, so that a run the current coefficients
// underestimate is measured in one block too. tools/memfit.py reads the lines and fits.
//
//   build/camoxpert_bench memfit                  the default sweep (every backbone, docs/PERF.md "The estimate")
//   build/camoxpert_bench memfit --quick          the test's three cases only
//   build/camoxpert_bench memfit edgenext_base:1:6:2:2:352 ...   backbone:sparse:E:k:batch:size
//   build/camoxpert_bench memfit > peaks.txt && /usr/bin/python3 tools/memfit.py peaks.txt
//
// One line per configuration and mode:
//   memfit edgenext_small sparse=1 E=4 k=2 B=2 S=128 mode=cheap px=32768 f=F0,F1,... peak=BYTES est=BYTES ratio=R
// (f: camoxpert_memory_features, the terms the estimate per pixel is linear in; est: the current
// estimate; ratio: est/peak, the test's measure).
#include "bench.h"
#include "core/log.h"
#include "core/threads.h"
#include "infer/open.h"
#include "nn/memory.h"
#include "nn/recompute.h"
#include "train/loss.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *bb; int sparse, E, k, B, S; } MemCase;

static const char *const backbones[] = { "edgenext_xx_small", "edgenext_x_small", "edgenext_small", "edgenext_small_rw",
                                         "edgenext_base" };

// The default sweep: every backbone dense, sparse E=4 with k = 1, 2, 4 and E=6 with k = 6, at
// 128²×2 and 192²×1; the test's three cases; edgenext_base at 352²×1 dense and ×2 sparse (k = 2).
static int default_cases(MemCase *c, int cap, int quick) {
    static const MemCase tests[] = {
        { "edgenext_xx_small", 1, 4, 2, 2, 64 },
        { "edgenext_x_small", 0, 4, 4, 1, 96 },
        { "edgenext_small_rw", 1, 6, 6, 1, 64 },
    };
    static const int sizes[2][2] = { { 2, 128 }, { 1, 192 } };   // batch, side
    static const int ek[5][3] = { { 0, 4, 4 }, { 1, 4, 1 }, { 1, 4, 2 }, { 1, 4, 4 }, { 1, 6, 6 } };   // sparse, E, k
    int n = 0;
    for (size_t i = 0; i < sizeof tests / sizeof *tests && n < cap; i++) c[n++] = tests[i];
    if (quick) return n;
    for (size_t b = 0; b < sizeof backbones / sizeof *backbones; b++)
        for (int z = 0; z < 2; z++)
            for (int j = 0; j < 5 && n < cap; j++)
                c[n++] = (MemCase){ backbones[b], ek[j][0], ek[j][1], ek[j][2], sizes[z][0], sizes[z][1] };
    if (n < cap) c[n++] = (MemCase){ "edgenext_base", 0, 4, 4, 1, 352 };
    if (n < cap) c[n++] = (MemCase){ "edgenext_base", 1, 4, 2, 2, 352 };
    return n;
}

static int parse_case(const char *s, MemCase *c) {
    static char names[64][32];
    static int used;
    char bb[32];
    if (used == 64 || sscanf(s, "%31[^:]:%d:%d:%d:%d:%d", bb, &c->sparse, &c->E, &c->k, &c->B, &c->S) != 6) return 0;
    snprintf(names[used], sizeof names[used], "%s", bb);
    c->bb = names[used++];
    return 1;
}

// One configuration in one mode (0 inference, 1 + level training): prints its line.
static int measure(const MemCase *c, int mode) {
    const int training = mode > 0;
    const nn_recompute level = training ? (nn_recompute)(mode - 1) : NN_RECOMPUTE_NONE;
    CamoXpertConfig cfg;
    cx_status st = camoxpert_config(&cfg, c->bb, c->sparse, c->E, c->k);
    if (st == CX_OK) st = camoxpert_check_img_size(c->S, "size");
    if (st == CX_OK && c->B < 1) st = CX_FAIL(CX_EARG, "batch %d: must be 1 or more", c->B);
    if (st != CX_OK) return fprintf(stderr, "memfit: %s\n", cx_errmsg()), 1;
    Model mo;
    st = model_open(&mo, &(ModelSpec){ .config = &cfg, .init_seed = 1, .training = training, .inference = !training });
    if (st != CX_OK) return fprintf(stderr, "memfit: %s\n", cx_errmsg()), 1;
    NNCtx *ctx = &mo.rt->ctx;
    ctx->recompute = level;
    MemEstimate e;
    camoxpert_memory_estimate(&cfg, mo.pt.numel, c->B, c->S, training, level, 0, 4, &e);
    runtime_reserve(mo.rt, 2 * e.activations + (64 << 20), e.scratch);   // one block, whatever the estimate
    Rng rng = rng_init(2);   // the inputs, as the test's
    Arena io;
    arena_init(&io, "io", 1 << 20);
    Tensor x = tensor_new4(&io, DT_F32, c->B, c->S, c->S, 3), mask = tensor_new4(&io, DT_F32, c->B, c->S, c->S, 1);
    for (int64_t j = 0; j < tensor_numel(&x); j++) tensor_f32(&x)[j] = (float)rng_normal(&rng);
    for (int64_t j = 0; j < tensor_numel(&mask); j++) tensor_f32(&mask)[j] = (j % 7) < 3;
    CamoXpertOutputs o;
    camoxpert_forward(ctx, mo.net, &x, &o);
    if (training) {
        CamoLossWeights w = camo_loss_default_weights();
        CamoLoss L;
        CodOutputs g;
        camo_loss_forward_backward(ctx, &w, &o.maps, &mask, o.balance_loss, &L, &g);
        camoxpert_backward(ctx, mo.net, &g, w.balance, NULL);
    }
    const Arena *act = &mo.rt->act;
    double f[MEM_FEATURES];
    camoxpert_memory_features(&cfg, f);
    printf("memfit %s sparse=%d E=%d k=%d B=%d S=%d mode=%s px=%.0f f=", c->bb, c->sparse, c->E, c->k, c->B, c->S,
           training ? nn_recompute_name(level) : "inference", (double)c->B * c->S * c->S);
    for (int i = 0; i < MEM_FEATURES; i++) printf("%s%.6g", i ? "," : "", f[i]);
    printf(" peak=%zu est=%.0f ratio=%.4f%s\n", act->peak, e.activations, e.activations / (double)act->peak,
           act->top && act->top->prev ? " (grew a block)" : "");
    fflush(stdout);
    arena_free(&io);
    model_close(&mo);
    return 0;
}

int bench_memfit_main(int argc, char **argv) {
    enum { CAP = 128 };
    MemCase cases[CAP];
    int n = 0, quick = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (n < CAP && parse_case(argv[i], &cases[n])) n++;
        else {
            fprintf(stderr, "memfit: '%s': expected --quick or BACKBONE:SPARSE:E:K:BATCH:SIZE "
                            "(e.g. edgenext_small:1:4:2:2:128)\n", argv[i]);
            return 2;
        }
    }
    if (!n) n = default_cases(cases, CAP, quick);
    log_set_level(LOG_WARN);
    cx_threads_set(1);   // as the test: one thread (the scratch arena's peak follows the thread count)
    for (int i = 0; i < n; i++)
        for (int mode = 0; mode < 4; mode++)
            if (measure(&cases[i], mode)) return 1;
    return 0;
}
