"""Apply and experiments: feature manipulations against NumPy, the CLI end to end, imported decoders."""
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli
from preimage.decoders import experiments as E
from preimage.decoders.apply import apply_decoder, load_decoder
from preimage.errors import PreimageError
from preimage.preprocess import load_image

RNG = np.random.default_rng(7)
F = RNG.normal(size=(3, 10))


def run(spec, feats=F, stats=None):
    out, labels = E.run_experiment(spec, torch.from_numpy(feats), stats)
    return out.numpy(), labels


def test_topk_and_all_but_topk():
    keep, _ = run("topk=3")
    drop, _ = run("all-but-topk=3")
    for f, k, d in zip(F, keep, drop):
        top = np.argsort(f)[-3:]
        ref = np.zeros_like(f)
        ref[top] = f[top]
        np.testing.assert_array_equal(k, ref)
        np.testing.assert_array_equal(d, f - ref)


def test_interpolate_binarize_neuron():
    out, labels = run("interpolate=5")
    for i, a in enumerate(np.linspace(0, 1, 5)):
        np.testing.assert_allclose(out[i], (1 - a) * F[0] + a * F[1], atol=1e-12)
    assert labels[0] == "0.00" and labels[-1] == "1.00"
    b, _ = run("binarize")
    for f, r in zip(F, b):
        np.testing.assert_allclose(r, np.where(f > 0, f[f > 0].mean(), 0.0))
    n, _ = run("neuron=4")
    ref = np.zeros((1, 10))
    ref[0, 4] = F[:, 4].max()
    np.testing.assert_allclose(n, ref)


def test_random_features_follow_population():
    pop = np.abs(RNG.normal(loc=np.arange(6), scale=0.5 + np.arange(6) / 4, size=(4000, 6)))
    st = E.FeatureStats(torch.from_numpy(pop))
    g, _ = run("gaussian=4000", np.zeros((0, 6)), st)
    h, _ = run("histogram=4000", np.zeros((0, 6)), st)
    assert g.shape == h.shape == (4000, 6)
    assert (g >= 0).all() and (g <= pop.max(0)).all()  # truncated to the observed range
    np.testing.assert_allclose(g.mean(0), pop.mean(0), atol=0.1)
    np.testing.assert_allclose(h.mean(0), pop.mean(0), atol=0.1)
    np.testing.assert_allclose(h.std(0), pop.std(0), rtol=0.1)
    for q in (0.1, 0.5, 0.9):  # the histogram sampler reproduces the marginal quantiles
        np.testing.assert_allclose(np.quantile(h, q, axis=0), np.quantile(pop, q, axis=0), atol=0.15)


def test_bad_specs():
    with pytest.raises(PreimageError, match="unknown experiment"):
        run("nope")
    with pytest.raises(PreimageError, match="k must be"):
        run("topk=0")
    with pytest.raises(PreimageError, match="two images"):
        run("interpolate=3", F[:1])


@pytest.fixture
def trained(encoder, image_dir, tmp_path):
    from preimage.decoders.extract import extract_features
    from preimage.decoders.train import train_decoder

    extract_features(encoder, "fc", image_dir, tmp_path / "f", progress=False)
    train_decoder(tmp_path / "f", tmp_path / "run", arch="alexnet_fc8", arch_options=dict(fcs=[64], start=[8, 4, 4], ups=[8, 8, 3]),
                  batch=4, iters=2, progress=False, tensorboard=False)
    return tmp_path / "run" / "checkpoint.pt"


def test_apply_writes_reconstructions_and_grid(trained, encoder, image_dir, tmp_path):
    imgs = sorted(image_dir.iterdir())[:3]
    r = apply_decoder(load_decoder(trained), imgs, tmp_path / "out", model=encoder, layer="fc")
    assert len(r["files"]) == 3 and all(os.path.isfile(f) for f in r["files"])
    assert load_image(r["files"][0]).shape == (32, 32, 3)
    assert load_image(r["grid"]).shape == (2 * 34 + 2, 3 * 34 + 2, 3)  # originals over reconstructions
    r = apply_decoder(load_decoder(trained), imgs[:2], tmp_path / "out", model=encoder, layer="fc", experiment="interpolate=4")
    assert len(r["files"]) == 4 and r["labels"][1] == "0.33"


