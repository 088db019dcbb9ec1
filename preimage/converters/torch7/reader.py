"""Reading Torch7 .t7 files (``torch.save`` output) without Lua: ``read_t7(path)``.

The format (Torch7's ``File:writeObject``): each object starts with an int type tag::

    0 nil | 1 number (double) | 2 string (int length, bytes) | 5 boolean (int 0/1)
    3 table:  int index, int n, then n (key, value) object pairs
    4 torch:  int index, "V <version>" string, class-name string, then the class's own data
    6 function (old): int length, bytecode, upvalues object
    7/8 recursive function: int index, int length, bytecode, upvalues object

Tables, torch objects and recursive functions carry a memo index: the first occurrence of an index
defines the object (indices count up from 1 in writing order), later ones refer back to it, which is
how shared storages and self-references are stored. Tensors write int nDim, nDim long sizes, nDim
long strides, a 1-based long storage offset and their storage object; storages write a long size and
their elements. ``tds.Hash`` / ``tds.Vec`` write a long count and their entries.

This reader is an independent implementation (torchfile, the old Python reader, is unmaintained,
fails on 4-byte longs and cannot read ASCII files). It never executes anything it reads, checks
every count against the bytes left before allocating, walks nested objects with an explicit stack
(no Python recursion, bounded depth), and returns big storages as views into a copy-on-write memory
map of the file instead of copying them.
"""
import math
import mmap
import re
import types
from pathlib import Path

import numpy as np

from ...errors import FormatError, PreimageError, UnsupportedError
from ...registry import Registry
from .streams import AsciiStream, BinaryStream
from .types import LuaFunction, LuaTable, T7Storage, T7Tensor, TorchObject, tensor_class

__all__ = ["read_t7", "CLASS_READERS", "class_reader"]

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN, FUNCTION, LEGACY_RECUR_FUNCTION, RECUR_FUNCTION = range(9)
_TAG_NAMES = ["nil", "number", "string", "table", "torch object", "boolean", "function",
              "recursive function (legacy)", "recursive function"]
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_MMAP_MIN_BYTES = 1 << 20
_MAX_DIMS = 64
_CHILD = object()  # what an object reader yields to ask the driver for the next nested object

# Torch classes that write their own layout instead of a table of fields: name -> generator function
# ``reader(r, obj)`` that reads the body into ``obj`` (a TorchObject already memoised) using
# ``r.stream`` and ``(yield _CHILD)`` for nested objects. One registered function per class.
CLASS_READERS = Registry("Torch7 class reader")
class_reader = CLASS_READERS.register


@class_reader("tds.Hash")
def _read_tds_hash(r, obj):
    s = r.stream
    n = s.read_long("tds.Hash size")
    s.check_count(n, 2 * s.min_number_bytes, "tds.Hash entries")
    table = obj.fields = LuaTable()
    for _ in range(n):
        key = yield _CHILD
        value = yield _CHILD
        table[r.key(key)] = value


@class_reader("tds.Vec")
def _read_tds_vec(r, obj):
    s = r.stream
    n = s.read_long("tds.Vec size")
    s.check_count(n, s.min_number_bytes, "tds.Vec elements")
    table = obj.fields = LuaTable()
    for i in range(n):
        table[i + 1] = yield _CHILD


def read_t7(path, *, long_size=None, mode=None, tensors="numpy", use_mmap=True, max_depth=100_000, strict_refs=True):
    """Read a Torch7 .t7 file (``torch.save`` output) and return its root object.

    ``long_size``: 8 or 4 bytes per long; ``None`` tries 8, then 4 (files written where C ``long`` is
    32-bit, e.g. Windows). ``mode``: ``"binary"`` or ``"ascii"``; ``None`` detects it. ``tensors``:
    ``"numpy"`` (arrays; tensors sharing a storage are views into the same array) or ``"raw"``
    (:class:`T7Tensor` / :class:`T7Storage`, keeping class names, strides and offsets).
    ``use_mmap``: big binary files are memory-mapped copy-on-write, so storages are not copied.
    ``strict_refs``: a memo index must either refer to an object already read or be the next new one,
    as every Torch7 writer numbers them; set False to accept gaps.

    Values: see :mod:`preimage.converters.torch7.types`. Raises :class:`FormatError` for a damaged
    or non-.t7 file, naming the byte offset (binary) or line:column (ASCII).
    """
    if tensors not in ("numpy", "raw"):
        raise ValueError("tensors must be 'numpy' or 'raw'")
    if long_size not in (None, 4, 8):
        raise ValueError("long_size must be None, 4 or 8")
    if mode not in (None, "binary", "ascii"):
        raise ValueError("mode must be None, 'binary' or 'ascii'")
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size == 0:
                raise FormatError("empty file, expected a Torch7 serialised object", path=path)
            mode = mode or _detect_mode(f.read(4), path)
            f.seek(0)
            if mode == "ascii":
                data = f.read()  # parsed into new arrays anyway
            elif use_mmap and size >= _MMAP_MIN_BYTES:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # writable, private pages
            else:
                data = np.empty(size, dtype=np.uint8)  # one read, no zero-filling; arrays are views of it
                got = f.readinto(data)
                if got < size:
                    data = data[:got]
    except OSError as e:
        raise PreimageError(f"cannot read file: {e.strerror or e}", path=path) from None
    sizes = [long_size] if long_size else [8, 4]
    errors = []
    for ls in sizes:
        stream = (BinaryStream if mode == "binary" else AsciiStream)(data, path, ls)
        try:
            return _Reader(stream, tensors, max_depth, strict_refs).read()
        except FormatError as e:
            errors.append((stream.pos, ls, e))
    if len(errors) == 1 or errors[0][0] >= errors[1][0]:
        raise errors[0][2]
    pos, ls, e = errors[1]  # 4-byte longs got further: report that attempt
    raise FormatError(f"{e.args[0]} (read with 4-byte longs; 8-byte longs fail earlier)") from None


