// loss.cu — the CamoXpert training loss (ops_list.h cod_loss) on the GPU: the nine
// terms and, when asked, their gradients, with the semantics of the host
// reference ops/ref/loss_ref.c (read it first: every formula here mirrors one
// there) computed in float32 with deterministic reductions, and without a host
// synchronisation (the terms stay on the device until the step reads them).
//
// Four launches on the stream, in this order:
//   cod_loss_maps_kernel   tiles of the full-size maps: per-block partial sums of
//                          every pixel-wise term (and the per-image IoU sums),
//                          the gradients of fg, search, unc and refine0 (they
//                          need no global sum), and ∂L/∂Sx(p), ∂L/∂Sy(p) of the
//                          edge term into scratch for the pred gradient
//   cod_loss_deep_kernel   the three deep-supervision maps: partials and gradients
//   cod_loss_final_kernel  one block: the partials in a fixed order into the terms
//                          and each image's IoU numerator and denominator
//   cod_loss_pred_kernel   ∂L/∂pred, which needs those IoU sums and the neighbours'
//                          edge gradients (the transposed Sobel stencil, a gather)
// No atomics: every partial has its own slot and is summed in a fixed order, so
// the terms and gradients are bit-identical run to run.
#include "ops/cuda/common.cuh"

#define LOGIT_CLAMP_F ((float)LOGIT_CLAMP)   // ops_types.h's clamp as the float the kernels compare with

// The full-size maps are processed in TW×TH tiles with a one-pixel halo in
// shared memory (the Sobel and box stencils read 3×3 neighbourhoods); one
// thread per pixel of the tile.
#define TW 32
#define TH 8
#define TILE_THREADS (TW * TH)
#define HALO_W (TW + 2)
#define HALO_H (TH + 2)

// What each block of the maps kernel sums over its pixels: NQ partials per block.
enum { Q_BCE = 0, Q_I, Q_SP, Q_SY, Q_EDGE, Q_BND, Q_UNC, Q_RA, Q_SEARCH, Q_REF, NQ };

// ---- element-wise pieces ----------------------------------------------------------------
// σ(x) and 1 − σ(x), each to full relative precision (1 − p rounds badly when p
// is near 1, and the gradients near saturation are p(1 − p) and p − 1).
struct Sig { float p, q, e; };   // σ(x), 1 − σ(x), exp(−|x|)
__device__ __forceinline__ Sig sigm(float x) {
    float e = expf(-fabsf(x)), r = 1.f / (1.f + e);
    return x >= 0.f ? Sig{ r, e * r, e } : Sig{ e * r, r, e };
}
// σ(x) − y, taking the complement form near 1 (y = 1 there gives exactly −q).
__device__ __forceinline__ float sig_minus(Sig s, float y) { return s.p > 0.5f ? (1.f - y) - s.q : s.p - y; }
// clamp(x, ±15) as fmin(fmax()) does it in the reference: a NaN becomes −15.
__device__ __forceinline__ float clamp_logit(float x) { return fminf(fmaxf(x, -LOGIT_CLAMP_F), LOGIT_CLAMP_F); }
// The clamp passes a gradient only on [−15, 15] (NaN: none).
__device__ __forceinline__ bool in_clamp(float x) { return x >= -LOGIT_CLAMP_F && x <= LOGIT_CLAMP_F; }
// BCEwithLogits of a clamped logit, PyTorch's stable form (1 − y)x + max(−x, 0) + log(1 + e^−|x|).
__device__ __forceinline__ float bce_logit(float xc, float y, Sig s) {
    return (1.f - y) * xc + fmaxf(-xc, 0.f) + log1pf(s.e);
}
// BCE(clamp(p, 1e-7, 1 − 1e-7), y) with PyTorch's log clamp at −100; *dp gets
// ∂/∂p (0 outside the clamp). The clamp is decided in double and the clamped
// value's complement is carried exactly: rounding 1 − 1e-7 to float would turn
// log(1e-7) into log(1.19e-7) on every saturated pixel.
__device__ __forceinline__ float bce_prob(float p, float y, float *dp) {
    double pd = p;
    float pc, q;   // clamp(p) and 1 − clamp(p)
    *dp = 0.f;
    if (pd >= PROB_CLAMP && pd <= 1 - PROB_CLAMP) {
        pc = p, q = 1.f - p;
        *dp = (pc - y) / fmaxf(q * pc, 1e-12f);
    } else if (pd > 1 - PROB_CLAMP) {
        pc = (float)(1 - PROB_CLAMP), q = (float)PROB_CLAMP;
    } else {   // below the clamp, or NaN (fmax's choice in the reference)
        pc = (float)PROB_CLAMP, q = (float)(1 - PROB_CLAMP);
    }
    return -(y * fmaxf(logf(pc), -100.f) + (1.f - y) * fmaxf(logf(q), -100.f));
}

