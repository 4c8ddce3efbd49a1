// test_camoxpert.c — tests of the CamoXpert model (nn/experts, nn/moe,
// nn/cod_head, nn/camoxpert) and its loss (train/loss): central finite
// differences in float64 for every expert kind, the MoE layer under each
// balancing scheme (router gradients included), the COD head and every loss
// term; grouped dispatch against a per-image loop; the aux-loss-free bias;
// the reference parameter totals; checkpoint save/load and its errors; and
// `camoxpert verify` on the shared reference fixtures and the twin's sparse
// training fixture.
#include "test.h"
#include "nn/camoxpert.h"
#include "infer/open.h"
#include "nn/weights.h"
#include "train/loss.h"
#include "nn/runtime.h"
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// ---- a float64 finite-difference harness --------------------------------------------------

#define FD_MAX_IN 8

typedef struct FdEnv FdEnv;
struct FdEnv {
    ParamTable pt;
    Arena act, scratch, keep, host, hscratch;
    NNCtx ctx;
    Tensor in[FD_MAX_IN], din[FD_MAX_IN];   // inputs (in `keep`) and their analytic gradients
    int n_in;
    // forward from the inputs, loss = Σ out·probe (+ extras); with grad, backward into
    // ctx.pt->grad and din (both zeroed by the harness)
    double (*run)(FdEnv *e, int grad);
    void *user;
};

static void fd_env_init(FdEnv *e, int training) {
    memset(e, 0, sizeof *e);
    params_init(&e->pt);
    arena_init(&e->act, "activations", 8 << 20);
    arena_init(&e->scratch, "scratch", 4 << 20);
    arena_init(&e->keep, "inputs", 1 << 20);
    arena_init(&e->host, "host tensors", 1 << 16);
    arena_init(&e->hscratch, "host scratch", 1 << 16);
    e->ctx = (NNCtx){ .pt = &e->pt, .op = { .backend = OPS_REF, .scratch = &e->scratch },
                      .host_op = { .backend = OPS_REF, .scratch = &e->hscratch }, .act = &e->act, .host = &e->host,
                      .dtype = DT_F64, .training = training };
}

static void fd_reset(FdEnv *e) {
    arena_reset(&e->act);
    arena_reset(&e->host);
}

static void fd_env_free(FdEnv *e) {
    params_free(&e->pt);
    arena_free(&e->act);
    arena_free(&e->scratch);
    arena_free(&e->keep);
    arena_free(&e->host);
    arena_free(&e->hscratch);
}

static Tensor fd_random(FdEnv *e, Rng *r, int ndim, const int64_t *shape, double lo, double hi) {
    Tensor t = tensor_new(&e->keep, DT_F64, ndim, shape);
    for (int64_t i = 0; i < tensor_numel(&t); i++) tensor_set(&t, i, lo + (hi - lo) * rng_uniform(r));
    return t;
}

static void fd_add_input(FdEnv *e, Tensor t) {
    e->in[e->n_in] = t;
    e->din[e->n_in] = tensor_zeros_like(&e->keep, &t);
    e->n_in++;
}

// Σ a·b over all elements
static double dot(const Tensor *a, const Tensor *b) {
    double s = 0;
    for (int64_t i = 0; i < tensor_numel(a); i++) s += tensor_get(a, i) * tensor_get(b, i);
    return s;
}

// Σ |t| over all elements
static double abs_sum(Tensor t) {
    double s = 0;
    for (int64_t i = 0; i < tensor_numel(&t); i++) s += fabs(tensor_get(&t, i));
    return s;
}

// Compares analytic and central-difference derivatives at up to `per` sampled
// elements of every trainable parameter (every `stride`-th entry) and of every
// input; returns the worst relative error, checking it against tol.
static double fd_check(FdEnv *e, const char *what, int per, int stride, double tol) {
    Rng r = rng_init(99);
    for (int i = 0; i < e->n_in; i++) tensor_zero(&e->din[i]);
    params_zero_grad(&e->pt);
    e->run(e, 1);
    double *an = cx_malloc(sizeof(double) * (size_t)e->pt.numel);
    Tensor ga = tensor_view(an, DT_F64, 1, (int64_t[]){ e->pt.numel });
    Tensor gall = tensor_view(e->pt.grad, DT_F64, 1, (int64_t[]){ e->pt.numel });
    tensor_copy(&ga, &gall);
    double gmax = 0;
    for (int64_t i = 0; i < e->pt.numel; i++) gmax = fmax(gmax, fabs(an[i]));
    for (int i = 0; i < e->n_in; i++)
        for (int64_t j = 0; j < tensor_numel(&e->din[i]); j++) gmax = fmax(gmax, fabs(tensor_get(&e->din[i], j)));
    const double h = 1e-5;
    double worst = 0;
    int n_cmp = 0;
    for (int p = -e->n_in; p < e->pt.n; p++) {
        Tensor v;
        const char *name;
        char nb[64];
        if (p < 0) {
            v = e->in[-p - 1];
            snprintf(nb, sizeof nb, "input %d", -p - 1);
            name = nb;
        } else {
            if (e->pt.p[p].flags & PF_BUFFER || p % stride) continue;
            v = params_value(&e->pt, p);
            name = e->pt.p[p].name;
        }
        int64_t n = tensor_numel(&v);
        for (int s = 0; s < per && s < n; s++) {
            int64_t j = per >= n ? s : (int64_t)rng_below(&r, (uint64_t)n);
            double a = p < 0 ? tensor_get(&e->din[-p - 1], j) : an[e->pt.p[p].offset + j];
            double x0 = tensor_get(&v, j);
            tensor_set(&v, j, x0 + h);
            double lp = e->run(e, 0);
            tensor_set(&v, j, x0 - h);
            double lm = e->run(e, 0);
            tensor_set(&v, j, x0);
            double fd = (lp - lm) / (2 * h);
            double err = fabs(a - fd) / fmax(fmax(fabs(a), fabs(fd)), 1e-3 * gmax + 1e-12);
            worst = fmax(worst, err);
            n_cmp++;
            CHECKF(err < tol, "%s: %s[%lld]: analytic %.10g, finite difference %.10g (rel err %.2e)", what, name,
                   (long long)j, a, fd, err);
        }
    }
    free(an);
    CHECKF(n_cmp > 0, "%s: nothing compared", what);
    return worst;
}

