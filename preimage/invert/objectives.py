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
