"""Damaged ``preimage.*`` metadata and a ``mean_file`` that leaves the model's folder: every reader of the
metadata answers in one line naming the file and the entry (issue 13, item 4)."""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper as h

sys.path.insert(0, str(Path(__file__).parent / "onnx_torch"))
from onnx_cases import make_model, rng_array  # noqa: E402

from preimage.cli import cli  # noqa: E402
from preimage.errors import PreimageError  # noqa: E402

GOOD = {"preimage.blobs": {"data": "data", "conv": "relu"},
        "preimage.inputs": {"data": [1, 3, 6, 5]},
        "preimage.layers": [{"name": "conv", "type": "Convolution", "value": "conv", "values": ["conv"]},
                            {"name": "relu", "type": "ReLU", "value": "relu", "values": ["relu"]}],
        "preimage.preprocess": {"input": "data", "mean": [104.0, 117.0, 123.0], "input_size": [6, 5]}}

# (entry, damaged text): not JSON, JSON of the wrong kind, and values of the wrong kind inside
DAMAGED = [
    ("preimage.blobs", "{not json"),
    ("preimage.blobs", "[1, 2]"),
    ("preimage.blobs", '{"conv": 3}'),
    ("preimage.inputs", '"data"'),
    ("preimage.inputs", '{"data": "1x3x6x5"}'),
    ("preimage.inputs", '{"data": [1, -3, 6, 5]}'),
    ("preimage.layers", '{"conv": 1}'),
    ("preimage.layers", '[{"name": "conv"}]'),
    ("preimage.layers", '[{"name": "conv", "type": "Convolution", "values": []}]'),
    ("preimage.layers", '[3]'),
    ("preimage.preprocess", '{"mean": "104"}'),
    ("preimage.preprocess", '{"input_size": [6]}'),
    ("preimage.preprocess", '{"scale": 0}'),
    ("preimage.preprocess", '{"channel_order": "XYZ"}'),
    ("preimage.preprocess", "[[[["),
    ("preimage.fixed_size", '{"layers": "pool1"}'),
    ("preimage.source", "7"),
]


def conv_model(meta=None):
    nodes = [h.make_node("Conv", ["data", "w"], ["conv"], name="conv"),
             h.make_node("Relu", ["conv"], ["relu"], name="relu")]
    model = make_model(nodes, {"data": ["N", 3, 6, 5]}, ["relu"], {"w": rng_array((2, 3, 3, 2), 1)})
    entries = {k: json.dumps(v) for k, v in GOOD.items()}
    entries.update(meta or {})
    h.set_model_props(model, entries)
    return model


