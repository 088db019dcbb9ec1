"""The invert / maximize / caricature commands on a small converted Caffe model."""
import json

import pytest
from click.testing import CliRunner

from preimage.cli import cli
from preimage.models import samples


@pytest.fixture
def tiny_onnx(tiny_posenet):
    return str(tiny_posenet / "posenet.onnx")


def _invoke(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result


def test_invert_command(tiny_onnx, tmp_path):
    img = samples.paths()[0]
    r = _invoke(["invert", "-m", tiny_onnx, "-l", "conv4", "-l", "fc5", "--seeds", "2", "--iters", "3",
                 "--set", "fine_iters=1", "--set", "B=90", "-q", "-o", str(tmp_path), img])
    assert "mean normalised error" in r.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert len(m["results"]) == 4 and m["config"]["B"] == 90 and m["config"]["fine_iters"] == 1
    assert {(x["layer"], x["seed"]) for x in m["results"]} == {("conv4", 0), ("conv4", 1), ("fc5", 0), ("fc5", 1)}
    assert all(x["iterations"] == 4 for x in m["results"])
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "index.html").is_file()


def test_invert_with_mask_and_posenet_preset(tiny_onnx, tmp_path):
    _invoke(["invert", "-m", tiny_onnx, "-l", "conv4", "--mask", "window:1", "--mask", "channels:0-9",
             "--preset", "posenet2016", "--iters", "2", "--set", "fine_iters=0", "-q", "-o", str(tmp_path)])
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["preset"] == "posenet2016" and len(m["results"]) == len(samples.names())


def test_maximize_and_caricature_commands(tiny_onnx, tmp_path):
    _invoke(["maximize", "-m", tiny_onnx, "-l", "fc5", "-u", "3", "-u", "7", "--iters", "2", "--set", "fine_iters=0",
             "-q", "-o", str(tmp_path / "max")])
    m = json.loads((tmp_path / "max" / "metrics.json").read_text())
    assert [x["unit"] for x in m["results"]] == [3, 7]
    _invoke(["caricature", "-m", tiny_onnx, "-l", "conv4", "--iters", "2", "--set", "fine_iters=0", "-q",
             "-o", str(tmp_path / "car"), samples.paths()[1]])
    assert (tmp_path / "car" / "grid.png").is_file()


@pytest.mark.parametrize("args,needle", [
    (["-l", "nosuchlayer"], "nosuchlayer"),
    (["-l", "conv4", "--mask", "window:zz"], "mask"),
    (["-l", "conv4", "--set", "frobnicate=1"], "frobnicate"),
    (["-l", "conv4", "--device", "cuda:7"], "cuda"),
])
def test_bad_input_is_one_clear_line(tiny_onnx, tmp_path, args, needle):
    import torch

    if "cuda:7" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = CliRunner().invoke(cli, ["invert", "-m", tiny_onnx, "--iters", "1", "-q", "-o", str(tmp_path)] + args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "metrics.json").exists()


def test_missing_model_file(tmp_path):
    r = CliRunner().invoke(cli, ["invert", "-m", str(tmp_path / "nope.onnx"), "-l", "fc5"])
    assert r.exit_code == 2 and "nope.onnx" in r.output


def test_ctrl_c_writes_results_so_far_and_exits_130(tiny_onnx, tmp_path):
    """A real SIGINT to a running `preimage invert`: the report is written with what was reached."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "preimage", "invert", "-m", tiny_onnx, "-l", "conv4", "--iters", "100000",
           "-o", str(out), samples.paths()[0]]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    seen = ""
    while "invert:" not in seen and time.time() < deadline:  # wait until the optimization runs
        seen += p.stdout.read(1)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=120)
    assert p.returncode == 130, seen + rest
    m = json.loads((out / "metrics.json").read_text())
    assert m["interrupted"] is True
    assert 0 < m["results"][0]["iterations"] < 100000
    assert (out / "grid.png").is_file()


def test_preset_names_come_from_the_registry(tiny_onnx, tmp_path):
    """Every registered preset is accepted (mahendran2016-shallow too); another name is refused before any work."""
    r = CliRunner().invoke(cli, ["invert", "-m", tiny_onnx, "-l", "conv4", "--preset", "mahendran2016-shallow",
                                 "--iters", "1", "--set", "fine_iters=0", "-q", "-o", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert m["preset"] == "mahendran2016-shallow" and m["results"][0]["C"] == 20 and m["results"][0]["T"] == 1
    r = CliRunner().invoke(cli, ["invert", "-m", tiny_onnx, "-l", "conv4", "--preset", "nope", "-o", str(tmp_path / "no")])
    assert r.exit_code == 2 and "unknown preset 'nope'" in r.output and not (tmp_path / "no").exists()
