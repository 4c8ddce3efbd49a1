// conv.cu — 2-D convolution on the GPU: cuDNN 9 (its convolution API) on NHWC
// data with KRSC filters, and direct kernels for the shapes cuDNN declines (and
// for the tests, which run both: cuda_conv_impl).
//
// The weights are float32 OIHW masters (PyTorch's layout); each call converts
// them into a KRSC copy of the activation dtype in scratch (a small kernel: the
// weights are tiny next to the activations). The weight gradient comes back in
// KRSC (cuDNN writes it in the data dtype) and is added into the float32 OIHW
// gradient. Float32 convolutions use CUDNN_FMA_MATH (no TF32); bf16 ones the
// tensor cores with float32 accumulation. Algorithms are chosen once per shape
// and pass from cuDNN's heuristics (deterministic ones for the backward passes,
// so a resumed run repeats an uninterrupted one) and kept in CudaState's cache.
#include "ops/cuda/common.cuh"
#include <stddef.h>
#include <string.h>

int cuda_conv_impl = CUDA_CONV_AUTO;

enum { PASS_FWD = 0, PASS_BWD_DATA, PASS_BWD_FILTER };

struct ConvPlan {
    int pass, N, H, W, C, K, kh, kw, stride, pad, dil, groups, dt;
    int algo;     // the cuDNN algorithm, or -1: the direct kernels
    int math;     // cudnnMathType_t to run it with
    size_t ws;    // its workspace
};

// ---- layout conversions ---------------------------------------------------------------------------
// dst (K, kh, kw, Cg) in dt = src (K, Cg, kh, kw) F32
__global__ void k_oihw_to_ohwi(void *dst, int dt, const float *src, int64_t K, int64_t Cg, int64_t kh, int64_t kw) {
    CUDA_LOOP(o, K * kh * kw * Cg) {
        int64_t c = o % Cg, r = o / Cg, j = r % kw, i = (r / kw) % kh, k = r / (kw * kh);
        stf(dst, dt, o, src[((k * Cg + c) * kh + i) * kw + j]);
    }
}

// dst (K, Cg, kh, kw) F32 += src (K, kh, kw, Cg) in dt
__global__ void k_ohwi_add_oihw(float *dst, const void *src, int dt, int64_t K, int64_t Cg, int64_t kh, int64_t kw) {
    CUDA_LOOP(o, K * Cg * kh * kw) {
        int64_t j = o % kw, i = (o / kw) % kh, c = (o / (kw * kh)) % Cg, k = o / (kw * kh * Cg);
        dst[o] += ldf(src, dt, ((k * kh + i) * kw + j) * Cg + c);
    }
}

// ---- direct kernels ----------------------------------------------------------------------------------
// One thread per output element; the weights are read from the float32 OIHW master.
struct ConvShape { int64_t N, H, W, C, K, Ho, Wo, kh, kw, Cg, Kg; int stride, pad, dil; };

__global__ void k_conv_fwd(void *y, int ydt, const void *x, int xdt, const float *w, const void *b, int bdt, ConvShape s) {
    CUDA_LOOP(o, s.N * s.Ho * s.Wo * s.K) {
        int64_t k = o % s.K, r = o / s.K, ow = r % s.Wo, oh = (r / s.Wo) % s.Ho, n = r / (s.Wo * s.Ho);
        int64_t g = k / s.Kg;
        float acc = b ? ldf(b, bdt, k) : 0.f;
        for (int64_t i = 0; i < s.kh; i++) {
            int64_t ih = oh * s.stride - s.pad + i * s.dil;
            if (ih < 0 || ih >= s.H) continue;
            for (int64_t j = 0; j < s.kw; j++) {
                int64_t iw = ow * s.stride - s.pad + j * s.dil;
                if (iw < 0 || iw >= s.W) continue;
                int64_t xo = ((n * s.H + ih) * s.W + iw) * s.C + g * s.Cg;
                for (int64_t c = 0; c < s.Cg; c++) acc += ldf(x, xdt, xo + c) * w[((k * s.Cg + c) * s.kh + i) * s.kw + j];
            }
        }
        stf(y, ydt, o, acc);
    }
}

