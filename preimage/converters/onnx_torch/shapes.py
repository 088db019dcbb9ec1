"""Shape inference for onnx2torch without serialising the weights.

Why this exists: ``onnx2torch.convert`` first runs ``onnx.shape_inference.infer_shapes`` on the whole
model (after measuring its serialised size), which serialises and parses every weight: for a full-width
AlexNet that is most of the seconds ``load_features`` took. Shapes do not depend on weight values, only
on their shapes (and on the values of small constant inputs such as Reshape targets and pads). Here the
inference runs on a light copy in which every initializer above ``SMALL`` elements is a typed graph input
of the same shape, and the value shapes it finds are added to the model as ``value_info``: what
onnx2torch's own inference would have added. Within :func:`light_inference`, onnx2torch uses this
instead (its module attribute is replaced for the block and restored after; nothing installed is edited).
Within the block, ``nn.Linear`` and ``nn.Conv*`` also skip their random initialisation (onnx2torch
overwrites those weights with the initializers right away; drawing 150 MB of random numbers for fc6 cost
a second).
"""
import contextlib
import math

import onnx

SMALL = 1024  # initializers with at most this many elements keep their values (shape arithmetic needs them)


def infer_value_shapes(model):
    """``model`` (in place) with the value_info that shape inference finds; returns it."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    g, src = light.graph, model.graph
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    inputs = {i.name for i in src.input}
    for t in src.initializer:
        if math.prod(t.dims) <= SMALL:
            g.initializer.append(t)
        elif t.name not in inputs:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    inferred = onnx.shape_inference.infer_shapes(light)
    known = {v.name for v in src.value_info} | {v.name for v in src.input} | {v.name for v in src.output}
    src.value_info.extend(v for v in inferred.graph.value_info if v.name not in known)
    return model


@contextlib.contextmanager
def light_inference():
    """Within the block, ``onnx2torch.convert`` of a ModelProto infers shapes with :func:`infer_value_shapes`."""
    from onnx2torch import converter

    original = converter.safe_shape_inference

    def safe_shape_inference(model, **kwargs):
        if isinstance(model, onnx.ModelProto) and not kwargs:
            return infer_value_shapes(model)
        return original(model, **kwargs)

    from torch import nn

    classes = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    own = [(cls, cls.__dict__.get("reset_parameters")) for cls in classes]
    converter.safe_shape_inference = safe_shape_inference
    for cls in classes:
        cls.reset_parameters = _no_init
    try:
        yield
    finally:
        converter.safe_shape_inference = original
        for cls, fn in own:
            if fn is None:
                del cls.reset_parameters
            else:
                cls.reset_parameters = fn


def _no_init(module):
    pass
