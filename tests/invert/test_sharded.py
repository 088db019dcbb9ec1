"""Long runs: exact resume of the engine from a checkpoint, torchrun shards against one process, kill -9 and
SIGTERM in the middle of a run, re-runs that skip finished samples."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from preimage.invert import engine, presets, sharded
from preimage.models import samples as bundled

from invert_nets import Net


@pytest.mark.parametrize("preset", ["mahendran2016", "posenet2016"])
@pytest.mark.parametrize("stop", [3, 10, 11, 13])  # in the jittered stage, at its end, in the fine stage
@pytest.mark.parametrize("death", [KeyboardInterrupt, RuntimeError])  # Ctrl-C saves; a crash keeps the last periodic
def test_engine_resumes_exactly_from_a_checkpoint(tmp_path, preset, stop, death):
    net = Net().double()
    torch.manual_seed(3)
    x0 = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 50
    t = net(x0)
    cfg = presets.get(preset, iters=10, fine_iters=4, jitter=True)

    def samples():  # two jitter amounts: two canvas groups
        return [engine.Sample(l, t[l][i].detach(), seed=i, C=20.0, T=T, reference=t[l][i].detach())
                for l, T in [("a", 2), ("fc", 3)] for i in range(2)]

    full, _ = engine.optimize(net, presets.recipe(cfg, samples()), (16, 16), dtype=torch.float64, progress=False)
    calls = {"n": 0}

    def dies(x):
        calls["n"] += 1
        if calls["n"] == stop + 1:
            raise death
        return net(x)

    ck = engine.Checkpoint(str(tmp_path / "ck.pt"), every=2)
    try:
        _, interrupted = engine.optimize(dies, presets.recipe(cfg, samples()), (16, 16), dtype=torch.float64,
                                         progress=False, checkpoint=ck)
        assert interrupted
    except RuntimeError:
        pass
    assert os.path.isfile(ck.path)
    res, interrupted = engine.optimize(net, presets.recipe(cfg, samples()), (16, 16), dtype=torch.float64,
                                       progress=False, checkpoint=ck)
    assert not interrupted and res[0]["resumed_from"] == (stop if death is KeyboardInterrupt else stop // 2 * 2)
    for a, b in zip(full, res):
        np.testing.assert_array_equal(a["x"].numpy(), b["x"].numpy())
        assert a["loss"] == b["loss"] and a["normalized_error"] == b["normalized_error"]


def test_image_lists_and_folders(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for name in ["b.png", "a.jpg", "notes.txt"]:
        (d / name).write_bytes(b"x")
    lst = tmp_path / "list.txt"
    lst.write_text("# two\nphotos/a.jpg\n\n/abs/c.png\n")
    assert sharded.expand_images([str(d)]) == [str(d / "a.jpg"), str(d / "b.png")]
    assert sharded.expand_images([str(lst)]) == [str(tmp_path / "photos" / "a.jpg"), "/abs/c.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no images in this folder"):
        sharded.expand_images([str(tmp_path / "empty")])


@pytest.fixture
def six_images(tmp_path):
    """The three bundled photographs and their mirror images: six real images."""
    d = tmp_path / "six"
    d.mkdir()
    for p in bundled.paths()[:3]:
        img = cv2.imread(p)
        stem = os.path.splitext(os.path.basename(p))[0]
        cv2.imwrite(str(d / f"{stem}.png"), img)
        cv2.imwrite(str(d / f"{stem}_mirror.png"), img[:, ::-1])
    return str(d)


def _cmd(model, images, out, extra=()):
    return ["-m", "preimage", "invert", "-m", model, "-l", "conv4", "--images", images, "--seeds", "2", "-q",
            "-o", str(out), "--device", "cpu"] + list(extra)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def _results(out):
    m = json.loads((out / "metrics.json").read_text())
    res = {(r["image"], r["layer"], r["seed"]): r for r in m["results"]}
    xs = {}
    for f in os.listdir(out / "results"):
        if f.endswith(".pt") and not f.endswith(".partial.pt"):
            d = torch.load(out / "results" / f, weights_only=False)["result"]
            xs[(d["image"], d["layer"], d["seed"])] = d["x"]
    return m, res, xs


def test_two_torchrun_processes_equal_one(tiny_posenet, six_images, tmp_path):
    model = str(tiny_posenet / "posenet.onnx")
    extra = ["--iters", "6", "--set", "fine_iters=2"]
    one = subprocess.run([sys.executable] + _cmd(model, six_images, tmp_path / "one", extra), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517"] + _cmd(model, six_images, tmp_path / "two", extra),
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    m1, r1, x1 = _results(tmp_path / "one")
    m2, r2, x2 = _results(tmp_path / "two")
    assert len(r1) == len(r2) == 12 and set(r1) == set(r2)
    assert [(r["image"], r["seed"]) for r in m1["results"]] == [(r["image"], r["seed"]) for r in m2["results"]]
    assert {r["batch_size"] for r in m2["results"]} == {6}  # each rank optimised its 3 images x 2 seeds
    for k in r1:
        np.testing.assert_allclose(x1[k].numpy(), x2[k].numpy(), rtol=1e-4, atol=1e-3)
        assert r1[k]["normalized_error"] == pytest.approx(r2[k]["normalized_error"], rel=1e-4)
    assert (tmp_path / "two" / "grid.png").is_file() and (tmp_path / "two" / "index.html").is_file()


def _wait_for_checkpoint(out, p, at_least, timeout=240):
    ck = out / "checkpoints"
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert p.poll() is None, p.communicate()
        for f in (os.listdir(ck) if ck.is_dir() else []):
            try:
                step = torch.load(ck / f, weights_only=False)["step"]
            except Exception:
                continue
            if step >= at_least:
                return step
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_kill_9_then_rerun_finishes_with_the_same_results_and_redoes_at_most_one_interval(tiny_posenet, six_images,
                                                                                           tmp_path):
    model = str(tiny_posenet / "posenet.onnx")
    extra = ["--iters", "60", "--set", "fine_iters=0", "--checkpoint-every", "5", "--batch-size", "6"]
    ref = subprocess.run([sys.executable] + _cmd(model, six_images, tmp_path / "ref", extra), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable] + _cmd(model, six_images, out, extra), env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = _wait_for_checkpoint(out, p, 20)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    again = subprocess.run([sys.executable] + _cmd(model, six_images, out, extra), env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    _, r_ref, x_ref = _results(tmp_path / "ref")
    m, r, x = _results(out)
    assert set(r) == set(r_ref) and len(r) == 12
    for k in r_ref:
        np.testing.assert_allclose(x[k].numpy(), x_ref[k].numpy(), rtol=1e-5, atol=1e-4)
    # the batches finished before the kill were skipped; the killed one resumed from its last checkpoint
    resumed = [v["resumed_from"] for v in m["results"] if v.get("resumed_from") is not None]
    assert resumed and min(resumed) >= seen and all(v % 5 == 0 for v in resumed)
    assert not os.listdir(out / "checkpoints")
    # a third run finds everything done and optimises nothing
    t0 = time.time()
    third = subprocess.run([sys.executable] + _cmd(model, six_images, out, extra), env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0 and json.loads((out / "metrics.json").read_text())["results"] == m["results"]
    assert time.time() - t0 < 60


def test_sigterm_writes_the_results_so_far_and_says_interrupted(tiny_posenet, six_images, tmp_path):
    model = str(tiny_posenet / "posenet.onnx")
    out = tmp_path / "term"
    extra = ["--iters", "400", "--set", "fine_iters=0", "--checkpoint-every", "5", "--batch-size", "4"]
    p = subprocess.Popen([sys.executable] + _cmd(model, six_images, out, extra), env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(out, p, 5)
    p.send_signal(signal.SIGTERM)
    text, _ = p.communicate(timeout=120)
    assert p.returncode == 143, text
    m = json.loads((out / "metrics.json").read_text())
    assert m["interrupted"] is True and m["results"]
    assert all(0 < r["iterations"] < 400 for r in m["results"])
    assert "run the same command again" in text
