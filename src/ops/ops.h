// ops.h — the op interface: every numerical kernel camoxpert's modules call.
// Model code (nn/) is written once against this header; backends differ only
// below it. Each op has a forward and a backward.
//
// Conventions (all ops):
// * Activations are NHWC tensors; "rows × C" ops (linear, layernorm) treat the
//   last axis as features and every other axis as rows.
// * Parameters keep PyTorch layouts: conv weights OIHW (K, C/G, kh, kw), linear
//   weights (K, C).
// * dtype F32 runs the fast kernels (unless ctx->force_ref); F64 always runs the
//   plain reference kernels (used for float64 gradient parity with fixtures and
//   for finite-difference checks). All tensors of one call share a dtype, except
//   integer index tensors (I32).
// * **Every backward ADDS into every gradient it is given (+=), inputs and
//   parameters alike**; pass NULL for a gradient that is not needed. Callers
//   zero gradient buffers once per step. Branch joins need no special care.
// * Shapes are the caller's responsibility: a mismatch is a bug (CX_ASSERT),
//   not a user error.
// * Temporary buffers come from ctx->scratch (released before the op returns).
//
//   OpCtx ctx = { .scratch = &scratch };
//   ConvArgs a = { .stride = 1, .pad = 1, .dil = 1, .groups = 1 };
//   conv2d_forward(&ctx, &y, &x, &w, &b, a);
//   conv2d_backward(&ctx, &dx, &dw, &db, &dy, &x, &w, a);
#pragma once
#include "core/core.h"

typedef struct OpCtx {
    Arena *scratch;   // temporaries inside one op call
    int force_ref;    // 1: use the plain reference kernels for F32 too (tests)
    double *macs;     // non-NULL: conv2d/linear/gemm_batched calls add their multiply-accumulates (FLOP counting)
} OpCtx;

// ---- convolution --------------------------------------------------------------
// reference: torch.nn.functional.conv2d (cross-correlation, zero padding,
// symmetric stride/padding/dilation in H and W).
typedef struct { int stride, pad, dil, groups; } ConvArgs;
// y (N,Ho,Wo,K) = conv(x (N,H,W,C), w (K,C/G,kh,kw)) + b (K) [b may be NULL]
// Ho = (H + 2*pad - dil*(kh-1) - 1) / stride + 1
void conv2d_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a);
// dx (N,H,W,C) +=, dw (K,C/G,kh,kw) +=, db (K) += ; any may be NULL.
void conv2d_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy,
                     const Tensor *x, const Tensor *w, ConvArgs a);
int64_t conv2d_out_size(int64_t in, int k, ConvArgs a);

// ---- linear / GEMM ----------------------------------------------------------------
// y (..., K) = x (..., C) · w (K, C)^T + b (K) [b may be NULL]; a 1×1 conv on NHWC.
void linear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b);
void linear_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy,
                     const Tensor *x, const Tensor *w);
// Strided batched GEMM, row-major: for i in [0, batch):
//   C_i (M,N) = alpha · op(A_i) · op(B_i) + beta · C_i,  op = transpose when ta/tb.
// A_i = A + i*sA (elements), lda/ldb/ldc are row strides. dtype F32 or F64.
// This is the primitive for channel attention (XCA), where q, k and v are
// strided column blocks of one qkv tensor.
void gemm_batched(OpCtx *ctx, cx_dtype dt, int ta, int tb, int M, int N, int K, double alpha,
                  const void *A, int lda, int64_t sA, const void *B, int ldb, int64_t sB,
                  double beta, void *C, int ldc, int64_t sC, int batch);

// ---- normalisation ---------------------------------------------------------------
// reference: torch.nn.BatchNorm2d. Training: statistics over N,H,W per channel
// (biased variance for normalising); running stats updated in place when
// non-NULL: r = (1-momentum)·r + momentum·batch (unbiased variance for
// running_var). Evaluation: running stats. save_mean/save_invstd (C) receive the
// mean and 1/sqrt(var+eps) used, for backward.
void batchnorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x,
                       const Tensor *gamma, const Tensor *beta, Tensor *running_mean, Tensor *running_var,
                       int training, double momentum, double eps);
void batchnorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy,
                        const Tensor *x, const Tensor *save_mean, const Tensor *save_invstd,
                        const Tensor *gamma, int training);
// reference: torch.nn.LayerNorm over the last axis (C); biased variance.
// save_mean/save_rstd have numel(x)/C elements.
void layernorm_forward(OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x,
                       const Tensor *w, const Tensor *b, double eps);
void layernorm_backward(OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                        const Tensor *save_mean, const Tensor *save_rstd, const Tensor *w);

