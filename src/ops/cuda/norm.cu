// norm.cu — normalisation and per-axis reductions on the GPU: BatchNorm,
// LayerNorm, softmax and l2norm along one axis, and the batch-maximum
// normalisation (maxnorm); and the fused element-wise ops whose backward sums per
// channel (residual_scale, gelu_bias: the same per-channel reduction scheme). Signatures and contracts are ops_list.h's; the
// semantics (eps placement, unbiased running variance, NaN and tie rules)
// are those of the reference kernels in ops/ref/ref_tmpl.h.
// reference: torch.nn.BatchNorm2d, torch.nn.LayerNorm, torch.softmax, F.normalize.
//
// Determinism: every sum is a fixed tree over a launch shape that depends only
// on the tensor's shape (never on the GPU's SM count, never atomics), so a
// result is bit-identical run to run. Two reduction schemes cover everything:
//   * along an axis of (outer, L, inner) (softmax, l2norm, LayerNorm rows): a
//     block holds whole problems, lanes striding along L, combined in shared
//     memory (AxisPlan);
//   * per channel over millions of rows (BatchNorm, LayerNorm's dw/db): blocks
//     over row chunks write per-chunk partials to scratch, then one warp per
//     channel sums the partials in chunk order (ColPlan).
// Activations are F32 or BF16 (ldf/stf); statistics and parameters are read
// and written through their own dtypes too; arithmetic is float32, sums are
// accumulated in double (as the CPU kernels do: a β or γ gradient sums many
// terms that nearly cancel, and float32 partials lost ~1e-3 of it).
#include "ops/cuda/common.cuh"

// ---- shared reduction machinery --------------------------------------------------------------
// Smallest power of two >= v, at most cap (cap a power of two).
static int pow2_at_least(int64_t v, int cap) {
    int p = 1;
    while (p < cap && p < v) p <<= 1;
    return p;
}

// Sum (or maximum) over threadIdx.y of each (threadIdx.z, threadIdx.x) column of
// the block; blockDim.y a power of two, at most CUDA_BLOCK threads. Every thread
// of the column gets the result. The tree is fixed: deterministic.
template <bool MAX, typename T = float>
static __device__ T lanes_reduce(T v) {
    __shared__ T sh[CUDA_BLOCK];
    int col = threadIdx.z * blockDim.y * blockDim.x + threadIdx.x, t = col + threadIdx.y * blockDim.x;
    __syncthreads();   // sh may still be read by a previous call
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.y >> 1; s > 0; s >>= 1) {
        if ((int)threadIdx.y < s) sh[t] = MAX ? (sh[t] > sh[t + s * blockDim.x] || sh[t] != sh[t] ? sh[t] : sh[t + s * blockDim.x])
                                              : sh[t] + sh[t + s * blockDim.x];
        __syncthreads();
    }
    return sh[col];
}

// Reduction along L of x viewed as (outer, L, inner). A block is TW columns
// (consecutive inner positions: coalesced when inner is large) × TH lanes
// striding along L (coalesced when inner is 1) × TZ independent problems.
namespace {   // file-local type
struct AxisPlan {
    dim3 block;
    unsigned grid;
    int64_t ntile;   // column tiles per outer index
};
}

static AxisPlan axis_plan(int64_t outer, int64_t L, int64_t inner) {
    int tw = pow2_at_least(inner, 32), th = pow2_at_least(L, CUDA_BLOCK / tw);
    while (tw * th < 4) th <<= 1;   // blockDim.z is at most 64
    int tz = CUDA_BLOCK / (tw * th);
    AxisPlan p;
    p.block = dim3((unsigned)tw, (unsigned)th, (unsigned)tz);
    p.ntile = (inner + tw - 1) / tw;
    int64_t nblk = (outer * p.ntile + tz - 1) / tz;
    CX_ASSERT(nblk >= 1 && nblk <= INT32_MAX, "axis reduction: %lld blocks", (long long)nblk);
    p.grid = (unsigned)nblk;
    return p;
}

// This thread's problem: outer index o and inner index in; base is the element
// offset of (o, 0, in). ok is false for the padding threads of the last block,
// which must still take part in lanes_reduce's barriers.
namespace {   // file-local type
struct AxisPos {
    int64_t o, in, base;
    bool ok;
};
}

static __device__ __forceinline__ AxisPos axis_pos(int64_t outer, int64_t L, int64_t inner, int64_t ntile) {
    AxisPos p;
    int64_t prob = (int64_t)blockIdx.x * blockDim.z + threadIdx.z;
    p.o = prob / ntile;
    p.in = (prob - p.o * ntile) * blockDim.x + threadIdx.x;
    p.ok = p.o < outer && p.in < inner;
    p.base = p.o * L * inner + p.in;
    return p;
}

