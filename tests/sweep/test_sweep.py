"""preimage sweep: search-space parsing, batched = separate trials, shared SQLite studies, resume, Ctrl-C."""
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from preimage.errors import PreimageError
from preimage.invert import api
from preimage.invert.model import open_model
from preimage.models import samples
from preimage.sweep import Target, has_batched_trials, parse_param, parse_space, sweep_inversion

ROOT = Path(__file__).resolve().parents[2]
FAST = {"fine_iters": 0}
SPACE = ["lr=log:1e-2:1e2", "weight.sqrt_tv=log:1e-8:1e-3"]


def _target(tiny_posenet, **kw):
    args = dict(model=str(tiny_posenet / "posenet.onnx"), images=samples.paths()[:1], preset="posenet2016", iters=3,
                overrides=FAST, device="cpu")
    args.update(kw)
    return Target("invert", layers=["conv4"], **args)


def _load(out):
    return optuna.load_study(study_name="sweep", storage=f"sqlite:///{out}/study.db")


def _complete(study):
    return sorted((t for t in study.get_trials() if t.state.name == "COMPLETE"), key=lambda t: t.number)


def test_space_specs():
    p = parse_param("lr=log:1e-10:1e4")
    assert (p.kind, p.low, p.high, p.log) == ("log", 1e-10, 1e4, True)
    assert parse_param("weight.tv=lin:0:2").kind == "lin"
    assert parse_param("iters=int:log:10:1000").kind == "intlog"
    assert parse_param("optimizer=choice:adam,adagrad").choices == ("adam", "adagrad")
    assert parse_param("B=80").kind == "fixed"
    for bad in ["lr", "lr=log:0:1", "lr=log:5:1", "lr=log:a:1", "n=int:1.5:3", "lr=log:1"]:
        with pytest.raises(PreimageError):
            parse_param(bad)
    with pytest.raises(PreimageError, match="twice"):
        parse_space(["lr=log:1:2", "lr=lin:1:2"])
    with pytest.raises(PreimageError, match="nothing to search"):
        parse_space(["B=80"])


@pytest.mark.skipif(not has_batched_trials(), reason="needs batched trials API (api.invert(..., trials=[...]))")
def test_eight_batched_trials_equal_eight_separate_runs(tiny_posenet, tmp_path):
    import torch

    space = parse_space(SPACE)
    m = open_model(str(tiny_posenet / "posenet.onnx"), ["conv4"], "cpu")
    m = replace(m, features=m.features.double(), dtype=torch.float64)  # float64: batching must not change a bit
    a = sweep_inversion(_target(tiny_posenet, model=m), space, str(tmp_path / "a"), n_trials=8, batch=8, seed=3,
                        report=False)
    b = sweep_inversion(_target(tiny_posenet, model=m), space, str(tmp_path / "b"), n_trials=8, batch=1, seed=3,
                        batched=False, report=False)
    assert a.complete == b.complete == 8
    ta, tb = _complete(_load(tmp_path / "a")), _complete(_load(tmp_path / "b"))
    assert all(t.user_attrs["trials_in_batch"] == 8 for t in ta) and all(t.user_attrs["trials_in_batch"] == 1 for t in tb)
    for x, y in zip(ta, tb):
        assert x.params == y.params
        assert x.value == pytest.approx(y.value, rel=1e-9, abs=1e-12)


def test_separate_trials_score_like_plain_invert_runs(tiny_posenet, tmp_path):
    """Each trial's objective is the mean relative loss of api.invert run with that trial's overrides."""
    space = parse_space(["lr=log:1e-1:1e2"])
    s = sweep_inversion(_target(tiny_posenet), space, str(tmp_path), n_trials=2, batch=2, seed=0, batched=False,
                        report=False)
    assert s.complete == 2
    for t in _complete(_load(tmp_path)):
        run = api.invert(str(tiny_posenet / "posenet.onnx"), ["conv4"], samples.paths()[:1], preset="posenet2016",
                         iters=3, device="cpu", progress=False, overrides={"fine_iters": "0", "lr": repr(t.params["lr"])})
        assert t.value == pytest.approx(run.results[0]["relative_loss"], rel=1e-5)
        pics = t.user_attrs["pictures"]
        assert len(pics) == 1 and (tmp_path / pics[0]).is_file()