// dx (N,H,W,C) += (or = when !accumulate: the first write): each input element gathers
// the outputs whose window covers it.
__global__ void k_conv_bwd_data(void *dx, int dt, const void *dy, const float *w, ConvShape s, int accumulate) {
    CUDA_LOOP(o, s.N * s.H * s.W * s.C) {
        int64_t c = o % s.C, r = o / s.C, iw = r % s.W, ih = (r / s.W) % s.H, n = r / (s.W * s.H);
        int64_t g = c / s.Cg, cc = c % s.Cg;
        float acc = 0;
        for (int64_t i = 0; i < s.kh; i++) {
            int64_t t = ih + s.pad - i * s.dil;
            if (t < 0 || t % s.stride) continue;
            int64_t oh = t / s.stride;
            if (oh >= s.Ho) continue;
            for (int64_t j = 0; j < s.kw; j++) {
                int64_t u = iw + s.pad - j * s.dil;
                if (u < 0 || u % s.stride) continue;
                int64_t ow = u / s.stride;
                if (ow >= s.Wo) continue;
                int64_t yo = ((n * s.Ho + oh) * s.Wo + ow) * s.K;
                for (int64_t k = g * s.Kg; k < (g + 1) * s.Kg; k++)
                    acc += ldf(dy, dt, yo + k) * w[((k * s.Cg + cc) * s.kh + i) * s.kw + j];
            }
        }
        putf(dx, dt, o, acc, accumulate);
    }
}

// dw (K,Cg,kh,kw) F32 += : one block per weight element reduces over every output position.
__global__ void k_conv_bwd_filter(float *dw, const void *x, const void *dy, int dt, ConvShape s) {
    int64_t o = blockIdx.x;
    int64_t j = o % s.kw, i = (o / s.kw) % s.kh, cc = (o / (s.kw * s.kh)) % s.Cg, k = o / (s.kw * s.kh * s.Cg);
    int64_t c = (k / s.Kg) * s.Cg + cc;
    double acc = 0;
    for (int64_t p = threadIdx.x; p < s.N * s.Ho * s.Wo; p += blockDim.x) {
        int64_t ow = p % s.Wo, oh = (p / s.Wo) % s.Ho, n = p / (s.Wo * s.Ho);
        int64_t ih = oh * s.stride - s.pad + i * s.dil, iw = ow * s.stride - s.pad + j * s.dil;
        if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
        acc += (double)ldf(dy, dt, p * s.K + k) * ldf(x, dt, ((n * s.H + ih) * s.W + iw) * s.C + c);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dw[o] += (float)acc;
}

static ConvShape shape_of(const Tensor *x, const Tensor *w, const Tensor *y, ConvArgs a) {
    ConvShape s;
    s.N = T_N(x), s.H = T_H(x), s.W = T_W(x), s.C = T_C(x), s.K = w->shape[0], s.Cg = w->shape[1];
    s.kh = w->shape[2], s.kw = w->shape[3], s.Ho = T_H(y), s.Wo = T_W(y), s.Kg = s.K / a.groups;
    s.stride = a.stride, s.pad = a.pad, s.dil = a.dil;
    return s;
}

// The largest workspace an algorithm may ask for: 256 MiB, or twice the bytes of the
// larger activation tensor of the call. At 352² and batch 16 the fast (tensor-core)
// input gradient of a 64-channel full-resolution 3x3 convolution asks for 285 MB; a
// fixed 256 MiB ceiling sent it to the FMA algorithm, 311 ms against a few (measured
// on an H100: docs/PERF.md, GPU).
static size_t ws_limit(const ConvShape *s, cx_dtype dt) {
    const size_t x = (size_t)(s->N * s->H * s->W * s->C), y = (size_t)(s->N * s->Ho * s->Wo * s->K);
    const size_t a = 2 * (x > y ? x : y) * dtype_size(dt), floor_ = (size_t)256 << 20;
    return a > floor_ ? a : floor_;
}

// ---- depthwise (groups == C == K) -------------------------------------------------------------------
// cuDNN's depthwise convolutions on NHWC bf16 ran at 0.2-0.7 TFLOP/s (docs/PERF.md, GPU).
// The forward and the 3x3 input gradient are the direct kernels above (one thread per
// element, coalesced over channels; cuDNN keeps the larger input gradients, where it
// measured faster); the weight gradient, a reduction over every output
// position per (channel, tap), is this kernel: a thread owns one channel and output rows
// and keeps all KH*KW tap sums in registers; the block's 8 row lanes are summed in shared
// memory into one partial per (row chunk, tap, channel), and the chunks are summed in
// order (deterministic). CAMOXPERT_DW_IMPL=cudnn restores cuDNN for them (measurement).
#define DW_ROWS 16   // output rows (n, oh) per chunk; 8 row lanes per block

static int dw_own(const ConvShape *s, int groups) {
    static int v = -1;
    if (v < 0) v = !(getenv("CAMOXPERT_DW_IMPL") && !strcmp(getenv("CAMOXPERT_DW_IMPL"), "cudnn"));
    return v && groups > 1 && groups == s->C && s->K == s->C && s->kh == s->kw && (s->kh == 3 || s->kh == 5 ||
                                                                                      s->kh == 7 || s->kh == 9);
}

template <int KH, int KW>
__global__ void k_dw_bwd_filter_part(float *part, const void *x, const void *dy, int dt, ConvShape s) {
    const int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    const int64_t rows = s.N * s.Ho, r0 = (int64_t)blockIdx.y * DW_ROWS, r1 = r0 + DW_ROWS < rows ? r0 + DW_ROWS : rows;
    float acc[KH * KW];
#pragma unroll
    for (int t = 0; t < KH * KW; t++) acc[t] = 0.f;
    if (c < s.C)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
            const int64_t n = r / s.Ho, oh = r % s.Ho;
            for (int64_t ow = 0; ow < s.Wo; ow++) {
                const float g = ldf(dy, dt, ((n * s.Ho + oh) * s.Wo + ow) * s.C + c);
#pragma unroll
                for (int i = 0; i < KH; i++) {
                    const int64_t ih = oh * s.stride - s.pad + i * s.dil;
                    if (ih < 0 || ih >= s.H) continue;
#pragma unroll
                    for (int j = 0; j < KW; j++) {
                        const int64_t iw = ow * s.stride - s.pad + j * s.dil;
                        if (iw >= 0 && iw < s.W) acc[i * KW + j] += g * ldf(x, dt, ((n * s.H + ih) * s.W + iw) * s.C + c);
                    }
                }
            }
        }
    __shared__ float red[8][33];
#pragma unroll
    for (int t = 0; t < KH * KW; t++) {
        red[threadIdx.y][threadIdx.x] = acc[t];
        __syncthreads();
        if (threadIdx.y == 0 && c < s.C) {
            float v = 0.f;
            for (int l = 0; l < 8; l++) v += red[l][threadIdx.x];
            part[((int64_t)blockIdx.y * KH * KW + t) * s.C + c] = v;
        }
        __syncthreads();
    }
}

