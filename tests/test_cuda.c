// test_cuda.c — the GPU backend beyond single ops (those are the op table's CUDA
// column): the CamoXpert loss, the optimizer's segment ops, and the whole model
// (forward outputs and every parameter gradient) on the GPU in float32 against
// the CPU, bf16 forward within its tolerance, and an MoE step's host
// synchronisations counted. Every test is skipped without a GPU.
#include "test.h"
#include "nn/camoxpert.h"
#include "nn/cod_head.h"
#include "nn/experts.h"
#include "core/finite.h"
#include "nn/runtime.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/step.h"
#include "infer/infer.h"
#include "train/dist.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// A host float32 tensor of the given shape with values from U(lo, hi).
static Tensor rnd(Arena *a, Rng *r, int ndim, const int64_t *shape, double lo, double hi) {
    Tensor t = tensor_new(a, DT_F32, ndim, shape);
    for (int64_t i = 0; i < tensor_numel(&t); i++) tensor_f32(&t)[i] = (float)(lo + (hi - lo) * rng_uniform(r));
    return t;
}

// ---- the loss ----------------------------------------------------------------------------------------
static void loss_case(int64_t N, int64_t H, int64_t W, cx_dtype act, double tol_terms, double tol_grad) {
    Runtime g;
    REQUIRE_OK(runtime_init(&g, "cuda", act == DT_BF16 ? "bf16" : "fp32", 1, 1));
    Runtime c;
    runtime_init_reference(&c, DT_F32, 1);
    Arena a;
    arena_init(&a, "inputs", 1 << 20);
    Rng r = rng_init(11);
    int64_t full[4] = { N, H, W, 1 };
    CodOutputs o = { 0 };
    o.pred = rnd(&a, &r, 4, full, -6, 6);
    o.fg_map = rnd(&a, &r, 4, full, 0.01, 0.99);
    o.search_map = rnd(&a, &r, 4, full, 0.01, 0.99);
    o.uncertainty = rnd(&a, &r, 4, full, 0.01, 3);
    o.refine[0] = rnd(&a, &r, 4, full, -6, 6);
    for (int j = 0; j < 3; j++) o.deep[j] = rnd(&a, &r, 4, (int64_t[]){ N, H >> (4 - j), W >> (4 - j), 1 }, -6, 6);
    tensor_f32(&o.pred)[3] = 20.f;   // outside the ±15 clamp: no gradient there
    if (act == DT_BF16) {   // the reference sees the same bf16-rounded maps (the kernels' accuracy, not the inputs')
        Tensor *all[8] = { &o.pred, &o.fg_map, &o.search_map, &o.uncertainty, &o.refine[0], &o.deep[0], &o.deep[1],
                           &o.deep[2] };
        for (int i = 0; i < 8; i++) {
            Tensor b = tensor_new(&a, DT_BF16, all[i]->ndim, all[i]->shape);
            tensor_copy(&b, all[i]);
            tensor_copy(all[i], &b);
        }
    }
    Tensor mask = tensor_new(&a, DT_F32, 4, full);
    for (int64_t i = 0; i < tensor_numel(&mask); i++) {
        int64_t y = (i / W) % H, x = i % W;
        tensor_f32(&mask)[i] = (y - H / 2) * (y - H / 2) + (x - W / 3) * (x - W / 3) < H * W / 8 ? 1.f : 0.f;
    }
    // the reference: double arithmetic on the host
    CamoLossWeights w = camo_loss_default_weights();
    CamoLoss Lc, Lg;
    CodOutputs gc, gg, og = o;
    camo_loss_forward_backward(&c.ctx, &w, &o, &mask, 0.5, &Lc, &gc);
    // the GPU: the same maps uploaded in the activation dtype
    Tensor *maps[8] = { &og.pred, &og.fg_map, &og.search_map, &og.uncertainty, &og.refine[0], &og.deep[0], &og.deep[1],
                        &og.deep[2] };
    for (int i = 0; i < 8; i++) *maps[i] = runtime_input(&g, maps[i], act);
    Tensor gmask = runtime_input(&g, &mask, DT_F32);
    camo_loss_forward_backward(&g.ctx, &w, &og, &gmask, 0.5, &Lg, &gg);
    const double *tc = &Lc.total, *tg = &Lg.total;
    const char *names[] = { "total", "bce", "iou", "edge", "boundary", "uncertainty", "reverse_attention", "search", "deep",
                            "refinement", "balance" };
    for (int t = 0; t < 11; t++)
        CHECKF(fabs(tg[t] - tc[t]) <= tol_terms * fmax(fabs(tc[t]), 1e-3), "%s %s: gpu %.9g cpu %.9g", dtype_name(act),
               names[t], tg[t], tc[t]);
    const Tensor *gcs[8] = { &gc.pred, &gc.fg_map, &gc.search_map, &gc.uncertainty, &gc.refine[0], &gc.deep[0], &gc.deep[1],
                             &gc.deep[2] };
    const Tensor *ggs[8] = { &gg.pred, &gg.fg_map, &gg.search_map, &gg.uncertainty, &gg.refine[0], &gg.deep[0], &gg.deep[1],
                             &gg.deep[2] };
    double worst = 0;
    for (int i = 0; i < 8; i++) {
        Tensor h = runtime_output_f32(&g, ggs[i]);
        double e = test_rel_err(&h, gcs[i], 1e-30);
        worst = fmax(worst, e);
        CHECKF(e <= tol_grad, "%s gradient %d: rel err %.3g > %.3g", dtype_name(act), i, e, tol_grad);
    }
    printf("    %s %lldx%lldx%lld: loss %.6f (cpu %.6f), worst gradient rel err %.3g\n", dtype_name(act), (long long)N,
           (long long)H, (long long)W, Lg.total, Lc.total, worst);
    arena_free(&a);
    runtime_free(&c);
    runtime_free(&g);
}

TEST(cuda_loss_matches_reference) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    loss_case(2, 32, 32, DT_F32, 1e-5, 1e-4);
    loss_case(3, 96, 80, DT_F32, 1e-5, 1e-4);
    // bf16 maps (the reference on the same rounded maps): the sums run in float32,
    // the gradients are stored in bf16 (8 significant bits: 4e-3 relative)
    loss_case(2, 32, 32, DT_BF16, 1e-5, 1e-2);
}

