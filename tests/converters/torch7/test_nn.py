"""nn models written by the independent test writer convert to torch modules that match float64 NumPy."""
import numpy as np
import pytest
import torch

import npref
import t7writer as tw
from preimage.converters.torch7 import load_t7_model
from preimage.errors import PreimageError, UnsupportedError

RNG = np.random.default_rng(1234)


def rand(*shape):
    return RNG.standard_normal(shape)


def m(typename, **fields):
    return tw.module(typename, **fields)


def _conv(nin, nout, kw, kh, dw=1, dh=1, pw=0, ph=0, mm=False, bias=True):
    w = rand(nout, nin, kh, kw)
    b = rand(nout) if bias else None
    mod = m("nn.SpatialConvolutionMM" if mm else "nn.SpatialConvolution", nInputPlane=nin, nOutputPlane=nout,
            kW=kw, kH=kh, dW=dw, dH=dh, padW=pw, padH=ph,
            weight=w.reshape(nout, -1) if mm else w, **({"bias": b} if bias else {}))
    return mod, lambda x: npref.conv2d(x, w, b, kw, kh, dw, dh, pw, ph)


def _bn(c, old=False, affine=True, spatial=True):
    mean, var, eps = rand(c), RNG.uniform(0.5, 2.0, c), 1e-3
    w, b = (rand(c), rand(c)) if affine else (None, None)
    f = dict(running_mean=mean, eps=eps, momentum=0.1, affine=affine)
    if old:
        f["running_std"] = 1 / np.sqrt(var + eps)  # the pre-2016 form: inverse standard deviation
    else:
        f["running_var"] = var
    if affine:
        f.update(weight=w, bias=b)
    mod = tw.Obj("nn.SpatialBatchNormalization" if spatial else "nn.BatchNormalization",
                 dict(f, _type="torch.DoubleTensor", train=False), version=1 if old else 2)
    return mod, lambda x: npref.batch_norm(x, mean, var, eps, w, b)


def _check(tmp_path, model, ref, x, ascii=False, long_size=8, tol=1e-5):
    p = tw.save(tmp_path / "net.t7", model, ascii=ascii, long_size=long_size)
    expect = ref(x)
    for dtype, t in ((torch.float64, 1e-10), (torch.float32, tol)):
        net = load_t7_model(p, dtype=dtype)
        assert not net.training
        with torch.no_grad():
            got = net(torch.from_numpy(x).to(dtype))
        got = [g.double().numpy() for g in got] if isinstance(got, list) else got.double().numpy()
        exp = expect if isinstance(expect, list) else expect
        for g, e in (zip(got, exp) if isinstance(got, list) else [(got, exp)]):
            assert g.shape == e.shape
            err = np.abs(g - e).max() / max(np.abs(e).max(), 1e-12)
            assert err < t, f"{dtype}: relative error {err}"


@pytest.mark.parametrize("ascii,long_size", [(False, 8), (False, 4), (True, 8)], ids=["bin8", "bin4", "ascii"])
def test_conv_net_non_square(tmp_path, ascii, long_size):
    c1, r1 = _conv(3, 5, kw=5, kh=3, dw=2, dh=1, pw=2, ph=0)
    c2, r2 = _conv(5, 4, kw=1, kh=3, dw=1, dh=2, pw=0, ph=1, mm=True)
    bn, rbn = _bn(4)
    pool = m("nn.SpatialMaxPooling", kW=3, kH=2, dW=2, dH=2, padW=1, padH=0, ceil_mode=True)
    model = tw.sequential(c1, m("nn.ReLU", threshold=0, val=0, inplace=True), c2, bn, pool)

    def ref(x):
        y = np.maximum(r1(x), 0)
        return npref.max_pool(rbn(r2(y)), 3, 2, 2, 2, 1, 0, ceil=True)
    _check(tmp_path, model, ref, rand(2, 3, 11, 14), ascii, long_size)


def test_batchnorm_old_running_std_and_new_running_var(tmp_path):
    for old in (True, False):
        for affine in (True, False):
            bn, ref = _bn(6, old=old, affine=affine)
            _check(tmp_path, tw.sequential(bn), ref, rand(2, 6, 3, 4))
    bn1, ref1 = _bn(5, old=True, spatial=False)
    _check(tmp_path, bn1, ref1, rand(4, 5))


