"""preimage validate (API and CLI) on hand-made models with references from ONNX Runtime / NumPy, and on
every net of the Caffe conformance corpus (values, layers and input gradients by real Caffe)."""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper as h, numpy_helper

sys.path.insert(0, str(Path(__file__).parent / "onnx_torch"))
from onnx_cases import make_model, rng_array, run_ort  # noqa: E402

from preimage.cli import cli  # noqa: E402
from preimage.converters.validate import validate  # noqa: E402


def conv_net():
    nodes = [h.make_node("Conv", ["data", "w"], ["conv"], name="conv"),
             h.make_node("Relu", ["conv"], ["relu"], name="relu")]
    model = make_model(nodes, {"data": ["N", 2, 6, 5]}, ["relu"], {"w": rng_array((3, 2, 3, 2), 1)})
    h.set_model_props(model, {"preimage.blobs": json.dumps({"data": "data", "conv": "relu"})})
    return model


@pytest.fixture
def case(tmp_path):
    model = conv_net()
    onnx.save(model, str(tmp_path / "net.onnx"))
    x = rng_array((2, 2, 6, 5), 3)
    np.save(tmp_path / "input.npy", x)
    ref = run_ort(model, {"data": x}, ["conv", "relu"])
    np.savez(tmp_path / "blobs.npz", data=x, conv=ref["relu"])
    np.savez(tmp_path / "layers.npz", conv=ref["conv"], relu=ref["relu"])
    # d/dx sum(conv(x) * R) for a bias-free convolution, by the definition (independent of torch)
    w = numpy_helper.to_array(model.graph.initializer[0]).astype(np.float64)
    R = rng_array((2, 3, 4, 4), 5)
    dx = np.zeros(x.shape)
    for u in range(3):
        for v in range(2):
            dx[:, :, u:u + 4, v:v + 4] += np.einsum("noij,oc->ncij", R, w[:, :, u, v])
    # through the ReLU for blob "conv" (= relu): mask R by where the convolution is positive
    Rm = R * (ref["conv"] > 0)
    dx_relu = np.zeros(x.shape)
    for u in range(3):
        for v in range(2):
            dx_relu[:, :, u:u + 4, v:v + 4] += np.einsum("noij,oc->ncij", Rm, w[:, :, u, v])
    np.savez(tmp_path / "grads.npz", **{"R/conv": R, "dx/conv": dx_relu.astype(np.float32)})
    return tmp_path


def cli_run(*args):
    return CliRunner().invoke(cli, ["validate", *map(str, args)])


def test_api_passes_values_layers_grads(case):
    rep = validate(case / "net.onnx", case / "blobs.npz", grads=case / "grads.npz", backend="both")
    assert rep.ok, rep.table()
    assert {r.name for r in rep.rows} == {"data", "conv"} and any(r.kind == "grad" for r in rep.rows)
    rep = validate(case / "net.onnx", case / "layers.npz", keys="layers")
    assert rep.ok and len(rep.rows) == 2


def test_cli_pass_and_json(case):
    res = cli_run("--model", case / "net.onnx", "--reference", case / "blobs.npz", "--grads", case / "grads.npz",
                  "--json", case / "rep.json")
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output.splitlines()[-1]
    data = json.loads((case / "rep.json").read_text())
    assert data["ok"] and len(data["rows"]) == 3


def test_perturbed_weight_fails(case):
    model = onnx.load(str(case / "net.onnx"))
    w = numpy_helper.to_array(model.graph.initializer[0]).copy()
    w[1, 0, 0, 0] += 0.5
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    onnx.save(model, str(case / "bad.onnx"))
    for backend in ("torch", "onnxruntime"):
        res = cli_run("-m", case / "bad.onnx", "-r", case / "blobs.npz", "--backend", backend)
        assert res.exit_code == 1, res.output
        row = [line for line in res.output.splitlines() if line.startswith("conv ")][0]
        assert "FAIL" in row
    res = cli_run("-m", case / "bad.onnx", "-r", case / "blobs.npz", "--grads", case / "grads.npz")
    assert res.exit_code == 1 and "grad conv" in res.output


