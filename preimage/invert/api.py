"""The Python API behind ``preimage invert``, ``maximize`` and ``caricature``.

    >>> from preimage.invert import api
    >>> run = api.invert("alexnet.onnx", layers=["conv3", "fc8"], seeds=2, device="auto")
    >>> run.write("out/")            # PNGs, grid.png, metrics.json, index.html
    >>> run.results[0]["normalized_error"]

``model`` may also be a FeatureExtractor or any callable x -> {name: tensor} (then pass ``preprocess`` and
``size`` if it carries no metadata). Images default to the bundled sample photographs.
"""
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

import torch

from ..device import resolve_device
from ..errors import PreimageError
from ..models import samples as bundled
from . import engine, masks as mask_mod, presets
from .model import check_layers, open_model
from .report import write_report
from .transforms import jitter_amount


@dataclass
class Run:
    """The outcome of one command: per image/layer/seed results plus what is needed to draw them."""

    kind: str
    model: Any
    config: presets.Config
    images: List[str]                       # image names (rows of the grid)
    originals: Optional[torch.Tensor]       # N x C x H x W network-space inputs, or None (maximize)
    layers: List[str]
    seeds: List[int]
    results: List[Dict] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    device: str = "cpu"

    def write(self, out_dir, title=None):
        return write_report(self, out_dir, title=title)


def _seeds(seeds):
    if isinstance(seeds, int):
        return list(range(seeds))
    return [int(s) for s in seeds]


def _config(preset, overrides, **direct):
    cfg = preset if isinstance(preset, presets.Config) else presets.get(preset)
    for k, v in (overrides or {}).items():
        cfg = presets.coerce(cfg, k, v) if isinstance(v, str) else cfg.replace(**{k: v})
    direct = {k: v for k, v in direct.items() if v is not None}
    return cfg.replace(**direct) if direct else cfg


def _image_names(paths):
    names, seen = [], {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(os.fspath(p)))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _prepare(model, layers, images, device, preprocess, size):
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise PreimageError("give at least one layer", where="--layer")
    device = resolve_device(device)
    m = open_model(model, layers, device, preprocess=preprocess)
    size = list(size or m.input_size or [])
    if len(size) != 2:
        raise PreimageError("the model does not say its input size; pass size=(H, W) / --size", where="--size")
    m = replace(m, input_size=size)  # never change a Model the caller passed in
    if isinstance(images, (str, os.PathLike)):  # one path, not its characters
        images = [images]
    paths = list(images) if images else bundled.paths()
    x0 = m.preprocess.load(paths, size).to(device, m.dtype) if paths else None
    return m, list(layers), device, paths, x0


def _features(m, x, batch=16):
    out = {}
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            try:
                f = m.features(x[i:i + batch])
            except RuntimeError as e:  # e.g. a --size the model's fc layers cannot take
                if isinstance(e, torch.OutOfMemoryError):
                    raise
                h, w = x.shape[-2:]
                raise PreimageError(f"the model does not run on {h}x{w} inputs ({str(e).splitlines()[0]}); "
                                    "use the model's own input size (leave out --size)", where="--size") from None
            for k, v in f.items():
                out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def _run_batches(m, kind, cfg, samples, names, x0, layers, seeds, device, batch_size, progress):
    run = Run(kind=kind, model=m, config=cfg, images=names, originals=None if x0 is None else x0.cpu(),
              layers=layers, seeds=seeds, device=str(device))
    bs = batch_size or len(samples)
    t0 = time.perf_counter()
    chunks = [samples[i:i + bs] for i in range(0, len(samples), bs)]
    for k, chunk in enumerate(chunks):
        desc = f"{kind} {k + 1}/{len(chunks)}" if len(chunks) > 1 else kind
        res, interrupted = engine.optimize(m.features, chunk, cfg, m.input_size, device=device, dtype=m.dtype,
                                           progress=progress, desc=desc)
        for s, r in zip(chunk, res):
            r.update(s.info)
            r.update(layer=s.layer, seed=s.seed, C=s.C, T=s.T if cfg.jitter else 1)
            run.results.append(r)
        if interrupted:
            run.interrupted = True
            break
    run.seconds = time.perf_counter() - t0
    return run


def _common(m, layers, cfg, feats):
    info = {}
    for layer in layers:
        shape = tuple(feats[layer].shape[1:])
        C = cfg.C if cfg.C is not None else (presets.mahendran_C(layer, m.layers) if cfg.preset == "mahendran2016" else 1.0)
        T = cfg.T if cfg.T is not None else jitter_amount(m.stride(layer, shape))
        info[layer] = (shape, C, T)
    return info


