"""A cache of built feature extractors beside the ONNX file, so that a second load is about one ``torch.load``.

Building the torch module of a full-width AlexNet (parse 240 MB of protobuf, prune, onnx2torch's shape
inference and conversion) takes seconds; reading back the module it built takes about as long as
``torch.load`` of the weights. ``load_features`` therefore saves what it built to
``<folder of the .onnx>/.preimage-cache/<file name>.<key>.pt`` and reads it back next time.

* The key covers what the build depends on besides the file: the requested names and their reading
  (``outputs``, ``keys``), this cache format, the torch and onnx2torch versions and the source of
  preimage's operator converters (a changed converter rebuilds).
* The file itself is identified by its sha256, recorded in the cache with its size and mtime. When size
  and mtime are unchanged the recorded hash is trusted (hashing 240 MB costs about as much as the load);
  otherwise the file is hashed again and a different hash makes the cache stale.
* A stale, damaged or unreadable cache is ignored and rebuilt; writing is atomic (``fileio.atomic_path``)
  and a folder that cannot be written only means no cache. The newest ``KEEP`` caches of a file are kept.
* The cache is a pickle (``torch.load(weights_only=False)``): only a folder you trust should be read,
  as with the model file itself. ``PREIMAGE_CACHE=0`` (or ``load_features(..., cache=False)``) turns it off.
"""
import glob
import hashlib
import json
import math
import os

import torch

FORMAT = 1
KEEP = 4
FOLDER = ".preimage-cache"
_SMALL = 4096  # initializers up to this many bytes (of float64) keep their data in the cached graph (shapes, pads)


def enabled(cache):
    return bool(cache) and os.environ.get("PREIMAGE_CACHE", "1") not in ("0", "", "off", "no")


def _code_digest():
    import onnx2torch

    h = hashlib.sha256(f"{FORMAT} {torch.__version__} {getattr(onnx2torch, '__version__', '?')}".encode())
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "*.py"))):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def path_for(onnx_path, request):
    """The cache file for ``onnx_path`` and ``request`` (a JSON-able description of the requested names)."""
    key = hashlib.sha256(json.dumps([request, _code_digest()], sort_keys=True).encode()).hexdigest()[:20]
    folder = os.path.join(os.path.dirname(os.path.abspath(onnx_path)), FOLDER)
    return os.path.join(folder, f"{os.path.basename(onnx_path)}.{key}.pt")


def _identity(onnx_path):
    st = os.stat(onnx_path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read(cache_path, onnx_path):
    """The cached object, or None when there is no cache or it is stale or damaged."""
    from ...fileio import sha256_file

    if not os.path.isfile(cache_path):
        return None
    try:
        saved = torch.load(cache_path, map_location="cpu", weights_only=False)
        if saved.get("format") != FORMAT:
            return None
        source = saved["source"]
        if {k: source[k] for k in ("size", "mtime_ns")} != _identity(onnx_path):
            if sha256_file(onnx_path) != source["sha256"]:
                return None
        return saved["object"]
    except Exception:  # a damaged, truncated or foreign file: ignore it and rebuild
        return None


def write(cache_path, onnx_path, obj):
    """Save ``obj`` for ``onnx_path`` (atomic; silently nothing when the folder cannot be written or the
    module cannot be pickled: the cache only ever saves time)."""
    from ...fileio import atomic_path, sha256_file

    try:
        source = dict(_identity(onnx_path), sha256=sha256_file(onnx_path))
        with atomic_path(cache_path) as tmp:
            torch.save({"format": FORMAT, "source": source, "object": obj}, tmp)
        _prune(cache_path)
    except Exception:  # an unwritable folder, a full disk, a module pickle cannot take
        pass


def _prune(cache_path):
    folder, name = os.path.split(cache_path)
    stem = name.rsplit(".", 2)[0]
    mine = sorted(glob.glob(os.path.join(glob.escape(folder), glob.escape(stem) + ".*.pt")), key=os.path.getmtime)
    for old in mine[:-KEEP]:
        try:
            os.unlink(old)
        except OSError:
            pass


def skeleton(model):
    """A copy of ``model`` without its weights' bytes: graph, metadata and the shapes of all initializers
    (those up to 4 KiB, such as pads and reshape targets, keep their values)."""
    import onnx

    light = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(light, field, getattr(model, field))
    light.opset_import.extend(model.opset_import)
    light.metadata_props.extend(model.metadata_props)
    g, src = light.graph, model.graph
    g.name, g.doc_string = src.name, src.doc_string
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    for t in src.initializer:
        if math.prod(t.dims) * 8 <= _SMALL:  # (not ByteSize(): it walks the weight bytes)
            g.initializer.append(t)
        else:
            g.initializer.append(onnx.TensorProto(name=t.name, dims=t.dims, data_type=t.data_type))
    return light
