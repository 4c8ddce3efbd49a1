#!/usr/bin/python3
"""bf16_emulate.py — a GPU's bf16 arithmetic emulated on the CPU, for finding where a
bf16 forward loses precision (issue 26). The twin (tools/camoxpert_twin.py) runs in
float64, and a torch function mode rounds values to bfloat16 (round to nearest even)
exactly where a policy says the GPU stores bf16:

  camoxpert  camoxpert's CUDA bf16 path (src/ops/cuda, src/nn): every activation an op
             writes is bf16; convolutions and linear layers take bf16 inputs and bf16
             copies of the float32 weights, accumulate in float32 and round twice (the
             product, then the separate bias add); the router (pooling, linear,
             softmax, weights), normalisation statistics and, since issue 26, the
             uncertainty path of the head (CAMOXPERT_F32 below) are float32.
  autocast   PyTorch's CUDA autocast to bf16: convolutions and GEMMs in bf16 (weights
             and bias cast), the autocast float32 list (softplus, layer_norm, softmax,
             exp/log/pow, sums, losses, upsampling) in float32, and every other op in
             the promoted dtype of its tensor inputs (float32 parameters and float32
             results promote: 1 + u with u float32 stays float32).

float32 accumulation is emulated by float64 (its error, ~1e-7, is far below bf16's
~4e-3). The routing is forced to the float64 run's choices (flips counted), so that
both runs take the same discrete decisions. The head (reference/camoxpert.md §5) is
written out here with a tap per step; a variant may name the steps of the head kept
in float32 under the camoxpert policy (keep=, replacing CAMOXPERT_F32; an empty keep=
is camoxpert before issue 26), or give a step's convolution a float32 result with its
bias added in float32 (f32out=), or run named steps by the autocast policy
(autocast=; the steps backbone and experts too): a candidate fix, tried before it is
written in C.

  bf16_emulate.py FIXTURE... [--variant 'LABEL=POLICY [keep=STEP,..] [f32out=STEP,..] [autocast=STEP,..]']...
                  [--trace] [--train]

prints the relative L2 error (verify's bf16 measure) of every evaluation output (or,
--train, of one training-mode forward) against the fixture per variant (default: the
two policies), and with --trace the error of every tapped step against the float64
run. Steps: initial_pred, uncertainty_head, softplus, clamp_ip, clamp_u, maxnorm,
onepu, cat, block, block_out, mul, pred_head, clamp_pred, deep_head; backbone and experts
(autocast= only). Issue 26's finding, for example:

  bf16_emulate.py F --variant 'before=camoxpert keep=' --variant camoxpert --variant autocast --trace

Development tool: /usr/bin/python3 (torch 1.13 CPU) or any newer torch.
"""
import argparse
import contextlib
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import camoxpert_twin as tw  # noqa: E402
import edgenext_twin as ent  # noqa: E402


def bf16(t):
    """Round to the nearest bfloat16 (ties to even), kept in t's dtype."""
    return t.to(torch.bfloat16).to(t.dtype)


def _name(func):
    return getattr(func, "__name__", str(func))


# the steps of the head camoxpert computes in float32 beside bf16 activations (cod_head.c, since issue 26)
CAMOXPERT_F32 = ("softplus", "clamp_u", "maxnorm", "onepu", "mul", "pred_head", "clamp_pred")
# ops that PyTorch's CUDA autocast runs in bf16, and those it runs in float32
LOWP = {"conv2d", "linear", "matmul", "__matmul__", "bmm", "mm", "addmm", "baddbmm"}
AUTOCAST_F32 = {"softplus", "layer_norm", "group_norm", "softmax", "log_softmax", "exp", "log", "log1p", "log2",
                "log10", "pow", "__pow__", "__rpow__", "rsqrt", "reciprocal", "sum", "prod", "cumsum", "cumprod",
                "norm", "normalize", "binary_cross_entropy_with_logits", "mse_loss", "interpolate",
                "upsample_bilinear2d", "__rtruediv__", "__rdiv__"}
# ops whose result is a value of one input, or a property: never rounded, tag passed on
PASS = {"__get__", "size", "dim", "numel", "tolist", "item", "__len__", "__iter__", "__bool__", "__index__",
        "__int__", "__float__", "__eq__", "__ne__", "__gt__", "__lt__", "__ge__", "__le__", "nonzero", "topk",
        "numpy", "__repr__", "__format__", "is_floating_point", "requires_grad_", "backward", "__setitem__",
        "register_hook", "_is_view", "__reduce_ex__", "__array__"}


