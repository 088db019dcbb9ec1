"""The run loop: optimise a batch of images (many images x seeds x layers at once) against their targets.

Everything a sample needs (its target, mask, normaliser, loss weight C, jitter T, seed) is its own, and
every operation is per sample, so a batch gives the same result as running its samples one at a time.
Samples with different jitter amounts T live on canvases of different sizes; each such group has its
own canvas tensor, but all their crops go through the network in ONE forward/backward pass.
"""
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

from . import objectives as obj_mod
from .optimizers import HOOKS, make as make_optimizer
from .regularizers import REGULARIZERS
from .transforms import Jitter, central_offset, crop


@dataclass
class Sample:
    """One optimisation problem: reconstruct (or maximise) ``target`` at feature ``layer``."""

    layer: str
    target: torch.Tensor                  # Phi0, the feature's shape without batch
    seed: int = 0
    mask: Optional[torch.Tensor] = None   # 0/1, broadcastable to target
    C: float = 1.0
    T: int = 1
    z: Optional[float] = None             # objective normaliser override
    init: Optional[torch.Tensor] = None   # C x H x W start image (caricature); None -> cfg.init
    reference: Optional[torch.Tensor] = None  # Phi(x0) unmasked, for the relative loss
    info: Dict[str, Any] = field(default_factory=dict)


def init_noise(shape, seed, scale, dtype):
    """Uniform noise in [-1, 1], rescaled so its 95th percentile is ``scale`` (from a per-seed CPU RNG)."""
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    return (u * (scale / torch.quantile(u.flatten(), 0.95))).to(dtype)


def _canvas_from(img, T):
    p = T - 1
    if p == 0:
        return img.clone()
    top, left = central_offset(T), central_offset(T)
    return torch.nn.functional.pad(img[None], (left, p - left, top, p - top), mode="replicate")[0]


def _reg_params(fn, params):
    names = inspect.signature(fn).parameters
    return {k: v for k, v in params.items() if k in names}


class _Interrupted(Exception):
    pass


