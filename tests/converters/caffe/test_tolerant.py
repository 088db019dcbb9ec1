"""Tolerant reading and conversion up to what works: fields and layer types no schema has, --until,
--strict, the left-out metadata, and the GoogLeNet-plus-Normalize case of issue 15."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli
from preimage.converters.caffe.convert import convert_caffe_full
from preimage.converters.caffe.writer import random_weights, write_caffemodel
from preimage.converters.onnx_torch.load import load_features
from preimage.errors import PreimageError
from preimage.models import architectures

from caffe_helpers import meta, run

NET = """name: "t"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "odd" type: "Convolution" bottom: "conv1" top: "odd"
  convolution_param { num_output: 4 kernel_size: 1 hole: 2 } }
layer { name: "after" type: "ReLU" bottom: "odd" top: "after" }
layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
"""


def _write(tmp_path, text, name="net.prototxt"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_field_leaves_layer_and_dependents_out(tmp_path):
    p = _write(tmp_path, NET)
    conv = convert_caffe_full(p, random_weights=True)
    left = {e["name"]: e for e in meta(conv.model)["preimage.unsupported"]}
    assert set(left) == {"odd", "after"}
    assert left["odd"]["line"] == 6 and "'hole'" in left["odd"]["reason"] and left["after"]["blocked_by"] == "odd"
    warn = [n for n in conv.notices if "left out layer 'odd'" in n]
    assert warn and "net.prototxt:6" in warn[0] and "after" in warn[0]
    names = {n.name for n in conv.model.graph.node}
    assert "pool" in names and "odd" not in names and "after" not in names
    assert "odd" not in meta(conv.model)["preimage.blobs"]


def test_strict_fails_with_line_and_column(tmp_path):
    p = _write(tmp_path, NET)
    with pytest.raises(PreimageError) as e:
        convert_caffe_full(p, random_weights=True, strict=True)
    assert f"{p}:7:" in str(e.value) and "hole" in str(e.value)


@pytest.mark.parametrize("broken", ['layer { name: "x" type: "ReLU"\n',
                                    'layer { name: "x" type: "ReLU" bottom: "conv1" top: "x" relu_param { negative_slope: "a" } }\n'])
def test_real_syntax_errors_still_fail_with_line_column(tmp_path, broken):
    p = _write(tmp_path, NET + broken)
    with pytest.raises(PreimageError) as e:
        convert_caffe_full(p, random_weights=True)
    msg = str(e.value)
    assert "\n" not in msg and f"{p}:1" in msg and "syntax error" in msg


def test_empty_prototxt_is_an_error(tmp_path):
    p = _write(tmp_path, "# nothing here\n")
    r = CliRunner().invoke(cli, ["convert", "caffe", str(p), "--random-weights"])
    assert r.exit_code == 2 and "no layers" in r.output, r.output
    assert not (tmp_path / "net.onnx").exists()


def test_until_converts_only_what_the_layer_needs(tmp_path):
    p = _write(tmp_path, NET)
    conv = convert_caffe_full(p, random_weights=True, until="pool")
    assert [l["name"] for l in meta(conv.model)["preimage.layers"]] == ["conv1", "relu1", "pool"]
    assert "preimage.unsupported" not in meta(conv.model)
    with pytest.raises(PreimageError, match="'odd' .*blocks it"):
        convert_caffe_full(p, random_weights=True, until="after")
    with pytest.raises(PreimageError, match="no layer or blob"):
        convert_caffe_full(p, random_weights=True, until="nosuch")


def test_requesting_a_left_out_layer_names_the_blocking_layer(tmp_path):
    p = _write(tmp_path, NET)
    model = convert_caffe_full(p, random_weights=True).model
    with pytest.raises(PreimageError) as e:
        load_features(model, outputs=["after"])
    msg = str(e.value)
    assert "\n" not in msg and "'after' was left out" in msg and "layer 'odd'" in msg


def test_layers_command_marks_left_out_layers(tmp_path):
    p = _write(tmp_path, NET)
    r = CliRunner().invoke(cli, ["layers", str(p), "--no-blobs"])
    assert r.exit_code == 0, r.output
    row = next(l for l in r.output.splitlines() if l.startswith("odd "))
    assert "LEFT OUT" in row and "left out: odd (Convolution)" in r.output


def test_left_out_types_and_python_layers(tmp_path):
    text = NET.replace("hole: 2", "") + (
        'layer { name: "roi" type: "ROIPooling" bottom: "conv1" bottom: "pool" top: "roi" '
        'roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 } }\n'
        'layer { name: "py" type: "Python" bottom: "pool" top: "py" python_param { module: "m" layer: "L" } }\n')
    conv = convert_caffe_full(_write(tmp_path, text), random_weights=True)
    left = {e["name"]: e["reason"] for e in meta(conv.model)["preimage.unsupported"]}
    assert set(left) == {"roi", "py"} and "ROIPooling" in left["roi"] and "Python" in left["py"]


# ---- the case of issue 15: GoogLeNet with an SSD Normalize layer appended -----------------------------
def _googlenet(tmp_path, extra):
    text = architectures.googlenet(width=0.125, num_classes=10, input_size=64) + extra
    p = _write(tmp_path, text, "googlenet.prototxt")
    weights = random_weights(p, seed=3)
    if "inception_4e/norm" in weights:  # known per-channel scales
        c = weights["inception_4e/norm"][0].size
        weights["inception_4e/norm"] = [np.linspace(0.5, 2.0, c, dtype=np.float32)]
    write_caffemodel(tmp_path / "googlenet.caffemodel", p, weights)
    line = text[:text.index(extra.strip()[:20])].count("\n") + 1
    return p, line


NORMALIZE = ('layer { name: "inception_4e/norm" type: "Normalize" bottom: "inception_4e/output" '
             'top: "inception_4e/norm" norm_param { across_spatial: false channel_shared: false } }\n')
FANCY = 'layer { name: "fancy" type: "FancyNewLayer" bottom: "inception_4e/output" top: "fancy" }\n'


def test_googlenet_with_normalize_converts_and_inverts_at_inception_4e(tmp_path):
    p, _ = _googlenet(tmp_path, NORMALIZE)
    r = CliRunner().invoke(cli, ["convert", "caffe", str(p), "-o", str(tmp_path / "g.onnx")])
    assert r.exit_code == 0, r.output
    net = load_features(tmp_path / "g.onnx", outputs=["inception_4e/output", "inception_4e/norm"])
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
    f = out["inception_4e/output"].double()
    scale = torch.linspace(0.5, 2.0, f.shape[1], dtype=torch.float64).view(1, -1, 1, 1)
    want = f / torch.sqrt((f * f).sum(1, keepdim=True) + 1e-10) * scale  # SSD's Normalize, float64
    err = (out["inception_4e/norm"].double() - want).abs().max() / want.abs().max()
    assert err < 1e-5, err
    sample = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(sample)
    r = CliRunner().invoke(cli, ["invert", "-m", str(tmp_path / "g.onnx"), "-l", "inception_4e/output", str(sample),
                                 "--iters", "2", "--set", "fine_iters=0", "-q", "--device", "cpu",
                                 "-o", str(tmp_path / "inv")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "inv" / "metrics.json").exists()


def test_googlenet_with_unknown_layer_warns_with_line_and_strict_fails(tmp_path):
    p, line = _googlenet(tmp_path, FANCY)
    r = CliRunner().invoke(cli, ["convert", "caffe", str(p), "-o", str(tmp_path / "g.onnx")])
    assert r.exit_code == 0, r.output
    assert f"left out layer 'fancy' (FancyNewLayer, googlenet.prototxt:{line})" in r.output
    model_meta = meta(__import__("onnx").load(str(tmp_path / "g.onnx")))
    assert [e["name"] for e in model_meta["preimage.unsupported"]] == ["fancy"]
    r = CliRunner().invoke(cli, ["convert", "caffe", str(p), "-o", str(tmp_path / "s.onnx"), "--strict"])
    assert r.exit_code == 2 and "FancyNewLayer" in r.output and f"line {line}" in r.output
    assert not (tmp_path / "s.onnx").exists()


# ---- Interp cases OpenCV 4 does not run (it ignores pads, refuses shrink_factor and a second bottom) ----
def _interp2_ref(x, ho, wo):
    """DeepLab's caffe_cpu_interp2 (bilinear, corners aligned) in float64 loops."""
    n, c, h, w = x.shape
    y = np.zeros((n, c, ho, wo))
    rh = (h - 1) / (ho - 1) if ho > 1 else 0.0
    rw = (w - 1) / (wo - 1) if wo > 1 else 0.0
    for i in range(ho):
        h1r = rh * i
        h1 = int(h1r)
        h1p = 1 if h1 < h - 1 else 0
        l1 = h1r - h1
        for j in range(wo):
            w1r = rw * j
            w1 = int(w1r)
            w1p = 1 if w1 < w - 1 else 0
            l2 = w1r - w1
            y[:, :, i, j] = ((1 - l1) * ((1 - l2) * x[:, :, h1, w1] + l2 * x[:, :, h1, w1 + w1p])
                             + l1 * ((1 - l2) * x[:, :, h1 + h1p, w1] + l2 * x[:, :, h1 + h1p, w1 + w1p]))
    return y


