"""0/1 masks over a feature (shape without the batch dimension), and the ``--mask`` text that makes them.

Mask specs (several are combined with AND):

``window:5``            the centred 5 x 5 spatial window of a conv feature (``window:5x3`` for 5 high, 3 wide)
``box:Y,X,H,W``         the spatial window with top-left corner (Y, X) and size H x W
``channels:0-47``       a channel subset (``channels:0,5,9-12``)
``group:1/2``           the first of two equal channel groups (grouped-convolution halves)
``PATH.npy``            any boolean/0-1 array broadcastable to the feature shape
"""
import os

import numpy as np
import torch

from ..errors import PreimageError


def window(shape, height, width=None, top=None, left=None):
    """Spatial window mask for a C x H x W feature; centred unless top/left are given."""
    if len(shape) != 3:
        raise PreimageError(f"a spatial window needs a C x H x W feature, got shape {tuple(shape)}", where="mask")
    width = height if width is None else width
    _, H, W = shape
    height, width = min(height, H), min(width, W)
    top = (H - height) // 2 if top is None else top
    left = (W - width) // 2 if left is None else left
    if top < 0 or left < 0 or top + height > H or left + width > W:
        raise PreimageError(f"window {height}x{width} at ({top}, {left}) does not fit a {H} x {W} feature", where="mask")
    m = torch.zeros(tuple(shape))
    m[:, top:top + height, left:left + width] = 1
    return m


def channels(shape, indices):
    """Mask selecting the given channels (dimension 0 of the feature, or the only one of a vector)."""
    m = torch.zeros(tuple(shape))
    idx = list(indices)
    if not idx or min(idx) < 0 or max(idx) >= shape[0]:
        raise PreimageError(f"channels {idx[:3]}... outside 0..{shape[0] - 1}", where="mask")
    m[idx] = 1
    return m


def _ranges(text):
    out = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def parse(spec, shape):
    """One ``--mask`` spec -> 0/1 float tensor of ``shape`` (the feature shape without batch)."""
    spec = spec.strip()
    try:
        if spec.startswith("window:"):
            size = spec.split(":", 1)[1].lower()
            h, _, w = size.partition("x")
            return window(shape, int(h), int(w) if w else None)
        if spec.startswith("box:"):
            y, x, h, w = (int(v) for v in spec.split(":", 1)[1].split(","))
            return window(shape, h, w, top=y, left=x)
        if spec.startswith("channels:"):
            return channels(shape, _ranges(spec.split(":", 1)[1]))
        if spec.startswith("group:"):
            k, g = (int(v) for v in spec.split(":", 1)[1].split("/"))
            if not 1 <= k <= g or shape[0] % g:
                raise PreimageError(f"group {k}/{g} does not divide {shape[0]} channels", where="mask")
            n = shape[0] // g
            return channels(shape, range((k - 1) * n, k * n))
    except ValueError:
        raise PreimageError(f"cannot read mask spec {spec!r} (see 'preimage invert --help')", where="mask") from None
    if spec.endswith(".npy"):
        if not os.path.isfile(spec):
            raise PreimageError("mask file not found", path=spec)
        arr = np.load(spec)
        try:
            arr = np.broadcast_to(arr.astype(np.float32) != 0, tuple(shape)).astype(np.float32)
        except ValueError:
            raise PreimageError(f"mask of shape {arr.shape} does not broadcast to the feature shape {tuple(shape)}",
                                path=spec) from None
        return torch.from_numpy(np.ascontiguousarray(arr))
    raise PreimageError(f"unknown mask spec {spec!r}; expected window:N, box:Y,X,H,W, channels:A-B, group:K/G "
                        "or a .npy file", where="mask")


def combine(specs, shape):
    """AND of several specs; None when there are none (the whole feature)."""
    if not specs:
        return None
    m = torch.ones(tuple(shape))
    for s in specs:
        m = m * (parse(s, shape) if isinstance(s, str) else torch.as_tensor(s, dtype=torch.float32))
    if not m.any():
        raise PreimageError(f"the mask {' & '.join(map(str, specs))} selects nothing", where="mask")
    return m
