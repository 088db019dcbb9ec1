"""Issue 10, item 5's acceptance test, through the command line on real photographs: a HOG decoder
(`hog_twostream`) overfits a handful of images (PSNR >= 25 dB on each), and, trained on crops of some
photographs, beats predicting the training set's mean image on crops of photographs it never saw.

Everything runs at 64 x 64 (HOG 8 x 8 x 31) on one CPU thread. The errors are computed here, from the
decoded PNGs `decoder apply` writes against the pixels the store holds, in [0, 1].
"""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from preimage.cli import cli
from preimage.preprocess import load_image, save_image

skdata = pytest.importorskip("skimage.data")

S = 64
HAND = ["astronaut", "chelsea", "rocket", "camera", "coins", "ihc"]  # one crop of each: the handful
# crops of these train the held-out decoder; the held-out crops come from two other colour photographs
TRAIN = HAND + ["brick", "grass", "gravel", "page", "clock", "moon", "hubble"]
HELD = ["motorcycle", "coffee"]


def _photos():
    from preimage.models import samples

    bundled = {os.path.splitext(os.path.basename(p))[0]: p for p in samples.paths()}
    if not {"astronaut", "chelsea", "coffee"} <= set(bundled):
        pytest.skip("the bundled sample photographs are not there")
    own = {k: load_image(bundled[k]) for k in ("astronaut", "chelsea", "coffee")}
    sk = dict(rocket=skdata.rocket, camera=skdata.camera, coins=skdata.coins, ihc=skdata.immunohistochemistry,
              brick=skdata.brick, grass=skdata.grass, gravel=skdata.gravel, page=skdata.page, clock=skdata.clock,
              moon=skdata.moon, hubble=skdata.hubble_deep_field, motorcycle=lambda: skdata.stereo_motorcycle()[0])
    out = dict(own)
    for k, f in sk.items():
        a = np.asarray(f())
        out[k] = np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a[..., :3]
    return out


def _crops(img, n, rng):
    """``n`` random S x S crops of ``img`` rescaled so its short side is 1.2 to 3 times S (varied scales)."""
    import cv2

    img = np.clip(img, 0, 255).astype(np.uint8)
    out = []
    for _ in range(n):
        f = rng.uniform(1.2, 3.0) * S / min(img.shape[:2])
        size = (max(S, round(img.shape[1] * f)), max(S, round(img.shape[0] * f)))
        im = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        y, x = rng.integers(0, im.shape[0] - S + 1), rng.integers(0, im.shape[1] - S + 1)
        out.append(im[y:y + S, x:x + S])
    return out


def _write(folder, named):
    folder.mkdir()
    for name, img in named:
        save_image(folder / f"{name}.png", img)
    return folder


def _run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def _extract_train(tmp_path, name, images, *train_args):
    _run("decoder", "extract", "-m", "hog", "-l", "hog", "-i", images, "-o", tmp_path / f"f-{name}", "--size", S, S,
         "--split", "1,0,0", "--workers", 1, "--device", "cpu")
    _run("decoder", "train", tmp_path / f"f-{name}", "--arch", "hog_twostream", "-o", tmp_path / f"run-{name}",
         "--lr", "1e-3", "--no-tensorboard", "--device", "cpu", *train_args)
    return tmp_path / f"f-{name}", tmp_path / f"run-{name}" / "checkpoint.pt"


def _decode(tmp_path, ckpt, paths, name):
    """`decoder apply` on ``paths``: the decoded pictures in [0, 1] (N x S x S x 3) and its metrics.json."""
    out = tmp_path / f"out-{name}"
    _run("decoder", "apply", "-d", ckpt, *paths, "-o", out, "--device", "cpu")
    metrics = json.loads((out / "metrics.json").read_text())
    files = [out / r["png"] for r in metrics["results"]]
    assert len(files) == len(paths)
    return np.stack([load_image(f) for f in files]) / 255.0, metrics


def _stored_pixels(store_dir):
    from preimage.decoders import FeatureStore

    st = FeatureStore(store_dir)
    rows = st.split("all")
    _, images = st.get(rows)
    return st.paths(rows), np.asarray(images).transpose(0, 2, 3, 1) / 255.0


@pytest.fixture
def one_thread():
    """One torch thread for this test (the figures in docs/decoders.md are one thread's; several threads on
    a busy machine are much slower, not faster, at these sizes)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_hog_decoder_overfits_a_handful_and_beats_the_mean_image_on_unseen_photos(tmp_path, one_thread):
    photos = _photos()
    rng = np.random.default_rng(0)
    crops = {k: _crops(photos[k], 48, rng) for k in TRAIN}
    held = {k: _crops(photos[k], 8, rng) for k in HELD}

    # a handful: one crop of each of six photographs, overfitted
    hand = _write(tmp_path / "hand", [(k, crops[k][0]) for k in HAND])
    store, ckpt = _extract_train(tmp_path, "hand", hand, "--iters", 300, "--batch", 6, "--width", 0.5)
    paths, pixels = _stored_pixels(store)
    decoded, metrics = _decode(tmp_path, ckpt, paths, "hand")
    psnr = -10 * np.log10(((decoded - pixels) ** 2).mean(axis=(1, 2, 3)))
    print("handful PSNR (dB):", np.round(psnr, 2).tolist())
    assert psnr.min() >= 25.0, psnr
    # the apply report's PSNR is the same figure (against the photo centre-cropped to the decoder's size)
    np.testing.assert_allclose([r["psnr_db"] for r in metrics["results"]], psnr, atol=0.05)
    # apply rebuilt HOG from the spec the store recorded and measured the decoded pictures' HOG against the
    # features: closer than a flat picture's (HOG 0, error exactly 1)
    ferr = [r["feature_error"] for r in metrics["results"]]
    print("handful HOG feature error:", np.round(ferr, 3).tolist())
    assert metrics["model"] == "hog" and max(ferr) < 1, ferr

    # held-out: 624 crops of 13 photographs train the decoder; 16 crops of two others are decoded
    train = _write(tmp_path / "train", [(f"{k}-{i:02d}", c) for k in TRAIN for i, c in enumerate(crops[k])])
    held_dir = _write(tmp_path / "held", [(f"{k}-{i:02d}", c) for k in HELD for i, c in enumerate(held[k])])
    store, ckpt = _extract_train(tmp_path, "train", train, "--iters", 1000, "--batch", 16, "--width", 0.25)
    _, train_pixels = _stored_pixels(store)
    held_paths = sorted(str(p) for p in held_dir.glob("*.png"))
    truth = np.stack([load_image(p) for p in held_paths]) / 255.0
    decoded, _ = _decode(tmp_path, ckpt, held_paths, "held")
    mse = ((decoded - truth) ** 2).mean()
    mean_mse = ((train_pixels.mean(axis=0) - truth) ** 2).mean()
    print(f"held-out MSE: decoder {mse:.4f}, training mean image {mean_mse:.4f}")
    assert mse < mean_mse
