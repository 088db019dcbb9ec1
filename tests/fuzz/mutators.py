"""Seeded mutators for fuzzing preimage's readers: bytes, prototxt text, JSON values, ONNX models, arrays
and checkpoint dicts. Each takes the input and a ``numpy.random.Generator`` and returns a mutant, so a
failing mutant is reproduced from its seed alone.

They live with the fuzz tests (tests/fuzz/), not in the package: only the tests use them, and users who
install preimage get no test-only code. Byte mutators find what a parser does with damaged files
(truncation, wrong lengths, flipped bits); the structural ones (ONNX nodes and initializers, JSON
metadata, array dtypes and shapes, checkpoint entries) reach the code behind a parser that a random
byte would mostly stop at the first check.
"""
import copy
import json

import numpy as np

INTERESTING_INTS = [0, 1, -1, 2, 3, 4, 7, 8, 255, 256, 65535, 2**31 - 1, -2**31, 2**32, 2**62, 10**9]
INTERESTING_NUMBERS = ["0", "1", "-1", "2", "3", "1000000000", "99999999999999999999", "-7", "0.5", "1e308", "-1e-308",
                       "nan", "inf", "", "x", "true", "4294967296"]
JSON_VALUES = [None, True, 0, -1, 1.5, 1e308, "", "x", "../../etc/passwd", [], [1, -2], {}, {"a": None}, [[[[]]]],
               "N", [None, None], 2**63]


def _pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


# ---------------------------------------------------------------- bytes


def mutate_bytes(data, rng):
    """One of: flip bits, write an interesting 4- or 8-byte integer, truncate, delete, duplicate or
    overwrite a chunk, or insert a protobuf varint of a huge length."""
    b = bytearray(data)
    if not b:
        return bytes(rng.integers(0, 256, 8, dtype=np.uint8))
    kind = int(rng.integers(0, 7))
    i = int(rng.integers(0, len(b)))
    if kind == 0:
        for _ in range(int(rng.integers(1, 5))):
            j = int(rng.integers(0, len(b)))
            b[j] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:
        width = 4 if rng.random() < 0.7 else 8
        v = int(_pick(rng, INTERESTING_INTS))
        b[i:i + width] = (v % (1 << (8 * width))).to_bytes(width, "little")
    elif kind == 2:
        del b[i:]
    elif kind == 3:
        del b[i:i + int(rng.integers(1, 64))]
    elif kind == 4:
        b[i:i] = b[i:i + int(rng.integers(1, 64))]
    elif kind == 5:
        n = int(rng.integers(1, 9))
        b[i:i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    else:
        b[i:i] = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])  # a varint of 4 GiB - 1: a length field lying
    return bytes(b)


# ---------------------------------------------------------------- prototxt text


