#!/usr/bin/python3
"""twin_infer.py — the inference anchor of the GPU-step issue: the PyTorch twin of the
reference CamoXpert (tools/camoxpert_twin.py) in evaluation mode, timed eager and under
torch.compile, on the same card as `camoxpert bench`. Development tool only.

  python3 tools/twin_infer.py --backbone edgenext_base --size 352 --batches 1,64 \
      [--mode dense|sparse] [--amp bf16|fp16|none] [--no-channels-last] [--compile-mode reduce-overhead]

For each batch size prints one line per variant:
  twin-infer dense edgenext_base 352x352 batch 1 bf16 channels_last eager: 34.1 ms/batch (29.3 img/s, 34.10 ms/img)
  twin-infer ... compiled(reduce-overhead): 3.51 ms/batch ...
The forward is the reference's evaluation-mode forward (BatchNorm running statistics,
no gradients); the output is the final prediction only, as `predict` needs. The
compiled variant is warmed up (compilation and CUDA-graph capture excluded) before
timing; its compile time is printed separately.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import camoxpert_twin as tw  # noqa: E402
import edgenext_twin as ent  # noqa: E402


def build(a, sparse):
    K = tw.model_keys(a.backbone, sparse, a.num_experts)
    P = {n: torch.tensor(ent.gen_param(n, s, 1), dtype=torch.float32) for n, s in K.params.items()}
    B = {n: (torch.tensor(0, dtype=torch.int64) if n.endswith("tracked")
             else torch.zeros(s, dtype=torch.float32) + n.endswith("var")) for n, s in K.buffers.items()}
    if a.channels_last:
        P = {n: (t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t) for n, t in P.items()}
    net = tw.Net(P, B, a.backbone, sparse, a.num_experts, a.top_k, False)

    def fwd(x):
        with torch.autocast(device_type="cuda", dtype=tw.amp_dtype(a.amp if a.amp != "none" else "bf16"),
                            enabled=a.amp != "none"):
            o = net.forward(x)
        return o["pred"] if isinstance(o, dict) else o[0]
    return fwd


def timed(fn, x, warmup, iters):
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        torch.cuda.synchronize()
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(x)
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="edgenext_base")
    ap.add_argument("--mode", default="dense", choices=("dense", "sparse"))
    ap.add_argument("--num-experts", type=int, default=6)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--amp", default="bf16", choices=("none", "bf16", "fp16"))
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--compile-mode", default="reduce-overhead")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch.set_default_device("cuda")
    torch.backends.cudnn.benchmark = True
    fwd = build(a, a.mode == "sparse")
    variants = [("eager", fwd)]
    if not a.no_compile:
        variants.append((f"compiled({a.compile_mode})", torch.compile(fwd, mode=a.compile_mode)))
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    tag = f"twin-infer {a.mode} {a.backbone} {a.size}x{a.size}"
    for bs in (int(b) for b in a.batches.split(",")):
        x = torch.tensor(np.random.RandomState(0).randn(bs, 3, a.size, a.size).astype(np.float32)).to(memory_format=mf)
        for name, fn in variants:
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(x)
                torch.cuda.synchronize()
            first = time.perf_counter() - t0
            t = timed(fn, x, 3, a.iters)
            print(f"{tag} batch {bs} {a.amp}{' channels_last' if a.channels_last else ''} {name}: "
                  f"{t * 1e3:.2f} ms/batch ({bs / t:.1f} img/s, {t * 1e3 / bs:.3f} ms/img; first call {first:.1f} s)",
                  flush=True)
    print(f"peak gpu memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB on {torch.cuda.get_device_name()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
