// eltwise.cu — the GPU's memory-bound ops: activations, clamp, add/axpy/scale,
// fill and dtype-converting copies, broadcast multiply, row broadcasts and
// sums, bilinear resizing, global average pooling, channel slicing and top-k
// (the MoE's row gathers and scatters are rows.cu's). Signatures and contracts are
// ops_list.h's; the semantics (index arithmetic, tie rules, thresholds) are those of
// the reference kernels in ops/ref/ref_tmpl.h.
// reference: F.gelu, F.relu, torch.sigmoid, F.softplus, torch.clamp, torch.mul,
// F.interpolate(bilinear, align_corners=False), F.adaptive_avg_pool2d, torch.topk.
//
// Every argument carries its own dtype (F32 or BF16, read and written through
// ldf/stf/addf); arithmetic is float32. Nothing uses atomics: reductions are
// fixed trees over launch shapes that depend on tensor shapes only, and the
// scatter (resize backward) is written as a gather, so every result is
// bit-identical run to run.
#include "ops/cuda/common.cuh"
#include <string.h>
extern "C" {
#include "ops/ref/ref.h"   // mul_bcast_plan: the broadcast modes, shared with the CPU kernels
}

static void same_numel(const Tensor *a, const Tensor *b, const char *op) {
    CX_ASSERT(tensor_numel(a) == tensor_numel(b), "%s: %lld vs %lld elements", op, (long long)tensor_numel(a),
              (long long)tensor_numel(b));
}

// ---- activations ------------------------------------------------------------------------------
// One functor per activation: fwd(x), and bwd(dy, z) = the gradient to add,
// where z is the input x or, for relu and sigmoid, the output y (ops_list.h).
namespace {
struct Gelu {   // exact erf form: x·Φ(x); normcdff stays accurate in the lower tail
    static __device__ float fwd(float v) { return v * normcdff(v); }
    static __device__ float bwd(float d, float v) {
        return d * (normcdff(v) + v * expf(-0.5f * v * v) * 0.3989422804014327f);   // Φ + x·φ
    }
};
struct Relu {
    static __device__ float fwd(float v) { return v > 0 ? v : 0.0f; }   // NaN → 0 as the reference
    static __device__ float bwd(float d, float y) { return y > 0 ? d : 0.0f; }
};
struct Sigmoid {
    static __device__ float fwd(float v) { return 1.0f / (1.0f + expf(-v)); }
    static __device__ float bwd(float d, float y) { return d * y * (1.0f - y); }
};
struct Softplus {   // beta 1, threshold 20: the identity above it (PyTorch)
    static __device__ float fwd(float v) { return v > 20.0f ? v : log1pf(expf(v)); }
    static __device__ float bwd(float d, float v) { return v > 20.0f ? d : d / (1.0f + expf(-v)); }
};
}   // namespace

template <class F>
static __global__ void act_forward_kernel(void *y, int ydt, const void *x, int xdt, int64_t n) {
    CUDA_LOOP(i, n) stf(y, ydt, i, F::fwd(ldf(x, xdt, i)));   // y may alias x
}
template <class F>
static __global__ void act_backward_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *z, int zdt,
                                           int64_t n, int acc) {
    CUDA_LOOP(i, n) putf(dx, dxdt, i, F::bwd(ldf(dy, dydt, i), ldf(z, zdt, i)), acc);
}

// The same on 16-byte vectors (every tensor of dtype DT, aligned, n a multiple of the width).
template <class F, int DT>
static __global__ void act_forward_vec_kernel(void *y, const void *x, int nvec) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        float a[V];
        vld<DT>(a, x, v);
#pragma unroll
        for (int k = 0; k < V; k++) a[k] = F::fwd(a[k]);
        vst<DT>(y, v, a);
    }
}
template <class F, int DT>
static __global__ void act_backward_vec_kernel(void *dx, const void *dy, const void *z, int nvec, int acc) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        float d[V], zv[V], o[V];
        vld<DT>(d, dy, v);
        vld<DT>(zv, z, v);
        if (acc) vld<DT>(o, dx, v);
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float g = F::bwd(d[k], zv[k]);
            o[k] = acc ? o[k] + g : g + 0.0f;   // first write: putf's = v + 0
        }
        vst<DT>(dx, v, o);
    }
}

// Whether a, b, c (NULL: absent) of n elements take the vector path (one dtype, aligned,
// n a multiple of the width). CAMOXPERT_FUSE=0 keeps the scalar kernels too (the
// pre-issue-27 kernels, for side-by-side timing).
static bool ew_vec(const Tensor *a, const Tensor *b, const Tensor *c, int64_t n) {
    static int on = -1;
    if (on < 0) on = !(getenv("CAMOXPERT_FUSE") && !strcmp(getenv("CAMOXPERT_FUSE"), "0"));
    const int dt = (int)a->dtype;
    return on && (!b || (int)b->dtype == dt) && (!c || (int)c->dtype == dt) &&
           vec_ok(dt, n, n, a->data, b ? b->data : NULL, c ? c->data : NULL);
}

