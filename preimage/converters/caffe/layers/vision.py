"""Spatial layers: Convolution, Deconvolution, Pooling, LRN, InnerProduct."""
import numpy as np

from ....errors import UnsupportedError
from . import canonical_axis, pair, register, require_4d


def _hw(p, name):
    return p.HasField(name + "_h") or p.HasField(name + "_w")


def conv_geometry(b, p):
    kh, kw = pair(b, p.kernel_size, p.kernel_h, p.kernel_w, _hw(p, "kernel"), None, "kernel_size")
    sh, sw = pair(b, p.stride, p.stride_h, p.stride_w, _hw(p, "stride"), 1, "stride")
    ph, pw = pair(b, p.pad, p.pad_h, p.pad_w, _hw(p, "pad"), 0, "pad")
    dil = list(p.dilation) or [1]
    dh, dw = (dil[0], dil[0]) if len(dil) == 1 else (dil[0], dil[1])
    if min(kh, kw, sh, sw, dh, dw) <= 0:
        raise b.error("kernel, stride and dilation must be positive")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw)


def _conv_common(b, layer, xs):
    p = layer.convolution_param
    if p.axis != 1:
        raise b.error(f"convolution over axis {p.axis} is not supported (only channels = axis 1)", UnsupportedError)
    n, c, h, w = require_4d(b, xs[0])
    k, s, pad, d = conv_geometry(b, p)
    g, o = int(p.group), int(p.num_output)
    if o <= 0:
        raise b.error("num_output must be given and positive")
    if c % g or o % g:
        raise b.error(f"group {g} must divide both the input channels ({c}) and num_output ({o})")
    return p, (n, c, h, w), k, s, pad, d, g, o


