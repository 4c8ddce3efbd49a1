// moe.cu — the mixture-of-experts routing on the GPU (ops_list.h route_topk_plan,
// route_topk_backward): the decisions, the plan of the grouped execution and the
// routing's backward, made where the router's probabilities are, so that a sparse
// step reads its routing on the host once (nn/moe.c) and never sends anything back.
//
// U·E numbers per layer (16×6 for global routing at batch 16; 256×6 for spatial
// routing's 4×4 tiles): one block does all of it. The arithmetic is the reference
// kernels' (ops/ref/ref_tmpl.h) operation for operation, in double, with the
// products and sums rounded one by one (__dmul_rn, __dadd_rn: no fused multiply-add)
// so that the float32 results equal the CPU's bit for bit (exp and log aside).
#include "ops/cuda/common.cuh"

#define ROUTE_BLOCK 256

struct RouteSel { double v[MOE_ROUTE_MAX_E]; };   // the selection bias, by value

// topk_rows's order: NaN counts as the largest, ties keep the lower index first.
static __device__ __forceinline__ bool route_before(float a, int ia, float b, int ib) {
    if (isnan(a) || isnan(b)) return isnan(a) && (!isnan(b) || ia < ib);
    return a > b || (a == b && ia < ib);
}

static __global__ void route_plan_kernel(int32_t *idx, float *w, int32_t *plan, float *plan_w, const float *probs,
                                         RouteSel sel, int has_sel, int U, int E, int k) {
    __shared__ int off[MOE_ROUTE_MAX_E + 1];
    const int P = U * k;
    int32_t *rows = plan, *pos = plan + P, *ulist = plan + 2 * P, *uptr = plan + 3 * P;
    float *wts = plan_w, *uw = plan_w + P;
    for (int u = threadIdx.x; u < U; u += blockDim.x) {   // a thread per unit: top-k, weights
        const float *pu = probs + (int64_t)u * E;
        float score[MOE_ROUTE_MAX_E];
        for (int e = 0; e < E; e++) score[e] = has_sel ? (float)__dadd_rn((double)pu[e], sel.v[e]) : pu[e];
        int prev = -1;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int l = 0; l < E; l++) {
                if (prev >= 0 && !route_before(score[prev], prev, score[l], l)) continue;
                if (best < 0 || route_before(score[l], l, score[best], best)) best = l;
            }
            idx[u * k + j] = best;
            prev = best;
        }
        double s = 0;
        for (int j = 0; j < k; j++) s = __dadd_rn(s, (double)pu[idx[u * k + j]]);
        for (int j = 0; j < k; j++) w[u * k + j] = (float)__ddiv_rn((double)pu[idx[u * k + j]], __dadd_rn(s, 1e-8));
    }
    __syncthreads();
    // counting sort by expert, stable in the pair id: a thread per expert counts, one
    // sums, a thread per expert places its pairs in pair order
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        int c = 0;
        for (int p = 0; p < P; p++) c += idx[p] == e;
        off[e + 1] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        off[0] = 0;
        for (int e = 0; e < E; e++) off[e + 1] += off[e];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        int i = off[e];
        for (int p = 0; p < P; p++)
            if (idx[p] == e) {
                pos[p] = i;
                rows[i] = p / k;
                wts[i] = w[p];
                i++;
            }
    }
    __syncthreads();
    for (int u = threadIdx.x; u < U; u += blockDim.x) {   // unit u's positions, ascending
        int32_t *l = ulist + u * k;
        float *lw = uw + u * k;
        for (int j = 0; j < k; j++) {
            int32_t v = pos[u * k + j];
            float vw = w[u * k + j];
            int a = j;
            for (; a > 0 && l[a - 1] > v; a--) l[a] = l[a - 1], lw[a] = lw[a - 1];
            l[a] = v, lw[a] = vw;
        }
        uptr[u] = u * k;
        if (u == U - 1) uptr[U] = P;
    }
}

extern "C" void cuda_route_topk_plan(OpCtx *ctx, Tensor *idx, Tensor *w, Tensor *plan, Tensor *plan_w, const Tensor *probs,
                                    const double *sel) {
    const char *op = "route_topk_plan";
    const int U = (int)probs->shape[0], E = (int)probs->shape[1], k = (int)idx->shape[1];
    CX_ASSERT(probs->dtype == DT_F32 && w->dtype == DT_F32 && plan_w->dtype == DT_F32, "%s: routing runs in float32", op);
    CX_ASSERT((int64_t)U * k < INT32_MAX / 4, "%s: %d units", op, U);
    if (U == 0) return;
    RouteSel s = {};
    for (int e = 0; e < E && sel; e++) s.v[e] = sel[e];
    route_plan_kernel<<<1, ROUTE_BLOCK, 0, cuda_stream(ctx)>>>(tensor_i32(idx), (float *)w->data, tensor_i32(plan),
                                                               (float *)plan_w->data, (const float *)probs->data, s,
                                                               sel != NULL, U, E, k);
    CUDA_KCHECK("route_plan_kernel");
}

