// eltwise.c — fast float32 element-wise, broadcast, resampling, pooling,
// channel-slicing, softmax and logits-loss kernels. All are memory-bound: each
// is one OpenMP-parallel pass with a vectorisable inner loop, and the target is
// a fraction of the machine's copy bandwidth (bench/bench_ops.c).
// reference: the PyTorch ops named in ops_list.h for each function.
#include "cpu.h"
#include "ops/ref/ref.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// Parallel only above this many elements: below it thread start-up costs more.
#define PAR_MIN 32768

// lhs += v, or with wr (a first write: op_overwrites, ops.h) lhs = 0 + v, its old
// contents unread: what adding v into a zero-filled buffer gives, bit for bit.
#define ACC(wr, lhs, v) ((lhs) = ((wr) ? 0.0f : (lhs)) + (v))

#define EW_LOOP(n, body) do { \
    int64_t n_ = (n); \
    _Pragma("omp parallel for simd schedule(static) if (n_ > PAR_MIN)") \
    for (int64_t i = 0; i < n_; i++) { body; } } while (0)

// Vectorisable float32 exp and normal CDF for GELU and sigmoid. libm's expf
// and erff are scalar calls, which held these ops to 10-40% of copy bandwidth;
// these are branch-free (selects only), so `omp simd` loops vectorise them.

// e^x, relative error < 1e-7 for x in [-87.3, 88.3]; saturates outside (to
// the smallest normal float below, e^88.37 above) and propagates NaN. Cephes'
// expf: x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n
// put into the exponent bits. n is rounded by adding 1.5·2^23, which leaves it
// in the low mantissa bits, so no float-to-int conversion (UB on NaN) is needed.
static inline float vexpf(float x) {
    x = x < -87.33654f ? -87.33654f : x > 88.3762626647949f ? 88.3762626647949f : x;
    float t = x * 1.44269504088896341f + 12582912.0f, n = t - 12582912.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 127u) << 23;   // the low 9 bits of t's pattern are n (mod 512); 2^n
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float r = x - n * 0.693359375f;   // ln2 in two parts: n·0.693359375 is exact
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return (p * r * r + r + 1.0f) * scale;
}

// Φ(x) = 0.5·(1 + erf(x/√2)) = 0.5·erfc(-x/√2), erfc by Numerical Recipes'
// Chebyshev fit (erfcc; fractional error < 1.2e-7). Going through erfc keeps
// Φ's relative accuracy in the negative tail, where 1 + erf cancels; measured
// against double precision: absolute error < 2.1e-7, relative < 6e-7 for
// x > -2 and < 4e-6 down to -6.
static inline float vnormcdf(float x) {
    float z = x * -0.70710678118654752f, az = fabsf(z);
    float t = 1.0f / (1.0f + 0.5f * az);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float erfc_az = t * vexpf(p - az * az);
    return 0.5f * (z >= 0 ? erfc_az : 2.0f - erfc_az);
}

void cpu_gelu_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
    EW_LOOP(tensor_numel(x), yp[i] = xp[i] * vnormcdf(xp[i]));
}

void cpu_gelu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x) {
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    const float k = (float)(M_2_SQRTPI * M_SQRT1_2 * 0.5);   // 1/sqrt(2π)
    const int wr = op_overwrites(ctx, dx);
    // d/dx x·Φ(x) = Φ(x) + x·φ(x)
    EW_LOOP(tensor_numel(x), float v = xp[i]; ACC(wr, dxp[i], dyp[i] * (vnormcdf(v) + v * k * vexpf(-0.5f * v * v))));
}

// gelu_backward and the bias gradient Σ t per channel, in per-thread double partials
// summed in thread order.
void cpu_gelu_bias_backward(OpCtx *ctx, Tensor *dx, Tensor *dbias, const Tensor *dy, const Tensor *x) {
    const int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy);
    float *dxp = dx ? tensor_f32(dx) : NULL;
    const float k = (float)(M_2_SQRTPI * M_SQRT1_2 * 0.5);
    const int wr = op_overwrites(ctx, dx);
    ArenaMark m = arena_mark(ctx->scratch);
    const int nt = cx_threads_get();
    double *part = dbias ? arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * C)) : NULL;   // (nt, C)
    float *row = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(nt * C));
