"""Training: overfitting, generalisation against the mean-image baseline, exact resume, logs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from preimage.decoders.apply import load_decoder
from preimage.decoders.dataset import FeatureStore
from preimage.decoders.extract import extract_features
from preimage.decoders.train import balance, read_metrics, train_decoder
from preimage.errors import PreimageError
from preimage.preprocess import load_image, save_image

SMALL_FC = dict(fcs=[256, 256], start=[32, 4, 4], ups=[32, 16, 3])


def psnr(a, b):
    """PSNR in dB of two uint8-range float64 arrays."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_overfit_handful_of_images(four, encoder, tmp_path):
    run = tmp_path / "run"
    train_decoder(four, run, arch="alexnet_fc8", arch_options=SMALL_FC, batch=4, iters=400, lr=1e-3,
                  log_every=100, val_every=10 ** 6, progress=False, tensorboard=False)
    dec = load_decoder(run / "checkpoint.pt")
    store = FeatureStore(four)
    feats, _ = store.get(np.arange(4))
    with torch.no_grad():
        out = dec(torch.from_numpy(feats))
    recon = dec.preprocess.to_uint8(out)  # back through the model's preprocessing, as apply writes them
    for img, path in zip(recon, store.paths(range(4))):
        assert psnr(img, load_image(path)) >= 25.0


def test_val_loss_well_below_mean_image(encoder, make_image, tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(100):
        save_image(d / f"{i:03d}.png", make_image(rng))
    extract_features(encoder, "conv2", d, tmp_path / "f", split=(0.8, 0.2, 0), batch=50, progress=False)
    train_decoder(tmp_path / "f", tmp_path / "run", arch="alexnet_conv5", arch_options=dict(convs=[32], ups=[32, 3]),
                  batch=16, iters=300, lr=1e-3, log_every=100, val_every=300, progress=False, tensorboard=False)
    val_loss = read_metrics(tmp_path / "run")[-1]["val_loss"]
    # independent baseline: predict the training images' mean network input for every validation image
    store = FeatureStore(tmp_path / "f")
    mean = np.array([104.0, 117.0, 123.0]).reshape(3, 1, 1)
    as_input = lambda rows: store.get(rows)[1][:, ::-1].astype(np.float64) - mean  # noqa: E731  RGB->BGR, minus mean
    base = np.mean((as_input(store.split("val")) - as_input(store.split("train")).mean(0)) ** 2)
    assert val_loss < 0.3 * base, (val_loss, base)


def _curve(run):
    return [(m["iter"], m["train_loss"], m.get("val_loss")) for m in read_metrics(run)]


def test_resume_continues_exactly(four, tmp_path):
    kw = dict(arch="alexnet_fc8", arch_options=SMALL_FC, batch=3, iters=24, lr=1e-3, lr_steps=[10, 18], log_every=2,
              val_every=6, ckpt_every=8, progress=False, tensorboard=False)
    train_decoder(four, tmp_path / "a", **kw)
    first = train_decoder(four, tmp_path / "b", stop_after=13, **kw)  # stops mid logging window, checkpoints
    assert first["iter"] == 13 and not first["finished"]
    before = (tmp_path / "b" / "metrics.jsonl").read_text()
    train_decoder(four, tmp_path / "b", **kw)
    # it continued rather than started over: the logged lines (with their timings) are kept as they were
    assert (tmp_path / "b" / "metrics.jsonl").read_text().startswith(before)
    a, b = _curve(tmp_path / "a"), _curve(tmp_path / "b")
    assert [x[0] for x in a] == [x[0] for x in b]
    np.testing.assert_allclose(np.array([x[1] for x in b]), np.array([x[1] for x in a]), rtol=1e-6)
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-6, atol=1e-7)


