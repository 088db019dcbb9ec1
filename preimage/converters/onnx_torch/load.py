"""``load_features``: a converted ONNX model as a frozen, differentiable PyTorch feature extractor.

    >>> import preimage
    >>> net = preimage.load_features("alexnet.onnx", outputs=["conv3", "fc8"], device="cuda")
    >>> x = net.preprocess.load(["cat.jpg"]).to("cuda").requires_grad_()
    >>> feats = net(x)                     # {"conv3": tensor, "fc8": tensor}
    >>> feats["fc8"][0, 281].backward()    # gradient w.r.t. the image only; weights are frozen

The ONNX graph is pruned to what the requested outputs need before onnx2torch converts it, so asking
for ``conv3`` never runs the classifier. preimage's operator extensions (``ops.py``) are installed in
onnx2torch's registry first.
"""
import os

import torch
from torch import nn

from ...device import resolve_device
from ...errors import PreimageError, UnsupportedError
from ...preprocess import Preprocess
from ..caffe.convert import convert_caffe
from ..geometry import receptive_fields
from . import cache as cache_mod
from . import decisions, fuse
from . import graph as G
from . import shapes


def open_onnx(model):
    """(ModelProto, base folder or None, display name) from a path, a prototxt, or a ModelProto."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith(".prototxt"):
            weights = os.path.splitext(path)[0] + ".caffemodel"
            if not os.path.isfile(path):
                raise PreimageError("no such prototxt", path=path)
            if not os.path.isfile(weights):
                raise PreimageError(f"no weights beside the prototxt (expected {os.path.basename(weights)} in "
                                    "the same folder); or convert it with 'preimage convert caffe NET.prototxt "
                                    "--weights W.caffemodel' and pass the .onnx", path=path)
            return convert_caffe(path, weights), os.path.dirname(os.path.abspath(path)), path
        return G.read_model(path), os.path.dirname(os.path.abspath(path)), path
    if not hasattr(model, "graph"):
        raise PreimageError(f"expected an .onnx path, a .prototxt path or an onnx.ModelProto, got {type(model).__name__}")
    return model, None, model.graph.name or "model"


def _check_supported(model, where):
    # deferred: onnx2torch (with torchvision: seconds to import) only when a model is converted
    from onnx2torch.node_converters import get_converter

    opsets = {o.domain: o.version for o in model.opset_import}
    for node in model.graph.node:
        try:
            get_converter(node.op_type, opsets.get(node.domain, opsets.get("", 1)), node.domain)
        except NotImplementedError:
            raise UnsupportedError(f"operator {node.op_type} (node {node.name or node.output[0]!r}) has no PyTorch "
                                   "converter in onnx2torch or preimage", path=where) from None


def _convert(pruned, where):
    import onnx2torch  # deferred: seconds to import (torchvision), only when a model is converted

    from . import ops  # noqa: F401  deferred with onnx2torch (installs preimage's converters in its registry)

    _check_supported(pruned, where)
    try:
        with shapes.light_inference():  # shape inference without serialising the weights (shapes.py)
            module = onnx2torch.convert(pruned, attach_onnx_mapping=True)
    except NotImplementedError as e:
        raise UnsupportedError(f"onnx2torch cannot convert this graph: {e}", path=where) from None
    return decisions.bind_producers(module)  # in-place ReLUs check their producer for hooks


def _build(onnx_model, node_values, where):
    """(pruned graph, torch module) for ``node_values``; a malformed graph (onnx2torch's KeyError,
    ValueError, IndexError, ...) becomes one line: onnx.checker's reason when it rejects the model."""
    try:
        pruned = fuse.optimize(G.prune(onnx_model, node_values))
        return pruned, (_convert(pruned, where) if node_values else nn.Module())
    except PreimageError:
        raise
    except MemoryError:
        raise
    except Exception as e:
        G.check_onnx(onnx_model, where if isinstance(where, str) and os.path.isfile(where) else None)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UnsupportedError(f"cannot build a PyTorch module from this graph ({type(e).__name__}: {first})",
                               path=where) from None


