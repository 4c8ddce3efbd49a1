// rows.cu — the mixture of experts' row ops on the GPU (ops_list.h rows_gather,
// rows_scatter_add, rows_gather_sum, rows_scatter_add_backward): gathers and weighted
// scatter-adds of whole rows (a pixel's channels, an image's map) by index lists, the
// grouped execution's data movement (nn/moe.c). Every scatter is written as a gather
// (no atomics): results are bit-identical run to run, in the reference kernels' order
// and rounding (ops/ref/ref_tmpl.h). The routing's decisions and plan are moe.cu's.
// reference: torch.index_select / index_add_.
#include "ops/cuda/common.cuh"

// ---- MoE rows: gather and scatter-add ----------------------------------------------------------
// Rows are the first axis; D = elements per row. An index outside the table is
// a caller's bug (the reference asserts): the kernel reports it and traps,
// which surfaces as a launch failure at the next CUDA call.
// `report` picks one thread per bad index to print.
static __device__ __forceinline__ void check_row(int32_t r, int64_t rows, const char *op, bool report) {
    if (r < 0 || r >= rows) {
        if (report) printf("%s: row index %d outside [0, %lld)\n", op, (int)r, (long long)rows);
        __trap();
    }
}

// ---- the row ops on 16-byte vectors (VecW, vld, vst: common.cuh) ------------------------------------
// rows_gather, rows_gather_sum and rows_scatter_add_backward's dsrc move whole rows (a
// pixel's channels, an image's map): when source and destination share one dtype, a
// row is a whole number of 16-byte vectors (8 bf16 or 4 float32 values) and the data
// are aligned, a thread moves a vector and indexes in 32 bits (the scalar kernels
// below take the other cases). The arithmetic per element is the scalar kernels', rounding
// for rounding: the same results.

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
        check_row(r, rows, "rows_gather", v == 0);
        dst[e] = src[(int64_t)r * V + v];
    }
}

static bool rows_gather_vec(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx) {
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
    constexpr int L = VecW<DT>::N;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        const unsigned r = e / (unsigned)V, v = e - r * (unsigned)V;
        const int32_t j0 = ptr[r], j1 = ptr[r + 1];
        if (j0 == j1) continue;
        float acc[L], s[L];
        vld<DT>(acc, dst, e);
        for (int32_t j = j0; j < j1; j++) {
            const int32_t i = list[j];
            check_row(i, srows, "rows_gather_sum", v == 0);
            vld<DT>(s, src, (int64_t)i * V + v);
            if (w) {
                const float wj = w[j];
#pragma unroll
                for (int k = 0; k < L; k++) acc[k] = __fadd_rn(acc[k], __fmul_rn(wj, s[k]));
            } else {
#pragma unroll
                for (int k = 0; k < L; k++) acc[k] = __fadd_rn(acc[k], s[k]);
            }
        }
        vst<DT>(dst, e, acc);
    }
}

static bool rows_gather_sum_vec(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr,
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
    constexpr int L = VecW<DT>::N;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        const unsigned i = e / (unsigned)V, v = e - i * (unsigned)V;
        const int32_t r = idx[i];
        check_row(r, rows, "rows_scatter_add_backward", v == 0);
        float d[L], g[L];
        vld<DT>(d, dsrc, e);
        vld<DT>(g, ddst, (int64_t)r * V + v);
        const float wi = w ? w[i] : 1.0f;
#pragma unroll
        for (int k = 0; k < L; k++) d[k] = __fadd_rn(d[k], w ? __fmul_rn(wi, g[k]) : g[k]);
        vst<DT>(dsrc, e, d);
    }
}

