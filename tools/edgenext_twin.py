#!/usr/bin/python3
"""edgenext_twin.py — a PyTorch twin of timm's EdgeNeXt (features_only), written
from ../shared/reference/edgenext.md without timm, for fixtures and benchmarks.
Development tool only: neither camoxpert nor `make test` runs Python.

  prove FIXTURE          run a timm fixture (stored params) in float64 and compare
                         features and every gradient with the fixtures' error rule
  make  --variant V ...  write a fixture (kind=edgenext) for camoxpert verify:
                         parameters generated from a seed (splitmix22, see
                         src/cli/verify.h), a subset of the gradients, grad_absmax
  bench --batch B ...    time forward(+backward) in float32 (torch.set_num_threads)

Tensors are NCHW / OIHW as in PyTorch; keys are timm hub names (stem.0..., stages.0...).
Debian python3-torch 1.13 + numpy; run as /usr/bin/python3.
"""
import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

VARIANTS = {  # depths, dims, heads, small_rw (§1.2)
    "edgenext_xx_small": ((2, 2, 6, 2), (24, 48, 88, 168), 4, False),
    "edgenext_x_small": ((3, 3, 9, 3), (32, 64, 100, 192), 4, False),
    "edgenext_small": ((3, 3, 9, 3), (48, 96, 160, 304), 8, False),
    "edgenext_base": ((3, 3, 9, 3), (80, 160, 288, 584), 8, False),
    "edgenext_small_rw": ((3, 3, 9, 3), (48, 96, 192, 384), 8, True),
}
KERNELS = (3, 5, 7, 9)
D2_SCALES = (2, 2, 3, 4)
EPS = 1e-6

# ---- safetensors: tools/safetensors_io.py --------------------------------------------------
def st_load(path):
    return safetensors_io.load(path)


