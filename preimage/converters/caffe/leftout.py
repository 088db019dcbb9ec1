"""Conversion up to what works: which layers are left out of the ONNX model, and why.

A layer is left out when it cannot be converted: a field or enum value in it that no known schema has
(the prototxt reader skipped it), a type preimage does not know, a type it knows but does not convert
(``LEFT_OUT_TYPES``: detection heads and the like), or a case of a known type that has no ONNX form
(the emitter raised :class:`UnsupportedError`). Every later layer that needs one of its tops is left
out too, blocked by it. What is left out is listed in the model's ``preimage.unsupported`` metadata:
``[{name, type, reason, line, blocked_by, tops}]`` (``blocked_by``: the layer that could not be
converted, the layer itself for the root of a chain). With ``strict=True`` the first such layer fails
the conversion instead.
"""
import os

from ...errors import FormatError, UnsupportedError
from .layers import DATA_TYPES, DROPPED_TYPES, EMITTERS, supported_types

# Types known from the forks whose computation preimage does not convert (docs/caffe.md, "Caffe forks").
LEFT_OUT_TYPES = {
    "DetectionOutput": "SSD's DetectionOutput (box decoding and non-maximum suppression) is not converted; "
                       "its inputs stay outputs of the model",
    "Region": "the YOLO ports' Region layer (box decoding) is not converted",
    "ROIPooling": "ROIPooling needs region proposals at run time; it is not converted",
    "Proposal": "Faster R-CNN's Proposal layer (non-maximum suppression) is not converted",
    "Python": "a Python layer runs code that is not in the model files",
}


class LeftOut:
    """Book-keeping while :func:`convert._build` walks the layers (``current``/``available``: its blob
    maps, updated in place when a layer is left out)."""

    def __init__(self, spec, strict, current, available):
        self.spec, self.strict = spec, strict
        self.current, self.available = current, available
        self.blocked = {}  # blob -> the root layer that keeps it from being computed
        self.entries = []
        self.computed = 0  # layers converted (not counting data layers)
        self.first_error = None
        self.notices = []  # warnings that are not about left-out layers

    def _line(self, layer):
        return self.spec.layer_lines.get(layer.name)

    def check(self, layer, index, b):
        """True when ``layer`` is left out (recorded); raises in strict mode."""
        t = layer.type
        if t in DROPPED_TYPES:
            return False
        if t in LEFT_OUT_TYPES and not (t == "Python" and not len(layer.bottom)):
            return self._root(layer, index, LEFT_OUT_TYPES[t], b.error(LEFT_OUT_TYPES[t], UnsupportedError))
        if t not in EMITTERS and t not in DATA_TYPES:
            err = UnsupportedError(f"unknown layer type '{t}' (supported: {', '.join(supported_types())})",
                                   path=self.spec.path, where=f"layer '{layer.name}'" + (
                                       f" (line {self._line(layer)})" if self._line(layer) else ""))
            return self._root(layer, index, f"unknown layer type '{t}'", err)
        if layer.name in self.spec.unknown and t in DATA_TYPES:  # how data is loaded: not the net's computation
            for issue in self.spec.unknown.pop(layer.name):
                self.notices.append(f"{os.path.basename(self.spec.path)}:{issue.line}:{issue.column}: ignored "
                                    f"{issue.what} in data layer '{layer.name}' (no known Caffe schema has it)")
        if layer.name in self.spec.unknown:
            issue = self.spec.unknown[layer.name][0]
            err = FormatError(f"prototxt syntax error: {issue.message}", path=self.spec.path,
                              where=f"{issue.line}:{issue.column}")
            reason = f"{issue.what} (line {issue.line}:{issue.column}) is in no known Caffe schema (BVLC or the forks')"
            return self._root(layer, index, reason, err)
        for bottom in layer.bottom:
            if bottom in self.blocked:
                root = self.blocked[bottom]
                self._record(layer, index, f"needs blob '{bottom}', which left-out layer '{root}' produces", root)
                return True
        return False

    def leave_out(self, layer, index, error):
        """An emitter found no ONNX form for this case of a known layer type."""
        self._root(layer, index, str(error).split(": ", 1)[-1] if ": " in str(error) else str(error), error)

    def _root(self, layer, index, reason, error):
        if self.strict:
            raise error
        if self.first_error is None:
            self.first_error = error
        self._record(layer, index, reason, layer.name)
        return True

    def _record(self, layer, index, reason, root):
        for top in layer.top:
            self.blocked[top] = root
            self.current.pop(top, None)  # its final content is not computed
            if top in self.available:
                self.available.remove(top)
        self.entries.append({"name": layer.name, "type": layer.type, "reason": reason, "line": self._line(layer),
                             "blocked_by": root, "tops": list(layer.top), "index": index})

    def finish(self, notices):
        """Warnings, one per layer that could not be converted; a net with nothing else fails."""
        notices.extend(self.notices)
        if not self.entries:
            return
        until = self.spec.until
        hit = next((e for e in self.entries if until is not None and (e["name"] == until or until in e["tops"])), None)
        if hit is not None:
            root = next(e for e in self.entries if e["name"] == hit["blocked_by"])
            raise FormatError(f"--until {until}: layer '{hit['name']}' cannot be converted: layer '{root['name']}' "
                              f"({root['type']}) blocks it: {root['reason']}", path=self.spec.path)
        if self.computed == 0:
            raise self.first_error
        base = os.path.basename(self.spec.path)
        for e in self.entries:
            if e["blocked_by"] != e["name"]:
                continue
            deps = [d["name"] for d in self.entries if d["blocked_by"] == e["name"] and d is not e]
            where = f"{base}:{e['line']}" if e["line"] else base
            more = ""
            if deps:
                more = (f"; left out with it, as they need it: {', '.join(deps[:6])}"
                        + (f" and {len(deps) - 6} more" if len(deps) > 6 else ""))
            notices.append(f"left out layer '{e['name']}' ({e['type']}, {where}): {e['reason']}{more}")


def needed_layers(spec, until):
    """The layers (in order) that computing layer or blob ``until`` needs; a PreimageError naming what
    exists when there is no such layer or blob."""
    layers = list(spec.layers)
    target = next((i for i, l in enumerate(layers) if l.name == until), None)
    if target is None:  # a blob: its last producer
        target = next((i for i in range(len(layers) - 1, -1, -1) if until in layers[i].top), None)
    if target is None:
        if until in spec.inputs:
            raise FormatError(f"--until {until}: that is an input of the net; name a layer", path=spec.path)
        names = [l.name for l in layers]
        shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
        raise FormatError(f"--until {until}: the net has no layer or blob of that name (layers: {shown})",
                          path=spec.path)
    need = set(layers[target].bottom)
    keep = [target]
    for i in range(target - 1, -1, -1):
        tops = set(layers[i].top)
        if tops & need:
            keep.append(i)
            need -= tops
            need |= set(layers[i].bottom)
    return [layers[i] for i in sorted(keep)]
