"""Two gloo processes under torchrun (CPU): sharded extraction equals one process's; DDP training killed
on one rank (SIGKILL mid-run) and restarted continues the uninterrupted run's loss curve exactly.

Two torchrun launches serve all the tests here (a module fixture): the first extracts a store sharded
over the ranks, trains an uninterrupted reference run, and trains a second run in which rank 1 kills
itself; the second launch resumes that run.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from preimage.decoders.dataset import FeatureStore
from preimage.decoders.extract import extract_features
from preimage.decoders.train import read_metrics

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("decoder_test_fixtures", HERE / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
TinyEncoder = fixtures.TinyEncoder
OPTS = dict(arch="alexnet_fc8", arch_options=dict(fcs=[64], start=[8, 4, 4], ups=[8, 8, 3]), batch=4, iters=16,
            lr=1e-3, lr_steps=[9], log_every=2, val_every=8, ckpt_every=5, seed=3)
DIE_AT = 8  # rank 1 kills itself at its 8th step: the last checkpoint is at iteration 5

SCRIPT = """
import json, os, signal, sys
sys.path.insert(0, {here!r})
import torch.distributed as dist
from conftest import TinyEncoder
from preimage.decoders import steps
from preimage.decoders.extract import extract_features
from preimage.decoders.train import train_decoder

mode, tmp = sys.argv[1], sys.argv[2]
opts = json.loads(sys.argv[3])
dist.init_process_group("gloo")  # one group for every call below (each call then leaves it open)
rank = dist.get_rank()


class Counting(TinyEncoder):  # how many images this rank encoded
    seen = 0

    def forward(self, x):
        Counting.seen += len(x)
        return super().forward(x)


if mode == "first":
    extract_features(Counting(), "fc", os.path.join(tmp, "images"), os.path.join(tmp, "sharded"), shard_size=3,
                     batch=2, split=(0.7, 0.3, 0), device="cpu")
    with open(os.path.join(tmp, f"encoded-{{rank}}.txt"), "w") as f:
        f.write(str(Counting.seen))
    store = os.path.join(tmp, "sharded")
    train_decoder(store, os.path.join(tmp, "reference"), device="cpu", tensorboard=False, **opts)
    if rank == 1:
        real, calls = steps.ReconstructionStep.__call__, [0]

        def dying(self, f, t):
            calls[0] += 1
            if calls[0] == {die_at}:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, f, t)

        steps.ReconstructionStep.__call__ = dying
train_decoder(os.path.join(tmp, "sharded"), os.path.join(tmp, "killed"), device="cpu", tensorboard=False, **opts)
"""


def torchrun(tmp, mode, logs):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", "--monitor-interval", "0.1",
           "--redirects", "3", "--log-dir", str(logs), str(tmp / "script.py"), mode, str(tmp), json.dumps(OPTS)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def rank_output(logs, rank):
    """What rank ``rank`` printed (stdout and stderr), from torchrun's per-rank log files."""
    return "".join(p.read_text(errors="replace") for p in sorted(Path(logs).glob(f"*/attempt_*/{rank}/std*.log")))


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    pytest.importorskip("torch.distributed.run")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    from preimage.preprocess import save_image

    tmp = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(4)
    (tmp / "images").mkdir()
    for i in range(14):  # 14 images in shards of 3: five shards, rank 0 takes three and rank 1 two
        save_image(tmp / "images" / f"{i:02d}.png", fixtures.procedural_image(rng))
    (tmp / "script.py").write_text(SCRIPT.format(here=str(HERE), die_at=DIE_AT))
    first = torchrun(tmp, "first", tmp / "logs1")
    killed_at = torch.load(tmp / "killed" / "checkpoint.pt", weights_only=True)["iter"]
    logged_before = [m["iter"] for m in read_metrics(tmp / "killed")]
    second = torchrun(tmp, "resume", tmp / "logs2")
    return dict(tmp=tmp, first=first, second=second, killed_at=killed_at, logged_before=logged_before)


def test_sharded_extraction_equals_single_process(launched, tmp_path):
    tmp = launched["tmp"]
    assert (tmp / "sharded" / "index.json").is_file(), launched["first"].stderr[-3000:]
    extract_features(TinyEncoder(), "fc", tmp / "images", tmp_path / "single", shard_size=3, batch=2,
                     split=(0.7, 0.3, 0), device="cpu", progress=False)
    encoded = [int((tmp / f"encoded-{r}.txt").read_text()) for r in (0, 1)]
    assert encoded == [8, 6]  # rank 0: shards 0, 2, 4 (3 + 3 + 2 images), rank 1: shards 1, 3; each image once
    a, b = FeatureStore(tmp / "sharded"), FeatureStore(tmp_path / "single")
    assert a.index == b.index  # shards, paths, counts, splits: the same store
    fa, ia = a.get(np.arange(len(a)))
    fb, ib = b.get(np.arange(len(b)))
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ia, ib)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(s), b.split(s))
    # independent check of one row: the encoder on the stored pixels by hand (RGB -> BGR, minus the mean)
    x = ia[5:6, ::-1].astype(np.float64) - np.array([104.0, 117.0, 123.0]).reshape(1, 3, 1, 1)
    with torch.no_grad():
        ref = TinyEncoder()(torch.from_numpy(x).float())["fc"].numpy()
    np.testing.assert_allclose(fa[5:6], ref, rtol=1e-5, atol=1e-5)


def test_only_rank_0_prints_a_progress_bar(launched):
    logs = launched["tmp"] / "logs1"
    r0, r1 = rank_output(logs, 0), rank_output(logs, 1)
    assert "extract fc (rank 0 of 2" in r0 and "train alexnet_fc8" in r0 and "loss=" in r0
    assert "extract fc" not in r1 and "train alexnet_fc8" not in r1 and "it/s" not in r1, r1[-2000:]


def test_ddp_run_killed_on_one_rank_resumes_exactly(launched):
    tmp, first, second = launched["tmp"], launched["first"], launched["second"]
    assert first.returncode != 0  # rank 1 was killed: the launch failed
    assert "-9" in first.stderr or "SIGKILL" in first.stderr, first.stderr[-3000:]
    assert launched["killed_at"] == 5 and max(launched["logged_before"]) >= 6  # logged past the checkpoint
    assert second.returncode == 0, second.stderr[-3000:] + rank_output(tmp / "logs2", 0)[-3000:]
    assert "resuming" in rank_output(tmp / "logs2", 0) and "resuming" not in rank_output(tmp / "logs2", 1)
    a, b = read_metrics(tmp / "reference"), read_metrics(tmp / "killed")
    print("train losses, reference vs resumed:", [(x["train_loss"], y["train_loss"]) for x, y in zip(a, b)])
    assert [m["iter"] for m in b] == [m["iter"] for m in a] == [2, 4, 6, 8, 10, 12, 14, 16]
    np.testing.assert_allclose([m["train_loss"] for m in b], [m["train_loss"] for m in a], rtol=1e-12, atol=0)
    np.testing.assert_allclose([m["val_loss"] for m in b if "val_loss" in m], [m["val_loss"] for m in a if "val_loss" in m],
                               rtol=1e-12, atol=0)
    sa = torch.load(tmp / "reference" / "checkpoint.pt", weights_only=True)
    sb = torch.load(tmp / "killed" / "checkpoint.pt", weights_only=True)
    assert sa["iter"] == sb["iter"] == 16 and len(sb["rng_ranks"]) == 2
    for k in sa["model"]:
        torch.testing.assert_close(sb["model"][k], sa["model"][k], rtol=0, atol=0)  # bitwise
