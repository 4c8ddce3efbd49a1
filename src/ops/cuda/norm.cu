// norm.cu — BatchNorm (with ReLU fused, ops_list.h batchnorm_relu_*) and LayerNorm on
// the GPU. Signatures and contracts are ops_list.h's; the semantics (eps placement,
// unbiased running variance, NaN rules) are those of the reference kernels in
// ops/ref/ref_tmpl.h.
// reference: torch.nn.BatchNorm2d, torch.nn.LayerNorm.
//
// Determinism: reduce.cuh's fixed trees (ColPlan per channel, AxisPlan per row), so a
// result is bit-identical run to run.
// Activations are F32 or BF16 (ldf/stf); statistics and parameters are read
// and written through their own dtypes too; arithmetic is float32, sums are
// accumulated in double (as the CPU kernels do: a β or γ gradient sums many
// terms that nearly cancel, and float32 partials lost ~1e-3 of it).
#include "ops/cuda/reduce.cuh"

// ---- the per-channel first pass (ColPlan) ---------------------------------------------------------
// What the first pass sums per channel c (x̂ = (x − mean)·invstd):
//   COL_SUM   Σ x                          BatchNorm mean
//   COL_DEV2  Σ (x − mean[c])²              BatchNorm variance (two-pass, as the reference)
//   COL_BN    Σ dy and Σ dy·x̂, stats per channel   BatchNorm backward (ym: of BatchNorm+ReLU,
//             dy counted where the pair's output ym > 0)
//   COL_LN    Σ dy and Σ dy·x̂, stats per row       LayerNorm's dw, db
enum { COL_SUM, COL_DEV2, COL_BN, COL_LN };

template <int MODE>
static __global__ void col_partial_kernel(double *p1, double *p2, const void *x, int xdt, const void *dy, int dydt,
                                          const void *mean, int mdt, const void *istd, int idt, int64_t M, int64_t C,
                                          int64_t rows, const void *ym = NULL, int ymdt = 0) {
    const bool two = MODE == COL_BN || MODE == COL_LN;
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < M ? r0 + rows : M;
    double s1 = 0, s2 = 0;   // double, as the CPU kernels: dβ, dγ sums cancel heavily
    if (c < C) {
        float mu = 0, is = 0;
        if (MODE == COL_DEV2 || MODE == COL_BN) mu = ldf(mean, mdt, c);
        if (MODE == COL_BN) is = ldf(istd, idt, c);
        for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            int64_t i = r * C + c;
            float v = ldf(x, xdt, i);
            if (MODE == COL_SUM) {
                s1 += v;
            } else if (MODE == COL_DEV2) {
                float d = v - mu;
                s1 += (double)d * d;
            } else {
                if (MODE == COL_LN) {   // LayerNorm's statistics belong to the row
                    mu = ldf(mean, mdt, r);
                    is = ldf(istd, idt, r);
                }
                float g = ldf(dy, dydt, i);
                if (MODE == COL_BN && ym && !(ldf(ym, ymdt, i) > 0)) g = 0;   // a ReLU after it: dy where y > 0
                s1 += g;
                s2 += (double)g * ((v - mu) * is);
            }
        }
    }
    s1 = lanes_reduce<false, double>(s1);
    if (two) s2 = lanes_reduce<false, double>(s2);
    if (threadIdx.y == 0 && c < C) {
        p1[blockIdx.y * C + c] = s1;
        if (two) p2[blockIdx.y * C + c] = s2;
    }
}

