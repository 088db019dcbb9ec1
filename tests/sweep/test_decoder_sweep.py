"""Decoder-training sweeps (objective = validation loss of a short training) and the Dosovitskiy
experiments reproduction, on a tiny random encoder and procedural images."""
import json

import numpy as np
import optuna
import pytest
import torch

from preimage.decoders import extract_features
from preimage.reproduce import reproduce
from preimage.sweep import parse_space, sweep_decoder

from preimage.preprocess import Preprocess, save_image

SMALL_FC = dict(fcs=[64], start=[16, 4, 4], ups=[16, 8, 3])


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8 * 16 * 16, 16)
        self.preprocess = Preprocess(channel_order="BGR", mean=[104.0, 117.0, 123.0], raw_scale=255.0, input_size=[32, 32])
        self.eval()

    def forward(self, x):
        return {"fc": self.fc(torch.relu(self.conv(x)).flatten(1) / 100)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("dec")
    rng = np.random.default_rng(0)
    (d / "img").mkdir()
    y, x = np.mgrid[0:32, 0:32] / 31
    for i in range(8):
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = a * x[..., None] + b * (1 - x[..., None]) + rng.uniform(-20, 20, (32, 32, 3))
        save_image(d / "img" / f"{i}.png", np.clip(img, 0, 255).astype(np.uint8))
    extract_features(Encoder(), "fc", d / "img", d / "feats", split=(0.75, 0.25, 0), progress=False)
    return d


def test_decoder_sweep_scores_each_trial_by_its_validation_loss(store, tmp_path):
    opts = {"arch_options": SMALL_FC, "batch": 4, "log_every": 5}
    s = sweep_decoder(store / "feats", parse_space(["lr=log:1e-4:1e-2"]), str(tmp_path), n_trials=2, iters=10,
                      options=opts, device="cpu", seed=0, report=False)
    assert s.complete == 2
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path}/study.db")
    for t in study.get_trials():
        lines = (tmp_path / "trials" / f"{t.number:05d}" / "metrics.jsonl").read_text().splitlines()
        last = [json.loads(l) for l in lines if "val_loss" in json.loads(l)][-1]
        assert last["iter"] == 10 and t.value == pytest.approx(last["val_loss"])
        ck = torch.load(tmp_path / "trials" / f"{t.number:05d}" / "checkpoint.pt", weights_only=True)
        assert ck["config"]["lr"] == pytest.approx(t.params["lr"])


def test_dosovitskiy_experiments_quick(store, tmp_path):
    from preimage.decoders import train_decoder

    run = tmp_path / "run"
    train_decoder(store / "feats", run, arch="alexnet_fc8", arch_options=SMALL_FC, batch=4, iters=5, progress=False,
                  tensorboard=False, device="cpu")
    images = sorted(str(p) for p in (store / "img").iterdir())[:3]
    index = reproduce("dosovitskiy-experiments", model=Encoder(), layers=["fc"], images=images, out=str(tmp_path / "o"),
                      quick=True, device="cpu", options={"decoder": str(run / "checkpoint.pt")})
    table = json.loads((tmp_path / "o" / "errors.json").read_text())["rows"]
    assert [r["experiment"] for r in table] == ["all features", "topk=5", "all-but-topk=5", "binarize"]
    assert all(r["images"] == 2 and r["error mean"] > 0 for r in table)
    # the "all features" row, recomputed: decode the encoder's features, ||x_hat - x|| / ||x|| per image
    from preimage.decoders import load_decoder

    enc, dec = Encoder(), load_decoder(run / "checkpoint.pt")
    x = enc.preprocess.load(images[:2], (32, 32))
    with torch.no_grad():
        xh = dec(enc(x)["fc"])
    e = [float((a - b).norm() / b.norm()) for a, b in zip(xh.double(), x.double())]
    assert table[0]["error mean"] == pytest.approx(np.mean(e), rel=1e-4)
    assert table[0]["error std"] == pytest.approx(np.std(e), rel=1e-3, abs=1e-6)
    for f in ["feature_experiments.png", "interpolation_random.png", "errors.png", "errors.md"]:
        assert (tmp_path / "o" / f).is_file()
    assert index.endswith("index.html")
