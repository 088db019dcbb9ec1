"""Feature-space losses. Each takes the features ``phi`` (N x ...), the per-sample targets ``phi0`` (same
shape), a 0/1 ``mask`` (broadcastable to phi, or None) and a per-sample normaliser ``z`` (N, from
:func:`normaliser`), and returns one value per sample (shape N).
"""
import torch

from ..registry import Registry

OBJECTIVES = Registry("objective")
register = OBJECTIVES.register


def _flat(t, n):
    return t.reshape(n, -1)


def _masked(t, mask):
    return t if mask is None else t * mask


@register("l2")
def l2(phi, phi0, mask=None, z=None):
    """Normalised inversion loss ||(Phi(x) - Phi0) * M||^2 / ||Phi0 * M||^2 (Mahendran & Vedaldi)."""
    n = phi.shape[0]
    d = _flat(_masked(phi - phi0, mask), n)
    return (d * d).sum(1) / z


@register("l2_distance")
def l2_distance(phi, phi0, mask=None, z=None):
    """Plain distance ||Phi(x0) - Phi(x)||_2, not squared, not normalised (PoseNet inversion)."""
    n = phi.shape[0]
    d = _flat(_masked(phi - phi0, mask), n)
    return torch.sqrt((d * d).sum(1) + 1e-12)


@register("inner")
def inner(phi, phi0, mask=None, z=None):
    """Inner-product loss -<Phi(x), Phi0 * M> / Z (activation maximization and caricatures)."""
    n = phi.shape[0]
    return -(_flat(phi, n) * _flat(_masked(phi0, mask), n)).sum(1) / z


def normaliser(objective, phi0, mask=None, z=None):
    """Per-sample Z: ||Phi0 * M||^2 for l2; ||Phi0 * M|| for inner unless given (M rho^2 for maximization)."""
    n = phi0.shape[0]
    if z is not None:
        return torch.as_tensor(z, dtype=phi0.dtype, device=phi0.device).expand(n).clone()
    sq = (_flat(_masked(phi0, mask), n) ** 2).sum(1)
    if objective == "l2":
        return sq.clamp_min(1e-30)
    if objective == "inner":
        return sq.sqrt().clamp_min(1e-30)
    return torch.ones(n, dtype=phi0.dtype, device=phi0.device)


def normalized_error(phi, phi0, mask=None):
    """||(Phi(x*) - Phi0) M|| / ||Phi0 M|| per sample (the paper's reported error, not squared)."""
    n = phi.shape[0]
    d = _flat(_masked(phi - phi0, mask), n).norm(dim=1)
    return d / _flat(_masked(phi0, mask), n).norm(dim=1).clamp_min(1e-30)


def relative_loss(phi, phi_x0):
    """||Phi(x) - Phi(x0)|| / (||Phi(x)|| + ||Phi(x0)||) per sample (PoseNet inversion's metric)."""
    n = phi.shape[0]
    a, b = _flat(phi, n), _flat(phi_x0, n)
    return (a - b).norm(dim=1) / (a.norm(dim=1) + b.norm(dim=1)).clamp_min(1e-30)


# ---- the data terms of the energy (preimage.invert.energy) -------------------------------------------
from .energy import TERMS, Term, per_sample  # noqa: E402  (the kernels above do not need them)


