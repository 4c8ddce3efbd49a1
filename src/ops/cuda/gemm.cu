// gemm.cu — matrix products on the GPU: linear layers (and 1×1 convolutions)
// through cuBLASLt, the two-level strided batched GEMM of channel attention
// (our own tiled kernel: its matrices are tiny, dh×dh over T tokens), and the
// column sums that bias gradients need.
//
// Row-major x (R,C) is column-major (C,R) with leading dimension C, so every
// product is written for cuBLASLt's column-major view:
//   y  (R,K)  = x · wᵀ     ->  Y' (K×R) = op_T(W' (C×K)) · X' (C×R)
//   dx (R,C) += dy · w     ->  dX'(C×R) = W' (C×K) · dY'(K×R)
//   dw (K,C) += dyᵀ · x    ->  dW'(C×K) = X' (C×R) · op_T(dY'(K×R))
// Weights are float32 masters: under bf16 activations they are converted per
// call into scratch (a bf16 copy), and weight gradients accumulate in float32
// straight from bf16 operands (cuBLASLt: A/B bf16, C/D fp32, fp32 compute).
// Float32 operands use CUBLAS_COMPUTE_32F, which excludes TF32.
#include "ops/cuda/common.cuh"
#include <string.h>

static cudaDataType_t lt_type(cx_dtype dt) { return dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

// The alignment (bytes, at most 256) of a pointer: parameter views are only
// 64-byte aligned, and cuBLASLt's heuristic assumes 256 unless told.
static uint32_t align_of(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a)) a >>= 1;
    return a;
}

// The same product by a plain kernel, one thread per output element, a float32 sum
// in k order: CAMOXPERT_CUDA_GEMM=plain routes every linear layer here (a
// diagnostic: it tells a cuBLASLt result from a model's own numerics).
__global__ void k_gemm_plain(int ta, int tb, int m, int n, int k, float alpha, const void *A, int adt, int lda,
                             const void *B, int bdt, int ldb, float beta, void *D, int ddt, int ldd) {
    CUDA_LOOP(o, (int64_t)m * n) {
        int i = (int)(o % m), j = (int)(o / m);
        float acc = 0;
        for (int l = 0; l < k; l++)
            acc += ldf(A, adt, ta ? (int64_t)i * lda + l : (int64_t)l * lda + i) *
                   ldf(B, bdt, tb ? (int64_t)l * ldb + j : (int64_t)j * ldb + l);
        int64_t d = (int64_t)j * ldd + i;
        stf(D, ddt, d, alpha * acc + (beta != 0 ? beta * ldf(D, ddt, d) : 0.f));
    }
}

static int gemm_plain(void) {
    static int v = -1;
    if (v < 0) v = getenv("CAMOXPERT_CUDA_GEMM") && !strcmp(getenv("CAMOXPERT_CUDA_GEMM"), "plain");
    return v;
}

// Fusions on (CAMOXPERT_FUSE=0 turns them off, for side-by-side timing): here, the
// bias of a linear layer added in cuBLASLt's epilogue instead of a pass of its own.
static int bias_refused;   // cuBLASLt refused the bias epilogue once: not asked again
static int gemm_fuse(void) {
    static int v = -1;
    if (v < 0) v = !(getenv("CAMOXPERT_FUSE") && !strcmp(getenv("CAMOXPERT_FUSE"), "0"));
    return v && !bias_refused;
}

