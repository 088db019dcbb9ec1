"""Decoder architectures: plain torch modules, one registered builder per architecture.

Every builder has the signature ``builder(feature_shape, image_shape, encoder=None, **options) -> nn.Module``
where ``feature_shape`` is the shape of one feature sample (``(D,)`` or ``(C, h, w)``) and
``image_shape`` is ``(3, H, W)``, the network input the decoder reconstructs. The module maps an
``N x feature_shape`` tensor to ``N x 3 x H x W`` in the encoder's preprocessed input space. When an
architecture's natural output size differs from ``(H, W)`` the last step resizes (bilinear), so a
decoder always answers at the image size it was trained for.

Formulas and constants: ``../shared/reference/methods.md`` section 3.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PreimageError
from ..registry import Registry

ARCHITECTURES = Registry("decoder architecture")
register = ARCHITECTURES.register


def build_decoder(arch, feature_shape, image_shape, encoder=None, **options):
    """Build the decoder ``arch`` (a name in :data:`ARCHITECTURES`) for the given shapes."""
    if arch not in ARCHITECTURES:
        raise PreimageError(f"unknown decoder architecture '{arch}' (expected one of: {', '.join(sorted(ARCHITECTURES))})")
    model = ARCHITECTURES[arch](tuple(feature_shape), tuple(image_shape), encoder=encoder, **options)
    model.arch = arch
    model.arch_options = dict(options)
    return model


class ResizeTo(nn.Module):
    """Resize the decoder's output to the training image size (identity when it already matches)."""

    def __init__(self, size):
        super().__init__()
        self.size = tuple(int(s) for s in size)

    def forward(self, x):
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


class CropTo(nn.Module):
    """Crop the top-left ``size`` (the part an upconvolution shares with the encoder's input grid)."""

    def __init__(self, size):
        super().__init__()
        self.size = tuple(int(v) for v in size)

    def forward(self, x):
        return x[..., :self.size[0], :self.size[1]]


