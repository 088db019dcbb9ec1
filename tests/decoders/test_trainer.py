"""The Trainer and its step strategies: exact resume of the GAN strategy (its balancing state included),
the live loss on rank 0's bar without a host sync per step, the encoder remembered by the store, and the
warning for assumed preprocessing."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli
from preimage.decoders.checkpoint import Decoder, load_checkpoint
from preimage.decoders.extract import extract_features
from preimage.decoders.train import read_metrics, train_decoder
from preimage.decoders.trainer import Trainer
from preimage.errors import PreimageError
from preimage.preprocess import Preprocess

SMALL_FC = dict(fcs=[64], start=[8, 4, 4], ups=[8, 8, 3])


def test_gan_strategy_resumes_exactly(four, encoder, tmp_path):
    # lr 1e-2 makes the discriminator win for a while: the balancing rule pauses the generator at
    # iterations 7-9, a decision taken from the losses of the step before, so the resumed run (stopped at
    # 7) takes it right only if the checkpoint kept the balance state
    kw = dict(arch="deepsim", encoder=encoder, feature_layer="conv2", arch_options=dict(width=1 / 16), batch=3, iters=12,
              lr=1e-2, log_every=1, val_every=10 ** 6, ckpt_every=100, progress=False, tensorboard=False)
    train_decoder(four, tmp_path / "a", **kw)
    first = train_decoder(four, tmp_path / "b", stop_after=7, **kw)
    assert first["iter"] == 7 and not first["finished"]
    train_decoder(four, tmp_path / "b", **kw)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [m["iter"] for m in b] == list(range(1, 13))
    assert [m["train_gen"] for m in a][6:9] == [False, False, False]  # the pause happens across the interruption
    for k in ("train_loss", "disc_loss", "adv_loss", "image_loss", "feature_loss", "train_disc", "train_gen"):
        np.testing.assert_allclose([m[k] for m in b], [m[k] for m in a], rtol=1e-6, err_msg=k)
    sa, sb = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for k in sa["model"]:  # generator and discriminator
        torch.testing.assert_close(sb["model"][k], sa["model"][k], rtol=1e-6, atol=1e-7)
    for k in ("optimizer", "d_optimizer"):
        for pa, pb in zip(sa[k]["state"].values(), sb[k]["state"].values()):
            torch.testing.assert_close(pb["exp_avg"], pa["exp_avg"], rtol=1e-6, atol=1e-9)


class L1Step:
    """A step strategy written in a test: L1 loss with plain SGD, nothing of the package's steps."""

    def __init__(self, model):
        self.generator = model
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def __call__(self, f, t):
        loss = (self.generator(f) - t).abs().mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.detach(), {}

    def lr(self):
        return 1e-3

    def state_dict(self):
        return {"optimizer": self.opt.state_dict()}

    def load_state_dict(self, ckpt):
        self.opt.load_state_dict(ckpt["optimizer"])

    def train_state(self):
        return {}


def test_trainer_runs_a_strategy_from_outside_and_resumes_it(four, tmp_path):
    from preimage.decoders.architectures import build_decoder
    from preimage.decoders.dataset import FeatureStore
    from preimage.distributed import Distributed
    from preimage.decoders.trainer import Precision, TrainConfig

    store = FeatureStore(four)
    dist = Distributed(torch.device("cpu"))
    cfg = TrainConfig(arch="alexnet_fc8", batch=2, iters=10, log_every=2, val_every=10 ** 6, ckpt_every=100)

    def trainer(run):
        torch.manual_seed(0)
        model = build_decoder("alexnet_fc8", store.feature_shape, store.image_shape, **SMALL_FC)
        return Trainer(store, run, cfg, model, L1Step(model), dist=dist, precision=Precision("off", dist.device),
                       meta={"arch": "alexnet_fc8", "arch_options": SMALL_FC}, tensorboard=False, progress=False)

    trainer(tmp_path / "a").fit()
    trainer(tmp_path / "b").fit(stop_after=5)
    t = trainer(tmp_path / "b")
    t.resume(load_checkpoint(tmp_path / "b" / "checkpoint.pt"))
    assert t.fit()["iter"] == 10
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    np.testing.assert_allclose([m["train_loss"] for m in b], [m["train_loss"] for m in a], rtol=1e-6)
    assert len(a) == 5


