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
// General over backbone variant, batch, input size, E and k.
#include "verify.h"
#include "nn/camoxpert.h"
#include "train/loss.h"
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
                         const char *tag, double tol) {
    for (int s = 0; s < o->n_route; s++) {
        char ref[96], label[128];
        const MoeRoute *r = &o->route[s];
        const Tensor *ts[3] = { &r->logits, &r->probs, &r->w };
        const char *names[3] = { "logits", "probs", "topk_w" };
        for (int i = 0; i < 3; i++) {
            snprintf(ref, sizeof ref, "output/%s/route%d/%s", mode, s, names[i]);
            snprintf(label, sizeof label, "%s %s", ref, tag);
            if (st_find(f, ref)) check_nhwc(v, f, io, ref, label, ts[i], 0, tol);
        }
        snprintf(ref, sizeof ref, "output/%s/route%d/topk_idx", mode, s);
        snprintf(label, sizeof label, "%s %s", ref, tag);
        if (st_find(f, ref)) check_nhwc(v, f, io, ref, label, &r->idx, 0, 0);   // must be equal
        snprintf(ref, sizeof ref, "output/%s/route%d/lb_loss", mode, s);
        snprintf(label, sizeof label, "%s %s", ref, tag);
        if (st_find(f, ref)) check_scalar(v, f, io, ref, label, r->lb_loss, tol);
    }
}

static void check_eval(VerifyRun *v, const StFile *f, Arena *io, const CamoXpertOutputs *o, const char *tag,
                       double tol) {
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
        check_nhwc(v, f, io, ref, label, outs[i].t, 0, tol);
    }
    check_routes(v, f, io, o, "eval", tag, tol);
}