// dw (C, 1, kh, kw) F32 += the chunks' partials (chunks, T, C), summed in chunk order.
__global__ void k_dw_bwd_filter_final(float *dw, const float *part, int64_t chunks, int64_t T, int64_t C) {
    CUDA_LOOP(o, C * T) {
        const int64_t c = o / T, t = o % T;
        double v = 0;
        for (int64_t k = 0; k < chunks; k++) v += part[(k * T + t) * C + c];
        dw[o] += (float)v;
    }
}

static void dw_bwd_filter(OpCtx *ctx, float *dw, const void *x, const void *dy, cx_dtype dt, const ConvShape *s) {
    const int64_t chunks = (s->N * s->Ho + DW_ROWS - 1) / DW_ROWS, T = s->kh * s->kw;
    CX_ASSERT(chunks <= 65535, "depthwise weight gradient: %lld output rows", (long long)(s->N * s->Ho));
    ArenaMark mk = arena_mark(ctx->scratch);
    float *part = (float *)cuda_scratch(ctx, sizeof(float) * (size_t)(chunks * T * s->C));
    dim3 grid((unsigned)((s->C + 31) / 32), (unsigned)chunks), block(32, 8);
    cudaStream_t st = cuda_stream(ctx);
    switch (s->kh) {
    case 3: k_dw_bwd_filter_part<3, 3><<<grid, block, 0, st>>>(part, x, dy, (int)dt, *s); break;
    case 5: k_dw_bwd_filter_part<5, 5><<<grid, block, 0, st>>>(part, x, dy, (int)dt, *s); break;
    case 7: k_dw_bwd_filter_part<7, 7><<<grid, block, 0, st>>>(part, x, dy, (int)dt, *s); break;
    default: k_dw_bwd_filter_part<9, 9><<<grid, block, 0, st>>>(part, x, dy, (int)dt, *s); break;
    }
    CUDA_KCHECK("k_dw_bwd_filter_part");
    k_dw_bwd_filter_final<<<cuda_grid(s->C * T), CUDA_BLOCK, 0, st>>>(dw, part, chunks, T, s->C);
    CUDA_KCHECK("k_dw_bwd_filter_final");
    arena_release(ctx->scratch, mk);
}

