"""Slice with constant starts/ends/axes/steps as plain static indexing.

Why this extension exists: onnx2torch 1.5.15 keeps Slice's starts/ends/axes/steps as tensors and turns
them into Python slices on every forward call (``.cpu().numpy()``: a host synchronisation per step on
CUDA), indexes with a list of slices (deprecated by torch, to become an error), and its opset-9
module refers to attributes it never sets. The Caffe converter writes Slice for Caffe's Slice and Crop
layers with constant initializers, so the slices are computed once here. Non-constant inputs keep
onnx2torch's converter.
"""
import torch
from torch import nn

from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

from .registry import original, override


class StaticSlice(nn.Module):
    def __init__(self, starts, ends, axes, steps):
        super().__init__()
        self.parts = [(int(a), int(s), int(e), int(st)) for s, e, a, st in zip(starts, ends, axes, steps)]

    def extra_repr(self):
        return ", ".join(f"axis {a}: {s}:{e}:{st}" for a, s, e, st in self.parts)

    def forward(self, x):
        index = [slice(None)] * x.dim()
        for axis, start, end, step in self.parts:
            axis = axis % x.dim()
            if step > 0:  # Python slicing clamps exactly as ONNX does for positive steps
                index[axis] = slice(start, end, step)
            else:
                n = x.shape[axis]
                start = min(max(start + n if start < 0 else start, 0), n - 1)
                end = min(max(end + n if end < 0 else end, -1), n - 1)
                x = x.index_select(axis, torch.arange(start, end, step, device=x.device))
        return x[tuple(index)]


def _const(name, graph):
    value = get_const_value(name, graph)
    return [int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]


@override("Slice")
def convert_slice(node, graph):
    a = node.attributes
    try:
        if "starts" in a:  # opset < 10: attributes
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            names = list(node.input_values) + [""] * (5 - len(node.input_values))
            starts, ends = _const(names[1], graph), _const(names[2], graph)
            axes = _const(names[3], graph) if names[3] else list(range(len(starts)))
            steps = _const(names[4], graph) if names[4] else [1] * len(starts)
    except (KeyError, ValueError, TypeError):
        return original("Slice", node, graph)
    return OperationConverterResult(torch_module=StaticSlice(starts, ends, axes, steps),
                                    onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))
