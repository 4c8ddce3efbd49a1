// ops_list.h — the op list: every numerical kernel the modules call, one OP line
// each, its contract in the comment above it (conventions: ops.h). It is the one
// place an op is declared; from it come the public prototypes (ops.h), the
// wrappers that dispatch and profile (ops.c), the backend table with one slot per
// op (OpsBackend, ops/backend.h) and each backend's filled table (ops/ref/ref.c,
// ops/cpu/backend.c, ops/cuda/plugin.cu). Adding an op: docs/ARCHITECTURE.md.
// No include guard: it is included with OP defined (then #undef OP), once per use.
//
// OP(name, class, by, wrap, ref, cpu, (first), (params), (args))
//   name   the public function and its table slot; its kernels are ref_<name>_f32 and
//          ref_<name>_f64, cpu_<name>, cuda_<name>
//   class  the profiler's kernel class (op_profile_class)
//   by     the argument whose device picks the backend's kernel, and on the reference
//          backend whose dtype picks the instantiation
//   wrap   GEN: the wrapper is generated: dispatch, profiled when ctx->prof is set;
//          PRE: the same, after pre_<name>(args) in ops.c (argument checks, FLOP
//               counting, the profile's variant);
//          OWN: ops.c writes the wrapper around the generated run_<name>(args)
//   ref    the reference backend: REF ref_<name>_f32/_f64 (ops/ref/); CPU cpu_<name>,
//          one kernel for both table dtypes; NONE no kernel (the wrapper composes ops)
//   cpu    the CPU backend: CPU cpu_<name> (ops/cpu/); REF ref_<name>_f32, the plain
//          loop being the fast path too (cheap and memory-light: docs/PERF.md)
//   first  the accumulated outputs (+=) every backend's kernels can write (=) instead:
//          a buffer that is still logically zero (a deferred zero, ops.h "first-write
//          gradients") passed there is written whole by the op, not filled and then
//          added into; the kernels ask op_overwrites(ctx, t). Any other argument that
//          is a deferred zero — read, partly written, or added into by a kernel that
//          cannot write — is filled with zeros before the op runs. () for none.
// The CUDA backend fills the slot of every op whose cuda_<name> ops/cuda/ defines;
// opening a GPU names the ops it lacks.

// ---- convolution --------------------------------------------------------------
// reference: torch.nn.functional.conv2d (cross-correlation, zero padding).
// y (N,Ho,Wo,K) act = conv(x (N,H,W,C) act, w (K,C/G,kh,kw)) + b (K) [b may be NULL]
// Ho = (H + 2*pad - dil*(kh-1) - 1) / stride + 1
OP(conv2d_forward, "convolution", x, PRE, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a), (ctx, y, x, w, b, a))
// dx (N,H,W,C) act +=, dw (K,C/G,kh,kw) +=, db (K) += ; any may be NULL. Profiled,
// the input gradient and the weight gradient are timed apart.
OP(conv2d_backward, "convolution", x, OWN, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x, const Tensor *w, ConvArgs a),
   (ctx, dx, dw, db, dy, x, w, a))

// ---- linear / GEMM ----------------------------------------------------------------
// y (..., K) = x (..., C) · w (K, C)^T + b (K) [b may be NULL]; a 1×1 conv on NHWC.
// x, y float of one dtype (the router runs in F32 beside bf16 activations).
OP(linear_forward, "GEMM", x, PRE, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b), (ctx, y, x, w, b))
OP(linear_backward, "GEMM", x, PRE, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x, const Tensor *w),
   (ctx, dx, dw, db, dy, x, w))
// C = alpha · op(A) · op(B) + beta · C over the batches of g (GemmArgs, ops_types.h);
// beta 0 ignores C's old contents (BLAS). A, B, C float. The primitive of channel
// attention (XCA): for every image i and head j, q, k and v are strided column
// blocks of one qkv tensor.
OP(gemm_batched, "GEMM", A, OWN, REF, CPU, (),
   (OpCtx *ctx, Tensor *C, const Tensor *A, const Tensor *B, const GemmArgs *g), (ctx, C, A, B, g))