class FeatureExtractor(nn.Module):
    """Frozen, eval-mode module: ``forward(*inputs) -> {name: tensor}`` in the order of ``outputs``.

    Inputs are the graph inputs the requested outputs depend on (``input_names``), positionally or by
    name. Gradients flow to the inputs only: every parameter and buffer is frozen.
    """

    def __init__(self, module, onnx_model, outputs, values, needed_inputs, base_dir=None):
        super().__init__()
        self.module = module
        self.onnx_model = onnx_model
        self.outputs = list(outputs)
        self._values = dict(values)  # name -> value name
        self._unique = list(dict.fromkeys(v for v in self._values.values() if v not in needed_inputs))
        self.input_names = list(needed_inputs)
        shapes = G.metadata(onnx_model, "preimage.inputs", {}) or {}
        self.input_shapes = {n: _declared_shape(onnx_model, n, shapes) for n in self.input_names}
        self.fixed_sizes, self.fixed_layers = {}, []  # set by load_features (preimage.fixed_size metadata)
        self.all_input_names = G.graph_inputs(onnx_model)
        self._base_dir = base_dir
        self._preprocess = None
        self._mean_file = None  # an explicit mean image for .preprocess (load_features' mean_file)
        self._receptive_fields = None
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        """Always stays in eval mode (Dropout and BatchNorm behave as in Caffe's TEST phase)."""
        return super().train(False)

    @property
    def preprocess(self):
        if self._preprocess is None:
            self._preprocess = Preprocess.from_onnx(self.onnx_model, mean_file=self._mean_file)
            self._preprocess.base_dir = self._base_dir
        return self._preprocess

    @property
    def receptive_fields(self):
        if self._receptive_fields is None:
            rf = receptive_fields(self.onnx_model)
            for name, value in self._values.items():  # also under the requested names (blob, node names)
                if value in rf:
                    rf.setdefault(name, rf[value])
            self._receptive_fields = rf
        return self._receptive_fields

    @property
    def device(self):
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def _inputs(self, args, kwargs):
        if kwargs:
            unknown = set(kwargs) - set(self.all_input_names)
            if unknown:
                raise PreimageError(f"unknown input(s) {sorted(unknown)}; the model's inputs are {self.all_input_names}")
            args = tuple(kwargs[n] for n in self.input_names if n in kwargs)
            missing = [n for n in self.input_names if n not in kwargs]
        else:
            if len(args) == len(self.all_input_names) and len(args) != len(self.input_names):
                args = tuple(a for a, n in zip(args, self.all_input_names) if n in self.input_names)
            missing = self.input_names[len(args):]
        if missing or len(args) > len(self.input_names):
            raise PreimageError(f"expected {len(self.input_names)} input(s) {self.input_names}, got {len(args)}")
        inputs = dict(zip(self.input_names, args))
        for name, x in inputs.items():
            self.check_input(name, x)
        return inputs

    def check_input(self, name, x):
        """A clear message instead of a deep torch traceback for a wrongly shaped input (cheap: no sync)."""
        if not isinstance(x, torch.Tensor):
            raise PreimageError(f"input {name!r} must be a torch.Tensor, got {type(x).__name__}")
        declared = self.input_shapes.get(name)
        if not declared:
            return
        want = "x".join("N" if i == 0 else str(d) if isinstance(d, int) and d > 0 else "?" for i, d in enumerate(declared))
        if x.dim() != len(declared):
            raise PreimageError(f"input {name!r} must have {len(declared)} dimensions ({want}), got shape {list(x.shape)}"
                                + (" (add the batch dimension: x[None])" if x.dim() == len(declared) - 1 else ""))
        if len(declared) > 1 and isinstance(declared[1], int) and declared[1] > 0 and x.shape[1] != declared[1]:
            raise PreimageError(f"input {name!r} must have {declared[1]} channels ({want}), got shape {list(x.shape)}")
        fixed = self.fixed_sizes.get(name)
        if fixed and list(x.shape[2:]) != list(fixed):
            raise PreimageError(f"input {name!r} must be {'x'.join(map(str, fixed))} pixels ({want}): layer(s) "
                                f"{', '.join(self.fixed_layers)} were converted for that size only (see "
                                f"docs/caffe.md); got shape {list(x.shape)}. Convert again with --input-shape "
                                f"{name}=1,{x.shape[1]},{x.shape[2]},{x.shape[3]} for this size")

    def forward(self, *args, **kwargs):
        inputs = self._inputs(args, kwargs)
        result = {}
        if self._unique:
            try:
                out = self.module(*[inputs[n] for n in self.input_names])
            except (IndexError, ValueError, TypeError, KeyError) as e:
                # a graph whose shapes do not fit at run time (onnx2torch's modules index dims and lists):
                # a RuntimeError like torch's own, which the commands turn into one line with a hint
                first = (str(e).strip().splitlines() or [""])[0][:200]
                raise RuntimeError(f"the converted graph fails on this input ({type(e).__name__}: {first})") from None
            if not isinstance(out, (tuple, list)):
                out = (out,)
            result = dict(zip(self._unique, out))
        result.update(inputs)
        return {name: result[self._values[name]] for name in self.outputs}

    def extra_repr(self):
        return f"outputs={self.outputs}, inputs={self.input_names}"


def _declared_shape(model, name, meta_shapes):
    if name in meta_shapes:
        return list(meta_shapes[name])
    for i in model.graph.input:
        if i.name == name:
            return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in i.type.tensor_type.shape.dim]
    return None