def _tokens(text):
    """(start, end) of every maximal run of non-space, non-brace characters."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text[i].isspace() or text[i] in "{}:":
            i += 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in "{}:":
            j += 1
        out.append((i, j))
        i = j
    return out


def mutate_text(text, rng):
    """Token and line edits of a prototxt: a number made interesting, a token replaced by another of the
    file (a layer type, a blob name), deleted or duplicated, a line dropped, duplicated or swapped, a
    brace dropped or added, the text truncated."""
    kind = int(rng.integers(0, 9))
    toks = _tokens(text)
    lines = text.splitlines(keepends=True)
    if kind <= 2 and toks:
        a, b = toks[int(rng.integers(0, len(toks)))]
        if kind == 0:
            new = _pick(rng, INTERESTING_NUMBERS)
        elif kind == 1:
            c, d = toks[int(rng.integers(0, len(toks)))]
            new = text[c:d]
        else:
            new = ""
        return text[:a] + new + text[b:]
    if kind == 3 and toks:
        a, b = toks[int(rng.integers(0, len(toks)))]
        return text[:b] + " " + text[a:b] + text[b:]
    if kind == 4 and lines:
        del lines[int(rng.integers(0, len(lines)))]
    elif kind == 5 and lines:
        i = int(rng.integers(0, len(lines)))
        lines.insert(i, lines[int(rng.integers(0, len(lines)))])
    elif kind == 6 and len(lines) > 1:
        i, j = (int(x) for x in rng.integers(0, len(lines), 2))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 7:
        braces = [i for i, c in enumerate(text) if c in "{}"]
        if braces:
            i = _pick(rng, braces)
            return text[:i] + text[i + 1:] if rng.random() < 0.6 else text[:i] + text[i] + text[i:]
    else:
        return text[:int(rng.integers(0, len(text) + 1))]
    return "".join(lines)


# ---------------------------------------------------------------- JSON values (ONNX metadata)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def mutate_json(value, rng):
    """A copy of a JSON value with one sub-value replaced by another kind, a key dropped or added, or a
    list emptied or grown."""
    value = copy.deepcopy(value)
    paths = list(_paths(value))
    path = paths[int(rng.integers(0, len(paths)))]
    if not path:
        return copy.deepcopy(_pick(rng, JSON_VALUES))
    parent = value
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1]
    kind = int(rng.integers(0, 4))
    if kind == 0 and isinstance(parent, dict):
        del parent[key]
    elif kind == 1 and isinstance(parent, dict):
        parent[_pick(rng, ["x", "", "values", "mean_file", "input_size"])] = copy.deepcopy(_pick(rng, JSON_VALUES))
    elif kind == 2 and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]) if rng.random() < 0.5 else copy.deepcopy(_pick(rng, JSON_VALUES)))
    else:
        parent[key] = copy.deepcopy(_pick(rng, JSON_VALUES))
    return value


def damage_json_text(text, rng):
    """JSON text cut, with a character changed, or empty."""
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return text[:int(rng.integers(0, len(text) + 1))]
    if kind == 1 and text:
        i = int(rng.integers(0, len(text)))
        return text[:i] + _pick(rng, ["{", "]", '"', ",", "\\", "\x00", "NaN"]) + text[i + 1:]
    return ""


# ---------------------------------------------------------------- ONNX models


def _mutate_metadata(model, rng):
    props = list(model.metadata_props)
    if not props:
        return
    p = props[int(rng.integers(0, len(props)))]
    if rng.random() < 0.75:
        try:
            p.value = json.dumps(mutate_json(json.loads(p.value), rng))
            return
        except ValueError:
            pass
    p.value = damage_json_text(p.value, rng)


def _mutate_attribute(node, rng):
    from onnx import helper

    if not node.attribute:
        node.attribute.append(helper.make_attribute(_pick(rng, ["pads", "strides", "kernel_shape", "axis"]),
                                                    [int(_pick(rng, INTERESTING_INTS)) % 97 - 3] * 2))
        return
    a = node.attribute[int(rng.integers(0, len(node.attribute)))]
    if rng.random() < 0.2:
        node.attribute.remove(a)
    elif a.ints:
        i = int(rng.integers(0, len(a.ints)))
        a.ints[i] = int(_pick(rng, INTERESTING_INTS)) % (2**63)
        if rng.random() < 0.3:
            del a.ints[i]
    elif a.type == a.INT:
        a.i = int(_pick(rng, INTERESTING_INTS)) % (2**63)
    elif a.type == a.FLOAT:
        a.f = float(_pick(rng, [0.0, -1.0, float("nan"), float("inf"), 1e30]))
    else:
        a.name = a.name + "_x"


def _mutate_initializer(model, rng):
    inits = list(model.graph.initializer)
    if not inits:
        return
    t = inits[int(rng.integers(0, len(inits)))]
    kind = int(rng.integers(0, 5))
    if kind == 0:
        model.graph.initializer.remove(t)
    elif kind == 1 and t.dims:
        t.dims[int(rng.integers(0, len(t.dims)))] = int(_pick(rng, [0, 1, 2, 3, 7, 2**20]))
    elif kind == 2:
        t.data_type = int(_pick(rng, [0, 2, 6, 7, 8, 9, 10, 11, 16, 99]))
    elif kind == 3 and t.raw_data:
        t.raw_data = t.raw_data[:int(rng.integers(0, len(t.raw_data)))]
    else:
        t.dims.append(int(_pick(rng, [1, 2, 5])))


def _mutate_graph_value(model, rng):
    g = model.graph
    vis = list(g.input) + list(g.output)
    vi = vis[int(rng.integers(0, len(vis)))]
    t = vi.type.tensor_type
    if rng.random() < 0.4:
        t.elem_type = int(_pick(rng, [0, 6, 7, 8, 10, 11, 99]))
    elif t.shape.dim:
        d = t.shape.dim[int(rng.integers(0, len(t.shape.dim)))]
        if rng.random() < 0.5:
            d.dim_value = int(_pick(rng, [0, 1, 2, 3, 5, 100000]))
        else:
            d.dim_param = "H"
    else:
        vi.name = vi.name + "_x"


def mutate_onnx(model, rng):
    """A mutated copy of an ONNX ModelProto: an operator renamed (to another one of the graph or to an
    unknown one), a node input or output renamed, a node dropped or duplicated, an attribute changed,
    an initializer damaged (dropped, dims, dtype, data cut), a graph input or output retyped, or a
    ``preimage.*`` metadata entry damaged (structure or JSON text)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    nodes = list(g.node)
    kind = int(rng.integers(0, 9))
    node = nodes[int(rng.integers(0, len(nodes)))] if nodes else None
    if kind == 0 and node is not None:
        node.op_type = _pick(rng, [n.op_type for n in nodes] + ["Frobnicate", "Loop", "Softmax", "Identity"])
    elif kind == 1 and node is not None and node.input:
        i = int(rng.integers(0, len(node.input)))
        names = [x for n in nodes for x in n.output] + [x.name for x in g.input] + ["", "nothing"]
        node.input[i] = _pick(rng, names)
    elif kind == 2 and node is not None:
        node.output[0] = _pick(rng, [x for n in nodes for x in n.output] + [g.input[0].name, "fresh"])
    elif kind == 3 and node is not None:
        if rng.random() < 0.5:
            g.node.remove(node)
        else:
            g.node.insert(int(rng.integers(0, len(nodes) + 1)), copy.deepcopy(node))
    elif kind == 4 and node is not None:
        _mutate_attribute(node, rng)
    elif kind == 5:
        _mutate_initializer(m, rng)
    elif kind == 6:
        _mutate_graph_value(m, rng)
    else:
        _mutate_metadata(m, rng)
    return m