// ---- the optimizer -----------------------------------------------------------------------------------
static void table(ParamTable *pt) {
    params_init(pt);
    params_add(pt, "a.weight", 2, (int64_t[]){ 300, 500 }, PG_REST, 0);
    params_add(pt, "a.bias", 1, (int64_t[]){ 300 }, PG_REST, PF_NO_DECAY);
    params_add(pt, "router.weight", 2, (int64_t[]){ 6, 77 }, PG_ROUTER, 0);
    params_add(pt, "bb.weight", 1, (int64_t[]){ 1000 }, PG_BACKBONE, 0);
    params_add(pt, "bn.running_mean", 1, (int64_t[]){ 17 }, PG_REST, PF_BUFFER);
    params_alloc(pt, DT_F32);
}

TEST(cuda_optimizer_matches_cpu) {
    OpCtx *gop = test_cuda();
    if (!gop) { test_skip("%s", test_no_gpu()); return; }
    ParamTable pc, pg;
    table(&pc);
    table(&pg);
    Rng r = rng_init(5);
    for (int64_t i = 0; i < pc.numel; i++) {
        ((float *)pc.data)[i] = ((float *)pg.data)[i] = (float)rng_normal(&r);
    }
    params_to_device(&pg);
    Arena sc;
    arena_init(&sc, "scratch", 1 << 16);
    OpCtx cop = { .backend = OPS_CPU, .scratch = &sc };
    AdamW oc, og;
    adamw_init(&oc, &pc, 1e-2);
    adamw_init(&og, &pg, 1e-2);
    oc.group_scale[PG_ROUTER] = og.group_scale[PG_ROUTER] = 0.1;
    unsigned char frozen[8] = { 0, 0, 0, 1, 0 };   // the "backbone" entry frozen: neither clipped nor stepped
    oc.entry_frozen = og.entry_frozen = frozen;
    Ema ec, eg;
    ema_init(&ec, &pc, 0.9);
    ema_init(&eg, &pg, 0.9);
    Arena dev;
    arena_init_on(&dev, "stats", 4096, DEV_CUDA);
    Tensor sc_stats = tensor_new(&sc, DT_F32, 1, (int64_t[]){ 3 }), sg_stats = tensor_new(&dev, DT_F32, 1, (int64_t[]){ 3 });
    Tensor gh = tensor_new(&sc, DT_F32, 1, &pc.numel);
    for (int step = 0; step < 3; step++) {
        for (int64_t i = 0; i < pc.numel; i++) ((float *)pc.grad)[i] = (float)(rng_normal(&r) * (step + 1));
        memcpy(gh.data, pc.grad, sizeof(float) * (size_t)pc.numel);
        Tensor gd = tensor_view(pg.grad, DT_F32, 1, &pg.numel);
        gd.device = DEV_CUDA;
        tensor_upload(&gd, &gh);
        double max_norm = step == 1 ? 1e9 : 5.0;   // clipped, not clipped, clipped
        optim_grad_clip_stats(&cop, &pc, &oc, max_norm, &sc_stats);
        optim_grad_clip_stats(gop, &pg, &og, max_norm, &sg_stats);
        Tensor sgh = tensor_new(&sc, DT_F32, 1, (int64_t[]){ 3 });
        tensor_download(&sgh, &sg_stats);
        for (int k = 0; k < 3; k++)
            CHECKF(fabs(tensor_get(&sgh, k) - tensor_get(&sc_stats, k)) <= 1e-5 * fabs(tensor_get(&sc_stats, k)),
                   "step %d stats[%d]: gpu %.9g cpu %.9g", step, k, tensor_get(&sgh, k), tensor_get(&sc_stats, k));
        Tensor s1 = tensor_slice0(&sc_stats, 2, 1), s2 = tensor_slice0(&sg_stats, 2, 1);
        adamw_step(&cop, &oc, &pc, 1e-2, &s1);
        adamw_step(gop, &og, &pg, 1e-2, &s2);
        ema_update(&cop, &ec, &pc);
        ema_update(gop, &eg, &pg);
    }
    params_sync_host(&pg);
    adamw_sync_host(&og);
    ema_sync_host(&eg);
    Tensor a = tensor_view(pg.host, DT_F32, 1, &pc.numel), b = tensor_view(pc.data, DT_F32, 1, &pc.numel);
    CHECKF(test_rel_err(&a, &b, 0) <= 1e-6, "parameters: rel err %.3g", test_rel_err(&a, &b, 0));
    Tensor m1 = tensor_view(og.host_m, DT_F32, 1, &pc.numel), m2 = tensor_view(oc.host_m, DT_F32, 1, &pc.numel);
    Tensor v1 = tensor_view(og.host_v, DT_F32, 1, &pc.numel), v2 = tensor_view(oc.host_v, DT_F32, 1, &pc.numel);
    CHECKF(test_rel_err(&m1, &m2, 0) <= 1e-5 && test_rel_err(&v1, &v2, 0) <= 1e-5, "moments: rel err %.3g, %.3g",
           test_rel_err(&m1, &m2, 0), test_rel_err(&v1, &v2, 0));
    Tensor e1 = tensor_view(eg.host, DT_F32, 1, &pc.numel), e2 = tensor_view(ec.shadow, DT_F32, 1, &pc.numel);
    CHECKF(test_rel_err(&e1, &e2, 0) <= 1e-6, "EMA: rel err %.3g", test_rel_err(&e1, &e2, 0));
    // the frozen entry did not move
    const ParamInfo *fz = &pc.p[3];
    CHECK(!memcmp((float *)pg.host + fz->offset, (float *)pc.data + fz->offset, sizeof(float) * (size_t)fz->numel));
    adamw_free(&oc), adamw_free(&og), ema_free(&ec), ema_free(&eg);
    params_free(&pc), params_free(&pg);
    arena_free(&dev);
    arena_free(&sc);
}

// ---- the whole model -----------------------------------------------------------------------------------
// One training-mode forward, loss and backward on rt; outputs (pred) and the
// gradient buffer come back to the host.
typedef struct { CamoLoss L; Tensor pred, grad; int64_t syncs; Tensor maps[10], dmaps[8]; } ModelRun;

// The ten output maps (forward) and the loss's eight map gradients, as host float32 copies.
static const char *map_names[10] = { "pred", "fg_map", "search_map", "uncertainty", "initial_pred", "refine0", "refine1",
                                     "deep0", "deep1", "deep2" };
