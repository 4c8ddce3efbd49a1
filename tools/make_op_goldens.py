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


def case(name, inputs, diff, fn, ngout=None):
    """fn(*inputs) -> list of outputs; the first ngout get a dout and a gradient."""
    ins = [t.clone().requires_grad_(d) for t, d in zip(inputs, diff)]
    outs = fn(*ins)
    ngout = len(outs) if ngout is None else ngouts_check(ngout, outs)
    douts = [rnd(*o.shape) for o in outs[:ngout]]
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


def save(path):
    arrays = {k: t.detach().numpy() for entry in CASES.values() for k, t in entry.items()}
    n = safetensors_io.save(path, arrays, {"generator": "tools/make_op_goldens.py", "torch": torch.__version__})
    print(f"{path}: {len(CASES)} cases, {n} bytes")


if __name__ == "__main__":
    save(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ops_golden.safetensors")
