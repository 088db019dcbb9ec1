"""The run loop: optimise a batch of images against an energy, following a recipe.

``optimize(features, recipe, size)`` takes a :class:`Recipe` (energy, parameterisation, transforms,
schedule) and nothing else. Every sample is independent: its terms' parameters, its optimiser's
hyperparameters, its seed and its jitter are its own, and every operation is per sample, so a batch gives
the same result as running its samples one at a time. Samples with different jitter amounts live on
canvases of different sizes (one tensor per group), but all their views go through the network in ONE
forward/backward pass. Nothing in the step loop waits on the device: the progress bar reads the energy
every few steps only.
"""
import contextlib
import os
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import torch
from tqdm.auto import tqdm

from ..fileio import atomic_path, remove_stale_temporaries
from .energy import State, Term, evaluate
from .optimizers import HOOKS, OPTIMIZERS
from .transforms import crop


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
    init: Optional[torch.Tensor] = None   # C x H x W start image (caricature); None -> the recipe's init
    reference: Optional[torch.Tensor] = None  # Phi(x0) unmasked, for the relative loss
    info: Dict[str, Any] = field(default_factory=dict)
    cfg: Any = None                       # this sample's settings (its trial's Config); None: the batch's


@dataclass
class Stage:
    iters: int
    scale: float = 1.0          # the learning-rate multiplier of this stage
    transforms: bool = True     # False: no transforms, the canvases are cut to their central H x W


@dataclass
class Schedule:
    """The optimiser, its per-sample hyperparameters (floats or length-N lists), hooks and stages.

    ``grad_scale``: "hw" steps on the gradient of H W * E (the canvas size), "rate" multiplies the rate by
    H W instead, "none" steps on the gradient of E (see optimizers.py)."""

    stages: List[Stage]
    optimizer: str = "adagrad"
    hyper: Dict[str, Any] = field(default_factory=dict)
    hooks: List[str] = field(default_factory=list)
    hook_params: Dict[str, Any] = field(default_factory=dict)
    grad_scale: str = "none"


@dataclass
class Recipe:
    energy: Term
    parameterization: Any
    transforms: List[Any] = field(default_factory=list)
    schedule: Schedule = None
    metrics: Dict[str, Term] = field(default_factory=dict)   # evaluated on the result, reported per sample


def _group(values):
    """Groups of sample indices with equal ``values`` (the canvas margin), in order of the value."""
    return [[i for i, v in enumerate(values) if v == m] for m in sorted(set(values))]


def _hyper(value, idx, like):
    """A per-sample hyperparameter for the samples ``idx``: a float, or a k x 1 x 1 x 1 tensor."""
    if isinstance(value, (list, tuple)):
        vals = [value[i] for i in idx]
        if len(set(vals)) == 1:
            return vals[0]
        return torch.tensor([float("inf") if v is None else float(v) for v in vals],
                            device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)
    return value


