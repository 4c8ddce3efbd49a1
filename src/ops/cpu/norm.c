// norm.c — fast float32 BatchNorm2d and LayerNorm on NHWC.
// reference: torch.nn.functional.batch_norm, torch.nn.functional.layer_norm.
// BatchNorm reduces over rows (N·H·W) for each channel: threads take blocks of
// rows and keep per-channel double partials (deterministic for a fixed thread
// count), then one pass applies the affine map. LayerNorm rows are independent
// and contiguous: one thread per block of rows, two passes per row.
// L2 normalisation (XCA's q and k over tokens) runs down the columns of
// (L, inner) planes: threads own slices of columns and walk the rows.
#include "cpu.h"
#include <math.h>
#include <string.h>

#define PAR_MIN 32768

// part (nt, 2, C): per-thread Σ a and Σ b over the rows of x/dy, with
//   mode 0: a = x - shift, b = (x - shift)²      (statistics, shift = mean or 0)
//   mode 1: a = dy,        b = dy·(x - mean)·invstd
//   mode 2: mode 1 with dy read as dy·[y > 0] (BatchNorm then ReLU; y its output)
static void bn_partials(double *part, int nt, const float *x, const float *dy, const float *shift, const float *invstd,
                        int64_t M, int64_t C, int mode, const float *y) {
#pragma omp parallel num_threads(nt) if (M * C > PAR_MIN)
    {
        int t, T;
        cx_thread_team(&t, &T);
        double *pa = part + (int64_t)t * 2 * C, *pb = pa + C;
        int64_t lo = M * t / T, hi = M * (t + 1) / T;
        for (int64_t r = lo; r < hi; r++) {
            const float *xr = x + r * C;
            if (mode == 0) {
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    float d = xr[c] - shift[c];
                    pa[c] += d;
                    pb[c] += d * d;
                }
            } else if (mode == 1) {
                const float *g = dy + r * C;
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    pa[c] += g[c];
                    pb[c] += g[c] * (xr[c] - shift[c]) * invstd[c];
                }
            } else {
                const float *g = dy + r * C, *yr = y + r * C;
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    // dy where y > 0, else 0, as a bit mask: gcc 12 left the float select
                    // beside double accumulators scalar ("control flow in loop")
                    uint32_t gb;
                    memcpy(&gb, &g[c], sizeof gb);
                    gb &= -(uint32_t)(yr[c] > 0);
                    float gc;
                    memcpy(&gc, &gb, sizeof gc);
                    pa[c] += gc;
                    pb[c] += gc * (xr[c] - shift[c]) * invstd[c];
                }
            }
        }
    }
    for (int t = 1; t < nt; t++)
        for (int64_t c = 0; c < 2 * C; c++) part[c] += part[(int64_t)t * 2 * C + c];
}

