// ref_tmpl.h — body of the reference kernels, included by ref.c once per float
// dtype with `real` (float or double) and SFX (f32 or f64) defined. Every
// function here is the direct transcription of the PyTorch op it names; sums
// run in double (acc) so the float32 instantiation is a tight reference too.
// Accumulation contract (ops.h): backward passes add (+=) into every gradient.
#ifndef SFX
#error "ref_tmpl.h needs real and SFX"
#endif
#define FN_(a, b) a##_##b
#define FN2(a, b) FN_(a, b)
#define FN(name) FN2(name, SFX)

typedef double acc;

static inline real *FN(P)(const Tensor *t) { return (real *)t->data; }

// ---- convolution ------------------------------------------------------------------
// reference: torch.nn.functional.conv2d. Weights are first transposed from
// OIHW to (K, kh, kw, C/G) so the inner loop runs over contiguous channels.
static real *FN(conv_w_ohwi)(OpCtx *ctx, const Tensor *w) {
    int64_t K = w->shape[0], Cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    real *wt = arena_alloc(ctx->scratch, sizeof(real) * (size_t)(K * Cg * kh * kw));   // (K, kh, kw, Cg)
    const real *wp = FN(P)(w);
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    wt[((k * kh + i) * kw + j) * Cg + c] = wp[((k * Cg + c) * kh + i) * kw + j];
    return wt;
}

void FN(ref_conv2d_forward)(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a) {
    int64_t N = T_N(x), H = T_H(x), W = T_W(x), C = T_C(x);
    int64_t K = w->shape[0], Cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    int64_t Ho = T_H(y), Wo = T_W(y), G = a.groups, Kg = K / G;
    CX_ASSERT(Cg * G == C && Kg * G == K && T_C(y) == K && T_N(y) == N, "conv2d: channels/groups disagree");
    CX_ASSERT(Ho == conv2d_out_size(H, (int)kh, a) && Wo == conv2d_out_size(W, (int)kw, a), "conv2d: output size");
    ArenaMark m = arena_mark(ctx->scratch);
    const real *wt = FN(conv_w_ohwi)(ctx, w);   // (K, kh, kw, Cg)
    const real *xp = FN(P)(x), *bp = b ? FN(P)(b) : NULL;
    real *yp = FN(P)(y);   // (N, Ho, Wo, K)
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++)
                for (int64_t k = 0; k < K; k++) {
                    int64_t g = k / Kg;
                    acc s = bp ? bp[k] : 0;
                    for (int64_t i = 0; i < kh; i++) {
                        int64_t ih = oh * a.stride - a.pad + i * a.dil;
                        if (ih < 0 || ih >= H) continue;
                        for (int64_t j = 0; j < kw; j++) {
                            int64_t iw = ow * a.stride - a.pad + j * a.dil;
                            if (iw < 0 || iw >= W) continue;
                            const real *xr = xp + ((n * H + ih) * W + iw) * C + g * Cg;
                            const real *wr = wt + ((k * kh + i) * kw + j) * Cg;
                            for (int64_t c = 0; c < Cg; c++) s += (acc)xr[c] * wr[c];
                        }
                    }
                    yp[((n * Ho + oh) * Wo + ow) * K + k] = (real)s;
                }
    arena_release(ctx->scratch, m);
}

void FN(ref_conv2d_backward)(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                             const Tensor *w, ConvArgs a) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    int64_t N = T_N(x), H = T_H(x), W = T_W(x), C = T_C(x);
    int64_t K = w->shape[0], Cg = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    int64_t Ho = T_H(dy), Wo = T_W(dy), G = a.groups, Kg = K / G;
    CX_ASSERT(Cg * G == C && T_C(dy) == K, "conv2d_backward: channels/groups disagree");
    ArenaMark m = arena_mark(ctx->scratch);
    const real *wt = FN(conv_w_ohwi)(ctx, w);   // (K, kh, kw, Cg)
    size_t nw = (size_t)(K * kh * kw * Cg);
    acc *dwt = dw ? arena_calloc(ctx->scratch, sizeof(acc) * nw) : NULL;   // (K, kh, kw, Cg)
    acc *dxa = dx ? arena_calloc(ctx->scratch, sizeof(acc) * (size_t)tensor_numel(x)) : NULL;   // (N, H, W, C)
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++)
                for (int64_t k = 0; k < K; k++) {
                    int64_t g = k / Kg;
                    acc d = dyp[((n * Ho + oh) * Wo + ow) * K + k];
                    if (d == 0) continue;
                    for (int64_t i = 0; i < kh; i++) {
                        int64_t ih = oh * a.stride - a.pad + i * a.dil;
                        if (ih < 0 || ih >= H) continue;
                        for (int64_t j = 0; j < kw; j++) {
                            int64_t iw = ow * a.stride - a.pad + j * a.dil;
                            if (iw < 0 || iw >= W) continue;
                            int64_t xo = ((n * H + ih) * W + iw) * C + g * Cg, wo = ((k * kh + i) * kw + j) * Cg;
                            if (dxa) for (int64_t c = 0; c < Cg; c++) dxa[xo + c] += d * wt[wo + c];
                            if (dwt) for (int64_t c = 0; c < Cg; c++) dwt[wo + c] += d * xp[xo + c];
                        }
                    }
                }
    if (dxa) {
        real *dxp = FN(P)(dx);
        for (int64_t i = 0; i < tensor_numel(x); i++) dxp[i] += (real)dxa[i];
    }
    if (dwt) {
        real *dwp = FN(P)(dw);   // (K, Cg, kh, kw)
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = 0; c < Cg; c++)
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++)
                        dwp[((k * Cg + c) * kh + i) * kw + j] += (real)dwt[((k * kh + i) * kw + j) * Cg + c];
    }
    if (db) {
        real *dbp = FN(P)(db);
        for (int64_t k = 0; k < K; k++) {
            acc s = 0;
            for (int64_t r = 0; r < N * Ho * Wo; r++) s += dyp[r * K + k];
            dbp[k] += (real)s;
        }
    }
    arena_release(ctx->scratch, m);
}

