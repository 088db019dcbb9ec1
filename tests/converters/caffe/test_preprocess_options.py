"""Issue 12: assumed preprocessing is named in a warning by `convert caffe`; --bgr/--rgb, --mean, --raw-scale and
--scale set it in the model's preimage.preprocess metadata, and images are then prepared that way."""
import json

import cv2
import numpy as np
from click.testing import CliRunner

from preimage.cli import cli
from preimage.converters.caffe.convert import convert_caffe_full
from preimage.models import samples
from preimage.preprocess import Preprocess


def _meta(path):
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return json.loads({p.key: p.value for p in m.metadata_props}["preimage.preprocess"])


def test_assumed_preprocessing_is_a_warning_naming_what(tiny_posenet, tmp_path):
    r = CliRunner().invoke(cli, ["convert", "caffe", str(tiny_posenet / "posenet.prototxt"), "-o", str(tmp_path / "a.onnx")])
    assert r.exit_code == 0, r.output
    warning = [line for line in r.stderr.splitlines() if "assumed" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: ")
    for what in ("channel order BGR", "mean 104,117,123", "pixels 0..255", "--mean", "--bgr/--rgb"):
        assert what in warning[0], warning[0]
    assert sorted(_meta(tmp_path / "a.onnx")["assumed"]) == ["channel_order", "mean", "raw_scale"]


def test_options_set_the_preprocessing_and_silence_the_warning(tiny_posenet, tmp_path):
    out = tmp_path / "b.onnx"
    r = CliRunner().invoke(cli, ["convert", "caffe", str(tiny_posenet / "posenet.prototxt"), "-o", str(out), "--rgb",
                                 "--mean", "120,115,100", "--raw-scale", "1", "--scale", "0.5"])
    assert r.exit_code == 0, r.output
    assert "assumed" not in r.stderr
    meta = _meta(out)
    assert meta["channel_order"] == "RGB" and meta["mean"] == [120, 115, 100] and meta["raw_scale"] == 1
    assert meta["scale"] == 0.5 and meta["assumed"] == []
    # the image as the net now sees it, computed here from the file: (rgb / 255 * 1 - mean) * 0.5
    path = samples.paths()[0]
    x = Preprocess.from_onnx(str(out)).load([path]).numpy()[0]
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB).astype(np.float64)
    h, w = rgb.shape[:2]
    s = max(61 / h, 61 / w)
    nh, nw = max(61, round(h * s)), max(61, round(w * s))
    small = cv2.resize(rgb.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
    y0, x0 = (nh - 61) // 2, (nw - 61) // 2
    ref = (small[y0:y0 + 61, x0:x0 + 61] / 255.0 - np.array([120, 115, 100])) * 0.5
    np.testing.assert_allclose(x, ref.transpose(2, 0, 1), atol=1e-4)


def test_one_mean_value_and_partial_options(tiny_posenet):
    conv = convert_caffe_full(str(tiny_posenet / "posenet.prototxt"), weightless=True,
                              preprocess={"mean": [128], "channel_order": "bgr"})
    meta = json.loads({p.key: p.value for p in conv.model.metadata_props}["preimage.preprocess"])
    assert meta["mean"] == [128.0] * 3 and meta["channel_order"] == "BGR" and meta["assumed"] == ["raw_scale"]
    assert any("pixels 0..255" in n and "mean" not in n.split("assumed")[1] for n in conv.notices)


def test_bad_preprocess_options_are_one_line_errors(tiny_posenet, tmp_path):
    r = CliRunner().invoke(cli, ["convert", "caffe", str(tiny_posenet / "posenet.prototxt"), "-o", str(tmp_path / "c.onnx"),
                                 "--mean", "104,x,123"])
    assert r.exit_code == 2 and "--mean" in r.output and not (tmp_path / "c.onnx").exists()
