"""Presets: every constant of a published method in one :class:`Config`, each overridable.

``mahendran2016``  Mahendran & Vedaldi, IJCV 2016: normalised L2 loss, C per layer from its resolution stage
                   (crule.py; on AlexNet and VGG-M the paper's 300 up to relu3, 100 up to relu4, 20 up to
                   relu5, 1 beyond), N_alpha (alpha 6, B 80) with the hard B+ = 160 ball,
                   TV^beta (beta 2, V = B / 6.5), AdaGrad with momentum, jitter, 300 + 50 iterations.
``posenet2016``    Thatte, Sitzmann & Ruban: ||Phi(x) - Phi(x0)||_2 + 4e-6 sqrt-TV + 1.95e-15 L6, Adam
                   (26.6, 0.9, 0.99, 1e-8), small-contribution clipping at the 21.4th percentile.
"""
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ..errors import PreimageError
from ..registry import Registry
from . import objectives, regularizers  # noqa: F401  (they register the energy terms)
from .crule import geometry_C
from .energy import TERMS, term_parameters
from .engine import Recipe, Schedule, Stage
from .parameterization import PARAMETERIZATIONS
from .transforms import TRANSFORMS


@dataclass
class Config:
    preset: str = "mahendran2016"
    objective: str = "l2"                   # objectives.OBJECTIVES
    C: Optional[float] = None               # loss weight; None -> per-layer rule of the preset
    weights: Dict[str, float] = field(default_factory=lambda: {"bounded_range": 1.0, "tv": 1.0})
    alpha: float = 6.0
    B: float = 80.0
    Bplus: Optional[float] = 160.0
    beta: float = 2.0
    V: Optional[float] = None               # None -> B / 6.5
    optimizer: str = "adagrad"
    eta0: Optional[float] = None            # None -> 0.05 B^2 / alpha (released code's convention)
    rho: float = 0.9
    lr: float = 26.6                        # Adam
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_scale: str = "hw"                  # "hw": step on the gradient of H W * E; "none": of E
    hooks: List[str] = field(default_factory=lambda: ["project"])
    clip_percentile: Optional[float] = None
    iters: int = 300
    fine_iters: int = 50
    fine_scale: float = 0.1
    jitter: bool = True
    T: Optional[int] = None                 # None -> max(1, round(stride / 4)) from the layer's geometry
    init: str = "noise"                     # "noise" | "zeros" | "image" (caricatures start from x0)
    init_scale: Optional[float] = None      # 95th percentile of the init noise; None -> B / sqrt(3)
    z: Optional[float] = None               # objective normaliser override (maximization: M rho^2)
    transforms: List[str] = field(default_factory=list)   # beyond jitter: "scale", "rotate"
    term_params: Dict[str, Dict[str, float]] = field(default_factory=dict)  # --set TERM.PARAM=VALUE
    precision: str = "float32"              # the network forward: float32, bfloat16 or float16 (autocast)
    cuda_graphs: bool = False               # replay the network's forward and backward from CUDA graphs

    def term(self, name):
        """The parameters of prior ``name``: its defaults, the preset's constants, then --set TERM.PARAM."""
        own = {"bounded_range": {"alpha": self.alpha, "B": self.B},
               "tv": {"beta": self.beta, "V": self.V if self.V is not None else self.B / 6.5}}.get(name, {})
        return dict(term_parameters(name), **own, **self.term_params.get(name, {}))

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)

    def to_dict(self):
        return dataclasses.asdict(self)


PRESETS = Registry("preset")


@dataclass
class Preset:
    """A published method: its settings, and its rule for the loss weight C of a layer."""

    name: str
    settings: Dict
    C_rule: object = None                   # (layer, model) -> C; None: C = 1

    def config(self, **kw):
        return Config(**dict(self.settings, preset=self.name, **kw))

    def C(self, layer, model=None):
        return 1.0 if self.C_rule is None else self.C_rule(layer, model)


def _mahendran_rule(layer, model=None):
    """The default: C from the layer's resolution stage and receptive field (preimage.invert.crule); the
    name-based reading (:func:`mahendran_C`) where the model carries no geometry for ``layer``."""
    kind, sep, bare = str(layer).partition(":")  # layer:NAME / blob:NAME (the naming contract) name NAME
    bare = bare if sep and kind in ("layer", "blob") else str(layer)
    rf = getattr(model, "receptive_fields", None)
    C = geometry_C(layer, rf)
    C = C if C is not None else geometry_C(bare, rf)
    return C if C is not None else mahendran_C(bare, getattr(model, "layers", None))


