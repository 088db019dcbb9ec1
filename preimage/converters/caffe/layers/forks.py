"""Layers of the Caffe forks, each with the semantics of the fork's own source (docs/caffe.md, "Caffe
forks"): SSD's Normalize, Permute and PriorBox; DeepLab's / PSPNet's Interp; SegNet's Upsample (with
the max-pooling mask) and BN; the MobileNet forks' ConvolutionDepthwise / DepthwiseConvolution and
ReLU6; ShuffleNet's ShuffleChannel; SENet's Axpy; the YOLO ports' Reorg.

Some forms hold for the declared input size only (a reshape with the map's size, PriorBox's constant
boxes, Interp's output size): those layers are recorded in ``b.fixed_size`` (``preimage.fixed_size``).
"""
import math

import numpy as np

from ....errors import UnsupportedError
from ..proto import caffe_pb2
from . import EMITTERS, register, require_4d


# ---- SSD (weiliu89/caffe) ------------------------------------------------------------------------
@register("Normalize")
def normalize(b, layer, xs):
    """x / sqrt(sum x^2 + eps) per sample (across_spatial: over C x H x W; else over C at each
    position), times a learned scale: one value (channel_shared) or one per channel (blob 0)."""
    p = layer.norm_param
    n, c, h, w = require_4d(b, xs[0])
    x = xs[0]
    axes = [1, 2, 3] if p.across_spatial else [1]
    ssum = b.op("ReduceSum", [b.op("Mul", [x, x]), b.ints(axes, "axes")], keepdims=1)
    norm = b.op("Sqrt", [b.op("Add", [ssum, b.scalar(p.eps, "eps")])])
    y = b.op("Div", [x, norm])
    if p.channel_shared:
        scale = b.blob(0, (1,), "scale", label="scale")
    else:
        scale = b.blob(0, (c,), "scale", label="scale", store_shape=(c, 1, 1))
    b.op("Mul", [y, scale], out=b.outs[0], shape=(n, c, h, w))


@register("Permute")
def permute(b, layer, xs):
    """Transpose by ``order``; axes it does not name follow in their own order (as SSD completes it)."""
    shape = b.shape(xs[0])
    order = [int(o) for o in layer.permute_param.order]
    if any(o >= len(shape) for o in order) or len(set(order)) != len(order):
        raise b.error(f"order {order} is not a permutation of the {len(shape)} axes")
    order += [a for a in range(len(shape)) if a not in order]
    b.op("Transpose", xs[:1], out=b.outs[0], shape=[shape[a] for a in order], perm=order)