@pytest.mark.parametrize("param,crop,size", [("shrink_factor: 2", 0, (5, 6)), ("zoom_factor: 2 pad_beg: -1 pad_end: -1", 1, (13, 17)),
                                             ("shrink_factor: 2 zoom_factor: 3", 0, (13, 16)), (None, 0, (4, 5))])
def test_interp_cases_against_deeplab_transcription(tmp_path, param, crop, size):
    body = f"interp_param {{ {param} }}" if param else ""
    extra = ('layer { name: "ref" type: "Input" top: "ref" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 5 } } }\n'
             if param is None else "")
    bottoms = 'bottom: "data" bottom: "ref"' if param is None else 'bottom: "data"'
    text = ('name: "i"\ninput: "data"\ninput_shape { dim: 1 dim: 2 dim: 9 dim: 11 }\n' + extra
            + f'layer {{ name: "up" type: "Interp" {bottoms} top: "up" {body} }}\n')
    model = convert_caffe_full(_write(tmp_path, text), random_weights=True).model
    x = np.random.default_rng(1).standard_normal((1, 2, 9, 11)).astype(np.float32)
    feeds = {"data": x}
    if param is None:
        feeds["ref"] = np.zeros((1, 1, 4, 5), np.float32)
    got = run(model, feeds, ["up"])["up"]
    xc = x[:, :, crop:9 - crop, crop:11 - crop].astype(np.float64)
    want = _interp2_ref(xc, *size)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    fe = load_features(model, outputs=["up"])
    with torch.no_grad():
        tgot = fe(*[torch.from_numpy(feeds[n]) for n in fe.input_names])["up"].numpy()
    assert np.abs(tgot - want).max() <= 1e-5 * np.abs(want).max()


