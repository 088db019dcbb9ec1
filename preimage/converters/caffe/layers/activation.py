"""Elementwise activations and arithmetic: ReLU, ELU, Sigmoid, TanH, AbsVal, BNLL, Power, Exp, Log,
Threshold, Dropout (identity at test time), Swish, Clip."""
import math

from . import register


def _unary(op, **fixed):
    def emit(b, layer, xs):
        b.op(op, xs[:1], out=b.outs[0], shape=b.shape(xs[0]), **fixed)
    return emit


register("Sigmoid")(_unary("Sigmoid"))
register("TanH")(_unary("Tanh"))
register("AbsVal")(_unary("Abs"))
register("BNLL")(_unary("Softplus"))  # log(1 + exp(x))


@register("Dropout")
def dropout(b, layer, xs):
    """TEST phase: identity; with ``scale_train: false`` Caffe scales by (1 - ratio) at test time instead."""
    p = layer.dropout_param
    if p.scale_train:
        b.op("Identity", xs[:1], out=b.outs[0], shape=b.shape(xs[0]))
    else:
        b.op("Mul", [xs[0], b.scalar(1.0 - p.dropout_ratio, "keep")], out=b.outs[0], shape=b.shape(xs[0]))


@register("ReLU")
def relu(b, layer, xs):
    slope = float(layer.relu_param.negative_slope)
    if slope == 0.0:
        b.op("Relu", xs[:1], out=b.outs[0], shape=b.shape(xs[0]))
    else:
        b.op("LeakyRelu", xs[:1], out=b.outs[0], shape=b.shape(xs[0]), alpha=slope)


@register("ELU")
def elu(b, layer, xs):
    b.op("Elu", xs[:1], out=b.outs[0], shape=b.shape(xs[0]), alpha=float(layer.elu_param.alpha))


def _affine(b, x, scale, shift):
    """scale * x + shift, skipping the identity parts."""
    if scale != 1.0:
        x = b.op("Mul", [x, b.scalar(scale, "scale")])
    if shift != 0.0:
        x = b.op("Add", [x, b.scalar(shift, "shift")])
    return x


def _finish(b, x, xs, op="Identity", extra=None):
    """Emit the last node under the layer's output name."""
    if extra is not None:
        b.op(op, [x, extra], out=b.outs[0], shape=b.shape(xs[0]))
    else:
        b.op(op, [x], out=b.outs[0], shape=b.shape(xs[0]))


@register("Power")
def power(b, layer, xs):
    """(shift + scale * x) ^ power."""
    p = layer.power_param
    y = _affine(b, xs[0], float(p.scale), float(p.shift))
    if p.power == 1.0:
        _finish(b, y, xs)
    else:
        _finish(b, y, xs, "Pow", b.scalar(p.power, "power"))


@register("Exp")
def exp(b, layer, xs):
    """base ^ (shift + scale * x), computed as Caffe does: base^shift * exp(ln(base) * scale * x)."""
    p = layer.exp_param
    log_base = 1.0 if p.base == -1 else math.log(p.base)
    if p.base != -1 and p.base <= 0:
        raise b.error(f"base {p.base} must be positive (or -1 for e)")
    inner = log_base * p.scale
    outer = 1.0 if p.shift == 0 else math.exp(log_base * p.shift)
    y = xs[0]
    if inner != 1.0:
        y = b.op("Mul", [y, b.scalar(inner, "inner_scale")])
    if outer == 1.0:
        _finish(b, y, xs, "Exp")
    else:
        _finish(b, b.op("Exp", [y]), xs, "Mul", b.scalar(outer, "outer_scale"))


@register("Log")
def log(b, layer, xs):
    """log_base(shift + scale * x) = ln(shift + scale * x) / ln(base)."""
    p = layer.log_param
    if p.base != -1 and p.base <= 0:
        raise b.error(f"base {p.base} must be positive (or -1 for e)")
    y = _affine(b, xs[0], float(p.scale), float(p.shift))
    if p.base == -1:
        _finish(b, y, xs, "Log")
    else:
        _finish(b, b.op("Log", [y]), xs, "Mul", b.scalar(1.0 / math.log(p.base), "base_scale"))


@register("Threshold")
def threshold(b, layer, xs):
    """1 where x > threshold, else 0 (Greater, then Cast to float)."""
    g = b.op("Greater", [xs[0], b.scalar(layer.threshold_param.threshold, "threshold")])
    b.op("Cast", [g], out=b.outs[0], shape=b.shape(xs[0]), to=1)


@register("Swish")
def swish(b, layer, xs):
    """x * sigmoid(beta * x)."""
    beta = float(layer.swish_param.beta)
    z = xs[0] if beta == 1.0 else b.op("Mul", [xs[0], b.scalar(beta, "beta")])
    _finish(b, xs[0], xs, "Mul", b.op("Sigmoid", [z]))


@register("Clip")
def clip(b, layer, xs):
    p = layer.clip_param
    b.op("Clip", [xs[0], b.scalar(p.min, "min"), b.scalar(p.max, "max")], out=b.outs[0], shape=b.shape(xs[0]))
