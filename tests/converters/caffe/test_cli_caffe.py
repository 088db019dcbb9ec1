"""The `preimage convert caffe` and `preimage layers` commands (thin layers over the Python API)."""
import json
import shutil

import onnx
import pytest
from click.testing import CliRunner

from preimage.cli import cli

from caffe_helpers import corpus_dir

TRAIN_NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 5 stride: 2 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "fc" top: "loss" }
"""


@pytest.fixture
def alexnet(tmp_path):
    d = corpus_dir() / "alexnet"
    if not d.is_dir():
        pytest.skip("Caffe conformance corpus not found")
    shutil.copy(d / "net.prototxt", tmp_path / "alexnet.prototxt")
    shutil.copy(d / "net.caffemodel", tmp_path / "alexnet.caffemodel")
    return tmp_path / "alexnet.prototxt"


def test_convert_finds_the_caffemodel_and_summarizes(alexnet):
    r = CliRunner().invoke(cli, ["convert", "caffe", str(alexnet)])
    assert r.exit_code == 0, r.output
    out = alexnet.with_suffix(".onnx")
    assert out.exists()
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    from preimage.converters.caffe.proto import caffe_pb2

    net = caffe_pb2.NetParameter()
    net.ParseFromString(alexnet.with_suffix(".caffemodel").read_bytes())
    n = sum(len(b.data) for l in net.layer for b in l.blobs)
    assert "alexnet.caffemodel" in r.stdout and f"parameters: {n:,}" in r.stdout
    assert "inputs: data Nx3x227x227" in r.stdout and "outputs: prob Nx1000" in r.stdout
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["preimage.blobs"]["conv1"] == "relu1"


def test_convert_random_weights_and_warnings_on_stderr(tmp_path):
    p = tmp_path / "tiny.prototxt"
    p.write_text(TRAIN_NET)
    r = CliRunner().invoke(cli, ["convert", "caffe", str(p), "--random-weights", "--seed", "3", "-o",
                                 str(tmp_path / "t.onnx"), "--opset", "15"])
    assert r.exit_code == 0, r.output
    assert "warning: dropped training-only layer 'loss'" in r.stderr and "warning" not in r.stdout
    assert onnx.load(str(tmp_path / "t.onnx")).opset_import[0].version == 15


def test_layers_lists_shapes_and_receptive_fields(alexnet):
    r = CliRunner().invoke(cli, ["layers", str(alexnet)])  # a prototxt: structure only
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert "Nx24x55x55" in rows["conv1"] and "11 / 4" in rows["conv1"]
    assert "195 / 32" in rows["pool5"] and "355 / 32" in rows["fc6"]
    CliRunner().invoke(cli, ["convert", "caffe", str(alexnet)])
    r = CliRunner().invoke(cli, ["layers", str(alexnet.with_suffix(".onnx")), "--json"])
    table = json.loads(r.stdout)
    by_name = {l["name"]: l for l in table["layers"]}
    assert by_name["conv2"]["receptive_field"]["size"] == [51, 51]
    assert {b["blob"]: b["value"] for b in table["blobs"]}["fc6"] == "drop6"


def test_layers_on_a_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    r = CliRunner().invoke(cli, ["layers", str(bad)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and str(bad) in r.output


def test_help_teaches_with_examples():
    r = CliRunner().invoke(cli, ["convert", "caffe", "--help"])
    assert r.exit_code == 0 and "Examples:" in r.output and "--random-weights" in r.output
    r = CliRunner().invoke(cli, ["layers", "--help"])
    assert r.exit_code == 0 and "Examples:" in r.output


def test_input_shape_option(tmp_path):
    p = tmp_path / "tiny.prototxt"
    p.write_text(TRAIN_NET)
    r = CliRunner().invoke(cli, ["convert", "caffe", str(p), "--random-weights", "--input-shape", "data=2,3,20,20"])
    assert r.exit_code == 0, r.output
    assert "inputs: data Nx3x20x20" in r.stdout
    r = CliRunner().invoke(cli, ["convert", "caffe", str(p), "--random-weights", "--input-shape", "data:2x3"])
    assert r.exit_code == 2 and "NAME=N,C,H,W" in r.output