// ---- element-wise ------------------------------------------------------------------
// y and x may alias in forward (in place). Backward takes x (the input) except
// where noted.
void gelu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);                 // exact erf form
void gelu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
void relu_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void relu_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y);   // takes the OUTPUT y
void sigmoid_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void sigmoid_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y); // takes the OUTPUT y
void softplus_forward(OpCtx *ctx, Tensor *y, const Tensor *x);             // beta 1, threshold 20
void softplus_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x);
// reference: torch.clamp; gradient passes where lo <= x <= hi, zero outside.
void clamp_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi);
void clamp_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi);
// y = a + b (same shapes); y may alias a or b.
void add_forward(OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b);
// y += alpha · x (same numel). Also the gradient-accumulation primitive.
void axpy(OpCtx *ctx, Tensor *y, double alpha, const Tensor *x);
void scale_inplace(OpCtx *ctx, Tensor *y, double alpha);
// Broadcast multiply: y = x ⊙ s, where x is (N,H,W,C) and s is one of
//   (C)         per channel (layer scale γ),
//   (N,C)       per image and channel (contrast amplification, router weights),
//   (N,H,W,1)   per pixel (search map, foreground map, 1+u),
//   (N,H,W,C)   element-wise.
void mul_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s);
// dx += dy ⊙ s ; ds += Σ over broadcast axes of dy ⊙ x. Either may be NULL.
void mul_backward(OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s);

// ---- resampling and pooling ----------------------------------------------------------
// reference: F.interpolate(mode='bilinear', align_corners=False). With
// scale_h/scale_w > 0 (the scale_factor form) the source coordinate is
// (dst + 0.5) / scale - 0.5; with 0 (the size form) scale = out/in, i.e.
// (dst + 0.5) · in/out - 0.5; negative coordinates clamp to 0 as PyTorch does.
void resize_bilinear_forward(OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w);
void resize_bilinear_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w);
// y (N,C) = mean over H,W of x (N,H,W,C).
void avgpool_global_forward(OpCtx *ctx, Tensor *y, const Tensor *x);
void avgpool_global_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy);

// ---- channel slicing ------------------------------------------------------------------
// dst[..., dc0 : dc0+nc] (=, or += when accumulate) src[..., sc0 : sc0+nc];
// both NHWC with the same N,H,W. Concat and split are built from this.
void channels_copy(OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate);
// y = cat(xs[0..n), axis C). Backward: dxs[i] += dy[..., slice i]. Trailing NULL
// entries are skipped; a slice before others needs its tensor (its width).
void concat_forward(OpCtx *ctx, Tensor *y, const Tensor *const *xs, int n);
void concat_backward(OpCtx *ctx, Tensor *const *dxs, int n, const Tensor *dy);

// ---- reductions over one axis -----------------------------------------------------------
// x viewed as (outer, L, inner); the op runs along L for each (outer, inner).
// reference: torch.softmax(dim)
void softmax_forward(OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner);
void softmax_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L, int64_t inner);
// reference: F.normalize(p=2, eps): y = x / max(||x||_2, eps); save_norm gets
// (outer·inner) norms (before the max).
void l2norm_forward(OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L,
                    int64_t inner, double eps);
void l2norm_backward(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm,
                     int64_t outer, int64_t L, int64_t inner, double eps);
// reference: torch.topk(x, k, dim=-1) on x (R, L): idx (R,k) I32 and val (R,k),
// in descending order; among equal values the lower index comes first.
void topk_rows(OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k);

// ---- losses ---------------------------------------------------------------------------------
// reference: F.binary_cross_entropy_with_logits(x, t, reduction='mean'|'none').
// Mean form returns the loss; the element-wise form writes out (same shape).
double bce_logits_mean_forward(OpCtx *ctx, const Tensor *x, const Tensor *t);
// dx += dloss · (sigmoid(x) - t) / numel
void bce_logits_mean_backward(OpCtx *ctx, Tensor *dx, double dloss, const Tensor *x, const Tensor *t);
void bce_logits_elem_forward(OpCtx *ctx, Tensor *out, const Tensor *x, const Tensor *t);
void bce_logits_elem_backward(OpCtx *ctx, Tensor *dx, const Tensor *dout, const Tensor *x, const Tensor *t);
// reference: F.binary_cross_entropy(p, t) with PyTorch's log clamp at -100.
double bce_mean_forward(OpCtx *ctx, const Tensor *p, const Tensor *t);
void bce_mean_backward(OpCtx *ctx, Tensor *dp, double dloss, const Tensor *p, const Tensor *t);

// ---- mixture-of-experts dispatch ------------------------------------------------------------
// Rows are the first axis (images, or tiles in spatial routing).
// dst[i] = src[idx[i]] for i < n (idx I32 (n)).
void rows_gather(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx);
// dst[idx[i]] += w[i] · src[i]  (w (n) same float dtype; NULL means 1).
void rows_scatter_add(OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w);
// Backward of rows_scatter_add: dsrc[i] += w[i] · ddst[idx[i]]; dw[i] += <ddst[idx[i]], src[i]>.
void rows_scatter_add_backward(OpCtx *ctx, Tensor *dsrc, Tensor *dw, const Tensor *ddst, const Tensor *src,
                               const Tensor *idx, const Tensor *w);
