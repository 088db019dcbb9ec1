"""Conv: onnx2torch's ``nn.Conv2d``, with a faster backward to a few-channel input and channels-last on CPU.

Why this extension exists: pre-image work differentiates a frozen network with respect to its input
at every step, so the backward of the first convolution (3 input channels, e.g. AlexNet's 11 x 11
stride-4 conv1) runs once per step. oneDNN computes that gradient (a transposed convolution with 3
output channels) at about a fifth of its forward rate on CPU: conv1's backward was the largest single
cost of an AlexNet inversion step.

The gradient of a stride-``s`` convolution with respect to its input is a stride-``s`` transposed
convolution, and that splits into ``s * s`` phases: the input pixels ``(s p + ry, s q + rx)`` of one
phase ``(ry, rx)`` only see the kernel taps ``(s a + ry, s b + rx)``. All phases together are ONE
ordinary stride-1 convolution of the (zero-padded) output gradient, with ``C * s * s`` output channels
and an ``A x A`` kernel (``A = ceil(k / s)``; the taps beyond ``k`` are zero), followed by a
pixel shuffle that interleaves the phases back into the image and a crop of the forward padding:

    dx[n, c, s p + ry - P, s q + rx - P] = sum_{o, a', b'} K[c s^2 + ry s + rx, o, a', b'] g[n, o, p + a', q + b']
    K[c s^2 + ry s + rx, o, a', b'] = w[o, c, s (A - 1 - a') + ry, s (A - 1 - b') + rx],  g = pad(dy, A - 1)

It is the same sum as the transposed convolution, in another order (float64 agrees to 1e-15; float32 to
rounding). Used only where it pays: groups 1, equal strides above 1, no dilation, a few input channels
(``FEW_CHANNELS``), the input needing a gradient and the weights not, on CPU (measured there; cuDNN's
own backward is left alone until measured; everywhere else this module is plain ``nn.Conv2d``).

On CPU the input is also made channels-last (a no-op when it already is): oneDNN then keeps its own
layout from layer to layer instead of reordering each activation, and torch's max pooling, which is
vectorised over channels only in that layout, runs several times faster. Values are the same; only the
memory order of the activations differs (the extractor's outputs are made contiguous by ``identity.py``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .registry import original, override

FEW_CHANNELS = 4  # input channels up to which the phase-split backward is used (measured: 3.5x at 3)


def phase_kernel(weight, stride):
    """The ``(C s^2) x O x A x A`` kernel of the phase-split input gradient (see the module docstring)."""
    out_ch, in_ch, kh, kw = weight.shape
    a = -(-max(kh, kw) // stride)
    wp = F.pad(weight, (0, a * stride - kw, 0, a * stride - kh))   # O, C, A s, A s (zero taps beyond k)
    wp = wp.view(out_ch, in_ch, a, stride, a, stride).flip(2, 4)   # [o, c, a', ry, b', rx]
    return wp.permute(1, 3, 5, 0, 2, 4).reshape(in_ch * stride * stride, out_ch, a, a).contiguous()


def input_gradient(grad_out, weight, stride, padding, in_size):
    """d<conv2d(x, weight, stride, padding), grad_out>/dx for an ``in_size`` (H, W) input, phase-split."""
    s, (ph, pw), (h, w) = stride, padding, in_size
    k = phase_kernel(weight.to(grad_out.dtype), s)
    a = k.shape[-1]
    rows, cols = (h - 1 + ph) // s + 1, (w - 1 + pw) // s + 1      # phase positions covering the input
    g = F.pad(grad_out, (a - 1, max(0, cols - grad_out.shape[-1]), a - 1, max(0, rows - grad_out.shape[-2])))
    out = F.conv2d(g, k)[..., :rows, :cols]
    return F.pixel_shuffle(out, s)[..., ph:ph + h, pw:pw + w]


class _FewChannelConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(weight)
        ctx.geometry = (stride, padding, tuple(x.shape[-2:]))
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        return input_gradient(grad_out, weight, *ctx.geometry), None, None, None, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state dict) with the faster paths of the module docstring."""

    def _phase_split(self, x):
        s = self.stride
        return (self.groups == 1 and s[0] == s[1] and s[0] > 1 and self.dilation == (1, 1)
                and isinstance(self.padding, tuple) and self.padding_mode == "zeros"
                and self.in_channels <= FEW_CHANNELS and x.dim() == 4 and x.requires_grad and x.device.type == "cpu"
                and torch.is_grad_enabled() and not self.weight.requires_grad
                and (self.bias is None or not self.bias.requires_grad))

    def forward(self, x):
        if x.device.type == "cpu" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._phase_split(x):
            return _FewChannelConv.apply(x, self.weight, self.bias, self.stride[0], self.padding)
        return super().forward(x)


@override("Conv")
def convert_conv(node, graph):
    result = original("Conv", node, graph)
    for module in result.torch_module.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = Conv2d
    return result
