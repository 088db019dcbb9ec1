"""Writing caffemodels (binary NetParameter with blobs), for tests, benchmarks and demos.

    w = random_weights("alexnet.prototxt", seed=0)     # {layer: [arrays]} in Caffe's blob shapes
    write_caffemodel("alexnet.caffemodel", "alexnet.prototxt", w)
    write_caffemodel("old.caffemodel", "alexnet.prototxt", legacy_v1=True)   # 2014-era V1 layout

The layer descriptions are serialized with protobuf; the blobs are appended in protobuf's wire format
directly from the arrays' bytes (``repeated float data = 5 [packed]``), because filling a protobuf
repeated field element by element costs seconds and a second copy for a 61M-parameter net.
"""
import os

import numpy as np

from ...errors import PreimageError, UnsupportedError
from ...fileio import atomic_path
from .convert import random_blobs
from .proto import caffe_pb2
from .prototxt import read_net
from .upgrade import V1_TYPE_NAMES
from .wire import len_prefix, varint

_V1_TYPE_OF = {name: enum for enum, name in V1_TYPE_NAMES.items()}
_V1_PARAM_FIELDS = {f.name for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields if f.name.endswith("_param")}


def random_weights(prototxt, seed=0):
    """Seeded parameters for every layer of a net that has any: ``{layer name: [np.ndarray, ...]}``.

    He-normal weights (std sqrt(2 / fan_in)) for Convolution / InnerProduct / Deconvolution, zero
    biases, BatchNorm mean ~ N(0, 0.1), variance ~ U(0.5, 1.5) and factor 1, Scale gamma ~ U(0.8, 1.2)
    and beta ~ N(0, 0.1), PReLU slopes 0.25. Shapes follow Caffe (e.g. InnerProduct (out, in))."""
    used = random_blobs(prototxt, seed)
    return {layer: [blobs[i] for i in sorted(blobs)] for layer, blobs in used.items()}


def _blob_header(arr, legacy):
    """BlobProto bytes up to (and including) the data field's tag and length; the float bytes follow."""
    head = bytearray()
    if legacy:
        dims = [1] * (4 - arr.ndim) + list(arr.shape) if arr.ndim <= 4 else None
        if dims is None:
            raise UnsupportedError(f"a {arr.ndim}-d blob has no V1 (4-d) form")
        for field, d in zip((1, 2, 3, 4), dims):
            head += varint(field << 3) + varint(int(d))
    else:
        dims = b"".join(varint(int(d)) for d in arr.shape)
        shape_msg = (len_prefix(1, len(dims)) + dims) if arr.ndim else b""
        head += len_prefix(7, len(shape_msg)) + shape_msg
    head += len_prefix(5, arr.size * 4)
    return bytes(head)


def _to_v1(layer):
    if layer.type not in _V1_TYPE_OF:
        return None
    v1 = caffe_pb2.V1LayerParameter()
    v1.name = layer.name
    v1.type = _V1_TYPE_OF[layer.type]
    v1.bottom.extend(layer.bottom)
    v1.top.extend(layer.top)
    for p in layer.param:
        if p.name:
            v1.param.append(p.name)
    for f, value in layer.ListFields():
        if f.name in _V1_PARAM_FIELDS:
            getattr(v1, f.name).CopyFrom(value)
    return v1


def write_caffemodel(path, prototxt, weights=None, *, seed=0, legacy_v1=False):
    """Write a caffemodel for ``prototxt`` holding ``weights`` ({layer: [arrays]}; default: seeded
    :func:`random_weights`). ``legacy_v1=True`` writes the V1 layout: ``layers`` with enum types and
    blobs with the four legacy dims num/channels/height/width (InnerProduct weights 1 x 1 x out x in).
    Written atomically."""
    spec = read_net(prototxt)
    if weights is None:
        weights = random_weights(prototxt, seed=seed)
    names = {l.name for l in spec.layers}
    unknown = sorted(set(weights) - names)
    if unknown:
        raise PreimageError(f"weights given for layers the net does not have: {', '.join(unknown[:6])}", path=prototxt)
    net_field = 2 if legacy_v1 else 100
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        header = caffe_pb2.NetParameter(name=spec.name)
        f.write(header.SerializeToString())
        for layer in spec.layers:
            blobs = [np.require(a, dtype="<f4", requirements="C") for a in weights.get(layer.name, [])]
            if legacy_v1:
                desc = _to_v1(layer)
                if desc is None:
                    if blobs:
                        raise UnsupportedError(f"layer type {layer.type} has no V1 form", path=prototxt,
                                               where=f"layer '{layer.name}'")
                    continue
                blob_field = 6
            else:
                desc = caffe_pb2.LayerParameter()
                desc.CopyFrom(layer)
                del desc.blobs[:]
                blob_field = 7
            body = desc.SerializeToString()
            heads = [_blob_header(a, legacy_v1) for a in blobs]
            blob_lens = [len(h) + a.nbytes for h, a in zip(heads, blobs)]
            total = len(body) + sum(len(len_prefix(blob_field, n)) + n for n in blob_lens)
            f.write(len_prefix(net_field, total))
            f.write(body)
            for h, a, n in zip(heads, blobs, blob_lens):
                f.write(len_prefix(blob_field, n))
                f.write(h)
                f.write(memoryview(a).cast("B"))
    return os.fspath(path)
