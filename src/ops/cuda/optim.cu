// optim.cu — the optimizer on the GPU (ops_list.h adamw_update, grad_norm_clip,
// ema_blend): per-segment kernels over a float32 parameter table, with the
// per-element semantics of ops/cpu/optim.c computed in float32.
//
// The segment lists live on the host. Copying them to the device would cost a
// cudaMemcpy (and a synchronisation for pageable memory) every step, so they
// travel as kernel parameters instead: chunks of SEG_CHUNK segments passed by
// value (well under the 4 KB parameter limit), one launch per chunk, grid.y the
// segment within the chunk and grid.x a grid-stride loop inside the segment.
// The gradient norm stays on the device too: per-block partial sums, each in a
// slot of its own, summed in a fixed order by one final block (deterministic,
// no atomics), so the step reads it with the loss terms in one download.
#include "ops/cuda/common.cuh"
#include <math.h>

#define SEG_CHUNK 64

// At most this many blocks per segment (8 resident per SM, 256 threads each):
// enough to stream one large tensor at full bandwidth.
static unsigned seg_grid(const OpCtx *ctx, int64_t max_numel) {
    unsigned g = cuda_grid(max_numel), cap = 8u * (unsigned)ctx->cuda->prop.multiProcessorCount;
    return g < cap ? g : cap;
}

// A segment outside the table is a caller's bug.
static void check_seg(const char *op, const Tensor *t, int s, int64_t o, int64_t n) {
    CX_ASSERT(o >= 0 && n >= 0 && o + n <= tensor_numel(t), "%s: segment %d [%lld, +%lld) outside the table's %lld elements",
              op, s, (long long)o, (long long)n, (long long)tensor_numel(t));
}

// ---- AdamW ----------------------------------------------------------------------------------------
struct AdamChunk {
    int64_t offset[SEG_CHUNK], numel[SEG_CHUNK];
    float step_size[SEG_CHUNK], decay_mul[SEG_CHUNK], sqrt_bc2[SEG_CHUNK];
};
static_assert(sizeof(AdamChunk) + 64 < 4096, "AdamW's kernel parameters exceed 4 KB");

// p, m, v, g: the whole table (F32); gscale (1) F32 or NULL (1). Per element, as
// cpu_adamw_update: g·gscale rounds to float once there too (clip_grad_norm_
// scales the gradient in place), so the float product here is the same value.
static __global__ void __launch_bounds__(CUDA_BLOCK)
adamw_kernel(float *p, float *m, float *v, const float *g, const float *gscale, AdamChunk ck,
             float beta1, float one_m_beta1, float beta2, float one_m_beta2, float eps) {
    const int s = blockIdx.y;
    const int64_t o = ck.offset[s];
    const float gs = gscale ? *gscale : 1.f;
    const float step = ck.step_size[s], decay = ck.decay_mul[s], sqrt_bc2 = ck.sqrt_bc2[s];
    CUDA_LOOP(j, ck.numel[s]) {
        const int64_t k = o + j;
        const float gj = g[k] * gs;
        const float mj = beta1 * m[k] + one_m_beta1 * gj;
        const float vj = beta2 * v[k] + one_m_beta2 * gj * gj;
        m[k] = mj, v[k] = vj;
        p[k] = p[k] * decay - step * mj / (sqrtf(vj) / sqrt_bc2 + eps);
    }
}