static __global__ void route_backward_kernel(float *dlogits, const float *dw, const int32_t *idx, const float *probs,
                                             const float *logits, int lb, double cb, int U, int E, int k) {
    __shared__ double g_e[MOE_ROUTE_MAX_E];
    for (int e = threadIdx.x; e < E; e += blockDim.x) {   // the balancing term's gradient per expert (mean p, counts)
        double g = 0;
        if (cb != 0) {
            double P = 0;
            for (int u = 0; u < U; u++) P = __dadd_rn(P, (double)probs[(int64_t)u * E + e]);
            P = __ddiv_rn(P, (double)U);
            if (lb == MOE_LB_MSE) {
                g = __ddiv_rn(__dmul_rn(__dmul_rn(cb, 2.0), __dsub_rn(P, __ddiv_rn(1.0, (double)E))), (double)U);
            } else if (lb == MOE_LB_SWITCH) {
                int count = 0;
                for (int p = 0; p < U * k; p++) count += idx[p] == e;
                double f = __ddiv_rn((double)count, __dmul_rn((double)U, (double)k));
                g = __ddiv_rn(__dmul_rn(__dmul_rn(cb, (double)E), f), (double)U);
            }
        }
        g_e[e] = g;
    }
    __syncthreads();
    for (int u = threadIdx.x; u < U; u += blockDim.x) {
        const float *pu = probs + (int64_t)u * E, *lu = logits + (int64_t)u * E;
        double dp[MOE_ROUTE_MAX_E];
        for (int e = 0; e < E; e++) dp[e] = 0;
        if (dw) {   // w_j = p_j / (S + eps), S = Σ_chosen p
            double S = 0, s2 = 0;
            for (int j = 0; j < k; j++) {
                double pj = pu[idx[u * k + j]];
                S = __dadd_rn(S, pj);
                s2 = __dadd_rn(s2, __dmul_rn((double)dw[u * k + j], pj));
            }
            double D = __dadd_rn(S, 1e-8);
            for (int j = 0; j < k; j++) {
                int e = idx[u * k + j];
                double t = __dsub_rn(__ddiv_rn((double)dw[u * k + j], D), __ddiv_rn(s2, __dmul_rn(D, D)));
                dp[e] = __dadd_rn(dp[e], t);
            }
        }
        if (cb != 0)
            for (int e = 0; e < E; e++) dp[e] = __dadd_rn(dp[e], g_e[e]);
        double dot = 0, mx = -INFINITY, s = 0;
        for (int e = 0; e < E; e++) dot = __dadd_rn(dot, __dmul_rn(dp[e], (double)pu[e]));
        for (int e = 0; e < E; e++) mx = fmax(mx, (double)lu[e]);
        for (int e = 0; e < E; e++) s = __dadd_rn(s, exp(__dsub_rn((double)lu[e], mx)));
        const double lse = __dadd_rn(mx, log(s));
        for (int e = 0; e < E; e++) {
            const double p = pu[e];
            double g = __dmul_rn(p, __dsub_rn(dp[e], dot));
            if (lb == MOE_LB_ZLOSS) g = __dadd_rn(g, __ddiv_rn(__dmul_rn(__dmul_rn(__dmul_rn(cb, 2.0), lse), p), (double)U));
            float *d = dlogits + (int64_t)u * E + e;
            *d = __fadd_rn(*d, (float)g);
        }
    }
}

extern "C" void cuda_route_topk_backward(OpCtx *ctx, Tensor *dlogits, const Tensor *dw, const Tensor *idx,
                                        const Tensor *probs, const Tensor *logits, int lb, double cb) {
    const char *op = "route_topk_backward";
    const int U = (int)probs->shape[0], E = (int)probs->shape[1], k = (int)idx->shape[1];
    CX_ASSERT(probs->dtype == DT_F32 && logits->dtype == DT_F32 && dlogits->dtype == DT_F32 && (!dw || dw->dtype == DT_F32),
              "%s: routing runs in float32", op);
    if (U == 0) return;
    route_backward_kernel<<<1, ROUTE_BLOCK, 0, cuda_stream(ctx)>>>((float *)dlogits->data, dw ? (const float *)dw->data : NULL,
                                                                   tensor_i32(idx), (const float *)probs->data,
                                                                   (const float *)logits->data, lb, cb, U, E, k);
    CUDA_KCHECK("route_backward_kernel");
}

