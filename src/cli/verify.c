// verify.c — see verify.h: the checks and fixture readers the checkers
// (verify_edgenext.c, verify_camoxpert.c) share; cmd_verify.c dispatches to them.
#include "verify.h"
#include "core/finite.h"
#include <math.h>
#include <string.h>

static cx_status meta_double(const StFile *f, const char *key, double *out) {
    const char *s = st_meta(f, key);
    char *end = NULL;
    if (!s) return CX_FAIL(CX_EFORMAT, "%s: __metadata__ has no '%s' (tolerances are part of every fixture)", f->path, key);
    *out = strtod(s, &end);
    if (end == s || *end) return CX_FAIL(CX_EFORMAT, "%s: __metadata__ '%s' = '%s' is not a number", f->path, key, s);
    return CX_OK;
}

// A tolerance from the file within [lo, hi]: a parity claim made with `inf`, `1e308` or
// a negative one would pass anything, or nothing.
static cx_status meta_tolerance(const StFile *f, const char *key, double lo, double hi, double *out) {
    CX_TRY(meta_double(f, key, out));
    if (!isfinite(*out) || *out < lo || *out > hi)
        return CX_FAIL(CX_EFORMAT, "%s: __metadata__ '%s' = '%s' is not a tolerance verify accepts: it must be a finite "
                       "number from %g to %g (a larger one would pass outputs that are wrong)", f->path, key,
                       st_meta(f, key), lo, hi);
    return CX_OK;
}

cx_status verify_read_tolerances(VerifyRun *v, const StFile *f) {
    CX_TRY(meta_tolerance(f, "rtol_fwd_f32", VERIFY_RTOL_MIN, VERIFY_RTOL_MAX, &v->rtol_fwd_f32));
    CX_TRY(meta_tolerance(f, "rtol_fwd_f64", VERIFY_RTOL_MIN, VERIFY_RTOL_MAX, &v->rtol_fwd_f64));
    CX_TRY(meta_tolerance(f, "rtol_grad_f64", VERIFY_RTOL_MIN, VERIFY_RTOL_MAX, &v->rtol_grad_f64));
    return meta_tolerance(f, "grad_floor", 0, 1, &v->grad_floor);
}

int verify_check(VerifyRun *v, const char *name, const Tensor *ours, const Tensor *ref, double floor, double tol) {
    v->n_checked++;
    int64_t n = tensor_numel(ref);
    if (tensor_numel(ours) != n) {
        char a[96], b[96], why[256];
        snprintf(why, sizeof why, "shape %s here but %s in the fixture", tensor_shape_str(ours, a, sizeof a),
                 tensor_shape_str(ref, b, sizeof b));
        v->n_checked--;
        verify_fail(v, name, why);
        return 0;
    }
    int64_t bad;
    double err = tensor_rel_err(ours, ref, floor, &bad);
    if (bad >= 0) {   // a NaN or infinity on either side fails, wherever it is
        char why[256];
        v->n_checked--;
        snprintf(why, sizeof why, "non-finite value at index %lld (here %g, fixture %g)", (long long)bad,
                 tensor_get(ours, bad), tensor_get(ref, bad));
        verify_fail(v, name, why);
        return 0;
    }
    int ok = err <= tol;
    if (!ok) v->n_failed++;
    double ratio = isnan(err) ? INFINITY : err / tol;
    if (ratio > v->worst || v->n_checked == 1) {
        v->worst = ratio;
        snprintf(v->worst_name, sizeof v->worst_name, "%s", name);
    }
    if (!ok || !v->quiet) printf("  %-58s err %9.3e  tol %.0e  %s\n", name, err, tol, ok ? "ok" : "FAIL");
    return ok;
}

static void note_ratio(VerifyRun *v, const char *name, double ratio) {
    if (ratio > v->worst || v->n_checked == 1) {
        v->worst = ratio;
        snprintf(v->worst_name, sizeof v->worst_name, "%s", name);
    }
}

int verify_check_l2(VerifyRun *v, const char *name, const Tensor *ours, const Tensor *ref, double floor, double tol) {
    v->n_checked++;
    int64_t n = tensor_numel(ref);
    if (tensor_numel(ours) != n) {
        v->n_checked--;
        verify_fail(v, name, "element counts differ");
        return 0;
    }
    double err = tensor_rel_l2(ours, ref, floor);
    int finite = !isnan(err);
    v->last_err = finite ? err : INFINITY;
    int ok = finite && err <= tol;
    if (!ok) v->n_failed++;
    note_ratio(v, name, ok ? err / tol : INFINITY);
    if (!ok || !v->quiet)
        printf("  %-58s L2 %9.3e  tol %.0e  %s%s\n", name, err, tol, ok ? "ok" : "FAIL", finite ? "" : " (not finite)");
    return ok;
}