template <class F>
static void act_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const char *op) {
    same_numel(y, x, op);
    int64_t n = tensor_numel(x);
    if (n == 0) return;
    if (ew_vec(x, y, NULL, n)) {
        const int nvec = (int)(n / (x->dtype == DT_BF16 ? 8 : 4));
        if (x->dtype == DT_BF16) act_forward_vec_kernel<F, DT_BF16><<<LAUNCH_1D(nvec)>>>(y->data, x->data, nvec);
        else act_forward_vec_kernel<F, DT_F32><<<LAUNCH_1D(nvec)>>>(y->data, x->data, nvec);
    } else {
        act_forward_kernel<F><<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, op), x->data, cuda_fdt(x, op), n);
    }
    CUDA_KCHECK(op);
}
template <class F>
static void act_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *z, const char *op) {
    if (!dx) return;
    same_numel(dx, z, op);
    same_numel(dy, z, op);
    int64_t n = tensor_numel(z);
    if (n == 0) return;
    if (ew_vec(z, dy, dx, n)) {
        const int nvec = (int)(n / (z->dtype == DT_BF16 ? 8 : 4)), acc = cuda_acc(ctx, dx);
        if (z->dtype == DT_BF16)
            act_backward_vec_kernel<F, DT_BF16><<<LAUNCH_1D(nvec)>>>(dx->data, dy->data, z->data, nvec, acc);
        else
            act_backward_vec_kernel<F, DT_F32><<<LAUNCH_1D(nvec)>>>(dx->data, dy->data, z->data, nvec, acc);
    } else {
        act_backward_kernel<F><<<LAUNCH_1D(n)>>>(dx->data, cuda_fdt(dx, op), dy->data, cuda_fdt(dy, op), z->data,
                                                cuda_fdt(z, op), n, cuda_acc(ctx, dx));
    }
    CUDA_KCHECK(op);
}

extern "C" void cuda_gelu_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    act_forward<Gelu>(ctx, y, x, "gelu_forward");
}
extern "C" void cuda_gelu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x) {
    act_backward<Gelu>(ctx, dx, dy, x, "gelu_backward");
}
extern "C" void cuda_relu_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    act_forward<Relu>(ctx, y, x, "relu_forward");
}
extern "C" void cuda_relu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y) {
    act_backward<Relu>(ctx, dx, dy, y, "relu_backward");
}
extern "C" void cuda_sigmoid_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    act_forward<Sigmoid>(ctx, y, x, "sigmoid_forward");
}
extern "C" void cuda_sigmoid_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y) {
    act_backward<Sigmoid>(ctx, dx, dy, y, "sigmoid_backward");
}
extern "C" void cuda_softplus_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    act_forward<Softplus>(ctx, y, x, "softplus_forward");
}
extern "C" void cuda_softplus_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x) {
    act_backward<Softplus>(ctx, dx, dy, x, "softplus_backward");
}

// reference: torch.clamp. The bounds are first rounded to x's dtype, as PyTorch
// converts clamp's scalars (and the float32 reference compares against
// (real)lo, (real)hi): a bf16 x sitting on a bound counts as on it. NaN passes.
static float clamp_bound(double v, int xdt) {
    float f = (float)v;
    return xdt == DT_BF16 ? __bfloat162float(__float2bfloat16(f)) : f;
}

static __global__ void clamp_forward_kernel(void *y, int ydt, const void *x, int xdt, float lo, float hi, int64_t n) {
    CUDA_LOOP(i, n) {
        float v = ldf(x, xdt, i);
        stf(y, ydt, i, v < lo ? lo : v > hi ? hi : v);
    }
}
// The gradient passes where lo <= x <= hi (the boundaries included); written
// (first write, !acc) it is 0 outside.
static __global__ void clamp_backward_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt,
                                             float lo, float hi, int64_t n, int acc) {
    CUDA_LOOP(i, n) {
        float v = ldf(x, xdt, i);
        if (v >= lo && v <= hi) putf(dx, dxdt, i, ldf(dy, dydt, i), acc);
        else if (!acc) stf(dx, dxdt, i, 0.0f);
    }
}

extern "C" void cuda_clamp_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi) {
    same_numel(y, x, "clamp_forward");
    int64_t n = tensor_numel(x);
    int xdt = cuda_fdt(x, "clamp_forward");
    clamp_forward_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, "clamp_forward"), x->data, xdt, clamp_bound(lo, xdt),
                                           clamp_bound(hi, xdt), n);
    CUDA_KCHECK("clamp_forward_kernel");
}
extern "C" void cuda_clamp_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi) {
    const char *op = "clamp_backward";
    if (!dx) return;
    same_numel(dx, x, op);
    same_numel(dy, x, op);
    int64_t n = tensor_numel(x);
    int xdt = cuda_fdt(x, op);
    clamp_backward_kernel<<<LAUNCH_1D(n)>>>(dx->data, cuda_fdt(dx, op), dy->data, cuda_fdt(dy, op), x->data, xdt,
                                            clamp_bound(lo, xdt), clamp_bound(hi, xdt), n, cuda_acc(ctx, dx));
    CUDA_KCHECK("clamp_backward_kernel");
}