// ---- normalisation ---------------------------------------------------------------
// reference: torch.nn.BatchNorm2d. Training: statistics over N,H,W per channel
// (biased variance for normalising); running stats updated in place when
// non-NULL: r = (1-momentum)·r + momentum·batch (unbiased variance for
// running_var). Evaluation: running stats. save_mean/save_invstd (C) receive the
// mean and 1/sqrt(var+eps) used, for backward. x, y act; the rest F32 (F64).
OP(batchnorm_forward, "norm", x, GEN, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x, const Tensor *gamma,
    const Tensor *beta, Tensor *running_mean, Tensor *running_var, int training, double momentum, double eps),
   (ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training, momentum, eps))
OP(batchnorm_backward, "norm", x, GEN, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *x,
    const Tensor *save_mean, const Tensor *save_invstd, const Tensor *gamma, int training),
   (ctx, dx, dgamma, dbeta, dy, x, save_mean, save_invstd, gamma, training))
// BatchNorm then ReLU (a ConvBNReLU's last two layers): y = relu(batchnorm(x)), the
// arguments and statistics of batchnorm_forward; y must not alias x. Its backward
// takes the pair's output y and is batchnorm_backward of dy·[y > 0] (dx, dγ, dβ +=).
// One pass each on the CPU and GPU backends (no ReLU pass, no masked-gradient tensor);
// on the reference backend, and while a ReluTape records or replays, the two ops in turn.
OP(batchnorm_relu_forward, "norm", x, OWN, NONE, CPU, (),
   (OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_invstd, const Tensor *x, const Tensor *gamma,
    const Tensor *beta, Tensor *running_mean, Tensor *running_var, int training, double momentum, double eps),
   (ctx, y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var, training, momentum, eps))
OP(batchnorm_relu_backward, "norm", x, OWN, NONE, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, Tensor *dgamma, Tensor *dbeta, const Tensor *dy, const Tensor *y, const Tensor *x,
    const Tensor *save_mean, const Tensor *save_invstd, const Tensor *gamma, int training),
   (ctx, dx, dgamma, dbeta, dy, y, x, save_mean, save_invstd, gamma, training))
// reference: torch.nn.LayerNorm over the last axis (C); biased variance.
// save_mean/save_rstd have numel(x)/C elements (F32, or F64).
OP(layernorm_forward, "norm", x, GEN, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, Tensor *save_mean, Tensor *save_rstd, const Tensor *x, const Tensor *w, const Tensor *b,
    double eps),
   (ctx, y, save_mean, save_rstd, x, w, b, eps))
OP(layernorm_backward, "norm", x, GEN, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x, const Tensor *save_mean,
    const Tensor *save_rstd, const Tensor *w),
   (ctx, dx, dw, db, dy, x, save_mean, save_rstd, w))

// ---- element-wise ------------------------------------------------------------------
// y and x may alias in forward (in place). Backward takes x (the input) except
// where noted. All act.
OP(gelu_forward, "element-wise", x, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *x), (ctx, y, x))   // exact erf form
OP(gelu_backward, "element-wise", x, GEN, REF, CPU, (dx), (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x),
   (ctx, dx, dy, x))
// gelu_backward, and dbias (C) += Σ over rows of what it adds to dx (…, C) (rounded to dx's
// dtype): the bias gradient of the linear layer whose output x is, in the same pass — the
// exact-erf counterpart of cuBLASLt's DGELU_BGRAD epilogue (whose GELU is the tanh form).
// Reference: gelu_backward into zeros, rows_sum, axpy.
OP(gelu_bias_backward, "element-wise", x, GEN, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, Tensor *dbias, const Tensor *dy, const Tensor *x), (ctx, dx, dbias, dy, x))
// With ctx->relu_tape set, the decisions are recorded or replayed (ReluTape, ops_types.h).
OP(relu_forward, "element-wise", x, OWN, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *x), (ctx, y, x))
OP(relu_backward, "element-wise", y, GEN, REF, CPU, (dx), (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y),
   (ctx, dx, dy, y))   // takes the OUTPUT y
OP(sigmoid_forward, "element-wise", x, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *x), (ctx, y, x))
OP(sigmoid_backward, "element-wise", y, GEN, REF, CPU, (dx), (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y),
   (ctx, dx, dy, y))   // takes the OUTPUT y
