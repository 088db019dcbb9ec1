"""Receptive fields and layer tables of ONNX models (any converter's, Caffe's in particular).

``receptive_fields(model)`` follows the graph from every image input (a 4-d N x C x H x W input) and
gives, for each value computed from it, the receptive field of one of its units in input pixels:

- ``size`` (h, w): how many input pixels one unit sees (padding included, as in Mahendran & Vedaldi's
  tables: AlexNet conv1 11, pool1 19, conv2 51, ..., pool5 195, fc6..fc8 355);
- ``stride`` (h, w): how far apart in the input two neighbouring units' fields are;
- ``offset`` (h, w): input coordinate of the top-left corner of unit (0, 0)'s field (negative where the
  field starts in the padding).

Convolutions, transposed convolutions, pooling and padding change the field; elementwise and channel
ops pass it through (several inputs: the union). Ops that mix all positions (Flatten, Reshape, Gemm,
MatMul, global pooling, spatial reductions) give a field spanning the whole input map, with the stride
kept (the pooled map's, which sets invert's jitter) and ``"global": True``; where the input size is free
(exported with dynamic H/W) the size of such a field is unknown and given as ``size: None`` ("the whole
input"), also for everything computed from it.
"""
import json
import os

import onnx
from onnx import helper, numpy_helper

from .caffe.convert import convert_caffe_full

SPATIAL_WINDOW_OPS = {"Conv", "MaxPool", "AveragePool", "LpPool"}
GLOBAL_OPS = {"Flatten", "Reshape", "Gemm", "MatMul", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
REDUCE_OPS = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSumExp", "ReduceSumSquare"}  # global when they reduce both spatial axes


def _num(x):
    return int(x) if float(x).is_integer() else round(float(x), 4)


class _Field:
    """``size`` None: the whole input, of a size not known from the model (free H/W)."""
    __slots__ = ("size", "stride", "start", "whole")

    def __init__(self, size, stride, start, whole=False):
        self.size = None if size is None else list(size)
        self.stride, self.start, self.whole = list(stride), list(start), whole

    def as_dict(self):
        d = {"size": None if self.size is None else tuple(_num(v) for v in self.size),
             "stride": tuple(_num(v) for v in self.stride), "offset": tuple(_num(v) for v in self.start)}
        if self.whole:
            d["global"] = True
        return d


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _union(fields):
    if len(fields) == 1:
        return fields[0]
    start = [min(f.start[i] for f in fields) for i in range(2)]
    stride = [max(f.stride[i] for f in fields) for i in range(2)]
    whole = any(f.whole for f in fields)
    if any(f.size is None for f in fields):
        return _Field(None, stride, start, whole)
    end = [max(f.start[i] + f.size[i] for f in fields) for i in range(2)]
    return _Field([end[i] - start[i] for i in range(2)], stride, start, whole)


def _window(f, node, a):
    k = list(a.get("kernel_shape", [1, 1]))
    s = list(a.get("strides", [1, 1]))
    d = list(a.get("dilations", [1, 1]))
    p = list(a.get("pads", [0, 0, 0, 0]))
    if len(k) != 2:
        return None
    size, stride, start = [], [], []
    for i in range(2):
        keff = d[i] * (k[i] - 1) + 1
        size.append(None if f.size is None else f.size[i] + (keff - 1) * f.stride[i])
        stride.append(f.stride[i] * s[i])
        start.append(f.start[i] - p[i] * f.stride[i])
    return _Field(None if f.size is None else size, stride, start, f.whole)


def _transposed(f, a):
    k = list(a.get("kernel_shape", [1, 1]))
    s = list(a.get("strides", [1, 1]))
    d = list(a.get("dilations", [1, 1]))
    p = list(a.get("pads", [0, 0, 0, 0]))
    size, stride, start = [], [], []
    for i in range(2):
        span = d[i] * (k[i] - 1) / s[i]  # input units contributing to one output unit, minus one
        size.append(None if f.size is None else f.size[i] + span * f.stride[i])
        stride.append(f.stride[i] / s[i])
        start.append(f.start[i] + (p[i] - d[i] * (k[i] - 1)) / s[i] * f.stride[i])
    return _Field(None if f.size is None else size, stride, start, f.whole)


def _shapes(model):
    """Static shapes of all values (our value_info, then ONNX shape inference for the rest)."""
    shapes = {}

    def take(vi):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]

    try:
        light = onnx.ModelProto()
        light.ir_version = model.ir_version
        light.opset_import.extend(model.opset_import)
        g = light.graph
        g.node.extend(model.graph.node)
        g.input.extend(model.graph.input)
        g.output.extend(model.graph.output)
        g.value_info.extend(model.graph.value_info)
        for t in model.graph.initializer:  # shapes only: no weight bytes copied
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        inferred = onnx.shape_inference.infer_shapes(light)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            take(vi)
    except Exception:  # shape inference is a help, not a requirement
        pass
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        take(vi)
    return shapes


def _load(model):
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith(".prototxt"):
            return convert_caffe_full(path, weightless=True).model
        return onnx.load(path, load_external_data=False)
    return model


