"""Reading the weights of a binary ``.caffemodel`` by layer name, fast and with little memory.

Why not ``NetParameter.ParseFromString`` + ``np.asarray(blob.data)``: for a 233 MB AlexNet that
holds the file, the parsed message, numpy copies and then the ONNX tensors at once (3-4x the file),
and the parse alone (about 0.3 s) already uses the conversion's whole time budget (2x reading and
parsing). Instead the file is memory-mapped and this module walks the protobuf wire format itself: only layer names and blob headers are decoded, each blob's packed float data is viewed in
place with ``np.frombuffer`` (no copy), and everything else is skipped by its length. The few
wire-format rules needed (varints, tags, length-delimited fields) are written here because no library
offers a partial protobuf decoder over a buffer.

Handing weights to ONNX costs one copy: a blob's data field is ``tag(5, LEN) len bytes``, ONNX's
``TensorProto.raw_data`` is ``tag(9, LEN) len bytes``. The mapping is private (copy-on-write), so the
one tag byte is rewritten in place and ``TensorProto.MergeFromString`` reads the bytes straight from
the mapping (see :meth:`Caffemodel.merge_into`). The sha256 of the file is computed from the mapping on
a thread, overlapping with the conversion (a blob is retagged only once the hash has passed it).

Layouts: V2 (``layer`` = field 100: name 1, blobs 7), V1 (``layers`` = field 2: name 4, blobs 6, and a
nested V0 ``layer`` = field 1: name 1, blobs 50). BlobProto: num/channels/height/width 1-4, data 5,
shape 7 (dim 1), double_data 8.
"""
import hashlib
import mmap
import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ...errors import FormatError, PreimageError
from .wire import I32, I64, LEN, VARINT

_DATA_TAG = (5 << 3) | LEN  # BlobProto.data
_RAW_TAG = (9 << 3) | LEN  # TensorProto.raw_data


@dataclass
class Blob:
    """One parameter blob: flat float32 data and the shape the file declares."""

    data: np.ndarray  # 1-d float32 (possibly a read-only view of the mapped file)
    shape: Tuple[int, ...]
    legacy: bool  # True when the shape came from num/channels/height/width (V1 files)
    span: Optional[Tuple[int, int]] = None  # (tag offset, end) of the packed data field in the mapping


def _buf_varint(buf, i, end, path, what):
    shift = result = 0
    while True:
        if i >= end:
            raise FormatError(f"truncated caffemodel: {what} ends inside a varint at offset {i}", path=path)
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise FormatError(f"not a Caffe caffemodel: malformed varint at offset {i} ({what})", path=path)


def _buf_fields(buf, start, end, path, what):
    """Yield (field, wire, value_start or varint value, value_end, tag offset) over a message in ``buf``."""
    i = start
    while i < end:
        tag_at = i
        key, i = _buf_varint(buf, i, end, path, what)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise FormatError(f"not a Caffe caffemodel (binary NetParameter): invalid field at offset {tag_at} "
                              f"({what})", path=path)
        if wire == VARINT:
            v, i = _buf_varint(buf, i, end, path, what)
            yield field, wire, v, None, tag_at
        elif wire == LEN:
            n, i = _buf_varint(buf, i, end, path, what)
            if i + n > end:
                raise FormatError(f"truncated caffemodel: {what} needs {n} bytes at offset {i}, "
                                  f"but {'the file' if end == len(buf) else 'its message'} ends at {end}", path=path)
            yield field, wire, i, i + n, tag_at
            i += n
        elif wire in (I32, I64):
            n = 4 if wire == I32 else 8
            if i + n > end:
                raise FormatError(f"truncated caffemodel: {what} ends at offset {end}", path=path)
            yield field, wire, i, i + n, tag_at
            i += n
        else:
            raise FormatError(f"not a Caffe caffemodel (binary NetParameter): invalid wire type {wire} at offset "
                              f"{tag_at} ({what})", path=path)


