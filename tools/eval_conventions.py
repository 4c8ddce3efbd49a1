#!/usr/bin/python3
"""eval_conventions.py — measures how much the evaluation conventions of docs/METRICS.md
move the numbers, on data generated with `camoxpert synth`: a COD10K-like test set
(camouflaged images and NonCAM images with empty masks, named and laid out as COD10K-v3)
and soft "predictions" made from each mask and photo (a blurred mask plus some of the
photo's gray levels and noise, like an imperfect model's map, its sureness and best threshold varying from image to image,
min-max normalised to 0..255 as COD code exports maps). Prints the Markdown
tables docs/METRICS.md quotes. Development tool: neither the program nor `make test`
runs it.

  /usr/bin/python3 tools/eval_conventions.py build/camoxpert /tmp/conv

Needs numpy and Pillow (Debian: apt-get install python3-numpy python3-pil); imports
tools/metrics_ref.py for the CODToolbox (MATLAB) variant of the E-measure.
"""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_ref  # noqa: E402

N_TEST, SIZE, SEED = 400, 96, 7


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if r.returncode not in (0, 1):
        sys.exit("%s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r.stdout


def box_blur(a, k):
    """Mean over a (2k+1)² window, edges replicated."""
    p = np.pad(a, k, mode="edge")
    c = np.cumsum(np.cumsum(p, 0), 1)
    c = np.pad(c, ((1, 0), (1, 0)))
    w = 2 * k + 1
    return (c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]) / (w * w)


def make_data(cx, out):
    syn = os.path.join(out, "syn")
    if not os.path.isdir(syn):
        run(cx, "synth", "--out", syn, "--train", "0", "--test", str(N_TEST), "--size", str(SIZE), "--seed", str(SEED),
            "--empty-fraction", "0.5", "--threads", "2")
    gt_dir = os.path.join(out, "data", "COD10K-v3", "Test", "GT_Object")
    pred_dir = os.path.join(out, "pred", "COD10K")
    os.makedirs(gt_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    names = sorted(os.listdir(os.path.join(syn, "Test", "GT_Object")))
    for i, nm in enumerate(names):
        stem = nm[:-4]
        g = np.array(Image.open(os.path.join(syn, "Test", "GT_Object", nm)).convert("L")).astype(np.float64) / 255
        photo = np.array(Image.open(os.path.join(syn, "Test", "Image", stem + ".jpg")).convert("L")).astype(np.float64)
        family = stem.split("-")[2]
        kind = "CAM" if g.max() > 0.5 else "NonCAM"
        name = "COD10K-%s-1-%s-1-%s-%d" % (kind, family.capitalize(), family.capitalize(), i + 1)
        # how sure the "model" is and where its best threshold lies vary from image to image
        w, gamma = rng.uniform(0.3, 0.8), rng.uniform(0.5, 2.0)
        soft = (w * box_blur(g, 3) + (1 - w) * (0.6 * photo / 255 + 0.4 * rng.random(g.shape))) ** gamma
        # exported as COD code writes maps: min-max normalised to 0..255, rounded (metrics_export_u8)
        soft = (soft - soft.min()) / (soft.max() - soft.min() + 1e-8)
        Image.fromarray(np.uint8(np.round(g * 255))).save(os.path.join(gt_dir, name + ".png"))
        Image.fromarray(np.uint8(np.round(soft * 255))).save(os.path.join(pred_dir, name + ".png"))
    return os.path.join(out, "data"), os.path.join(out, "pred"), gt_dir, pred_dir


def overall(cx, data, pred, *extra):
    doc = json.loads(run(cx, "eval", "--pred-root", pred, "--data-root", data, "--format", "json", "--threads", "2", *extra))
    return doc["datasets"][0]["methods"][0]["overall"]


def matlab_em(pred_u8, gt_u8):
    """CODToolbox main.m's E-measure: foreground where pred > threshold (strict), for the
    thresholds 1:-1/255:0 and the adaptive 2·mean (clamped to 1), on the min-max
    normalised map; returns (adaptive, curve)."""
    pred, gt = metrics_ref.prepare(pred_u8, gt_u8)
    n, fg = gt.size, int(np.count_nonzero(gt))

    def em(b):
        tp, fp = int(np.count_nonzero(b & gt)), int(np.count_nonzero(b & ~gt))
        return metrics_ref.em_sum(tp, fp, fg, n) / (n - 1 + metrics_ref.EPS)
    curve = np.array([em(pred > t) for t in np.linspace(1, 0, 256)])
    return em(pred > min(2 * pred.mean(), 1)), curve


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cx, out = sys.argv[1], sys.argv[2]
    data, pred, gt_dir, pred_dir = make_data(cx, out)
    cam = overall(cx, data, pred)
    alln = overall(cx, data, pred, "--include-noncam")
    whole = overall(cx, data, pred, "--average", "dataset")
    keys = ["n", "Smeasure", "wFmeasure", "MAE", "meanEm", "maxEm", "adpEm", "meanFm", "maxFm", "adpFm"]
    print("| COD10K-like set (%d images of %d², %s) | %s |" % (N_TEST, SIZE, "synth seed %d" % SEED, " | ".join(keys)))
    print("|" + "---|" * (len(keys) + 1))
    for label, o in (("camouflaged only (the convention)", cam), ("NonCAM included (--include-noncam)", alln)):
        print("| %s | %s |" % (label, " | ".join(("%d" if k == "n" else "%.3f") % o[k] for k in keys)))
    # the mean of per-image maxima, a common hand-made variant, against the max of the mean curve
    per = os.path.join(out, "per_image.csv")
    run(cx, "eval", "--pred-root", pred, "--data-root", data, "--per-image", per, "--overwrite", "--threads", "2")
    rows = list(csv.DictReader(io.open(per)))
    mean_max_em = np.mean([float(r["maxEm"]) for r in rows])
    mean_max_fm = np.mean([float(r["maxFm"]) for r in rows])
    print()
    print("| variant | maxEφ | maxFβ | IoU@.5 | Dice@.5 |")
    print("|---|---|---|---|---|")
    print("| max of the image-averaged curve, per-image IoU/Dice (camoxpert, PySODMetrics) | %.3f | %.3f | %.3f | %.3f |"
          % (cam["maxEm"], cam["maxFm"], cam["IoU50"], cam["Dice50"]))
    print("| mean of per-image maxima | %.3f | %.3f | | |" % (mean_max_em, mean_max_fm))
    print("| IoU/Dice from the dataset's summed counts (--average dataset) | | | %.3f | %.3f |"
          % (whole["IoU50_dataset"], whole["Dice50_dataset"]))
    # CODToolbox (MATLAB) binarises the E-measure with a strict >
    adp, curves = [], []
    for nm in sorted(os.listdir(gt_dir)):
        if "-NonCAM-" in nm:
            continue
        p = np.array(Image.open(os.path.join(pred_dir, nm)))
        g = np.array(Image.open(os.path.join(gt_dir, nm)))
        a, c = matlab_em(p, g)
        adp.append(a)
        curves.append(c)
    c = np.mean(curves, axis=0)
    print()
    print("| E-measure | meanEφ | maxEφ | adpEφ |")
    print("|---|---|---|---|")
    print("| pred >= t (camoxpert, PySODMetrics) | %.4f | %.4f | %.4f |" % (cam["meanEm"], cam["maxEm"], cam["adpEm"]))
    print("| pred > t (CODToolbox main.m) | %.4f | %.4f | %.4f |" % (c.mean(), c.max(), np.mean(adp)))


if __name__ == "__main__":
    main()