#pragma omp parallel num_threads(nt) if (R * C > PAR_MIN)
    {
        int t, T;
        cx_thread_team(&t, &T);
        double *pp = part ? part + (int64_t)t * C : NULL;
        float *g = row + (int64_t)t * C;
        for (int64_t r = R * t / T; r < R * (t + 1) / T; r++) {
            const float *xr = xp + r * C, *d = dyp + r * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                float v = xr[c];
                g[c] = d[c] * (vnormcdf(v) + v * k * vexpf(-0.5f * v * v));
            }
            if (dxp) {
                float *o = dxp + r * C;
#pragma omp simd
                for (int64_t c = 0; c < C; c++) ACC(wr, o[c], g[c]);
            }
            if (pp)
                for (int64_t c = 0; c < C; c++) pp[c] += g[c];
        }
    }
    if (part) {
        float *db = tensor_f32(dbias);
        for (int t = 0; t < nt; t++)
            for (int64_t c = 0; c < C; c++) db[c] += (float)part[(int64_t)t * C + c];
    }
    arena_release(ctx->scratch, m);
}

void cpu_relu_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
    EW_LOOP(tensor_numel(x), yp[i] = xp[i] > 0 ? xp[i] : 0.0f);
}

void cpu_relu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y) {
    const float *yp = tensor_f32(y), *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    const int wr = op_overwrites(ctx, dx);
    EW_LOOP(tensor_numel(y), ACC(wr, dxp[i], yp[i] > 0 ? dyp[i] : 0.0f));
}

void cpu_sigmoid_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
    EW_LOOP(tensor_numel(x), yp[i] = 1.0f / (1.0f + vexpf(-xp[i])));
}

void cpu_sigmoid_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y) {
    const float *yp = tensor_f32(y), *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    const int wr = op_overwrites(ctx, dx);
    EW_LOOP(tensor_numel(y), ACC(wr, dxp[i], dyp[i] * yp[i] * (1.0f - yp[i])));
}

void cpu_softplus_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
    EW_LOOP(tensor_numel(x), yp[i] = xp[i] > 20.0f ? xp[i] : log1pf(expf(xp[i])));
}

void cpu_softplus_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x) {
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    const int wr = op_overwrites(ctx, dx);
    EW_LOOP(tensor_numel(x), ACC(wr, dxp[i], xp[i] > 20.0f ? dyp[i] : dyp[i] / (1.0f + vexpf(-xp[i]))));
}

void cpu_clamp_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
    const float l = (float)lo, h = (float)hi;
    EW_LOOP(tensor_numel(x), yp[i] = xp[i] < l ? l : xp[i] > h ? h : xp[i]);
}

void cpu_clamp_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi) {
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    const float l = (float)lo, h = (float)hi;
    const int wr = op_overwrites(ctx, dx);
    EW_LOOP(tensor_numel(x), ACC(wr, dxp[i], (xp[i] >= l && xp[i] <= h) ? dyp[i] : 0.0f));
}

void cpu_add_forward(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b) {
    const float *ap = tensor_f32(a), *bp = tensor_f32(b);
    float *yp = tensor_f32(y);
    EW_LOOP(tensor_numel(a), yp[i] = ap[i] + bp[i]);
}

void cpu_axpy(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
    const float al = (float)alpha;
    const int wr = op_overwrites(ctx, y);
    EW_LOOP(tensor_numel(x), ACC(wr, yp[i], al * xp[i]));
}

// Zeros (gradient buffers: about 500 a demo step) by memset, in one slice per thread;
// the plain loop of the reference ran at 5 GB/s on one thread.
void cpu_fill(OpCtx *ctx, Tensor *y, double v) {
    float *p = tensor_f32(y);
    const int64_t n = tensor_numel(y);
    if (v == 0) {
        #pragma omp parallel if (n > 4 * PAR_MIN)
        {
            int t, nt;
            cx_thread_team(&t, &nt);
            const int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
            memset(p + i0, 0, sizeof(float) * (size_t)(i1 - i0));
        }
        return;
    }
    const float f = (float)v;
    EW_LOOP(n, p[i] = f);
}