extern "C" void cuda_adamw_update(OpCtx *ctx, Tensor *param, Tensor *m, Tensor *v, const Tensor *grad,
                                  const Tensor *gscale, const AdamSeg *seg, int nseg, double beta1, double beta2,
                                  double eps) {
    CX_ASSERT(param->dtype == DT_F32 && grad->dtype == DT_F32 && m->dtype == DT_F32 && v->dtype == DT_F32,
              "adamw_update: param, grad, m and v must be F32 on the GPU");
    CX_ASSERT(tensor_numel(grad) >= tensor_numel(param) && tensor_numel(m) >= tensor_numel(param) &&
              tensor_numel(v) >= tensor_numel(param), "adamw_update: grad, m or v smaller than the table");
    CX_ASSERT(!gscale || (gscale->dtype == DT_F32 && tensor_numel(gscale) == 1), "adamw_update: gscale must be F32 (1)");
    for (int c0 = 0; c0 < nseg; c0 += SEG_CHUNK) {
        const int cnt = nseg - c0 < SEG_CHUNK ? nseg - c0 : SEG_CHUNK;
        AdamChunk ck = {};
        int64_t maxn = 0;
        for (int s = 0; s < cnt; s++) {
            const AdamSeg *sg = &seg[c0 + s];
            check_seg("adamw_update", param, c0 + s, sg->offset, sg->numel);
            ck.offset[s] = sg->offset, ck.numel[s] = sg->numel;
            ck.step_size[s] = (float)sg->step_size, ck.decay_mul[s] = (float)sg->decay_mul;
            ck.sqrt_bc2[s] = (float)sg->sqrt_bc2;
            if (sg->numel > maxn) maxn = sg->numel;
        }
        adamw_kernel<<<dim3(seg_grid(ctx, maxn), (unsigned)cnt), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
            (float *)param->data, (float *)m->data, (float *)v->data, (const float *)grad->data,
            gscale ? (const float *)gscale->data : NULL, ck, (float)beta1, (float)(1 - beta1), (float)beta2,
            (float)(1 - beta2), (float)eps);
        CUDA_KCHECK("adamw_kernel");
    }
}

// ---- gradient norm ---------------------------------------------------------------------------------
// Segment s of a chunk is summed by nb = min(gridDim.x, ⌈numel/CUDA_BLOCK⌉)
// blocks, whose partials go to slots slot[s], ..., slot[s] + nb − 1: the host
// lays the slots out without gaps, so the final pass reads only real partials.
struct NormChunk {
    int64_t offset[SEG_CHUNK], numel[SEG_CHUNK], slot[SEG_CHUNK];
};
static_assert(sizeof(NormChunk) + 32 < 4096, "grad_norm_clip's kernel parameters exceed 4 KB");

static __host__ __device__ int64_t norm_blocks(int64_t numel, int64_t grid) {
    int64_t b = (numel + CUDA_BLOCK - 1) / CUDA_BLOCK;
    return b < grid ? b : grid;
}

static __global__ void __launch_bounds__(CUDA_BLOCK) sumsq_partial_kernel(float *part, const float *x, NormChunk ck) {
    const int s = blockIdx.y;
    const int64_t n = ck.numel[s], nb = norm_blocks(n, gridDim.x);
    if (blockIdx.x >= nb) return;   // the whole block: block_sum below is never half-entered
    const float *xs = x + ck.offset[s];
    float acc = 0.f;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += nb * blockDim.x) acc += xs[j] * xs[j];
    const float v = block_sum(acc);
    if (threadIdx.x == 0) part[ck.slot[s] + blockIdx.x] = v;
}

// One block: stats = [Σ x², ‖x‖, clip factor] from the partials in slot order.
static __global__ void __launch_bounds__(1024) norm_final_kernel(float *stats, const float *part, int64_t nslots,
                                                                 float max_norm) {
    float acc = 0.f;
    for (int64_t k = threadIdx.x; k < nslots; k += blockDim.x) acc += part[k];
    const float ss = block_sum(acc);
    if (threadIdx.x != 0) return;
    const float norm = sqrtf(ss);
    stats[0] = ss;
    stats[1] = norm;
    stats[2] = max_norm > 0.f && isfinite(norm) && norm > max_norm ? max_norm / (norm + 1e-6f) : 1.f;
}

// Chunk c0.. of the segments: its grid width, and (into *ck) its segments with
// their first slots, counted on from *nslots. Host arithmetic only.
static unsigned norm_chunk(const OpCtx *ctx, const Tensor *x, const AdamSeg *seg, int nseg, int c0, NormChunk *ck,
                           int64_t *nslots) {
    const int cnt = nseg - c0 < SEG_CHUNK ? nseg - c0 : SEG_CHUNK;
    int64_t maxn = 0;
    for (int s = 0; s < cnt; s++) maxn = seg[c0 + s].numel > maxn ? seg[c0 + s].numel : maxn;
    const unsigned grid = seg_grid(ctx, maxn);
    for (int s = 0; s < cnt; s++) {
        check_seg("grad_norm_clip", x, c0 + s, seg[c0 + s].offset, seg[c0 + s].numel);
        ck->offset[s] = seg[c0 + s].offset, ck->numel[s] = seg[c0 + s].numel, ck->slot[s] = *nslots;
        *nslots += norm_blocks(seg[c0 + s].numel, grid);
    }
    return grid;
}

