// verify_edgenext.c — the `kind=edgenext` checker of `camoxpert verify`: builds
// the fixture's variant, loads its parameters (stored `param/<hub key>`, or
// generated from `param_seed`), runs the input through the backbone in float32
// with the fast kernels (features within rtol_fwd_f32) and in float64 with the
// reference kernels (features within rtol_fwd_f64; the gradients of the loss
// Σ_i Σ feat_i·probe_i w.r.t. every stored parameter gradient and the input within
// rtol_grad_f64, relative to max(max|ref|, grad_floor·largest gradient)).
// Works for any variant, batch and input size; a fixture may store a subset of
// the parameter gradients (it must then record `grad_absmax`).
#include "verify.h"
#include "nn/edgenext.h"
#include <string.h>

static int fail_setup(ParamTable *p32, ParamTable *p64, EdgeNeXt *m, Arena *act, Arena *scratch, Arena *io) {
    fprintf(stderr, "error: %s\n", cx_errmsg());
    edgenext_free(m);
    params_free(p32);
    params_free(p64);
    arena_free(act);
    arena_free(scratch);
    arena_free(io);
    return 2;
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
    verify_clone_layout(&p64, &p32);
    params_alloc(&p32, DT_F32);
    params_alloc(&p64, DT_F64);
    Arena act, scratch, io;
    arena_init(&act, "activations", 64 << 20);
    arena_init(&scratch, "scratch", 16 << 20);
    arena_init(&io, "fixture tensors", 16 << 20);

    const char *gen = st_meta(f, "param_gen");
    if (gen) {
        const char *seed = st_meta(f, "param_seed");
        if (strcmp(gen, "splitmix22") || !seed) {
            cx_fail(CX_EFORMAT, __FILE__, __LINE__, "%s: param_gen '%s' needs param_gen=splitmix22 and param_seed", f->path, gen);
            return fail_setup(&p32, &p64, m, &act, &scratch, &io);
        }
        verify_gen_params(&p32, "", strtoull(seed, NULL, 10));
    } else if (edgenext_load(&p32, f, "param/", "")) {
        return fail_setup(&p32, &p64, m, &act, &scratch, &io);
    }
    params_copy_values(&p64, &p32);   // values are float32-exact, so both runs see the same weights

    Tensor x32, x64, ref[4], probe[4];
    if (verify_read_nhwc(f, "input/image", &io, DT_F32, &x32) || verify_read_nhwc(f, "input/image", &io, DT_F64, &x64))
        return fail_setup(&p32, &p64, m, &act, &scratch, &io);
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "output/feat%d", i);
        if (verify_read_nhwc(f, name, &io, DT_F64, &ref[i])) return fail_setup(&p32, &p64, m, &act, &scratch, &io);
        snprintf(name, sizeof name, "probe/feat%d", i);
        if (verify_read_nhwc(f, name, &io, DT_F64, &probe[i])) return fail_setup(&p32, &p64, m, &act, &scratch, &io);
    }
    int fh[4], fw[4];
    if (!edgenext_feature_sizes(m, (int)T_H(&x32), (int)T_W(&x32), fh, fw)) {
        cx_fail(CX_ESHAPE, __FILE__, __LINE__, "%s: a %lld×%lld input is too small for %s", f->path,
                (long long)T_H(&x32), (long long)T_W(&x32), variant);
        return fail_setup(&p32, &p64, m, &act, &scratch, &io);
    }
    printf("verify %s: %s, input %lld×3×%lld×%lld, %lld parameters\n", f->path, variant, (long long)T_N(&x32),
           (long long)T_H(&x32), (long long)T_W(&x32), (long long)params_count(&p32, PF_BUFFER));

    // float32 through the fast kernels: forward only.
    Tensor feats[4];
    NNCtx c32 = { .pt = &p32, .op = { .scratch = &scratch }, .act = &act, .dtype = DT_F32, .training = 1 };
    edgenext_forward(&c32, m, feats, &x32);
    for (int i = 0; i < 4; i++) {
        char name[48];
        snprintf(name, sizeof name, "output/feat%d (f32, fast)", i);
        verify_check(v, name, &feats[i], &ref[i], 0, v->rtol_fwd_f32);
    }
    arena_reset(&act);

    // float64 through the reference kernels: forward, then the probe loss's gradients.
    NNCtx c64 = { .pt = &p64, .op = { .scratch = &scratch }, .act = &act, .dtype = DT_F64, .training = 1 };
    edgenext_forward(&c64, m, feats, &x64);
    for (int i = 0; i < 4; i++) {
        char name[48];
        snprintf(name, sizeof name, "output/feat%d (f64, ref)", i);
        verify_check(v, name, &feats[i], &ref[i], 0, v->rtol_fwd_f64);
    }
    Tensor dx = tensor_zeros_like(&act, &x64);
    params_zero_grad(&p64);
    edgenext_backward(&c64, m, probe, &dx);
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
    if (verify_read_nhwc(f, "grad/input/image", &io, DT_F64, &rdx)) verify_fail(v, "grad/input/image", cx_errmsg());
    else verify_check(v, "grad/input/image", &dx, &rdx, floor, v->rtol_grad_f64);
    printf("checked %d of %d parameter gradients (the fixture stores those), grad floor %.3g\n", n_grads, p64.n, floor);

    edgenext_free(m);
    params_free(&p32);
    params_free(&p64);
    arena_free(&act);
    arena_free(&scratch);
    arena_free(&io);
    return 0;
}