static void keep_maps(Runtime *rt, const CodOutputs *o, Tensor *dst, int grads, Arena *keep) {
    const Tensor *src[10] = { &o->pred, &o->fg_map, &o->search_map, &o->uncertainty, &o->initial_pred, &o->refine[0],
                              &o->refine[1], &o->deep[0], &o->deep[1], &o->deep[2] };
    const Tensor *gsrc[8] = { &o->pred, &o->fg_map, &o->search_map, &o->uncertainty, &o->refine[0], &o->deep[0],
                              &o->deep[1], &o->deep[2] };
    for (int i = 0; i < (grads ? 8 : 10); i++) {
        Tensor h = runtime_output_f32(rt, grads ? gsrc[i] : src[i]);
        dst[i] = tensor_new(keep, DT_F32, h.ndim, h.shape);
        tensor_copy(&dst[i], &h);
    }
}

static void model_run(Runtime *rt, CamoXpert *m, ParamTable *pt, const Tensor *x, const Tensor *mask, Arena *keep,
                      ModelRun *out) {
    NNCtx *c = &rt->ctx;
    c->pt = pt;
    c->training = 1;
    runtime_step_reset(rt);
    int64_t s0 = cx_sync_count();
    Tensor xi = runtime_input(rt, x, rt->dtype), yi = runtime_input(rt, mask, DT_F32);
    CamoXpertOutputs o;
    camoxpert_forward(c, m, &xi, &o);
    CamoLossWeights w = camo_loss_default_weights();
    CodOutputs g;
    camo_loss_forward_backward(c, &w, &o.maps, &yi, o.balance_loss, &out->L, &g);
    params_zero_grad(pt);
    camoxpert_backward(c, m, &g, w.balance, NULL);
    int64_t s1 = cx_sync_count();
    keep_maps(rt, &o.maps, out->maps, 0, keep);
    keep_maps(rt, &g, out->dmaps, 1, keep);
    s0 += cx_sync_count() - s1;   // the copies for the comparison are not the step's
    out->syncs = cx_sync_count() - s0;
    Tensor p = runtime_output_f32(rt, &o.maps.pred);
    out->pred = tensor_new(keep, DT_F32, p.ndim, p.shape);
    tensor_copy(&out->pred, &p);
    out->grad = tensor_new(keep, DT_F32, 1, &pt->numel);
    if (pt->device == DEV_CUDA) {
        Tensor gd = tensor_view(pt->grad, DT_F32, 1, &pt->numel);
        gd.device = DEV_CUDA;
        tensor_download(&out->grad, &gd);
    } else {
        memcpy(out->grad.data, pt->grad, sizeof(float) * (size_t)pt->numel);
    }
}