def _tensors(x):
    if torch.is_tensor(x):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)


def _map(x, f):
    if torch.is_tensor(x):
        return f(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_map(v, f) for v in x)
    return x


class Emu(TorchFunctionMode):
    """Rounds op results to bf16 per policy. Tensors tagged `_lp` hold bf16 values (autocast
    policy: they are bf16 tensors there; float32 otherwise)."""

    def __init__(self, policy, keep=(), f32_out=(), autocast=()):
        super().__init__()
        self.policy, self.keep, self.f32_out, self.step, self.f32 = policy, set(keep), set(f32_out), None, 0
        self.autocast = set(autocast)   # steps that follow the autocast policy under the camoxpert one

    @contextlib.contextmanager
    def at(self, step):
        """Ops inside belong to the head's step `step` (keep= and f32out= name steps)."""
        old, self.step = self.step, step
        yield
        self.step = old

    @contextlib.contextmanager
    def float32(self):
        """Ops inside stay float32 (camoxpert's router, statistics)."""
        self.f32 += 1
        yield
        self.f32 -= 1

    def _lp(self, t):
        t = bf16(t)
        t._lp = True
        return t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if name in PASS:
            return func(*args, **kwargs)
        kept = self.f32 or self.step in self.keep
        if self.policy == "camoxpert" and self.step not in self.autocast:
            if kept:
                return func(*args, **kwargs)
            if name in ("conv2d", "linear"):   # bf16 operands; the product rounded, then the bias added and rounded
                x, w = args[0], args[1]
                b = args[2] if len(args) > 2 else kwargs.pop("bias", None)
                if self.step in self.f32_out:   # bf16 operands, a float32 result with the bias added in float32
                    return func(bf16(x), bf16(w), b, *args[3:], **kwargs)
                y = bf16(func(bf16(x), bf16(w), None, *args[3:], **kwargs))
                return self._lp(y + b.reshape(-1, *([1] * (y.dim() - 2))) if name == "conv2d" else y + b) \
                    if b is not None else self._lp(y)
            out = func(*args, **kwargs)
            return _map(out, lambda t: self._lp(t) if t.is_floating_point() else t)
        # autocast
        if name in LOWP:
            args = _map(args, lambda t: bf16(t) if t.is_floating_point() else t)
            kwargs = {k: _map(v, lambda t: bf16(t) if t.is_floating_point() else t) for k, v in kwargs.items()}
            if name == "conv2d" and len(args) > 2 and args[2] is not None:   # cuDNN, then the bias added in bf16
                y = bf16(func(args[0], args[1], None, *args[3:], **kwargs))
                return self._lp(y + args[2].reshape(-1, 1, 1))
            return _map(func(*args, **kwargs), self._lp)
        out = func(*args, **kwargs)
        if name in AUTOCAST_F32:
            return out
        ins = [t for t in _tensors((args, kwargs)) if t.is_floating_point()]
        if name == "batch_norm":   # the input's dtype (cuDNN: float32 weights beside bf16 data)
            ins = ins[:1]
        big = [t for t in ins if t.dim() > 0] or ins   # 0-dim tensors do not promote dimensioned ones
        lp = bool(big) and all(getattr(t, "_lp", False) for t in big)
        return _map(out, lambda t: self._lp(t) if lp and t.is_floating_point() else t)


