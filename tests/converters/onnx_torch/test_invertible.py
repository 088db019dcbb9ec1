"""The torch view of a model: which values can be inverted, and why not."""
import sys
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import helper as h

sys.path.insert(0, str(Path(__file__).parent))
from onnx_cases import make_model, rng_array  # noqa: E402

from preimage.cli import cli  # noqa: E402
from preimage.converters.onnx_torch.invertible import torch_view  # noqa: E402


def test_verdicts_and_reasons():
    nodes = [
        h.make_node("Conv", ["x", "w"], ["conv"], name="conv"),
        h.make_node("ArgMax", ["conv"], ["best"], name="best", axis=1),
        h.make_node("Cast", ["best"], ["bestf"], name="bestf", to=onnx.TensorProto.FLOAT),
        h.make_node("Relu", ["conv"], ["relu"], name="relu"),
        h.make_node("Frobnicate", ["relu"], ["odd"], name="odd", domain="example.com"),
        h.make_node("Relu", ["odd"], ["after"], name="after"),
    ]
    model = make_model(nodes, {"x": ["N", 2, 5, 5]}, ["bestf", "after"], {"w": rng_array((3, 2, 3, 3))})
    model.opset_import.append(h.make_opsetid("example.com", 1))
    v = torch_view(model)
    assert v["x"] == v["conv"] == v["relu"] == "yes"
    assert v["best"].startswith("no: ArgMax has no gradient") and v["bestf"] == v["best"]
    assert "Frobnicate has no torch converter" in v["odd"] and v["after"] == v["odd"]
    assert "w" not in v


def test_layers_command_shows_torch_column():
    proto = Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / "caffe" / "u_lrn" / "net.prototxt"
    if not proto.exists():
        pytest.skip(f"Caffe conformance corpus not found at {proto.parent.parent}")
    res = CliRunner().invoke(cli, ["layers", str(proto), "--torch"])
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[1]
    assert header.rstrip().endswith("torch")
    assert all(line.rstrip().endswith("yes") for line in res.output.splitlines()[2:6])