// ---- linear / GEMM ------------------------------------------------------------------
// reference: torch.nn.functional.linear.
void FN(ref_linear_forward)(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b) {
    int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    CX_ASSERT(x->shape[x->ndim - 1] == C && tensor_numel(y) == R * K, "linear: shapes");
    const real *xp = FN(P)(x), *wp = FN(P)(w), *bp = b ? FN(P)(b) : NULL;
    real *yp = FN(P)(y);
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < K; k++) {
            acc s = bp ? bp[k] : 0;
            for (int64_t c = 0; c < C; c++) s += (acc)xp[r * C + c] * wp[k * C + c];
            yp[r * K + k] = (real)s;
        }
}

void FN(ref_linear_backward)(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                             const Tensor *w) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    int64_t K = w->shape[0], C = w->shape[1], R = tensor_numel(x) / C;
    const real *xp = FN(P)(x), *wp = FN(P)(w), *dyp = FN(P)(dy);
    if (dx) {
        real *dxp = FN(P)(dx);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) {
                acc s = 0;
                for (int64_t k = 0; k < K; k++) s += (acc)dyp[r * K + k] * wp[k * C + c];
                dxp[r * C + c] += (real)s;
            }
    }
    if (dw) {
        real *dwp = FN(P)(dw);
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = 0; c < C; c++) {
                acc s = 0;
                for (int64_t r = 0; r < R; r++) s += (acc)dyp[r * K + k] * xp[r * C + c];
                dwp[k * C + c] += (real)s;
            }
    }
    if (db) {
        real *dbp = FN(P)(db);
        for (int64_t k = 0; k < K; k++) {
            acc s = 0;
            for (int64_t r = 0; r < R; r++) s += dyp[r * K + k];
            dbp[k] += (real)s;
        }
    }
}

// reference: torch.baddbmm on strided views (row-major, BLAS semantics: beta 0
// ignores C's old contents), over the two batch levels of GemmArgs.
void FN(ref_gemm_batched)(OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g) {
    for (int b1 = 0; b1 < g->nb1; b1++)
        for (int b2 = 0; b2 < g->nb2; b2++) {
            const real *a = FN(P)(A) + g->offa + b1 * g->sa1 + b2 * g->sa2;
            const real *b = FN(P)(B) + g->offb + b1 * g->sb1 + b2 * g->sb2;
            real *c = FN(P)(C) + g->offc + b1 * g->sc1 + b2 * g->sc2;
            for (int i = 0; i < g->M; i++)
                for (int j = 0; j < g->N; j++) {
                    acc s = 0;
                    for (int k = 0; k < g->K; k++) {
                        acc av = g->ta ? a[(int64_t)k * g->lda + i] : a[(int64_t)i * g->lda + k];
                        acc bv = g->tb ? b[(int64_t)j * g->ldb + k] : b[(int64_t)k * g->ldb + j];
                        s += av * bv;
                    }
                    real *cij = c + (int64_t)i * g->ldc + j;
                    *cij = (real)(g->alpha * s + (g->beta != 0 ? g->beta * (acc)*cij : 0));
                }
        }
}

// ---- normalisation -------------------------------------------------------------------
// reference: torch.nn.functional.batch_norm (training and eval).
void FN(ref_batchnorm_forward)(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                               const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                               int training, double momentum, double eps) {
    int64_t C = x->shape[x->ndim - 1], M = tensor_numel(x) / C;
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t c = 0; c < C; c++) {
        acc mean, var;
        if (training) {
            acc s = 0, ss = 0;
            for (int64_t r = 0; r < M; r++) s += xp[r * C + c];
            mean = s / M;
            for (int64_t r = 0; r < M; r++) { acc d = xp[r * C + c] - mean; ss += d * d; }
            var = ss / M;
            if (running_mean) FN(P)(running_mean)[c] = (real)((1 - momentum) * FN(P)(running_mean)[c] + momentum * mean);
            if (running_var) {
                acc unbiased = M > 1 ? ss / (M - 1) : ss;
                FN(P)(running_var)[c] = (real)((1 - momentum) * FN(P)(running_var)[c] + momentum * unbiased);
            }
        } else {
            mean = FN(P)(running_mean)[c];
            var = FN(P)(running_var)[c];
        }
        acc invstd = 1 / sqrt(var + eps);
        acc g = gamma ? FN(P)(gamma)[c] : 1, bb = beta ? FN(P)(beta)[c] : 0;
        for (int64_t r = 0; r < M; r++) yp[r * C + c] = (real)((xp[r * C + c] - mean) * invstd * g + bb);
        if (save_mean) FN(P)(save_mean)[c] = (real)mean;
        if (save_invstd) FN(P)(save_invstd)[c] = (real)invstd;
    }
}

