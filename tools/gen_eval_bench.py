#!/usr/bin/python3
"""gen_eval_bench.py — writes N prediction/GT PNG pairs of W×H for timing
`camoxpert eval` (docs/PERF.md, ## Metrics). GT: a few random ellipses; prediction:
a blurred, shifted copy with noise, like a sigmoid map exported to 8 bits.

  /usr/bin/python3 tools/gen_eval_bench.py OUT_DIR [N=2026] [W=1024] [H=683]
"""
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2026
w = int(sys.argv[3]) if len(sys.argv) > 3 else 1024
h = int(sys.argv[4]) if len(sys.argv) > 4 else 683
os.makedirs(os.path.join(out, "GT"), exist_ok=True)
os.makedirs(os.path.join(out, "pred"), exist_ok=True)
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:h, 0:w]
for i in range(n):
    gt = np.zeros((h, w), bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.05, 0.25) * h, rng.uniform(0.05, 0.25) * w
        gt |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    soft = ndimage.gaussian_filter(np.roll(gt.astype(np.float32), (rng.integers(-15, 15), rng.integers(-15, 15)), (0, 1)), 6)
    pred = np.clip(soft * 255 + rng.normal(0, 8, (h, w)), 0, 255).astype(np.uint8)
    name = "COD10K-CAM-%d-Super%d-%d-Sub%d-%d.png" % (i % 5 + 1, i % 5 + 1, i % 23 + 1, i % 23 + 1, i)
    Image.fromarray((gt * 255).astype(np.uint8)).save(os.path.join(out, "GT", name))
    Image.fromarray(pred).save(os.path.join(out, "pred", name))