def test_full_convolution_adj_and_no_bias(tmp_path):
    for bias in (True, False):
        w = rand(3, 4, 5, 4)  # nIn x nOut x kH x kW
        b = rand(4) if bias else None
        mod = m("nn.SpatialFullConvolution", nInputPlane=3, nOutputPlane=4, kW=4, kH=5, dW=3, dH=2, padW=1, padH=2,
                adjW=2, adjH=1, weight=w, **({"bias": b} if bias else {}))
        _check(tmp_path, mod, lambda x: npref.full_conv2d(x, w, b, 4, 5, 3, 2, 1, 2, 2, 1), rand(2, 3, 4, 5))


def test_activations(tmp_path):
    pw = RNG.uniform(0.1, 0.5, 4)
    cases = [
        (m("nn.Threshold", threshold=0.3, val=-2.0), lambda x: np.where(x > 0.3, x, -2.0)),
        (m("nn.LeakyReLU", negval=0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
        (m("nn.PReLU", nOutputPlane=4, weight=pw), lambda x: npref.prelu(x, pw)),
        (m("nn.ELU", alpha=0.7), lambda x: npref.elu(x, 0.7)),
        (m("nn.Tanh"), np.tanh),
        (m("nn.Sigmoid"), lambda x: 1 / (1 + np.exp(-x))),
        (m("nn.SoftMax"), lambda x: npref.softmax(x, 1)),
        (m("nn.LogSoftMax"), lambda x: np.log(npref.softmax(x, 1))),
        (m("nn.MulConstant", constant_scalar=-1.5), lambda x: -1.5 * x),
        (m("nn.AddConstant", constant_scalar=0.25), lambda x: x + 0.25),
        (m("nn.Identity"), lambda x: x),
    ]
    x = rand(2, 4, 3, 5)
    for mod, ref in cases:
        _check(tmp_path, tw.sequential(mod), ref, x)
    # SoftMax over the features of 2-D and the channels of 3-D (unbatched) inputs
    _check(tmp_path, m("nn.SoftMax"), lambda v: npref.softmax(v, 1), rand(3, 7))
    _check(tmp_path, m("nn.LogSoftMax"), lambda v: np.log(npref.softmax(v, 0)), rand(4, 2, 3))


def test_dropout_versions(tmp_path):
    x = rand(2, 3, 4, 4)
    _check(tmp_path, m("nn.Dropout", p=0.3, v2=True), lambda v: v, x)
    _check(tmp_path, m("nn.Dropout", p=0.3), lambda v: 0.7 * v, x)  # original Dropout scales at test time
    _check(tmp_path, m("nn.SpatialDropout", p=0.4), lambda v: 0.6 * v, x)


def test_linear_view_reshape(tmp_path):
    w, b = rand(6, 12), rand(6)
    model = tw.sequential(m("nn.View", size=tw.Storage("torch.LongStorage", [-1, 12]), numElements=12),
                          m("nn.Linear", weight=w, bias=b), m("nn.Reshape", size=tw.Storage("torch.LongStorage", [2, 3])))
    _check(tmp_path, model, lambda x: npref.linear(x.reshape(-1, 12), w, b).reshape(-1, 2, 3), rand(5, 3, 2, 2))
    w2 = rand(4, 12)
    model = tw.sequential(m("nn.View", size=tw.Storage("torch.LongStorage", [12])), m("nn.Linear", weight=w2))
    _check(tmp_path, model, lambda x: npref.linear(x.reshape(-1, 12), w2, None), rand(3, 12, 1, 1))
    _check(tmp_path, model, lambda x: npref.linear(x.reshape(12), w2, None), rand(12, 1, 1))


def test_pooling_upsampling_lrn_padding(tmp_path):
    x = rand(2, 5, 9, 8)
    cases = [
        (m("nn.SpatialAveragePooling", kW=3, kH=2, dW=2, dH=3, padW=1, padH=1, ceil_mode=True, count_include_pad=True),
         lambda v: npref.avg_pool(v, 3, 2, 2, 3, 1, 1, ceil=True, count_include_pad=True)),
        (m("nn.SpatialAveragePooling", kW=2, kH=3, dW=2, dH=2, padW=1, padH=1, ceil_mode=False, count_include_pad=False),
         lambda v: npref.avg_pool(v, 2, 3, 2, 2, 1, 1, ceil=False, count_include_pad=False)),
        (m("nn.SpatialAveragePooling", kW=3, kH=2, dW=1, dH=2, padW=1, padH=0, divide=False),  # sums (was untested)
         lambda v: npref.avg_pool(v, 3, 2, 1, 2, 1, 0, count_include_pad=True) * 6),
        (m("nn.SpatialMaxPooling", kW=2, kH=3, dW=2, dH=2, padW=0, padH=1, ceil_mode=False),
         lambda v: npref.max_pool(v, 2, 3, 2, 2, 0, 1)),
        (m("nn.SpatialUpSamplingNearest", scale_factor=3), lambda v: npref.upsample_nearest(v, 3)),
        (m("nn.SpatialCrossMapLRN", size=5, alpha=0.02, beta=0.75, k=2.0), lambda v: npref.lrn(v, 5, 0.02, 0.75, 2.0)),
        (m("nn.SpatialZeroPadding", pad_l=2, pad_r=-1, pad_t=0, pad_b=1), lambda v: npref.pad(v, 2, -1, 0, 1, "constant")),
        (m("nn.SpatialReflectionPadding", pad_l=1, pad_r=2, pad_t=3, pad_b=0), lambda v: npref.pad(v, 1, 2, 3, 0, "reflect")),
        (m("nn.SpatialReplicationPadding", pad_l=0, pad_r=1, pad_t=2, pad_b=3), lambda v: npref.pad(v, 0, 1, 2, 3, "edge")),
    ]
    for mod, ref in cases:
        _check(tmp_path, mod, ref, x)


def test_tables_concat_parallel(tmp_path):
    c1, r1 = _conv(3, 2, 3, 3, pw=1, ph=1)
    c2, r2 = _conv(3, 4, 1, 1)
    x = rand(2, 3, 5, 6)
    _check(tmp_path, tw.sequential(c1, c2, typename="nn.Concat", dimension=2),
           lambda v: np.concatenate([r1(v), r2(v)], axis=1), x)
    c3, r3 = _conv(3, 2, 3, 3, pw=1, ph=1)
    c4, r4 = _conv(3, 3, 3, 3, pw=1, ph=1)
    residual = tw.sequential(tw.sequential(c4, m("nn.Identity"), typename="nn.ConcatTable"), m("nn.CAddTable"))
    _check(tmp_path, residual, lambda v: r4(v) + v, x)
    join = tw.sequential(tw.sequential(c1, c3, typename="nn.ConcatTable"), m("nn.JoinTable", dimension=1, nInputDims=3))
    _check(tmp_path, join, lambda v: np.concatenate([r1(v), r3(v)], axis=1), x)
    par = tw.module("nn.Parallel", inputDimension=2, outputDimension=2,
                    modules=tw.lua_list(m("nn.Tanh"), m("nn.Sigmoid"), m("nn.Identity")))
    _check(tmp_path, par, lambda v: np.concatenate([np.tanh(v[:, 0]), 1 / (1 + np.exp(-v[:, 1])), v[:, 2]], axis=1), x)


def test_shared_weights_through_one_storage(tmp_path):
    """A model flattened with getParameters: all weights are views into one storage."""
    w = rand(4, 3, 3, 3)
    b = rand(4)
    flat = tw.Storage("torch.DoubleStorage", np.concatenate([w.reshape(-1), b]))
    wt = tw.Tensor("torch.DoubleTensor", [4, 3, 3, 3], [27, 9, 3, 1], 1, flat)
    bt = tw.Tensor("torch.DoubleTensor", [4], [1], 109, flat)
    conv = m("nn.SpatialConvolution", nInputPlane=3, nOutputPlane=4, kW=3, kH=3, dW=1, dH=1, padW=0, padH=0,
             weight=wt, bias=bt)
    _check(tmp_path, tw.sequential(conv), lambda v: npref.conv2d(v, w, b, 3, 3, 1, 1, 0, 0), rand(1, 3, 6, 6))


def test_cudnn_modules_and_float_type(tmp_path):
    w = rand(2, 3, 3, 3).astype(np.float32)
    conv = m("cudnn.SpatialConvolution", nInputPlane=3, nOutputPlane=2, kW=3, kH=3, dW=1, dH=1, padW=1, padH=1,
             groups=1, weight=tw.tensor(w, "torch.CudaTensor"), _type="torch.CudaTensor")
    _check(tmp_path, tw.sequential(conv, m("cudnn.ReLU")),
           lambda v: np.maximum(npref.conv2d(v, w.astype(np.float64), None, 3, 3, 1, 1, 1, 1), 0), rand(1, 3, 5, 5))


def test_unknown_module_names_class_and_path(tmp_path):
    model = tw.sequential(m("nn.Tanh"), tw.sequential(m("nn.ReLU"), m("nn.FancyNewThing")))
    p = tw.save(tmp_path / "net.t7", model)
    with pytest.raises(UnsupportedError) as e:
        load_t7_model(p)
    assert "model.modules[2].modules[2] (nn.FancyNewThing)" in str(e.value)
    assert "unsupported Torch7 module nn.FancyNewThing" in str(e.value)


def test_bad_weight_shape_is_a_clear_error(tmp_path):
    conv = m("nn.SpatialConvolution", nInputPlane=3, nOutputPlane=2, kW=3, kH=3, weight=rand(2, 3, 3, 2))
    p = tw.save(tmp_path / "net.t7", tw.sequential(conv))
    with pytest.raises(PreimageError, match=r"model.modules\[1\] \(nn.SpatialConvolution\).*weight"):
        load_t7_model(p)


def test_root_table_with_one_model(tmp_path):
    p = tw.save(tmp_path / "ckpt.t7", {"model": tw.sequential(m("nn.Tanh")), "epoch": 12})
    net = load_t7_model(p)
    x = torch.randn(2, 3)
    assert torch.allclose(net(x), torch.tanh(x))


def _gnode(module=None, parents=(), **extra):
    data = {"mapindex": tw.lua_list(*[p.fields["data"] for p in parents]), **extra}
    if module is not None:
        data["module"] = module
    return tw.Obj("nngraph.Node", {"data": data, "children": {}})


def test_nngraph_residual_block(tmp_path):
    c1, r1 = _conv(3, 3, 3, 3, pw=1, ph=1)
    x = _gnode(input={})
    conv = _gnode(c1, [x])
    relu = _gnode(m("nn.ReLU"), [conv])
    add = _gnode(m("nn.CAddTable"), [relu, x])
    out = _gnode(None, [add])
    g = tw.Obj("nn.gModule", {"forwardnodes": tw.lua_list(x, conv, relu, add, out), "innode": x, "outnode": out,
                              "nInputs": 1, "modules": tw.lua_list(c1)})
    _check(tmp_path, g, lambda v: np.maximum(r1(v), 0) + v, rand(2, 3, 5, 4))


def test_bilinear_instance_norm_narrow_mean(tmp_path):
    x = rand(2, 4, 5, 3)
    w, b = rand(4), rand(4)
    cases = [
        (m("nn.SpatialUpSamplingBilinear", scale_factor=3), lambda v: npref.bilinear_align_corners(v, 13, 7)),
        (m("nn.SpatialUpSamplingBilinear", oheight=8, owidth=6), lambda v: npref.bilinear_align_corners(v, 8, 6)),
        (m("nn.InstanceNormalization", weight=w, bias=b, eps=1e-5, nOutput=4),
         lambda v: npref.instance_norm(v, w, b, 1e-5)),
        (m("nn.Narrow", dimension=2, index=2, length=2), lambda v: v[:, 1:3]),
        (m("nn.Narrow", dimension=4, index=-2, length=-1), lambda v: v[:, :, :, 1:]),
        (m("nn.Mean", dimension=1, nInputDims=3), lambda v: v.mean(axis=1)),
        (m("nn.Sum", dimension=3, sizeAverage=False), lambda v: v.sum(axis=2)),
    ]
    for mod, ref in cases:
        _check(tmp_path, mod, ref, x)