void FN(ref_batchnorm_backward)(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                                const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                                const Tensor *gamma, int training) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    int64_t C = x->shape[x->ndim - 1], M = tensor_numel(x) / C;
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    for (int64_t c = 0; c < C; c++) {
        acc mean = FN(P)(save_mean)[c], invstd = FN(P)(save_invstd)[c], g = gamma ? FN(P)(gamma)[c] : 1;
        acc sdy = 0, sdyxh = 0;
        for (int64_t r = 0; r < M; r++) {
            acc xh = (xp[r * C + c] - mean) * invstd;
            sdy += dyp[r * C + c];
            sdyxh += dyp[r * C + c] * xh;
        }
        if (dgamma) FN(P)(dgamma)[c] += (real)sdyxh;
        if (dbeta) FN(P)(dbeta)[c] += (real)sdy;
        if (!dx) continue;
        real *dxp = FN(P)(dx);
        for (int64_t r = 0; r < M; r++) {
            acc d = dyp[r * C + c];
            if (training) {
                acc xh = (xp[r * C + c] - mean) * invstd;
                d = d - sdy / M - xh * sdyxh / M;
            }
            dxp[r * C + c] += (real)(d * g * invstd);
        }
    }
}

// reference: torch.nn.functional.layer_norm over the last axis.
void FN(ref_layernorm_forward)(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x,
                               const Tensor *w, const Tensor *b, double eps) {
    int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    const real *xp = FN(P)(x), *wp = w ? FN(P)(w) : NULL, *bp = b ? FN(P)(b) : NULL;
    real *yp = FN(P)(y);
    for (int64_t r = 0; r < R; r++) {
        const real *xr = xp + r * C;
        acc s = 0, ss = 0;
        for (int64_t c = 0; c < C; c++) s += xr[c];
        acc mean = s / C;
        for (int64_t c = 0; c < C; c++) ss += (xr[c] - mean) * (xr[c] - mean);
        acc rstd = 1 / sqrt(ss / C + eps);
        for (int64_t c = 0; c < C; c++)
            yp[r * C + c] = (real)((xr[c] - mean) * rstd * (wp ? wp[c] : 1) + (bp ? bp[c] : 0));
        if (save_mean) FN(P)(save_mean)[r] = (real)mean;
        if (save_rstd) FN(P)(save_rstd)[r] = (real)rstd;
    }
}

void FN(ref_layernorm_backward)(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                                const Tensor *save_mean, const Tensor *save_rstd, const Tensor *w) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    const real *xp = FN(P)(x), *dyp = FN(P)(dy), *wp = w ? FN(P)(w) : NULL;
    for (int64_t r = 0; r < R; r++) {
        acc mean = FN(P)(save_mean)[r], rstd = FN(P)(save_rstd)[r];
        const real *xr = xp + r * C, *dr = dyp + r * C;
        acc sg = 0, sgx = 0;   // Σ dy·w and Σ dy·w·x̂
        for (int64_t c = 0; c < C; c++) {
            acc xh = (xr[c] - mean) * rstd, g = (acc)dr[c] * (wp ? wp[c] : 1);
            sg += g;
            sgx += g * xh;
            if (dw) FN(P)(dw)[c] += (real)(dr[c] * xh);
            if (db) FN(P)(db)[c] += dr[c];
        }
        if (!dx) continue;
        real *dxr = FN(P)(dx) + r * C;
        for (int64_t c = 0; c < C; c++) {
            acc xh = (xr[c] - mean) * rstd, g = (acc)dr[c] * (wp ? wp[c] : 1);
            dxr[c] += (real)(rstd * (g - sg / C - xh * sgx / C));
        }
    }
}

// ---- element-wise --------------------------------------------------------------------------
// reference: F.gelu (approximate='none'), F.relu, torch.sigmoid, F.softplus, torch.clamp.
void FN(ref_gelu_forward)(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        acc v = xp[i];
        yp[i] = (real)(0.5 * v * (1 + erf(v * M_SQRT1_2)));
    }
}

void FN(ref_gelu_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        acc v = xp[i];
        acc cdf = 0.5 * (1 + erf(v * M_SQRT1_2)), pdf = exp(-0.5 * v * v) * (M_2_SQRTPI * M_SQRT1_2 * 0.5);
        dxp[i] += (real)(dyp[i] * (cdf + v * pdf));
    }
}

// gelu_backward's term t, rounded to dx's dtype; dx += t; dbias += Σ t per channel.
void FN(ref_gelu_bias_backward)(OpCtx *ctx, Tensor *dx, Tensor *dbias, const Tensor *dy, const Tensor *x) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const int64_t C = x->shape[x->ndim - 1], n = tensor_numel(x);
    CX_ASSERT(!dbias || tensor_numel(dbias) == C, "gelu_bias_backward: dbias has %lld elements, x %lld channels",
              (long long)tensor_numel(dbias), (long long)C);
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    ArenaMark m = arena_mark(ctx->scratch);
    acc *db = dbias ? arena_calloc(ctx->scratch, sizeof(acc) * (size_t)C) : NULL;
    for (int64_t i = 0; i < n; i++) {
        acc v = xp[i];
        acc cdf = 0.5 * (1 + erf(v * M_SQRT1_2)), pdf = exp(-0.5 * v * v) * (M_2_SQRTPI * M_SQRT1_2 * 0.5);
        real t = (real)(dyp[i] * (cdf + v * pdf));
        if (db) db[i % C] += t;
        if (dx) FN(P)(dx)[i] += t;
    }
    if (db) for (int64_t c = 0; c < C; c++) FN(P)(dbias)[c] += (real)db[c];
    arena_release(ctx->scratch, m);
}

void FN(ref_relu_forward)(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) yp[i] = xp[i] > 0 ? xp[i] : 0;
}

void FN(ref_relu_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const real *yp = FN(P)(y), *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t i = 0, n = tensor_numel(y); i < n; i++) if (yp[i] > 0) dxp[i] += dyp[i];
}

