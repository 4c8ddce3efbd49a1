// optim.c — see optim.h.
#include "optim.h"
#include <math.h>
#include <string.h>

static Tensor flat(void *data, cx_dtype dt, int64_t n, cx_device dev) {
    Tensor t = tensor_view(data, dt, 1, &n);
    t.device = dev;
    return t;
}

void adamw_init(AdamW *o, const ParamTable *pt, double weight_decay) {
    memset(o, 0, sizeof *o);
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = weight_decay;
    for (int g = 0; g < PG_COUNT; g++) o->group_scale[g] = 1.0;
    o->numel = pt->numel;
    o->n_entries = pt->n;
    o->host_m = cx_calloc((size_t)pt->numel + 1, sizeof(float));
    o->host_v = cx_calloc((size_t)pt->numel + 1, sizeof(float));
    o->steps = cx_calloc((size_t)pt->n + 1, sizeof(int64_t));
    o->seg = cx_calloc((size_t)pt->n + 1, sizeof *o->seg);
    if (pt->device == DEV_CUDA) {
        size_t bytes = ((size_t)pt->numel + 1) * sizeof(float);
        void *m = cx_dev_alloc(bytes), *v = cx_dev_alloc(bytes);
        if (!m || !v) {
            fprintf(stderr, "error: out of GPU memory for the optimizer's %.1f MiB of moments\n", 2.0 * bytes / 1048576.0);
            exit(3);
        }
        o->m = flat(m, DT_F32, pt->numel, DEV_CUDA);
        o->v = flat(v, DT_F32, pt->numel, DEV_CUDA);
        adamw_reset(o);
    } else {
        o->m = flat(o->host_m, DT_F32, pt->numel, DEV_CPU);
        o->v = flat(o->host_v, DT_F32, pt->numel, DEV_CPU);
    }
}

void adamw_free(AdamW *o) {
    if (o->m.device == DEV_CUDA) {
        cx_dev_free(o->m.data);
        cx_dev_free(o->v.data);
    }
    free(o->host_m);
    free(o->host_v);
    free(o->steps);
    free(o->seg);
    memset(o, 0, sizeof *o);
}

void adamw_reset(AdamW *o) {
    memset(o->host_m, 0, sizeof(float) * (size_t)o->numel);
    memset(o->host_v, 0, sizeof(float) * (size_t)o->numel);
    memset(o->steps, 0, sizeof(int64_t) * (size_t)o->n_entries);
    if (o->m.device == DEV_CUDA) {
        cx_dev_zero(o->m.data, sizeof(float) * (size_t)o->numel);
        cx_dev_zero(o->v.data, sizeof(float) * (size_t)o->numel);
    }
}

void adamw_sync_host(AdamW *o) {
    if (o->m.device != DEV_CUDA) return;
    cx_dev_download(o->host_m, o->m.data, sizeof(float) * (size_t)o->numel);
    cx_dev_download(o->host_v, o->v.data, sizeof(float) * (size_t)o->numel);
}

void adamw_sync_device(AdamW *o) {
    if (o->m.device != DEV_CUDA) return;
    cx_dev_upload(o->m.data, o->host_m, sizeof(float) * (size_t)o->numel);
    cx_dev_upload(o->v.data, o->host_v, sizeof(float) * (size_t)o->numel);
}

int adamw_active(const AdamW *o, const ParamTable *pt, int i) {
    const ParamInfo *e = &pt->p[i];
    return !(e->flags & PF_BUFFER) && !o->group_frozen[e->group] && !(o->entry_frozen && o->entry_frozen[i]);
}