// ---- cuDNN -----------------------------------------------------------------------------------------
typedef struct {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} Descs;

static void descs_make(Descs *d, const ConvShape *s, int groups, cx_dtype dt) {
    cudnnDataType_t t = dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&d->w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d->conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, t, (int)s->N, (int)s->C, (int)s->H, (int)s->W));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NHWC, t, (int)s->N, (int)s->K, (int)s->Ho, (int)s->Wo));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(d->w, t, CUDNN_TENSOR_NHWC, (int)s->K, (int)s->Cg, (int)s->kh, (int)s->kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d->conv, s->pad, s->pad, s->stride, s->stride, s->dil, s->dil,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(d->conv, groups));
    // float32 must stay float32: FMA math excludes TF32 (CUDNN_DEFAULT_MATH would allow it on Hopper)
    CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv, dt == DT_BF16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
}

static void descs_free(Descs *d) {
    cudnnDestroyTensorDescriptor(d->x);
    cudnnDestroyTensorDescriptor(d->y);
    cudnnDestroyFilterDescriptor(d->w);
    cudnnDestroyConvolutionDescriptor(d->conv);
}

static int verbose(void) {
    static int v = -1;
    if (v < 0) v = getenv("CAMOXPERT_CUDA_VERBOSE") ? atoi(getenv("CAMOXPERT_CUDA_VERBOSE")) : 0;
    return v;
}

static int find_mode(void) {
    static int v = -1;
    if (v < 0) v = getenv("CAMOXPERT_CONV_FIND") && atoi(getenv("CAMOXPERT_CONV_FIND")) > 0;
    return v;
}

