"""The one safetensors reader/writer of the tools (Debian ships no `safetensors` package).

numpy arrays in, numpy arrays out; the torch helpers convert at the edge. Files are
written as the fixtures always were: tensor entries in insertion order, then
`__metadata__`, compact JSON padded with spaces to a multiple of 8 bytes.
"""
import json
import os
import struct

import numpy as np

_NAME = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int32): "I32",
         np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8", np.dtype(np.float16): "F16"}
_DTYPE = {v: k for k, v in _NAME.items()}


def save(path, arrays, metadata=None):
    """arrays: name -> numpy array (F32/F64/I32/I64/U8/F16); metadata: name -> str()-able."""
    header, blobs, off = {}, [], 0
    for name, a in arrays.items():
        a = np.asarray(a, order="C")  # (ascontiguousarray would turn a 0-d scalar into 1-d)
        raw = a.tobytes()
        header[name] = {"dtype": _NAME[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"   # atomic: a killed run leaves the old file intact
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return 8 + len(h) + off


def load(path):
    """Returns (name -> numpy array, metadata dict)."""
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = buf[8 + n:]
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=_DTYPE[e["dtype"]]).reshape(e["shape"]).copy()
    return out, meta


def save_safetensors(path, tensors, metadata=None):
    """torch tensors -> file."""
    return save(path, {k: t.detach().contiguous().cpu().numpy() for k, t in tensors.items()}, metadata)


def load_safetensors(path):
    """file -> (name -> torch tensor, metadata)."""
    import torch
    arrays, meta = load(path)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}, meta