static void model_case(int sparse) {
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", sparse, 4, 2));
    ParamTable pc, pg, pb;
    params_init(&pc), params_init(&pg), params_init(&pb);
    CamoXpert *m = camoxpert_create(&cfg, &pc);
    camoxpert_free(camoxpert_create(&cfg, &pg));   // the same layout in two more tables
    camoxpert_free(camoxpert_create(&cfg, &pb));
    params_alloc(&pc, DT_F32), params_alloc(&pg, DT_F32), params_alloc(&pb, DT_F32);
    Rng r = rng_init(21);
    camoxpert_init(m, &pc, &r);
    params_copy_values(&pg, &pc);
    params_copy_values(&pb, &pc);
    Arena keep;
    arena_init(&keep, "keep", 1 << 20);
    Tensor x = rnd(&keep, &r, 4, (int64_t[]){ 4, 64, 64, 3 }, -2, 2);
    Tensor mask = tensor_new(&keep, DT_F32, 4, (int64_t[]){ 4, 64, 64, 1 });
    for (int64_t i = 0; i < tensor_numel(&mask); i++) tensor_f32(&mask)[i] = ((i / 64) % 64 - 30) * ((i / 64) % 64 - 30) + (i % 64 - 28) * (i % 64 - 28) < 300;
    // the GPU's float32 and the exact gradients (float64, reference kernels) take the CPU run's
    // ReLU decisions (ops.h, ReluTape); the free-running GPU pass is reported
    Runtime rc, rg, rb;
    REQUIRE_OK(runtime_init(&rc, "cpu", "fp32", 0, 1));
    REQUIRE_OK(runtime_init(&rg, "cuda", "fp32", 0, 1));
    REQUIRE_OK(runtime_init(&rb, "cuda", "bf16", 0, 1));
    runtime_place(&rg, &pg);
    runtime_place(&rb, &pb);
    ReluTape tape = { 0 };
    ModelRun c, g, gfree, b;
    rc.ctx.op.relu_tape = &tape;
    model_run(&rc, m, &pc, &x, &mask, &keep, &c);
    rc.ctx.op.relu_tape = NULL;
    model_run(&rg, m, &pg, &x, &mask, &keep, &gfree);   // the first GPU step also uploads the positional encoding: not counted
    model_run(&rg, m, &pg, &x, &mask, &keep, &gfree);
    relu_tape_rewind(&tape, 1);
    rg.ctx.op.relu_tape = &tape;
    model_run(&rg, m, &pg, &x, &mask, &keep, &g);
    rg.ctx.op.relu_tape = NULL;
    const int64_t differed_gpu = tape.differed;
    model_run(&rb, m, &pb, &x, &mask, &keep, &b);
    ParamTable p64;
    params_init(&p64);
    camoxpert_free(camoxpert_create(&cfg, &p64));
    params_alloc(&p64, DT_F64);
    params_copy_values(&p64, &pc);
    Runtime r64;
    runtime_init_reference(&r64, DT_F64, 1);
    Tensor x64 = tensor_new(&keep, DT_F64, 4, x.shape), y64 = tensor_new(&keep, DT_F64, 4, mask.shape);
    tensor_copy(&x64, &x);
    tensor_copy(&y64, &mask);
    relu_tape_rewind(&tape, 1);
    r64.ctx.op.relu_tape = &tape;
    {
        NNCtx *c = &r64.ctx;
        c->pt = &p64, c->training = 1;
        CamoXpertOutputs o;
        camoxpert_forward(c, m, &x64, &o);
        CamoLossWeights w = camo_loss_default_weights();
        CamoLoss L;
        CodOutputs g;
        camo_loss_forward_backward(c, &w, &o.maps, &y64, o.balance_loss, &L, &g);
        params_zero_grad(&p64);
        camoxpert_backward(c, m, &g, w.balance, NULL);
    }
    r64.ctx.op.relu_tape = NULL;
    printf("    %s: %lld ReLU decisions, taken from the CPU run; the GPU's own differed in %lld, float64's in %lld\n",
           sparse ? "sparse" : "dense", (long long)tape.n, (long long)differed_gpu, (long long)tape.differed);
    relu_tape_free(&tape);
    double ep = test_rel_err(&g.pred, &c.pred, 0);
    CHECKF(ep <= 1e-4, "%s fp32 pred: rel err %.3g", sparse ? "sparse" : "dense", ep);
    CHECKF(fabs(g.L.total - c.L.total) <= 1e-4 * fabs(c.L.total), "fp32 loss gpu %.9g cpu %.9g", g.L.total, c.L.total);
    double worst = 0, worst_b = 0, gmax = 0, worst64 = 0, wfree = 0;
    const char *wn = "", *wfn = "";
    for (int64_t k = 0; k < pc.numel; k++) gmax = fmax(gmax, fabs(tensor_f32(&c.grad)[k]));
    for (int i = 0; i < pc.n; i++) {
        if (pc.p[i].flags & PF_BUFFER) continue;
        Tensor a = tensor_view(tensor_f32(&g.grad) + pc.p[i].offset, DT_F32, 1, &pc.p[i].numel);
        Tensor bb = tensor_view(tensor_f32(&b.grad) + pc.p[i].offset, DT_F32, 1, &pc.p[i].numel);
        Tensor ref = tensor_view(tensor_f32(&c.grad) + pc.p[i].offset, DT_F32, 1, &pc.p[i].numel);
        // the fixtures' floor (1e-4 of the largest gradient) in L2: zero gradients compare to a scale
        double fl = 1e-4 * gmax * sqrt((double)pc.p[i].numel);
        Tensor af = tensor_view(tensor_f32(&gfree.grad) + pc.p[i].offset, DT_F32, 1, &pc.p[i].numel);
        double e = tensor_rel_l2(&a, &ref, fl), eb = tensor_rel_l2(&bb, &ref, fl), ef = tensor_rel_l2(&af, &ref, fl);
        if (!(ef <= wfree)) wfree = ef, wfn = pc.p[i].name;
        if (!(e <= worst)) worst = e, wn = pc.p[i].name;
        if (!(eb <= worst_b)) worst_b = eb;
        // verify's rule: within 1e-3 of the CPU's float32 gradient, or (where that one's own rounding
        // puts it further from exact) within 1e-3 of the float64 gradient
        Tensor t64 = params_grad(&p64, i);
        double e64 = tensor_rel_l2(&a, &t64, fl), c64 = tensor_rel_l2(&ref, &t64, fl);
        worst64 = fmax(worst64, e64);
        CHECKF(e <= 1e-3 || e64 <= 1e-3, "%s fp32 gradient %s: %.3g from the CPU's float32, %.3g from float64 (the CPU's "
               "float32 %.3g)", sparse ? "sparse" : "dense", pc.p[i].name, e, e64, c64);
    }
    // where the maps or the loss's gradients part (the first place a drift shows)
    static const char *grad_names[8] = { "pred", "fg_map", "search_map", "uncertainty", "refine0", "deep0", "deep1", "deep2" };
    for (int i = 0; i < 10; i++)
        printf("    %s map %s: gpu-cpu %.3g\n", sparse ? "sparse" : "dense", map_names[i], tensor_rel_l2(&g.maps[i], &c.maps[i], 0));
    for (int i = 0; i < 8; i++)
        printf("    %s loss gradient of %s: gpu-cpu %.3g\n", sparse ? "sparse" : "dense", grad_names[i],
               tensor_rel_l2(&g.dmaps[i], &c.dmaps[i], 0));
    double eb = tensor_rel_l2(&b.pred, &c.pred, 0);
    // bf16 forward through ~60 layers of random weights: a sanity bound here; verify holds the fixtures to 2e-2
    CHECKF(eb <= 0.1, "%s bf16 pred: rel L2 %.3g", sparse ? "sparse" : "dense", eb);
    printf("    %s: fp32 pred %.3g, loss %.6f vs %.6f, worst gradient rel L2 %.3g (%s), against float64 %.3g; bf16 pred "
           "rel L2 %.3g, worst gradient rel L2 %.3g; host syncs per step fp32 %lld; with its own ReLU decisions the GPU's "
           "worst gradient %.3g (%s)\n", sparse ? "sparse" : "dense", ep, g.L.total, c.L.total, worst, wn, worst64, eb,
           worst_b, (long long)gfree.syncs, wfree, wfn);
    if (sparse) {   // issue 28: a dense step's and one read of every scale's routing (moe.h)
        CHECKF(gfree.syncs <= 4, "an MoE step made %lld host synchronisations", (long long)gfree.syncs);
    } else {        // a dense step: inputs up (2), loss terms down (1)
        CHECKF(gfree.syncs <= 3, "a dense step made %lld host synchronisations", (long long)gfree.syncs);
    }
    runtime_free(&rc), runtime_free(&rg), runtime_free(&rb), runtime_free(&r64);
    camoxpert_free(m);
    params_free(&pc), params_free(&pg), params_free(&pb), params_free(&p64);
    arena_free(&keep);
}

TEST(cuda_model_dense_matches_cpu) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    model_case(0);
}

// A dense evaluation forward captured as a CUDA graph gives, bit for bit, the eager
// forward's output, for the input it was captured with and for a new one.
TEST(cuda_graph_forward_equals_the_eager_forward) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", 0, 4, 2));
    Rng r = rng_init(9);   // the inputs
    Arena keep;
    arena_init(&keep, "keep", 1 << 20);
    Tensor x1 = rnd(&keep, &r, 4, (int64_t[]){ 2, 64, 64, 3 }, -2, 2), x2 = rnd(&keep, &r, 4, x1.shape, -2, 2);
    for (int bf = 0; bf < 2; bf++) {
        Model mo;
        REQUIRE_OK(model_open(&mo, &(ModelSpec){ .config = &cfg, .init_seed = 8, .device = "cuda",
                                                 .precision = bf ? "bf16" : "fp32" }));
        Runtime *rt = mo.rt;
        RuntimeGraph g;
        runtime_graph_capture(rt, &g, &x1, infer_forward_pred, mo.net);
        CHECKF(g.exec != NULL, "%s: no graph: %s", bf ? "bf16" : "fp32", g.why);
        if (!g.exec) { model_close(&mo); continue; }
        printf("    %s: graph of %s\n", bf ? "bf16" : "fp32", g.why);
        for (int k = 0; k < 2; k++) {
            const Tensor *x = k ? &x2 : &x1;
            Tensor a = runtime_graph_run(rt, &g, x), ga = tensor_new(&keep, DT_F32, a.ndim, a.shape);
            tensor_copy(&ga, &a);
            CamoXpertOutputs o;
            Tensor e = infer_forward(&mo, x, &o);
            double d = 0;
            for (int64_t i = 0; i < tensor_numel(&e); i++) d = fmax(d, fabs(tensor_f32(&e)[i] - tensor_f32(&ga)[i]));
            CHECKF(d == 0, "%s input %d: graph and eager forward differ by %.3g", bf ? "bf16" : "fp32", k + 1, d);
        }
        // a graph replayed after the eager forward above still reads its own input
        Tensor a = runtime_graph_run(rt, &g, &x1);
        CHECK(isfinite(tensor_f32(&a)[0]));
        runtime_graph_free(rt, &g);
        model_close(&mo);
    }
    arena_free(&keep);
}