void FN(ref_sigmoid_forward)(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) yp[i] = (real)(1 / (1 + exp(-(acc)xp[i])));
}

void FN(ref_sigmoid_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const real *yp = FN(P)(y), *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t i = 0, n = tensor_numel(y); i < n; i++) dxp[i] += (real)((acc)dyp[i] * yp[i] * (1 - (acc)yp[i]));
}

// Softplus with beta 1 and threshold 20: the identity above the threshold.
void FN(ref_softplus_forward)(OpCtx *ctx, Tensor *y, const Tensor *x) {
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        acc v = xp[i];
        yp[i] = (real)(v > 20 ? v : log1p(exp(v)));
    }
}

void FN(ref_softplus_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        acc v = xp[i];
        dxp[i] += (real)(v > 20 ? dyp[i] : dyp[i] / (1 + exp(-v)));
    }
}

void FN(ref_clamp_forward)(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi) {
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    real l = (real)lo, h = (real)hi;
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) yp[i] = xp[i] < l ? l : xp[i] > h ? h : xp[i];
}

void FN(ref_clamp_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    real l = (real)lo, h = (real)hi;
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) if (xp[i] >= l && xp[i] <= h) dxp[i] += dyp[i];
}

void FN(ref_add_forward)(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b) {
    const real *ap = FN(P)(a), *bp = FN(P)(b);
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(a); i < n; i++) yp[i] = ap[i] + bp[i];
}

void FN(ref_axpy)(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x) {
    op_zero_first(ctx, y);   // first write (ops.h)
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) yp[i] += (real)(alpha * xp[i]);
}

void FN(ref_scale_inplace)(OpCtx *ctx, Tensor *y, double alpha) {
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(y); i < n; i++) yp[i] = (real)(alpha * yp[i]);
}

// reference: torch.mul with broadcasting of s over x (N,H,W,C).
void FN(ref_mul_forward)(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s) {
    MulBcast b = mul_bcast_plan(x, s);
    const real *xp = FN(P)(x), *sp = FN(P)(s);
    real *yp = FN(P)(y);
    for (int64_t n = 0; n < b.N; n++)
        for (int64_t p = 0; p < b.P; p++)
            for (int64_t c = 0; c < b.C; c++) {
                int64_t i = (n * b.P + p) * b.C + c;
                yp[i] = xp[i] * sp[n * b.sn + p * b.sp + c * b.sc];
            }
}

void FN(ref_mul_backward)(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    op_zero_first(ctx, ds);   // first write (ops.h)
    MulBcast b = mul_bcast_plan(x, s);
    const real *xp = FN(P)(x), *sp = FN(P)(s), *dyp = FN(P)(dy);
    ArenaMark m = arena_mark(ctx->scratch);
    acc *dsa = ds ? arena_calloc(ctx->scratch, sizeof(acc) * (size_t)tensor_numel(s)) : NULL;
    for (int64_t n = 0; n < b.N; n++)
        for (int64_t p = 0; p < b.P; p++)
            for (int64_t c = 0; c < b.C; c++) {
                int64_t i = (n * b.P + p) * b.C + c, j = n * b.sn + p * b.sp + c * b.sc;
                if (dx) FN(P)(dx)[i] += dyp[i] * sp[j];
                if (dsa) dsa[j] += (acc)dyp[i] * xp[i];
            }
    if (dsa) for (int64_t j = 0; j < tensor_numel(s); j++) FN(P)(ds)[j] += (real)dsa[j];
    arena_release(ctx->scratch, m);
}

// ---- resampling and pooling ------------------------------------------------------------------
// reference: F.interpolate(mode='bilinear', align_corners=False); index
// arithmetic in the tensor's dtype, as aten/src/ATen/native/UpSample.h does it.
typedef struct { int64_t i0, i1; real l0, l1; } FN(Lerp);

static FN(Lerp) FN(resize_lerp)(int64_t dst, int64_t in, int64_t out, double scale) {
    real sc = scale > 0 ? (real)(1.0 / scale) : (real)in / (real)out;
    real src = sc * ((real)dst + (real)0.5) - (real)0.5;
    if (src < 0) src = 0;
    FN(Lerp) L;
    L.i0 = (int64_t)src;
    if (L.i0 > in - 1) L.i0 = in - 1;
    L.i1 = L.i0 + (L.i0 < in - 1 ? 1 : 0);
    L.l1 = src - (real)L.i0;
    if (L.l1 > 1) L.l1 = 1;
    L.l0 = 1 - L.l1;
    return L;
}

// mul_forward then axpy: t = z·γ rounded, then y = t + x.
void FN(ref_residual_scale_forward)(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *z, const Tensor *gamma) {
    const int64_t C = tensor_numel(gamma), n = tensor_numel(z);
    CX_ASSERT(z->shape[z->ndim - 1] == C && tensor_numel(x) == n && tensor_numel(y) == n, "residual_scale: shapes");
    const real *xp = FN(P)(x), *zp = FN(P)(z), *gp = FN(P)(gamma);
    real *yp = FN(P)(y);
    for (int64_t i = 0; i < n; i++) {
        real t = zp[i] * gp[i % C];
        yp[i] = t + xp[i];
    }
}
// mul_backward (dz, dγ) then axpy (dx).
void FN(ref_residual_scale_backward)(OpCtx *ctx, Tensor *dx, Tensor *dz, Tensor *dgamma, const Tensor *dy,
                                     const Tensor *z, const Tensor *gamma) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    op_zero_first(ctx, dz);
    const int64_t C = tensor_numel(gamma), n = tensor_numel(z);
    CX_ASSERT(z->shape[z->ndim - 1] == C && tensor_numel(dy) == n, "residual_scale_backward: shapes");
    const real *zp = FN(P)(z), *gp = FN(P)(gamma), *dyp = FN(P)(dy);
    ArenaMark m = arena_mark(ctx->scratch);
    acc *dga = dgamma ? arena_calloc(ctx->scratch, sizeof(acc) * (size_t)C) : NULL;
    for (int64_t i = 0; i < n; i++) {
        if (dz) FN(P)(dz)[i] += dyp[i] * gp[i % C];
        if (dga) dga[i % C] += (acc)dyp[i] * zp[i];
    }
    if (dga) for (int64_t c = 0; c < C; c++) FN(P)(dgamma)[c] += (real)dga[c];
    if (dx) for (int64_t i = 0; i < n; i++) FN(P)(dx)[i] += (real)(1.0 * dyp[i]);
    arena_release(ctx->scratch, m);
}

