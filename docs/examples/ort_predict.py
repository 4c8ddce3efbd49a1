# ort_predict.py — a photo's mask from camoxpert.onnx with ONNX Runtime, as `camoxpert predict` makes it
# (docs/DEPLOY.md):  python3 ort_predict.py camoxpert.onnx photo.jpg mask.png
import sys
import numpy as np, onnxruntime as ort
from PIL import Image
model, photo, out = sys.argv[1:4]
sess = ort.InferenceSession(model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
img = Image.open(photo).convert("RGB")
x = np.asarray(img.resize((352, 352), Image.BILINEAR), np.float32) / 255   # 352: a multiple of 32
x = ((x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype(np.float32).transpose(2, 0, 1)[None]
logits = sess.run(["logits"], {"image": x})[0][0, 0]                       # (352, 352)
p = 1 / (1 + np.exp(-np.asarray(Image.fromarray(logits).resize(img.size, Image.BILINEAR))))
Image.fromarray(((p - p.min()) / (p.max() - p.min() + 1e-8) * 255).round().astype(np.uint8)).save(out)