// ---- the MoE row ops on 16-byte vectors ---------------------------------------------------------------
// rows_gather, rows_gather_sum and rows_scatter_add_backward's dsrc move whole rows (a
// pixel's channels, an image's map): when source and destination share one dtype, a
// row is a whole number of 16-byte vectors (8 bf16 or 4 float32 values) and the data
// are aligned, a thread moves a vector and indexes in 32 bits (eltwise.cu's kernels
// take the other cases). The arithmetic per element is the scalar kernels', rounding
// for rounding: the same results.
template <int DT> struct RowVec { static constexpr int N = DT == DT_BF16 ? 8 : 4; };

template <int DT>
static __device__ __forceinline__ void rv_load(float *out, const void *p, int64_t v) {
    uint4 raw = ((const uint4 *)p)[v];
    if (DT == DT_BF16) {
        const __nv_bfloat16 *h = (const __nv_bfloat16 *)&raw;
#pragma unroll
        for (int k = 0; k < 8; k++) out[k] = __bfloat162float(h[k]);
    } else {
        const float *f = (const float *)&raw;
#pragma unroll
        for (int k = 0; k < 4; k++) out[k] = f[k];
    }
}

template <int DT>
static __device__ __forceinline__ void rv_store(void *p, int64_t v, const float *in) {
    uint4 raw;
    if (DT == DT_BF16) {
        __nv_bfloat16 *h = (__nv_bfloat16 *)&raw;
#pragma unroll
        for (int k = 0; k < 8; k++) h[k] = __float2bfloat16(in[k]);
    } else {
        float *f = (float *)&raw;
#pragma unroll
        for (int k = 0; k < 4; k++) f[k] = in[k];
    }
    ((uint4 *)p)[v] = raw;
}

static __device__ __forceinline__ void rv_check(int32_t r, int64_t rows, const char *op, bool report) {
    if (r < 0 || r >= rows) {
        if (report) printf("%s: row index %d outside [0, %lld)\n", op, (int)r, (long long)rows);
        __trap();
    }
}

// Vectors per row for tensors t (NULL: absent) of dtype dt with D elements a row, or 0
// when the vector path does not apply (dtypes, row width, alignment, 32-bit indexing).
static int row_vectors(int dt, int64_t D, int64_t n_rows, const Tensor *a, const Tensor *b, const Tensor *c) {
    const int w = dt == DT_BF16 ? 8 : dt == DT_F32 ? 4 : 0;
    const Tensor *t[3] = { a, b, c };
    for (int i = 0; i < 3; i++)
        if (t[i] && (t[i]->dtype != dt || ((uintptr_t)t[i]->data & 15))) return 0;
    if (!w || D % w || D / w * n_rows >= ((int64_t)1 << 31)) return 0;
    return (int)(D / w);
}

// dst[i] = src[idx[i]], uint4 by uint4 (no conversion: the dtypes are one).
static __global__ void rows_gather_vec_kernel(uint4 *dst, const uint4 *src, const int32_t *idx, int64_t rows, int V,
                                              unsigned n) {
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        const unsigned i = e / (unsigned)V, v = e - i * (unsigned)V;
        const int32_t r = idx[i];
        rv_check(r, rows, "rows_gather", v == 0);
        dst[e] = src[(int64_t)r * V + v];
    }
}

extern "C++" bool cuda_rows_gather_vec(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx) {
    const int64_t n = tensor_numel(idx), rows = src->shape[0], D = rows ? tensor_numel(src) / rows : 0;
    const int V = row_vectors((int)src->dtype, D, n > rows ? n : rows, dst, src, NULL);
    if (!V || n == 0) return false;
    const unsigned nv = (unsigned)(n * V);
    rows_gather_vec_kernel<<<cuda_grid(nv), CUDA_BLOCK, 0, cuda_stream(ctx)>>>((uint4 *)dst->data, (const uint4 *)src->data,
                                                                              tensor_i32(idx), rows, V, nv);
    CUDA_KCHECK("rows_gather_vec_kernel");
    return true;
}

