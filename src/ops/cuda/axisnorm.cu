// axisnorm.cu — normalisations along one axis and over a whole tensor, on the GPU:
// softmax and l2norm along an axis of (outer, L, inner), and the batch-maximum
// normalisation (maxnorm). Signatures and contracts are ops_list.h's; the semantics (eps
// placement, NaN and tie rules) are those of the reference kernels in ops/ref/ref_tmpl.h.
// reference: torch.softmax, F.normalize.
//
// Determinism: reduce.cuh's AxisPlan trees and common.cuh's block_reduce, over launch
// shapes that depend on the tensor's shape only: bit-identical run to run.
#include "ops/cuda/reduce.cuh"

// ---- softmax and l2norm along one axis ---------------------------------------------------------
// x viewed as (outer, L, inner); one AxisPlan problem per (outer, inner) pair.
static void axis_check(const Tensor *a, const Tensor *b, int64_t outer, int64_t L, int64_t inner, const char *op) {
    CX_ASSERT(outer >= 0 && L >= 1 && inner >= 1 && tensor_numel(a) == outer * L * inner &&
                  tensor_numel(b) == outer * L * inner,
              "%s: (outer %lld, L %lld, inner %lld) does not cover %lld elements", op, (long long)outer, (long long)L,
              (long long)inner, (long long)tensor_numel(a));
}

// Σ a·b along the axis at p, summed in double and reduced over the lanes. Every thread
// of the block takes part, whichever branch its column takes afterwards (a column past
// the end, !p.ok, adds nothing).
static __device__ __forceinline__ float axis_dot(AxisPos p, int64_t L, int64_t inner, const void *a, int adt, const void *b, int bdt) {
    double sd = 0;
    if (p.ok)
        for (int64_t l = threadIdx.y; l < L; l += blockDim.y) {
            int64_t i = p.base + l * inner;
            sd += (double)ldf(a, adt, i) * ldf(b, bdt, i);
        }
    return (float)lanes_reduce<false, double>(sd);
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
    float s = axis_dot(p, L, inner, dy, dydt, y, ydt);
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
    float s = axis_dot(p, L, inner, dy, dydt, x, xdt);
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
