"""The Python API on a plain torch module, and the report it writes (metrics.json keys, PNGs, grid, html)."""
import json
import os

import numpy as np
import pytest

from preimage.invert import api
from preimage.models import samples
from preimage.preprocess import Preprocess, load_image

from .test_engine import SmallNet


@pytest.fixture(scope="module")
def run():
    net = SmallNet()
    return api.invert(net, ["b", "fc"], seeds=2, iters=6, overrides={"fine_iters": "2"}, preprocess=Preprocess(),
                      size=(16, 16), device="cpu", progress=False)


def test_one_result_per_image_layer_seed(run):
    keys = {(r["image"], r["layer"], r["seed"]) for r in run.results}
    assert keys == {(i, l, s) for i in samples.names() for l in ["b", "fc"] for s in [0, 1]}
    assert all(r["iterations"] == 8 for r in run.results)


def test_report_files_and_metrics_keys(run, tmp_path):
    index = run.write(str(tmp_path))
    assert os.path.basename(index) == "index.html"
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert len(m["results"]) == len(samples.names()) * 2 * 2
    for r in m["results"]:
        for k in ["image", "layer", "seed", "normalized_error", "relative_loss", "iterations", "seconds"]:
            assert k in r, k
        assert isinstance(r["normalized_error"], float) and isinstance(r["relative_loss"], float)
        assert len(r["loss_curve"]) == 8
        png = load_image(tmp_path / r["png"])
        assert png.shape == (16, 16, 3)
        assert r["png"] in (tmp_path / "index.html").read_text()
    grid = load_image(tmp_path / "grid.png")
    n_img, n_col = len(samples.names()), 1 + 2 * 2
    assert grid.shape == (18 + n_img * 20 + 4, n_col * 20 + 4, 3)
    # the first column holds the de-normalised originals
    orig = load_image(tmp_path / "images" / "astronaut.png")
    np.testing.assert_array_equal(grid[22:38, 4:20], orig)
    assert not list(tmp_path.glob(".*.part"))  # atomic writes leave no temporaries


def test_reconstruction_png_is_the_denormalised_result(run, tmp_path):
    run.write(str(tmp_path))
    r = run.results[0]
    expected = Preprocess().to_uint8(r["x"][None])[0]
    got = load_image(tmp_path / f"images/{r['image']}__{r['layer']}__s{r['seed']}.png")
    np.testing.assert_array_equal(got, expected)


def test_maximize_and_caricature_run(tmp_path):
    net = SmallNet()
    m = api.maximize(net, ["fc"], [1, 3], iters=4, overrides={"fine_iters": 0}, preprocess=Preprocess(),
                     size=(16, 16), device="cpu", progress=False)
    assert [r["unit"] for r in m.results] == [1, 3] and all(r["activation"] is not None for r in m.results)
    m.write(str(tmp_path / "max"))
    c = api.caricature(net, ["b"], [samples.paths()[0]], iters=3, overrides={"fine_iters": 0},
                       preprocess=Preprocess(), size=(16, 16), device="cpu", progress=False)
    assert len(c.results) == 1
    c.write(str(tmp_path / "car"))
    assert (tmp_path / "car" / "grid.png").exists() and (tmp_path / "max" / "metrics.json").exists()


def test_batch_size_chunks_give_the_same_results():
    net = SmallNet().double()
    kw = dict(seeds=2, iters=5, overrides={"fine_iters": 1}, preprocess=Preprocess(), size=(16, 16), device="cpu",
              progress=False)
    whole = api.invert(net, ["b", "fc"], samples.paths()[:2], **kw)
    chunked = api.invert(net, ["b", "fc"], samples.paths()[:2], batch_size=3, **kw)
    assert [r["batch_size"] for r in chunked.results] == [3, 3, 3, 3, 3, 3, 2, 2]  # 2 images x 2 layers x 2 seeds
    for a, b in zip(whole.results, chunked.results):
        assert (a["image"], a["layer"], a["seed"]) == (b["image"], b["layer"], b["seed"])
        np.testing.assert_allclose(a["x"].numpy(), b["x"].numpy(), rtol=1e-9, atol=1e-9)


def test_global_pool_of_a_free_size_model_sets_stride_and_field(tmp_path):
    # a global pool over a free H/W sees the whole input: rho = the input size, jitter from the pooled map
    import torch
    from torch import nn

    from preimage.invert.model import open_model
    from preimage.invert.transforms import jitter_amount

    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    path = tmp_path / "gap.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}})
    m = open_model(str(path), ["/2/GlobalAveragePool"])  # a node name, as 'preimage layers' lists it
    m.input_size = [24, 20]  # as invert's --size sets it
    assert m.rf_size("/2/GlobalAveragePool") == 24
    assert m.stride("/2/GlobalAveragePool", (4, 1, 1)) == (2, 2)
    assert jitter_amount(m.stride("/2/GlobalAveragePool", (4, 1, 1))) >= 1
