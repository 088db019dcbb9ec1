"""Feature manipulations from the decoder papers, one registered function each.

Every experiment is ``fn(feats, stats=None, **params) -> (features, labels)``: ``feats`` is an
``N x ...`` tensor of the input images' features (may be empty for the ones that need none),
``stats`` a :class:`FeatureStats` of a feature population (for random sampling), and the result is
the batch of manipulated features to decode plus one short label per row for the grid.

Spec strings (CLI ``--experiment``): ``NAME`` or ``NAME=VALUE``, e.g. ``topk=5``, ``interpolate=8``.
"""
import torch

from ..errors import PreimageError
from ..registry import Registry

EXPERIMENTS = Registry("experiment")


def register(name, param=None, per_image=False):
    """Register an experiment; ``param`` names the value it takes after '=' (None: takes none).
    ``per_image``: row i of its result is image i's features changed (so ``apply`` compares the
    reconstruction with image i); otherwise the rows are new feature vectors (no original to compare)."""
    def deco(fn):
        fn.param = param
        fn.per_image = per_image
        return EXPERIMENTS.register(name)(fn)

    return deco


def parse_spec(spec):
    """``"topk=5"`` -> ("topk", 5.0); ``"binarize"`` -> ("binarize", None)."""
    name, _, value = spec.partition("=")
    if name not in EXPERIMENTS:
        raise PreimageError(f"unknown experiment '{name}' (expected one of: {', '.join(sorted(EXPERIMENTS))})")
    if value == "":
        return name, None
    if EXPERIMENTS[name].param is None:
        raise PreimageError(f"experiment '{name}' takes no value: write '{name}', not '{spec}'")
    try:
        return name, float(value)
    except ValueError:
        raise PreimageError(f"experiment '{name}' takes a number, got '{value}'") from None


def is_per_image(spec):
    """Whether the experiment ``spec`` (None: plain reconstruction) keeps one row per input image."""
    return spec is None or EXPERIMENTS[parse_spec(spec)[0]].per_image


def run_experiment(spec, feats, stats=None):
    name, value = parse_spec(spec)
    fn = EXPERIMENTS[name]
    kw = {fn.param: value} if value is not None and fn.param else {}
    return fn(feats, stats=stats, **kw)


class FeatureStats:
    """Per-component statistics of a feature population (rows = samples): mean, std, min, max, and
    a histogram per component for sampling."""

    def __init__(self, feats, bins=32):
        # on the CPU: the sampling below uses a seeded CPU generator, and these are small per-unit vectors
        f = feats.detach().flatten(1).double().cpu()
        if f.shape[0] < 2:
            raise PreimageError("random features need the statistics of at least 2 feature vectors "
                                "(give more images or --stats FEATS/)")
        self.shape = tuple(feats.shape[1:])
        self.mean, self.std = f.mean(0), f.std(0)
        self.min, self.max = f.min(0).values, f.max(0).values
        self.bins = bins
        span = (self.max - self.min).clamp_min(1e-12)
        idx = ((f - self.min) / span * bins).long().clamp(0, bins - 1)
        self.hist = torch.zeros(f.shape[1], bins, dtype=torch.float64)
        self.hist.scatter_add_(1, idx.t(), torch.ones_like(idx.t(), dtype=torch.float64))
        self.dtype, self.device = feats.dtype, feats.device


def _topk_mask(feats, k):
    f = feats.flatten(1)
    k = int(k)
    if not 0 < k <= f.shape[1]:
        raise PreimageError(f"k must be between 1 and {f.shape[1]}, got {k}")
    mask = torch.zeros_like(f, dtype=torch.bool)
    mask.scatter_(1, f.topk(k, dim=1).indices, True)
    return mask.view_as(feats)


@register("topk", "k", per_image=True)
def topk(feats, stats=None, k=5):
    """Keep only the k largest components of each feature vector (the rest set to zero)."""
    return torch.where(_topk_mask(feats, k), feats, torch.zeros_like(feats)), [f"top {int(k)}"] * len(feats)


