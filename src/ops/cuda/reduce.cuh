// reduce.cuh — the deterministic reductions of the normalisation kernels (norm.cu,
// axisnorm.cu, fused.cu). Every sum is a fixed tree over a launch shape that depends only
// on the tensor's shape (never on the GPU's SM count, never atomics), so a result is
// bit-identical run to run. Two schemes cover everything:
//   * along an axis of (outer, L, inner) (softmax, l2norm, LayerNorm rows): a block holds
//     whole problems, lanes striding along L, combined in shared memory (AxisPlan,
//     lanes_reduce);
//   * per channel over millions of rows (BatchNorm, LayerNorm's dw/db, the fused ops' dγ
//     and bias gradients): blocks over row chunks write per-chunk partials to scratch,
//     then one warp per channel sums the partials in chunk order (ColPlan, chunks_sum).
#pragma once
#include "ops/cuda/common.cuh"

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

static inline AxisPlan axis_plan(int64_t outer, int64_t L, int64_t inner) {
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

static inline ColPlan col_plan(int64_t M, int64_t C) {
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

// The second pass: channel c's partials summed in chunk order by one warp
// (lane j takes chunks j, j+32, ..., then the shuffle tree). Every lane gets it.
static __device__ __forceinline__ double chunks_sum(const double *p, int64_t nchunk, int64_t C, int64_t c) {
    double s = 0;
    for (int64_t j = threadIdx.x & 31; j < nchunk; j += 32) s += p[j * C + c];
    return warp_sum(s);
}

// A statistics or parameter tensor: F32 or BF16, `c` elements (C or rows).
static inline int stat_dt(const Tensor *t, int64_t n, const char *op) {
    int dt = cuda_fdt(t, op);
    CX_ASSERT(tensor_numel(t) == n, "%s: a statistic/parameter has %lld elements, expected %lld", op,
              (long long)tensor_numel(t), (long long)n);
    return dt;
}
#define OPT_DT(t, n, op) ((t) ? stat_dt((t), (n), (op)) : 0)
