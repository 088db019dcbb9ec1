"""Presets: every constant of a published method in one :class:`Config`, each overridable.

``mahendran2016``  Mahendran & Vedaldi, IJCV 2016: normalised L2 loss, C per layer (300 up to relu3, 100 up
                   to relu4, 20 up to relu5, 1 beyond), N_alpha (alpha 6, B 80) with the hard B+ = 160 ball,
                   TV^beta (beta 2, V = B / 6.5), AdaGrad with momentum, jitter, 300 + 50 iterations.
``posenet2016``    Thatte, Sitzmann & Ruban: ||Phi(x) - Phi(x0)||_2 + 4e-6 sqrt-TV + 1.95e-15 L6, Adam
                   (26.6, 0.9, 0.99, 1e-8), small-contribution clipping at the 21.4th percentile.
"""
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..errors import PreimageError


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

    def params(self):
        """Resolved constants that regularizers take by keyword (V defaults to B / 6.5)."""
        return {"alpha": self.alpha, "B": self.B, "beta": self.beta, "V": self.V if self.V is not None else self.B / 6.5}

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)

    def to_dict(self):
        return dataclasses.asdict(self)


def mahendran2016(**kw):
    return Config(**kw)


def posenet2016(**kw):
    base = dict(preset="posenet2016", objective="l2_distance", C=1.0, weights={"l6": 1.95e-15, "sqrt_tv": 4e-6},
                Bplus=None, optimizer="adam", lr=26.6, beta1=0.9, beta2=0.99, eps=1e-8, grad_scale="none",
                hooks=["clip"], clip_percentile=21.4, jitter=False)
    base.update(kw)
    return Config(**base)


PRESETS = {"mahendran2016": mahendran2016, "posenet2016": posenet2016}


def get(name, **overrides):
    if name not in PRESETS:
        raise PreimageError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}", where="--preset")
    return PRESETS[name](**overrides)


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


def coerce(cfg, key, text):
    """Apply one ``--set key=value`` override to a Config, converting the text to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if key.startswith("weight."):
        w = dict(cfg.weights)
        try:
            w[key[len("weight."):]] = float(text)
        except ValueError:
            raise PreimageError(f"{key}={text!r}: expected a number", where="--set") from None
        return cfg.replace(weights=w)
    if key not in fields:
        raise PreimageError(f"unknown parameter {key!r}; known: {', '.join(sorted(fields))}, weight.NAME",
                            where="--set")
    current = getattr(cfg, key)
    try:
        if text.lower() in ("none", "null"):
            value = None
        elif key == "hooks":
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
