"""MaxPool and AveragePool with ONNX Runtime's exact semantics, including asymmetric pads.

Why this extension exists: onnx2torch 1.5.15 handles asymmetric ``pads`` (which Caffe-style pooling
needs, the end pad being larger so that ceil-mode windows fit) by an explicit Pad module in front of
the pool. For MaxPool that costs a full copy of the input (padded with -inf); for AveragePool it refuses
(``NotImplementedError``), because padding explicitly would make ``count_include_pad=0`` count the pad.

Here a pool is computed by torch's own pooling with the begin pad, in ceil mode, and the result is
cropped to the ONNX output size. For average pooling torch sums (``divisor_override=1``) and the sum is
divided by the ONNX divisor, computed per axis as ONNX Runtime does:

* ``count_include_pad=1``: ``min(start + k, size + pad_end) - start`` (pads count, the area beyond the
  end pad does not; this is also Caffe's rule);
* ``count_include_pad=0``: the number of input elements in the window.

The output size per axis is ``floor`` (or, with ``ceil_mode``, ``ceil``) of
``(size + pad_begin + pad_end - dilation * (k - 1) - 1) / stride`` plus one; in ceil mode a last window
that would start at or beyond ``size + pad_begin`` is dropped (ONNX Runtime and Caffe do so).
Symmetric pads take torch's pooling directly (no crop, no extra division).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

from .registry import original, override


def onnx_pool_size(size, k, stride, pad_begin, pad_end, dilation, ceil_mode):
    """Output length of one spatial axis, as ONNX Runtime computes it."""
    span = size + pad_begin + pad_end - dilation * (k - 1) - 1
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def _torch_ceil_size(size, k, stride, pad, dilation):
    """Output length of torch's pooling with symmetric ``pad`` in ceil mode."""
    return onnx_pool_size(size, k, stride, pad, pad, dilation, True)


def _average_divisor(size, out, k, stride, pad_begin, pad_end, count_include_pad):
    starts = [i * stride - pad_begin for i in range(out)]
    if count_include_pad:
        return [min(s + k, size + pad_end) - s for s in starts]
    return [min(s + k, size) - max(s, 0) for s in starts]


