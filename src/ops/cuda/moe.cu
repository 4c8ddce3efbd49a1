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
