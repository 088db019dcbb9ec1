"""Graph plumbing: Eltwise, Concat, Slice, Split, Flatten, Reshape, Crop, Softmax, Tile."""
import numpy as np

from ....errors import UnsupportedError
from . import canonical_axis, register


@register("Eltwise")
def eltwise(b, layer, xs):
    """SUM: Mul by each coefficient that is not 1, then Add; PROD: Mul; MAX: Max."""
    p = layer.eltwise_param
    shape = b.shape(xs[0])
    for x in xs[1:]:
        if b.shape(x) != shape:
            raise b.error(f"bottoms must have equal shapes, got {list(shape)} and {list(b.shape(x))}")
    if len(xs) < 2:
        raise b.error("needs at least two bottoms")
    if p.operation == p.SUM:
        coeffs = list(p.coeff)
        if coeffs and len(coeffs) != len(xs):
            raise b.error(f"{len(coeffs)} coefficients for {len(xs)} bottoms")
        terms = []
        for i, x in enumerate(xs):
            c = coeffs[i] if coeffs else 1.0
            terms.append(x if c == 1.0 else b.op("Mul", [x, b.scalar(c, f"coeff{i}")]))
        acc = terms[0]
        for i, t in enumerate(terms[1:], 1):
            acc = b.op("Add", [acc, t], out=b.outs[0] if i == len(terms) - 1 else None,
                       shape=shape if i == len(terms) - 1 else None)
    elif p.operation == p.PROD:
        acc = xs[0]
        for i, x in enumerate(xs[1:], 1):
            last = i == len(xs) - 1
            acc = b.op("Mul", [acc, x], out=b.outs[0] if last else None, shape=shape if last else None)
    elif p.operation == p.MAX:
        b.op("Max", xs, out=b.outs[0], shape=shape)
    else:
        raise b.error(f"Eltwise operation {p.operation} is not supported", UnsupportedError)


@register("Concat")
def concat(b, layer, xs):
    p = layer.concat_param
    shape = b.shape(xs[0])
    axis = int(p.concat_dim) if p.HasField("concat_dim") else canonical_axis(b, p.axis, len(shape))
    total = 0
    for x in xs:
        s = b.shape(x)
        if len(s) != len(shape) or any(s[i] != shape[i] for i in range(len(s)) if i != axis):
            raise b.error(f"bottom shapes {list(shape)} and {list(s)} differ outside axis {axis}")
        total += s[axis]
    out = list(shape)
    out[axis] = total
    b.op("Concat", xs, out=b.outs[0], shape=out, axis=axis)