// ---- 3×3 stencils on a halo tile (zero outside the image) -------------------------------
// Sobel as cross-correlation: SOBEL_X = [−1 0 1; −2 0 2; −1 0 1], SOBEL_Y its transpose.
__device__ __forceinline__ float sobel_x(const float (*a)[HALO_W], int r, int c) {
    return (a[r - 1][c + 1] - a[r - 1][c - 1]) + 2.f * (a[r][c + 1] - a[r][c - 1]) + (a[r + 1][c + 1] - a[r + 1][c - 1]);
}
__device__ __forceinline__ float sobel_y(const float (*a)[HALO_W], int r, int c) {
    return (a[r + 1][c - 1] - a[r - 1][c - 1]) + 2.f * (a[r + 1][c] - a[r - 1][c]) + (a[r + 1][c + 1] - a[r - 1][c + 1]);
}
__device__ __forceinline__ float box3(const float (*a)[HALO_W], int r, int c) {
    float s = 0.f;
    for (int i = -1; i <= 1; i++)
        for (int j = -1; j <= 1; j++) s += a[r + i][c + j];
    return s * (1.f / 9.f);
}
// The boundary weight 1 + 4·(box(y) − (1 − box(1 − y))) as the reference writes it;
// yc holds 1 − y inside the image and 0 in the padding.
__device__ __forceinline__ float boundary_weight(const float (*y)[HALO_W], const float (*yc)[HALO_W], int r, int c) {
    return 1.f + 4.f * (box3(y, r, c) - (1.f - box3(yc, r, c)));
}

// Loads the tile whose first pixel is (r0, c0) in image b, with its halo, into
// sh: f(i) at the pixels inside the image (i the flat element index), 0 in the padding.
template <typename F>
__device__ __forceinline__ void load_halo(float (*sh)[HALO_W], int64_t b, int64_t H, int64_t W, int64_t r0, int64_t c0, F f) {
    for (int k = threadIdx.x; k < HALO_H * HALO_W; k += blockDim.x) {
        int hr = k / HALO_W, hc = k % HALO_W;
        int64_t r = r0 + hr - 1, c = c0 + hc - 1;
        sh[hr][hc] = r >= 0 && r < H && c >= 0 && c < W ? f((b * H + r) * W + c) : 0.f;
    }
}

struct LossMap { const void *x; int dt; };   // a (N,H,W,1) act map
struct LossGrad { void *x; int dt; };        // its gradient, x NULL when not wanted

// ---- the full-size maps ---------------------------------------------------------------------
struct MapsArgs {
    LossMap pred, fg, search, unc, refine0;
    LossGrad gfg, gsearch, gunc, grefine0;
    const float *y;                // (N,H,W,1) mask
    int64_t H, W, tiles_w, tiles;  // tiles per image
    float c_edge;                  // 2·w_edge / n
    float c_unc, c_ra, c_search, c_ref;   // w_t / n
    float *gsx, *gsy;              // (N,H,W) ∂L/∂Sx(p), ∂L/∂Sy(p), or NULL (no pred gradient)
    float *part;                   // (N, gridDim.x, NQ) block partials
};