class Pool2d(nn.Module):
    """2-D max or average pooling with ONNX attributes (see the module docstring)."""

    def __init__(self, mode, kernel, strides, pads, dilations, ceil_mode, count_include_pad):
        super().__init__()
        self.mode = mode
        self.kernel = tuple(kernel)
        self.strides = tuple(strides)
        self.pads_begin = tuple(pads[:2])
        self.pads_end = tuple(pads[2:])
        self.dilations = tuple(dilations)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.symmetric = self.pads_begin == self.pads_end
        self._divisors = {}
        self.decide_from = None  # max pooling: take the argmax from this tensor (see decisions.py)

    def extra_repr(self):
        return (f"{self.mode}, kernel={self.kernel}, strides={self.strides}, pads={self.pads_begin + self.pads_end}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}")

    def forward(self, x):
        if self.mode == "max" and self.decide_from is not None and self.decide_from.shape == x.shape:
            return self._max_at_reference_argmax(x)
        if self.symmetric:
            if self.mode == "max":
                return F.max_pool2d(x, self.kernel, self.strides, self.pads_begin, self.dilations, self.ceil_mode)
            return F.avg_pool2d(x, self.kernel, self.strides, self.pads_begin, self.ceil_mode, self.count_include_pad)
        return self._asymmetric(x)

    def _max_at_reference_argmax(self, x):
        """x gathered at the argmax of ``decide_from`` (same windows, same cropping as forward)."""
        ref, xs = self.decide_from, x
        extra, want = self._extra_end_pad(x.shape[-2:])
        if any(extra):
            ref = F.pad(ref, (0, extra[1], 0, extra[0]), value=float("-inf"))
            xs = F.pad(x, (0, extra[1], 0, extra[0]), value=float("-inf"))
        ceil = True if not self.symmetric else self.ceil_mode
        _, idx = F.max_pool2d(ref, self.kernel, self.strides, self.pads_begin, self.dilations, ceil, return_indices=True)
        y = xs.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        return y if self.symmetric else y[..., :want[0], :want[1]]

    def _extra_end_pad(self, size):
        """(explicit end padding needed, ONNX output size) for the asymmetric path."""
        want = [onnx_pool_size(size[i], self.kernel[i], self.strides[i], self.pads_begin[i], self.pads_end[i],
                               self.dilations[i], self.ceil_mode) for i in range(2)]
        if self.symmetric:
            return [0, 0], want
        have = [_torch_ceil_size(size[i], self.kernel[i], self.strides[i], self.pads_begin[i], self.dilations[i])
                for i in range(2)]
        extra = [max(0, (want[i] - 1) * self.strides[i] + self.dilations[i] * (self.kernel[i] - 1) + 1
                     - self.pads_begin[i] - size[i]) if have[i] < want[i] else 0 for i in range(2)]
        return extra, want

    def _asymmetric(self, x):
        size = x.shape[-2:]
        extra, want = self._extra_end_pad(size)
        if any(extra):  # end pad much larger than the begin pad: pad the end explicitly (rare)
            fill = float("-inf") if self.mode == "max" else 0.0
            x = F.pad(x, (0, extra[1], 0, extra[0]), value=fill)
        if self.mode == "max":
            y = F.max_pool2d(x, self.kernel, self.strides, self.pads_begin, self.dilations, True)
            return y[..., :want[0], :want[1]]
        divisor = self._divisor(tuple(size), tuple(want), x)
        if isinstance(divisor, int):  # the same for every window: let torch divide
            y = F.avg_pool2d(x, self.kernel, self.strides, self.pads_begin, True, True, divisor_override=divisor)
            return y[..., :want[0], :want[1]]
        y = F.avg_pool2d(x, self.kernel, self.strides, self.pads_begin, True, True, divisor_override=1)
        return y[..., :want[0], :want[1]] / divisor

    def _divisor(self, size, out, like):
        key = (size, out, like.dtype, like.device)
        if key not in self._divisors:
            dh, dw = (_average_divisor(size[i], out[i], self.kernel[i], self.strides[i], self.pads_begin[i],
                                       self.pads_end[i], self.count_include_pad) for i in range(2))
            if len(set(dh)) == 1 and len(set(dw)) == 1:
                self._divisors[key] = int(dh[0] * dw[0])
            else:
                d = torch.tensor(dh, dtype=like.dtype)[:, None] * torch.tensor(dw, dtype=like.dtype)[None, :]
                self._divisors[key] = d.to(like.device)
        return self._divisors[key]


def _pool_converter(op_type, mode):
    def convert(node, graph):
        a = node.attributes
        kernel = list(a["kernel_shape"])
        auto_pad = a.get("auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        dilations = list(a.get("dilations", [1] * len(kernel)))
        torch_can = (len(kernel) == 2 and len(node.output_values) == 1 and auto_pad in ("NOTSET", "VALID") and a.get("storage_order", 0) == 0
                     and (mode == "max" or dilations == [1, 1]))
        if not torch_can:
            return original(op_type, node, graph)
        pads = [0, 0, 0, 0] if auto_pad == "VALID" else list(a.get("pads", [0, 0, 0, 0]))
        if any(p > k // 2 for p, k in zip(pads[:2], kernel)):  # torch needs pad <= kernel / 2
            return original(op_type, node, graph)
        module = Pool2d(mode, kernel, list(a.get("strides", [1, 1])), pads, dilations, a.get("ceil_mode", 0),
                        a.get("count_include_pad", 0))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    return convert


override("MaxPool")(_pool_converter("MaxPool", "max"))
override("AveragePool")(_pool_converter("AveragePool", "avg"))
