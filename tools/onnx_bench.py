#!/usr/bin/env python3
"""onnx_bench.py — issue 30's CPU anchors: camoxpert's exported ONNX file and the
PyTorch twin (tools/camoxpert_twin.py) exported with torch.onnx.export, both run by
ONNX Runtime on the CPU, beside camoxpert's own CPU path, at the same thread count:
latency at batch 1 and throughput at batch 16. Development tool (needs torch, onnx
and onnxruntime for Python); neither camoxpert nor `make test` runs it.

The dense model (CamoXpertCOD) with deterministic random weights (the twin's
splitmix generator, BatchNorm at running mean 0, variance 1) is written as a
checkpoint; `camoxpert export` turns it into ours.onnx; the twin gets the same
weights and is exported at each batch size (static shapes: its positional encoding
and reshapes take Python ints from the input). Both files are first run on the
same image and their logits compared (the two exports must agree). Then, with
intra-op threads = --threads and every graph optimisation on:
  ORT ours / ORT twin   median latency of --runs batch-1 calls; images/s of batch 16
  camoxpert             `camoxpert bench --device cpu` (forward at batch 1), and
                        `camoxpert predict --device cpu --batch-size 16` on 64 photos
                        of --size (images/s of its network time: forward plus
                        resize, without decoding and PNG writing)

  python3 tools/onnx_bench.py --camoxpert build/camoxpert --threads 16
  python3 tools/onnx_bench.py --camoxpert build/camoxpert --threads 16 --backbone edgenext_xx_small --size 64 --runs 3

Prints a table and writes --json (default DIR/onnx_bench.json).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import camoxpert_twin as ct  # noqa: E402
import edgenext_twin as ent  # noqa: E402
import safetensors_io  # noqa: E402


def weights(variant):
    """The dense model's parameters and BatchNorm buffers (numpy), reference state_dict keys."""
    K = ct.model_keys(variant, False, 6)
    P = {n: ent.gen_param(n, s, 1).astype(np.float32) for n, s in K.params.items()}
    B = {n: (np.array(0, np.int64) if n.endswith("tracked") else np.zeros(s, np.float32) + n.endswith("var"))
         for n, s in K.buffers.items()}
    return P, B


class Twin(torch.nn.Module):
    """The twin's dense forward as a module. The weights are plain tensors the forward
    captures (the export embeds them as constants): the twin reads kernel sizes from their
    shapes, which the tracer would turn into tensors were they buffers."""

    def __init__(self, P, B, variant):
        super().__init__()
        self.variant = variant
        self.P = {n: torch.tensor(v) for n, v in P.items()}
        self.B = {n: torch.tensor(v) for n, v in B.items()}

    def forward(self, image):
        return ct.Net(self.P, self.B, self.variant, False, 6, 2, False).forward(image)["pred"]