// grid (blocks per image, N), TILE_THREADS threads; a block walks its image's tiles.
static __global__ void __launch_bounds__(TILE_THREADS) cod_loss_maps_kernel(MapsArgs a) {
    __shared__ float P[HALO_H][HALO_W], Y[HALO_H][HALO_W], Yc[HALO_H][HALO_W];   // p = σ(clamp(pred)), y, 1 − y
    const int64_t b = blockIdx.y, H = a.H, W = a.W;
    const int tx = threadIdx.x % TW, ty = threadIdx.x / TW;
    float acc[NQ];
#pragma unroll
    for (int q = 0; q < NQ; q++) acc[q] = 0.f;

    for (int64_t t = blockIdx.x; t < a.tiles; t += gridDim.x) {
        const int64_t r0 = (t / a.tiles_w) * TH, c0 = (t % a.tiles_w) * TW;
        __syncthreads();   // the previous tile's stencils are done with the shared tiles
        load_halo(P, b, H, W, r0, c0, [&](int64_t i) { return sigm(clamp_logit(ldf(a.pred.x, a.pred.dt, i))).p; });
        load_halo(Y, b, H, W, r0, c0, [&](int64_t i) { return a.y[i]; });
        load_halo(Yc, b, H, W, r0, c0, [&](int64_t i) { return 1.f - a.y[i]; });
        __syncthreads();
        const int64_t r = r0 + ty, c = c0 + tx;
        if (r >= H || c >= W) continue;
        const int64_t i = (b * H + r) * W + c;
        const int hr = ty + 1, hc = tx + 1;
        const float y = Y[hr][hc], xc = clamp_logit(ldf(a.pred.x, a.pred.dt, i));
        const Sig s = sigm(xc);
        const float bce = bce_logit(xc, y, s);
        acc[Q_BCE] += bce;
        acc[Q_I] += s.p * y, acc[Q_SP] += s.p, acc[Q_SY] += y;

        // edge: |∇p| − |∇y| with the Sobel gradients; ∂/∂Sx(p) = c_edge·(pe − te)/pe · Sx(p)
        const float px = sobel_x(P, hr, hc), py = sobel_y(P, hr, hc);
        const float yx = sobel_x(Y, hr, hc), yy = sobel_y(Y, hr, hc);
        const float pe = sqrtf(fmaxf(px * px + py * py, 0.f) + 1e-5f), te = sqrtf(yx * yx + yy * yy + 1e-5f);
        acc[Q_EDGE] += (pe - te) * (pe - te);
        if (a.gsx) {
            float ge = a.c_edge * (pe - te) / pe;
            a.gsx[i] = px * ge, a.gsy[i] = py * ge;
        }

        acc[Q_BND] += boundary_weight(Y, Yc, hr, hc) * bce;

        // uncertainty: |p − y|·log(1/(u + 1e-8)); its p-gradient waits for the pred kernel
        const float u = ldf(a.unc.x, a.unc.dt, i), e = sig_minus(s, y), lg = -logf(u + 1e-8f);
        acc[Q_UNC] += fabsf(e) * lg;
        if (a.gunc.x) addf(a.gunc.x, a.gunc.dt, i, a.c_unc * fabsf(e) * (-1.f / (u + 1e-8f)));

        float d;
        acc[Q_RA] += bce_prob(ldf(a.fg.x, a.fg.dt, i), y, &d);
        if (a.gfg.x) addf(a.gfg.x, a.gfg.dt, i, a.c_ra * d);
        acc[Q_SEARCH] += bce_prob(ldf(a.search.x, a.search.dt, i), y, &d);
        if (a.gsearch.x) addf(a.gsearch.x, a.gsearch.dt, i, a.c_search * d);

        const float xr = ldf(a.refine0.x, a.refine0.dt, i), xrc = clamp_logit(xr);
        const Sig sr = sigm(xrc);
        acc[Q_REF] += bce_logit(xrc, y, sr);
        if (a.grefine0.x && in_clamp(xr)) addf(a.grefine0.x, a.grefine0.dt, i, a.c_ref * sig_minus(sr, y));
    }
    float *out = a.part + (b * gridDim.x + blockIdx.x) * NQ;
#pragma unroll
    for (int q = 0; q < NQ; q++) {
        float v = block_sum(acc[q]);
        if (threadIdx.x == 0) out[q] = v;
    }
}