class FeatureTerm(Term):
    """A term on one layer's features for the samples ``samples`` (batch positions; None: all of them).

    ``target`` is K x ... (K = len(samples), or N); the value is 0 for the other samples."""

    kind = "data"

    def __init__(self, layer, target, mask=None, samples=None, **params):
        super().__init__(**params)
        self.layer, self.target, self.mask = layer, target, mask
        self.samples = None if samples is None else torch.as_tensor(samples, dtype=torch.long)
        self._cache = None

    def _on(self, phi):
        """Target, mask, sample index and normaliser on phi's device and dtype (made once, not every step)."""
        if self._cache is None or self._cache[0].device != phi.device or self._cache[0].dtype != phi.dtype:
            t = torch.as_tensor(self.target).to(phi.device, phi.dtype)
            if t.dim() == phi.dim() - 1:
                t = t.unsqueeze(0)
            m = None if self.mask is None else torch.as_tensor(self.mask).to(phi.device, phi.dtype)
            idx = None if self.samples is None else self.samples.to(phi.device)
            self._cache = (t, m, idx, self.normaliser(t, m))
        return self._cache

    def value(self, state):
        phi = state.features[self.layer]
        t, m, idx, z = self._on(phi)
        if idx is not None and idx.numel() != phi.shape[0]:
            phi = phi.index_select(0, idx)
        if t.shape[0] != phi.shape[0]:
            t = t.expand(phi.shape[0], *t.shape[1:])
        v = self.compute(phi, t, m, z)
        if idx is None or idx.numel() == state.n:
            return v
        return torch.zeros(state.n, device=v.device, dtype=v.dtype).index_add(0, idx, v)

    def compute(self, phi, t, m, z):
        raise NotImplementedError

    def own_z(self, t, m):
        """The term's own normaliser of targets ``t`` (None: the term has none)."""
        return None

    def normaliser(self, t, m):
        """The ``z`` parameter (a float, or per sample with None where the term's own applies), else own_z."""
        z = self.params.get("z")
        if z is None:
            return self.own_z(t, m)
        if isinstance(z, (list, tuple)) and any(v is None for v in z):
            own = self.own_z(t, m).expand(len(z))
            given = torch.tensor([float("nan") if v is None else float(v) for v in z], device=t.device, dtype=t.dtype)
            return torch.where(torch.isnan(given), own, given)
        return per_sample(z, len(z) if isinstance(z, (list, tuple)) else t.shape[0], t)


class _FeatureL2(FeatureTerm):
    name = "feature_l2"

    def own_z(self, t, m):
        return normaliser("l2", t, m)

    def compute(self, phi, t, m, z):
        return l2(phi, t, m, z)


class _L2Distance(FeatureTerm):
    name = "l2_distance"

    def compute(self, phi, t, m, z):
        return l2_distance(phi, t, m)


class _Inner(FeatureTerm):
    name = "inner_product"

    def own_z(self, t, m):
        return normaliser("inner", t, m)

    def compute(self, phi, t, m, z):
        return inner(phi, t, m, z)


class _RelativeLoss(FeatureTerm):
    name = "relative_loss"
    kind = "metric"

    def compute(self, phi, t, m, z):
        return relative_loss(phi, t)


class _NormalizedError(FeatureTerm):
    name = "normalized_error"
    kind = "metric"

    def compute(self, phi, t, m, z):
        return normalized_error(phi, t, m)


@TERMS.register("feature_l2")
def feature_l2(layer, target, mask=None, samples=None, z=None):
    """||(Phi(x) - Phi0) M||^2 / Z, Z = ||Phi0 M||^2 unless given (Mahendran & Vedaldi's data term)."""
    return _FeatureL2(layer, target, mask, samples, z=z)


@TERMS.register("l2_distance")
def feature_distance(layer, target, mask=None, samples=None):
    """||(Phi(x) - Phi0) M||_2, not squared, not normalised (the PoseNet inversion's data term)."""
    return _L2Distance(layer, target, mask, samples)


@TERMS.register("inner_product")
def inner_product(layer, target, mask=None, samples=None, z=None):
    """-<Phi(x), Phi0 M> / Z, Z = ||Phi0 M|| unless given (caricatures; maximization with Z = M rho^2)."""
    return _Inner(layer, target, mask, samples, z=z)


@TERMS.register("unit")
def unit(layer, index, shape, samples=None, z=1.0):
    """-Phi(x)[index] / Z: one unit of ``layer`` (``index`` into the feature ``shape``, batch excluded);
    activation maximization's loss, with Z = M rho^2 in the paper."""
    e = torch.zeros(shape, dtype=torch.float64)
    e[tuple(index)] = 1.0
    return _Inner(layer, e, None, samples, z=z)


@TERMS.register("relative_loss")
def relative(layer, reference, samples=None):
    """||Phi(x) - Phi(x0)|| / (||Phi(x)|| + ||Phi(x0)||): a metric (the PoseNet inversion's), not a loss."""
    return _RelativeLoss(layer, reference, None, samples)


@TERMS.register("normalized_error")
def normalized(layer, target, mask=None, samples=None):
    """||(Phi(x) - Phi0) M|| / ||Phi0 M||: the papers' reported error, a metric."""
    return _NormalizedError(layer, target, mask, samples)
