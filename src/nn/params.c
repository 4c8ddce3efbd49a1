// params.c — see params.h.
#include "params.h"
#include "core/finite.h"
#include <string.h>

void params_init(ParamTable *pt) { memset(pt, 0, sizeof *pt); }

void params_free(ParamTable *pt) {
    for (int i = 0; i < pt->n; i++) free(pt->p[i].name);
    free(pt->p);
    if (pt->device == DEV_CUDA) {
        cx_dev_free(pt->data);
        cx_dev_free(pt->grad);
        free(pt->host);
    } else {
        free(pt->data);
        free(pt->grad);
    }
    free(pt->counter);
    memset(pt, 0, sizeof *pt);
}

int params_add(ParamTable *pt, const char *name, int ndim, const int64_t *shape, param_group group, unsigned flags) {
    CX_ASSERT(!pt->data, "params_add(%s) after params_alloc", name);
    CX_ASSERT(ndim >= 0 && ndim <= 4, "params_add(%s): ndim %d", name, ndim);
    CX_ASSERT(params_find(pt, name) < 0, "parameter name '%s' registered twice", name);
    if (pt->n == pt->cap) {
        pt->cap = pt->cap ? 2 * pt->cap : 256;
        pt->p = cx_realloc(pt->p, sizeof *pt->p * (size_t)pt->cap);
    }
    ParamInfo *e = &pt->p[pt->n];
    memset(e, 0, sizeof *e);
    e->name = cx_strdup(name);
    e->ndim = ndim;
    e->numel = 1;
    for (int d = 0; d < ndim; d++) { e->shape[d] = shape[d]; e->numel *= shape[d]; }
    // Keep each entry 16-element aligned so vector loads never straddle entries.
    e->offset = (pt->numel + 15) / 16 * 16;
    pt->numel = e->offset + e->numel;
    e->group = group;
    e->flags = flags;
    return pt->n++;
}

void params_alloc(ParamTable *pt, cx_dtype dt) {
    CX_ASSERT(dt == DT_F32 || dt == DT_F64, "params_alloc: dtype %s", dtype_name(dt));
    pt->dtype = dt;
    size_t bytes = (size_t)(pt->numel + 16) * dtype_size(dt);
    pt->data = cx_calloc(1, bytes);
    pt->grad = cx_calloc(1, bytes);
    pt->counter = cx_calloc((size_t)pt->n + 1, sizeof *pt->counter);
    pt->device = DEV_CPU;
}

static void to_device(ParamTable *pt, int grads) {
    CX_ASSERT(pt->data && pt->device == DEV_CPU, "params_to_device: allocate the table on the host first");
    size_t bytes = (size_t)(pt->numel + 16) * dtype_size(pt->dtype);
    void *d = cx_dev_alloc(bytes), *g = grads ? cx_dev_alloc(bytes) : NULL;
    if (!d || (grads && !g)) {
        size_t fr, tot;
        cx_dev_mem_info(&fr, &tot);
        fprintf(stderr, "error: out of GPU memory for the %.1f MiB of parameters and their gradients (the GPU has %.0f MiB "
                        "free of %.0f MiB)\n", 2.0 * (double)bytes / (1 << 20), (double)fr / (1 << 20), (double)tot / (1 << 20));
        exit(3);
    }
    cx_dev_upload(d, pt->data, bytes);
    if (g) cx_dev_zero(g, bytes);
    free(pt->grad);
    pt->host = pt->data;
    pt->data = d;
    pt->grad = g;
    pt->device = DEV_CUDA;
}

void params_to_device(ParamTable *pt) { to_device(pt, 1); }
void params_to_device_values(ParamTable *pt) { to_device(pt, 0); }

void params_sync_host(const ParamTable *pt) {
    if (pt->device == DEV_CUDA) cx_dev_download(pt->host, pt->data, (size_t)pt->numel * dtype_size(pt->dtype));
}

void params_sync_device(ParamTable *pt) {
    if (pt->device == DEV_CUDA) cx_dev_upload(pt->data, pt->host, (size_t)pt->numel * dtype_size(pt->dtype));
}

int64_t params_counter(const ParamTable *pt, int i) {
    CX_ASSERT(pt->p[i].flags & PF_COUNTER, "params_counter: %s is not a counter", pt->p[i].name);
    return pt->counter[i];
}