def test_killed_process_resumes_exactly(four, tmp_path):
    """SIGKILL a training process mid-run; running it again continues the same curve."""
    kw = dict(arch="alexnet_fc8", arch_options=SMALL_FC, batch=3, iters=150, lr=1e-3, log_every=5, val_every=10 ** 6,
              ckpt_every=10, progress=False, tensorboard=False)
    code = ("import sys, json; from preimage.decoders.train import train_decoder; "
            "train_decoder(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))")
    run = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", code, str(four), str(run), json.dumps(kw)], env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 6:
                break
            time.sleep(0.05)
        assert p.poll() is None, "training finished before it could be killed"
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    done = len(read_metrics(run))
    assert (run / "checkpoint.pt").exists() and done < 30
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["iter"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    kept = "".join(line + "\n" for line in lines[:saved // 5])  # logged every 5 iterations, all before the checkpoint
    subprocess.run([sys.executable, "-c", code, str(four), str(run), json.dumps(kw)], env=env, check=True)
    subprocess.run([sys.executable, "-c", code, str(four), str(tmp_path / "ref"), json.dumps(kw)], env=env, check=True)
    a, b = _curve(tmp_path / "ref"), _curve(run)
    assert saved > 0 and (run / "metrics.jsonl").read_text().startswith(kept)  # resumed, not restarted
    assert [x[0] for x in b] == list(range(5, 151, 5))
    np.testing.assert_allclose(np.array([x[1] for x in b]), np.array([x[1] for x in a]), rtol=1e-6)


def test_logs_checkpoint_and_tensorboard(encoder, image_dir, four, tmp_path):
    pytest.importorskip("tensorboard")
    extract_features(encoder, "fc", image_dir, tmp_path / "f", progress=False)
    run = tmp_path / "run"
    r = train_decoder(tmp_path / "f", run, arch="alexnet_fc8", arch_options=SMALL_FC, batch=2, iters=6, log_every=2, val_every=3,
                      progress=False)
    assert r["finished"]
    recs = read_metrics(run)
    assert [m["iter"] for m in recs] == [2, 3, 4, 6]
    assert all("train_loss" in m for m in recs) and "val_loss" in recs[1] and "val_loss" not in recs[0]
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(run / "tb"))
    assert sorted(os.listdir(run / "samples")) == ["iter-0000003.png", "iter-0000006.png"]
    grid = load_image(run / "samples" / "iter-0000006.png")
    assert grid.shape[0] == 2 * 32 + 3 * 2  # targets row over reconstructions row
    with pytest.raises(PreimageError, match="not 'mirror'"):
        train_decoder(tmp_path / "f", run, arch="mirror", progress=False)
    assert "val_loss" not in read_metrics(train_decoder(four, tmp_path / "noval", arch_options=SMALL_FC, batch=2, iters=2,
                                                        progress=False, tensorboard=False)["run_dir"])[-1]


def test_mirror_and_deepsim_train(four, encoder, tmp_path):
    r = train_decoder(four, tmp_path / "m", arch="mirror", encoder=encoder, batch=4, iters=3, log_every=1,
                      val_every=10 ** 6, progress=False, tensorboard=False)
    assert np.isfinite(r["train_loss"])
    dec = load_decoder(tmp_path / "m" / "checkpoint.pt")  # rebuilt without the encoder, from saved geometry
    assert dec(torch.zeros(2, 32)).shape == (2, 3, 32, 32)
    r = train_decoder(four, tmp_path / "g", arch="deepsim", encoder=encoder, feature_layer="conv2", batch=4, iters=3,
                      arch_options=dict(width=1 / 16), log_every=1, val_every=10 ** 6, progress=False, tensorboard=False)
    assert np.isfinite(r["train_loss"]) and {"disc_loss", "adv_loss", "feature_loss"} <= set(r)


def test_balancing_rule():
    assert balance(None, None) == (True, True)
    assert balance(0.05, 1.0) == (False, True)   # discriminator far ahead: pause it
    assert balance(11.0, 1.0) == (True, False)   # discriminator far behind: pause the generator
    assert balance(1.0, 1.0) == (True, True)
