"""Reshape, Split, Pad and Tile whose shape-like inputs are constants, with those constants read once.

Why this extension exists: onnx2torch 1.5.15 keeps the ``shape`` of Reshape, the ``split`` sizes of
Split (opset 13+), the ``pads`` / ``constant_value`` of Pad (opset 11+) and the ``repeats`` of Tile as
tensors and turns them into Python numbers inside ``forward`` (``torch.any(shape == 0)``, ``.tolist()``). On CUDA each of these
is a device-to-host synchronisation in every optimisation step. The Caffe converter always writes them
as initializers (docs/caffe.md), so here they become plain Python lists at conversion time. Inputs that
are not constant keep onnx2torch's converters.
"""
import torch
from torch import nn

from onnx2torch.node_converters.pad import OnnxPadStatic
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

from .registry import original, override


def _const_list(name, graph):
    value = get_const_value(name, graph)
    value = value.tolist() if hasattr(value, "tolist") else value
    return value if isinstance(value, list) else [value]


def _data_only(node):
    return OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)


class StaticReshape(nn.Module):
    def __init__(self, shape, allowzero=False):
        super().__init__()
        self.shape = [int(d) for d in shape]
        self.allowzero = bool(allowzero)

    def extra_repr(self):
        return f"shape={self.shape}"

    def forward(self, x):
        dims = [x.shape[i] if d == 0 and not self.allowzero else d for i, d in enumerate(self.shape)]
        return x.reshape(dims)


class StaticSplit(nn.Module):
    def __init__(self, sizes, axis):
        super().__init__()
        self.sizes, self.axis = [int(s) for s in sizes], int(axis)

    def extra_repr(self):
        return f"sizes={self.sizes}, axis={self.axis}"

    def forward(self, x):
        return tuple(torch.split(x, self.sizes, dim=self.axis))


@override("Reshape")
def convert_reshape(node, graph):
    try:
        shape = _const_list(node.input_values[1], graph)
    except KeyError:
        return original("Reshape", node, graph)
    module = StaticReshape(shape, node.attributes.get("allowzero", 0))
    return OperationConverterResult(torch_module=module, onnx_mapping=_data_only(node))


@override("Split")
def convert_split(node, graph):
    axis = node.attributes.get("axis", 0)
    if "split" in node.attributes:
        sizes = list(node.attributes["split"])
    elif len(node.input_values) > 1 and node.input_values[1]:
        try:
            sizes = _const_list(node.input_values[1], graph)
        except KeyError:
            return original("Split", node, graph)
    else:
        return original("Split", node, graph)
    return OperationConverterResult(torch_module=StaticSplit(sizes, axis), onnx_mapping=_data_only(node))


@override("Pad")
def convert_pad(node, graph):
    mode = node.attributes.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    names = list(node.input_values) + [""] * (4 - len(node.input_values))
    if "pads" in node.attributes or names[3]:  # opset 2 attributes, or the opset-18 axes input
        return original("Pad", node, graph)
    try:
        pads = _const_list(names[1], graph)
        value = float(_const_list(names[2], graph)[0]) if names[2] else 0.0
    except KeyError:
        return original("Pad", node, graph)
    module = OnnxPadStatic.create_from_onnx_params(onnx_pads=pads, onnx_mode=mode, constant_value=value)
    return OperationConverterResult(torch_module=module, onnx_mapping=_data_only(node))


class StaticTile(nn.Module):
    def __init__(self, repeats):
        super().__init__()
        self.repeats = [int(r) for r in repeats]

    def extra_repr(self):
        return f"repeats={self.repeats}"

    def forward(self, x):
        return x.repeat(self.repeats)


@override("Tile")
def convert_tile(node, graph):
    try:
        repeats = _const_list(node.input_values[1], graph)
    except KeyError:
        return original("Tile", node, graph)
    return OperationConverterResult(torch_module=StaticTile(repeats), onnx_mapping=_data_only(node))
