#!/usr/bin/python3
"""metrics_ref.py — an independent numpy/scipy implementation of the COD metrics as
PySODMetrics 1.6 defines them (Smeasure, Emeasure, Fmeasure, WeightedFmeasure, MAE,
fmeasurev2's IoU/Dice), used to produce the expected numbers that tests/test_metrics.c
checks the C code against. Development tool only: neither the program nor `make test`
runs it.

  /usr/bin/python3 tools/metrics_ref.py cases            # C table for tests/test_metrics.c
  /usr/bin/python3 tools/metrics_ref.py dirs PRED GT     # JSON like expected.json
  /usr/bin/python3 tools/metrics_ref.py curves PRED GT > tests/fixtures/metrics_curves.json
                                                         # the dataset curves of PRED/GT and of the
                                                         # hand-made cases (tests/test_metrics.c)

Needs numpy, scipy and Pillow (Debian: apt-get install python3-numpy python3-scipy python3-pil).
The hand-made cases are built from formulas that tests/test_metrics.c repeats
(metrics_case_fill); keep the two in step.
"""
import json
import os
import sys

import numpy as np
from scipy import ndimage

EPS = np.spacing(1)


# ---- metric definitions (PySODMetrics 1.6) ------------------------------------------
def prepare(pred_u8, gt_u8):
    gt = gt_u8 > 128
    pred = pred_u8 / 255
    if pred.max() != pred.min():
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    return pred, gt


def adaptive_threshold(pred):
    return min(2 * pred.mean(), 1)


def s_object(x):
    mean = np.mean(x)
    std = np.std(x, ddof=1)
    return 2 * mean / (np.power(mean, 2) + 1 + std + EPS)