// ---- add, axpy, scale, fill, copy -------------------------------------------------------------
static __global__ void add_kernel(void *y, int ydt, const void *a, int adt, const void *b, int bdt, int64_t n) {
    CUDA_LOOP(i, n) stf(y, ydt, i, ldf(a, adt, i) + ldf(b, bdt, i));   // y may alias a or b
}
static __global__ void axpy_kernel(void *y, int ydt, float alpha, const void *x, int xdt, int64_t n, int acc) {
    CUDA_LOOP(i, n) putf(y, ydt, i, alpha * ldf(x, xdt, i), acc);
}
static __global__ void scale_kernel(void *y, int ydt, float alpha, int64_t n) {
    CUDA_LOOP(i, n) stf(y, ydt, i, alpha * ldf(y, ydt, i));
}
static __global__ void fill_kernel(void *y, int ydt, float v, int64_t n) {
    CUDA_LOOP(i, n) stf(y, ydt, i, v);
}
static __global__ void convert_kernel(void *dst, int ddt, const void *src, int sdt, int64_t n) {
    CUDA_LOOP(i, n) stf(dst, ddt, i, ldf(src, sdt, i));
}

template <int DT>
static __global__ void add_vec_kernel(void *y, const void *a, const void *b, int nvec) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        float p[V], q[V];
        vld<DT>(p, a, v);
        vld<DT>(q, b, v);
#pragma unroll
        for (int k = 0; k < V; k++) p[k] += q[k];
        vst<DT>(y, v, p);
    }
}
template <int DT>
static __global__ void axpy_vec_kernel(void *y, float alpha, const void *x, int nvec, int acc) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        float p[V], o[V];
        vld<DT>(p, x, v);
        if (acc) vld<DT>(o, y, v);
#pragma unroll
        for (int k = 0; k < V; k++) o[k] = acc ? o[k] + alpha * p[k] : alpha * p[k] + 0.0f;
        vst<DT>(y, v, o);
    }
}

extern "C" void cuda_add_forward(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b) {
    const char *op = "add_forward";
    same_numel(y, a, op);
    same_numel(b, a, op);
    int64_t n = tensor_numel(a);
    if (n == 0) return;
    if (ew_vec(a, b, y, n)) {
        const int nvec = (int)(n / (a->dtype == DT_BF16 ? 8 : 4));
        if (a->dtype == DT_BF16) add_vec_kernel<DT_BF16><<<LAUNCH_1D(nvec)>>>(y->data, a->data, b->data, nvec);
        else add_vec_kernel<DT_F32><<<LAUNCH_1D(nvec)>>>(y->data, a->data, b->data, nvec);
    } else {
        add_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, op), a->data, cuda_fdt(a, op), b->data, cuda_fdt(b, op), n);
    }
    CUDA_KCHECK("add_kernel");
}

extern "C" void cuda_axpy(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x) {
    same_numel(y, x, "axpy");
    int64_t n = tensor_numel(x);
    if (n == 0) return;
    const int acc = cuda_acc(ctx, y);
    if (ew_vec(x, y, NULL, n)) {
        const int nvec = (int)(n / (x->dtype == DT_BF16 ? 8 : 4));
        if (x->dtype == DT_BF16) axpy_vec_kernel<DT_BF16><<<LAUNCH_1D(nvec)>>>(y->data, (float)alpha, x->data, nvec, acc);
        else axpy_vec_kernel<DT_F32><<<LAUNCH_1D(nvec)>>>(y->data, (float)alpha, x->data, nvec, acc);
    } else {
        axpy_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, "axpy"), (float)alpha, x->data, cuda_fdt(x, "axpy"), n, acc);
    }
    CUDA_KCHECK("axpy_kernel");
}

extern "C" void cuda_scale_inplace(OpCtx *ctx, Tensor *y, double alpha) {
    int64_t n = tensor_numel(y);
    scale_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, "scale_inplace"), (float)alpha, n);
    CUDA_KCHECK("scale_kernel");
}

extern "C" void cuda_fill(OpCtx *ctx, Tensor *y, double v) {
    int64_t n = tensor_numel(y);
    if (v == 0) {   // zeros are all-zero bits in every dtype: cudaMemsetAsync's wide stores (gradient buffers: 561 fills a step)
        if (n > 0) CUDA_CHECK(cudaMemsetAsync(y->data, 0, (size_t)n * dtype_size(y->dtype), cuda_stream(ctx)));
        return;
    }
    fill_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, "fill"), (float)v, n);
    CUDA_KCHECK("fill_kernel");
}

// Same dtype (any, I32 included): a device-to-device copy on the stream;
// F32 <-> BF16: converted element by element (bf16 rounds to nearest even).
extern "C" void cuda_copy(OpCtx *ctx, Tensor *dst, const Tensor *src) {
    same_numel(dst, src, "copy");
    int64_t n = tensor_numel(src);
    if (dst->dtype == src->dtype) {
        if (dst->data != src->data && n > 0)
            CUDA_CHECK(cudaMemcpyAsync(dst->data, src->data, tensor_nbytes(src), cudaMemcpyDeviceToDevice,
                                       cuda_stream(ctx)));
        return;
    }
    convert_kernel<<<LAUNCH_1D(n)>>>(dst->data, cuda_fdt(dst, "copy"), src->data, cuda_fdt(src, "copy"), n);
    CUDA_KCHECK("convert_kernel");
}

// ---- per-column sums ------------------------------------------------------------------------------
// How colsum puts its sums: = (a forward's output), += (a gradient), or a gradient's
// first write (putf: = v + 0).
enum { COL_STORE = 0, COL_ADD = 1, COL_FIRST = 2 };
static int col_put(const OpCtx *ctx, const Tensor *t) { return cuda_acc(ctx, t) ? COL_ADD : COL_FIRST; }

