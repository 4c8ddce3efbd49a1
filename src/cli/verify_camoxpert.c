// verify_camoxpert.c — the `kind=camoxpert` checker of `camoxpert verify`:
// builds the fixture's model (metadata mode dense|sparse, backbone, num_experts,
// top_k), loads `param/` and `buffer/`, and compares
//   * evaluation mode (running statistics), float32 fast kernels and float64
//     reference kernels: pred, fg_map, search_map, uncertainty, refine0,
//     deep0..2, and for sparse models every scale's router logits, probs,
//     chosen experts (equal), weights and balance loss;
//   * training mode (batch statistics), float64, when the fixture has
//     `output/train/loss`: pred, the total and every loss term, every stored
//     parameter gradient (and grad/input/image), the BatchNorm state after the
//     forward (`output/train/buffer/...`), and routing when stored.
// With a GPU (VerifyRun.gpu; or the CPU in bf16), the same fixture also runs there: evaluation
// outputs and routing; in training mode the loss terms and BatchNorm state
// against the fixture, and every parameter gradient against the CPU's float32
// gradients on the same weights, batch and ReLU decisions (relative L2, verify.h;
// ReluTape in ops.h says why the decisions are shared). In bf16 the outputs follow
// issue 26's rule (verify.h): the GPU takes the fixture's routing choices, and the
// bounds come from PyTorch's own autocast error where the fixture records it.
// General over backbone variant, batch, input size, E and k.
#include "verify.h"
#include "core/finite.h"
#include "nn/camoxpert.h"
#include "train/loss.h"
#include <math.h>
#include <string.h>

static int meta_int(const StFile *f, const char *key, int def) {
    const char *s = st_meta(f, key);
    return s ? atoi(s) : def;
}

// Compares ours with a fixture tensor; 4-D activations (NCHW in the fixture) are
// permuted to NHWC when nhwc is set, parameters (OIHW) are compared as stored.
static void check_tensor(VerifyRun *v, const StFile *f, Arena *io, const char *ref_name, const char *label,
                         const Tensor *ours, double floor, double tol, int nhwc) {
    Tensor r;
    ArenaMark mk = arena_mark(io);
    const StEntry *e = st_find(f, ref_name);
    cx_status st = e && e->ndim == 4 && nhwc ? verify_read_nhwc(f, ref_name, io, DT_F64, &r)
                                             : verify_read(f, ref_name, io, DT_F64, &r);
    if (st) verify_fail(v, label, cx_errmsg());
    else verify_check(v, label, ours, &r, floor, tol);
    arena_release(io, mk);
}

static void check_nhwc(VerifyRun *v, const StFile *f, Arena *io, const char *ref_name, const char *label,
                       const Tensor *ours, double floor, double tol) {
    check_tensor(v, f, io, ref_name, label, ours, floor, tol, 1);
}

static void check_scalar(VerifyRun *v, const StFile *f, Arena *io, const char *ref_name, const char *label, double ours,
                         double tol) {
    double val = ours;
    Tensor t = tensor_view(&val, DT_F64, 1, (int64_t[]){ 1 });
    check_nhwc(v, f, io, ref_name, label, &t, 0, tol);
}

static void check_routes(VerifyRun *v, const StFile *f, Arena *io, const CamoXpertOutputs *o, const char *mode,
                         const char *tag, double tol, int l2) {
    for (int s = 0; s < o->n_route; s++) {
        char ref[96], label[128];
        const MoeRoute *r = &o->route[s];
        const Tensor *ts[3] = { &r->logits, &r->probs, &r->w };
        const char *names[3] = { "logits", "probs", "topk_w" };
        for (int i = 0; i < 3; i++) {
            snprintf(ref, sizeof ref, "output/%s/route%d/%s", mode, s, names[i]);
            snprintf(label, sizeof label, "%s %s", ref, tag);
            if (!st_find(f, ref)) continue;
            if (l2) {
                Tensor r;
                ArenaMark mk = arena_mark(io);
                if (verify_read(f, ref, io, DT_F64, &r)) verify_fail(v, label, cx_errmsg());
                else verify_check_l2(v, label, ts[i], &r, 0, tol);
                arena_release(io, mk);
            } else {
                check_nhwc(v, f, io, ref, label, ts[i], 0, tol);
            }
        }
        snprintf(ref, sizeof ref, "output/%s/route%d/topk_idx", mode, s);
        snprintf(label, sizeof label, "%s %s", ref, tag);
        if (st_find(f, ref)) check_nhwc(v, f, io, ref, label, &r->idx, 0, 0);   // must be equal
        snprintf(ref, sizeof ref, "output/%s/route%d/lb_loss", mode, s);
        snprintf(label, sizeof label, "%s %s", ref, tag);
        if (st_find(f, ref)) check_scalar(v, f, io, ref, label, r->lb_loss, l2 ? VERIFY_BF16_FWD : tol);
    }
}

