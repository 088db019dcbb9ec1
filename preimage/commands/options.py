"""The options the commands share, each declared once: ``--model``, ``--device``, ``--size`` and the shape
parser behind ``--input-shape`` / ``--feature-shape``.

A command uses them as decorators (``@model_option(help=...)``, ``@device_option()``) so that every
command spells, checks and explains them the same way; only the default and the help line may differ.
"""
import os

import click

from ..errors import PreimageError

DEVICE_HELP = "Where torch runs: cpu, cuda, cuda:N or auto (CUDA when available)."


def model_path(ctx, param, value):
    """click callback: refuse a weights-only or unconverted file (a missing file is the loaders' to report).

    Users often pass the file that holds the weights (``.caffemodel``) or the unconverted Torch7 file
    where a converted model is expected; the loaders would read such a file as an empty ONNX graph and
    then say that no layer has the requested name. This names the mistake and the file to pass instead.
    """
    if value is None:
        return value
    from ..models.representations import is_spec  # deferred: torch; --help stays fast

    if is_spec(value):  # hog, hogb:cell=8, dsift, lbp: a representation, not a file
        return value
    stem, ext = os.path.splitext(value)
    ext = ext.lower()
    if ext == ".caffemodel":
        proto = stem + ".prototxt"
        hint = f" {os.path.basename(proto)}" if os.path.isfile(proto) else ""
        raise PreimageError(f"a .caffemodel holds only the weights: pass the deploy .prototxt{hint} (the "
                            ".caffemodel beside it is used) or the .onnx from 'preimage convert caffe'", path=value)
    if ext == ".t7":
        raise PreimageError("a Torch7 file must be converted first: preimage convert torch7 "
                            f"{os.path.basename(value)} --input-shape N,C,H,W, then pass the .onnx", path=value)
    if ext in (".pt", ".pth"):
        raise PreimageError("commands take the model as ONNX: convert the .t7 with 'preimage convert torch7 "
                            "NET.t7 --input-shape N,C,H,W' (in Python, the API also takes a torch module)", path=value)
    return value


def model_option(*, required=True, help):
    """``--model/-m``: a converted model (checked by :func:`model_path`)."""
    return click.option("--model", "-m", required=required, default=None, type=click.Path(dir_okay=False),
                        callback=model_path, help=help)


class DeviceType(click.ParamType):
    """cpu, cuda, cuda:N or auto, checked when the command line is read (before any work), passed on as text."""

    name = "device"

    def convert(self, value, param, ctx):
        # deferred: torch, which --help and the lazy command table must not load
        from ..device import resolve_device

        try:
            resolve_device(value)
        except PreimageError as e:
            self.fail(str(e).removeprefix("--device: "), param, ctx)
        return value


def device_option(default="auto", help=DEVICE_HELP):
    """``--device``: where torch runs (the API resolves the text with :func:`preimage.device.resolve_device`)."""
    return click.option("--device", type=DeviceType(), default=default, show_default=True, help=help)


def size_option(help):
    """``--size H W``: the network input size (default: the model's)."""
    return click.option("--size", nargs=2, type=click.IntRange(min=1), default=None, metavar="H W", help=help)


def parse_shape(text):
    """``"1,3,224,224"`` or ``"1x3x224x224"`` -> ``(1, 3, 224, 224)``: positive integers, every part a number."""
    try:  # every part must be a number: "1,3,x" is a typo, not the shape (1, 3)
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,3,224,224, got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise click.BadParameter(f"expected positive sizes like 1,3,224,224, got {text!r}")
    return shape


def shape_callback(ctx, param, value):
    """click callback: a shape option's text -> tuple (None stays None)."""
    return None if value is None else parse_shape(value)


def parse_sets(sets, C=None, precision=None, cuda_graphs=False):
    """``--set KEY=VALUE`` ... (with ``--C``, ``--precision`` and ``--cuda-graphs``) -> {key: text} for the
    invert API."""
    out = {} if precision is None else {"precision": precision}
    if cuda_graphs:
        out["cuda_graphs"] = "true"
    for s in sets:
        if "=" not in s:
            raise PreimageError(f"expected KEY=VALUE, got {s!r}", where="--set")
        k, v = s.split("=", 1)
        out[k.strip()] = v.strip()
    if C is not None:
        out["C"] = str(C)
    return out


def output_folder(out, kind, model):
    """The output folder (default KIND-MODEL), checked to be writable before minutes of work rather than after."""
    out = out or f"{kind}-{os.path.splitext(os.path.basename(model))[0]}"
    p = os.path.abspath(out)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    if not os.path.isdir(p):
        raise PreimageError("a file stands where the output folder is needed", path=p, where="--out")
    if not os.access(p, os.W_OK):
        raise PreimageError("cannot write the output folder here (permission denied)", path=p, where="--out")
    return out


def preset_name(ctx, param, value):
    """click callback: a registered preset's name, checked when the command line is read."""
    from ..invert.presets import PRESETS  # deferred: torch; --help stays fast

    if value not in PRESETS:
        raise click.BadParameter(f"unknown preset {value!r}; expected one of: {', '.join(sorted(PRESETS))}")
    return value