// ---- 16-byte vectors (VecW, vld, vst, vec_ok: common.cuh) -----------------------------------------
// col_partial_kernel's COL_SUM, COL_DEV2 and COL_BN with each thread on V consecutive
// channels (a vector column cv of CV = C / V).
template <int MODE, int DT>
static __global__ void col_partial_vec_kernel(double *p1, double *p2, const void *x, const void *dy, const void *mean,
                                              int mdt, const void *istd, int idt, int64_t M, int64_t C, int64_t rows,
                                              const void *ym = NULL) {
    constexpr int V = VecW<DT>::N;
    const bool two = MODE == COL_BN;
    const int64_t CV = C / V;
    int64_t cv = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < M ? r0 + rows : M;
    double s1[V], s2[V];
    float mu[V], is[V];
#pragma unroll
    for (int k = 0; k < V; k++) s1[k] = s2[k] = 0, mu[k] = is[k] = 0;
    if (cv < CV) {
#pragma unroll
        for (int k = 0; k < V; k++) {
            if (MODE == COL_DEV2 || MODE == COL_BN) mu[k] = ldf(mean, mdt, cv * V + k);
            if (MODE == COL_BN) is[k] = ldf(istd, idt, cv * V + k);
        }
        for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            float v[V], g[V];
            vld<DT>(v, x, r * CV + cv);
            if (MODE == COL_BN) vld<DT>(g, dy, r * CV + cv);
            if (MODE == COL_BN && ym) {
                float yv[V];
                vld<DT>(yv, ym, r * CV + cv);
#pragma unroll
                for (int k = 0; k < V; k++) if (!(yv[k] > 0)) g[k] = 0;
            }
#pragma unroll
            for (int k = 0; k < V; k++) {
                if (MODE == COL_SUM) {
                    s1[k] += v[k];
                } else if (MODE == COL_DEV2) {
                    float d = v[k] - mu[k];
                    s1[k] += (double)d * d;
                } else {
                    s1[k] += g[k];
                    s2[k] += (double)g[k] * ((v[k] - mu[k]) * is[k]);
                }
            }
        }
    }
#pragma unroll
    for (int k = 0; k < V; k++) {
        s1[k] = lanes_reduce<false, double>(s1[k]);
        if (two) s2[k] = lanes_reduce<false, double>(s2[k]);
    }
    if (threadIdx.y == 0 && cv < CV)
#pragma unroll
        for (int k = 0; k < V; k++) {
            p1[blockIdx.y * C + cv * V + k] = s1[k];
            if (two) p2[blockIdx.y * C + cv * V + k] = s2[k];
        }
}

// The vector kernels' plan: vector columns instead of channels; nchunk chunks as col_plan.
static ColPlan col_plan_vec(int64_t M, int64_t C, int V) {
    ColPlan p = col_plan(M, C / V);
    return p;
}

// ---- BatchNorm ---------------------------------------------------------------------------------
// reference: torch.nn.functional.batch_norm. x (M, C) with M = N·H·W rows.
static __global__ void bn_mean_kernel(float *mean, const double *part, int64_t nchunk, int64_t M, int64_t C) {
    int64_t c = WARP_ID();
    if (c >= C) return;   // whole warps leave together
    double s = chunks_sum(part, nchunk, C, c);
    if ((threadIdx.x & 31) == 0) mean[c] = (float)(s / (double)M);
}

// Finishes the training statistics: biased variance for normalising, the
// unbiased one for running_var (M − 1, or M when M = 1, as the reference).
static __global__ void bn_var_kernel(float *istd, void *sm, int smdt, void *si, int sidt, void *rm, int rmdt, void *rv,
                                     int rvdt, const double *part, const float *mean, int64_t nchunk, int64_t M,
                                     int64_t C, float eps, float mom, float keep) {
    int64_t c = WARP_ID();
    if (c >= C) return;
    double ss = chunks_sum(part, nchunk, C, c);
    if ((threadIdx.x & 31) != 0) return;
    float mu = mean[c], is = (float)(1.0 / sqrt(ss / (double)M + eps));
    istd[c] = is;
    if (sm) stf(sm, smdt, c, mu);
    if (si) stf(si, sidt, c, is);
    if (rm) stf(rm, rmdt, c, keep * ldf(rm, rmdt, c) + mom * mu);
    if (rv) {
        float unbiased = (float)(M > 1 ? ss / (double)(M - 1) : ss);
        stf(rv, rvdt, c, keep * ldf(rv, rvdt, c) + mom * unbiased);
    }
}