// Per-channel reduction of x (M, C) over its M rows: block (TW channels, TH
// row lanes) sums one chunk of `rows` rows; nchunk chunks in blockIdx.y. The
// chunking is a function of (M, C) alone, so the summation order is fixed.
#define COL_MAX_CHUNKS 512
namespace {   // file-local type
struct ColPlan {
    dim3 block, grid;
    int64_t rows, nchunk;   // rows per chunk, chunks
};
}

static ColPlan col_plan(int64_t M, int64_t C) {
    int tw = pow2_at_least(C, 32), th = CUDA_BLOCK / tw;
    // at least 4 rows per thread; more when M is large, so there are at most
    // COL_MAX_CHUNKS partials per channel for the second pass
    int64_t rpt = (M + (int64_t)th * COL_MAX_CHUNKS - 1) / ((int64_t)th * COL_MAX_CHUNKS);
    if (rpt < 4) rpt = 4;
    ColPlan p;
    p.rows = th * rpt;
    p.nchunk = (M + p.rows - 1) / p.rows;
    p.block = dim3((unsigned)tw, (unsigned)th);
    p.grid = dim3((unsigned)((C + tw - 1) / tw), (unsigned)p.nchunk);
    return p;
}

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

// The second pass: channel c's partials summed in chunk order by one warp
// (lane j takes chunks j, j+32, ..., then the shuffle tree). Every lane gets it.
static __device__ __forceinline__ double chunks_sum(const double *p, int64_t nchunk, int64_t C, int64_t c) {
    double s = 0;
    for (int64_t j = threadIdx.x & 31; j < nchunk; j += 32) s += p[j * C + c];
    return warp_sum(s);
}

// Blocks for one warp per item over n items.
static unsigned warps_grid(int64_t n) {
    int64_t b = (n * 32 + CUDA_BLOCK - 1) / CUDA_BLOCK;
    CX_ASSERT(b >= 1 && b <= INT32_MAX, "warp grid: %lld blocks", (long long)b);
    return (unsigned)b;
}
#define WARP_ID() (((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5)

// A statistics or parameter tensor: F32 or BF16, `c` elements (C or rows).
static int stat_dt(const Tensor *t, int64_t n, const char *op) {
    int dt = cuda_fdt(t, op);
    CX_ASSERT(tensor_numel(t) == n, "%s: a statistic/parameter has %lld elements, expected %lld", op,
              (long long)tensor_numel(t), (long long)n);
    return dt;
}
#define OPT_DT(t, n, op) ((t) ? stat_dt((t), (n), (op)) : 0)

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

// ---- softmax and l2norm along one axis ---------------------------------------------------------
// x viewed as (outer, L, inner); one AxisPlan problem per (outer, inner) pair.
static void axis_check(const Tensor *a, const Tensor *b, int64_t outer, int64_t L, int64_t inner, const char *op) {
    CX_ASSERT(outer >= 0 && L >= 1 && inner >= 1 && tensor_numel(a) == outer * L * inner &&
                  tensor_numel(b) == outer * L * inner,
              "%s: (outer %lld, L %lld, inner %lld) does not cover %lld elements", op, (long long)outer, (long long)L,
              (long long)inner, (long long)tensor_numel(a));
}

// reference: torch.softmax. The maximum is subtracted before exp; y may alias x.
static __global__ void softmax_forward_kernel(void *y, int ydt, const void *x, int xdt, int64_t outer, int64_t L,
                                              int64_t inner, int64_t ntile) {
    AxisPos p = axis_pos(outer, L, inner, ntile);
    float mx = -INFINITY;
    double s = 0;
    if (p.ok)
        for (int64_t l = threadIdx.y; l < L; l += blockDim.y) mx = fmaxf(mx, ldf(x, xdt, p.base + l * inner));
    mx = lanes_reduce<true>(mx);
    if (p.ok)
        for (int64_t l = threadIdx.y; l < L; l += blockDim.y) s += expf(ldf(x, xdt, p.base + l * inner) - mx);
    float sf = (float)lanes_reduce<false, double>(s);
    if (!p.ok) return;
    for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
        int64_t i = p.base + l * inner;
        stf(y, ydt, i, expf(ldf(x, xdt, i) - mx) / sf);
    }
}

extern "C" void cuda_softmax_forward(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner) {
    axis_check(x, y, outer, L, inner, "softmax_forward");
    if (outer == 0) return;
    AxisPlan p = axis_plan(outer, L, inner);
    softmax_forward_kernel<<<p.grid, p.block, 0, cuda_stream(ctx)>>>(y->data, cuda_fdt(y, "softmax_forward"), x->data,
                                                                     cuda_fdt(x, "softmax_forward"), outer, L, inner,
                                                                     p.ntile);
    CUDA_KCHECK("softmax_forward_kernel");
}