TEST(cuda_model_sparse_matches_cpu) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    model_case(1);
}

// ---- verify's bf16 rule (issue 26; src/cli/verify.h) -----------------------------------------------------
// src with metadata pairs kv (NULL-terminated) added, written to dst.
static void fixture_with_meta(const char *src, const char *dst, const char *const *kv) {
    StFile f;   // the whole file in memory: entries' data point into it (st_open reads them on demand)
    unsigned char *buf = NULL;
    size_t n = 0;
    REQUIRE_OK(io_read_file(src, &buf, &n));
    REQUIRE_OK(st_open_buffer(&f, src, buf, n));
    StWriter w;
    st_writer_init(&w);
    Tensor *ts = cx_calloc((size_t)f.n, sizeof *ts);
    for (int i = 0; i < f.n; i++) {
        const StEntry *e = &f.entries[i];
        ts[i] = tensor_view((void *)e->data, e->dtype, e->ndim, e->shape);
        st_writer_add(&w, e->name, &ts[i]);
    }
    for (int i = 0; i < f.n_meta; i++) st_writer_meta(&w, f.meta_keys[i], f.meta_vals[i]);
    for (int i = 0; kv[i]; i += 2) st_writer_meta(&w, kv[i], kv[i + 1]);
    CHECK(st_writer_save(&w, dst) == CX_OK);
    st_writer_free(&w);
    free(ts);
    st_close(&f);
}

// PyTorch's autocast errors recorded in a fixture set the bf16 bounds: over 2e-2 on an
// evaluation output, 1.5x it (and the line after says so); under it, 2e-2 still; on the
// training-mode prediction, 1.5x it. A malformed value fails with what it should be.
TEST(cuda_verify_bf16_bounds_from_recorded_autocast_errors) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    const char *src = "tests/fixtures/camoxpert_sparse_xx_small_train.safetensors";
    char a[700], b[700], *out;
    snprintf(a, sizeof a, "%s/recorded.safetensors", test_tmpdir());
    snprintf(b, sizeof b, "%s/malformed.safetensors", test_tmpdir());
    fixture_with_meta(src, a, (const char *const[]){ "bf16_ref_err/output/eval/refine0", "0.05",
                                                     "bf16_ref_err/output/eval/deep0", "0.01",
                                                     "bf16_ref_err/output/train/pred", "0.2", NULL });
    fixture_with_meta(src, b, (const char *const[]){ "bf16_ref_err/output/eval/pred", "5e-2x", NULL });
    test_run_bin(&out, "verify --device cuda --precision bf16 '%s'", a);
    CHECKF(strstr(out, "output/eval/refine0: bound 0.075 = 1.5 x PyTorch's bf16 autocast error on this fixture (0.05)") &&
           strstr(out, "output/train/pred: bound 0.3 = 1.5 x") && !strstr(out, "output/eval/deep0: bound"),
           "raised bounds not said as expected:\n%s", out);
    const char *l = strstr(out, "output/eval/deep0 (gpu, bf16)");
    char line[200] = "";
    if (l) snprintf(line, sizeof line, "%.*s", (int)strcspn(l, "\n"), l);
    CHECKF(strstr(line, "tol 2e-02"), "deep0's bound is not 2e-2: '%s'\n%s", line, out);
    int rc = test_run_bin(&out, "verify --device cuda --precision bf16 --quiet '%s'", b);
    CHECKF(rc == 1 && strstr(out, "'bf16_ref_err/output/eval/pred' = '5e-2x' is not a non-negative number"),
           "exit %d\n%s", rc, out);
}

