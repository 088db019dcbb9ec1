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


MODULE_PREFIXES = ("nn.", "cudnn.", "cunn.", "inn.", "fbnn.", "nngraph.")
# nngraph's bookkeeping inside a gModule: the node graph is summarised as one line per forward node instead
_GRAPH_FIELDS = ("forwardnodes", "backwardnodes", "fg", "bg", "innode", "outnode", "modules")


def _is_module(v):
    return isinstance(v, TorchObject) and v.typename.startswith(MODULE_PREFIXES) and isinstance(v.fields, LuaTable)


def summary(root, *, max_depth=None, max_items=50, hide=_SKIP_DEFAULT):
    """A module summary of ``root`` (read with ``read_t7(..., tensors="raw")``): per nn module, one line
    with its class and settings, then its tensors, then its child modules; an nngraph gModule lists its
    forward nodes (module and inputs) rather than the node objects. :func:`outline` has everything."""
    lines = []
    storages = {}

    def tensor(v):
        n = storages.setdefault(id(v.storage), len(storages) + 1) if v.storage is not None else None
        shared = f", storage #{n}" if n is not None else ""
        return f"{v.typename} {v.dtype} {list(v.shape)}{shared}"

    def module(m, name, indent, depth, suffix=""):
        pad = "  " * indent
        table = m.fields
        settings, tensors, other = [], [], 0
        for k in sorted(table, key=_sort_key):
            v = table[k]
            if k in hide or (m.typename == "nn.gModule" and k in _GRAPH_FIELDS) or k == "modules":
                continue
            if isinstance(v, (bool, int, float, str)) and not str(k).startswith("_"):
                settings.append(f"{k}={v if not isinstance(v, str) else _short(v)}")
            elif isinstance(v, T7Tensor):
                tensors.append(f"{pad}  {k}: {tensor(v)}")
            elif not _is_module(v):
                other += 1
        extra = f"  ({other} more field(s): --full)" if other else ""
        lines.append(f"{pad}{name}{m.typename}{suffix}" + (f"  {' '.join(settings)}" if settings else "") + extra)
        lines.extend(tensors)
        if max_depth is not None and depth >= max_depth:
            return
        if m.typename == "nn.gModule":
            return graph(m, indent + 1, depth + 1)
        children = table.get("modules")
        kids = children.to_list() if isinstance(children, LuaTable) else []
        kids += [table[k] for k in sorted(table, key=_sort_key) if k != "modules" and _is_module(table[k])]
        for i, c in enumerate(kids[:max_items]):
            if _is_module(c):
                module(c, f"[{i + 1}] ", indent + 1, depth + 1)
        if len(kids) > max_items:
            lines.append(f"{pad}  ... {len(kids) - max_items} more modules")

    def graph(g, indent, depth):
        order = g.get("forwardnodes")
        nodes = order.to_list() if isinstance(order, LuaTable) else []
        pos = {id(n.get("data")): i + 1 for i, n in enumerate(nodes) if isinstance(n, TorchObject)}
        pad = "  " * indent
        lines.append(f"{pad}graph: {len(nodes)} forward nodes (node: module <- input nodes)")
        for i, n in enumerate(nodes[:max_items]):
            data = n.get("data") if isinstance(n, TorchObject) else None
            data = data if isinstance(data, LuaTable) else LuaTable()
            parents = data.get("mapindex")
            src = [str(pos.get(id(p), "?")) for p in (parents.to_list() if isinstance(parents, LuaTable) else [])]
            sel = f" element {data['selectindex']}" if data.get("selectindex") else ""
            arrow = f" <- {', '.join(src)}{sel}" if src else ""
            for field, label in (("innode", " (input)"), ("outnode", " (output)")):
                end = g.get(field)
                arrow += label if isinstance(end, TorchObject) and end.get("data") is n.get("data") else ""
            m = data.get("module")
            if _is_module(m):
                module(m, f"[{i + 1}] ", indent, depth, suffix=arrow)
            else:
                lines.append(f"{pad}[{i + 1}] (no module){arrow}")
        if len(nodes) > max_items:
            lines.append(f"{pad}... {len(nodes) - max_items} more nodes")

    if _is_module(root):
        module(root, "", 0, 0)
    elif isinstance(root, LuaTable):
        lines.append(f"table ({len(root)} entries)")
        for k in sorted(root, key=_sort_key):
            v = root[k]
            if _is_module(v):
                module(v, f"{_key_label(k, {})}: ", 1, 1)
            elif isinstance(v, T7Tensor):
                lines.append(f"  {_key_label(k, {})}: {tensor(v)}")
            elif isinstance(v, (bool, int, float, str, bytes)) or v is None:
                lines.append(f"  {_key_label(k, {})}: {_short(v)}")
            else:
                lines.append(f"  {_key_label(k, {})}: {getattr(v, 'typename', type(v).__name__)} (--full)")
    else:
        return outline(root, max_depth=max_depth, max_items=max_items, hide=hide)
    return lines