// Float32 must be computed as float32 sums of products: Winograd and FFT
// algorithms transform the operands and lose digits (their error in fp32 is
// orders above a direct sum's), so they are bf16-only here.
static int exact_fwd(int a) {
    return a != CUDNN_CONVOLUTION_FWD_ALGO_FFT && a != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD && a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
static int exact_bwd_data(int a) {
    return a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT && a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD && a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
static int exact_bwd_filter(int a) {
    return a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT && a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

// CAMOXPERT_CONV_NONDETERMINISTIC=1 lets the backward passes take cuDNN's
// non-deterministic algorithms too (diagnosis: what determinism costs).
static int allow_nondet(void) {
    static int v = -1;
    if (v < 0) v = getenv("CAMOXPERT_CONV_NONDETERMINISTIC") && atoi(getenv("CAMOXPERT_CONV_NONDETERMINISTIC")) > 0;
    return v;
}

// The cached plan for this shape and pass, chosen from cuDNN's heuristics on first use.
static ConvPlan *plan_get(CudaState *st, int pass, const ConvShape *s, int groups, cx_dtype dt, Descs *d) {
    ConvPlan key = { pass, (int)s->N, (int)s->H, (int)s->W, (int)s->C, (int)s->K, (int)s->kh, (int)s->kw, s->stride,
                     s->pad, s->dil, groups, (int)dt, 0, 0, 0 };
    for (int i = 0; i < st->n_plans; i++)
        if (!memcmp(&st->plans[i], &key, offsetof(ConvPlan, algo))) return &st->plans[i];
    if (st->n_plans == st->cap_plans) {
        st->cap_plans = st->cap_plans ? 2 * st->cap_plans : 256;
        st->plans = (ConvPlan *)cx_realloc(st->plans, sizeof *st->plans * (size_t)st->cap_plans);
    }
    ConvPlan *p = &st->plans[st->n_plans++];
    *p = key;
    const size_t ws_max = ws_limit(s, dt);
    p->algo = -1;
    const int fp32 = dt != DT_BF16;
    int n = 0;
    // CAMOXPERT_CONV_FIND=1: cuDNN times every algorithm on this shape (on scratch buffers
    // of zeros) and lists them fastest first; otherwise its heuristics rank them.
    void *bx = NULL, *by = NULL, *bw = NULL, *bws = NULL;
    int find = find_mode();
    if (find) {
        const size_t es = dtype_size(dt);
        if (cudaMalloc(&bx, (size_t)(s->N * s->H * s->W * s->C) * es) != cudaSuccess ||
            cudaMalloc(&by, (size_t)(s->N * s->Ho * s->Wo * s->K) * es) != cudaSuccess ||
            cudaMalloc(&bw, (size_t)(s->K * s->Cg * s->kh * s->kw) * es) != cudaSuccess ||
            cudaMalloc(&bws, ws_max) != cudaSuccess) {
            cudaGetLastError();
            find = 0;
        } else {
            cudaMemset(bx, 0, (size_t)(s->N * s->H * s->W * s->C) * es);
            cudaMemset(by, 0, (size_t)(s->N * s->Ho * s->Wo * s->K) * es);
            cudaMemset(bw, 0, (size_t)(s->K * s->Cg * s->kh * s->kw) * es);
        }
    }
    if (pass == PASS_FWD) {
        cudnnConvolutionFwdAlgoPerf_t r[16];
        if (find) CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(st->dnn, d->x, bx, d->w, bw, d->conv, d->y, by, 16, &n,
                                                                     r, bws, ws_max));
        else CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(st->dnn, d->x, d->w, d->conv, d->y, 16, &n, r));
        for (int i = 0; i < n && p->algo < 0; i++)
            if (r[i].status == CUDNN_STATUS_SUCCESS && r[i].memory <= ws_max &&
                (!fp32 || (r[i].mathType == CUDNN_FMA_MATH && exact_fwd(r[i].algo))))
                p->algo = r[i].algo, p->math = r[i].mathType, p->ws = r[i].memory;
    } else if (pass == PASS_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t r[16];
        if (find) CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(st->dnn, d->w, bw, d->y, by, d->conv, d->x, bx, 16,
                                                                          &n, r, bws, ws_max));
        else CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(st->dnn, d->w, d->y, d->conv, d->x, 16, &n, r));
        for (int i = 0; i < n && p->algo < 0; i++)
            if (r[i].status == CUDNN_STATUS_SUCCESS && r[i].memory <= ws_max &&
                (r[i].determinism == CUDNN_DETERMINISTIC || allow_nondet()) &&
                (!fp32 || (r[i].mathType == CUDNN_FMA_MATH && exact_bwd_data(r[i].algo))))
                p->algo = r[i].algo, p->math = r[i].mathType, p->ws = r[i].memory;
        if (verbose() > 1)
            for (int i = 0; i < n; i++)
                fprintf(stderr, "  bwd data algo %d status %d time %.3f ms ws %zu det %d math %d\n", r[i].algo,
                        (int)r[i].status, r[i].time, r[i].memory, (int)r[i].determinism, (int)r[i].mathType);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t r[16];
        if (find) CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(st->dnn, d->x, bx, d->y, by, d->conv, d->w, bw,
                                                                            16, &n, r, bws, ws_max));
        else CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(st->dnn, d->x, d->y, d->conv, d->w, 16, &n, r));
        for (int i = 0; i < n && p->algo < 0; i++)
            if (r[i].status == CUDNN_STATUS_SUCCESS && r[i].memory <= ws_max &&
                (r[i].determinism == CUDNN_DETERMINISTIC || allow_nondet()) &&
                (!fp32 || (r[i].mathType == CUDNN_FMA_MATH && exact_bwd_filter(r[i].algo))))
                p->algo = r[i].algo, p->math = r[i].mathType, p->ws = r[i].memory;
        if (verbose() > 1)
            for (int i = 0; i < n; i++)
                fprintf(stderr, "  bwd filter algo %d status %d time %.3f ms ws %zu det %d math %d\n", r[i].algo,
                        (int)r[i].status, r[i].time, r[i].memory, (int)r[i].determinism, (int)r[i].mathType);
    }
    if (bx) cudaFree(bx);
    if (by) cudaFree(by);
    if (bw) cudaFree(bw);
    if (bws) cudaFree(bws);
    if (verbose())
        fprintf(stderr, "conv plan: pass %d N%d %dx%dx%d -> %d k%dx%d s%d p%d d%d g%d %s: %s algo %d (ws %zu)\n", pass, p->N,
                p->H, p->W, p->C, p->K, p->kh, p->kw, p->stride, p->pad, p->dil, p->groups, dtype_name(dt),
                p->algo < 0 ? "direct kernel" : "cuDNN", p->algo, p->ws);
    return p;
}

