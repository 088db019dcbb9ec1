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
Symmetric pads of at most half the kernel take torch's pooling directly (no crop, no extra
division); this is how Caffe pooling arrives (``ceil_mode=1``, symmetric pads, ``count_include_pad=1``),
and torch's ceil-mode rule and average divisor are Caffe's, at any input size. A begin pad larger
than half the kernel (Caffe allows any pad below the kernel, torch only half) is padded explicitly
(-inf or 0) before the pool. Everything is planned from the input's actual size, so the module is
correct at any size. GlobalMaxPool / GlobalAveragePool are the same module with the kernel taken
from the input (so max-pooling decisions, ``decisions.py``, see global pools too).
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


def _average_divisor(size, out, k, stride, pad_begin, pad_end, count_include_pad):
    starts = [i * stride - pad_begin for i in range(out)]
    if count_include_pad:
        return [min(s + k, size + pad_end) - s for s in starts]
    return [min(s + k, size) - max(s, 0) for s in starts]


class Pool2d(nn.Module):
    """2-D max or average pooling with ONNX attributes (see the module docstring).

    ``kernel=None``: global pooling (GlobalMaxPool / GlobalAveragePool), the kernel is the input's size.
    """

    def __init__(self, mode, kernel, strides, pads, dilations, ceil_mode, count_include_pad):
        super().__init__()
        self.mode = mode
        self.is_global = kernel is None
        self.kernel = None if kernel is None else tuple(kernel)
        self.strides = tuple(strides)
        self.pads_begin = tuple(pads[:2])
        self.pads_end = tuple(pads[2:])
        self.dilations = tuple(dilations)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        # torch pools a symmetric pad of at most half the kernel itself; anything else is planned per size
        self.direct = (not self.is_global and self.pads_begin == self.pads_end
                       and all(p <= k // 2 for p, k in zip(self.pads_begin, self.kernel)))
        self.direct_ceil = self.ceil_mode
        if not self.is_global and not self.direct and self._is_caffe_ceil():
            self.direct, self.direct_ceil = True, True
        self._divisors = {}
        self.decide_from = None  # max pooling: take the argmax from this tensor (see decisions.py)

    def _is_caffe_ceil(self):
        """Floor mode with end pads e = min(k - 1, p + s - 1) (how the Caffe converter writes ceil-mode
        pooling) is torch's ceil mode with the symmetric pad p, at every input size: both give
        min(ceil((H + 2p - k) / s), ceil((H + p) / s) - 1) + 1 windows at the same places. Max pools
        agree then; average pools too where the divisor is the clipped window (no pad, count_include_pad
        0: torch clips at H + p = H)."""
        if self.ceil_mode or self.dilations != (1, 1):
            return False
        if self.mode == "avg" and (self.count_include_pad or any(self.pads_begin)):
            return False
        return all(pe == min(k - 1, pb + s - 1) and pb <= k // 2
                   for pb, pe, k, s in zip(self.pads_begin, self.pads_end, self.kernel, self.strides))

    def extra_repr(self):
        if self.is_global:
            return f"{self.mode}, global"
        return (f"{self.mode}, kernel={self.kernel}, strides={self.strides}, pads={self.pads_begin + self.pads_end}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}")

    def forward(self, x):
        if self.mode == "max" and self.decide_from is not None and self.decide_from.shape == x.shape:
            if self.is_global:
                self.kernel = tuple(x.shape[-2:])
            return self._max_at_reference_argmax(x)
        if self.is_global:
            self.kernel = tuple(x.shape[-2:])  # the last size seen, for readers of the geometry (mirror decoder)
            return x.amax((-2, -1), keepdim=True) if self.mode == "max" else x.mean((-2, -1), keepdim=True)
        if self.direct:
            if self.mode == "max":
                return F.max_pool2d(x, self.kernel, self.strides, self.pads_begin, self.dilations, self.direct_ceil)
            return F.avg_pool2d(x, self.kernel, self.strides, self.pads_begin, self.direct_ceil, self.count_include_pad)
        return self._planned(x)

    def _kernel(self, size):
        return tuple(size) if self.is_global else self.kernel

    def _plan(self, size):
        """How torch computes this pool at spatial ``size``: (explicit begin pad, torch's own pad,
        explicit end pad, ONNX output size), per axis. torch pools in ceil mode with its own (symmetric)
        pad; the begin pad is made explicit where torch cannot take it (more than half the kernel), the
        end is padded explicitly where torch's windows would stop short; the result is cropped."""
        kernel = self._kernel(size)
        if self.is_global:
            return (0, 0), (0, 0), (0, 0), (1, 1)
        begin, tpad, end, want = [], [], [], []
        for i in range(2):
            k, s, d, pb = kernel[i], self.strides[i], self.dilations[i], self.pads_begin[i]
            w = onnx_pool_size(size[i], k, s, pb, self.pads_end[i], d, self.ceil_mode)
            b = pb if pb > k // 2 else 0
            tp, n = pb - b, size[i] + b
            have = onnx_pool_size(n, k, s, tp, tp, d, True)
            reach = (w - 1) * s + d * (k - 1) + 1 - tp - n  # how far the last window reaches past the input
            begin.append(b)
            tpad.append(tp)
            end.append(max(0, reach) if have < w else 0)
            want.append(w)
        return tuple(begin), tuple(tpad), tuple(end), tuple(want)

    @staticmethod
    def _pad(x, begin, end, fill):
        if any(begin) or any(end):
            x = F.pad(x, (begin[1], end[1], begin[0], end[0]), value=fill)
        return x

    def _max_at_reference_argmax(self, x):
        """x gathered at the argmax of ``decide_from`` (same windows, same cropping as forward)."""
        size = x.shape[-2:]
        kernel, strides = self._kernel(size), ((1, 1) if self.is_global else self.strides)
        if self.direct:
            begin, tpad, end, want = (0, 0), self.pads_begin, (0, 0), None
        else:
            begin, tpad, end, want = self._plan(size)
        ref = self._pad(self.decide_from, begin, end, float("-inf"))
        xs = self._pad(x, begin, end, float("-inf"))
        ceil = self.direct_ceil if self.direct else True
        _, idx = F.max_pool2d(ref, kernel, strides, tpad, self.dilations, ceil, return_indices=True)
        y = xs.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        return y if want is None else y[..., :want[0], :want[1]]

    def _planned(self, x):
        size = x.shape[-2:]
        begin, tpad, end, want = self._plan(size)
        if self.mode == "max":
            x = self._pad(x, begin, end, float("-inf"))
            y = F.max_pool2d(x, self.kernel, self.strides, tpad, self.dilations, True)
            return y[..., :want[0], :want[1]]
        x = self._pad(x, begin, end, 0.0)
        divisor = self._divisor(tuple(size), want, x)
        if isinstance(divisor, int):  # the same for every window: let torch divide
            y = F.avg_pool2d(x, self.kernel, self.strides, tpad, True, True, divisor_override=divisor)
            return y[..., :want[0], :want[1]]
        y = F.avg_pool2d(x, self.kernel, self.strides, tpad, True, True, divisor_override=1)
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
        module = Pool2d(mode, kernel, list(a.get("strides", [1, 1])), pads, dilations, a.get("ceil_mode", 0),
                        a.get("count_include_pad", 0))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    return convert


def _global_converter(mode):
    def convert(node, graph):
        module = Pool2d(mode, None, [1, 1], [0, 0, 0, 0], [1, 1], 0, 0)
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    return convert


override("MaxPool")(_pool_converter("MaxPool", "max"))
override("AveragePool")(_pool_converter("AveragePool", "avg"))
override("GlobalMaxPool")(_global_converter("max"))
override("GlobalAveragePool")(_global_converter("avg"))
