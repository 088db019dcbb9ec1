"""Representations wherever a model goes: specs, geometry, load_features, open_model, the commands, and
``preimage features`` (checked against load_features and VLFeat, not against itself)."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli
from preimage.errors import PreimageError
from preimage.models import samples
from preimage.models.representations import REPRESENTATIONS, build, is_spec, parse_spec


def _invoke(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result


def test_specs(tmp_path, monkeypatch):
    assert set(REPRESENTATIONS) >= {"hog", "hogb", "dsift", "lbp"}
    assert is_spec("hog") and is_spec("hog:cell=8,variant=uoctti") and is_spec("DSIFT:bin=4")
    assert not is_spec("alexnet.onnx") and not is_spec("hogwarts") and not is_spec(None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hog").write_text("a file named like a representation")
    assert not is_spec("hog")
    assert parse_spec("hog:cell=4, variant=dalaltriggs") == ("hog", {"cell": "4", "variant": "dalaltriggs"})
    net = build("hogb:cell=4,variant=dalaltriggs,orientations=6,size=40x60")
    assert (net.cell, net.variant, net.k, net.bilinear) == (4, "dalaltriggs", 6, True)
    assert net.preprocess.input_size == [40, 60] and build("lbp:size=0").preprocess.input_size is None


@pytest.mark.parametrize("spec,needle", [("hog:cel=4", "no option cel"), ("hog:cell=x", "integer"),
                                         ("hog:variant=abc", "uoctti"), ("dsift:fast=maybe", "true or false"),
                                         ("hog:cell", "key=value"), ("sift", "unknown representation")])
def test_bad_specs_are_one_line(spec, needle):
    with pytest.raises(PreimageError) as e:
        build(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_inputs_are_one_line():
    with pytest.raises(PreimageError, match="at least 8 x 8"):
        build("hog")(torch.rand(1, 3, 6, 20))
    with pytest.raises(PreimageError, match="no output 'conv5'"):
        build("hog").select(["conv5"])


def _support(net, stage, x, y, xx):
    """Bounding box (rows, cols) of the input pixels that move unit (y, xx) of ``stage``."""
    x = x.clone().requires_grad_()
    net.select([stage])
    net(x)[stage][0, :, y, xx].sum().backward()
    g = x.grad[0].abs().sum(0).numpy()
    nz = np.argwhere(g > 1e-6 * g.max())  # (running sums leave rounding-level leaks)
    return nz[:, 0].min(), nz[:, 0].max(), nz[:, 1].min(), nz[:, 1].max()


@pytest.mark.parametrize("spec,stage", [("hog", "cells"), ("hog", "hog"), ("hogb:cell=5", "cells"),
                                        ("dsift", "dsift"), ("dsift:bin=4,step=3", "cells")])
def test_receptive_fields_bound_what_a_unit_sees(spec, stage):
    net = build(spec)
    x = torch.rand(1, 3, 90, 90)
    rf = net.receptive_fields[stage]
    (sy, sx), (ty, tx), (oy, ox) = rf["size"], rf["stride"], rf["offset"]
    first = -(-(2 - oy) // ty)  # the first unit whose field lies inside the image
    for uy, ux in [(first, first), (first + 1, first + 2)]:
        top, bottom, left, right = _support(net, stage, x, uy, ux)
        assert oy + uy * ty <= top and bottom <= oy + uy * ty + sy - 1, (spec, stage, top, bottom, rf)
        assert ox + ux * tx <= left and right <= ox + ux * tx + sx - 1, (spec, stage, left, right, rf)
        assert bottom - top + 1 >= sy - 4  # and the field is not much larger than what the unit sees


def test_load_features_and_open_model_take_a_spec():
    from preimage.converters.onnx_torch.load import load_features
    from preimage.invert.model import open_model

    fx = load_features("hogb:cell=4", outputs=["cells", "hogb"])
    x = fx.preprocess.load(samples.paths()[:1], size=(48, 40))
    assert x.shape == (1, 3, 48, 40) and 0 <= x.min() and x.max() <= 1  # RGB in [0, 1]
    out = fx(x)
    assert list(out) == ["cells", "hogb"] and out["hogb"].shape == (1, 31, 12, 10)
    m = open_model("hog", ["hog"])
    assert m.input_size == [256, 256] and m.stride("hog") == (8, 8) and m.features.onnx_model is None


def test_model_option_accepts_specs():
    from preimage.commands.options import model_path

    assert model_path(None, None, "hog:cell=4") == "hog:cell=4"
    with pytest.raises(PreimageError):
        model_path(None, None, "weights.caffemodel")


def test_layers_command_on_a_representation():
    r = _invoke(["layers", "hog:cell=4,size=64"])
    assert "cells" in r.output and "Nx31x16x16" in r.output and "10 / 4" in r.output
    table = json.loads(_invoke(["layers", "lbp", "--json"]).output)
    assert [row["name"] for row in table["layers"]] == ["grey", "patterns", "cells", "lbp"]


def test_invert_runs_on_hog(tmp_path):
    _invoke(["invert", "-m", "hog:size=48", "-l", "hog", "--iters", "2", "--set", "fine_iters=0", "--set", "C=20",
             "--set", "jitter=false", "-q", "-o", str(tmp_path), samples.paths()[0]])
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert len(m["results"]) == 1 and m["results"][0]["layer"] == "hog"


def test_features_command_matches_load_features(tiny_posenet, tmp_path):
    from preimage.converters.onnx_torch.load import load_features

    onnx = str(tiny_posenet / "posenet.onnx")
    imgs = samples.paths()[:2]
    out = tmp_path / "f.npz"
    _invoke(["features", "-m", onnx, "-l", "conv4", "-l", "fc5", *imgs, "-o", str(out)])
    got = np.load(out)
    assert sorted(got.files) == ["conv4", "fc5"]
    fx = load_features(onnx, outputs=["conv4", "fc5"])
    with torch.no_grad():
        ref = fx(fx.preprocess.load(imgs))
    for k in ("conv4", "fc5"):
        assert got[k].dtype == np.float32 and got[k].shape == tuple(ref[k].shape)
        np.testing.assert_allclose(got[k], ref[k].numpy(), rtol=0, atol=1e-6 * np.abs(got[k]).max())


def test_features_command_matches_vlfeat(vlfeat, tmp_path):
    from preimage.preprocess import load_image

    img = samples.paths(["coffee"])[0]
    out = tmp_path / "hog.npz"
    _invoke(["features", "-m", "hog:size=0", "-l", "hog", "-l", "cells", img, "-o", str(out)])
    got = np.load(out)
    # the same float32 input the model gets (pixel * (1/255)): HOG's hard bins see exact ties in uint8
    # photographs, so an input rounded differently (pixel / 255) can move a pixel to the other bin
    x = np.ascontiguousarray(load_image(img).transpose(2, 0, 1)) * np.float32(1 / 255.0)
    ref = vlfeat.hog(x)
    assert got["hog"].shape == (1,) + ref.shape and got["cells"].shape[1] == 18
    assert np.abs(got["hog"][0] - ref).max() <= 1e-5 * ref.max()


def test_features_errors_leave_no_file(tmp_path):
    out = tmp_path / "f.npz"
    r = CliRunner().invoke(cli, ["features", "-m", "dsift:size=0", "-l", "dsift", *samples.paths()[:2], "-o", str(out)])
    assert r.exit_code == 2 and "different sizes" in r.output and not out.exists()
    assert not list(tmp_path.iterdir())
    r = CliRunner().invoke(cli, ["features", "-m", "nosuch.onnx", "-l", "x", samples.paths()[0], "-o", str(out)])
    assert r.exit_code == 2 and "nosuch.onnx" in r.output


def test_decoder_extract_takes_a_representation(tmp_path):
    _invoke(["decoder", "extract", "-m", "hog:size=64", "-l", "hog", "-i", samples.FOLDER, "-o", str(tmp_path / "f")])
    index = json.loads((tmp_path / "f" / "index.json").read_text())
    assert index["feature_shape"] == [31, 8, 8] and index["count"] == len(samples.names())


def test_pixel_units_give_the_same_features():
    img = samples.paths()[:1]
    unit, pix = build("hogb:size=64"), build("hogb:size=64,pixels=true")
    xu, xp = unit.preprocess.load(img), pix.preprocess.load(img)
    assert xp.min() < -50 and xp.max() > 50  # mean-subtracted 8-bit units
    a, b = unit(xu)["hogb"], pix(xp)["hogb"]
    assert (a - b).abs().max() <= 1e-3 * a.abs().max()  # the same image, rounded differently
