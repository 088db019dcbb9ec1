"""Every net of the Caffe conformance corpus (real Caffe's outputs) is reproduced by the converted model."""
import numpy as np
import onnx
import pytest


from preimage.converters.caffe import convert_caffe

from caffe_helpers import corpus_nets, meta, rel_err, run

TOL = 1e-5


def _feeds(net_dir, model):
    z = np.load(net_dir / "inputs.npz")
    return {i.name: z[i.name] for i in model.graph.input}


@pytest.mark.parametrize("net", corpus_nets() or ["(corpus absent)"])
def test_corpus_net_matches_caffe(caffe_corpus, net):
    d = caffe_corpus / net
    model = convert_caffe(d / "net.prototxt", d / "net.caffemodel")
    onnx.checker.check_model(model, full_check=True)
    m = meta(model)
    layers, blobs = np.load(d / "layers.npz"), np.load(d / "blobs.npz")
    wanted = {f"layer {k}": (k, layers[k]) for k in layers.files}
    wanted.update({f"blob {k}": (m["preimage.blobs"][k], blobs[k]) for k in blobs.files})
    got = run(model, _feeds(d, model), sorted({v for v, _ in wanted.values()}))
    errors = {k: rel_err(got[v], ref) for k, (v, ref) in wanted.items()}
    bad = {k: e for k, e in errors.items() if not e <= TOL}
    assert not bad, f"{net}: tensors off by more than {TOL} of max|ref|: {bad}"


@pytest.mark.parametrize("net", ["alexnet", "u_graph", "posenet_siamese"])
def test_batch_is_dynamic(caffe_corpus, net):
    """The same model runs at another batch size and gives each sample's result unchanged."""
    d = caffe_corpus / net
    model = convert_caffe(d / "net.prototxt", d / "net.caffemodel")
    for i in model.graph.input:
        assert i.type.tensor_type.shape.dim[0].dim_param == "N"
    feeds = _feeds(d, model)
    outs = [o.name for o in model.graph.output]
    base = run(model, feeds, outs)
    doubled = run(model, {k: np.concatenate([v, v[::-1]]) for k, v in feeds.items()}, outs)
    for o in outs:
        n = base[o].shape[0]
        np.testing.assert_allclose(doubled[o][:n], base[o], rtol=1e-5, atol=1e-5 * np.abs(base[o]).max())


def test_metadata_contract(caffe_corpus):
    d = caffe_corpus / "alexnet"
    model = convert_caffe(d / "net.prototxt", d / "net.caffemodel")
    m = meta(model)
    assert m["preimage.blobs"]["conv1"] == "relu1"  # in-place ReLU overwrote blob conv1
    assert m["preimage.blobs"]["data"] == "data"
    assert m["preimage.inputs"] == {"data": [1, 3, 227, 227]}
    assert m["preimage.preprocess"]["input_size"] == [227, 227]
    assert m["preimage.source"]["caffemodel"]["sha256"] == __import__("hashlib").sha256(
        (d / "net.caffemodel").read_bytes()).hexdigest()
    names = [l["name"] for l in m["preimage.layers"]]
    assert names[:3] == ["data", "conv1", "relu1"]
    node_names = {n.name for n in model.graph.node}
    assert {"conv1", "relu1", "norm1", "pool1", "fc8", "prob"} <= node_names
    assert model.ir_version <= 10 and model.opset_import[0].version == 13


def test_written_file_loads_directly_in_onnxruntime(caffe_corpus, tmp_path):
    """The file is written in pieces (weights first, then the rest); readers must see one model."""
    import onnxruntime as ort

    d = caffe_corpus / "u_norm_act"
    out = tmp_path / "m.onnx"
    model = convert_caffe(d / "net.prototxt", d / "net.caffemodel", out)
    onnx.checker.check_model(str(out), full_check=True)
    again = onnx.load(str(out))
    assert {t.name: t.raw_data for t in again.graph.initializer} == {t.name: t.raw_data for t in model.graph.initializer}
    assert [p.key for p in again.metadata_props] == [p.key for p in model.metadata_props]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.load(d / "inputs.npz")["data"]
    ref = np.load(d / "blobs.npz")
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"data": x})))
    blob_of = {v: k for k, v in meta(model)["preimage.blobs"].items()}
    assert got and all(rel_err(y, ref[blob_of[name]]) < TOL for name, y in got.items())


@pytest.mark.parametrize("net", ["u_pooling", "u_norm_act", "u_graph", "u_lrn"])
def test_corpus_at_the_newest_supported_opset(caffe_corpus, net):
    d = caffe_corpus / net
    model = convert_caffe(d / "net.prototxt", d / "net.caffemodel", opset=17)
    onnx.checker.check_model(model, full_check=True)
    layers = np.load(d / "layers.npz")
    got = run(model, _feeds(d, model), layers.files)
    bad = {k: rel_err(got[k], layers[k]) for k in layers.files if not rel_err(got[k], layers[k]) <= TOL}
    assert not bad


def test_keep_weights_false_writes_the_same_file(caffe_corpus, tmp_path):
    from preimage.converters.caffe.convert import convert_caffe_full

    d = caffe_corpus / "alexnet"
    full = convert_caffe(d / "net.prototxt", d / "net.caffemodel", tmp_path / "a.onnx")
    lean = convert_caffe_full(d / "net.prototxt", d / "net.caffemodel", tmp_path / "b.onnx", keep_weights=False).model
    assert not any(t.raw_data for t in lean.graph.initializer if t.name.endswith("/weight"))
    a, b = onnx.load(str(tmp_path / "a.onnx")), onnx.load(str(tmp_path / "b.onnx"))
    assert {t.name: t.raw_data for t in a.graph.initializer} == {t.name: t.raw_data for t in b.graph.initializer}
    assert {t.name: t.raw_data for t in full.graph.initializer} == {t.name: t.raw_data for t in b.graph.initializer}
    assert a.graph.node == b.graph.node