def test_cli_end_to_end(encoder, image_dir, tmp_path, monkeypatch):
    # the CLI loads models by path: hand it the tiny encoder in place of the ONNX converter
    import preimage.decoders.extract as X

    monkeypatch.setattr(X, "resolve_encoder", lambda model, layer, device="cpu": (encoder, encoder.preprocess))
    runner = CliRunner()
    r = runner.invoke(cli, ["decoder", "extract", "-m", "tiny.onnx", "-l", "fc", "-i", str(image_dir), "-o",
                            str(tmp_path / "f"), "--device", "cpu", "--split", "0.5,0.5,0"])
    assert r.exit_code == 0, r.output
    assert "20 images" in r.output
    r = runner.invoke(cli, ["decoder", "train", str(tmp_path / "f"), "--arch", "alexnet_fc8", "--width", "0.01",
                            "--iters", "3", "--batch", "2", "-o", str(tmp_path / "run"), "--device", "cpu", "--no-tensorboard"])
    assert r.exit_code == 0, r.output
    assert "finished at iteration 3" in r.output
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    img = sorted(image_dir.iterdir())[0]
    r = runner.invoke(cli, ["decoder", "apply", "-d", str(tmp_path / "run" / "checkpoint.pt"), "-m", "tiny.onnx",
                            str(img), "-o", str(tmp_path / "out"), "-e", "topk=3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "grid-topk3.png").is_file()
    r = runner.invoke(cli, ["decoder", "apply", "-d", str(tmp_path / "run" / "checkpoint.pt"), "-e", "gaussian=3",
                            "--stats", str(tmp_path / "f"), "-o", str(tmp_path / "rand"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "rand").glob("gaussian3-*.png"))) == 3


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    (tmp_path / "x.pt").write_bytes(b"garbage")
    r = runner.invoke(cli, ["decoder", "apply", "-d", str(tmp_path / "x.pt"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "x.pt" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["decoder", "train", str(tmp_path), "-o", str(tmp_path / "run")])
    assert r.exit_code == 2 and "not a feature store" in r.output


def test_encode_images_at_a_size_other_than_the_models(encoder, image_dir):
    """size wins over the model's input_size (the images were once resized a second time, to input_size)."""
    from preimage.decoders.apply import encode_images

    class Conv1Only(torch.nn.Module):  # the tiny encoder's fc only takes 32 x 32
        preprocess = encoder.preprocess

        def forward(self, x):
            return {"conv1": encoder.pool(torch.relu(encoder.conv1(x)))}

    paths = sorted(image_dir.iterdir())[:2]
    x, f = encode_images(Conv1Only(), "conv1", paths, size=(24, 32))
    assert tuple(x.shape) == (2, 3, 24, 32) and tuple(f.shape) == (2, 8, 12, 16)
    rgb = load_image(paths[0]).astype(np.float64)[4:28]  # 32 x 32 centre-cropped to 24 x 32, no resize
    ref = (rgb[..., ::-1] - np.array([104.0, 117.0, 123.0])).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0].numpy(), ref, atol=1e-4)


def test_load_decoder_reads_the_checkpoint_once(trained, monkeypatch):
    """A checkpoint can be a gigabyte: it was once loaded twice (a format probe, then for real)."""
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    dec = load_decoder(trained)
    assert len(calls) == 1 and dec.source["iter"] == 2


def test_value_for_an_experiment_without_one_is_refused():
    # before: binarize=3 silently ignored the 3
    with pytest.raises(PreimageError, match="'binarize' takes no value"):
        E.parse_spec("binarize=3")
    assert E.parse_spec("binarize") == ("binarize", None) and E.parse_spec("topk=5") == ("topk", 5.0)
