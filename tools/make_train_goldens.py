#!/usr/bin/python3
"""Goldens for the optimizer and LR schedules (tests/test_train_optim.c).

Runs torch.optim.AdamW with two parameter groups (one with weight decay, one
without, the second at 0.1x the learning rate), gradient-norm clipping, and the
three LR schedulers the trainer mirrors, and stores everything in
tests/fixtures/train_golden.safetensors. Run with Debian's PyTorch:
    /usr/bin/python3 tools/make_train_goldens.py
"""
import math, torch
from safetensors_io import save_safetensors

torch.manual_seed(0)
w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)   # decayed
b = torch.randn(5, dtype=torch.float64, requires_grad=True)      # no decay, router group (0.1x lr)
opt = torch.optim.AdamW([{"params": [w], "weight_decay": 1e-2, "lr": 1e-2},
                         {"params": [b], "weight_decay": 0.0, "lr": 1e-3}], lr=1e-2)
out = {"init/w": w.detach().clone(), "init/b": b.detach().clone()}
for s in range(6):
    gw = torch.randn(4, 3, dtype=torch.float64) * (3 if s == 2 else 1)
    gb = torch.randn(5, dtype=torch.float64)
    out[f"grad{s}/w"], out[f"grad{s}/b"] = gw.clone(), gb.clone()
    w.grad, b.grad = gw.clone(), gb.clone()
    norm = torch.nn.utils.clip_grad_norm_([w, b], 0.5)
    out[f"norm{s}"] = norm.reshape(1).clone()
    opt.step()
    out[f"step{s}/w"], out[f"step{s}/b"] = w.detach().clone(), b.detach().clone()

# Schedulers: per-step LRs.
p = torch.nn.Parameter(torch.zeros(1))
o = torch.optim.SGD([p], lr=1e-3)
sch = torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-3, total_steps=50, pct_start=0.1)
lrs = []
for _ in range(50):
    lrs.append(o.param_groups[0]["lr"]); o.step(); sch.step()
out["onecycle_50"] = torch.tensor(lrs, dtype=torch.float64)
o = torch.optim.SGD([p], lr=1e-3)
sch = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=1e-6)
lrs = []
for _ in range(10):
    lrs.append(o.param_groups[0]["lr"]); o.step(); sch.step()
out["cosine_10ep"] = torch.tensor(lrs, dtype=torch.float64)
o = torch.optim.SGD([p], lr=1e-3)
sch = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=1e-6)
lrs = []
for _ in range(12):
    lrs.append(o.param_groups[0]["lr"]); o.step(); sch.step()
out["restart_8ep"] = torch.tensor(lrs, dtype=torch.float64)
save_safetensors("tests/fixtures/train_golden.safetensors",
                 {k: v.double().contiguous() for k, v in out.items()},
                 {"generator": "tools/make_train_goldens.py", "torch": torch.__version__})
