"""LRN (ONNX's across-channel local response normalisation) with ONNX's window for every size.

Why this extension exists: onnx2torch 1.5.15 maps LRN to ``torch.nn.LocalResponseNorm``, whose channel
window for an even ``size`` is shifted by one against ONNX's (torch pads ``size // 2`` channels in
front, ONNX ``floor((size - 1) / 2)``). Caffe only allows odd sizes, but a model from elsewhere may not.
This module sums the squares over the ONNX window ``[c - floor((size-1)/2), c + ceil((size-1)/2)]`` with
one average pooling over the channel axis (no padded copy for odd sizes) and keeps the arithmetic in
a few fused-friendly ops:  y = x * (bias + alpha * mean_window(x^2)) ^ (-beta).

Caffe's WITHIN_CHANNEL LRN has no ONNX operator; the Caffe converter writes it as
Mul -> AveragePool (count_include_pad) -> Mul/Add -> Pow -> Div, which onnx2torch and
:mod:`.pooling` handle.
"""
import torch.nn.functional as F
from torch import nn

from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

from .registry import override


class LRN(nn.Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, bias=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.bias = int(size), float(alpha), float(beta), float(bias)
        self.front = (self.size - 1) // 2
        self.back = self.size - 1 - self.front

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, bias={self.bias}"

    def forward(self, x):
        n, c = x.shape[:2]
        sq = (x * x).reshape(n, 1, c, -1)  # pool over the channel axis as if it were a spatial one
        if self.front == self.back:
            mean = F.avg_pool2d(sq, (self.size, 1), 1, (self.front, 0), count_include_pad=True)
        else:
            mean = F.avg_pool2d(F.pad(sq, (0, 0, self.front, self.back)), (self.size, 1), 1)
        return x * (mean.reshape(x.shape) * self.alpha + self.bias).pow(-self.beta)


@override("LRN")
def convert_lrn(node, graph):
    a = node.attributes
    module = LRN(a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))