def load_features(model, outputs=None, device="cpu", keys="auto", dtype=None, mean_file=None, cache=True):
    """Load ``model`` (.onnx path, ModelProto, or .prototxt with its .caffemodel beside it) for ``outputs``.

    ``outputs``: layer value names, blob names (via ``preimage.blobs``; with ``keys="auto"`` value names
    win where both exist) or graph input names; a single string is accepted; default: the graph's
    outputs. ``keys``: ``"auto"``, ``"layers"`` or ``"blobs"`` to force one reading of the names.
    ``device``: ``"cpu"``, ``"cuda"``, ``"auto"`` or a torch.device. ``dtype``: e.g. ``torch.float64``.
    ``mean_file``: a mean image for ``.preprocess``, passed explicitly (the metadata's must lie in the
    model's folder). A name the model does not have raises :class:`PreimageError` listing the available
    names; a malformed graph, one line (onnx.checker's reason where it rejects the model).
    ``cache``: for an .onnx path, keep the built module beside the file and read it back next time
    (``cache.py``; ``PREIMAGE_CACHE=0`` turns it off). ``model`` may also be a representation spec
    (``"hog"``, ``"dsift:bin=4,step=2"``, see docs/representations.md); ``keys`` does not apply to it.
    """
    # deferred: the one place where the converters' floor reaches up to models/ (the representations are
    # models, and load_features is the entry every command and notebook uses for any model)
    from ...models.representations import build, is_spec

    if is_spec(model):
        return build(model, device=device, outputs=outputs, dtype=dtype)
    fx = _cached(model, outputs, keys) if cache_mod.enabled(cache) else None
    if fx is None:
        fx = _extractor(model, outputs, keys)
        if cache_mod.enabled(cache):
            _save_cached(model, outputs, keys, fx)
    fx._mean_file = mean_file  # not part of the cached module: the caller's, each time
    fx = fx.to(device=resolve_device(device))
    if dtype is not None:
        fx = fx.to(dtype=dtype)
    return fx


def _cache_request(model, outputs, keys):
    """(cache file, source path) for an .onnx path, else (None, None)."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model).endswith(".onnx"):
        return None, None
    path = os.fspath(model)
    if not os.path.isfile(path):
        return None, None
    names = [outputs] if isinstance(outputs, str) else (None if outputs is None else list(outputs))
    return cache_mod.path_for(path, {"outputs": names, "keys": keys}), path


def _cached(model, outputs, keys):
    cache_path, path = _cache_request(model, outputs, keys)
    saved = None if cache_path is None else cache_mod.read(cache_path, path)
    if not isinstance(saved, dict) or not isinstance(saved.get("extractor"), FeatureExtractor):
        return None
    import onnx

    fx = saved["extractor"]
    fx.onnx_model = onnx.load_from_string(saved["graph"])
    fx._base_dir = os.path.dirname(os.path.abspath(path))
    return fx


def _save_cached(model, outputs, keys, fx):
    cache_path, path = _cache_request(model, outputs, keys)
    if cache_path is None:
        return
    full, fx.onnx_model = fx.onnx_model, None
    try:
        cache_mod.write(cache_path, path, {"extractor": fx, "graph": cache_mod.skeleton(full).SerializeToString()})
    finally:
        fx.onnx_model = full


def _extractor(model, outputs, keys):
    """The FeatureExtractor of ``model`` for ``outputs``, on the CPU in the model's dtype."""
    onnx_model, base_dir, where = open_onnx(model)
    if outputs is None:
        outputs = [o.name for o in onnx_model.graph.output]
    elif isinstance(outputs, str):
        outputs = [outputs]
    outputs = list(dict.fromkeys(outputs))
    if not outputs:
        raise PreimageError("no outputs requested", path=where)
    found, missing = G.resolve(onnx_model, outputs, keys)
    if missing:
        raise PreimageError(f"no layer or blob named {', '.join(map(repr, missing))}; available: "
                            f"{G.describe_available(onnx_model, keys)}", path=where)
    inputs = set(G.graph_inputs(onnx_model))
    node_values = list(dict.fromkeys(v for v in found.values() if v not in inputs))
    pruned, module = _build(onnx_model, node_values, where)
    needed = [i.name for i in pruned.graph.input]
    needed += [v for v in dict.fromkeys(found.values()) if v in inputs and v not in needed]
    needed = [n for n in G.graph_inputs(onnx_model) if n in needed]  # model order
    if node_values:
        # onnx2torch's placeholders follow the pruned graph's input order; keep the model's order instead
        order = [i.name for i in pruned.graph.input]
        if order != [n for n in needed if n in order] or len(order) != len(needed):
            module = _Reorder(module, order, needed)
    fx = FeatureExtractor(module, onnx_model, outputs, found, needed, base_dir)
    fixed = G.metadata(onnx_model, "preimage.fixed_size", None) or {}
    fixed_layers = [n.name for n in pruned.graph.node if n.name in set(fixed.get("layers", []))]
    if fixed_layers:  # pooling written for the declared input size only: refuse other sizes
        fx.fixed_layers = fixed_layers
        fx.fixed_sizes = {n: s for n, s in fixed.get("inputs", {}).items() if n in needed and len(s) == 2}
    return fx


class _Reorder(nn.Module):
    """Calls a converted graph whose inputs are a subset / permutation of the extractor's inputs."""

    def __init__(self, module, order, names):
        super().__init__()
        self.module = module
        self.index = [names.index(n) for n in order]

    def forward(self, *args):
        return self.module(*[args[i] for i in self.index])
