"""Mutated .npz references, gradient files and inputs (dtypes, shapes, keys, NaN, damaged bytes) through
``preimage validate --json``: a report (exit 0 or 1, a complete JSON file) or a one-line error (exit 2,
no JSON file), never a traceback or a hang."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper as h

import harness
from mutators import mutate_arrays, mutate_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "converters" / "onnx_torch"))
from onnx_cases import make_model, rng_array, run_ort  # noqa: E402

N_ARRAYS = 150
N_BYTES = 60


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A conv + ReLU model with blob metadata; its reference (from ONNX Runtime) and a gradient file."""
    d = tmp_path_factory.mktemp("npz_seed")
    nodes = [h.make_node("Conv", ["data", "w"], ["conv"], name="conv"), h.make_node("Relu", ["conv"], ["relu"], name="relu")]
    model = make_model(nodes, {"data": ["N", 2, 6, 5]}, ["relu"], {"w": rng_array((3, 2, 3, 2), 1)})
    h.set_model_props(model, {"preimage.blobs": json.dumps({"data": "data", "conv": "relu"})})
    onnx.save(model, str(d / "net.onnx"))
    x = rng_array((2, 2, 6, 5), 3)
    ref = run_ort(model, {"data": x}, ["relu"])
    blobs = {"data": x, "conv": ref["relu"]}
    grads = {"R/conv": rng_array((2, 3, 4, 4), 5), "dx/conv": rng_array((2, 2, 6, 5), 6)}
    np.savez(d / "blobs.npz", **blobs)
    np.savez(d / "grads.npz", **grads)
    return d, blobs, grads


def _validate(out_dir):
    from preimage.cli import cli

    def read(args):
        out = os.path.join(out_dir, "report.json")
        res = CliRunner().invoke(cli, ["validate", *map(str, args), "--json", out])
        harness.cli_outcome(res, ok_codes=(0, 1))  # 1: a tensor failed, the report says which
        rep = json.loads(Path(out).read_text())  # complete and readable
        os.remove(out)
        assert rep["summary"].split(":")[0] in ("PASS", "FAIL") and (rep["ok"] == (res.exit_code == 0))
    return read


@pytest.mark.parametrize("which", ["reference", "grads", "input"])
def test_mutated_arrays(case, tmp_path, which):
    d, blobs, grads = case
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def make(rng, k):
        p = tmp_path / f"m{k}.npz"
        if which == "reference":
            np.savez(p, **mutate_arrays(blobs, rng))
            return ["-m", d / "net.onnx", "-r", p, "--grads", d / "grads.npz"]
        if which == "grads":
            np.savez(p, **mutate_arrays(grads, rng))
            return ["-m", d / "net.onnx", "-r", d / "blobs.npz", "--grads", p]
        np.savez(p, **mutate_arrays({"data": blobs["data"]}, rng))
        return ["-m", d / "net.onnx", "-r", d / "blobs.npz", "--input", p, "--backend", "both"]

    res = harness.run(f"npz {which}", N_ARRAYS // 3, make, _validate(str(out_dir)), out_dir=str(out_dir),
                      seed=31, warm=["-m", d / "net.onnx", "-r", d / "blobs.npz", "--grads", d / "grads.npz"])
    res.check(min_clean=0.0, min_ok=0.2)
    assert res.clean + res.ok == res.n


def test_damaged_npz_bytes(case, tmp_path):
    d, _, _ = case
    data = (d / "blobs.npz").read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def make(rng, k):
        p = tmp_path / f"b{k}.npz"
        p.write_bytes(mutate_bytes(data, rng))
        return ["-m", d / "net.onnx", "-r", p]

    res = harness.run("npz bytes", N_BYTES, make, _validate(str(out_dir)), out_dir=str(out_dir), seed=37)
    res.check(min_clean=0.2)  # the zip's CRC stops most damaged files, as it should