void params_counter_add(ParamTable *pt, int i, int64_t d) {
    CX_ASSERT(pt->p[i].flags & PF_COUNTER, "params_counter_add: %s is not a counter", pt->p[i].name);
    pt->counter[i] += d;
}

static Tensor entry_tensor(const ParamTable *pt, int i, void *base, cx_device dev) {
    const ParamInfo *e = &pt->p[i];
    Tensor t = tensor_view((char *)base + (size_t)e->offset * dtype_size(pt->dtype), pt->dtype, e->ndim, e->shape);
    t.device = dev;
    return t;
}

Tensor params_value(const ParamTable *pt, int i) { return entry_tensor(pt, i, pt->data, pt->device); }
Tensor params_grad(const ParamTable *pt, int i) { return entry_tensor(pt, i, pt->grad, pt->device); }
Tensor params_host_value(const ParamTable *pt, int i) {
    return entry_tensor(pt, i, pt->device == DEV_CUDA ? pt->host : pt->data, DEV_CPU);
}

int params_find(const ParamTable *pt, const char *name) {
    for (int i = 0; i < pt->n; i++)
        if (!strcmp(pt->p[i].name, name)) return i;
    return -1;
}

int64_t params_count(const ParamTable *pt, unsigned exclude) {
    int64_t s = 0;
    for (int i = 0; i < pt->n; i++)
        if (!(pt->p[i].flags & exclude)) s += pt->p[i].numel;
    return s;
}

void params_zero_grad(ParamTable *pt) {
    size_t bytes = (size_t)pt->numel * dtype_size(pt->dtype);
    if (pt->device == DEV_CUDA) cx_dev_zero(pt->grad, bytes);
    else memset(pt->grad, 0, bytes);
}

void params_copy_values(ParamTable *dst, const ParamTable *src) {
    CX_ASSERT(dst->n == src->n && dst->numel == src->numel, "params_copy_values: different layouts");
    CX_ASSERT(dst->device == DEV_CPU && src->device == DEV_CPU, "params_copy_values: host tables only");
    Tensor d = tensor_view(dst->data, dst->dtype, 1, &dst->numel);
    Tensor s = tensor_view(src->data, src->dtype, 1, &src->numel);
    tensor_copy(&d, &s);
    memcpy(dst->counter, src->counter, sizeof *dst->counter * (size_t)src->n);
}

static int starts_with(const char *s, const char *p) { return p && !strncmp(s, p, strlen(p)); }

static char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    Tensor t = tensor_view(NULL, DT_F32, ndim, shape);
    return tensor_shape_str(&t, buf, n);
}

