"""``preimage demo`` end to end (the quick variant: tiny models, a few iterations)."""
import json

from click.testing import CliRunner

from preimage.cli import cli
from preimage.models import samples


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--quick", "-q", "-o", str(out)])
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
