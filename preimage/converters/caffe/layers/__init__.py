"""Caffe layer types -> ONNX: one registered function per layer type.

An emitter is ``fn(b, layer, xs)``: ``b`` is the :class:`~preimage.converters.caffe.builder.Builder`,
``layer`` the ``caffe_pb2.LayerParameter``, ``xs`` the ONNX value names of its bottoms (their static
shapes via ``b.shape(x)``). It must produce every name in ``b.outs`` (one per top) with
``b.op(..., out=b.outs[i], shape=...)``. Adding a layer type = one decorated function::

    @register("AbsVal")
    def absval(b, layer, xs):
        b.op("Abs", xs, out=b.outs[0], shape=b.shape(xs[0]))
"""
from ....registry import Registry

EMITTERS = Registry("Caffe layer type")
register = EMITTERS.register

# Layers that feed data: they become graph inputs (their transform_param is kept as metadata).
DATA_TYPES = {"Input", "Data", "ImageData", "MemoryData", "HDF5Data", "DummyData", "WindowData", "Python",
              "AnnotatedData", "VideoData"}
# Training-only layers, dropped with a notice.
DROPPED_TYPES = {"SoftmaxWithLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
                 "SigmoidCrossEntropyLoss", "ContrastiveLoss", "Accuracy", "Silence", "HDF5Output",
                 "MultiBoxLoss", "SmoothL1Loss", "DetectionEvaluate"}  # the last three: SSD, Faster R-CNN


def supported_types():
    return sorted(set(EMITTERS) | DATA_TYPES)


def canonical_axis(b, axis, ndim):
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise b.error(f"axis {axis} is out of range for a {ndim}-d input")
    return a


def pair(b, repeated, single_h, single_w, has_h, default, what):
    """Caffe's (value | value_h, value_w | repeated per axis) spatial parameter -> (h, w)."""
    if has_h:
        return int(single_h), int(single_w)
    vals = list(repeated)
    if not vals:
        if default is None:
            raise b.error(f"{what} is not given")
        return default, default
    if len(vals) == 1:
        return int(vals[0]), int(vals[0])
    if len(vals) == 2:
        return int(vals[0]), int(vals[1])
    raise b.error(f"{what} has {len(vals)} values; only 2-d (H, W) layers are supported")


def require_4d(b, x):
    s = b.shape(x)
    if len(s) != 4:
        raise b.error(f"expects a 4-d N x C x H x W input, got shape {list(s)}")
    return s


from . import vision, norm, activation, plumbing, forks  # noqa: E402,F401  (registers the emitters)
