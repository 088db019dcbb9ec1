"""The optimised step (phase-split conv backward, channels-last activations, module cache) gives the same
per-sample values and input gradients as plain reference code written here (float64)."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper as h
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from onnx_cases import make_model, rng_array  # noqa: E402

from preimage.converters.onnx_torch import conv as conv_mod  # noqa: E402
from preimage.converters.onnx_torch.load import load_features  # noqa: E402

D = torch.float64


def plain_input_gradient(x, w, stride, padding, grad_out):
    x = x.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(F.conv2d(x, w, None, stride, padding), x, grad_out)
    return g


@pytest.mark.parametrize("cin,k,stride,pad,size", [(3, 11, 4, 0, (227, 227)), (3, 11, 4, 2, (50, 61)),
                                                    (1, 3, 2, 1, (9, 8)), (3, 5, 2, 0, (16, 17)),
                                                    (2, 7, 3, 3, (20, 23)), (3, 4, 4, 0, (12, 12)),
                                                    (3, 2, 3, 0, (11, 10))])
def test_phase_split_gradient_is_the_transposed_convolution(cin, k, stride, pad, size):
    g = torch.Generator().manual_seed(k * 7 + stride)
    x = torch.randn(2, cin, *size, generator=g, dtype=D)
    w = torch.randn(5, cin, k, k, generator=g, dtype=D)
    out = F.conv2d(x, w, None, stride, pad)
    dy = torch.randn(out.shape, generator=g, dtype=D)
    ours = conv_mod.input_gradient(dy, w, stride, (pad, pad), size)
    ref = plain_input_gradient(x, w, stride, pad, dy)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))


def _conv_module(cin, k, stride, pad, weights_grad=False):
    m = conv_mod.Conv2d(cin, 6, k, stride, pad).to(D)
    m.weight.requires_grad_(weights_grad)
    m.bias.requires_grad_(weights_grad)
    return m


@pytest.mark.parametrize("weights_grad", [False, True])
def test_conv_module_values_and_gradients_match_plain_conv2d(weights_grad):
    m = _conv_module(3, 5, 2, 1, weights_grad)
    x = torch.randn(3, 3, 15, 14, dtype=D, requires_grad=True)
    y = m(x)
    assert ("FewChannel" in type(y.grad_fn).__name__) == (not weights_grad)  # the phase split only when frozen
    ref = F.conv2d(x, m.weight, m.bias, 2, 1)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(y)
    params = [x] + ([m.weight, m.bias] if weights_grad else [])
    ours = torch.autograd.grad(y, params, dy)
    theirs = torch.autograd.grad(ref, params, dy)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-11, atol=1e-11 * float(b.abs().max()))


def test_conv_module_gradcheck():
    m = _conv_module(2, 3, 2, 1)
    x = torch.randn(1, 2, 7, 6, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: m(t), (x,))


# a small AlexNet-like graph: conv (3 channels, stride 2) -> relu -> LRN -> max pool -> grouped conv -> relu -> fc
W1, B1 = rng_array((8, 3, 5, 5), 1, 0.2), rng_array((8,), 2, 0.1)
W2, B2 = rng_array((6, 4, 3, 3), 3, 0.2), rng_array((6,), 4, 0.1)
WF, BF = rng_array((5, 6 * 4 * 4), 5, 0.1), rng_array((5,), 6, 0.1)


def small_net():
    nodes = [
        h.make_node("Conv", ["data", "w1", "b1"], ["conv1"], name="conv1", strides=[2, 2], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        h.make_node("LRN", ["relu1"], ["norm1"], name="norm1", size=3, alpha=0.046875, beta=0.75, bias=1.0),
        h.make_node("MaxPool", ["norm1"], ["pool1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2]),
        h.make_node("Conv", ["pool1", "w2", "b2"], ["conv2"], name="conv2", pads=[1, 1, 1, 1], group=2),
        h.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        h.make_node("Flatten", ["relu2"], ["flat"], name="flat"),
        h.make_node("Gemm", ["flat", "wf", "bf"], ["fc"], name="fc", transB=1),
    ]
    return make_model(nodes, {"data": [1, 3, 19, 19]}, ["fc"],
                      {"w1": W1, "b1": B1, "w2": W2, "b2": B2, "wf": WF, "bf": BF})


def plain_net(x):
    """The same network written with plain torch operations (the reference)."""
    t = lambda a: torch.from_numpy(a).to(x.dtype)  # noqa: E731
    r1 = torch.relu(F.conv2d(x, t(W1), t(B1), 2, 1))
    sq = F.pad(r1 * r1, (0, 0, 0, 0, 1, 1))
    window = sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:]
    n1 = r1 / (1.0 + 0.046875 / 3 * window) ** 0.75  # alpha exact in float32 (ONNX attributes are)
    p1 = F.max_pool2d(n1, 3, 2)
    r2 = torch.relu(F.conv2d(p1, t(W2), t(B2), 1, 1, 1, 2))
    return {"relu2": r2, "fc": r2.flatten(1) @ t(WF).T + t(BF)}


def test_converted_step_matches_the_plain_network(tmp_path):
    path = tmp_path / "small.onnx"
    path.write_bytes(small_net().SerializeToString())
    for attempt in ("build", "cached"):
        fx = load_features(str(path), ["relu2", "fc"], dtype=D)
        assert isinstance(fx.module.conv1, conv_mod.Conv2d)
        x = torch.randn(4, 3, 19, 19, dtype=D, generator=torch.Generator().manual_seed(0)) * 3
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours, ref = fx(xa), plain_net(xb)
        for k in ("relu2", "fc"):
            assert ours[k].is_contiguous(), (attempt, k)
            assert torch.allclose(ours[k], ref[k], rtol=1e-10, atol=1e-12), (attempt, k)
        R = {k: torch.randn(ref[k].shape, dtype=D) for k in ref}
        (ga,) = torch.autograd.grad(sum((ours[k] * R[k]).sum() for k in R), xa)
        (gb,) = torch.autograd.grad(sum((ref[k] * R[k]).sum() for k in R), xb)
        assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-12 * float(gb.abs().max())), attempt
    assert os.listdir(tmp_path / ".preimage-cache")


def test_engine_run_matches_a_plain_loop(tmp_path):
    """engine.optimize (mahendran2016, no jitter, 4 steps) on the converted module vs the same algorithm
    written out here on the plain network: per-sample images and energies agree."""
    from preimage.invert import engine, presets

    path = tmp_path / "small.onnx"
    path.write_bytes(small_net().SerializeToString())
    fx = load_features(str(path), ["fc"], dtype=D)
    cfg = presets.get("mahendran2016", iters=4, fine_iters=0).replace(jitter=False)
    g = torch.Generator().manual_seed(3)
    starts = [torch.randn(3, 19, 19, generator=g, dtype=D) * 30 for _ in range(3)]
    with torch.no_grad():
        targets = [plain_net(torch.randn(1, 3, 19, 19, generator=g, dtype=D) * 30)["fc"][0] for _ in range(3)]
    Cs = [1.0, 30.0, 300.0]
    samples = [engine.Sample("fc", t, seed=i, C=c, init=s) for i, (t, c, s) in enumerate(zip(targets, Cs, starts))]
    results, _ = engine.optimize(fx, presets.recipe(cfg, samples), (19, 19), dtype=D, progress=False)

    B, alpha, beta, Bplus, rho = cfg.B, cfg.alpha, cfg.beta, cfg.Bplus, cfg.rho
    V, eta0, hw = B / 6.5, 0.05 * B ** 2 / alpha, 19.0 * 19.0
    for s, res in zip(samples, results):
        x = s.init[None].clone()
        G, mu, energies = torch.zeros_like(x), torch.zeros_like(x), []
        for _ in range(4):
            x.requires_grad_(True)
            phi = plain_net(x)["fc"]
            loss = s.C * ((phi - s.target) ** 2).sum() / (s.target ** 2).sum()
            br = ((x * x).sum(1) ** (alpha / 2)).sum() / (hw * B ** alpha)
            dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
            dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
            tv = ((dx * dx + dy * dy) ** (beta / 2)).sum() / (hw * V ** beta)
            E = loss + br + tv
            (grad,) = torch.autograd.grad(E, x)
            energies.append(float(E.detach()))
            with torch.no_grad():
                grad = grad * hw
                G = rho * G + grad * grad
                mu = rho * mu - grad / (1 / eta0 + G.sqrt())
                x = x.detach() + mu
                norm2 = (x * x).sum(1, keepdim=True)
                x = x * torch.sqrt(torch.clamp(Bplus ** 2 / norm2, max=1.0))
        assert np.allclose(res["energy"], energies, rtol=1e-9), (s.seed, res["energy"], energies)
        assert torch.allclose(res["x"], x[0], rtol=1e-9, atol=1e-9 * float(x.abs().max())), s.seed


def _cache_files(folder):
    d = folder / ".preimage-cache"
    return sorted(d.iterdir()) if d.is_dir() else []


def test_cache_is_used_and_a_stale_or_damaged_one_is_rebuilt(tmp_path, monkeypatch):
    from preimage.converters.onnx_torch import load as load_mod

    path = tmp_path / "small.onnx"
    path.write_bytes(small_net().SerializeToString())
    x = torch.randn(2, 3, 19, 19, dtype=D)
    builds = []
    real_build = load_mod._build
    monkeypatch.setattr(load_mod, "_build", lambda *a: builds.append(1) or real_build(*a))

    first = load_features(str(path), ["fc"], dtype=D)(x)["fc"]
    (cache,) = _cache_files(tmp_path)
    again = load_features(str(path), ["fc"], dtype=D)
    assert len(builds) == 1  # read back, not rebuilt
    assert torch.equal(again(x)["fc"], first)
    assert again.preprocess is not None and "fc" in again.receptive_fields

    cache.write_bytes(cache.read_bytes()[:1000])  # damaged: ignored and rebuilt
    assert torch.equal(load_features(str(path), ["fc"], dtype=D)(x)["fc"], first)
    assert len(builds) == 2

    changed = small_net()  # stale: the file now has other weights
    w = changed.graph.initializer[-1]
    w.CopyFrom(numpy_helper.from_array(np.full((5,), 7.0, np.float32), w.name))
    path.write_bytes(changed.SerializeToString())
    out = load_features(str(path), ["fc"], dtype=D)(x)["fc"]
    assert len(builds) == 3
    assert torch.allclose(out, plain_net(x)["fc"] - torch.from_numpy(BF).to(D) + 7.0, atol=1e-9)  # the new bias
    assert len(load_features(str(path), ["fc"], cache=False)(x.float())) == 1
    monkeypatch.setenv("PREIMAGE_CACHE", "0")
    load_features(str(path), ["fc"])
    assert len(builds) == 5


def test_light_shape_inference_finds_the_same_shapes():
    import onnx

    from preimage.converters.onnx_torch.shapes import infer_value_shapes

    model = small_net()
    full = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    ours = {v.name: v for v in infer_value_shapes(small_net()).graph.value_info}
    assert set(full) == set(ours) and all(full[k] == ours[k] for k in full)


def test_unwritable_folder_or_unpicklable_module_only_means_no_cache(tmp_path, monkeypatch):
    from preimage.converters.onnx_torch import cache as cache_mod

    path = tmp_path / "small.onnx"
    path.write_bytes(small_net().SerializeToString())

    def refuse(*a, **k):
        raise TypeError("cannot pickle this module")

    monkeypatch.setattr(cache_mod.torch, "save", refuse)
    x = torch.randn(1, 3, 19, 19, dtype=D)
    assert torch.allclose(load_features(str(path), ["fc"], dtype=D)(x)["fc"], plain_net(x)["fc"], atol=1e-9)
    assert not _cache_files(tmp_path)