static bool rows_dsrc_vec(OpCtx *ctx, Tensor *dsrc, const Tensor *ddst, const Tensor *idx, const Tensor *w) {
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

// ---- the scalar kernels: any dtypes, any row width ------------------------------------------------
// dst[i] = src[idx[i]]
static __global__ void rows_gather_kernel(void *dst, int ddt, const void *src, int sdt, const int32_t *idx,
                                          int64_t rows, int64_t D, int64_t n) {
    CUDA_LOOP(e, n) {
        int64_t i = e / D, d = e - i * D;
        int32_t r = idx[i];
        check_row(r, rows, "rows_gather", d == 0);
        stf(dst, ddt, e, ldf(src, sdt, r * D + d));
    }
}

extern "C" void cuda_rows_gather(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx) {
    const char *op = "rows_gather";
    int64_t n = tensor_numel(idx), rows = src->shape[0], D = rows ? tensor_numel(src) / rows : 0;
    CX_ASSERT(idx->dtype == DT_I32 && tensor_numel(dst) == n * D, "%s: dst must be (n, ...) with src's rows", op);
    if (n * D == 0 || rows_gather_vec(ctx, dst, src, idx)) return;
    rows_gather_kernel<<<LAUNCH_1D(n * D)>>>(dst->data, cuda_fdt(dst, op), src->data, cuda_fdt(src, op),
                                             tensor_i32(idx), rows, D, n * D);
    CUDA_KCHECK("rows_gather_kernel");
}

// dst[idx[i]] += w[i]·src[i], written as a gather over dst: each element adds
// the rows that name it in index order (the reference's order and rounding,
// one product and one add at a time); rows that no index names are not written.
static __global__ void rows_scatter_add_kernel(void *dst, int ddt, const void *src, int sdt, const int32_t *idx,
                                               const void *w, int wdt, int64_t n, int64_t rows, int64_t D) {
    CUDA_LOOP(e, rows * D) {
        int64_t r = e / D, d = e - r * D;
        float v = 0;
        bool hit = false;
        for (int64_t i = 0; i < n; i++) {
            int32_t ri = idx[i];
            if (e == 0) check_row(ri, rows, "rows_scatter_add", true);   // one thread checks them all
            if (ri != r) continue;
            if (!hit) {   // the first named row: start from dst's value
                v = ldf(dst, ddt, e);
                hit = true;
            }
            float s = ldf(src, sdt, i * D + d);
            v = __fadd_rn(v, w ? __fmul_rn(ldf(w, wdt, i), s) : s);
        }
        if (hit) stf(dst, ddt, e, v);
    }
}

extern "C" void cuda_rows_scatter_add(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w) {
    const char *op = "rows_scatter_add";
    int64_t n = tensor_numel(idx), rows = dst->shape[0], D = rows ? tensor_numel(dst) / rows : 0;
    CX_ASSERT(idx->dtype == DT_I32 && tensor_numel(src) == n * D, "%s: src must be (n, ...) with dst's rows", op);
    CX_ASSERT(!w || tensor_numel(w) == n, "%s: w must have n = %lld elements", op, (long long)n);
    if (n == 0 || rows * D == 0) return;
    rows_scatter_add_kernel<<<LAUNCH_1D(rows * D)>>>(dst->data, cuda_fdt(dst, op), src->data, cuda_fdt(src, op),
                                                     tensor_i32(idx), w ? w->data : NULL, w ? cuda_fdt(w, op) : 0, n,
                                                     rows, D);
    CUDA_KCHECK("rows_scatter_add_kernel");
}

// dst[r] += Σ_j w[j]·src[list[j]], j in [ptr[r], ptr[r+1]): one thread per element of dst,
// its row's entries in list order (rows_gather_sum in ops_list.h).
static __global__ void rows_gather_sum_kernel(void *dst, int ddt, const void *src, int sdt, const int32_t *ptr,
                                              const int32_t *list, const void *w, int wdt, int64_t rows, int64_t srows,
                                              int64_t D) {
    CUDA_LOOP(e, rows * D) {
        int64_t r = e / D, d = e - r * D;
        int32_t j0 = ptr[r], j1 = ptr[r + 1];
        if (j0 == j1) continue;
        float v = ldf(dst, ddt, e);
        for (int32_t j = j0; j < j1; j++) {
            int32_t i = list[j];
            check_row(i, srows, "rows_gather_sum", d == 0);
            float s = ldf(src, sdt, (int64_t)i * D + d);
            v = __fadd_rn(v, w ? __fmul_rn(ldf(w, wdt, j), s) : s);
        }
        stf(dst, ddt, e, v);
    }
}

extern "C" void cuda_rows_gather_sum(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr, const Tensor *list,
                                     const Tensor *w) {
    const char *op = "rows_gather_sum";
    int64_t rows = dst->shape[0], D = rows ? tensor_numel(dst) / rows : 0;
    if (rows * D == 0 || tensor_numel(list) == 0 || rows_gather_sum_vec(ctx, dst, src, ptr, list, w)) return;
    rows_gather_sum_kernel<<<LAUNCH_1D(rows * D)>>>(dst->data, cuda_fdt(dst, op), src->data, cuda_fdt(src, op),
                                                    tensor_i32(ptr), tensor_i32(list), w ? w->data : NULL,
                                                    w ? cuda_fdt(w, op) : 0, rows, src->shape[0], D);
    CUDA_KCHECK("rows_gather_sum_kernel");
}

// dsrc[i] += w[i]·ddst[idx[i]]
static __global__ void scatter_dsrc_kernel(void *dsrc, int dsdt, const void *ddst, int gdt, const int32_t *idx,
                                           const void *w, int wdt, int64_t rows, int64_t D, int64_t n) {
    CUDA_LOOP(e, n) {
        int64_t i = e / D, d = e - i * D;
        int32_t r = idx[i];
        check_row(r, rows, "rows_scatter_add_backward", d == 0);
        float g = ldf(ddst, gdt, r * D + d);
        addf(dsrc, dsdt, e, w ? ldf(w, wdt, i) * g : g);
    }
}

// dw[i] += <ddst[idx[i]], src[i]>: pass 1, block (chunk, i) sums its DW_CHUNK
// slice of the row (block_sum); pass 2, one warp per row sums the chunks in order.
#define DW_CHUNK 4096
static __global__ void scatter_dw_partial_kernel(double *part, const void *ddst, int gdt, const void *src, int sdt,
                                                 const int32_t *idx, int64_t rows, int64_t D) {
    int64_t i = blockIdx.y, d0 = (int64_t)blockIdx.x * DW_CHUNK, d1 = d0 + DW_CHUNK < D ? d0 + DW_CHUNK : D;
    int32_t r = idx[i];
    check_row(r, rows, "rows_scatter_add_backward", blockIdx.x == 0 && threadIdx.x == 0);
    double s = 0;   // a routing weight's gradient: a long dot product that nearly cancels
    for (int64_t d = d0 + threadIdx.x; d < d1; d += blockDim.x)
        s += (double)ldf(ddst, gdt, r * D + d) * ldf(src, sdt, i * D + d);
    s = block_sum(s);
    if (threadIdx.x == 0) part[i * gridDim.x + blockIdx.x] = s;
}

static __global__ void scatter_dw_finish_kernel(void *dw, int dwdt, const double *part, int64_t n, int64_t nchunk) {
    int64_t i = WARP_ID();
    if (i >= n) return;
    double s = 0;
    for (int64_t c = threadIdx.x & 31; c < nchunk; c += 32) s += part[i * nchunk + c];
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) addf(dw, dwdt, i, (float)s);
}