// ---- experts ---------------------------------------------------------------------------------

typedef struct { Expert ex; Tensor probe; } ExpertCase;

static double expert_run(FdEnv *e, int grad) {
    ExpertCase *c = e->user;
    fd_reset(e);
    Tensor y = expert_forward(&e->ctx, &c->ex, &e->in[0]);
    double L = dot(&y, &c->probe);
    if (grad) expert_backward(&e->ctx, &c->ex, &c->probe, &e->din[0]);
    return L;
}

static void expert_fd(expert_kind kind) {
    FdEnv e;
    fd_env_init(&e, 1);
    ExpertCase c;
    expert_create(&c.ex, &e.pt, "x", kind, 8, PG_REST);
    params_alloc(&e.pt, DT_F64);
    Rng r = rng_init(7 + kind);
    expert_init(&c.ex, &e.pt, &r);
    // O(1) BN affine parameters so every path shows
    for (int i = 0; i < e.pt.n; i++)
        if (e.pt.p[i].ndim == 1 && !(e.pt.p[i].flags & PF_BUFFER)) {
            Tensor v = params_value(&e.pt, i);
            for (int64_t j = 0; j < tensor_numel(&v); j++) tensor_set(&v, j, 0.5 + rng_uniform(&r));
        }
    int64_t sh[4] = { 3, 6, 5, 8 };
    fd_add_input(&e, fd_random(&e, &r, 4, sh, -1, 1));
    c.probe = fd_random(&e, &r, 4, sh, -1, 1);
    e.run = expert_run;
    e.user = &c;
    char what[64];
    snprintf(what, sizeof what, "%s expert", expert_kind_name(kind));
    fd_check(&e, what, 3, 1, 1e-5);
    fd_env_free(&e);
}

TEST(camoxpert_fd_texture_expert) { expert_fd(EXPERT_TEXTURE); }
TEST(camoxpert_fd_frequency_expert) { expert_fd(EXPERT_FREQUENCY); }
TEST(camoxpert_fd_edge_expert) { expert_fd(EXPERT_EDGE); }
TEST(camoxpert_fd_contrast_expert) { expert_fd(EXPERT_CONTRAST); }

// ---- the MoE layer -------------------------------------------------------------------------

typedef struct { Moe m; Tensor probe; } MoeCase;

static double moe_run(FdEnv *e, int grad) {
    MoeCase *c = e->user;
    fd_reset(e);
    Tensor y = moe_forward(&e->ctx, &c->m, &e->in[0]);
    double L = dot(&y, &c->probe) + c->m.route.lb_loss;
    if (grad) moe_backward(&e->ctx, &c->m, &c->probe, 1.0, &e->din[0]);
    return L;
}

static void moe_setup(FdEnv *e, MoeCase *c, moe_balance b, int E, int k, int U, int training) {
    fd_env_init(e, training);
    moe_create(&c->m, &e->pt, "moe_layers.0", 8, E, k, b, b == MOE_BALANCE_MSE ? 0.5 : 0.3);
    params_alloc(&e->pt, DT_F64);
    Rng r = rng_init(11 + b);
    moe_init(&c->m, &e->pt, &r);
    // a router strong enough that the balancing gradients are visible
    Tensor w = params_value(&e->pt, c->m.router_w_idx);
    scale_inplace(&e->ctx.op, &w, 8.0);
    int64_t sh[4] = { U, 4, 4, 8 };
    fd_add_input(e, fd_random(e, &r, 4, sh, -1, 1));
    c->probe = fd_random(e, &r, 4, sh, -1, 1);
    e->run = moe_run;
    e->user = c;
}

static void moe_fd(moe_balance b) {
    FdEnv e;
    MoeCase c;
    moe_setup(&e, &c, b, 5, 2, 6, 1);
    e.run(&e, 0);
    int used = 0;
    for (int x = 0; x < 5; x++) used += c.m.route.count[x] > 0;
    CHECKF(used >= 2, "only %d experts used: the test would not exercise grouping", used);
    char what[64];
    snprintf(what, sizeof what, "MoE (balance %s)", moe_balance_name(b));
#ifdef __SANITIZE_ADDRESS__
    fd_check(&e, what, 1, 3, 1e-5);
#else
    fd_check(&e, what, 2, 1, 1e-5);
#endif
    CHECK(abs_sum(params_grad(&e.pt, c.m.router_w_idx)) > 1e-6);   // the router learns from the segmentation loss too
    fd_env_free(&e);
}

TEST(camoxpert_fd_moe_mse) { moe_fd(MOE_BALANCE_MSE); }
TEST(camoxpert_fd_moe_switch) { moe_fd(MOE_BALANCE_SWITCH); }
TEST(camoxpert_fd_moe_zloss) { moe_fd(MOE_BALANCE_ZLOSS); }
TEST(camoxpert_fd_moe_bias) { moe_fd(MOE_BALANCE_BIAS); }