// Evaluation: the running statistics are the statistics.
static __global__ void bn_eval_stats_kernel(float *mean, float *istd, void *sm, int smdt, void *si, int sidt,
                                            const void *rm, int rmdt, const void *rv, int rvdt, int64_t C, float eps) {
    CUDA_LOOP(c, C) {
        float mu = ldf(rm, rmdt, c), is = 1.0f / sqrtf(ldf(rv, rvdt, c) + eps);
        mean[c] = mu;
        istd[c] = is;
        if (sm) stf(sm, smdt, c, mu);
        if (si) stf(si, sidt, c, is);
    }
}

// y = (x − mean)·invstd·γ + β, then max(0, ·) when relu; y may alias x.
static __global__ void bn_normalize_kernel(void *y, int ydt, const void *x, int xdt, const float *mean,
                                           const float *istd, const void *gamma, int gdt, const void *beta, int bdt,
                                           int64_t n, int64_t C, int relu) {
    CUDA_LOOP(i, n) {
        int64_t c = i % C;
        float v = (ldf(x, xdt, i) - mean[c]) * istd[c];
        if (gamma) v *= ldf(gamma, gdt, c);
        if (beta) v += ldf(beta, bdt, c);
        if (relu) v = v > 0 ? v : 0.0f;
        stf(y, ydt, i, v);
    }
}

// bn_normalize_kernel on 16-byte vectors (x and y of dtype DT; y may alias x).
template <int DT>
static __global__ void bn_normalize_vec_kernel(void *y, const void *x, const float *mean, const float *istd,
                                               const void *gamma, int gdt, const void *beta, int bdt, int nvec,
                                               int CV, int relu) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        const int c0 = (v % CV) * V;
        float e[V];
        vld<DT>(e, x, v);
#pragma unroll
        for (int k = 0; k < V; k++) {
            const int c = c0 + k;
            float t = (e[k] - mean[c]) * istd[c];
            if (gamma) t *= ldf(gamma, gdt, c);
            if (beta) t += ldf(beta, bdt, c);
            e[k] = relu && !(t > 0) ? 0.0f : t;
        }
        vst<DT>(y, v, e);
    }
}