class _Loop:
    """The state of one optimisation: canvases, optimisers, transforms, curves, step counter."""

    def __init__(self, features, recipe, size, device, dtype, precision, checkpointed=False):
        self.features, self.recipe, self.size = features, recipe, tuple(size)
        self.device, self.dtype = device, dtype
        self.sched = recipe.schedule
        margins = [0] * len(recipe.parameterization.seeds)
        for t in recipe.transforms:
            margins = [max(a, b) for a, b in zip(margins, t.margins())]
        self.n = len(margins)
        self.groups = _group(margins)
        self.order = [i for g in self.groups for i in g]      # batch position -> sample index
        self.position = {i: p for p, i in enumerate(self.order)}
        self.canvases = recipe.parameterization.canvases(self.groups, margins, size, device, dtype)
        identity = self.order == list(range(self.n))
        self.inverse = None if identity else torch.tensor([self.position[i] for i in range(self.n)], device=device)
        self.total = sum(s.iters for s in self.sched.stages)
        self.curves = {k: torch.zeros(self.n, self.total, device=device, dtype=dtype) for k in ("energy", "data")}
        self.step = 0
        self.resumed_from = None
        self.in_step, self.pre_step = False, None
        self.checkpointed = checkpointed  # only then are the transforms' states kept before each step
        self.autocast = (torch.autocast(device.type, dtype=precision) if precision not in (None, torch.float32)
                         else contextlib.nullcontext())

    def start_stage(self, stage):
        if not stage.transforms:
            H, W = self.size
            self.canvases = [crop(c, None, H, W).contiguous() for c in self.canvases]
        s = self.sched
        self.opts, self.hooks = [], []
        for c, g in zip(self.canvases, self.groups):
            kw = {k: _hyper(v, g, c) for k, v in s.hyper.items()}
            self.opts.append(OPTIMIZERS.get_or_fail(s.optimizer)(**kw))
            self.hooks.append(SimpleNamespace(**{k: _hyper(v, g, c) for k, v in s.hook_params.items()}))
        for t in self.recipe.transforms:
            t.start(self.groups)
        hws = [float(c.shape[-1] * c.shape[-2]) for c in self.canvases]
        self.gains = [hw if s.grad_scale == "hw" else 1.0 for hw in hws]
        self.rates = [hw if s.grad_scale == "rate" else 1.0 for hw in hws]
        self.transforming = stage.transforms

    def views(self):
        v = self.canvases
        if self.transforming:
            for t in self.recipe.transforms:
                v = t(v, self.size)
        H, W = self.size
        return torch.cat([crop(c, None, H, W) if c.shape[-1] != W or c.shape[-2] != H else c for c in v])

    def state(self, x_in, canvases):
        """The State of views ``x_in`` (rows in group order) of ``canvases``: features in sample order."""
        with self.autocast:
            feats = self.features(x_in)
        if not isinstance(self.autocast, contextlib.nullcontext):
            feats = {k: v.to(self.dtype) for k, v in feats.items()}
        if self.inverse is not None:
            feats = {k: v.index_select(0, self.inverse) for k, v in feats.items()}
        return State(images=canvases, features=feats, n=self.n, index=self.groups, inverse=self.inverse)

    def state_dict(self):
        """Everything the next steps depend on (CPU copies), for a checkpoint."""
        return {"step": self.step, "canvases": [c.detach().cpu() for c in self.canvases],
                "optimizers": [o.state_dict() for o in self.opts],
                "transforms": self.pre_step if self.pre_step is not None and self.in_step else
                              [t.state() for t in self.recipe.transforms],
                "curves": {k: v[:, :self.step].cpu() for k, v in self.curves.items()}}

    def load_state(self, st):
        """Continue from a :meth:`state_dict` taken in the current stage."""
        self.step = int(st["step"])
        self.canvases = [c.to(self.device, self.dtype) for c in st["canvases"]]
        for o, s in zip(self.opts, st["optimizers"]):
            if isinstance(s, dict) and "state" not in s:  # the written-out optimizers: plain tensors
                s = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in s.items()}
            o.load_state_dict(s)  # torch.optim moves its own state to the parameter's device
        for t, s in zip(self.recipe.transforms, st["transforms"]):
            t.load_state(s)
        for k, v in st["curves"].items():
            self.curves[k][:, :v.shape[1]] = v.to(self.device, self.dtype)

    def one_step(self, stage):
        # the transforms' RNG states before this step's draws: an interruption inside the step saves these
        self.pre_step = ([t.state() for t in self.recipe.transforms] if self.checkpointed and self.transforming
                         else None)
        self.in_step = True
        for c in self.canvases:
            c.requires_grad_(True)
        parts = evaluate(self.recipe.energy, self.state(self.views(), self.canvases))
        grads = torch.autograd.grad(parts["energy"].sum(), self.canvases)
        with torch.no_grad():
            self.curves["energy"][:, self.step] = parts["energy"].detach()
            self.curves["data"][:, self.step] = parts["data"].detach()
            for c, g, opt, hp, gain, rate in zip(self.canvases, grads, self.opts, self.hooks, self.gains, self.rates):
                c.requires_grad_(False)
                opt.step(c, g, stage.scale, rate=rate, gain=gain)
                for h in self.sched.hooks:
                    HOOKS.get_or_fail(h)(c, g, hp)
        self.step += 1
        self.in_step = False