// out[g·K + k] (= or +=) (1/div)·Σ_a a[i]·b[i] over i = (g·A + a)·K + k, with b
// NULL meaning 1: the reduction over rows shared by mul's ds, rows_sum and
// avgpool. Pass 1: block (TW columns, TH row lanes) sums one chunk of rows into
// a partial (a fixed shared-memory tree over the lanes); pass 2: one warp per
// column sums the partials in chunk order. The chunking depends on (A, K) only.
#define COL_MAX_CHUNKS 512
namespace {   // file-local type
struct ColPlan {
    dim3 block, grid;
    int64_t rows, nchunk;   // rows per chunk, chunks per group
};
}

static ColPlan col_plan(int64_t G, int64_t A, int64_t K) {
    int tw = pow2_at_least(K, 32), th = CUDA_BLOCK / tw;
    int64_t rpt = (A + (int64_t)th * COL_MAX_CHUNKS - 1) / ((int64_t)th * COL_MAX_CHUNKS);   // rows per thread
    if (rpt < 4) rpt = 4;
    ColPlan p;
    p.rows = th * rpt;
    p.nchunk = (A + p.rows - 1) / p.rows;
    CX_ASSERT(G >= 1 && G <= 65535, "column sums: %lld groups", (long long)G);
    p.block = dim3((unsigned)tw, (unsigned)th);
    p.grid = dim3((unsigned)((K + tw - 1) / tw), (unsigned)p.nchunk, (unsigned)G);
    return p;
}

// Sums are double (as the CPU kernels): a γ- or scale-gradient sums many terms that nearly cancel.
static __global__ void colsum_partial_kernel(double *part, const void *a, int adt, const void *b, int bdt, int64_t A,
                                             int64_t K, int64_t rows) {
    __shared__ double sh[CUDA_BLOCK];
    int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, g = blockIdx.z;
    int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < A ? r0 + rows : A;
    double s = 0;
    if (k < K)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            int64_t i = (g * A + r) * K + k;
            s += b ? (double)ldf(a, adt, i) * ldf(b, bdt, i) : ldf(a, adt, i);
        }
    // the TH lanes of each column, halved in a fixed order
    int t = threadIdx.y * blockDim.x + threadIdx.x;
    sh[t] = s;
    __syncthreads();
    for (int h = blockDim.y >> 1; h > 0; h >>= 1) {
        if ((int)threadIdx.y < h) sh[t] += sh[t + h * blockDim.x];
        __syncthreads();
    }
    if (threadIdx.y == 0 && k < K) part[(g * gridDim.y + blockIdx.y) * K + k] = sh[t];
}

static __global__ void colsum_finish_kernel(void *out, int odt, const double *part, int64_t G, int64_t K, int64_t nchunk,
                                            float div, int accumulate) {
    int64_t j = WARP_ID();
    if (j >= G * K) return;   // whole warps leave together
    int64_t g = j / K, k = j - g * K;
    const double *p = part + g * nchunk * K + k;
    double s = 0;
    for (int64_t c = threadIdx.x & 31; c < nchunk; c += 32) s += p[c * K];
    float v = (float)(warp_sum(s) / div);
    if ((threadIdx.x & 31) == 0) {
        if (accumulate == COL_STORE) stf(out, odt, j, v);
        else putf(out, odt, j, v, accumulate == COL_ADD);
    }
}

static void colsum(OpCtx *ctx, void *out, int odt, const void *a, int adt, const void *b, int bdt, int64_t G, int64_t A,
                   int64_t K, float div, int accumulate) {
    if (G * K == 0) return;
    ColPlan p = col_plan(G, A < 1 ? 1 : A, K);
    ArenaMark mark = arena_mark(ctx->scratch);
    double *part = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(G * p.nchunk * K));
    colsum_partial_kernel<<<p.grid, p.block, 0, cuda_stream(ctx)>>>(part, a, adt, b, bdt, A, K, p.rows);
    CUDA_KCHECK("colsum_partial_kernel");
    colsum_finish_kernel<<<warps_grid(G * K), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(out, odt, part, G, K, p.nchunk, div,
                                                                                 accumulate);
    CUDA_KCHECK("colsum_finish_kernel");
    arena_release(ctx->scratch, mark);
}

// ---- broadcast multiply ---------------------------------------------------------------------------
// x viewed as (N, P, C); s indexed as n·sn + p·sp + c·sc (mul_bcast_plan).
static __device__ __forceinline__ int64_t mul_sidx(const MulBcast &b, int64_t i) {
    int64_t c = i % b.C, t = i / b.C, p = t % b.P, n = t / b.P;
    return n * b.sn + p * b.sp + c * b.sc;
}

