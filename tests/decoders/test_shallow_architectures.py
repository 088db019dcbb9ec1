"""The two-stream decoders for shallow features: output shapes at the paper's sizes and at small ones,
the layer table (written out here, counted independently), and `decoder train`'s default for a
representation's store."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from preimage.decoders import ARCHITECTURES, FeatureStore, build_decoder, extract_features, train_decoder

PAPER = [("hog_twostream", (31, 32, 32)), ("sift_twostream", (133, 64, 64)), ("lbp_twostream", (58, 16, 16))]

# The layer table of docs/decoders.md at width 1, written out: (kind, in, out, kernel, stride) per layer
# (stream A, stream B, then the output upconvolutions from the concatenation; 256 x 256 output).
TABLE = {
    "hog_twostream": {  # 32 x 32 x 31
        "a": [("conv", 31, 256, 3, 2), ("conv", 256, 512, 3, 2), ("up", 512, 256, 4, 2), ("up", 256, 256, 4, 2)],
        "b": [("conv", 31, 256, 3, 1), ("conv", 256, 256, 3, 1)],
        "out": [("up", 512, 256, 4, 2), ("up", 256, 128, 4, 2), ("up", 128, 3, 4, 2)],
    },
    "sift_twostream": {  # 64 x 64 x 133
        "a": [("conv", 133, 256, 3, 2), ("conv", 256, 512, 3, 2), ("conv", 512, 512, 3, 2), ("up", 512, 512, 4, 2),
              ("up", 512, 256, 4, 2), ("up", 256, 256, 4, 2)],
        "b": [("conv", 133, 256, 3, 1), ("conv", 256, 256, 3, 1)],
        "out": [("up", 512, 256, 4, 2), ("up", 256, 3, 4, 2)],
    },
    "lbp_twostream": {  # 16 x 16 x 58
        "a": [("conv", 58, 256, 3, 2), ("up", 256, 256, 4, 2)],
        "b": [("conv", 58, 256, 3, 1), ("conv", 256, 256, 3, 1)],
        "out": [("up", 512, 256, 4, 2), ("up", 256, 128, 4, 2), ("up", 128, 64, 4, 2), ("up", 64, 3, 4, 2)],
    },
}


def _layers(seq):
    out = []
    for m in seq:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            kind = "up" if isinstance(m, nn.ConvTranspose2d) else "conv"
            cin, cout = (m.in_channels, m.out_channels)
            out.append((kind, cin, cout, m.kernel_size[0], m.stride[0]))
    return out


@pytest.mark.parametrize("arch,shape", PAPER)
def test_paper_sizes_give_256_px(arch, shape):
    m = build_decoder(arch, shape, (3, 256, 256))
    assert arch in ARCHITECTURES
    with torch.no_grad():
        y = m(torch.randn(1, *shape))
    assert y.shape == (1, 3, 256, 256)


@pytest.mark.parametrize("arch,shape", PAPER)
def test_layer_table_and_parameter_count(arch, shape):
    m = build_decoder(arch, shape, (3, 256, 256))
    t = TABLE[arch]
    assert _layers(m.stream_a) == t["a"]
    assert _layers(m.stream_b) == t["b"]
    assert _layers(m.up) == t["out"]
    # weights + biases of every layer in the table, counted from the table alone
    expect = sum(cin * cout * k * k + cout for _, cin, cout, k, _ in t["a"] + t["b"] + t["out"])
    assert sum(p.numel() for p in m.parameters()) == expect
    # leaky ReLU 0.2 after every layer but the last one
    acts = [x for x in m.modules() if isinstance(x, nn.LeakyReLU)]
    assert len(acts) == len(t["a"]) + len(t["b"]) + len(t["out"]) - 1
    assert all(a.negative_slope == 0.2 for a in acts)
    assert isinstance(list(m.up)[-1], nn.ConvTranspose2d)


@pytest.mark.parametrize("arch,shape,image", [
    ("hog_twostream", (31, 8, 8), (64, 64)),      # hog at 64 px, cell 8
    ("hog_twostream", (31, 8, 12), (67, 93)),     # VLFeat's rounding: (H + 4) // 8 cells
    ("hog_twostream", (36, 16, 16), (64, 64)),    # dalaltriggs, cell 4
    ("sift_twostream", (128, 5, 5), (64, 64)),    # dsift bin 8 step 8 at 64 px: (64 - 25) // 8 + 1
    ("sift_twostream", (128, 29, 29), (256, 256)),
    ("lbp_twostream", (58, 4, 4), (64, 64)),
    ("lbp_twostream", (58, 1, 3), (20, 50)),      # a single row of cells
])
def test_small_and_odd_sizes_answer_at_the_image_size(arch, shape, image):
    m = build_decoder(arch, shape, (3, *image), width=0.125)
    with torch.no_grad():
        y = m(torch.randn(2, *shape))
    assert y.shape == (2, 3, *image)


def test_upconvolution_count_follows_the_grid():
    from preimage.decoders.shallow_architectures import output_upconvs

    assert [output_upconvs((h, h), (256, 256)) for h in (64, 32, 16, 8)] == [2, 3, 4, 5]
    assert output_upconvs((29, 29), (256, 256)) == 3     # 256 / 29 = 8.8: 3 upconvs to 232, then resized
    assert output_upconvs((300, 300), (256, 256)) == 1   # never fewer than one


def test_width_scales_channels_but_not_the_image():
    m = build_decoder("hog_twostream", (31, 32, 32), (3, 256, 256), width=0.5)
    assert _layers(m.stream_a)[0][2] == 128 and _layers(m.stream_b)[-1][2] == 128
    assert _layers(m.up)[-1][2] == 3


def test_flat_features_are_refused():
    from preimage.errors import PreimageError

    with pytest.raises(PreimageError, match="C x H x W"):
        build_decoder("lbp_twostream", (4096,), (3, 64, 64))


@pytest.mark.parametrize("spec,arch", [("hog", "hog_twostream"), ("hog:cell=4,variant=dalaltriggs", "hog_twostream"),
                                       ("lbp:cell=8", "lbp_twostream"), ("dsift:step=4", "sift_twostream")])
def test_train_defaults_to_the_representations_decoder(tmp_path, spec, arch):
    """A store extracted with -m hog / lbp / dsift records the spec, and train without --arch picks its decoder."""
    from preimage.preprocess import save_image

    rng = np.random.default_rng(0)
    (tmp_path / "im").mkdir()
    for i in range(3):
        save_image(tmp_path / "im" / f"{i}.png", rng.integers(0, 256, (48, 48, 3)).astype(np.uint8))
    name = spec.partition(":")[0]
    extract_features(spec, name, tmp_path / "im", tmp_path / "f", size=(48, 48), split=(1, 0, 0), workers=1,
                     progress=False)
    store = FeatureStore(tmp_path / "f")
    assert store.index["model"] == spec and store.index["model_sha256"] is None
    train_decoder(tmp_path / "f", tmp_path / "run", iters=1, batch=2, arch_options={"width": 0.05}, tensorboard=False,
                  progress=False, device="cpu")
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["iter"] == 1
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["arch"] == arch


def test_a_recorded_spec_is_the_encoder_without_model(tmp_path):
    """mirror / deepsim find the encoder the store recorded; a spec needs no file and no sha256."""
    from preimage.decoders.train import store_encoder

    class Store:
        index = {"model": "hog:cell=4", "model_sha256": None}
        path = str(tmp_path)

    assert store_encoder(Store(), "deepsim") == "hog:cell=4"


def test_other_stores_keep_the_training_default(tmp_path):
    from preimage.decoders.shallow_architectures import default_arch

    assert default_arch(str(tmp_path / "alexnet.onnx"), (256, 6, 6)) is None
    assert default_arch(None, (31, 8, 8)) is None
    assert default_arch("hog", (31 * 64,)) is None  # flattened features: no spatial decoder