// Runs one cuDNN pass with its plan; returns 0 (having done nothing) when cuDNN refuses
// at run time, which turns the plan into a direct-kernel plan.
static int cudnn_run(OpCtx *ctx, ConvPlan *p, Descs *d, const void *x, const void *w, const void *dy_or_y,
                     void *out, float beta) {
    if (p->algo < 0) return 0;
    CudaState *st = ctx->cuda;
    ArenaMark mk = arena_mark(ctx->scratch);
    void *ws = p->ws ? cuda_scratch(ctx, p->ws) : NULL;
    const float alpha = 1.f;
    cudnnStatus_t r;
    CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv, (cudnnMathType_t)p->math));
    if (p->pass == PASS_FWD)
        r = cudnnConvolutionForward(st->dnn, &alpha, d->x, x, d->w, w, d->conv, (cudnnConvolutionFwdAlgo_t)p->algo, ws, p->ws,
                                    &beta, d->y, out);
    else if (p->pass == PASS_BWD_DATA)
        r = cudnnConvolutionBackwardData(st->dnn, &alpha, d->w, w, d->y, dy_or_y, d->conv,
                                         (cudnnConvolutionBwdDataAlgo_t)p->algo, ws, p->ws, &beta, d->x, out);
    else
        r = cudnnConvolutionBackwardFilter(st->dnn, &alpha, d->x, x, d->y, dy_or_y, d->conv,
                                           (cudnnConvolutionBwdFilterAlgo_t)p->algo, ws, p->ws, &beta, d->w, out);
    arena_release(ctx->scratch, mk);
    if (r == CUDNN_STATUS_NOT_SUPPORTED || r == CUDNN_STATUS_BAD_PARAM) {
        if (verbose()) fprintf(stderr, "conv plan: pass %d algo %d refused at run time (%s): direct kernel\n", p->pass,
                               p->algo, cudnnGetErrorString(r));
        p->algo = -1;
        return 0;
    }
    CUDNN_CHECK(r);
    return 1;
}

// ---- the ops --------------------------------------------------------------------------------------------
extern "C" void cuda_conv2d_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a) {
    cx_dtype dt = (cx_dtype)cuda_fdt(x, "conv2d");
    CX_ASSERT(y->dtype == dt && w->dtype == DT_F32, "conv2d: y in the dtype of x, w float32");
    ConvShape s = shape_of(x, w, y, a);
    CX_ASSERT(s.Cg * a.groups == s.C && s.Kg * a.groups == s.K && T_C(y) == s.K, "conv2d: channels/groups disagree");
    int done = 0;
    if (cuda_conv_impl != CUDA_CONV_DIRECT && !dw_own(&s, a.groups)) {
        ArenaMark mk = arena_mark(ctx->scratch);
        Descs d;
        descs_make(&d, &s, a.groups, dt);
        ConvPlan *p = plan_get(ctx->cuda, PASS_FWD, &s, a.groups, dt, &d);
        if (p->algo >= 0) {
            void *wk = cuda_scratch(ctx, (size_t)tensor_numel(w) * dtype_size(dt));
            k_oihw_to_ohwi<<<cuda_grid(tensor_numel(w)), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(wk, dt, (const float *)w->data,
                                                                                         s.K, s.Cg, s.kh, s.kw);
            CUDA_KCHECK("k_oihw_to_ohwi");
            done = cudnn_run(ctx, p, &d, x->data, wk, NULL, y->data, 0.f);
            if (done && b) cuda_bias_add(ctx, y, b);
        }
        descs_free(&d);
        arena_release(ctx->scratch, mk);
    }
    if (!done) {
        int64_t n = tensor_numel(y);
        k_conv_fwd<<<cuda_grid(n), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(y->data, (int)dt, x->data, (int)dt,
                                                                     (const float *)w->data, b ? b->data : NULL,
                                                                     b ? cuda_fdt(b, "conv bias") : 0, s);
        CUDA_KCHECK("k_conv_fwd");
    }
}

