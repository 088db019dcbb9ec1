"""``decoder apply`` writes a report like ``invert``: index.html, metrics.json with each decoded image's
error (checked against NumPy and the encoder by hand), and labelled matplotlib figures."""
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cli import cli
from preimage.decoders import report
from preimage.decoders.apply import apply_decoder, load_decoder
from preimage.decoders.extract import extract_features
from preimage.decoders.train import train_decoder
from preimage.preprocess import load_image, resize_center_crop


@pytest.fixture
def trained(encoder, image_dir, tmp_path):
    extract_features(encoder, "fc", image_dir, tmp_path / "f", progress=False)
    train_decoder(tmp_path / "f", tmp_path / "run", arch="alexnet_fc8", arch_options=dict(fcs=[64], start=[8, 4, 4], ups=[8, 8, 3]),
                  batch=4, iters=3, lr=1e-3, progress=False, tensorboard=False)
    return tmp_path / "run" / "checkpoint.pt"


def test_apply_writes_index_metrics_and_labelled_figures(trained, encoder, image_dir, tmp_path):
    imgs = sorted(image_dir.iterdir())[:3]
    out = tmp_path / "out"
    r = apply_decoder(load_decoder(trained), imgs, out, model=encoder, layer="fc")
    page = (out / "index.html").read_text()
    assert r["index"] == str(out / "index.html")
    for name in ("metrics.json", "figure-recon.png", "errors-recon.png", "grid-recon.png"):
        assert (out / name).is_file() and name in page
    m = json.loads((out / "metrics.json").read_text())
    assert [row["image"] for row in m["results"]] == [p.name for p in imgs] and m["layer"] == "fc"
    dec = load_decoder(trained)
    for row, path in zip(m["results"], imgs):
        # pixel error by hand: the written PNG against the original (32 x 32 already), in 8-bit levels
        a = load_image(out / row["png"]).astype(np.float64)
        b = resize_center_crop(load_image(path), (32, 32)).astype(np.float64)
        rmse = math.sqrt(np.mean((a - b) ** 2))
        assert row["pixel_rmse"] == pytest.approx(rmse, rel=1e-9)
        assert row["psnr_db"] == pytest.approx(20 * math.log10(255 / rmse), rel=1e-9)
        # feature error by hand: the decoded picture through the encoder, against the image's own features
        x = torch.from_numpy((b[..., ::-1] - [104.0, 117.0, 123.0]).transpose(2, 0, 1).copy()).float()[None]
        with torch.no_grad():
            f = encoder(x)["fc"]
            phi = encoder(dec(f))["fc"]
        assert row["feature_error"] == pytest.approx(float((phi - f).norm() / f.norm()), rel=1e-4)
    s = m["summary"]
    assert s["count"] == 3 and s["mean_psnr_db"] == pytest.approx(np.mean([row["psnr_db"] for row in m["results"]]))
    assert load_image(out / "figure-recon.png").shape[1] > load_image(r["grid"]).shape[1]  # room for the labels


def test_experiments_report_what_they_can(trained, encoder, image_dir, tmp_path):
    imgs = sorted(image_dir.iterdir())[:2]
    r = apply_decoder(load_decoder(trained), imgs, tmp_path / "k", model=encoder, layer="fc", experiment="topk=3")
    m = json.loads(open(r["metrics"]).read())
    assert m["experiment"] == "topk=3" and all(row["psnr_db"] is not None for row in m["results"])  # per image
    r = apply_decoder(load_decoder(trained), imgs, tmp_path / "i", model=encoder, layer="fc", experiment="interpolate=4")
    m = json.loads(open(r["metrics"]).read())
    assert [row["label"] for row in m["results"]] == ["0.00", "0.33", "0.67", "1.00"]
    assert all(row["pixel_rmse"] is None and row["feature_error"] is not None for row in m["results"])
    r = apply_decoder(load_decoder(trained), [], tmp_path / "g", experiment="gaussian=3",
                      stats=torch.from_numpy(np.random.default_rng(0).normal(size=(20, 32))))
    m = json.loads(open(r["metrics"]).read())
    assert len(m["results"]) == 3 and m["summary"]["mean_feature_error"] is None and r["errors"] is None
    assert (tmp_path / "g" / "index.html").is_file()


def test_figures_have_labelled_axes(tmp_path, monkeypatch):
    figs = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figs.append(fig))
    imgs = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]
    report.labelled_grid(tmp_path / "g.png", imgs, imgs, ["a.png", "b.png", "c.png"], "title")
    axes = figs[0].axes
    assert [ax.get_ylabel() for ax in axes[::3]] == ["original", "decoded"]
    assert [ax.get_xlabel() for ax in axes[3:]] == ["a.png", "b.png", "c.png"]
    rows = [{"label": "a", "image": "a.png", "psnr_db": 20.0, "feature_error": 0.5},
            {"label": "b", "image": "b.png", "psnr_db": 25.0, "feature_error": 0.25}]
    report.error_plot(tmp_path / "e.png", rows, "title")
    ylabels = [ax.get_ylabel() for ax in figs[1].axes]
    assert any("(dB)" in y for y in ylabels) and any("(fraction)" in y for y in ylabels)
    assert all(ax.get_xlabel() for ax in figs[1].axes)


def test_cli_apply_prints_the_report(trained, encoder, image_dir, tmp_path, monkeypatch):
    import preimage.decoders.extract as X

    monkeypatch.setattr(X, "resolve_encoder", lambda model, layer, device="cpu": (encoder, encoder.preprocess))
    img = sorted(image_dir.iterdir())[0]
    r = CliRunner().invoke(cli, ["decoder", "apply", "-d", str(trained), "-m", "tiny.onnx", str(img), "-o",
                                 str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "index.html" in r.output and (tmp_path / "out" / "index.html").is_file()