# ---------------------------------------------------------------- arrays (.npz references)


def mutate_arrays(arrays, rng):
    """A mutated copy of ``{key: array}``: one array's dtype changed (to strings, bools, ints, complex,
    float16), reshaped, emptied, made a scalar, filled with NaN or inf or a huge value; or a key dropped,
    renamed or added."""
    out = {k: np.array(v) for k, v in arrays.items()}
    keys = list(out)
    key = keys[int(rng.integers(0, len(keys)))]
    a = out[key]
    kind = int(rng.integers(0, 9))
    if kind == 0:
        out[key] = a.astype(_pick(rng, ["U3", "S2", "bool", "int8", "int64", "complex64", "float16", "uint8"]))
    elif kind == 1 and a.size > 1:
        out[key] = a.reshape(-1) if rng.random() < 0.5 else a.reshape((1,) + a.shape)
    elif kind == 2:
        out[key] = np.zeros((0,) + a.shape[1:], a.dtype)
    elif kind == 3:
        out[key] = np.array(_pick(rng, [1.0, "s", np.nan]))
    elif kind == 4:
        b = a.astype(np.float32)
        b.flat[int(rng.integers(0, max(b.size, 1)))] = _pick(rng, [np.nan, np.inf, -np.inf, 3e38]) if b.size else 0
        out[key] = b
    elif kind == 5:
        del out[key]
    elif kind == 6:
        out[key + _pick(rng, ["_x", "/", "/y"])] = out.pop(key)
    elif kind == 7:
        out[_pick(rng, ["R/" + key, "dx/" + key, "dx/data/" + key, "unknown", "data"])] = a
    else:
        out[key] = a[..., :-1] if a.ndim and a.shape[-1] > 1 else np.concatenate([a.reshape(-1), a.reshape(-1)])
    return out


# ---------------------------------------------------------------- checkpoint dicts


def _obj_paths(obj, prefix=(), depth=0):
    yield prefix
    if depth > 4:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _obj_paths(v, prefix + (k,), depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _obj_paths(v, prefix + (i,), depth + 1)


def mutate_state(obj, rng):
    """A mutated copy of a nested dict / list / tensor object (a torch checkpoint): one entry dropped,
    replaced by a value of another kind, or a tensor reshaped, cut, or given another dtype."""
    import torch

    obj = copy.deepcopy(obj)
    paths = [p for p in _obj_paths(obj) if p]
    if not paths:
        return obj
    path = paths[int(rng.integers(0, len(paths)))]
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    if isinstance(parent, tuple):
        return obj
    key = path[-1]
    value = parent[key]
    kind = int(rng.integers(0, 4))
    if kind == 0 and isinstance(parent, dict):
        del parent[key]
    elif kind == 1 and isinstance(value, torch.Tensor):
        if value.numel() > 1 and rng.random() < 0.5:
            parent[key] = value.reshape(-1)[:-1].clone()
        else:
            parent[key] = value.to(_pick(rng, [torch.int64, torch.bool, torch.float16, torch.float64]))
    elif kind == 2 and isinstance(value, torch.Tensor):
        parent[key] = torch.zeros(_pick(rng, [(0,), (3,), (1, 1, 1, 1, 1)]))
    else:
        parent[key] = copy.deepcopy(_pick(rng, JSON_VALUES + [torch.zeros(2)]))
    return obj
