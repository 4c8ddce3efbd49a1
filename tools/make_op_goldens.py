#!/usr/bin/python3
"""make_op_goldens.py — PyTorch goldens for the op test table (tests/test_ops.c).

For every case: inputs (NHWC, as the C ops take them), forward outputs, a
random output gradient `dout`, and the input/parameter gradients of
loss = sum(out * dout), all computed by PyTorch in float64. Written as one
safetensors file with keys "<case>.in<i>", "<case>.out<i>", "<case>.dout<i>",
"<case>.grad<i>". The C table (tests/test_ops.c) names the same cases and
reads its shapes from this file.

Run with Debian's PyTorch (python3-torch, 1.13):
    /usr/bin/python3 tools/make_op_goldens.py tests/fixtures/ops_golden.safetensors
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

torch.manual_seed(1234)
D = torch.float64
CASES = {}   # name -> dict(inputs=[...], diff=[bool], outputs=[...] (first ngout have dout))


def rnd(*shape, scale=1.0):
    return torch.randn(*shape, dtype=D) * scale


def uni(lo, hi, *shape):
    return torch.rand(*shape, dtype=D) * (hi - lo) + lo


def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def case(name, inputs, diff, fn, ngout=None, douts=None):
    """fn(*inputs) -> list of outputs; the first ngout get a dout (random, or the given
    douts: an op whose backward is the gradient of a fixed sum) and a gradient."""
    ins = [t.clone().requires_grad_(d) for t, d in zip(inputs, diff)]
    outs = fn(*ins)
    ngout = len(outs) if ngout is None else ngouts_check(ngout, outs)
    douts = [rnd(*o.shape) for o in outs[:ngout]] if douts is None else douts
    loss = sum((o * d).sum() for o, d in zip(outs[:ngout], douts))
    grads = torch.autograd.grad(loss, [i for i, d in zip(ins, diff) if d], allow_unused=True) if any(diff) else []
    gi = iter(grads)
    entry = {}
    for i, (t, d) in enumerate(zip(inputs, diff)):
        entry[f"{name}.in{i}"] = t
        if d:
            g = next(gi)
            entry[f"{name}.grad{i}"] = torch.zeros_like(t) if g is None else g
    for i, o in enumerate(outs):
        entry[f"{name}.out{i}"] = o.detach()
    for i, d in enumerate(douts):
        entry[f"{name}.dout{i}"] = d
    CASES[name] = entry


def ngouts_check(n, outs):
    assert n <= len(outs)
    return n


# ---- convolution: x (N,H,W,C), w (K,C/G,kh,kw), b (K) --------------------------------------
def conv_case(name, N, H, W, C, K, k, s, p, d, g, bias=True):
    x, w = rnd(N, H, W, C), rnd(K, C // g, k, k, scale=(C // g * k * k) ** -0.5)
    ins, diff = [x, w], [True, True]
    if bias:
        ins.append(rnd(K)); diff.append(True)
    case(name, ins, diff, lambda x, w, *b: [nhwc(F.conv2d(nchw(x), w, b[0] if b else None, s, p, d, g))])


conv_case("conv_k3_7x5_c3", 2, 7, 5, 3, 4, 3, 1, 1, 1, 1)
conv_case("conv_k1_7x5", 2, 7, 5, 5, 3, 1, 1, 0, 1, 1)
conv_case("conv_k1_s2_nobias", 1, 7, 5, 4, 3, 1, 2, 0, 1, 1, bias=False)
conv_case("conv_k3_s2_b1", 1, 7, 5, 3, 5, 3, 2, 1, 1, 1)
conv_case("conv_k5_s2_g2", 2, 9, 7, 4, 6, 5, 2, 2, 1, 2)
conv_case("conv_k7_p3", 1, 7, 5, 3, 2, 7, 1, 3, 1, 1)
conv_case("conv_k3_d8_6x6", 1, 6, 6, 3, 4, 3, 1, 8, 8, 1)
conv_case("conv_k3_d2", 2, 7, 5, 4, 4, 3, 1, 2, 2, 1)
conv_case("conv_k3_d4_g3", 1, 9, 9, 6, 3, 3, 1, 4, 4, 3)
conv_case("dwconv_k3", 2, 7, 5, 5, 5, 3, 1, 1, 1, 5)
conv_case("dwconv_k5_s2", 1, 9, 7, 6, 6, 5, 2, 2, 1, 6)
conv_case("dwconv_k7", 1, 7, 5, 8, 8, 7, 1, 3, 1, 8)
conv_case("dwconv_k9_nobias", 1, 11, 11, 3, 3, 9, 1, 4, 1, 3, bias=False)
conv_case("dwconv_k3_d2_c70", 1, 6, 5, 70, 70, 3, 1, 2, 2, 70)

# ---- linear and batched GEMM ---------------------------------------------------------------
case("linear_rows", [rnd(2, 3, 5, 7), rnd(4, 7), rnd(4)], [True] * 3, lambda x, w, b: [F.linear(x, w, b)])
case("linear_nobias", [rnd(6, 9), rnd(5, 9)], [True] * 2, lambda x, w: [F.linear(x, w)])
# C (b,M,N) = 0.7 · A (b,M,K) · B (b,N,K)ᵀ
case("gemm_nt", [rnd(3, 4, 5), rnd(3, 6, 5)], [True] * 2, lambda a, b: [0.7 * a @ b.transpose(1, 2)])
# C = 1.3 · A (b,K,M)ᵀ · B (b,K,N) + 0.5 · C0
case("gemm_tn_beta", [rnd(2, 5, 4), rnd(2, 5, 3), rnd(2, 4, 3)], [True] * 3,
     lambda a, b, c: [1.3 * a.transpose(1, 2) @ b + 0.5 * c])

# ---- normalisation --------------------------------------------------------------------------
def bn_train(x, g, b, rm, rv):
    rm2, rv2 = rm.detach().clone(), rv.detach().clone()
    y = nhwc(F.batch_norm(nchw(x), rm2, rv2, g, b, True, 0.1, 1e-5))
    return [y, rm2, rv2]


bn_in = lambda N, H, W, C: [rnd(N, H, W, C, scale=2) + 0.5, uni(0.5, 1.5, C), rnd(C), rnd(C), uni(0.5, 2, C)]
case("bn_train", bn_in(2, 7, 5, 3), [True, True, True, False, False], bn_train, ngout=1)
case("bn_train_b1", bn_in(1, 3, 3, 4), [True, True, True, False, False], bn_train, ngout=1)
case("bn_eval", bn_in(2, 7, 5, 3), [True, True, True, False, False],
     lambda x, g, b, rm, rv: [nhwc(F.batch_norm(nchw(x), rm, rv, g, b, False, 0.1, 1e-5))])
case("ln", [rnd(2, 7, 5, 6, scale=3) + 1, uni(0.5, 1.5, 6), rnd(6)], [True] * 3,
     lambda x, w, b: [F.layer_norm(x, (6,), w, b, 1e-6)])
case("ln_c80", [rnd(3, 80), uni(0.5, 1.5, 80), rnd(80)], [True] * 3,
     lambda x, w, b: [F.layer_norm(x, (80,), w, b, 1e-5)])

# ---- element-wise ------------------------------------------------------------------------------
case("gelu", [rnd(2, 7, 5, 3, scale=2)], [True], lambda x: [F.gelu(x)])
case("relu", [rnd(2, 7, 5, 3)], [True], lambda x: [F.relu(x)])
case("sigmoid", [rnd(2, 7, 5, 3, scale=3)], [True], lambda x: [torch.sigmoid(x)])
sp = rnd(2, 7, 5, 3, scale=8)
sp.view(-1)[:6] = torch.tensor([25.0, 30.0, 21.5, -25.0, 19.0, 60.0], dtype=D)
case("softplus", [sp], [True], lambda x: [F.softplus(x)])
case("clamp", [rnd(2, 7, 5, 3)], [True], lambda x: [torch.clamp(x, -0.5, 0.8)])
cb = rnd(2, 7, 5, 3)
cb.view(-1)[:8] = torch.tensor([-0.5, 0.8, -0.5, 0.8, 0.0, -2.0, 2.0, 0.79], dtype=D)
case("clamp_bounds", [cb], [True], lambda x: [torch.clamp(x, -0.5, 0.8)])
case("add", [rnd(2, 7, 5, 3), rnd(2, 7, 5, 3)], [True, True], lambda a, b: [a + b])
case("axpy", [rnd(2, 7, 5, 3), rnd(2, 7, 5, 3)], [True, True], lambda y, x: [y + 0.3 * x])
case("scale", [rnd(2, 7, 5, 3)], [True], lambda x: [1.7 * x])
case("mul_c", [rnd(2, 7, 5, 3), rnd(3)], [True, True], lambda x, s: [x * s])
case("mul_nc", [rnd(2, 7, 5, 3), rnd(2, 3)], [True, True], lambda x, s: [x * s[:, None, None, :]])
case("mul_pix", [rnd(2, 7, 5, 3), rnd(2, 7, 5, 1)], [True, True], lambda x, s: [x * s])
case("mul_elem", [rnd(2, 7, 5, 3), rnd(2, 7, 5, 3)], [True, True], lambda x, s: [x * s])
case("mul_head", [rnd(3, 4, 1, 6), rnd(1, 4, 1, 1)], [True, True], lambda x, s: [x * s])   # XCA temperature per head
# rows_add_bcast: y (R, ...) + b (the trailing axes), the positional encoding added to every image
case("rows_add_bcast", [rnd(3, 4, 5, 2), rnd(4, 5, 2)], [True, True], lambda y, b: [y + b])

# ---- resampling and pooling ------------------------------------------------------------------
def resize(scale=None, size=None):
    return lambda x: [nhwc(F.interpolate(nchw(x), size=size, scale_factor=scale, mode="bilinear",
                                         align_corners=False))]


case("resize_scale2", [rnd(2, 7, 5, 3)], [True], resize(scale=2.0))
case("resize_scale1p5", [rnd(1, 7, 5, 3)], [True], resize(scale=1.5))
case("resize_scale0p5", [rnd(1, 7, 5, 3)], [True], resize(scale=0.5))
case("resize_size_up", [rnd(2, 7, 5, 3)], [True], resize(size=(11, 8)))
case("resize_size_down", [rnd(1, 7, 5, 3)], [True], resize(size=(3, 2)))
case("resize_size_4x", [rnd(1, 6, 5, 2)], [True], resize(size=(24, 20)))
case("avgpool", [rnd(2, 7, 5, 3)], [True], lambda x: [x.mean(dim=(1, 2))])

# ---- channel slicing -------------------------------------------------------------------------------
case("concat", [rnd(2, 7, 5, 3), rnd(2, 7, 5, 1), rnd(2, 7, 5, 2)], [True] * 3, lambda *xs: [torch.cat(xs, dim=3)])


def chcopy(dst, src):
    out = dst.clone()
    out[..., 2:5] = out[..., 2:5] + src[..., 1:4]
    return [out]


case("channels_copy_acc", [rnd(2, 7, 5, 6), rnd(2, 7, 5, 4)], [True, True], chcopy)

# ---- reductions over one axis -----------------------------------------------------------------------
case("softmax_last", [rnd(6, 7, scale=2)], [True], lambda x: [torch.softmax(x, 1)])
case("softmax_mid", [rnd(2, 5, 3, scale=2)], [True], lambda x: [torch.softmax(x, 1)])
case("l2norm_last", [rnd(4, 9)], [True], lambda x: [F.normalize(x, p=2, dim=1, eps=1e-12)])
case("l2norm_mid", [rnd(2, 6, 5)], [True], lambda x: [F.normalize(x, p=2, dim=1, eps=1e-12)])
l2s = rnd(3, 4)
l2s[1] *= 1e-5   # norm below eps: the clamp holds the denominator
case("l2norm_eps", [l2s], [True], lambda x: [F.normalize(x, p=2, dim=1, eps=1e-3)])
tk = torch.randint(0, 4, (5, 9)).to(D)
tk[0] = 2.0   # a row of equal values
tk[1, :] = torch.arange(9, dtype=D)


def topk(x):
    v, i = torch.topk(x, 4, dim=-1)
    return [v, i.to(torch.int32)]


case("topk_ties", [tk], [False], topk, ngout=0)
case("topk_k1", [rnd(3, 7)], [False], lambda x: [torch.topk(x, 1, dim=-1)[0], torch.topk(x, 1, dim=-1)[1].to(torch.int32)],
     ngout=0)

# ---- batch-maximum normalisation (the boundary-uncertainty map) -----------------------------------------
mx = uni(0.1, 2.0, 2, 7, 5, 1)
mx.view(-1)[[3, 40]] = 2.5   # a tied maximum: the gradient of max is shared by both


def maxnorm(x):
    return [x / (x.amax() + 1e-8)]


case("maxnorm", [mx], [True], maxnorm)

# ---- mixture-of-experts dispatch ----------------------------------------------------------------------
gidx = torch.tensor([4, 0, 4, 2], dtype=torch.int32)
case("rows_gather", [rnd(5, 3, 2), gidx], [True, False], lambda s, i: [s.index_select(0, i.long())])
sidx = torch.tensor([1, 3, 1, 0], dtype=torch.int32)
case("rows_scatter_add", [rnd(5, 6), rnd(4, 6), sidx, rnd(4)], [True, True, False, True],
     lambda d, s, i, w: [d.index_add(0, i.long(), w[:, None] * s)])
case("rows_scatter_add_now", [rnd(5, 2, 3), rnd(4, 2, 3), sidx], [True, True, False],
     lambda d, s, i: [d.index_add(0, i.long(), s)])
# BatchNorm with channels a multiple of 8: the GPU's 16-byte vector path (bf16 and float32)
case("bn_train_c16", bn_in(2, 5, 3, 16), [True, True, True, False, False], bn_train, ngout=1)
case("bn_eval_c8", bn_in(3, 2, 5, 8), [True, True, True, False, False],
     lambda x, g, b, rm, rv: [nhwc(F.batch_norm(nchw(x), rm, rv, g, b, False, 0.1, 1e-5))])

# BatchNorm then ReLU as one op (a ConvBNReLU's last two layers; ops.h batchnorm_relu_*):
# the scalar and the vector paths, training and evaluation
def bn_relu_train(x, g, b, rm, rv):
    y, rm2, rv2 = bn_train(x, g, b, rm, rv)
    return [F.relu(y), rm2, rv2]


# x exactly representable in bf16, so that the GPU's bf16 column sees the float32 reference's x and
# makes its ReLU decisions (the sign of each normalised value): rounding x could flip one near 0,
# which moves that element's gradient by all of dy (docs/GPU.md, "Float32 gradient parity")
def bn_relu_in(N, H, W, C):
    v = bn_in(N, H, W, C)
    v[0] = v[0].to(torch.bfloat16).to(D)
    return v


case("bn_relu_train", bn_relu_in(2, 7, 5, 3), [True, True, True, False, False], bn_relu_train, ngout=1)
case("bn_relu_train_c16", bn_relu_in(2, 5, 3, 16), [True, True, True, False, False], bn_relu_train, ngout=1)
case("bn_relu_eval_c8", bn_relu_in(3, 2, 5, 8), [True, True, True, False, False],
     lambda x, g, b, rm, rv: [F.relu(nhwc(F.batch_norm(nchw(x), rm, rv, g, b, False, 0.1, 1e-5)))])


# ---- the entry points once tested outside the table -------------------------------------------------
# (appended last: the random stream of every case above stays as it was)
# fill over an old content; copy (its backward: the output gradient copied back and added)
case("fill", [rnd(2, 7, 5, 3)], [False], lambda x: [torch.full_like(x, -1.75)], ngout=0)
case("copy", [rnd(2, 7, 5, 3)], [True], lambda x: [x.clone()])
# rows_sum: b (the trailing axes) + the sum over rows of y (R, ...), rows_add_bcast's adjoint
case("rows_sum", [rnd(3, 4, 5, 2), rnd(4, 5, 2)], [True, True], lambda y, b: [b + y.sum(0)])

# rows_gather_sum: dst (rows, ...) + for each row r, Σ over list entries j of row r of w[j] · src[list[j]].
# Inputs: dst, src, ptr, list, w (in list order), and the row of each list entry (the test's backward
# scatters with it). Row 4 is named by no entry.
gs_idx = [3, 0, 3, 1, 0, 3, 2]   # the destination row of each src row
gs_list = sorted(range(len(gs_idx)), key=lambda i: (gs_idx[i], i))
gs_ptr = [sum(1 for r in gs_idx if r < q) for q in range(6)]
gs_row = [gs_idx[i] for i in gs_list]
case("rows_gather_sum", [rnd(5, 2, 3), rnd(7, 2, 3), torch.tensor(gs_ptr, dtype=torch.int32),
                         torch.tensor(gs_list, dtype=torch.int32), rnd(7), torch.tensor(gs_row, dtype=torch.int32)],
     [True, True, False, False, True, False],
     lambda d, s, p, l, w, r: [d.index_add(0, r.long(), w[:, None, None] * s[l.long()])])


# cod_loss: the twin's CamoXpertLoss (tools/camoxpert_twin.py) on (N,H,W,1) maps, which are NCHW
# with C = 1 as they lie in memory. The op's gradient is that of the weighted sum
# (train/loss.c's default weights), refinement counted once: those are the douts.
def cod_loss(pred, fg, search, unc, refine0, d0, d1, d2, mask, m0, m1, m2):
    import camoxpert_twin
    c = lambda t: t.permute(0, 3, 1, 2)  # noqa: E731
    o = dict(pred=c(pred), fg_map=c(fg), search_map=c(search), uncertainty=c(unc), refine0=c(refine0),
             deep=[c(d0), c(d1), c(d2)], routes=[])
    _, T = camoxpert_twin.loss_terms(o, c(mask))
    names = ("bce", "iou", "edge", "boundary", "uncertainty", "reverse_attention", "search", "deep", "refinement")
    return [torch.stack([T[k] for k in names])]


N, H, W = 2, 8, 6
yy, xx = torch.meshgrid(torch.arange(H, dtype=D), torch.arange(W, dtype=D), indexing="ij")
cl_mask = ((yy - 3.5) ** 2 + (xx - 2) ** 2 < 7).to(D).expand(N, H, W).clone().unsqueeze(-1)
cl_mask[1] = cl_mask[1].flip(0)
cl_deep = [(2, 3), (4, 3), (4, 6)]
cl_in = [rnd(N, H, W, 1, scale=3), uni(0.05, 0.95, N, H, W, 1), uni(0.05, 0.95, N, H, W, 1), uni(0.05, 2.0, N, H, W, 1),
         rnd(N, H, W, 1, scale=3)] + [rnd(N, h, w, 1, scale=3) for h, w in cl_deep] + [cl_mask] + \
    [F.interpolate(cl_mask.permute(0, 3, 1, 2), size=hw, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
     for hw in cl_deep]
# logits outside the ±15 clamp, where the gradient is zero: refine0's and a deep map's. (pred stays
# inside: the kernels leave the boundary term's gradient ungated by the clamp, the twin gates it;
# the model clamps pred before the loss, so the two never meet there.)
cl_in[4].view(-1)[4] = 20.0
cl_in[5].view(-1)[3] = -21.0
case("cod_loss", cl_in, [True] * 8 + [False] * 4, cod_loss,
     douts=[torch.tensor([2.0, 1.5, 1.0, 1.5, 0.3, 0.8, 0.5, 0.4, 1.0], dtype=D)])


# adamw_update: torch.optim.AdamW (single-tensor path) on a table of two segments: elements [0, 12)
# with weight decay, [12, 30) without (tests/test_ops.c's segments), at step t with the moments
# given (float32 values: the op keeps them in float32) and the gradient scaled by gscale.
def adamw(lr, wd, t, gscale):
    def fn(p, m, v, g, *gs):
        p, m, v, g = (a.detach().clone().flatten() for a in (p, m, v, g))
        p0, p1 = p[:12].clone(), p[12:].clone()
        opt = torch.optim.AdamW([{"params": [p0], "weight_decay": wd}, {"params": [p1], "weight_decay": 0.0}],
                                lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
        for q, sl in ((p0, slice(0, 12)), (p1, slice(12, 30))):
            q.grad = g[sl] * (gscale if gs else 1.0)
            opt.state[q] = {"step": torch.tensor(float(t - 1)), "exp_avg": m[sl].clone(), "exp_avg_sq": v[sl].clone()}
        opt.step()
        m2 = torch.cat([opt.state[q]["exp_avg"] for q in (p0, p1)])
        v2 = torch.cat([opt.state[q]["exp_avg_sq"] for q in (p0, p1)])
        return [torch.cat([p0, p1]).view(5, 6), m2.view(5, 6), v2.view(5, 6)]
    return fn


f32v = lambda t: t.float().double()  # noqa: E731
case("adamw_update", [rnd(5, 6), f32v(rnd(5, 6, scale=0.1)), f32v(uni(0, 0.02, 5, 6)), rnd(5, 6),
                      torch.tensor([0.8], dtype=D)], [False] * 5, adamw(1e-2, 0.05, 3, 0.8), ngout=0)
case("adamw_update_first", [rnd(5, 6), torch.zeros(5, 6, dtype=D), torch.zeros(5, 6, dtype=D), rnd(5, 6)],
     [False] * 4, adamw(1e-2, 0.05, 1, None), ngout=0)


# grad_norm_clip: the norm over two segments, [0, 10) and [14, 28) (the test's), of x (4, 7) as
# torch.nn.utils.clip_grad_norm_ computes it, and its clipping factor min(max_norm / (norm + 1e-6), 1)
def grad_norm(max_norm):
    def fn(x):
        ps = [torch.zeros(n, dtype=D) for n in (10, 14)]
        for q, g in zip(ps, (x.flatten()[0:10], x.flatten()[14:28])):
            q.grad = g.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        return [torch.stack([norm ** 2, norm, torch.clamp(max_norm / (norm + 1e-6), max=1.0)])]
    return fn


case("grad_norm_clip", [rnd(4, 7)], [False], grad_norm(1.0), ngout=0)
case("grad_norm_clip_under", [rnd(4, 7)], [False], grad_norm(100.0), ngout=0)


# ema_blend: shadow (3, 8) and x over three segments (the test's): [0, 10) decay 0.9, [10, 16) copied,
# [18, 24) decay 0.5; elements 16 and 17 untouched. timm's ModelEmaV2 update, decay·e + (1 − decay)·m.
def ema(e, x):
    e, x = e.detach().clone().flatten(), x.detach().flatten()
    e[0:10] = 0.9 * e[0:10] + (1.0 - 0.9) * x[0:10]
    e[10:16] = x[10:16]
    e[18:24] = 0.5 * e[18:24] + (1.0 - 0.5) * x[18:24]
    return [e.view(3, 8)]


case("ema_blend", [rnd(3, 8), rnd(3, 8)], [False, False], ema, ngout=0)


# residual_scale: y = x + γ·z (the EdgeNeXt blocks' layer scale and residual in one op); 16
# channels (the GPU's 16-byte vector path in bf16) and 5 (its scalar path).
case("residual_scale", [rnd(2, 7, 5, 16), rnd(2, 7, 5, 16), rnd(16)], [True, True, True], lambda x, z, g: [x + g * z])
case("residual_scale_c5", [rnd(2, 3, 4, 5), rnd(2, 3, 4, 5), rnd(5)], [True, True, True], lambda x, z, g: [x + g * z])


# gelu_bias_backward: the backward of GELU(x + b) (a linear layer's bias, then exact GELU): dx and
# the bias gradient in one pass. 16 channels (the GPU's vector path) and 5 (its scalar path).
case("gelu_bias", [rnd(2, 7, 5, 16), rnd(16)], [True, True], lambda x, b: [torch.nn.functional.gelu(x + b)])
case("gelu_bias_c5", [rnd(2, 3, 4, 5), rnd(5)], [True, True], lambda x, b: [torch.nn.functional.gelu(x + b)])



# ---- mixture-of-experts routing: the decisions and plan, and the routing's backward ------------
# route_topk_plan: probs (U,E) -> idx (top-k of probs + sel, ties to the lower index), w (renormalised),
# plan I32 [rows | pos | ulist | uptr] and plan_w [wts | uw] (the pairs sorted by expert, stable).
ROUTE_SEL = [0.05, -0.1, 0.0, 0.2, -0.05]   # tests/test_ops_rows.c route_sel


def route_plan(probs, k, sel=None):
    U, E = probs.shape
    idx, w = [], []
    for u in range(U):
        sc = [float(probs[u, e]) + (sel[e] if sel else 0.0) for e in range(E)]
        ch = sorted(range(E), key=lambda e: (-sc[e], e))[:k]
        s = sum(float(probs[u, e]) for e in ch)
        idx += ch
        w += [float(probs[u, e]) / (s + 1e-8) for e in ch]
    P = U * k
    order = sorted(range(P), key=lambda p: (idx[p], p))
    pos = [0] * P
    for i, p in enumerate(order):
        pos[p] = i
    rows = [p // k for p in order]
    wts = [w[p] for p in order]
    ulist, uw = [], []
    for u in range(U):
        js = sorted(range(k), key=lambda j: pos[u * k + j])
        ulist += [pos[u * k + j] for j in js]
        uw += [w[u * k + j] for j in js]
    uptr = [u * k for u in range(U + 1)]
    I = torch.int32
    return [torch.tensor(idx, dtype=I).reshape(U, k), torch.tensor(w, dtype=D).reshape(U, k),
            torch.tensor(rows + pos + ulist + uptr, dtype=I), torch.tensor(wts + uw, dtype=D)]


rp = torch.softmax(rnd(9, 5) * 2, dim=1)
rp[4, :] = 0.2   # a row of ties: the lower expert indices win
case("route_topk_plan", [rp], [False], lambda p: route_plan(p, 2), ngout=0)
case("route_topk_plan_k3_sel", [torch.softmax(rnd(6, 5), dim=1)], [False], lambda p: route_plan(p, 3, ROUTE_SEL), ngout=0)


# route_topk_backward: dlogits of Σ dw·w + cb·balance through the softmax, idx fixed (its top-2).
def route_backward(lb, cb):
    logits = rnd(7, 5) * 1.5
    probs = torch.softmax(logits, dim=1)
    idx = torch.topk(probs, 2, dim=1)[1].to(torch.int32)
    dw = rnd(7, 2)

    def fn(lg, p, ix, g):
        lg = lg.detach().clone().requires_grad_(True)
        q = torch.softmax(lg, dim=1)
        U, E = q.shape
        ch = q.gather(1, ix.long())
        wv = ch / (ch.sum(1, keepdim=True) + 1e-8)
        loss = (wv * g).sum()
        P = q.mean(0)
        if lb == "mse":
            loss = loss + cb * ((P - 1.0 / E) ** 2).sum()
        elif lb == "switch":
            f = torch.bincount(ix.long().reshape(-1), minlength=E).to(D) / (U * ix.shape[1])
            loss = loss + cb * E * (f * P).sum()
        elif lb == "zloss":
            loss = loss + cb * (torch.logsumexp(lg, dim=1) ** 2).mean()
        return [torch.autograd.grad(loss, lg)[0]]
    return [logits, probs, idx, dw], fn


for lb, cb in (("mse", 0.7), ("switch", 0.3), ("zloss", 0.2), ("none", 0.5)):
    ins, fn = route_backward(lb, cb)
    case(f"route_topk_backward_{lb}", ins, [False] * 4, fn, ngout=0)


# The MoE row ops with rows of 16 and 8 elements: the GPU's 16-byte vector paths (8 bf16 or 4 float32).
case("rows_gather_c16", [rnd(5, 2, 8), gidx], [True, False], lambda s, i: [s.index_select(0, i.long())])
case("rows_scatter_add_c8", [rnd(5, 8), rnd(4, 8), sidx, rnd(4)], [True, True, False, True],
     lambda d, s, i, w: [d.index_add(0, i.long(), w[:, None] * s)])
case("rows_gather_sum_c8", [rnd(5, 1, 8), rnd(7, 1, 8), torch.tensor(gs_ptr, dtype=torch.int32),
                            torch.tensor(gs_list, dtype=torch.int32), rnd(7), torch.tensor(gs_row, dtype=torch.int32)],
     [True, True, False, False, True, False],
     lambda d, s, p, l, w, r: [d.index_add(0, r.long(), w[:, None, None] * s[l.long()])])

def save(path):
    arrays = {k: t.detach().numpy() for entry in CASES.values() for k, t in entry.items()}
    n = safetensors_io.save(path, arrays, {"generator": "tools/make_op_goldens.py", "torch": torch.__version__})
    print(f"{path}: {len(CASES)} cases, {n} bytes")


if __name__ == "__main__":
    save(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ops_golden.safetensors")
