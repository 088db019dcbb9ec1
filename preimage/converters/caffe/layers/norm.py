"""Normalisation and affine layers: BatchNorm, Scale, Bias, PReLU."""
import numpy as np

from . import canonical_axis, register


@register("BatchNorm")
def batch_norm(b, layer, xs):
    """Global statistics: ONNX BatchNormalization with scale 1, bias 0, mean = blob0 / f, var = blob1 / f
    (f = blob2, Caffe's moving-average factor; 1/f taken as 0 when f = 0). Without global statistics
    (use_global_stats: false), the batch's own mean and biased variance over all axes but channels."""
    p = layer.batch_norm_param
    shape = b.shape(xs[0])
    if len(shape) < 2:
        raise b.error(f"expects at least N x C, got shape {list(shape)}")
    c = shape[1]
    eps = float(p.eps)
    use_global = p.use_global_stats if p.HasField("use_global_stats") else True  # TEST phase default
    if not use_global:
        axes = [0] + list(range(2, len(shape)))
        x = xs[0]
        mean = b.op("ReduceMean", [x], axes=axes, keepdims=1)
        d = b.op("Sub", [x, mean])
        var = b.op("ReduceMean", [b.op("Mul", [d, d])], axes=axes, keepdims=1)
        std = b.op("Sqrt", [b.op("Add", [var, b.scalar(eps, "eps")])])
        b.op("Div", [d, std], out=b.outs[0], shape=shape)
        return
    mean = b.blob_array(0, (c,), "bn_mean", label="mean")
    var = b.blob_array(1, (c,), "bn_var", label="variance")
    f = b.blob_array(2, (1,), "bn_factor", label="moving-average factor")
    inv = np.float32(0.0) if f[0] == 0 else np.float32(1.0) / f[0]
    ins = [xs[0], b.const(np.ones(c, np.float32), "scale"), b.const(np.zeros(c, np.float32), "bias"),
           b.const(mean * inv, "mean"), b.const(var * inv, "var")]
    b.op("BatchNormalization", ins, out=b.outs[0], shape=shape, epsilon=eps)


def _affine_span(b, shape, axis, num_axes, what):
    axis = canonical_axis(b, axis, len(shape)) if len(shape) else 0
    if num_axes == -1:
        num_axes = len(shape) - axis
    if num_axes < 0 or axis + num_axes > len(shape):
        raise b.error(f"{what} axis {axis} with num_axes {num_axes} does not fit a {len(shape)}-d input")
    pshape = tuple(shape[axis:axis + num_axes])
    store = pshape + (1,) * (len(shape) - axis - num_axes)  # broadcastable against the input
    return axis, pshape, store


def _second_bottom(b, x2, shape, axis, what):
    s2 = b.shape(x2)
    if tuple(shape[axis:axis + len(s2)]) != tuple(s2):
        raise b.error(f"{what} bottom 1 of shape {list(s2)} does not match bottom 0 {list(shape)} from axis {axis}")
    trailing = len(shape) - axis - len(s2)
    if trailing:
        x2 = b.op("Unsqueeze", [x2, b.ints(list(range(len(s2), len(s2) + trailing)), "axes")])
    return x2


@register("Scale")
def scale(b, layer, xs):
    """y = x * gamma (+ beta): gamma covers axes [axis, axis + num_axes) of x, stored with trailing unit
    dimensions so that ONNX broadcasting applies it (Mul, then Add). A second bottom is the scale."""
    p = layer.scale_param
    shape = b.shape(xs[0])
    if len(xs) > 1:
        axis = canonical_axis(b, p.axis, len(shape))
        gamma = _second_bottom(b, xs[1], shape, axis, "Scale")
        pshape, store = b.shape(xs[1]), None
        bias_index = 0
    else:
        axis, pshape, store = _affine_span(b, shape, p.axis, p.num_axes, "Scale")
        gamma = b.blob(0, pshape, "scale", label="scale", store_shape=store)
        bias_index = 1
    if p.bias_term:
        if store is None:
            store = tuple(pshape) + (1,) * (len(shape) - axis - len(pshape))
        beta = b.blob(bias_index, tuple(pshape), "shift", label="bias", store_shape=store)
        y = b.op("Mul", [xs[0], gamma])
        b.op("Add", [y, beta], out=b.outs[0], shape=shape)
    else:
        b.op("Mul", [xs[0], gamma], out=b.outs[0], shape=shape)


@register("Bias")
def bias(b, layer, xs):
    """y = x + beta, beta over axes [axis, axis + num_axes) (or a second bottom), broadcast as in Scale."""
    p = layer.bias_param
    shape = b.shape(xs[0])
    if len(xs) > 1:
        axis = canonical_axis(b, p.axis, len(shape))
        beta = _second_bottom(b, xs[1], shape, axis, "Bias")
    else:
        axis, pshape, store = _affine_span(b, shape, p.axis, p.num_axes, "Bias")
        beta = b.blob(0, pshape, "shift", label="bias", store_shape=store)
    b.op("Add", [xs[0], beta], out=b.outs[0], shape=shape)


@register("PReLU")
def prelu(b, layer, xs):
    """ONNX PRelu; the slope is stored C x 1 x ... (per channel) or as a single value (channel_shared)."""
    p = layer.prelu_param
    shape = b.shape(xs[0])
    if p.channel_shared:
        slope = b.blob(0, (), "prelu", label="slope", store_shape=(1,))
    else:
        c = shape[1] if len(shape) > 1 else 1
        slope = b.blob(0, (c,), "prelu", label="slope", store_shape=(c,) + (1,) * max(0, len(shape) - 2))
    b.op("PRelu", [xs[0], slope], out=b.outs[0], shape=shape)


@register("MVN")
def mvn(b, layer, xs):
    """Mean-variance normalisation per sample and channel (over H x W), or per sample (over C x H x W)
    with across_channels: (x - mean) / (std + eps), Caffe adding eps to the standard deviation."""
    p = layer.mvn_param
    shape = b.shape(xs[0])
    first = 1 if p.across_channels else 2
    if len(shape) <= first:
        raise b.error(f"expects at least {first + 1} axes, got shape {list(shape)}")
    axes = list(range(first, len(shape)))
    x = xs[0]
    d = b.op("Sub", [x, b.op("ReduceMean", [x], axes=axes, keepdims=1)])
    if not p.normalize_variance:
        b.op("Identity", [d], out=b.outs[0], shape=shape)
        return
    std = b.op("Sqrt", [b.op("ReduceMean", [b.op("Mul", [d, d])], axes=axes, keepdims=1)])
    b.op("Div", [d, b.op("Add", [std, b.scalar(p.eps, "eps")])], out=b.outs[0], shape=shape)


@register("Parameter")
def parameter(b, layer, xs):
    """A learned blob as the layer's output (no bottoms): Identity of the initializer."""
    shape = tuple(int(d) for d in layer.parameter_param.shape.dim)
    b.op("Identity", [b.blob(0, shape, "weight", label="parameter")], out=b.outs[0], shape=shape)