// ---- the deep-supervision maps ----------------------------------------------------------------
struct DeepArgs {
    LossMap x[3];
    LossGrad g[3];
    const float *y[3];   // the resized masks
    int64_t m[3];        // elements of each map
    float c[3];          // gradient scale w_deep / 3 / m_j
    float *part;         // (3, gridDim.x) block partials of Σ BCE
};

// grid (blocks, 3): blockIdx.y picks the map.
static __global__ void __launch_bounds__(CUDA_BLOCK) cod_loss_deep_kernel(DeepArgs a) {
    const int j = blockIdx.y;
    const LossMap x = a.x[j];
    const LossGrad g = a.g[j];
    const float *y = a.y[j];
    float acc = 0.f;
    CUDA_LOOP(i, a.m[j]) {
        float xi = ldf(x.x, x.dt, i), xc = clamp_logit(xi);
        Sig s = sigm(xc);
        acc += bce_logit(xc, y[i], s);
        if (g.x && in_clamp(xi)) addf(g.x, g.dt, i, a.c[j] * sig_minus(s, y[i]));
    }
    float v = block_sum(acc);
    if (threadIdx.x == 0) a.part[j * gridDim.x + blockIdx.x] = v;
}

// ---- the terms ---------------------------------------------------------------------------------
struct FinalArgs {
    const float *part;    // (N, bx, NQ)
    const float *dpart;   // (3, bxd)
    int64_t N, bx, bxd;
    float *img;           // (N·NQ + 3) per-image sums, then the three deep sums
    float *iou;           // (N, 2) IoU numerator and denominator, for the pred gradient
    float *terms;         // (CL_TERMS)
    float inv_n, inv_m[3], w_ref;
};