// Issue 28: a sparse training step (forward, loss, backward) reads its routing on the host
// once — the four scales' decisions in one download, nothing uploaded back (spatial
// routing's index lists go up as queued copies) — so it makes one host synchronisation
// more than a dense step (inputs up, loss down), global and spatial routing alike; the
// batch-1 evaluation forward makes two (the input's upload, the routing's read). The
// former dispatch (CAMOXPERT_MOE_PLAN=old) is run beside it for the record, and gives the
// same prediction and gradients in float32 (the same kernels; exp and log of the routing's
// backward may round apart in the last bit).
TEST(cuda_sparse_step_reads_routing_once) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    static const char *routings[2] = { "global", "spatial" };
    for (int ri = 0; ri < 2; ri++) {
        CamoXpertConfig cfg;
        REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", 1, 5, 2));
        REQUIRE_OK(camoxpert_config_routing(&cfg, routings[ri], 3));
        ParamTable pc, pg[2];
        params_init(&pc), params_init(&pg[0]), params_init(&pg[1]);
        CamoXpert *m = camoxpert_create(&cfg, &pc);
        camoxpert_free(camoxpert_create(&cfg, &pg[0]));
        camoxpert_free(camoxpert_create(&cfg, &pg[1]));
        params_alloc(&pc, DT_F32), params_alloc(&pg[0], DT_F32), params_alloc(&pg[1], DT_F32);
        Rng r = rng_init(23);
        camoxpert_init(m, &pc, &r);
        params_copy_values(&pg[0], &pc);
        params_copy_values(&pg[1], &pc);
        Arena keep;
        arena_init(&keep, "keep", 1 << 20);
        Tensor x = rnd(&keep, &r, 4, (int64_t[]){ 4, 64, 64, 3 }, -2, 2);
        Tensor mask = tensor_new(&keep, DT_F32, 4, (int64_t[]){ 4, 64, 64, 1 });
        for (int64_t i = 0; i < tensor_numel(&mask); i++) tensor_f32(&mask)[i] = (i / 64) % 64 > 24 && i % 64 < 40;
        ModelRun run[2];
        int64_t infer_syncs[2];
        for (int legacy = 1; legacy >= 0; legacy--) {
            moe_plan_set_legacy(legacy);
            Runtime rg;
            REQUIRE_OK(runtime_init(&rg, "cuda", "fp32", 0, 1));
            runtime_place(&rg, &pg[legacy]);
            model_run(&rg, m, &pg[legacy], &x, &mask, &keep, &run[legacy]);   // the arenas settle
            model_run(&rg, m, &pg[legacy], &x, &mask, &keep, &run[legacy]);
            rg.ctx.training = 0;
            runtime_step_reset(&rg);
            Tensor x1 = tensor_slice0(&x, 0, 1);
            int64_t s0 = cx_sync_count();
            Tensor xi = runtime_input(&rg, &x1, rg.dtype);
            CamoXpertOutputs o;
            camoxpert_forward(&rg.ctx, m, &xi, &o);
            infer_syncs[legacy] = cx_sync_count() - s0;
            runtime_free(&rg);
        }
        moe_plan_set_legacy(0);
        const double ep = test_rel_err(&run[0].pred, &run[1].pred, 0), eg = test_rel_err(&run[0].grad, &run[1].grad, 0);
        printf("    %s routing: host syncs per training step %lld (former dispatch %lld), batch-1 forward %lld (%lld); "
               "new vs former: pred %.3g, gradients %.3g, loss %.9g vs %.9g\n", routings[ri], (long long)run[0].syncs,
               (long long)run[1].syncs, (long long)infer_syncs[0], (long long)infer_syncs[1], ep, eg, run[0].L.total,
               run[1].L.total);
        CHECKF(run[0].syncs <= 4, "%s: a sparse training step made %lld host synchronisations (dense: 3)", routings[ri],
               (long long)run[0].syncs);
        CHECKF(infer_syncs[0] <= 2, "%s: a sparse batch-1 forward made %lld host synchronisations", routings[ri],
               (long long)infer_syncs[0]);
        CHECKF(ep <= 1e-6 && eg <= 1e-5, "%s: new vs former dispatch: pred %.3g, gradients %.3g", routings[ri], ep, eg);
        camoxpert_free(m);
        params_free(&pc), params_free(&pg[0]), params_free(&pg[1]);
        arena_free(&keep);
    }
}

// ---- one module at a time ------------------------------------------------------------------------------
// Each expert at the fixtures' shapes (the finest and the coarsest scale: BatchNorm over
// 8 rows there) and the whole head, forward and backward in training mode on the CPU
// (float32), the reference kernels (float64) and the GPU (float32), with the same
// random output gradient: the input and parameter gradients of the GPU within 1e-3 of
// the CPU's, or of the exact ones. Where the whole model's gradients drift, this names
// the module.
typedef struct { Tensor dx[4]; Tensor grad; } ModGrads;

// Runs module `which` (an expert_kind, or EXPERT_KINDS for the head) on rt.
static void module_run(Runtime *rt, ParamTable *pt, int which, Expert *e, CodHead *h, const Tensor *xs, int nx,
                       const Tensor *dy, const Tensor *mask, Arena *keep, ModGrads *out) {
    NNCtx *c = &rt->ctx;
    c->pt = pt;
    c->training = 1;
    runtime_step_reset(rt);
    Tensor x[4], dx[4];
    for (int i = 0; i < nx; i++) {
        x[i] = runtime_input(rt, &xs[i], rt->dtype);
        Tensor z = tensor_zeros(keep, DT_F32, xs[i].ndim, xs[i].shape);
        dx[i] = runtime_input(rt, &z, rt->dtype);
    }
    params_zero_grad(pt);
    if (which < EXPERT_KINDS) {
        expert_forward(c, e, &x[0]);
        Tensor g = runtime_input(rt, dy, rt->dtype);
        expert_backward(c, e, &g, &dx[0]);
    } else {
        CodOutputs o, g;
        cod_head_forward(c, h, x, 64, 64, &o);
        CamoLossWeights w = camo_loss_default_weights();
        CamoLoss L;
        Tensor m = runtime_input(rt, mask, DT_F32);
        camo_loss_forward_backward(c, &w, &o, &m, 0.0, &L, &g);
        cod_head_backward(c, h, &g, dx);
    }
    for (int i = 0; i < nx; i++) {
        Tensor t = runtime_output_f32(rt, &dx[i]);
        out->dx[i] = tensor_new(keep, DT_F32, t.ndim, t.shape);
        tensor_copy(&out->dx[i], &t);
    }
    out->grad = tensor_new(keep, DT_F32, 1, &pt->numel);
    if (pt->device == DEV_CUDA) {
        Tensor gd = tensor_view(pt->grad, DT_F32, 1, &pt->numel);
        gd.device = DEV_CUDA;
        tensor_download(&out->grad, &gd);
    } else {
        Tensor gh = tensor_view(pt->grad, pt->dtype, 1, &pt->numel);
        tensor_copy(&out->grad, &gh);
    }
}

