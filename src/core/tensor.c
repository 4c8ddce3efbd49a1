// tensor.c — see tensor.h.
#include "tensor.h"
#include "arena.h"
#include "device.h"
#include "error.h"
#include <stdio.h>
#include <string.h>

size_t dtype_size(cx_dtype dt) {
    switch (dt) {
    case DT_F32: case DT_I32: return 4;
    case DT_F64: case DT_I64: return 8;
    case DT_BF16: case DT_F16: return 2;
    case DT_U8: case DT_BOOL: return 1;
    }
    return 0;
}

const char *dtype_name(cx_dtype dt) {
    static const char *names[] = { "F32", "F64", "I32", "I64", "U8", "BF16", "F16", "BOOL" };
    return (unsigned)dt < sizeof names / sizeof *names ? names[dt] : "?";
}

Tensor tensor_view(void *data, cx_dtype dt, int ndim, const int64_t *shape) {
    CX_ASSERT(ndim >= 0 && ndim <= CX_MAXDIM, "ndim %d", ndim);
    Tensor t = { .data = data, .dtype = dt, .device = DEV_CPU, .ndim = ndim };
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

Tensor tensor_view4(void *data, cx_dtype dt, int64_t n, int64_t h, int64_t w, int64_t c) {
    int64_t s[4] = { n, h, w, c };
    return tensor_view(data, dt, 4, s);
}

int64_t tensor_numel(const Tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tensor_nbytes(const Tensor *t) { return (size_t)tensor_numel(t) * dtype_size(t->dtype); }

Tensor tensor_new(Arena *a, cx_dtype dt, int ndim, const int64_t *shape) {
    Tensor t = tensor_view(NULL, dt, ndim, shape);
    t.data = arena_alloc(a, tensor_nbytes(&t));
    t.device = a->device;
    return t;
}

Tensor tensor_new4(Arena *a, cx_dtype dt, int64_t n, int64_t h, int64_t w, int64_t c) {
    int64_t s[4] = { n, h, w, c };
    return tensor_new(a, dt, 4, s);
}

Tensor tensor_zeros(Arena *a, cx_dtype dt, int ndim, const int64_t *shape) {
    Tensor t = tensor_new(a, dt, ndim, shape);
    tensor_zero(&t);
    return t;
}

Tensor tensor_zeros4(Arena *a, cx_dtype dt, int64_t n, int64_t h, int64_t w, int64_t c) {
    int64_t s[4] = { n, h, w, c };
    return tensor_zeros(a, dt, 4, s);
}

Tensor tensor_like(Arena *a, const Tensor *t) { return tensor_new(a, t->dtype, t->ndim, t->shape); }
Tensor tensor_zeros_like(Arena *a, const Tensor *t) { return tensor_zeros(a, t->dtype, t->ndim, t->shape); }

bool tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void tensor_require_host(const Tensor *t, const char *what) {
    CX_ASSERT(t->device == DEV_CPU, "%s: host access to a tensor in GPU memory (use an op, or tensor_download)", what);
}

void tensor_zero(Tensor *t) {
    tensor_require_host(t, "tensor_zero");
    memset(t->data, 0, tensor_nbytes(t));
}

double tensor_get(const Tensor *t, int64_t i) {
    tensor_require_host(t, "tensor_get");
    switch (t->dtype) {
    case DT_F32: return ((const float *)t->data)[i];
    case DT_F64: return ((const double *)t->data)[i];
    case DT_I32: return ((const int32_t *)t->data)[i];
    case DT_I64: return (double)((const int64_t *)t->data)[i];
    case DT_U8: case DT_BOOL: return ((const uint8_t *)t->data)[i];
    case DT_BF16: { uint32_t u = (uint32_t)((const uint16_t *)t->data)[i] << 16; float f; memcpy(&f, &u, 4); return f; }
    case DT_F16: break;
    }
    CX_ASSERT(0, "tensor_get: dtype %s not supported", dtype_name(t->dtype));
    return 0;
}

void tensor_set(Tensor *t, int64_t i, double v) {
    tensor_require_host(t, "tensor_set");
    switch (t->dtype) {
    case DT_F32: ((float *)t->data)[i] = (float)v; return;
    case DT_F64: ((double *)t->data)[i] = v; return;
    case DT_I32: ((int32_t *)t->data)[i] = (int32_t)v; return;
    case DT_I64: ((int64_t *)t->data)[i] = (int64_t)v; return;
    case DT_U8: case DT_BOOL: ((uint8_t *)t->data)[i] = (uint8_t)v; return;
    case DT_BF16: {   // round to nearest even, as the GPU's conversion does
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1);
        ((uint16_t *)t->data)[i] = (uint16_t)(u >> 16);
        return;
    }
    default: break;
    }
    CX_ASSERT(0, "tensor_set: dtype %s not supported", dtype_name(t->dtype));
}

void tensor_fill(Tensor *t, double v) {
    tensor_require_host(t, "tensor_fill");
    int64_t n = tensor_numel(t);
    if (t->dtype == DT_F32) { float *p = t->data; for (int64_t i = 0; i < n; i++) p[i] = (float)v; }
    else for (int64_t i = 0; i < n; i++) tensor_set(t, i, v);
}

void tensor_copy(Tensor *dst, const Tensor *src) {
    int64_t n = tensor_numel(src);
    CX_ASSERT(n == tensor_numel(dst), "tensor_copy: %lld vs %lld elements", (long long)n, (long long)tensor_numel(dst));
    tensor_require_host(dst, "tensor_copy");
    tensor_require_host(src, "tensor_copy");
    if (dst->dtype == src->dtype) { memmove(dst->data, src->data, tensor_nbytes(src)); return; }
    if (dst->dtype == DT_F64 && src->dtype == DT_F32) {
        double *d = dst->data; const float *s = src->data;
        for (int64_t i = 0; i < n; i++) d[i] = s[i];
    } else if (dst->dtype == DT_F32 && src->dtype == DT_F64) {
        float *d = dst->data; const double *s = src->data;
        for (int64_t i = 0; i < n; i++) d[i] = (float)s[i];
    } else {
        for (int64_t i = 0; i < n; i++) tensor_set(dst, i, tensor_get(src, i));
    }
}

char *tensor_shape_str(const Tensor *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

Tensor tensor_slice0(const Tensor *t, int64_t i0, int64_t n) {
    Tensor s = *t;
    int64_t row = t->ndim ? tensor_numel(t) / t->shape[0] : 1;
    CX_ASSERT(t->ndim >= 1 && i0 >= 0 && i0 + n <= t->shape[0], "slice0 [%lld, +%lld) of %lld",
              (long long)i0, (long long)n, (long long)(t->ndim ? t->shape[0] : 0));
    s.shape[0] = n;
    s.data = (char *)t->data + (size_t)(i0 * row) * dtype_size(t->dtype);
    return s;
}

Tensor tensor_reshape(const Tensor *t, int ndim, const int64_t *shape) {
    Tensor r = tensor_view(t->data, t->dtype, ndim, shape);
    r.device = t->device;
    CX_ASSERT(tensor_numel(&r) == tensor_numel(t), "tensor_reshape: %lld elements into %lld", (long long)tensor_numel(t),
              (long long)tensor_numel(&r));
    return r;
}

void tensor_upload(Tensor *dst_dev, const Tensor *src_host) {
    CX_ASSERT(dst_dev->device == DEV_CUDA && src_host->device == DEV_CPU, "tensor_upload: host -> device only");
    CX_ASSERT(dst_dev->dtype == src_host->dtype && tensor_numel(dst_dev) == tensor_numel(src_host),
              "tensor_upload: %s (%lld) -> %s (%lld)", dtype_name(src_host->dtype), (long long)tensor_numel(src_host),
              dtype_name(dst_dev->dtype), (long long)tensor_numel(dst_dev));
    cx_dev_upload(dst_dev->data, src_host->data, tensor_nbytes(src_host));
}

void tensor_download(Tensor *dst_host, const Tensor *src_dev) {
    CX_ASSERT(dst_host->device == DEV_CPU && src_dev->device == DEV_CUDA, "tensor_download: device -> host only");
    CX_ASSERT(dst_host->dtype == src_dev->dtype && tensor_numel(dst_host) == tensor_numel(src_dev),
              "tensor_download: %s (%lld) -> %s (%lld)", dtype_name(src_dev->dtype), (long long)tensor_numel(src_dev),
              dtype_name(dst_host->dtype), (long long)tensor_numel(dst_host));
    cx_dev_download(dst_host->data, src_dev->data, tensor_nbytes(src_dev));
}
