"""load_features on hand-made ONNX models: naming (values, blobs, inputs), pruning, errors, freezing."""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper as h

sys.path.insert(0, str(Path(__file__).parent))
from onnx_cases import make_model, rng_array, run_ort  # noqa: E402

from preimage.converters.onnx_torch.load import load_features  # noqa: E402
from preimage.errors import PreimageError  # noqa: E402


def small_net(with_metadata=True):
    """conv1 -> relu1 (Caffe in-place: blob conv1 ends as relu1's output) -> pool1 -> fc (flatten + gemm)."""
    nodes = [
        h.make_node("Conv", ["data", "w1", "b1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        h.make_node("MaxPool", ["relu1"], ["pool1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2],
                    pads=[0, 0, 1, 1]),
        h.make_node("Flatten", ["pool1"], ["pool1_flat"], name="fc_flatten"),
        h.make_node("Gemm", ["pool1_flat", "wf", "bf"], ["fc"], name="fc", transB=1),
        h.make_node("Softmax", ["fc"], ["prob"], name="prob", axis=1),
    ]
    inits = {"w1": rng_array((4, 3, 3, 3), 1, 0.3), "b1": rng_array((4,), 2), "wf": rng_array((5, 4 * 4 * 4), 3, 0.1),
             "bf": rng_array((5,), 4)}
    model = make_model(nodes, {"data": ["N", 3, 8, 8]}, ["prob"], inits)
    if with_metadata:
        blobs = {"data": "data", "conv1": "relu1", "pool1": "pool1", "fc": "fc", "prob": "prob"}
        onnx.helper.set_model_props(model, {"preimage.blobs": json.dumps(blobs),
                                            "preimage.inputs": json.dumps({"data": [1, 3, 8, 8]})})
    return model


def test_default_outputs_and_values_match_onnxruntime():
    model = small_net()
    x = rng_array((2, 3, 8, 8), 9)
    net = load_features(model)
    assert net.outputs == ["prob"] and net.input_names == ["data"]
    ref = run_ort(model, {"data": x}, ["conv1", "relu1", "fc", "prob"])
    out = net(torch.from_numpy(x))
    np.testing.assert_allclose(out["prob"].numpy(), ref["prob"], atol=1e-6)


def test_blob_and_value_names():
    model = small_net()
    x = rng_array((2, 3, 8, 8), 9)
    ref = run_ort(model, {"data": x}, ["conv1", "relu1", "pool1"])
    # "conv1" is a layer output and a blob; as a value name (default) it is the convolution's output,
    # as a blob it is the final value after the in-place ReLU.
    layer = load_features(model, ["conv1", "pool1", "data"])(torch.from_numpy(x))
    blob = load_features(model, ["conv1"], keys="blobs")(torch.from_numpy(x))
    np.testing.assert_allclose(layer["conv1"].numpy(), ref["conv1"], atol=1e-5)
    np.testing.assert_allclose(blob["conv1"].numpy(), ref["relu1"], atol=1e-5)
    assert list(layer) == ["conv1", "pool1", "data"]
    assert torch.equal(layer["data"], torch.from_numpy(x))


def test_only_needed_subgraph_is_converted():
    net = load_features(small_net(), ["pool1"])
    kinds = {type(m).__name__ for m in net.modules()}
    assert "Linear" not in kinds and "Softmax" not in kinds
    assert not any("fc" in n for n, _ in net.named_modules())


def test_missing_name_lists_available_names():
    with pytest.raises(PreimageError) as e:
        load_features(small_net(), ["conv9"])
    msg = str(e.value)
    assert "conv9" in msg and "relu1" in msg and "pool1" in msg


def test_foreign_model_without_metadata_uses_value_names():
    model = small_net(with_metadata=False)
    net = load_features(model, ["relu1", "pool1_flat"])
    out = net(torch.from_numpy(rng_array((1, 3, 8, 8))))
    assert out["pool1_flat"].shape == (1, 64)
    with pytest.raises(PreimageError, match="available"):
        load_features(model, ["conv1"], keys="blobs") and load_features(model, ["nope"])