int verify_record(VerifyRun *v, const char *name, double err, double tol, int ok, const char *detail) {
    v->n_checked++;
    v->last_err = err;
    if (!ok) v->n_failed++;
    note_ratio(v, name, ok ? err / tol : INFINITY);
    if (!ok || !v->quiet) printf("  %-58s err %9.3e  tol %.0e  %s%s\n", name, err, tol, ok ? "ok" : "FAIL", detail ? detail : "");
    return ok;
}

static double l2_rel(const Tensor *a, const Tensor *b, double floor, int *finite) {
    double d2 = 0, r2 = 0;
    for (int64_t i = 0; i < tensor_numel(b); i++) {
        double x = tensor_get(a, i), y = tensor_get(b, i);
        *finite &= isfinite(x) && isfinite(y);
        d2 += (x - y) * (x - y);
        r2 += y * y;
    }
    double den = sqrt(r2) > floor ? sqrt(r2) : floor;
    return den > 0 ? sqrt(d2) / den : sqrt(d2);
}

int verify_check_gpu_grad(VerifyRun *v, const char *name, const Tensor *gpu, const Tensor *cpu32, const Tensor *ref64,
                          double floor, double tol) {
    int finite = 1;
    double e_gc = l2_rel(gpu, cpu32, floor, &finite), e_g64 = l2_rel(gpu, ref64, floor, &finite);
    double e_c64 = l2_rel(cpu32, ref64, floor, &finite);
    char detail[200] = "";
    int ok = finite && e_gc <= tol;
    if (finite && !ok) {   // the CPU's float32 rounding is the difference: judge the GPU against the exact gradient
        ok = e_g64 <= tol;
        snprintf(detail, sizeof detail, " (vs float64: gpu %.2e, cpu fp32 %.2e%s)", e_g64, e_c64,
                 ok ? "; the gpu is within tol of exact" : "");
        if (ok) {   // shown even when quiet: it is the exception to the rule
            printf("  %-58s err %9.3e  tol %.0e  ok%s\n", name, e_gc, tol, detail);
            int q = v->quiet;
            v->quiet = 1;
            verify_record(v, name, e_g64, tol, 1, NULL);
            v->quiet = q;
            return 1;
        }
    }
    return verify_record(v, name, e_gc, tol, ok, finite ? detail : " (not finite)");
}

int verify_check_gpu(VerifyRun *v, const char *name, const Tensor *ours, const Tensor *ref) {
    Tensor h = runtime_output_f32(v->gpu, ours);
    if (v->gpu->bf16) return verify_check_l2(v, name, &h, ref, 0, VERIFY_BF16_FWD);
    return verify_check(v, name, &h, ref, 0, v->rtol_fwd_f32);
}

cx_status verify_bf16_tol(const StFile *f, const char *ref_name, double def, double *tol, double *autocast) {
    char key[200];
    snprintf(key, sizeof key, "bf16_ref_err/%s", ref_name);
    const char *s = st_meta(f, key);
    *tol = def, *autocast = -1;
    if (!s) return CX_OK;
    char *end = NULL;
    const double e = strtod(s, &end);
    if (end == s || *end || !(e >= 0) || !isfinite(e))
        return CX_FAIL(CX_EFORMAT, "%s: __metadata__ '%s' = '%s' is not a non-negative number (PyTorch's relative L2 "
                       "error; tools/camoxpert_twin.py prove --amp bf16 --record writes it)", f->path, key, s);
    *autocast = e;
    if (!strncmp(ref_name, "output/train/", 13) || e > VERIFY_BF16_FWD) *tol = VERIFY_BF16_AUTOCAST_RATIO * e;
    else *tol = VERIFY_BF16_FWD;
    return CX_OK;
}

void verify_fail(VerifyRun *v, const char *name, const char *why) {
    v->n_checked++;
    v->n_failed++;
    v->worst = INFINITY;
    snprintf(v->worst_name, sizeof v->worst_name, "%s", name);
    printf("  %-58s FAIL: %s\n", name, why);
}

cx_status verify_read(const StFile *f, const char *name, Arena *a, cx_dtype dt, Tensor *out) {
    const StEntry *e = st_find(f, name);
    if (!e) return CX_FAIL(CX_ENOTFOUND, "%s: the fixture has no tensor '%s'", f->path, name);
    *out = tensor_new(a, dt, e->ndim, e->shape);
    return st_entry_read(f, e, out);
}