// Grouped execution (one expert call per group) equals a per-image loop in
// evaluation mode, and the balance losses equal their formulas.
TEST(camoxpert_moe_grouped_equals_per_image) {
    FdEnv e;
    MoeCase c;
    moe_setup(&e, &c, MOE_BALANCE_MSE, 6, 3, 5, 0);
    // random running statistics
    Rng r = rng_init(5);
    for (int i = 0; i < e.pt.n; i++)
        if (e.pt.p[i].flags & PF_BUFFER && !(e.pt.p[i].flags & PF_COUNTER)) {
            Tensor v = params_value(&e.pt, i);
            for (int64_t j = 0; j < tensor_numel(&v); j++) tensor_set(&v, j, 0.5 + rng_uniform(&r));
        }
    fd_reset(&e);
    Tensor y = moe_forward(&e.ctx, &c.m, &e.in[0]);
    Tensor ref = tensor_zeros_like(&e.keep, &y);
    const MoeRoute *rt = &c.m.route;
    Tensor idx = tensor_new(&e.keep, DT_I32, rt->idx.ndim, rt->idx.shape), w = tensor_like(&e.keep, &rt->w);
    tensor_copy(&idx, &rt->idx);
    tensor_copy(&w, &rt->w);
    double P[6] = { 0 };
    for (int64_t u = 0; u < 5; u++)
        for (int x = 0; x < 6; x++) P[x] += tensor_get(&rt->probs, u * 6 + x) / 5;
    double lb = 0;
    for (int x = 0; x < 6; x++) lb += (P[x] - 1.0 / 6) * (P[x] - 1.0 / 6);
    CHECK_NEAR(rt->lb_loss, 0.5 * lb, 1e-15);
    for (int64_t u = 0; u < 5; u++) {
        Tensor xu = tensor_slice0(&e.in[0], u, 1);
        double s = 0;
        for (int j = 0; j < 3; j++) s += tensor_get(&rt->probs, u * 6 + tensor_i32(&idx)[u * 3 + j]);
        for (int j = 0; j < 3; j++) {
            int x = tensor_i32(&idx)[u * 3 + j];
            CHECK_NEAR(tensor_get(&w, u * 3 + j), tensor_get(&rt->probs, u * 6 + x) / (s + 1e-8), 1e-15);
            Tensor yu = expert_forward(&e.ctx, &c.m.experts[x], &xu);
            Tensor ru = tensor_slice0(&ref, u, 1);
            axpy(&e.ctx.op, &ru, tensor_get(&w, u * 3 + j), &yu);
        }
    }
    CHECKF(test_rel_err(&y, &ref, 0) < 1e-14, "grouped vs per-image: %.3g", test_rel_err(&y, &ref, 0));
    fd_env_free(&e);
}

// The aux-loss-free bias steers choices toward under-used experts and adds no loss.
TEST(camoxpert_moe_bias_balancing_moves_load) {
    FdEnv e;
    MoeCase c;
    moe_setup(&e, &c, MOE_BALANCE_BIAS, 4, 1, 16, 1);
    int64_t before_max = 0, after_max = 0;
    e.run(&e, 0);
    CHECK(c.m.route.lb_loss == 0);
    for (int x = 0; x < 4; x++) before_max = c.m.route.count[x] > before_max ? c.m.route.count[x] : before_max;
    for (int step = 0; step < 200; step++) {
        e.run(&e, 0);
        moe_balance_update(&c.m, 0.002);
    }
    e.run(&e, 0);
    for (int x = 0; x < 4; x++) after_max = c.m.route.count[x] > after_max ? c.m.route.count[x] : after_max;
    CHECKF(before_max > 4, "routing already balanced (max load %lld); the test needs an imbalanced router",
           (long long)before_max);
    CHECKF(after_max < before_max, "max load %lld before, %lld after bias updates", (long long)before_max,
           (long long)after_max);
    fd_env_free(&e);
}

// ---- the COD head ------------------------------------------------------------------------------

typedef struct { CodHead h; CodOutputs probe; } HeadCase;

static double head_run(FdEnv *e, int grad) {
    HeadCase *c = e->user;
    fd_reset(e);
    CodOutputs o;
    cod_head_forward(&e->ctx, &c->h, e->in, 32, 32, &o);
    const CodOutputs *p = &c->probe;
    double L = dot(&o.pred, &p->pred) + dot(&o.fg_map, &p->fg_map) + dot(&o.search_map, &p->search_map) +
               dot(&o.uncertainty, &p->uncertainty) + dot(&o.initial_pred, &p->initial_pred) +
               dot(&o.refine[0], &p->refine[0]) + dot(&o.refine[1], &p->refine[1]);
    for (int j = 0; j < 3; j++) L += dot(&o.deep[j], &p->deep[j]);
    if (grad) cod_head_backward(&e->ctx, &c->h, p, e->din);
    return L;
}

TEST(camoxpert_fd_cod_head) {
    FdEnv e;
    fd_env_init(&e, 0);
    HeadCase c;
    const int dims[4] = { 4, 4, 6, 4 };
    cod_head_create(&c.h, &e.pt, dims);
    params_alloc(&e.pt, DT_F64);
    Rng r = rng_init(3);
    cod_head_init(&c.h, &e.pt, &r);
    for (int i = 0; i < e.pt.n; i++)   // random running statistics and BN affines
        if (e.pt.p[i].ndim == 1 && !(e.pt.p[i].flags & PF_COUNTER) && !strstr(e.pt.p[i].name, "bias")) {
            Tensor v = params_value(&e.pt, i);
            for (int64_t j = 0; j < tensor_numel(&v); j++) tensor_set(&v, j, 0.5 + rng_uniform(&r));
        }
    for (int s = 0; s < 4; s++) {
        int64_t sh[4] = { 1, 32 >> (s + 2), 32 >> (s + 2), dims[s] };
        fd_add_input(&e, fd_random(&e, &r, 4, sh, -1, 1));
    }
    int64_t full[4] = { 1, 32, 32, 1 };
    Tensor *maps[7] = { &c.probe.pred, &c.probe.fg_map, &c.probe.search_map, &c.probe.uncertainty,
                        &c.probe.initial_pred, &c.probe.refine[0], &c.probe.refine[1] };
    for (int i = 0; i < 7; i++) *maps[i] = fd_random(&e, &r, 4, full, -1, 1);
    for (int j = 0; j < 3; j++) {
        int64_t sh[4] = { 1, 2 << j, 2 << j, 1 };
        c.probe.deep[j] = fd_random(&e, &r, 4, sh, -1, 1);
    }
    e.run = head_run;
    e.user = &c;
#ifdef __SANITIZE_ADDRESS__
    fd_check(&e, "COD head", 1, 17, 1e-5);
#else
    fd_check(&e, "COD head", 1, 6, 1e-5);
#endif
    fd_env_free(&e);
}

// ---- the loss ------------------------------------------------------------------------------------

typedef struct { CamoLossWeights w; Tensor mask; } LossCase;