def _from_images(kind, model, layers, images, preset, seeds, iters, masks, device, overrides, batch_size, preprocess,
                 size, progress, caricature=False):
    """invert and caricature: one sample per layer x image x seed, the target from the image's features."""
    m, layers, device, paths, x0 = _prepare(model, layers, images, device, preprocess, size)
    if x0 is None:
        raise PreimageError(f"no images to {kind} (and no bundled samples found)")
    cfg = _config(preset, overrides, iters=iters)
    if caricature:
        cfg = cfg.replace(objective="inner", init="image")
    feats = _features(m, x0)
    check_layers(feats, layers)
    seeds = _seeds(seeds)
    names = _image_names(paths)
    info = _common(m, layers, cfg, feats)
    samples = []
    for layer in layers:
        shape, C, T = info[layer]
        mask = mask_mod.combine(masks, shape) if masks else None
        for i, name in enumerate(names):
            phi0 = feats[layer][i]
            for s in seeds:
                samples.append(engine.Sample(layer, phi0.clamp_min(0) if caricature else phi0, seed=s, mask=mask, C=C,
                                             T=T, init=x0[i].cpu() if caricature else None, reference=phi0,
                                             info={"image": name}))
    return _run_batches(m, kind, cfg, samples, names, x0, layers, seeds, device, batch_size, progress)


def invert(model, layers, images=None, *, preset="mahendran2016", seeds=1, iters=None, masks=None,
           device="auto", overrides=None, batch_size=None, preprocess=None, size=None, progress=True):
    """Reconstruct each image from each layer's features, for each seed (natural pre-images)."""
    return _from_images("invert", model, layers, images, preset, seeds, iters, masks, device, overrides, batch_size,
                        preprocess, size, progress)


def caricature(model, layers, images=None, *, preset="mahendran2016", seeds=1, iters=None, masks=None,
               device="auto", overrides=None, batch_size=None, preprocess=None, size=None, progress=True):
    """Exaggerate what each layer sees: Phi0 = max(0, Phi(x0)), inner-product loss / ||Phi0||, start at x0."""
    return _from_images("caricature", model, layers, images, preset, seeds, iters, masks, device, overrides,
                        batch_size, preprocess, size, progress, caricature=True)


def maximize(model, layers, units, images=None, *, preset="mahendran2016", seeds=1, iters=None, device="auto",
             overrides=None, batch_size=None, preprocess=None, size=None, progress=True):
    """Activation maximization: Phi0 = e_unit (the channel's centre location for conv features), loss
    -<Phi, e> / (M rho^2), M = the unit's largest value on ``images`` (default: the bundled photos),
    rho = the layer's receptive-field size; C = 1, start from noise."""
    m, layers, device, paths, x0 = _prepare(model, layers, images, device, preprocess, size)
    cfg = _config(preset, overrides, iters=iters).replace(objective="inner")
    cfg = cfg.replace(C=cfg.C if cfg.C is not None else 1.0)
    if isinstance(units, int):
        units = [units]
    seeds = _seeds(seeds)
    feats = _features(m, x0) if x0 is not None else _features(m, torch.zeros(1, 3, *m.input_size, device=device, dtype=m.dtype))
    check_layers(feats, layers)
    info = _common(m, layers, cfg, feats)
    samples = []
    for layer in layers:
        shape, C, T = info[layer]
        for u in units:
            if not 0 <= u < shape[0]:
                raise PreimageError(f"unit {u} outside 0..{shape[0] - 1} of layer {layer!r}", where="--unit")
            target = torch.zeros(shape, dtype=m.dtype)
            if len(shape) == 3:
                target[u, shape[1] // 2, shape[2] // 2] = 1
                acts = feats[layer][:, u, shape[1] // 2, shape[2] // 2]
            else:
                target[(u,) + (0,) * (len(shape) - 1)] = 1
                acts = feats[layer].reshape(feats[layer].shape[0], shape[0], -1)[:, u, 0]
            M = float(acts.max()) if x0 is not None else 0.0
            M = M if M > 0 else 1.0
            z = M * float(m.rf_size(layer)) ** 2
            for s in seeds:
                samples.append(engine.Sample(layer, target, seed=s, C=cfg.C, T=T, z=z,
                                             info={"image": f"unit{u}", "unit": u, "M": M}))
    names = [f"unit{u}" for u in units]
    run = _run_batches(m, "maximize", cfg, samples, names, None, layers, seeds, device, batch_size, progress)
    for s, r in zip(samples, run.results):
        # the unit's value at the last step (no jitter then): loss = -<Phi, e> / Z; the error is meaningless
        r["activation"] = -r["loss"][-1] * s.z if r["loss"] else None
        r["normalized_error"] = None
    return run
