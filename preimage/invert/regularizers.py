"""Image priors. Each takes a batch ``x`` (N x C x H x W, the network's input space) and returns one value
per sample (shape N), so every sample of a batch is regularized on its own.

Formulas: ../shared/reference/methods.md (Mahendran & Vedaldi 2016, section 1; PoseNet inversion, section 2).
"""
import torch

from .registry import Registry

REGULARIZERS = Registry("regularizer")
register = REGULARIZERS.register


def _forward_differences(x):
    """Horizontal and vertical forward differences with a replicated border (the last difference is 0)."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return dx, dy


def _power(s, p, eps):
    """s ** p for s >= 0, with eps added below p < 1 powers so the gradient at 0 stays finite."""
    return (s + eps) ** p if p < 1 else s ** p


@register("bounded_range")
def bounded_range(x, alpha=6.0, B=80.0):
    """N_alpha(x) = 1/(H W B^alpha) * sum over pixels of ||x(v, u, :)||^alpha (isotropic colour norm)."""
    h, w = x.shape[-2:]
    sq = (x * x).sum(dim=1)  # N x H x W: squared colour norm per pixel
    return _power(sq, alpha / 2, 1e-12).flatten(1).sum(1) / (h * w * float(B) ** alpha)


@register("tv")
def tv(x, beta=2.0, V=80.0 / 6.5):
    """TV^beta(x) = 1/(H W V^beta) * sum_{v,u,k} (dx^2 + dy^2)^(beta/2), forward differences."""
    h, w = x.shape[-2:]
    dx, dy = _forward_differences(x)
    return _power(dx * dx + dy * dy, beta / 2, 1e-12).flatten(1).sum(1) / (h * w * float(V) ** beta)


@register("l6")
def l6(x, p=6.0):
    """PoseNet variant's L6 term: sum |x|^6 = ||x||_6^6 per sample.

    The published weight (1.95e-15) only has an effect on the 6th power of the norm (pixel values ~100
    give sum |x|^6 ~ 1e16), so this is the quantity weighted, as in Yosinski-style L_p decay.
    """
    return x.abs().pow(p).flatten(1).sum(1)


@register("sqrt_tv")
def sqrt_tv(x):
    """PoseNet variant's TV: sum_{i,j,k} sqrt(dx^2 + dy^2), forward differences, no normalisation."""
    dx, dy = _forward_differences(x)
    return _power(dx * dx + dy * dy, 0.5, 1e-12).flatten(1).sum(1)
