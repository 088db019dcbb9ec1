"""preimage's onnx2torch extensions and onnx2torch's own converters on the op patterns the Caffe converter
emits, checked against ONNX Runtime (an independent implementation) and float64 NumPy formulas."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import helper as h

sys.path.insert(0, str(Path(__file__).parent))
from onnx_cases import make_model, rng_array, run_ort  # noqa: E402

from preimage.converters.onnx_torch.load import load_features  # noqa: E402


def check_against_ort(model, feeds, outputs, rtol=1e-5):
    ref = run_ort(model, feeds, outputs)
    net = load_features(model, outputs)
    got = net(*[torch.from_numpy(v) for v in feeds.values()])
    for name in outputs:
        assert got[name].shape == ref[name].shape, name
        err = np.abs(got[name].numpy() - ref[name]).max()
        assert err <= rtol * max(np.abs(ref[name]).max(), 1e-6), (name, err)
    return net


POOLS = [
    # op, kernel, strides, pads (b_h, b_w, e_h, e_w), ceil_mode, count_include_pad
    ("MaxPool", [3, 3], [2, 2], [1, 1, 1, 1], 1, 0),
    ("MaxPool", [2, 2], [2, 2], [1, 1, 1, 1], 1, 0),
    ("MaxPool", [3, 3], [2, 2], [0, 0, 1, 1], 0, 0),
    ("MaxPool", [3, 2], [2, 3], [1, 0, 2, 1], 0, 0),
    ("AveragePool", [3, 3], [2, 2], [1, 1, 1, 1], 1, 1),
    ("AveragePool", [2, 2], [2, 2], [1, 1, 1, 1], 1, 1),
    ("AveragePool", [3, 3], [2, 2], [0, 0, 0, 0], 1, 0),
    ("AveragePool", [3, 3], [2, 2], [1, 0, 2, 1], 0, 0),
    ("AveragePool", [3, 3], [2, 2], [1, 0, 2, 1], 0, 1),
    ("AveragePool", [3, 2], [2, 3], [1, 1, 2, 1], 1, 1),
    ("AveragePool", [3, 3], [1, 1], [1, 1, 1, 1], 0, 1),
    # pads above half the kernel (ONNX allows any pad below the kernel, torch only half)
    ("MaxPool", [3, 3], [2, 2], [2, 2, 2, 2], 1, 0),
    ("MaxPool", [4, 3], [2, 2], [3, 2, 1, 0], 0, 0),
    ("AveragePool", [3, 3], [2, 2], [2, 2, 2, 2], 1, 1),
    ("AveragePool", [3, 3], [2, 2], [2, 1, 2, 2], 0, 0),
    ("AveragePool", [4, 4], [3, 3], [3, 3, 3, 3], 1, 0),
    # the Caffe converter's ceil-mode pattern (floor mode, end pad min(k - 1, p + s - 1)): torch ceil mode
    ("MaxPool", [3, 3], [2, 2], [0, 0, 1, 1], 0, 0),
    ("MaxPool", [2, 2], [2, 2], [1, 1, 1, 1], 0, 0),
    ("AveragePool", [3, 2], [2, 3], [0, 0, 1, 1], 0, 0),
]


@pytest.mark.parametrize("op,kernel,strides,pads,ceil,cip", POOLS)
def test_pooling_matches_onnxruntime(op, kernel, strides, pads, ceil, cip):
    kw = dict(kernel_shape=kernel, strides=strides, pads=pads, ceil_mode=ceil)
    if op == "AveragePool":
        kw["count_include_pad"] = cip
    model = make_model([h.make_node(op, ["x"], ["y"], name="pool", **kw)], {"x": ["N", 3, 13, 11]}, ["y"])
    check_against_ort(model, {"x": rng_array((2, 3, 13, 11))}, ["y"])


@pytest.mark.parametrize("op", ["GlobalMaxPool", "GlobalAveragePool"])
def test_global_pooling_matches_onnxruntime(op):
    model = make_model([h.make_node(op, ["x"], ["y"], name="pool")], {"x": ["N", 3, 13, 11]}, ["y"])
    check_against_ort(model, {"x": rng_array((2, 3, 13, 11))}, ["y"])


def test_caffe_ceil_average_pattern_fused_to_torch_ceil_mode():
    """Pad p both sides + AveragePool(floor, end pads min(k - 1 - p, s - 1), count_include_pad 0) is
    fused into torch's ceil-mode pool with pad p, and still equals onnxruntime at several sizes."""
    nodes = [h.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="constant"),
             h.make_node("AveragePool", ["p"], ["y"], name="pool", kernel_shape=[3, 2], strides=[2, 2],
                         pads=[0, 0, 1, 0], count_include_pad=0)]
    for size in [(9, 8), (10, 7), (13, 12)]:
        model = make_model(nodes, {"x": ["N", 3, *size]}, ["y"], {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)})
        net = check_against_ort(model, {"x": rng_array((2, 3, *size))}, ["y"])
        assert not any("pad" == n for n, _ in net.module.named_children())
        pool = dict(net.module.named_children())["pool"]
        assert pool.direct and pool.ceil_mode and pool.count_include_pad