// A bf16 GPU output against the fixture tensor ref_name by issue 26's rule (verify.h,
// verify_bf16_tol); a bound raised from PyTorch's own autocast error is said on the next
// line, quiet or not (the rule's exception names its outputs).
static void check_bf16(VerifyRun *v, const StFile *f, const char *ref_name, const char *label, const Tensor *ours,
                       const Tensor *ref, double def) {
    double tol, autocast;
    if (verify_bf16_tol(f, ref_name, def, &tol, &autocast)) {
        verify_fail(v, label, cx_errmsg());
        return;
    }
    Tensor h = runtime_output_f32(v->gpu, ours);
    verify_check_l2(v, label, &h, ref, 0, tol);
    if (tol != def)
        printf("    %s: bound %.3g = %.1f x PyTorch's bf16 autocast error on this fixture (%.3g)\n", ref_name, tol,
               VERIFY_BF16_AUTOCAST_RATIO, autocast);
}

// bf16: the GPU's MoE layers take the fixture's routing choices of `mode` (eval|train), so that
// its outputs are compared under the same discrete decisions (issue 26's rule; moe.h force_idx).
static void force_routes(const StFile *f, Arena *io, CamoXpert *m, const char *mode) {
    for (int s = 0; s < 4 && m->cfg.sparse; s++) {
        char ref[96];
        Tensor t;
        snprintf(ref, sizeof ref, "output/%s/route%d/topk_idx", mode, s);
        m->moe[s].force_idx = NULL, m->moe[s].force_differed = 0;
        if (!st_find(f, ref) || verify_read(f, ref, io, DT_I32, &t)) continue;
        m->moe[s].force_idx = tensor_i32(&t), m->moe[s].force_n = tensor_numel(&t);
    }
}

// Where the GPU's own top-k chose otherwise than the fixture: reported, not failed. Stops forcing.
static void report_forced(CamoXpert *m, const char *mode, const char *tag) {
    for (int s = 0; s < 4 && m->cfg.sparse; s++) {
        Moe *e = &m->moe[s];
        if (e->force_idx && e->force_differed)
            printf("  output/%s/route%d/topk_idx %s: the GPU's own top-%d differs for %lld of %lld units (reported, "
                   "not failed: its outputs are compared under the fixture's choices)\n", mode, s, tag, e->k,
                   (long long)e->force_differed, (long long)e->U);
        e->force_idx = NULL;
    }
}

