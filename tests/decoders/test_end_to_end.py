"""Through the real converters: a Caffe net converted to ONNX, features of the bundled photos, a
decoder trained and applied from the command line; Ctrl-C during training keeps a resumable run."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli

SAMPLES = Path(__file__).resolve().parents[2] / "preimage" / "models" / "samples"
CLI = [sys.executable, "-c", "from preimage.cli import main; main()"]


@pytest.fixture
def alexnet_onnx(tmp_path):
    pytest.importorskip("preimage.converters.caffe.convert")
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.models.architectures import alexnet

    (tmp_path / "a.prototxt").write_text(alexnet(width=0.125, fc_width=1 / 64, num_classes=50))
    convert_caffe(tmp_path / "a.prototxt", random_weights=True, output=tmp_path / "a.onnx")
    return tmp_path / "a.onnx"


def test_extract_train_apply_with_converted_model(alexnet_onnx, tmp_path):
    photos = sorted(p for p in SAMPLES.glob("*.jpg"))
    if len(photos) < 2:
        pytest.skip("bundled sample photos not found")
    from preimage.converters.onnx_torch.load import load_features
    from preimage.decoders.dataset import FeatureStore

    runner = CliRunner()
    r = runner.invoke(cli, ["decoder", "extract", "-m", str(alexnet_onnx), "-l", "fc8", "-i", str(SAMPLES), "-o",
                            str(tmp_path / "f"), "--device", "cpu", "--split", "1,0,0"])
    assert r.exit_code == 0, r.output
    store = FeatureStore(tmp_path / "f")
    assert store.feature_shape == (50,) and store.image_shape == (3, 227, 227)
    # the stored image is the photo resized and centre-cropped to 227 (as 8-bit pixels), and the stored
    # features are the converted model's features of exactly that image, preprocessed with its metadata
    from preimage.preprocess import load_image, resize_center_crop

    fx = load_features(alexnet_onnx, ["fc8"])
    feats, pixels = store.get([0])
    photo = resize_center_crop(load_image(store.paths([0])[0]), (227, 227))
    assert np.abs(pixels[0].transpose(1, 2, 0) - photo).max() <= 0.5 + 1e-3
    x = fx.preprocess.image_to_array(pixels[0].transpose(1, 2, 0).astype(np.float32))
    np.testing.assert_allclose(feats, fx(torch.from_numpy(x)[None])["fc8"].numpy(), rtol=1e-4, atol=1e-4)
    r = runner.invoke(cli, ["decoder", "train", str(tmp_path / "f"), "--width", "0.01", "--iters", "2", "--batch", "2",
                            "-o", str(tmp_path / "run"), "--device", "cpu", "--no-tensorboard"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["decoder", "apply", "-d", str(tmp_path / "run" / "checkpoint.pt"), str(photos[0]),
                            str(photos[1]), "-e", "interpolate=3", "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 0, r.output  # the model and layer come from the checkpoint
    assert len(list((tmp_path / "out").glob("interpolate3-*.png"))) == 3


def test_ctrl_c_stops_with_checkpoint_and_resumes(encoder, image_dir, tmp_path):
    from preimage.decoders.extract import extract_features
    from preimage.decoders.train import read_metrics

    extract_features(encoder, "fc", image_dir, tmp_path / "f", progress=False)

    def args(iters):
        return CLI + ["decoder", "train", str(tmp_path / "f"), "--width", "0.02", "--iters", str(iters), "--batch", "2",
                      "--log-every", "5", "--ckpt-every", "100000", "-o", str(tmp_path / "run"), "--device", "cpu",
                      "--no-tensorboard"]

    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen(args(100000), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        metrics = tmp_path / "run" / "metrics.jsonl"
        while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    stopped_at = int(re.search(r"stopped \(run again to resume\) at iteration (\d+)", out).group(1))
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iter"] == stopped_at
    done = subprocess.run(args(stopped_at + 3), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"finished at iteration {stopped_at + 3}" in done.stdout
    assert read_metrics(tmp_path / "run")[-1]["iter"] == stopped_at + 3