static double loss_run(FdEnv *e, int grad) {
    LossCase *c = e->user;
    fd_reset(e);
    CodOutputs o = { 0 }, g;
    o.pred = e->in[0], o.fg_map = e->in[1], o.search_map = e->in[2], o.uncertainty = e->in[3];
    o.refine[0] = e->in[4];
    for (int j = 0; j < 3; j++) o.deep[j] = e->in[5 + j];
    CamoLoss L;
    camo_loss_forward_backward(&e->ctx, &c->w, &o, &c->mask, 0.25, &L, grad ? &g : NULL);
    if (grad) {
        const Tensor *gs[8] = { &g.pred, &g.fg_map, &g.search_map, &g.uncertainty, &g.refine[0],
                                &g.deep[0], &g.deep[1], &g.deep[2] };
        for (int i = 0; i < 8; i++) axpy(&e->ctx.op, &e->din[i], 1.0, gs[i]);
    }
    return L.total;
}

// One term at a time (all others weighted 0), every element of every input.
TEST(camoxpert_fd_loss_terms) {
    const char *names[9] = { "bce", "iou", "edge", "boundary", "uncertainty", "reverse_attention", "search", "deep",
                             "refinement" };
    for (int t = 0; t < 9; t++) {
        FdEnv e;
        fd_env_init(&e, 1);
        params_alloc(&e.pt, DT_F64);
        LossCase c;
        memset(&c.w, 0, sizeof c.w);
        double *wt[9] = { &c.w.bce, &c.w.iou, &c.w.edge, &c.w.boundary, &c.w.uncertainty, &c.w.reverse_attention,
                          &c.w.search, &c.w.deep, &c.w.refinement };
        *wt[t] = 1.0;
        Rng r = rng_init(40 + t);
        int64_t full[4] = { 2, 16, 16, 1 };
        fd_add_input(&e, fd_random(&e, &r, 4, full, -4, 4));       // pred
        fd_add_input(&e, fd_random(&e, &r, 4, full, 0.02, 0.98));  // fg_map
        fd_add_input(&e, fd_random(&e, &r, 4, full, 0.02, 0.98));  // search_map
        fd_add_input(&e, fd_random(&e, &r, 4, full, 0.05, 3));     // uncertainty
        fd_add_input(&e, fd_random(&e, &r, 4, full, -4, 4));       // refine0
        for (int j = 0; j < 3; j++) {
            int64_t sh[4] = { 2, 1 << j, 1 << j, 1 };
            fd_add_input(&e, fd_random(&e, &r, 4, sh, -4, 4));
        }
        c.mask = tensor_new(&e.keep, DT_F64, 4, full);
        for (int64_t i = 0; i < tensor_numel(&c.mask); i++) {
            int64_t y = (i / 16) % 16, x = i % 16;
            tensor_set(&c.mask, i, (y - 7) * (y - 7) + (x - 8) * (x - 8) < 30 + 10 * (i / 256) ? 1.0 : 0.0);
        }
        e.run = loss_run;
        e.user = &c;
        fd_check(&e, names[t], 48, 1, 1e-5);
        fd_env_free(&e);
    }
}

// The loss terms on simple cases with known values.
TEST(camoxpert_loss_known_values) {
    Runtime rt;
    runtime_init_reference(&rt, DT_F64, 1);
    Arena a;
    arena_init(&a, "loss", 1 << 20);
    int64_t sh[4] = { 1, 8, 8, 1 }, sd[3][4] = { { 1, 1, 1, 1 }, { 1, 2, 2, 1 }, { 1, 4, 4, 1 } };
    CodOutputs o = { 0 };
    Tensor mask = tensor_zeros(&a, DT_F64, 4, sh);
    o.pred = tensor_zeros(&a, DT_F64, 4, sh);
    o.refine[0] = tensor_zeros(&a, DT_F64, 4, sh);
    o.fg_map = tensor_zeros(&a, DT_F64, 4, sh);
    o.search_map = tensor_zeros(&a, DT_F64, 4, sh);
    o.uncertainty = tensor_zeros(&a, DT_F64, 4, sh);
    tensor_fill(&o.fg_map, 0.5), tensor_fill(&o.search_map, 0.5), tensor_fill(&o.uncertainty, 1.0);
    for (int j = 0; j < 3; j++) o.deep[j] = tensor_zeros(&a, DT_F64, 4, sd[j]);
    CamoLossWeights w = camo_loss_default_weights();
    CamoLoss L;
    camo_loss_forward_backward(&rt.ctx, &w, &o, &mask, 0, &L, NULL);
    // pred = 0 and y = 0: BCE log 2; IoU 1 − 1e-5/(32 + 1e-5); no edges anywhere; boundary weight 1
    CHECK_NEAR(L.bce, log(2.0), 1e-12);
    CHECK_NEAR(L.iou, 1 - 1e-5 / (32 + 1e-5), 1e-12);
    // boundary weight 1 + 4·(dil − ero) with ero = 1 − box(1 − y) under zero padding:
    // 1 inside, −1/3 on the border, −11/9 in the corners (as the reference computes it)
    CHECK_NEAR(L.boundary, (36 - 24.0 / 3 - 4 * 11.0 / 9) / 64 * log(2.0), 1e-12);
    CHECK_NEAR(L.reverse_attention, log(2.0), 1e-12);
    CHECK_NEAR(L.deep, log(2.0), 1e-12);
    CHECK_NEAR(L.refinement, 0.3 * log(2.0), 1e-12);
    CHECK_NEAR(L.uncertainty, 0.5 * -log(1 + 1e-8), 1e-12);
    // the image border has Sobel responses of a constant 0.5 map (zero padding)
    CHECK(L.edge > 0);
    arena_free(&a);
    runtime_free(&rt);
}

// ---- the whole model ------------------------------------------------------------------------------

static int64_t model_params(const char *backbone, int sparse, int E, int k) {
    CamoXpertConfig cfg;
    if (camoxpert_config(&cfg, backbone, sparse, E, k)) return -1;
    ParamTable pt;
    params_init(&pt);
    CamoXpert *m = camoxpert_create(&cfg, &pt);
    int64_t n = params_count(&pt, PF_BUFFER);
    camoxpert_free(m);
    params_free(&pt);
    return n;
}

