"""Reading the weights of a binary ``.caffemodel`` by layer name, fast and with little memory.

Why not ``NetParameter.ParseFromString`` + ``np.asarray(blob.data)``: for a 233 MB AlexNet that
holds the file, the parsed message and a converted copy at once, and turning 61M protobuf floats into
numpy costs seconds. Instead this module walks the protobuf wire format itself, streaming the file
once (hashing it on the way): only layer names and blobs are decoded; each blob's packed float data
is read in one piece and viewed with ``np.frombuffer`` without copying. Everything else in a layer is
skipped. The few wire-format rules needed (varints, tags, length-delimited fields) are written here;
no library offers a partial, streaming protobuf decoder.

Layouts: V2 (``layer`` = field 100: name 1, blobs 7), V1 (``layers`` = field 2: name 4, blobs 6, and a
nested V0 ``layer`` = field 1: name 1, blobs 50). BlobProto: num/channels/height/width 1-4, data 5,
shape 7 (dim 1), double_data 8.
"""
import hashlib
import os
import queue
import threading
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from ...errors import FormatError, PreimageError

VARINT, I64, LEN, I32 = 0, 1, 2, 5


@dataclass
class Blob:
    """One parameter blob: flat float32 data and the shape the file declares."""

    data: np.ndarray  # 1-d float32 (possibly a read-only view of the file's bytes)
    shape: Tuple[int, ...]
    legacy: bool  # True when the shape came from num/channels/height/width (V1 files)

    def reshaped(self, shape):
        return self.data.reshape(shape)


class _Hasher:
    """sha256 of the bytes read, computed on a second thread (hashlib releases the GIL on large
    updates), so hashing overlaps with decoding instead of adding its time."""

    def __init__(self):
        self.sha = hashlib.sha256()
        self.q = queue.Queue(maxsize=8)
        self.small = bytearray()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            b = self.q.get()
            if b is None:
                return
            self.sha.update(b)

    def update(self, b):
        if len(b) < (1 << 16):
            self.small += b
            if len(self.small) >= (1 << 16):
                self.q.put(bytes(self.small))
                self.small = bytearray()
            return
        if self.small:
            self.q.put(bytes(self.small))
            self.small = bytearray()
        self.q.put(b)  # bytes are immutable: safe to hash while the caller uses them

    def hexdigest(self):
        if self.small:
            self.q.put(bytes(self.small))
            self.small = bytearray()
        self.q.put(None)
        self.t.join()
        return self.sha.hexdigest()

    def abandon(self):
        self.small = bytearray()
        self.q.put(None)


class _Stream:
    """Sequential reader over a file that hashes every byte it reads and knows its position."""

    def __init__(self, f, size, path):
        self.f, self.size, self.path, self.pos = f, size, path, 0
        self.sha = _Hasher()

    def read(self, n, what):
        if self.pos + n > self.size:
            raise FormatError(f"truncated caffemodel: {what} needs {n} bytes at offset {self.pos}, "
                              f"but the file ends at {self.size}", path=self.path)
        b = self.f.read(n)
        if len(b) != n:
            raise FormatError(f"truncated caffemodel at offset {self.pos + len(b)} while reading {what}", path=self.path)
        self.sha.update(b)
        self.pos += n
        return b

    def varint(self, what):
        shift = result = 0
        while True:
            if self.pos >= self.size:
                raise FormatError(f"truncated caffemodel: file ends inside {what} at offset {self.pos}", path=self.path)
            b = self.f.read(1)
            self.sha.update(b)
            self.pos += 1
            result |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise FormatError(f"not a caffemodel: malformed varint at offset {self.pos}", path=self.path)

    def skip(self, wire, what):
        if wire == VARINT:
            self.varint(what)
        elif wire == I64:
            self.read(8, what)
        elif wire == I32:
            self.read(4, what)
        elif wire == LEN:
            n = self.varint(what)
            while n > 0:  # skip big unneeded fields (e.g. saved gradients) in chunks
                k = min(n, 1 << 24)
                self.read(k, what)
                n -= k
        else:
            raise FormatError(f"not a Caffe caffemodel (binary NetParameter): invalid wire type {wire} at offset "
                              f"{self.pos} ({what})", path=self.path)


def _buf_varint(buf, i, end, path, what):
    shift = result = 0
    while True:
        if i >= end:
            raise FormatError(f"corrupt caffemodel: {what} runs past its end", path=path)
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise FormatError(f"corrupt caffemodel: malformed varint in {what}", path=path)


