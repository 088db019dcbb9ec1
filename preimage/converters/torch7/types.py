"""Python values for what a .t7 file holds: Lua tables, torch objects, functions, raw tensors.

Mapping (see docs/torch7.md):

- nil -> ``None``; boolean -> ``bool``; string -> ``str`` (``bytes`` when not UTF-8)
- number -> ``int`` when it is integral (Lua has one number type), else ``float``
- table -> :class:`LuaTable` (a ``dict``; hashable by identity so tables can be keys, as in Lua)
- torch.*Tensor / torch.*Storage -> NumPy arrays (views into one storage array when they share it),
  or :class:`T7Tensor` / :class:`T7Storage` when read with ``tensors="raw"``
- any other torch class (nn modules, tds containers, user classes) -> :class:`TorchObject`
- a serialised Lua function -> :class:`LuaFunction` (bytecode kept as opaque bytes, never run)
"""
import re

import numpy as np


class LuaTable(dict):
    """A Lua table. Keys 1..n are the list part; ``to_list()`` returns it."""

    __hash__ = object.__hash__  # tables are identities in Lua; lets a table be a key of another

    def is_list(self):
        ints = all(isinstance(k, int) and not isinstance(k, bool) for k in self)
        return ints and set(self) == set(range(1, len(self) + 1))

    def to_list(self):
        """Values at keys 1, 2, ... up to the first missing key (Lua's ``ipairs``)."""
        out, i = [], 1
        while i in self:
            out.append(self[i])
            i += 1
        return out

    def __repr__(self):
        return f"LuaTable({dict.__repr__(self)})"


class TorchObject:
    """An object of a torch class that is neither a tensor nor a storage (nn modules, tds, user classes).

    ``typename`` is the class name (``nn.SpatialConvolution``), ``version`` the class's serialisation
    version, ``fields`` what the class wrote (usually a :class:`LuaTable` of its fields). Item access
    and ``get`` go to the fields: ``conv["weight"]``, ``conv.get("bias")``.
    """

    __hash__ = object.__hash__

    def __init__(self, typename, version=0, fields=None):
        self.typename = typename
        self.version = version
        self.fields = fields

    def _table(self):
        return self.fields if isinstance(self.fields, dict) else {}

    def __getitem__(self, key):
        return self._table()[key]

    def __contains__(self, key):
        return key in self._table()

    def get(self, key, default=None):
        return self._table().get(key, default)

    def keys(self):
        return self._table().keys()

    def __repr__(self):
        return f"TorchObject({self.typename!r}, version={self.version})"


class LuaFunction:
    """A serialised Lua function: bytecode as opaque bytes plus its upvalues. preimage never runs it."""

    __hash__ = object.__hash__

    def __init__(self, bytecode, upvalues=None):
        self.bytecode = bytecode
        self.upvalues = upvalues

    def __repr__(self):
        return f"LuaFunction({len(self.bytecode)} bytes of bytecode)"


class T7Storage:
    """A torch storage as stored: class name and its elements as a 1-D NumPy array."""

    __hash__ = object.__hash__

    def __init__(self, typename, array):
        self.typename = typename
        self.array = array

    @property
    def dtype(self):
        return self.array.dtype

    def __len__(self):
        return len(self.array)

    def __repr__(self):
        return f"T7Storage({self.typename!r}, size={len(self.array)})"


class T7Tensor:
    """A torch tensor as stored: class name, sizes, strides (elements), 1-based offset, storage."""

    __hash__ = object.__hash__

    def __init__(self, typename, dtype, shape, strides, offset, storage, array):
        self.typename = typename
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.strides = tuple(strides)
        self.offset = offset
        self.storage = storage
        self._array = array

    def numpy(self):
        """The tensor's values as a NumPy array (a view into the storage's array when possible)."""
        return self._array

    def __repr__(self):
        return f"T7Tensor({self.typename!r}, {self.dtype}, shape={self.shape})"


# Element types. Cuda* classes are stored on the host in the same layout as their CPU twins;
# torch.CudaTensor / torch.CudaStorage hold floats. "Long" elements take the file's long size.
_ELEMENT = {
    "Byte": "u1", "Char": "i1", "Short": "i2", "Int": "i4", "Long": "long",
    "Float": "f4", "Double": "f8", "Half": "f2", "": "f4",
}
_CLASS_RE = re.compile(r"^torch\.(Cuda)?(Byte|Char|Short|Int|Long|Float|Double|Half)?(Tensor|Storage)$")


def tensor_class(typename):
    """``(element, kind)`` for a torch tensor/storage class name, e.g. ``("f4", "Tensor")``, else None.

    ``element`` is a NumPy type code, or ``"long"`` (its size depends on the file).
    """
    m = _CLASS_RE.match(typename)
    if not m:
        return None
    cuda, elem, kind = m.groups()
    if elem is None and not cuda:
        return None  # "torch.Tensor" is not a concrete class
    return _ELEMENT[elem or ""], kind