// dx += y·(dy − Σ dy·y)
static __global__ void softmax_backward_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *y, int ydt,
                                               int64_t outer, int64_t L, int64_t inner, int64_t ntile, int acc) {
    AxisPos p = axis_pos(outer, L, inner, ntile);
    double sd = 0;
    if (p.ok)
        for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
            int64_t i = p.base + l * inner;
            sd += (double)ldf(dy, dydt, i) * ldf(y, ydt, i);
        }
    float s = (float)lanes_reduce<false, double>(sd);
    if (!p.ok) return;
    for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
        int64_t i = p.base + l * inner;
        putf(dx, dxdt, i, ldf(y, ydt, i) * (ldf(dy, dydt, i) - s), acc);
    }
}

extern "C" void cuda_softmax_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer,
                                      int64_t L, int64_t inner) {
    const char *op = "softmax_backward";
    axis_check(y, dy, outer, L, inner, op);
    CX_ASSERT(tensor_numel(dx) == tensor_numel(y), "%s: dx size", op);
    if (outer == 0) return;
    AxisPlan p = axis_plan(outer, L, inner);
    softmax_backward_kernel<<<p.grid, p.block, 0, cuda_stream(ctx)>>>(dx->data, cuda_fdt(dx, op), dy->data,
                                                                      cuda_fdt(dy, op), y->data, cuda_fdt(y, op), outer,
                                                                      L, inner, p.ntile, cuda_acc(ctx, dx));
    CUDA_KCHECK("softmax_backward_kernel");
}

// reference: F.normalize(p=2): y = x / max(‖x‖, eps); save_norm gets ‖x‖. eps is
// compared in double, as the reference does, so a norm within a float rounding
// of eps takes the same branch.
static __global__ void l2norm_forward_kernel(void *y, int ydt, void *nrm_out, int ndt, const void *x, int xdt,
                                             int64_t outer, int64_t L, int64_t inner, int64_t ntile, double eps) {
    AxisPos p = axis_pos(outer, L, inner, ntile);
    double s = 0;
    if (p.ok)
        for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
            float v = ldf(x, xdt, p.base + l * inner);
            s += (double)v * v;
        }
    float nrm = (float)sqrt(lanes_reduce<false, double>(s));
    if (!p.ok) return;
    float den = (double)nrm > eps ? nrm : (float)eps;
    for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
        int64_t i = p.base + l * inner;
        stf(y, ydt, i, ldf(x, xdt, i) / den);
    }
    if (nrm_out && threadIdx.y == 0) stf(nrm_out, ndt, p.o * inner + p.in, nrm);
}

extern "C" void cuda_l2norm_forward(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L,
                                    int64_t inner, double eps) {
    const char *op = "l2norm_forward";
    axis_check(x, y, outer, L, inner, op);
    int ndt = OPT_DT(save_norm, outer * inner, op);
    if (outer == 0) return;
    AxisPlan p = axis_plan(outer, L, inner);
    l2norm_forward_kernel<<<p.grid, p.block, 0, cuda_stream(ctx)>>>(y->data, cuda_fdt(y, op),
                                                                    save_norm ? save_norm->data : NULL, ndt, x->data,
                                                                    cuda_fdt(x, op), outer, L, inner, p.ntile, eps);
    CUDA_KCHECK("l2norm_forward_kernel");
}

// dx += dy/‖x‖ − x·(Σ dy·x)/‖x‖³; below eps the clamp holds the denominator
// constant, so dx += dy/eps only.
static __global__ void l2norm_backward_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt,
                                              const void *nrm_in, int ndt, int64_t outer, int64_t L, int64_t inner,
                                              int64_t ntile, double eps) {
    AxisPos p = axis_pos(outer, L, inner, ntile);
    double sd = 0;
    if (p.ok)
        for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
            int64_t i = p.base + l * inner;
            sd += (double)ldf(dy, dydt, i) * ldf(x, xdt, i);
        }
    float s = (float)lanes_reduce<false, double>(sd);   // every thread takes part, whichever branch its column takes
    if (!p.ok) return;
    float nrm = ldf(nrm_in, ndt, p.o * inner + p.in);
    if ((double)nrm < eps) {
        float e = (float)eps;
        for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
            int64_t i = p.base + l * inner;
            addf(dx, dxdt, i, ldf(dy, dydt, i) / e);
        }
        return;
    }
    float q = s / nrm / nrm / nrm;   // Σdy·x/‖x‖³ without overflowing ‖x‖³
    for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
        int64_t i = p.base + l * inner;
        addf(dx, dxdt, i, ldf(dy, dydt, i) / nrm - ldf(x, xdt, i) * q);
    }
}