def save(tmp_path, model, name="net.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def one_line_naming(err, path, key):
    text = str(err)
    assert "\n" not in text and str(path) in text and key in text, text


@pytest.mark.parametrize("key,text", DAMAGED)
def test_layers_names_the_file_and_the_damaged_entry(tmp_path, key, text):
    # before: JSONDecodeError, AttributeError ('list' object has no attribute 'items'), TypeError, KeyError
    path = save(tmp_path, conv_model({key: text}))
    res = CliRunner().invoke(cli, ["layers", str(path)])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "Traceback" not in res.output and str(path) in res.output and key in res.output, res.output


@pytest.mark.parametrize("key,text", DAMAGED)
def test_load_features_and_preprocess_name_the_damaged_entry(tmp_path, key, text):
    from preimage.converters.onnx_torch.load import load_features
    from preimage.preprocess import Preprocess

    path = save(tmp_path, conv_model({key: text}))
    with pytest.raises(PreimageError) as e:
        load_features(str(path), ["relu"]).preprocess.load
    one_line_naming(e.value, path, key)
    if key in ("preimage.preprocess", "preimage.inputs"):
        with pytest.raises(PreimageError) as e:
            Preprocess.from_onnx(str(path))
        one_line_naming(e.value, path, key)


def test_in_memory_model_with_damaged_metadata_names_the_entry():
    from preimage.converters.geometry import layer_table, receptive_fields

    model = conv_model({"preimage.inputs": "{oops"})
    for f in (layer_table, receptive_fields):
        with pytest.raises(PreimageError, match="preimage.inputs"):
            f(model)


def test_intact_metadata_still_reads(tmp_path):
    from preimage.converters.geometry import layer_table

    path = save(tmp_path, conv_model({"preimage.future_entry": json.dumps({"any": ["thing"]}), "preimage.source": ""}))
    t = layer_table(onnx.load(str(path)))
    assert [r["name"] for r in t["layers"]] == ["conv", "relu"] and t["inputs"] == {"data": [1, 3, 6, 5]}
    res = CliRunner().invoke(cli, ["layers", str(path)])
    assert res.exit_code == 0, res.output


# -- preimage.preprocess.mean_file must stay in the model's folder unless passed explicitly


def _mean_case(tmp_path, mean_file):
    model = conv_model({"preimage.preprocess": json.dumps({"mean_file": mean_file, "input_size": [6, 5]})})
    (tmp_path / "models").mkdir(exist_ok=True)
    return save(tmp_path / "models", model)


def _write_mean(path, value):
    np.save(path, np.full((3, 6, 5), value, np.float32))


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_mean_file_outside_the_model_folder_is_refused(tmp_path, how):
    from preimage.converters.onnx_torch.load import load_features
    from preimage.models import samples

    outside = tmp_path / "secret.npy"
    _write_mean(outside, 7.0)
    path = _mean_case(tmp_path, str(outside) if how == "absolute" else "../secret.npy")
    fx = load_features(str(path), ["relu"])
    # before: the file outside the model's folder was read silently
    with pytest.raises(PreimageError, match="outside the model's folder") as e:
        fx.preprocess.load([samples.paths()[0]])
    assert "--mean-file" in str(e.value) and "mean_file=" in str(e.value) and str(path.parent) in str(e.value)


def test_mean_file_passed_explicitly_is_used_wherever_it_is(tmp_path):
    from preimage.converters.onnx_torch.load import load_features
    from preimage.preprocess import Preprocess, save_image

    outside = tmp_path / "mean.npy"
    _write_mean(outside, 7.0)
    path = _mean_case(tmp_path, "../mean.npy")
    img = np.full((6, 5, 3), 10, np.uint8)
    save_image(tmp_path / "img.png", img)
    for pre in (Preprocess.from_onnx(str(path), mean_file=str(outside)),
                load_features(str(path), ["relu"], mean_file=str(outside)).preprocess):
        x = pre.load([str(tmp_path / "img.png")]).numpy()
        assert np.allclose(x, 10.0 - 7.0)  # pixel 10 minus the explicit file's mean 7


def test_mean_file_inside_the_model_folder_is_read(tmp_path):
    from preimage.preprocess import Preprocess, save_image

    path = _mean_case(tmp_path, "means/m.npy")
    (path.parent / "means").mkdir()
    _write_mean(path.parent / "means" / "m.npy", 4.0)
    save_image(tmp_path / "img.png", np.full((6, 5, 3), 10, np.uint8))
    assert np.allclose(Preprocess.from_onnx(str(path)).load([str(tmp_path / "img.png")]).numpy(), 6.0)
    # the converter writes the absolute path of a mean file beside the prototxt: still inside the folder
    path2 = _mean_case(tmp_path, str(path.parent / "means" / "m.npy"))
    assert np.allclose(Preprocess.from_onnx(str(path2)).load([str(tmp_path / "img.png")]).numpy(), 6.0)


def test_validate_cli_takes_an_explicit_mean_file(tmp_path):
    from onnx_cases import run_ort
    from preimage.preprocess import save_image

    outside = tmp_path / "mean.npy"
    _write_mean(outside, 7.0)
    path = _mean_case(tmp_path, str(outside))
    model = onnx.load(str(path))
    save_image(tmp_path / "img.png", np.full((6, 5, 3), 10, np.uint8))
    x = np.full((1, 3, 6, 5), 3.0, np.float32)  # independent preprocessing: 10 - 7
    np.savez(tmp_path / "ref.npz", relu=run_ort(model, {"data": x}, ["relu"])["relu"])
    args = ["validate", "-m", str(path), "-r", str(tmp_path / "ref.npz"), "-i", str(tmp_path / "img.png"),
            "--keys", "layers"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "outside the model's folder" in res.output, res.output
    res = CliRunner().invoke(cli, args + ["--mean-file", str(outside)])
    assert res.exit_code == 0, res.output
