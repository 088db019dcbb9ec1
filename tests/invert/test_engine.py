"""The run loop: known pre-images are recovered, batches equal one-at-a-time runs, Ctrl-C keeps results."""
import numpy as np
import pytest
import torch

from preimage.invert import engine, presets


def _injective_conv():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).double()
    return lambda x: {"c": conv(x)}, conv


def test_known_preimage_is_recovered():
    features, conv = _injective_conv()
    x0 = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 50
    with torch.no_grad():
        t = conv(x0)
    cfg = presets.get("mahendran2016", weights={}, Bplus=None, jitter=False, iters=300, fine_iters=50)
    samples = [engine.Sample("c", t[i], seed=i, C=1.0) for i in range(2)]
    res, interrupted = engine.optimize(features, presets.recipe(cfg, samples), (16, 16), dtype=torch.float64, progress=False)
    assert not interrupted
    for i, r in enumerate(res):
        assert ((r["x"] - x0[i]).norm() / x0[i].norm()).item() < 1e-3
        assert r["normalized_error"] < 1e-3
        assert r["iterations"] == 350 and len(r["loss"]) == 350


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.c1 = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.c2 = torch.nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        return {"a": a, "b": b, "fc": self.fc(b.flatten(1))}


def _samples(net, x0s, layers, seeds):
    with torch.no_grad():
        feats = net(x0s)
    out = []
    for li, (layer, T, C) in enumerate(layers):
        for i in range(len(x0s)):
            for s in seeds:
                out.append(engine.Sample(layer, feats[layer][i], seed=s, C=C, T=T, reference=feats[layer][i]))
    return out


@pytest.mark.parametrize("preset", ["mahendran2016", "posenet2016"])
def test_batched_equals_one_at_a_time(preset):
    net = SmallNet().double()
    torch.manual_seed(5)
    x0s = torch.randn(2, 3, 16, 16, dtype=torch.float64) * 60
    layers = [("a", 1, 300.0), ("b", 2, 20.0), ("fc", 3, 1.0)]  # three canvas sizes, one batch
    samples = _samples(net, x0s, layers, seeds=[0, 1])
    cfg = presets.get(preset, iters=12, fine_iters=4, jitter=True)
    batch, _ = engine.optimize(net, presets.recipe(cfg, samples), (16, 16), dtype=torch.float64, progress=False)
    assert len(batch) == 12
    for k in [0, 3, 5, 6, 11]:  # one at a time
        (single,), _ = engine.optimize(net, presets.recipe(cfg, [samples[k]]), (16, 16), dtype=torch.float64, progress=False)
        np.testing.assert_allclose(batch[k]["x"].numpy(), single["x"].numpy(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(batch[k]["loss"], single["loss"], rtol=1e-9)
        assert batch[k]["normalized_error"] == pytest.approx(single["normalized_error"], rel=1e-9)
    # seeds differ -> different pre-images
    assert not torch.allclose(batch[0]["x"], batch[1]["x"])


def test_keyboard_interrupt_keeps_the_results_so_far():
    net = SmallNet().double()
    calls = {"n": 0}

    def features(x):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return net(x)

    x0s = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    samples = _samples(net, x0s, [("b", 2, 20.0)], seeds=[0])
    cfg = presets.get("mahendran2016", iters=50, fine_iters=5)
    (res,), interrupted = engine.optimize(features, presets.recipe(cfg, samples), (16, 16), dtype=torch.float64, progress=False)
    assert interrupted and res["iterations"] == 5 and len(res["loss"]) == 5
    assert res["x"].shape == (3, 16, 16) and np.isfinite(res["normalized_error"])


def test_mahendran_C_rule():
    layers = [{"name": n, "type": t, "value": n} for n, t in [
        ("conv1", "Convolution"), ("relu1", "ReLU"), ("pool1", "Pooling"), ("conv2", "Convolution"),
        ("relu2", "ReLU"), ("conv3", "Convolution"), ("relu3", "ReLU"), ("conv4", "Convolution"),
        ("relu4", "ReLU"), ("conv5", "Convolution"), ("relu5", "ReLU"), ("pool5", "Pooling"),
        ("fc6", "InnerProduct"), ("fc8", "InnerProduct")]]
    got = {n: presets.mahendran_C(n, layers) for n in ["conv1", "pool1", "relu3", "conv4", "relu4", "conv5",
                                                         "relu5", "pool5", "fc6", "fc8"]}
    assert got == {"conv1": 300, "pool1": 300, "relu3": 300, "conv4": 100, "relu4": 100, "conv5": 20,
                   "relu5": 20, "pool5": 1, "fc6": 1, "fc8": 1}
    # PoseNet: relu5 follows fc5, so fc5 is "up to relu5"
    posenet = [{"name": n, "type": t, "value": n} for n, t in [
        ("conv3", "Convolution"), ("relu3", "ReLU"), ("conv4", "Convolution"), ("relu4", "ReLU"),
        ("pool4", "Pooling"), ("fc5", "InnerProduct"), ("relu5", "ReLU"), ("fc6", "InnerProduct")]]
    assert [presets.mahendran_C(n, posenet) for n in ["conv3", "conv4", "pool4", "fc5", "fc6"]] == [300, 100, 20, 20, 1]
    unnamed = [{"name": n, "type": t} for n, t in [("a", "Convolution"), ("b", "ReLU"), ("c", "Convolution"),
                                                      ("d", "Convolution"), ("e", "Convolution"), ("f", "ReLU")]]
    assert [presets.mahendran_C(n, unnamed) for n in "abcdef"] == [300, 300, 300, 300, 100, 100]
    assert presets.mahendran_C("conv2") == 300 and presets.mahendran_C("fc7") == 1
    assert presets.mahendran_C("fc5") == 20 and presets.mahendran_C("pool5") == 1


def test_config_z_overrides_the_normaliser():
    """--set z=VALUE divides the loss by VALUE instead of ||Phi0||^2 (the field was once read by nothing)."""
    features, conv = _injective_conv()
    with torch.no_grad():
        t = conv(torch.randn(1, 3, 8, 8, dtype=torch.float64) * 50)[0]
    first = {}
    for z in (None, 2.0):
        cfg = presets.get("mahendran2016", weights={}, jitter=False, iters=1, fine_iters=0, z=z)
        res, _ = engine.optimize(features, presets.recipe(cfg, [engine.Sample("c", t, seed=4)]), (8, 8), dtype=torch.float64,
                                 progress=False)
        first[z] = res[0]["loss"][0]  # at the starting noise, the same for both runs
    assert first[2.0] * 2.0 == pytest.approx(first[None] * float((t * t).sum()), rel=1e-9)