extern "C" void cuda_l2norm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm,
                                     int64_t outer, int64_t L, int64_t inner, double eps) {
    const char *op = "l2norm_backward";
    axis_check(x, dy, outer, L, inner, op);
    CX_ASSERT(tensor_numel(dx) == tensor_numel(x), "%s: dx size", op);
    CX_ASSERT(save_norm, "%s: needs the saved norms", op);
    int ndt = stat_dt(save_norm, outer * inner, op);
    if (outer == 0) return;
    AxisPlan p = axis_plan(outer, L, inner);
    l2norm_backward_kernel<<<p.grid, p.block, 0, cuda_stream(ctx)>>>(dx->data, cuda_fdt(dx, op), dy->data,
                                                                     cuda_fdt(dy, op), x->data, cuda_fdt(x, op),
                                                                     save_norm->data, ndt, outer, L, inner, p.ntile,
                                                                     eps);
    CUDA_KCHECK("l2norm_backward_kernel");
}

// ---- maxnorm: y = x / (max(x) + eps) -----------------------------------------------------------
// Two-pass reductions over all elements: MAXNORM_BLOCKS-capped block partials,
// then one block. The maximum goes to save_max on the device and the scaling
// kernels read it from there: no host synchronisation.
#define MAXNORM_BLOCKS 1024

// The reference's maximum: any NaN wins (`x > mx || isnan(x)`).
struct NanMaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return a > b || isnan(a) ? a : b; }
};
static __device__ float block_nanmax(float v) { return block_reduce(v, -INFINITY, NanMaxOp()); }

static unsigned maxnorm_blocks(int64_t n) {
    int64_t b = (n + CUDA_BLOCK - 1) / CUDA_BLOCK;
    return (unsigned)(b < 1 ? 1 : b > MAXNORM_BLOCKS ? MAXNORM_BLOCKS : b);
}

static __global__ void maxnorm_partial_kernel(float *part, const void *x, int xdt, int64_t n) {
    float m = -INFINITY;
    CUDA_LOOP(i, n) m = NanMaxOp()(m, ldf(x, xdt, i));
    m = block_nanmax(m);
    if (threadIdx.x == 0) part[blockIdx.x] = m;
}

static __global__ void maxnorm_final_kernel(void *save_max, int smdt, const float *part, int nb) {
    float m = -INFINITY;
    for (int j = threadIdx.x; j < nb; j += blockDim.x) m = NanMaxOp()(m, part[j]);
    m = block_nanmax(m);
    if (threadIdx.x == 0) stf(save_max, smdt, 0, m);
}

static __global__ void maxnorm_scale_kernel(void *y, int ydt, const void *x, int xdt, const void *save_max, int smdt,
                                            double eps, int64_t n) {
    double den = (double)ldf(save_max, smdt, 0) + eps;   // as the CPU: eps is below float's resolution of the maximum
    CUDA_LOOP(i, n) stf(y, ydt, i, (float)(ldf(x, xdt, i) / den));
}

extern "C" void cuda_maxnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_max, const Tensor *x, double eps) {
    const char *op = "maxnorm_forward";
    int64_t n = tensor_numel(x);
    CX_ASSERT(n > 0 && tensor_numel(y) == n, "%s: x has %lld elements, y %lld", op, (long long)n,
              (long long)tensor_numel(y));
    CX_ASSERT(save_max && tensor_numel(save_max) == 1, "%s: save_max must have one element", op);
    int xdt = cuda_fdt(x, op), ydt = cuda_fdt(y, op), smdt = cuda_fdt(save_max, op);
    cudaStream_t st = cuda_stream(ctx);
    ArenaMark mark = arena_mark(ctx->scratch);
    unsigned nb = maxnorm_blocks(n);
    float *part = (float *)cuda_scratch(ctx, sizeof(float) * nb);
    maxnorm_partial_kernel<<<nb, CUDA_BLOCK, 0, st>>>(part, x->data, xdt, n);
    CUDA_KCHECK("maxnorm_partial_kernel");
    maxnorm_final_kernel<<<1, CUDA_BLOCK, 0, st>>>(save_max->data, smdt, part, (int)nb);
    CUDA_KCHECK("maxnorm_final_kernel");
    // y may alias x: the maximum is complete before this kernel starts (stream order)
    maxnorm_scale_kernel<<<cuda_grid(n), CUDA_BLOCK, 0, st>>>(y->data, ydt, x->data, xdt, save_max->data, smdt,
                                                              eps, n);
    CUDA_KCHECK("maxnorm_scale_kernel");
    arena_release(ctx->scratch, mark);
}