cx_status verify_read_nhwc(const StFile *f, const char *name, Arena *a, cx_dtype dt, Tensor *out) {
    const StEntry *e = st_find(f, name);
    if (!e) return CX_FAIL(CX_ENOTFOUND, "%s: the fixture has no tensor '%s'", f->path, name);
    if (e->ndim != 4) return CX_FAIL(CX_ESHAPE, "%s: '%s' has %d dimensions, NCHW (4) expected", f->path, name, e->ndim);
    ArenaMark mk = arena_mark(a);
    Tensor nchw = tensor_new(a, DT_F64, 4, e->shape);
    cx_status st = st_entry_read(f, e, &nchw);
    if (st) return st;
    const int64_t N = e->shape[0], C = e->shape[1], H = e->shape[2], W = e->shape[3];
    double *tmp = cx_malloc(sizeof(double) * (size_t)(N * C * H * W));
    const double *s = tensor_f64(&nchw);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < H * W; p++) tmp[(n * H * W + p) * C + c] = s[(n * C + c) * H * W + p];
    arena_release(a, mk);
    *out = tensor_new4(a, dt, N, H, W, C);
    Tensor src = tensor_view4(tmp, DT_F64, N, H, W, C);
    tensor_copy(out, &src);
    free(tmp);
    return CX_OK;
}

double verify_grad_absmax(const StFile *f) {
    const char *s = st_meta(f, "grad_absmax");
    if (s) return strtod(s, NULL);
    double mx = 0;
    for (int i = 0; i < f->n; i++) {
        const StEntry *e = &f->entries[i];
        if (strncmp(e->name, "grad/", 5)) continue;
        int64_t n = 1;
        for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
        double *buf = cx_malloc(sizeof(double) * (size_t)(n ? n : 1));
        Tensor t = tensor_view(buf, DT_F64, e->ndim, e->shape);
        if (st_entry_read(f, e, &t) == CX_OK)
            for (int64_t k = 0; k < n; k++)
                if (fabs(buf[k]) > mx) mx = fabs(buf[k]);
        free(buf);
    }
    return mx;
}

void verify_clone_layout(ParamTable *dst, const ParamTable *src) {
    for (int i = 0; i < src->n; i++) {
        const ParamInfo *e = &src->p[i];
        params_add(dst, e->name, e->ndim, e->shape, e->group, e->flags);
    }
}

static uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void verify_gen_params(ParamTable *pt, const char *table_prefix, uint64_t seed) {
    const size_t lp = table_prefix ? strlen(table_prefix) : 0;
    for (int i = 0; i < pt->n; i++) {
        const ParamInfo *e = &pt->p[i];
        if (lp && strncmp(e->name, table_prefix, lp)) continue;
        if (e->flags & PF_BUFFER) continue;
        const char *key = e->name + lp;
        const uint64_t base = splitmix64(seed ^ fnv1a64(key));
        const int unit = ends_with(key, "gamma") || ends_with(key, "gamma_xca") || ends_with(key, "temperature") ||
                         (e->ndim == 1 && ends_with(key, ".weight"));
        const int bias = ends_with(key, ".bias");
        double scale = 1.0;
        if (!unit && !bias) {
            int64_t fan_in = e->numel / e->shape[0];
            int bl = 0;
            while ((fan_in >> bl) > 0) bl++;
            scale = ldexp(1.0, -((bl - 1) / 2));
        }
        Tensor v = params_value(pt, i);
        for (int64_t k = 0; k < e->numel; k++) {
            const uint64_t h = splitmix64(base + (uint64_t)k * 0x9E3779B97F4A7C15ull);
            const double r = ((double)(h >> 42) - 2097152.0) / 2097152.0;
            tensor_set(&v, k, unit ? 1.0 + r / 2 : bias ? r / 8 : r * scale);
        }
    }
}

void verify_twins(ParamTable *p32, ParamTable *p64, Runtime *r32, Runtime *r64, int training) {
    verify_clone_layout(p64, p32);
    params_alloc(p32, DT_F32);
    params_alloc(p64, DT_F64);
    cx_status st = runtime_init(r32, "cpu", "fp32", 0, training);
    CX_ASSERT(st == CX_OK, "%s", cx_errmsg());
    runtime_init_reference(r64, DT_F64, training);
    r32->ctx.pt = p32;
    r64->ctx.pt = p64;
}
