// optim.c — the optimizer's CPU kernels (ops_list.h: adamw_update, grad_norm_clip,
// ema_blend) over segments of a float32 or float64 parameter table, for the CPU
// and reference backends alike. Per-element arithmetic in double, as
// torch.optim.AdamW's single-tensor path does it on float64 tables; float32
// values are rounded once per update.
#include "cpu.h"
#include <math.h>

#define PAR_MIN 65536

// The update of one segment, in the table's dtype. Mirrors torch.optim.AdamW's
// single-tensor path: p *= 1 - lr·wd; m, v updated; p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps).
// A clipped gradient is rounded to the table's dtype first, as clip_grad_norm_
// scales the gradients in place before the step.
#define ADAMW_LOOP(G)                                                                                  \
    _Pragma("omp for simd schedule(static) nowait")                                                     \
    for (int64_t j = 0; j < n; j++) {                                                                  \
        double gj = (G);                                                                               \
        double pj = (double)p[j] * decay_mul;                                                          \
        double mj = beta1 * m[j] + (1 - beta1) * gj;                                                   \
        double vj = beta2 * v[j] + (1 - beta2) * gj * gj;                                              \
        m[j] = (float)mj;                                                                              \
        v[j] = (float)vj;                                                                              \
        p[j] = (__typeof__(*p))(pj - step_size * mj / (sqrt(vj) / sqrt_bc2 + eps));                    \
    }

// The segment's fields in locals and the clipping choice outside the loop: a branch-free
// body vectorises (the old loop, with the choice inside, ran scalar: 8 ns an element).
// One parallel region over all segments (most are smaller than one thread's share).
#define ADAMW_SEG(real)                                                                                \
    do {                                                                                               \
        real *p = (real *)param->data + sg->offset;                                                    \
        const real *g = (const real *)grad->data + sg->offset;                                         \
        float *m = tensor_f32(mt) + sg->offset, *v = tensor_f32(vt) + sg->offset;                      \
        const double decay_mul = sg->decay_mul, step_size = sg->step_size, sqrt_bc2 = sg->sqrt_bc2;    \
        const int64_t n = sg->numel;                                                                   \
        if (gs != 1.0) { ADAMW_LOOP((double)(real)((double)g[j] * gs)) }                               \
        else { ADAMW_LOOP((double)g[j]) }                                                              \
    } while (0)

void cpu_adamw_update(OpCtx *ctx, Tensor *param, Tensor *mt, Tensor *vt, const Tensor *grad, const Tensor *gscale,
                      const AdamSeg *seg, int nseg, double beta1, double beta2, double eps) {
    CX_ASSERT(param->dtype == grad->dtype && mt->dtype == DT_F32 && vt->dtype == DT_F32, "adamw_update: dtypes");
    const double gs = gscale ? tensor_get(gscale, 0) : 1.0;
    int64_t total = 0;
    for (int s = 0; s < nseg; s++) total += seg[s].numel;
    #pragma omp parallel if (total > PAR_MIN)
    for (int s = 0; s < nseg; s++) {
        const AdamSeg *sg = &seg[s];
        if (param->dtype == DT_F32) ADAMW_SEG(float);
        else ADAMW_SEG(double);
    }
}

void cpu_grad_norm_clip(OpCtx *ctx, Tensor *stats, const Tensor *x, const AdamSeg *seg, int nseg, double max_norm) {
    double ss = 0;
    if (x->dtype == DT_F32) {
        // One parallel region over all segments; each thread's share of every segment summed
        // into its own partial, the partials added in thread order (deterministic for a
        // given thread count).
        int64_t total = 0;
        for (int k = 0; k < nseg; k++) total += seg[k].numel;
        double part[256] = { 0 };
        #pragma omp parallel if (total > PAR_MIN)
        {
            int t, nt;
            cx_thread_team(&t, &nt);
            double s = 0;
            for (int k = 0; k < nseg; k++) {
                const float *p = tensor_f32(x) + seg[k].offset;
                const int64_t n = seg[k].numel, j0 = n * t / nt, j1 = n * (t + 1) / nt;
                #pragma omp simd reduction(+ : s)
                for (int64_t j = j0; j < j1; j++) s += (double)p[j] * p[j];
            }
            if (t < 255) part[t] = s;
            else {   // more than 255 threads: the last slot, shared
                #pragma omp atomic
                part[255] += s;
            }
        }
        for (int t = 0; t < 256; t++) ss += part[t];
    } else {
        for (int k = 0; k < nseg; k++) {
            const double *p = tensor_f64(x) + seg[k].offset;
            double s = 0;
            for (int64_t j = 0; j < seg[k].numel; j++) s += p[j] * p[j];
            ss += s;
        }
    }
    double norm = sqrt(ss);
    tensor_set(stats, 0, ss);
    tensor_set(stats, 1, norm);
    tensor_set(stats, 2, max_norm > 0 && isfinite(norm) && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0);
}

void cpu_ema_blend(OpCtx *ctx, Tensor *shadow, const Tensor *x, const EmaSeg *seg, int nseg) {
    CX_ASSERT(shadow->dtype == x->dtype, "ema_blend: dtypes");
    if (x->dtype == DT_F32) {   // one parallel region, the copy/blend choice outside each loop (vectorised)
        int64_t total = 0;
        for (int k = 0; k < nseg; k++) total += seg[k].numel;
        #pragma omp parallel if (total > PAR_MIN)
        for (int k = 0; k < nseg; k++) {
            const int64_t n = seg[k].numel;
            const double d = seg[k].decay;
            float *sh = tensor_f32(shadow) + seg[k].offset;
            const float *p = tensor_f32(x) + seg[k].offset;
            if (seg[k].copy) {
                #pragma omp for simd schedule(static) nowait
                for (int64_t j = 0; j < n; j++) sh[j] = p[j];
            } else {
                #pragma omp for simd schedule(static) nowait
                for (int64_t j = 0; j < n; j++) sh[j] = (float)(d * sh[j] + (1 - d) * p[j]);
            }
        }
        return;
    }
    for (int k = 0; k < nseg; k++) {
        int64_t n = seg[k].numel, o = seg[k].offset;
        double d = seg[k].decay;
        double *sh = tensor_f64(shadow) + o;
        const double *p = tensor_f64(x) + o;
        for (int64_t j = 0; j < n; j++) sh[j] = seg[k].copy ? p[j] : d * sh[j] + (1 - d) * p[j];
    }
}
