"""The registry, the spec syntax and the module interface shared by every representation.

A representation computes a chain of named stages (``gradients``, ``orientations``, ``cells``, ...,
and the final descriptor, named after the representation). ``outputs`` selects which stages
``forward`` returns; the rest are computed only as far as the deepest requested stage needs.
"""
import inspect
import os

import torch
from torch import nn

from ...device import resolve_device
from ...errors import PreimageError
from ...registry import Registry

ONE = torch.tensor(1.0)  # the magnitude for copysign(ONE, x): +-1 by the sign of x, as arithmetic

REPRESENTATIONS = Registry("representation")
INPUT = "data"


def parse_spec(spec):
    """``"hog:cell=8,variant=uoctti"`` -> ``("hog", {"cell": "8", "variant": "uoctti"})`` (values as text)."""
    text = os.fspath(spec).strip()
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise PreimageError(f"bad option {item!r} in representation spec {text!r}; expected key=value "
                                "(e.g. hog:cell=8,variant=uoctti)", where="--model")
        options[key.strip()] = value.strip()
    return name.strip().lower(), options


def is_spec(text):
    """True for a registered representation name (with or without options) that is not an existing file."""
    if not isinstance(text, (str, os.PathLike)):
        return False
    text = os.fspath(text)
    if os.path.exists(text):
        return False
    return text.partition(":")[0].strip().lower() in REPRESENTATIONS


def _coerce(value, default, key, name):
    if isinstance(default, bool):
        v = value.lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
        raise PreimageError(f"{name}: option {key}={value!r} must be true or false", where="--model")
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise PreimageError(f"{name}: option {key}={value!r} must be a number", where="--model") from None
    if isinstance(default, int) or key == "size":
        try:
            parts = [int(p) for p in value.lower().split("x")]
        except ValueError:
            raise PreimageError(f"{name}: option {key}={value!r} must be an integer"
                                + (" or HxW" if key == "size" else ""), where="--model") from None
        if key == "size":
            return parts * 2 if len(parts) == 1 else parts
        if len(parts) != 1:
            raise PreimageError(f"{name}: option {key}={value!r} must be an integer", where="--model")
        return parts[0]
    return value.lower()


def build(spec, device="cpu", outputs=None, dtype=None):
    """The representation module for ``spec`` on ``device`` (its ``outputs``: default the descriptor).

    Every representation takes ``size`` (``256``, ``240x320``; ``0``: images keep their own size), the
    input size its preprocessing resizes and centre-crops images to, and ``pixels`` (default false: RGB
    in [0, 1]; true: mean-subtracted 8-bit units, 255 x - 127.5, for the inversion presets)."""
    name, options = parse_spec(spec)
    fn = REPRESENTATIONS.get_or_fail(name)
    params = {k: p.default for k, p in inspect.signature(fn).parameters.items()}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise PreimageError(f"{name} has no option {', '.join(unknown)}; its options: "
                            + ", ".join(f"{k} (default {v})" for k, v in params.items()), where="--model")
    kwargs = {k: _coerce(v, params[k], k, name) for k, v in options.items()}
    module = fn(**kwargs)
    module.spec = os.fspath(spec)
    if outputs is not None:
        module.select(outputs)
    module = module.to(resolve_device(device))
    return module.to(dtype) if dtype is not None else module


class Representation(nn.Module):
    """Base: ``forward(x) -> {name: tensor}`` for ``self.outputs``; the FeatureExtractor attributes.

    Subclasses set ``stages`` (names in computation order) and implement ``compute(x, wanted) -> dict``
    holding at least the stages in the set ``wanted`` (computing no further than they need), and
    ``fields() -> {stage: receptive field}``.
    """

    stages = ()
    channels = 3  # what the preprocessing produces (RGB); grey representations convert inside

    def __init__(self, name, size=(256, 256), pixels=False):
        super().__init__()
        from ...preprocess import Preprocess

        self.name = name
        self.spec = name
        self.outputs = [name]
        self.onnx_model = None
        self.input_names = [INPUT]
        self.all_input_names = [INPUT]
        self.input_shapes = {INPUT: [None, self.channels, None, None]}
        size = list(size) if size and max(size) > 0 else None  # size=0: images keep their own size
        if size is not None and (len(size) != 2 or min(size) < 4):
            raise PreimageError(f"{name}: size must be H x W of at least 4 x 4 pixels, got {size}", where="--model")
        # pixels: the input is in mean-subtracted 8-bit units (255 x - 127.5), the units the inversion
        # presets' constants are in; the representation sees x / 255 + 0.5 (it ignores the shift)
        self.pixels = bool(pixels)
        self.preprocess = Preprocess(input=INPUT, channel_order="RGB", mean=[127.5] * 3 if pixels else [0.0] * 3,
                                     raw_scale=255.0 if pixels else 1.0, scale=1.0, input_size=size)
        self.eval()

    def train(self, mode=True):
        return super().train(False)

    def select(self, outputs):
        """Choose the returned stages (a name or a list); a name the representation lacks is an error."""
        outputs = [outputs] if isinstance(outputs, str) else list(dict.fromkeys(outputs or [self.name]))
        missing = [o for o in outputs if o not in self.stages]
        if missing:
            raise PreimageError(f"{self.name} has no output {', '.join(map(repr, missing))}; its outputs: "
                                f"{', '.join(self.stages)}", where="--layer")
        self.outputs = outputs
        return self

    @property
    def device(self):
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def receptive_fields(self):
        return self.fields()

    def check_input(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise PreimageError(f"{self.name}: input must be an N x C x H x W tensor, got "
                                f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.shape[1] not in (1, 3):
            raise PreimageError(f"{self.name}: input must have 1 (grey) or 3 (RGB) channels, got shape {list(x.shape)}")
        if min(x.shape[2:]) < self.min_size():
            raise PreimageError(f"{self.name}: input must be at least {self.min_size()} x {self.min_size()} pixels, "
                                f"got {x.shape[2]} x {x.shape[3]}")

    def min_size(self):
        return 4

    def forward(self, x):
        self.check_input(x)
        if self.pixels:
            x = x * (1 / 255.0) + 0.5
        values = self.compute(x, set(self.outputs))
        return {o: values[o] for o in self.outputs}

    def extra_repr(self):
        return f"spec={self.spec!r}, outputs={self.outputs}"


def field(size, stride, offset):
    """A receptive field in the geometry contract's format (input pixels, (h, w) pairs)."""
    return {"size": (size, size), "stride": (stride, stride), "offset": (offset, offset)}


def grey(x):
    """RGB -> grey with MATLAB rgb2gray's weights (0.2989, 0.5870, 0.1140); one channel passes through."""
    if x.shape[1] == 1:
        return x
    return 0.2989 * x[:, 0:1] + 0.5870 * x[:, 1:2] + 0.1140 * x[:, 2:3]


def layer_table(spec, size=None):
    """``preimage layers``' table for a representation: every stage's shape at the preprocessing's input
    size (or ``size``) and its receptive field, in :func:`preimage.converters.geometry.layer_table`'s
    format (no blobs)."""
    net = build(spec)
    h, w = size or net.preprocess.input_size or (256, 256)
    net.select(list(net.stages))
    with torch.no_grad():
        values = net(torch.zeros(1, 3, h, w))
    rf = net.receptive_fields
    rows = [{"name": name, "type": type(net).__name__, "values": [name], "shape": [None] + list(v.shape[1:]),
             "receptive_field": rf.get(name)} for name, v in values.items()]
    return {"inputs": {INPUT: [1, 3, h, w]}, "layers": rows, "blobs": []}