def receptive_fields(onnx_model, shapes=None):
    """``{value name: {"size": (h, w), "stride": (h, w), "offset": (h, w)}}`` for every value computed
    from an image input (see the module doc). ``onnx_model``: ModelProto or path."""
    model = _load(onnx_model)
    shapes = shapes if shapes is not None else _shapes(model)
    inits = {t.name for t in model.graph.initializer}
    meta = {p.key: p.value for p in model.metadata_props}
    declared = json.loads(meta["preimage.inputs"]) if "preimage.inputs" in meta else None
    fields = {}
    for i in model.graph.input:
        s = shapes.get(i.name)
        if declared is not None and i.name not in declared:
            continue  # e.g. weights left as inputs in a structure-only model
        if i.name not in inits and s is not None and len(s) == 4:
            fields[i.name] = _Field([1, 1], [1, 1], [0, 0])
    for node in model.graph.node:
        ins = [fields[x] for x in node.input if x in fields]
        if not ins:
            continue
        op = node.op_type
        a = _attrs(node)
        f = None
        if op in SPATIAL_WINDOW_OPS and node.input[0] in fields:
            f = _window(fields[node.input[0]], node, a)
        elif op == "ConvTranspose" and node.input[0] in fields:
            f = _transposed(fields[node.input[0]], a)
        elif op == "Pad" and node.input[0] in fields:
            f = _pad(fields[node.input[0]], node, model, a)
        elif op == "Slice" and node.input[0] in fields:
            f = _slice(fields[node.input[0]], node, model)
        elif op in GLOBAL_OPS or (op in REDUCE_OPS and _reduces_space(node, model, a)):
            src = fields.get(node.input[0]) or _union(ins)
            s = shapes.get(node.input[0])
            if src.whole:
                f = src
            elif s is not None and len(s) >= 4 and s[2] and s[3] and src.size is not None:
                f = _Field([src.size[i] + (s[2 + i] - 1) * src.stride[i] for i in range(2)], src.stride, src.start, True)
            elif s is not None and len(s) == 4 or op.startswith("Global") or op in REDUCE_OPS:
                f = _Field(None, src.stride, src.start, True)  # a map of free size: the whole input
            else:
                f = src  # e.g. a Reshape of a non-spatial value
        else:
            f = _union(ins)
        if f is None:
            continue
        for o in node.output:
            fields[o] = f
    return {name: f.as_dict() for name, f in fields.items()}


def _const_ints(model, name):
    for t in model.graph.initializer:
        if t.name == name:
            return [int(v) for v in numpy_helper.to_array(t).ravel()]
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return [int(v) for v in numpy_helper.to_array(n.attribute[0].t).ravel()]
    return None


def _reduces_space(node, model, a):
    axes = list(a.get("axes", [])) or (_const_ints(model, node.input[1]) if len(node.input) > 1 and node.input[1] else None)
    if not axes:
        return not a.get("noop_with_empty_axes", 0)  # no axes: all of them
    return {2, 3} <= {x % 4 for x in axes}


def _pad(f, node, model, a):
    pads = _const_ints(model, node.input[1]) if len(node.input) > 1 else list(a.get("pads", []))
    if not pads or len(pads) != 8:
        return f
    return _Field(f.size, f.stride, [f.start[i] - pads[2 + i] * f.stride[i] for i in range(2)], f.whole)


def _slice(f, node, model):
    starts = _const_ints(model, node.input[1]) if len(node.input) > 1 else None
    axes = _const_ints(model, node.input[3]) if len(node.input) > 3 else None
    if starts is None:
        return f
    axes = axes if axes is not None else list(range(len(starts)))
    start = list(f.start)
    for ax, st in zip(axes, starts):
        if ax in (2, 3):
            start[ax - 2] = f.start[ax - 2] + st * f.stride[ax - 2]
    return _Field(f.size, f.stride, start, f.whole)


def layer_table(model):
    """Rows describing a model's layers (Caffe layers from ``preimage.layers`` metadata, else ONNX
    nodes) and blobs: ``{"layers": [...], "blobs": [...], "inputs": {...}}``; each layer row has name,
    type, values, shape (of the first value, batch as declared) and the receptive field when spatial."""
    model = _load(model)
    shapes = _shapes(model)
    rf = receptive_fields(model, shapes)
    meta = {p.key: p.value for p in model.metadata_props}
    inputs = json.loads(meta.get("preimage.inputs", "{}") or "{}")
    if not inputs:
        inits = {t.name for t in model.graph.initializer}
        inputs = {i.name: shapes.get(i.name) for i in model.graph.input if i.name not in inits}
    rows = []
    if "preimage.layers" in meta:
        for l in json.loads(meta["preimage.layers"]):
            vals = l.get("values") or [l.get("value")]
            rows.append({"name": l["name"], "type": l["type"], "values": vals, "shape": shapes.get(vals[0]),
                         "receptive_field": rf.get(vals[0]), "index": l.get("index")})
    else:
        for n in model.graph.node:
            rows.append({"name": n.name or n.output[0], "type": n.op_type, "values": list(n.output),
                         "shape": shapes.get(n.output[0]), "receptive_field": rf.get(n.output[0])})
    for e in json.loads(meta.get("preimage.unsupported", "[]") or "[]"):  # left out of the conversion
        row = {"name": e["name"], "type": e["type"], "values": [], "shape": None, "receptive_field": None,
               "left_out": e["reason"], "blocked_by": e.get("blocked_by"), "index": e.get("index")}
        at = next((i for i, r in enumerate(rows) if (r.get("index") or 0) > (e.get("index") or 0)), len(rows))
        rows.insert(at, row)
    blobs = []
    for blob, value in json.loads(meta.get("preimage.blobs", "{}") or "{}").items():
        blobs.append({"blob": blob, "value": value, "shape": shapes.get(value), "receptive_field": rf.get(value)})
    return {"layers": rows, "blobs": blobs, "inputs": inputs}