static void bn_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                       const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                       int training, double momentum, double eps, int relu) {
    const char *op = relu ? "batchnorm_relu_forward" : "batchnorm_forward";
    int64_t C = x->shape[x->ndim - 1], M = tensor_numel(x) / C;
    CX_ASSERT(tensor_numel(y) == M * C, "%s: y has %lld elements, x %lld", op, (long long)tensor_numel(y),
              (long long)(M * C));
    CX_ASSERT(training || (running_mean && running_var), "%s: evaluation needs the running statistics", op);
    if (M == 0) return;
    int xdt = cuda_fdt(x, op), ydt = cuda_fdt(y, op);
    int smdt = OPT_DT(save_mean, C, op), sidt = OPT_DT(save_invstd, C, op), gdt = OPT_DT(gamma, C, op);
    int bdt = OPT_DT(beta, C, op), rmdt = OPT_DT(running_mean, C, op), rvdt = OPT_DT(running_var, C, op);
    void *sm = save_mean ? save_mean->data : NULL, *si = save_invstd ? save_invstd->data : NULL;
    void *rm = running_mean ? running_mean->data : NULL, *rv = running_var ? running_var->data : NULL;
    cudaStream_t st = cuda_stream(ctx);
    ArenaMark mark = arena_mark(ctx->scratch);
    // float copies of the statistics the normalisation uses, whatever the save tensors are
    float *mean = (float *)cuda_scratch(ctx, sizeof(float) * (size_t)C);
    float *istd = (float *)cuda_scratch(ctx, sizeof(float) * (size_t)C);
    const bool vec = xdt == ydt && vec_ok(xdt, C, M * C, x->data, y->data, NULL);
    const int V = xdt == DT_BF16 ? 8 : 4;
    if (training) {
        ColPlan p = vec ? col_plan_vec(M, C, V) : col_plan(M, C);
        double *part = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(p.nchunk * C));
        // two passes over x (mean, then squared deviations), as the reference: no
        // cancellation from E[x²] − E[x]² in float32
        if (vec && xdt == DT_BF16)
            col_partial_vec_kernel<COL_SUM, DT_BF16><<<p.grid, p.block, 0, st>>>(part, NULL, x->data, NULL, NULL, 0,
                                                                                 NULL, 0, M, C, p.rows);
        else if (vec)
            col_partial_vec_kernel<COL_SUM, DT_F32><<<p.grid, p.block, 0, st>>>(part, NULL, x->data, NULL, NULL, 0,
                                                                                NULL, 0, M, C, p.rows);
        else
            col_partial_kernel<COL_SUM><<<p.grid, p.block, 0, st>>>(part, NULL, x->data, xdt, NULL, 0, NULL, 0, NULL, 0,
                                                                     M, C, p.rows);
        CUDA_KCHECK("col_partial_kernel<COL_SUM>");
        bn_mean_kernel<<<warps_grid(C), CUDA_BLOCK, 0, st>>>(mean, part, p.nchunk, M, C);
        CUDA_KCHECK("bn_mean_kernel");
        if (vec && xdt == DT_BF16)
            col_partial_vec_kernel<COL_DEV2, DT_BF16><<<p.grid, p.block, 0, st>>>(part, NULL, x->data, NULL, mean,
                                                                                  DT_F32, NULL, 0, M, C, p.rows);
        else if (vec)
            col_partial_vec_kernel<COL_DEV2, DT_F32><<<p.grid, p.block, 0, st>>>(part, NULL, x->data, NULL, mean,
                                                                                 DT_F32, NULL, 0, M, C, p.rows);
        else
            col_partial_kernel<COL_DEV2><<<p.grid, p.block, 0, st>>>(part, NULL, x->data, xdt, NULL, 0, mean, DT_F32,
                                                                      NULL, 0, M, C, p.rows);
        CUDA_KCHECK("col_partial_kernel<COL_DEV2>");
        bn_var_kernel<<<warps_grid(C), CUDA_BLOCK, 0, st>>>(istd, sm, smdt, si, sidt, rm, rmdt, rv, rvdt, part, mean,
                                                             p.nchunk, M, C, (float)eps, (float)momentum,
                                                             (float)(1 - momentum));
        CUDA_KCHECK("bn_var_kernel");
    } else {
        bn_eval_stats_kernel<<<cuda_grid(C), CUDA_BLOCK, 0, st>>>(mean, istd, sm, smdt, si, sidt, rm, rmdt, rv, rvdt, C,
                                                                  (float)eps);
        CUDA_KCHECK("bn_eval_stats_kernel");
    }
    if (vec) {
        const int nvec = (int)(M * C / V), CV = (int)(C / V);
        const void *g = gamma ? gamma->data : NULL, *b = beta ? beta->data : NULL;
        if (xdt == DT_BF16)
            bn_normalize_vec_kernel<DT_BF16><<<cuda_grid(nvec), CUDA_BLOCK, 0, st>>>(y->data, x->data, mean, istd, g,
                                                                                    gdt, b, bdt, nvec, CV, relu);
        else
            bn_normalize_vec_kernel<DT_F32><<<cuda_grid(nvec), CUDA_BLOCK, 0, st>>>(y->data, x->data, mean, istd, g,
                                                                                   gdt, b, bdt, nvec, CV, relu);
    } else {
        bn_normalize_kernel<<<cuda_grid(M * C), CUDA_BLOCK, 0, st>>>(y->data, ydt, x->data, xdt, mean, istd,
                                                                     gamma ? gamma->data : NULL, gdt,
                                                                     beta ? beta->data : NULL, bdt, M * C, C, relu);
    }
    CUDA_KCHECK("bn_normalize_kernel");
    arena_release(ctx->scratch, mark);
}

extern "C" void cuda_batchnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                                       const Tensor *gamma, const Tensor *beta, Tensor *running_mean,
                                       Tensor *running_var, int training, double momentum, double eps) {
    bn_forward(ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training, momentum, eps, 0);
}

// BatchNorm then ReLU in one pass (ops_list.h batchnorm_relu_forward): the normalisation
// writes max(0, ·); the statistics are batchnorm_forward's.
extern "C" void cuda_batchnorm_relu_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd,
                                            const Tensor *x, const Tensor *gamma, const Tensor *beta,
                                            Tensor *running_mean, Tensor *running_var, int training, double momentum,
                                            double eps) {
    bn_forward(ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training, momentum, eps, 1);
}