def _buf_fields(buf, start, end, path, what):
    """Yield (field, wire, value_start, value_end_or_int) over a message held in memory."""
    i = start
    while i < end:
        key, i = _buf_varint(buf, i, end, path, what)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            v, i = _buf_varint(buf, i, end, path, what)
            yield field, wire, v, None
        elif wire == LEN:
            n, i = _buf_varint(buf, i, end, path, what)
            if i + n > end:
                raise FormatError(f"corrupt caffemodel: a field of {what} runs past its end", path=path)
            yield field, wire, i, i + n
            i += n
        elif wire == I32:
            yield field, wire, i, i + 4
            i += 4
        elif wire == I64:
            yield field, wire, i, i + 8
            i += 8
        else:
            raise FormatError(f"corrupt caffemodel: invalid wire type {wire} in {what}", path=path)
    if i != end:
        raise FormatError(f"corrupt caffemodel: {what} overruns its length", path=path)


def _packed_varints(buf, s, e, path, what):
    out = []
    while s < e:
        v, s = _buf_varint(buf, s, e, path, what)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def parse_blob(buf, start, end, path, what, raw=None):
    """A BlobProto held in ``buf[start:end]`` -> :class:`Blob` (data viewed, not copied). ``raw``: the
    packed float data when it was read separately."""
    legacy = [0, 0, 0, 0]
    has_legacy = False
    shape = None
    chunks = []  # float32 arrays; usually one packed run
    if raw is not None:
        if len(raw) % 4:
            raise FormatError(f"corrupt caffemodel: {what} float data is not a multiple of 4 bytes", path=path)
        chunks.append(np.frombuffer(raw, dtype="<f4"))
    n_unpacked = []
    for field, wire, a, b in _buf_fields(buf, start, end, path, what):
        if 1 <= field <= 4 and wire == VARINT:
            legacy[field - 1] = a
            has_legacy = True
        elif field == 7 and wire == LEN:
            dims = []
            for f2, w2, a2, b2 in _buf_fields(buf, a, b, path, what + " shape"):
                if f2 == 1 and w2 == LEN:
                    dims.extend(_packed_varints(buf, a2, b2, path, what))
                elif f2 == 1 and w2 == VARINT:
                    dims.append(a2)
            shape = tuple(dims)
        elif field == 5 and wire == LEN:
            if (b - a) % 4:
                raise FormatError(f"corrupt caffemodel: {what} float data is not a multiple of 4 bytes", path=path)
            chunks.append(np.frombuffer(buf, dtype="<f4", count=(b - a) // 4, offset=a))
        elif field == 5 and wire == I32:  # unpacked floats (rare writers): one field per value
            n_unpacked.append(a)
        elif field == 8 and wire == LEN:
            chunks.append(np.frombuffer(buf, dtype="<f8", count=(b - a) // 8, offset=a).astype(np.float32))
        elif field == 8 and wire == I64:
            chunks.append(np.frombuffer(buf, dtype="<f8", count=1, offset=a).astype(np.float32))
    if n_unpacked:
        chunks.append(np.array([np.frombuffer(buf, "<f4", 1, o)[0] for o in n_unpacked], np.float32))
    data = chunks[0] if len(chunks) == 1 else (np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
    if shape is None and not has_legacy:
        shape = ()  # Caffe writes a 0-axis (scalar) blob with neither shape nor legacy dims
    if shape is None:
        shape = tuple(int(d) for d in legacy)
        is_legacy = True
        if data.size and int(np.prod(shape)) != data.size:
            raise FormatError(f"{what}: legacy dims {shape} hold {int(np.prod(shape))} values, data has {data.size}",
                              path=path)
    else:
        is_legacy = False
        if int(np.prod(shape)) != data.size:
            raise FormatError(f"{what}: shape {list(shape)} holds {int(np.prod(shape))} values, data has {data.size}",
                              path=path)
    return Blob(data, shape, is_legacy)


def _read_blob(st, n, what):
    """A BlobProto streamed from the file: its float data is read as one bytes object of its own
    (viewed by numpy, and later handed to ONNX without another copy); small fields are decoded."""
    end = st.pos + n
    head = bytearray()  # everything but the float data, re-encoded for parse_blob
    raw = None
    while st.pos < end:
        key = st.varint(what)
        field, wire = key >> 3, key & 7
        if field == 5 and wire == LEN and raw is None:
            m = st.varint(what)
            if st.pos + m > end:
                raise FormatError(f"corrupt caffemodel: {what} data runs past the blob", path=st.path)
            raw = st.read(m, what)
        elif wire == LEN:
            m = st.varint(what)
            head += _enc_varint(key) + _enc_varint(m) + st.read(m, what)
        elif wire == VARINT:
            head += _enc_varint(key) + _enc_varint(st.varint(what))
        elif wire == I32:
            head += _enc_varint(key) + st.read(4, what)
        elif wire == I64:
            head += _enc_varint(key) + st.read(8, what)
        else:
            st.skip(wire, what)
    if st.pos != end:
        raise FormatError(f"corrupt caffemodel: {what} overruns its length", path=st.path)
    blob = parse_blob(bytes(head), 0, len(head), st.path, what, raw=raw)
    return blob


def _enc_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# NetParameter field -> (layer name field, blobs field, nested V0 layer field)
_LAYER_FIELDS = {100: (1, 7, None), 2: (4, 6, 1)}


def _read_layer(st, length, layout, index):
    name_field, blobs_field, v0_field = layout
    end = st.pos + length
    name, blobs = None, []
    while st.pos < end:
        key = st.varint("layer field")
        field, wire = key >> 3, key & 7
        if field == name_field and wire == LEN:
            n = st.varint("layer name")
            name = st.read(n, "layer name").decode("utf-8", "replace")
        elif field == blobs_field and wire == LEN:
            n = st.varint("blob")
            blobs.append(_read_blob(st, n, f"layer '{name or index}' blob {len(blobs)}"))
        elif v0_field is not None and field == v0_field and wire == LEN:
            n = st.varint("V0 layer")
            buf = st.read(n, f"V0 layer {index}")
            v0_blobs = []
            for f2, w2, a, b in _buf_fields(buf, 0, n, st.path, f"V0 layer {index}"):
                if f2 == 1 and w2 == LEN and name is None:
                    name = bytes(buf[a:b]).decode("utf-8", "replace")
                elif f2 == 50 and w2 == LEN:
                    v0_blobs.append(parse_blob(buf, a, b, st.path, f"layer '{name or index}' blob {len(v0_blobs)}"))
            blobs = blobs or v0_blobs
        else:
            st.skip(wire, f"layer {name or index}")
    if st.pos != end:
        raise FormatError(f"corrupt caffemodel: layer '{name or index}' overruns its length", path=st.path)
    return name, blobs


def read_caffemodel(path, lazy_hash=False):
    """Read a caffemodel: ``({layer name: [Blob, ...]}, sha256 hex)``. Layers without blobs are left out.
    ``lazy_hash=True`` returns a function giving the sha256 instead, so that the caller can go on while
    the hash is finished on the hashing thread.

    Bad files get a one-line :class:`FormatError`: truncated, not protobuf, or a blob whose data does
    not fill its declared shape.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PreimageError("no such caffemodel file", path=path)
    size = os.path.getsize(path)
    weights: Dict[str, List[Blob]] = {}
    with open(path, "rb") as f:
        st = _Stream(f, size, path)
        try:
            _read_layers(st, size, weights)
        except BaseException:
            st.sha.abandon()
            raise
    return weights, (st.sha.hexdigest if lazy_hash else st.sha.hexdigest())


def _read_layers(st, size, weights):
    path = st.path
    n_layers = 0
    while st.pos < size:
        key = st.varint("top-level field")
        field, wire = key >> 3, key & 7
        if field == 0 or wire in (3, 4, 6, 7):
            raise FormatError(f"not a Caffe caffemodel (binary NetParameter): invalid field at offset {st.pos}",
                              path=path)
        if field in _LAYER_FIELDS and wire == LEN:
            n = st.varint("layer length")
            if st.pos + n > size:
                raise FormatError(f"truncated caffemodel: layer {n_layers} needs {n} bytes at offset {st.pos}, "
                                  f"but the file ends at {size}", path=path)
            name, blobs = _read_layer(st, n, _LAYER_FIELDS[field], n_layers)
            n_layers += 1
            if blobs and name is not None:
                weights[name] = blobs
        else:
            st.skip(wire, "top-level field")
    if n_layers == 0:
        raise FormatError("not a Caffe caffemodel: no layers found", path=path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