// D (m×n, ldd) = alpha · op(A) · op(B) + beta · C, C == D, column-major; with bias (m,
// float32, may be NULL) + bias on every column, added in cuBLASLt's epilogue (in float32,
// before D is rounded to its dtype). Returns 0, having done nothing, when a bias was asked
// for and no algorithm takes it: the caller then adds it itself.
static int lt_matmul(OpCtx *ctx, int ta, int tb, int m, int n, int k, float alpha, const void *A, cx_dtype adt, int lda,
                     const void *B, cx_dtype bdt, int ldb, float beta, void *D, cx_dtype ddt, int ldd,
                     const float *bias = NULL) {
    if (gemm_plain()) {
        if (bias) return 0;
        k_gemm_plain<<<cuda_grid((int64_t)m * n), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(ta, tb, m, n, k, alpha, A, (int)adt, lda,
                                                                                  B, (int)bdt, ldb, beta, D, (int)ddt, ldd);
        CUDA_KCHECK("k_gemm_plain");
        return 1;
    }
    CudaState *s = ctx->cuda;
    cublasLtMatmulDesc_t op;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_32F;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    cublasLtMatrixLayout_t la, lb, ld;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, lt_type(adt), ta ? k : m, ta ? m : k, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, lt_type(bdt), tb ? n : k, tb ? k : n, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, lt_type(ddt), m, n, ldd));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &s->lt_ws_bytes,
                                                      sizeof s->lt_ws_bytes));
    uint32_t aa = align_of(A), ab = align_of(B), ad = align_of(D);
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad));
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(s->lt, op, la, lb, ld, ld, pref, 1, &h, &found);
    if (bias && (hs != CUBLAS_STATUS_SUCCESS || !found)) {   // no epilogue for this problem: the caller adds the bias
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(ld);
        cublasLtMatmulDescDestroy(op);
        return 0;
    }
    CUBLAS_CHECK(hs);
    if (!found) {
        char msg[160];
        snprintf(msg, sizeof msg, "no cuBLASLt algorithm for %s×%s->%s m=%d n=%d k=%d", dtype_name(adt), dtype_name(bdt),
                 dtype_name(ddt), m, n, k);
        cuda_fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", msg);
    }
    cublasStatus_t ms = cublasLtMatmul(s->lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &h.algo, s->lt_ws,
                                       s->lt_ws_bytes, s->stream);
    if (bias && ms != CUBLAS_STATUS_SUCCESS) {   // refused at run time: the caller adds the bias, and no epilogue again
        static int said;
        if (!said++) fprintf(stderr, "note: cuBLASLt refused its bias epilogue (status %d): the bias is a pass of its own\n",
                             (int)ms);
        bias_refused = 1;
    } else {
        CUBLAS_CHECK(ms);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(op);
    return !(bias && ms != CUBLAS_STATUS_SUCCESS);
}

__global__ void k_cast(void *dst, int ddt, const void *src, int sdt, int64_t n) {
    CUDA_LOOP(i, n) stf(dst, ddt, i, ldf(src, sdt, i));
}

// The weight w (float32 master) in the operand dtype dt: w itself, or a converted copy in scratch.
const void *cuda_weight_as(OpCtx *ctx, const Tensor *w, cx_dtype dt) {
    if (w->dtype == dt) return w->data;
    int64_t n = tensor_numel(w);
    void *c = cuda_scratch(ctx, (size_t)n * dtype_size(dt));
    k_cast<<<cuda_grid(n), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(c, dt, w->data, cuda_fdt(w, "weight"), n);
    CUDA_KCHECK("k_cast");
    return c;
}

// ---- column sums (bias gradients) ---------------------------------------------------------------
// dst (K) F32 += Σ_r src[r·ld + k]. Pass 1: blocks of 32 columns × COL_ROWS row
// lanes each sum a chunk of rows into partials (chunk, K); pass 2 sums the
// partials of each column in chunk order. Fixed order: deterministic.
#define COL_ROWS 8
#define COL_CHUNK 1024

// Sums in double: a bias feeding a training-mode BatchNorm has a gradient that
// is a near-total cancellation of its terms.
__global__ void k_colsum_part(double *part, const void *src, int dt, int64_t R, int64_t K, int64_t ld) {
    __shared__ double acc[COL_ROWS][33];
    int64_t k = (int64_t)blockIdx.x * 32 + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * COL_CHUNK, r1 = r0 + COL_CHUNK < R ? r0 + COL_CHUNK : R;
    double s = 0;
    if (k < K)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += COL_ROWS) s += ldf(src, dt, r * ld + k);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && k < K) {
        double t = 0;
        for (int j = 0; j < COL_ROWS; j++) t += acc[j][threadIdx.x];
        part[(int64_t)blockIdx.y * K + k] = t;
    }
}

