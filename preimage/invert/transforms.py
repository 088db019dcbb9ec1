"""Jitter: each step the network sees a random H x W crop of a larger canvas (Mahendran & Vedaldi 2016).

The canvas is (H + T - 1) x (W + T - 1); the offset tau is uniform in [0, T - 1]^2; the result is the
canvas's central crop. T = max(1, round(stride / 4)) from the target layer's receptive-field stride.
"""
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
