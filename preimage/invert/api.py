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
from .graphs import graphed
from .window import windowed


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


def seed_list(seeds):
    if isinstance(seeds, int):
        return list(range(seeds))
    return [int(s) for s in seeds]


def settings(preset, overrides, **direct):
    cfg = preset if isinstance(preset, presets.Config) else presets.get(preset)
    for k, v in (overrides or {}).items():
        cfg = presets.coerce(cfg, k, v) if isinstance(v, str) else cfg.replace(**{k: v})
    direct = {k: v for k, v in direct.items() if v is not None}
    return cfg.replace(**direct) if direct else cfg


def image_names(paths):
    names, seen = [], {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(os.fspath(p)))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def prepare(model, layers, images, device, preprocess, size):
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


def features_of(m, x, batch=16):
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


PRECISIONS = {"float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
              "float16": torch.float16, "fp16": torch.float16}


def precision_of(cfg):
    if cfg.precision not in PRECISIONS:
        raise PreimageError(f"precision={cfg.precision!r}: expected one of float32, bfloat16, float16",
                            where="--precision")
    return PRECISIONS[cfg.precision]


def _chunks(samples, batch_size):
    """Batches of at most ``batch_size`` samples, each of one structure (trials may differ in iters...)."""
    keyed = {}
    for s in samples:
        keyed.setdefault(tuple(repr(getattr(s.cfg, k)) for k in presets.STRUCTURAL), []).append(s)
    out = []
    for group in keyed.values():
        bs = batch_size or len(group)
        out += [group[i:i + bs] for i in range(0, len(group), bs)]
    return out


def run_batches(m, kind, cfg, samples, names, x0, layers, seeds, device, batch_size, progress, features=None):
    run = Run(kind=kind, model=m, config=cfg, images=names, originals=None if x0 is None else x0.cpu(),
              layers=layers, seeds=seeds, device=str(device))
    t0 = time.perf_counter()
    chunks = _chunks(samples, batch_size)
    features = graphed(features or m.features, device, cfg.cuda_graphs)
    for k, chunk in enumerate(chunks):
        desc = f"{kind} {k + 1}/{len(chunks)}" if len(chunks) > 1 else kind
        recipe = presets.recipe(chunk[0].cfg, chunk)
        res, interrupted = engine.optimize(features, recipe, m.input_size, device=device, dtype=m.dtype,
                                           progress=progress, desc=desc, precision=precision_of(chunk[0].cfg))
        for s, r in zip(chunk, res):
            r.update(s.info)
            r.update(layer=s.layer, seed=s.seed, C=s.C, T=s.T if s.cfg.jitter else 1)
            run.results.append(r)
        if interrupted:
            run.interrupted = True
            break
    order = {id(s): i for i, s in enumerate(samples)}  # results in the samples' order, whatever the batching
    flat = [s for c in chunks for s in c][:len(run.results)]
    run.results = [r for _, r in sorted(zip([order[id(s)] for s in flat], run.results), key=lambda p: p[0])]
    run.seconds = time.perf_counter() - t0
    return run


def _common(m, layers, cfg, feats):
    """(feature shape, C, T) per layer: C from the config or the preset's rule, T from the geometry."""
    info = {}
    for layer in layers:
        shape = tuple(feats[layer].shape[1:])
        C = presets.default_C(cfg, layer, m)
        T = cfg.T if cfg.T is not None else jitter_amount(m.stride(layer, shape))
        info[layer] = (shape, C, T)
    return info


def _trial_configs(cfg, trials):
    """[(trial index or None, Config)]: the run's config, or one per trial (its --set overrides applied)."""
    if trials is None:
        return [(None, cfg)]
    out = []
    for k, t in enumerate(trials):
        c = cfg
        for key, v in (t or {}).items():
            c = presets.coerce(c, key, v if isinstance(v, str) else repr(v) if isinstance(v, bool) else str(v))
        out.append((k, c))
    return out