static void bn_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                       const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                       int training, double momentum, double eps, int relu) {
    int64_t C = x->shape[x->ndim - 1], M = tensor_numel(x) / C;
    ArenaMark m = arena_mark(ctx->scratch);
    float *mean = arena_alloc(ctx->scratch, sizeof(float) * (size_t)C), *inv = arena_alloc(ctx->scratch, sizeof(float) * (size_t)C);
    float *scale = arena_alloc(ctx->scratch, sizeof(float) * (size_t)C), *shift = arena_alloc(ctx->scratch, sizeof(float) * (size_t)C);
    const float *xp = tensor_f32(x);
    if (training) {
        // Two passes: the mean, then squared deviations from it (no cancellation).
        int nt = cx_threads_get();
        double *part = arena_alloc(ctx->scratch, sizeof(double) * (size_t)(nt * 2 * C));   // (nt, 2, C)
        memset(mean, 0, sizeof(float) * (size_t)C);
        memset(part, 0, sizeof(double) * (size_t)(nt * 2 * C));
        bn_partials(part, nt, xp, NULL, mean, NULL, M, C, 0, NULL);
        for (int64_t c = 0; c < C; c++) mean[c] = (float)(part[c] / M);
        memset(part, 0, sizeof(double) * (size_t)(nt * 2 * C));
        bn_partials(part, nt, xp, NULL, mean, NULL, M, C, 0, NULL);
        for (int64_t c = 0; c < C; c++) {
            // part[c] = Σ(x - mean) corrects the float rounding of mean.
            double dm = part[c] / M, var = part[C + c] / M - dm * dm;
            double mu = mean[c] + dm;
            mean[c] = (float)mu;
            inv[c] = (float)(1 / sqrt(var + eps));
            if (running_mean) tensor_f32(running_mean)[c] = (float)((1 - momentum) * tensor_f32(running_mean)[c] + momentum * mu);
            if (running_var) {
                double unb = M > 1 ? var * M / (M - 1) : var;
                tensor_f32(running_var)[c] = (float)((1 - momentum) * tensor_f32(running_var)[c] + momentum * unb);
            }
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = tensor_f32(running_mean)[c];
            inv[c] = (float)(1 / sqrt((double)tensor_f32(running_var)[c] + eps));
        }
    }
    for (int64_t c = 0; c < C; c++) {
        float g = gamma ? tensor_f32(gamma)[c] : 1.0f, b = beta ? tensor_f32(beta)[c] : 0.0f;
        scale[c] = g * inv[c];
        shift[c] = b - mean[c] * scale[c];
        if (save_mean) tensor_f32(save_mean)[c] = mean[c];
        if (save_invstd) tensor_f32(save_invstd)[c] = inv[c];
    }
    float *yp = tensor_f32(y);
    if (relu) {
#pragma omp parallel for schedule(static) if (M * C > PAR_MIN)
        for (int64_t r = 0; r < M; r++) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                float v = xp[r * C + c] * scale[c] + shift[c];
                yp[r * C + c] = v > 0 ? v : 0.0f;
            }
        }
    } else {
#pragma omp parallel for schedule(static) if (M * C > PAR_MIN)
        for (int64_t r = 0; r < M; r++) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) yp[r * C + c] = xp[r * C + c] * scale[c] + shift[c];
        }
    }
    arena_release(ctx->scratch, m);
}

void cpu_batchnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                           const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                           int training, double momentum, double eps) {
    bn_forward(ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training, momentum, eps, 0);
}

// BatchNorm then ReLU (ops_list.h batchnorm_relu_forward): the affine pass writes max(0, ·).
void cpu_batchnorm_relu_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                                const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                                int training, double momentum, double eps) {
    bn_forward(ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training, momentum, eps, 1);
}

// yr: the output of BatchNorm then ReLU (dy read as dy·[yr > 0]), or NULL.
static void bn_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *yr,
                        const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd, const Tensor *gamma,
                        int training) {
    int64_t C = x->shape[x->ndim - 1], M = tensor_numel(x) / C;
    ArenaMark m = arena_mark(ctx->scratch);
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy), *mean = tensor_f32(save_mean), *inv = tensor_f32(save_invstd);
    const float *ym = yr ? tensor_f32(yr) : NULL;
    int nt = cx_threads_get();
    double *part = arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * 2 * C));   // (nt, 2, C): Σdy, Σdy·x̂
    bn_partials(part, nt, xp, dyp, mean, inv, M, C, ym ? 2 : 1, ym);
    if (dgamma) for (int64_t c = 0; c < C; c++) tensor_f32(dgamma)[c] += (float)part[C + c];
    if (dbeta) for (int64_t c = 0; c < C; c++) tensor_f32(dbeta)[c] += (float)part[c];
    if (dx) {
        // dx = g·invstd·(dy - [Σdy + x̂·Σdy·x̂]/M) in training, g·invstd·dy in evaluation.
        float *k = arena_alloc(ctx->scratch, sizeof(float) * (size_t)C * 3), *mdy = k + C, *mdx = k + 2 * C;
        for (int64_t c = 0; c < C; c++) {
            k[c] = (gamma ? tensor_f32(gamma)[c] : 1.0f) * inv[c];
            mdy[c] = training ? (float)(part[c] / M) : 0.0f;
            mdx[c] = training ? (float)(part[C + c] / M) * inv[c] : 0.0f;
        }
        float *dxp = tensor_f32(dx);
        const int wr = op_overwrites(ctx, dx);   // a first write (ops.h): 0 + v, dx unread
        if (ym) {
#pragma omp parallel for schedule(static) if (M * C > PAR_MIN)
            for (int64_t r = 0; r < M; r++) {
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    float g = ym[r * C + c] > 0 ? dyp[r * C + c] : 0.0f;
                    dxp[r * C + c] = (wr ? 0.0f : dxp[r * C + c]) + k[c] * (g - mdy[c] - (xp[r * C + c] - mean[c]) * mdx[c]);
                }
            }
        } else {
#pragma omp parallel for schedule(static) if (M * C > PAR_MIN)
            for (int64_t r = 0; r < M; r++) {
#pragma omp simd
                for (int64_t c = 0; c < C; c++)
                    dxp[r * C + c] = (wr ? 0.0f : dxp[r * C + c]) +
                                     k[c] * (dyp[r * C + c] - mdy[c] - (xp[r * C + c] - mean[c]) * mdx[c]);
            }
        }
    }
    arena_release(ctx->scratch, m);
}