def _detect_mode(data, path):
    head = bytes(data[:4])
    if len(head) == 4 and head[1:] == b"\0\0\0" and head[0] <= RECUR_FUNCTION:
        return "binary"
    if head[:1].isdigit() or head[:1] in (b" ", b"\n", b"\r", b"\t", b"-"):
        return "ascii"
    raise FormatError(f"not a Torch7 file: starts with {head!r}, expected a type tag 0-8 "
                      "(binary int or ASCII digits)", path=path, where="byte 0")


def _number(x):
    """Lua numbers are doubles; integral ones come back as int (sizes, counts, indices)."""
    if math.isfinite(x) and x.is_integer() and abs(x) < 2**53 and not (x == 0 and math.copysign(1, x) < 0):
        return int(x)
    return x


class _Reader:
    def __init__(self, stream, tensors, max_depth, strict_refs):
        self.stream = stream
        self.raw = tensors == "raw"
        self.max_depth = max_depth
        self.strict_refs = strict_refs
        self.memo = {}
        self.next_index = 1
        self.storages = {}  # id(user-facing storage value) -> T7Storage

    def fail(self, message, pos=None):
        self.stream.fail(message, pos)

    def read(self):
        value = self._read_root()
        s = self.stream
        if s.remaining and (s.binary or bytes(s.data[s.pos:]).strip()):
            # torch.save writes exactly one object; leftovers mean a misread (often a wrong long size)
            self.fail(f"{s.remaining} bytes left after the object (damaged file, or wrong long size?)")
        return value

    def _read_root(self):
        first = self.begin()
        if not _is_pending(first):
            return first
        stack, send = [first], None
        while stack:
            try:
                request = stack[-1].send(send)
            except StopIteration as stop:
                stack.pop()
                send = stop.value
                continue
            assert request is _CHILD
            child = self.begin()
            if _is_pending(child):
                if len(stack) >= self.max_depth:
                    self.fail(f"objects nested deeper than {self.max_depth} levels")
                stack.append(child)
                send = None
            else:
                send = child
        return send

    def key(self, k):
        if k is None:
            self.fail("a table key is nil, which Lua does not allow")
        if isinstance(k, np.ndarray):
            raise UnsupportedError("a tensor used as a table key is not supported", path=self.stream.path,
                                   where=self.stream.where(self.stream.pos))
        return k

    # -- one object: plain values come back at once, nested ones as a generator for the driver ------
    def begin(self):
        s = self.stream
        start = s.pos
        tag = s.read_int("type tag")
        if tag == NIL:
            return None
        if tag == NUMBER:
            return _number(s.read_double())
        if tag == BOOLEAN:
            v = s.read_int("boolean")
            if v not in (0, 1):
                self.fail(f"boolean must be 0 or 1, found {v}", start)
            return v == 1
        if tag == STRING:
            b = s.read_chars(s.read_int("string length"))
            try:
                return b.decode("utf-8")
            except UnicodeDecodeError:
                return b
        if tag == FUNCTION:
            return self._function(None)
        if tag in (TABLE, TORCH, RECUR_FUNCTION, LEGACY_RECUR_FUNCTION):
            index = s.read_int("object index")
            if index in self.memo:
                return self.memo[index]
            if index < 1 or (self.strict_refs and index != self.next_index):
                self.fail(f"{_TAG_NAMES[tag]} refers to object #{index}, which is not defined yet "
                          f"(the next new object would be #{self.next_index})", start)
            self.next_index = max(self.next_index, index + 1)
            if tag == TABLE:
                return self._table(index)
            if tag == TORCH:
                return self._torch(index, start)
            return self._function(index)
        self.fail(f"unknown type tag {tag} (expected 0-8: {', '.join(_TAG_NAMES)})", start)

    def _table(self, index):
        s = self.stream
        table = self.memo[index] = LuaTable()
        n = s.read_int("table size")
        s.check_count(n, 2 * s.min_number_bytes, "table entries")
        for _ in range(n):
            key = yield _CHILD
            value = yield _CHILD
            table[self.key(key)] = value
        return table

    def _function(self, index):
        s = self.stream
        code = s.read_chars(s.read_int("function size"), "function bytecode")
        fn = LuaFunction(code)
        if index is not None:
            self.memo[index] = fn
        fn.upvalues = yield _CHILD
        return fn

    def _class_name(self):
        s = self.stream
        pos = s.pos
        raw = s.read_chars(s.read_int("class name length"), "class name")
        version = 0
        if raw.startswith(b"V "):
            try:
                version = int(raw[2:])
            except ValueError:
                self.fail(f"bad class version string {raw[:40]!r}, expected 'V <number>'", pos)
            pos = s.pos
            raw = s.read_chars(s.read_int("class name length"), "class name")
        name = raw.decode("latin-1")
        if not _CLASS_NAME.match(name):
            self.fail(f"bad torch class name {raw[:40]!r}", pos)
        return name, version

    def _torch(self, index, start):
        name, version = self._class_name()
        kind = tensor_class(name)
        if kind is not None:
            code, what = kind
            if what == "Storage":
                return self._storage(index, name, code)  # plain value: no nested objects
            return (yield from self._tensor(index, name, code, start))
        obj = self.memo[index] = TorchObject(name, version)
        custom = CLASS_READERS.get(name)
        if custom is not None:
            yield from custom(self, obj)
        else:
            obj.fields = yield _CHILD
        return obj

    def _storage(self, index, name, code):
        s = self.stream
        n = s.read_long(f"{name} size")
        arr = s.read_array(code, n, name)
        st = T7Storage(name, arr)
        value = st if self.raw else arr
        self.storages[id(value)] = st
        self.memo[index] = value
        return value

    def _tensor(self, index, name, code, start):
        s = self.stream
        ndim = s.read_int(f"{name} dimension count")
        if not 0 <= ndim <= _MAX_DIMS:
            self.fail(f"{name} with {ndim} dimensions (expected 0-{_MAX_DIMS})", start)
        shape = s.read_longs(ndim, f"{name} sizes")
        strides = s.read_longs(ndim, f"{name} strides")
        offset = s.read_long(f"{name} storage offset")
        where = s.pos
        storage_value = yield _CHILD
        storage = None
        if storage_value is not None:
            storage = self.storages.get(id(storage_value))
            if storage is None or storage_value is not (storage if self.raw else storage.array):
                self.fail(f"{name} must be followed by a storage, found {type(storage_value).__name__}", where)
            if tensor_class(storage.typename)[0] != code:
                self.fail(f"{name} cannot use a {storage.typename}", where)
        arr = self._view(name, code, shape, strides, offset, storage, start)
        value = T7Tensor(name, arr.dtype, shape, strides, offset, storage, arr) if self.raw else arr
        self.memo[index] = value
        return value

    def _view(self, name, code, shape, strides, offset, storage, start):
        if any(n < 0 for n in shape):
            self.fail(f"{name} has a negative size {shape}", start)
        if any(n > 1 << 40 for n in shape):
            self.fail(f"{name} has an absurd size {shape}", start)
        if any(st < 0 for st in strides):
            self.fail(f"{name} has a negative stride {strides}", start)
        count = 1
        for n in shape:
            count *= n
        dtype = np.dtype("i8" if code == "long" else code)
        if ndim_zero := not shape:
            count = 0  # a 0-dimensional Torch7 tensor is empty
        if count == 0:
            return np.empty((0,) if ndim_zero else shape, dtype=dtype)
        if storage is None:
            self.fail(f"{name} of shape {tuple(shape)} has no storage", start)
        base = storage.array
        last = offset - 1 + sum((n - 1) * st for n, st in zip(shape, strides))
        if offset < 1 or last >= len(base):
            self.fail(f"{name} of shape {tuple(shape)}, strides {tuple(strides)}, offset {offset} reaches "
                      f"element {last + 1} of a storage of {len(base)}", start)
        if count > max(len(base), 1) and count > 1 << 27:
            self.fail(f"{name} of shape {tuple(shape)} repeats its {len(base)} stored elements {count} times "
                      "(absurd size)", start)
        byte_strides = [st * base.itemsize if n > 1 else 0 for n, st in zip(shape, strides)]
        view = np.lib.stride_tricks.as_strided(base[offset - 1:], shape=shape, strides=byte_strides,
                                               writeable=base.flags.writeable)
        return view


def _is_pending(x):
    return isinstance(x, types.GeneratorType)