@register("Slice")
def slice_(b, layer, xs):
    """ONNX Split with explicit sizes (from slice_point, or equal parts)."""
    p = layer.slice_param
    shape = b.shape(xs[0])
    axis = int(p.slice_dim) if p.HasField("slice_dim") else canonical_axis(b, p.axis, len(shape))
    n = shape[axis]
    points = [int(v) for v in p.slice_point]
    if points:
        if len(points) != len(b.outs) - 1:
            raise b.error(f"{len(points)} slice points for {len(b.outs)} tops (need tops - 1)")
        bounds = [0] + points + [n]
        sizes = [bounds[i + 1] - bounds[i] for i in range(len(b.outs))]
        if any(s <= 0 for s in sizes):
            raise b.error(f"slice points {points} must increase within 1..{n - 1}")
    else:
        if n % len(b.outs):
            raise b.error(f"axis {axis} of size {n} cannot be split equally into {len(b.outs)} tops")
        sizes = [n // len(b.outs)] * len(b.outs)
    b.op_multi("Split", [xs[0], b.ints(sizes, "split")], b.outs, axis=axis)
    for o, size in zip(b.outs, sizes):
        s = list(shape)
        s[axis] = size
        b.set_shape(o, s)


@register("Split")
def split(b, layer, xs):
    for o in b.outs:
        b.op("Identity", xs[:1], out=o, shape=b.shape(xs[0]))


@register("Flatten")
def flatten(b, layer, xs):
    """axis .. end_axis collapsed: ONNX Flatten when end_axis is the last axis and axis is 1, else Reshape."""
    p = layer.flatten_param
    shape = b.shape(xs[0])
    nd = len(shape)
    a = canonical_axis(b, p.axis, nd)
    e = canonical_axis(b, p.end_axis, nd)
    if e < a:
        raise b.error(f"end_axis {p.end_axis} comes before axis {p.axis}")
    out = list(shape[:a]) + [int(np.prod(shape[a:e + 1]))] + list(shape[e + 1:])
    if a == 1 and e == nd - 1:
        b.op("Flatten", xs, out=b.outs[0], shape=out, axis=1)
    else:
        target = [0] * a + [-1] + list(shape[e + 1:])
        b.op("Reshape", [xs[0], b.ints(target, "shape")], out=b.outs[0], shape=out)


@register("Reshape")
def reshape(b, layer, xs):
    """Caffe's 0 (copy the input dimension) and -1 (infer) map onto ONNX Reshape's 0 and -1 at the same
    positions; dimensions outside [axis, axis + num_axes) are kept (0 before, their sizes after). A
    fixed first dimension equal to the input's batch becomes 0, keeping the batch dynamic."""
    p = layer.reshape_param
    shape = list(b.shape(xs[0]))
    nd = len(shape)
    dims = [int(d) for d in p.shape.dim]
    axis = p.axis + nd + 1 if p.axis < 0 else p.axis
    if not 0 <= axis <= nd:
        raise b.error(f"axis {p.axis} is out of range for a {nd}-d input")
    num = nd - axis if p.num_axes == -1 else p.num_axes
    if num < 0 or axis + num > nd:
        raise b.error(f"num_axes {p.num_axes} does not fit a {nd}-d input from axis {axis}")
    if dims.count(-1) > 1:
        raise b.error("at most one dimension may be -1")
    middle = []
    for i, d in enumerate(dims):
        if d == 0:
            if axis + i >= nd:
                raise b.error(f"dim {i} is 0 (copy) but the input has no axis {axis + i}")
            middle.append(shape[axis + i])
        else:
            middle.append(d)
    out = shape[:axis] + middle + shape[axis + num:]
    total = int(np.prod(shape))
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        if known == 0 or total % known:
            raise b.error(f"cannot reshape {shape} into {dims} (the -1 dimension does not divide evenly)")
        out[out.index(-1)] = total // known
    if int(np.prod(out)) != total:
        raise b.error(f"cannot reshape {shape} ({total} values) into {out}")
    # ONNX target: 0 where Caffe copies (same position), -1 where Caffe infers, sizes elsewhere
    target = [0] * axis + [0 if d == 0 else d for d in dims] + shape[axis + num:]
    if axis == 0 and target and target[0] > 0 and target[0] == shape[0]:
        target[0] = 0
    b.op("Reshape", [xs[0], b.ints(target, "shape")], out=b.outs[0], shape=out)


@register("Crop")
def crop(b, layer, xs):
    """Bottom 0 cut to bottom 1's size from `axis` on, at the given offsets: ONNX Slice."""
    p = layer.crop_param
    if len(xs) != 2:
        raise b.error("needs two bottoms (the blob to crop and the reference)")
    shape, ref = b.shape(xs[0]), b.shape(xs[1])
    if len(shape) != len(ref):
        raise b.error(f"bottoms have different ranks: {list(shape)} and {list(ref)}")
    axis = canonical_axis(b, p.axis, len(shape))
    offs = [int(o) for o in p.offset]
    n = len(shape) - axis
    if len(offs) == 0:
        offs = [0] * n
    elif len(offs) == 1:
        offs = offs * n
    elif len(offs) != n:
        raise b.error(f"{len(offs)} offsets for {n} cropped axes (give 1 or {n})")
    out = list(shape[:axis])
    axes, starts, ends = [], [], []
    for i, a in enumerate(range(axis, len(shape))):
        if offs[i] + ref[a] > shape[a]:
            raise b.error(f"crop of axis {a} at offset {offs[i]} with size {ref[a]} exceeds the input size {shape[a]}")
        out.append(ref[a])
        if offs[i] != 0 or ref[a] != shape[a]:
            axes.append(a)
            starts.append(offs[i])
            ends.append(offs[i] + ref[a])
    if not axes:
        b.op("Identity", xs[:1], out=b.outs[0], shape=out)
        return
    b.op("Slice", [xs[0], b.ints(starts, "starts"), b.ints(ends, "ends"), b.ints(axes, "axes")],
         out=b.outs[0], shape=out)


@register("Softmax")
def softmax(b, layer, xs):
    shape = b.shape(xs[0])
    b.op("Softmax", xs[:1], out=b.outs[0], shape=shape, axis=canonical_axis(b, layer.softmax_param.axis, len(shape)))


@register("Tile")
def tile(b, layer, xs):
    p = layer.tile_param
    shape = list(b.shape(xs[0]))
    axis = canonical_axis(b, p.axis, len(shape))
    reps = [1] * len(shape)
    reps[axis] = int(p.tiles)
    shape[axis] *= int(p.tiles)
    b.op("Tile", [xs[0], b.ints(reps, "repeats")], out=b.outs[0], shape=shape)


@register("Reduction")
def reduction(b, layer, xs):
    """SUM / ASUM / SUMSQ / MEAN over all axes from `axis` on, times coeff (output: the leading axes)."""
    p = layer.reduction_param
    shape = b.shape(xs[0])
    axis = canonical_axis(b, p.axis, len(shape)) if len(shape) else 0
    axes = list(range(axis, len(shape)))
    x = xs[0]
    if p.operation == p.ASUM:
        x = b.op("Abs", [x])
    elif p.operation == p.SUMSQ:
        x = b.op("Mul", [x, x])
    out_shape = tuple(shape[:axis])
    coeff = float(p.coeff) / (int(np.prod(shape[axis:])) if p.operation == p.MEAN else 1)
    if not out_shape:
        raise b.error("reduction to a scalar (axis 0) is not supported: the batch would disappear", UnsupportedError)
    s = b.op("ReduceSum", [x, b.ints(axes, "axes")], keepdims=0)
    if coeff == 1.0:
        b.op("Identity", [s], out=b.outs[0], shape=out_shape)
    else:
        b.op("Mul", [s, b.scalar(coeff, "coeff")], out=b.outs[0], shape=out_shape)


@register("ArgMax")
def argmax(b, layer, xs):
    """Index of the largest value along `axis` (top_k 1, as float, like Caffe); other forms unsupported."""
    p = layer.argmax_param
    shape = b.shape(xs[0])
    if not p.HasField("axis") or p.top_k != 1 or p.out_max_val:
        raise b.error("only ArgMax with an axis, top_k 1 and no out_max_val is supported", UnsupportedError)
    axis = canonical_axis(b, p.axis, len(shape))
    idx = b.op("ArgMax", xs[:1], axis=axis, keepdims=1)
    out = list(shape)
    out[axis] = 1
    b.op("Cast", [idx], out=b.outs[0], shape=out, to=1)
