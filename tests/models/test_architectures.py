"""The bundled architectures against published parameter counts (an independent reference)."""
import numpy as np
import pytest

from preimage.converters.caffe.convert import convert_caffe
from preimage.errors import PreimageError
from preimage.models import architectures

# AlexNet / CaffeNet: 60,965,224 parameters (Krizhevsky et al., with the two-group layers).
# PoseNet tower, worked by hand from the layer table: conv 2960 + 20040 + 51280 + 204960,
# fc5 (160*2*2 -> 500) 320500, fc6 250500.
PUBLISHED = {"alexnet": 60_965_224, "caffenet": 60_965_224, "posenet": 850_240}


def _count(tmp_path, name, **kw):
    p = tmp_path / f"{name}.prototxt"
    p.write_text(architectures.prototxt(name, **kw))
    m = convert_caffe(str(p), random_weights=True)
    layer_names = {n.name for n in m.graph.node}
    # parameters = initializers owned by a Convolution/InnerProduct layer (weights and biases)
    return sum(int(np.prod(t.dims)) for t in m.graph.initializer
               if any(t.name.startswith(ln) for ln in layer_names if ln.startswith(("conv", "fc"))))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published(tmp_path, name):
    assert _count(tmp_path, name) == PUBLISHED[name]


def test_width_scales_channels(tmp_path):
    text = architectures.alexnet(width=0.25, fc_width=1 / 16)
    assert "num_output: 24 " in text and "num_output: 256 " in text and "num_output: 1000 " in text


def test_unknown_architecture():
    with pytest.raises(PreimageError, match="known: alexnet"):
        architectures.prototxt("resnet")