// Backward pass 1: per block Σ dy·x (in double, as the CPU: the maximum's
// gradient is a sum over the whole map that nearly cancels, and it lands on one
// element) and the number of elements equal to the maximum.
static __global__ void maxnorm_grad_partial_kernel(double *ps, long long *pc, const void *dy, int dydt, const void *x,
                                                   int xdt, const void *save_max, int smdt, int64_t n) {
    float mx = ldf(save_max, smdt, 0);
    double s = 0;
    long long cnt = 0;
    CUDA_LOOP(i, n) {
        float v = ldf(x, xdt, i);
        s += (double)ldf(dy, dydt, i) * v;
        cnt += v == mx;
    }
    s = block_sum(s);
    cnt = block_sum(cnt);   // exact beyond 2^24
    if (threadIdx.x == 0) {
        ps[blockIdx.x] = s;
        pc[blockIdx.x] = cnt;
    }
}

// Pass 2: the maximum's gradient −Σdy·x/(max+eps)², split evenly among the maxima.
static __global__ void maxnorm_grad_final_kernel(double *share, const double *ps, const long long *pc, int nb,
                                                 const void *save_max, int smdt, double eps) {
    double s = 0;
    long long cnt = 0;
    for (int j = threadIdx.x; j < nb; j += blockDim.x) {
        s += ps[j];
        cnt += pc[j];
    }
    s = block_sum(s);
    cnt = block_sum(cnt);   // exact beyond 2^24
    double den = (double)ldf(save_max, smdt, 0) + eps;
    // no maximum matches when it is NaN; the share is then never used
    if (threadIdx.x == 0) *share = cnt > 0 ? -s / (den * den) / (double)cnt : 0.0;
}

static __global__ void maxnorm_grad_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt,
                                           const void *save_max, int smdt, const double *share, double eps, int64_t n,
                                           int acc) {
    float mx = ldf(save_max, smdt, 0);
    double den = (double)mx + eps, sh = *share;
    CUDA_LOOP(i, n) putf(dx, dxdt, i, (float)((double)ldf(dy, dydt, i) / den + (ldf(x, xdt, i) == mx ? sh : 0.0)), acc);
}

extern "C" void cuda_maxnorm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_max,
                                      double eps) {
    const char *op = "maxnorm_backward";
    int64_t n = tensor_numel(x);
    CX_ASSERT(n > 0 && tensor_numel(dy) == n && tensor_numel(dx) == n, "%s: x, dy, dx sizes differ", op);
    CX_ASSERT(save_max && tensor_numel(save_max) == 1, "%s: save_max must have one element", op);
    int xdt = cuda_fdt(x, op), dydt = cuda_fdt(dy, op), dxdt = cuda_fdt(dx, op), smdt = cuda_fdt(save_max, op);
    cudaStream_t st = cuda_stream(ctx);
    ArenaMark mark = arena_mark(ctx->scratch);
    unsigned nb = maxnorm_blocks(n);
    double *ps = (double *)cuda_scratch(ctx, sizeof(double) * nb);
    long long *pc = (long long *)cuda_scratch(ctx, sizeof(long long) * nb);
    double *share = (double *)cuda_scratch(ctx, sizeof(double));
    maxnorm_grad_partial_kernel<<<nb, CUDA_BLOCK, 0, st>>>(ps, pc, dy->data, dydt, x->data, xdt, save_max->data, smdt,
                                                           n);
    CUDA_KCHECK("maxnorm_grad_partial_kernel");
    maxnorm_grad_final_kernel<<<1, CUDA_BLOCK, 0, st>>>(share, ps, pc, (int)nb, save_max->data, smdt, eps);
    CUDA_KCHECK("maxnorm_grad_final_kernel");
    maxnorm_grad_kernel<<<cuda_grid(n), CUDA_BLOCK, 0, st>>>(dx->data, dxdt, dy->data, dydt, x->data, xdt,
                                                             save_max->data, smdt, share, eps, n, cuda_acc(ctx, dx));
    CUDA_KCHECK("maxnorm_grad_kernel");
    arena_release(ctx->scratch, mark);
}

// ---- the layer-scaled residual: y = x + γ ⊙ z ----------------------------------------------------
// reference: timm EdgeNeXt's x + gamma * z (ops_list.h residual_scale_forward). The
// forward is one element-wise pass (16-byte vectors where x, z, y share a dtype, C is a
// multiple of the vector width and the data are aligned); the backward is one pass over
// dy and z that writes dz and dx and leaves per-chunk partials of Σ dy·z for dγ (the
// ColPlan scheme above: deterministic), then one warp per channel sums them.
template <int DT>
static __global__ void rs_forward_vec_kernel(void *y, const void *x, const void *z, const void *g, int gdt, int nvec,
                                             int CV) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        const int c0 = (v % CV) * V;
        float a[V], b[V];
        vld<DT>(a, x, v);
        vld<DT>(b, z, v);