void FN(ref_resize_bilinear_forward)(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w) {
    int64_t N = T_N(x), H = T_H(x), W = T_W(x), C = T_C(x), Ho = T_H(y), Wo = T_W(y);
    CX_ASSERT(T_N(y) == N && T_C(y) == C, "resize_bilinear: N or C differ");
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            FN(Lerp) lh = FN(resize_lerp)(oh, H, Ho, scale_h);
            for (int64_t ow = 0; ow < Wo; ow++) {
                FN(Lerp) lw = FN(resize_lerp)(ow, W, Wo, scale_w);
                const real *x00 = xp + ((n * H + lh.i0) * W + lw.i0) * C, *x01 = xp + ((n * H + lh.i0) * W + lw.i1) * C;
                const real *x10 = xp + ((n * H + lh.i1) * W + lw.i0) * C, *x11 = xp + ((n * H + lh.i1) * W + lw.i1) * C;
                real *yr = yp + ((n * Ho + oh) * Wo + ow) * C;
                for (int64_t c = 0; c < C; c++)
                    yr[c] = lh.l0 * (lw.l0 * x00[c] + lw.l1 * x01[c]) + lh.l1 * (lw.l0 * x10[c] + lw.l1 * x11[c]);
            }
        }
}

void FN(ref_resize_bilinear_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    int64_t N = T_N(dx), H = T_H(dx), W = T_W(dx), C = T_C(dx), Ho = T_H(dy), Wo = T_W(dy);
    const real *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            FN(Lerp) lh = FN(resize_lerp)(oh, H, Ho, scale_h);
            for (int64_t ow = 0; ow < Wo; ow++) {
                FN(Lerp) lw = FN(resize_lerp)(ow, W, Wo, scale_w);
                const real *d = dyp + ((n * Ho + oh) * Wo + ow) * C;
                real *x00 = dxp + ((n * H + lh.i0) * W + lw.i0) * C, *x01 = dxp + ((n * H + lh.i0) * W + lw.i1) * C;
                real *x10 = dxp + ((n * H + lh.i1) * W + lw.i0) * C, *x11 = dxp + ((n * H + lh.i1) * W + lw.i1) * C;
                for (int64_t c = 0; c < C; c++) {
                    x00[c] += lh.l0 * lw.l0 * d[c];
                    x01[c] += lh.l0 * lw.l1 * d[c];
                    x10[c] += lh.l1 * lw.l0 * d[c];
                    x11[c] += lh.l1 * lw.l1 * d[c];
                }
            }
        }
}

// reference: F.adaptive_avg_pool2d(x, 1).
void FN(ref_avgpool_global_forward)(OpCtx *ctx, Tensor *y, const Tensor *x) {
    int64_t N = T_N(x), HW = T_H(x) * T_W(x), C = T_C(x);
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            acc s = 0;
            for (int64_t p = 0; p < HW; p++) s += xp[(n * HW + p) * C + c];
            yp[n * C + c] = (real)(s / HW);
        }
}

void FN(ref_avgpool_global_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    int64_t N = T_N(dx), HW = T_H(dx) * T_W(dx), C = T_C(dx);
    const real *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < HW; p++)
            for (int64_t c = 0; c < C; c++) dxp[(n * HW + p) * C + c] += (real)((acc)dyp[n * C + c] / HW);
}

// ---- channel slicing ---------------------------------------------------------------------------
void FN(ref_channels_copy)(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate) {
    int64_t Cd = dst->shape[dst->ndim - 1], Cs = src->shape[src->ndim - 1], R = tensor_numel(src) / Cs;
    CX_ASSERT(tensor_numel(dst) / Cd == R && dc0 + nc <= Cd && sc0 + nc <= Cs, "channels_copy: ranges");
    const real *sp = FN(P)(src);
    real *dp = FN(P)(dst);
    for (int64_t r = 0; r < R; r++)
        for (int c = 0; c < nc; c++) {
            if (accumulate) dp[r * Cd + dc0 + c] += sp[r * Cs + sc0 + c];
            else dp[r * Cd + dc0 + c] = sp[r * Cs + sc0 + c];
        }
}

// ---- reductions over one axis ----------------------------------------------------------------------
// reference: torch.softmax(x, dim) with x viewed as (outer, L, inner).
void FN(ref_softmax_forward)(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner) {
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            const real *xr = xp + o * L * inner + in;
            real *yr = yp + o * L * inner + in;
            acc mx = -INFINITY, s = 0;
            for (int64_t l = 0; l < L; l++) if (xr[l * inner] > mx) mx = xr[l * inner];
            for (int64_t l = 0; l < L; l++) s += exp(xr[l * inner] - mx);
            for (int64_t l = 0; l < L; l++) yr[l * inner] = (real)(exp(xr[l * inner] - mx) / s);
        }
}

