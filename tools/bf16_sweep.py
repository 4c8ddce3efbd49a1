#!/usr/bin/env python3
"""bf16_sweep.py — issue 26's sweep, run on a GPU machine: fixtures made with the PyTorch twin
(tools/camoxpert_twin.py make, float64 on the CPU) over the five EdgeNeXt variants, dense and
sparse (E, k) in {(4, 1), (6, 2)}, two input shapes and seeds each, plus the issue's own
configuration (edgenext_x_small, E=6 top-2, 5x3x64x96) at four seeds; on each, PyTorch's own
bf16 autocast error (`camoxpert_twin.py prove --device cuda --amp bf16 --record`, written into
the fixture's metadata as bf16_ref_err/<output>, where verify's bf16 rule finds it), then
`camoxpert verify --device cuda --precision bf16` with each binary given. One table at the end:
per fixture and binary, the result, the output closest to its bound, its error, the bound,
PyTorch's error there, and routing flips.

  python3 tools/bf16_sweep.py --out DIR [--camoxpert BIN ...] [--jobs N] [--only REGEX] [--extra FIXTURE ...]

Fixtures run in parallel processes (--jobs, default one per core, 1 thread each); a fixture
already in DIR/fixtures with its autocast errors recorded is reused. Logs: DIR/logs/. Exit
status 1 when any verify failed. `gpu/run.sh bf16sweep` (scripts/gpu_run.sh) runs it with the
bundle's camoxpert.
"""
import argparse
import concurrent.futures as cf
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
BACKBONES = ("edgenext_xx_small", "edgenext_x_small", "edgenext_small", "edgenext_small_rw", "edgenext_base")
MODES = (("dense", 6, 2), ("sparse", 4, 1), ("sparse", 6, 2))
SHAPES = ((2, 64, 64), (3, 64, 96))     # batch, H, W (sides: multiples of 32, the decoder's rule)
ISSUE = ("edgenext_x_small", "sparse", 6, 2, 5, 64, 96)   # issue 26's configuration
ISSUE_SEEDS = (5, 10, 14, 26)
COST = {"edgenext_base": 4, "edgenext_small_rw": 3, "edgenext_small": 3, "edgenext_x_small": 2, "edgenext_xx_small": 1}
VERIFY_BF16_FWD, RATIO = 2e-2, 1.5      # src/cli/verify.h


def specs():
    out = []
    for b, bb in enumerate(BACKBONES):
        for m, (mode, E, k) in enumerate(MODES):
            for s, (n, h, w) in enumerate(SHAPES):
                out.append((bb, mode, E, k, n, h, w, 100 + 10 * b + 3 * m + s))
    out += [ISSUE + (seed,) for seed in ISSUE_SEEDS]
    return out


def name_of(spec):
    bb, mode, E, k, n, h, w, seed = spec
    tag = "dense" if mode == "dense" else f"E{E}k{k}"
    return f"{bb[9:]}_{tag}_{n}x{h}x{w}_s{seed}"


def run(cmd, log, env):
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    return rc, time.time() - t0


def one(spec, a, env):
    """Makes the fixture (unless there), records PyTorch's autocast errors, verifies with each binary.
    A spec that is a path is a fixture made elsewhere (--extra): verified as it is."""
    extra = isinstance(spec, str)
    name = os.path.basename(spec)[:-len(".safetensors")] if extra else name_of(spec)
    fix = spec if extra else os.path.join(a.out, "fixtures", name + ".safetensors")
    logs = os.path.join(a.out, "logs")
    res = {"name": name, "times": {}, "verify": []}
    if a.deadline and time.time() > a.deadline:
        res["error"] = "not run: past --deadline"
        return res
    py = [sys.executable, os.path.join(TOOLS, "camoxpert_twin.py")]
    have = extra or (os.path.exists(fix) and "bf16_ref" in safetensors_io.load(fix)[1])
    if not have:
        bb, mode, E, k, n, h, w, seed = spec
        rc, t = run(py + ["make", "--mode", mode, "--backbone", bb, "--num-experts", str(E), "--top-k", str(k),
                          "--batch", str(n), "--size", f"{h}x{w}", "--seed", str(seed), "--grad-max-numel", "0",
                          "--out", fix], os.path.join(logs, name + ".make.log"), env)
        res["times"]["make"] = t
        if rc:
            res["error"] = f"make failed (rc {rc}, {name}.make.log)"
            return res
        rc, t = run(py + ["prove", "--device", "cuda", "--amp", "bf16", "--record", fix],
                    os.path.join(logs, name + ".autocast.log"), env)
        res["times"]["autocast"] = t
        if rc:
            res["error"] = f"autocast failed (rc {rc}, {name}.autocast.log)"
            return res
    for i, exe in enumerate(a.camoxpert):
        log = os.path.join(logs, f"{name}.verify{i}.log")
        rc, t = run([exe, "verify", "--device", "cuda", "--precision", "bf16", "--threads", str(a.threads), fix],
                    log, env)
        res["times"][f"verify{i}"] = t
        res["verify"].append(parse_verify(log, rc))
    meta = safetensors_io.load(fix)[1]
    res["autocast"] = {n[13:]: float(v) for n, v in meta.items() if n.startswith("bf16_ref_err/")}
    m = re.search(r"differed for (\d+) eval, (\d+) train", meta.get("bf16_ref", ""))
    res["autocast_flips"] = (int(m.group(1)), int(m.group(2))) if m else None
    return res