OP(softplus_forward, "element-wise", x, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *x), (ctx, y, x))   // beta 1, threshold 20
OP(softplus_backward, "element-wise", x, GEN, REF, CPU, (dx), (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x),
   (ctx, dx, dy, x))
// reference: torch.clamp; gradient passes where lo <= x <= hi, zero outside.
OP(clamp_forward, "element-wise", x, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *x, double lo, double hi),
   (ctx, y, x, lo, hi))
OP(clamp_backward, "element-wise", x, GEN, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, double lo, double hi), (ctx, dx, dy, x, lo, hi))
// y = a + b (same shapes); y may alias a or b.
OP(add_forward, "element-wise", a, PRE, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *a, const Tensor *b),
   (ctx, y, a, b))
// y += alpha · x (same numel; float, the dtypes may differ). Also the gradient-accumulation primitive.
OP(axpy, "element-wise", x, PRE, REF, CPU, (y), (OpCtx *ctx, Tensor *y, double alpha, const Tensor *x), (ctx, y, alpha, x))
OP(scale_inplace, "element-wise", y, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, double alpha), (ctx, y, alpha))
// y = v everywhere (any float dtype).
OP(fill, "element-wise", y, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, double v), (ctx, y, v))
// dst = src, same numel, converting between float dtypes (F32 <-> BF16, F32 <-> F64).
OP(copy, "element-wise", src, PRE, REF, REF, (), (OpCtx *ctx, Tensor *dst, const Tensor *src), (ctx, dst, src))
// Broadcast multiply: y = x ⊙ s, where x is (N,H,W,C) act, y float (F32 beside bf16 x: the
// refinement's h = b·(1 + u), cod_head.c) and s (float) is one of
//   (C)         per channel (layer scale γ),
//   (N,C)       per image and channel (contrast amplification, router weights),
//   (N,H,W,1)   per pixel (search map, foreground map, 1+u),
//   (1,H,W,1)   per pixel, the same for every image (XCA temperature per head),
//   (N,H,W,C)   element-wise.
OP(mul_forward, "element-wise", x, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *s),
   (ctx, y, x, s))
// dx += dy ⊙ s ; ds += Σ over broadcast axes of dy ⊙ x. Either may be NULL.
OP(mul_backward, "element-wise", x, GEN, REF, CPU, (dx, ds),
   (OpCtx *ctx, Tensor *dx, Tensor *ds, const Tensor *dy, const Tensor *x, const Tensor *s), (ctx, dx, ds, dy, x, s))
// The layer-scaled residual of the EdgeNeXt blocks and of XCA: y = x + γ ⊙ z, x, z, y
// (..., C) act, γ (C) float32 per channel (reference: timm EdgeNeXt, x + gamma * z).
// One pass where mul_forward and axpy took two; the reference kernel is that pair.
OP(residual_scale_forward, "element-wise", z, GEN, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *z, const Tensor *gamma), (ctx, y, x, z, gamma))
// dx += dy; dz += γ ⊙ dy; dγ += Σ over rows of dy ⊙ z. Any may be NULL. One pass over dy
// and z (the reference: mul_backward, then axpy).
OP(residual_scale_backward, "element-wise", dy, GEN, REF, CPU, (dx, dz),
   (OpCtx *ctx, Tensor *dx, Tensor *dz, Tensor *dgamma, const Tensor *dy, const Tensor *z, const Tensor *gamma),
   (ctx, dx, dz, dgamma, dy, z, gamma))
// y (R, L) += b (L) for every row, where L = numel(b) and R = numel(y)/L (the
// positional encoding added to every image). b float.
OP(rows_add_bcast, "element-wise", y, PRE, REF, REF, (), (OpCtx *ctx, Tensor *y, const Tensor *b), (ctx, y, b))
// db (L) += Σ over rows of dy (R, L): rows_add_bcast's backward.
OP(rows_sum, "element-wise", dy, PRE, REF, REF, (db), (OpCtx *ctx, Tensor *db, const Tensor *dy), (ctx, db, dy))