void FN(ref_softmax_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L,
                              int64_t inner) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const real *yp = FN(P)(y), *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t b = o * L * inner + in;
            acc s = 0;
            for (int64_t l = 0; l < L; l++) s += (acc)dyp[b + l * inner] * yp[b + l * inner];
            for (int64_t l = 0; l < L; l++) dxp[b + l * inner] += (real)(yp[b + l * inner] * (dyp[b + l * inner] - s));
        }
}

// reference: F.normalize(x, p=2, dim, eps) = x / clamp_min(||x||, eps).
void FN(ref_l2norm_forward)(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L,
                            int64_t inner, double eps) {
    const real *xp = FN(P)(x);
    real *yp = FN(P)(y);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t b = o * L * inner + in;
            acc s = 0;
            for (int64_t l = 0; l < L; l++) s += (acc)xp[b + l * inner] * xp[b + l * inner];
            acc nrm = sqrt(s), den = nrm > eps ? nrm : eps;
            for (int64_t l = 0; l < L; l++) yp[b + l * inner] = (real)(xp[b + l * inner] / den);
            if (save_norm) FN(P)(save_norm)[o * inner + in] = (real)nrm;
        }
}

void FN(ref_l2norm_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm,
                             int64_t outer, int64_t L, int64_t inner, double eps) {
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    real *dxp = FN(P)(dx);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t b = o * L * inner + in;
            acc nrm = FN(P)(save_norm)[o * inner + in];
            if (nrm < eps) {   // the clamp holds the denominator at eps: no gradient through the norm
                for (int64_t l = 0; l < L; l++) dxp[b + l * inner] += (real)(dyp[b + l * inner] / eps);
                continue;
            }
            acc s = 0;   // Σ dy·x
            for (int64_t l = 0; l < L; l++) s += (acc)dyp[b + l * inner] * xp[b + l * inner];
            for (int64_t l = 0; l < L; l++)
                dxp[b + l * inner] += (real)(dyp[b + l * inner] / nrm - xp[b + l * inner] * s / (nrm * nrm * nrm));
        }
}

// reference: torch.topk(x, k, dim=-1, largest=True, sorted=True); NaN counts as
// the largest value, ties keep the lower index first.
static inline int FN(topk_before)(real a, int64_t ia, real b, int64_t ib) {
    if (isnan(a) || isnan(b)) return isnan(a) && (!isnan(b) || ia < ib);
    return a > b || (a == b && ia < ib);
}

void FN(ref_topk_rows)(OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k) {
    int64_t L = x->shape[x->ndim - 1], R = tensor_numel(x) / L;
    CX_ASSERT(k >= 1 && k <= L, "topk_rows: k=%d with L=%lld", k, (long long)L);
    const real *xp = FN(P)(x);
    for (int64_t r = 0; r < R; r++) {
        const real *xr = xp + r * L;
        int64_t prev = -1;   // selection by rank: the best element strictly after the previous pick
        for (int j = 0; j < k; j++) {
            int64_t best = -1;
            for (int64_t l = 0; l < L; l++) {
                if (prev >= 0 && !FN(topk_before)(xr[prev], prev, xr[l], l)) continue;
                if (best < 0 || FN(topk_before)(xr[l], l, xr[best], best)) best = l;
            }
            if (idx) tensor_i32(idx)[r * k + j] = (int32_t)best;
            if (val) FN(P)(val)[r * k + j] = xr[best];
            prev = best;
        }
    }
}

// ---- batch-maximum normalisation ---------------------------------------------------------------------
// y = x / (max(x) + eps); the maximum's gradient −Σ dy·x/(max+eps)² is shared by
// the elements equal to the maximum (torch.max's backward for a full reduction).
void FN(ref_maxnorm_forward)(OpCtx *ctx, Tensor *y, Tensor *save_max, const Tensor *x, double eps) {
    const real *xp = FN(P)(x);
    int64_t n = tensor_numel(x);
    real mx = xp[0];
    for (int64_t i = 1; i < n; i++) if (xp[i] > mx || isnan(xp[i])) mx = xp[i];
    acc den = (acc)mx + eps;
    for (int64_t i = 0; i < n; i++) FN(P)(y)[i] = (real)(xp[i] / den);
    FN(P)(save_max)[0] = mx;
}

void FN(ref_maxnorm_backward)(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_max,
                              double eps) {
    op_zero_first(ctx, dx);   // first write (ops.h)
    const real *xp = FN(P)(x), *dyp = FN(P)(dy);
    int64_t n = tensor_numel(x), nmax = 0;
    real mx = FN(P)(save_max)[0];
    acc den = (acc)mx + eps, dm = 0;
    for (int64_t i = 0; i < n; i++) {
        dm -= (acc)dyp[i] * xp[i] / (den * den);
        nmax += xp[i] == mx;
    }
    for (int64_t i = 0; i < n; i++)
        FN(P)(dx)[i] += (real)(dyp[i] / den + (xp[i] == mx ? dm / (acc)nmax : 0));
}

// ---- fills, copies, broadcast rows ------------------------------------------------------------------------
void FN(ref_fill)(OpCtx *ctx, Tensor *y, double v) {
    real *yp = FN(P)(y);
    for (int64_t i = 0, n = tensor_numel(y); i < n; i++) yp[i] = (real)v;
}

// dst may have another float dtype (F32 <-> F64).
void FN(ref_copy)(OpCtx *ctx, Tensor *dst, const Tensor *src) {
    const real *sp = FN(P)(src);
    int64_t n = tensor_numel(src);
    if (dst->dtype == src->dtype) { memmove(dst->data, src->data, tensor_nbytes(src)); return; }
    for (int64_t i = 0; i < n; i++) tensor_set(dst, i, sp[i]);
}

