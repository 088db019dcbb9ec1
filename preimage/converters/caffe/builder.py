"""The ONNX graph under construction while a Caffe net is converted, layer by layer.

Layer emitters (``preimage/converters/caffe/layers/``) see a :class:`Builder`: they add ONNX nodes with
:meth:`Builder.op`, ask for the layer's parameter blobs with :meth:`Builder.blob` (checked against the
shape Caffe would expect; shared by ``param { name }``; or seeded random ones for structure-only work)
and return the shapes of their tops. Shapes are static, computed with Caffe's rules at the declared
batch size; the ONNX graph itself keeps the batch dimension dynamic.
"""
import os
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...errors import FormatError

FLOAT = TensorProto.FLOAT


def memory_limit_bytes():
    """Physical memory: a single tensor larger than this can never be computed here."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


class Builder:
    def __init__(self, path, weights=None, weights_path=None, param_owners=None, random_seed=None,
                 weightless=False):
        self.path = path  # the prototxt, for error messages
        self.weights = weights or {}
        self.weights_path = weights_path
        self.random_seed = random_seed  # not None: make seeded random blobs instead of reading weights
        self.weightless = weightless  # structure only: weights become typed graph inputs, no data
        self.weight_inputs = []  # (name, shape) in weightless mode
        self.collect_random = False  # weightless, but make the seeded random blobs (for the writer)
        self.n_params = 0  # Caffe parameters used (shared blobs counted once)
        self.param_owners = param_owners or {}  # param name -> [layer names sharing it, in net order]
        # The model is filled in place: copying 61M weights between protobuf messages costs time and memory.
        self.model = onnx.ModelProto()
        self.graph = self.model.graph
        self.nodes = []
        self.raw = {}  # initializer name -> the bytes object its raw_data was set from (for writing)
        self.sink = None  # optional callable(tensor, raw bytes): streams big weights to the output file
        self.keep_weights = True  # False: weights streamed to the file are not kept in the returned model
        self.shapes = {}  # value name -> static shape (tuple)
        self.shared = {}  # param name -> (initializer name, shape)
        self.used_blobs = {}  # layer name -> {index: np.ndarray}  (what the net used; for the writer)
        self.fixed_size = []  # layers whose ONNX form holds only at the declared input size
        self.left_out = []  # layers not converted (the preimage.unsupported metadata)
        self.names = set()
        self.mem_limit = memory_limit_bytes()
        self.layer = None
        self.outs = []
        self._n = 0

    # ---- per-layer context -------------------------------------------------------------------
    def begin(self, layer, out_names):
        self.layer, self.outs, self._n = layer, list(out_names), 0
        self._first_node = True

    def where(self):
        return f"layer '{self.layer.name}' ({self.layer.type})"

    def error(self, message, cls=FormatError):
        return cls(message, path=self.path, where=self.where())

    def fresh(self, hint):
        self._n += 1
        base = f"{self.layer.name}/{hint}"
        name = base
        while name in self.names:
            self._n += 1
            name = f"{base}_{self._n}"
        self.names.add(name)
        return name

    # ---- graph building ----------------------------------------------------------------------
    def op(self, op_type, inputs, out=None, shape=None, **attrs):
        """Add one ONNX node; returns its output name. ``out`` names a layer output (else a fresh
        intermediate value ``<layer>/<op>``); the node producing the first layer output is named after
        the layer itself."""
        if out is None:
            out = self.fresh(op_type.lower())
        if out in self.outs and self._first_node:
            node_name = self.layer.name
            self._first_node = False
        else:
            node_name = out  # value names are unique, so they make unique node names too
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=node_name, **attrs))
        if shape is not None:
            self.set_shape(out, shape)
        return out

    def op_multi(self, op_type, inputs, outs, **attrs):
        name = self.layer.name if self._first_node else outs[0]
        self._first_node = False
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outs), name=name, **attrs))
        return outs

    def set_shape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        if any(d <= 0 for d in shape):
            raise self.error(f"computed output shape {list(shape)} has an empty dimension "
                             f"(the input is too small for this layer)")
        if numel(shape) * 4 > self.mem_limit:
            raise self.error(f"output of shape {list(shape)} would need {numel(shape) * 4 / 2**30:.1f} GiB, more "
                             f"than this machine's memory ({self.mem_limit / 2**30:.1f} GiB)")
        self.shapes[name] = shape

    def const(self, array, hint, dtype=np.float32):
        """Add a constant (an initializer named ``<layer>/<hint>``); returns its name."""
        name = self.fresh(hint)
        arr = np.asarray(array, dtype=dtype)
        self.graph.initializer.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, values, hint):
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def scalar(self, value, hint):
        return self.const(np.asarray(value, dtype=np.float32), hint)

    def shape(self, name):
        return self.shapes[name]

    # ---- parameter blobs ---------------------------------------------------------------------
    def _layer_blobs(self, layer_name):
        return self.weights.get(layer_name)

    def blob_array(self, index, shape, kind="weight", fan_in=None, label=None):
        """The layer's blob ``index`` as a float32 array of ``shape`` (checked; legacy 4-d dims and
        extra unit dimensions reshaped), or a seeded random one in structure-only mode."""
        shape = tuple(int(d) for d in shape)
        label = label or f"blob {index}"
        name = self.layer.name
        pname = self.layer.param[index].name if index < len(self.layer.param) else ""
        if not (pname and pname in self.shared):
            self.n_params += numel(shape)
        if numel(shape) * 4 > self.mem_limit:
            raise self.error(f"{label} of shape {list(shape)} would need {numel(shape) * 4 / 2**30:.1f} GiB, "
                             f"more than this machine's memory")
        if self.random_seed is not None or self.weightless:
            if pname and pname in self.shared and self.shared[pname][2] is not None:
                return self.shared[pname][2]
            arr = random_blob(shape, kind, fan_in, self.random_seed or 0, name, index)
        else:
            arr = self._find_blob(index, shape, pname, label)
        self.used_blobs.setdefault(name, {})[index] = arr
        return arr

    def _find_blob(self, index, shape, pname, label):
        name = self.layer.name
        sources = [name]
        if pname:  # Caffe loads shared blobs layer by layer: the last layer holding them wins
            sources = [n for n in reversed(self.param_owners.get(pname, [name]))]
        for src in sources:
            blobs = self._layer_blobs(src)
            if blobs is not None and index < len(blobs):
                return fit_blob(blobs[index], shape, self, label, src)
        have = self._layer_blobs(name)
        wpath = self.weights_path or "the caffemodel"
        if have is None:
            raise FormatError(f"no weights for this layer in {wpath} (expected {label} of shape {list(shape)})",
                              path=self.path, where=self.where())
        raise FormatError(f"{wpath} holds {len(have)} blob(s) for this layer, but {label} (index {index}, "
                          f"shape {list(shape)}) is needed", path=self.path, where=self.where())

    def blob(self, index, shape, kind="weight", fan_in=None, label=None, store_shape=None):
        """Like :meth:`blob_array` but returns an initializer name (shared blobs share one initializer).
        ``store_shape`` reshapes the stored initializer (e.g. a per-channel vector as C x 1 x 1)."""
        pname = self.layer.param[index].name if index < len(self.layer.param) else ""
        store_shape = tuple(store_shape) if store_shape is not None else tuple(shape)
        if pname and pname in self.shared:
            init, sshape, _ = self.shared[pname]
            if sshape != store_shape:
                raise self.error(f"shared parameter '{pname}' has shape {list(sshape)} in an earlier layer, "
                                 f"but this layer needs {list(store_shape)}")
            self.used_blobs.setdefault(self.layer.name, {})[index] = self.shared[pname][2]
            return init
        hint = {0: "weight", 1: "bias"}.get(index, f"blob{index}") if kind in ("weight", "bias") else kind
        if self.weightless:
            arr = None
            if self.collect_random:  # the writer wants the random blobs, not a model holding them
                arr = self.blob_array(index, shape, kind, fan_in, label)
            else:
                self.n_params += numel(shape)
            init = self.fresh(hint)
            self.weight_inputs.append((init, store_shape))
            if pname:
                self.shared[pname] = (init, store_shape, arr)
            return init
        arr = self.blob_array(index, shape, kind, fan_in, label)
        init = self.fresh(hint)
        t = self.graph.initializer.add()
        raw = None
        if hasattr(self.weights, "merge_into"):  # straight from the caffemodel's mapping: one copy
            t.name = init
            t.data_type = FLOAT
            t.dims.extend(store_shape)
            # keep_weights False (a command that only writes the file): the bytes go to the file only
            raw = self.weights.merge_into(t, arr, copy=self.keep_weights or self.sink is None)
            if raw is None:
                del t.dims[:]
        if raw is None:
            fill_tensor(t, arr.reshape(store_shape), init)
        elif self.sink is not None:
            self.sink(t, raw)
        else:
            self.raw[init] = raw
        if pname:
            self.shared[pname] = (init, store_shape, arr)
        return init


def fill_tensor(t, arr, name):
    """Fill TensorProto ``t`` from a float32 array with raw bytes (one copy, no per-element conversion)."""
    t.name = name
    t.data_type = FLOAT
    t.dims.extend(arr.shape)
    t.raw_data = np.ascontiguousarray(arr, dtype="<f4").tobytes()


def fit_blob(blob, shape, builder, label, src):
    """Check a stored blob against the expected shape; return it as float32 of that shape."""
    data = blob.data
    found = tuple(blob.shape)
    if found == shape:
        return data.reshape(shape)
    squeeze = lambda s: tuple(d for d in s if d != 1)
    if data.size == numel(shape) and (blob.legacy or squeeze(found) == squeeze(shape)):
        return data.reshape(shape)
    wpath = builder.weights_path or "the caffemodel"
    from_layer = f" (shared, from layer '{src}')" if src != builder.layer.name else ""
    raise FormatError(f"wrong weight shape for {label}{from_layer}: expected {list(shape)}, found {list(found)} "
                      f"in {wpath}", path=builder.path, where=builder.where())


def random_blob(shape, kind, fan_in, seed, layer_name, index):
    """Seeded structure-only parameters: He-normal weights (std sqrt(2 / fan_in)), zero biases;
    BatchNorm mean ~ N(0, 0.1), variance ~ U(0.5, 1.5), factor 1; Scale gamma ~ U(0.8, 1.2) and
    beta ~ N(0, 0.1); PReLU slopes 0.25. Deterministic per (seed, layer name, blob index)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(layer_name.encode()), index])
    shape = tuple(shape)
    if kind == "weight":
        fan = fan_in or max(1, numel(shape[1:]))
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan))).astype(np.float32)
    if kind == "bias":
        return np.zeros(shape, np.float32)
    if kind in ("bn_mean", "shift"):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)
    if kind == "bn_var":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if kind == "bn_factor":
        return np.ones(shape, np.float32)
    if kind == "scale":
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    if kind == "prelu":
        return np.full(shape, 0.25, np.float32)
    return np.zeros(shape, np.float32)