// ---- resampling and pooling ----------------------------------------------------------
// reference: F.interpolate(mode='bilinear', align_corners=False). With
// scale_h/scale_w > 0 (the scale_factor form) the source coordinate is
// (dst + 0.5) / scale - 0.5; with 0 (the size form) scale = out/in, i.e.
// (dst + 0.5) · in/out - 0.5; negative coordinates clamp to 0 as PyTorch does.
OP(resize_bilinear_forward, "resize", x, GEN, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, const Tensor *x, double scale_h, double scale_w), (ctx, y, x, scale_h, scale_w))
OP(resize_bilinear_backward, "resize", dy, GEN, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, const Tensor *dy, double scale_h, double scale_w), (ctx, dx, dy, scale_h, scale_w))
// y (N,C) = mean over H,W of x (N,H,W,C). y float (the router pools bf16 maps into F32).
OP(avgpool_global_forward, "element-wise", x, GEN, REF, CPU, (), (OpCtx *ctx, Tensor *y, const Tensor *x), (ctx, y, x))
OP(avgpool_global_backward, "element-wise", dx, GEN, REF, CPU, (dx), (OpCtx *ctx, Tensor *dx, const Tensor *dy), (ctx, dx, dy))

// ---- channel slicing ------------------------------------------------------------------
// dst[..., dc0 : dc0+nc] (=, or += when accumulate) src[..., sc0 : sc0+nc];
// both NHWC with the same N,H,W. Concat and split are built from this (ops.h).
OP(channels_copy, "element-wise", src, OWN, REF, CPU, (),
   (OpCtx *ctx, Tensor *dst, int dc0, const Tensor *src, int sc0, int nc, int accumulate),
   (ctx, dst, dc0, src, sc0, nc, accumulate))

// ---- reductions ------------------------------------------------------------------------------
// x viewed as (outer, L, inner); the op runs along L for each (outer, inner).
// reference: torch.softmax(dim)
OP(softmax_forward, "element-wise", x, GEN, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, const Tensor *x, int64_t outer, int64_t L, int64_t inner), (ctx, y, x, outer, L, inner))
OP(softmax_backward, "element-wise", y, GEN, REF, CPU, (dx),
   (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *y, int64_t outer, int64_t L, int64_t inner),
   (ctx, dx, dy, y, outer, L, inner))
// reference: F.normalize(p=2, eps): y = x / max(||x||_2, eps); save_norm gets
// (outer·inner) norms (before the max), F32 (F64).
OP(l2norm_forward, "norm", x, GEN, REF, CPU, (),
   (OpCtx *ctx, Tensor *y, Tensor *save_norm, const Tensor *x, int64_t outer, int64_t L, int64_t inner, double eps),
   (ctx, y, save_norm, x, outer, L, inner, eps))
OP(l2norm_backward, "norm", x, GEN, REF, CPU, (),
   (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_norm, int64_t outer, int64_t L,
    int64_t inner, double eps),
   (ctx, dx, dy, x, save_norm, outer, L, inner, eps))
// reference: torch.topk(x, k, dim=-1) on x (R, L): idx (R,k) I32 and val (R,k),
// in descending order; among equal values the lower index comes first.
OP(topk_rows, "MoE dispatch", x, PRE, REF, REF, (), (OpCtx *ctx, Tensor *idx, Tensor *val, const Tensor *x, int k),
   (ctx, idx, val, x, k))
// y = x / (max(x) + eps), the maximum over every element (the boundary-uncertainty
// map normalised by its batch maximum); save_max (1) F32 (F64) gets max(x).
// Backward: the maximum's gradient is shared evenly by the elements equal to it.
OP(maxnorm_forward, "norm", x, GEN, REF, REF, (), (OpCtx *ctx, Tensor *y, Tensor *save_max, const Tensor *x, double eps),
   (ctx, y, save_max, x, eps))
OP(maxnorm_backward, "norm", x, GEN, REF, REF, (dx),
   (OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *save_max, double eps),
   (ctx, dx, dy, x, save_max, eps))

