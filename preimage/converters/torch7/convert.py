"""Torch7 .t7 model -> PyTorch module, PyTorch checkpoint or ONNX: the API behind ``preimage convert torch7``."""
import io
import json
import warnings
from pathlib import Path

import onnx
import torch

from ...errors import PreimageError, UnsupportedError
from ...fileio import sha256_file, write_bytes_atomic
from .build import build, load_checkpoint, save_checkpoint
from .nn import convert_module
from .reader import read_t7
from .types import LuaTable, TorchObject

__all__ = ["load_t7_model", "t7_to_node", "convert_torch7", "load_checkpoint", "DTYPES"]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16}
_MODULE_PREFIXES = ("nn.", "cudnn.", "cunn.", "inn.", "fbnn.")


def _pick_root(root, key, path):
    if key is not None:
        if not isinstance(root, (LuaTable, TorchObject)) or root.get(key) is None:
            raise PreimageError(f"the file's root object has no field {key!r}", path=path)
        return root.get(key), f"model[{key!r}]"
    if isinstance(root, LuaTable):  # a training checkpoint such as {model = ..., optimState = ...}
        found = [(k, v) for k, v in root.items() if isinstance(v, TorchObject) and v.typename.startswith(_MODULE_PREFIXES)]
        if len(found) == 1:
            return found[0][1], f"model[{found[0][0]!r}]"
        raise UnsupportedError(f"the root is a table with keys {sorted(map(str, root))[:10]}; name the one that holds "
                               "the network with key=... (--key on the command line)", path=path)
    return root, "model"


def t7_to_node(path, *, key=None, **read_options):
    """Read a .t7 file and convert its nn model to a :class:`~.build.Node` tree (plain data + weights)."""
    root = read_t7(path, **read_options)
    obj, where = _pick_root(root, key, path)
    return convert_module(obj, where, file=str(path))


def load_t7_model(path, *, key=None, dtype=torch.float32, device="cpu", **read_options):
    """Load a Torch7 nn model from a .t7 file as a ``torch.nn.Module`` (eval mode, parameters frozen).

    ``dtype``: the weights' type (Torch7 models were often double: pass ``torch.float64`` to compute
    exactly like the Lua model). ``key``: for a file whose root is a table (``{model=..., opt=...}``),
    the field holding the network (found automatically when there is just one). ``read_options`` go
    to :func:`read_t7` (``long_size``, ``mode``). The model takes inputs shaped as the Lua model did.
    """
    dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    return build(t7_to_node(path, key=key, **read_options), dtype=dtype, device=device)


def _flatten(out):
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    return [out]


def input_shapes(input_shape):
    """``(1, 3, 224, 224)`` -> ``[(1, 3, 224, 224)]``; a list of shapes (one per input) stays a list."""
    if input_shape is None:
        return []
    shapes = list(input_shape)
    if all(isinstance(d, int) for d in shapes):
        return [tuple(shapes)] if shapes else []
    return [tuple(int(d) for d in s) for s in shapes]


def expected_inputs(module):
    """The number of inputs a converted module takes (an nngraph gModule may take several)."""
    return int(getattr(module, "n_inputs", 1))


def convert_torch7(model, output=None, *, input_shape=None, dtype="float32", key=None, opset=17,
                   dynamic_batch=True, **read_options):
    """Convert a .t7 nn model; write ``output`` (``.onnx`` or ``.pt``) atomically when given.

    Returns the ``torch.nn.Module``. ``.pt``: a checkpoint loadable with
    ``torch.load(path, weights_only=True)``; rebuild the module with
    :func:`preimage.converters.torch7.load_checkpoint`. ``.onnx``: needs ``input_shape``
    (e.g. ``(1, 3, 224, 224)``, or a list of shapes, one per input, for a gModule with several
    inputs; a .t7 file does not record them); the batch dimension is dynamic (named ``N``) unless
    ``dynamic_batch=False``.
    """
    model = Path(model)
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    node = t7_to_node(model, key=key, **read_options)
    module = build(node, dtype=torch_dtype)
    source = {"files": {model.name: sha256_file(model)}, "converter": "preimage.converters.torch7"}
    if output is None:
        return module
    output = Path(output)
    if output.suffix == ".pt" or output.suffix == ".pth":
        save_checkpoint(output, node, module, source=source)
    elif output.suffix == ".onnx":
        shapes = input_shapes(input_shape)
        if not shapes:
            raise PreimageError("ONNX export needs the input shape (a .t7 file does not store it): "
                                "pass input_shape=(N, C, H, W) / --input-shape 1,3,224,224", path=model)
        if len(shapes) != expected_inputs(module):
            raise PreimageError(f"the model takes {expected_inputs(module)} input(s), but {len(shapes)} input shape(s) "
                                f"were given; give --input-shape once per input, in order", path=model)
        export_onnx(module, output, shapes, opset=opset, dynamic_batch=dynamic_batch, source=source)
    else:
        raise PreimageError(f"unknown output type {output.suffix!r}: use .onnx or .pt", path=output)
    return module


def input_names(n):
    """ONNX input names: ``input`` for one input, ``input_1``, ``input_2``, ... for several."""
    return ["input"] if n == 1 else [f"input_{i}" for i in range(1, n + 1)]


def export_onnx(module, output, input_shape, *, opset=17, dynamic_batch=True, source=None):
    """Export ``module`` to ONNX with the TorchScript-based exporter (no onnxscript needed).
    ``input_shape``: one shape, or a list of shapes for a module with several inputs."""
    shapes = input_shapes(input_shape)
    dtype = next((p.dtype for p in module.state_dict().values() if p.is_floating_point()), torch.float32)
    examples = tuple(torch.randn(*s, dtype=dtype) for s in shapes)
    shown = " and ".join(map(str, shapes))
    try:
        with torch.no_grad():
            outs = _flatten(module(*examples))
    except RuntimeError as e:
        raise PreimageError(f"the model does not run on input(s) of shape {shown}: {e}") from None
    except PreimageError as e:
        raise PreimageError(f"the model does not run on input(s) of shape {shown}: {e}") from None
    names = input_names(len(shapes))
    out_names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(1, len(outs) + 1)]
    dynamic_axes = {n: {0: "N"} for n in names + out_names} if dynamic_batch else None
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, examples, buf, input_names=names, output_names=out_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)
    except Exception as e:  # the exporter raises many kinds
        raise PreimageError(f"ONNX export failed: {type(e).__name__}: {e}") from None
    proto = onnx.load_from_string(buf.getvalue())
    meta = {"preimage.inputs": json.dumps({n: list(s) for n, s in zip(names, shapes)}),
            "preimage.source": json.dumps(source or {})}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    write_bytes_atomic(output, proto.SerializeToString())
    return proto