class EmuNet(tw.Net):
    """The twin's network with the head written out step by step (taps) and the router in float32."""

    def __init__(self, emu, taps, force_idx, *a):
        super().__init__(*a)
        self.emu, self.taps, self.force_idx, self.flips, self.route_idx = emu, taps, force_idx, 0, []

    def tap(self, name, t):
        self.taps[name] = t
        return t

    def moe(self, s, x):
        p = f"moe_layers.{s}"
        ctx = self.emu.float32 if self.emu else contextlib.nullcontext
        with ctx():
            logits = F.linear(x.mean((2, 3)), self.P[p + ".router.2.weight"], self.P[p + ".router.2.bias"])
            probs = torch.softmax(logits, -1)
            val, idx = torch.topk(probs, self.k, -1)
            if self.force_idx is not None:   # the float64 run's choices: same decisions, flips counted
                ref = self.force_idx[s]
                self.flips += int((ref != idx).any(-1).sum())
                idx = ref
                val = probs.gather(-1, idx)
            w = val / (val.sum(-1, keepdim=True) + 1e-8)
        self.route_idx.append(idx)
        out = torch.zeros_like(x)
        for e in range(self.E):
            rows, j = (idx == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            with ctx():   # the pairs' weights stay float32 (rows_scatter_add's w)
                wr = w[rows, j][:, None, None, None]
            ye = self.expert(f"{p}.experts.{e}", tw.KINDS[e % 4], x[rows])
            out = out.index_add(0, rows, ye * wr)
        return out, None

    def experts_at(self, s, f):
        if self.sparse:
            return self.moe(s, f)[0]
        for lst, kind in zip(("texture_experts", "frequency_experts", "edge_experts", "contrast_modules"), tw.KINDS):
            f = self.expert(f"{lst}.{s}", kind, f)
        return f

    def forward(self, image):
        at = self.emu.at if self.emu else (lambda step: contextlib.nullcontext())
        T = self.tap
        bb = {k: self.P["backbone." + ent.feature_name(k)] for k in ent.param_shapes(self.variant)
              if not k.startswith("head.")}
        with at("backbone"):
            feats = ent.forward(bb, image, self.variant)
        e = []
        for s in range(4):
            with at("experts"):
                y = self.experts_at(s, feats[s])
            e.append(T(f"e{s}", y))
        H, W = image.shape[2:]
        cbr, conv = self.cbr, self.conv
        sm = T("search_map_small", torch.sigmoid(conv("search_module.search_conv.6", cbr(
            "search_module.search_conv", 3, cbr("search_module.search_conv", 0, e[3])))))
        x = T("x4", cbr("search_module.identify_conv", 3, cbr("search_module.identify_conv", 0, e[3])) * sm)
        for i in range(4):
            if i:
                x = torch.cat([x, e[3 - i]], 1)
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = T(f"dec{i}", cbr(f"decoder_blocks.{i}.conv2", 0, cbr(f"decoder_blocks.{i}.conv1", 0, x)))
        p = "reverse_attention.background_pred"
        bg = T("bg", torch.sigmoid(conv(p + ".6", cbr(p, 3, cbr(p, 0, x)))))
        fg = T("fg", 1 - bg)
        x = T("x0r", cbr("reverse_attention.refine", 3, cbr("reverse_attention.refine", 0, torch.cat([x, bg], 1))) * fg)
        up = lambda t: F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)  # noqa: E731
        x, fg_map, search_map = T("x0u", up(x)), T("fg_map", up(fg)), T("search_map", up(sm))
        sh = T("shared", cbr("boundary_uncertainty.shared", 0, x))
        with at("initial_pred"):
            ip = T("ip_raw", conv("boundary_uncertainty.mean_head.3", cbr("boundary_uncertainty.mean_head", 0, sh)))
        with at("uncertainty_head"):
            ur = T("u_conv", conv("boundary_uncertainty.uncertainty_head.3",
                                  cbr("boundary_uncertainty.uncertainty_head", 0, sh)))
        with at("softplus"):
            un = T("u_softplus", F.softplus(ur))
        with at("clamp_ip"):
            ip = T("initial_pred", torch.clamp(ip, -15, 15))
        with at("clamp_u"):
            un = T("uncertainty", torch.clamp(un, 1e-8, 10))
        with at("maxnorm"):
            u = T("u", un / (un.max() + 1e-8))
        with at("onepu"):
            onepu = T("1+u", 1 + u)
        pred, refs = ip, []
        for i in range(2):
            p = f"iterative_refinement.refinement_blocks.{i}"
            with at("cat"):
                c = T(f"cat{i}", torch.cat([x, pred, u], 1))
            with at("block"):
                b = T(f"block{i}.a", cbr(p, 0, c))
                y = self.conv(f"{p}.3", b)
            with at("block_out"):   # the second BatchNorm and ReLU
                b = T(f"block{i}.b", F.relu(self.bn(f"{p}.4", y)))
            with at("mul"):
                h = T(f"h{i}", b * onepu)
            with at("pred_head"):
                pred = T(f"refine{i}", self.conv(f"iterative_refinement.pred_heads.{i}", h))
            refs.append(pred)
        with at("clamp_pred"):
            final = T("pred", torch.clamp(pred, -15, 15))
        with at("deep_head"):
            deep = [T(f"deep{j}", torch.clamp(self.conv(f"deep_heads.{j}", e[2 - j]), -15, 15)) for j in range(3)]
        return dict(pred=final, fg_map=fg_map, search_map=search_map, uncertainty=un, refine0=refs[0], deep=deep)


OUTPUTS = ("pred", "fg_map", "search_map", "uncertainty", "refine0", "deep0", "deep1", "deep2")