def image_samples(m, cfg, layers, names, x0, feats, seeds, masks=None, caricature=False, trials=None):
    """One Sample per trial x layer x image x seed (the targets from the images' features ``feats``)."""
    samples = []
    for trial, tcfg in _trial_configs(cfg, trials):
        info = _common(m, layers, tcfg, feats)
        for layer in layers:
            shape, C, T = info[layer]
            mask = mask_mod.combine(masks, shape) if masks else None
            for i, name in enumerate(names):
                phi0 = feats[layer][i]
                for s in seeds:
                    extra = {"image": name} if trial is None else {"image": name, "trial": trial}
                    samples.append(engine.Sample(layer, phi0.clamp_min(0) if caricature else phi0, seed=s, mask=mask,
                                                 C=C, T=T, init=x0[i].cpu() if caricature else None, reference=phi0,
                                                 info=extra, cfg=tcfg))
    return samples


def image_settings(kind, preset, overrides, iters):
    """The Config of an invert (or caricature) run."""
    cfg = settings(preset, overrides, iters=iters)
    return cfg.replace(objective="inner", init="image") if kind == "caricature" else cfg


def _from_images(kind, model, layers, images, preset, seeds, iters, masks, device, overrides, batch_size, preprocess,
                 size, progress, trials=None):
    """invert and caricature: one sample per layer x image x seed, the target from the image's features."""
    m, layers, device, paths, x0 = prepare(model, layers, images, device, preprocess, size)
    if x0 is None:
        raise PreimageError(f"no images to {kind} (and no bundled samples found)")
    cfg = image_settings(kind, preset, overrides, iters)
    feats = features_of(m, x0)
    check_layers(feats, layers)
    seeds = seed_list(seeds)
    names = image_names(paths)
    samples = image_samples(m, cfg, layers, names, x0, feats, seeds, masks, kind == "caricature", trials)
    run = run_batches(m, kind, cfg, samples, names, x0, layers, seeds, device, batch_size, progress)
    if kind == "caricature":
        caricature_gain(m, run, feats, names)
    return run


def invert(model, layers, images=None, *, preset="mahendran2016", seeds=1, iters=None, masks=None,
           device="auto", overrides=None, batch_size=None, preprocess=None, size=None, progress=True, trials=None):
    """Reconstruct each image from each layer's features, for each seed (natural pre-images).

    ``trials``: a list of override dicts ({"lr": 3.0, "weight.tv": 1e-3}); every trial x layer x image x
    seed runs in one batch (results gain "trial": k) and equals a separate run with those overrides."""
    return _from_images("invert", model, layers, images, preset, seeds, iters, masks, device, overrides, batch_size,
                        preprocess, size, progress, trials=trials)


def caricature(model, layers, images=None, *, preset="mahendran2016", seeds=1, iters=None, masks=None,
               device="auto", overrides=None, batch_size=None, preprocess=None, size=None, progress=True,
               trials=None):
    """Exaggerate what each layer sees: Phi0 = max(0, Phi(x0)), inner-product loss / ||Phi0||, start at x0.

    Each result's ``gain`` is <Phi(x*), Phi0> / <Phi(x0), Phi0>: how much more of the chosen components
    (those Phi0 selects) the caricature holds than the original (1 = no change)."""
    return _from_images("caricature", model, layers, images, preset, seeds, iters, masks, device, overrides,
                        batch_size, preprocess, size, progress, trials=trials)


def caricature_gain(m, run, feats, names):
    """<Phi(x*), Phi0 M> / <Phi(x0), Phi0 M> per result (the normalised error means nothing here)."""
    xs = torch.stack([r["x"] for r in run.results]).to(next(iter(feats.values())).device, m.dtype)
    out = features_of(m, xs)
    row = {n: i for i, n in enumerate(names)}
    for k, r in enumerate(run.results):
        phi0 = feats[r["layer"]][row[r["image"]]]
        target = phi0.clamp_min(0).flatten()
        now = float((out[r["layer"]][k].flatten() * target).sum())
        before = float((phi0.flatten() * target).sum())
        r["gain"] = now / before if before > 0 else None
        r["normalized_error"] = None


