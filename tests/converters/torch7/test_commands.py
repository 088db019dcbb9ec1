"""`preimage convert torch7` and `preimage inspect`, through the CLI."""
import numpy as np
import onnx
import onnxruntime as ort
import torch
from click.testing import CliRunner

import npref
import t7writer as tw
from preimage.cli import cli
from preimage.converters.torch7 import load_checkpoint, read_t7

RNG = np.random.default_rng(7)


def _net(tmp_path):
    w, b = RNG.standard_normal((4, 3, 3, 5)), RNG.standard_normal(4)
    conv = tw.module("nn.SpatialConvolution", nInputPlane=3, nOutputPlane=4, kW=5, kH=3, dW=2, dH=1, padW=2, padH=1,
                     weight=w, bias=b)
    model = tw.sequential(conv, tw.module("nn.ReLU"), tw.module("nn.SpatialMaxPooling", kW=2, kH=2, dW=2, dH=2,
                                                                ceil_mode=True))
    ref = lambda x: npref.max_pool(np.maximum(npref.conv2d(x, w, b, 5, 3, 2, 1, 2, 1), 0), 2, 2, 2, 2, ceil=True)
    return tw.save(tmp_path / "net.t7", model), ref


def test_convert_to_checkpoint_loads_weights_only(tmp_path):
    p, ref = _net(tmp_path)
    out = tmp_path / "net.pt"
    r = CliRunner().invoke(cli, ["convert", "torch7", str(p), "-o", str(out), "--dtype", "float64"])
    assert r.exit_code == 0, r.output
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["architecture"]["children"][0]["module"] == "Conv2d"
    net = load_checkpoint(out)
    x = RNG.standard_normal((2, 3, 7, 9))
    np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), ref(x), rtol=1e-10, atol=1e-10)


def test_convert_to_onnx_with_dynamic_batch(tmp_path):
    p, ref = _net(tmp_path)
    r = CliRunner().invoke(cli, ["convert", "torch7", str(p), "--input-shape", "1,3,7,9"])
    assert r.exit_code == 0, r.output
    assert "max relative difference" in r.output
    out = tmp_path / "net.onnx"
    model = onnx.load(out)
    assert {m.key for m in model.metadata_props} >= {"preimage.inputs", "preimage.source"}
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = RNG.standard_normal((3, 3, 7, 9)).astype(np.float32)  # another batch size than exported with
    got = sess.run(None, {"input": x})[0]
    expect = ref(x.astype(np.float64))
    assert np.abs(got - expect).max() / np.abs(expect).max() < 1e-5


def test_onnx_of_a_real_torch7_net(torch7_corpus, tmp_path):
    d = torch7_corpus / "real-ascii"
    x = np.array(read_t7(d / "net_concat_input.txt"), dtype=np.float32)
    expect = read_t7(d / "net_concat_output.txt")
    out = tmp_path / "concat.onnx"
    r = CliRunner().invoke(cli, ["convert", "torch7", str(d / "net_concat_net.txt"), "-o", str(out),
                                 "--input-shape", ",".join(map(str, x.shape)), "--no-check"])
    assert r.exit_code == 0, r.output
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - expect).max() / np.abs(expect).max() < 1e-6


def test_convert_errors_are_one_line_with_exit_2(tmp_path):
    p, _ = _net(tmp_path)
    r = CliRunner().invoke(cli, ["convert", "torch7", str(p)])
    assert r.exit_code == 2 and "--input-shape" in r.output
    bad = tw.save(tmp_path / "bad.t7", tw.sequential(tw.module("nn.Tanh"), tw.module("nn.Mystery")))
    r = CliRunner().invoke(cli, ["convert", "torch7", str(bad), "-o", str(tmp_path / "bad.pt")])
    assert r.exit_code == 2
    assert "model.modules[2] (nn.Mystery)" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad.pt").exists()
    trunc = tmp_path / "trunc.t7"
    trunc.write_bytes(p.read_bytes()[:100])
    r = CliRunner().invoke(cli, ["convert", "torch7", str(trunc), "-o", str(tmp_path / "t.pt")])
    assert r.exit_code == 2 and "trunc.t7" in r.output
    assert not (tmp_path / "t.pt").exists()


def test_inspect_prints_tree_without_values(tmp_path):
    flat = tw.Storage("torch.FloatStorage", np.arange(20, dtype=np.float32) + 0.123)
    conv = tw.module("nn.SpatialConvolution", nInputPlane=1, nOutputPlane=2, kW=3, kH=3,
                     weight=tw.Tensor("torch.CudaTensor", [2, 1, 3, 3], [9, 9, 3, 1], 1, flat),
                     bias=tw.Tensor("torch.CudaTensor", [2], [1], 19, flat), output=np.zeros((1, 2, 4, 4)))
    p = tw.save(tmp_path / "m.t7", tw.sequential(conv))
    r = CliRunner().invoke(cli, ["inspect", str(p)])
    assert r.exit_code == 0, r.output
    assert "nn.Sequential" in r.output and "nn.SpatialConvolution" in r.output
    assert "weight: torch.CudaTensor float32 [2, 1, 3, 3], storage #1" in r.output
    assert "bias: torch.CudaTensor float32 [2], storage #1" in r.output  # the same storage
    assert "0.123" not in r.output and "output:" not in r.output
    r = CliRunner().invoke(cli, ["inspect", str(p), "--buffers"])
    assert "output: torch.DoubleTensor float64 [1, 2, 4, 4]" in r.output