PRESETS.register("mahendran2016")(Preset("mahendran2016", {}, _mahendran_rule))
# Mahendran & Vedaldi section 5.1 (HOG, HOGb, DSIFT; Table 4): the paper's energy and schedule with C = 20
# and no jitter. The constants (B = 80, eta0 = 0.05 B^2 / alpha) are in 8-bit pixel units, so use the
# representations with pixels=true (e.g. --model hog:pixels=true): on [0, 1] inputs the step is 255x off.
PRESETS.register("mahendran2016-shallow")(Preset("mahendran2016-shallow", dict(C=20.0, jitter=False)))
PRESETS.register("posenet2016")(Preset("posenet2016", dict(
    objective="l2_distance", C=1.0, weights={"l6": 1.95e-15, "sqrt_tv": 4e-6}, Bplus=None, optimizer="adam",
    lr=26.6, beta1=0.9, beta2=0.99, eps=1e-8, grad_scale="none", hooks=["clip"], clip_percentile=21.4,
    jitter=False)))


def get(name, **overrides):
    """The Config of preset ``name`` with ``overrides`` (fields of :class:`Config`)."""
    if name not in PRESETS:
        raise PreimageError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}", where="--preset")
    return PRESETS[name].config(**overrides)



def default_C(cfg, layer, model=None):
    """C for ``layer``: the config's when set, else the preset's rule."""
    if cfg.C is not None:
        return float(cfg.C)
    return PRESETS[cfg.preset].C(layer, model) if cfg.preset in PRESETS else 1.0


# ---- C per layer (Mahendran & Vedaldi: 300 up to relu3, 100 up to relu4, 20 up to relu5, 1 beyond) ---
def _boundaries(layers):
    """Index of the layer ending stage k (k = 3, 4, 5): the layer named relu<k> when the model has one
    (PoseNet's relu5 follows fc5), otherwise the ReLU right after the k-th convolution (or that conv)."""
    names = [l.get("name") for l in layers]
    ends, convs = {}, 0
    for i, l in enumerate(layers):
        t = l.get("type", "")
        if t in ("Convolution", "Conv"):
            convs += 1
            ends[convs] = i
        elif t == "ReLU" and convs and ends.get(convs) == i - 1:
            ends[convs] = i
    return {k: names.index(f"relu{k}") if f"relu{k}" in names else ends.get(k) for k in (3, 4, 5)}


def mahendran_C(layer, layers=None):
    """The paper's C for ``layer``, read literally: 300 up to relu3, 100 up to relu4, 20 up to relu5, 1
    beyond. ``layers``: the model's Caffe layer list (dicts with name, type, value/tops) in order; without
    it, the number in the layer's name decides (pool5 counts as beyond relu5)."""
    if layers:
        pos = next((i for i, l in enumerate(layers)
                    if layer == l.get("name") or layer == l.get("value") or layer in (l.get("values") or [])), None)
        if pos is None:  # a blob name: the last layer that writes it
            pos = max((i for i, l in enumerate(layers) if layer in (l.get("tops") or [])), default=None)
        if pos is not None:
            ends = _boundaries(layers)
            for k, c in ((3, 300.0), (4, 100.0), (5, 20.0)):
                if ends[k] is not None and pos <= ends[k]:
                    return c
            return 1.0
    m = re.search(r"(\d+)", layer or "")
    if not m:
        return 1.0
    k = int(m.group(1))
    if k == 5 and (layer or "").lower().startswith("pool"):
        return 1.0
    return 300.0 if k <= 3 else 100.0 if k == 4 else 20.0 if k == 5 else 1.0


def _number(key, text):
    try:
        return float(text)
    except ValueError:
        raise PreimageError(f"{key}={text!r}: expected a number", where="--set") from None


# A prior's parameters that are also the preset's named constants (one value, two spellings).
_ALIASES = {("bounded_range", "alpha"): "alpha", ("bounded_range", "B"): "B", ("tv", "beta"): "beta",
            ("tv", "V"): "V"}


def _set_term_parameter(cfg, key, text):
    name, param = key.split(".", 1)
    if name not in prior_names():
        raise PreimageError(f"unknown parameter {key!r}: no prior named {name!r} (known: {', '.join(prior_names())})",
                            where="--set")
    known = term_parameters(name)
    if param not in known:
        raise PreimageError(f"{name} has no parameter {param!r}; it takes: {', '.join(known) or 'none'}",
                            where="--set")
    value = _number(key, text)
    if (name, param) in _ALIASES:
        return cfg.replace(**{_ALIASES[name, param]: value})
    tp = {k: dict(v) for k, v in cfg.term_params.items()}
    tp.setdefault(name, {})[param] = value
    return cfg.replace(term_params=tp)