// dγ += Σ dy·x̂, dβ += Σ dy; keeps the per-row means Σdy/M and Σdy·x̂/M for dx.
static __global__ void bn_grad_sums_kernel(float *mdy, float *mdyxh, void *dgamma, int dgdt, void *dbeta, int dbdt,
                                           const double *p1, const double *p2, int64_t nchunk, int64_t M, int64_t C) {
    int64_t c = WARP_ID();
    if (c >= C) return;
    double sdy = chunks_sum(p1, nchunk, C, c), sdyxh = chunks_sum(p2, nchunk, C, c);
    if ((threadIdx.x & 31) != 0) return;
    mdy[c] = (float)(sdy / (double)M);
    mdyxh[c] = (float)(sdyxh / (double)M);
    if (dgamma) addf(dgamma, dgdt, c, (float)sdyxh);
    if (dbeta) addf(dbeta, dbdt, c, (float)sdy);
}

// Training: dx += (dy − mean(dy) − x̂·mean(dy·x̂))·γ·invstd (the batch statistics
// depend on x); evaluation: dx += dy·γ·invstd. ym (BatchNorm+ReLU): dy where ym > 0.
static __global__ void bn_dx_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt,
                                    const void *sm, int smdt, const void *si, int sidt, const void *gamma, int gdt,
                                    const float *mdy, const float *mdyxh, int64_t n, int64_t C, int training,
                                    const void *ym, int ymdt, int acc) {
    CUDA_LOOP(i, n) {
        int64_t c = i % C;
        float is = ldf(si, sidt, c), d = ldf(dy, dydt, i);
        if (ym && !(ldf(ym, ymdt, i) > 0)) d = 0;
        if (training) {
            float xh = (ldf(x, xdt, i) - ldf(sm, smdt, c)) * is;
            d = d - mdy[c] - xh * mdyxh[c];
        }
        if (gamma) d *= ldf(gamma, gdt, c);
        putf(dx, dxdt, i, d * is, acc);
    }
}

// bn_dx_kernel on 16-byte vectors (dx, dy, x of dtype DT).
template <int DT>
static __global__ void bn_dx_vec_kernel(void *dx, const void *dy, const void *x, const void *sm, int smdt,
                                        const void *si, int sidt, const void *gamma, int gdt, const float *mdy,
                                        const float *mdyxh, int nvec, int CV, int training, const void *ym, int acc) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        const int c0 = (v % CV) * V;
        float d[V], xv[V], o[V];
        vld<DT>(d, dy, v);
        if (ym) {
            float yv[V];
            vld<DT>(yv, ym, v);
#pragma unroll
            for (int k = 0; k < V; k++) if (!(yv[k] > 0)) d[k] = 0;
        }
        if (training) vld<DT>(xv, x, v);
        if (acc) vld<DT>(o, dx, v);
#pragma unroll
        for (int k = 0; k < V; k++) {
            const int c = c0 + k;
            float is = ldf(si, sidt, c), t = d[k];
            if (training) {
                float xh = (xv[k] - ldf(sm, smdt, c)) * is;
                t = t - mdy[c] - xh * mdyxh[c];
            }
            if (gamma) t *= ldf(gamma, gdt, c);
            o[k] = acc ? o[k] + t * is : t * is + 0.0f;   // first write: = (putf)
        }
        vst<DT>(dx, v, o);
    }
}