void cpu_batchnorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *x,
                            const Tensor *save_mean, const Tensor *save_invstd, const Tensor *gamma, int training) {
    bn_backward(ctx, dx, dgamma, dbeta, dy, NULL, x, save_mean, save_invstd, gamma, training);
}

// The backward of BatchNorm then ReLU from the pair's output y (ops_list.h batchnorm_relu_backward).
void cpu_batchnorm_relu_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                                 const Tensor *y, const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                                 const Tensor *gamma, int training) {
    bn_backward(ctx, dx, dgamma, dbeta, dy, y, x, save_mean, save_invstd, gamma, training);
}

void cpu_layernorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x,
                           const Tensor *w, const Tensor *b, double eps) {
    int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    const float *xp = tensor_f32(x), *wp = w ? tensor_f32(w) : NULL, *bp = b ? tensor_f32(b) : NULL;
    float *yp = tensor_f32(y), *sm = save_mean ? tensor_f32(save_mean) : NULL, *sr = save_rstd ? tensor_f32(save_rstd) : NULL;
#pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = xp + r * C;
        float *yr = yp + r * C;
        float s = 0, ss = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < C; c++) s += xr[c];
        float mean = s / (float)C;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < C; c++) ss += (xr[c] - mean) * (xr[c] - mean);
        float rstd = 1.0f / sqrtf(ss / (float)C + (float)eps);
        if (wp && bp) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean) * rstd * wp[c] + bp[c];
        } else {
            for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean) * rstd * (wp ? wp[c] : 1.0f) + (bp ? bp[c] : 0.0f);
        }
        if (sm) sm[r] = mean;
        if (sr) sr[r] = rstd;
    }
}

void cpu_layernorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                            const Tensor *save_mean, const Tensor *save_rstd, const Tensor *w) {
    int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy), *wp = w ? tensor_f32(w) : NULL;
    const float *sm = tensor_f32(save_mean), *sr = tensor_f32(save_rstd);
    ArenaMark m = arena_mark(ctx->scratch);
    int nt = cx_threads_get();
    // Per-thread (dw, db) partials (nt, 2, C) in double; dx rows are independent.
    double *part = (dw || db) ? arena_calloc(ctx->scratch, sizeof(double) * (size_t)(nt * 2 * C)) : NULL;
    float *dxp = dx ? tensor_f32(dx) : NULL;
    const int wr = op_overwrites(ctx, dx);   // a first write (ops.h): 0 + v, dx unread
#pragma omp parallel num_threads(nt) if (R * C > PAR_MIN)
    {
        int t, T;
        cx_thread_team(&t, &T);
        double *pw = part ? part + (int64_t)t * 2 * C : NULL, *pb = pw ? pw + C : NULL;
        int64_t lo = R * t / T, hi = R * (t + 1) / T;
        for (int64_t r = lo; r < hi; r++) {
            const float *xr = xp + r * C, *g = dyp + r * C;
            float mean = sm[r], rstd = sr[r];
            if (pw) {
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    pw[c] += g[c] * (xr[c] - mean) * rstd;
                    pb[c] += g[c];
                }
            }
            if (!dxp) continue;
            float s1 = 0, s2 = 0;   // Σ dy·w, Σ dy·w·x̂
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t c = 0; c < C; c++) {
                float gw = g[c] * (wp ? wp[c] : 1.0f);
                s1 += gw;
                s2 += gw * (xr[c] - mean) * rstd;
            }
            s1 /= (float)C;
            s2 /= (float)C;
            float *d = dxp + r * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++)
                d[c] = (wr ? 0.0f : d[c]) + rstd * (g[c] * (wp ? wp[c] : 1.0f) - s1 - (xr[c] - mean) * rstd * s2);
        }
    }
    if (part) {   // the partials in thread order, then one add (one rounding: cpu_colsum_add)
        for (int t = 1; t < nt; t++)
            for (int64_t c = 0; c < 2 * C; c++) part[c] += part[(int64_t)t * 2 * C + c];
        for (int64_t c = 0; c < C; c++) {
            if (dw) tensor_f32(dw)[c] += (float)part[c];
            if (db) tensor_f32(db)[c] += (float)part[C + c];
        }
    }
    arena_release(ctx->scratch, m);
}

