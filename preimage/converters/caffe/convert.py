"""Caffe (prototxt + caffemodel) -> ONNX: the Python API behind ``preimage convert caffe``.

    from preimage.converters.caffe import convert_caffe
    model = convert_caffe("alexnet.prototxt", "alexnet.caffemodel", "alexnet.onnx")

Naming contract: node names are Caffe layer names; every layer's output is a value named after the layer
(``<layer>/<top>`` for several tops); ``metadata_props["preimage.blobs"]`` maps each Caffe blob to the
value holding its final content (after in-place layers), as pycaffe's ``net.blobs`` shows it.
"""
import json
import os
from importlib.metadata import version

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import FormatError, PreimageError, UnsupportedError
from ...fileio import atomic_path, sha256_file
from .builder import Builder, memory_limit_bytes, numel
from .caffemodel import Caffemodel
from .onnxfile import FragmentWriter, write_model
from .layers import DATA_TYPES, DROPPED_TYPES, EMITTERS
from .leftout import LeftOut, needed_layers
from .prototxt import read_net

DEFAULT_OPSET = 13
SUPPORTED_OPSETS = range(13, 18)  # ops used keep the same signature over 13..17
IR_VERSION = 8  # accepted by every onnxruntime >= 1.10; covers opsets up to 17


class Conversion:
    """What :func:`convert_caffe_full` returns: the model and what a command should tell the user."""

    def __init__(self, model, notices, spec, weights_path, n_params=0):
        self.model, self.notices, self.spec, self.weights_path = model, notices, spec, weights_path
        self.n_params = n_params  # Caffe parameters the net uses (shared ones once)


def find_weights(prototxt):
    stem = os.path.splitext(os.fspath(prototxt))[0]
    for cand in (stem + ".caffemodel", stem + ".caffemodel.h5"):
        if os.path.isfile(cand):
            return cand
    return None


def convert_caffe(prototxt, weights=None, output=None, *, opset=None, random_weights=False, seed=0,
                  input_shapes=None, strict=False, until=None, preprocess=None):
    """Convert a Caffe net to an ``onnx.ModelProto`` (and write it atomically to ``output`` if given).

    ``weights``: the .caffemodel; default: the one of the same stem beside the prototxt. Without one,
    a :class:`PreimageError` unless ``random_weights=True`` (seeded He-normal weights, for
    structure-only work). ``input_shapes``: ``{input blob: shape}`` replacing declared shapes (e.g.
    another image size for a fully convolutional net) or giving ones the file cannot (Python or HDF5
    data layers). ``preprocess``: what the prototxt does not say about the input image, e.g.
    ``{"channel_order": "RGB", "mean": [123.7, 116.3, 103.5], "raw_scale": 255, "scale": 0.017}``
    (stored in the ``preimage.preprocess`` metadata; what is neither given nor in the file is assumed, and
    a notice names it).

    Layers that cannot be converted (fork or unknown types, fields no known schema has) are left out
    with everything that needs them, with a warning each (``convert_caffe_full(...).notices``) and the
    list in the ``preimage.unsupported`` metadata; ``strict=True`` makes the first one an error.
    ``until``: a layer or blob name; only what computing it needs is converted.
    """
    return convert_caffe_full(prototxt, weights, output, opset=opset, random_weights=random_weights, seed=seed,
                              input_shapes=input_shapes, strict=strict, until=until, preprocess=preprocess).model


def random_blobs(prototxt, seed=0):
    """The seeded parameters a weightless conversion draws, ``{layer: {blob index: np.ndarray}}``, without
    building a model copy of them (what :func:`preimage.converters.caffe.writer.random_weights` writes)."""
    used = {}
    convert_caffe_full(prototxt, weightless=True, seed=seed, _collect_blobs=used)
    return used