extern "C" void cuda_conv2d_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                                     const Tensor *w, ConvArgs a) {
    cx_dtype dt = (cx_dtype)cuda_fdt(x, "conv2d_backward");
    CX_ASSERT(dy->dtype == dt && (!dx || dx->dtype == dt) && w->dtype == DT_F32 && (!dw || dw->dtype == DT_F32),
              "conv2d_backward: x, dx, dy share a dtype; w, dw float32");
    ConvShape s = shape_of(x, w, dy, a);
    ArenaMark mk = arena_mark(ctx->scratch);
    Descs d;
    // depthwise: the own weight gradient always; the input gradient by the direct kernel
    // for 3x3 only (measured: cuDNN's is faster from 5x5 up; docs/PERF.md, GPU)
    const int own_dw = cuda_conv_impl != CUDA_CONV_DIRECT && dw_own(&s, a.groups);
    const int own_dx = own_dw && s.kh == 3;
    const int dnn = cuda_conv_impl != CUDA_CONV_DIRECT;
    const int dnn_dx = dnn && !own_dx, dnn_dw = dnn && !own_dw;
    const int use_dnn = (dx && dnn_dx) || (dw && dnn_dw);
    if (use_dnn) descs_make(&d, &s, a.groups, dt);
    if (dx) {
        int done = 0;
        if (dnn_dx) {
            ConvPlan *p = plan_get(ctx->cuda, PASS_BWD_DATA, &s, a.groups, dt, &d);
            if (p->algo >= 0) {
                ArenaMark m2 = arena_mark(ctx->scratch);
                void *wk = cuda_scratch(ctx, (size_t)tensor_numel(w) * dtype_size(dt));
                k_oihw_to_ohwi<<<cuda_grid(tensor_numel(w)), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
                    wk, dt, (const float *)w->data, s.K, s.Cg, s.kh, s.kw);
                CUDA_KCHECK("k_oihw_to_ohwi");
                // beta 1: dx +=; beta 0 when dx is a first write (ops.h)
                done = cudnn_run(ctx, p, &d, NULL, wk, dy->data, dx->data, cuda_acc(ctx, dx) ? 1.f : 0.f);
                arena_release(ctx->scratch, m2);
            }
        }
        if (!done) {
            k_conv_bwd_data<<<cuda_grid(tensor_numel(dx)), CUDA_BLOCK, 0, cuda_stream(ctx)>>>(
                dx->data, (int)dt, dy->data, (const float *)w->data, s, cuda_acc(ctx, dx));
            CUDA_KCHECK("k_conv_bwd_data");
        }
    }
    if (dw) {
        int done = 0;
        if (own_dw) {
            dw_bwd_filter(ctx, (float *)dw->data, x->data, dy->data, dt, &s);
            done = 1;
        }
        if (dnn_dw) {
            ConvPlan *p = plan_get(ctx->cuda, PASS_BWD_FILTER, &s, a.groups, dt, &d);
            if (p->algo >= 0) {
                ArenaMark m2 = arena_mark(ctx->scratch);
                int64_t nw = tensor_numel(w);
                void *gk = cuda_scratch(ctx, (size_t)nw * dtype_size(dt));   // (K,kh,kw,Cg), written (beta 0)
                done = cudnn_run(ctx, p, &d, x->data, NULL, dy->data, gk, 0.f);
                if (done) {
                    k_ohwi_add_oihw<<<cuda_grid(nw), CUDA_BLOCK, 0, cuda_stream(ctx)>>>((float *)dw->data, gk, (int)dt, s.K,
                                                                                       s.Cg, s.kh, s.kw);
                    CUDA_KCHECK("k_ohwi_add_oihw");
                }
                arena_release(ctx->scratch, m2);
            }
        }
        if (!done) {
            k_conv_bwd_filter<<<(unsigned)tensor_numel(w), CUDA_BLOCK, 0, cuda_stream(ctx)>>>((float *)dw->data, x->data,
                                                                                            dy->data, (int)dt, s);
            CUDA_KCHECK("k_conv_bwd_filter");
        }
    }
    if (db) cuda_colsum_add(ctx, (float *)db->data, dy->data, dt, s.N * s.Ho * s.Wo, s.K, s.K);
    if (use_dnn) descs_free(&d);
    arena_release(ctx->scratch, mk);
}