int verify_camoxpert(VerifyRun *v, const StFile *f) {
    const char *mode = st_meta(f, "mode"), *backbone = st_meta(f, "backbone");
    if (!mode || !backbone || (strcmp(mode, "dense") && strcmp(mode, "sparse"))) {
        fprintf(stderr, "error: %s: kind=camoxpert needs __metadata__ mode=dense|sparse and backbone\n", f->path);
        return 2;
    }
    CamoXpertConfig cfg;
    if (camoxpert_config(&cfg, backbone, !strcmp(mode, "sparse"), meta_int(f, "num_experts", 6),
                         meta_int(f, "top_k", 2))) {
        fprintf(stderr, "error: %s: %s\n", f->path, cx_errmsg());
        return 2;
    }
    ParamTable p32, p64;
    params_init(&p32);
    params_init(&p64);
    CamoXpert *m = camoxpert_create(&cfg, &p32);   // one module tree, two tables
    verify_clone_layout(&p64, &p32);
    params_alloc(&p32, DT_F32);
    params_alloc(&p64, DT_F64);
    Arena act, scratch, io;
    arena_init(&act, "activations", 64 << 20);
    arena_init(&scratch, "scratch", 16 << 20);
    arena_init(&io, "fixture tensors", 16 << 20);
    int rc = 0;
    Tensor x32, x64, mask;
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
    if ((!gen && (camoxpert_load(m, &p32, f, "param/", "buffer/") || camoxpert_load(m, &p64, f, "param/", "buffer/"))) ||
        verify_read_nhwc(f, "input/image", &io, DT_F32, &x32) || verify_read_nhwc(f, "input/image", &io, DT_F64, &x64) ||
        verify_read_nhwc(f, "input/mask", &io, DT_F64, &mask)) {
        fprintf(stderr, "error: %s\n", cx_errmsg());
        rc = 2;
        goto done;
    }
    printf("verify %s: CamoXpert %s (%s%s), input %lld×3×%lld×%lld, %lld parameters\n", f->path, mode, backbone,
           cfg.sparse ? ", routed" : "", (long long)T_N(&x32), (long long)T_H(&x32), (long long)T_W(&x32),
           (long long)params_count(&p32, PF_BUFFER));
    if (cfg.sparse) printf("  experts E=%d, top-k %d\n", cfg.num_experts, cfg.top_k);

    // evaluation mode: float32 fast kernels, then float64 reference kernels
    CamoXpertOutputs o;
    NNCtx c32 = { .pt = &p32, .op = { .scratch = &scratch }, .act = &act, .dtype = DT_F32, .training = 0 };
    camoxpert_forward(&c32, m, &x32, &o);
    check_eval(v, f, &io, &o, "(f32, fast)", v->rtol_fwd_f32);
    arena_reset(&act);
    NNCtx c64 = { .pt = &p64, .op = { .scratch = &scratch }, .act = &act, .dtype = DT_F64, .training = 0 };
    camoxpert_forward(&c64, m, &x64, &o);
    check_eval(v, f, &io, &o, "(f64, ref)", v->rtol_fwd_f64);
    arena_reset(&act);

    // training mode, float64: loss terms, gradients, BatchNorm state
    if (st_find(f, "output/train/loss")) {
        c64.training = 1;
        camoxpert_forward(&c64, m, &x64, &o);
        check_nhwc(v, f, &io, "output/train/pred", "output/train/pred (f64, train)", &o.maps.pred, 0, v->rtol_fwd_f64);
        check_routes(v, f, &io, &o, "train", "(f64, train)", v->rtol_fwd_f64);
        CamoLossWeights w = camo_loss_default_weights();
        CamoLoss L;
        CodOutputs grad;
        camo_loss_forward_backward(&act, &w, &o.maps, &mask, o.balance_loss, &L, &grad);
        const struct { const char *name; double val; } terms[] = {
            { "loss", L.total }, { "loss_bce", L.bce }, { "loss_iou", L.iou }, { "loss_edge", L.edge },
            { "loss_boundary", L.boundary }, { "loss_uncertainty", L.uncertainty },
            { "loss_reverse_attention", L.reverse_attention }, { "loss_search", L.search }, { "loss_deep", L.deep },
            { "loss_refinement", L.refinement }, { "loss_balance", L.balance },
        };
        for (size_t i = 0; i < sizeof terms / sizeof *terms; i++) {
            char ref[96];
            snprintf(ref, sizeof ref, "output/train/%s", terms[i].name);
            if (st_find(f, ref)) check_scalar(v, f, &io, ref, ref, terms[i].val, v->rtol_fwd_f64);
            else if (strcmp(terms[i].name, "loss_balance")) verify_fail(v, ref, "missing from the fixture");
        }
        params_zero_grad(&p64);
        Tensor dx = tensor_zeros_like(&act, &x64);
        camoxpert_backward(&c64, m, &grad, w.balance, &dx);
        const double floor = v->grad_floor * verify_grad_absmax(f);
        int n_grads = 0, n_bufs = 0;
        for (int k = 0; k < f->n; k++) {
            const char *name = f->entries[k].name;
            int is_grad = !strncmp(name, "grad/param/", 11), is_buf = !strncmp(name, "output/train/buffer/", 20);
            if (!is_grad && !is_buf) continue;
            const char *key = name + (is_grad ? 11 : 20);
            char tk[256];
            if (!strncmp(key, "backbone.", 9)) {
                char tail[240];
                edgenext_key_to_feature_name(key + 9, tail, sizeof tail);
                snprintf(tk, sizeof tk, "backbone.%s", tail);
            } else {
                snprintf(tk, sizeof tk, "%s", key);
            }
            int i = params_find(&p64, tk);
            if (i < 0) {
                verify_fail(v, name, "no such entry in this model");
                continue;
            }
            Tensor t = is_grad ? params_grad(&p64, i) : params_value(&p64, i);
            check_tensor(v, f, &io, name, name, &t, is_grad ? floor : 0, is_grad ? v->rtol_grad_f64 : v->rtol_fwd_f64, 0);
            n_grads += is_grad, n_bufs += is_buf;
        }
        if (st_find(f, "grad/input/image")) check_nhwc(v, f, &io, "grad/input/image", "grad/input/image", &dx, floor, v->rtol_grad_f64);
        printf("training mode: %d parameter gradients, %d BatchNorm buffers checked, grad floor %.3g\n", n_grads, n_bufs,
               floor);
    }
done:
    camoxpert_free(m);
    params_free(&p32);
    params_free(&p64);
    arena_free(&act);
    arena_free(&scratch);
    arena_free(&io);
    return rc;
}