void adamw_step(OpCtx *op, AdamW *o, ParamTable *pt, double lr, const Tensor *gscale) {
    int n = 0;
    for (int i = 0; i < pt->n; i++) {
        if (!adamw_active(o, pt, i)) continue;
        const ParamInfo *e = &pt->p[i];
        double elr = lr * o->group_scale[e->group];
        int64_t t = ++o->steps[i];
        double bc1 = 1 - pow(o->beta1, (double)t), bc2 = 1 - pow(o->beta2, (double)t);
        o->seg[n++] = (AdamSeg){ .offset = e->offset, .numel = e->numel, .step_size = elr / bc1,
                                 .decay_mul = (e->flags & PF_NO_DECAY) ? 1.0 : 1 - elr * o->weight_decay,
                                 .sqrt_bc2 = sqrt(bc2) };
    }
    Tensor p = flat(pt->data, pt->dtype, pt->numel, pt->device), g = flat(pt->grad, pt->dtype, pt->numel, pt->device);
    adamw_update(op, &p, &o->m, &o->v, &g, gscale, o->seg, n, o->beta1, o->beta2, o->eps);
}

void optim_grad_clip_stats(OpCtx *op, const ParamTable *pt, const AdamW *o, double max_norm, Tensor *stats) {
    int n = 0;
    for (int i = 0; i < pt->n; i++)
        if (adamw_active(o, pt, i)) o->seg[n++] = (AdamSeg){ .offset = pt->p[i].offset, .numel = pt->p[i].numel };
    Tensor g = flat(pt->grad, pt->dtype, pt->numel, pt->device);
    grad_norm_clip(op, stats, &g, o->seg, n, max_norm);
}

void optim_grad_scale(OpCtx *op, ParamTable *pt, double s) {
    Tensor g = flat(pt->grad, pt->dtype, pt->numel, pt->device);
    scale_inplace(op, &g, s);
}

void ema_init(Ema *e, const ParamTable *pt, double decay) {
    memset(e, 0, sizeof *e);
    e->decay = decay;
    e->numel = pt->numel;
    e->dtype = pt->dtype;
    e->device = pt->device;
    size_t bytes = (size_t)pt->numel * dtype_size(pt->dtype);
    e->host = cx_malloc(bytes + 16);
    e->seg = cx_calloc((size_t)pt->n + 1, sizeof *e->seg);
    if (pt->device == DEV_CUDA) {
        e->shadow = cx_dev_alloc(bytes + 16);
        if (!e->shadow) {
            fprintf(stderr, "error: out of GPU memory for the EMA's %.1f MiB of weights\n", bytes / 1048576.0);
            exit(3);
        }
        cx_dev_copy(e->shadow, pt->data, bytes);
    } else {
        e->shadow = e->host;
        memcpy(e->shadow, pt->data, bytes);
    }
}

void ema_update(OpCtx *op, Ema *e, const ParamTable *pt) {
    for (int i = 0; i < pt->n; i++)
        e->seg[i] = (EmaSeg){ .offset = pt->p[i].offset, .numel = pt->p[i].numel,
                              .copy = (pt->p[i].flags & PF_BUFFER) != 0, .decay = e->decay };
    Tensor s = flat(e->shadow, e->dtype, e->numel, e->device), x = flat(pt->data, pt->dtype, pt->numel, pt->device);
    ema_blend(op, &s, &x, e->seg, pt->n);
}

void ema_swap(Ema *e, ParamTable *pt) {
    void *t = e->shadow;
    e->shadow = pt->data;
    pt->data = t;
    if (e->device == DEV_CPU) e->host = e->shadow;
}

void ema_sync_host(Ema *e) {
    if (e->device == DEV_CUDA) cx_dev_download(e->host, e->shadow, (size_t)e->numel * dtype_size(e->dtype));
}

void ema_sync_device(Ema *e) {
    if (e->device == DEV_CUDA) cx_dev_upload(e->shadow, e->host, (size_t)e->numel * dtype_size(e->dtype));
}

void ema_free(Ema *e) {
    if (e->device == DEV_CUDA) {
        cx_dev_free(e->shadow);
        free(e->host);
    } else {
        free(e->shadow);   // the host copy is the shadow itself
    }
    free(e->seg);
    memset(e, 0, sizeof *e);
}