def load(path):
    T, meta = tw.st_load(path)
    variant, sparse, E, k = tw.fixture_config(meta)
    K = tw.model_keys(variant, sparse, E)
    if meta.get("param_gen") == "splitmix22":
        Pn = {n: ent.gen_param(n, s, int(meta["param_seed"])) for n, s in K.params.items()}
    else:
        Pn = {n: T["param/" + n] for n in K.params}
    Bn = {n: T["buffer/" + n] for n in K.buffers}
    return T, (variant, sparse, E, k), Pn, Bn


def run(cfg, Pn, Bn, image, emu=None, force_idx=None, training=False):
    """One forward in float64 (emulated bf16 under emu); returns (outputs, taps, net)."""
    P = {n: torch.tensor(v, dtype=torch.float64) for n, v in Pn.items()}
    B = {n: torch.tensor(v, dtype=torch.int64 if n.endswith("num_batches_tracked") else torch.float64)
         for n, v in Bn.items()}
    taps = {}
    net = EmuNet(emu, taps, force_idx, P, B, *cfg, training)
    with torch.no_grad(), (emu if emu else contextlib.nullcontext()):
        o = net.forward(torch.tensor(image, dtype=torch.float64))
    outs = {n: o[n] for n in OUTPUTS[:5]}
    outs.update({f"deep{j}": o["deep"][j] for j in range(3)})
    return outs, taps, net


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def parse_variant(text):
    """'LABEL=POLICY [keep=STEP,...] [f32out=STEP,...] [autocast=STEP,...]' -> (label, policy, keep, f32_out,
    autocast)."""
    words = text.split()
    label, policy = words[0].split("=") if "=" in words[0] else (words[0], words[0])
    opts = dict(w.split("=", 1) for w in words[1:])
    assert policy in ("camoxpert", "autocast") and set(opts) <= {"keep", "f32out", "autocast"}, f"bad variant {text!r}"
    keep = opts["keep"].split(",") if "keep" in opts else list(CAMOXPERT_F32) if policy == "camoxpert" else []
    return label, policy, keep, *(opts[o].split(",") if o in opts else [] for o in ("f32out", "autocast"))


def emulate(path, variants, training=False):
    """For each variant (label, policy, keep, f32_out, autocast): the relative L2 errors of the outputs against the
    fixture, of the head's steps against the float64 run, and the routing flips (forced to float64's)."""
    T, cfg, Pn, Bn = load(path)
    ref, ref_taps, rnet = run(cfg, Pn, Bn, T["input/image"], training=training)
    force = rnet.route_idx if cfg[1] else None
    mode = "train" if training else "eval"
    res = {}
    for label, policy, keep, f32_out, ac in variants:
        ours, taps, net = run(cfg, Pn, Bn, T["input/image"], Emu(policy, keep, f32_out, ac), force, training)
        errs = {}
        for n, v in ours.items():
            key = f"output/{mode}/{n}"
            errs[n] = rel_l2(v.numpy(), T[key] if key in T else ref[n].numpy())
        steps = {n: rel_l2(v.numpy(), ref_taps[n].numpy()) for n, v in taps.items()}
        res[label] = (errs, steps, net.flips)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixtures", nargs="+")
    ap.add_argument("--variant", action="append",
                    help="'LABEL=POLICY [keep=STEP,...] [f32out=STEP,...] [autocast=STEP,...]' (repeatable; "
                    "default: the two policies)")
    ap.add_argument("--trace", action="store_true", help="the error of every step of the head")
    ap.add_argument("--train", action="store_true", help="training mode (batch statistics) instead of evaluation")
    a = ap.parse_args()
    variants = [parse_variant(v) for v in (a.variant or ["camoxpert", "autocast"])]
    labels = [v[0] for v in variants]
    for path in a.fixtures:
        res = emulate(path, variants, a.train)
        print(f"{os.path.basename(path)} ({'train' if a.train else 'eval'}; relative L2 against the fixture)")
        print(f"  {'output':<14}" + "".join(f"{n:>12}" for n in labels))
        for n in res[labels[0]][0]:
            print(f"  {n:<14}" + "".join(f"{res[v][0][n]:12.3e}" for v in labels))
        print(f"  {'route flips':<14}" + "".join(f"{res[v][2]:12d}" for v in labels))
        if a.trace:
            print("  head steps (relative L2 against the float64 run):")
            for n in res[labels[0]][1]:
                print(f"    {n:<18}" + "".join(f"{res[v][1][n]:12.3e}" for v in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