@register("Convolution")
def convolution(b, layer, xs):
    p, (n, c, h, w), k, s, pad, d, g, o = _conv_common(b, layer, xs)
    ins = [xs[0], b.blob(0, (o, c // g, k[0], k[1]), "weight", label="weight")]
    if p.bias_term:
        ins.append(b.blob(1, (o,), "bias", label="bias"))
    oh = (h + 2 * pad[0] - (d[0] * (k[0] - 1) + 1)) // s[0] + 1
    ow = (w + 2 * pad[1] - (d[1] * (k[1] - 1) + 1)) // s[1] + 1
    b.op("Conv", ins, out=b.outs[0], shape=(n, o, oh, ow), kernel_shape=list(k), strides=list(s),
         pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(d), group=g)


@register("Deconvolution")
def deconvolution(b, layer, xs):
    p, (n, c, h, w), k, s, pad, d, g, o = _conv_common(b, layer, xs)
    # Caffe stores deconvolution weights as (C_in, C_out / group, kh, kw), as ONNX ConvTranspose does.
    ins = [xs[0], b.blob(0, (c, o // g, k[0], k[1]), "weight", label="weight")]
    if p.bias_term:
        ins.append(b.blob(1, (o,), "bias", label="bias"))
    oh = (h - 1) * s[0] - 2 * pad[0] + d[0] * (k[0] - 1) + 1
    ow = (w - 1) * s[1] - 2 * pad[1] + d[1] * (k[1] - 1) + 1
    b.op("ConvTranspose", ins, out=b.outs[0], shape=(n, o, oh, ow), kernel_shape=list(k), strides=list(s),
         pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(d), group=g)


def caffe_pooled_size(size, k, s, p, ceil, any_pad):
    """Caffe's pooling output size, including the dropped last window that would start in the padding."""
    if ceil:
        out = -(-(size + 2 * p - k) // s) + 1
    else:
        out = (size + 2 * p - k) // s + 1
    if any_pad and (out - 1) * s >= size + p:
        out -= 1
    return out


def pooling_geometry(b, p, h, w):
    if p.global_pooling:
        return (h, w), (1, 1), (0, 0)
    k = pair(b, p.kernel_size, p.kernel_h, p.kernel_w, _hw(p, "kernel"), None, "kernel_size")
    s = pair(b, p.stride, p.stride_h, p.stride_w, _hw(p, "stride"), 1, "stride")
    pad = pair(b, p.pad, p.pad_h, p.pad_w, _hw(p, "pad"), 0, "pad")
    if min(k) <= 0 or min(s) <= 0:
        raise b.error(f"kernel {list(k)} and stride {list(s)} must be positive")
    if pad[0] >= k[0] or pad[1] >= k[1]:
        raise b.error(f"pad {list(pad)} must be smaller than the kernel {list(k)} (Caffe requires it)")
    return k, s, pad


FLT_MAX = float(np.finfo(np.float32).max)  # Caffe's value for a max-pooling window with no input


@register("Pooling")
def pooling(b, layer, xs):
    """Size-generic ONNX pooling: correct at any input size, as a Caffe net is.

    All in floor mode (``ceil_mode=0``), which every ONNX version and runtime sizes alike. Caffe's ceil
    rule, out = min(ceil((H + 2p - k) / s), ceil((H + p) / s) - 1) + 1 (the second term: a last window
    starting in the end padding is dropped), equals floor((H + p + e - k) / s) + 1 with the end pad
    e = min(k - 1, p + s - 1), at every H. (``ceil_mode=1`` would say the same in onnxruntime, but
    ONNX's own shape inference keeps the dropped window below opset 22, so the model would contradict
    the checker.)
    MAX: ``MaxPool`` pads [p, e] (e = p in FLOOR round mode). AVE: Caffe divides by the window clipped
    to [-p, H + p): where windows reach past H + p (e > p), an explicit zero ``Pad`` p both sides and
    ``AveragePool`` pads [0, e - p] with count_include_pad=0 (it counts the padded map, i.e. exactly
    [-p, H + p)); else ``AveragePool`` pads [p, p] (every window full). Global: GlobalMaxPool /
    GlobalAveragePool.
    The one place no ONNX pad can express: ceil mode with no padding at all and a kernel smaller than
    the stride, where Caffe keeps a last window that starts past the input (it covers nothing;
    -FLT_MAX for MAX). MAX gets an explicit end ``Pad`` of s - 1 with -FLT_MAX (generic); AVE (and
    STOCHASTIC with pads or global) keep a form fixed for the declared size, recorded in the
    ``preimage.fixed_size`` metadata (load_features refuses other sizes)."""
    p = layer.pooling_param
    n, c, h, w = require_4d(b, xs[0])
    k, s, pad = pooling_geometry(b, p, h, w)
    ceil = p.round_mode == p.CEIL
    any_pad = pad[0] > 0 or pad[1] > 0
    oh = caffe_pooled_size(h, k[0], s[0], pad[0], ceil, any_pad)
    ow = caffe_pooled_size(w, k[1], s[1], pad[1], ceil, any_pad)
    out_shape = (n, c, oh, ow)
    # Caffe keeps (ONNX drops) windows starting past the input: ceil mode, no pad, kernel < stride
    empty_tail = ceil and not any_pad and (k[0] < s[0] or k[1] < s[1])
    end = [min(k[i] - 1, pad[i] + s[i] - 1) if ceil else pad[i] for i in range(2)]
    if p.global_pooling and p.pool in (p.MAX, p.AVE):
        op = "GlobalMaxPool" if p.pool == p.MAX else "GlobalAveragePool"
        b.op(op, xs, out=b.outs[0], shape=out_shape)
    elif p.pool == p.MAX and not empty_tail:
        b.op("MaxPool", xs, out=b.outs[0], shape=out_shape, kernel_shape=list(k), strides=list(s),
             pads=[pad[0], pad[1], end[0], end[1]])
    elif p.pool == p.MAX:
        # floor((H + s - 1 - k) / s) + 1 = ceil((H - k) / s) + 1 windows, none dropped, at any H
        tail = b.ints([0, 0, 0, 0, 0, 0, s[0] - 1, s[1] - 1], "pads")
        x = b.op("Pad", [xs[0], tail, b.scalar(-FLT_MAX, "lowest")], mode="constant")
        b.op("MaxPool", [x], out=b.outs[0], shape=out_shape, kernel_shape=list(k), strides=list(s))
    elif p.pool == p.AVE and not empty_tail:
        if end[0] > pad[0] or end[1] > pad[1]:
            x = xs[0]
            if any_pad:
                x = b.op("Pad", [x, b.ints([0, 0, pad[0], pad[1], 0, 0, pad[0], pad[1]], "pads")], mode="constant")
            b.op("AveragePool", [x], out=b.outs[0], shape=out_shape, kernel_shape=list(k), strides=list(s),
                 pads=[0, 0, end[0] - pad[0], end[1] - pad[1]], count_include_pad=0)
        else:
            b.op("AveragePool", xs, out=b.outs[0], shape=out_shape, kernel_shape=list(k), strides=list(s),
                 pads=[pad[0], pad[1], pad[0], pad[1]], count_include_pad=1)
    elif p.pool == p.AVE:
        _fixed_average(b, xs[0], h, w, k, s, pad, oh, ow, out_shape)
    elif p.pool == p.STOCHASTIC:
        # TEST-phase stochastic pooling: sum(x^2) / sum(x) over each window, no padding.
        # (Caffe ignores pad here: windows start at i * stride and are clipped to the image)
        x = xs[0]
        generic = not any_pad and not empty_tail and not p.global_pooling
        if not generic:
            tail = [max(0, (oh - 1) * s[0] + k[0] - h), max(0, (ow - 1) * s[1] + k[1] - w)]
            if tail[0] or tail[1]:
                x = b.op("Pad", [x, b.ints([0, 0, 0, 0, 0, 0, tail[0], tail[1]], "pads")], mode="constant")
            b.fixed_size.append(layer.name)
        # the same divisor for both pools (count_include_pad=0), so it cancels; no pad: end = min(k-1, s-1)
        mode = {"pads": [0, 0, end[0], end[1]]} if generic and ceil else {}
        num = b.op("AveragePool", [b.op("Mul", [x, x])], kernel_shape=list(k), strides=list(s), **mode)
        den = b.op("AveragePool", [x], kernel_shape=list(k), strides=list(s), **mode)
        b.op("Div", [num, den], out=b.outs[0], shape=out_shape)
    else:
        raise b.error(f"pooling method {p.pool} is not supported", UnsupportedError)
    if len(b.outs) > 1:  # the forks' (and BVLC's) second top: the max-pooling mask, for SegNet's Upsample
        from .forks import max_pool_mask

        if p.pool != p.MAX or p.global_pooling:
            raise b.error("a second top (the mask) needs MAX pooling with a kernel", UnsupportedError)
        max_pool_mask(b, layer, xs[0], k, s, pad, out_shape, b.outs[1])


def _fixed_average(b, x, h, w, k, s, pad, oh, ow, out_shape):
    """AVE pooling for the declared size only: explicit zero Pad (Caffe's pad plus what the last window
    needs), AveragePool without pads, then a constant multiplier kh*kw / divisor where Caffe's divisor
    (window clipped to H + pad) differs. Recorded in ``b.fixed_size``."""
    b.fixed_size.append(b.layer.name)
    end = [max(0, (oh - 1) * s[0] + k[0] - h - pad[0]), max(0, (ow - 1) * s[1] + k[1] - w - pad[1])]
    if any(pad) or any(end):
        x = b.op("Pad", [x, b.ints([0, 0, pad[0], pad[1], 0, 0, end[0], end[1]], "pads")], mode="constant")
    mult = _ave_divisor_fix(h, w, k, s, pad, oh, ow)
    if mult is None:
        b.op("AveragePool", [x], out=b.outs[0], shape=out_shape, kernel_shape=list(k), strides=list(s))
    else:
        y = b.op("AveragePool", [x], kernel_shape=list(k), strides=list(s))
        b.op("Mul", [y, b.const(mult, "divisor_fix")], out=b.outs[0], shape=out_shape)


def _ave_divisor_fix(h, w, k, s, pad, oh, ow):
    def counts(size, kk, ss, pp, o):
        start = np.arange(o) * ss - pp
        return np.minimum(start + kk, size + pp) - start
    ch = counts(h, k[0], s[0], pad[0], oh)
    cw = counts(w, k[1], s[1], pad[1], ow)
    div = np.outer(ch, cw).astype(np.float64)
    if np.all(div == k[0] * k[1]):
        return None
    return (k[0] * k[1] / div).astype(np.float32)


@register("LRN")
def lrn(b, layer, xs):
    """ACROSS_CHANNELS: ONNX LRN (size n, alpha, beta, bias = k): x / (k + alpha/n * sum x^2)^beta.
    WITHIN_CHANNEL: x / (1 + alpha * avg_{n x n, zero padded} x^2)^beta (Caffe uses 1, not k, here)."""
    p = layer.lrn_param
    shape = b.shape(xs[0])
    n = int(p.local_size)
    if n % 2 == 0:
        raise b.error(f"local_size {n} must be odd (Caffe requires it)")
    if p.norm_region == p.ACROSS_CHANNELS:
        b.op("LRN", xs, out=b.outs[0], shape=shape, size=n, alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k))
        return
    require_4d(b, xs[0])
    x = xs[0]
    pad = (n - 1) // 2
    sq = b.op("Mul", [x, x])
    avg = b.op("AveragePool", [sq], kernel_shape=[n, n], strides=[1, 1], pads=[pad, pad, pad, pad],
               count_include_pad=1)
    base = b.op("Add", [b.op("Mul", [avg, b.scalar(p.alpha, "alpha")]), b.scalar(1.0, "one")])
    scale = b.op("Pow", [base, b.scalar(-p.beta, "neg_beta")])
    b.op("Mul", [x, scale], out=b.outs[0], shape=shape)


@register("InnerProduct")
def inner_product(b, layer, xs):
    """axis 1: Flatten + Gemm (weight (out, in), transB = 1; (in, out) when transpose: true, transB = 0).
    Other axes: Reshape keeping the leading axes, MatMul, Add."""
    p = layer.inner_product_param
    shape = b.shape(xs[0])
    axis = canonical_axis(b, p.axis, len(shape))
    k = int(np.prod(shape[axis:], dtype=np.int64))
    o = int(p.num_output)
    if o <= 0:
        raise b.error("num_output must be given and positive")
    wshape = (k, o) if p.transpose else (o, k)
    wt = b.blob(0, wshape, "weight", fan_in=k, label="weight")
    bias = b.blob(1, (o,), "bias", label="bias") if p.bias_term else None
    out_shape = tuple(shape[:axis]) + (o,)
    x = xs[0]
    if axis == 1:
        if len(shape) != 2:
            x = b.op("Flatten", [x], axis=1)
        ins = [x, wt] + ([bias] if bias else [])
        b.op("Gemm", ins, out=b.outs[0], shape=out_shape, transB=0 if p.transpose else 1)
        return
    if len(shape) != axis + 1:
        x = b.op("Reshape", [x, b.ints([0] * axis + [-1], "shape")])
    wm = wt if p.transpose else b.op("Transpose", [wt], perm=[1, 0])
    if bias:
        y = b.op("MatMul", [x, wm])
        b.op("Add", [y, bias], out=b.outs[0], shape=out_shape)
    else:
        b.op("MatMul", [x, wm], out=b.outs[0], shape=out_shape)
