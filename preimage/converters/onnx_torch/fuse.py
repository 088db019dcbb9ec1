"""Graph rewrites applied to the pruned ONNX graph before onnx2torch converts it.

``fuse_pad_into_average_pool``: the Caffe converter writes padded AVE pooling as an explicit zero
``Pad`` followed by an ``AveragePool`` without pads (docs/caffe.md). Run as written, the Pad makes a full
padded copy of the activation in every forward (and its backward crops the gradient again). An
AveragePool with the same pads and ``count_include_pad=1`` computes exactly the same thing when no
window can start in the end padding, i.e. in floor mode: every window then lies inside the padded map
and ONNX divides by the full kernel either way. torch pools the padding implicitly (see ``pooling.py``),
so the copy disappears. Only applied where torch's pooling can take the begin pad (pad <= kernel / 2)
and the Pad's output is used by nothing else.

Caffe's ceil-mode AVE pooling arrives as zero ``Pad`` p on both sides + ``AveragePool`` in floor mode
with end pads ``min(k - 1 - p, s - 1)`` and ``count_include_pad=0`` (docs/caffe.md): windows up to
one past ``H + p``, divided by their part inside ``[-p, H + p)``. That is exactly torch's ceil-mode
``avg_pool2d`` with the symmetric pad p and ``count_include_pad=True`` at every input size, so the
pair becomes ``AveragePool(pads p, ceil_mode=1, count_include_pad=1)`` (for torch only; onnxruntime
sizes ceil mode alike, but ONNX's shape inference below opset 22 would not).
"""
import onnx
from onnx import helper, numpy_helper


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _spatial_pads(pad_node, inits, rank):
    """[b_h, b_w, e_h, e_w] when ``pad_node`` zero-pads only the last two axes of a rank-4 tensor."""
    mode = _attr(pad_node, "mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant" or rank != 4:
        return None
    inputs = list(pad_node.input) + [""] * 4
    if inputs[1] not in inits or inputs[3]:
        return None
    if inputs[2]:
        if inputs[2] not in inits or float(numpy_helper.to_array(inits[inputs[2]]).ravel()[0]) != 0.0:
            return None
    pads = [int(p) for p in numpy_helper.to_array(inits[inputs[1]]).ravel()]
    if len(pads) != 8 or any(p < 0 for p in pads) or any(pads[i] for i in (0, 1, 4, 5)):
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def fuse_pad_into_average_pool(model):
    """Return ``model`` with zero Pad -> AveragePool (floor mode, no pads) pairs merged (see module doc)."""
    inits = {t.name: t for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for v in node.input:
            consumers[v] = consumers.get(v, 0) + 1
    outputs = {o.name for o in model.graph.output}
    producer = {o: n for n in model.graph.node for o in n.output}
    drop = set()
    for node in model.graph.node:
        if node.op_type != "AveragePool" or not node.input or node.input[0] not in producer:
            continue
        pad = producer[node.input[0]]
        kernel = list(_attr(node, "kernel_shape", []))
        if (pad.op_type != "Pad" or consumers.get(pad.output[0]) != 1 or pad.output[0] in outputs
                or len(kernel) != 2 or _attr(node, "ceil_mode", 0)
                or _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            continue
        pads = _spatial_pads(pad, inits, 4)
        if pads is None or pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
            continue
        pool_pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        ceil = 0
        if any(pool_pads):  # Caffe's ceil-mode pattern (module doc), or nothing to fuse
            strides = list(_attr(node, "strides", [1, 1]))
            if (_attr(node, "count_include_pad", 0) or pool_pads[:2] != [0, 0] or pads[:2] != pads[2:]
                    or any(pool_pads[2 + i] != min(kernel[i] - 1 - pads[i], strides[i] - 1) for i in range(2))):
                continue
            ceil = 1
        node.input[0] = pad.input[0]
        keep = [a for a in node.attribute if a.name not in ("pads", "count_include_pad", "ceil_mode")]
        del node.attribute[:]
        node.attribute.extend(keep + [helper.make_attribute("pads", pads),
                                      helper.make_attribute("count_include_pad", 1),
                                      helper.make_attribute("ceil_mode", ceil)])
        drop.add(id(pad))
    if drop:
        nodes = [n for n in model.graph.node if id(n) not in drop]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {v for n in model.graph.node for v in n.input}
        keep_inits = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep_inits)
    return model


def optimize(model):
    """All rewrites, in place on a (pruned, private) ModelProto."""
    assert isinstance(model, onnx.ModelProto)
    return fuse_pad_into_average_pool(model)