def ssim(pred, gt):
    h, w = pred.shape
    n = h * w
    x = np.mean(pred)
    y = np.mean(gt)
    sigma_x = np.sum((pred - x) ** 2) / (n - 1)
    sigma_y = np.sum((gt - y) ** 2) / (n - 1)
    sigma_xy = np.sum((pred - x) * (gt - y)) / (n - 1)
    alpha = 4 * x * y * sigma_xy
    beta = (x**2 + y**2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    if beta == 0:
        return 1
    return 0


def smeasure(pred, gt, alpha=0.5):
    y = np.mean(gt)
    if y == 0:
        return 1 - np.mean(pred)
    if y == 1:
        return np.mean(pred)
    gt_mean = y
    obj = s_object(pred[gt]) * gt_mean + s_object((1 - pred)[~gt]) * (1 - gt_mean)
    h, w = gt.shape
    area = h * w
    cy, cx = np.argwhere(gt).mean(axis=0).round()
    cy, cx = int(cy) + 1, int(cx) + 1
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    region = (ssim(pred[0:cy, 0:cx], gt[0:cy, 0:cx]) * w_lt
              + ssim(pred[0:cy, cx:w], gt[0:cy, cx:w]) * w_rt
              + ssim(pred[cy:h, 0:cx], gt[cy:h, 0:cx]) * w_lb
              + ssim(pred[cy:h, cx:w], gt[cy:h, cx:w]) * w_rb)
    return max(0, obj * alpha + region * (1 - alpha))


def em_sum(tp, fp, fg, n):
    pred_fg = tp + fp
    pred_bg = n - pred_fg
    if fg == 0:
        return pred_bg
    if fg == n:
        return pred_fg
    fn = fg - tp
    tn = pred_bg - fn
    mp, mg = pred_fg / n, fg / n
    combos = [(1 - mp, 1 - mg), (1 - mp, 0 - mg), (0 - mp, 1 - mg), (0 - mp, 0 - mg)]
    total = 0
    for part, (a, b) in zip([tp, fp, fn, tn], combos):
        align = 2 * (a * b) / (a**2 + b**2 + EPS)
        total = total + (align + 1) ** 2 / 4 * part
    return total


def curves(pred, gt):
    n = gt.size
    fg = int(np.count_nonzero(gt))
    q = (pred * 255).astype(np.uint8)
    bins = np.linspace(0, 256, 257)
    fh, _ = np.histogram(q[gt], bins=bins)
    bh, _ = np.histogram(q[~gt], bins=bins)
    tps = np.cumsum(np.flip(fh))   # index i: threshold 255 - i
    fps = np.cumsum(np.flip(bh))
    ems = np.array([em_sum(int(t), int(f), fg, n) for t, f in zip(tps, fps)], np.float64) / (n - 1 + EPS)
    ps = (tps + fps).astype(np.float64)
    ps[ps == 0] = 1
    pre = tps / ps
    rec = tps / max(fg, 1)
    num = 1.3 * pre * rec
    den = np.where(num == 0, 1, 0.3 * pre + rec)
    fms = num / den
    return ems, fms, pre, rec


def adaptive_scores(pred, gt):
    n = gt.size
    fg = int(np.count_nonzero(gt))
    b = pred >= adaptive_threshold(pred)
    tp = int(np.count_nonzero(b & gt))
    fp = int(np.count_nonzero(b & ~gt))
    em = em_sum(tp, fp, fg, n) / (n - 1 + EPS)
    if tp == 0:
        fm = 0.0
    else:
        pre = tp / np.count_nonzero(b)
        rec = tp / fg
        fm = 1.3 * pre * rec / (0.3 * pre + rec)
    return em, fm


def iou_dice(pred, gt, thr, strict=False):
    b = pred > thr if strict else pred >= thr
    tp = int(np.count_nonzero(b & gt))
    fp = int(np.count_nonzero(b & ~gt))
    fn = int(np.count_nonzero(gt)) - tp
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    dice = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
    return iou, dice


def gauss2d(shape=(7, 7), sigma=5):
    m, n = [(s - 1) / 2 for s in shape]
    y, x = np.ogrid[-m:m + 1, -n:n + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def wfmeasure(pred, gt):
    if not gt.any():
        return 0.0
    dst, idx = ndimage.distance_transform_edt(gt == 0, return_indices=True)
    e = np.abs(pred - gt)
    et = np.copy(e)
    et[gt == 0] = et[idx[0][gt == 0], idx[1][gt == 0]]
    ea = ndimage.convolve(et, weights=gauss2d(), mode="constant", cval=0)
    min_e_ea = np.where(gt & (ea < e), ea, e)
    b = np.where(gt == 0, 2 - np.exp(np.log(0.5) / 5 * dst), np.ones_like(gt))
    ew = min_e_ea * b
    tpw = np.sum(gt) - np.sum(ew[gt == 1])
    fpw = np.sum(ew[gt == 0])
    r = 1 - np.mean(ew[gt == 1])
    p = tpw / (tpw + fpw + EPS)
    return 2 * r * p / (r + p + EPS)


KEYS = ["sm", "wfm", "mae", "adp_em", "mean_em", "max_em", "adp_fm", "mean_fm", "max_fm",
        "iou_50", "dice_50", "iou_adp", "dice_adp"]


def measure(pred_u8, gt_u8):
    pred, gt = prepare(pred_u8, gt_u8)
    ems, fms, pre, rec = curves(pred, gt)
    adp_em, adp_fm = adaptive_scores(pred, gt)
    iou50, dice50 = iou_dice(pred, gt, 0.5, strict=True)   # FmeasureV2's binary: pred > 0.5
    iouad, dicead = iou_dice(pred, gt, adaptive_threshold(pred))
    with np.errstate(all="ignore"):
        sm = smeasure(pred, gt)
    return dict(sm=float(sm), wfm=float(wfmeasure(pred, gt)), mae=float(np.mean(np.abs(pred - gt))),
                adp_em=float(adp_em), mean_em=float(ems.mean()), max_em=float(ems.max()),
                adp_fm=float(adp_fm), mean_fm=float(fms.mean()), max_fm=float(fms.max()),
                iou_50=iou50, dice_50=dice50, iou_adp=iouad, dice_adp=dicead,
                _ems=ems, _fms=fms, _pre=pre, _rec=rec)


# ---- hand-made cases (repeated in tests/test_metrics.c: metrics_case_fill) ------------
class Lcg:
    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return self.s >> 16


def noise(h, w, seed, mod=256):
    g = Lcg(seed)
    return np.array([[g.next() % mod for _ in range(w)] for _ in range(h)], np.int64)


def rect(h, w, r0, r1, c0, c1):
    m = np.zeros((h, w), np.int64)
    m[r0:r1, c0:c1] = 255
    return m


def case(name):
    """Returns (pred u8, gt u8) of one hand-made case."""
    if name == "empty_gt":
        return noise(9, 13, 1), np.zeros((9, 13), np.int64)
    if name == "full_gt":
        return noise(9, 13, 2), np.full((9, 13), 255, np.int64)
    if name == "const_pred":
        return np.full((15, 21), 128, np.int64), rect(15, 21, 3, 10, 5, 15)
    if name == "const_pred_zero":
        return np.zeros((15, 21), np.int64), rect(15, 21, 3, 10, 5, 15)
    if name == "const_pred_full_gt":
        return np.full((5, 7), 77, np.int64), np.full((5, 7), 255, np.int64)
    if name == "one_pixel":
        p = noise(11, 17, 3, 64)
        p[5, 8] = 250
        g = np.zeros((11, 17), np.int64)
        g[5, 8] = 255
        return p, g
    if name == "one_pixel_edge":
        g = np.zeros((11, 17), np.int64)
        g[4, 16] = 255
        return noise(11, 17, 4), g
    if name == "no_overlap":
        return rect(12, 16, 7, 12, 10, 16), rect(12, 16, 0, 5, 0, 6)
    if name == "perfect":
        g = rect(10, 14, 2, 7, 3, 11)
        return g.copy(), g
    if name == "odd_nonsquare":
        h, w = 23, 37
        r, c = np.mgrid[0:h, 0:w]
        g = np.where(((r - 11) * (r - 11)) * 144 + ((c - 20) * (c - 20)) * 49 <= 49 * 144, 255, 0)
        inside = ((r - 11) * (r - 11)) * 144 + ((c - 22) * (c - 22)) * 49 <= 49 * 144
        p = np.where(inside, 160, 20) + noise(h, w, 5, 64)
        return p, g
    if name == "edt_ties":
        g = np.zeros((13, 13), np.int64)
        for (r, c) in [(6, 2), (6, 10), (2, 6), (10, 6)]:
            g[r, c] = 255
        g[0, 0] = 128   # background: the GT threshold is > 128
        g[12, 12] = 129  # foreground
        return noise(13, 13, 6), g
    if name == "blobs":
        h, w = 48, 64
        r, c = np.mgrid[0:h, 0:w]
        fg = ((r - 20) ** 2 + (c - 30) ** 2 < 150) | ((r > 35) & (c < 15))
        g = np.where(fg, 255, 0)
        n = noise(h, w, 8)
        p = np.where(fg, 120 + n % 136, n % 140)
        return p, g
    if name in ("const_two_blobs_1", "const_two_blobs_7"):
        # two blobs put the centroid in the background, so two quadrants have a
        # constant GT; with a constant prediction the SSIM branch then depends on
        # whether numpy's mean of the constant rounds back to it (exact for 1/255,
        # not for 7/255 on these quadrant sizes)
        g = np.zeros((20, 26), np.int64)
        g[1:6, 1:7] = 255
        g[13:18, 18:24] = 255
        return np.full((20, 26), 1 if name.endswith("_1") else 7, np.int64), g
    if name == "adaptive_tie":
        # half the prediction is 255: 2 * mean = 1 exactly, which `>=` keeps
        p = np.zeros((8, 8), np.int64)
        p[:, :4] = 255
        return p, rect(8, 8, 2, 7, 1, 6)
    if name == "single_row":
        return noise(1, 9, 9), rect(1, 9, 0, 1, 3, 6)
    raise KeyError(name)


CASES = ["empty_gt", "full_gt", "const_pred", "const_pred_zero", "const_pred_full_gt", "one_pixel",
         "one_pixel_edge", "no_overlap", "perfect", "odd_nonsquare", "edt_ties", "blobs", "single_row",
         "const_two_blobs_1", "const_two_blobs_7", "adaptive_tie"]


def emit_cases():
    print("// generated by tools/metrics_ref.py cases (numpy %s, scipy %s)" % (np.__version__, __import__("scipy").__version__))
    print("// fields: " + " ".join(KEYS))
    for name in CASES:
        p, g = case(name)
        m = measure(p.astype(np.uint8), g.astype(np.uint8))
        vals = ", ".join("%.17g" % m[k] for k in KEYS)
        print('    { "%s", { %s } },' % (name, vals))


# ---- directories -----------------------------------------------------------------------
def emit_dirs(pred_dir, gt_dir):
    from PIL import Image
    names = sorted(os.listdir(gt_dir))
    per, sums, ems, fms = {}, {k: [] for k in KEYS}, [], []
    for nm in names:
        p = np.array(Image.open(os.path.join(pred_dir, nm)).convert("L"))
        g = np.array(Image.open(os.path.join(gt_dir, nm)).convert("L"))
        m = measure(p, g)
        ems.append(m["_ems"])
        fms.append(m["_fms"])
        per[nm] = {k: m[k] for k in KEYS}
        for k in KEYS:
            sums[k].append(m[k])
    em = np.mean(np.array(ems), axis=0)
    fm = np.mean(np.array(fms), axis=0)
    overall = {k: float(np.mean(sums[k])) for k in KEYS}
    overall.update(mean_em=float(em.mean()), max_em=float(em.max()), mean_fm=float(fm.mean()), max_fm=float(fm.max()))
    json.dump(dict(n=len(names), overall=overall, per_image=per), sys.stdout, indent=1)
    print()


# ---- curves ----------------------------------------------------------------------------
CURVE_KEYS = [("precision", "_pre"), ("recall", "_rec"), ("Fmeasure", "_fms"), ("Emeasure", "_ems")]


def mean_curves(measured):
    """The dataset curves: per-image curves averaged over the images, in PySODMetrics'
    order (index i: foreground where floor(255 * pred) >= 255 - i)."""
    return {name: np.mean(np.array([m[key] for m in measured], np.float64), axis=0).tolist()
            for name, key in CURVE_KEYS}


def emit_curves(pred_dir, gt_dir):
    from PIL import Image
    names = sorted(os.listdir(gt_dir))
    dirs = [measure(np.array(Image.open(os.path.join(pred_dir, nm)).convert("L")),
                    np.array(Image.open(os.path.join(gt_dir, nm)).convert("L"))) for nm in names]
    cases = []
    for name in CASES:
        p, g = case(name)
        cases.append(measure(p.astype(np.uint8), g.astype(np.uint8)))
    out = dict(generator="tools/metrics_ref.py curves (numpy %s)" % np.__version__,
               order="index i: foreground where floor(255 * pred) >= 255 - i (PySODMetrics' order)",
               dirs=dict(pred=os.path.basename(os.path.normpath(pred_dir)), n=len(names), curves=mean_curves(dirs)),
               cases=dict(names=CASES, curves=mean_curves(cases)))
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "cases":
        emit_cases()
    elif len(sys.argv) == 4 and sys.argv[1] == "dirs":
        emit_dirs(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "curves":
        emit_curves(sys.argv[2], sys.argv[3])
    else:
        print(__doc__)
        sys.exit(2)
