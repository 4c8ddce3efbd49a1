// optim.c — see optim.h.
#include "optim.h"
#include <math.h>
#include <string.h>

void adamw_init(AdamW *o, const ParamTable *pt, double weight_decay) {
    memset(o, 0, sizeof *o);
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = weight_decay;
    for (int g = 0; g < PG_COUNT; g++) o->group_scale[g] = 1.0;
    o->numel = pt->numel;
    o->n_entries = pt->n;
    o->m = cx_calloc((size_t)pt->numel + 1, sizeof(float));
    o->v = cx_calloc((size_t)pt->numel + 1, sizeof(float));
    o->steps = cx_calloc((size_t)pt->n + 1, sizeof(int64_t));
}

void adamw_free(AdamW *o) {
    free(o->m);
    free(o->v);
    free(o->steps);
    memset(o, 0, sizeof *o);
}

void adamw_reset(AdamW *o, const ParamTable *pt) {
    memset(o->m, 0, sizeof(float) * (size_t)pt->numel);
    memset(o->v, 0, sizeof(float) * (size_t)pt->numel);
    memset(o->steps, 0, sizeof(int64_t) * (size_t)pt->n);
}

int adamw_active(const AdamW *o, const ParamTable *pt, int i) {
    const ParamInfo *e = &pt->p[i];
    return !(e->flags & PF_BUFFER) && !o->group_frozen[e->group] && !(o->entry_frozen && o->entry_frozen[i]);
}

// The update of one entry, in the table's dtype. Mirrors torch.optim.AdamW's
// single-tensor path: p *= 1 - lr·wd; m, v updated; p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps).
#define ADAMW_ENTRY(real)                                                                              \
    do {                                                                                               \
        real *p = (real *)pt->data + e->offset, *g = (real *)pt->grad + e->offset;                    \
        float *m = o->m + e->offset, *v = o->v + e->offset;                                            \
        _Pragma("omp parallel for schedule(static) if (e->numel > 65536)")                             \
        for (int64_t j = 0; j < e->numel; j++) {                                                       \
            double gj = (double)g[j];                                                                  \
            double pj = (double)p[j] * decay_mul;                                                      \
            double mj = o->beta1 * m[j] + (1 - o->beta1) * gj;                                         \
            double vj = o->beta2 * v[j] + (1 - o->beta2) * gj * gj;                                    \
            m[j] = (float)mj;                                                                          \
            v[j] = (float)vj;                                                                          \
            p[j] = (real)(pj - step_size * mj / (sqrt(vj) / sqrt_bc2 + o->eps));                       \
        }                                                                                              \
    } while (0)

void adamw_step(AdamW *o, ParamTable *pt, double lr) {
    for (int i = 0; i < pt->n; i++) {
        if (!adamw_active(o, pt, i)) continue;
        const ParamInfo *e = &pt->p[i];
        double elr = lr * o->group_scale[e->group];
        int64_t t = ++o->steps[i];
        double bc1 = 1 - pow(o->beta1, (double)t), bc2 = 1 - pow(o->beta2, (double)t);
        double step_size = elr / bc1, sqrt_bc2 = sqrt(bc2);
        double decay_mul = (e->flags & PF_NO_DECAY) ? 1.0 : 1 - elr * o->weight_decay;
        if (pt->dtype == DT_F32) ADAMW_ENTRY(float);
        else ADAMW_ENTRY(double);
    }
}

double grad_clip_norm(ParamTable *pt, const AdamW *o, double max_norm) {
    double ss = 0;
    for (int i = 0; i < pt->n; i++) {
        if (!adamw_active(o, pt, i)) continue;
        Tensor g = params_grad(pt, i);
        int64_t n = tensor_numel(&g);
        double s = 0;
        if (g.dtype == DT_F32) {
            const float *x = g.data;
            #pragma omp parallel for reduction(+ : s) if (n > 65536)
            for (int64_t j = 0; j < n; j++) s += (double)x[j] * x[j];
        } else {
            const double *x = g.data;
            for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
        }
        ss += s;
    }
    double norm = sqrt(ss);
    if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
        double coef = max_norm / (norm + 1e-6);
        for (int i = 0; i < pt->n; i++) {
            if (!adamw_active(o, pt, i)) continue;
            Tensor g = params_grad(pt, i);
            int64_t n = tensor_numel(&g);
            if (g.dtype == DT_F32) { float *x = g.data; for (int64_t j = 0; j < n; j++) x[j] = (float)(x[j] * coef); }
            else { double *x = g.data; for (int64_t j = 0; j < n; j++) x[j] *= coef; }
        }
    }
    return norm;
}

void grad_scale(ParamTable *pt, double s) {
    if (pt->dtype == DT_F32) { float *x = pt->grad; for (int64_t j = 0; j < pt->numel; j++) x[j] = (float)(x[j] * s); }
    else { double *x = pt->grad; for (int64_t j = 0; j < pt->numel; j++) x[j] *= s; }
}

void ema_init(Ema *e, const ParamTable *pt, double decay) {
    e->decay = decay;
    e->numel = pt->numel;
    e->dtype = pt->dtype;
    size_t bytes = (size_t)pt->numel * dtype_size(pt->dtype);
    e->shadow = cx_malloc(bytes + 16);
    memcpy(e->shadow, pt->data, bytes);
}

void ema_update(Ema *e, const ParamTable *pt) {
    double d = e->decay;
    for (int i = 0; i < pt->n; i++) {
        const ParamInfo *p = &pt->p[i];
        int copy = (p->flags & PF_BUFFER) != 0;
        if (pt->dtype == DT_F32) {
            float *s = (float *)e->shadow + p->offset;
            const float *x = (const float *)pt->data + p->offset;
            for (int64_t j = 0; j < p->numel; j++) s[j] = copy ? x[j] : (float)(d * s[j] + (1 - d) * x[j]);
        } else {
            double *s = (double *)e->shadow + p->offset;
            const double *x = (const double *)pt->data + p->offset;
            for (int64_t j = 0; j < p->numel; j++) s[j] = copy ? x[j] : d * s[j] + (1 - d) * x[j];
        }
    }
}

void ema_swap(Ema *e, ParamTable *pt) {
    size_t n = (size_t)pt->numel * dtype_size(pt->dtype);
    unsigned char *a = e->shadow, *b = pt->data;
    for (size_t i = 0; i < n; i++) { unsigned char t = a[i]; a[i] = b[i]; b[i] = t; }
}

void ema_free(Ema *e) { free(e->shadow); e->shadow = NULL; }