extern "C" void cuda_grad_norm_clip(OpCtx *ctx, Tensor *stats, const Tensor *x, const AdamSeg *seg, int nseg,
                                    double max_norm) {
    CX_ASSERT(x->dtype == DT_F32 && stats->dtype == DT_F32 && tensor_numel(stats) == 3,
              "grad_norm_clip: x must be F32 and stats F32 (3)");
    cudaStream_t st = cuda_stream(ctx);
    Arena *sa = ctx->scratch;
    ArenaMark mk = arena_mark(sa);
    // First pass: how many partial slots; second: the launches, with the same layout.
    NormChunk ck = {};
    int64_t nslots = 0;
    for (int c0 = 0; c0 < nseg; c0 += SEG_CHUNK) norm_chunk(ctx, x, seg, nseg, c0, &ck, &nslots);
    float *part = (float *)cuda_scratch(ctx, (size_t)(nslots > 0 ? nslots : 1) * sizeof(float));
    nslots = 0;
    for (int c0 = 0; c0 < nseg; c0 += SEG_CHUNK) {
        ck = NormChunk{};
        const unsigned grid = norm_chunk(ctx, x, seg, nseg, c0, &ck, &nslots);
        const unsigned cnt = (unsigned)(nseg - c0 < SEG_CHUNK ? nseg - c0 : SEG_CHUNK);
        sumsq_partial_kernel<<<dim3(grid, cnt), CUDA_BLOCK, 0, st>>>(part, (const float *)x->data, ck);
        CUDA_KCHECK("sumsq_partial_kernel");
    }
    norm_final_kernel<<<1, 1024, 0, st>>>((float *)stats->data, part, nslots, (float)max_norm);
    CUDA_KCHECK("norm_final_kernel");
    arena_release(sa, mk);
}

// ---- EMA of the weights ------------------------------------------------------------------------------
struct EmaChunk {
    int64_t offset[SEG_CHUNK], numel[SEG_CHUNK];
    float one_m_decay[SEG_CHUNK];
    int copy[SEG_CHUNK];
};
static_assert(sizeof(EmaChunk) + 16 < 4096, "ema_blend's kernel parameters exceed 4 KB");

// decay·shadow + (1 − decay)·x written as shadow + (1 − decay)·(x − shadow): the
// same value, but with decay near 1 the rounding of the float product
// decay·shadow would be a sizeable part of the small update the double
// reference makes.
static __global__ void __launch_bounds__(CUDA_BLOCK) ema_kernel(float *shadow, const float *x, EmaChunk ck) {
    const int s = blockIdx.y;
    const int64_t o = ck.offset[s];
    const float a = ck.one_m_decay[s];
    const int copy = ck.copy[s];
    CUDA_LOOP(j, ck.numel[s]) {
        const int64_t k = o + j;
        shadow[k] = copy ? x[k] : fmaf(a, x[k] - shadow[k], shadow[k]);
    }
}

extern "C" void cuda_ema_blend(OpCtx *ctx, Tensor *shadow, const Tensor *x, const EmaSeg *seg, int nseg) {
    CX_ASSERT(shadow->dtype == DT_F32 && x->dtype == DT_F32, "ema_blend: shadow and x must be F32 on the GPU");
    CX_ASSERT(tensor_numel(shadow) >= tensor_numel(x), "ema_blend: the shadow is smaller than the table");
    for (int c0 = 0; c0 < nseg; c0 += SEG_CHUNK) {
        const int cnt = nseg - c0 < SEG_CHUNK ? nseg - c0 : SEG_CHUNK;
        EmaChunk ck = {};
        int64_t maxn = 0;
        for (int s = 0; s < cnt; s++) {
            const EmaSeg *sg = &seg[c0 + s];
            check_seg("ema_blend", x, c0 + s, sg->offset, sg->numel);
            ck.offset[s] = sg->offset, ck.numel[s] = sg->numel;
            ck.one_m_decay[s] = (float)(1 - sg->decay), ck.copy[s] = sg->copy != 0;
            if (sg->numel > maxn) maxn = sg->numel;
        }
        ema_kernel<<<dim3(seg_grid(ctx, maxn), (unsigned)cnt), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
            (float *)shadow->data, (const float *)x->data, ck);
        CUDA_KCHECK("ema_kernel");
    }
}
