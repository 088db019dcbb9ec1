"""Test helpers: run a converted model in onnxruntime, requesting any values as outputs."""
import json

import numpy as np
import onnx
import onnxruntime as ort


def meta(model):
    return {p.key: json.loads(p.value) for p in model.metadata_props if p.key.startswith("preimage.")}


def run(model, feeds, names):
    """Evaluate ``names`` (ONNX value names) for ``feeds`` with onnxruntime on CPU."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    inputs = {i.name for i in m.graph.input}
    for n in names:
        if n not in have and n not in inputs:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
            have.add(n)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    got = dict(zip(outs, sess.run(None, feeds)))
    got.update(feeds)
    return {n: got[n] for n in names}


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def corpus_dir():
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    return Path(os.environ.get("PREIMAGE_SHARED", root.parent / "shared")) / "conformance" / "caffe"


def corpus_nets():
    d = corpus_dir()
    return sorted(p.name for p in d.iterdir() if (p / "net.prototxt").exists()) if d.is_dir() else []


def caffe_pool_ref(x, k, s, p, method="MAX", ceil=True):
    """Caffe's pooling written out with loops in float64 (independent of the converter's op patterns)."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = k, s, p

    def size(L, kk, ss, pp):
        o = (-(-(L + 2 * pp - kk) // ss) if ceil else (L + 2 * pp - kk) // ss) + 1
        if (ph or pw) and (o - 1) * ss >= L + pp:
            o -= 1
        return o

    oh, ow = size(h, kh, sh, ph), size(w, kw, sw, pw)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
            count = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we]
            if method == "MAX" and win.size == 0:  # a window past the input (ceil, no pad): Caffe's initial value
                y[:, :, i, j] = -np.finfo(np.float32).max
                continue
            y[:, :, i, j] = win.max(axis=(2, 3)) if method == "MAX" else win.sum(axis=(2, 3)) / count
    return y


def one_layer_net(layer_text, shape, extra_inputs=""):
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'name: "t"\nlayer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
            + extra_inputs + layer_text + "\n")
