"""Parameterisations: what the optimiser changes. ``pixels`` is the image itself (the papers' choice);
others (a decorrelated or Fourier basis) register beside it.

A parameterisation makes the canvases: one tensor per group of samples that share a canvas size (the
jitter margin T - 1), in batch order, each initialised from its sample's own seed or start image.
"""
from typing import List, Optional, Sequence

import torch

from ..registry import Registry

PARAMETERIZATIONS = Registry("parameterization")


def init_noise(shape, seed, scale, dtype):
    """Uniform noise in [-1, 1], rescaled so its 95th percentile is ``scale`` (from a per-seed CPU RNG)."""
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    return (u * (scale / torch.quantile(u.flatten(), 0.95))).to(dtype)


def pad_to_canvas(img, margin):
    """An image enlarged by ``margin`` pixels (replicated border), placed at the canvas's central offset."""
    if margin == 0:
        return img.clone()
    top = margin // 2  # == transforms.central_offset(margin + 1)
    return torch.nn.functional.pad(img[None], (top, margin - top, top, margin - top), mode="replicate")[0]


class Pixels:
    """The image pixels, per sample: noise from the sample's seed (95th percentile ``init_scale``), zeros,
    or a given start image (caricatures)."""

    name = "pixels"

    def __init__(self, seeds: Sequence[int], channels: int = 3, init: str = "noise",
                 init_scale: Sequence[float] = (1.0,), images: Optional[List[Optional[torch.Tensor]]] = None):
        n = len(seeds)
        self.seeds = list(seeds)
        self.channels, self.init = channels, init
        self.init_scale = list(init_scale) * n if len(init_scale) == 1 else list(init_scale)
        self.images = list(images) if images is not None else [None] * n

    def start(self, i, size, margin, dtype):
        H, W = size
        if self.images[i] is not None:
            return pad_to_canvas(self.images[i].to(dtype), margin)
        if self.init == "zeros":
            return pad_to_canvas(torch.zeros(self.channels, H, W, dtype=dtype), margin)
        return init_noise((self.channels, H + margin, W + margin), self.seeds[i], self.init_scale[i], dtype)

    def canvases(self, groups, margins, size, device, dtype):
        return [torch.stack([self.start(i, size, margins[i], dtype) for i in g]).to(device) for g in groups]


@PARAMETERIZATIONS.register("pixels")
def pixels(seeds, channels=3, init="noise", init_scale=(1.0,), images=None):
    return Pixels(seeds, channels, init, init_scale, images)