LINE = re.compile(r"^\s+(output/\S+) \(gpu, bf16\)\s+L2\s+(\S+)\s+tol\s+(\S+)\s+(ok|FAIL)")
NOTE = re.compile(r"^\s+(output/\S+): bound (\S+) = ")
FLIP = re.compile(r"^\s+output/(eval|train)/route(\d)/topk_idx \(gpu, bf16\): the GPU's own top-\d+ differs for (\d+)")
FAILED = re.compile(r"^\s+(\S+).*\bFAIL")


def parse_verify(log, rc):
    """The bf16 output lines of one verify log: {output: (error, bound, ok)}, flips, failures, verdict."""
    outs, bounds, flips, failed, verdict = {}, {}, 0, [], ""
    for line in open(log, errors="replace"):
        if (m := LINE.match(line)):
            outs[m.group(1)] = [float(m.group(2)), float(m.group(3)), m.group(4) == "ok"]
        elif (m := NOTE.match(line)):
            bounds[m.group(1)] = float(m.group(2))
        elif (m := FLIP.match(line)):
            flips += int(m.group(3))
        elif (m := FAILED.match(line)):
            failed.append(m.group(1))
        if line.startswith(("PASS", "FAIL")) or line.startswith("error"):
            verdict = line.strip()
    for n, b in bounds.items():   # the exact bound (the line prints it to one digit)
        if n in outs:
            outs[n][1] = b
    return {"rc": rc, "outs": outs, "flips": flips, "failed": failed, "verdict": verdict}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="fixtures and logs go here")
    ap.add_argument("--camoxpert", action="append", help="a camoxpert binary (repeatable; default: camoxpert on PATH)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="fixtures at a time (default: the cores)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of each process")
    ap.add_argument("--only", help="only the fixtures whose name matches this regular expression")
    ap.add_argument("--extra", action="append", default=[], help="also verify this fixture as it is (the shared "
                    "ones: read-only, no autocast errors recorded, so verify's default bounds)")
    ap.add_argument("--deadline", type=float, default=0, help="start no fixture after this many seconds")
    a = ap.parse_args()
    a.deadline = time.time() + a.deadline if a.deadline else 0
    a.camoxpert = a.camoxpert or ["camoxpert"]
    os.makedirs(os.path.join(a.out, "fixtures"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    todo = [s for s in specs() if not a.only or re.search(a.only, name_of(s))]
    # the shared fixtures first (they must still pass), then the issue's own configuration,
    # then the rest, the slowest first (a --deadline cuts the cheap ones, which the others cover)
    todo.sort(key=lambda s: (s[:7] != ISSUE, -COST[s[0]] * s[4] * s[5] * s[6]))
    todo = a.extra + todo
    t0 = time.time()
    print(f"bf16 sweep: {len(todo)} fixtures, {a.jobs} at a time, binaries: {' '.join(a.camoxpert)}", flush=True)
    results = []
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        for r in ex.map(lambda s: one(s, a, env), todo):
            results.append(r)
            v = "; ".join(x["verdict"][:4] or f"rc {x['rc']}" for x in r["verify"]) or r.get("error", "")
            print(f"  [{time.time() - t0:5.0f} s] {r['name']}: {v}", flush=True)
    bad = report(results, a.camoxpert)
    tot = {}
    for r in results:
        for k, t in r["times"].items():
            tot[k] = tot.get(k, 0) + t
    print(f"wall {time.time() - t0:.0f} s; process time by phase: " +
          ", ".join(f"{k} {t:.0f} s" for k, t in sorted(tot.items())))
    return 1 if bad else 0


def report(results, bins):
    """The summary table; returns the number of failed verifies."""
    print("\n== bf16 sweep: verify --device cuda --precision bf16 (relative L2 against the float64 fixture)")
    for i, b in enumerate(bins):
        print(f"   binary {i}: {b}")
    print(f"{'fixture':<34} {'bin':>3} {'result':<6} {'closest to its bound':<26} {'error':>9} {'bound':>9} "
          f"{'autocast':>9} {'flips':>5}")
    bad = 0
    for r in sorted(results, key=lambda r: r["name"]):
        if "error" in r:
            print(f"{r['name']:<34} {'-':>3} {'ERROR':<6} {r['error']}")
            bad += 1
            continue
        for i, v in enumerate(r["verify"]):
            ok = v["rc"] == 0
            bad += not ok
            if v["outs"]:
                n, (e, b, _) = max(v["outs"].items(), key=lambda kv: kv[1][0] / kv[1][1])
                ac = r["autocast"].get(n)
                acs = f"{ac:9.2e}" if ac is not None else f"{'-':>9}"
                line = f"{n[7:]:<26} {e:9.2e} {b:9.2e} {acs} {v['flips']:5d}"
            else:
                line = f"(no bf16 output lines: {v['verdict'][:60]})"
            print(f"{r['name']:<34} {i:>3} {'PASS' if ok else 'FAIL':<6} {line}")
            if not ok:
                others = [f for f in v["failed"]][:4]
                print(f"{'':<34} {'':>3} {'':<6} failed: {', '.join(others) or v['verdict']}")
    worst = {}
    for r in results:   # where PyTorch's own autocast is over the eval tolerance (the rule's raised bounds)
        for n, e in r.get("autocast", {}).items():
            if n.startswith("output/eval/") and e > VERIFY_BF16_FWD:
                worst.setdefault(n, []).append((e, r["name"]))
    for n, lst in sorted(worst.items()):
        print(f"PyTorch's bf16 autocast over {VERIFY_BF16_FWD:g} on {n}: " +
              ", ".join(f"{nm} {e:.2e}" for e, nm in sorted(lst, reverse=True)))
    print(f"{bad} of {sum(max(1, len(r.get('verify', []))) for r in results)} verifies failed")
    return bad


if __name__ == "__main__":
    sys.exit(main())