// ---- the CamoXpert training loss -----------------------------------------------------------
// reference: the reference implementation's CamoXpertLoss (reference/camoxpert.md §6):
//   terms[CL_BCE]   BCEwithLogits(clamp(pred, ±15), y)        (mean)
//   terms[CL_IOU]   1 − mean over images of (Σpy + 1e-5)/(Σp + Σy − Σpy + 1e-5), p = σ(clamp(pred))
//   terms[CL_EDGE]  mean((sqrt(Sx(p)² + Sy(p)² + 1e-5) − sqrt(Sx(y)² + Sy(y)² + 1e-5))²), S Sobel, zero padding
//   terms[CL_BOUNDARY] mean((1 + 4·(box(y) − (1 − box(1 − y)))) · BCEwithLogits(clamp(pred), y)), box 3×3 mean
//   terms[CL_UNCERT] mean(|p − y| · log(1/(u + 1e-8)))
//   terms[CL_RA], terms[CL_SEARCH]  BCE(clamp(fg|search, 1e-7, 1 − 1e-7), y), PyTorch's log clamp at −100
//   terms[CL_DEEP]  mean over the three deep maps of BCEwithLogits(clamp(deep_j), deep_mask_j)
//   terms[CL_REFINE] w[CL_REFINE] · BCEwithLogits(clamp(refine0), y)  (includes its weight, as the reference reports it)
// Maps and masks: CodLossIn (ops_types.h). terms (CL_TERMS) F32 (F64) receive the
// unweighted terms (=). When g is non-NULL, the gradient of Σ w[t]·terms[t]
// (w[CL_REFINE] counted once) is added (+=) into each non-NULL g tensor (shapes and
// dtypes of the maps). Sums accumulate in F32 on the GPU, in double elsewhere (the
// reference kernel, ops/ref/loss_ref.c, takes both dtypes).
OP(cod_loss, "loss", in->pred, OWN, REF, REF, (), (OpCtx *ctx, Tensor *terms, const CodLossGrad *g, const CodLossIn *in),
   (ctx, terms, g, in))

// ---- optimizer ---------------------------------------------------------------------------------
// Whole parameter tables, in segments (AdamSeg, EmaSeg: ops_types.h). One CPU kernel
// (ops/cpu/optim.c) serves float32 and float64 tables, on the CPU and reference backends.
// reference: torch.optim.AdamW (single-tensor path, amsgrad off). Per element of every segment:
//   g = grad·gscale; p *= decay_mul; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
//   p −= step_size · m / (sqrt(v)/sqrt_bc2 + eps)
// param, grad: the table's dtype (F32, or F64 on OPS_REF); m, v F32; gscale (1) F32 (F64)
// or NULL (1): the clipping factor grad_norm_clip computed on the same device.
OP(adamw_update, "optimizer", param, GEN, CPU, CPU, (),
   (OpCtx *ctx, Tensor *param, Tensor *m, Tensor *v, const Tensor *grad, const Tensor *gscale, const AdamSeg *seg,
    int nseg, double beta1, double beta2, double eps),
   (ctx, param, m, v, grad, gscale, seg, nseg, beta1, beta2, eps))
// stats (3) F32 (F64): [0] = Σ over the segments of x², [1] = its square root (the
// global gradient norm), [2] = the clipping factor max_norm / (norm + 1e-6) when
// norm > max_norm > 0, else 1. (reference: torch.nn.utils.clip_grad_norm_)
OP(grad_norm_clip, "optimizer", x, GEN, CPU, CPU, (),
   (OpCtx *ctx, Tensor *stats, const Tensor *x, const AdamSeg *seg, int nseg, double max_norm),
   (ctx, stats, x, seg, nseg, max_norm))
// EMA of the weights: per segment, shadow = decay·shadow + (1−decay)·x, or shadow = x
// when `copy` (BatchNorm buffers are copied, not averaged). shadow, x: the table's dtype.
OP(ema_blend, "optimizer", x, GEN, CPU, CPU, (), (OpCtx *ctx, Tensor *shadow, const Tensor *x, const EmaSeg *seg, int nseg),
   (ctx, shadow, x, seg, nseg))

// ---- mixture-of-experts dispatch ------------------------------------------------------------
// Rows are the first axis (images, or tiles in spatial routing).
// dst[i] = src[idx[i]] for i < n (idx I32 (n)).
OP(rows_gather, "MoE dispatch", src, PRE, REF, REF, (), (OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx),
   (ctx, dst, src, idx))
// dst[idx[i]] += w[i] · src[i]  (w (n) float; NULL means 1); repeated indices
// add up in index order (deterministically).
OP(rows_scatter_add, "MoE dispatch", src, PRE, REF, REF, (),
   (OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *idx, const Tensor *w), (ctx, dst, src, idx, w))