static void module_case(int which, int64_t hw, int d) {
    const int dims[4] = { 24, 48, 88, 168 };
    ParamTable pt[3];
    Expert e[3];
    CodHead h[3];
    for (int k = 0; k < 3; k++) {
        params_init(&pt[k]);
        if (which < EXPERT_KINDS) expert_create(&e[k], &pt[k], "m", (expert_kind)which, d, PG_REST);
        else cod_head_create(&h[k], &pt[k], dims);
        params_alloc(&pt[k], k == 2 ? DT_F64 : DT_F32);
    }
    Rng r = rng_init(31 + which);
    if (which < EXPERT_KINDS) expert_init(&e[0], &pt[0], &r);
    else cod_head_init(&h[0], &pt[0], &r);
    params_copy_values(&pt[1], &pt[0]);
    params_copy_values(&pt[2], &pt[0]);
    Arena keep;
    arena_init(&keep, "keep", 1 << 20);
    Tensor xs[4], dy = { 0 }, mask = { 0 };
    int nx = which < EXPERT_KINDS ? 1 : 4;
    if (which < EXPERT_KINDS) {
        xs[0] = rnd(&keep, &r, 4, (int64_t[]){ 2, hw, hw, d }, -2, 2);
        dy = rnd(&keep, &r, 4, xs[0].shape, -1, 1);
    } else {
        for (int s = 0; s < 4; s++) xs[s] = rnd(&keep, &r, 4, (int64_t[]){ 2, 64 >> (s + 2), 64 >> (s + 2), dims[s] }, -2, 2);
        mask = tensor_new(&keep, DT_F32, 4, (int64_t[]){ 2, 64, 64, 1 });
        for (int64_t i = 0; i < tensor_numel(&mask); i++)
            tensor_f32(&mask)[i] = ((i / 64) % 64 - 30) * ((i / 64) % 64 - 30) + (i % 64 - 28) * (i % 64 - 28) < 300;
    }
    Runtime rc, rg, r64;
    REQUIRE_OK(runtime_init(&rc, "cpu", "fp32", 0, 1));
    REQUIRE_OK(runtime_init(&rg, "cuda", "fp32", 0, 1));
    runtime_init_reference(&r64, DT_F64, 1);
    runtime_place(&rg, &pt[1]);
    ModGrads c, g, x;
    // The GPU and float64 take the CPU run's ReLU decisions (as the whole model's tests do):
    // a value next to zero that one side's rounding moves across it changes the gradients of
    // everything before it by up to 5e-3 (the head's few-channel layers), which is not a fault.
    ReluTape tape = { 0 };
    rc.ctx.op.relu_tape = &tape;
    module_run(&rc, &pt[0], which, &e[0], &h[0], xs, nx, &dy, &mask, &keep, &c);
    rc.ctx.op.relu_tape = NULL;
    relu_tape_rewind(&tape, 1);
    rg.ctx.op.relu_tape = &tape;
    module_run(&rg, &pt[1], which, &e[0], &h[0], xs, nx, &dy, &mask, &keep, &g);
    rg.ctx.op.relu_tape = NULL;
    const int64_t differed_gpu = tape.differed;
    relu_tape_rewind(&tape, 1);
    r64.ctx.op.relu_tape = &tape;
    module_run(&r64, &pt[2], which, &e[0], &h[0], xs, nx, &dy, &mask, &keep, &x);
    r64.ctx.op.relu_tape = NULL;
    if (tape.n)
        printf("    %s: %lld ReLU decisions, taken from the CPU run; the GPU's own differed in %lld, float64's in %lld\n",
               which < EXPERT_KINDS ? expert_kind_name((expert_kind)which) : "head", (long long)tape.n,
               (long long)differed_gpu, (long long)tape.differed);
    relu_tape_free(&tape);
    const char *name = which < EXPERT_KINDS ? expert_kind_name((expert_kind)which) : "head";
    double worst = 0, worst64 = 0, cworst = 0;
    const char *wn = "";
    for (int i = 0; i < nx; i++) {
        double eg = tensor_rel_l2(&g.dx[i], &c.dx[i], 0), e64 = tensor_rel_l2(&g.dx[i], &x.dx[i], 0), c64 = tensor_rel_l2(&c.dx[i], &x.dx[i], 0);
        printf("    %s %lldx%lld: dx[%d] gpu-cpu %.3g, gpu-f64 %.3g, cpu-f64 %.3g\n", name, (long long)hw, (long long)hw, i,
               eg, e64, c64);
        CHECKF(eg <= 1e-3 || e64 <= 1e-3, "%s %lldx%lld dx[%d]: %.3g from the CPU, %.3g from float64", name,
               (long long)hw, (long long)hw, i, eg, e64);
    }
    double gmax = 0;
    for (int64_t k = 0; k < pt[0].numel; k++) gmax = fmax(gmax, fabs(tensor_f32(&c.grad)[k]));
    for (int i = 0; i < pt[0].n; i++) {
        if (pt[0].p[i].flags & PF_BUFFER) continue;
        int64_t n = pt[0].p[i].numel, o = pt[0].p[i].offset;
        Tensor a = tensor_view(tensor_f32(&g.grad) + o, DT_F32, 1, &n), b = tensor_view(tensor_f32(&c.grad) + o, DT_F32, 1, &n);
        Tensor t = tensor_view(tensor_f32(&x.grad) + o, DT_F32, 1, &n);
        double fl = 1e-4 * gmax * sqrt((double)n);
        double eg = tensor_rel_l2(&a, &b, fl), e64 = tensor_rel_l2(&a, &t, fl), c64 = tensor_rel_l2(&b, &t, fl);
        if (!(eg <= worst)) worst = eg, wn = pt[0].p[i].name;
        worst64 = fmax(worst64, e64), cworst = fmax(cworst, c64);
        CHECKF(eg <= 1e-3 || e64 <= 1e-3, "%s %lldx%lld gradient %s: %.3g from the CPU, %.3g from float64 (the CPU %.3g)",
               name, (long long)hw, (long long)hw, pt[0].p[i].name, eg, e64, c64);
    }
    printf("    %s %lldx%lld: parameter gradients worst gpu-cpu %.3g (%s), gpu-f64 %.3g, cpu-f64 %.3g\n", name,
           (long long)hw, (long long)hw, worst, wn, worst64, cworst);
    runtime_free(&rc), runtime_free(&rg), runtime_free(&r64);
    for (int k = 0; k < 3; k++) params_free(&pt[k]);
    arena_free(&keep);
}

TEST(cuda_modules_match_cpu) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    for (int k = 0; k < EXPERT_KINDS; k++) {
        module_case(k, 16, 24);
        module_case(k, 2, 168);
    }
    module_case(EXPERT_KINDS, 0, 0);
}

// ---- several GPUs: NCCL ------------------------------------------------------------------------------
// One rank (a process started by fork + exec: `camoxpert_tests --child nccl RANK WORLD PORT MODE`):
// the rendezvous, the NCCL id from rank 0, then an all-reduce of 1M+3 floats checked on
// every rank. MODE "die": after one all-reduce together the last rank exits; the others'
// next all-reduce must fail within its 5 s deadline instead of hanging. (A rank that dies
// before the first collective is caught by NCCL's own connection timeout, about 60 s,
// and in training earlier by the rendezvous, train/dist.h.) MODE "term": the same, but the
// survivors wait with the 60 s deadline and get SIGTERM a second into it (as the launcher
// sends when a rank died): they must stop within the 3 s grace, not at the deadline.
// Exit status: 0 = as expected.
static volatile sig_atomic_t child_stop;
static void child_on_term(int sig) { (void)sig; child_stop = 1; }
static void *child_term_later(void *arg) {
    (void)arg;
    usleep(1000 * 1000);
    kill(getpid(), SIGTERM);
    return NULL;
}