def test_pooling_free_input_size():
    kw = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1], ceil_mode=0, count_include_pad=0)
    model = make_model([h.make_node("AveragePool", ["x"], ["y"], name="pool", **kw)], {"x": ["N", 2, 9, 9]}, ["y"])
    net = load_features(model, ["y"])
    for size in [(9, 9), (12, 7)]:
        x = rng_array((1, 2) + size, seed=size[0])
        sess_model = make_model([h.make_node("AveragePool", ["x"], ["y"], **kw)], {"x": [1, 2, *size]}, ["y"])
        ref = run_ort(sess_model, {"x": x})["y"]
        np.testing.assert_allclose(net(torch.from_numpy(x))["y"].numpy(), ref, rtol=0, atol=1e-6)


def lrn_numpy(x, size, alpha, beta, bias):
    """ONNX LRN in float64: window [c - floor((size-1)/2), c + ceil((size-1)/2)]."""
    x = x.astype(np.float64)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.zeros_like(x)
    for i in range(c):
        sq[:, i] = (x[:, max(0, i - lo):min(c, i + hi + 1)] ** 2).sum(1)
    return x / (bias + alpha / size * sq) ** beta


@pytest.mark.parametrize("size,alpha,beta,bias", [(5, 1e-2, 0.75, 2.0), (3, 0.05, 0.5, 1.0), (4, 0.1, 0.75, 1.0)])
def test_lrn_across_channels(size, alpha, beta, bias):
    model = make_model([h.make_node("LRN", ["x"], ["y"], name="lrn", size=size, alpha=alpha, beta=beta, bias=bias)],
                       {"x": ["N", 7, 5, 4]}, ["y"])
    x = rng_array((2, 7, 5, 4), scale=3)
    if size % 2:  # ONNX Runtime accepts odd sizes only; the float64 formula below covers even ones
        check_against_ort(model, {"x": x}, ["y"])
    got = load_features(model, ["y"])(torch.from_numpy(x))["y"].numpy()
    ref = lrn_numpy(x, size, alpha, beta, bias)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def within_channel_lrn_model(size, alpha, beta):
    """Caffe's WITHIN_CHANNEL LRN as standard ops: x * (1 + alpha * avgpool_{n x n}(x^2)) ^ -beta."""
    p = (size - 1) // 2
    nodes = [
        h.make_node("Mul", ["x", "x"], ["sq"], name="sq"),
        h.make_node("AveragePool", ["sq"], ["mean"], name="mean", kernel_shape=[size, size], pads=[p] * 4,
                    count_include_pad=1),
        h.make_node("Mul", ["mean", "alpha"], ["scaled"], name="scaled"),
        h.make_node("Add", ["scaled", "one"], ["shifted"], name="shifted"),
        h.make_node("Pow", ["shifted", "negbeta"], ["scale"], name="scale"),
        h.make_node("Mul", ["x", "scale"], ["y"], name="within"),
    ]
    inits = {"alpha": np.float32(alpha), "one": np.float32(1), "negbeta": np.float32(-beta)}
    return make_model(nodes, {"x": ["N", 3, 9, 8]}, ["y"], inits)


def test_lrn_within_channel_decomposition():
    size, alpha, beta = 3, 0.5, 0.75
    x = rng_array((2, 3, 9, 8), scale=2)
    net = load_features(within_channel_lrn_model(size, alpha, beta), ["y"])
    got = net(torch.from_numpy(x))["y"].numpy()
    x64 = np.pad(x.astype(np.float64) ** 2, ((0, 0), (0, 0), (1, 1), (1, 1)))
    s = sum(x64[:, :, i:i + 9, j:j + 8] for i in range(3) for j in range(3))
    ref = x / (1 + alpha / size ** 2 * s) ** beta
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def conv_model(op, w_shape, attrs, in_shape, bias=True):
    w = rng_array(w_shape, seed=1, scale=0.3)
    inits = {"w": w}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rng_array((w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1),), seed=2)
        ins.append("b")
    return make_model([h.make_node(op, ins, ["y"], name="conv", **attrs)], {"x": ["N"] + in_shape[1:]}, ["y"], inits)