def prior_boxes(p, layer_hw, image_hw):
    """SSD's prior boxes for a layer_h x layer_w map on an image_h x image_w input: (1, 2, H*W*P*4),
    corners (normalized) then variances; ``p``: PriorBoxParameter."""
    lh, lw = layer_hw
    ih, iw = (p.img_h, p.img_w) if p.img_h or p.img_w else ((p.img_size, p.img_size) if p.img_size else image_hw)
    sh, sw = (p.step_h, p.step_w) if p.step_h or p.step_w else ((p.step, p.step) if p.step else (ih / lh, iw / lw))
    ratios = [1.0]
    for r in p.aspect_ratio:
        if all(abs(r - q) >= 1e-6 for q in ratios):
            ratios.append(float(r))
            if p.flip:
                ratios.append(1.0 / r)
    mins, maxs = list(p.min_size), list(p.max_size)
    boxes = []
    for i in range(lh):
        for j in range(lw):
            cx, cy = (j + p.offset) * sw, (i + p.offset) * sh
            for k, m in enumerate(mins):
                sizes = [(m, m)]
                if maxs:
                    s = math.sqrt(m * maxs[k])
                    sizes.append((s, s))
                sizes += [(m * math.sqrt(r), m / math.sqrt(r)) for r in ratios if abs(r - 1.0) >= 1e-6]
                for bw, bh in sizes:
                    boxes.append([(cx - bw / 2) / iw, (cy - bh / 2) / ih, (cx + bw / 2) / iw, (cy + bh / 2) / ih])
    boxes = np.asarray(boxes, np.float64).reshape(-1)
    if p.clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    var = list(p.variance) or [0.1]
    variances = np.tile(np.asarray(var if len(var) == 4 else var[:1] * 4, np.float64), boxes.size // 4)
    return np.stack([boxes, variances]).reshape(1, 2, -1).astype(np.float32)


@register("PriorBox")
def prior_box(b, layer, xs):
    """A constant for the declared sizes of bottom 0 (the feature map) and bottom 1 (the image)."""
    p = layer.prior_box_param
    if not len(p.min_size):
        raise b.error("prior_box_param needs min_size")
    if len(p.max_size) and len(p.max_size) != len(p.min_size):
        raise b.error(f"{len(p.max_size)} max_size values for {len(p.min_size)} min_size values")
    if len(p.variance) not in (0, 1, 4):
        raise b.error(f"variance has {len(p.variance)} values; give 1 or 4")
    feat = require_4d(b, xs[0])
    image = b.shape(xs[1]) if len(xs) > 1 else None
    if image is None and not (p.img_size or p.img_h):
        raise b.error("needs the image as bottom 1 or img_size / img_h, img_w")
    boxes = prior_boxes(p, feat[2:], tuple(image[2:]) if image is not None else None)
    b.fixed_size.append(layer.name)
    b.op("Identity", [b.const(boxes, "priors")], out=b.outs[0], shape=boxes.shape)


# ---- DeepLab v2 / PSPNet: Interp ---------------------------------------------------------------------
def interp_size(b, p, h, w, ref):
    """Output size by DeepLab's rules, in its order: shrink only, zoom only, height and width, both
    factors, the second bottom's size."""
    he, we = h + p.pad_beg + p.pad_end, w + p.pad_beg + p.pad_end
    shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
    if shrink and not zoom:
        return (he - 1) // p.shrink_factor + 1, (we - 1) // p.shrink_factor + 1
    if zoom and not shrink:
        return he + (he - 1) * (p.zoom_factor - 1), we + (we - 1) * (p.zoom_factor - 1)
    if p.HasField("height") and p.HasField("width"):
        return int(p.height), int(p.width)
    if shrink and zoom:
        hs, ws = (he - 1) // p.shrink_factor + 1, (we - 1) // p.shrink_factor + 1
        return hs + (hs - 1) * (p.zoom_factor - 1), ws + (ws - 1) * (p.zoom_factor - 1)
    if ref is not None:
        return int(ref[2]), int(ref[3])
    raise b.error("give zoom_factor, shrink_factor, height and width, or a second bottom for the size")


@register("Interp")
def interp(b, layer, xs):
    """Bilinear resize with corners aligned (Caffe's caffe_cpu_interp2); negative pads crop first."""
    p = layer.interp_param
    n, c, h, w = require_4d(b, xs[0])
    if p.pad_beg > 0 or p.pad_end > 0:
        raise b.error("pad_beg / pad_end above 0 (padding) are not supported; the fork crops only", UnsupportedError)
    ho, wo = interp_size(b, p, h, w, b.shape(xs[1]) if len(xs) > 1 else None)
    x = xs[0]
    he, we = h + p.pad_beg + p.pad_end, w + p.pad_beg + p.pad_end
    if he <= 0 or we <= 0 or ho <= 0 or wo <= 0:
        raise b.error(f"input {h} x {w} with pads ({p.pad_beg}, {p.pad_end}) leaves nothing to resize")
    if (he, we) != (h, w):
        x = b.op("Slice", [x, b.ints([-p.pad_beg] * 2, "starts"), b.ints([-p.pad_beg + he, -p.pad_beg + we], "ends"),
                           b.ints([2, 3], "axes")])
    # scales a half pixel above the wanted size so that floor(size * scale) is exact; with aligned
    # corners the sampling positions depend on the sizes only
    scales = b.const(np.array([1, 1, (ho + 0.5) / he, (wo + 0.5) / we], np.float32), "scales")
    b.fixed_size.append(layer.name)
    b.op("Resize", [x, b.const(np.zeros(0, np.float32), "roi"), scales], out=b.outs[0], shape=(n, c, ho, wo),
         mode="linear", coordinate_transformation_mode="align_corners")


# ---- SegNet (alexgkendall/caffe-segnet): Upsample and BN ---------------------------------------------
def _repeat(b, x, c, h, w, sh, sw, ho, wo):
    """Each element repeated sh x sw times, cut (or zero-padded) to ho x wo (a fixed-size form)."""
    y = b.op("Reshape", [x, b.ints([0, c, h, 1, w, 1], "shape6")])
    y = b.op("Tile", [y, b.ints([1, 1, 1, sh, 1, sw], "repeats")])
    y = b.op("Reshape", [y, b.ints([0, c, h * sh, w * sw], "shape4")])
    if (ho, wo) == (h * sh, w * sw):
        return y
    if ho <= h * sh and wo <= w * sw:
        return b.op("Slice", [y, b.ints([0, 0], "starts"), b.ints([ho, wo], "ends"), b.ints([2, 3], "axes")])
    return b.op("Pad", [y, b.ints([0, 0, 0, 0, 0, 0, max(0, ho - h * sh), max(0, wo - w * sw)], "pads")])


@register("Upsample")
def upsample(b, layer, xs):
    """SegNet: top[mask[i]] = bottom[i] in each plane, zero elsewhere. The mask comes from a max
    pooling with kernel = stride and no pad (``max_pool_mask``), so each index lies in its own
    scale x scale cell: the output is the repeated values where the repeated mask equals the
    position's index. One bottom (the YOLO ports' Upsample): nearest-neighbour repetition."""
    p = layer.upsample_param
    n, c, h, w = require_4d(b, xs[0])
    sh = p.scale_h if p.HasField("scale_h") else p.scale
    sw = p.scale_w if p.HasField("scale_w") else p.scale
    if sh <= 0 or sw <= 0:
        raise b.error("scale must be positive")
    if p.upsample_h and p.upsample_w:
        ho, wo = int(p.upsample_h), int(p.upsample_w)
    else:
        ho, wo = h * sh - int(p.pad_out_h), w * sw - int(p.pad_out_w)
    b.fixed_size.append(layer.name)
    if len(xs) == 1:
        y = _repeat(b, xs[0], c, h, w, sh, sw, ho, wo)
        b.op("Identity", [y], out=b.outs[0], shape=(n, c, ho, wo))
        return
    if tuple(b.shape(xs[1])) != (n, c, h, w):
        raise b.error(f"the mask (bottom 1) has shape {list(b.shape(xs[1]))}, the data {[n, c, h, w]}")
    vals = _repeat(b, xs[0], c, h, w, sh, sw, ho, wo)
    mask = _repeat(b, xs[1], c, h, w, sh, sw, ho, wo)
    index = b.const(np.arange(ho * wo, dtype=np.float32).reshape(1, 1, ho, wo), "index")
    b.op("Where", [b.op("Equal", [mask, index]), vals, b.scalar(0.0, "zero")], out=b.outs[0], shape=(n, c, ho, wo))


def max_pool_mask(b, layer, x, k, s, pad, out_shape, value_name):
    """Caffe's second top of MAX pooling: the index h * W + w (in the input plane) of each window's
    first maximum, as float. For windows that tile the map (kernel = stride, no pad): the windows
    are laid out as a last axis (the map padded with -FLT_MAX to whole windows), ArgMax picks the
    first maximum in row-major order, as Caffe's scan does."""
    n, c, h, w = b.shape(x)
    oh, ow = out_shape[2:]
    if tuple(k) != tuple(s) or any(pad):
        raise b.error(f"the max-pooling mask (second top) is converted for windows that tile the map only "
                      f"(kernel = stride, no pad); here kernel {list(k)}, stride {list(s)}, pad {list(pad)}",
                      UnsupportedError)
    kh, kw = k
    if (oh * kh, ow * kw) != (h, w):
        lowest = float(np.finfo(np.float32).min)
        x = b.op("Pad", [x, b.ints([0, 0, 0, 0, 0, 0, oh * kh - h, ow * kw - w], "mask_pads"), b.scalar(lowest, "lowest")])
    y = b.op("Reshape", [x, b.ints([0, c, oh, kh, ow, kw], "win_shape")])
    y = b.op("Transpose", [y], perm=[0, 1, 2, 4, 3, 5])
    y = b.op("Reshape", [y, b.ints([0, c, oh, ow, kh * kw], "win_flat")])
    a = b.op("Cast", [b.op("ArgMax", [y], axis=4, keepdims=0)], to=1)
    dy = b.op("Floor", [b.op("Div", [a, b.scalar(kw, "kw")])])
    dx = b.op("Sub", [a, b.op("Mul", [dy, b.scalar(kw, "kw")])])
    base = (np.arange(oh)[:, None] * kh * w + np.arange(ow)[None, :] * kw).astype(np.float32)
    off = b.op("Add", [b.op("Mul", [dy, b.scalar(w, "width")]), dx])
    b.fixed_size.append(layer.name)
    b.op("Add", [off, b.const(base, "window_base")], out=value_name, shape=out_shape)


@register("BN")
def segnet_bn(b, layer, xs):
    """SegNet's BN: blob 0 scale, blob 1 shift (1 x C x 1 x 1). INFERENCE: scale * x + shift (the
    statistics folded into them). LEARN (the default): the batch's mean and variance over N, H, W,
    (x - mean) / sqrt(var + 1e-9), then scale and shift."""
    p = layer.bn_param
    n, c, h, w = require_4d(b, xs[0])
    scale = b.blob(0, (1, c, 1, 1), "scale", label="scale")
    shift = b.blob(1, (1, c, 1, 1), "shift", label="shift")
    x = xs[0]
    if p.bn_mode == caffe_pb2.BNParameter.LEARN:
        mean = b.op("ReduceMean", [x], axes=[0, 2, 3], keepdims=1)
        d = b.op("Sub", [x, mean])
        var = b.op("ReduceMean", [b.op("Mul", [d, d])], axes=[0, 2, 3], keepdims=1)
        x = b.op("Div", [d, b.op("Sqrt", [b.op("Add", [var, b.scalar(1e-9, "eps")])])])
    b.op("Add", [b.op("Mul", [x, scale]), shift], out=b.outs[0], shape=(n, c, h, w))


# ---- MobileNet / ShuffleNet / SENet forks --------------------------------------------------------
@register("ConvolutionDepthwise", "DepthwiseConvolution")
def depthwise(b, layer, xs):
    """A convolution with one group per input channel (weights num_output x 1 x kh x kw)."""
    c = require_4d(b, xs[0])[1]
    p = layer.convolution_param
    if p.HasField("group") and p.group not in (1, c):
        raise b.error(f"group {p.group} differs from the input channels ({c}) of a depthwise convolution")
    as_conv = caffe_pb2.LayerParameter()
    as_conv.CopyFrom(layer)
    as_conv.convolution_param.group = c
    EMITTERS["Convolution"](b, as_conv, xs)


@register("ReLU6")
def relu6(b, layer, xs):
    b.op("Clip", [xs[0], b.scalar(0.0, "min"), b.scalar(6.0, "max")], out=b.outs[0], shape=b.shape(xs[0]))


@register("ShuffleChannel")
def shuffle_channel(b, layer, xs):
    """Channels seen as group x (C / group), transposed: (N, g, C/g, HW) -> (N, C/g, g, HW)."""
    g = int(layer.shuffle_channel_param.group)
    shape = require_4d(b, xs[0])
    c = shape[1]
    if g <= 0 or c % g:
        raise b.error(f"group {g} must divide the {c} channels")
    y = b.op("Reshape", [xs[0], b.ints([0, g, c // g, -1], "groups")])
    y = b.op("Transpose", [y], perm=[0, 2, 1, 3])
    b.op("Reshape", [y, b.op("Shape", [xs[0]])], out=b.outs[0], shape=shape)


@register("Axpy")
def axpy(b, layer, xs):
    """SENet: a * x + y, a of shape N x C x 1 x 1 (bottom 0), x and y N x C x H x W."""
    if len(xs) != 3:
        raise b.error(f"needs 3 bottoms (a, x, y), got {len(xs)}")
    a, x, y = (b.shape(v) for v in xs)
    if tuple(x) != tuple(y) or tuple(a[:2]) != tuple(x[:2]) or any(d != 1 for d in a[2:]):
        raise b.error(f"bottom shapes {list(a)}, {list(x)}, {list(y)}: expected N x C x 1 x 1 and two equal maps")
    b.op("Add", [b.op("Mul", [xs[0], xs[1]]), xs[2]], out=b.outs[0], shape=x)


@register("Reorg")
def reorg(b, layer, xs):
    """The YOLO ports' reorg (Darknet's reorg_cpu, forward = 0, which OpenCV follows too): the
    C x H x W input read as (C / s^2) x (H s) x (W s) planes, each s x s block spread over channel
    groups: out[dy, dx, c, i, j] (as s x s x C/s^2 x H x W) = in'[c, i*s + dy, j*s + dx]; then read
    as (C s^2) x (H / s) x (W / s)."""
    p = layer.reorg_param
    s = int(p.stride)
    n, c, h, w = require_4d(b, xs[0])
    if p.reverse:
        raise b.error("reverse: true is not supported", UnsupportedError)
    if s <= 0 or c % (s * s) or h % s or w % s:
        raise b.error(f"stride {s} must divide the map ({h} x {w}) and its square the channels ({c})")
    y = b.op("Reshape", [xs[0], b.ints([0, c // (s * s), h, s, w, s], "blocks")])
    y = b.op("Transpose", [y], perm=[0, 3, 5, 1, 2, 4])
    b.fixed_size.append(layer.name)
    b.op("Reshape", [y, b.ints([0, c * s * s, h // s, w // s], "shape")], out=b.outs[0],
         shape=(n, c * s * s, h // s, w // s))
