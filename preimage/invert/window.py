"""Unit objectives on the receptive field only.

Activation maximization reads one location of a layer (the channel's centre unit). That value, and its
gradient, depend only on the input pixels inside the unit's receptive field. So the step may run the
network on that window of the input instead of the whole image: at AlexNet's conv3 (field 99 px of 227)
that is a fifth of the pixels. The regularizers and the jitter still act on the whole canvas; the data
term's gradient outside the window is zero either way.

The window comes from the model's geometry (receptive field, stride, offset per layer) and is aligned
to the layers' strides, so that the cropped network computes the same units, shifted. Whether that holds
for a given network (padding, ceil-mode pooling, a layer that is not local) is not assumed: :func:`windowed`
checks, once, that the centre units and their input gradients agree with the full forward on a random
input, and returns None (run on the whole input) otherwise.
"""
import math

import torch


def unit_window(receptive_fields, layers, shapes, size):
    """(y0, y1, x0, x1): the part of an input of ``size`` (H, W) that the centre unit of every layer
    in ``layers`` (feature shapes C x h x w in ``shapes``) depends on, its start a multiple of every
    layer's stride; None when a layer is not spatial, has no geometry, or the window is the whole input."""
    spans = []
    for axis in (0, 1):
        start, end, align = size[axis], 0, 1
        for layer in layers:
            rf, shape = receptive_fields.get(layer) or {}, shapes[layer]
            if len(shape) != 3 or not all(k in rf for k in ("size", "stride", "offset")):
                return None
            stride, centre = int(rf["stride"][axis]), shape[1 + axis] // 2
            first = centre * stride + int(rf["offset"][axis])
            start, end = min(start, first), max(end, first + int(rf["size"][axis]))
            align = align * stride // math.gcd(align, stride)
        start = 0 if start <= 0 else (start // align) * align
        spans.append((start, min(size[axis], end)))
    (y0, y1), (x0, x1) = spans
    if (y1 - y0) * (x1 - x0) >= 0.8 * size[0] * size[1]:
        return None  # not worth the bookkeeping
    return y0, y1, x0, x1


class Windowed:
    """``features`` run on ``window`` of the input; each layer's output placed at its own offset in a
    zero tensor of the full output's shape (only the centre unit is read, and it is exact)."""

    def __init__(self, features, window, receptive_fields, shapes):
        self.features, self.window, self.shapes = features, window, shapes
        y0, _, x0, _ = window
        self.offsets = {layer: (y0 // int(receptive_fields[layer]["stride"][0]),
                                x0 // int(receptive_fields[layer]["stride"][1])) for layer in shapes}

    def __call__(self, x):
        y0, y1, x0, x1 = self.window
        out = self.features(x[..., y0:y1, x0:x1])
        full = {}
        for layer, v in out.items():
            if layer not in self.shapes:
                full[layer] = v
                continue
            oy, ox = self.offsets[layer]
            c, h, w = self.shapes[layer]
            hh, ww = min(v.shape[2], h - oy), min(v.shape[3], w - ox)
            placed = v.new_zeros((v.shape[0], c, h, w))
            placed[:, :, oy:oy + hh, ox:ox + ww] = v[:, :, :hh, :ww]
            full[layer] = placed
        return full


def windowed(features, receptive_fields, layers, shapes, size, device, dtype, tol=1e-4):
    """A :class:`Windowed` ``features`` for the centre units of ``layers``, or None where the window
    is not smaller than the input or does not reproduce the full forward (checked here on one random
    input: the centre units' values and input gradients, to ``tol`` of the largest)."""
    shapes = {layer: tuple(shapes[layer]) for layer in layers}
    window = unit_window(receptive_fields, layers, shapes, size)
    if window is None:
        return None
    fast = Windowed(features, window, receptive_fields, shapes)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device, dtype) * 255 - 120
    got = []
    for f in (features, fast):
        xi = x.clone().requires_grad_()
        try:
            out = f(xi)
        except RuntimeError:  # the network does not take the smaller input
            return None
        centre = torch.cat([out[layer][:, :, s[1] // 2, s[2] // 2].flatten() for layer, s in shapes.items()])
        weights = 1 + torch.arange(centre.numel(), device=centre.device, dtype=centre.dtype) % 7
        (g,) = torch.autograd.grad((centre * weights).sum(), xi)
        got.append((centre.detach(), g))
    for a, b in zip(got[0], got[1]):
        if a.shape != b.shape or (a - b).abs().max() > tol * max(float(a.abs().max()), 1e-12):
            return None
    return fast