def test_wrong_reference_unmatched_and_shape(case):
    np.savez(case / "other.npz", conv=np.zeros((2, 3, 4, 5), np.float32), conv9=np.zeros(3, np.float32))
    res = cli_run("-m", case / "net.onnx", "-r", case / "other.npz", "--input", case / "input.npy")
    assert res.exit_code == 1
    assert "conv9" in res.output and "unmatched" in res.output
    assert "[2, 3, 4, 4]" in res.output and "[2, 3, 4, 5]" in res.output  # both shapes
    # layer outputs checked as blobs: conv (pre-ReLU) differs from blob conv (post-ReLU)
    res = cli_run("-m", case / "net.onnx", "-r", case / "layers.npz", "--keys", "blobs")
    assert res.exit_code == 1


def test_folder_reference_and_npz_input(case):
    folder = case / "dump"
    (folder / "sub").mkdir(parents=True)
    with np.load(case / "blobs.npz") as z:
        np.save(folder / "conv.npy", z["conv"])
        np.savez(case / "inputs.npz", data=z["data"])
    res = cli_run("-m", case / "net.onnx", "-r", folder, "--input", case / "inputs.npz")
    assert res.exit_code == 0, res.output


def test_bad_input_is_a_clear_error(case):
    res = cli_run("-m", case / "net.onnx", "-r", case / "missing.npz")
    assert res.exit_code == 2 and "missing.npz" in res.output and "Traceback" not in res.output


def test_image_input_preprocessed_with_metadata(tmp_path):
    from preimage.preprocess import Preprocess, save_image

    nodes = [h.make_node("Conv", ["data", "w"], ["conv"], name="conv")]
    model = make_model(nodes, {"data": ["N", 3, 6, 5]}, ["conv"], {"w": rng_array((2, 3, 3, 3), 1)})
    h.set_model_props(model, {"preimage.inputs": json.dumps({"data": [1, 3, 6, 5]}),
                              "preimage.preprocess": json.dumps({"mean": [104.0, 117.0, 123.0], "input_size": [6, 5]})})
    onnx.save(model, str(tmp_path / "net.onnx"))
    img = (np.random.default_rng(0).random((6, 5, 3)) * 255).astype(np.uint8)
    save_image(tmp_path / "in.png", img)
    # independent preprocessing: RGB -> BGR, minus the mean, C x H x W
    x = (img[..., ::-1].astype(np.float32) - np.array([104, 117, 123], np.float32)).transpose(2, 0, 1)[None]
    np.savez(tmp_path / "ref.npz", conv=run_ort(model, {"data": np.ascontiguousarray(x)})["conv"])
    res = cli_run("-m", tmp_path / "net.onnx", "-r", tmp_path / "ref.npz", "--input", tmp_path / "in.png")
    assert res.exit_code == 0, res.output
    assert Preprocess.from_onnx(model).input_size == [6, 5]


def test_layers_reference_with_blob_keyed_grads(case):
    # layer "conv" is the convolution; the gradient file's R/conv is for blob conv (after the ReLU)
    rep = validate(case / "net.onnx", case / "layers.npz", keys="layers", grads=case / "grads.npz")
    assert rep.ok, rep.table()
    assert [r.name for r in rep.rows if r.kind == "grad"] == ["conv"]


def test_api_refuses_an_image_as_reference_in_one_line(case):
    # before: numpy's "Cannot load file containing pickled data when allow_pickle=False" advice
    from preimage.errors import PreimageError
    from preimage.models import samples

    image = samples.paths()[0]
    with pytest.raises(PreimageError, match=r"reference \(-r/--reference\) expects arrays.*\.jpg") as e:
        validate(str(case / "net.onnx"), image)
    assert "pickle" not in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(PreimageError, match=r"grads \(--grads\) expects arrays"):
        validate(str(case / "net.onnx"), str(case / "blobs.npz"), grads=image)
