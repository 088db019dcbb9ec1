"""Converted Caffe pooling at input sizes other than the declared one, in onnxruntime and through
``load_features`` (onnx2torch + preimage's pooling), against the float64 NumPy transcription of Caffe's
rule in caffe_helpers: out = ceil((H + 2p - k) / s) + 1, minus one where the last window would start at
or past H + p (only when the layer has a pad); AVE divides by the window clipped to [-p, H + p).

The nets are declared at 9 x 10 and run at sizes that hit the dropped last window, windows reaching
past H + p (clipped divisors), pads above half the kernel, and exact fits."""
import numpy as np
import onnx
import pytest
import torch

from preimage.converters.caffe import convert_caffe
from preimage.converters.onnx_torch.load import load_features
from preimage.errors import PreimageError

from caffe_helpers import caffe_pool_ref, meta, one_layer_net, rel_err, run

DECLARED = (1, 2, 9, 10)
SIZES = [(9, 10), (13, 13), (8, 11), (12, 7), (16, 15), (5, 6)]

# (kernel, stride, pad) as (h, w) pairs, round mode
CASES = [
    ((3, 3), (2, 2), (0, 0), "CEIL"),   # AlexNet's pool
    ((3, 3), (2, 2), (1, 1), "CEIL"),
    ((2, 2), (2, 2), (1, 1), "CEIL"),   # last window dropped at odd sizes (13: 8 -> 7)
    ((3, 3), (3, 3), (1, 1), "CEIL"),
    ((3, 3), (2, 2), (2, 2), "CEIL"),   # pad above half the kernel (torch cannot pool it implicitly)
    ((5, 5), (3, 3), (2, 2), "CEIL"),
    ((2, 2), (3, 3), (1, 1), "CEIL"),   # kernel < stride, padded
    ((3, 2), (2, 3), (1, 0), "CEIL"),   # rectangular, pad on one axis only (Caffe drops on both)
    ((3, 3), (2, 2), (1, 1), "FLOOR"),
    ((4, 3), (3, 2), (2, 1), "FLOOR"),
]


def _pool_text(method, k, s, p, rnd):
    return ('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { '
            f'pool: {method} kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} stride_w: {s[1]} '
            f'pad_h: {p[0]} pad_w: {p[1]} round_mode: {rnd} }} }}')


def _convert(tmp_path, layer_text, shape=DECLARED):
    path = tmp_path / "t.prototxt"
    path.write_text(one_layer_net(layer_text, shape))
    return convert_caffe(path, random_weights=True)