// Backward of rows_scatter_add: dsrc[i] += w[i] · ddst[idx[i]]; dw[i] += <ddst[idx[i]], src[i]>.
OP(rows_scatter_add_backward, "MoE dispatch", ddst, GEN, REF, REF, (),
   (OpCtx *ctx, Tensor *dsrc, Tensor *dw, const Tensor *ddst, const Tensor *src, const Tensor *idx, const Tensor *w),
   (ctx, dsrc, dw, ddst, src, idx, w))
// The same sum written as a gather, for scatters whose destination rows the host
// has listed (spatial routing's plans): for every row r of dst,
//   dst[r] += Σ_{j = ptr[r]}^{ptr[r+1]-1} w[j] · src[list[j]]   (w (n) float; NULL means 1)
// with ptr (rows+1) and list (n) I32, in list order. With ptr/list the CSR form of a
// rows_scatter_add index (each row's entries in ascending i) it is rows_scatter_add's
// sum, term for term; each dst row is written by one thread on a GPU (deterministic,
// no atomics, O(n·D) work) where rows_scatter_add loops over every index per element.
// It is itself a backward (of rows_gather with weights): no backward of its own.
OP(rows_gather_sum, "MoE dispatch", src, PRE, REF, REF, (),
   (OpCtx *ctx, Tensor *dst, const Tensor *src, const Tensor *ptr, const Tensor *list, const Tensor *w),
   (ctx, dst, src, ptr, list, w))
// The routing decisions of U units (images, or tiles) among E experts and the plan
// of their grouped execution (nn/moe.h), made on the device that holds probs (U,E)
// F32 (F64), so that no decision waits for the host. P = U·k pairs, pair p = u·k + j.
//   idx (U,k) I32   the top-k of the scores probs + sel (sel (E) host doubles added for
//                   choosing only, each score rounded to probs's dtype; NULL: none), in
//                   topk_rows's order (descending, ties to the lower index)
//   w (U,k)         the renormalised weights w_j = p_j / (Σ_j p_j + 1e-8), p_j = probs[u,
//                   idx_j], summed and divided in double, rounded once
//   plan (3P+U+1) I32, the pairs sorted by expert, stable in p (a counting sort):
//                   [rows (P): unit of the i-th pair | pos (P): position of pair p in that
//                   order | ulist (P): the positions of unit u's pairs, ascending, at u·k |
//                   uptr (U+1): u·k] — ulist/uptr is the CSR form of rows (rows_gather_sum)
//   plan_w (2P) float, probs's dtype: [wts (P): weight of the i-th pair | uw (P): weight of
//                   each ulist entry]
// No gradient flows through the choice; route_topk_backward is the weights' backward.
OP(route_topk_plan, "MoE dispatch", probs, PRE, REF, REF, (),
   (OpCtx *ctx, Tensor *idx, Tensor *w, Tensor *plan, Tensor *plan_w, const Tensor *probs, const double *sel),
   (ctx, idx, w, plan, plan_w, probs, sel))
// The routing's backward to the router's logits (U,E), F32 (F64), probs = softmax(logits):
// dlogits += ∂/∂logits of Σ dw·w + cb·balance, where w (U,k) are route_topk_plan's weights
// of the choice idx (U,k) I32 (dw NULL: no weight gradient) and balance (lb) is
//   MOE_LB_MSE     Σ_e (P_e − 1/E)²,  P_e = mean_u p[u,e]
//   MOE_LB_SWITCH  E · Σ_e f_e · P_e, f_e = the share of the U·k pairs choosing e (constant)
//   MOE_LB_ZLOSS   mean_u logsumexp(logits_u)²
//   MOE_LB_NONE    no term.
// Sums in double, in unit order (the host's order: bit for bit the same float32 on every
// backend up to exp/log). The router's linear backward follows it (linear_backward).
OP(route_topk_backward, "MoE dispatch", probs, PRE, REF, REF, (),
   (OpCtx *ctx, Tensor *dlogits, const Tensor *dw, const Tensor *idx, const Tensor *probs, const Tensor *logits,
    int lb, double cb),
   (ctx, dlogits, dw, idx, probs, logits, lb, cb))
