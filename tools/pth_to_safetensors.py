#!/usr/bin/python3
"""pth_to_safetensors.py — a PyTorch checkpoint (.pth/.pt: torch.save's zip or legacy
pickle format) as the safetensors file camoxpert reads, once, on a machine with PyTorch.

The state_dict is found as the file itself or under one of the keys trainers use
("state_dict", "model", "model_state_dict", "net"); a "module." prefix (DataParallel)
is dropped. Tensors keep their names and dtypes (bf16 becomes float32). Options name
the model for `camoxpert predict` when the file carries no camoxpert configuration:

    /usr/bin/python3 tools/pth_to_safetensors.py best.pth best.safetensors
    camoxpert predict --weights best.safetensors --backbone edgenext_small --input photos --out masks

Only open files you trust: loading a pickle runs code (weights_only=True is tried first).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="the .pth/.pt file")
    ap.add_argument("dst", help="the .safetensors file to write")
    a = ap.parse_args()
    import torch
    try:
        obj = torch.load(a.src, map_location="cpu", weights_only=True)
    except Exception:  # an older file with other objects in it: the full unpickler, on a file you trust
        obj = torch.load(a.src, map_location="cpu", weights_only=False)
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        sys.exit(f"{a.src}: no state_dict found (a {type(obj).__name__})")
    tensors = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        k = k[len("module."):] if k.startswith("module.") else k
        tensors[k] = v.float() if v.dtype == torch.bfloat16 else v
    if os.path.exists(a.dst):
        sys.exit(f"{a.dst} exists; choose another name")
    n = safetensors_io.save_safetensors(a.dst, tensors, {"format": "pt", "source": os.path.basename(a.src)})
    print(f"{a.dst}: {len(tensors)} tensors, {n} bytes")


if __name__ == "__main__":
    main()
