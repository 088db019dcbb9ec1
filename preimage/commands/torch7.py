"""``preimage convert torch7`` and ``preimage inspect``: thin click layers over preimage.converters.torch7."""
from pathlib import Path

import click

from ..errors import PreimageError
from .options import parse_shape

_LONG = click.Choice(["auto", "8", "4"])


def _long_size(v):
    return None if v == "auto" else int(v)


def _not_caffe(ctx, param, value):
    """A Caffe file passed to a Torch7 command would be misread as a damaged .t7: name the right command."""
    if value is not None and value.suffix.lower() in (".caffemodel", ".prototxt"):
        raise PreimageError("this is a Caffe file, not Torch7: use 'preimage convert caffe NET.prototxt' "
                            "(then 'preimage layers NET.onnx')", path=value)
    return value


def _shapes(ctx, param, values):
    """Every --input-shape, in order (one per input of the model: none is silently dropped)."""
    return [parse_shape(v) for v in values or ()]


@click.command("torch7")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path), callback=_not_caffe)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="MODEL.onnx (needs --input-shape) or MODEL.pt (PyTorch checkpoint). Default: MODEL.onnx beside MODEL.t7.")
@click.option("--input-shape", "input_shapes", callback=_shapes, multiple=True, metavar="N,C,H,W",
              help="Input shape for ONNX export (a .t7 file does not record it), e.g. 1,3,224,224. Once per "
                   "input, in order, for an nngraph gModule with several inputs.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Weight type. Torch7 models were often double; float64 reproduces them bit for bit.")
@click.option("--key", help="When the file's root is a table ({model=..., opt=...}): the field holding the net.")
@click.option("--long-size", type=_LONG, default="auto", show_default=True,
              help="Bytes per C long in the file (4 for files saved on Windows); auto tries 8 then 4.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--static-batch", is_flag=True, help="ONNX: fix the batch size instead of a dynamic 'N'.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="ONNX: run the exported model with onnxruntime and compare it with the PyTorch module.")
def convert_torch7(model, output, input_shapes, dtype, key, long_size, opset, static_batch, check):
    """Convert a Lua Torch7 nn model (.t7, binary or ASCII) to ONNX or a PyTorch checkpoint.

    \b
    Examples:
      preimage convert torch7 decoder.t7 --input-shape 1,256,6,6        # -> decoder.onnx
      preimage convert torch7 net.t7 -o net.pt                           # PyTorch checkpoint
      preimage convert torch7 ckpt.t7 --key model -o net.pt --dtype float64
      preimage convert torch7 two_inputs.t7 --input-shape 1,3,64,64 --input-shape 1,10   # a 2-input gModule

    \b
    Load the checkpoint in Python (it loads with torch.load(..., weights_only=True)):
      from preimage.converters.torch7 import load_checkpoint
      net = load_checkpoint("net.pt")          # eval mode, same forward as in Lua
    Or skip the file: preimage.converters.torch7.load_t7_model("net.t7").
    """
    from ..converters.torch7.convert import convert_torch7 as convert, t7_to_node  # deferred: torch, onnx

    output = output or model.with_suffix(".onnx")
    if output.suffix not in (".onnx", ".pt", ".pth"):
        raise PreimageError(f"unknown output type {output.suffix or '(none)'!r}: use .onnx or .pt", path=output,
                            where="-o")
    if output.suffix == ".onnx" and not input_shapes:
        t7_to_node(model, key=key, long_size=_long_size(long_size))  # a file that is no nn model: say that first
        raise PreimageError("ONNX export needs --input-shape N,C,H,W (a .t7 file does not store it), "
                            f"or write a PyTorch checkpoint with -o {model.with_suffix('.pt').name}", path=model)
    module = convert(model, output, input_shape=input_shapes, dtype=dtype, key=key, opset=opset,
                     dynamic_batch=not static_batch, long_size=_long_size(long_size))
    click.echo(f"wrote {output}")
    if output.suffix == ".onnx" and check:
        err = _check_onnx(module, output, input_shapes)
        click.echo(f"onnxruntime vs PyTorch on a random input: max relative difference {err:.2e}")


def _check_onnx(module, path, shapes):
    # deferred: onnxruntime and torch, only for --check
    import numpy as np
    import onnxruntime as ort
    import torch

    dtype = next((t.dtype for t in module.state_dict().values() if t.is_floating_point()), torch.float32)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(*s, generator=g, dtype=dtype) for s in shapes]
    with torch.no_grad():
        ref = module(*xs)
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), xs)})
    err = 0.0
    for r, o in zip(refs, outs):
        r = r.numpy()
        err = max(err, float(np.abs(r - o).max() / max(np.abs(r).max(), 1e-12)))
    return err


@click.command("inspect")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path), callback=_not_caffe)
@click.option("--full", is_flag=True,
              help="The whole object tree (every field and table, nngraph's node objects included) instead of "
                   "the module summary.")
@click.option("--depth", type=int, default=None, help="Show at most this many levels.")
@click.option("--max-items", type=int, default=50, show_default=True, help="Entries shown per table.")
@click.option("--buffers/--no-buffers", default=False, show_default=True,
              help="Show nn buffers (output, gradInput, gradWeight, ...), hidden by default.")
@click.option("--long-size", type=_LONG, default="auto", show_default=True,
              help="Bytes per C long in the file (4 for files saved on Windows).")
def inspect(model, full, depth, max_items, buffers, long_size):
    """Summarise a Torch7 .t7 file: its nn modules, their settings, tensor shapes and dtypes (no values).

    By default one line per module (class and settings), its tensors below it and its children indented;
    an nngraph gModule lists its forward nodes with the nodes each one reads. --full prints the whole
    object tree instead: every field of every object.

    \b
    Examples:
      preimage inspect model.t7
      preimage inspect model.t7 --full --depth 3 --buffers

    Nothing in the file is executed (serialised Lua functions are shown, never run). Tensors that share
    a storage (models flattened with getParameters) show the same storage number.
    """
    # deferred: the reader loads torch; 'preimage inspect --help' stays fast
    from ..converters.torch7.reader import read_t7
    from ..converters.torch7.tree import outline, summary

    root = read_t7(model, tensors="raw", long_size=_long_size(long_size))
    hide = () if buffers else ("output", "gradInput", "gradWeight", "gradBias", "_gradOutput", "fgradInput",
                               "finput", "addBuffer", "ones", "save_mean", "save_std", "_input", "iDesc", "oDesc")
    for line in (outline if full else summary)(root, max_depth=depth, max_items=max_items, hide=hide):
        click.echo(line)
