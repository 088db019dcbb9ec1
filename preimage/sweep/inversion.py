"""Inversion trials: run many parameter sets (trials) of ``invert`` / ``maximize`` / ``caricature`` on one
image set and score each.

With the batched-trials API (``api.invert(..., trials=[{...}, ...])``) every trial x image x seed x layer
is ONE optimisation batch; without it, trials run one after another through ``overrides=``. Both give
the same numbers.
"""
import inspect
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import PreimageError
from ..registry import Registry

SCORES = Registry("sweep objective")


@SCORES.register("relative_loss")
def relative_loss(results):
    """Mean relative loss ||Phi(x) - Phi(x0)|| / (||Phi(x)|| + ||Phi(x0)||) (the PoseNet study's)."""
    return _mean(r.get("relative_loss") for r in results)


@SCORES.register("normalized_error")
def normalized_error(results):
    """Mean normalised error ||Phi(x*) - Phi0|| / ||Phi0|| (Mahendran & Vedaldi's)."""
    return _mean(r.get("normalized_error") for r in results)


@SCORES.register("activation")
def activation(results):
    """Maximisation: minus the mean reached activation in units of the unit's natural maximum M."""
    return -_mean(r["activation"] / r["M"] if r.get("activation") is not None and r.get("M") else None for r in results)


@SCORES.register("final_loss")
def final_loss(results):
    """Mean loss term at the last step (caricatures: -<Phi(x), Phi0> / ||Phi0||)."""
    return _mean(r["loss"][-1] if r.get("loss") else None for r in results)


DEFAULT_SCORE = {"invert": "relative_loss", "caricature": "final_loss", "maximize": "activation"}


def _mean(values):
    v = [float(x) if x is not None else math.nan for x in values]
    if not v:
        return math.nan
    return float(np.mean(v))


def has_batched_trials(kind="invert"):
    from ..invert import api

    return "trials" in inspect.signature(getattr(api, kind)).parameters


@dataclass
class Target:
    """What every trial of one sweep shares: the model (opened once), layers, images, method."""

    kind: str                               # invert | maximize | caricature
    model: Any                              # path, FeatureExtractor, callable or an opened invert.model.Model
    layers: List[str]
    images: Optional[List[str]] = None
    units: Optional[List[int]] = None       # maximize
    preset: str = "mahendran2016"
    seeds: int = 1
    iters: Optional[int] = None
    masks: Optional[List[str]] = None
    overrides: Dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    score: Optional[str] = None
    preprocess: Any = None
    size: Any = None

    def __post_init__(self):
        if self.kind not in DEFAULT_SCORE:
            raise PreimageError(f"unknown sweep kind {self.kind!r}; expected invert, maximize or caricature")
        self.score = self.score or DEFAULT_SCORE[self.kind]
        SCORES.get_or_fail(self.score)
        if self.kind == "maximize" and not self.units:
            raise PreimageError("a maximize sweep needs --unit", where="--unit")

    def open(self):
        """Open the model once for all batches (on the device)."""
        from ..device import resolve_device
        from ..invert.model import open_model

        self.device = str(resolve_device(self.device))
        self.model = open_model(self.model, self.layers, self.device, preprocess=self.preprocess)
        return self


def check(target, space):
    """Refuse an unknown --set key or searched name before any study is opened (one line, from presets)."""
    from ..invert import presets

    cfg = presets.get(target.preset)
    for k, v in target.overrides.items():
        cfg = presets.coerce(cfg, k, _text(v))
    for p in space:
        probe = p.value if p.kind == "fixed" else p.choices[0] if p.kind == "choice" else p.low
        presets.coerce(cfg, p.name, _text(int(probe) if p.kind in ("int", "intlog") else probe))


def _text(v):
    """A --set value as api.invert's overrides take it (exact for floats: repr round-trips)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _call(target, overrides, trials=None, progress=False):
    from ..invert import api

    kw = dict(preset=target.preset, seeds=target.seeds, iters=target.iters, device=target.device,
              overrides=overrides, preprocess=target.preprocess, size=target.size, progress=progress)
    if trials is not None:
        kw["trials"] = trials
    if target.kind == "maximize":
        return api.maximize(target.model, target.layers, target.units, target.images, **kw)
    if target.masks and target.kind == "invert":
        kw["masks"] = target.masks
    fn = api.invert if target.kind == "invert" else api.caricature
    return fn(target.model, target.layers, target.images, **kw)


def run_trials(target, param_sets, batched=None, progress=False):
    """Run every parameter dict of ``param_sets``; returns (runs, interrupted) with ``runs[k]`` the list of
    result dicts of trial k (None for a trial cut short by Ctrl-C) and the Run objects for pictures.

    ``batched``: None = use the batched-trials API when it is there; False forces one run per trial."""
    base = {k: _text(v) for k, v in target.overrides.items()}
    if batched is None:
        batched = has_batched_trials(target.kind)
    if batched:
        run = _call(target, base, trials=[dict(p) for p in param_sets], progress=progress)
        per = [[] for _ in param_sets]
        for r in run.results:
            per[r["trial"]].append(r)
        if run.interrupted:
            return [None] * len(param_sets), [run] * len(param_sets), True
        return per, [run] * len(param_sets), False
    out, runs = [], []
    for p in param_sets:
        run = _call(target, {**base, **{k: _text(v) for k, v in p.items()}}, progress=progress)
        if run.interrupted:
            out.extend([None] * (len(param_sets) - len(out)))
            runs.extend([run] * (len(param_sets) - len(runs)))
            return out, runs, True
        out.append(run.results)
        runs.append(run)
    return out, runs, False


def score(target, results):
    v = SCORES[target.score](results)
    return v if math.isfinite(v) else math.inf  # a diverged trial (NaN/inf image) ranks last, it still counts


KEEP = ("image", "layer", "seed", "unit", "normalized_error", "relative_loss", "activation", "M", "C", "iterations",
        "seconds", "batch_size")


def summarize(results):
    """JSON-able per-result numbers (no tensors, no curves) for the study's user attributes."""
    out = []
    for r in results:
        d = {}
        for k in KEEP:
            v = r.get(k)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            if v is not None:
                d[k] = v
        d["final_loss"] = float(r["loss"][-1]) if r.get("loss") and math.isfinite(r["loss"][-1]) else None
        out.append(d)
    return out


def save_pictures(run, results, folder):
    """Each result's image as folder/<image>__<layer>__s<seed>.png; returns the file names."""
    import torch

    from .. import plots
    from ..invert.report import result_png

    if not results:
        return []
    xs = torch.stack([r["x"] for r in results])
    xs = torch.nan_to_num(xs, nan=0.0, posinf=1e6, neginf=-1e6)
    names = []
    for r, img in zip(results, run.model.preprocess.to_uint8(xs)):
        name = os.path.basename(result_png(r))
        plots.save_png(os.path.join(folder, name), img)
        names.append(name)
    return names
