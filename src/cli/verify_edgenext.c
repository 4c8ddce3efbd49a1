// verify_edgenext.c — the `kind=edgenext` checker of `camoxpert verify`: builds
// the fixture's variant, loads its parameters (stored `param/<hub key>`, or
// generated from `param_seed`), runs the input through the backbone in float32
// with the fast kernels (features within rtol_fwd_f32) and in float64 with the
// reference kernels (features within rtol_fwd_f64; the gradients of the loss
// Σ_i Σ feat_i·probe_i w.r.t. every stored parameter gradient and the input within
// rtol_grad_f64, relative to max(max|ref|, grad_floor·largest gradient)).
// Works for any variant, batch and input size; a fixture may store a subset of
// the parameter gradients (it must then record `grad_absmax`).
// With a GPU (VerifyRun.gpu) the features are checked from a GPU run too, and
// every parameter gradient of the probe loss against the CPU's float32 ones.
#include "verify.h"
#include "nn/edgenext.h"
#include "nn/layers.h"
#include <math.h>
#include <string.h>

static int fail_setup(ParamTable *p32, ParamTable *p64, EdgeNeXt *m, Runtime *r32, Runtime *r64, Arena *io) {
    fprintf(stderr, "error: %s\n", cx_errmsg());
    edgenext_free(m);
    params_free(p32);
    params_free(p64);
    runtime_free(r32);
    runtime_free(r64);
    arena_free(io);
    return 2;
}

// The probe loss's parameter gradients on rt (table rt->ctx.pt, zeroed here).
static void probe_backward(Runtime *rt, EdgeNeXt *m, const Tensor *x_host, const Tensor *probe_host) {
    runtime_step_reset(rt);
    Tensor x = runtime_input(rt, x_host, rt->dtype), feats[4], probe[4];
    edgenext_forward(&rt->ctx, m, feats, &x);
    for (int i = 0; i < 4; i++) probe[i] = runtime_input(rt, &probe_host[i], rt->dtype);
    params_zero_grad(rt->ctx.pt);
    edgenext_backward(&rt->ctx, m, probe, NULL);
}

