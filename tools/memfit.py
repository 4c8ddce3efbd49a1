#!/usr/bin/env python3
"""Fit nn/memory.c's activation coefficients to measured arena peaks.

Reads the lines `build/camoxpert_bench memfit` prints (one per model configuration
and mode: the features f of camoxpert_memory_features (1, X, Y·k, Y·4, d0), the pixels
batch·S², the activation arena's measured peak) and, per mode, finds the
coefficients a >= 0 of the estimate per pixel a·f that lie on or above every
measured peak per pixel m_i with the largest ratio a·f_i / m_i as small as
possible: a linear program (minimise t subject to m_i <= a·f_i <= (1 + t)·m_i).
The coefficients are rounded up (the features are non-negative, so no estimate
falls), and the spread printed is the largest estimate/peak less 1 over the
points, before memory.c's MARGIN. tests/test_hostile.c wants
MARGIN·(1 + spread) <= 1.10.

    build/camoxpert_bench memfit > peaks.txt        # the default sweep (minutes)
    /usr/bin/python3 tools/memfit.py peaks.txt       # coefficients for memory.c, spread per mode

A development tool (numpy, scipy); nothing at run time needs it.
"""
import math
import re
import sys

import numpy as np
from scipy.optimize import linprog

MODES = ["inference", "none", "cheap", "blocks"]
COMMENTS = {
    "inference": "inference: one unit's working set above the maps between units",
    "none": "training, NONE: every activation kept",
    "cheap": "training, CHEAP",
    "blocks": "training, BLOCKS",
}
DECIMALS = [2, 3, 3, 3, 3]   # as printed in memory.c: the constant, X, Y·k (sparse), Y·4 (dense), d0
LINE = re.compile(r"^memfit (\S+) sparse=(\d) E=(\d+) k=(\d+) B=(\d+) S=(\d+) mode=(\w+) px=(\d+) "
                  r"f=([-\d.e+,]+) peak=(\d+) est=(\d+)")


def read(paths):
    rows = []
    for p in paths:
        with (sys.stdin if p == "-" else open(p)) as fh:
            for line in fh:
                m = LINE.match(line)
                if not m:
                    continue
                bb, sparse, E, k, B, S, mode, px, f, peak, est = m.groups()
                rows.append(dict(name=f"{bb} {'sparse E=%s k=%s' % (E, k) if sparse == '1' else 'dense'} {B}x{S}^2",
                                 mode=mode, px=float(px), f=[float(v) for v in f.split(",")], peak=float(peak),
                                 est=float(est)))
    return rows


def ceil_to(v, d):
    q = 10.0 ** d
    return math.ceil(v * q - 1e-9) / q


def fit(pts):
    F = np.array([p["f"] for p in pts])              # (n, 4)
    m = np.array([p["peak"] / p["px"] for p in pts])  # measured bytes per pixel
    n, nf = F.shape
    # variables: a (nf), t; minimise t
    c = np.zeros(nf + 1)
    c[-1] = 1
    A = np.vstack([np.hstack([-F, np.zeros((n, 1))]),            # -a·f <= -m
                   np.hstack([F / m[:, None], -np.ones((n, 1))])])  # a·f/m - t <= 1
    b = np.concatenate([-m, np.ones(n)])
    r = linprog(c, A_ub=A, b_ub=b, bounds=[(0, None)] * nf + [(None, None)], method="highs")
    if not r.success:
        sys.exit(f"memfit.py: the linear program failed: {r.message}")
    a = [ceil_to(v, DECIMALS[i]) for i, v in enumerate(r.x[:nf])]
    ratio = F @ np.array(a) / m
    return a, ratio


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    rows = read(argv[1:])
    if not rows:
        sys.exit("memfit.py: no 'memfit ...' lines read")
    out = []
    for mode in MODES:
        pts = [p for p in rows if p["mode"] == mode]
        if not pts:
            continue
        a, ratio = fit(pts)
        now = np.array([p["est"] / p["peak"] for p in pts])
        lo, hi = int(np.argmin(ratio)), int(np.argmax(ratio))
        print(f"{mode:9s} {len(pts):3d} points: spread {100 * (ratio.max() - 1):.1f} % "
              f"(lowest {ratio.min():.4f} {pts[lo]['name']}; highest {ratio.max():.4f} {pts[hi]['name']}); "
              f"the current estimate's est/peak {now.min():.3f} .. {now.max():.3f}")
        body = ", ".join(f"{v:.{DECIMALS[i]}f}" for i, v in enumerate(a))
        out.append(f"    {{ {body} }},")
        out[-1] = f"{out[-1]:<48s}// {COMMENTS[mode]}"
    print("\nstatic const double coef[4][MEM_FEATURES] = {")
    print("\n".join(out))
    print("};")


if __name__ == "__main__":
    main(sys.argv)