#pragma unroll
        for (int k = 0; k < V; k++) a[k] += b[k] * ldf(g, gdt, c0 + k);
        vst<DT>(y, v, a);
    }
}

static __global__ void rs_forward_kernel(void *y, int ydt, const void *x, int xdt, const void *z, int zdt, const void *g,
                                         int gdt, int64_t n, int64_t C) {
    CUDA_LOOP(i, n) stf(y, ydt, i, ldf(x, xdt, i) + ldf(z, zdt, i) * ldf(g, gdt, i % C));
}

extern "C" void cuda_residual_scale_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *z,
                                            const Tensor *gamma) {
    const char *op = "residual_scale_forward";
    const int64_t C = tensor_numel(gamma), n = tensor_numel(z);
    CX_ASSERT(z->shape[z->ndim - 1] == C && tensor_numel(x) == n && tensor_numel(y) == n, "%s: shapes", op);
    if (n == 0) return;
    const int xdt = cuda_fdt(x, op), zdt = cuda_fdt(z, op), ydt = cuda_fdt(y, op), gdt = cuda_fdt(gamma, op);
    cudaStream_t st = cuda_stream(ctx);
    if (xdt == zdt && ydt == zdt && vec_ok(zdt, C, n, x->data, z->data, y->data)) {
        const int V = zdt == DT_BF16 ? 8 : 4, nvec = (int)(n / V), CV = (int)(C / V);
        if (zdt == DT_BF16)
            rs_forward_vec_kernel<DT_BF16><<<cuda_grid(nvec), CUDA_BLOCK, 0, st>>>(y->data, x->data, z->data,
                                                                                 gamma->data, gdt, nvec, CV);
        else
            rs_forward_vec_kernel<DT_F32><<<cuda_grid(nvec), CUDA_BLOCK, 0, st>>>(y->data, x->data, z->data,
                                                                                gamma->data, gdt, nvec, CV);
    } else {
        rs_forward_kernel<<<cuda_grid(n), CUDA_BLOCK, 0, st>>>(y->data, ydt, x->data, xdt, z->data, zdt, gamma->data,
                                                              gdt, n, C);
    }
    CUDA_KCHECK("rs_forward_kernel");
}

// The backward's pass over rows [chunk) of vector column cv (V channels): dz (+)= γ·dy,
// dx (+)= dy (acc flags: 0 writes, ops.h first write), partials of Σ dy·z per channel.
template <int DT>
static __global__ void rs_backward_vec_kernel(double *part, void *dx, int dx_acc, void *dz, int dz_acc, const void *dy,
                                              const void *z, const void *g, int gdt, int64_t M, int64_t C,
                                              int64_t rows) {
    constexpr int V = VecW<DT>::N;
    const int64_t CV = C / V;
    const int64_t cv = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < M ? r0 + rows : M;
    double s[V];
    float gv[V];
#pragma unroll
    for (int k = 0; k < V; k++) s[k] = 0, gv[k] = 0;
    if (cv < CV) {
#pragma unroll
        for (int k = 0; k < V; k++) gv[k] = ldf(g, gdt, cv * V + k);
        for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const int64_t v = r * CV + cv;
            float d[V], o[V];
            vld<DT>(d, dy, v);
            if (part) {
                float zv[V];
                vld<DT>(zv, z, v);
#pragma unroll
                for (int k = 0; k < V; k++) s[k] += (double)d[k] * zv[k];
            }
            if (dz) {
                if (dz_acc) vld<DT>(o, dz, v);
#pragma unroll
                for (int k = 0; k < V; k++) o[k] = dz_acc ? o[k] + d[k] * gv[k] : d[k] * gv[k] + 0.0f;
                vst<DT>(dz, v, o);
            }
            if (dx) {
                if (dx_acc) vld<DT>(o, dx, v);
#pragma unroll
                for (int k = 0; k < V; k++) o[k] = dx_acc ? o[k] + d[k] : d[k] + 0.0f;
                vst<DT>(dx, v, o);
            }
        }
    }
    if (!part) return;   // uniform over the launch: no barrier is skipped by some threads only
#pragma unroll
    for (int k = 0; k < V; k++) s[k] = lanes_reduce<false, double>(s[k]);
    if (threadIdx.y == 0 && cv < CV)
#pragma unroll
        for (int k = 0; k < V; k++) part[blockIdx.y * C + cv * V + k] = s[k];
}

