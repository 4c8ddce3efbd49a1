// finite.c — see finite.h.
#include "finite.h"
#include "error.h"
#include <math.h>

int64_t tensor_first_nonfinite(const Tensor *t) {
    int64_t n = tensor_numel(t);
    switch (t->dtype) {
    case DT_F32: {
        const float *x = t->data;
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[i])) return i;
        return -1;
    }
    case DT_F64: {
        const double *x = t->data;
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[i])) return i;
        return -1;
    }
    default:
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(tensor_get(t, i))) return i;
        return -1;
    }
}

double tensor_rel_err(const Tensor *a, const Tensor *b, double floor, int64_t *bad) {
    int64_t n = tensor_numel(b);
    CX_ASSERT(n == tensor_numel(a), "tensor_rel_err: %lld vs %lld elements", (long long)tensor_numel(a), (long long)n);
    if (bad) *bad = -1;
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = tensor_get(a, i), y = tensor_get(b, i);
        if (!isfinite(x) || !isfinite(y)) {   // checked before any max: nothing later can hide it
            if (bad) *bad = i;
            return NAN;
        }
        double d = fabs(x - y);
        if (d > md) md = d;
        if (fabs(y) > mb) mb = fabs(y);
    }
    double den = mb > floor ? mb : floor;
    return den > 0 ? md / den : md;
}

double tensor_rel_l2(const Tensor *a, const Tensor *b, double floor) {
    int64_t n = tensor_numel(b);
    CX_ASSERT(n == tensor_numel(a), "tensor_rel_l2: %lld vs %lld elements", (long long)tensor_numel(a), (long long)n);
    double d2 = 0, b2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = tensor_get(a, i), y = tensor_get(b, i);
        if (!isfinite(x) || !isfinite(y)) return NAN;
        d2 += (x - y) * (x - y);
        b2 += y * y;
    }
    double den = sqrt(b2) > floor ? sqrt(b2) : floor;
    return den > 0 ? sqrt(d2) / den : sqrt(d2);
}