static void bn_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *yr,
                        const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd, const Tensor *gamma,
                        int training) {
    const char *op = yr ? "batchnorm_relu_backward" : "batchnorm_backward";
    int64_t C = x->shape[x->ndim - 1], M = tensor_numel(x) / C;
    CX_ASSERT(tensor_numel(dy) == M * C && (!dx || tensor_numel(dx) == M * C), "%s: dy/dx sizes differ from x", op);
    CX_ASSERT(!yr || tensor_numel(yr) == M * C, "%s: y's size differs from x's", op);
    const int ymdt = yr ? cuda_fdt(yr, op) : 0;
    const void *ym = yr ? yr->data : NULL;
    CX_ASSERT(save_mean && save_invstd, "%s: needs the saved statistics", op);
    if (M == 0) return;
    int xdt = cuda_fdt(x, op), dydt = cuda_fdt(dy, op), dxdt = dx ? cuda_fdt(dx, op) : 0;
    int smdt = stat_dt(save_mean, C, op), sidt = stat_dt(save_invstd, C, op), gdt = OPT_DT(gamma, C, op);
    int dgdt = OPT_DT(dgamma, C, op), dbdt = OPT_DT(dbeta, C, op);
    cudaStream_t st = cuda_stream(ctx);
    ArenaMark mark = arena_mark(ctx->scratch);
    float *mdy = NULL, *mdyxh = NULL;
    // the reductions' vector path needs x and dy alike; dx's needs dx too
    const bool vec = xdt == dydt && (!yr || ymdt == xdt) && vec_ok(xdt, C, M * C, x->data, dy->data, ym);
    const bool vec_dx = vec && dx && dxdt == xdt && vec_ok(xdt, C, M * C, dx->data, NULL, NULL);
    const int V = xdt == DT_BF16 ? 8 : 4;
    if (dgamma || dbeta || (dx && training)) {
        ColPlan p = vec ? col_plan_vec(M, C, V) : col_plan(M, C);
        double *p1 = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(p.nchunk * C));
        double *p2 = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(p.nchunk * C));
        mdy = (float *)cuda_scratch(ctx, sizeof(float) * (size_t)C);
        mdyxh = (float *)cuda_scratch(ctx, sizeof(float) * (size_t)C);
        if (vec && xdt == DT_BF16)
            col_partial_vec_kernel<COL_BN, DT_BF16><<<p.grid, p.block, 0, st>>>(p1, p2, x->data, dy->data,
                                                                                save_mean->data, smdt,
                                                                                save_invstd->data, sidt, M, C, p.rows,
                                                                                ym);
        else if (vec)
            col_partial_vec_kernel<COL_BN, DT_F32><<<p.grid, p.block, 0, st>>>(p1, p2, x->data, dy->data,
                                                                               save_mean->data, smdt,
                                                                               save_invstd->data, sidt, M, C, p.rows,
                                                                               ym);
        else
            col_partial_kernel<COL_BN><<<p.grid, p.block, 0, st>>>(p1, p2, x->data, xdt, dy->data, dydt,
                                                                    save_mean->data, smdt, save_invstd->data, sidt, M,
                                                                    C, p.rows, ym, ymdt);
        CUDA_KCHECK("col_partial_kernel<COL_BN>");
        bn_grad_sums_kernel<<<warps_grid(C), CUDA_BLOCK, 0, st>>>(mdy, mdyxh, dgamma ? dgamma->data : NULL, dgdt,
                                                                   dbeta ? dbeta->data : NULL, dbdt, p1, p2, p.nchunk,
                                                                   M, C);
        CUDA_KCHECK("bn_grad_sums_kernel");
    }
    if (vec_dx) {
        const int nvec = (int)(M * C / V), CV = (int)(C / V);
        const void *g = gamma ? gamma->data : NULL;
        if (xdt == DT_BF16)
            bn_dx_vec_kernel<DT_BF16><<<cuda_grid(nvec), CUDA_BLOCK, 0, st>>>(
                dx->data, dy->data, x->data, save_mean->data, smdt, save_invstd->data, sidt, g, gdt, mdy, mdyxh, nvec,
                CV, training, ym, cuda_acc(ctx, dx));
        else
            bn_dx_vec_kernel<DT_F32><<<cuda_grid(nvec), CUDA_BLOCK, 0, st>>>(
                dx->data, dy->data, x->data, save_mean->data, smdt, save_invstd->data, sidt, g, gdt, mdy, mdyxh, nvec,
                CV, training, ym, cuda_acc(ctx, dx));
        CUDA_KCHECK("bn_dx_kernel");
    } else if (dx) {
        bn_dx_kernel<<<cuda_grid(M * C), CUDA_BLOCK, 0, st>>>(dx->data, dxdt, dy->data, dydt, x->data, xdt,
                                                              save_mean->data, smdt, save_invstd->data, sidt,
                                                              gamma ? gamma->data : NULL, gdt, mdy, mdyxh, M * C, C,
                                                              training, ym, ymdt, cuda_acc(ctx, dx));
        CUDA_KCHECK("bn_dx_kernel");
    }
    arena_release(ctx->scratch, mark);
}

