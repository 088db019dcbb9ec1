"""Acceptance on the conformance corpus (nets and input run through real Caffe): the mahendran2016 preset
reconstructs the corpus input from converted AlexNet and PoseNet features within the issue's bounds.
About 30 s on one core; the figures are also printed by benchmarks/invert.py --corpus."""
import numpy as np
import pytest
import torch

from preimage.invert import engine, presets
from preimage.invert.model import open_model
from preimage.invert.transforms import jitter_amount

BOUNDS = {"alexnet": {"conv3": 0.15, "relu5": 0.15, "fc8": 0.15}, "posenet": {"conv4": 0.15, "fc5": 0.2}}


@pytest.mark.parametrize("net", sorted(BOUNDS))
def test_mahendran2016_on_corpus(net, caffe_corpus, tmp_path):
    from preimage.converters.caffe.convert import convert_caffe

    folder = caffe_corpus / net
    onnx_path = tmp_path / f"{net}.onnx"
    convert_caffe(str(folder / "net.prototxt"), str(folder / "net.caffemodel"), str(onnx_path))
    layers = list(BOUNDS[net])
    m = open_model(str(onnx_path), layers)
    x0 = torch.from_numpy(np.load(folder / "input.npy"))
    with torch.no_grad():
        f = m.features(x0)
    # the converted features are Caffe's (checked by the converter's tests; a cheap guard here too)
    ref = np.load(folder / "layers.npz")
    for layer in layers:
        np.testing.assert_allclose(f[layer].numpy(), ref[layer], atol=1e-4 * np.abs(ref[layer]).max())
    cfg = presets.get("mahendran2016")
    samples = [engine.Sample(l, f[l][0], seed=0, C=presets.mahendran_C(l, m.layers), T=jitter_amount(m.stride(l)))
               for l in layers]
    assert [s.C for s in samples] == ([300, 20, 1] if net == "alexnet" else [100, 20])
    assert [s.T for s in samples] == ([4, 4, 8] if net == "alexnet" else [4, 8])
    res, _ = engine.optimize(m.features, presets.recipe(cfg, samples), m.input_size, progress=False)
    errors = {l: r["normalized_error"] for l, r in zip(layers, res)}
    print(net, errors)
    for layer, bound in BOUNDS[net].items():
        assert errors[layer] <= bound, (layer, errors[layer])
