#!/usr/bin/python3
"""camoxpert_twin.py — a PyTorch twin of the reference CamoXpert (dense
CamoXpertCOD and sparse CamoXpertSparseMoE), written from
../shared/reference/camoxpert.md, with the project's sparse semantics: images
grouped by expert (one expert call per group, BatchNorm statistics over the
group in training) and differentiable routing weights. The backbone comes from
tools/edgenext_twin.py. Development tool only: neither camoxpert nor
`make test` runs Python.

  prove FIXTURE        run a reference fixture in float64 and compare every stored
                       result (eval outputs and routing; training loss terms,
                       gradients and BatchNorm state) with the fixture error rule
  make --out F ...     write a training-mode fixture (kind=camoxpert; --mode sparse|dense) for
                       camoxpert verify: parameters from the splitmix22 generator,
                       random BatchNorm state, eval + train outputs, routing,
                       loss terms, a subset of gradients (incl. every router's);
                       --routing spatial --route-grid G: spatial routing (docs/ROUTING.md)
  checkpoint FILE      load a checkpoint written by camoxpert into a module with the
                       reference's exact state_dict (names, shapes, dtypes), strict=True
  bench ...            time one training step (forward + loss + backward + AdamW): float32
                       on the CPU, or on a GPU (--device cuda) with --amp fp16 (autocast +
                       GradScaler, as the reference ships) or bf16, optionally --channels-last;
                       under torchrun (WORLD_SIZE > 1) as the reference trains with --use-ddp:
                       one process per GPU, DistributedDataParallel over NCCL (unused
                       parameters found, as the reference does for the sparse model),
                       --batch per GPU, images/s over all GPUs
  ddpcmp --out F.npz ...
                       float32 training steps (AdamW, clipping) on the same global batches, the
                       losses and final parameters to F.npz: one process, or under torchrun each
                       rank on its slice through DDP (--sync-bn: SyncBatchNorm's function and the
                       uncertainty map's global maximum); `ddpcmp-report A.npz B.npz` compares two
  prove --device cuda --amp bf16|fp16 [--record] FIXTURE
                       the fixture's forward outputs under autocast on the GPU (float32
                       weights; evaluation mode and one training-mode forward, under the
                       fixture's routing choices): relative L2 per output against the
                       fixture, reported; --record (bf16) writes them into the fixture's
                       metadata as bf16_ref_err/<name>, camoxpert verify's bf16 bounds

Tensors NCHW / OIHW; keys are the reference's state_dict keys. Run with /usr/bin/python3
(Debian python3-torch 1.13).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgenext_twin as ent  # noqa: E402
import safetensors_io  # noqa: E402

BN_EPS, BN_MOM = 1e-5, 0.1
KINDS = ("texture", "frequency", "edge", "contrast")
RADIUS = {"texture": 8, "frequency": 3, "edge": 1, "contrast": 3}  # receptive-field radius of each expert kind
# Spatial routing (docs/ROUTING.md): 0 = global routing, else at most ROUTE_GRID x ROUTE_GRID tiles per
# scale. Set from the fixture's metadata (prove) or --routing/--route-grid (make).
ROUTE_GRID = 0
# ddpcmp --sync-bn: BatchNorm statistics and the uncertainty map's batch maximum over all ranks
SYNC_BN = False


def tiles(side, grid):
    """Tile bounds along one side: n = min(grid, side // 4) tiles (at least 1), bounds i*side//n."""
    n = max(1, min(grid, side // 4))
    return [i * side // n for i in range(n + 1)]


# ---- parameter keys and shapes in state_dict order ----------------------------------------
class Keys:
    """Collects (key, shape) of parameters and BatchNorm buffers in registration order."""

    def __init__(self):
        self.params, self.buffers = {}, {}

    def conv(self, p, cin, cout, k):
        self.params[p + ".weight"] = (cout, cin, k, k)
        self.params[p + ".bias"] = (cout,)

    def bn(self, p, c):
        self.params[p + ".weight"] = (c,)
        self.params[p + ".bias"] = (c,)
        self.buffers[p + ".running_mean"] = (c,)
        self.buffers[p + ".running_var"] = (c,)
        self.buffers[p + ".num_batches_tracked"] = ()

    def cbr(self, p, i, cin, cout, k):  # ConvBNReLU inside a Sequential at index i
        self.conv(f"{p}.{i}", cin, cout, k)
        self.bn(f"{p}.{i + 1}", cout)


def splits(d):
    q, t = d // 4, d // 3
    return (q, q, q, d - 3 * q), (t, t, d - 2 * t)


def expert_keys(K, p, kind, d):
    s4, s3 = splits(d)
    if kind == "texture":
        for i in range(4):
            K.conv(f"{p}.branch{i + 1}.0", d, s4[i], 1)
            K.conv(f"{p}.branch{i + 1}.1", s4[i], s4[i], 3)
            K.bn(f"{p}.branch{i + 1}.2", s4[i])
    elif kind == "frequency":
        for name, c, k in zip(("scale1_conv", "scale2_conv", "scale3_conv", "spatial_conv"), s4, (3, 5, 7, 1)):
            K.cbr(f"{p}.{name}", 0, d, c, k)
    elif kind == "edge":
        for name, c, k in zip(("horizontal_edge", "vertical_edge", "laplacian_edge", "spatial_branch"), s4, (3, 3, 3, 1)):
            K.cbr(f"{p}.{name}", 0, d, c, k)
    else:
        for name, c, k in zip(("contrast_3x3", "contrast_5x5", "contrast_7x7"), s3, (3, 5, 7)):
            K.cbr(f"{p}.{name}", 0, d, c, k)
    K.cbr(f"{p}.fusion", 0, d, d, 1)
    if kind == "contrast":
        K.conv(f"{p}.amplify.1", d, d // 4, 1)
        K.conv(f"{p}.amplify.3", d // 4, d, 1)


def model_keys(variant, sparse, E):
    depths, dims, heads, rw = ent.VARIANTS[variant]
    K = Keys()
    for k, s in ent.param_shapes(variant).items():
        if not k.startswith("head."):
            K.params["backbone." + ent.feature_name(k)] = s
    if not sparse:
        for kind, lst in zip(KINDS, ("texture_experts", "frequency_experts", "edge_experts", "contrast_modules")):
            for s in range(4):
                expert_keys(K, f"{lst}.{s}", kind, dims[s])
    else:
        for s in range(4):
            for e in range(E):
                expert_keys(K, f"moe_layers.{s}.experts.{e}", KINDS[e % 4], dims[s])
            K.params[f"moe_layers.{s}.router.2.weight"] = (E, dims[s])
            K.params[f"moe_layers.{s}.router.2.bias"] = (E,)
    d3 = dims[3]
    K.cbr("search_module.search_conv", 0, d3, d3 // 2, 3)
    K.cbr("search_module.search_conv", 3, d3 // 2, d3 // 2, 3)
    K.conv("search_module.search_conv.6", d3 // 2, 1, 1)
    K.cbr("search_module.identify_conv", 0, d3, d3, 3)
    K.cbr("search_module.identify_conv", 3, d3, d3, 1)
    cin = (d3, 2 * dims[2], 2 * dims[1], 2 * dims[0])
    cout = (dims[2], dims[1], dims[0], 64)
    for i in range(4):
        K.cbr(f"decoder_blocks.{i}.conv1", 0, cin[i], cout[i], 3)
        K.cbr(f"decoder_blocks.{i}.conv2", 0, cout[i], cout[i], 3)
    K.cbr("reverse_attention.background_pred", 0, 64, 32, 3)
    K.cbr("reverse_attention.background_pred", 3, 32, 16, 3)
    K.conv("reverse_attention.background_pred.6", 16, 1, 1)
    K.cbr("reverse_attention.refine", 0, 65, 64, 3)
    K.cbr("reverse_attention.refine", 3, 64, 64, 3)
    K.cbr("boundary_uncertainty.shared", 0, 64, 64, 3)
    K.cbr("boundary_uncertainty.mean_head", 0, 64, 32, 3)
    K.conv("boundary_uncertainty.mean_head.3", 32, 1, 1)
    K.cbr("boundary_uncertainty.uncertainty_head", 0, 64, 32, 3)
    K.conv("boundary_uncertainty.uncertainty_head.3", 32, 1, 1)
    for i in range(2):
        K.cbr(f"iterative_refinement.refinement_blocks.{i}", 0, 66, 64, 3)
        K.cbr(f"iterative_refinement.refinement_blocks.{i}", 3, 64, 64, 3)
    for i in range(2):
        K.conv(f"iterative_refinement.pred_heads.{i}", 64, 1, 1)
    for j in range(3):
        K.conv(f"deep_heads.{j}", dims[2 - j], 1, 1)
    return K


class GlobalMax(torch.autograd.Function):
    """The maximum over all ranks of each rank's scalar; its gradient (summed over the ranks, which
    DistributedDataParallel then averages) goes to the rank that holds it, as one process would."""
    @staticmethod
    def forward(ctx, m):
        import torch.distributed as dist
        g = m.detach().clone()
        dist.all_reduce(g, op=dist.ReduceOp.MAX)
        ctx.holds = bool(g == m)
        return g

    @staticmethod
    def backward(ctx, go):
        import torch.distributed as dist
        go = go.clone()
        dist.all_reduce(go)
        return go if ctx.holds else torch.zeros_like(go)


# ---- the network ------------------------------------------------------------------------------
class Net:
    def __init__(self, P, B, variant, sparse, E, k, training):
        self.P, self.B, self.variant, self.sparse, self.E, self.k, self.training = P, B, variant, sparse, E, k, training
        # force[s] (units, k): choices taken instead of the router's top-k at scale s (prove --amp: autocast's
        # error under the fixture's decisions); flips counts the units whose own choice differed
        self.force, self.flips = None, 0

    def topk(self, s, probs):
        val, idx = torch.topk(probs, self.k, -1)
        if self.force is not None:
            ref = self.force[s].to(idx.device)
            self.flips += int((ref != idx).any(-1).sum())
            idx, val = ref, probs.gather(-1, ref)
        return val, idx

    def conv(self, p, x, dil=1):
        w = self.P[p + ".weight"]
        return F.conv2d(x, w, self.P[p + ".bias"], 1, dil * (int(w.shape[2]) - 1) // 2, dil)

    def bn(self, p, x):
        if self.training:
            self.B[p + ".num_batches_tracked"] += 1
            if SYNC_BN and not x.is_cuda:   # the same over gloo (SyncBatchNorm's function is CUDA-only in 1.13)
                import torch.distributed as dist
                import torch.distributed.nn.functional as dnn
                n = x.numel() // x.shape[1] * dist.get_world_size()
                s = dnn.all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))]))
                mean, var = s[:x.shape[1]] / n, s[x.shape[1]:] / n - (s[:x.shape[1]] / n) ** 2
                with torch.no_grad():
                    rm, rv = self.B[p + ".running_mean"], self.B[p + ".running_var"]
                    rm.mul_(1 - BN_MOM).add_(BN_MOM * mean)
                    rv.mul_(1 - BN_MOM).add_(BN_MOM * var * n / (n - 1))
                sh = (1, -1, 1, 1)
                return (x - mean.view(sh)) * torch.rsqrt(var.view(sh) + BN_EPS) * self.P[p + ".weight"].view(sh) + \
                    self.P[p + ".bias"].view(sh)
            if SYNC_BN:   # torch.nn.SyncBatchNorm's own function: statistics and their gradients over all ranks
                from torch.nn.modules._functions import SyncBatchNorm as SyncBN
                import torch.distributed as dist
                return SyncBN.apply(x, self.P[p + ".weight"], self.P[p + ".bias"], self.B[p + ".running_mean"],
                                    self.B[p + ".running_var"], BN_EPS, BN_MOM, dist.group.WORLD,
                                    dist.get_world_size())
        return F.batch_norm(x, self.B[p + ".running_mean"], self.B[p + ".running_var"], self.P[p + ".weight"],
                            self.P[p + ".bias"], self.training, BN_MOM, BN_EPS)

    def cbr(self, p, i, x, dil=1):
        return F.relu(self.bn(f"{p}.{i + 1}", self.conv(f"{p}.{i}", x, dil)))

    def expert(self, p, kind, x):
        if kind == "texture":
            outs = [F.relu(self.bn(f"{p}.branch{i + 1}.2", self.conv(f"{p}.branch{i + 1}.1",
                                                                       self.conv(f"{p}.branch{i + 1}.0", x), 2 ** i)))
                    for i in range(4)]
        elif kind == "frequency":
            outs = [self.cbr(f"{p}.{n}", 0, x) for n in ("scale1_conv", "scale2_conv", "scale3_conv", "spatial_conv")]
        elif kind == "edge":
            outs = [self.cbr(f"{p}.{n}", 0, x) for n in ("horizontal_edge", "vertical_edge", "laplacian_edge",
                                                          "spatial_branch")]
        else:
            outs = [self.cbr(f"{p}.{n}", 0, x) for n in ("contrast_3x3", "contrast_5x5", "contrast_7x7")]
        c = self.cbr(f"{p}.fusion", 0, torch.cat(outs, 1))
        if kind != "contrast":
            return c + x
        a = c.mean((2, 3), keepdim=True)
        a = torch.sigmoid(self.conv(f"{p}.amplify.3", F.relu(self.conv(f"{p}.amplify.1", a))))
        return x + c * a

    def expert_tiles(self, p, kind, xw, keep):
        """The expert on windows xw (c, d, h, w) keeping, per window q, the pixels keep[q] = (image, i0, i1, j0, j1)
        (window coordinates); returns the kept pixels as rows (M, d), window by window, row-major. Spatial convs run
        on the windows; everything after a branch's last spatial conv runs on the kept pixels (BatchNorm over them)."""
        def crop(t):
            return torch.cat([t[q, :, i0:i1, j0:j1].reshape(t.shape[1], -1).t() for q, (_, i0, i1, j0, j1) in
                              enumerate(keep)], 0)

        def lin(key, rows):  # a 1x1 conv on rows
            w = self.P[key + ".weight"]
            return F.linear(rows, w.reshape(w.shape[0], -1), self.P[key + ".bias"])

        def bnr(key, rows):
            return F.relu(self.bn(key, rows))
        if kind == "texture":
            outs = [bnr(f"{p}.branch{i + 1}.2", crop(self.conv(f"{p}.branch{i + 1}.1",
                                                                self.conv(f"{p}.branch{i + 1}.0", xw), 2 ** i)))
                    for i in range(4)]
        else:
            names = {"frequency": ("scale1_conv", "scale2_conv", "scale3_conv", "spatial_conv"),
                     "edge": ("horizontal_edge", "vertical_edge", "laplacian_edge", "spatial_branch"),
                     "contrast": ("contrast_3x3", "contrast_5x5", "contrast_7x7")}[kind]
            outs = [bnr(f"{p}.{n}.1", crop(self.conv(f"{p}.{n}.0", xw))) for n in names]
        c = bnr(f"{p}.fusion.1", lin(f"{p}.fusion.0", torch.cat(outs, 1)))
        xc = crop(xw)
        if kind != "contrast":
            return c + xc
        img = torch.cat([torch.full(((i1 - i0) * (j1 - j0),), n, dtype=torch.long) for n, i0, i1, j0, j1 in keep])
        ims = sorted(set(img.tolist()))
        pooled = torch.stack([c[img == n].mean(0) for n in ims])  # per image, over its kept pixels
        a = torch.sigmoid(lin(f"{p}.amplify.3", F.relu(lin(f"{p}.amplify.1", pooled))))
        return xc + c * a[torch.tensor([ims.index(n) for n in img.tolist()])]

    def moe_spatial(self, s, x):
        """Spatial routing: tiles scored from their own pooled features, top-k per tile; expert e runs once on
        the windows (tile + its radius, shifted inside the map) of its tiles; kept pixels added with the weights."""
        p = f"moe_layers.{s}"
        N, _, H, W = x.shape
        ty, tx = tiles(H, ROUTE_GRID), tiles(W, ROUTE_GRID)
        gh, gw = len(ty) - 1, len(tx) - 1
        units = [(n, a, b) for n in range(N) for a in range(gh) for b in range(gw)]
        pooled = torch.stack([x[n, :, ty[a]:ty[a + 1], tx[b]:tx[b + 1]].mean((1, 2)) for n, a, b in units])
        logits = F.linear(pooled, self.P[p + ".router.2.weight"], self.P[p + ".router.2.bias"])
        probs = torch.softmax(logits, -1)
        val, idx = self.topk(s, probs)
        w = val / (val.sum(-1, keepdim=True) + 1e-8)
        lb = 0.01 * ((probs.mean(0) - 1.0 / self.E) ** 2).sum()
        acc = [torch.zeros_like(x[0]) for _ in range(N)]
        th = max(ty[a + 1] - ty[a] for a in range(gh))
        tw = max(tx[b + 1] - tx[b] for b in range(gw))
        for e in range(self.E):
            rows, j = (idx == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            kind = KINDS[e % 4]
            r = RADIUS[kind]
            h, wd = min(H, th + 2 * r), min(W, tw + 2 * r)
            wins, keep, places = [], [], []
            for u in rows.tolist():
                n, a, b = units[u]
                wy = max(0, min(ty[a] - r, H - h))
                wx = max(0, min(tx[b] - r, W - wd))
                wins.append(x[n, :, wy:wy + h, wx:wx + wd])
                keep.append((n, ty[a] - wy, ty[a + 1] - wy, tx[b] - wx, tx[b + 1] - wx))
                places.append((n, ty[a], ty[a + 1], tx[b], tx[b + 1]))
            ye = self.expert_tiles(f"{p}.experts.{e}", kind, torch.stack(wins), keep)
            m = 0
            for q, (n, y0, y1, x0, x1) in enumerate(places):
                sz = (y1 - y0) * (x1 - x0)
                blk = ye[m:m + sz].t().reshape(-1, y1 - y0, x1 - x0) * w[rows[q], j[q]]
                acc[n] = acc[n] + F.pad(blk, (x0, W - x1, y0, H - y1))
                m += sz
        return torch.stack(acc), dict(logits=logits, probs=probs, topk_idx=idx, topk_w=w, lb_loss=lb)

    def moe(self, s, x):
        """Global routing; images grouped by expert; differentiable weights."""
        if ROUTE_GRID:
            return self.moe_spatial(s, x)
        p = f"moe_layers.{s}"
        logits = F.linear(x.mean((2, 3)), self.P[p + ".router.2.weight"], self.P[p + ".router.2.bias"])
        probs = torch.softmax(logits, -1)
        val, idx = self.topk(s, probs)
        w = val / (val.sum(-1, keepdim=True) + 1e-8)
        lb = 0.01 * ((probs.mean(0) - 1.0 / self.E) ** 2).sum()
        out = torch.zeros_like(x)
        for e in range(self.E):
            rows, j = (idx == e).nonzero(as_tuple=True)  # ascending image order
            if rows.numel() == 0:
                continue
            ye = self.expert(f"{p}.experts.{e}", KINDS[e % 4], x[rows])
            out = out.index_add(0, rows, ye * w[rows, j][:, None, None, None])
        return out, dict(logits=logits, probs=probs, topk_idx=idx, topk_w=w, lb_loss=lb)

    def forward(self, image):
        bb = {k: self.P["backbone." + ent.feature_name(k)] for k in ent.param_shapes(self.variant)
              if not k.startswith("head.")}
        feats = ent.forward(bb, image, self.variant)
        routes, e = [], []
        for s in range(4):
            if self.sparse:
                y, r = self.moe(s, feats[s])
                routes.append(r)
            else:
                y = feats[s]
                for lst, kind in zip(("texture_experts", "frequency_experts", "edge_experts", "contrast_modules"), KINDS):
                    y = self.expert(f"{lst}.{s}", kind, y)
            e.append(y)
        H, W = (int(s) for s in image.shape[2:])
        sm = torch.sigmoid(self.conv("search_module.search_conv.6", self.cbr("search_module.search_conv", 3,
                                     self.cbr("search_module.search_conv", 0, e[3]))))
        x = self.cbr("search_module.identify_conv", 3, self.cbr("search_module.identify_conv", 0, e[3])) * sm
        for i in range(4):
            if i:
                x = torch.cat([x, e[3 - i]], 1)
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.cbr(f"decoder_blocks.{i}.conv2", 0, self.cbr(f"decoder_blocks.{i}.conv1", 0, x))
        p = "reverse_attention.background_pred"
        bg = torch.sigmoid(self.conv(p + ".6", self.cbr(p, 3, self.cbr(p, 0, x))))
        fg = 1 - bg
        x = self.cbr("reverse_attention.refine", 3, self.cbr("reverse_attention.refine", 0, torch.cat([x, bg], 1))) * fg
        up = lambda t: F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)  # noqa: E731
        x, fg_map, search_map = up(x), up(fg), up(sm)
        sh = self.cbr("boundary_uncertainty.shared", 0, x)
        ip = self.conv("boundary_uncertainty.mean_head.3", self.cbr("boundary_uncertainty.mean_head", 0, sh))
        un = F.softplus(self.conv("boundary_uncertainty.uncertainty_head.3",
                                  self.cbr("boundary_uncertainty.uncertainty_head", 0, sh)))
        ip, un = torch.clamp(ip, -15, 15), torch.clamp(un, 1e-8, 10)
        u = un / ((GlobalMax.apply(un.max()) if SYNC_BN else un.max()) + 1e-8)
        pred, refs = ip, []
        for i in range(2):
            p = f"iterative_refinement.refinement_blocks.{i}"
            h = self.cbr(p, 3, self.cbr(p, 0, torch.cat([x, pred, u], 1))) * (1 + u)
            pred = self.conv(f"iterative_refinement.pred_heads.{i}", h)
            refs.append(pred)
        deep = [torch.clamp(self.conv(f"deep_heads.{j}", e[2 - j]), -15, 15) for j in range(3)]
        return dict(pred=torch.clamp(pred, -15, 15), fg_map=fg_map, search_map=search_map, uncertainty=un,
                    refine0=refs[0], deep=deep, routes=routes)


# ---- the reference loss (§6) -----------------------------------------------------------------
def sobel_edges(t):
    kx = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=t.dtype).view(1, 1, 3, 3)
    ky = kx.transpose(2, 3)
    return F.conv2d(t, kx, padding=1), F.conv2d(t, ky, padding=1)


def loss_terms(o, y):
    c = lambda t: torch.clamp(t, -15, 15)  # noqa: E731
    pred = c(o["pred"])
    p = torch.sigmoid(pred)
    T = {}
    T["bce"] = F.binary_cross_entropy_with_logits(pred, y)
    inter = (p * y).sum((1, 2, 3))
    union = p.sum((1, 2, 3)) + y.sum((1, 2, 3)) - inter
    T["iou"] = 1 - ((inter + 1e-5) / (union + 1e-5)).mean()
    gx, gy = sobel_edges(p)
    tx, ty = sobel_edges(y)
    pe = torch.sqrt(torch.clamp(gx ** 2 + gy ** 2, min=0) + 1e-5)
    te = torch.sqrt(tx ** 2 + ty ** 2 + 1e-5)
    T["edge"] = ((pe - te) ** 2).mean()
    box = torch.ones(1, 1, 3, 3, dtype=y.dtype) / 9
    dil = F.conv2d(y, box, padding=1)
    ero = 1 - F.conv2d(1 - y, box, padding=1)
    wgt = (1 + 4 * (dil - ero)).detach()
    T["boundary"] = (wgt * F.binary_cross_entropy_with_logits(pred, y, reduction="none")).mean()
    T["uncertainty"] = (torch.abs(p - y) * torch.log(1 / (o["uncertainty"] + 1e-8))).mean()
    cp = lambda t: torch.clamp(t, 1e-7, 1 - 1e-7)  # noqa: E731
    T["reverse_attention"] = F.binary_cross_entropy(cp(o["fg_map"]), y)
    T["search"] = F.binary_cross_entropy(cp(o["search_map"]), y)
    T["deep"] = sum(F.binary_cross_entropy_with_logits(
        c(d), F.interpolate(y, size=d.shape[2:], mode="bilinear", align_corners=False)) for d in o["deep"]) / 3
    T["refinement"] = 0.3 * F.binary_cross_entropy_with_logits(c(o["refine0"]), y)
    total = (2.0 * T["bce"] + 1.5 * T["iou"] + 1.0 * T["edge"] + 1.5 * T["boundary"] + 0.3 * T["uncertainty"] +
             0.8 * T["reverse_attention"] + 0.5 * T["search"] + 0.4 * T["deep"] + T["refinement"])
    if o["routes"]:
        T["balance"] = sum(r["lb_loss"] for r in o["routes"])
        total = total + T["balance"]
    return total, T


# ---- running it ------------------------------------------------------------------------------
def run(Pn, Bn, image, mask, variant, sparse, E, k, training, dtype=torch.float64):
    P = {n: torch.tensor(v, dtype=dtype, requires_grad=training) for n, v in Pn.items()}
    B = {n: torch.tensor(v, dtype=torch.int64 if n.endswith("num_batches_tracked") else dtype) for n, v in Bn.items()}
    x = torch.tensor(image, dtype=dtype, requires_grad=training)
    net = Net(P, B, variant, sparse, E, k, training)
    o = net.forward(x)
    res = dict(out=o, buffers=B)
    if training:
        total, T = loss_terms(o, torch.tensor(mask, dtype=dtype))
        total.backward()
        res.update(loss=total, terms=T, grads={n: t.grad if t.grad is not None else torch.zeros_like(t) for n, t in P.items()}, dimage=x.grad)
    return res


def npy(t):
    return t.detach().numpy()


def rel_err(ours, ref, floor=0.0):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    d = np.max(np.abs(ours - ref)) if ref.size else 0.0
    den = max(np.max(np.abs(ref)) if ref.size else 0.0, floor)
    return d / den if den > 0 else d


def eval_outputs(o):
    out = {f"output/eval/{n}": npy(o[n]) for n in ("pred", "fg_map", "search_map", "uncertainty", "refine0")}
    out.update({f"output/eval/deep{j}": npy(o["deep"][j]) for j in range(3)})
    for s, r in enumerate(o["routes"]):
        for n in ("logits", "probs", "topk_w"):
            out[f"output/eval/route{s}/{n}"] = npy(r[n])
        out[f"output/eval/route{s}/topk_idx"] = npy(r["topk_idx"]).astype(np.int32)
        out[f"output/eval/route{s}/lb_loss"] = np.array([float(r["lb_loss"])])
    return out


def train_outputs(r):
    out = {"output/train/pred": npy(r["out"]["pred"]), "output/train/loss": np.array([float(r["loss"])])}
    for n, v in r["terms"].items():
        out[f"output/train/loss_{n}"] = np.array([float(v)])
    for s, rt in enumerate(r["out"]["routes"]):
        for n in ("logits", "probs", "topk_w"):
            out[f"output/train/route{s}/{n}"] = npy(rt[n])
        out[f"output/train/route{s}/topk_idx"] = npy(rt["topk_idx"]).astype(np.int32)
        out[f"output/train/route{s}/lb_loss"] = np.array([float(rt["lb_loss"])])
    for n, v in r["buffers"].items():
        out["output/train/buffer/" + n] = npy(v)
    for n, g in r["grads"].items():
        out["grad/param/" + n] = npy(g)
    out["grad/input/image"] = npy(r["dimage"])
    return out


def fixture_config(meta):
    global ROUTE_GRID
    ROUTE_GRID = int(meta.get("route_grid", 4)) if meta.get("routing", "global") == "spatial" else 0
    return meta["backbone"], meta["mode"] == "sparse", int(meta.get("num_experts", 6)), int(meta.get("top_k", 2))


def to_float(o):
    """Autocast outputs as float32 for the loss (BCE on probabilities is not autocast-safe;
    the losses run in float32 as autocast would run them)."""
    if torch.is_tensor(o):
        return o.float() if o.is_floating_point() else o
    if isinstance(o, dict):
        return {n: to_float(v) for n, v in o.items()}
    if isinstance(o, (list, tuple)):
        return type(o)(to_float(v) for v in o)
    return o


def amp_dtype(name):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[name]


def cmd_prove_amp(a, T, meta, Pn, Bn, variant, sparse, E, k):
    """Autocast forward outputs on a GPU against the fixture: relative L2 per output, evaluation mode and one
    training-mode forward, each under the fixture's routing choices (camoxpert verify's bf16 rule compares under
    the same discrete decisions; where autocast's own top-k differs, that is reported). --record writes the errors
    into the fixture's metadata as bf16_ref_err/<tensor name>, where `camoxpert verify --precision bf16` finds
    them (src/cli/verify.h, VERIFY_BF16_AUTOCAST_RATIO)."""
    torch.set_default_device(a.device)
    outs, flips = {}, {}
    for mode in ("eval", "train"):
        if mode == "train" and "output/train/pred" not in T:
            continue
        P = {n: torch.tensor(v, dtype=torch.float32) for n, v in Pn.items()}
        B = {n: torch.tensor(v, dtype=torch.int64 if n.endswith("num_batches_tracked") else torch.float32)
             for n, v in Bn.items()}
        net = Net(P, B, variant, sparse, E, k, mode == "train")
        if sparse and f"output/{mode}/route0/topk_idx" in T:
            net.force = [torch.tensor(T[f"output/{mode}/route{s}/topk_idx"].astype(np.int64)) for s in range(4)]
        with torch.no_grad(), torch.autocast(device_type="cuda", dtype=amp_dtype(a.amp)):
            o = net.forward(torch.tensor(T["input/image"], dtype=torch.float32))
        flips[mode] = net.flips
        names = ("pred",) if mode == "train" else ("pred", "fg_map", "search_map", "uncertainty", "refine0")
        outs.update({f"output/{mode}/{m}": o[m] for m in names})
        if mode == "eval":
            outs.update({f"output/eval/deep{j}": o["deep"][j] for j in range(3)})
    dev = torch.cuda.get_device_name()
    errs = {}
    for n, v in outs.items():
        if n in T:
            ref = np.asarray(T[n], np.float64)
            got = v.float().detach().cpu().numpy().astype(np.float64)
            errs[n] = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
            print(f"  {n:<40} {a.amp} autocast on {dev}: relative L2 {errs[n]:.3e}")
    for mode, nf in flips.items():
        if nf:
            print(f"  {mode}: autocast's own top-k differed from the fixture's for {nf} units (forced to the fixture's)")
    if a.record:
        if a.amp != "bf16":
            raise SystemExit("prove --record: only bf16 errors are recorded (camoxpert verify's bf16 rule)")
        T2, meta2 = safetensors_io.load(a.fixture)
        meta2 = {n: v for n, v in meta2.items() if not n.startswith("bf16_ref")}
        meta2.update({f"bf16_ref_err/{n}": f"{e:.4e}" for n, e in errs.items()})
        meta2["bf16_ref"] = (f"PyTorch {torch.__version__} autocast bf16 on {dev}, relative L2 against this fixture "
                             f"under its routing choices (autocast's own differed for "
                             f"{', '.join(f'{nf} {m}' for m, nf in flips.items())} units)")
        safetensors_io.save(a.fixture, T2, meta2)   # (a temporary file renamed over it)
        print(f"recorded {len(errs)} autocast errors in {a.fixture} (bf16_ref_err/...)")
    return 0


def cmd_prove(a):
    T, meta = st_load(a.fixture)
    variant, sparse, E, k = fixture_config(meta)
    K = model_keys(variant, sparse, E)
    if meta.get("param_gen") == "splitmix22":
        Pn = {n: ent.gen_param(n, s, int(meta["param_seed"])) for n, s in K.params.items()}
    else:
        Pn = {n: T["param/" + n] for n in K.params}
        assert sorted(n[6:] for n in T if n.startswith("param/")) == sorted(K.params), "parameter keys differ"
    Bn = {n: T["buffer/" + n] for n in K.buffers}
    assert sorted(n[7:] for n in T if n.startswith("buffer/")) == sorted(K.buffers), "buffer keys differ"
    if a.amp != "none":
        return cmd_prove_amp(a, T, meta, Pn, Bn, variant, sparse, E, k)
    ours = eval_outputs(run(Pn, Bn, T["input/image"], None, variant, sparse, E, k, False)["out"])
    if "output/train/loss" in T:
        ours.update(train_outputs(run(Pn, Bn, T["input/image"], T["input/mask"], variant, sparse, E, k, True)))
    tf, tg = float(meta["rtol_fwd_f64"]), float(meta["rtol_grad_f64"])
    gmax = float(meta["grad_absmax"]) if "grad_absmax" in meta else \
        max((np.max(np.abs(v)) for n, v in T.items() if n.startswith("grad/")), default=0.0)
    floor = float(meta["grad_floor"]) * gmax
    worst, bad, n = 0.0, 0, 0
    for name, ref in T.items():
        if not name.startswith(("output/", "grad/")):
            continue
        if name not in ours:
            print(f"  {name:<60} missing from the twin")
            bad += 1
            continue
        g = name.startswith("grad/")
        tol = 0.0 if name.endswith("topk_idx") else tg if g else tf
        e = rel_err(ours[name], ref, floor if g else 0.0)
        n += 1
        worst = max(worst, e / tol if tol else (0.0 if e == 0 else np.inf))
        bad += e > tol
        if e > tol or a.verbose:
            print(f"  {name:<60} err {e:.3e}  tol {tol:.0e}")
    print(("FAIL" if bad else "PASS") + f": twin vs {a.fixture}: {n - bad}/{n} tensors within tolerance, "
          f"worst err/tol {worst:.3f}")
    return 1 if bad else 0


def cmd_make(a):
    global ROUTE_GRID
    ROUTE_GRID = a.route_grid if a.routing == "spatial" else 0
    variant, E, k = a.backbone, a.num_experts, a.top_k
    sparse = a.mode == "sparse"
    H, W = (int(s) for s in a.size.lower().split("x"))
    K = model_keys(variant, sparse, E)
    Pn = {n: ent.gen_param(n, s, a.seed) for n, s in K.params.items()}
    rs = np.random.RandomState(a.seed)
    Bn = {}
    for n, s in K.buffers.items():  # O(1) random BatchNorm state so evaluation mode shows every path
        if n.endswith("running_mean"):
            Bn[n] = (rs.randn(*s) * 0.5).astype(np.float32)
        elif n.endswith("running_var"):
            Bn[n] = rs.uniform(0.5, 2.0, s).astype(np.float32)
        else:
            Bn[n] = np.array(rs.randint(0, 100), dtype=np.int64)
    image = rs.randn(a.batch, 3, H, W).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    mask = np.zeros((a.batch, 1, H, W), np.float32)
    for b in range(a.batch):  # an ellipse per image, so every loss term is non-trivial
        cy, cx, ry, rx = rs.uniform(0.3, 0.7) * H, rs.uniform(0.3, 0.7) * W, rs.uniform(0.15, 0.35) * H, \
            rs.uniform(0.15, 0.35) * W
        mask[b, 0] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32)
    out = {"input/image": image, "input/mask": mask}
    for n, v in Bn.items():
        out["buffer/" + n] = v
    out.update(eval_outputs(run(Pn, Bn, image, None, variant, sparse, E, k, False)["out"]))
    tr = train_outputs(run(Pn, Bn, image, mask, variant, sparse, E, k, True))
    gmax = max(np.max(np.abs(v)) for n, v in tr.items() if n.startswith("grad/"))
    kept = 0
    for n, v in tr.items():
        if n.startswith("grad/param/"):
            key = n[11:]
            if not (v.size <= a.grad_max_numel or ".router." in key or key.startswith(tuple(a.grad_prefix or ()))):
                continue
            kept += 1
        out[n] = v
    meta = {
        "kind": "camoxpert", "mode": a.mode, "backbone": variant, "num_experts": str(E), "top_k": str(k),
        "layout": "NCHW activations, OIHW conv weights (PyTorch)", "computed_in": "float64",
        "bn_eps": "1e-05", "bn_momentum": "0.1",
        "rtol_fwd_f32": "0.0001", "rtol_fwd_f64": "1e-06", "rtol_grad_f64": "1e-06", "grad_floor": "0.0001",
        "param_gen": "splitmix22", "param_seed": str(a.seed), "grad_absmax": repr(float(gmax)),
        "grads_stored": f"{kept} of {len(K.params)} parameter gradients (every router's)",
        "semantics": "sparse: images grouped by expert (BatchNorm over the group), differentiable routing weights"
                     + ("; spatial routing: tiles routed, experts on halo windows, BatchNorm over the kept pixels "
                        "(docs/ROUTING.md)" if ROUTE_GRID else ""),
        "routing": a.routing, "route_grid": str(a.route_grid),
        "loss": "reference loss (reference/camoxpert.md section 6) + the MoE balance loss (weight 1)",
        "note": "made by tools/camoxpert_twin.py",
    }
    st_save(a.out, out, meta)
    nbytes = sum(np.asarray(v).nbytes for v in out.values())
    print(f"wrote {a.out}: {a.mode} {variant} E={E} k={k}, {a.batch}x3x{H}x{W}, {kept}/{len(K.params)} param grads, "
          f"{nbytes / 1e6:.2f} MB")
    return 0


def reference_module(variant, sparse, E):
    """An nn.Module with exactly the reference's parameters and buffers (names, shapes, dtypes)."""
    K = model_keys(variant, sparse, E)
    root = torch.nn.Module()

    def parent(key):
        m, parts = root, key.split(".")
        for p in parts[:-1]:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        return m, parts[-1]
    for n, s in K.params.items():
        m, leaf = parent(n)
        m.register_parameter(leaf, torch.nn.Parameter(torch.zeros(s)))
    for n, s in K.buffers.items():
        m, leaf = parent(n)
        m.register_buffer(leaf, torch.zeros(s, dtype=torch.int64 if leaf == "num_batches_tracked" else torch.float32))
    return root


def cmd_checkpoint(a):
    """Loads a camoxpert checkpoint into the reference's state_dict layout with strict=True."""
    T, meta = st_load(a.file)
    sparse = meta.get("model") == "CamoXpertSparseMoE"
    E = int(meta.get("num_experts", 6))
    mod = reference_module(meta["backbone"], sparse, E)
    sd = {n: torch.from_numpy(v) for n, v in T.items()}
    mod.load_state_dict(sd, strict=True)
    bad = [n for n, v in mod.state_dict().items() if v.dtype != sd[n].dtype]
    assert not bad, f"dtype differs: {bad[:3]}"
    print(f"PASS: {a.file}: {len(sd)} tensors load into {meta.get('model')} ({meta['backbone']}) with strict=True")
    return 0


def cmd_bench(a):
    torch.set_num_threads(a.threads)
    H, W = (int(s) for s in a.size.lower().split("x"))
    sparse = a.mode == "sparse"
    K = model_keys(a.backbone, sparse, a.num_experts)
    Pn = {n: ent.gen_param(n, s, 1) for n, s in K.params.items()}
    Bn = {n: (np.array(0, np.int64) if n.endswith("tracked") else np.zeros(s, np.float32) + n.endswith("var"))
          for n, s in K.buffers.items()}
    rs = np.random.RandomState(0)
    image = rs.randn(a.batch, 3, H, W).astype(np.float32)
    mask = (rs.rand(a.batch, 1, H, W) > 0.5).astype(np.float32)
    cuda = a.device.startswith("cuda")
    if cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 and a.device == "cuda":   # torchrun: this rank's GPU
        a.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(a.device)
    if cuda:
        torch.set_default_device(a.device)
        torch.backends.cudnn.benchmark = True
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    P = {n: torch.tensor(v, dtype=torch.float32).requires_grad_() for n, v in Pn.items()}
    if a.channels_last:
        P = {n: (t.detach().to(memory_format=mf).requires_grad_() if t.dim() == 4 else t) for n, t in P.items()}
    B = {n: torch.tensor(v, dtype=torch.int64 if n.endswith("tracked") else torch.float32) for n, v in Bn.items()}
    x = torch.tensor(image).to(memory_format=mf)
    y = torch.tensor(mask).to(memory_format=mf)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:   # the reference's --use-ddp: DDP over NCCL, one process per GPU
        import torch.distributed as dist

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.names = list(P)
                self.p = torch.nn.ParameterList([torch.nn.Parameter(P[n].detach()) for n in self.names])

            def forward(self, img):
                return Net(dict(zip(self.names, self.p)), B, a.backbone, sparse, a.num_experts, a.top_k, True).forward(img)

        if cuda:
            dist.init_process_group("nccl", device_id=torch.device(a.device))
        else:
            dist.init_process_group("gloo")
        net = torch.nn.parallel.DistributedDataParallel(Wrap(), find_unused_parameters=sparse)
        P = dict(zip(net.module.names, net.module.p))
        run = net
    else:
        def run(img):
            return Net(P, B, a.backbone, sparse, a.num_experts, a.top_k, True).forward(img)
    opt = torch.optim.AdamW(list(P.values()), lr=1e-4, weight_decay=1e-4, **({"fused": True} if cuda else {}))
    scaler = torch.amp.GradScaler("cuda", enabled=a.amp == "fp16") if hasattr(torch.amp, "GradScaler") else \
        torch.cuda.amp.GradScaler(enabled=a.amp == "fp16")
    times = []
    for i in range(a.warmup + a.iters):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=amp_dtype(a.amp if a.amp != "none"
                            else "bf16"), enabled=a.amp != "none"):
            o = run(x)
        total, _ = loss_terms(to_float(o), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(list(P.values()), 0.5)
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = sorted(times[a.warmup:])
    if cuda:
        mem = f"peak gpu memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB on {torch.cuda.get_device_name()}"
    else:
        import resource
        mem = f"peak rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    if world > 1:
        med = torch.tensor([t[len(t) // 2]], device=a.device)
        dist.all_reduce(med, op=dist.ReduceOp.MAX)   # the step is as slow as its slowest rank
        t = [float(med)] * len(t)
        dist.destroy_process_group()
        if rank:
            return 0
    ddp = f" DDP x{world}" if world > 1 else ""
    print(f"twin {a.mode} {a.backbone} batch {a.batch}{' per GPU' if world > 1 else ''} {H}x{W} {a.device} amp {a.amp}"
          f"{' channels_last' if a.channels_last else ''}{ddp} threads {a.threads}: train step median "
          f"{t[len(t) // 2] * 1e3:.1f} ms (min {t[0] * 1e3:.1f}, {a.batch * world / t[len(t) // 2]:.1f} img/s) {mem}")
    return 0


def cmd_ddpcmp(a):
    """fp32 training steps of the dense twin on the same global batches, written to --out (an .npz of the
    losses and final parameters): one process at --batch, or under torchrun each of WORLD_SIZE ranks on its
    slice of it through DistributedDataParallel (with --sync-bn: SyncBatchNorm's function and the global
    maximum). Compare runs with `ddpcmp-report`."""
    global SYNC_BN
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    cuda = a.device.startswith("cuda")
    if cuda:
        a.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(a.device)
        torch.backends.cuda.matmul.allow_tf32 = False   # float32 as float32: no TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = a.cudnn_benchmark
        torch.set_default_device(a.device)
    dev = torch.device(a.device)
    H = W = a.size
    K = model_keys(a.backbone, False, 6)
    Pn = {n: ent.gen_param(n, s, 1) for n, s in K.params.items()}
    B = {n: torch.tensor(np.array(0, np.int64) if n.endswith("tracked") else np.zeros(s, np.float32) + n.endswith("var"),
                         device=dev) for n, s in K.buffers.items()}
    names = list(Pn)
    if a.batch % world:
        raise SystemExit(f"--batch {a.batch} does not split over {world} ranks")
    b = a.batch // world
    SYNC_BN = a.sync_bn and world > 1
    if world > 1:
        import torch.distributed as dist

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.p = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(Pn[n], dtype=torch.float32, device=dev)) for n in names])

            def forward(self, img):
                return Net(dict(zip(names, self.p)), B, a.backbone, False, 6, 2, True).forward(img)

        dist.init_process_group("nccl" if cuda else "gloo", **({"device_id": dev} if cuda else {}))
        net = torch.nn.parallel.DistributedDataParallel(Wrap())
        params = list(net.module.p)
        run = net
    else:
        params = [torch.tensor(Pn[n], dtype=torch.float32, device=dev).requires_grad_() for n in names]

        def run(img):
            return Net(dict(zip(names, params)), B, a.backbone, False, 6, 2, True).forward(img)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
    losses = []
    for step in range(a.steps):
        rs = np.random.RandomState(1000 + step)   # the global batch of this step; this rank's slice of it
        img = rs.randn(a.batch, 3, H, W).astype(np.float32)
        noise = torch.tensor(rs.randn(a.batch, 1, H // 8, W // 8).astype(np.float32))
        mask = (F.interpolate(noise, size=(H, W), mode="bilinear", align_corners=False) > 0.3).float()
        x = torch.tensor(img[rank * b:(rank + 1) * b], device=dev)
        y = mask[rank * b:(rank + 1) * b].to(dev)
        total, _ = loss_terms(run(x), y)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        t = total.detach().double().reshape(1)
        if world > 1:
            dist.all_reduce(t)
            t /= world
        losses.append(float(t))
        if rank == 0:
            print(f"step {step + 1} loss {losses[-1]:.9g}", flush=True)
    if rank == 0:
        np.savez(a.out, losses=np.array(losses), **{n: p.detach().cpu().numpy() for n, p in zip(names, params)})
    if world > 1:
        dist.destroy_process_group()
    return 0


def cmd_ddpcmp_report(a):
    """Relative loss difference per step and relative L2 of the final parameters, run B against run A."""
    A, B = np.load(a.a), np.load(a.b)
    la, lb = A["losses"], B["losses"]
    rel = np.abs(la - lb) / np.abs(la)
    ks = [k for k in A.files if k != "losses"]
    num = sum(float(((A[k].astype(np.float64) - B[k]) ** 2).sum()) for k in ks)
    den = sum(float((A[k].astype(np.float64) ** 2).sum()) for k in ks)
    print(f"{a.what}: loss at step 1 {rel[0]:.1e}, worst over {len(rel)} steps {rel.max():.2e}; "
          f"parameters after them {(num / den) ** 0.5:.2e} relative L2")
    print("  per step:", " ".join(f"{r:.0e}" for r in rel))
    return 0


# ---- safetensors: tools/safetensors_io.py (floats stored as F32, I32 / I64 kept) -------------
def st_load(path):
    return ent.st_load(path)


def st_save(path, tensors, meta):
    arrays = {}
    for n, v in tensors.items():
        v = np.asarray(v)
        arrays[n] = v.astype(np.float32) if v.dtype.kind == "f" else v
    safetensors_io.save(path, arrays, meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("checkpoint")
    p.add_argument("file")
    p = sub.add_parser("prove")
    p.add_argument("fixture")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--record", action="store_true", help="with --amp bf16: write the errors into the fixture's "
                   "metadata (bf16_ref_err/<name>) for camoxpert verify's bf16 rule")
    for name in ("make", "bench"):
        p = sub.add_parser(name)
        p.add_argument("--mode", default="sparse", choices=("dense", "sparse"))
        p.add_argument("--backbone", default="edgenext_xx_small")
        p.add_argument("--num-experts", type=int, default=6)
        p.add_argument("--top-k", type=int, default=2)
        p.add_argument("--batch", type=int, default=4)
        p.add_argument("--size", default="64x64")
        if name == "make":
            p.add_argument("--out", required=True)
            p.add_argument("--seed", type=int, default=4)
            p.add_argument("--grad-max-numel", type=int, default=20000)
            p.add_argument("--grad-prefix", action="append")
            p.add_argument("--routing", default="global", choices=("global", "spatial"))
            p.add_argument("--route-grid", type=int, default=4)
        else:
            p.add_argument("--threads", type=int, default=os.cpu_count())
            p.add_argument("--warmup", type=int, default=1)
            p.add_argument("--iters", type=int, default=3)
            p.add_argument("--device", default="cpu")
            p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
            p.add_argument("--channels-last", action="store_true")
    p = sub.add_parser("ddpcmp")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", default="edgenext_xx_small")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16, help="the global batch (split over the ranks)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN picks algorithms by timing them")
    p = sub.add_parser("ddpcmp-report")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--what", default="B against A")
    a = ap.parse_args()
    torch.manual_seed(0)
    return {"prove": cmd_prove, "make": cmd_make, "bench": cmd_bench, "checkpoint": cmd_checkpoint,
            "ddpcmp": cmd_ddpcmp, "ddpcmp-report": cmd_ddpcmp_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
