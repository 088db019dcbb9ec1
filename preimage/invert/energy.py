"""The inversion energy as an expression of terms.

A term maps the optimisation state (the current images and the network's view of them) to one loss value
per sample (shape N): independent images, seeds and trials of one batch never mix. Terms compose by
arithmetic, as Lucent's objectives do::

    energy = 300 * feature_l2("conv3", target) + bounded_range(alpha=6, B=80) + tv(beta=2)

Every parameter of a term (and every weight in an expression) may be a float or a per-sample sequence /
tensor of length N, so N trials that differ only in scalars run as one batch. Terms are registered in
:data:`TERMS` by name; ``term.parameter`` (``tv.beta``, ``l6.p``) is how ``--set`` reaches them.
"""
import inspect
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ..registry import Registry

TERMS = Registry("energy term")


@dataclass
class State:
    """What a term sees at one step.

    ``images``: the parameterisation's images, one tensor per canvas group; ``index``: the sample indices
    of each group's rows (default: consecutive); ``features``: {layer: N x ... tensor} of the network's
    view after the transforms, in sample order; ``n``: the batch size; ``inverse``: for each sample, its
    row in the concatenated groups (None when that is the identity).
    """

    images: List[torch.Tensor]
    features: Dict[str, torch.Tensor] = field(default_factory=dict)
    n: int = 0
    index: Optional[List[List[int]]] = None
    inverse: Optional[torch.Tensor] = None

    def __post_init__(self):
        if not self.n:
            self.n = sum(int(im.shape[0]) for im in self.images)
        if self.index is None:
            starts = [0]
            for im in self.images:
                starts.append(starts[-1] + int(im.shape[0]))
            self.index = [list(range(a, b)) for a, b in zip(starts, starts[1:])]

    def groups(self):
        """(sample indices, images) per canvas group."""
        return zip(self.index, self.images)

    def to_samples(self, values):
        """Per-row values of the concatenated groups, reordered to sample order."""
        return values if self.inverse is None else values.index_select(0, self.inverse)


def per_sample(value, n, like):
    """A parameter as a float (when it is one, or all its values are equal) or an (N,) tensor like ``like``."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return float(value)
        value = value.to(like.device, like.dtype)
        return value if value.shape[0] == n else value.expand(n)
    if isinstance(value, (list, tuple)):
        if len(set(float(v) for v in value)) == 1:
            return float(value[0])
        if len(value) != n:
            raise ValueError(f"a per-sample parameter has {len(value)} values for a batch of {n}")
        return torch.tensor([float(v) for v in value], device=like.device, dtype=like.dtype)
    return float(value)


def take(value, sl):
    """A parameter's values for the samples ``sl`` (a slice or an index tensor)."""
    return value[sl] if isinstance(value, torch.Tensor) else value


class Term:
    """Base class: subclasses implement ``value(state) -> (N,)``; ``kind`` is "data" or "prior"."""

    name = "term"
    kind = "data"

    def __init__(self, **params):
        self.params = dict(params)

    def value(self, state):
        raise NotImplementedError

    def __call__(self, state):
        return self.value(state)

    def leaves(self):
        """(weight, term) for every registered term in the expression; weights are float or (N,)."""
        yield 1.0, self

    def parts(self, state):
        """{kind: (N,) weighted sum of the leaves of that kind}, the energy being their sum."""
        out = {}
        for w, t in self._weighted(state):
            v = t.value(state)
            if not (isinstance(w, float) and w == 1.0):
                v = v * w
            out[t.kind] = v if t.kind not in out else out[t.kind] + v
        return out

    def _weighted(self, state):
        """The leaves with their weights on the features' device, moved once (not at every step)."""
        ref = next(iter(state.features.values()), None) if state.features else state.images[0]
        key = (ref.device, ref.dtype, state.n)
        cache = getattr(self, "_weights_on", None)
        if cache is None or cache[0] != key:
            ws = [(w if isinstance(w, float) else per_sample(w, state.n, ref), t) for w, t in self.leaves()]
            self._weights_on = cache = (key, ws)
        return cache[1]

    def parameters(self):
        """{"name.param": value} for every leaf (the names ``--set`` takes)."""
        return {f"{t.name}.{k}": v for _, t in self.leaves() for k, v in t.params.items()
                if not isinstance(v, torch.Tensor) or v.dim() <= 1}

    # --- arithmetic -------------------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self
        if not isinstance(other, Term):
            return NotImplemented
        return Sum([self, other])

    __radd__ = __add__  # sum(terms) starts from 0

    def __sub__(self, other):
        return self + (-1.0) * other

    def __neg__(self):
        return (-1.0) * self

    def __mul__(self, w):
        if isinstance(w, Term):
            return NotImplemented
        return Scaled(self, w)

    __rmul__ = __mul__

    def __truediv__(self, w):
        return Scaled(self, 1.0 / w if isinstance(w, (int, float)) else 1.0 / torch.as_tensor(w, dtype=torch.float64))

    def __repr__(self):
        ps = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.name}({ps})"


def _short(v):
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}"
    if isinstance(v, (list, tuple)) and len(v) > 3:
        return f"[{len(v)} values]"
    return repr(v)


def _times(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) * float(b)
    return torch.as_tensor(a, dtype=torch.float64) * torch.as_tensor(b, dtype=torch.float64)


class Sum(Term):
    name = "sum"

    def __init__(self, terms):
        super().__init__()
        self.terms = []
        for t in terms:
            self.terms.extend(t.terms if isinstance(t, Sum) else [t])

    def leaves(self):
        for t in self.terms:
            yield from t.leaves()

    def value(self, state):
        return sum(self.parts(state).values())

    def __repr__(self):
        return " + ".join(repr(t) for t in self.terms)


class Scaled(Term):
    name = "scaled"

    def __init__(self, term, weight):
        super().__init__()
        if isinstance(weight, (list, tuple)):
            weight = torch.tensor([float(v) for v in weight], dtype=torch.float64)
        self.term, self.weight = term, (float(weight) if isinstance(weight, (int, float)) else weight)

    def leaves(self):
        for w, t in self.term.leaves():
            yield _times(self.weight, w), t

    def value(self, state):
        return sum(self.parts(state).values())

    def __repr__(self):
        return f"{_short(self.weight)} * ({self.term!r})"


def term_parameters(name):
    """{parameter: default} of a registered term's factory (those with a default, i.e. tunable)."""
    sig = inspect.signature(TERMS.get_or_fail(name))
    return {k: p.default for k, p in sig.parameters.items()
            if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)}


def make(name, **params):
    """Build the registered term ``name`` with ``params``."""
    return TERMS.get_or_fail(name)(**params)


def evaluate(energy, state) -> Dict[str, torch.Tensor]:
    """{"energy": (N,), "data": (N,), "prior": (N,)} at ``state`` (missing kinds are zeros)."""
    parts = energy.parts(state)
    ref = next(iter(parts.values()))
    zeros = torch.zeros_like(ref)
    out = {k: parts.get(k, zeros) for k in ("data", "prior")}
    out["energy"] = sum(parts.values())
    return out