def test_frozen_eval_free_batch_and_input_grad(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(small_net(), str(path))
    net = load_features(str(path), ["fc"])
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    for batch in (1, 5):
        x = torch.randn(batch, 3, 8, 8, requires_grad=True)
        y = net(x)["fc"]
        assert y.shape == (batch, 5)
        y.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    assert net.input_shapes == {"data": [1, 3, 8, 8]}


def test_free_input_size_for_convolutional_prefix():
    net = load_features(small_net(), ["pool1"])
    assert net(torch.randn(1, 3, 15, 11))["pool1"].shape == (1, 4, 7, 5)  # floor((15 + 1 - 3) / 2) + 1, ...


def test_bad_files(tmp_path):
    with pytest.raises(PreimageError, match="no such model"):
        load_features(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(PreimageError, match="bad.onnx"):
        load_features(bad)
    (tmp_path / "net.prototxt").write_text("name: 'x'")
    with pytest.raises(PreimageError, match="caffemodel"):
        load_features(tmp_path / "net.prototxt")


def test_two_inputs_and_shared_branches():
    nodes = [
        h.make_node("Conv", ["a", "w"], ["ca"], name="ca"),
        h.make_node("Conv", ["b", "w"], ["cb"], name="cb"),
        h.make_node("Concat", ["ca", "cb"], ["cat"], name="cat", axis=1),
    ]
    model = make_model(nodes, {"a": ["N", 2, 5, 5], "b": ["N", 2, 5, 5]}, ["cat"], {"w": rng_array((3, 2, 3, 3))})
    a, b = rng_array((1, 2, 5, 5), 1), rng_array((1, 2, 5, 5), 2)
    ref = run_ort(model, {"a": a, "b": b}, ["cb", "cat"])
    both = load_features(model, ["cat", "cb"])
    assert both.input_names == ["a", "b"]
    out = both(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(out["cat"].numpy(), ref["cat"], atol=1e-5)
    only_b = load_features(model, ["cb"])
    assert only_b.input_names == ["b"]
    np.testing.assert_allclose(only_b(torch.from_numpy(b))["cb"].numpy(), ref["cb"], atol=1e-5)
    np.testing.assert_allclose(only_b(b=torch.from_numpy(b))["cb"].numpy(), ref["cb"], atol=1e-5)
    # the full argument list is accepted too (unused inputs are dropped)
    np.testing.assert_allclose(only_b(torch.from_numpy(a), torch.from_numpy(b))["cb"].numpy(), ref["cb"], atol=1e-5)


def test_gradcheck_float64_small_net():
    net = load_features(small_net(), ["fc", "conv1"], dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tuple(net(t).values()), (x,), eps=1e-6, atol=1e-6)


def test_wrong_input_shapes_are_clear_errors():
    net = load_features(small_net(), ["pool1"])
    with pytest.raises(PreimageError, match=r"4 dimensions .*x\[None\]"):
        net(torch.randn(3, 8, 8))
    with pytest.raises(PreimageError, match="3 channels"):
        net(torch.randn(1, 4, 8, 8))
    with pytest.raises(PreimageError, match="torch.Tensor"):
        net(np.zeros((1, 3, 8, 8), np.float32))


def test_non_onnx_files_are_refused_by_name(tmp_path):
    # protobuf reads many non-ONNX files (e.g. a .caffemodel) as an empty ModelProto
    weights = tmp_path / "net.caffemodel"
    weights.write_bytes(b"\x0a\x03net")  # a valid protobuf message: field 1 = "net"
    with pytest.raises(PreimageError, match=r"net\.caffemodel.*prototxt"):
        load_features(weights, ["fc5"])
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\x0a\x03net")
    with pytest.raises(PreimageError, match=r"weights\.bin: not an ONNX model"):
        load_features(other, ["fc5"])


def test_node_name_of_a_foreign_model_resolves_to_its_output(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)).eval()
    path = tmp_path / "foreign.onnx"
    x = torch.randn(1, 3, 8, 8)
    torch.onnx.export(net, x, str(path), dynamo=False)
    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.op_type == "Relu")
    assert node.name != node.output[0]  # exporters name values "<node>_output_0"
    fx = load_features(path, [node.name])
    with torch.no_grad():
        expected = net[1](net[0](x))
        got = fx(x)[node.name]
    assert torch.allclose(got, expected, atol=1e-5)
