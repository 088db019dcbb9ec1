"""Single layers against float64 NumPy references of Caffe's formulas (the corpus covers real Caffe;
these cover parameter forms the corpus does not: floor rounding and the fork spelling ceil_mode,
batch statistics, Scale/Bias with a second bottom, Reshape axis/num_axes, Flatten end_axis,
Threshold, stochastic pooling at test time, opsets)."""
import numpy as np
import pytest

from preimage.converters.caffe import convert_caffe
from preimage.errors import PreimageError

from caffe_helpers import caffe_pool_ref, one_layer_net, rel_err, run

RNG = np.random.default_rng(7)


def convert_text(tmp_path, text, **kw):
    p = tmp_path / "t.prototxt"
    p.write_text(text)
    return convert_caffe(p, random_weights=True, **kw)


@pytest.mark.parametrize("spelling, ceil", [("", True), ("round_mode: CEIL", True), ("round_mode: FLOOR", False),
                                             ("ceil_mode: true", True), ("ceil_mode: false", False)])
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_rounding_spellings(tmp_path, spelling, ceil, method):
    shape = (2, 3, 12, 10)
    text = one_layer_net(f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param {{ '
                         f'pool: {method} kernel_size: 3 stride: 2 pad: 1 {spelling} }} }}', shape)
    model = convert_text(tmp_path, text)
    x = RNG.standard_normal(shape).astype(np.float32)
    y = run(model, {"data": x}, ["pool"])["pool"]
    ref = caffe_pool_ref(x, (3, 3), (2, 2), (1, 1), method, ceil)
    assert y.shape == ref.shape and rel_err(y, ref) < 1e-6


def test_pooling_rectangular_floor_no_pad(tmp_path):
    shape = (1, 2, 11, 13)
    text = one_layer_net('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { '
                         'pool: AVE kernel_h: 2 kernel_w: 4 stride_h: 3 stride_w: 2 round_mode: FLOOR } }', shape)
    x = RNG.standard_normal(shape).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x}, ["pool"])["pool"]
    ref = caffe_pool_ref(x, (2, 4), (3, 2), (0, 0), "AVE", ceil=False)
    assert y.shape == ref.shape and rel_err(y, ref) < 1e-6


def test_stochastic_pooling_test_phase(tmp_path):
    shape = (1, 2, 7, 7)
    text = one_layer_net('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { '
                         'pool: STOCHASTIC kernel_size: 3 stride: 2 } }', shape)
    x = RNG.uniform(0.1, 1.0, shape).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x}, ["pool"])["pool"]
    ref = np.zeros((1, 2, 3, 3))
    for i in range(3):
        for j in range(3):
            win = x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].astype(np.float64)
            ref[:, :, i, j] = (win ** 2).sum(axis=(2, 3)) / win.sum(axis=(2, 3))
    assert rel_err(y, ref) < 1e-6


def test_batchnorm_with_batch_statistics(tmp_path):
    shape = (4, 3, 5, 5)
    text = one_layer_net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" '
                         'batch_norm_param { use_global_stats: false eps: 0.01 } }', shape)
    x = (RNG.standard_normal(shape) * 3 + 1).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x}, ["bn"])["bn"]
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    assert rel_err(y, (x64 - mean) / np.sqrt(var + 0.01)) < 1e-5


@pytest.mark.parametrize("kind, op", [("Scale", np.multiply), ("Bias", np.add)])
def test_scale_and_bias_with_second_bottom(tmp_path, kind, op):
    shape = (2, 3, 4, 5)
    param = "scale_param" if kind == "Scale" else "bias_param"
    extra = 'layer { name: "g" type: "Input" top: "g" input_param { shape { dim: 3 dim: 4 } } }\n'
    text = one_layer_net(f'layer {{ name: "s" type: "{kind}" bottom: "data" bottom: "g" top: "s" '
                         f'{param} {{ axis: 1 }} }}', shape, extra)
    x = RNG.standard_normal(shape).astype(np.float32)
    g = RNG.standard_normal((3, 4)).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x, "g": g}, ["s"])["s"]
    assert rel_err(y, op(x.astype(np.float64), g[None, :, :, None])) < 1e-6


