"""Decoder architectures: the papers' geometry, activations, and the mirror of an encoder."""
import pytest
import torch
import torch.nn as nn

from preimage.decoders.architectures import ARCHITECTURES, build_decoder, encoder_geometry
from preimage.errors import PreimageError


def sizes_after(model, x, kinds=(nn.ConvTranspose2d,)):
    """Spatial sizes after each module of the given kinds, in forward order."""
    out = []
    hooks = [m.register_forward_hook(lambda m, i, o: out.append(tuple(o.shape[-2:]))) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    return out, y


def layer_kinds(model):
    return [m for m in model.modules() if not isinstance(m, (nn.Sequential,)) and len(list(m.children())) == 0]


def test_registry():
    assert {"alexnet_conv5", "alexnet_fc8", "mirror", "deepsim"} <= set(ARCHITECTURES)
    with pytest.raises(PreimageError, match="unknown decoder architecture 'nope'"):
        build_decoder("nope", (10,), (3, 8, 8))


def test_alexnet_conv5_geometry_and_activations():
    m = build_decoder("alexnet_conv5", (256, 6, 6), (3, 192, 192), width=0.125)
    sizes, y = sizes_after(m, torch.zeros(2, 256, 6, 6))
    assert sizes == [(12, 12), (24, 24), (48, 48), (96, 96), (192, 192)] and y.shape == (2, 3, 192, 192)
    convs = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3 + [(5, 5)] * 5
    layers = [mod for mod in m.net]
    acts = [mod for mod in layers if isinstance(mod, nn.LeakyReLU)]
    assert len(acts) == len(convs) - 1 and all(a.negative_slope == 0.2 for a in acts)
    assert isinstance(layers[-1], nn.ConvTranspose2d)  # no activation after the last layer


def test_alexnet_fc8_geometry():
    m = build_decoder("alexnet_fc8", (1000,), (3, 128, 128), width=0.0625)
    sizes, y = sizes_after(m, torch.zeros(2, 1000))
    assert sizes == [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128)] and y.shape == (2, 3, 128, 128)
    fcs = [mod for mod in m.fc if isinstance(mod, nn.Linear)]
    assert len(fcs) == 4 and fcs[0].in_features == 1000 and fcs[-1].out_features == 16 * 4 * 4
    assert isinstance(list(m.up)[-1], nn.ConvTranspose2d)
    # at another image size the decoder resizes its natural output
    assert build_decoder("alexnet_fc8", (10,), (3, 227, 227), width=0.01)(torch.zeros(1, 10)).shape == (1, 3, 227, 227)


def test_mirror_of_tiny_encoder(encoder):
    stages = encoder_geometry(encoder, (3, 32, 32))
    assert [s["kind"] for s in stages] == ["conv", "pool", "conv", "fc"]
    m = build_decoder("mirror", (16, 8, 8), (3, 32, 32), encoder=encoder)
    sizes, y = sizes_after(m, torch.zeros(2, 16, 8, 8))
    assert sizes == [(16, 16), (32, 32), (32, 32)] and y.shape == (2, 3, 32, 32)
    up = list(m.up)
    assert [type(x).__name__ for x in up] == ["ConvTranspose2d", "ReLU", "BatchNorm2d"] * 2 + ["ConvTranspose2d"]
    assert [(c.in_channels, c.out_channels) for c in up if isinstance(c, nn.ConvTranspose2d)] == [(16, 8), (8, 8), (8, 3)]
    fc = build_decoder("mirror", (32,), (3, 32, 32), encoder=encoder)
    assert isinstance(fc.fc[0], nn.Linear) and fc.fc[0].out_features == 16 * 8 * 8
    assert fc(torch.zeros(2, 32)).shape == (2, 3, 32, 32)


def test_mirror_of_converted_posenet(tmp_path):
    pytest.importorskip("preimage.converters.caffe.convert")
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.converters.onnx_torch.load import load_features
    from preimage.models.architectures import posenet

    (tmp_path / "p.prototxt").write_text(posenet(width=0.25))
    convert_caffe(tmp_path / "p.prototxt", random_weights=True, output=tmp_path / "p.onnx")
    fx = load_features(tmp_path / "p.onnx")
    stages = encoder_geometry(fx, (3, 101, 101))
    m = build_decoder("mirror", (125,), (3, 101, 101), encoder=fx)
    sizes, y = sizes_after(m, torch.zeros(2, 125), kinds=(nn.BatchNorm2d,))
    spatial = [s for s in stages if s["kind"] != "fc"]
    assert sizes == [tuple(s["in_shape"][1:]) for s in reversed(spatial)][:-1]  # every stage lands on the encoder's grid
    assert y.shape == (2, 3, 101, 101)
    assert isinstance(m.resize, nn.Module)


def test_deepsim_shapes():
    m = build_decoder("deepsim", (4096,), (3, 256, 256), width=1 / 16)
    sizes, y = sizes_after(m.generator, torch.zeros(2, 4096))
    assert sizes == [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (256, 256)] and y.shape == (2, 3, 256, 256)
    acts = [a for a in m.generator.modules() if isinstance(a, nn.LeakyReLU)]
    assert all(a.negative_slope == 0.3 for a in acts)
    assert m.discriminator(y).shape == (2, 2)
    assert m(torch.zeros(1, 4096)).shape == (1, 3, 256, 256)  # forward = generator