__global__ void k_colsum_final(float *dst, const double *part, int64_t chunks, int64_t K) {
    CUDA_LOOP(k, K) {
        double s = 0;
        for (int64_t c = 0; c < chunks; c++) s += part[c * K + k];
        dst[k] += (float)s;
    }
}

void cuda_colsum_add(OpCtx *ctx, float *dst, const void *src, cx_dtype dt, int64_t R, int64_t K, int64_t ld) {
    if (R == 0 || K == 0) return;
    ArenaMark mk = arena_mark(ctx->scratch);
    int64_t chunks = (R + COL_CHUNK - 1) / COL_CHUNK;
    CX_ASSERT(chunks <= 65535, "colsum: %lld rows", (long long)R);
    double *part = (double *)cuda_scratch(ctx, sizeof(double) * (size_t)(chunks * K));
    dim3 grid((unsigned)((K + 31) / 32), (unsigned)chunks), block(32, COL_ROWS);
    k_colsum_part<<<grid, block, 0, cuda_stream(ctx)>>>(part, src, (int)dt, R, K, ld);
    CUDA_KCHECK("k_colsum_part");
    k_colsum_final<<<cuda_grid(K), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(dst, part, chunks, K);
    CUDA_KCHECK("k_colsum_final");
    arena_release(ctx->scratch, mk);
}

// y (R,K) += b (K) for every row.
__global__ void k_bias_add(void *y, int ydt, const void *b, int bdt, int64_t R, int64_t K) {
    CUDA_LOOP(i, R * K) addf(y, ydt, i, ldf(b, bdt, i % K));
}

// The same on 16-byte vectors of y (dtype DT; K a multiple of the width), 32-bit indices.
template <int DT>
__global__ void k_bias_add_vec(void *y, const void *b, int bdt, int nvec, int KV) {
    constexpr int V = VecW<DT>::N;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += gridDim.x * blockDim.x) {
        const int c0 = (v % KV) * V;
        float a[V];
        vld<DT>(a, y, v);
#pragma unroll
        for (int k = 0; k < V; k++) a[k] += ldf(b, bdt, c0 + k);
        vst<DT>(y, v, a);
    }
}

void cuda_bias_add(OpCtx *ctx, Tensor *y, const Tensor *b) {
    int64_t K = tensor_numel(b), R = tensor_numel(y) / K;
    const int ydt = cuda_fdt(y, "bias"), bdt = cuda_fdt(b, "bias");
    if (R * K == 0) return;
    if (gemm_fuse() && vec_ok(ydt, K, R * K, y->data, NULL, NULL)) {   // (CAMOXPERT_FUSE=0: the scalar kernel)
        const int V = ydt == DT_BF16 ? 8 : 4, nvec = (int)(R * K / V), KV = (int)(K / V);
        if (ydt == DT_BF16) k_bias_add_vec<DT_BF16><<<cuda_grid(nvec), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(y->data, b->data, bdt, nvec, KV);
        else k_bias_add_vec<DT_F32><<<cuda_grid(nvec), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(y->data, b->data, bdt, nvec, KV);
    } else {
        k_bias_add<<<cuda_grid(R * K), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(y->data, ydt, b->data, bdt, R, K);
    }
    CUDA_KCHECK("k_bias_add");
}

// ---- linear -------------------------------------------------------------------------------------
extern "C" void cuda_linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b) {
    const int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    CX_ASSERT(tensor_numel(y) == R * K && x->dtype == y->dtype, "linear: shapes or dtypes");
    cx_dtype dt = (cx_dtype)cuda_fdt(x, "linear");
    ArenaMark mk = arena_mark(ctx->scratch);
    const void *wt = cuda_weight_as(ctx, w, dt);
    const float *fb = b && b->dtype == DT_F32 && gemm_fuse() ? (const float *)b->data : NULL;   // in the epilogue
    if (!lt_matmul(ctx, 1, 0, (int)K, (int)R, (int)C, 1.f, wt, dt, (int)C, x->data, dt, (int)C, 0.f, y->data, dt, (int)K,
                   fb))
        lt_matmul(ctx, 1, 0, (int)K, (int)R, (int)C, 1.f, wt, dt, (int)C, x->data, dt, (int)C, 0.f, y->data, dt, (int)K);
    else if (fb) b = NULL;
    if (b) cuda_bias_add(ctx, y, b);
    arena_release(ctx->scratch, mk);
}

