"""Image priors. Each takes a batch ``x`` (N x C x H x W, the network's input space) and returns one value
per sample (shape N), so every sample of a batch is regularized on its own.

Formulas: ../shared/reference/methods.md (Mahendran & Vedaldi 2016, section 1; PoseNet inversion, section 2).
"""
import torch

from ..registry import Registry

REGULARIZERS = Registry("regularizer")
register = REGULARIZERS.register


def _forward_differences(x):
    """Horizontal and vertical forward differences with a replicated border (the last difference is 0)."""
    dx = torch.nn.functional.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    dy = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def _power(s, p, eps):
    """s ** p for s >= 0, with eps added below p < 1 powers so the gradient at 0 stays finite."""
    return (s + eps) ** p if p < 1 else s ** p


def _dpower(s, p, eps):
    """d(s ** p)/ds, consistent with :func:`_power`."""
    if p == 1:
        return torch.ones_like(s)
    return p * ((s + eps) ** (p - 1) if p < 1 else s ** (p - 1))


# The two priors of the default preset run every step on whole canvases, so they have written-out
# backward passes: autograd through slices would allocate a zero canvas per slice (a dozen full-size
# fills per step). Their values and gradients are tested against NumPy and finite differences.
class _BoundedRange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, B):
        h, w = x.shape[-2:]
        norm = h * w * float(B) ** alpha
        sq = (x * x).sum(dim=1)  # squared colour norm per pixel, N x H x W
        p = alpha / 2
        ctx.save_for_backward(x, sq)
        ctx.p, ctx.norm = p, norm
        return _power(sq, p, 1e-12).flatten(1).sum(1) / norm

    @staticmethod
    def backward(ctx, grad_out):
        x, sq = ctx.saved_tensors
        coef = _dpower(sq, ctx.p, 1e-12).mul_(2.0 / ctx.norm) * grad_out.view(-1, 1, 1)
        return x * coef.unsqueeze(1), None, None


class _TV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta, V):
        h, w = x.shape[-2:]
        norm = h * w * float(V) ** beta
        dx, dy = _forward_differences(x)
        s = dx * dx + dy * dy
        p = beta / 2
        ctx.save_for_backward(dx, dy, s)
        ctx.p, ctx.norm = p, norm
        return _power(s, p, 1e-12).flatten(1).sum(1) / norm

    @staticmethod
    def backward(ctx, grad_out):
        dx, dy, s = ctx.saved_tensors
        k = _dpower(s, ctx.p, 1e-12).mul_(grad_out.view(-1, 1, 1, 1) * (2.0 / ctx.norm))
        a = dx.mul_(k)  # dE/d(dx); the saved differences are not needed afterwards
        b = dy.mul_(k)
        g = -(a + b)
        g[..., :, 1:] += a[..., :, :-1]
        g[..., 1:, :] += b[..., :-1, :]
        return g, None, None


@register("bounded_range")
def bounded_range(x, alpha=6.0, B=80.0):
    """N_alpha(x) = 1/(H W B^alpha) * sum over pixels of ||x(v, u, :)||^alpha (isotropic colour norm)."""
    return _BoundedRange.apply(x, float(alpha), float(B))


@register("tv")
def tv(x, beta=2.0, V=80.0 / 6.5):
    """TV^beta(x) = 1/(H W V^beta) * sum_{v,u,k} (dx^2 + dy^2)^(beta/2), forward differences."""
    return _TV.apply(x, float(beta), float(V))


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
    h, w = x.shape[-2:]
    return _TV.apply(x, 1.0, 1.0) * (h * w)