static __global__ void mul_forward_kernel(void *y, int ydt, const void *x, int xdt, const void *s, int sdt, MulBcast b,
                                          int64_t n) {
    CUDA_LOOP(i, n) stf(y, ydt, i, ldf(x, xdt, i) * ldf(s, sdt, mul_sidx(b, i)));   // y may alias x
}
static __global__ void mul_dx_kernel(void *dx, int dxdt, const void *dy, int dydt, const void *s, int sdt, MulBcast b,
                                     int64_t n, int acc) {
    CUDA_LOOP(i, n) putf(dx, dxdt, i, ldf(dy, dydt, i) * ldf(s, sdt, mul_sidx(b, i)), acc);
}
// ds += dy·x where s is element-wise (no broadcast axes).
static __global__ void prod_add_kernel(void *ds, int dsdt, const void *dy, int dydt, const void *x, int xdt,
                                       int64_t n, int acc) {
    CUDA_LOOP(i, n) putf(ds, dsdt, i, ldf(dy, dydt, i) * ldf(x, xdt, i), acc);
}
// Per-pixel scales: out[g·K + k] += Σ over (a, b) of dy·x at ((g·A + a)·K + k)·B + b,
// B = C channels. One warp per output; the lanes walk the flattened (a, b)
// range, so a few channels and many images keep every lane busy.
static __global__ void group_dot_kernel(void *out, int odt, const void *u, int udt, const void *v, int vdt, int64_t G,
                                        int64_t A, int64_t K, int64_t B, int acc) {
    int64_t j = WARP_ID();
    if (j >= G * K) return;
    int64_t g = j / K, k = j - g * K;
    double s = 0;
    for (int64_t t = threadIdx.x & 31; t < A * B; t += 32) {
        int64_t a = t / B, i = ((g * A + a) * K + k) * B + (t - a * B);
        s += (double)ldf(u, udt, i) * ldf(v, vdt, i);
    }
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) putf(out, odt, j, (float)s, acc);
}

// Per-pixel scales of each image (s (N,H,W,1)) with both gradients wanted, in one pass: a
// warp per pixel reads dy once for dx += dy·s and for ds += Σ_c dy·x (the lanes and the
// tree of group_dot_kernel, so ds is bit for bit the same).
static __global__ void mul_pixel_backward_kernel(void *dx, int dxdt, void *ds, int dsdt, const void *dy, int dydt,
                                                 const void *x, int xdt, const void *s, int sdt, int64_t R, int64_t C,
                                                 int dx_acc, int ds_acc) {
    int64_t j = WARP_ID();
    if (j >= R) return;   // whole warps leave together
    const float sj = ldf(s, sdt, j);
    double acc = 0;
    for (int64_t c = threadIdx.x & 31; c < C; c += 32) {
        const int64_t i = j * C + c;
        const float d = ldf(dy, dydt, i);
        putf(dx, dxdt, i, d * sj, dx_acc);
        acc += (double)d * ldf(x, xdt, i);
    }
    acc = warp_sum(acc);
    if ((threadIdx.x & 31) == 0) putf(ds, dsdt, j, (float)acc, ds_acc);
}

extern "C" void cuda_mul_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s) {
    const char *op = "mul_forward";
    same_numel(y, x, op);
    MulBcast b = mul_bcast_plan(x, s);
    int64_t n = tensor_numel(x);
    if (n == 0) return;
    mul_forward_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, op), x->data, cuda_fdt(x, op), s->data, cuda_fdt(s, op),
                                         b, n);
    CUDA_KCHECK("mul_forward_kernel");
}

extern "C" void cuda_mul_backward(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x,
                                  const Tensor *s) {
    const char *op = "mul_backward";
    same_numel(dy, x, op);
    MulBcast b = mul_bcast_plan(x, s);
    int64_t n = tensor_numel(x);
    if (n == 0) return;
    int dydt = cuda_fdt(dy, op), xdt = cuda_fdt(x, op);
    if (dx && ds && !b.sc && b.sp == 1 && b.sn == b.P) {   // a scale per pixel of each image: one pass
        same_numel(dx, x, op);
        same_numel(ds, s, op);
        mul_pixel_backward_kernel<<<warps_grid(b.N * b.P), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
            dx->data, cuda_fdt(dx, op), ds->data, cuda_fdt(ds, op), dy->data, dydt, x->data, xdt, s->data,
            cuda_fdt(s, op), b.N * b.P, b.C, cuda_acc(ctx, dx), cuda_acc(ctx, ds));
        CUDA_KCHECK("mul_pixel_backward_kernel");
        return;
    }
    if (dx) {
        same_numel(dx, x, op);
        mul_dx_kernel<<<LAUNCH_1D(n)>>>(dx->data, cuda_fdt(dx, op), dy->data, dydt, s->data, cuda_fdt(s, op), b, n,
                                        cuda_acc(ctx, dx));
        CUDA_KCHECK("mul_dx_kernel");
    }
    if (!ds) return;
    same_numel(ds, s, op);
    int dsdt = cuda_fdt(ds, op);
    // ds sums dy·x over the axes whose stride in s is 0; as a (G, A, K, B) view
    // of x, every ds element j = g·K + k sums over a and b.
    if (b.sc && b.sp) {   // element-wise: nothing to sum
        prod_add_kernel<<<LAUNCH_1D(n)>>>(ds->data, dsdt, dy->data, dydt, x->data, xdt, n, cuda_acc(ctx, ds));
        CUDA_KCHECK("prod_add_kernel");
    } else if (b.sc) {    // (C) or (N, C): sums over rows
        int per_image = b.sn != 0;
        colsum(ctx, ds->data, dsdt, dy->data, dydt, x->data, xdt, per_image ? b.N : 1, per_image ? b.P : b.N * b.P, b.C,
               1.0f, col_put(ctx, ds));
    } else {              // (N,H,W,1) or (1,H,W,1): sums over channels (and images)
        int per_image = b.sn != 0;
        group_dot_kernel<<<warps_grid(per_image ? b.N * b.P : b.P), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
            ds->data, dsdt, dy->data, dydt, x->data, xdt, 1, per_image ? 1 : b.N, per_image ? b.N * b.P : b.P, b.C,
            cuda_acc(ctx, ds));
        CUDA_KCHECK("group_dot_kernel");
    }
}

