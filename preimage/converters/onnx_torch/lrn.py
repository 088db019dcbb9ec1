"""LRN (ONNX's across-channel local response normalisation): exact window, fused forward and backward.

Why this extension exists: onnx2torch 1.5.15 maps LRN to ``torch.nn.LocalResponseNorm``, which
(1) places the channel window of an even ``size`` one channel off ONNX's (torch pads ``size // 2``
channels in front, ONNX ``floor((size - 1) / 2)``; Caffe only allows odd sizes, other exporters may
not), and (2) is slow for pre-image work: it is a chain of small ops (square, 3-D average pooling over
a padded copy, scale, shift, pow, divide) whose autograd backward runs about twice as many passes over
the activation, and the average pooling along channels is the slowest of them on CPU.

Here the forward pass is  scale = bias + alpha / size * S(x^2),  y = x * scale^-beta, with S the sum over
the channel window [c - floor((size-1)/2), c + ceil((size-1)/2)] computed by shifted slice additions,
and the backward pass is written out (as Caffe's own LRN layer does):

    dx = dy * scale^-beta - (2 alpha beta / size) * x * S'(dy * y / scale)

where S' sums over the mirrored window. Tested against float64 NumPy, ONNX Runtime and
``torch.autograd.gradcheck``. Caffe's WITHIN_CHANNEL LRN has no ONNX operator; the Caffe converter
writes it as Mul -> AveragePool -> Mul/Add -> Pow -> Mul, which :mod:`.pooling` and onnx2torch handle.
"""
import torch
from torch import nn

from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

from .registry import override


def channel_window_sum(t, front, back):
    """s[:, c] = sum of t[:, c - front .. c + back] (clipped to the valid channels)."""
    s = t.clone()
    front, back = min(front, t.shape[1] - 1), min(back, t.shape[1] - 1)  # wider windows add nothing (a huge size)
    for d in range(1, front + 1):
        s[:, d:] += t[:, :-d]
    for d in range(1, back + 1):
        s[:, :-d] += t[:, d:]
    return s


class _LRNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size, alpha, beta, bias, front, back):
        scale = channel_window_sum(x * x, front, back).mul_(alpha / size).add_(bias)
        power = scale.pow(-beta)
        y = x * power
        ctx.save_for_backward(x, y, scale, power)
        ctx.constants = (size, alpha, beta, front, back)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, y, scale, power = ctx.saved_tensors
        size, alpha, beta, front, back = ctx.constants
        # the window that sums into channel c reaches back `front` channels, so its mirror reaches
        # forward `front` and back `back`: swap them for the adjoint
        t = channel_window_sum(dy * y / scale, back, front)
        dx = dy * power
        dx.addcmul_(t, x, value=-2.0 * alpha * beta / size)
        return dx, None, None, None, None, None, None


class LRN(nn.Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, bias=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.bias = int(size), float(alpha), float(beta), float(bias)
        self.front = (self.size - 1) // 2
        self.back = self.size - 1 - self.front

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, bias={self.bias}"

    def forward(self, x):
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.bias, self.front, self.back)


@override("LRN")
def convert_lrn(node, graph):
    a = node.attributes
    module = LRN(a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))