def coerce(cfg, key, text):
    """Apply one ``--set key=value`` override to a Config, converting the text to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if key.startswith("weight."):
        name = key[len("weight."):]
        if name not in prior_names():
            raise PreimageError(f"{key}: no prior named {name!r}; known: {', '.join(prior_names())}", where="--set")
        w = dict(cfg.weights)
        w[name] = _number(key, text)
        return cfg.replace(weights=w)
    if "." in key:
        return _set_term_parameter(cfg, key, text)
    if key not in fields or key in ("term_params", "preset"):
        raise PreimageError(f"unknown parameter {key!r}; known: {', '.join(parameter_names())}", where="--set")
    current = getattr(cfg, key)
    try:
        if text.lower() in ("none", "null"):
            value = None
        elif key in ("hooks", "transforms"):
            value = [h for h in text.split(",") if h]
        elif isinstance(current, bool) or key == "jitter":
            if text.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise PreimageError(f"{key}={text!r}: expected true or false", where="--set")
            value = text.lower() in ("1", "true", "yes", "on")
        elif key in ("iters", "fine_iters", "T"):
            try:
                value = int(text)
            except ValueError:
                raise PreimageError(f"{key}={text!r}: expected an integer", where="--set") from None
        elif isinstance(current, str):
            value = text
        else:
            value = float(text)
    except ValueError:
        raise PreimageError(f"{key}={text!r}: expected a number", where="--set") from None
    return cfg.replace(**{key: value})


# ---- from settings to a recipe -------------------------------------------------------------------------
# The data term each objective name means (the Config field keeps its short historical names).
OBJECTIVE_TERMS = {"l2": "feature_l2", "l2_distance": "l2_distance", "inner": "inner_product"}
# Settings that shape the computation; samples of one batch must agree on them (scalars may differ).
STRUCTURAL = ("objective", "optimizer", "hooks", "iters", "fine_iters", "fine_scale", "jitter", "init",
              "grad_scale", "transforms", "precision", "cuda_graphs")


def _check_structure(cfgs):
    base = cfgs[0]
    for c in cfgs[1:]:
        for k in STRUCTURAL:
            if getattr(c, k) != getattr(base, k):
                raise PreimageError(f"samples of one batch differ in {k!r} ({getattr(base, k)!r} vs "
                                    f"{getattr(c, k)!r}); only scalar settings may differ between trials")


def _targets(samples, idx):
    t = torch.stack([samples[i].target for i in idx])
    ms = [samples[i].mask for i in idx]
    if all(m is None for m in ms):
        return t, None
    return t, torch.stack([torch.ones(t.shape[1:]) if m is None else torch.broadcast_to(m, t.shape[1:]) for m in ms])


def _z(samples, cfgs, idx):
    """Per-sample normaliser overrides (a sample's own z, else its config's; None: the term's own)."""
    zs = [samples[i].z if samples[i].z is not None else cfgs[i].z for i in idx]
    return None if all(z is None for z in zs) else zs


def data_energy(samples, cfgs):
    """sum over layers of C * objective(layer), C and the target per sample."""
    n, objective = len(samples), cfgs[0].objective
    if objective not in OBJECTIVE_TERMS and objective not in TERMS:
        raise PreimageError(f"unknown objective {objective!r}; expected one of: {', '.join(OBJECTIVE_TERMS)}",
                            where="--set objective")
    name = OBJECTIVE_TERMS.get(objective, objective)
    layers = {}
    for i, s in enumerate(samples):
        layers.setdefault(s.layer, []).append(i)
    terms = []
    for layer, idx in layers.items():
        t, mask = _targets(samples, idx)
        kw = {} if name == "l2_distance" else {"z": _z(samples, cfgs, idx)}
        term = TERMS[name](layer, t, mask, samples=idx, **kw)
        C = [float(samples[i].C) if i in set(idx) else 0.0 for i in range(n)]
        terms.append((C if len(set(C)) > 1 else C[0]) * term)
    return sum(terms)


def prior_energy(cfgs):
    """sum of w * prior for every prior any sample weights (weights and parameters per sample)."""
    names = list(dict.fromkeys(k for c in cfgs for k, w in c.weights.items() if w))
    terms = []
    for name in names:
        w = [float(c.weights.get(name, 0.0)) for c in cfgs]
        params = [c.term(name) for c in cfgs]
        kw = {k: [p[k] for p in params] for k in params[0]}
        kw = {k: (v[0] if len(set(v)) == 1 else v) for k, v in kw.items()}
        terms.append((w[0] if len(set(w)) == 1 else w) * TERMS.get_or_fail(name)(**kw))
    return sum(terms)


def metrics(samples):
    """normalized_error per sample at its layer; relative_loss where every sample has a reference."""
    layers = {}
    for i, s in enumerate(samples):
        layers.setdefault(s.layer, []).append(i)
    err, rel = [], []
    for layer, idx in layers.items():
        t, mask = _targets(samples, idx)
        err.append(TERMS["normalized_error"](layer, t, mask, samples=idx))
        refs = [samples[i].reference for i in idx]
        if all(r is not None for r in refs):
            rel.append(TERMS["relative_loss"](layer, torch.stack(refs), samples=idx))
    out = {"normalized_error": sum(err)}
    if len(rel) == len(layers):
        out["relative_loss"] = sum(rel)
    return out


def _col(cfgs, f):
    v = [f(c) for c in cfgs]
    return v[0] if len(set(v)) == 1 else v


def schedule(cfgs):
    """The optimiser, its per-sample hyperparameters, the hooks and the two stages of the presets."""
    base = cfgs[0]
    if base.optimizer == "adagrad":
        hyper = {"eta0": _col(cfgs, lambda c: c.eta0 if c.eta0 is not None else 0.05 * c.B ** 2 / c.alpha),
                 "rho": _col(cfgs, lambda c: c.rho)}
    elif base.optimizer == "adam":
        hyper = {"lr": _col(cfgs, lambda c: c.lr), "beta1": _col(cfgs, lambda c: c.beta1),
                 "beta2": _col(cfgs, lambda c: c.beta2), "eps": _col(cfgs, lambda c: c.eps)}
    else:
        raise PreimageError(f"unknown optimizer {base.optimizer!r}; expected adagrad or adam", where="--set optimizer")
    stages = [Stage(base.iters, 1.0, base.jitter), Stage(base.fine_iters, base.fine_scale, False)]
    hook_params = {"Bplus": _col(cfgs, lambda c: c.Bplus), "clip_percentile": _col(cfgs, lambda c: c.clip_percentile or 0.0)}
    return Schedule(stages, base.optimizer, hyper, list(base.hooks), hook_params, base.grad_scale)


def recipe(cfg, samples, channels=3):
    """The Recipe of ``samples`` under ``cfg`` (each sample may carry its own trial's ``cfg``)."""
    cfgs = [s.cfg if s.cfg is not None else cfg for s in samples]
    _check_structure(cfgs)
    energy = data_energy(samples, cfgs) + prior_energy(cfgs)
    return _recipe(energy, cfgs, [s.seed for s in samples], [s.T for s in samples], channels,
                   [s.init for s in samples], metrics(samples))


def _recipe(energy, cfgs, seeds, Ts, channels, images, metric_terms):
    base = cfgs[0]
    scale = [c.init_scale if c.init_scale is not None else c.B / 3 ** 0.5 for c in cfgs]
    init = "noise" if base.init == "image" else base.init
    pixels = PARAMETERIZATIONS["pixels"](list(seeds), channels, init, scale, images)
    transforms = [TRANSFORMS["jitter"]([t if base.jitter else 1 for t in Ts], seeds)]
    transforms += [TRANSFORMS.get_or_fail(t)(seeds) for t in base.transforms]
    return Recipe(energy, pixels, transforms, schedule(cfgs), dict(metric_terms or {}))


def prior_names():
    return [n for n in sorted(TERMS) if getattr(TERMS[n], "kind", None) == "prior"]


def parameter_names():
    """Every name --set takes: Config fields, weight.PRIOR and PRIOR.PARAM for each registered prior."""
    fields = [f.name for f in dataclasses.fields(Config) if f.name not in ("term_params", "preset")]
    priors = prior_names()
    return fields + [f"weight.{n}" for n in priors] + [f"{n}.{p}" for n in priors for p in term_parameters(n)]


def with_energy(energy, cfg, seeds, T=1, channels=3, images=None, metrics=None):
    """A Recipe for a hand-written ``energy`` with ``cfg``'s parameterisation, transforms and schedule.

    ``seeds``: one per sample (the batch size); ``T``: the jitter amount, one for all or one per sample;
    ``images``: optional start images (C x H x W, or None per sample); ``metrics``: {name: term}."""
    n = len(seeds)
    Ts = list(T) if isinstance(T, (list, tuple)) else [int(T)] * n
    return _recipe(energy, [cfg] * n, seeds, Ts, channels, images, metrics)