cx_status params_load(ParamTable *pt, const StFile *f, const ParamLoadOpts *o) {
    const char *fp = o->file_prefix ? o->file_prefix : "";
    const char *bp = o->buffer_prefix ? o->buffer_prefix : fp;
    const char *tp = o->table_prefix ? o->table_prefix : "";
    char *found = cx_calloc((size_t)pt->n + 1, 1);
    cx_status st = CX_OK;
    params_sync_host(pt);   // a partial load keeps the entries it does not name
    for (int k = 0; k < f->n && !st; k++) {
        const StEntry *e = &f->entries[k];
        const char *key = NULL;
        int is_buf = 0;
        // Buffer keys first: with equal prefixes a key is looked up either way below.
        if (strcmp(bp, fp) && starts_with(e->name, bp)) { key = e->name + strlen(bp); is_buf = 1; }
        else if (starts_with(e->name, fp)) key = e->name + strlen(fp);
        if (!key) continue;
        int skip = 0;
        for (const char *const *ig = o->ignore; ig && *ig && !skip; ig++) skip = starts_with(key, *ig);
        if (skip) continue;
        char tk[512], full[640];
        if (o->rename) o->rename(key, tk, sizeof tk);
        else snprintf(tk, sizeof tk, "%s", key);
        snprintf(full, sizeof full, "%s%s", tp, tk);
        int i = params_find(pt, full);
        if (i < 0 || (is_buf && !(pt->p[i].flags & PF_BUFFER))) {
            st = CX_FAIL(CX_ESHAPE, "%s: unexpected key '%s' (no such %s in this model: a checkpoint of "
                         "another backbone variant, dense/sparse model or number of experts?)", f->path, e->name, is_buf ? "buffer" : "parameter");
            break;
        }
        const ParamInfo *pi = &pt->p[i];
        int same = e->ndim == pi->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == pi->shape[d];
        if (!same) {
            char a[96], b[96];
            st = CX_FAIL(CX_ESHAPE, "%s: key '%s' has shape %s in the file but %s in the model", f->path, e->name,
                         shape_str(e->ndim, e->shape, a, sizeof a), shape_str(pi->ndim, pi->shape, b, sizeof b));
            break;
        }
        Tensor dst = params_host_value(pt, i);
        st = st_entry_read(f, e, &dst);
        int64_t bad = st ? -1 : tensor_first_nonfinite(&dst);
        if (bad >= 0)
            st = CX_FAIL(CX_ENUMERIC, "%s: tensor '%s' holds a non-finite value (%g at index %lld): the file is damaged "
                         "or was saved from a run that diverged; use an earlier checkpoint", f->path, e->name,
                         tensor_get(&dst, bad), (long long)bad);
        // Statistics that cannot be: a BatchNorm variance below zero (its square root is NaN,
        // every mask of the model black).
        size_t nl = strlen(pi->name);
        if (!st && nl > 11 && !strcmp(pi->name + nl - 11, "running_var"))
            for (int64_t k = 0, nv = tensor_numel(&dst); k < nv && !st; k++)
                if (tensor_get(&dst, k) < 0)
                    st = CX_FAIL(CX_EFORMAT, "%s: tensor '%s' holds a negative variance (%g at index %lld): BatchNorm "
                                 "statistics cannot be negative; the file is damaged or was edited; use an earlier "
                                 "checkpoint", f->path, e->name, tensor_get(&dst, k), (long long)k);
        if (!st && (pi->flags & PF_COUNTER)) {   // the count lives on the host; its value slot stays zero
            pt->counter[i] = (int64_t)(tensor_get(&dst, 0) + 0.5);
            tensor_set(&dst, 0, 0);
        }
        found[i] = 1;
    }
    for (int i = 0; i < pt->n && !st && !o->allow_missing; i++) {
        if (found[i] || !starts_with(pt->p[i].name, tp)) continue;
        char a[96];
        st = CX_FAIL(CX_ESHAPE, "%s: missing key '%s%s' (shape %s) — is this a checkpoint of the same model "
                     "(backbone variant, dense/sparse, number of experts)?", f->path,
                     pt->p[i].flags & PF_BUFFER ? bp : fp, pt->p[i].name + strlen(tp),
                     shape_str(pt->p[i].ndim, pt->p[i].shape, a, sizeof a));
    }
    free(found);
    if (!st) params_sync_device(pt);
    return st;
}

void params_save(const ParamTable *pt, StWriter *w, const char *table_prefix, Arena *tmp) {
    params_sync_host(pt);
    for (int i = 0; i < pt->n; i++) {
        const ParamInfo *e = &pt->p[i];
        if (table_prefix && !starts_with(e->name, table_prefix)) continue;
        Tensor v = params_host_value(pt, i);
        if (e->flags & PF_COUNTER) {
            Tensor c = tensor_new(tmp, DT_I64, 0, NULL);
            tensor_i64(&c)[0] = pt->counter[i];
            st_writer_add(w, e->name, &c);
        } else if (pt->dtype != DT_F32) {
            Tensor c = tensor_new(tmp, DT_F32, e->ndim, e->shape);
            tensor_copy(&c, &v);
            st_writer_add(w, e->name, &c);
        } else {
            st_writer_add(w, e->name, &v);
        }
    }
}

int params_first_nonfinite(const ParamTable *pt, int64_t *index) {
    for (int i = 0; i < pt->n; i++) {
        Tensor v = params_host_value(pt, i);   // a GPU table: its host copy (params_sync_host first)
        int64_t bad = tensor_first_nonfinite(&v);
        if (bad >= 0) {
            if (index) *index = bad;
            return i;
        }
    }
    return -1;
}

cx_status params_check_finite(const ParamTable *pt, const char *what) {
    int64_t at = 0;
    int i = params_first_nonfinite(pt, &at);
    if (i < 0) return CX_OK;
    Tensor v = params_host_value(pt, i);
    return CX_FAIL(CX_ENUMERIC, "%s: parameter '%s' is not finite (%g at index %lld)", what, pt->p[i].name,
                   tensor_get(&v, at), (long long)at);
}
