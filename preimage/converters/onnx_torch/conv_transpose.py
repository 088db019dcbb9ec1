"""ConvTranspose with ``output_shape`` and asymmetric ``pads``.

Why this extension exists: onnx2torch 1.5.15 ignores ConvTranspose's ``output_shape`` attribute (the
output then has the wrong size) and refuses asymmetric ``pads``. Here the transposed convolution runs
with the smaller of the two pads on each axis and the result is cropped to the ONNX output, which is
what pads mean for a transposed convolution. Plain symmetric cases keep onnx2torch's
``nn.ConvTranspose2d``.
"""
import torch.nn.functional as F
from torch import nn

from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

from ...errors import UnsupportedError
from .registry import original, override


class ConvTranspose2d(nn.Module):
    def __init__(self, weight, bias, strides, pads, dilations, group, output_padding, output_shape, auto_pad):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.strides, self.dilations, self.group = tuple(strides), tuple(dilations), int(group)
        self.pads = tuple(pads)
        self.output_padding = tuple(output_padding)
        self.output_shape = tuple(output_shape) if output_shape else None
        self.auto_pad = auto_pad

    def _pads(self, size):
        k = self.weight.shape[2:]
        full = [self.strides[i] * (size[i] - 1) + self.dilations[i] * (k[i] - 1) + 1 + self.output_padding[i]
                for i in range(2)]
        if self.output_shape is None and self.auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            return full, list(self.pads[:2]), list(self.pads[2:])
        target = self.output_shape[-2:] if self.output_shape else [size[i] * self.strides[i] for i in range(2)]
        total = [full[i] - target[i] for i in range(2)]
        if self.auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
        return full, begin, [t - b for t, b in zip(total, begin)]

    def forward(self, x):
        full, begin, end = self._pads(x.shape[-2:])
        if min(begin + end) < 0:
            raise UnsupportedError("ConvTranspose whose output_shape exceeds the full transposed convolution is not supported")
        p = [min(b, e) for b, e in zip(begin, end)]
        op = [max(0, self.output_padding[i] - (end[i] - p[i])) for i in range(2)]
        y = F.conv_transpose2d(x, self.weight, self.bias, self.strides, p, op, self.group, self.dilations)
        out = [full[i] - begin[i] - end[i] for i in range(2)]
        o = [begin[i] - p[i] for i in range(2)]
        return y[..., o[0]:o[0] + out[0], o[1]:o[1] + out[1]]


@override("ConvTranspose")
def convert_conv_transpose(node, graph):
    a = node.attributes
    auto_pad = a.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    weights = graph.initializers.get(node.input_values[1]) if node.input_values[1] in graph.initializers else None
    pads = list(a.get("pads", [0, 0, 0, 0]))
    plain = "output_shape" not in a and auto_pad == "NOTSET" and pads[:len(pads) // 2] == pads[len(pads) // 2:]
    if plain or weights is None or len(weights.to_torch().shape) != 4:
        return original("ConvTranspose", node, graph)
    bias = None
    if len(node.input_values) > 2 and node.input_values[2]:
        bias = graph.initializers[node.input_values[2]].to_torch()
    module = ConvTranspose2d(weights.to_torch(), bias, a.get("strides", [1, 1]), pads if auto_pad == "NOTSET" else [0] * 4,
                             a.get("dilations", [1, 1]), a.get("group", 1), a.get("output_padding", [0, 0]),
                             a.get("output_shape"), auto_pad)
    return OperationConverterResult(torch_module=module,
                                    onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))