void FN(ref_rows_add_bcast)(OpCtx *ctx, Tensor *y, const Tensor *b) {
    int64_t L = tensor_numel(b), R = tensor_numel(y) / L;
    const real *bp = FN(P)(b);
    real *yp = FN(P)(y);
    for (int64_t r = 0; r < R; r++)
        for (int64_t l = 0; l < L; l++) yp[r * L + l] += bp[l];
}

void FN(ref_rows_sum)(OpCtx *ctx, Tensor *db, const Tensor *dy) {
    op_zero_first(ctx, db);   // first write (ops.h)
    int64_t L = tensor_numel(db), R = tensor_numel(dy) / L;
    const real *dyp = FN(P)(dy);
    for (int64_t l = 0; l < L; l++) {
        acc s = 0;
        for (int64_t r = 0; r < R; r++) s += dyp[r * L + l];
        FN(P)(db)[l] += (real)s;
    }
}

// ---- mixture-of-experts dispatch ---------------------------------------------------------------------
// reference: torch.index_select(src, 0, idx) and Tensor.index_add_(0, idx, w[:,None]*src).
void FN(ref_rows_gather)(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx) {
    int64_t n = tensor_numel(idx), D = tensor_numel(src) / src->shape[0];
    const int32_t *ip = tensor_i32(idx);
    for (int64_t i = 0; i < n; i++) {
        CX_ASSERT(ip[i] >= 0 && ip[i] < src->shape[0], "rows_gather: index %d out of range", ip[i]);
        for (int64_t d = 0; d < D; d++) FN(P)(dst)[i * D + d] = FN(P)(src)[ip[i] * D + d];
    }
}

void FN(ref_rows_scatter_add)(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w) {
    int64_t n = tensor_numel(idx), D = tensor_numel(dst) / dst->shape[0];
    const int32_t *ip = tensor_i32(idx);
    for (int64_t i = 0; i < n; i++) {
        CX_ASSERT(ip[i] >= 0 && ip[i] < dst->shape[0], "rows_scatter_add: index %d out of range", ip[i]);
        real wi = w ? FN(P)(w)[i] : 1;
        for (int64_t d = 0; d < D; d++) FN(P)(dst)[ip[i] * D + d] += wi * FN(P)(src)[i * D + d];
    }
}

void FN(ref_rows_scatter_add_backward)(OpCtx *ctx, Tensor *dsrc, Tensor *dw, const Tensor *ddst, const Tensor *src,
                                       const Tensor *idx, const Tensor *w) {
    int64_t n = tensor_numel(idx), D = tensor_numel(ddst) / ddst->shape[0];
    const int32_t *ip = tensor_i32(idx);
    for (int64_t i = 0; i < n; i++) {
        const real *g = FN(P)(ddst) + ip[i] * D;
        if (dsrc) {
            real wi = w ? FN(P)(w)[i] : 1;
            for (int64_t d = 0; d < D; d++) FN(P)(dsrc)[i * D + d] += wi * g[d];
        }
        if (dw) {
            acc s = 0;
            for (int64_t d = 0; d < D; d++) s += (acc)g[d] * FN(P)(src)[i * D + d];
            FN(P)(dw)[i] += (real)s;
        }
    }
}

// dst[r] += Σ_j w[j]·src[list[j]] over j in [ptr[r], ptr[r+1]), one product and one add at a time
// in list order (rows_scatter_add's rounding when the lists are its index in CSR form).
void FN(ref_rows_gather_sum)(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr, const Tensor *list,
                             const Tensor *w) {
    int64_t rows = dst->shape[0], D = rows ? tensor_numel(dst) / rows : 0;
    const int32_t *pp = tensor_i32(ptr), *lp = tensor_i32(list);
    for (int64_t r = 0; r < rows; r++) {
        CX_ASSERT(pp[r] >= 0 && pp[r] <= pp[r + 1] && pp[r + 1] <= tensor_numel(list), "rows_gather_sum: ptr[%lld] out of order",
                  (long long)r);
        real *dp = FN(P)(dst) + r * D;
        for (int32_t j = pp[r]; j < pp[r + 1]; j++) {
            CX_ASSERT(lp[j] >= 0 && lp[j] < src->shape[0], "rows_gather_sum: list entry %d out of range", lp[j]);
            const real *sp = FN(P)(src) + (int64_t)lp[j] * D;
            real wj = w ? FN(P)(w)[j] : 1;
            for (int64_t d = 0; d < D; d++) dp[d] += wj * sp[d];
        }
    }
}

