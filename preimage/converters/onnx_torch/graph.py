"""ONNX graph helpers: reading a model, naming what can be requested, and pruning to the requested values.

Names follow the Caffe converter's naming contract (docs/contracts.md): every node output value is
requestable by its value name (a Caffe layer's output is named after the layer, ``<layer>/<top>`` for
several tops), graph inputs by their names, and Caffe blobs by blob name through the ``preimage.blobs``
metadata (a blob's final value, after in-place layers). Models not made by preimage simply have no blob
names.
"""
import os
import warnings

import onnx
from onnx import helper

from ...errors import FormatError, PreimageError
from ..metadata import check_metadata, read_metadata

OUTPUT_PREFIX = "preimage_out_"


def read_model(model, load_external_data=True):
    """ModelProto, or an .onnx path (clear errors for a missing or damaged file, or damaged ``preimage.*``
    metadata, naming the file)."""
    if isinstance(model, onnx.ModelProto):
        return model
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise PreimageError("no such model file", path=path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".caffemodel":
        raise FormatError("a .caffemodel holds only the weights, not an ONNX model: pass the deploy .prototxt "
                          "beside it (the .caffemodel is then used) or the .onnx from 'preimage convert caffe'",
                          path=path)
    try:
        model = onnx.load(path, load_external_data=load_external_data)
    except Exception as e:  # protobuf's DecodeError says nothing about the file; name it
        raise FormatError(f"not a readable ONNX model ({type(e).__name__}: {e}); expected an .onnx file",
                          path=path) from None
    check_is_model(model, path)
    check_metadata(model, path)
    return model


def check_is_model(model, path):
    """Refuse a ModelProto without nodes and inputs (protobuf parses many non-ONNX files as an empty model),
    and one whose names are not text (protobuf hands invalid UTF-8 over as bytes)."""
    g = model.graph
    if not g.node and not g.input:
        raise FormatError("not an ONNX model (it parses as an empty graph: no nodes, no inputs); expected an "
                          ".onnx file, a Caffe deploy .prototxt (weights beside it) or a converted Torch7 .onnx",
                          path=path)
    names = [v.name for v in list(g.input) + list(g.output) + list(g.initializer) + list(g.value_info)]
    for n in g.node:
        names += [n.name, n.op_type, n.domain, *n.input, *n.output]
    bad = next((x for x in names if not isinstance(x, str)), None)
    if bad is not None:
        raise FormatError(f"damaged ONNX model: the name {bad[:40]!r} is not UTF-8 text", path=path)


def check_onnx(model, path=None):
    """Refuse, in one line, a model that ``onnx.checker`` rejects (an unknown operator, an input nothing
    produces, a value produced twice, a damaged initializer) or whose types do not fit its operators (a bad
    or unknown dtype: strict shape inference). A graph input or output declared without a shape (unknown
    rank, which ONNX Runtime accepts) is not an error: it is given an unknown shape for the check."""
    import onnx

    bare = [vi.type.tensor_type for vi in list(model.graph.input) + list(model.graph.output)
            if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape")]
    try:
        for t in bare:
            t.shape.SetInParent()  # the checker requires the field; restored below
        external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        onnx.checker.check_model(os.fspath(path) if external and path else model)  # a path finds the data files
        for t in bare:
            t.ClearField("shape")  # strict inference would take an empty shape for a scalar
        bare = []
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # ValidationError, InferenceError, ValueError (a dtype number ONNX does not know)
        text = " ".join(str(e).split("==> Context")[0].split()) or type(e).__name__  # the checker's lines, joined
        text = text.replace("[ShapeInferenceError] ", "").replace("Inference error(s): ", "")
        raise FormatError(f"not a valid ONNX model: onnx.checker rejects it ({text[:240]})", path=path) from None
    finally:
        for t in bare:
            t.ClearField("shape")


def metadata(model, key, default=None, path=None):
    """A ``preimage.*`` metadata entry, parsed and checked (see ``converters/metadata.py``)."""
    return read_metadata(model, key, default, path)


def initializer_names(model):
    return {t.name for t in model.graph.initializer}


def graph_inputs(model):
    """Real inputs (not initializers listed as inputs), in graph order."""
    inits = initializer_names(model)
    return [i.name for i in model.graph.input if i.name not in inits]


def value_names(model):
    """Every value a forward pass produces, graph inputs first, then node outputs in graph order."""
    names = list(graph_inputs(model))
    for node in model.graph.node:
        names.extend(o for o in node.output if o)
    return names


def blob_map(model):
    """``{blob: value name}`` from the ``preimage.blobs`` metadata (empty for foreign models)."""
    blobs = metadata(model, "preimage.blobs", {}) or {}
    return {str(k): str(v) for k, v in blobs.items()}


class AmbiguousNameWarning(UserWarning):
    """A bare name that is both a layer output and a Caffe blob holding another value."""


PREFIXES = ("layer", "blob")
_warned = set()  # (graph name, name, blob value) warned about: once per process, whatever the warning filters


def split_name(name):
    """``"blob:fc5"`` -> ``("blob", "fc5")``, ``"layer:fc5"`` -> ``("layer", "fc5")``, ``"fc5"`` -> ``(None, "fc5")``."""
    kind, sep, rest = str(name).partition(":")
    if sep and kind in PREFIXES and rest:
        return kind, rest
    return None, str(name)


def resolve(model, names, keys="auto", what="model"):
    """Map requested names to value names.

    ``keys``: ``"layers"`` (value names only), ``"blobs"`` (blob names, falling back to value names for
    models without blob metadata), ``"auto"`` (value names first, then blob names). Outside ``"blobs"``,
    a name matching none of these may also be a node name: a single-output node resolves to its output
    value (models from other exporters name nodes ``/features/features.3/Conv`` and their values
    ``..._output_0``). A name written ``layer:NAME`` or ``blob:NAME`` takes that reading whatever ``keys``
    says. With ``keys="auto"``, a bare name that is both a layer value and a blob holding another value
    (AlexNet's ``conv3``: the blob holds relu3's output) resolves to the layer value and warns once
    (:class:`AmbiguousNameWarning`). Returns ``(found: {name: value}, missing: [name])``.
    """
    values = set(value_names(model))
    blobs = blob_map(model)
    inputs = graph_inputs(model)
    node_names = single_output_nodes(model)
    found, missing = {}, []
    for name in names:
        kind, bare = (None, name) if name in values else split_name(name)
        reading = {"layer": "layers", "blob": "blobs"}.get(kind, keys)
        if kind == "blob":
            value = blobs.get(bare, bare if bare in inputs else None)
        elif reading == "blobs" and blobs:
            value = blobs.get(bare)
            if value is None and bare in inputs:
                value = bare
        elif reading == "layers" or not blobs:
            value = bare if bare in values else None
        else:
            value = bare if bare in values else blobs.get(bare)
            if value == bare and blobs.get(bare, bare) != bare:
                _warn_ambiguous(model, bare, blobs[bare])
        if value is None and reading != "blobs":
            value = node_names.get(bare)  # a node name (what 'preimage layers' lists for foreign models)
        if value is not None and value in values:
            found[name] = value
        else:
            missing.append(name)
    for name in missing:
        left_out_error(model, name)
    return found, missing


def left_out_error(model, name):
    """Raise a one-line PreimageError when ``name`` is a layer or blob the Caffe conversion left out
    (metadata ``preimage.unsupported``), naming the layer that blocks it."""
    entries = metadata(model, "preimage.unsupported", []) or []
    hit = next((e for e in entries if e.get("name") == name or name in e.get("tops", [])), None)
    if hit is None:
        return
    root = next((e for e in entries if e.get("name") == hit.get("blocked_by")), hit)
    what = (f"layer '{root['name']}' ({root['type']})" if root is hit
            else f"it needs layer '{root['name']}' ({root['type']}), which")
    raise PreimageError(f"'{name}' was left out of the conversion: {what} could not be converted: {root['reason']} "
                        f"(convert with --until LAYER to stop before it, or see 'preimage layers')")


def _warn_ambiguous(model, name, blob_value):
    key = (model.graph.name, name, blob_value)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(f"{name!r} is both a layer output and a Caffe blob holding another value (after in-place "
                  f"layers: {blob_value!r}); using the layer output. Write layer:{name} to say so, or "
                  f"blob:{name} for the blob (what 'preimage validate' and pycaffe's net.blobs compare)",
                  AmbiguousNameWarning, stacklevel=3)


def single_output_nodes(model):
    """``{node name: its output value}`` for named nodes with exactly one output."""
    out = {}
    for node in model.graph.node:
        outs = [o for o in node.output if o]
        if node.name and len(outs) == 1:
            out.setdefault(node.name, outs[0])
    return out


def describe_available(model, keys="auto", limit=60):
    """A short text listing names one may request (for error messages)."""
    blobs = blob_map(model)
    if keys == "blobs" and blobs:
        names = list(blobs)
    elif keys == "layers" or not blobs:
        names = value_names(model)
    else:
        names = value_names(model) + [b for b in blobs if b not in set(value_names(model))]
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    if blobs:
        shown += " (write layer:NAME or blob:NAME to pick one reading)"
    return shown


def prune(model, values):
    """A copy of ``model`` computing only ``values`` (node output names), each exposed as a graph output.

    Every requested value gets its own Identity node ``preimage_out_<i>`` as graph output, so that
    multi-output nodes and values requested twice need no special handling downstream. Nodes,
    initializers and inputs the outputs do not depend on are dropped.
    """
    producers = {}
    for i, node in enumerate(model.graph.node):
        for o in node.output:
            producers[o] = i
    keep, stack = set(), [v for v in values if v in producers]
    while stack:
        i = producers[stack.pop()]
        if i in keep:
            continue
        keep.add(i)
        node = model.graph.node[i]
        stack.extend(v for v in node.input if v in producers)
        for attr in node.attribute:  # subgraphs (If/Loop) read outer values too
            for g in list(attr.g and [attr.g] or []) + list(attr.graphs):
                stack.extend(v for n in g.node for v in n.input if v in producers)
    nodes = [model.graph.node[i] for i in sorted(keep)]
    used = {v for n in nodes for v in n.input} | set(values)
    outs = [helper.make_node("Identity", [v], [f"{OUTPUT_PREFIX}{k}"], name=f"{OUTPUT_PREFIX}{k}")
            for k, v in enumerate(values)]
    graph = helper.make_graph(
        nodes + outs, model.graph.name or "pruned",
        [i for i in model.graph.input if i.name in used and i.name not in initializer_names(model)],
        [helper.make_tensor_value_info(o.output[0], onnx.TensorProto.FLOAT, None) for o in outs],
        initializer=[t for t in model.graph.initializer if t.name in used],
        value_info=[v for v in model.graph.value_info if v.name in used],
    )
    pruned = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="preimage")
    pruned.ir_version = model.ir_version
    return pruned