// One block, in three fixed-order rounds (each row a warp: lane k takes
// elements k, k+32, ..., then a fixed butterfly), so no result depends on
// scheduling: (1) each image's sum of each quantity over its blocks, and the
// deep maps' sums; (2) each quantity over the images, and Σ num/den of the IoU;
// (3) thread 0 scales them into the terms.
static __global__ void __launch_bounds__(CUDA_BLOCK) cod_loss_final_kernel(FinalArgs a) {
    __shared__ float tot[NQ + 1];   // Σ over images of each quantity, then Σ IoU ratios
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int64_t N = a.N;
    for (int64_t k = warp; k < N * NQ + 3; k += nwarps) {
        float s = 0.f;
        if (k < N * NQ) {
            const int64_t b = k / NQ, q = k % NQ;
            for (int64_t j = lane; j < a.bx; j += 32) s += a.part[(b * a.bx + j) * NQ + q];
        } else {
            const int64_t d = k - N * NQ;
            for (int64_t j = lane; j < a.bxd; j += 32) s += a.dpart[d * a.bxd + j];
        }
        s = warp_sum(s);
        if (lane == 0) a.img[k] = s;
    }
    __syncthreads();   // also orders the block's global writes to img before the reads below
    for (int q = warp; q <= NQ; q += nwarps) {
        float s = 0.f;
        for (int64_t b = lane; b < N; b += 32) {
            const float *v = a.img + b * NQ;
            if (q < NQ) {
                s += v[q];
            } else {   // the IoU of image b; its numerator and denominator also feed the pred gradient
                float num = v[Q_I] + 1e-5f, den = v[Q_SP] + v[Q_SY] - v[Q_I] + 1e-5f;
                a.iou[2 * b] = num, a.iou[2 * b + 1] = den;
                s += num / den;
            }
        }
        s = warp_sum(s);
        if (lane == 0) tot[q] = s;
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    const float *deep = a.img + N * NQ;
    float *T = a.terms;
    T[CL_BCE] = tot[Q_BCE] * a.inv_n;
    T[CL_IOU] = 1.f - tot[NQ] / (float)N;
    T[CL_EDGE] = tot[Q_EDGE] * a.inv_n;
    T[CL_BOUNDARY] = tot[Q_BND] * a.inv_n;
    T[CL_UNCERT] = tot[Q_UNC] * a.inv_n;
    T[CL_RA] = tot[Q_RA] * a.inv_n;
    T[CL_SEARCH] = tot[Q_SEARCH] * a.inv_n;
    T[CL_DEEP] = deep[0] * a.inv_m[0] / 3.f + deep[1] * a.inv_m[1] / 3.f + deep[2] * a.inv_m[2] / 3.f;
    T[CL_REFINE] = a.w_ref * (tot[Q_REF] * a.inv_n);   // weighted, as the reference reports it
}

// ---- ∂L/∂pred ------------------------------------------------------------------------------------
struct PredArgs {
    LossMap pred, unc;
    LossGrad gpred;
    const float *y;                       // (N,H,W,1)
    const float *gsx, *gsy;               // (N,H,W) from the maps kernel
    const float *iou;                     // (N, 2) from the final kernel
    int64_t H, W, tiles_w;
    float c_iou;                          // w_iou / N
    float c_bce, c_bnd, c_unc;            // w_t / n
};

// grid (tiles per image, N), TILE_THREADS threads, one tile per block.
//   ∂L/∂p    = IoU + uncertainty + Σ transposed Sobel of (∂L/∂Sx, ∂L/∂Sy)
//   ∂L/∂pred = boundary (not gated by the clamp, as in the reference)
//            + [inside the clamp] BCE + ∂L/∂p · p(1 − p)
static __global__ void __launch_bounds__(TILE_THREADS) cod_loss_pred_kernel(PredArgs a) {
    __shared__ float Y[HALO_H][HALO_W], Yc[HALO_H][HALO_W], GX[HALO_H][HALO_W], GY[HALO_H][HALO_W];
    const int64_t b = blockIdx.y, H = a.H, W = a.W;
    const int64_t r0 = (blockIdx.x / a.tiles_w) * TH, c0 = (blockIdx.x % a.tiles_w) * TW;
    load_halo(Y, b, H, W, r0, c0, [&](int64_t i) { return a.y[i]; });
    load_halo(Yc, b, H, W, r0, c0, [&](int64_t i) { return 1.f - a.y[i]; });
    load_halo(GX, b, H, W, r0, c0, [&](int64_t i) { return a.gsx[i]; });
    load_halo(GY, b, H, W, r0, c0, [&](int64_t i) { return a.gsy[i]; });
    __syncthreads();
    const int tx = threadIdx.x % TW, ty = threadIdx.x / TW, hr = ty + 1, hc = tx + 1;
    const int64_t r = r0 + ty, c = c0 + tx;
    if (r >= H || c >= W) return;
    const int64_t i = (b * H + r) * W + c;
    const float x = ldf(a.pred.x, a.pred.dt, i), y = Y[hr][hc], u = ldf(a.unc.x, a.unc.dt, i);
    const Sig s = sigm(clamp_logit(x));
    const float e = sig_minus(s, y);   // p − y

    // d(num/den)/dp = y/den − num·(1 − y)/den², and the IoU term is 1 − mean(num/den)
    const float num = a.iou[2 * b], den = a.iou[2 * b + 1];
    float dp = -a.c_iou * (y / den - num * (1.f - y) / (den * den));
    dp += a.c_unc * (float)((e > 0.f) - (e < 0.f)) * -logf(u + 1e-8f);
    // The Sobel kernels are antisymmetric, so their transposes are their negatives.
    dp -= sobel_x(GX, hr, hc) + sobel_y(GY, hr, hc);

    float g = a.c_bnd * boundary_weight(Y, Yc, hr, hc) * e;
    if (in_clamp(x)) g += a.c_bce * e + dp * (s.p * s.q);
    addf(a.gpred.x, a.gpred.dt, i, g);
}

// ---- entry point ---------------------------------------------------------------------------------
static LossMap map_of(const Tensor *t, int64_t n, const char *what) {
    CX_ASSERT(t && tensor_numel(t) == n, "cod_loss: %s has %lld elements, expected %lld", what,
              t ? (long long)tensor_numel(t) : -1LL, (long long)n);
    return LossMap{ t->data, cuda_fdt(t, "cod_loss") };
}
static LossGrad grad_of(Tensor *t, int64_t n, const char *what) {
    if (!t) return LossGrad{ NULL, DT_F32 };
    CX_ASSERT(tensor_numel(t) == n, "cod_loss: the gradient of %s has %lld elements, expected %lld", what,
              (long long)tensor_numel(t), (long long)n);
    return LossGrad{ t->data, cuda_fdt(t, "cod_loss") };
}

extern "C" void cuda_cod_loss(OpCtx *ctx, Tensor *terms, const CodLossGrad *g, const CodLossIn *in) {
    const Tensor *mask = in->mask;
    const double *w = in->w;
    CX_ASSERT(mask->dtype == DT_F32 && mask->ndim == 4 && T_C(mask) == 1, "cod_loss: the mask must be F32 (N,H,W,1)");
    CX_ASSERT(terms->dtype == DT_F32 && tensor_numel(terms) == CL_TERMS, "cod_loss: terms must be F32 (CL_TERMS)");
    const int64_t N = T_N(mask), H = T_H(mask), W = T_W(mask), n = N * H * W;
    CX_ASSERT(N >= 1 && N <= 65535 && H >= 1 && W >= 1, "cod_loss: mask shape N=%lld H=%lld W=%lld", (long long)N,
              (long long)H, (long long)W);
    cudaStream_t st = cuda_stream(ctx);
    Arena *sa = ctx->scratch;
    ArenaMark mk = arena_mark(sa);
    const int sms = ctx->cuda->prop.multiProcessorCount;

    // Full-size maps: enough blocks to fill the GPU (8 resident per SM), each
    // walking several tiles of its image so the partials stay few.
    const int64_t tiles_w = (W + TW - 1) / TW, tiles = tiles_w * ((H + TH - 1) / TH);
    CX_ASSERT(tiles <= INT32_MAX, "cod_loss: %lld tiles per image", (long long)tiles);
    int64_t bx = (8LL * sms + N - 1) / N;
    if (bx > tiles) bx = tiles;
    MapsArgs ma;
    ma.pred = map_of(in->pred, n, "pred"), ma.fg = map_of(in->fg, n, "fg");
    ma.search = map_of(in->search, n, "search"), ma.unc = map_of(in->unc, n, "unc");
    ma.refine0 = map_of(in->refine0, n, "refine0");
    ma.gfg = grad_of(g ? g->fg : NULL, n, "fg"), ma.gsearch = grad_of(g ? g->search : NULL, n, "search");
    ma.gunc = grad_of(g ? g->unc : NULL, n, "unc"), ma.grefine0 = grad_of(g ? g->refine0 : NULL, n, "refine0");
    ma.y = (const float *)mask->data;
    ma.H = H, ma.W = W, ma.tiles_w = tiles_w, ma.tiles = tiles;
    const double inv_n = 1.0 / (double)n;
    ma.c_edge = (float)(2 * w[CL_EDGE] * inv_n);
    ma.c_unc = (float)(w[CL_UNCERT] * inv_n), ma.c_ra = (float)(w[CL_RA] * inv_n);
    ma.c_search = (float)(w[CL_SEARCH] * inv_n), ma.c_ref = (float)(w[CL_REFINE] * inv_n);   // w_refine once
    const bool want_pred = g && g->pred;
    ma.gsx = want_pred ? (float *)cuda_scratch(ctx, (size_t)n * sizeof(float)) : NULL;
    ma.gsy = want_pred ? (float *)cuda_scratch(ctx, (size_t)n * sizeof(float)) : NULL;
    ma.part = (float *)cuda_scratch(ctx, (size_t)(N * bx * NQ) * sizeof(float));
    cod_loss_maps_kernel<<<dim3((unsigned)bx, (unsigned)N), TILE_THREADS, 0, st>>>(ma);
    CUDA_KCHECK("cod_loss_maps_kernel");

    // Deep supervision: mean over the three maps of the mean BCE.
    DeepArgs da;
    int64_t mmax = 1;
    for (int j = 0; j < 3; j++) {
        CX_ASSERT(in->deep[j] && in->deep_mask[j] && in->deep_mask[j]->dtype == DT_F32,
                  "cod_loss: deep map %d and its F32 mask are required", j);
        const int64_t m = tensor_numel(in->deep[j]);
        CX_ASSERT(m >= 1 && tensor_numel(in->deep_mask[j]) == m, "cod_loss: deep %d and its mask differ", j);
        da.x[j] = map_of(in->deep[j], m, "deep");
        da.g[j] = grad_of(g ? g->deep[j] : NULL, m, "deep");
        da.y[j] = (const float *)in->deep_mask[j]->data;
        da.m[j] = m;
        da.c[j] = (float)(w[CL_DEEP] / 3 / (double)m);
        if (m > mmax) mmax = m;
    }
    int64_t bxd = (mmax + CUDA_BLOCK - 1) / CUDA_BLOCK;
    if (bxd > 4LL * sms) bxd = 4LL * sms;
    da.part = (float *)cuda_scratch(ctx, (size_t)(3 * bxd) * sizeof(float));
    cod_loss_deep_kernel<<<dim3((unsigned)bxd, 3), CUDA_BLOCK, 0, st>>>(da);
    CUDA_KCHECK("cod_loss_deep_kernel");

    FinalArgs fa;
    fa.part = ma.part, fa.dpart = da.part, fa.N = N, fa.bx = bx, fa.bxd = bxd;
    fa.img = (float *)cuda_scratch(ctx, (size_t)(N * NQ + 3) * sizeof(float));
    fa.iou = (float *)cuda_scratch(ctx, (size_t)(2 * N) * sizeof(float));
    fa.terms = (float *)terms->data;
    fa.inv_n = (float)inv_n, fa.w_ref = (float)w[CL_REFINE];
    for (int j = 0; j < 3; j++) fa.inv_m[j] = (float)(1.0 / (double)da.m[j]);
    cod_loss_final_kernel<<<1, CUDA_BLOCK, 0, st>>>(fa);
    CUDA_KCHECK("cod_loss_final_kernel");

    if (want_pred) {
        PredArgs pa;
        pa.pred = ma.pred, pa.unc = ma.unc, pa.gpred = grad_of(g->pred, n, "pred");
        pa.y = ma.y, pa.gsx = ma.gsx, pa.gsy = ma.gsy, pa.iou = fa.iou;
        pa.H = H, pa.W = W, pa.tiles_w = tiles_w;
        pa.c_iou = (float)(w[CL_IOU] / (double)N);
        pa.c_bce = (float)(w[CL_BCE] * inv_n), pa.c_bnd = (float)(w[CL_BOUNDARY] * inv_n);
        pa.c_unc = ma.c_unc;
        cod_loss_pred_kernel<<<dim3((unsigned)tiles, (unsigned)N), TILE_THREADS, 0, st>>>(pa);
        CUDA_KCHECK("cod_loss_pred_kernel");
    }
    arena_release(sa, mk);
}