static void gpu_checks(VerifyRun *v, EdgeNeXt *m, const ParamTable *p32, const Tensor *x32, const Tensor *ref,
                       const Tensor *probe, Arena *io) {
    Runtime *g = v->gpu;
    const int bf16 = g->bf16, on_gpu = g->device == DEV_CUDA;
    const char *tag = on_gpu ? (bf16 ? "(gpu, bf16)" : "(gpu, fp32)") : "(cpu, bf16)";
    ParamTable pg, pc;
    params_init(&pg);
    params_init(&pc);
    verify_clone_layout(&pg, p32);
    verify_clone_layout(&pc, p32);
    params_alloc(&pg, DT_F32);
    params_alloc(&pc, DT_F32);
    params_copy_values(&pg, p32);
    params_copy_values(&pc, p32);
    runtime_place(g, &pg);
    g->ctx.pt = &pg;
    g->ctx.training = 1;
    runtime_step_reset(g);
    Tensor x = runtime_input(g, x32, g->dtype), feats[4];
    edgenext_forward(&g->ctx, m, feats, &x);
    for (int i = 0; i < 4; i++) {
        char name[48];
        snprintf(name, sizeof name, "output/feat%d %s", i, tag);
        verify_check_gpu(v, name, &feats[i], &ref[i]);
    }
    // probes as float32 host tensors, the same for both runs
    Tensor p32probe[4];
    for (int i = 0; i < 4; i++) {
        p32probe[i] = tensor_new(io, DT_F32, probe[i].ndim, probe[i].shape);
        tensor_copy(&p32probe[i], &probe[i]);
    }
    probe_backward(g, m, x32, p32probe);
    Runtime rc;
    cx_status cs = runtime_init(&rc, "cpu", "fp32", 0, 1);
    CX_ASSERT(cs == CX_OK, "%s", cx_errmsg());
    rc.ctx.pt = &pc;
    probe_backward(&rc, m, x32, p32probe);
    Tensor gall = tensor_new(io, DT_F32, 1, &pg.numel), gdev = tensor_view(pg.grad, DT_F32, 1, &pg.numel);
    gdev.device = g->device;
    if (on_gpu) tensor_download(&gall, &gdev);
    else tensor_copy(&gall, &gdev);
    const double gtol = VERIFY_GPU_GRAD_F32;
    double gmax = 0;   // the largest |gradient| of the CPU run: the floor's scale
    for (int i = 0; i < pc.n; i++) {
        Tensor b = params_grad(&pc, i);
        for (int64_t k = 0; k < tensor_numel(&b); k++) gmax = fmax(gmax, fabs(tensor_get(&b, k)));
    }
    double worst = 0;
    const char *worst_name = "";
    int quiet = v->quiet;
    v->quiet = 1;
    for (int i = 0; i < pc.n; i++) {
        Tensor a = tensor_view(tensor_f32(&gall) + pc.p[i].offset, DT_F32, pc.p[i].ndim, pc.p[i].shape);
        Tensor b = params_grad(&pc, i);
        char label[200];
        snprintf(label, sizeof label, "grad %s %s vs cpu fp32", pc.p[i].name, tag);
        double fl = v->grad_floor * gmax * sqrt((double)pc.p[i].numel);
        if (bf16) {   // reported, no target
            int q = v->quiet;
            v->quiet = 1;
            verify_check_l2(v, label, &a, &b, fl, INFINITY);
            v->quiet = q;
        } else {
            verify_check_l2(v, label, &a, &b, fl, gtol);
        }
        if (!(v->last_err <= worst)) { worst = v->last_err; worst_name = pc.p[i].name; }
    }
    v->quiet = quiet;
    printf("%s gradients%s: %d parameter tensors, worst relative L2 %.3e against the CPU's float32 (%s)%s\n",
           on_gpu ? "gpu" : "cpu bf16", bf16 ? " (bf16, reported, no target)" : "", pc.n, worst, worst_name, bf16 ? "" : " (tolerance 1e-3)");
    runtime_free(&rc);
    params_free(&pc);
    params_free(&pg);
}