def test_resume_continues_the_study(tiny_posenet, tmp_path):
    space = parse_space(["lr=log:1e-1:1e2"])
    first = sweep_inversion(_target(tiny_posenet), space, str(tmp_path), n_trials=2, batch=2, seed=0, report=False)
    before = [(t.number, t.params, t.value) for t in _complete(_load(tmp_path))]
    again = sweep_inversion(_target(tiny_posenet), space, str(tmp_path), n_trials=3, batch=2, seed=1, report=False)
    after = _complete(_load(tmp_path))
    assert first.ran == 2 and again.ran == 1 and again.complete == 3
    assert [(t.number, t.params, t.value) for t in after[:2]] == before
    with pytest.raises(PreimageError, match="another search"):
        sweep_inversion(_target(tiny_posenet, iters=4), space, str(tmp_path), n_trials=4, report=False)


class _StopAt:
    """A feature callable that raises KeyboardInterrupt (as Ctrl-C does) at its ``at``-th call."""

    def __init__(self, features, at):
        self.features, self.at, self.calls = features, at, 0

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.features(x)


def test_ctrl_c_keeps_finished_trials_and_resume_redoes_the_rest(tiny_posenet, tmp_path):
    space = parse_space(["lr=log:1e-1:1e2"])
    m = open_model(str(tiny_posenet / "posenet.onnx"), ["conv4"], "cpu")
    # one trial per api call (batched=False): 1 target forward + 3 steps + 1 final forward = 5 calls per trial;
    # the 8th call is inside the second trial's optimisation, where the engine catches the interrupt
    stopper = _StopAt(m.features, 8)
    s = sweep_inversion(_target(tiny_posenet, model=replace(m, features=stopper)), space, str(tmp_path), n_trials=4,
                        batch=2, seed=0, batched=False, report=False)
    assert s.interrupted and s.complete == 1
    study = _load(tmp_path)
    states = sorted((t.state.name, t.user_attrs.get("status")) for t in study.get_trials())
    assert states == [("COMPLETE", "complete"), ("FAIL", "interrupted")]
    s = sweep_inversion(_target(tiny_posenet), space, str(tmp_path), n_trials=4, batch=2, seed=0, batched=False,
                        report=False)
    assert not s.interrupted and s.complete == 4 and s.ran == 3


def test_two_processes_share_one_sqlite_study(tiny_posenet, tmp_path):
    out = tmp_path / "shared"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "preimage", "sweep", "invert", "-m", str(tiny_posenet / "posenet.onnx"), "-l", "conv4",
           "--preset", "posenet2016", "--iters", "2", "--set", "fine_iters=0", "--param", "lr=log:1e-1:1e2",
           "-n", "6", "--batch-size", "2", "-q", "-o", str(out), samples.paths()[0]]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = _load(out).get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6 and len({t.number for t in complete}) == 6
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in trials)
    assert all(t.user_attrs.get("status") == "surplus" for t in trials if t.state.name == "FAIL")
    assert all(math.isfinite(t.value) and t.user_attrs["results"] for t in complete)
    report = json.loads((out / "results.json").read_text())
    assert len([t for t in report["trials"] if t["state"] == "COMPLETE"]) == 6
    html = (out / "index.html").read_text()
    assert "plots/history.png" in html and "plots/param-lr.png" in html
    for t in complete:
        assert all((out / p).is_file() for p in t.user_attrs["pictures"])


@pytest.mark.parametrize("args,needle", [
    (["--param", "lr=log:0:1"], "LOW > 0"),
    (["--param", "B=80"], "nothing to search"),
    (["--param", "lr=log:1e-3:1", "--set", "frobnicate=1"], "frobnicate"),
    (["--param", "frobnicate=log:1e-3:1"], "frobnicate"),
])
def test_bad_sweep_input_is_one_line(tiny_posenet, tmp_path, args, needle):
    from click.testing import CliRunner

    from preimage.cli import cli

    r = CliRunner().invoke(cli, ["sweep", "invert", "-m", str(tiny_posenet / "posenet.onnx"), "-l", "conv4", "--iters", "1",
                                 "-n", "1", "-q", "-o", str(tmp_path), samples.paths()[0]] + args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "study.db").exists()  # refused before a study was made


def test_decoder_sweep_refuses_an_unknown_option(tmp_path):
    from preimage.sweep import sweep_decoder

    with pytest.raises(PreimageError, match="not a decoder training option"):
        sweep_decoder(str(tmp_path), parse_space(["frobnicate=lin:0:1"]), str(tmp_path / "o"), n_trials=1)