// ---- rows of a broadcast vector ---------------------------------------------------------------------
static __global__ void rows_add_bcast_kernel(void *y, int ydt, const void *b, int bdt, int64_t n, int64_t L) {
    CUDA_LOOP(i, n) addf(y, ydt, i, ldf(b, bdt, i % L));
}

extern "C" void cuda_rows_add_bcast(OpCtx *ctx, Tensor *y, const Tensor *b) {
    int64_t L = tensor_numel(b), n = tensor_numel(y);
    CX_ASSERT(L > 0 && n % L == 0, "rows_add_bcast: %lld elements into %lld", (long long)L, (long long)n);
    rows_add_bcast_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, "rows_add_bcast"), b->data,
                                            cuda_fdt(b, "rows_add_bcast"), n, L);
    CUDA_KCHECK("rows_add_bcast_kernel");
}

// db (L) += Σ over the R rows of dy (R, L)
extern "C" void cuda_rows_sum(OpCtx *ctx, Tensor *db, const Tensor *dy) {
    int64_t L = tensor_numel(db), n = tensor_numel(dy);
    CX_ASSERT(L > 0 && n % L == 0, "rows_sum: %lld elements into %lld", (long long)n, (long long)L);
    colsum(ctx, db->data, cuda_fdt(db, "rows_sum"), dy->data, cuda_fdt(dy, "rows_sum"), NULL, 0, 1, n / L, L, 1.0f,
           col_put(ctx, db));
}

// ---- bilinear resize ---------------------------------------------------------------------------------
// reference: F.interpolate(mode='bilinear', align_corners=False). The source
// coordinate is computed in float exactly as the float32 reference computes it
// (sc·(dst + 0.5) − 0.5, each step rounded: __fmul_rn/__fsub_rn keep nvcc from
// fusing them into an FMA), so both pick the same taps and weights.
namespace {   // file-local type
struct Lerp {
    int i0, i1;     // the two source indices (equal at the last one)
    float l0, l1;   // their weights
};
}

// sc: 1/scale in the scale form, in/out in the size form (computed on the host in float).
static __device__ __forceinline__ Lerp resize_lerp(int64_t dst, int64_t in, float sc) {
    float src = __fsub_rn(__fmul_rn(sc, __fadd_rn((float)dst, 0.5f)), 0.5f);
    if (src < 0) src = 0;   // negative coordinates clamp to 0 (PyTorch)
    int64_t i0 = (int64_t)src;
    if (i0 > in - 1) i0 = in - 1;
    float l1 = __fsub_rn(src, (float)i0);
    if (l1 > 1) l1 = 1;
    Lerp L = { (int)i0, (int)(i0 + (i0 < in - 1 ? 1 : 0)), __fsub_rn(1.0f, l1), l1 };
    return L;
}

static float resize_inv_scale(double scale, int64_t in, int64_t out) {
    return scale > 0 ? (float)(1.0 / scale) : (float)in / (float)out;
}

static __global__ void resize_forward_kernel(void *y, int ydt, const void *x, int xdt, int64_t H, int64_t W, int64_t C,
                                             int64_t Ho, int64_t Wo, float sch, float scw, int64_t n) {
    CUDA_LOOP(i, n) {
        int64_t c = i % C, t = i / C, ow = t % Wo;
        t /= Wo;
        int64_t oh = t % Ho, img = t / Ho;
        Lerp lh = resize_lerp(oh, H, sch), lw = resize_lerp(ow, W, scw);
        int64_t r0 = (img * H + lh.i0) * W, r1 = (img * H + lh.i1) * W;
        float top = lw.l0 * ldf(x, xdt, (r0 + lw.i0) * C + c) + lw.l1 * ldf(x, xdt, (r0 + lw.i1) * C + c);
        float bot = lw.l0 * ldf(x, xdt, (r1 + lw.i0) * C + c) + lw.l1 * ldf(x, xdt, (r1 + lw.i1) * C + c);
        stf(y, ydt, i, lh.l0 * top + lh.l1 * bot);
    }
}

extern "C" void cuda_resize_bilinear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w) {
    const char *op = "resize_bilinear_forward";
    CX_ASSERT(x->ndim == 4 && y->ndim == 4 && T_N(y) == T_N(x) && T_C(y) == T_C(x), "%s: N or C differ", op);
    int64_t H = T_H(x), W = T_W(x), C = T_C(x), Ho = T_H(y), Wo = T_W(y), n = tensor_numel(y);
    if (n == 0) return;
    CX_ASSERT(H > 0 && W > 0 && H <= INT32_MAX && W <= INT32_MAX, "%s: input %lldx%lld", op, (long long)H,
              (long long)W);
    resize_forward_kernel<<<LAUNCH_1D(n)>>>(y->data, cuda_fdt(y, op), x->data, cuda_fdt(x, op), H, W, C, Ho, Wo,
                                            resize_inv_scale(scale_h, H, Ho), resize_inv_scale(scale_w, W, Wo), n);
    CUDA_KCHECK("resize_forward_kernel");
}