def st_save(path, tensors, meta):
    """Fixtures store every tensor as float32."""
    safetensors_io.save(path, {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, meta)


# ---- parameter keys and shapes (§3.1), in state_dict order -----------------------------
def param_shapes(variant):
    depths, dims, heads, rw = VARIANTS[variant]
    cb = not rw
    P = {}
    k0 = 9 if rw else 4
    P["stem.0.weight"] = (dims[0], 3, k0, k0)
    if cb:
        P["stem.0.bias"] = (dims[0],)
    P["stem.1.weight"] = P["stem.1.bias"] = (dims[0],)
    for i in range(4):
        C = dims[i]
        Cp = dims[i - 1] if i else C
        if i > 0 and not rw:
            p = f"stages.{i}.downsample."
            P[p + "0.weight"] = P[p + "0.bias"] = (Cp,)
            P[p + "1.weight"] = (C, Cp, 2, 2)
            P[p + "1.bias"] = (C,)
        for j in range(depths[i]):
            p = f"stages.{i}.blocks.{j}."
            if i > 0 and j == depths[i] - 1:
                S = D2_SCALES[i]
                ws = math.ceil(C / S)
                P[p + "gamma_xca"] = P[p + "gamma"] = (C,)
                for c in range(S - 1):
                    P[p + f"convs.{c}.weight"] = (ws, 1, 3, 3)
                    if cb:
                        P[p + f"convs.{c}.bias"] = (ws,)
                if i == 1:
                    P[p + "pos_embd.token_projection.weight"] = (C, 64, 1, 1)
                    P[p + "pos_embd.token_projection.bias"] = (C,)
                P[p + "norm_xca.weight"] = P[p + "norm_xca.bias"] = (C,)
                P[p + "xca.temperature"] = (heads, 1, 1)
                P[p + "xca.qkv.weight"] = (3 * C, C)
                P[p + "xca.qkv.bias"] = (3 * C,)
                P[p + "xca.proj.weight"] = (C, C)
                P[p + "xca.proj.bias"] = (C,)
            else:
                k = KERNELS[i]
                P[p + "gamma"] = (C,)
                P[p + "conv_dw.weight"] = (C, 1, k, k)
                if cb:
                    P[p + "conv_dw.bias"] = (C,)
            P[p + "norm.weight"] = P[p + "norm.bias"] = (C,)
            P[p + "mlp.fc1.weight"] = (4 * C, C)
            P[p + "mlp.fc1.bias"] = (4 * C,)
            P[p + "mlp.fc2.weight"] = (C, 4 * C)
            P[p + "mlp.fc2.bias"] = (C,)
    return P


def feature_name(key):
    return re.sub(r"^(stem|stages)\.(\d)", r"\1_\2", key)


# ---- deterministic parameters: splitmix22 (the same as verify_gen_params in C) -----------
M64 = (1 << 64) - 1


def _splitmix64(z):  # z: np.uint64 array
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _fnv1a64(s):
    h = 0xCBF29CE484222325
    for ch in s.encode():
        h = ((h ^ ch) * 0x100000001B3) & M64
    return h


def gen_param(key, shape, seed):
    fk = feature_name(key)
    base = _splitmix64(np.array([(seed ^ _fnv1a64(fk)) & M64], dtype=np.uint64))[0]
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        idx = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + base
    h = _splitmix64(idx)
    v = ((h >> np.uint64(42)).astype(np.float64) - 2097152.0) / 2097152.0
    unit = fk.endswith("gamma") or fk.endswith("gamma_xca") or fk.endswith("temperature") or \
        (len(shape) == 1 and fk.endswith(".weight"))
    if unit:
        out = 1.0 + v / 2
    elif fk.endswith(".bias"):
        out = v / 8
    else:
        fan_in = n // shape[0]
        out = v * 2.0 ** -((fan_in.bit_length() - 1) // 2)
    assert np.all(out.astype(np.float32) == out), "generated value not float32-exact"
    return out.reshape(shape)


# ---- the network (§2) -------------------------------------------------------------------
def ln_cf(x, w, b):  # LayerNorm2d: over C of NCHW
    return F.layer_norm(x.permute(0, 2, 3, 1), (int(x.shape[1]),), w, b, EPS).permute(0, 3, 1, 2)


def fourier_pe(h, w, dtype):
    """§2.5, computed in float32 as timm does, then cast to the run dtype."""
    ones = torch.ones(1, h, w, dtype=torch.float32)
    ye = ones.cumsum(1) / (h + 1e-6) * (2 * math.pi)
    xe = ones.cumsum(2) / (w + 1e-6) * (2 * math.pi)
    dim_t = torch.arange(32, dtype=torch.int64).to(torch.float32)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / 32)
    px = xe[:, :, :, None] / dim_t
    py = ye[:, :, :, None] / dim_t
    px = torch.stack((px[:, :, :, 0::2].sin(), px[:, :, :, 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[:, :, :, 0::2].sin(), py[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2).to(dtype)  # (1, 64, h, w)


def mlp_tail(P, p, z):  # z (..., C) channels-last -> gamma * fc2(gelu(fc1(LN(z))))
    C = int(z.shape[-1])
    z = F.layer_norm(z, (C,), P[p + "norm.weight"], P[p + "norm.bias"], EPS)
    z = F.gelu(F.linear(z, P[p + "mlp.fc1.weight"], P[p + "mlp.fc1.bias"]))
    z = F.linear(z, P[p + "mlp.fc2.weight"], P[p + "mlp.fc2.bias"])
    return P[p + "gamma"] * z


def conv_block(P, p, x, k, stride, groups, shortcut_y):
    pad = ((stride - 1) + (k - 1)) // 2
    y = F.conv2d(x, P[p + "conv_dw.weight"], P.get(p + "conv_dw.bias"), stride, pad, 1, groups)
    sc = y if shortcut_y else x
    return sc + mlp_tail(P, p, y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def sdta_block(P, p, x, S, heads, use_pe):
    B, C, H, W = (int(s) for s in x.shape)  # ints, also under torch.onnx.export's tracer
    N = H * W
    spx = x.chunk(S, dim=1)
    spo = []
    sp = None
    for i in range(S - 1):
        sp = spx[i] if i == 0 else sp + spx[i]
        sp = F.conv2d(sp, P[p + f"convs.{i}.weight"], P.get(p + f"convs.{i}.bias"), 1, 1, 1, int(sp.shape[1]))
        spo.append(sp)
    spo.append(spx[-1])
    t = torch.cat(spo, 1).reshape(B, C, N).permute(0, 2, 1)
    if use_pe:
        pe = F.conv2d(fourier_pe(H, W, x.dtype), P[p + "pos_embd.token_projection.weight"],
                      P[p + "pos_embd.token_projection.bias"])
        t = t + pe.reshape(1, C, N).permute(0, 2, 1)
    a = F.layer_norm(t, (C,), P[p + "norm_xca.weight"], P[p + "norm_xca.bias"], EPS)
    qkv = F.linear(a, P[p + "xca.qkv.weight"], P[p + "xca.qkv.bias"])
    qkv = qkv.reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 4, 1)  # (3, B, heads, dh, N)
    q, k, v = qkv.unbind(0)
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = ((q @ k.transpose(-2, -1)) * P[p + "xca.temperature"]).softmax(dim=-1)
    o = (attn @ v).permute(0, 3, 1, 2).reshape(B, N, C)
    o = F.linear(o, P[p + "xca.proj.weight"], P[p + "xca.proj.bias"])
    t = t + P[p + "gamma_xca"] * o
    u = mlp_tail(P, p, t.reshape(B, H, W, C))
    return x + u.permute(0, 3, 1, 2)


def forward(P, x, variant):
    depths, dims, heads, rw = VARIANTS[variant]
    if rw:
        x = F.conv2d(x, P["stem.0.weight"], None, 4, 4)
    else:
        x = F.conv2d(x, P["stem.0.weight"], P["stem.0.bias"], 4, 0)
    x = ln_cf(x, P["stem.1.weight"], P["stem.1.bias"])
    feats = []
    for i in range(4):
        if i > 0 and not rw:
            p = f"stages.{i}.downsample."
            x = ln_cf(x, P[p + "0.weight"], P[p + "0.bias"])
            x = F.conv2d(x, P[p + "1.weight"], P[p + "1.bias"], 2)
        for j in range(depths[i]):
            p = f"stages.{i}.blocks.{j}."
            if i > 0 and j == depths[i] - 1:
                x = sdta_block(P, p, x, D2_SCALES[i], heads, i == 1)
            elif rw and i > 0 and j == 0:
                x = conv_block(P, p, x, KERNELS[i], 2, dims[i - 1], True)
            else:
                x = conv_block(P, p, x, KERNELS[i], 1, dims[i], False)
        feats.append(x)
    return feats


def run(P_np, image, probes, variant, dtype=torch.float64):
    """Forward in dtype, loss Σ feat·probe, backward; returns (feats, grads incl. 'input/image')."""
    P = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in P_np.items()}
    x = torch.tensor(image, dtype=dtype, requires_grad=True)
    feats = forward(P, x, variant)
    if probes is None:
        return [f.detach().numpy() for f in feats], None
    loss = sum((f * torch.tensor(pr, dtype=dtype)).sum() for f, pr in zip(feats, probes))
    loss.backward()
    grads = {"param/" + k: v.grad.numpy() for k, v in P.items()}
    grads["input/image"] = x.grad.numpy()
    return [f.detach().numpy() for f in feats], grads


def rel_err(ours, ref, floor=0.0):
    d = np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64)))
    den = max(np.max(np.abs(ref)), floor)
    return d / den if den > 0 else d