extern "C" void cuda_batchnorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                                        const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                                        const Tensor *gamma, int training) {
    bn_backward(ctx, dx, dgamma, dbeta, dy, NULL, x, save_mean, save_invstd, gamma, training);
}

// The backward of BatchNorm then ReLU from the pair's output y (ops_list.h
// batchnorm_relu_backward): batchnorm_backward's passes with dy read as dy·[y > 0].
extern "C" void cuda_batchnorm_relu_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                                             const Tensor *y, const Tensor *x, const Tensor *save_mean,
                                             const Tensor *save_invstd, const Tensor *gamma, int training) {
    bn_backward(ctx, dx, dgamma, dbeta, dy, y, x, save_mean, save_invstd, gamma, training);
}

// ---- LayerNorm ---------------------------------------------------------------------------------
// reference: torch.nn.functional.layer_norm over the last axis C; rows are the
// reduction problems of an AxisPlan with inner = 1 (lanes along C).
static __global__ void ln_forward_kernel(void *y, int ydt, void *sm, int smdt, void *sr, int srdt, const void *x,
                                         int xdt, const void *w, int wdt, const void *b, int bdt, int64_t R, int64_t C,
                                         float eps) {
    AxisPos p = axis_pos(R, C, 1, 1);
    double s = 0, ss = 0;
    if (p.ok)
        for (int64_t c = threadIdx.y; c < C; c += blockDim.y) s += ldf(x, xdt, p.base + c);
    float mean = (float)(lanes_reduce<false, double>(s) / (double)C);
    // the variance around the mean (two passes, as the reference)
    if (p.ok)
        for (int64_t c = threadIdx.y; c < C; c += blockDim.y) {
            float d = ldf(x, xdt, p.base + c) - mean;
            ss += (double)d * d;
        }
    float rstd = (float)(1.0 / sqrt(lanes_reduce<false, double>(ss) / (double)C + eps));
    if (!p.ok) return;   // past the last barrier
    for (int64_t c = threadIdx.y; c < C; c += blockDim.y) {
        float v = (ldf(x, xdt, p.base + c) - mean) * rstd;
        if (w) v *= ldf(w, wdt, c);
        if (b) v += ldf(b, bdt, c);
        stf(y, ydt, p.base + c, v);
    }
    if (threadIdx.y == 0) {
        if (sm) stf(sm, smdt, p.o, mean);
        if (sr) stf(sr, srdt, p.o, rstd);
    }
}

extern "C" void cuda_layernorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x,
                                       const Tensor *w, const Tensor *b, double eps) {
    const char *op = "layernorm_forward";
    int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    CX_ASSERT(tensor_numel(y) == R * C, "%s: y has %lld elements, x %lld", op, (long long)tensor_numel(y),
              (long long)(R * C));
    if (R == 0) return;
    int xdt = cuda_fdt(x, op), ydt = cuda_fdt(y, op);
    int smdt = OPT_DT(save_mean, R, op), srdt = OPT_DT(save_rstd, R, op);
    int wdt = OPT_DT(w, C, op), bdt = OPT_DT(b, C, op);
    AxisPlan p = axis_plan(R, C, 1);
    ln_forward_kernel<<<p.grid, p.block, 0, cuda_stream(ctx)>>>(
        y->data, ydt, save_mean ? save_mean->data : NULL, smdt, save_rstd ? save_rstd->data : NULL, srdt, x->data, xdt,
        w ? w->data : NULL, wdt, b ? b->data : NULL, bdt, R, C, (float)eps);
    CUDA_KCHECK("ln_forward_kernel");
}

