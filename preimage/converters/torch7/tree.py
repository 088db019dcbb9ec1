"""A readable outline of a .t7 object tree: classes, fields, tensor shapes and dtypes, no values."""
import numpy as np

from .types import LuaFunction, LuaTable, T7Storage, T7Tensor, TorchObject

_SKIP_DEFAULT = ()


def _sort_key(k):
    return (0, k, "") if isinstance(k, (int, float)) and not isinstance(k, bool) else (1, 0, str(k))


def _short(v):
    if isinstance(v, str):
        return repr(v if len(v) <= 60 else v[:57] + "...")
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return repr(v)


def _key_label(k, seen):
    if isinstance(k, bool) or not isinstance(k, (int, float, str, bytes)):
        if id(k) in seen:
            return f"[key: {seen[id(k)]}]"
        return f"[key: {k.typename}]" if isinstance(k, TorchObject) else f"[key: {type(k).__name__}]"
    if isinstance(k, (int, float)):
        return f"[{k}]"
    return k if isinstance(k, str) else _short(k)


def outline(root, *, max_depth=None, max_items=50, hide=_SKIP_DEFAULT):
    """Lines describing ``root`` (read with ``read_t7(..., tensors="raw")``).

    An object met a second time (shared or self-referencing) is shown as ``<same as ... above>``.
    ``hide``: field names to leave out (e.g. ``gradInput``, ``output`` buffers).
    """
    lines = []
    seen = {}
    storages = {}  # id -> number, so that tensors sharing a storage show it

    def label(v):
        if isinstance(v, T7Tensor):
            shared = ""
            if v.storage is not None:
                n = storages.setdefault(id(v.storage), len(storages) + 1)
                shared = f", storage #{n} {v.storage.typename}[{len(v.storage)}]" + (
                    f" from element {v.offset}" if v.offset != 1 else "")
            return f"{v.typename} {v.dtype} {list(v.shape)}{shared}"
        if isinstance(v, T7Storage):
            return f"{v.typename} {v.dtype} [{len(v)}]"
        if isinstance(v, np.ndarray):
            return f"array {v.dtype} {list(v.shape)}"
        if isinstance(v, LuaFunction):
            return f"Lua function ({len(v.bytecode)} bytes of bytecode, not run)"
        return None

    def walk(v, name, path, indent, depth):
        pad = "  " * indent
        simple = label(v)
        if simple is not None:
            lines.append(f"{pad}{name}{simple}")
            return
        if not isinstance(v, (LuaTable, TorchObject)):
            lines.append(f"{pad}{name}{_short(v)}")
            return
        if id(v) in seen:
            lines.append(f"{pad}{name}<same as {seen[id(v)]} above>")
            return
        table = v if isinstance(v, LuaTable) else v.fields
        if isinstance(v, TorchObject):
            head = f"{v.typename}" + (f" (version {v.version})" if v.version else "")
        else:
            head = f"table ({len(v)} entries)"
        seen[id(v)] = path
        lines.append(f"{pad}{name}{head}")
        if max_depth is not None and depth >= max_depth:
            return
        if isinstance(v, TorchObject) and not isinstance(table, LuaTable):
            if table is not None:
                walk(table, "data: ", path + ".data", indent + 1, depth + 1)
            return
        keys = sorted(table, key=_sort_key)
        shown = [k for k in keys if k not in hide]
        for k in shown[:max_items]:
            key = _key_label(k, seen)
            sub = key if key.startswith("[") else f".{key}"
            walk(table[k], f"{key}: ", path + sub, indent + 1, depth + 1)
        if len(shown) > max_items:
            lines.append(f"{pad}  ... {len(shown) - max_items} more entries")

    walk(root, "", "root", 0, 0)
    return lines
