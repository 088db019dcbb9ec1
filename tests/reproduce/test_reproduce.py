"""preimage reproduce: --list, and the quick versions of mahendran-table5 and posenet-search on a tiny PoseNet."""
import json

import pytest
from click.testing import CliRunner

from preimage.cli import cli
from preimage.invert import api
from preimage.models import samples

# the tiny PoseNet's layer outputs in order, as its prototxt defines them (tests/conftest.py)
POSENET_LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3", "conv4", "relu4",
                  "pool4", "fc5", "relu5", "fc6", "relu6"]


def _invoke(args, code=0):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == code, r.output
    return r


def test_list_names_every_reproduction():
    out = _invoke(["reproduce", "--list"]).output
    for name in ["mahendran-table5", "mahendran-table4", "mahendran-figures", "posenet-search", "dosovitskiy-experiments"]:
        assert name in out


def test_table4_quick(tmp_path):
    _invoke(["reproduce", "mahendran-table4", "--quick", "-q", "--device", "cpu", "-o", str(tmp_path)])
    table = json.loads((tmp_path / "table4.json").read_text())
    rows = {r["representation"]: r for r in table["rows"]}
    assert {"hog", "hogb", "dsift"} <= set(rows) and rows["hog"]["paper %"] == "36.6 +- 17.3"
    assert (tmp_path / "index.html").is_file()


def test_table5_quick(tiny_posenet, tmp_path):
    onnx = str(tiny_posenet / "posenet.onnx")
    _invoke(["reproduce", "mahendran-table5", "-m", onnx, "--quick", "-q", "--device", "cpu", "-o", str(tmp_path)])
    table = json.loads((tmp_path / "table5.json").read_text())
    assert [r["layer"] for r in table["rows"]] == POSENET_LAYERS
    assert all(r[f"C={c} paper %"] is None for r in table["rows"] for c in (1, 20, 100, 300))  # not AlexNet
    # one cell against a plain inversion at that C (the quick schedule: first image, 5 iterations, no fine stage)
    run = api.invert(onnx, ["conv4"], samples.paths()[:1], iters=5, overrides={"fine_iters": "0", "C": "20"},
                     device="cpu", progress=False)
    cell = next(r for r in table["rows"] if r["layer"] == "conv4")["C=20 measured %"]
    assert float(cell.split(" +- ")[0]) == pytest.approx(100 * run.results[0]["normalized_error"], abs=0.051)
    for f in ["table5.md", "error_vs_depth.png", "reconstructions.png", "index.html"]:
        assert (tmp_path / f).is_file(), f
    assert "| conv4 |" in (tmp_path / "table5.md").read_text()


def test_posenet_search_quick(tiny_posenet, tmp_path):
    _invoke(["reproduce", "posenet-search", "-m", str(tiny_posenet / "posenet.onnx"), "--quick", "-q", "--seed", "0",
             "--device", "cpu", "-o", str(tmp_path)])
    rows = json.loads((tmp_path / "searches.json").read_text())["rows"]
    assert [r["trials"] for r in rows] == [6, 6, 1]
    for k, sub in ((0, "search1"), (1, "search2")):
        trials = json.loads((tmp_path / sub / "results.json").read_text())["trials"]
        values = [t["value"] for t in trials if t["state"] == "COMPLETE"]
        assert len(values) == 6 and rows[k]["best relative loss"] == min(values)
        assert (tmp_path / sub / "index.html").is_file()
    search1 = json.loads((tmp_path / "search1" / "results.json").read_text())
    assert search1["definition"]["overrides"]["weight.l6"] == "0"  # the first search runs without regularisers
    assert all(1e-10 <= t["params"]["lr"] <= 1e4 for t in search1["trials"])


def test_figures_quick(tiny_posenet, tmp_path):
    from preimage.preprocess import load_image

    _invoke(["reproduce", "mahendran-figures", "-m", str(tiny_posenet / "posenet.onnx"), "--quick", "-q", "--iters", "2",
             "--device", "cpu", "-o", str(tmp_path)])
    html = (tmp_path / "index.html").read_text()
    for name in ["multi_seed", "masks", "maximization", "caricatures"]:
        assert f"{name}.png" in html
        assert min(load_image(tmp_path / f"{name}.png").shape[:2]) > 100