def maximize(model, layers, units, images=None, *, preset="mahendran2016", seeds=1, iters=None, device="auto",
             overrides=None, batch_size=None, preprocess=None, size=None, progress=True, trials=None, window=True):
    """Activation maximization: Phi0 = e_unit (the channel's centre location for conv features), loss
    -<Phi, e> / (M rho^2), M = the unit's largest value on ``images`` (default: the bundled photos),
    rho = the layer's receptive-field size; C = 1, start from noise.

    ``window``: run the network on the centre units' receptive field only, where that is checked to give
    the full forward's values and gradients (:mod:`preimage.invert.window`); False: the whole input.

    When the unit never fires on the images, M falls back to the layer's largest value on them (the scale
    of its peers; 1 if the whole layer is silent); each result's ``M_source`` says which M was used."""
    m, layers, device, paths, x0 = prepare(model, layers, images, device, preprocess, size)
    cfg = maximize_settings(preset, overrides, iters)
    if isinstance(units, int):
        units = [units]
    seeds = seed_list(seeds)
    feats = features_of(m, x0) if x0 is not None else features_of(m, torch.zeros(1, 3, *m.input_size, device=device, dtype=m.dtype))
    check_layers(feats, layers)
    samples = unit_samples(m, cfg, layers, units, feats, seeds, 0 if x0 is None else x0.shape[0], trials)
    names = [f"unit{u}" for u in units]
    fast = unit_features(m, layers, feats, device) if window else None
    run = run_batches(m, "maximize", cfg, samples, names, None, layers, seeds, device, batch_size, progress,
                      features=fast)
    unit_activations(samples, run.results)
    for r in run.results:
        r["input_window"] = input_window(fast)
    return run


def unit_features(m, layers, feats, device):
    """The features on the centre units' receptive field (:func:`preimage.invert.window.windowed`), or
    None where the whole input is needed; ``feats``: the layers' features (for their shapes)."""
    if not m.input_size:
        return None
    return windowed(m.features, m.receptive_fields, layers, {k: v.shape[1:] for k, v in feats.items()},
                    m.input_size, device, m.dtype)


def input_window(fast):
    """A result's ``input_window``: (y0, y1, x0, x1) of the input the network saw, or None (all of it)."""
    return list(fast.window) if fast is not None else None


def unit_samples(m, cfg, layers, units, feats, seeds, n_images, trials=None):
    """One Sample per trial x layer x unit x seed; ``feats``: the layer features on the natural images."""
    samples = []
    for trial, tcfg in _trial_configs(cfg, trials):
        info = _common(m, layers, tcfg, feats)
        for layer in layers:
            shape, C, T = info[layer]
            for u in units:
                target, M, source = _unit_target(feats[layer], shape, u, layer, n_images)
                z = M * float(m.rf_size(layer)) ** 2
                extra = {"image": f"unit{u}", "unit": u, "M": M, "M_source": source}
                if trial is not None:
                    extra["trial"] = trial
                for s in seeds:
                    samples.append(engine.Sample(layer, target.to(m.dtype), seed=s, C=tcfg.C, T=T, z=z, info=extra,
                                                 cfg=tcfg))
    return samples


def maximize_settings(preset, overrides, iters):
    cfg = settings(preset, overrides, iters=iters).replace(objective="inner")
    return cfg.replace(C=cfg.C if cfg.C is not None else 1.0)


def unit_activations(samples, results):
    """The unit's value at the last step (no jitter then): loss = -<Phi, e> / Z; the error is meaningless."""
    for s, r in zip(samples, results):
        r["activation"] = -r["loss"][-1] * s.z if r["loss"] else None
        r["normalized_error"] = None


def _unit_target(phi, shape, u, layer, n_images):
    """(e_unit, M, how M was chosen) for unit ``u`` of a layer with features ``phi`` on the natural images."""
    if not 0 <= u < shape[0]:
        raise PreimageError(f"unit {u} outside 0..{shape[0] - 1} of layer {layer!r}", where="--unit")
    target = torch.zeros(shape)
    if len(shape) == 3:
        target[u, shape[1] // 2, shape[2] // 2] = 1
        acts = phi[:, u, shape[1] // 2, shape[2] // 2]
    else:
        target[(u,) + (0,) * (len(shape) - 1)] = 1
        acts = phi.reshape(phi.shape[0], shape[0], -1)[:, u, 0]
    if not n_images:
        return target, 1.0, "no natural images given: M = 1"
    M = float(acts.max())
    if M > 0:
        return target, M, f"the unit's largest value on the {n_images} natural image(s)"
    peers = float(phi.max())
    if peers > 0:
        return target, peers, (f"the unit never fires on the {n_images} natural image(s) (largest value {M:.4g}): "
                               f"M = the layer's largest value, {peers:.4g}")
    return target, 1.0, f"the unit and its whole layer never fire on the {n_images} natural image(s): M = 1"
