"""torchrun with 2 CPU processes (gloo) gives the single-process result for the same global batch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from preimage.decoders.extract import extract_features
from preimage.decoders.train import read_metrics, train_decoder

OPTS = dict(arch="alexnet_fc8", arch_options=dict(fcs=[128], start=[16, 4, 4], ups=[16, 8, 3]), batch=8, iters=12,
            lr=1e-3, lr_steps=[8], log_every=2, val_every=6, ckpt_every=100, seed=5)

SCRIPT = """
import json, sys
from preimage.decoders.train import train_decoder
train_decoder(sys.argv[1], sys.argv[2], device="cpu", progress=False, tensorboard=False, **json.loads(sys.argv[3]))
"""


def test_torchrun_two_processes_equals_single(encoder, image_dir, tmp_path):
    pytest.importorskip("torch.distributed.run")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    extract_features(encoder, "fc", image_dir, tmp_path / "f", split=(0.7, 0.3, 0), progress=False)
    train_decoder(tmp_path / "f", tmp_path / "single", device="cpu", progress=False, tensorboard=False, **OPTS)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", "--monitor-interval", "0.1", str(script), str(tmp_path / "f"),
           str(tmp_path / "ddp"), json.dumps(OPTS)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    a, b = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    print("relative train-loss differences:", [abs(x["train_loss"] / y["train_loss"] - 1) for x, y in zip(b, a)])
    assert [m["iter"] for m in a] == [m["iter"] for m in b]
    np.testing.assert_allclose([m["train_loss"] for m in b], [m["train_loss"] for m in a], rtol=1e-4)
    np.testing.assert_allclose([m["val_loss"] for m in b if "val_loss" in m], [m["val_loss"] for m in a if "val_loss" in m],
                               rtol=1e-4)
    sa = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-4, atol=1e-5)
