"""Activation maximization on the unit's receptive field (preimage.invert.window) against the whole
input: the same centre-unit values and input gradients, the same maximization results; a window that
does not reproduce the whole input is refused."""
import copy
import warnings

import pytest
import torch

from preimage.invert import api
from preimage.invert.model import open_model
from preimage.invert.window import unit_window, windowed


_CONVERTED = {}


@pytest.fixture
def alexnet(caffe_corpus, tmp_path_factory):
    from preimage.converters.caffe.convert import convert_caffe

    if "alexnet" not in _CONVERTED:  # converted once for the module's tests
        out = tmp_path_factory.mktemp("window") / "alexnet.onnx"
        net = caffe_corpus / "alexnet"
        convert_caffe(str(net / "net.prototxt"), str(net / "net.caffemodel"), str(out))
        _CONVERTED["alexnet"] = str(out)
    return _CONVERTED["alexnet"]


def _open(path, layers):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = open_model(path, layers)
        with torch.no_grad():
            shapes = {k: v.shape[1:] for k, v in m.features(torch.zeros(1, 3, *m.input_size)).items()}
    return m, shapes


def _centre_and_grad(f, x, shapes, weights):
    xi = x.clone().requires_grad_()
    out = f(xi)
    vals = torch.cat([out[k][:, :, s[1] // 2, s[2] // 2].flatten() for k, s in shapes.items()])
    (g,) = torch.autograd.grad((vals * weights[:vals.numel()]).sum(), xi)
    return vals.detach(), g


def test_window_reproduces_the_whole_input(alexnet):
    layers = ["conv2", "relu3"]
    m, shapes = _open(alexnet, layers)
    shapes = {k: shapes[k] for k in layers}
    fast = windowed(m.features, m.receptive_fields, layers, shapes, m.input_size, "cpu", torch.float32)
    assert fast is not None
    y0, y1, x0, x1 = fast.window
    assert (y1 - y0) * (x1 - x0) < 0.25 * 227 * 227  # conv3's field is 99 px: the union with conv2's
    torch.manual_seed(1)
    x = torch.randn(2, 3, 227, 227) * 60
    w = torch.rand(4096) + 0.5
    v_full, g_full = _centre_and_grad(m.features, x, shapes, w)
    v_win, g_win = _centre_and_grad(fast, x, shapes, w)
    assert torch.allclose(v_win, v_full, rtol=1e-5, atol=1e-5 * float(v_full.abs().max()))
    assert torch.allclose(g_win, g_full, rtol=1e-5, atol=1e-5 * float(g_full.abs().max()))
    outside = torch.ones(227, 227, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert float(g_full[..., outside].abs().max()) == 0.0  # nothing outside the window reaches the unit


def test_maximize_on_the_window_gives_the_whole_inputs_result(alexnet):
    kw = dict(iters=6, overrides={"fine_iters": "2"}, progress=False, seeds=[0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = api.maximize(alexnet, ["relu3"], [1, 4], window=True, **kw).results
        b = api.maximize(alexnet, ["relu3"], [1, 4], window=False, **kw).results
    assert a[0]["input_window"] == [64, 163, 64, 163] and b[0]["input_window"] is None
    for ra, rb in zip(a, b):
        scale = float(rb["x"].abs().max())
        assert torch.allclose(ra["x"], rb["x"], atol=1e-4 * scale)
        assert ra["activation"] == pytest.approx(rb["activation"], rel=1e-4, abs=1e-6)


def test_a_window_that_does_not_reproduce_the_input_is_refused(alexnet):
    m, shapes = _open(alexnet, ["relu3", "fc6"])
    wrong = copy.deepcopy(m.receptive_fields)
    wrong["relu3"]["offset"] = (wrong["relu3"]["offset"][0] + 24, wrong["relu3"]["offset"][1] + 24)
    assert unit_window(wrong, ["relu3"], {"relu3": tuple(shapes["relu3"])}, (227, 227)) is not None
    assert windowed(m.features, wrong, ["relu3"], shapes, m.input_size, "cpu", torch.float32) is None
    assert windowed(m.features, m.receptive_fields, ["fc6"], shapes, m.input_size, "cpu", torch.float32) is None


def test_the_command_line_maximizes_on_the_window(alexnet, tmp_path):
    import json

    from click.testing import CliRunner

    from preimage.cli import cli

    out = tmp_path / "max"
    res = CliRunner().invoke(cli, ["maximize", "-m", alexnet, "-l", "relu3", "-u", "2", "--iters", "2",
                                   "--set", "fine_iters=0", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["results"][0]["input_window"] == [64, 163, 64, 163]