def export_twin(twin, batch, size, path):
    x = torch.zeros(batch, 3, size, size)
    kw = dict(opset_version=17, input_names=["image"], output_names=["logits"])
    try:   # the TorchScript exporter; newer torch defaults to the dynamo one (needs onnxscript)
        torch.onnx.export(twin, (x,), path, dynamo=False, **kw)
        return "torchscript"
    except TypeError:   # a torch without the dynamo switch
        torch.onnx.export(twin, (x,), path, **kw)
        return "torchscript"
    except Exception as e:  # noqa: BLE001
        print(f"note: the TorchScript exporter failed ({e}); trying dynamo=True")
        torch.onnx.export(twin, (x,), path, dynamo=True, **kw)
        return "dynamo"


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def timed(sess, x, runs, warmup=2):
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        sys.exit(f"failed ({p.returncode}):\n{p.stdout}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--camoxpert", default="build/camoxpert")
    ap.add_argument("--backbone", default="edgenext_base")
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=10, help="timed calls per configuration (median)")
    ap.add_argument("--dir", default="build/onnx_bench")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    torch.set_num_threads(a.threads)
    S, T = a.size, a.threads
    ck, ours = os.path.join(a.dir, "ckpt.safetensors"), os.path.join(a.dir, "ours.onnx")
    P, B = weights(a.backbone)
    safetensors_io.save(ck, {**P, **B}, {"format": "pt", "model": "CamoXpertCOD", "backbone": a.backbone,
                                          "num_experts": 6, "top_k": 2})
    run([a.camoxpert, "export", "--weights", ck, "--onnx", ours])
    twin = Twin(P, B, a.backbone).eval()
    twin_paths, exporter = {}, ""
    for b in (1, 16):
        twin_paths[b] = os.path.join(a.dir, f"twin_b{b}.onnx")
        with torch.no_grad():
            exporter = export_twin(twin, b, S, twin_paths[b])
    rs = np.random.RandomState(0)
    x16 = rs.randn(16, 3, S, S).astype(np.float32)
    x1 = x16[:1].copy()
    s_ours, s_twin1, s_twin16 = session(ours, T), session(twin_paths[1], T), session(twin_paths[16], T)
    lo = s_ours.run(None, {"image": x1})[0]
    lt = s_twin1.run(None, {"image": x1})[0]
    with torch.no_grad():
        lp = twin(torch.tensor(x1)).numpy()
    err = lambda u, v: float(np.max(np.abs(u - v)) / max(np.max(np.abs(v)), 1e-3))  # noqa: E731
    print(f"agreement at batch 1: ours vs twin.onnx {err(lo, lt):.2e}, ours vs twin in PyTorch {err(lo, lp):.2e} "
          "(relative, max|a-b|/max|b|)")
    r = {"backbone": a.backbone, "size": S, "threads": T, "onnxruntime": ort.__version__, "torch": torch.__version__,
         "twin_exporter": exporter, "rel_err_ours_vs_twin_onnx": err(lo, lt)}
    r["ort_ours_b1_ms"] = timed(s_ours, x1, a.runs) * 1e3
    r["ort_ours_b16_img_s"] = 16 / timed(s_ours, x16, max(3, a.runs // 3))
    r["ort_twin_b1_ms"] = timed(s_twin1, x1, a.runs) * 1e3
    r["ort_twin_b16_img_s"] = 16 / timed(s_twin16, x16, max(3, a.runs // 3))
    del s_ours, s_twin1, s_twin16
    bj = os.path.join(a.dir, "bench.json")
    run([a.camoxpert, "bench", "--device", "cpu", "--threads", str(T), "--backbone", a.backbone, "--img-size", str(S),
         "--mode", "dense", "--batch-size", "2", "--steps", str(max(3, a.runs // 2)), "--json", bj, "--overwrite"])
    with open(bj) as f:
        r["camoxpert_b1_ms"] = json.load(f)[0]["infer_ms_batch1"]
    photos = os.path.join(a.dir, "photos")
    run([a.camoxpert, "synth", "--out", photos, "--train", "0", "--test", "64", "--size", str(S), "--overwrite"])
    out = run([a.camoxpert, "predict", "--weights", ck, "--input", os.path.join(photos, "Test", "Image"), "--out",
               os.path.join(a.dir, "masks"), "--device", "cpu", "--threads", str(T), "--batch-size", "16",
               "--img-size", str(S), "--overwrite"])
    m = re.search(r"network ([0-9.]+) s", out)
    r["camoxpert_b16_img_s"] = 64 / float(m.group(1)) if m else None
    print(f"\n{a.backbone} {S}x{S}, CPU, {T} threads (ONNX Runtime {ort.__version__}, torch {torch.__version__}, "
          f"twin exported by the {exporter} exporter)")
    print(f"{'':28}{'batch 1 ms':>12}{'batch 16 img/s':>16}")
    print(f"{'ORT, camoxpert export':28}{r['ort_ours_b1_ms']:12.1f}{r['ort_ours_b16_img_s']:16.2f}")
    print(f"{'ORT, twin torch.onnx.export':28}{r['ort_twin_b1_ms']:12.1f}{r['ort_twin_b16_img_s']:16.2f}")
    b16 = f"{r['camoxpert_b16_img_s']:16.2f}" if r["camoxpert_b16_img_s"] else f"{'?':>16}"
    print(f"{'camoxpert --device cpu':28}{r['camoxpert_b1_ms']:12.1f}{b16}")
    path = a.json or os.path.join(a.dir, "onnx_bench.json")
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