void cpu_scale_inplace(OpCtx *ctx, Tensor *y, double alpha) {
    float *yp = tensor_f32(y);
    const float al = (float)alpha;
    EW_LOOP(tensor_numel(y), yp[i] *= al);
}

// ---- broadcast multiply ------------------------------------------------------------------------
void cpu_mul_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s) {
    MulBcast b = mul_bcast_plan(x, s);
    const float *xp = tensor_f32(x), *sp = tensor_f32(s);
    float *yp = tensor_f32(y);
#pragma omp parallel for collapse(2) schedule(static) if (b.N * b.P * b.C > PAR_MIN)
    for (int64_t n = 0; n < b.N; n++)
        for (int64_t p = 0; p < b.P; p++) {
            int64_t o = (n * b.P + p) * b.C;
            const float *sr = sp + n * b.sn + p * b.sp;
            if (b.sc) {
#pragma omp simd
                for (int64_t c = 0; c < b.C; c++) yp[o + c] = xp[o + c] * sr[c];
            } else {
                float v = sr[0];
#pragma omp simd
                for (int64_t c = 0; c < b.C; c++) yp[o + c] = xp[o + c] * v;
            }
        }
}

void cpu_mul_backward(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s) {
    MulBcast b = mul_bcast_plan(x, s);
    const float *xp = tensor_f32(x), *sp = tensor_f32(s), *dyp = tensor_f32(dy);
    const int wx = op_overwrites(ctx, dx), ws = op_overwrites(ctx, ds);
    if (dx) {
        float *dxp = tensor_f32(dx);
#pragma omp parallel for collapse(2) schedule(static) if (b.N * b.P * b.C > PAR_MIN)
        for (int64_t n = 0; n < b.N; n++)
            for (int64_t p = 0; p < b.P; p++) {
                int64_t o = (n * b.P + p) * b.C;
                const float *sr = sp + n * b.sn + p * b.sp;
                if (b.sc) {
#pragma omp simd
                    for (int64_t c = 0; c < b.C; c++) ACC(wx, dxp[o + c], dyp[o + c] * sr[c]);
                } else {
                    float v = sr[0];
#pragma omp simd
                    for (int64_t c = 0; c < b.C; c++) ACC(wx, dxp[o + c], dyp[o + c] * v);
                }
            }
    }
    if (!ds) return;
    float *dsp = tensor_f32(ds);
    if (b.sp == 0) {
        // s is (C) or (N, C): sum dy·x over the P pixels of each image, in per-thread partials.
        ArenaMark m = arena_mark(ctx->scratch);
        int nt = cx_threads_get();
        int64_t NS = b.sn ? b.N : 1;   // distinct rows of s
        double *part = arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * NS * b.C));   // (nt, NS, C)
#pragma omp parallel num_threads(nt) if (b.N * b.P * b.C > PAR_MIN)
        {
            int t, T;
            cx_thread_team(&t, &T);
            int64_t rows = b.N * b.P, lo = rows * t / T, hi = rows * (t + 1) / T;
            for (int64_t q = lo; q < hi; q++) {
                double *pp = part + ((int64_t)t * NS + (b.sn ? q / b.P : 0)) * b.C;
                const float *d = dyp + q * b.C, *xr = xp + q * b.C;
#pragma omp simd
                for (int64_t c = 0; c < b.C; c++) pp[c] += d[c] * xr[c];
            }
        }
        for (int t = 1; t < nt; t++)   // the partials in thread order, then one add (cpu_colsum_add)
            for (int64_t j = 0; j < NS * b.C; j++) part[j] += part[(int64_t)t * NS * b.C + j];
        for (int64_t j = 0; j < NS * b.C; j++) ACC(ws, dsp[j], (float)part[j]);
        arena_release(ctx->scratch, m);
    } else if (b.sc == 0 && b.sn == 0) {
        // s is (1, H, W, 1): per pixel, summed over the images (threads own pixels).
#pragma omp parallel for schedule(static) if (b.N * b.P * b.C > PAR_MIN)
        for (int64_t p = 0; p < b.P; p++) {
            double acc = 0;
            for (int64_t n = 0; n < b.N; n++)
                for (int64_t c = 0; c < b.C; c++) acc += (double)dyp[(n * b.P + p) * b.C + c] * xp[(n * b.P + p) * b.C + c];
            ACC(ws, dsp[p], (float)acc);
        }
    } else if (b.sc == 0) {
        // s is (N, H, W, 1): one dot product over channels per pixel.
#pragma omp parallel for schedule(static) if (b.N * b.P * b.C > PAR_MIN)
        for (int64_t q = 0; q < b.N * b.P; q++) {
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t c = 0; c < b.C; c++) acc += dyp[q * b.C + c] * xp[q * b.C + c];
            ACC(ws, dsp[q], acc);
        }
    } else {
        EW_LOOP(b.N * b.P * b.C, ACC(ws, dsp[i], dyp[i] * xp[i]));
    }
}