def test_progress_bar_shows_the_live_loss_without_a_sync_per_step(four, tmp_path, capsys, monkeypatch):
    import sys

    items = []
    real_item = torch.Tensor.item

    def item(self):  # host syncs asked for by the package's code (torch's own Adam reads its step count)
        if "preimage" in sys._getframe(1).f_code.co_filename:
            items.append(1)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    train_decoder(four, tmp_path / "run", arch_options=SMALL_FC, batch=2, iters=40, lr=3e-3, log_every=10 ** 6,
                  val_every=10 ** 6, ckpt_every=10 ** 6, progress=True, tensorboard=False)
    err = capsys.readouterr().err
    import re

    shown = set(re.findall(r"loss=([-0-9.e+]+)", err))
    assert len(shown) >= 3, err[-1500:]  # updated while training, not only at the (single) logging step
    assert len(items) <= 40 // 10 + 4  # a reading every 10 steps, plus the log, the checkpoint and the end


def test_mirror_finds_the_encoder_the_store_was_extracted_from(encoder, image_dir, tmp_path, monkeypatch):
    import preimage.decoders.extract as X

    model = tmp_path / "tiny.onnx"
    model.write_bytes(b"stands for the converted model")
    loaded = []

    def resolve(m, layer, device="cpu"):  # the CLI loads models by path: hand it the tiny encoder
        loaded.append(str(m))
        return encoder, encoder.preprocess

    monkeypatch.setattr(X, "resolve_encoder", resolve)
    idx = extract_features(str(model), "fc", image_dir, tmp_path / "f", split=(1, 0, 0), progress=False)
    import hashlib

    assert idx["model"] == str(model) and idx["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    r = CliRunner().invoke(cli, ["decoder", "train", str(tmp_path / "f"), "--arch", "mirror", "--iters", "2", "--batch",
                                 "2", "-o", str(tmp_path / "run"), "--device", "cpu", "--no-tensorboard"])
    assert r.exit_code == 0, r.output
    assert loaded[-1] == str(model)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert [s["kind"] for s in ck["arch_options"]["stages"]] == ["conv", "pool", "conv", "fc"]
    model.write_bytes(b"another model now")
    with pytest.raises(PreimageError, match="has changed since the store was extracted"):
        train_decoder(tmp_path / "f", tmp_path / "run2", arch="mirror", iters=1, batch=2, progress=False)
    model.rename(tmp_path / "moved.onnx")
    r = CliRunner().invoke(cli, ["decoder", "train", str(tmp_path / "f"), "--arch", "mirror", "--iters", "2", "-o",
                                 str(tmp_path / "run3"), "--device", "cpu"])
    assert r.exit_code == 2 and "no longer there" in r.output and str(model) in r.output and "--model" in r.output


def test_extract_warns_about_assumed_preprocessing(encoder, image_dir, tmp_path, capsys):
    imgs = sorted(image_dir.iterdir())[:2]
    extract_features(encoder, "fc", imgs, tmp_path / "a", split=(1, 0, 0), progress=False)
    assert "warning" not in capsys.readouterr().err  # everything recorded: no warning

    class NoMean(torch.nn.Module):  # a model whose metadata records no mean (it is filled with ImageNet's)
        preprocess = Preprocess.from_metadata({"channel_order": "BGR", "input_size": [32, 32]})

        def forward(self, x):
            return encoder(x)

    extract_features(NoMean(), "fc", imgs, tmp_path / "b", split=(1, 0, 0), progress=False)
    err = capsys.readouterr().err
    assert "warning: the model does not record its mean" in err and "104" in err

    def bare(x):  # a plain callable: no preprocessing at all
        return encoder(x)

    extract_features(bare, "fc", imgs, tmp_path / "c", size=(32, 32), split=(1, 0, 0), progress=False)
    err = capsys.readouterr().err
    assert "no preprocessing record" in err and "channel order BGR" in err


def test_decoder_module_has_no_import_cycle():
    """checkpoint.py holds Decoder: apply and imports both use it and neither imports the other."""
    import ast
    from pathlib import Path

    import preimage.decoders as pkg

    folder = Path(pkg.__file__).parent
    deps = {}
    for p in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names |= {node.module} if node.module else {a.name for a in node.names}
                for a in node.names:
                    assert not a.name.startswith("_"), f"{p.name} imports {node.module}.{a.name}"
        deps[p.stem] = names
    assert "apply" not in deps["imports"] and "imports" not in deps["checkpoint"] and "apply" not in deps["checkpoint"]

    def reaches(a, b, seen=()):
        return any(d == b or (d not in seen and reaches(d, b, seen + (d,))) for d in deps.get(a, ()))

    assert not any(reaches(m, m) for m in deps), deps
    assert Decoder.__module__ == "preimage.decoders.checkpoint"
