"""Image priors. Each takes a batch ``x`` (N x C x H x W, the network's input space) and returns one value
per sample (shape N), so every sample of a batch is regularized on its own.

Formulas: ../shared/reference/methods.md (Mahendran & Vedaldi 2016, section 1; PoseNet inversion, section 2).
"""
import inspect

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


# ---- the priors of the energy (preimage.invert.energy) -----------------------------------------------
from .energy import TERMS, Term  # noqa: E402  (the kernels above do not need them)


class ImageTerm(Term):
    """A prior: a kernel ``fn(x, **params) -> (N,)`` on each canvas group of the parameterisation.

    A parameter given per sample (a list, for batched trials) is a float for each sample; samples with
    equal parameters go through the kernel together (the kernels take float powers, so a batch of trials
    with different powers is evaluated once per distinct value)."""

    kind = "prior"

    def __init__(self, name, fn, **params):
        super().__init__(**params)
        self.name, self.fn = name, fn

    def value(self, state):
        out = []
        for idx_list, x in state.groups():
            lists = {k: [v[i] for i in idx_list] for k, v in self.params.items() if isinstance(v, (list, tuple))}
            if not lists or all(len(set(v)) == 1 for v in lists.values()):
                kw = {k: (v[0] if k in lists else v) for k, v in self.params.items()}
                out.append(self.fn(x, **kw))
                continue
            v = x.new_zeros(x.shape[0])
            for idx, kw in self._subgroups(tuple(idx_list), lists, x.device):
                v = v.index_add(0, idx, self.fn(x.index_select(0, idx), **kw))
            out.append(v)
        return state.to_samples(torch.cat(out))

    def _subgroups(self, group, lists, device):
        """(row index tensor, parameters) per distinct parameter tuple of a canvas group: made once per group,
        not at every step."""
        cache = self.__dict__.setdefault("_subgroup_cache", {})
        if (group, device) not in cache:
            keys = list(zip(*lists.values()))
            cache[group, device] = [
                (torch.tensor([i for i, k in enumerate(keys) if k == key], device=device),
                 dict(self.params, **dict(zip(lists, key)))) for key in dict.fromkeys(keys)]
        return cache[group, device]


def prior(name, fn=None):
    """Register the kernel ``fn(x, **params) -> (N,)`` as the prior term ``name``; its keyword defaults are
    its parameters (``--set NAME.PARAM``), ``--set weight.NAME`` weights it. Usable as a decorator."""
    if fn is None:
        def decorator(f):
            prior(name, f)
            return f
        return decorator
    defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items() if k != "x"}

    def factory(**params):
        unknown = set(params) - set(defaults)
        if unknown:
            raise TypeError(f"{name} has no parameter {sorted(unknown)[0]!r} (it takes: {', '.join(defaults) or 'none'})")
        return ImageTerm(name, fn, **dict(defaults, **params))

    factory.__signature__ = inspect.signature(fn).replace(
        parameters=[p for p in inspect.signature(fn).parameters.values() if p.name != "x"])
    factory.__doc__ = fn.__doc__
    factory.kind = "prior"
    TERMS.register(name)(factory)
    return factory


bounded_range_term = prior("bounded_range", bounded_range)
tv_term = prior("tv", tv)
l6_term = prior("l6", l6)
sqrt_tv_term = prior("sqrt_tv", sqrt_tv)