// The backward is a gather: dx[ih] collects every output row oh whose i0 or i1
// is ih. i0 is non-decreasing in oh (each rounding step is monotonic), and
// i1 == ih means i0 is ih−1 or ih, so those rows are the contiguous range
// {oh : ih−1 <= i0(oh) <= ih}, found by binary search once per input index.
static __device__ int resize_first_at_least(int target, int64_t in, int64_t out, float sc) {
    int lo = 0, hi = (int)out;   // the first oh with i0(oh) >= target lies in [lo, hi]
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (resize_lerp(mid, in, sc).i0 >= target) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

// Tables for both axes: the lerps of every output index and the output range
// of every input index (4 tables in one launch: Ho, Wo, H, W entries).
static __global__ void resize_tables_kernel(Lerp *lh, Lerp *lw, int2 *rh, int2 *rw, int64_t H, int64_t W, int64_t Ho,
                                            int64_t Wo, float sch, float scw) {
    CUDA_LOOP(e, Ho + Wo + H + W) {
        int64_t t = e;
        if (t < Ho) { lh[t] = resize_lerp(t, H, sch); continue; }
        t -= Ho;
        if (t < Wo) { lw[t] = resize_lerp(t, W, scw); continue; }
        t -= Wo;
        int in = (int)(t < H ? H : W), out = (int)(t < H ? Ho : Wo), ix = (int)(t < H ? t : t - H);
        float sc = t < H ? sch : scw;
        int2 r = make_int2(resize_first_at_least(ix - 1, in, out, sc), resize_first_at_least(ix + 1, in, out, sc));
        if (t < H) rh[ix] = r;
        else rw[ix] = r;
    }
}

// The weight of source index ix in an output's lerp (both taps at the last index).
static __device__ __forceinline__ float lerp_weight(const Lerp &L, int ix) {
    return (L.i0 == ix ? L.l0 : 0.0f) + (L.i1 == ix ? L.l1 : 0.0f);
}

static __global__ void resize_backward_kernel(void *dx, int dxdt, const void *dy, int dydt, const Lerp *lh,
                                              const Lerp *lw, const int2 *rh, const int2 *rw, int64_t H, int64_t W,
                                              int64_t C, int64_t Ho, int64_t Wo, int64_t n, int accumulate) {
    CUDA_LOOP(i, n) {
        int64_t c = i % C, t = i / C;
        int iw = (int)(t % W);
        t /= W;
        int ih = (int)(t % H);
        int64_t img = t / H;
        int2 hr = rh[ih], wr = rw[iw];
        float acc = 0;
        for (int oh = hr.x; oh < hr.y; oh++) {
            const int64_t row = (img * Ho + oh) * Wo;
            float part = 0;
            for (int ow = wr.x; ow < wr.y; ow++) part += lerp_weight(lw[ow], iw) * ldf(dy, dydt, (row + ow) * C + c);
            acc += lerp_weight(lh[oh], ih) * part;
        }
        putf(dx, dxdt, i, acc, accumulate);
    }
}

extern "C" void cuda_resize_bilinear_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h,
                                              double scale_w) {
    const char *op = "resize_bilinear_backward";
    CX_ASSERT(dx->ndim == 4 && dy->ndim == 4 && T_N(dy) == T_N(dx) && T_C(dy) == T_C(dx), "%s: N or C differ", op);
    int64_t H = T_H(dx), W = T_W(dx), C = T_C(dx), Ho = T_H(dy), Wo = T_W(dy), n = tensor_numel(dx);
    if (n == 0 || Ho == 0 || Wo == 0) return;
    CX_ASSERT(Ho <= INT32_MAX && Wo <= INT32_MAX && H <= INT32_MAX && W <= INT32_MAX, "%s: sizes", op);
    float sch = resize_inv_scale(scale_h, H, Ho), scw = resize_inv_scale(scale_w, W, Wo);
    ArenaMark mark = arena_mark(ctx->scratch);
    Lerp *lh = (Lerp *)cuda_scratch(ctx, sizeof(Lerp) * (size_t)Ho);
    Lerp *lw = (Lerp *)cuda_scratch(ctx, sizeof(Lerp) * (size_t)Wo);
    int2 *rh = (int2 *)cuda_scratch(ctx, sizeof(int2) * (size_t)H);
    int2 *rw = (int2 *)cuda_scratch(ctx, sizeof(int2) * (size_t)W);
    resize_tables_kernel<<<LAUNCH_1D(Ho + Wo + H + W)>>>(lh, lw, rh, rw, H, W, Ho, Wo, sch, scw);
    CUDA_KCHECK("resize_tables_kernel");
    resize_backward_kernel<<<LAUNCH_1D(n)>>>(dx->data, cuda_fdt(dx, op), dy->data, cuda_fdt(dy, op), lh, lw, rh, rw, H,
                                             W, C, Ho, Wo, n, cuda_acc(ctx, dx));
    CUDA_KCHECK("resize_backward_kernel");
    arena_release(ctx->scratch, mark);
}

// ---- global average pooling ----------------------------------------------------------------------
// reference: F.adaptive_avg_pool2d(x, 1). y (N, C) may be F32 beside a bf16 x.
extern "C" void cuda_avgpool_global_forward(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const char *op = "avgpool_global_forward";
    CX_ASSERT(x->ndim == 4, "%s: x must be (N,H,W,C)", op);
    int64_t N = T_N(x), HW = T_H(x) * T_W(x), C = T_C(x);
    CX_ASSERT(tensor_numel(y) == N * C, "%s: y has %lld elements, expected N·C = %lld", op, (long long)tensor_numel(y),
              (long long)(N * C));
    colsum(ctx, y->data, cuda_fdt(y, op), x->data, cuda_fdt(x, op), NULL, 0, N, HW, C, (float)HW, COL_STORE);
}