// ---- the layer-scaled residual (EdgeNeXt block tails) ---------------------------------------------
// y = x + γ ⊙ z in one pass (the multiply-add may contract to an FMA: within rounding of
// the reference pair).
void cpu_residual_scale_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *z, const Tensor *gamma) {
    const int64_t C = tensor_numel(gamma), R = tensor_numel(z) / C;
    const float *xp = tensor_f32(x), *zp = tensor_f32(z), *gp = tensor_f32(gamma);
    float *yp = tensor_f32(y);
#pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) yp[r * C + c] = xp[r * C + c] + zp[r * C + c] * gp[c];
    }
}

// dx += dy, dz += γ·dy, dγ += Σ dy·z: one pass over dy and z, dγ in per-thread double
// partials summed in thread order (as cpu_mul_backward's per-channel scale).
void cpu_residual_scale_backward(OpCtx *ctx, Tensor *dx, Tensor *dz, Tensor *dgamma, const Tensor *dy, const Tensor *z,
                                 const Tensor *gamma) {
    const int64_t C = tensor_numel(gamma), R = tensor_numel(dy) / C;
    const float *zp = tensor_f32(z), *gp = tensor_f32(gamma), *dyp = tensor_f32(dy);
    float *dxp = dx ? tensor_f32(dx) : NULL, *dzp = dz ? tensor_f32(dz) : NULL;
    const int wx = op_overwrites(ctx, dx), wz = op_overwrites(ctx, dz);
    ArenaMark m = arena_mark(ctx->scratch);
    const int nt = cx_threads_get();
    double *part = dgamma ? arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * C)) : NULL;   // (nt, C)
#pragma omp parallel num_threads(nt) if (R * C > PAR_MIN)
    {
        int t, T;
        cx_thread_team(&t, &T);
        double *pp = part ? part + (int64_t)t * C : NULL;
        for (int64_t r = R * t / T; r < R * (t + 1) / T; r++) {
            const float *d = dyp + r * C, *zr = zp + r * C;
            if (dzp) {
                float *o = dzp + r * C;
#pragma omp simd
                for (int64_t c = 0; c < C; c++) ACC(wz, o[c], d[c] * gp[c]);
            }
            if (dxp) {
                float *o = dxp + r * C;
#pragma omp simd
                for (int64_t c = 0; c < C; c++) ACC(wx, o[c], d[c]);
            }
            if (pp) {
#pragma omp simd
                for (int64_t c = 0; c < C; c++) pp[c] += d[c] * zr[c];
            }
        }
    }
    if (part) {
        float *dg = tensor_f32(dgamma);
        for (int t = 0; t < nt; t++)
            for (int64_t c = 0; c < C; c++) dg[c] += (float)part[(int64_t)t * C + c];
    }
    arena_release(ctx->scratch, m);
}

// ---- resampling and pooling -----------------------------------------------------------------------
// reference: F.interpolate(mode='bilinear', align_corners=False); index
// arithmetic in float as aten does for float tensors (see ref_tmpl.h).
typedef struct { int64_t i0, i1; float l0, l1; } Lerp;