CONVS = [
    ("Conv", [6, 2, 3, 2], dict(group=2, strides=[2, 1], pads=[1, 0, 1, 0], dilations=[1, 2]), True),
    ("Conv", [4, 4, 3, 3], dict(pads=[1, 1, 1, 1]), False),
    ("ConvTranspose", [4, 3, 4, 4], dict(strides=[2, 2], pads=[1, 1, 1, 1]), True),
    ("ConvTranspose", [4, 2, 3, 3], dict(group=2, strides=[2, 2], pads=[1, 0, 1, 0]), True),
    ("ConvTranspose", [4, 3, 3, 3], dict(strides=[2, 2], pads=[0, 1, 1, 2]), True),
    ("ConvTranspose", [4, 3, 3, 3], dict(strides=[2, 2], output_shape=[12, 10]), False),
    ("ConvTranspose", [4, 3, 3, 3], dict(strides=[2, 2], output_padding=[1, 0], pads=[1, 1, 1, 1]), True),
]


@pytest.mark.parametrize("op,w_shape,attrs,bias", CONVS)
def test_convolutions_match_onnxruntime(op, w_shape, attrs, bias):
    shape = [2, 4, 6, 5]
    check_against_ort(conv_model(op, w_shape, attrs, shape, bias), {"x": rng_array(shape)}, ["y"])


def test_graph_plumbing_ops():
    """Reshape 0/-1, Slice (Caffe Slice / Crop), Flatten + Gemm transB, PRelu broadcast, Softmax axis 1."""
    nodes = [
        h.make_node("Reshape", ["x", "shape"], ["r"], name="r"),
        h.make_node("Slice", ["x", "starts", "ends", "axes"], ["crop"], name="crop"),
        h.make_node("Slice", ["x", "s0", "e0", "a1"], ["part"], name="part"),
        h.make_node("PRelu", ["x", "slope"], ["prelu"], name="prelu"),
        h.make_node("Softmax", ["x"], ["prob"], name="prob", axis=1),
        h.make_node("Flatten", ["x"], ["flat"], name="flat", axis=1),
        h.make_node("Gemm", ["flat", "W", "B"], ["fc"], name="fc", transB=1),
        h.make_node("Gemm", ["flat", "Wt", "B"], ["fct"], name="fct"),
        h.make_node("Slice", ["x", "s0", "e2", "a1"], ["crop2"], name="crop2"),
        h.make_node("Slice", ["x", "big", "neg", "a3", "m1"], ["rev"], name="rev"),
        h.make_node("Concat", ["part", "crop2"], ["cat"], name="cat", axis=1),
        h.make_node("Split", ["x", "sizes"], ["s1", "s2"], name="split", axis=1),
        h.make_node("Pad", ["x", "pads", "padval"], ["padded"], name="pad"),
        h.make_node("Reshape", ["x", "shape2"], ["r2"], name="r2"),
        h.make_node("Tile", ["x", "reps"], ["tiled"], name="tile"),
    ]
    W = rng_array((5, 4 * 6 * 5), seed=3)
    inits = {"shape": np.array([0, 2, -1, 5], np.int64), "starts": np.array([1, 2], np.int64),
             "ends": np.array([5, 4], np.int64), "axes": np.array([2, 3], np.int64),
             "s0": np.array([0], np.int64), "e0": np.array([3], np.int64), "e2": np.array([1], np.int64),
             "a1": np.array([1], np.int64), "big": np.array([2 ** 62], np.int64), "neg": np.array([-6], np.int64),
             "a3": np.array([-1], np.int64), "sizes": np.array([1, 3], np.int64),
             "pads": np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64), "padval": np.array(-1.5, np.float32),
             "shape2": np.array([-1, 6, 5], np.int64), "reps": np.array([1, 2, 1, 3], np.int64), "m1": np.array([-2], np.int64), "slope": rng_array((4, 1, 1), seed=4),
             "W": W, "Wt": np.ascontiguousarray(W.T), "B": rng_array((5,), seed=5)}
    outs = ["r", "crop", "part", "prelu", "prob", "fc", "fct", "cat", "rev", "s1", "s2", "padded", "r2", "tiled"]
    model = make_model(nodes, {"x": ["N", 4, 6, 5]}, outs, inits)
    net = check_against_ort(model, {"x": rng_array((3, 4, 6, 5))}, outs)
    # shape-like constants are read once at conversion: no module takes a tensor besides its data
    for name in ("r", "split", "pad", "crop", "rev", "tile"):
        assert len(net.module.get_submodule(name).onnx_mapping.inputs) == 1, name