def _packed_varints(buf, s, e, path, what):
    out = []
    while s < e:
        v, s = _buf_varint(buf, s, e, path, what)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def parse_blob(buf, start, end, path, what):
    """A BlobProto held in ``buf[start:end]`` -> :class:`Blob` (data viewed, not copied)."""
    legacy = [0, 0, 0, 0]
    has_legacy = False
    shape = None
    chunks, spans = [], []
    unpacked = []
    for field, wire, a, b, tag_at in _buf_fields(buf, start, end, path, what):
        if 1 <= field <= 4 and wire == VARINT:
            legacy[field - 1] = a
            has_legacy = True
        elif field == 7 and wire == LEN:
            dims = []
            for f2, w2, a2, b2, _ in _buf_fields(buf, a, b, path, what + " shape"):
                if f2 == 1 and w2 == LEN:
                    dims.extend(_packed_varints(buf, a2, b2, path, what))
                elif f2 == 1 and w2 == VARINT:
                    dims.append(a2)
            shape = tuple(dims)
        elif field == 5 and wire == LEN:
            if (b - a) % 4:
                raise FormatError(f"corrupt caffemodel: {what} float data is not a multiple of 4 bytes", path=path)
            chunks.append(np.frombuffer(buf, dtype="<f4", count=(b - a) // 4, offset=a))
            spans.append((tag_at, b))
        elif field == 5 and wire == I32:  # unpacked floats (rare writers): one field per value
            unpacked.append(a)
        elif field == 8 and wire == LEN:
            chunks.append(np.frombuffer(buf, dtype="<f8", count=(b - a) // 8, offset=a).astype(np.float32))
        elif field == 8 and wire == I64:
            chunks.append(np.frombuffer(buf, dtype="<f8", count=1, offset=a).astype(np.float32))
    if unpacked:
        chunks.append(np.array([np.frombuffer(buf, "<f4", 1, o)[0] for o in unpacked], np.float32))
    span = spans[0] if len(chunks) == 1 and len(spans) == 1 and buf[spans[0][0]] == _DATA_TAG else None
    data = chunks[0] if len(chunks) == 1 else (np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
    if shape is None and not has_legacy:
        shape = ()  # Caffe writes a 0-axis (scalar) blob with neither shape nor legacy dims
    if shape is None:
        shape = tuple(int(d) for d in legacy)
        is_legacy = True
        if data.size and int(np.prod(shape)) != data.size:
            raise FormatError(f"{what}: legacy dims {list(shape)} hold {int(np.prod(shape))} values, "
                              f"data has {data.size}", path=path)
    else:
        is_legacy = False
        if int(np.prod(shape)) != data.size:
            raise FormatError(f"{what}: shape {list(shape)} holds {int(np.prod(shape))} values, data has {data.size}",
                              path=path)
    return Blob(data, shape, is_legacy, span)


# NetParameter field -> (layer name field, blobs field, nested V0 layer field)
_LAYER_FIELDS = {100: (1, 7, None), 2: (4, 6, 1)}


def _scan_layer(buf, a, b, layout, index, path):
    name_field, blobs_field, v0_field = layout
    name, blobs, v0_blobs = None, [], []
    for field, wire, s, e, _ in _buf_fields(buf, a, b, path, f"layer {index}"):
        if field == name_field and wire == LEN:
            name = bytes(buf[s:e]).decode("utf-8", "replace")
        elif field == blobs_field and wire == LEN:
            blobs.append(parse_blob(buf, s, e, path, f"layer '{name or index}' blob {len(blobs)}"))
        elif v0_field is not None and field == v0_field and wire == LEN:
            for f2, w2, s2, e2, _ in _buf_fields(buf, s, e, path, f"V0 layer {index}"):
                if f2 == 1 and w2 == LEN and name is None:
                    name = bytes(buf[s2:e2]).decode("utf-8", "replace")
                elif f2 == 50 and w2 == LEN:
                    v0_blobs.append(parse_blob(buf, s2, e2, path, f"layer '{name or index}' blob {len(v0_blobs)}"))
    return name, blobs or v0_blobs


class _MapHasher:
    """sha256 of the mapped file, computed on a thread (hashlib releases the GIL on large updates).
    ``wait_past(pos)`` blocks until the bytes before ``pos`` are hashed, so that the converter only
    retags a blob (see :meth:`Caffemodel.merge_into`) once the hash has seen the original bytes."""

    CHUNK = 1 << 23

    def __init__(self, mm, size):
        self.sha = hashlib.sha256()
        self.done = 0
        self.stop = False
        self.cond = threading.Condition()
        self.t = threading.Thread(target=self._run, args=(memoryview(mm), size), daemon=True)
        self.t.start()

    def _run(self, view, size):
        try:
            for off in range(0, size, self.CHUNK):
                if self.stop:
                    return
                end = min(size, off + self.CHUNK)
                self.sha.update(view[off:end])
                with self.cond:
                    self.done = end
                    self.cond.notify_all()
        finally:
            view.release()
            with self.cond:
                self.done = size
                self.cond.notify_all()

    def wait_past(self, pos):
        with self.cond:
            while self.done < pos:
                self.cond.wait()

    def hexdigest(self):
        self.t.join()
        if self.stop:
            raise RuntimeError("hashing was stopped")
        return self.sha.hexdigest()


class Caffemodel:
    """A caffemodel's blobs by layer name, viewed in a private memory map of the file.

    ``get(layer)`` -> list of :class:`Blob` (or None), ``all()`` -> dict, ``sha256()``. Bad files raise
    a one-line :class:`FormatError` when opened: truncated, not protobuf, or a blob whose data does not
    fill its declared shape.
    """

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise PreimageError("no such caffemodel file", path=path)
        self.path = path
        self.size = os.path.getsize(path)
        if self.size == 0:
            raise FormatError("not a Caffe caffemodel: the file is empty", path=path)
        with open(path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self._layers: Dict[str, List[Blob]] = {}
        self._by_address = {}
        self._scan()  # walks only headers: fast
        self._sha = None
        self._hasher = _MapHasher(self._mm, self.size)

    def _scan(self):
        mm, path = self._mm, self.path
        n_layers = 0
        for field, wire, a, b, _ in _buf_fields(mm, 0, self.size, path, "the net"):
            if field in _LAYER_FIELDS and wire == LEN:
                name, blobs = _scan_layer(mm, a, b, _LAYER_FIELDS[field], n_layers, path)
                n_layers += 1
                if blobs and name is not None:
                    self._layers[name] = blobs
                    for blob in blobs:
                        if blob.span is not None:
                            self._by_address[blob.data.__array_interface__["data"][0]] = blob
        if n_layers == 0:
            raise FormatError("not a Caffe caffemodel: no layers found", path=path)

    def get(self, name, default=None):
        return self._layers.get(name, default)

    def all(self):
        return self._layers

    def sha256(self):
        if self._sha is None:
            self._sha = self._hasher.hexdigest()
        return self._sha

    def close(self):
        """Stop hashing and release the mapping (so that the file can be rewritten safely: a mapped
        file truncated by another writer would crash the process). Views still held elsewhere keep
        the mapping alive until they go."""
        if self._sha is None:
            self._hasher.stop = True
        self._hasher.t.join()
        self._layers, self._by_address = {}, {}
        try:
            self._mm.close()
        except BufferError:  # numpy views of the weights are still alive somewhere
            pass

    def _blob_of(self, arr):
        """The blob whose whole data ``arr`` views (same memory, same size), else None."""
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or not arr.flags.c_contiguous:
            return None
        blob = self._by_address.get(arr.__array_interface__["data"][0])
        return blob if blob is not None and blob.data.size == arr.size else None

    def merge_into(self, tensor, arr, copy=True):
        """Set ``tensor.raw_data`` to ``arr``'s bytes straight from the mapping (one copy), if ``arr`` is a
        whole blob of this file; returns the memoryview of those bytes (for writers), else None.
        ``copy=False`` only returns the view (the tensor stays without data)."""
        blob = self._blob_of(arr)
        if blob is None:
            return None
        if not copy:
            tag_at, end = blob.span
            return memoryview(self._mm)[end - blob.data.nbytes:end]
        tag_at, end = blob.span
        if self._mm[tag_at] != _RAW_TAG:
            self._hasher.wait_past(tag_at + 1)  # the hash must see the original byte
            self._mm[tag_at] = _RAW_TAG  # private mapping: the file itself is untouched
        view = memoryview(self._mm)
        tensor.MergeFromString(view[tag_at:end])
        return view[end - blob.data.nbytes:end]


def read_caffemodel(path):
    """``({layer name: [Blob, ...]}, sha256 hex)`` of a caffemodel (layers without blobs left out)."""
    cm = Caffemodel(path)
    return cm.all(), cm.sha256()