@register("all-but-topk", "k", per_image=True)
def all_but_topk(feats, stats=None, k=5):
    """Set the k largest components to zero, keep the rest."""
    return torch.where(_topk_mask(feats, k), torch.zeros_like(feats), feats), [f"all but top {int(k)}"] * len(feats)


@register("interpolate", "steps")
def interpolate(feats, stats=None, steps=8):
    """Linear interpolation from the first image's features to the second's, ``steps`` points inclusive."""
    if len(feats) < 2:
        raise PreimageError("interpolate needs two images")
    steps = int(steps)
    if steps < 2:
        raise PreimageError(f"interpolate needs at least 2 steps, got {steps}")
    a = torch.linspace(0, 1, steps, dtype=feats.dtype, device=feats.device).view(-1, *[1] * (feats.dim() - 1))
    return (1 - a) * feats[0:1] + a * feats[1:2], [f"{x:.2f}" for x in a.flatten().tolist()]


def _generator(seed):
    return torch.Generator(device="cpu").manual_seed(int(seed))


@register("gaussian", "n")
def gaussian(feats, stats=None, n=8, seed=0):
    """Random features: each component from a Gaussian with its population mean and std, truncated to
    the observed [min, max] range (so non-negative ReLU features stay non-negative)."""
    st = stats or FeatureStats(feats)
    n = int(n)
    g = _generator(seed)
    x = st.mean + st.std * torch.randn(n, st.mean.numel(), generator=g, dtype=torch.float64)
    x = torch.maximum(torch.minimum(x, st.max), st.min)
    return x.view(n, *st.shape).to(st.device, st.dtype), [f"gaussian {i}" for i in range(n)]


@register("histogram", "n")
def histogram(feats, stats=None, n=8, seed=0):
    """Random features: each component drawn independently from its population histogram (uniform
    within the drawn bin)."""
    st = stats or FeatureStats(feats)
    n = int(n)
    g = _generator(seed)
    b = torch.multinomial(st.hist, n, replacement=True, generator=g).t()  # n x D bin numbers
    u = torch.rand(b.shape, generator=g, dtype=torch.float64)
    width = (st.max - st.min) / st.bins
    x = st.min + (b.double() + u) * width
    return x.view(n, *st.shape).to(st.device, st.dtype), [f"histogram {i}" for i in range(n)]


@register("binarize", per_image=True)
def binarize(feats, stats=None):
    """Positive components set to the mean of that vector's positive components, the rest to zero
    (keeps which units fire, drops how strongly)."""
    f = feats.flatten(1)
    pos = f > 0
    level = (f * pos).sum(1, keepdim=True) / pos.sum(1, keepdim=True).clamp_min(1)
    return torch.where(pos, level.expand_as(f), torch.zeros_like(f)).view_as(feats), ["binarized"] * len(feats)


@register("neuron", "index")
def neuron(feats, stats=None, index=0, value=None):
    """A single active unit: all components zero except ``index``, set to its largest observed value
    (from the images or the population statistics)."""
    index = int(index)
    src = stats.max if stats is not None else (feats.flatten(1).max(0).values if len(feats) else None)
    shape = stats.shape if stats is not None else tuple(feats.shape[1:])
    d = int(torch.tensor(shape).prod())
    if not 0 <= index < d:
        raise PreimageError(f"unit index must be between 0 and {d - 1}, got {index}")
    v = value if value is not None else (float(src[index]) if src is not None else 1.0)
    if v <= 0:
        v = float(src.max()) if src is not None else 1.0
    ref = feats if len(feats) else stats.mean
    x = torch.zeros(1, d, dtype=ref.dtype, device=ref.device)
    x[0, index] = v
    return x.view(1, *shape), [f"unit {index}"]