static __global__ void rs_backward_kernel(double *part, void *dx, int dxdt, int dx_acc, void *dz, int dzdt, int dz_acc,
                                          const void *dy, int dydt, const void *z, int zdt, const void *g, int gdt,
                                          int64_t M, int64_t C, int64_t rows) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < M ? r0 + rows : M;
    double s = 0;
    if (c < C) {
        const float gc = ldf(g, gdt, c);
        for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const int64_t i = r * C + c;
            const float d = ldf(dy, dydt, i);
            if (part) s += (double)d * ldf(z, zdt, i);
            if (dz) putf(dz, dzdt, i, d * gc, dz_acc);
            if (dx) putf(dx, dxdt, i, d, dx_acc);
        }
    }
    if (!part) return;
    s = lanes_reduce<false, double>(s);
    if (threadIdx.y == 0 && c < C) part[blockIdx.y * C + c] = s;
}

static __global__ void rs_dgamma_kernel(void *dg, int dgdt, const double *part, int64_t nchunk, int64_t C) {
    const int64_t c = WARP_ID();
    if (c >= C) return;
    const double s = chunks_sum(part, nchunk, C, c);
    if ((threadIdx.x & 31) == 0) addf(dg, dgdt, c, (float)s);
}

extern "C" void cuda_residual_scale_backward(OpCtx *ctx, Tensor *dx, Tensor *dz, Tensor *dgamma, const Tensor *dy,
                                             const Tensor *z, const Tensor *gamma) {
    const char *op = "residual_scale_backward";
    const int64_t C = tensor_numel(gamma), n = tensor_numel(dy), M = C ? n / C : 0;
    CX_ASSERT(z->shape[z->ndim - 1] == C && tensor_numel(z) == n && (!dx || tensor_numel(dx) == n) &&
              (!dz || tensor_numel(dz) == n) && (!dgamma || tensor_numel(dgamma) == C), "%s: shapes", op);
    if (n == 0 || (!dx && !dz && !dgamma)) return;
    const int dydt = cuda_fdt(dy, op), zdt = cuda_fdt(z, op), gdt = cuda_fdt(gamma, op);
    const int dxdt = dx ? cuda_fdt(dx, op) : dydt, dzdt = dz ? cuda_fdt(dz, op) : dydt;
    const int dx_acc = cuda_acc(ctx, dx), dz_acc = cuda_acc(ctx, dz);
    cudaStream_t st = cuda_stream(ctx);
    ArenaMark mark = arena_mark(ctx->scratch);
    const bool vec = zdt == dydt && dxdt == dydt && dzdt == dydt &&
                     vec_ok(dydt, C, n, dy->data, z->data, dx ? dx->data : NULL) && vec_ok(dydt, C, n, dz ? dz->data : NULL, NULL, NULL);
    const int V = vec ? (dydt == DT_BF16 ? 8 : 4) : 1;
    ColPlan p = col_plan(M, C / V);
    double *part = dgamma ? (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(p.nchunk * C)) : NULL;
    void *dxp = dx ? dx->data : NULL, *dzp = dz ? dz->data : NULL;
    if (vec && dydt == DT_BF16)
        rs_backward_vec_kernel<DT_BF16><<<p.grid, p.block, 0, st>>>(part, dxp, dx_acc, dzp, dz_acc, dy->data, z->data,
                                                                     gamma->data, gdt, M, C, p.rows);
    else if (vec)
        rs_backward_vec_kernel<DT_F32><<<p.grid, p.block, 0, st>>>(part, dxp, dx_acc, dzp, dz_acc, dy->data, z->data,
                                                                    gamma->data, gdt, M, C, p.rows);
    else
        rs_backward_kernel<<<p.grid, p.block, 0, st>>>(part, dxp, dxdt, dx_acc, dzp, dzdt, dz_acc, dy->data, dydt,
                                                       z->data, zdt, gamma->data, gdt, M, C, p.rows);
    CUDA_KCHECK("rs_backward_kernel");
    if (dgamma) {
        rs_dgamma_kernel<<<warps_grid(C), CUDA_BLOCK, 0, st>>>(dgamma->data, cuda_fdt(dgamma, op), part, p.nchunk, C);
        CUDA_KCHECK("rs_dgamma_kernel");
    }
    arena_release(ctx->scratch, mark);
}

// ---- GELU's backward with the bias gradient of the layer before it -------------------------------
// dx (+)= t = dy·(Φ(x) + x·φ(x)) (exact erf form, as eltwise.cu's Gelu), and per chunk of rows
// the partial sums of t rounded to dx's dtype, for dbias (the ColPlan scheme: deterministic).
static __device__ __forceinline__ float gelu_grad(float d, float v) {
    return d * (normcdff(v) + v * expf(-0.5f * v * v) * 0.3989422804014327f);
}
static __device__ __forceinline__ float round_to(float v, int dt) {
    return dt == DT_BF16 ? __bfloat162float(__float2bfloat16(v)) : v;
}