// The evaluation-mode outputs against the fixture: the CPU's float32 and float64 runs at tol,
// or v->gpu's run (`second`: tensors on the GPU or the CPU, routing on the host) by
// verify_check_gpu's rule (fp32) or issue 26's (bf16).
static void check_eval(VerifyRun *v, const StFile *f, Arena *io, const CamoXpertOutputs *o, const char *tag,
                       double tol, int second) {
    const CodOutputs *m = &o->maps;
    const struct { const char *name; const Tensor *t; } outs[] = {
        { "pred", &m->pred }, { "fg_map", &m->fg_map }, { "search_map", &m->search_map },
        { "uncertainty", &m->uncertainty }, { "refine0", &m->refine[0] }, { "deep0", &m->deep[0] },
        { "deep1", &m->deep[1] }, { "deep2", &m->deep[2] },
    };
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        char ref[96], label[128];
        snprintf(ref, sizeof ref, "output/eval/%s", outs[i].name);
        snprintf(label, sizeof label, "%s %s", ref, tag);
        if (!second) {
            check_nhwc(v, f, io, ref, label, outs[i].t, 0, tol);
            continue;
        }
        Tensor r;
        ArenaMark mk = arena_mark(io);
        if (verify_read_nhwc(f, ref, io, DT_F64, &r)) verify_fail(v, label, cx_errmsg());
        else if (v->gpu->bf16) check_bf16(v, f, ref, label, outs[i].t, &r, VERIFY_BF16_FWD);
        else verify_check_gpu(v, label, outs[i].t, &r);
        arena_release(io, mk);
    }
    int bf16 = second && v->gpu->bf16;
    check_routes(v, f, io, o, "eval", tag, bf16 ? VERIFY_BF16_FWD : tol, bf16);
}

// A table with src's layout and values, for another device or a fresh BatchNorm state.
// Every training loss term against output/train/<term>; tag (NULL: none) ends each
// label; with `require`, a term the fixture lacks fails (the balance term excepted:
// dense fixtures have none).
static void check_loss_terms(VerifyRun *v, const StFile *f, Arena *io, const CamoLoss *L, const char *tag, double tol,
                             int require) {
    const struct { const char *name; double val; } terms[] = {
        { "loss", L->total }, { "loss_bce", L->bce }, { "loss_iou", L->iou }, { "loss_edge", L->edge },
        { "loss_boundary", L->boundary }, { "loss_uncertainty", L->uncertainty },
        { "loss_reverse_attention", L->reverse_attention }, { "loss_search", L->search }, { "loss_deep", L->deep },
        { "loss_refinement", L->refinement }, { "loss_balance", L->balance },
    };
    for (size_t i = 0; i < sizeof terms / sizeof *terms; i++) {
        char ref[96], label[160];
        snprintf(ref, sizeof ref, "output/train/%s", terms[i].name);
        snprintf(label, sizeof label, "%s%s%s", ref, tag ? " " : "", tag ? tag : "");
        if (st_find(f, ref)) check_scalar(v, f, io, ref, label, terms[i].val, tol);
        else if (require && strcmp(terms[i].name, "loss_balance")) verify_fail(v, ref, "missing from the fixture");
    }
}

static void table_copy(ParamTable *dst, const ParamTable *src) {
    params_init(dst);
    verify_clone_layout(dst, src);
    params_alloc(dst, DT_F32);
    params_copy_values(dst, src);
}

// One training-mode forward, loss and backward on rt (the reference loss, the
// balance term included); gradients land in rt->ctx.pt.
static void train_pass(Runtime *rt, CamoXpert *m, const Tensor *x_host, const Tensor *mask_host, CamoLoss *L,
                       CamoXpertOutputs *o) {
    NNCtx *c = &rt->ctx;
    c->training = 1;
    runtime_step_reset(rt);
    Tensor x = runtime_input(rt, x_host, rt->dtype), mask = runtime_input(rt, mask_host, nn_stat_dtype(c));
    camoxpert_forward(c, m, &x, o);
    CamoLossWeights w = camo_loss_default_weights();
    CodOutputs grad;
    camo_loss_forward_backward(c, &w, &o->maps, &mask, o->balance_loss, L, &grad);
    params_zero_grad(c->pt);
    camoxpert_backward(c, m, &grad, w.balance, NULL);
}