def test_scale_num_axes_zero_is_a_scalar(tmp_path):
    shape = (2, 3, 4, 4)
    text = one_layer_net('layer { name: "s" type: "Scale" bottom: "data" top: "s" scale_param { num_axes: 0 } }', shape)
    model = convert_text(tmp_path, text)
    gamma = [t for t in model.graph.initializer if t.name.startswith("s/")]
    assert len(gamma) == 1 and int(np.prod(gamma[0].dims)) == 1  # one value, broadcast over everything


@pytest.mark.parametrize("param, shape, expect", [
    ("shape { dim: 0 dim: -1 }", (2, 3, 4, 5), (2, 60)),
    ("shape { dim: 2 dim: 2 } axis: 1 num_axes: 1", (2, 4, 3, 5), (2, 2, 2, 3, 5)),
    ("shape { dim: -1 } axis: -3", (2, 3, 4, 5), (2, 3, 20)),
    ("shape { dim: -1 } axis: -2", (2, 3, 4, 5), (2, 3, 4, 5)),  # Caffe: -2 reshapes only the last axis
    ("shape { dim: 1 } axis: 1 num_axes: 0", (2, 3, 4), (2, 1, 3, 4)),
    ("shape { dim: 6 dim: 0 dim: -1 }", (3, 4, 2, 5), (6, 4, 5)),
])
def test_reshape_forms(tmp_path, param, shape, expect):
    text = one_layer_net(f'layer {{ name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param {{ {param} }} }}',
                         shape)
    x = RNG.standard_normal(shape).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x}, ["r"])["r"]
    assert y.shape == expect
    np.testing.assert_array_equal(y, x.reshape(expect))


@pytest.mark.parametrize("axis, end, expect", [(1, -1, (2, 60)), (2, 3, (2, 3, 20)), (1, 2, (2, 12, 5)),
                                                (0, -1, (120,))])
def test_flatten_axes(tmp_path, axis, end, expect):
    shape = (2, 3, 4, 5)
    text = one_layer_net(f'layer {{ name: "f" type: "Flatten" bottom: "data" top: "f" '
                         f'flatten_param {{ axis: {axis} end_axis: {end} }} }}', shape)
    x = RNG.standard_normal(shape).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x}, ["f"])["f"]
    np.testing.assert_array_equal(y, x.reshape(expect))


def test_threshold_and_slice_equal_parts(tmp_path):
    shape = (2, 6, 3, 3)
    text = one_layer_net('layer { name: "t" type: "Threshold" bottom: "data" top: "t" threshold_param { threshold: 0.3 } }\n'
                         'layer { name: "sl" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" }', shape)
    x = RNG.standard_normal(shape).astype(np.float32)
    got = run(convert_text(tmp_path, text), {"data": x}, ["t", "sl/a", "sl/c"])
    np.testing.assert_array_equal(got["t"], (x > 0.3).astype(np.float32))
    np.testing.assert_array_equal(got["sl/c"], x[:, 4:6])


@pytest.mark.parametrize("opset", [13, 15, 17])
def test_opsets(tmp_path, opset):
    shape = (1, 4, 9, 9)
    text = one_layer_net('layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 3 '
                         'norm_region: WITHIN_CHANNEL } }\nlayer { name: "p" type: "Pooling" bottom: "n" top: "p" '
                         'pooling_param { pool: AVE kernel_size: 2 stride: 2 } }', shape)
    model = convert_text(tmp_path, text, opset=opset)
    assert model.opset_import[0].version == opset
    x = RNG.standard_normal(shape).astype(np.float32)
    assert run(model, {"data": x}, ["p"])["p"].shape == (1, 4, 5, 5)


def test_unsupported_opset_is_refused(tmp_path):
    with pytest.raises(PreimageError, match="opset 11 is not supported"):
        convert_text(tmp_path, one_layer_net("", (1, 3, 4, 4)), opset=11)


def test_even_lrn_size_is_refused_as_caffe_does(tmp_path):
    text = one_layer_net('layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 4 } }',
                         (1, 4, 5, 5))
    with pytest.raises(PreimageError, match="layer 'n'.*must be odd"):
        convert_text(tmp_path, text)


