"""Jitter: each step the network sees a random H x W crop of a larger canvas (Mahendran & Vedaldi 2016).

The canvas is (H + T - 1) x (W + T - 1); the offset tau is uniform in [0, T - 1]^2; the result is the
canvas's central crop. T = max(1, round(stride / 4)) from the target layer's receptive-field stride.
"""
import math
import random

import torch


def jitter_amount(stride):
    """T for a receptive-field stride (an int or an (h, w) pair; the larger one is used)."""
    s = max(stride) if isinstance(stride, (tuple, list)) else stride
    return max(1, int(round(float(s) / 4)))


def central_offset(T):
    return (T - 1) // 2


class Jitter:
    """Per-sample random offsets from per-sample host RNGs (no device sync; reproducible per seed)."""

    def __init__(self, T, seeds):
        self.T = int(T)
        self.rngs = [random.Random(1_000_003 * int(s) + 17) for s in seeds]

    def offsets(self):
        return [(r.randint(0, self.T - 1), r.randint(0, self.T - 1)) for r in self.rngs] if self.T > 1 else None


def crop(canvas, offsets, height, width):
    """Crop each sample of ``canvas`` (N x C x H' x W') at its (top, left) offset; None -> centre."""
    if offsets is None:
        top = (canvas.shape[-2] - height) // 2
        left = (canvas.shape[-1] - width) // 2
        return canvas[..., top:top + height, left:left + width]
    if len(set(offsets)) == 1:
        t, l = offsets[0]
        return canvas[..., t:t + height, l:l + width]
    # unbind first: indexing canvas[i] would make autograd build a full-batch zero tensor per sample
    return torch.stack([c[:, t:t + height, l:l + width] for c, (t, l) in zip(canvas.unbind(0), offsets)])


# ---- transforms as nouns of a recipe -----------------------------------------------------------------
# A transform maps the list of canvas groups (one tensor per group, samples in batch order) to the
# network's view of them. Jitter comes first: it asks the parameterisation for a margin of T - 1 pixels
# per sample and crops H x W windows; the others keep the size. All randomness comes from per-sample host
# RNGs, so a sample's draws do not depend on the batch it is in, and no step waits on the device.
from ..registry import Registry  # noqa: E402

TRANSFORMS = Registry("transform")


class JitterTransform:
    """Random H x W crops of canvases enlarged by T - 1 pixels (T per sample; T = 1: no jitter)."""

    name = "jitter"

    def __init__(self, T, seeds):
        self.T = [int(t) for t in T]
        self.seeds = list(seeds)

    def margins(self):
        return [t - 1 for t in self.T]

    def start(self, groups):
        """Called at the start of a jittered stage with the batch positions of each group."""
        self.rngs = [Jitter(self.T[g[0]], [self.seeds[i] for i in g]) for g in groups]

    def __call__(self, canvases, size):
        H, W = size
        return [crop(c, j.offsets(), H, W) for c, j in zip(canvases, self.rngs)]

    def state(self):
        return [[r.getstate() for r in j.rngs] for j in self.rngs]

    def load_state(self, state):
        for j, st in zip(self.rngs, state):
            for r, s in zip(j.rngs, st):
                r.setstate(s)


class _Resample:
    """Per-sample random affine resampling of the network's view (scale or rotation), bilinear."""

    def __init__(self, values, seeds, salt):
        self.values = list(values)
        self.seeds = list(seeds)
        self.salt = salt

    def margins(self):
        return [0] * len(self.seeds)

    def start(self, groups):
        self.rngs = [random.Random(7_919 * int(s) + self.salt) for s in self.seeds]
        self.order = [i for g in groups for i in g]

    def matrix(self, v):
        raise NotImplementedError

    def __call__(self, views, size):
        out, start = [], 0
        for v in views:
            n = v.shape[0]
            mats = [self.matrix(self.rngs[self.order[start + i]].choice(self.values)) for i in range(n)]
            start += n
            theta = torch.tensor(mats, dtype=v.dtype, device=v.device)
            grid = torch.nn.functional.affine_grid(theta, list(v.shape), align_corners=False)
            out.append(torch.nn.functional.grid_sample(v, grid, mode="bilinear", padding_mode="border",
                                                       align_corners=False))
        return out

    def state(self):
        return [r.getstate() for r in self.rngs]

    def load_state(self, state):
        for r, s in zip(self.rngs, state):
            r.setstate(s)


class ScaleTransform(_Resample):
    name = "scale"

    def matrix(self, s):
        return [[1.0 / s, 0.0, 0.0], [0.0, 1.0 / s, 0.0]]


class RotateTransform(_Resample):
    name = "rotate"

    def matrix(self, degrees):
        a = math.radians(degrees)
        return [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]


@TRANSFORMS.register("jitter")
def jitter(T, seeds):
    """Mahendran & Vedaldi's jitter: T per sample (T = max(1, round(stride / 4)) in the presets)."""
    return JitterTransform(T, seeds)


@TRANSFORMS.register("scale")
def scale(seeds, factors=(0.95, 1.0, 1.05)):
    """Each step, zoom each sample's view by a factor drawn from ``factors`` (Lucent-style robustness)."""
    return ScaleTransform(factors, seeds, salt=31)


@TRANSFORMS.register("rotate")
def rotate(seeds, degrees=(-5.0, 0.0, 5.0)):
    """Each step, rotate each sample's view by an angle (degrees) drawn from ``degrees``."""
    return RotateTransform(degrees, seeds, salt=57)