// The GPU's checks (see the file comment). p32: the fixture's weights (host, untouched).
static void gpu_checks(VerifyRun *v, const StFile *f, Arena *io, CamoXpert *m, const ParamTable *p32,
                       const Tensor *x32, const Tensor *mask32) {
    Runtime *g = v->gpu;
    const int bf16 = g->bf16, on_gpu = g->device == DEV_CUDA;
    const char *tag = on_gpu ? (bf16 ? "(gpu, bf16)" : "(gpu, fp32)") : "(cpu, bf16)", *who = on_gpu ? "gpu" : "cpu bf16",
               *Who = on_gpu ? "the GPU" : "the CPU in bf16";
    const double ftol = bf16 ? VERIFY_BF16_FWD : v->rtol_fwd_f32;
    ParamTable pg, pc;
    table_copy(&pg, p32);
    runtime_place(g, &pg);
    g->ctx.pt = &pg;
    // evaluation mode
    g->ctx.training = 0;
    runtime_step_reset(g);
    CamoXpertOutputs o;
    Tensor x = runtime_input(g, x32, g->dtype);
    if (bf16) force_routes(f, io, m, "eval");
    camoxpert_forward(&g->ctx, m, &x, &o);
    report_forced(m, "eval", tag);
    check_eval(v, f, io, &o, tag, v->rtol_fwd_f32, 1);
    // training mode: loss terms and BatchNorm state against the fixture
    CamoLoss L;
    if (bf16) force_routes(f, io, m, "train");
    train_pass(g, m, x32, mask32, &L, &o);
    report_forced(m, "train", tag);
    if (st_find(f, "output/train/loss")) {
        Tensor r;
        ArenaMark mk = arena_mark(io);
        char label[128];
        snprintf(label, sizeof label, "output/train/pred %s", tag);
        if (verify_read_nhwc(f, "output/train/pred", io, DT_F64, &r)) verify_fail(v, label, cx_errmsg());
        else if (bf16) check_bf16(v, f, "output/train/pred", label, &o.maps.pred, &r, VERIFY_BF16_TRAIN_PRED);
        else verify_check_gpu(v, label, &o.maps.pred, &r);
        arena_release(io, mk);
        check_loss_terms(v, f, io, &L, tag, ftol, 0);
        params_sync_host(&pg);
        int n_bufs = 0;
        for (int k = 0; k < f->n; k++) {
            const char *name = f->entries[k].name;
            if (strncmp(name, "output/train/buffer/", 20)) continue;
            char tk[256];
            camoxpert_table_key(name + 20, tk, sizeof tk);
            int i = params_find(&pg, tk);
            if (i < 0) { verify_fail(v, name, "no such entry in this model"); continue; }
            snprintf(label, sizeof label, "%s %s", name, tag);
            if (pg.p[i].flags & PF_COUNTER) {
                double c = (double)params_counter(&pg, i);
                Tensor t = tensor_view(&c, DT_F64, 1, (int64_t[]){ 1 });
                check_tensor(v, f, io, name, label, &t, 0, 0, 0);
            } else {
                Tensor t = params_host_value(&pg, i);
                check_tensor(v, f, io, name, label, &t, 0, ftol, 0);
            }
            n_bufs++;
        }
        printf("%s training mode: %d BatchNorm buffers checked\n", who, n_bufs);
    }
    // every parameter gradient against the CPU's float32 gradients (same weights, same batch).
    // The free-running GPU pass above differs from the CPU's where a pre-activation lies
    // within rounding of 0 (ops.h, ReluTape): reported. The checked pass takes the CPU
    // run's ReLU decisions; so does the float64 pass that arbitrates.
    Tensor gfree = tensor_new(io, DT_F32, 1, &pg.numel);
    Tensor gdev = tensor_view(pg.grad, DT_F32, 1, &pg.numel);
    gdev.device = g->device;
    if (on_gpu) tensor_download(&gfree, &gdev);
    else tensor_copy(&gfree, &gdev);
    ReluTape tape = { 0 }, *tp = bf16 ? NULL : &tape;   // bf16 gradients are reported, not checked: no replay
    Runtime rc;
    cx_status cs = runtime_init(&rc, "cpu", "fp32", 0, 1);
    CX_ASSERT(cs == CX_OK, "%s", cx_errmsg());
    table_copy(&pc, p32);
    rc.ctx.pt = &pc;
    rc.ctx.op.relu_tape = tp;
    CamoLoss Lc;
    CamoXpertOutputs oc;
    train_pass(&rc, m, x32, mask32, &Lc, &oc);
    rc.ctx.op.relu_tape = NULL;
    Tensor gall = gfree;
    if (tp) {
        relu_tape_rewind(tp, 1);
        g->ctx.op.relu_tape = tp;
        train_pass(g, m, x32, mask32, &L, &o);
        g->ctx.op.relu_tape = NULL;
        gall = tensor_new(io, DT_F32, 1, &pg.numel);
        if (on_gpu) tensor_download(&gall, &gdev);
        else tensor_copy(&gall, &gdev);
    }
    const int64_t differed_gpu = tape.differed;
    // float64 gradients of the same pass: how close each float32 run is to exact
    ParamTable p64;
    params_init(&p64);
    verify_clone_layout(&p64, p32);
    params_alloc(&p64, DT_F64);
    params_copy_values(&p64, p32);
    Runtime r64;
    runtime_init_reference(&r64, DT_F64, 1);
    Tensor x64 = tensor_new(io, DT_F64, x32->ndim, x32->shape), m64 = tensor_new(io, DT_F64, mask32->ndim, mask32->shape);
    tensor_copy(&x64, x32);
    tensor_copy(&m64, mask32);
    r64.ctx.pt = &p64;
    if (tp) relu_tape_rewind(tp, 1);
    r64.ctx.op.relu_tape = tp;
    CamoLoss L64;
    CamoXpertOutputs o64;
    train_pass(&r64, m, &x64, &m64, &L64, &o64);
    r64.ctx.op.relu_tape = NULL;
    const int64_t differed_64 = tape.differed, n_decisions = tape.n;
    relu_tape_free(&tape);
    const double gtol = VERIFY_GPU_GRAD_F32;
    double gmax = 0;   // the largest |gradient| of the CPU run: the floor's scale
    for (int i = 0; i < pc.n; i++) {
        Tensor b = params_grad(&pc, i);
        for (int64_t k = 0; k < tensor_numel(&b); k++) gmax = fmax(gmax, fabs(tensor_get(&b, k)));
    }
    double worst = 0, w64_gpu = 0, w64_cpu = 0, wfree = 0;
    const char *worst_name = "", *w64_gpu_name = "", *w64_cpu_name = "", *wfree_name = "";
    int n_grads = 0, quiet = v->quiet;
    v->quiet = 1;   // one line per tensor would be ~1000 lines: print failures and the worst
    for (int i = 0; i < pc.n; i++) {
        if (pc.p[i].flags & PF_BUFFER) continue;
        Tensor a = tensor_view(tensor_f32(&gall) + pc.p[i].offset, DT_F32, pc.p[i].ndim, pc.p[i].shape);
        Tensor b = params_grad(&pc, i);
        char label[200];
        snprintf(label, sizeof label, "grad %s %s vs cpu fp32", pc.p[i].name, tag);
        const double fl = v->grad_floor * gmax * sqrt((double)pc.p[i].numel);
        Tensor t64 = params_grad(&p64, i);
        double egc = tensor_rel_l2(&a, &b, fl);
        Tensor af = tensor_view(tensor_f32(&gfree) + pc.p[i].offset, DT_F32, pc.p[i].ndim, pc.p[i].shape);
        double ef = tensor_rel_l2(&af, &b, fl);
        if (!(ef <= wfree)) { wfree = ef; wfree_name = pc.p[i].name; }
        if (!bf16) verify_check_gpu_grad(v, label, &a, &b, &t64, fl, gtol);   // bf16: reported below, no target
        if (!(egc <= worst)) { worst = egc; worst_name = pc.p[i].name; }
        n_grads++;
        // the same error rule against float64, for both runs
        double eg = tensor_rel_l2(&a, &t64, fl), ec = tensor_rel_l2(&b, &t64, fl);
        if (!(eg <= w64_gpu)) w64_gpu = eg, w64_gpu_name = pc.p[i].name;
        if (!(ec <= w64_cpu)) w64_cpu = ec, w64_cpu_name = pc.p[i].name;
    }
    v->quiet = quiet;
    if (bf16) printf("%s gradients (bf16, reported, no target): %d parameter tensors, worst relative L2 %.3e against the "
                     "CPU's float32 (%s); loss %.6f in bf16, %.6f in float32\n", who, n_grads, worst, worst_name, L.total,
                     Lc.total);
    else printf("gpu gradients: %d parameter tensors checked at relative L2 %.0e (verify.h's rule); worst against the "
                "CPU's float32 %.3e (%s); loss %.6f on the GPU, %.6f on the CPU\n", n_grads, gtol, worst, worst_name,
                L.total, Lc.total);
    printf("against float64 gradients (the same rule): %s's worst %.3e (%s), the CPU float32's worst %.3e (%s)\n",
           Who, w64_gpu, w64_gpu_name, w64_cpu, w64_cpu_name);
    if (tp) printf("ReLU decisions: %lld, taken from the CPU run; the GPU's own differed in %lld, float64's in %lld; with its own "
           "decisions the GPU's worst gradient against the CPU's float32 is %.3e (%s), reported\n", (long long)n_decisions,
           (long long)differed_gpu, (long long)differed_64, wfree, wfree_name);
    runtime_free(&r64);
    params_free(&p64);
    runtime_free(&rc);
    params_free(&pc);
    params_free(&pg);
}

