"""A test-only writer of Torch7 .t7 files, written from the format description alone.

It shares no code with preimage's reader (it must not import preimage), so reading back what it
writes checks the reader against an independent statement of the format:

    object  := int tag, body
    nil 0 | number 1: double | string 2: int n, n bytes | boolean 5: int 0/1
    table 3: int index, then on first occurrence: int n, n x (key object, value object)
    torch 4: int index, then on first occurrence: string "V <version>", string class name, class data
    recursive function 8: int index, then on first occurrence: int n, n bytes of bytecode, upvalues
    tensor data: int ndim, ndim longs sizes, ndim longs strides, long 1-based offset, storage object
    storage data: long n, n elements;  tds.Hash: long n, n (key, value);  tds.Vec: long n, n values

Binary mode is little-endian (int 4 bytes, long ``long_size`` bytes). ASCII mode writes each number
group as decimal text separated by spaces and ended by a newline; strings and byte/char storages are
raw bytes followed by a newline (nothing at all for an empty group).
"""
import struct

import numpy as np

_ELEM = {"Byte": "u1", "Char": "i1", "Short": "i2", "Int": "i4", "Long": "i8", "Float": "f4", "Double": "f8",
         "Half": "f2", "Cuda": "f4"}


def _element_of(typename):
    """'torch.CudaLongTensor' -> 'Long'; 'torch.CudaTensor' -> 'Cuda' (float)."""
    core = typename.split(".", 1)[1]
    for suffix in ("Tensor", "Storage"):
        if core.endswith(suffix):
            core = core[: -len(suffix)]
    if core.startswith("Cuda") and core != "Cuda":
        core = core[4:]
    return core


class Obj:
    """A torch object of class ``typename`` whose data is a table of ``fields``."""

    def __init__(self, typename, fields=None, version=1):
        self.typename, self.fields, self.version = typename, fields if fields is not None else {}, version


class Storage:
    def __init__(self, typename, values):
        self.typename = typename
        self.values = np.asarray(values, dtype=_ELEM[_element_of(typename)])


class Tensor:
    def __init__(self, typename, shape, strides, offset, storage):
        self.typename, self.shape, self.strides, self.offset, self.storage = typename, shape, strides, offset, storage


class Func:
    def __init__(self, bytecode, upvalues=None):
        self.bytecode, self.upvalues = bytecode, upvalues if upvalues is not None else {}


class TdsHash:
    def __init__(self, items):
        self.items = items


class TdsVec:
    def __init__(self, values):
        self.values = values


_NP_NAME = {"float64": "Double", "float32": "Float", "int64": "Long", "int32": "Int", "int16": "Short",
            "int8": "Char", "uint8": "Byte", "float16": "Half"}