TEST(camoxpert_reference_parameter_totals) {
    CHECK(model_params("edgenext_base", 0, 6, 2) == 56686191);
    CHECK(model_params("edgenext_base", 1, 6, 2) == 68677343);
    // the shared fixtures' models
    CHECK(model_params("edgenext_xx_small", 0, 6, 2) == 4820511);
    CHECK(model_params("edgenext_xx_small", 1, 6, 2) == 5846527);
    CamoXpertConfig cfg;
    CHECK(camoxpert_config(&cfg, "edgenext_base", 1, 4, 5) == CX_EARG);
    CHECK(strstr(cx_errmsg(), "--top-k 5") != NULL);
    CHECK(camoxpert_config(&cfg, "edgenext_huge", 0, 6, 2) != CX_OK);
}

TEST(camoxpert_router_parameters_form_their_group) {
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", 1, 5, 2));
    ParamTable pt;
    params_init(&pt);
    CamoXpert *m = camoxpert_create(&cfg, &pt);
    int n_router = 0;
    for (int i = 0; i < pt.n; i++) {
        int is_router = strstr(pt.p[i].name, ".router.2.") != NULL;
        CHECKF(is_router == (pt.p[i].group == PG_ROUTER), "%s in group %d", pt.p[i].name, pt.p[i].group);
        n_router += is_router;
        if (!strncmp(pt.p[i].name, "backbone.", 9)) CHECK(pt.p[i].group == PG_BACKBONE);
    }
    CHECK(n_router == 8);
    camoxpert_free(m);
    params_free(&pt);
}

// Save, load strictly into a fresh model, get identical values and outputs;
// a dense checkpoint into a sparse model and a wrong width fail naming the key.
TEST(camoxpert_save_load_roundtrip_and_errors) {
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", 1, 3, 2));
    Model a, b;
    REQUIRE_OK(model_open(&a, &(ModelSpec){ .config = &cfg, .init_seed = 1 }));
    // non-trivial buffers and counters
    Rng r = rng_init(2);
    for (int i = 0; i < a.pt.n; i++)
        if (a.pt.p[i].flags & PF_COUNTER) {
            params_counter_add(&a.pt, i, 7);
        } else if (a.pt.p[i].flags & PF_BUFFER) {
            Tensor v = params_value(&a.pt, i);
            for (int64_t j = 0; j < tensor_numel(&v); j++) tensor_set(&v, j, rng_uniform(&r));
        }
    char path[600];
    snprintf(path, sizeof path, "%s/sparse.safetensors", test_tmpdir());
    char *json = weights_config_json(&cfg, 0);
    REQUIRE_OK(weights_save(&a.pt, json, NULL, path));
    free(json);
    REQUIRE_OK(model_open(&b, &(ModelSpec){ .weights = path }));   // the config from the file
    CHECK(b.cfg.sparse && b.cfg.num_experts == 3 && b.cfg.top_k == 2 && b.img_size == 352);
    CHECK(!memcmp(a.pt.data, b.pt.data, (size_t)a.pt.numel * sizeof(float)));
    CHECK(!memcmp(a.pt.counter, b.pt.counter, (size_t)a.pt.n * sizeof *a.pt.counter));
    StFile f;
    REQUIRE_OK(st_open(&f, path));
    const StEntry *e = st_find(&f, "moe_layers.2.experts.1.scale1_conv.1.num_batches_tracked");
    CHECK(e && e->dtype == DT_I64 && e->ndim == 0);
    CHECK(st_find(&f, "moe_layers.0.router.2.weight") != NULL);
    CHECK(st_meta(&f, "camoxpert_config") && strstr(st_meta(&f, "camoxpert_config"), "CamoXpertSparseMoE"));
    st_close(&f);

    // a dense model refuses the sparse checkpoint, naming a key
    CamoXpertConfig dc;
    REQUIRE_OK(camoxpert_config(&dc, "edgenext_xx_small", 0, 0, 0));
    Model d;
    CHECK(model_open(&d, &(ModelSpec){ .config = &dc, .weights = path }) == CX_ESHAPE);
    CHECKF(strstr(cx_errmsg(), "moe_layers.") || strstr(cx_errmsg(), "texture_experts."), "%s", cx_errmsg());
    // another backbone: a shape mismatch naming the key and both shapes
    CamoXpertConfig xc;
    REQUIRE_OK(camoxpert_config(&xc, "edgenext_x_small", 1, 3, 2));
    Model x;
    CHECK(model_open(&x, &(ModelSpec){ .config = &xc, .weights = path }) == CX_ESHAPE);
    CHECKF(strstr(cx_errmsg(), "in the file but"), "%s", cx_errmsg());
    model_close(&a), model_close(&b);
}

// ---- camoxpert verify, as the built program ---------------------------------------------------------