extern "C" void cuda_rows_scatter_add_backward(OpCtx *ctx, Tensor *dsrc, Tensor *dw, const Tensor *ddst,
                                               const Tensor *src, const Tensor *idx, const Tensor *w) {
    const char *op = "rows_scatter_add_backward";
    int64_t n = tensor_numel(idx), rows = ddst->shape[0], D = rows ? tensor_numel(ddst) / rows : 0;
    CX_ASSERT(idx->dtype == DT_I32, "%s: idx must be I32", op);
    CX_ASSERT(!w || tensor_numel(w) == n, "%s: w must have n = %lld elements", op, (long long)n);
    if (n == 0) return;
    int gdt = cuda_fdt(ddst, op);
    if (dsrc && D > 0) {
        CX_ASSERT(tensor_numel(dsrc) == n * D, "%s: dsrc must be (n, ...) with ddst's rows", op);
        if (!rows_dsrc_vec(ctx, dsrc, ddst, idx, w))
            scatter_dsrc_kernel<<<LAUNCH_1D(n * D)>>>(dsrc->data, cuda_fdt(dsrc, op), ddst->data, gdt, tensor_i32(idx),
                                                  w ? w->data : NULL, w ? cuda_fdt(w, op) : 0, rows, D, n * D);
        CUDA_KCHECK("scatter_dsrc_kernel");
    }
    if (dw) {
        CX_ASSERT(tensor_numel(dw) == n && tensor_numel(src) == n * D, "%s: dw (n) and src (n, ...)", op);
        CX_ASSERT(n <= 65535, "%s: %lld rows", op, (long long)n);
        if (D == 0) return;
        int64_t nchunk = (D + DW_CHUNK - 1) / DW_CHUNK;
        ArenaMark mark = arena_mark(ctx->scratch);
        double *part = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(n * nchunk));
        scatter_dw_partial_kernel<<<dim3((unsigned)nchunk, (unsigned)n), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
            part, ddst->data, gdt, src->data, cuda_fdt(src, op), tensor_i32(idx), rows, D);
        CUDA_KCHECK("scatter_dw_partial_kernel");
        scatter_dw_finish_kernel<<<warps_grid(n), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(dw->data, cuda_fdt(dw, op),
                                                                                    part, n, nchunk);
        CUDA_KCHECK("scatter_dw_finish_kernel");
        arena_release(ctx->scratch, mark);
    }
}