def free_size(model):
    """The model with its image input's height and width left open (and no stored shapes), as
    onnxruntime needs it to run another size."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    del m.graph.value_info[:]
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    return m


def _ref(x, k, s, p, method, rnd):
    return caffe_pool_ref(x, k, s, p, method, ceil=rnd == "CEIL")


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("k, s, p, rnd", CASES)
def test_pooling_matches_caffe_at_any_size(tmp_path, method, k, s, p, rnd):
    model = _convert(tmp_path, _pool_text(method, k, s, p, rnd))
    assert "preimage.fixed_size" not in meta(model)
    free = free_size(model)
    net = load_features(model, ["pool"], dtype=torch.float64)
    rng = np.random.default_rng(sum(k) + 10 * sum(s) + 100 * sum(p))
    for size in SIZES:
        x = rng.standard_normal((2, 2) + size).astype(np.float32)
        ref = _ref(x, k, s, p, method, rnd)
        y = run(free, {"data": x}, ["pool"])["pool"]
        assert y.shape == ref.shape, (size, "onnxruntime")
        assert rel_err(y, ref) < 1e-6, (size, "onnxruntime")
        t = net(torch.from_numpy(x).double())["pool"].numpy()
        assert t.shape == ref.shape, (size, "torch")
        assert rel_err(t, ref) < 1e-12, (size, "torch")


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling_at_any_size(tmp_path, method):
    model = _convert(tmp_path, 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                               f'pooling_param {{ pool: {method} global_pooling: true }} }}')
    free = free_size(model)
    net = load_features(model, ["pool"], dtype=torch.float64)
    rng = np.random.default_rng(3)
    for size in SIZES:
        x = rng.standard_normal((2, 2) + size).astype(np.float32)
        ref = caffe_pool_ref(x, size, (1, 1), (0, 0), method)
        assert rel_err(run(free, {"data": x}, ["pool"])["pool"], ref) < 1e-6
        assert rel_err(net(torch.from_numpy(x).double())["pool"].numpy(), ref) < 1e-12


def test_max_pool_window_past_the_input_kept_as_caffe_does(tmp_path):
    """Ceil mode, no pad, kernel < stride: Caffe keeps a last window that covers nothing (-FLT_MAX)."""
    k, s, p = (1, 2), (2, 3), (0, 0)
    model = _convert(tmp_path, _pool_text("MAX", k, s, p, "CEIL"))
    free = free_size(model)
    net = load_features(model, ["pool"], dtype=torch.float64)
    rng = np.random.default_rng(4)
    for size in [(9, 10), (8, 11), (10, 12), (7, 7)]:
        x = rng.standard_normal((1, 2) + size).astype(np.float32)
        ref = caffe_pool_ref(x, k, s, p, "MAX")
        assert run(free, {"data": x}, ["pool"])["pool"].shape == ref.shape
        assert rel_err(run(free, {"data": x}, ["pool"])["pool"], ref) < 1e-6
        assert rel_err(net(torch.from_numpy(x).double())["pool"].numpy(), ref) < 1e-6


def test_average_pool_fixed_for_the_declared_size_refuses_others(tmp_path):
    """The one AVE form without a size-generic ONNX pattern (ceil, no pad, kernel < stride): exact at
    the declared size, recorded in metadata, and load_features refuses another size clearly."""
    k, s, p = (2, 2), (3, 3), (0, 0)
    model = _convert(tmp_path, _pool_text("AVE", k, s, p, "CEIL"), shape=(1, 2, 8, 11))
    fixed = meta(model)["preimage.fixed_size"]
    assert fixed == {"layers": ["pool"], "inputs": {"data": [8, 11]}}
    x = np.random.default_rng(5).standard_normal((2, 2, 8, 11)).astype(np.float32)
    ref = caffe_pool_ref(x, k, s, p, "AVE")
    ok = np.isfinite(ref)  # Caffe's own empty windows divide 0 by a count <= 0
    assert rel_err(run(model, {"data": x}, ["pool"])["pool"][ok], ref[ok]) < 1e-6
    net = load_features(model, ["pool"])
    assert net(torch.from_numpy(x))["pool"].shape == ref.shape
    with pytest.raises(PreimageError, match=r"must be 8x11 pixels.*'pool'|must be 8x11 pixels.*pool"):
        net(torch.zeros(1, 2, 9, 11))


def test_padded_ceil_average_pool_runs_without_a_padded_copy_in_torch(tmp_path):
    """The Pad + AveragePool pattern of ceil-mode AVE pooling becomes torch's own ceil-mode pool."""
    model = _convert(tmp_path, _pool_text("AVE", (3, 3), (2, 2), (1, 1), "CEIL"))
    assert [n.op_type for n in model.graph.node] == ["Pad", "AveragePool"]
    net = load_features(model, ["pool"])
    assert not any(type(m).__name__ == "Pad" or "pad" in n.lower() for n, m in net.module.named_children())


def _stochastic_ref(x, k, s):
    """Caffe's TEST-phase stochastic pooling: sum(x^2) / sum(x) over windows [i s, i s + k) clipped to the
    image, ceil rule without pad (no window dropped)."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    oh, ow = (-(-(h - k[0]) // s[0]) + 1, -(-(w - k[1]) // s[1]) + 1)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]]
            y[:, :, i, j] = (win ** 2).sum(axis=(2, 3)) / win.sum(axis=(2, 3))
    return y


def test_stochastic_pooling_at_any_size(tmp_path):
    k, s = (3, 2), (2, 2)
    model = _convert(tmp_path, 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { '
                               'pool: STOCHASTIC kernel_h: 3 kernel_w: 2 stride: 2 } }')
    assert "preimage.fixed_size" not in meta(model)
    free = free_size(model)
    net = load_features(model, ["pool"], dtype=torch.float64)
    rng = np.random.default_rng(6)
    for size in SIZES:
        x = rng.uniform(0.1, 1.0, (1, 2) + size).astype(np.float32)
        ref = _stochastic_ref(x, k, s)
        assert rel_err(run(free, {"data": x}, ["pool"])["pool"], ref) < 1e-6, size
        assert rel_err(net(torch.from_numpy(x).double())["pool"].numpy(), ref) < 1e-12, size


@pytest.mark.parametrize("opset", [13, 15, 17])
def test_dropped_last_window_at_every_opset(tmp_path, opset):
    """k2 s2 p1 on 13 rows: Caffe 7 windows (the 8th would start in the end pad), at every opset the
    converter offers (onnx's checker runs on the model; its shape inference agrees)."""
    path = tmp_path / "t.prototxt"
    path.write_text(one_layer_net(_pool_text("AVE", (2, 2), (2, 2), (1, 1), "CEIL"), (1, 2, 13, 12)))
    model = convert_caffe(path, random_weights=True, opset=opset)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shape = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.output}["pool"]
    assert shape[2:] == [7, 7]
    x = np.random.default_rng(opset).standard_normal((1, 2, 13, 12)).astype(np.float32)
    assert rel_err(run(model, {"data": x}, ["pool"])["pool"], caffe_pool_ref(x, (2, 2), (2, 2), (1, 1), "AVE")) < 1e-6