# ---- commands -----------------------------------------------------------------------------
def cmd_prove(a):
    T, meta = st_load(a.fixture)
    variant = meta["variant"]
    P = {k[6:]: v for k, v in T.items() if k.startswith("param/") and not k.startswith("param/head.")}
    expect = param_shapes(variant)
    assert list(P) == list(expect), "key list differs from the spec's"
    for k, s in expect.items():
        assert tuple(P[k].shape) == s, (k, P[k].shape, s)
    probes = [T[f"probe/feat{i}"] for i in range(4)]
    feats, grads = run(P, T["input/image"], probes, variant)
    tf, tg = float(meta["rtol_fwd_f64"]), float(meta["rtol_grad_f64"])
    gmax = max(np.max(np.abs(v)) for k, v in T.items() if k.startswith("grad/"))
    floor = float(meta["grad_floor"]) * gmax
    worst, bad = 0.0, 0
    for i in range(4):
        e = rel_err(feats[i], T[f"output/feat{i}"])
        worst = max(worst, e / tf)
        bad += e > tf
        print(f"  output/feat{i:<44} err {e:.3e}  tol {tf:.0e}")
    for k, ref in T.items():
        if not k.startswith("grad/"):
            continue
        e = rel_err(grads[k[5:]], ref, floor)
        worst = max(worst, e / tg)
        bad += e > tg
        if e > tg or a.verbose:
            print(f"  {k:<52} err {e:.3e}  tol {tg:.0e}")
    n = 4 + sum(k.startswith("grad/") for k in T)
    print(("FAIL" if bad else "PASS") + f": twin vs {a.fixture}: {n - bad}/{n} tensors within tolerance, "
          f"worst err/tol {worst:.3f}")
    return 1 if bad else 0


