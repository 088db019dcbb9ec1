"""The caffemodel writer, checked with protobuf's own parser (not the project's streaming reader)."""
import numpy as np
import pytest

from preimage.converters.caffe import convert_caffe
from preimage.converters.caffe.proto import caffe_pb2
from preimage.converters.caffe.writer import random_weights, write_caffemodel

from caffe_helpers import corpus_dir, run

NET = """name: "w"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 8 kernel_size: 3 group: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "pr" type: "PReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 10 } }
"""


@pytest.fixture
def proto(tmp_path):
    p = tmp_path / "w.prototxt"
    p.write_text(NET)
    return p


def parse(path):
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    return net


def test_random_weights_shapes_and_statistics(proto):
    w = random_weights(proto, seed=3)
    assert [a.shape for a in w["conv"]] == [(8, 3, 3, 3), (8,)]
    assert [a.shape for a in w["bn"]] == [(8,), (8,), (1,)]
    assert [a.shape for a in w["sc"]] == [(8,), (8,)]
    assert [a.shape for a in w["pr"]] == [(8,)]
    assert [a.shape for a in w["fc"]] == [(10, 8 * 7 * 7), (10,)]
    big = random_weights(proto.parent / "w.prototxt", seed=3)["fc"][0]
    assert abs(big.std() - np.sqrt(2.0 / (8 * 7 * 7))) < 0.1 * np.sqrt(2.0 / (8 * 7 * 7))  # He-normal
    assert not w["conv"][1].any() and not w["fc"][1].any()  # zero biases
    assert w["bn"][2][0] == 1 and (w["bn"][1] > 0).all() and np.allclose(w["pr"][0], 0.25)
    again = random_weights(proto, seed=3)
    assert all(np.array_equal(a, b) for k in w for a, b in zip(w[k], again[k]))
    other = random_weights(proto, seed=4)
    assert not np.array_equal(w["conv"][0], other["conv"][0])


def test_v2_layout_parses_with_protobuf(proto, tmp_path):
    w = random_weights(proto, seed=1)
    path = tmp_path / "w.caffemodel"
    write_caffemodel(path, proto, w)
    net = parse(path)
    assert net.name == "w" and not len(net.layers)
    by_name = {l.name: l for l in net.layer}
    assert by_name["conv"].type == "Convolution" and by_name["conv"].convolution_param.num_output == 8
    for name, arrays in w.items():
        blobs = by_name[name].blobs
        assert len(blobs) == len(arrays)
        for blob, a in zip(blobs, arrays):
            assert tuple(blob.shape.dim) == a.shape
            np.testing.assert_array_equal(np.asarray(blob.data, np.float32), a.ravel())


def test_v1_layout_has_enum_types_and_legacy_dims(tmp_path):
    proto = tmp_path / "a.prototxt"
    proto.write_text(NET.split('layer { name: "bn"')[0] + 'layer { name: "fc" type: "InnerProduct" bottom: "conv" '
                     'top: "fc" inner_product_param { num_output: 10 } }\n')
    w = random_weights(proto, seed=2)
    path = tmp_path / "a.caffemodel"
    write_caffemodel(path, proto, w, legacy_v1=True)
    net = parse(path)
    assert not len(net.layer)
    fc = {l.name: l for l in net.layers}["fc"]
    assert fc.type == caffe_pb2.V1LayerParameter.INNER_PRODUCT
    dims = [(b.num, b.channels, b.height, b.width) for b in fc.blobs]
    assert dims == [(1, 1, 10, 392), (1, 1, 1, 10)]
    assert not fc.blobs[0].HasField("shape")
    np.testing.assert_array_equal(np.asarray(fc.blobs[0].data, np.float32), w["fc"][0].ravel())
    # and the converter reads it back to the same model outputs as the V2 file
    v2 = tmp_path / "a2.caffemodel"
    write_caffemodel(v2, proto, w)
    x = {"data": np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)}
    a = run(convert_caffe(proto, path), x, ["fc"])["fc"]
    b = run(convert_caffe(proto, v2), x, ["fc"])["fc"]
    np.testing.assert_array_equal(a, b)


def test_v1_layout_refuses_layer_types_without_v1_form(proto, tmp_path):
    from preimage.errors import PreimageError

    with pytest.raises(PreimageError, match="BatchNorm has no V1 form"):
        write_caffemodel(tmp_path / "x.caffemodel", proto, legacy_v1=True)
    assert not (tmp_path / "x.caffemodel").exists()


def test_writer_reproduces_a_real_caffe_file(tmp_path):
    """Weights read from a caffemodel Caffe wrote, written again, give the same blobs."""
    d = corpus_dir() / "u_norm_act"
    if not d.is_dir():
        pytest.skip("Caffe conformance corpus not found")
    real = parse(d / "net.caffemodel")
    w = {l.name: [np.asarray(b.data, np.float32).reshape(tuple(b.shape.dim)) for b in l.blobs]
         for l in real.layer if len(l.blobs)}
    path = tmp_path / "again.caffemodel"
    write_caffemodel(path, d / "net.prototxt", w)
    again = {l.name: l for l in parse(path).layer}
    for l in real.layer:
        if not len(l.blobs):
            continue  # (Caffe also saves the split layers it inserted; they hold nothing)
        for b1, b2 in zip(l.blobs, again[l.name].blobs):
            assert list(b1.shape.dim) == list(b2.shape.dim)
            assert list(b1.data) == list(b2.data)