extern "C" void cuda_linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                                     const Tensor *w) {
    const int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    cx_dtype dt = (cx_dtype)cuda_fdt(x, "linear_backward");
    CX_ASSERT(dy->dtype == dt && (!dx || dx->dtype == dt), "linear_backward: activations and their gradients share a dtype");
    ArenaMark mk = arena_mark(ctx->scratch);
    if (dx) {
        const void *wt = cuda_weight_as(ctx, w, dt);
        lt_matmul(ctx, 0, 0, (int)C, (int)R, (int)K, 1.f, wt, dt, (int)C, dy->data, dt, (int)K,
                  cuda_acc(ctx, dx) ? 1.f : 0.f, dx->data, dt, (int)C);   // beta 0: dx's first write (ops.h)
    }
    if (dw) {
        CX_ASSERT(dw->dtype == DT_F32, "linear_backward: dw must be float32");
        lt_matmul(ctx, 0, 1, (int)C, (int)K, (int)R, 1.f, x->data, dt, (int)C, dy->data, dt, (int)K, 1.f, dw->data, DT_F32,
                  (int)C);
    }
    if (db) cuda_colsum_add(ctx, (float *)db->data, dy->data, dt, R, K, K);
    arena_release(ctx->scratch, mk);
}

// ---- two-level batched GEMM ----------------------------------------------------------------------
// 16×16 output tiles per block, K in steps of 16 through shared memory; one
// grid layer per (outer, inner) batch pair. A, B, C of any float dtype.
#define GT 16

__global__ void k_gemm_batched(void *C, int cdt, const void *A, int adt, const void *B, int bdt, GemmArgs g) {
    __shared__ float As[GT][GT + 1], Bs[GT][GT + 1];
    const int b1 = blockIdx.z / g.nb2, b2 = blockIdx.z % g.nb2;
    const int64_t oa = g.offa + b1 * g.sa1 + b2 * g.sa2, ob = g.offb + b1 * g.sb1 + b2 * g.sb2;
    const int64_t oc = g.offc + b1 * g.sc1 + b2 * g.sc2;
    const int ty = threadIdx.y, tx = threadIdx.x;
    const int i = blockIdx.y * GT + ty, j = blockIdx.x * GT + tx;
    float acc = 0;
    for (int k0 = 0; k0 < g.K; k0 += GT) {
        int ka = k0 + tx, kb = k0 + ty;   // A tile (i, ka), B tile (kb, j)
        As[ty][tx] = i < g.M && ka < g.K ? ldf(A, adt, oa + (g.ta ? (int64_t)ka * g.lda + i : (int64_t)i * g.lda + ka)) : 0.f;
        Bs[ty][tx] = kb < g.K && j < g.N ? ldf(B, bdt, ob + (g.tb ? (int64_t)j * g.ldb + kb : (int64_t)kb * g.ldb + j)) : 0.f;
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GT; kk++) acc += As[ty][kk] * Bs[kk][tx];
        __syncthreads();
    }
    if (i < g.M && j < g.N) {
        int64_t ci = oc + (int64_t)i * g.ldc + j;
        float v = (float)g.alpha * acc;
        if (g.beta != 0) v += (float)g.beta * ldf(C, cdt, ci);
        stf(C, cdt, ci, v);
    }
}

extern "C" void cuda_gemm_batched(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g) {
    int64_t nb = (int64_t)g->nb1 * g->nb2;
    CX_ASSERT(nb <= 65535, "gemm_batched: %lld batches", (long long)nb);
    dim3 grid((unsigned)((g->N + GT - 1) / GT), (unsigned)((g->M + GT - 1) / GT), (unsigned)nb), block(GT, GT);
    k_gemm_batched<<<grid, block, 0, cuda_stream(ctx)>>>(C->data, cuda_fdt(C, "gemm C"), A->data, cuda_fdt(A, "gemm A"),
                                                         B->data, cuda_fdt(B, "gemm B"), *g);
    CUDA_KCHECK("k_gemm_batched");
}