@pytest.mark.parametrize("across, norm_var", [(False, True), (True, True), (False, False)])
def test_mvn(tmp_path, across, norm_var):
    shape = (2, 3, 4, 5)
    text = one_layer_net(f'layer {{ name: "m" type: "MVN" bottom: "data" top: "m" mvn_param {{ '
                         f'across_channels: {str(across).lower()} normalize_variance: {str(norm_var).lower()} eps: 0.001 }} }}',
                         shape)
    x = (RNG.standard_normal(shape) * 2 + 3).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x}, ["m"])["m"]
    axes = (1, 2, 3) if across else (2, 3)
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(axis=axes, keepdims=True)
    ref = d / (np.sqrt((d ** 2).mean(axis=axes, keepdims=True)) + 0.001) if norm_var else d
    assert rel_err(y, ref) < 1e-5


@pytest.mark.parametrize("op, fn", [("SUM", lambda v: v.sum(-1)), ("ASUM", lambda v: np.abs(v).sum(-1)),
                                    ("SUMSQ", lambda v: (v ** 2).sum(-1)), ("MEAN", lambda v: v.mean(-1))])
def test_reduction(tmp_path, op, fn):
    shape = (2, 3, 4)
    text = one_layer_net(f'layer {{ name: "r" type: "Reduction" bottom: "data" top: "r" reduction_param {{ '
                         f'operation: {op} axis: 1 coeff: 2 }} }}', shape)
    x = RNG.standard_normal(shape).astype(np.float32)
    y = run(convert_text(tmp_path, text), {"data": x}, ["r"])["r"]
    assert rel_err(y, 2 * fn(x.astype(np.float64).reshape(2, -1))) < 1e-5


def test_dropout_scale_train_false_and_argmax(tmp_path):
    shape = (2, 5, 3, 3)
    text = one_layer_net('layer { name: "d" type: "Dropout" bottom: "data" top: "d" dropout_param { dropout_ratio: 0.25 scale_train: false } }\n'
                         'layer { name: "am" type: "ArgMax" bottom: "data" top: "am" argmax_param { axis: 1 } }', shape)
    x = RNG.standard_normal(shape).astype(np.float32)
    got = run(convert_text(tmp_path, text), {"data": x}, ["d", "am"])
    np.testing.assert_allclose(got["d"], x * 0.75, rtol=1e-6)
    np.testing.assert_array_equal(got["am"], x.argmax(axis=1)[:, None].astype(np.float32))


def test_pad_w_alone_is_read(tmp_path):
    """pad_w given without pad_h: height unpadded, width padded (Caffe reads them as a pair)."""
    shape = (1, 2, 6, 6)
    text = one_layer_net('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
                         'num_output: 1 kernel_size: 3 pad_w: 2 bias_term: false } }', shape)
    model = convert_text(tmp_path, text)
    x = RNG.standard_normal(shape).astype(np.float32)
    assert run(model, {"data": x}, ["c"])["c"].shape == (1, 1, 4, 8)


def test_parameter_layer(tmp_path):
    text = one_layer_net('layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 1 dim: 4 dim: 1 dim: 1 } } }\n'
                         'layer { name: "s" type: "Eltwise" bottom: "data" bottom: "p" top: "s" eltwise_param { operation: PROD } }',
                         (1, 4, 1, 1))
    p = tmp_path / "p.prototxt"
    p.write_text(text)
    from preimage.converters.caffe.writer import write_caffemodel

    w = np.arange(1, 5, dtype=np.float32).reshape(1, 4, 1, 1)
    write_caffemodel(tmp_path / "p.caffemodel", p, {"p": [w]})
    x = RNG.standard_normal((1, 4, 1, 1)).astype(np.float32)
    got = run(convert_caffe(p, tmp_path / "p.caffemodel"), {"data": x}, ["p", "s"])
    np.testing.assert_array_equal(got["p"], w)
    np.testing.assert_allclose(got["s"], x * w, rtol=1e-6)