class Checkpoint:
    """Save the loop's state to ``path`` every ``every`` steps (and when interrupted), atomically; a later
    run of the same recipe on the same samples resumes from it (the caller keys ``path`` by the samples)."""

    def __init__(self, path, every=None):
        self.path, self.every = path, every

    def load(self):
        if not self.path or not os.path.isfile(self.path):
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # a damaged checkpoint (killed while an old torch wrote it): start again
            return None

    def save(self, state):
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with atomic_path(self.path) as tmp:
                torch.save(state, tmp)

    def remove(self):
        """Drop the checkpoint once its batch is done, with any temporary a killed writer left of it."""
        if self.path and os.path.isfile(self.path):
            os.remove(self.path)
        if self.path:
            remove_stale_temporaries(self.path)


def optimize(features, recipe, size, device="cpu", dtype=torch.float32, progress=True, desc="invert",
             precision=None, checkpoint=None):
    """Run ``recipe`` on its samples in one batch. Returns (list of result dicts in sample order, interrupted).

    ``features``: callable x -> {layer: tensor}; ``size``: (H, W) of the network input; ``precision``:
    None/float32, or torch.bfloat16 / torch.float16 to run the network's forward under autocast. Each result
    holds ``x`` (C x H x W, CPU), ``energy``/``loss`` curves (lists; loss: the data terms), the recipe's
    metrics (e.g. ``normalized_error``), ``iterations``, ``seconds``.
    """
    device = torch.device(device)
    loop = _Loop(features, recipe, size, device, dtype, precision, checkpointed=checkpoint is not None)
    saved = checkpoint.load() if checkpoint is not None else None
    every = max(1, loop.total // 50)
    bar = tqdm(total=loop.total, desc=desc, unit="step", disable=not progress, leave=False)
    interrupted = False
    t0 = time.perf_counter()
    start = 0
    try:
        for stage in recipe.schedule.stages:
            if stage.iters <= 0:
                continue
            loop.start_stage(stage)
            end = start + stage.iters
            if saved is not None and start <= saved["step"] <= end:  # saved in this stage (or at its last step)
                loop.load_state(saved)
                loop.resumed_from, saved = loop.step, None
            while loop.step < end:
                loop.one_step(stage)
                if checkpoint is not None and checkpoint.every and loop.step % checkpoint.every == 0:
                    checkpoint.save(loop.state_dict())
                if progress and (loop.step % every == 0 or loop.step == loop.total):  # .item() syncs
                    bar.set_postfix(energy=f"{loop.curves['energy'][:, loop.step - 1].mean().item():.4g}",
                                    refresh=False)
                    bar.update(loop.step - bar.n)
            start = end
    except KeyboardInterrupt:
        interrupted = True
        if checkpoint is not None:
            checkpoint.save(loop.state_dict())
    finally:
        bar.close()
    return _results(loop, recipe, t0), interrupted


def _results(loop, recipe, t0):
    H, W = loop.size
    with torch.no_grad():
        centre = [crop(c.detach(), None, H, W) for c in loop.canvases]
        x = torch.cat(centre)
        st = loop.state(x, centre) if recipe.metrics else None
        metrics = {k: t.value(st).cpu().tolist() for k, t in recipe.metrics.items()}
        if loop.device.type == "cuda":
            torch.cuda.synchronize(loop.device)
        seconds = time.perf_counter() - t0
        x = x.cpu()
        cE, cL = (loop.curves[k][:, :loop.step].cpu() for k in ("energy", "data"))
    results = []
    for i in range(loop.n):
        p = loop.position[i]
        r = {"x": x[p], "iterations": loop.step, "seconds": seconds, "batch_size": loop.n,
             "resumed_from": loop.resumed_from,
             "energy": cE[i].tolist(), "loss": cL[i].tolist()}  # curves and metrics are in sample order
        for k, v in metrics.items():
            r[k] = None if v[i] != v[i] else v[i]
        results.append(r)
    return results