int verify_edgenext(VerifyRun *v, const StFile *f) {
    const char *variant = st_meta(f, "variant");
    EdgeNeXtConfig cfg;
    if (!variant) {
        fprintf(stderr, "error: %s: kind=edgenext but __metadata__ has no 'variant'\n", f->path);
        return 2;
    }
    if (edgenext_config(variant, &cfg)) {
        fprintf(stderr, "error: %s: %s\n", f->path, cx_errmsg());
        return 2;
    }
    ParamTable p32, p64;
    params_init(&p32);
    params_init(&p64);
    EdgeNeXt *m = edgenext_create(&cfg, &p32, "");   // one module, two tables (F32 and F64)
    Runtime r32, r64;
    verify_twins(&p32, &p64, &r32, &r64, 1);
    Arena io;
    arena_init(&io, "fixture tensors", 16 << 20);

    const char *gen = st_meta(f, "param_gen");
    if (gen) {
        const char *seed = st_meta(f, "param_seed");
        if (strcmp(gen, "splitmix22") || !seed) {
            cx_fail(CX_EFORMAT, __FILE__, __LINE__, "%s: param_gen '%s' needs param_gen=splitmix22 and param_seed", f->path, gen);
            return fail_setup(&p32, &p64, m, &r32, &r64, &io);
        }
        verify_gen_params(&p32, "", strtoull(seed, NULL, 10));
    } else if (edgenext_load(&p32, f, "param/", "")) {
        return fail_setup(&p32, &p64, m, &r32, &r64, &io);
    }
    params_copy_values(&p64, &p32);   // values are float32-exact, so both runs see the same weights

    Tensor x32, x64, ref[4], probe[4];
    if (verify_read_nhwc(f, "input/image", &io, DT_F32, &x32) || verify_read_nhwc(f, "input/image", &io, DT_F64, &x64))
        return fail_setup(&p32, &p64, m, &r32, &r64, &io);
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "output/feat%d", i);
        if (verify_read_nhwc(f, name, &io, DT_F64, &ref[i])) return fail_setup(&p32, &p64, m, &r32, &r64, &io);
        snprintf(name, sizeof name, "probe/feat%d", i);
        if (verify_read_nhwc(f, name, &io, DT_F64, &probe[i])) return fail_setup(&p32, &p64, m, &r32, &r64, &io);
    }
    int fh[4], fw[4];
    if (!edgenext_feature_sizes(m, (int)T_H(&x32), (int)T_W(&x32), fh, fw)) {
        cx_fail(CX_ESHAPE, __FILE__, __LINE__, "%s: a %lld×%lld input is too small for %s", f->path,
                (long long)T_H(&x32), (long long)T_W(&x32), variant);
        return fail_setup(&p32, &p64, m, &r32, &r64, &io);
    }
    printf("verify %s: %s, input %lld×3×%lld×%lld, %lld parameters\n", f->path, variant, (long long)T_N(&x32),
           (long long)T_H(&x32), (long long)T_W(&x32), (long long)params_count(&p32, PF_BUFFER));

    // float32 through the fast kernels: forward only.
    Tensor feats[4];
    edgenext_forward(&r32.ctx, m, feats, &x32);
    for (int i = 0; i < 4; i++) {
        char name[48];
        snprintf(name, sizeof name, "output/feat%d (f32, fast)", i);
        verify_check(v, name, &feats[i], &ref[i], 0, v->rtol_fwd_f32);
    }
    runtime_step_reset(&r32);

    // float64 through the reference kernels: forward, then the probe loss's gradients.
    edgenext_forward(&r64.ctx, m, feats, &x64);
    for (int i = 0; i < 4; i++) {
        char name[48];
        snprintf(name, sizeof name, "output/feat%d (f64, ref)", i);
        verify_check(v, name, &feats[i], &ref[i], 0, v->rtol_fwd_f64);
    }
    Tensor dx = nn_zeros_like(&r64.ctx, &x64);
    params_zero_grad(&p64);
    edgenext_backward(&r64.ctx, m, probe, &dx);
    const double floor = v->grad_floor * verify_grad_absmax(f);
    int n_grads = 0;
    for (int k = 0; k < f->n; k++) {
        const StEntry *e = &f->entries[k];
        if (strncmp(e->name, "grad/param/", 11)) continue;
        char key[256];
        edgenext_key_to_feature_name(e->name + 11, key, sizeof key);
        const int i = params_find(&p64, key);
        if (i < 0) {
            if (!strncmp(e->name + 11, "head.", 5)) continue;   // the classifier is not part of the backbone
            verify_fail(v, e->name, "no such parameter in this variant");
            continue;
        }
        Tensor g = params_grad(&p64, i), r;
        ArenaMark mk = arena_mark(&io);
        if (verify_read(f, e->name, &io, DT_F64, &r)) {
            verify_fail(v, e->name, cx_errmsg());
        } else {
            verify_check(v, e->name, &g, &r, floor, v->rtol_grad_f64);
            n_grads++;
        }
        arena_release(&io, mk);
    }
    Tensor rdx;
    const char *stripped = st_meta(f, "stripped");
    if (stripped && !st_find(f, "grad/input/image"))   // tools/strip_fixture.py dropped the gradients
        printf("gradients: not in this copy of the fixture (stripped: %s)\n", stripped);
    else if (verify_read_nhwc(f, "grad/input/image", &io, DT_F64, &rdx)) verify_fail(v, "grad/input/image", cx_errmsg());
    else verify_check(v, "grad/input/image", &dx, &rdx, floor, v->rtol_grad_f64);
    printf("checked %d of %d parameter gradients (the fixture stores those), grad floor %.3g\n", n_grads, p64.n, floor);
    if (v->gpu) gpu_checks(v, m, &p32, &x32, ref, probe, &io);

    edgenext_free(m);
    params_free(&p32);
    params_free(&p64);
    runtime_free(&r32);
    runtime_free(&r64);
    arena_free(&io);
    return 0;
}