def cmd_make(a):
    variant = a.variant
    H, W = (int(s) for s in a.size.lower().split("x"))
    shapes = param_shapes(variant)
    P = {k: gen_param(k, s, a.seed) for k, s in shapes.items()}
    rs = np.random.RandomState(a.seed)
    image = rs.randn(a.batch, 3, H, W).astype(np.float32)
    feats, _ = run(P, image, None, variant)
    probes = [rs.randn(*f.shape).astype(np.float32) for f in feats]
    feats, grads = run(P, image, probes, variant)
    gmax = max(np.max(np.abs(v)) for v in grads.values())
    out = {"input/image": image}
    for i in range(4):
        out[f"output/feat{i}"] = feats[i]
        out[f"probe/feat{i}"] = probes[i]
    prefixes = tuple(a.grad_prefix or ())
    kept = 0
    for k, g in grads.items():
        if k == "input/image":
            out["grad/input/image"] = g
        elif g.size <= a.grad_max_numel or k[6:].startswith(prefixes):
            out["grad/" + k] = g
            kept += 1
    meta = {
        "kind": "edgenext", "variant": variant,
        "note": "loss = sum_i sum(feat_i * probe_i); made by tools/edgenext_twin.py",
        "layout": "NCHW activations, OIHW conv weights (PyTorch)", "computed_in": "float64",
        "rtol_fwd_f32": "0.0001", "rtol_fwd_f64": "1e-06", "rtol_grad_f64": "1e-06", "grad_floor": "0.0001",
        "param_gen": "splitmix22", "param_seed": str(a.seed), "grad_absmax": repr(float(gmax)),
        "grads_stored": f"{kept} of {len(grads) - 1} parameter gradients",
    }
    st_save(a.out, out, meta)
    sizes = " ".join(f"{f.shape[2]}x{f.shape[3]}" for f in feats)
    nbytes = sum(v.size * 4 for v in out.values())
    print(f"wrote {a.out}: {variant} {a.batch}x3x{H}x{W}, features {sizes}, {kept}/{len(grads) - 1} param grads, "
          f"{nbytes / 1e6:.2f} MB")
    if a.check:  # the twin re-reads what it wrote and checks its own generator
        T, m2 = st_load(a.out)
        assert m2["param_seed"] == str(a.seed)
    return 0


def cmd_bench(a):
    torch.set_num_threads(a.threads)
    H, W = (int(s) for s in a.size.lower().split("x"))
    shapes = param_shapes(a.variant)
    P = {k: torch.tensor(gen_param(k, s, 1), dtype=torch.float32, requires_grad=bool(a.train)) for k, s in shapes.items()}
    x = torch.randn(a.batch, 3, H, W)
    probes = None

    def step():
        nonlocal probes
        if a.train:
            for v in P.values():
                v.grad = None
            feats = forward(P, x, a.variant)
            if probes is None:
                probes = [torch.randn_like(f) for f in feats]
            sum((f * p).sum() for f, p in zip(feats, probes)).backward()
        else:
            with torch.no_grad():
                forward(P, x, a.variant)

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "variant": a.variant, "batch": a.batch, "size": a.size, "train": bool(a.train),
                      "median_s": med, "min_s": min(times), "iters": a.iters}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prove")
    p.add_argument("fixture")
    p.add_argument("--verbose", action="store_true")
    p = sub.add_parser("make")
    p.add_argument("--variant", required=True, choices=list(VARIANTS))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", default="97x75", help="HxW")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--grad-max-numel", type=int, default=1 << 62, help="store grads of params up to this size")
    p.add_argument("--grad-prefix", action="append", help="also store grads of params under this hub-key prefix")
    p.add_argument("--out", required=True)
    p.add_argument("--check", action="store_true")
    p = sub.add_parser("bench")
    p.add_argument("--variant", default="edgenext_base", choices=list(VARIANTS))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", default="352x352")
    p.add_argument("--train", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    return {"prove": cmd_prove, "make": cmd_make, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