template <int DT>
static __global__ void gelu_bias_backward_vec_kernel(double *part, void *dx, int acc, const void *dy, const void *x,
                                                     int64_t M, int64_t C, int64_t rows) {
    constexpr int V = VecW<DT>::N;
    const int64_t CV = C / V;
    const int64_t cv = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < M ? r0 + rows : M;
    double s[V];
#pragma unroll
    for (int k = 0; k < V; k++) s[k] = 0;
    if (cv < CV)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const int64_t v = r * CV + cv;
            float d[V], xv[V], o[V];
            vld<DT>(d, dy, v);
            vld<DT>(xv, x, v);
            if (dx && acc) vld<DT>(o, dx, v);
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float t = gelu_grad(d[k], xv[k]);
                if (part) s[k] += round_to(t, DT);
                o[k] = acc ? o[k] + t : t + 0.0f;
            }
            if (dx) vst<DT>(dx, v, o);
        }
    if (!part) return;
#pragma unroll
    for (int k = 0; k < V; k++) s[k] = lanes_reduce<false, double>(s[k]);
    if (threadIdx.y == 0 && cv < CV)
#pragma unroll
        for (int k = 0; k < V; k++) part[blockIdx.y * C + cv * V + k] = s[k];
}

static __global__ void gelu_bias_backward_kernel(double *part, void *dx, int dxdt, int acc, const void *dy, int dydt,
                                                 const void *x, int xdt, int64_t M, int64_t C, int64_t rows) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < M ? r0 + rows : M;
    double s = 0;
    if (c < C)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const int64_t i = r * C + c;
            const float t = gelu_grad(ldf(dy, dydt, i), ldf(x, xdt, i));
            if (part) s += round_to(t, dx ? dxdt : xdt);
            if (dx) putf(dx, dxdt, i, t, acc);
        }
    if (!part) return;
    s = lanes_reduce<false, double>(s);
    if (threadIdx.y == 0 && c < C) part[blockIdx.y * C + c] = s;
}

extern "C" void cuda_gelu_bias_backward(OpCtx *ctx, Tensor *dx, Tensor *dbias, const Tensor *dy, const Tensor *x) {
    const char *op = "gelu_bias_backward";
    const int64_t C = x->shape[x->ndim - 1], n = tensor_numel(x), M = C ? n / C : 0;
    CX_ASSERT(tensor_numel(dy) == n && (!dx || tensor_numel(dx) == n) && (!dbias || tensor_numel(dbias) == C),
              "%s: shapes", op);
    if (n == 0 || (!dx && !dbias)) return;
    const int xdt = cuda_fdt(x, op), dydt = cuda_fdt(dy, op), dxdt = dx ? cuda_fdt(dx, op) : xdt;
    const int acc = cuda_acc(ctx, dx);
    cudaStream_t st = cuda_stream(ctx);
    ArenaMark mark = arena_mark(ctx->scratch);
    const bool vec = xdt == dydt && dxdt == xdt && vec_ok(xdt, C, n, x->data, dy->data, dx ? dx->data : NULL);
    const int V = vec ? (xdt == DT_BF16 ? 8 : 4) : 1;
    ColPlan p = col_plan(M, C / V);
    double *part = dbias ? (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(p.nchunk * C)) : NULL;
    void *dxp = dx ? dx->data : NULL;
    if (vec && xdt == DT_BF16)
        gelu_bias_backward_vec_kernel<DT_BF16><<<p.grid, p.block, 0, st>>>(part, dxp, acc, dy->data, x->data, M, C,
                                                                            p.rows);
    else if (vec)
        gelu_bias_backward_vec_kernel<DT_F32><<<p.grid, p.block, 0, st>>>(part, dxp, acc, dy->data, x->data, M, C,
                                                                           p.rows);
    else
        gelu_bias_backward_kernel<<<p.grid, p.block, 0, st>>>(part, dxp, dxdt, acc, dy->data, dydt, x->data, xdt, M, C,
                                                              p.rows);
    CUDA_KCHECK("gelu_bias_backward_kernel");
    if (dbias) {
        rs_dgamma_kernel<<<warps_grid(C), CUDA_BLOCK, 0, st>>>(dbias->data, cuda_fdt(dbias, op), part, p.nchunk, C);
        CUDA_KCHECK("rs_dgamma_kernel");
    }
    arena_release(ctx->scratch, mark);
}