// dst[r] += Σ_j w[j]·src[list[j]] over j in [ptr[r], ptr[r+1]), a vector of dst per thread.
template <int DT>
static __global__ void rows_gather_sum_vec_kernel(void *dst, const void *src, const int32_t *ptr, const int32_t *list,
                                                  const float *w, int64_t srows, int V, unsigned n) {
    constexpr int L = RowVec<DT>::N;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        const unsigned r = e / (unsigned)V, v = e - r * (unsigned)V;
        const int32_t j0 = ptr[r], j1 = ptr[r + 1];
        if (j0 == j1) continue;
        float acc[L], s[L];
        rv_load<DT>(acc, dst, e);
        for (int32_t j = j0; j < j1; j++) {
            const int32_t i = list[j];
            rv_check(i, srows, "rows_gather_sum", v == 0);
            rv_load<DT>(s, src, (int64_t)i * V + v);
            if (w) {
                const float wj = w[j];
#pragma unroll
                for (int k = 0; k < L; k++) acc[k] = __fadd_rn(acc[k], __fmul_rn(wj, s[k]));
            } else {
#pragma unroll
                for (int k = 0; k < L; k++) acc[k] = __fadd_rn(acc[k], s[k]);
            }
        }
        rv_store<DT>(dst, e, acc);
    }
}

extern "C++" bool cuda_rows_gather_sum_vec(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr,
                                           const Tensor *list, const Tensor *w) {
    const int64_t rows = dst->shape[0], D = rows ? tensor_numel(dst) / rows : 0, srows = src->shape[0];
    const int V = row_vectors((int)dst->dtype, D, rows > srows ? rows : srows, dst, src, NULL);
    if (!V || (w && w->dtype != DT_F32)) return false;
    const unsigned nv = (unsigned)(rows * V);
    const float *wp = w ? (const float *)w->data : NULL;
    if (dst->dtype == DT_BF16)
        rows_gather_sum_vec_kernel<DT_BF16><<<cuda_grid(nv), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
            dst->data, src->data, tensor_i32(ptr), tensor_i32(list), wp, srows, V, nv);
    else
        rows_gather_sum_vec_kernel<DT_F32><<<cuda_grid(nv), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
            dst->data, src->data, tensor_i32(ptr), tensor_i32(list), wp, srows, V, nv);
    CUDA_KCHECK("rows_gather_sum_vec_kernel");
    return true;
}

// dsrc[i] += w[i]·ddst[idx[i]] (rows_scatter_add_backward's input gradient), a vector per thread.
template <int DT>
static __global__ void rows_dsrc_vec_kernel(void *dsrc, const void *ddst, const int32_t *idx, const float *w, int64_t rows,
                                            int V, unsigned n) {
    constexpr int L = RowVec<DT>::N;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        const unsigned i = e / (unsigned)V, v = e - i * (unsigned)V;
        const int32_t r = idx[i];
        rv_check(r, rows, "rows_scatter_add_backward", v == 0);
        float d[L], g[L];
        rv_load<DT>(d, dsrc, e);
        rv_load<DT>(g, ddst, (int64_t)r * V + v);
        const float wi = w ? w[i] : 1.0f;
#pragma unroll
        for (int k = 0; k < L; k++) d[k] = __fadd_rn(d[k], w ? __fmul_rn(wi, g[k]) : g[k]);
        rv_store<DT>(dsrc, e, d);
    }
}

extern "C++" bool cuda_rows_dsrc_vec(OpCtx *ctx, Tensor *dsrc, const Tensor *ddst, const Tensor *idx, const Tensor *w) {
    const int64_t n = tensor_numel(idx), rows = ddst->shape[0], D = rows ? tensor_numel(ddst) / rows : 0;
    const int V = row_vectors((int)ddst->dtype, D, n > rows ? n : rows, dsrc, ddst, NULL);
    if (!V || n == 0 || (w && w->dtype != DT_F32)) return false;
    const unsigned nv = (unsigned)(n * V);
    const float *wp = w ? (const float *)w->data : NULL;
    if (ddst->dtype == DT_BF16)
        rows_dsrc_vec_kernel<DT_BF16><<<cuda_grid(nv), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(dsrc->data, ddst->data,
                                                                                          tensor_i32(idx), wp, rows, V, nv);
    else
        rows_dsrc_vec_kernel<DT_F32><<<cuda_grid(nv), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(dsrc->data, ddst->data,
                                                                                         tensor_i32(idx), wp, rows, V, nv);
    CUDA_KCHECK("rows_dsrc_vec_kernel");
    return true;
}