int verify_camoxpert(VerifyRun *v, const StFile *f) {
    const char *mode = st_meta(f, "mode"), *backbone = st_meta(f, "backbone");
    if (!mode || !backbone || (strcmp(mode, "dense") && strcmp(mode, "sparse"))) {
        fprintf(stderr, "error: %s: kind=camoxpert needs __metadata__ mode=dense|sparse and backbone\n", f->path);
        return 2;
    }
    CamoXpertConfig cfg;
    const char *routing = st_meta(f, "routing");
    if (camoxpert_config(&cfg, backbone, !strcmp(mode, "sparse"), meta_int(f, "num_experts", 6),
                         meta_int(f, "top_k", 2)) ||
        (routing && camoxpert_config_routing(&cfg, routing, meta_int(f, "route_grid", 4)))) {
        fprintf(stderr, "error: %s: %s\n", f->path, cx_errmsg());
        return 2;
    }
    ParamTable p32, p64;
    params_init(&p32);
    params_init(&p64);
    CamoXpert *m = camoxpert_create(&cfg, &p32);   // one module tree, two tables
    Runtime r32, r64;
    verify_twins(&p32, &p64, &r32, &r64, 0);
    Arena io;
    arena_init(&io, "fixture tensors", 16 << 20);
    int rc = 0;
    Tensor x32, x64, mask, mask32;
    const char *gen = st_meta(f, "param_gen"), *seed = st_meta(f, "param_seed");
    if (gen && (strcmp(gen, "splitmix22") || !seed)) {
        fprintf(stderr, "error: %s: param_gen '%s' needs param_gen=splitmix22 and param_seed\n", f->path, gen);
        rc = 2;
        goto done;
    }
    if (gen) {
        // generated parameters (verify.h), stored BatchNorm state
        verify_gen_params(&p32, "", strtoull(seed, NULL, 10));
        ParamLoadOpts o = { .file_prefix = "param/", .buffer_prefix = "buffer/", .allow_missing = 1 };
        if (params_load(&p32, f, &o)) {
            fprintf(stderr, "error: %s\n", cx_errmsg());
            rc = 2;
            goto done;
        }
        params_copy_values(&p64, &p32);
    }
    if ((!gen && (camoxpert_load(&p32, f, "param/", "buffer/") || camoxpert_load(&p64, f, "param/", "buffer/"))) ||
        verify_read_nhwc(f, "input/image", &io, DT_F32, &x32) || verify_read_nhwc(f, "input/image", &io, DT_F64, &x64) ||
        verify_read_nhwc(f, "input/mask", &io, DT_F64, &mask) || verify_read_nhwc(f, "input/mask", &io, DT_F32, &mask32)) {
        fprintf(stderr, "error: %s\n", cx_errmsg());
        rc = 2;
        goto done;
    }
    printf("verify %s: CamoXpert %s (%s%s), input %lld×3×%lld×%lld, %lld parameters\n", f->path, mode, backbone,
           cfg.sparse ? ", routed" : "", (long long)T_N(&x32), (long long)T_H(&x32), (long long)T_W(&x32),
           (long long)params_count(&p32, PF_BUFFER));
    if (cfg.sparse) printf("  experts E=%d, top-k %d, %s routing", cfg.num_experts, cfg.top_k, moe_routing_name(cfg.routing));
    if (cfg.sparse && cfg.routing == MOE_ROUTING_SPATIAL) printf(" (at most %d×%d tiles per scale)", cfg.route_grid, cfg.route_grid);
    if (cfg.sparse) printf("\n");

    // evaluation mode: float32 fast kernels, then float64 reference kernels
    CamoXpertOutputs o;
    NNCtx *c32 = &r32.ctx, *c64 = &r64.ctx;
    camoxpert_forward(c32, m, &x32, &o);
    check_eval(v, f, &io, &o, "(f32, fast)", v->rtol_fwd_f32, 0);
    runtime_step_reset(&r32);
    camoxpert_forward(c64, m, &x64, &o);
    check_eval(v, f, &io, &o, "(f64, ref)", v->rtol_fwd_f64, 0);
    runtime_step_reset(&r64);

    // training mode, float64: loss terms, gradients, BatchNorm state
    if (st_find(f, "output/train/loss")) {
        c64->training = 1;
        camoxpert_forward(c64, m, &x64, &o);
        check_nhwc(v, f, &io, "output/train/pred", "output/train/pred (f64, train)", &o.maps.pred, 0, v->rtol_fwd_f64);
        check_routes(v, f, &io, &o, "train", "(f64, train)", v->rtol_fwd_f64, 0);
        CamoLossWeights w = camo_loss_default_weights();
        CamoLoss L;
        CodOutputs grad;
        camo_loss_forward_backward(c64, &w, &o.maps, &mask, o.balance_loss, &L, &grad);
        check_loss_terms(v, f, &io, &L, NULL, v->rtol_fwd_f64, 1);
        params_zero_grad(&p64);
        Tensor dx = nn_zeros_like(c64, &x64);
        camoxpert_backward(c64, m, &grad, w.balance, &dx);
        const double floor = v->grad_floor * verify_grad_absmax(f);
        int n_grads = 0, n_bufs = 0;
        for (int k = 0; k < f->n; k++) {
            const char *name = f->entries[k].name;
            int is_grad = !strncmp(name, "grad/param/", 11), is_buf = !strncmp(name, "output/train/buffer/", 20);
            if (!is_grad && !is_buf) continue;
            char tk[256];
            camoxpert_table_key(name + (is_grad ? 11 : 20), tk, sizeof tk);
            int i = params_find(&p64, tk);
            if (i < 0) {
                verify_fail(v, name, "no such entry in this model");
                continue;
            }
            double cnt = (p64.p[i].flags & PF_COUNTER) ? (double)params_counter(&p64, i) : 0;
            Tensor t = is_grad ? params_grad(&p64, i)
                     : (p64.p[i].flags & PF_COUNTER) ? tensor_view(&cnt, DT_F64, 1, (int64_t[]){ 1 }) : params_value(&p64, i);
            check_tensor(v, f, &io, name, name, &t, is_grad ? floor : 0, is_grad ? v->rtol_grad_f64 : v->rtol_fwd_f64, 0);
            n_grads += is_grad, n_bufs += is_buf;
        }
        if (st_find(f, "grad/input/image")) check_nhwc(v, f, &io, "grad/input/image", "grad/input/image", &dx, floor, v->rtol_grad_f64);
        printf("training mode: %d parameter gradients, %d BatchNorm buffers checked, grad floor %.3g\n", n_grads, n_bufs,
               floor);
    }
    if (v->gpu) gpu_checks(v, f, &io, m, &p32, &x32, &mask32);
done:
    camoxpert_free(m);
    params_free(&p32);
    params_free(&p64);
    runtime_free(&r32);
    runtime_free(&r64);
    arena_free(&io);
    return rc;
}