// dx += rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w, per row.
static __global__ void ln_dx_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt,
                                    const void *sm, int smdt, const void *sr, int srdt, const void *w, int wdt,
                                    int64_t R, int64_t C, int acc) {
    AxisPos p = axis_pos(R, C, 1, 1);
    float mean = 0, rstd = 0;
    double sg = 0, sgx = 0;
    if (p.ok) {
        mean = ldf(sm, smdt, p.o);
        rstd = ldf(sr, srdt, p.o);
        for (int64_t c = threadIdx.y; c < C; c += blockDim.y) {
            float g = ldf(dy, dydt, p.base + c) * (w ? ldf(w, wdt, c) : 1.0f);
            sg += g;
            sgx += (double)g * ((ldf(x, xdt, p.base + c) - mean) * rstd);
        }
    }
    float mg = (float)(lanes_reduce<false, double>(sg) / (double)C), mgx = (float)(lanes_reduce<false, double>(sgx) / (double)C);
    if (!p.ok) return;
    for (int64_t c = threadIdx.y; c < C; c += blockDim.y) {
        float g = ldf(dy, dydt, p.base + c) * (w ? ldf(w, wdt, c) : 1.0f);
        float xh = (ldf(x, xdt, p.base + c) - mean) * rstd;
        putf(dx, dxdt, p.base + c, rstd * (g - mg - xh * mgx), acc);
    }
}

// dw += Σ over rows of dy·x̂, db += Σ dy.
static __global__ void ln_param_grad_kernel(void *dw, int dwdt, void *db, int dbdt, const double *p1, const double *p2,
                                            int64_t nchunk, int64_t C) {
    int64_t c = WARP_ID();
    if (c >= C) return;
    double sdy = chunks_sum(p1, nchunk, C, c), sdyxh = chunks_sum(p2, nchunk, C, c);
    if ((threadIdx.x & 31) != 0) return;
    if (dw) addf(dw, dwdt, c, (float)sdyxh);
    if (db) addf(db, dbdt, c, (float)sdy);
}

extern "C" void cuda_layernorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy,
                                        const Tensor *x, const Tensor *save_mean, const Tensor *save_rstd,
                                        const Tensor *w) {
    const char *op = "layernorm_backward";
    int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    CX_ASSERT(tensor_numel(dy) == R * C && (!dx || tensor_numel(dx) == R * C), "%s: dy/dx sizes differ from x", op);
    CX_ASSERT(save_mean && save_rstd, "%s: needs the saved statistics", op);
    if (R == 0) return;
    int xdt = cuda_fdt(x, op), dydt = cuda_fdt(dy, op);
    int smdt = stat_dt(save_mean, R, op), srdt = stat_dt(save_rstd, R, op), wdt = OPT_DT(w, C, op);
    int dwdt = OPT_DT(dw, C, op), dbdt = OPT_DT(db, C, op);
    cudaStream_t st = cuda_stream(ctx);
    if (dx) {
        AxisPlan p = axis_plan(R, C, 1);
        ln_dx_kernel<<<p.grid, p.block, 0, st>>>(dx->data, cuda_fdt(dx, op), dy->data, dydt, x->data, xdt,
                                                 save_mean->data, smdt, save_rstd->data, srdt, w ? w->data : NULL, wdt,
                                                 R, C, cuda_acc(ctx, dx));
        CUDA_KCHECK("ln_dx_kernel");
    }
    if (dw || db) {
        ArenaMark mark = arena_mark(ctx->scratch);
        ColPlan p = col_plan(R, C);
        double *p1 = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(p.nchunk * C));
        double *p2 = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(p.nchunk * C));
        col_partial_kernel<COL_LN><<<p.grid, p.block, 0, st>>>(p1, p2, x->data, xdt, dy->data, dydt, save_mean->data,
                                                                smdt, save_rstd->data, srdt, R, C, p.rows);
        CUDA_KCHECK("col_partial_kernel<COL_LN>");
        ln_param_grad_kernel<<<warps_grid(C), CUDA_BLOCK, 0, st>>>(dw ? dw->data : NULL, dwdt, db ? db->data : NULL,
                                                                    dbdt, p1, p2, p.nchunk, C);
        CUDA_KCHECK("ln_param_grad_kernel");
        arena_release(ctx->scratch, mark);
    }
}