static void resize_lerps(Lerp *L, int64_t in, int64_t out, double scale) {
    float sc = scale > 0 ? (float)(1.0 / scale) : (float)in / (float)out;
    for (int64_t d = 0; d < out; d++) {
        float src = sc * ((float)d + 0.5f) - 0.5f;
        if (src < 0) src = 0;
        int64_t i0 = (int64_t)src;
        if (i0 > in - 1) i0 = in - 1;
        float l1 = src - (float)i0;
        if (l1 > 1) l1 = 1;
        L[d] = (Lerp){ i0, i0 + (i0 < in - 1 ? 1 : 0), 1 - l1, l1 };
    }
}

void cpu_resize_bilinear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w) {
    int64_t N = T_N(x), H = T_H(x), W = T_W(x), C = T_C(x), Ho = T_H(y), Wo = T_W(y);
    CX_ASSERT(T_N(y) == N && T_C(y) == C, "resize_bilinear: N or C differ");
    ArenaMark m = arena_mark(ctx->scratch);
    Lerp *lh = arena_alloc(ctx->scratch, sizeof(Lerp) * (size_t)Ho), *lw = arena_alloc(ctx->scratch, sizeof(Lerp) * (size_t)Wo);
    resize_lerps(lh, H, Ho, scale_h);
    resize_lerps(lw, W, Wo, scale_w);
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
#pragma omp parallel for collapse(2) schedule(static) if (N * Ho * Wo * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            const Lerp h = lh[oh];
            const float *r0 = xp + (n * H + h.i0) * W * C, *r1 = xp + (n * H + h.i1) * W * C;
            for (int64_t ow = 0; ow < Wo; ow++) {
                const Lerp w = lw[ow];
                float *yr = yp + ((n * Ho + oh) * Wo + ow) * C;
                const float *a = r0 + w.i0 * C, *b = r0 + w.i1 * C, *c = r1 + w.i0 * C, *d = r1 + w.i1 * C;
#pragma omp simd
                for (int64_t k = 0; k < C; k++) yr[k] = h.l0 * (w.l0 * a[k] + w.l1 * b[k]) + h.l1 * (w.l0 * c[k] + w.l1 * d[k]);
            }
        }
    arena_release(ctx->scratch, m);
}

void cpu_resize_bilinear_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w) {
    int64_t N = T_N(dx), H = T_H(dx), W = T_W(dx), C = T_C(dx), Ho = T_H(dy), Wo = T_W(dy), WC = W * C;
    ArenaMark m = arena_mark(ctx->scratch);
    Lerp *lh = arena_alloc(ctx->scratch, sizeof(Lerp) * (size_t)Ho), *lw = arena_alloc(ctx->scratch, sizeof(Lerp) * (size_t)Wo);
    resize_lerps(lh, H, Ho, scale_h);
    resize_lerps(lw, W, Wo, scale_w);
    const float *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    op_zero_first(ctx, dx);   // a first write (ops.h): the scatter below adds
    // The interpolation is separable, so the scatter is too: first along W into
    // t (N, Ho, W, C), a thread owning whole rows; then along H, dx rows += l·t
    // rows, a thread owning a slice of every row. Both inner loops run over
    // contiguous channels and vectorise (the one-pass 2-D scatter did not: its
    // four targets may coincide at the borders).
    float *t = arena_alloc(ctx->scratch, sizeof(float) * (size_t)(N * Ho * WC));
#pragma omp parallel for collapse(2) schedule(static) if (N * Ho * Wo * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            float *tr = t + (n * Ho + oh) * WC;
            const float *d = dyp + (n * Ho + oh) * Wo * C;
            memset(tr, 0, sizeof(float) * (size_t)WC);
            for (int64_t ow = 0; ow < Wo; ow++) {
                const Lerp w = lw[ow];
                const float *dr = d + ow * C;
                float *a = tr + w.i0 * C, *b = tr + w.i1 * C;
#pragma omp simd
                for (int64_t k = 0; k < C; k++) a[k] += w.l0 * dr[k];
#pragma omp simd
                for (int64_t k = 0; k < C; k++) b[k] += w.l1 * dr[k];
            }
        }
    int64_t SB = 2048, ns = (WC + SB - 1) / SB;   // floats per column slice
