"""The ``preimage.*`` metadata entries of a converted ONNX model, read through one checking function.

Every reader of these entries (layer tables, receptive fields, name resolution, preprocessing, the
inversion model) calls :func:`read_metadata`, which parses the JSON and checks its structure, so that a
damaged or hand-edited entry gives one line naming the file and the entry (a :class:`FormatError`)
instead of a ``JSONDecodeError`` or a ``TypeError`` deep in a reader. :func:`check_metadata` checks
every known entry at once; the model readers call it when they open a file, so the error names it.

Known entries and their shapes (docs/contracts.md):

``preimage.blobs``       ``{blob: value name}``
``preimage.inputs``      ``{input: [dim, ...]}``, a dim a positive int (or null / a name when free)
``preimage.layers``      ``[{name, type, value | values, bottoms?, tops?}, ...]``
``preimage.preprocess``  an object (see ``preprocess.py``), its known keys typed
``preimage.source``      an object
``preimage.fixed_size``  ``{layers: [name, ...], inputs: {input: [H, W]}}``

Any other ``preimage.*`` entry must be valid JSON. An empty entry reads as absent (``default``).
This module imports only the standard library and :mod:`preimage.errors`.
"""
import json
import math

from ..errors import FormatError

PREFIX = "preimage."


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _dims(v):
    return isinstance(v, list) and all((_is_int(d) and d > 0) or d is None or isinstance(d, str) for d in v)


def _blobs(v):
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        return "an object {blob: value name} of strings"


def _inputs(v):
    if not isinstance(v, dict) or not all(_dims(s) for s in v.values()):
        return "an object {input: [dims]} with positive integer dims"


def _layers(v):
    if not isinstance(v, list):
        return "a list of layer objects"
    for i, l in enumerate(v):
        if not isinstance(l, dict) or not isinstance(l.get("name"), str) or not isinstance(l.get("type"), str):
            return f"layer objects with a string name and type (item {i} is {_short(l)})"
        values = l.get("values")
        if values is not None and not (_str_list(values) and values):
            return f"a non-empty list of strings as 'values' (layer {l['name']!r})"
        if values is None and not isinstance(l.get("value"), str):
            return f"a string 'value' or a list 'values' (layer {l['name']!r})"
        for k in ("bottoms", "tops"):
            if k in l and not _str_list(l[k]):
                return f"a list of strings as {k!r} (layer {l['name']!r})"


PREPROCESS_KEYS = {
    "input": (lambda x: isinstance(x, str), "a string"),
    "channel_order": (lambda x: isinstance(x, str) and x.upper() in ("BGR", "RGB"), "'BGR' or 'RGB'"),
    "mean": (lambda x: isinstance(x, list) and len(x) > 0 and all(_is_num(m) for m in x), "a list of numbers"),
    "mean_file": (lambda x: isinstance(x, str) and x != "", "a file name"),
    "raw_scale": (lambda x: _is_num(x) and x > 0, "a positive number"),
    "scale": (lambda x: _is_num(x) and x != 0, "a non-zero number"),
    "input_size": (lambda x: isinstance(x, list) and len(x) == 2 and all(_is_int(d) and d > 0 for d in x),
                   "[H, W], positive integers"),
    "assumed": (_str_list, "a list of key names"),
}


NULLABLE = {"input", "mean", "mean_file", "input_size"}  # null: not given (the other keys have defaults)


def _preprocess(v):
    if not isinstance(v, dict):
        return "an object"
    for k, (ok, what) in PREPROCESS_KEYS.items():
        if k in v and not (v[k] is None and k in NULLABLE) and not ok(v[k]):
            return f"{what} as {k!r} (found {_short(v[k])})"


def _source(v):
    if not isinstance(v, dict):
        return "an object"


def _fixed_size(v):
    if not isinstance(v, dict) or not _str_list(v.get("layers", [])):
        return "an object with a list of layer names 'layers'"
    ins = v.get("inputs", {})
    if not isinstance(ins, dict) or not all(isinstance(s, list) and all(_is_int(d) and d > 0 for d in s)
                                            for s in ins.values()):
        return "an object {input: [H, W]} as 'inputs'"


def _unsupported(v):
    """The layers left out of a conversion: [{name, type, reason, blocked_by?, index?}, ...]."""
    if not isinstance(v, list) or not all(
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("name", "type", "reason"))
            and (e.get("index") is None or _is_int(e["index"]))
            and (e.get("blocked_by") is None or isinstance(e["blocked_by"], str)) for e in v):
        return "a list of objects {name, type, reason} (the layers left out)"


CHECKS = {"preimage.blobs": _blobs, "preimage.inputs": _inputs, "preimage.layers": _layers,
          "preimage.preprocess": _preprocess, "preimage.source": _source, "preimage.fixed_size": _fixed_size,
          "preimage.unsupported": _unsupported}


def _short(v, n=60):
    text = json.dumps(v, default=lambda o: type(o).__name__) if not isinstance(v, str) else repr(v)
    return text if len(text) <= n else text[:n] + "..."


def _text(s):
    return s.decode("utf-8", "replace") if isinstance(s, bytes) else s  # protobuf gives bytes for invalid UTF-8


def problem_of(key, value):
    """What is wrong with the parsed value of entry ``key`` (None when it is well formed); for the same
    data kept elsewhere (a decoder checkpoint's ``preprocess`` is a ``preimage.preprocess`` value)."""
    check = CHECKS.get(key)
    return check(value) if check is not None else None


def raw_entries(model):
    """``{key: text}`` of a ModelProto's metadata_props (the last of a repeated key wins)."""
    return {_text(p.key): _text(p.value) for p in model.metadata_props}


def parse_entry(key, text, path=None):
    """The checked value of one entry's text (None for an empty text); FormatError when damaged."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0][:80] if isinstance(e, ValueError) else "nested too deeply"
        raise FormatError(f"metadata entry {key!r} is not valid JSON ({msg}); convert the model again",
                          path=path) from None
    problem = problem_of(key, value)
    if problem:
        raise FormatError(f"metadata entry {key!r} is damaged: expected {problem}; convert the model again",
                          path=path)
    return value


def read_metadata(model, key, default=None, path=None):
    """The parsed, checked value of ``model``'s metadata entry ``key`` (``default`` when absent or empty).
    ``path``: the file, named in the error."""
    value = parse_entry(key, raw_entries(model).get(key), path)
    return default if value is None else value


def check_metadata(model, path=None):
    """Check every ``preimage.*`` entry of ``model`` (raises FormatError naming ``path`` and the entry),
    and that ``preimage.inputs`` agrees with the graph's inputs where both give a shape."""
    for key, text in raw_entries(model).items():
        if key.startswith(PREFIX):
            parse_entry(key, text, path)
    declared = read_metadata(model, "preimage.inputs", {}, path)
    for vi in model.graph.input:
        shape = declared.get(vi.name)
        t = vi.type.tensor_type
        if shape is None or not t.HasField("shape"):
            continue
        graph = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(graph) != len(shape) or any(g and _is_int(m) and g != m for g, m in zip(graph[1:], shape[1:])):
            raise FormatError(f"metadata entry 'preimage.inputs' gives input {vi.name!r} the shape {_short(shape)}, "
                              f"the graph {_short(graph)}; convert the model again", path=path)