static int run_verify(const char *path, char *text, size_t cap) {
    char exe[4096], cmd[9000], log[700];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CX_ASSERT(n > 0, "readlink /proc/self/exe");
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(log, sizeof log, "%s/verify.log", test_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s/camoxpert' verify --quiet '%s' > '%s' 2>&1", exe, path, log);
    int st = system(cmd);
    FILE *fp = fopen(log, "r");
    size_t len = fp ? fread(text, 1, cap - 1, fp) : 0;
    text[len] = 0;
    if (fp) fclose(fp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void camoxpert_verify_passes(const char *path) {
    static char out[1 << 16];
    int rc = run_verify(path, out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "PASS"), "camoxpert verify %s: exit %d\n%s", path, rc, out);
}

TEST_SLOW(camoxpert_verify_shared_dense_fixture) {
    camoxpert_verify_passes(test_shared_path("fixtures/camoxpert_dense_xx_small.safetensors"));
}
TEST_SLOW(camoxpert_verify_shared_sparse_fixture) {
    camoxpert_verify_passes(test_shared_path("fixtures/camoxpert_sparse_xx_small.safetensors"));
}
TEST_SLOW(camoxpert_verify_twin_sparse_training_fixture) {
    camoxpert_verify_passes("tests/fixtures/camoxpert_sparse_xx_small_train.safetensors");
}
// The kernel choice where oneDNN and OpenBLAS run their AVX2 kernels (AMD Zen 3, older
// Intel: conv.c's conv_use_dnnl_avx2, gemm.c) computes what the AVX-512 one does: the
// training fixture (gradients against float64) with both libraries held to AVX2.
TEST_SLOW(camoxpert_verify_with_avx2_kernels) {
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    const char *bt = getenv("OPENBLAS_CORETYPE");
    char saved[64] = "";
    if (bt) snprintf(saved, sizeof saved, "%s", bt);
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    camoxpert_verify_passes("tests/fixtures/camoxpert_sparse_xx_small_train.safetensors");
    unsetenv("ONEDNN_MAX_CPU_ISA");
    if (saved[0]) setenv("OPENBLAS_CORETYPE", saved, 1);
    else unsetenv("OPENBLAS_CORETYPE");
}

// ---- spatial routing (nn/moe.h, docs/ROUTING.md) ---------------------------------------------------

TEST(camoxpert_moe_tiles_rule) {
    int64_t b[MOE_MAX_GRID + 1];
    CHECK(moe_tiles(88, 4, b) == 4 && b[1] == 22 && b[4] == 88);
    CHECK(moe_tiles(11, 4, b) == 2 && b[1] == 5 && b[2] == 11);   // 352² at stride 32: two tiles of 5 and 6
    CHECK(moe_tiles(13, 3, b) == 3 && b[1] == 4 && b[2] == 8 && b[3] == 13);
    CHECK(moe_tiles(7, 4, b) == 1 && b[1] == 7);
    CHECK(moe_tiles(3, 8, b) == 1 && b[1] == 3);
}

// A spatial MoE on an (N,H,W,8) map with E experts (every kind), top-k.
static void moe_spatial_setup(FdEnv *e, MoeCase *c, moe_balance b, int E, int k, int N, int H, int W, int grid,
                              int training, uint64_t seed) {
    fd_env_init(e, training);
    moe_create(&c->m, &e->pt, "moe_layers.0", 8, E, k, b, b == MOE_BALANCE_MSE ? 0.5 : 0.3);
    moe_set_spatial(&c->m, grid);
    params_alloc(&e->pt, DT_F64);
    Rng r = rng_init(seed + b);
    moe_init(&c->m, &e->pt, &r);
    Tensor w = params_value(&e->pt, c->m.router_w_idx);
    scale_inplace(&e->ctx.op, &w, 8.0);
    for (int i = 0; i < e->pt.n; i++)   // O(1) BN affines and running statistics so every path shows
        if (e->pt.p[i].ndim == 1 && strstr(e->pt.p[i].name, "experts.") && !strstr(e->pt.p[i].name, "bias") &&
            !(e->pt.p[i].flags & PF_COUNTER)) {
            Tensor v = params_value(&e->pt, i);
            for (int64_t j = 0; j < tensor_numel(&v); j++) tensor_set(&v, j, 0.5 + rng_uniform(&r));
        }
    int64_t sh[4] = { N, H, W, 8 };
    fd_add_input(e, fd_random(e, &r, 4, sh, -1, 1));
    c->probe = fd_random(e, &r, 4, sh, -1, 1);
    e->run = moe_run;
    e->user = c;
}

// Finite differences through spatial routing in training mode: the router (its
// weights stay differentiable per tile), every expert on halo windows, the tile
// pooling and the balancing schemes counting tiles. 12×13 on a 3-grid: tiles of
// 4 and 5 pixels, windows that shift at the borders.
static void moe_spatial_fd(moe_balance b) {
    FdEnv e;
    MoeCase c;
    moe_spatial_setup(&e, &c, b, 5, 2, 2, 12, 13, 3, 1, 21);
    e.run(&e, 0);
    CHECK(c.m.route.gh == 3 && c.m.route.gw == 3 && c.m.U == 18);
    int used = 0;
    for (int x = 0; x < 5; x++) used += c.m.route.count[x] > 0;
    CHECKF(used >= 3, "only %d experts used", used);
    char what[64];
    snprintf(what, sizeof what, "spatial MoE (balance %s)", moe_balance_name(b));
#ifdef __SANITIZE_ADDRESS__
    fd_check(&e, what, 1, 5, 1e-5);
#else
    fd_check(&e, what, 2, 1, 1e-5);
#endif
    fd_env_free(&e);
}

TEST(camoxpert_fd_moe_spatial_mse) { moe_spatial_fd(MOE_BALANCE_MSE); }
TEST(camoxpert_fd_moe_spatial_switch) { moe_spatial_fd(MOE_BALANCE_SWITCH); }
TEST(camoxpert_fd_moe_spatial_zloss) { moe_spatial_fd(MOE_BALANCE_ZLOSS); }
TEST(camoxpert_fd_moe_spatial_bias) { moe_spatial_fd(MOE_BALANCE_BIAS); }

// Runs c's layer forward and backward (loss Σ y·probe + balance); copies y, dx and
// every parameter gradient out (into `keep`).
typedef struct { Tensor y, dx, grads; double lb; } MoeRun;
static MoeRun moe_run_keep(FdEnv *e, MoeCase *c) {
    MoeRun o;
    for (int i = 0; i < e->n_in; i++) tensor_zero(&e->din[i]);
    params_zero_grad(&e->pt);
    fd_reset(e);
    Tensor y = moe_forward(&e->ctx, &c->m, &e->in[0]);
    moe_backward(&e->ctx, &c->m, &c->probe, 1.0, &e->din[0]);
    o.y = tensor_like(&e->keep, &y), o.dx = tensor_like(&e->keep, &e->din[0]);
    tensor_copy(&o.y, &y);
    tensor_copy(&o.dx, &e->din[0]);
    o.grads = tensor_new(&e->keep, DT_F64, 1, (int64_t[]){ e->pt.numel });
    Tensor g = tensor_view(e->pt.grad, DT_F64, 1, (int64_t[]){ e->pt.numel });
    tensor_copy(&o.grads, &g);
    o.lb = c->m.route.lb_loss;
    return o;
}

// The exactness test: a spatial layer whose router gives every tile its image's
// choice and weights (route_by_image) equals the global layer — output, balance
// loss, input gradient and every parameter gradient (router included), in
// training mode (BatchNorm over the group's pixels), float64, to 1e-10. The map
// (26×27 on a 6-grid: tiles of 4 and 5) is large enough that every expert's
// window is smaller than the map (texture's halo of 8 included), so the windows
// and their shifts at the borders are what is tested.
static void moe_spatial_exact(moe_balance b) {
    FdEnv e;
    MoeCase c;
    moe_spatial_setup(&e, &c, b, 6, 2, 4, 26, 27, 6, 1, 33);
    Rng r = rng_init(8);   // an offset per image and channel: images that pool apart choose apart
    for (int64_t n = 0; n < 4; n++)
        for (int ch = 0; ch < 8; ch++) {
            double o = 2 * rng_uniform(&r) - 1;
            for (int64_t p = 0; p < 26 * 27; p++) {
                int64_t i = (n * 26 * 27 + p) * 8 + ch;
                tensor_set(&e.in[0], i, tensor_get(&e.in[0], i) + o);
            }
        }
    c.m.routing = MOE_ROUTING_GLOBAL;
    MoeRun g = moe_run_keep(&e, &c);
    moe_set_spatial(&c.m, 6);
    c.m.route_by_image = 1;
    MoeRun s = moe_run_keep(&e, &c);
    CHECK(c.m.U == 4 * 36);
    for (int x = 0; x < 6; x++) {
        CHECKF(c.m.route.count[x] % 36 == 0, "expert %d: %lld tiles", x, (long long)c.m.route.count[x]);
        if (c.m.route.count[x]) CHECKF(c.m.tiles[x].h < 26, "expert %d: window %lld rows (the whole map)", x, (long long)c.m.tiles[x].h);
    }
    int used = 0;
    for (int x = 0; x < 6; x++) used += c.m.route.count[x] > 0;
    CHECKF(used >= 3, "only %d experts used", used);
    double ey = test_rel_err(&s.y, &g.y, 0), edx = test_rel_err(&s.dx, &g.dx, 0), eg = test_rel_err(&s.grads, &g.grads, 0);
    printf("    %s: spatial (route_by_image) vs global: y %.2e, dx %.2e, parameter gradients %.2e, balance %.2e\n",
           moe_balance_name(b), ey, edx, eg, fabs(s.lb - g.lb));
    CHECKF(ey < 1e-10 && edx < 1e-10 && eg < 1e-10, "spatial vs global: y %.3g, dx %.3g, grads %.3g", ey, edx, eg);
    CHECK_NEAR(s.lb, g.lb, 1e-12 * fmax(1, fabs(g.lb)));
    CHECK(abs_sum(params_grad(&e.pt, c.m.router_w_idx)) > 1e-6);   // the router learned from the segmentation loss too
    fd_env_free(&e);
}

TEST(camoxpert_moe_spatial_equals_global_mse) { moe_spatial_exact(MOE_BALANCE_MSE); }
TEST(camoxpert_moe_spatial_equals_global_switch) { moe_spatial_exact(MOE_BALANCE_SWITCH); }
TEST(camoxpert_moe_spatial_equals_global_zloss) { moe_spatial_exact(MOE_BALANCE_ZLOSS); }

// The halo rule with real per-tile choices: in evaluation mode (running statistics;
// contrast pools over the whole image, so it is left out: E=3 is texture, frequency,
// edge), every tile's output is Σ_j w_j · Expert_j run on the whole map, over that tile.
TEST(camoxpert_moe_spatial_tile_equals_whole_map_expert) {
    FdEnv e;
    MoeCase c;
    moe_spatial_setup(&e, &c, MOE_BALANCE_MSE, 3, 2, 2, 26, 27, 5, 0, 45);
    fd_reset(&e);
    Tensor y = moe_forward(&e.ctx, &c.m, &e.in[0]);
    Tensor yk = tensor_like(&e.keep, &y);
    tensor_copy(&yk, &y);
    const MoeRoute *rt = &c.m.route;
    int64_t H = 26, W = 27, T = (int64_t)rt->gh * rt->gw;
    int differ = 0;
    for (int64_t n = 0; n < 2; n++) {
        Tensor xn = tensor_slice0(&e.in[0], n, 1), full[3];
        for (int x = 0; x < 3; x++) {
            Tensor f = expert_forward(&e.ctx, &c.m.experts[x], &xn);
            full[x] = tensor_like(&e.keep, &f);
            tensor_copy(&full[x], &f);
        }
        for (int64_t t = 0; t < T; t++) {
            int64_t u = n * T + t, a = t / rt->gw, b = t % rt->gw;
            int i0 = tensor_i32(&rt->idx)[u * 2], i1 = tensor_i32(&rt->idx)[u * 2 + 1];
            differ += t && (i0 != tensor_i32(&rt->idx)[(u - 1) * 2]);
            double w0 = tensor_get(&rt->w, u * 2), w1 = tensor_get(&rt->w, u * 2 + 1), worst = 0;
            for (int64_t yy = rt->ty[a]; yy < rt->ty[a + 1]; yy++)
                for (int64_t xx = rt->tx[b]; xx < rt->tx[b + 1]; xx++)
                    for (int ch = 0; ch < 8; ch++) {
                        int64_t p = ((n * H + yy) * W + xx) * 8 + ch, q = (yy * W + xx) * 8 + ch;
                        double ref = w0 * tensor_get(&full[i0], q) + w1 * tensor_get(&full[i1], q);
                        worst = fmax(worst, fabs(tensor_get(&yk, p) - ref));
                    }
            CHECKF(worst < 1e-12, "image %lld tile %lld: %.3g from the whole-map experts", (long long)n, (long long)t, worst);
        }
    }
    CHECKF(differ > 0, "every tile chose the same expert: the test needs different choices");
    fd_env_free(&e);
}

// Parity with the PyTorch twin's spatial routing (tools/camoxpert_twin.py make --routing
// spatial --route-grid 3 --batch 2 --num-experts 4 --top-k 2 --size 64x64 --grad-max-numel 200):
// training mode in float64 — per-tile routing (different experts for tiles of one image at
// scales 0 and 1), loss terms, 451 parameter gradients including every router's, BatchNorm state.
TEST_SLOW(camoxpert_verify_twin_spatial_training_fixture) {
    camoxpert_verify_passes("tests/fixtures/camoxpert_spatial_xx_small_train.safetensors");
}

// ---- the dispatch of issue 28 against the former one ---------------------------------------------
// The sparse model's training step — forward, loss, backward — under the dispatch that
// routes every scale first (decisions and plan by route_topk_plan, one read of the
// routing, one gather and one gather-sum per scale, the routing's backward by
// route_topk_backward) and under the former one (CAMOXPERT_MOE_PLAN=old): the same
// prediction, loss, balancing loss, routing, every parameter gradient and BatchNorm
// buffer, bit for bit, in float32 on the CPU (the same kernels on the same numbers).
typedef struct { Tensor pred, grad; double loss, lb; int64_t count[4][MOE_MAX_EXPERTS]; } PlanRun;

static PlanRun plan_run(Model *mo, const Tensor *x, const Tensor *mask, int legacy, Arena *keep) {
    PlanRun o;
    Runtime *rt = mo->rt;
    NNCtx *c = &rt->ctx;
    moe_plan_set_legacy(legacy);
    c->training = 1;
    runtime_step_reset(rt);
    CamoXpertOutputs out;
    camoxpert_forward(c, mo->net, x, &out);
    CamoLossWeights w = camo_loss_default_weights();
    CamoLoss L;
    CodOutputs g;
    camo_loss_forward_backward(c, &w, &out.maps, mask, out.balance_loss, &L, &g);
    params_zero_grad(&mo->pt);
    camoxpert_backward(c, mo->net, &g, w.balance, NULL);
    o.pred = tensor_like(keep, &out.maps.pred);
    tensor_copy(&o.pred, &out.maps.pred);
    o.grad = tensor_new(keep, DT_F32, 1, (int64_t[]){ mo->pt.numel });
    memcpy(o.grad.data, mo->pt.grad, sizeof(float) * (size_t)mo->pt.numel);
    o.loss = L.total, o.lb = out.balance_loss;
    for (int s = 0; s < 4; s++) memcpy(o.count[s], out.route[s].count, sizeof o.count[s]);
    moe_plan_set_legacy(0);
    return o;
}

static void plan_new_equals_old(const char *routing, moe_balance b) {
    CamoXpertConfig cfg;
    REQUIRE_OK(camoxpert_config(&cfg, "edgenext_xx_small", 1, 5, 2));
    REQUIRE_OK(camoxpert_config_routing(&cfg, routing, 3));
    cfg.balance = b;
    Model mo[2];
    for (int i = 0; i < 2; i++) REQUIRE_OK(model_open(&mo[i], &(ModelSpec){ .config = &cfg, .init_seed = 4, .img_size = 64 }));
    Arena keep;
    arena_init(&keep, "keep", 1 << 20);
    Rng r = rng_init(17);
    Tensor x = tensor_new4(&keep, DT_F32, 3, 64, 64, 3), mask = tensor_new4(&keep, DT_F32, 3, 64, 64, 1);
    for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_f32(&x)[i] = (float)(2 * rng_uniform(&r) - 1) * (1 + (i / (64 * 64 * 3)));
    for (int64_t i = 0; i < tensor_numel(&mask); i++) tensor_f32(&mask)[i] = (i / 64) % 64 > 20 && i % 64 < 40;
    for (int i = 0; i < 2; i++) mo[i].net->moe[0].sel_bias[1] = 0.3;   // bias: a selection bias in play
    for (int step = 0; step < 2; step++) {   // the second step starts from the BatchNorm buffers the first left
        PlanRun a = plan_run(&mo[0], &x, &mask, 1, &keep), n = plan_run(&mo[1], &x, &mask, 0, &keep);
        CHECKF(!memcmp(a.pred.data, n.pred.data, tensor_nbytes(&a.pred)), "%s %s step %d: predictions differ (rel %.3g)",
               routing, moe_balance_name(b), step, test_rel_err(&n.pred, &a.pred, 0));
        CHECKF(a.loss == n.loss && a.lb == n.lb, "%s %s: loss %.17g vs %.17g, balance %.17g vs %.17g", routing,
               moe_balance_name(b), a.loss, n.loss, a.lb, n.lb);
        CHECK(!memcmp(a.count, n.count, sizeof a.count));
        int64_t differ = 0, first = -1;
        for (int64_t i = 0; i < mo[0].pt.numel; i++)
            if (tensor_f32(&a.grad)[i] != tensor_f32(&n.grad)[i]) differ++, first = first < 0 ? i : first;
        CHECKF(!differ, "%s %s step %d: %lld gradient elements differ (first %lld), rel %.3g", routing, moe_balance_name(b),
               step, (long long)differ, (long long)first, test_rel_err(&n.grad, &a.grad, 0));
        CHECK(!memcmp(mo[0].pt.data, mo[1].pt.data, sizeof(float) * (size_t)mo[0].pt.numel));   // BatchNorm buffers
        if (step == 0) {
            int used = 0;
            for (int e = 0; e < 5; e++) used += a.count[0][e] > 0;
            CHECKF(used >= 2, "%s: only %d experts used at scale 0", routing, used);
        }
    }
    for (int i = 0; i < 2; i++) model_close(&mo[i]);
    arena_free(&keep);
}

TEST_SLOW(camoxpert_moe_plan_new_equals_old_global_mse) { plan_new_equals_old("global", MOE_BALANCE_MSE); }
TEST_SLOW(camoxpert_moe_plan_new_equals_old_global_switch) { plan_new_equals_old("global", MOE_BALANCE_SWITCH); }
TEST_SLOW(camoxpert_moe_plan_new_equals_old_global_bias) { plan_new_equals_old("global", MOE_BALANCE_BIAS); }
TEST_SLOW(camoxpert_moe_plan_new_equals_old_spatial_zloss) { plan_new_equals_old("spatial", MOE_BALANCE_ZLOSS); }