#pragma omp parallel for collapse(2) schedule(static) if (N * Ho * WC > PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t sl = 0; sl < ns; sl++) {
            int64_t c0 = sl * SB, c1 = c0 + SB < WC ? c0 + SB : WC;
            for (int64_t oh = 0; oh < Ho; oh++) {
                const Lerp h = lh[oh];
                const float *tr = t + (n * Ho + oh) * WC;
                float *r0 = dxp + (n * H + h.i0) * WC, *r1 = dxp + (n * H + h.i1) * WC;
#pragma omp simd
                for (int64_t k = c0; k < c1; k++) r0[k] += h.l0 * tr[k];
#pragma omp simd
                for (int64_t k = c0; k < c1; k++) r1[k] += h.l1 * tr[k];
            }
        }
    arena_release(ctx->scratch, m);
}

void cpu_avgpool_global_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    int64_t N = T_N(x), HW = T_H(x) * T_W(x), C = T_C(x);
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t c = 0; c < C; c++) yp[n * C + c] = 0;
        cpu_colsum_add(ctx, yp + n * C, xp + n * HW * C, HW, C, C);
        for (int64_t c = 0; c < C; c++) yp[n * C + c] /= (float)HW;
    }
}

void cpu_avgpool_global_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy) {
    int64_t N = T_N(dx), HW = T_H(dx) * T_W(dx), C = T_C(dx);
    const float *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    const float inv = 1.0f / (float)HW;
    const int wr = op_overwrites(ctx, dx);
#pragma omp parallel for collapse(2) schedule(static) if (N * HW * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < HW; p++) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) ACC(wr, dxp[(n * HW + p) * C + c], dyp[n * C + c] * inv);
        }
}

void cpu_channels_copy(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate) {
    int64_t Cd = dst->shape[dst->ndim - 1], Cs = src->shape[src->ndim - 1], R = tensor_numel(src) / Cs;
    CX_ASSERT(tensor_numel(dst) / Cd == R && dc0 + nc <= Cd && sc0 + nc <= Cs, "channels_copy: ranges");
    const float *sp = tensor_f32(src) + sc0;
    float *dp = tensor_f32(dst) + dc0;
#pragma omp parallel for schedule(static) if (R * nc > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        if (accumulate) {
#pragma omp simd
            for (int c = 0; c < nc; c++) dp[r * Cd + c] += sp[r * Cs + c];
        } else {
            memcpy(dp + r * Cd, sp + r * Cs, sizeof(float) * (size_t)nc);
        }
    }
}

// ---- softmax ------------------------------------------------------------------------------------------
void cpu_softmax_forward(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y);
#pragma omp parallel for collapse(2) schedule(static) if (outer * L * inner > PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            const float *xr = xp + o * L * inner + in;
            float *yr = yp + o * L * inner + in;
            float mx = -INFINITY;
            double s = 0;
            for (int64_t l = 0; l < L; l++) mx = xr[l * inner] > mx ? xr[l * inner] : mx;
            for (int64_t l = 0; l < L; l++) s += (yr[l * inner] = expf(xr[l * inner] - mx));
            float inv = (float)(1.0 / s);
            for (int64_t l = 0; l < L; l++) yr[l * inner] *= inv;
        }
}

void cpu_softmax_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L,
                          int64_t inner) {
    const float *yp = tensor_f32(y), *dyp = tensor_f32(dy);
    float *dxp = tensor_f32(dx);
    const int wr = op_overwrites(ctx, dx);
#pragma omp parallel for collapse(2) schedule(static) if (outer * L * inner > PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t b = o * L * inner + in;
            double s = 0;
            for (int64_t l = 0; l < L; l++) s += dyp[b + l * inner] * yp[b + l * inner];
            for (int64_t l = 0; l < L; l++) ACC(wr, dxp[b + l * inner], yp[b + l * inner] * (dyp[b + l * inner] - (float)s));
        }
}