def _upconv_stack(channels, in_channels, kernel=5, slope=0.2, last_act=False):
    """Upconvolutions of stride 2 that double the size exactly, leaky ReLU after all but the last.

    Output size (n - 1) * 2 - 2 * padding + kernel + output_padding = 2 n for odd and even kernels.
    """
    layers = []
    c = in_channels
    for i, cout in enumerate(channels):
        layers.append(nn.ConvTranspose2d(c, cout, kernel, stride=2, padding=(kernel - 1) // 2, output_padding=kernel % 2))
        if i < len(channels) - 1 or last_act:
            layers.append(nn.LeakyReLU(slope))
        c = cout
    return layers


def _fc_stack(in_dim, sizes, slope):
    """Fully connected layers of the given sizes, each followed by a leaky ReLU."""
    layers = []
    for dout in sizes:
        layers += [nn.Linear(in_dim, dout), nn.LeakyReLU(slope)]
        in_dim = dout
    return layers


def _check(cond, message):
    if not cond:
        raise PreimageError(message)


class AlexNetConv5Decoder(nn.Module):
    """Dosovitskiy & Brox's conv5 decoder: three 3x3 convs, then 5x5 stride-2 upconvolutions.

    With the paper's sizes a 256 x 6 x 6 input becomes 3 x 192 x 192 (12, 24, 48, 96, 192 px).
    Leaky ReLU (slope 0.2) after every layer but the last.
    """

    def __init__(self, in_channels, image_size, convs=(256, 256, 256), ups=(256, 128, 64, 32, 3), slope=0.2):
        super().__init__()
        layers, c = [], in_channels
        for cout in convs:
            layers += [nn.Conv2d(c, cout, 3, padding=1), nn.LeakyReLU(slope)]
            c = cout
        layers += _upconv_stack(ups, c, kernel=5, slope=slope)
        self.net = nn.Sequential(*layers)
        self.resize = ResizeTo(image_size)

    def forward(self, f):
        return self.resize(self.net(f))


class AlexNetFC8Decoder(nn.Module):
    """Dosovitskiy & Brox's fc decoder: fully connected layers, reshape, 5x5 stride-2 upconvolutions.

    Paper sizes: 1000 -> fc 4096, 4096, 4096 -> 256 x 4 x 4 -> upconv 256, 128, 64, 32, 3 (8..128 px).
    Leaky ReLU (slope 0.2) after every layer but the last.
    """

    def __init__(self, in_dim, image_size, fcs=(4096, 4096, 4096), start=(256, 4, 4), ups=(256, 128, 64, 32, 3), slope=0.2):
        super().__init__()
        self.fc = nn.Sequential(*_fc_stack(in_dim, list(fcs) + [math.prod(start)], slope))
        self.start = tuple(start)
        self.up = nn.Sequential(*_upconv_stack(ups, start[0], kernel=5, slope=slope))
        self.resize = ResizeTo(image_size)

    def forward(self, f):
        x = self.fc(f.flatten(1)).view(-1, *self.start)
        return self.resize(self.up(x))


@register("alexnet_conv5")
def alexnet_conv5(feature_shape, image_shape, encoder=None, width=1.0, **kw):
    """Dosovitskiy & Brox AlexNet conv5 decoder (spatial features C x h x w). ``width`` scales channels."""
    _check(len(feature_shape) == 3, f"alexnet_conv5 needs spatial features C x H x W, got shape {feature_shape}")
    convs = kw.pop("convs", [max(1, round(256 * width))] * 3)
    ups = kw.pop("ups", [max(1, round(c * width)) for c in (256, 128, 64, 32)] + [image_shape[0]])
    return AlexNetConv5Decoder(feature_shape[0], image_shape[1:], convs=convs, ups=ups, **kw)


@register("alexnet_fc8")
def alexnet_fc8(feature_shape, image_shape, encoder=None, width=1.0, **kw):
    """Dosovitskiy & Brox AlexNet fc decoder (any feature shape, flattened). ``width`` scales layer sizes."""
    fcs = kw.pop("fcs", [max(1, round(4096 * width))] * 3)
    start = kw.pop("start", [max(1, round(256 * width)), 4, 4])
    ups = kw.pop("ups", [max(1, round(c * width)) for c in (256, 128, 64, 32)] + [image_shape[0]])
    return AlexNetFC8Decoder(math.prod(feature_shape), image_shape[1:], fcs=fcs, start=start, ups=ups, **kw)


# ---------------------------------------------------------------- mirror decoder (PoseNet study)

def _is_converted_pool(m):
    return all(hasattr(m, a) for a in ("kernel", "strides", "pads_begin")) and isinstance(m, nn.Module)


def encoder_geometry(encoder, image_shape, device="cpu"):
    """The encoder's spatial stages in forward order, found by running it once with forward hooks.

    Returns a list of dicts ``{kind: "conv"|"pool"|"fc", in_shape, out_shape, kernel, stride, padding}``
    for each Conv2d / pooling / Linear module that ran. ``encoder`` must be a torch module (its
    submodules are hooked); the features it returns are not used.
    """
    _check(isinstance(encoder, nn.Module), "the mirror decoder needs the encoder as a torch module to read its geometry")
    stages, handles = [], []

    def hook(mod, inp, out):
        x = inp[0] if isinstance(inp, tuple) else inp
        if not torch.is_tensor(x) or not torch.is_tensor(out):
            return
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        if isinstance(mod, nn.Linear):
            stages.append(dict(kind="fc", in_shape=tuple(x.shape[1:]), out_shape=tuple(out.shape[1:])))
            return
        if x.dim() != 4 or out.dim() != 4:
            return
        if _is_converted_pool(mod):  # the ONNX -> torch converter's pooling (ONNX attribute names)
            k, st, pad = mod.kernel, mod.strides, mod.pads_begin
            kind = "pool"
        else:
            kind = "conv" if isinstance(mod, nn.Conv2d) else "pool"
            k, st = mod.kernel_size, mod.stride or mod.kernel_size
            pad = mod.padding if not isinstance(mod.padding, str) else 0
        stages.append(dict(kind=kind, in_shape=tuple(x.shape[1:]), out_shape=tuple(out.shape[1:]),
                           kernel=pair(k), stride=pair(st), padding=pair(pad)))

    for m in encoder.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear)) or _is_converted_pool(m):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            encoder(torch.zeros(1, *image_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    _check(stages, "found no Conv2d, pooling or Linear layers in the encoder to mirror")
    return stages


class MirrorDecoder(nn.Module):
    """The encoder's layers mirrored: each upconvolution followed by ReLU and batch normalization.

    Fully connected encoder layers become fully connected layers (ReLU + BatchNorm1d); each
    convolution or pooling becomes an upconvolution with the same kernel, stride and padding, from its
    output channels back to its input channels. The last upconvolution (to the image's channels) has no
    activation and no normalization.
    """

    def __init__(self, feature_shape, image_shape, stages):
        super().__init__()
        fc_layers, conv_layers = [], []
        rev = list(reversed(stages))
        feat_dim = math.prod(feature_shape)
        spatial = [s for s in rev if s["kind"] != "fc"]
        _check(spatial, "the encoder has no spatial layers to mirror")
        first_spatial = spatial[0]["out_shape"]
        if len(feature_shape) == 1:
            d = feat_dim
            for s in rev:
                if s["kind"] != "fc":
                    break
                dout = math.prod(s["in_shape"])
                fc_layers += [nn.Linear(d, dout), nn.ReLU(), nn.BatchNorm1d(dout)]
                d = dout
            if d != math.prod(first_spatial):
                dout = math.prod(first_spatial)
                fc_layers += [nn.Linear(d, dout), nn.ReLU(), nn.BatchNorm1d(dout)]
        self.fc = nn.Sequential(*fc_layers)
        self.start = tuple(first_spatial) if len(feature_shape) == 1 else tuple(feature_shape)
        for i, s in enumerate(spatial):
            cin, cout = s["out_shape"][0], s["in_shape"][0]
            last = i == len(spatial) - 1
            if last:
                cout = image_shape[0]
            (kh, kw), (sh, sw), (ph, pw) = s["kernel"], s["stride"], s["padding"]
            # output_padding picks the exact input size among the sizes a strided conv maps together
            # (ceil-mode pooling maps several sizes together); a size still too large is cropped (Caffe's Crop)
            op, size = [], []
            for o, n, k, st, p in ((s["out_shape"][1], s["in_shape"][1], kh, sh, ph), (s["out_shape"][2], s["in_shape"][2], kw, sw, pw)):
                op.append(min(max(n - ((o - 1) * st - 2 * p + k), 0), st - 1))
                size.append((o - 1) * st - 2 * p + k + op[-1])
            conv_layers.append(nn.ConvTranspose2d(cin, cout, (kh, kw), stride=(sh, sw), padding=(ph, pw), output_padding=tuple(op)))
            if size != list(s["in_shape"][1:]):
                conv_layers.append(CropTo(s["in_shape"][1:]))
            if not last:
                conv_layers += [nn.ReLU(), nn.BatchNorm2d(cout)]
        self.up = nn.Sequential(*conv_layers)
        self.resize = ResizeTo(image_shape[1:])

    def forward(self, f):
        x = self.fc(f.flatten(1)) if len(self.fc) else f
        return self.resize(self.up(x.reshape(-1, *self.start)))


@register("mirror")
def mirror(feature_shape, image_shape, encoder=None, stages=None, **kw):
    """Mirror of the encoder's geometry (the PoseNet-study decoder). Needs the encoder, or ``stages``
    as returned by :func:`encoder_geometry` (saved in checkpoints so a decoder reloads without it)."""
    if stages is None:
        _check(encoder is not None, "the mirror decoder is built from the encoder: pass the model (--model) it decodes")
        stages = encoder_geometry(encoder, image_shape)
    return MirrorDecoder(feature_shape, image_shape, stages)


def stages_to_json(stages):
    """encoder_geometry's stages with lists for tuples (as checkpoints store them)."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in s.items()} for s in stages]


# ---------------------------------------------------------------- DeePSiM (perceptual similarity metrics)

class DeePSiMGenerator(nn.Module):
    """Generator of Dosovitskiy & Brox's perceptual-loss decoder (as released for fc6 features).

    fc 4096, 4096, 4096 -> 256 x 4 x 4 -> alternating 4x4 stride-2 upconvolutions and 3x3 convolutions,
    leaky ReLU 0.3 after every layer but the last; 4 -> 256 px with the default six upconvolutions.
    """

    def __init__(self, in_dim, image_size, fcs=(4096, 4096, 4096), start=(256, 4, 4), ups=(256, 256, 128, 64, 32, 3), slope=0.3):
        super().__init__()
        self.fc = nn.Sequential(*_fc_stack(in_dim, list(fcs) + [math.prod(start)], slope))
        self.start = tuple(start)
        up, c = [], start[0]
        for i, cout in enumerate(ups):
            last = i == len(ups) - 1
            if last:
                up.append(nn.ConvTranspose2d(c, cout, 4, stride=2, padding=1))
            else:
                up += [nn.ConvTranspose2d(c, cout, 4, stride=2, padding=1), nn.LeakyReLU(slope),
                       nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(slope)]
            c = cout
        self.up = nn.Sequential(*up)
        self.resize = ResizeTo(image_size)

    def forward(self, f):
        return self.resize(self.up(self.fc(f.flatten(1)).view(-1, *self.start)))


class DeePSiMDiscriminator(nn.Module):
    """conv 32 7x7/4, 64 5x5, 128 3x3/2, 256 3x3, 256 3x3/2, average pool, fc 256, fc 2 (real/fake logits)."""

    def __init__(self, in_channels=3, widths=(32, 64, 128, 256, 256, 256)):
        super().__init__()
        w = widths
        spec = [(w[0], 7, 4), (w[1], 5, 1), (w[2], 3, 2), (w[3], 3, 1), (w[4], 3, 2)]
        layers, c = [], in_channels
        for cout, k, s in spec:
            layers += [nn.Conv2d(c, cout, k, stride=s, padding=k // 2), nn.ReLU()]
            c = cout
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c, w[5]), nn.ReLU(), nn.Linear(w[5], 2))

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class DeePSiM(nn.Module):
    """Generator + discriminator; ``forward`` is the generator so ``apply`` treats it like any decoder."""

    adversarial = True

    def __init__(self, generator, discriminator):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, f):
        return self.generator(f)


@register("deepsim")
def deepsim(feature_shape, image_shape, encoder=None, width=1.0, **kw):
    """DeePSiM-style generator with a discriminator (trained with image, feature and adversarial losses)."""
    fcs = kw.pop("fcs", [max(1, round(4096 * width))] * 3)
    start = kw.pop("start", [max(1, round(256 * width)), 4, 4])
    ups = kw.pop("ups", [max(1, round(c * width)) for c in (256, 256, 128, 64, 32)] + [image_shape[0]])
    dwidths = kw.pop("disc_widths", [max(1, round(c * width)) for c in (32, 64, 128, 256, 256, 256)])
    gen = DeePSiMGenerator(math.prod(feature_shape), image_shape[1:], fcs=fcs, start=start, ups=ups, **kw)
    return DeePSiM(gen, DeePSiMDiscriminator(image_shape[0], dwidths))
