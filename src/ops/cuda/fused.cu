// fused.cu — the fused element-wise ops whose backward sums per channel, on the GPU
// (ops_list.h residual_scale_forward/backward, gelu_bias_backward): one pass each way
// where the unfused sequence took two or three. Signatures and contracts are
// ops_list.h's; the semantics are the reference kernels' (ops/ref/ref_tmpl.h). The
// per-channel sums (dγ, the bias gradient) use reduce.cuh's ColPlan scheme: partials per
// chunk of rows in double, summed in chunk order, bit-identical run to run.
#include "ops/cuda/reduce.cuh"

// ---- the layer-scaled residual: y = x + γ ⊙ z ----------------------------------------------------
// reference: timm EdgeNeXt's x + gamma * z (ops_list.h residual_scale_forward). The
// forward is one element-wise pass (16-byte vectors where x, z, y share a dtype, C is a
// multiple of the vector width and the data are aligned); the backward is one pass over
// dy and z that writes dz and dx and leaves per-chunk partials of Σ dy·z for dγ (reduce.cuh's
// ColPlan scheme: deterministic), then one warp per channel sums them.
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