// ---- mixture-of-experts routing ------------------------------------------------------------------------
// The decisions and the plan (ops_list.h route_topk_plan). The host's former arithmetic,
// step for step: scores rounded to real, topk_rows's rule, weights in double.
void FN(ref_route_topk_plan)(OpCtx *ctx, Tensor *idx, Tensor *w, Tensor *plan, Tensor *plan_w, const Tensor *probs,
                            const double *sel) {
    const int64_t U = probs->shape[0], E = probs->shape[1], k = idx->shape[1], P = U * k;
    const real *pp = FN(P)(probs);
    int32_t *ip = tensor_i32(idx), *rows = tensor_i32(plan), *pos = rows + P, *ulist = pos + P, *uptr = ulist + P;
    real *wp = FN(P)(w), *wts = FN(P)(plan_w), *uw = wts + P;
    ArenaMark m = arena_mark(ctx->scratch);
    real *score = arena_alloc(ctx->scratch, sizeof(real) * (size_t)E);
    int64_t *fill_at = arena_alloc(ctx->scratch, sizeof(int64_t) * (size_t)(E + 1));
    for (int64_t u = 0; u < U; u++) {
        const real *pu = pp + u * E;
        for (int64_t e = 0; e < E; e++) score[e] = sel ? (real)((acc)pu[e] + sel[e]) : pu[e];
        int64_t prev = -1;
        for (int64_t j = 0; j < k; j++) {
            int64_t best = -1;
            for (int64_t l = 0; l < E; l++) {
                if (prev >= 0 && !FN(topk_before)(score[prev], prev, score[l], l)) continue;
                if (best < 0 || FN(topk_before)(score[l], l, score[best], best)) best = l;
            }
            ip[u * k + j] = (int32_t)best;
            prev = best;
        }
        acc s = 0;
        for (int64_t j = 0; j < k; j++) s += pu[ip[u * k + j]];
        for (int64_t j = 0; j < k; j++) wp[u * k + j] = (real)(pu[ip[u * k + j]] / (s + 1e-8));
    }
    // counting sort by expert, stable in the pair id
    for (int64_t e = 0; e <= E; e++) fill_at[e] = 0;
    for (int64_t p = 0; p < P; p++) {
        CX_ASSERT(ip[p] >= 0 && ip[p] < E, "route_topk_plan: expert %d of pair %lld (non-finite probabilities?)", ip[p],
                  (long long)p);
        fill_at[ip[p] + 1]++;
    }
    for (int64_t e = 0; e < E; e++) fill_at[e + 1] += fill_at[e];
    for (int64_t p = 0; p < P; p++) {
        const int64_t i = fill_at[ip[p]]++;
        pos[p] = (int32_t)i;
        rows[i] = (int32_t)(p / k);
        wts[i] = wp[p];
    }
    for (int64_t u = 0; u < U; u++) {   // unit u's positions, ascending (insertion sort of k entries)
        int32_t *l = ulist + u * k;
        real *lw = uw + u * k;
        for (int64_t j = 0; j < k; j++) {
            int32_t v = pos[u * k + j];
            real vw = wp[u * k + j];
            int64_t a = j;
            for (; a > 0 && l[a - 1] > v; a--) l[a] = l[a - 1], lw[a] = lw[a - 1];
            l[a] = v, lw[a] = vw;
        }
        uptr[u] = (int32_t)(u * k);
    }
    uptr[U] = (int32_t)P;
    arena_release(ctx->scratch, m);
}

// The routing's backward (ops_list.h route_topk_backward): the renormalisation, the
// balancing term, the softmax and the z-loss, in the host's former order.
void FN(ref_route_topk_backward)(OpCtx *ctx, Tensor *dlogits, const Tensor *dw, const Tensor *idx, const Tensor *probs,
                                const Tensor *logits, int lb, double cb) {
    const int64_t U = probs->shape[0], E = probs->shape[1], k = idx->shape[1];
    const real *pp = FN(P)(probs), *lp = FN(P)(logits), *dwp = dw ? FN(P)(dw) : NULL;
    const int32_t *ip = tensor_i32(idx);
    ArenaMark m = arena_mark(ctx->scratch);
    acc *dp = arena_alloc(ctx->scratch, sizeof(acc) * (size_t)(U * E));
    for (int64_t i = 0; i < U * E; i++) dp[i] = 0;
    for (int64_t u = 0; u < U && dwp; u++) {   // w_j = p_j / (S + eps), S = Σ_chosen p
        acc S = 0, s2 = 0;
        for (int64_t j = 0; j < k; j++) {
            acc pj = pp[u * E + ip[u * k + j]];
            S += pj;
            s2 += (acc)dwp[u * k + j] * pj;
        }
        acc D = S + 1e-8;
        for (int64_t j = 0; j < k; j++) dp[u * E + ip[u * k + j]] += (acc)dwp[u * k + j] / D - s2 / (D * D);
    }
    for (int64_t e = 0; e < E && cb != 0; e++) {
        acc P = 0;
        for (int64_t u = 0; u < U; u++) P += pp[u * E + e];
        P /= (acc)U;
        acc g = 0;
        if (lb == MOE_LB_MSE) g = cb * 2 * (P - 1.0 / (acc)E) / (acc)U;
        else if (lb == MOE_LB_SWITCH) {
            int64_t count = 0;
            for (int64_t p = 0; p < U * k; p++) count += ip[p] == e;
            g = cb * (acc)E * ((acc)count / ((acc)U * (acc)k)) / (acc)U;
        }
        for (int64_t u = 0; u < U; u++) dp[u * E + e] += g;
    }
    real *dl = FN(P)(dlogits);
    for (int64_t u = 0; u < U; u++) {
        acc dot = 0, mx = -INFINITY, s = 0;
        for (int64_t e = 0; e < E; e++) dot += dp[u * E + e] * pp[u * E + e];
        for (int64_t e = 0; e < E; e++) mx = fmax(mx, lp[u * E + e]);
        for (int64_t e = 0; e < E; e++) s += exp(lp[u * E + e] - mx);
        acc lse = mx + log(s);
        for (int64_t e = 0; e < E; e++) {
            acc p = pp[u * E + e];
            acc g = p * (dp[u * E + e] - dot);
            if (lb == MOE_LB_ZLOSS) g += cb * 2 * lse * p / (acc)U;
            dl[u * E + e] += (real)g;
        }
    }
    arena_release(ctx->scratch, m);
}

#undef FN
#undef FN2
#undef FN_