def tensor(array, typename=None):
    """A contiguous tensor with its own storage holding ``array``."""
    a = np.ascontiguousarray(array)
    name = _NP_NAME[a.dtype.name]
    typename = typename or f"torch.{name}Tensor"
    storage_name = typename.replace("Tensor", "Storage")
    strides = [s // a.itemsize for s in a.strides] if a.ndim else []
    return Tensor(typename, list(a.shape), strides, 1, Storage(storage_name, a.reshape(-1)))


class Writer:
    def __init__(self, ascii=False, long_size=8):
        self.ascii, self.long_size = ascii, long_size
        self.out = bytearray()
        self.index = {}
        self.keep = []  # memoised objects stay alive, so their ids are never reused by temporaries

    # -- primitive groups
    def ints(self, values, fmt="i"):
        values = list(values)
        if self.ascii:
            if values:
                self.out += (" ".join(str(int(v)) for v in values) + "\n").encode()
        else:
            self.out += struct.pack(f"<{len(values)}{fmt}", *values)

    def longs(self, values):
        self.ints(values, "q" if self.long_size == 8 else "i")

    def double(self, v):
        if self.ascii:
            self.out += (("%.17g" % v) + "\n").encode()
        else:
            self.out += struct.pack("<d", v)

    def chars(self, b):
        self.ints([len(b)])
        self.out += b
        if self.ascii and b:
            self.out += b"\n"

    def elements(self, arr, element):
        if element in ("Byte", "Char"):
            self.out += arr.tobytes()
            if self.ascii and arr.size:
                self.out += b"\n"
        elif self.ascii:
            if arr.size:
                if arr.dtype.kind == "f":
                    text = " ".join("%.17g" % float(v) for v in arr)
                else:
                    text = " ".join(str(int(v)) for v in arr)
                self.out += (text + "\n").encode()
        elif element == "Long":
            self.longs(arr.tolist())
        else:
            self.out += arr.astype("<" + _ELEM[element]).tobytes()

    # -- objects
    def _memo(self, obj, tag):
        """Write tag and index; True when ``obj`` was written before (only the index is needed)."""
        self.ints([tag])
        key = id(obj)
        if key in self.index:
            self.ints([self.index[key]])
            return True
        self.index[key] = len(self.index) + 1
        self.keep.append(obj)
        self.ints([self.index[key]])
        return False

    def _class(self, typename, version):
        self.chars(f"V {version}".encode())
        self.chars(typename.encode())

    def obj(self, o):
        if o is None:
            self.ints([0])
        elif isinstance(o, bool):
            self.ints([5])
            self.ints([1 if o else 0])
        elif isinstance(o, (int, float)):
            self.ints([1])
            self.double(float(o))
        elif isinstance(o, (str, bytes)):
            self.ints([2])
            self.chars(o.encode() if isinstance(o, str) else o)
        elif isinstance(o, np.ndarray):
            self.obj(tensor(o))
        elif isinstance(o, dict):
            if not self._memo(o, 3):
                self.ints([len(o)])
                for k, v in o.items():
                    self.obj(k)
                    self.obj(v)
        elif isinstance(o, list):
            raise TypeError("use a dict {1: a, 2: b} for Lua lists (lists are not memoised by identity)")
        elif isinstance(o, Func):
            if not self._memo(o, 8):
                self.chars(o.bytecode)
                self.obj(o.upvalues)
        elif isinstance(o, Storage):
            if not self._memo(o, 4):
                self._class(o.typename, 1)
                self.longs([o.values.size])
                self.elements(o.values, _element_of(o.typename))
        elif isinstance(o, Tensor):
            if not self._memo(o, 4):
                self._class(o.typename, 1)
                self.ints([len(o.shape)])
                self.longs(o.shape)
                self.longs(o.strides)
                self.longs([o.offset])
                self.obj(o.storage)
        elif isinstance(o, TdsHash):
            if not self._memo(o, 4):
                self._class("tds.Hash", 0)
                self.longs([len(o.items)])
                for k, v in o.items.items():
                    self.obj(k)
                    self.obj(v)
        elif isinstance(o, TdsVec):
            if not self._memo(o, 4):
                self._class("tds.Vec", 0)
                self.longs([len(o.values)])
                for v in o.values:
                    self.obj(v)
        elif isinstance(o, Obj):
            if not self._memo(o, 4):
                self._class(o.typename, o.version)
                self.obj(o.fields)
        else:
            raise TypeError(f"cannot write {type(o).__name__}")


def dumps(obj, ascii=False, long_size=8):
    w = Writer(ascii=ascii, long_size=long_size)
    w.obj(obj)
    return bytes(w.out)


def save(path, obj, ascii=False, long_size=8):
    with open(path, "wb") as f:
        f.write(dumps(obj, ascii=ascii, long_size=long_size))
    return path


def lua_list(*items):
    return {i + 1: v for i, v in enumerate(items)}


def module(typename, **fields):
    """An nn module object, with the bookkeeping fields Torch7 saves too."""
    fields.setdefault("_type", "torch.DoubleTensor")
    fields.setdefault("train", False)
    return Obj(typename, dict(fields))


def sequential(*mods, typename="nn.Sequential", **fields):
    return module(typename, modules=lua_list(*mods), **fields)