def test_validate_for_a_left_out_layer_is_one_line(tmp_path):
    p = _write(tmp_path, NET)
    model = tmp_path / "net.onnx"
    convert_caffe_full(p, random_weights=True, output=model)
    ref = tmp_path / "ref.npz"
    np.savez(ref, after=np.zeros((1, 4, 6, 6), np.float32))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    r = CliRunner().invoke(cli, ["validate", "-m", str(model), "-r", str(ref), "--keys", "layers",
                                 "--input", str(tmp_path / "x.npy")])
    assert r.exit_code == 2, r.output
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "'after' was left out" in lines[0] and "'odd'" in lines[0], r.output


def test_caffemodel_with_a_forks_own_field_number_reads(tmp_path):
    """DeepLab writes interp_param as field 143, BVLC's input_param: the caffemodel reader decodes only
    names and blobs, so such a file still gives its weights."""
    from preimage.converters.caffe.wire import len_prefix

    text = ('name: "d"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 5 dim: 5 }\n'
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 2 kernel_size: 1 } }\n'
            'layer { name: "up" type: "Interp" bottom: "conv" top: "up" interp_param { zoom_factor: 2 } }\n')
    p = _write(tmp_path, text, "d.prototxt")
    w = tmp_path / "d.caffemodel"
    write_caffemodel(w, p, seed=1)
    interp = b"\x18\x02"  # InterpParameter { zoom_factor: 2 } (field 3, varint)
    layer = (len_prefix(1, 2) + b"up" + len_prefix(2, 6) + b"Interp" + len_prefix(143, len(interp)) + interp)
    w.write_bytes(w.read_bytes() + len_prefix(100, len(layer)) + layer)
    conv = convert_caffe_full(p, w)
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype(np.float32)
    assert run(conv.model, {"data": x}, ["up"])["up"].shape == (1, 2, 9, 9)


def test_unknown_field_of_a_data_layer_is_ignored_with_a_warning(tmp_path):
    text = NET.replace("hole: 2", "").replace(
        'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n',
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } }\n'
        '  transform_param { resize_param { height: 8 } } }\n')
    conv = convert_caffe_full(_write(tmp_path, text), random_weights=True)
    assert "preimage.unsupported" not in meta(conv.model)
    assert any("net.prototxt:3:" in n and "resize_param" in n and "data layer 'data'" in n for n in conv.notices)


def test_ssd_training_layers_are_dropped(tmp_path):
    text = NET.replace("hole: 2", "") + (
        'layer { name: "eval" type: "DetectionEvaluate" bottom: "pool" bottom: "pool" top: "eval" }\n')
    conv = convert_caffe_full(_write(tmp_path, text), random_weights=True)
    assert "preimage.unsupported" not in meta(conv.model)
    assert any("dropped training-only layer 'eval'" in n for n in conv.notices)