int test_child_main(int argc, char **argv) {
    if (argc != 5 || strcmp(argv[0], "nccl")) return 90;
    const int rank = atoi(argv[1]), world = atoi(argv[2]), port = atoi(argv[3]);
    const int term = !strcmp(argv[4], "term"), die = term || !strcmp(argv[4], "die");
    DistEnv e = { .rank = rank, .world = world, .local_rank = rank, .local_world = world, .master_port = port,
                  .source = "test" };
    snprintf(e.master_addr, sizeof e.master_addr, "127.0.0.1");
    DistStore s;
    if (dist_store_open(&s, &e, 30)) { fprintf(stderr, "rank %d: %s\n", rank, cx_errmsg()); return 91; }
    char dev[16];
    snprintf(dev, sizeof dev, "cuda:%d", rank);
    Runtime rt;
    if (runtime_init(&rt, dev, "fp32", 1, 1)) { fprintf(stderr, "rank %d: %s\n", rank, cx_errmsg()); return 92; }
    unsigned char id[128] = { 0 };
    if (rank == 0 && ops_nccl_unique_id(id)) { fprintf(stderr, "rank 0: %s\n", cx_errmsg()); return 93; }
    if (dist_broadcast(&s, id, sizeof id)) return 94;
    void *comm = NULL;
    if (ops_nccl_open(&rt.ctx.op, &comm, id, rank, world)) { fprintf(stderr, "rank %d: %s\n", rank, cx_errmsg()); return 95; }
    const int64_t n = (1 << 20) + 3;
    Arena a;
    arena_init(&a, "host", 1 << 20);
    Tensor h = tensor_new(&a, DT_F32, 1, &n);
    for (int64_t i = 0; i < n; i++) tensor_f32(&h)[i] = (float)(rank + 1) + (float)(i % 1000) * 1e-3f;
    Tensor d = runtime_input(&rt, &h, DT_F32);
    if (die) {   // one all-reduce together (NCCL connects its peers on the first), then the last rank is gone
        Tensor d2 = runtime_input(&rt, &h, DT_F32);
        if (ops_nccl_allreduce_sum(&rt.ctx.op, &comm, &d2, 60, NULL)) { fprintf(stderr, "rank %d: %s\n", rank, cx_errmsg()); return 95; }
        if (rank == world - 1) _exit(0);
    }
    pthread_t later;
    if (term) {
        signal(SIGTERM, child_on_term);
        pthread_create(&later, NULL, child_term_later, NULL);
    }
    const double t0 = cx_time_s();
    cx_status st = ops_nccl_allreduce_sum(&rt.ctx.op, &comm, &d, die && !term ? 5 : 60, &child_stop);
    const double dt = cx_time_s() - t0;
    if (die) {
        int ok = st != CX_OK && (strstr(cx_errmsg(), "did not complete") || strstr(cx_errmsg(), "failed") ||
                                 (term && strstr(cx_errmsg(), "asked to stop"))) && dt < (term ? 10 : 20);
        if (!ok) fprintf(stderr, "rank %d: all-reduce without the dead rank: %s after %.1f s\n", rank,
                         st ? cx_errmsg() : "succeeded", dt);
        _exit(ok ? 0 : 96);   // the aborted communicator and the runtime are left to the exit
    }
    if (st) { fprintf(stderr, "rank %d: %s\n", rank, cx_errmsg()); return 97; }
    Tensor back = runtime_output_f32(&rt, &d);
    int bad = 0;
    for (int64_t i = 0; i < n && bad < 3; i++) {
        double want = 0;
        for (int r = 0; r < world; r++) want += (double)((float)(r + 1) + (float)(i % 1000) * 1e-3f);
        if (fabs(tensor_f32(&back)[i] - want) > 1e-6 * fabs(want)) {
            fprintf(stderr, "rank %d: element %lld is %.9g, want %.9g\n", rank, (long long)i, tensor_f32(&back)[i], want);
            bad++;
        }
    }
    ops_nccl_close(comm);
    arena_free(&a);
    runtime_free(&rt);
    dist_store_close(&s);
    return bad ? 98 : 0;
}


// Starts `world` ranks of test_child_main; fills status[] with their exit codes (-1: killed).
static void nccl_ranks(int world, const char *mode, int *status) {
    const int port = test_free_port();
    pid_t kids[8];
    for (int r = 0; r < world; r++) {
        kids[r] = fork();
        if (kids[r] == 0) {
            char rs[8], ws[8], ps[8];
            snprintf(rs, sizeof rs, "%d", r), snprintf(ws, sizeof ws, "%d", world), snprintf(ps, sizeof ps, "%d", port);
            execl("/proc/self/exe", "camoxpert_tests", "--child", "nccl", rs, ws, ps, mode, (char *)NULL);
            _exit(99);
        }
    }
    for (int r = 0; r < world; r++) {
        int st = 0;
        waitpid(kids[r], &st, 0);
        status[r] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
}

TEST(cuda_nccl_allreduce_across_gpus_and_a_dead_rank_stops_the_others) {
    if (!test_cuda()) { test_skip("%s", test_no_gpu()); return; }
    const int gpus = ops_cuda_device_count(NULL, 0);
    if (gpus < 2) { test_skip("one GPU on this machine; NCCL across GPUs needs two (nvidia-h100-x2)"); return; }
    const int world = gpus < 4 ? gpus : 4;
    int status[8];
    nccl_ranks(world, "ok", status);
    for (int r = 0; r < world; r++) CHECKF(status[r] == 0, "rank %d of %d: exit status %d", r, world, status[r]);
    const double t0 = cx_time_s();
    nccl_ranks(world, "die", status);
    for (int r = 0; r < world; r++) CHECKF(status[r] == 0, "dead-rank case, rank %d of %d: exit status %d", r, world, status[r]);
    const double t1 = cx_time_s();
    nccl_ranks(world, "term", status);
    for (int r = 0; r < world; r++) CHECKF(status[r] == 0, "SIGTERM case, rank %d of %d: exit status %d", r, world, status[r]);
    printf("    %d GPUs: all-reduce of 1M floats exact; with a rank gone the others stopped in %.1f s at their 5 s "
           "deadline, and in %.1f s with a 60 s deadline and SIGTERM a second in\n", world, t1 - t0, cx_time_s() - t1);
}