def convert_caffe_full(prototxt, weights=None, output=None, *, opset=None, random_weights=False, seed=0,
                       weightless=False, input_shapes=None, keep_weights=True, strict=False, until=None,
                       _collect_blobs=None, preprocess=None):
    """:func:`convert_caffe` returning a :class:`Conversion` (model, notices). ``weightless=True``: no
    weights at all, they become typed graph inputs (for describing a net's structure cheaply).
    ``keep_weights=False`` (with ``output``): the weights read from the caffemodel go to the file only,
    and the returned model holds their names and shapes but not their data (what a command that only
    writes the file needs: one copy of the weights less, in time and memory)."""
    prototxt = os.fspath(prototxt)
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset not in SUPPORTED_OPSETS:
        raise PreimageError(f"opset {opset} is not supported; choose {SUPPORTED_OPSETS.start}.."
                            f"{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    spec = read_net(prototxt)
    if until is not None:
        spec.layers = needed_layers(spec, until)
        spec.until = until
    spec.input_shapes = {str(k): [int(d) for d in v] for k, v in (input_shapes or {}).items()}
    spec.preprocess = _given_preprocess(preprocess)
    notices = list(spec.notices)
    wdict, wsha = None, None
    if weightless:
        random_weights = True
    if not random_weights:
        if weights is None:
            weights = find_weights(prototxt)
            if weights is None:
                stem = os.path.splitext(prototxt)[0]
                raise PreimageError(f"no weights: {os.path.basename(stem)}.caffemodel not found beside the prototxt; "
                                    f"pass --weights FILE, or --random-weights for structure-only work", path=prototxt)
        weights = os.fspath(weights)
        if weights.endswith(".h5"):
            raise UnsupportedError("HDF5 caffemodels are not supported; save the net as a binary .caffemodel",
                                   path=weights)
        wdict = Caffemodel(weights)  # memory-mapped; hashed on a thread while the model is built
        wsha = wdict.sha256
    b = Builder(prototxt, wdict, weights, _param_owners(spec), random_seed=seed if random_weights else None,
                weightless=weightless)
    b.collect_random = weightless and _collect_blobs is not None

    def finish_metadata():  # the caffemodel's sha256 is finished on a thread while weights are written
        sources = {"prototxt": {"file": os.path.basename(prototxt), "sha256": sha256_file(prototxt)}}
        if wdict is not None:
            sources["caffemodel"] = {"file": os.path.basename(weights), "sha256": wsha()}
        else:
            sources["random_weights"] = {"seed": int(seed)}
        sources["legacy_format"] = spec.legacy_format
        _set_meta(b.model, "preimage.source", sources)

    try:
        if output is None:
            model = _build_model(spec, b, notices, opset, prototxt, strict)
            finish_metadata()
        else:
            if wdict is not None and wdict.size >= _ONNX_LIMIT:
                _too_big(wdict.size, prototxt)
            with atomic_path(output) as tmp, open(tmp, "wb") as f:
                # weights go to the file on a second thread as soon as the layer that owns them is built
                b.sink = FragmentWriter(f)
                b.keep_weights = keep_weights
                try:
                    model = _build_model(spec, b, notices, opset, prototxt, strict)
                finally:
                    written = b.sink.close()
                    b.sink = None
                if b.n_params * 4 >= _ONNX_LIMIT:
                    _too_big(b.n_params * 4, prototxt)
                write_model(f, model, raw=b.raw, skip=written, before_header=finish_metadata)
        if wdict is not None:
            unused = sorted(set(wdict.all()) - set(b.used_blobs))
            if unused:
                notices.append(f"the caffemodel holds weights for {len(unused)} layer(s) the net does not use: "
                               + ", ".join(unused[:6]) + (" ..." if len(unused) > 6 else ""))
        if _collect_blobs is not None:
            _collect_blobs.update({k: {i: (np.array(a) if wdict is not None else a) for i, a in v.items()}
                                   for k, v in b.used_blobs.items()})  # no views of the mapping escape
    finally:
        b.raw = {}
        b.used_blobs = {}
        b.weights = {}
        if wdict is not None:
            wdict.close()
    return Conversion(model, notices, spec, weights, b.n_params)


_ONNX_LIMIT = (2 << 30) - (16 << 20)  # protobuf's 2 GiB message limit, less room for the graph


def _too_big(nbytes, prototxt):
    raise UnsupportedError(f"the weights take {nbytes / 2**30:.2f} GiB; a single-file ONNX model is limited to "
                           f"2 GiB by protobuf (external-data ONNX is not written by preimage)", path=prototxt)


def _build_model(spec, b, notices, opset, prototxt, strict=False):
    model, layer_meta = _build(spec, b, notices, opset, strict)
    _set_meta(model, "preimage.layers", layer_meta)
    if b.left_out:
        _set_meta(model, "preimage.unsupported", b.left_out)
    if b.fixed_size:  # a few pooling corner cases hold only at the declared size (docs/caffe.md)
        inputs = {p.key: p.value for p in model.metadata_props}.get("preimage.inputs", "{}")
        sizes = {k: list(v[2:]) for k, v in json.loads(inputs).items() if len(v) == 4}
        _set_meta(model, "preimage.fixed_size", {"layers": list(dict.fromkeys(b.fixed_size)), "inputs": sizes})
    _check_structure(model, prototxt)
    return model


def _param_owners(spec):
    owners = {}
    for layer in spec.layers:
        for p in layer.param:
            if p.name:
                owners.setdefault(p.name, []).append(layer.name)
    return owners


def _set_meta(model, key, value):
    for p in model.metadata_props:
        if p.key == key:
            p.value = json.dumps(value)
            return
    model.metadata_props.add(key=key, value=json.dumps(value))


def _value_info(name, shape, batch):
    dims = [("N" if i == 0 and batch is not None and d == batch else int(d)) for i, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _data_layer_shapes(b, layer, notices):
    """Shapes of a data layer's tops (Input, Data, ImageData, MemoryData, DummyData, ...)."""
    t = layer.type
    tops = list(layer.top)
    if t == "Input":
        shapes = [list(s.dim) for s in layer.input_param.shape]
        if len(shapes) == 1:
            shapes = shapes * len(tops)
        if len(shapes) != len(tops):
            raise b.error(f"{len(shapes)} shapes for {len(tops)} tops")
        return [[int(d) for d in s] for s in shapes]
    if t == "DummyData":
        p = layer.dummy_data_param
        if len(p.shape):
            shapes = [list(s.dim) for s in p.shape]
        else:
            n = len(p.num)
            shapes = [[p.num[i], p.channels[i], p.height[i], p.width[i]] for i in range(n)]
        if len(shapes) == 1:
            shapes = shapes * len(tops)
        return [[int(d) for d in s] for s in shapes]
    if t == "MemoryData":
        p = layer.memory_data_param
        return [[p.batch_size, p.channels, p.height, p.width]] + [[p.batch_size]] * (len(tops) - 1)
    tp = layer.transform_param
    batch, chans, h, w = 1, 3, None, None
    if t == "Data":
        batch = layer.data_param.batch_size or 1
        if not tp.crop_size:
            raise b.error(f"cannot tell the input size of a Data layer without transform_param.crop_size; give it "
                          f"with --input-shape {layer.top[0]}=N,C,H,W (input_shapes=...) or an Input layer")
        h = w = tp.crop_size
        notices.append(f"layer '{layer.name}': Data layer input assumed to have 3 channels "
                       f"(--input-shape {layer.top[0]}=N,C,H,W to say otherwise)")
    elif t == "ImageData":
        p = layer.image_data_param
        batch = p.batch_size or 1
        chans = 3 if p.is_color else 1
        if tp.crop_size:
            h = w = tp.crop_size
        elif p.new_height and p.new_width:
            h, w = p.new_height, p.new_width
        else:
            raise b.error(f"cannot tell the input size: give transform_param.crop_size, new_height/new_width, or "
                          f"--input-shape {layer.top[0]}=N,C,H,W")
    elif t == "WindowData":
        p = layer.window_data_param
        batch = p.batch_size or 1
        if not (tp.crop_size or p.crop_size):
            raise b.error(f"cannot tell the input size without crop_size (or --input-shape {layer.top[0]}=N,C,H,W)")
        h = w = tp.crop_size or p.crop_size
    else:
        raise b.error(f"cannot tell the shape of the data produced by this {t} layer; give it with "
                      f"--input-shape {layer.top[0] if layer.top else 'NAME'}=N,C,H,W (input_shapes=...) or "
                      f"declare an Input layer")
    return [[batch, chans, h, w]] + [[batch]] * (len(tops) - 1)


_PREPROCESS_KEYS = ("channel_order", "mean", "raw_scale", "scale")


def _given_preprocess(given):
    """Check the ``preprocess=`` argument: {channel_order: BGR|RGB, mean: [..], raw_scale: x, scale: x}."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(_PREPROCESS_KEYS))
    if unknown:
        raise PreimageError(f"unknown preprocess key(s) {', '.join(unknown)}; expected {', '.join(_PREPROCESS_KEYS)}")
    if "channel_order" in given:
        given["channel_order"] = str(given["channel_order"]).upper()
        if given["channel_order"] not in ("BGR", "RGB"):
            raise PreimageError(f"channel_order must be BGR or RGB, not {given['channel_order']!r}")
    if "mean" in given:
        given["mean"] = [float(v) for v in (given["mean"] if hasattr(given["mean"], "__len__") else [given["mean"]])]
    for k in ("raw_scale", "scale"):
        if k in given:
            given[k] = float(given[k])
    return given


def assumed_notice(meta):
    """The notice for preprocessing that neither the model nor the caller gave (None when nothing was)."""
    said = {"channel_order": f"channel order {meta.get('channel_order', 'BGR')} (--bgr/--rgb)",
            "raw_scale": f"pixels 0..{meta.get('raw_scale', 255.0):g} (--raw-scale)",
            "mean": ("mean 123,117,104 (the ImageNet mean, RGB; --mean)" if meta.get("channel_order") == "RGB"
                     else "mean 104,117,123 (the ImageNet mean, BGR; --mean)")}
    parts = [said[k] for k in meta.get("assumed", []) if k in said]
    if not parts:
        return None
    return ("the model does not say how its input images were prepared; assumed " + ", ".join(parts)
            + ". Give the options if the net was trained otherwise")


def _preprocess_from(layer, input_name, shape, base_dir, given=None):
    tp = layer.transform_param if layer is not None and layer.HasField("transform_param") else None
    meta = {"input": input_name, "channel_order": "BGR", "raw_scale": 255.0}
    assumed = ["channel_order", "raw_scale"]
    if len(shape) == 4:
        meta["input_size"] = [int(shape[2]), int(shape[3])]
    if tp is not None:
        if len(tp.mean_value):
            mv = [float(v) for v in tp.mean_value]
            c = int(shape[1]) if len(shape) == 4 else len(mv)
            meta["mean"] = mv * c if len(mv) == 1 else mv
        if tp.mean_file:
            mf = tp.mean_file
            cand = mf if os.path.isabs(mf) else os.path.join(base_dir, mf)
            meta["mean_file"] = os.path.abspath(cand) if os.path.exists(cand) else mf
        if tp.HasField("scale"):
            meta["scale"] = float(tp.scale)
    given = given or {}
    if given.get("mean") is not None and len(shape) == 4 and len(given["mean"]) == 1:
        given = dict(given, mean=given["mean"] * int(shape[1]))
    if "mean" in given:
        meta.pop("mean_file", None)
    meta.update(given)
    if "mean" not in meta and "mean_file" not in meta:
        assumed.append("mean")
    meta["assumed"] = [k for k in assumed if k not in given]
    return meta


def _build(spec, b, notices, opset, strict=False):
    """One pass over the Caffe layers in order (:class:`_NetPass`), then the ONNX graph and its metadata."""
    net = _NetPass(spec, b, notices, strict)
    for name, shape in spec.inputs.items():
        net.add_input(name, net.shape_of(name, shape), f"input '{name}'")
    for index, layer in enumerate(spec.layers):
        net.layer(index, layer)
    net.finish()
    return net.write(opset), net.layer_meta


class _NetPass:
    """The state of the pass over a net's layers: which value holds each blob now (``current``), Caffe's
    available blobs (the net outputs are those left at the end), which values kept layers use, the graph
    inputs, the layer metadata and the left-out layers."""

    def __init__(self, spec, b, notices, strict):
        self.spec, self.b, self.notices = spec, b, notices
        self.graph_inputs = []  # (name, shape)
        self.current = {}  # blob -> value name
        self.available = []
        self.consumers = {}  # blob value -> used by a kept layer
        self.layer_meta = []
        self.value_shapes = []  # (value, shape) to declare as value_info
        self.batch = None
        self.data_layers = {}
        self.limit = memory_limit_bytes()
        self.overrides = dict(getattr(spec, "input_shapes", {}) or {})
        self.left = LeftOut(spec, strict, self.current, self.available)

    def shape_of(self, name, declared):
        return self.overrides.pop(name) if name in self.overrides else declared

    def add_input(self, name, shape, where):
        shape = [int(d) for d in shape]
        path = self.spec.path
        if not shape or any(d <= 0 for d in shape):
            raise FormatError(f"input '{name}' has an invalid shape {shape} (every dimension must be positive)",
                              path=path, where=where)
        if numel(shape) * 4 > self.limit:
            raise FormatError(f"input '{name}' of shape {shape} would need {numel(shape) * 4 / 2**30:.1f} GiB, more "
                              f"than this machine's memory ({self.limit / 2**30:.1f} GiB); refusing before allocating",
                              path=path, where=where)
        if name in self.current:
            raise FormatError(f"input '{name}' is declared twice", path=path, where=where)
        self.graph_inputs.append((name, shape))
        self.b.shapes[name] = tuple(shape)
        self.b.names.add(name)
        self.current[name] = name
        self.available.append(name)
        if self.batch is None:
            self.batch = shape[0]

    def layer(self, index, layer):
        t, b = layer.type, self.b
        b.begin(layer, [])
        if self.left.check(layer, index, b):
            return
        if t in DROPPED_TYPES:
            self.notices.append(f"dropped training-only layer '{layer.name}' ({t})")
        elif t in DATA_TYPES:
            self.data_layer(index, layer)
        else:
            self.compute_layer(index, layer)

    def data_layer(self, index, layer):
        b, t, tops, ov = self.b, layer.type, list(layer.top), self.overrides
        if not tops:
            raise b.error("has no top (a data layer names the blob it feeds)")
        if all(top in ov for top in tops):
            shapes = [ov[top] for top in tops]
        elif tops[0] in ov and t != "Input":  # the data given; labels follow the batch
            shapes = [ov[tops[0]]] + [[ov[tops[0]][0]]] * (len(tops) - 1)
        else:
            shapes = _data_layer_shapes(b, layer, self.notices)
        for top, shape in zip(tops, shapes):
            self.add_input(top, self.shape_of(top, shape), f"layer '{layer.name}'")
            self.data_layers[top] = layer
        # the layer's own output value(s): the inputs themselves when the names agree
        vals = [layer.name] if len(tops) == 1 and tops[0] == layer.name else _layer_values(b, layer)
        b.begin(layer, vals)
        for top, val in zip(tops, vals):
            if val != top:
                b.op("Identity", [top], out=val, shape=b.shapes[top])
                self.value_shapes.append((val, b.shapes[top]))
        self.layer_meta.append({"name": layer.name, "type": t, "bottoms": [], "tops": tops, "value": vals[0],
                                "values": vals, "index": index})

    def compute_layer(self, index, layer):
        b, t = self.b, layer.type
        xs = []
        for bottom in layer.bottom:
            if bottom not in self.current:
                raise FormatError(f"bottom '{bottom}' is not produced by any earlier layer or input",
                                  path=self.spec.path, where=f"layer '{layer.name}' ({t})")
            xs.append(self.current[bottom])
        if not layer.top:
            raise b.error("has no top")
        mark = (len(b.nodes), len(b.graph.initializer), len(b.weight_inputs))
        vals = _layer_values(b, layer)
        b.begin(layer, vals)
        try:
            EMITTERS[t](b, layer, xs)
        except UnsupportedError as e:  # a case of a known layer that has no ONNX form: left out
            del b.nodes[mark[0]:]
            del b.graph.initializer[mark[1]:]
            del b.weight_inputs[mark[2]:]
            self.left.leave_out(layer, index, e)
            return
        except IndexError:  # an emitter reading a bottom or top the layer does not have
            raise b.error(f"has {len(xs)} bottom(s) and {len(layer.top)} top(s): too few for a {t} layer") from None
        for x in xs:
            self.consumers[x] = True
        _check_blob_count(b, layer)
        for v in vals:
            if v not in b.shapes:
                raise b.error(f"internal: the emitter did not produce '{v}'")
            self.value_shapes.append((v, b.shapes[v]))
        for bottom in layer.bottom:
            if bottom in self.available:
                self.available.remove(bottom)
        for top, v in zip(layer.top, vals):
            self.current[top] = v
            if top in self.available:
                self.available.remove(top)
            self.available.append(top)
        self.layer_meta.append({"name": layer.name, "type": t, "bottoms": list(layer.bottom), "tops": list(layer.top),
                                "value": vals[0], "values": vals, "index": index})
        self.left.computed += 1

    def finish(self):
        """Left-out layers, unused inputs (e.g. a Data layer's label) and shapes given for no input."""
        self.left.finish(self.notices)
        self.b.left_out = self.left.entries
        if self.overrides:
            raise PreimageError(f"input shape given for {', '.join(sorted(self.overrides))}, which is not an input of "
                                f"the net (inputs: {', '.join(n for n, _ in self.graph_inputs)})", path=self.spec.path)
        dropped = {n for n, _ in self.graph_inputs if not self.consumers.get(n)}
        if dropped and len(dropped) < len(self.graph_inputs):
            self.notices.append(f"unused input(s) left out: {', '.join(sorted(dropped))}")
            self.graph_inputs = [(n, s) for n, s in self.graph_inputs if n not in dropped]
            self.value_shapes, self.layer_meta = _drop_inputs(self.b, dropped, self.value_shapes, self.layer_meta)
            for blob in dropped:
                self.current.pop(blob, None)
            self.available[:] = [a for a in self.available if a not in dropped]

    def write(self, opset):
        """The ONNX model: nodes, inputs, outputs (the blobs left available), value_info and metadata."""
        b, spec, batch, current = self.b, self.spec, self.batch, self.current
        in_names = {n for n, _ in self.graph_inputs}
        outputs = [current[blob] for blob in self.available if current[blob] not in in_names]
        if not outputs:
            outputs = [current[blob] for blob in self.available]
        model, g = b.model, b.graph
        g.name = spec.name or "caffe_net"
        g.node.extend(b.nodes)
        g.input.extend(_value_info(n, s, batch) for n, s in self.graph_inputs)
        g.input.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in b.weight_inputs)
        g.output.extend(_value_info(o, b.shapes[o], batch) for o in outputs)
        out_set = set(outputs)
        g.value_info.extend(_value_info(v, s, batch) for v, s in self.value_shapes
                            if v not in out_set and v not in in_names)
        model.opset_import.append(helper.make_opsetid("", opset))
        model.producer_name = "preimage"
        model.producer_version = _version()
        model.ir_version = IR_VERSION
        model.doc_string = f"Converted from Caffe net '{spec.name}' by preimage"
        _set_meta(model, "preimage.blobs", dict(current))
        _set_meta(model, "preimage.inputs", {n: s for n, s in self.graph_inputs})
        img = next(((n, s) for n, s in self.graph_inputs if len(s) == 4),
                   self.graph_inputs[0] if self.graph_inputs else None)
        if img is not None:
            pre = _preprocess_from(self.data_layers.get(img[0]), img[0], img[1],
                                   os.path.dirname(os.path.abspath(spec.path)), getattr(spec, "preprocess", None))
            _set_meta(model, "preimage.preprocess", pre)
            if assumed_notice(pre):
                self.notices.append(assumed_notice(pre))
        return model


def _check_blob_count(b, layer):
    """As Caffe when it loads weights: the caffemodel must hold exactly the blobs the layer has."""
    if b.random_seed is not None or b.weightless or not hasattr(b.weights, "get"):
        return
    have = b.weights.get(layer.name)
    used = b.used_blobs.get(layer.name, {})
    need = max(used) + 1 if used else 0
    if have is not None and len(have) != need:
        raise FormatError(f"{b.weights_path} holds {len(have)} blob(s) for this layer, but as defined in the prototxt "
                          f"it has {need} (check bias_term and the layer's parameters)", path=b.path, where=b.where())


def _drop_inputs(b, dropped, value_shapes, layer_meta):
    """Remove unused data-layer tops: their Identity nodes, value_info and layer-table entries."""
    gone = {node.output[0] for node in b.nodes if node.op_type == "Identity" and node.input[0] in dropped}
    b.nodes = [node for node in b.nodes if node.output[0] not in gone]
    value_shapes = [(v, s) for v, s in value_shapes if v not in gone]
    for entry in layer_meta:
        keep = [(t, v) for t, v in zip(entry["tops"], entry["values"]) if t not in dropped]
        if keep and len(keep) != len(entry["tops"]):
            entry["tops"], entry["values"] = [t for t, _ in keep], [v for _, v in keep]
            entry["value"] = entry["values"][0]
    layer_meta = [e for e in layer_meta if e["bottoms"] or not set(e["tops"]) <= dropped]
    return value_shapes, layer_meta


def _layer_values(b, layer):
    tops = list(layer.top)
    vals = [layer.name] if len(tops) == 1 else [f"{layer.name}/{t}" for t in tops]
    out = []
    for v in vals:
        base, k = v, 1
        while v in b.names:  # a clash with an input or an earlier value: keep names unique
            k += 1
            v = f"{base}#{k}"
        b.names.add(v)
        out.append(v)
    return out


def _version():
    try:
        return version("preimage")
    except Exception:
        return "0"


def _check_structure(model, path):
    """onnx.checker on the graph without the weight bytes (cheap even for large models): weights
    become typed graph inputs, so node schemas, attributes and topology are all checked."""
    g = model.graph
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    lg = light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    for t in g.initializer:
        lg.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    try:
        onnx.checker.check_model(light)
    except onnx.checker.ValidationError as e:
        raise PreimageError(f"internal: the converted graph fails onnx.checker: {str(e).splitlines()[0]}",
                            path=path) from None