// x viewed as (outer, L, inner), normalised along L. The reference walks each
// column with stride inner, one cache line per element, on one thread; here a
// task takes L2_CB adjacent columns and reads the rows contiguously, with the
// column sums in double as in the reference.
#define L2_CB 64

void cpu_l2norm_forward(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L,
                        int64_t inner, double eps) {
    const float *xp = tensor_f32(x);
    float *yp = tensor_f32(y), *np = save_norm ? tensor_f32(save_norm) : NULL;   // np: (outer, inner)
    int64_t nb = (inner + L2_CB - 1) / L2_CB;
#pragma omp parallel for collapse(2) schedule(static) if (outer * L * inner > PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t cb = 0; cb < nb; cb++) {
            int64_t c0 = cb * L2_CB, n = inner - c0 < L2_CB ? inner - c0 : L2_CB;
            const float *xo = xp + o * L * inner + c0;
            float *yo = yp + o * L * inner + c0;
            double s[L2_CB] = { 0 }, inv[L2_CB];
            for (int64_t l = 0; l < L; l++) {
                const float *xr = xo + l * inner;
#pragma omp simd
                for (int64_t k = 0; k < n; k++) s[k] += (double)xr[k] * xr[k];
            }
            for (int64_t k = 0; k < n; k++) {
                double nrm = sqrt(s[k]);
                inv[k] = 1 / (nrm > eps ? nrm : eps);
                if (np) np[o * inner + c0 + k] = (float)nrm;
            }
            for (int64_t l = 0; l < L; l++) {
#pragma omp simd
                for (int64_t k = 0; k < n; k++) yo[l * inner + k] = (float)(xo[l * inner + k] * inv[k]);
            }
        }
}

// dx += dy/n − x·(Σ dy·x)/n³ with n the saved norm; below eps the clamp holds
// the denominator at eps and no gradient flows through the norm: dx += dy/eps.
void cpu_l2norm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm,
                         int64_t outer, int64_t L, int64_t inner, double eps) {
    const float *xp = tensor_f32(x), *dyp = tensor_f32(dy), *np = tensor_f32(save_norm);
    float *dxp = tensor_f32(dx);
    int64_t nb = (inner + L2_CB - 1) / L2_CB;
#pragma omp parallel for collapse(2) schedule(static) if (outer * L * inner > PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t cb = 0; cb < nb; cb++) {
            int64_t c0 = cb * L2_CB, n = inner - c0 < L2_CB ? inner - c0 : L2_CB, off = o * L * inner + c0;
            double s[L2_CB] = { 0 }, a[L2_CB], b[L2_CB];   // dx += dy·a − x·b
            for (int64_t l = 0; l < L; l++) {
                const float *xr = xp + off + l * inner, *gr = dyp + off + l * inner;
#pragma omp simd
                for (int64_t k = 0; k < n; k++) s[k] += (double)gr[k] * xr[k];
            }
            for (int64_t k = 0; k < n; k++) {
                double nrm = np[o * inner + c0 + k];
                a[k] = nrm < eps ? 1 / eps : 1 / nrm;
                b[k] = nrm < eps ? 0 : s[k] / (nrm * nrm * nrm);
            }
            for (int64_t l = 0; l < L; l++) {
                const float *xr = xp + off + l * inner, *gr = dyp + off + l * inner;
                float *dr = dxp + off + l * inner;
#pragma omp simd
                for (int64_t k = 0; k < n; k++) dr[k] += (float)(gr[k] * a[k] - xr[k] * b[k]);
            }
        }
}