static __global__ void avgpool_backward_kernel(void *dx, int dxdt, const void *dy, int dydt, int64_t HW, int64_t C,
                                               int64_t n, int acc) {
    float hw = (float)HW;
    CUDA_LOOP(i, n) {
        int64_t c = i % C, img = i / (HW * C);
        putf(dx, dxdt, i, ldf(dy, dydt, img * C + c) / hw, acc);
    }
}

extern "C" void cuda_avgpool_global_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy) {
    const char *op = "avgpool_global_backward";
    CX_ASSERT(dx->ndim == 4, "%s: dx must be (N,H,W,C)", op);
    int64_t N = T_N(dx), HW = T_H(dx) * T_W(dx), C = T_C(dx), n = tensor_numel(dx);
    CX_ASSERT(tensor_numel(dy) == N * C, "%s: dy has %lld elements, expected N·C = %lld", op,
              (long long)tensor_numel(dy), (long long)(N * C));
    if (n == 0) return;
    avgpool_backward_kernel<<<LAUNCH_1D(n)>>>(dx->data, cuda_fdt(dx, op), dy->data, cuda_fdt(dy, op), HW, C, n,
                                              cuda_acc(ctx, dx));
    CUDA_KCHECK("avgpool_backward_kernel");
}

// ---- channel slicing ---------------------------------------------------------------------------
// dst[..., dc0 + c] (= or +=) src[..., sc0 + c] for c < nc, over every row.
static __global__ void channels_copy_kernel(void *dst, int ddt, int64_t Cd, int64_t dc0, const void *src, int sdt,
                                            int64_t Cs, int64_t sc0, int64_t nc, int accumulate, int64_t n) {
    CUDA_LOOP(e, n) {
        int64_t r = e / nc, c = e - r * nc;
        float v = ldf(src, sdt, r * Cs + sc0 + c);
        if (accumulate) addf(dst, ddt, r * Cd + dc0 + c, v);
        else stf(dst, ddt, r * Cd + dc0 + c, v);
    }
}

extern "C" void cuda_channels_copy(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc,
                                   int accumulate) {
    const char *op = "channels_copy";
    int64_t Cd = dst->shape[dst->ndim - 1], Cs = src->shape[src->ndim - 1], R = tensor_numel(src) / Cs;
    CX_ASSERT(tensor_numel(dst) / Cd == R && dc0 >= 0 && sc0 >= 0 && nc >= 0 && dc0 + nc <= Cd && sc0 + nc <= Cs,
              "%s: ranges", op);
    int64_t n = R * nc;
    if (n == 0) return;
    channels_copy_kernel<<<LAUNCH_1D(n)>>>(dst->data, cuda_fdt(dst, op), Cd, dc0, src->data, cuda_fdt(src, op), Cs, sc0,
                                           nc, accumulate, n);
    CUDA_KCHECK("channels_copy_kernel");
}

// ---- top-k -------------------------------------------------------------------------------------
// reference: torch.topk(x, k, dim=-1, sorted=True). Selection by rank, one
// thread per row (L is the expert count: small): pick j is the best element
// ordered strictly after pick j−1. NaN counts as the largest value; among equal
// values the lower index comes first.
static __device__ __forceinline__ bool topk_before(float a, int64_t ia, float b, int64_t ib) {
    if (isnan(a) || isnan(b)) return isnan(a) && (!isnan(b) || ia < ib);
    return a > b || (a == b && ia < ib);
}

static __global__ void topk_kernel(int32_t *idx, void *val, int vdt, const void *x, int xdt, int64_t R, int64_t L,
                                   int k) {
    CUDA_LOOP(r, R) {
        int64_t base = r * L, prev = -1;
        float pv = 0;
        for (int j = 0; j < k; j++) {
            int64_t best = -1;
            float bv = 0;
            for (int64_t l = 0; l < L; l++) {
                float v = ldf(x, xdt, base + l);
                if (prev >= 0 && !topk_before(pv, prev, v, l)) continue;
                if (best < 0 || topk_before(v, l, bv, best)) {
                    best = l;
                    bv = v;
                }
            }
            if (idx) idx[r * k + j] = (int32_t)best;
            if (val) stf(val, vdt, r * k + j, bv);
            prev = best;
            pv = bv;
        }
    }
}

extern "C" void cuda_topk_rows(OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k) {
    const char *op = "topk_rows";
    int64_t L = x->shape[x->ndim - 1], R = tensor_numel(x) / L;
    CX_ASSERT(k >= 1 && k <= L, "%s: k=%d with L=%lld", op, k, (long long)L);
    CX_ASSERT(!idx || (idx->dtype == DT_I32 && tensor_numel(idx) == R * k), "%s: idx must be I32 (R, k)", op);
    CX_ASSERT(!val || tensor_numel(val) == R * k, "%s: val must be (R, k)", op);
    if (R == 0) return;
    topk_kernel<<<LAUNCH_1D(R)>>>(idx ? tensor_i32(idx) : NULL, val ? val->data : NULL, val ? cuda_fdt(val, op) : 0,
                                  x->data, cuda_fdt(x, op), R, L, k);
    CUDA_KCHECK("topk_kernel");
}
