#!/usr/bin/python3
"""strip_fixture.py — a copy of a safetensors fixture without the tensors under some
name prefixes, its metadata kept (plus `stripped` naming what was dropped).

The GPU bundle (scripts/gpu_bundle.sh) uses it to fit the shared fixtures into
the 64 MiB a device call may carry: the dense CamoXpert fixture without its
stored float64 gradients, which the CPU tests check.

    /usr/bin/python3 tools/strip_fixture.py IN.safetensors OUT.safetensors --drop-prefix grad/
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--drop-prefix", action="append", default=[], help="drop tensors whose name starts with this")
    a = ap.parse_args()
    arrays, meta = safetensors_io.load(a.src)
    keep = {k: v for k, v in arrays.items() if not any(k.startswith(p) for p in a.drop_prefix)}
    meta = dict(meta or {})
    meta["stripped"] = ",".join(a.drop_prefix)
    n = safetensors_io.save(a.dst, keep, meta)
    print(f"{a.dst}: {len(keep)} of {len(arrays)} tensors, {n} bytes")


if __name__ == "__main__":
    main()