def optimize(features, samples, cfg, size, device="cpu", dtype=torch.float32, progress=True, desc="invert",
             channels=3):
    """Run ``cfg``'s schedule on all ``samples`` in one batch. Returns (list of result dicts, interrupted).

    ``features``: callable x -> {layer: tensor}; ``size``: (H, W) of the network input. Each result holds
    ``x`` (C x H x W, CPU), ``energy``/``loss`` curves (lists), ``normalized_error``, ``relative_loss``,
    ``iterations``, ``seconds``.
    """
    device = torch.device(device)
    H, W = size
    n = len(samples)
    init_scale = cfg.init_scale if cfg.init_scale is not None else cfg.B / 3 ** 0.5
    params = cfg.params()
    regs = [(REGULARIZERS.get_or_fail(name), w) for name, w in cfg.weights.items() if w]
    regs = [(fn, w, _reg_params(fn, params)) for fn, w in regs]
    objective = obj_mod.OBJECTIVES.get_or_fail(cfg.objective)
    hooks = [HOOKS.get_or_fail(h) for h in cfg.hooks]

    # groups of samples sharing a canvas size (one per jitter amount T)
    Ts = [s.T if cfg.jitter else 1 for s in samples]
    groups = []  # (T, [sample indices])
    for T in sorted(set(Ts)):
        groups.append((T, [i for i in range(n) if Ts[i] == T]))
    order = [i for _, idx in groups for i in idx]          # batch position -> sample index
    position = {i: p for p, i in enumerate(order)}

    def start(i, T):
        s = samples[i]
        if s.init is not None:
            img = s.init.to(dtype)
        elif cfg.init == "zeros":
            img = torch.zeros(channels, H, W, dtype=dtype)
        else:
            return init_noise((channels, H + T - 1, W + T - 1), s.seed, init_scale, dtype)
        return _canvas_from(img, T)

    canvases = [torch.stack([start(i, T) for i in idx]).to(device) for T, idx in groups]

    # per-layer targets in batch order
    layers = {}
    for p, i in enumerate(order):
        layers.setdefault(samples[i].layer, []).append(p)
    targets = {}
    for layer, pos in layers.items():
        t = torch.stack([samples[order[p]].target for p in pos]).to(device, dtype)
        ms = [samples[order[p]].mask for p in pos]
        mask = None
        if any(m is not None for m in ms):
            mask = torch.stack([torch.ones(t.shape[1:]) if m is None else torch.broadcast_to(m, t.shape[1:])
                                for m in ms]).to(device, dtype)
        zs = [cfg.z if samples[order[p]].z is None else samples[order[p]].z for p in pos]  # --set z=...
        z = obj_mod.normaliser(cfg.objective, t, mask)
        if any(v is not None for v in zs):
            z = torch.where(torch.tensor([v is not None for v in zs], device=device),
                            torch.tensor([v or 1.0 for v in zs], device=device, dtype=dtype), z)
        C = torch.tensor([samples[order[p]].C for p in pos], device=device, dtype=dtype)
        targets[layer] = (torch.tensor(pos, device=device), t, mask, z, C)

    stages = [(cfg.iters, 1.0, cfg.jitter), (cfg.fine_iters, cfg.fine_scale, False)]
    total = sum(k for k, _, _ in stages)
    curves_E = torch.zeros(n, total, device=device, dtype=dtype)
    curves_L = torch.zeros(n, total, device=device, dtype=dtype)
    every = max(1, total // 50)
    seeds_of = [[samples[i].seed for i in idx] for _, idx in groups]
    no_reg = [torch.zeros(len(idx), device=device, dtype=dtype) for _, idx in groups]  # sum()'s start, per group

    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)
    interrupted = False
    step = 0
    t0 = time.perf_counter()
    try:
        for iters, scale, jitter in stages:
            if iters <= 0:
                continue
            if not jitter:  # no jitter from here on: keep only the central crops
                canvases = [crop(c, None, H, W).contiguous() for c in canvases]
            opts = [make_optimizer(cfg.optimizer, cfg) for _ in canvases]
            jit = [Jitter(c.shape[-1] - W + 1, sd) for c, sd in zip(canvases, seeds_of)]
            hws = [float(c.shape[-1] * c.shape[-2]) for c in canvases]  # the H W factor of each canvas's gradient
            gains = [hw if cfg.grad_scale == "hw" else 1.0 for hw in hws]
            rates = [hw if cfg.grad_scale == "rate" else 1.0 for hw in hws]
            for _ in range(iters):
                for c in canvases:
                    c.requires_grad_(True)
                x_in = torch.cat([crop(c, j.offsets(), H, W) for c, j in zip(canvases, jit)])
                feats = features(x_in)
                loss = torch.zeros(n, device=device, dtype=dtype)
                for layer, (pos, t, mask, z, C) in targets.items():
                    phi = feats[layer].index_select(0, pos) if len(pos) != n else feats[layer]
                    loss = loss.index_add(0, pos, C * objective(phi, t, mask, z))
                reg = torch.cat([sum((w * fn(c, **kw) for fn, w, kw in regs), z0) for c, z0 in zip(canvases, no_reg)])
                energy = loss + reg
                grads = torch.autograd.grad(energy.sum(), canvases)
                with torch.no_grad():
                    curves_E[:, step] = energy.detach()
                    curves_L[:, step] = loss.detach()
                    for c, g, opt, gain, rate in zip(canvases, grads, opts, gains, rates):
                        c.requires_grad_(False)
                        opt.step(c, g, scale, rate=rate, gain=gain)
                        for hook in hooks:
                            hook(c, g, cfg)
                step += 1
                if progress and (step % every == 0 or step == total):  # .item() syncs: only for a visible bar
                    bar.set_postfix(energy=f"{curves_E[:, step - 1].mean().item():.4g}", refresh=False)
                    bar.update(step - bar.n)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()

    with torch.no_grad():
        x = torch.cat([crop(c.detach(), None, H, W) for c in canvases])
        feats = features(x)
        err = torch.zeros(n, device=device, dtype=dtype)
        rel = torch.full((n,), float("nan"), device=device, dtype=dtype)
        for layer, (pos, t, mask, z, C) in targets.items():
            phi = feats[layer].index_select(0, pos)
            err[pos] = obj_mod.normalized_error(phi, t, mask)
            refs = [samples[order[p]].reference for p in pos.tolist()]
            if all(r is not None for r in refs):
                rel[pos] = obj_mod.relative_loss(phi, torch.stack(refs).to(device, dtype))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        x = x.cpu()
        err, rel = err.cpu().tolist(), rel.cpu().tolist()
        cE, cL = curves_E[:, :step].cpu(), curves_L[:, :step].cpu()

    results = []
    for i in range(n):
        p = position[i]
        results.append({"x": x[p], "normalized_error": err[p], "relative_loss": None if rel[p] != rel[p] else rel[p],
                        "iterations": step, "seconds": seconds, "batch_size": n,
                        "energy": cE[p].tolist(), "loss": cL[p].tolist()})
    return results, interrupted