def test_float64_gradcheck_on_extensions():
    """The extended ops are differentiable with exact gradients (float64 finite differences)."""
    nodes = [
        h.make_node("MaxPool", ["x"], ["m"], name="m", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
        h.make_node("AveragePool", ["x"], ["a"], name="a", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 2, 2],
                    count_include_pad=0),
        h.make_node("LRN", ["x"], ["l"], name="l", size=3, alpha=0.3, beta=0.75, bias=2.0),
        h.make_node("LRN", ["x"], ["l4"], name="l4", size=4, alpha=0.5, beta=0.6, bias=1.0),
        h.make_node("ConvTranspose", ["x", "w"], ["t"], name="t", strides=[2, 2], pads=[0, 1, 1, 0]),
    ]
    outs = ["m", "a", "l", "l4", "t"]
    model = make_model(nodes, {"x": ["N", 3, 5, 5]}, outs, {"w": rng_array((3, 2, 3, 3), seed=7)})
    net = load_features(model, outs, dtype=torch.float64)
    x = torch.from_numpy(rng_array((1, 3, 5, 5), seed=8)).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: tuple(net(t).values()), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("pads,kernel,ceil,fused", [
    ([0, 0, 1, 1, 0, 0, 1, 1], [3, 3], 0, True),
    ([0, 0, 1, 0, 0, 0, 2, 1], [3, 2], 0, True),
    ([0, 0, 1, 1, 0, 0, 1, 1], [3, 3], 1, False),   # ceil mode: windows may start in the end pad
    ([0, 0, 2, 2, 0, 0, 2, 2], [3, 3], 0, False),   # pad > kernel / 2: torch cannot pool it implicitly
])
def test_zero_pad_then_average_pool_is_fused_exactly(pads, kernel, ceil, fused):
    nodes = [h.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="constant"),
             h.make_node("AveragePool", ["p"], ["y"], name="pool", kernel_shape=kernel, strides=[2, 2], ceil_mode=ceil)]
    model = make_model(nodes, {"x": ["N", 3, 9, 8]}, ["y"], {"pads": np.array(pads, np.int64)})
    net = check_against_ort(model, {"x": rng_array((2, 3, 9, 8))}, ["y"])
    has_pad = any("pad" == n for n, _ in net.module.named_children())
    assert has_pad != fused
    # the Pad output requested too: it must stay
    both = check_against_ort(model, {"x": rng_array((1, 3, 9, 8))}, ["y", "p"])
    assert any("pad" == n for n, _ in both.module.named_children())


def test_relu_in_place_only_where_safe():
    nodes = [
        h.make_node("Conv", ["x", "w"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"], name="r1"),                      # sole reader of a Conv: in place
        h.make_node("Conv", ["r1", "w2"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c2"], ["r2"], name="r2"),                      # c2 also read by the Add
        h.make_node("Add", ["c2", "r2"], ["s"], name="s"),
        h.make_node("LRN", ["s"], ["n"], name="n", size=3),
        h.make_node("Relu", ["n"], ["r3"], name="r3"),                       # LRN keeps its output for backward
    ]
    inits = {"w": rng_array((3, 3, 3, 3), 1), "w2": rng_array((3, 3, 3, 3), 2)}
    model = make_model(nodes, {"x": ["N", 3, 6, 6]}, ["r3"], inits)
    net = check_against_ort(model, {"x": rng_array((2, 3, 6, 6))}, ["r3"])
    inplace = {n: m.inplace for n, m in net.module.named_children() if n in ("r1", "r2", "r3")}
    assert inplace == {"r1": True, "r2": False, "r3": False}
    net64 = load_features(model, ["r3"], dtype=torch.float64)
    x = torch.from_numpy(rng_array((1, 3, 6, 6), 3)).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: net64(t)["r3"], (x,), eps=1e-6, atol=1e-6)
