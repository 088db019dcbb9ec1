"""Two-stream decoders from shallow features (HOG, dense SIFT, LBP), after Dosovitskiy & Brox's supplement.

The paper's networks take a C x h x w feature map (HOG 32 x 32 x 31, SIFT 64 x 64 x 133, LBP 16 x 16 x 58
for 256 x 256 images) through two streams:

* stream A compresses: 3x3 convolutions of stride 2 (``down`` channels), then as many 4x4 stride-2
  upconvolutions back to the input grid (cropped to exactly h x w);
* stream B keeps the resolution: 3x3 convolutions of stride 1 (``keep`` channels);

the two are concatenated and decoded by 4x4 stride-2 upconvolutions (``ups`` channels, the last one to
the image's 3 channels). Leaky ReLU (slope 0.2) after every layer but the last.

The layer table here is preimage's reconstruction of that description (the supplement's own tables were
not at hand): see docs/decoders.md, "Decoders from shallow features". The number of output
upconvolutions follows from the feature grid and the image size, round(log2(H / h)) (HOG 32 -> 256: 3;
SIFT 64 -> 256: 2; LBP 16 -> 256: 4), so the builders take any representation option (cell, step) and
image size; a final bilinear resize lands on the image size when the grid is not an exact power-of-two
fraction of it (DSIFT's frames, VLFeat's cell rounding).
"""
import math

import torch
import torch.nn as nn

from ..errors import PreimageError
from .architectures import CropTo, ResizeTo, register

# the per-representation defaults at width 1: stream A's stride-2 convs, stream B's stride-1 convs, and the
# channels of the output upconvolutions before the last one (halving from 256, at least 32). Stream A
# compresses the paper's input grid to 8 x 8 (HOG 32: two steps; SIFT 64: three; LBP 16: one).
TWOSTREAM_DEFAULTS = {
    "hog_twostream": {"down": (256, 512), "keep": (256, 256)},
    "sift_twostream": {"down": (256, 512, 512), "keep": (256, 256)},
    "lbp_twostream": {"down": (256,), "keep": (256, 256)},
}


def output_upconvs(feature_hw, image_hw):
    """Number of stride-2 upconvolutions from the feature grid to the image: round(log2(size ratio)), at least 1."""
    ratio = max(image_hw[0] / feature_hw[0], image_hw[1] / feature_hw[1])
    return max(1, int(round(math.log2(ratio))))


def up_channels(n, width=1.0, out_channels=3):
    """Channels of the ``n`` output upconvolutions: 256, 128, ... (at least 32), scaled by ``width``; the last
    one ``out_channels``."""
    return [max(1, round(max(32, 256 >> i) * width)) for i in range(n - 1)] + [out_channels]


def _upconv(cin, cout):
    """4x4 stride-2 upconvolution, padding 1: doubles the size exactly."""
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)


class TwoStreamDecoder(nn.Module):
    """Stream A (compress, expand back) and stream B (full resolution), concatenated, then upconvolved.

    ``down``: stream A's stride-2 3x3 conv channels; its upconvolutions back mirror them (channels
    ``down[-2], ..., down[0], down[0]``). ``keep``: stream B's stride-1 3x3 conv channels. ``ups``: the output
    upconvolutions' channels (the last = image channels).
    """

    def __init__(self, in_channels, feature_hw, image_hw, down, keep, ups, slope=0.2):
        super().__init__()
        if not down or not keep or not ups:
            raise PreimageError("a two-stream decoder needs at least one layer in each stream and one upconvolution")
        act = lambda: nn.LeakyReLU(slope)  # noqa: E731
        a, c = [], in_channels
        for cout in down:
            a += [nn.Conv2d(c, cout, 3, stride=2, padding=1), act()]
            c = cout
        for cout in list(down[-2::-1]) + [down[0]]:
            a += [_upconv(c, cout), act()]
            c = cout
        a.append(CropTo(feature_hw))  # ceil(h / 2^k) * 2^k >= h: the part on the input grid
        self.stream_a = nn.Sequential(*a)
        b, c = [], in_channels
        for cout in keep:
            b += [nn.Conv2d(c, cout, 3, padding=1), act()]
            c = cout
        self.stream_b = nn.Sequential(*b)
        u, c = [], down[0] + keep[-1]
        for i, cout in enumerate(ups):
            u.append(_upconv(c, cout))
            if i < len(ups) - 1:
                u.append(act())
            c = cout
        self.up = nn.Sequential(*u)
        self.resize = ResizeTo(image_hw)

    def forward(self, f):
        j = torch.cat([self.stream_a(f), self.stream_b(f)], dim=1)
        return self.resize(self.up(j))


def _scaled(channels, width):
    return [max(1, round(c * width)) for c in channels]


def _two_stream(name, feature_shape, image_shape, width=1.0, down=None, keep=None, ups=None, **kw):
    if len(feature_shape) != 3:
        raise PreimageError(f"{name} needs spatial features C x H x W (a representation's map, e.g. -m hog -l hog), "
                            f"got shape {list(feature_shape)}")
    d = TWOSTREAM_DEFAULTS[name]
    down = list(down) if down is not None else _scaled(d["down"], width)
    keep = list(keep) if keep is not None else _scaled(d["keep"], width)
    if ups is None:
        ups = up_channels(output_upconvs(feature_shape[1:], image_shape[1:]), width, image_shape[0])
    return TwoStreamDecoder(feature_shape[0], feature_shape[1:], image_shape[1:], down, keep, list(ups), **kw)


@register("hog_twostream")
def hog_twostream(feature_shape, image_shape, encoder=None, **kw):
    """Two-stream decoder for HOG maps (paper: 32 x 32 x 31 -> 256 x 256 x 3). Options ``width``, ``down``,
    ``keep``, ``ups``."""
    return _two_stream("hog_twostream", feature_shape, image_shape, **kw)


@register("sift_twostream")
def sift_twostream(feature_shape, image_shape, encoder=None, **kw):
    """Two-stream decoder for dense SIFT maps (preimage's DSIFT, 128 channels on its step grid; the paper:
    a 64 x 64 x 133 keypoint map). Options ``width``, ``down``, ``keep``, ``ups``."""
    return _two_stream("sift_twostream", feature_shape, image_shape, **kw)


@register("lbp_twostream")
def lbp_twostream(feature_shape, image_shape, encoder=None, **kw):
    """Two-stream decoder for LBP maps (paper: 16 x 16 x 58 -> 256 x 256 x 3). Options ``width``, ``down``,
    ``keep``, ``ups``."""
    return _two_stream("lbp_twostream", feature_shape, image_shape, **kw)


# the decoder `decoder train` picks for a store extracted from a representation, when --arch is not given
DEFAULT_FOR_REPRESENTATION = {"hog": "hog_twostream", "hogb": "hog_twostream", "dsift": "sift_twostream",
                              "lbp": "lbp_twostream"}


def default_arch(model, feature_shape):
    """The two-stream decoder for a store's recorded ``model`` when it is a representation spec (``hog``,
    ``dsift:step=4``, ...) with spatial features; None otherwise (the training default applies)."""
    from ..models.representations import is_spec, parse_spec  # deferred: the representations' modules

    if not model or len(feature_shape) != 3 or not is_spec(model):
        return None
    return DEFAULT_FOR_REPRESENTATION.get(parse_spec(model)[0])
