"""One hand-made case for each bug the fuzzers found (those the default mutant counts do not remake):
before each fix, a traceback, a hang or a multi-line error."""
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from preimage.errors import PreimageError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "converters" / "onnx_torch"))
sys.path.insert(0, str(HERE.parent / "converters" / "torch7"))


def test_error_messages_stay_one_line():
    # before: a class name read from a damaged .t7 put a newline into the message
    e = PreimageError("expected an integer (torch.DoubleTensor\n sizes)", path="m.t7", where="108:1")
    assert "\n" not in str(e) and "DoubleTensor\\n sizes" in str(e)


def test_data_layer_without_top(tmp_path):
    # before: IndexError in the converter
    from preimage.converters.caffe.convert import convert_caffe

    p = tmp_path / "n.prototxt"
    p.write_text('layer { name: "data" type: "Input" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n')
    with pytest.raises(PreimageError, match="layer 'data'.*has no top"):
        convert_caffe(str(p), random_weights=True)


def test_layer_with_too_few_bottoms(tmp_path):
    # before: IndexError in the ReLU emitter
    from preimage.converters.caffe.convert import convert_caffe

    p = tmp_path / "n.prototxt"
    p.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
                 'layer { name: "relu" type: "ReLU" top: "r" }\n')
    with pytest.raises(PreimageError, match="layer 'relu'.*0 bottom"):
        convert_caffe(str(p), random_weights=True)


def test_v1_blob_whose_values_do_not_fill_its_dims(tmp_path):
    # before: numpy's "cannot reshape array of size 0 into shape (4,3,3,3)"
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.converters.caffe.proto import caffe_pb2
    from preimage.converters.caffe.writer import write_caffemodel

    p = tmp_path / "n.prototxt"
    p.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
                 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                 'convolution_param { num_output: 4 kernel_size: 3 } }\n')
    w = tmp_path / "n.caffemodel"
    write_caffemodel(str(w), str(p), legacy_v1=True)
    net = caffe_pb2.NetParameter()
    net.ParseFromString(w.read_bytes())
    conv = [layer for layer in net.layers if layer.name == "conv"][0]
    del conv.blobs[0].data[:]  # the legacy dims 4 x 3 x 3 x 3 stay
    w.write_bytes(net.SerializeToString())
    with pytest.raises(PreimageError, match="needs 108 values, the blob holds 0"):
        convert_caffe(str(p), str(w))


def test_lrn_of_a_huge_size_is_quick():
    # before: a Python loop of 2**31 slice additions (minutes) for an LRN size of 2**32
    from preimage.converters.onnx_torch.lrn import channel_window_sum

    t = torch.arange(12.0).reshape(1, 3, 2, 2)
    t0 = time.perf_counter()
    s = channel_window_sum(t, 2**31, 2**31)
    assert time.perf_counter() - t0 < 1.0
    assert torch.equal(s, t.sum(1, keepdim=True).expand_as(t))  # every channel sees all three


def _conv_model(meta):
    from onnx import helper as h
    from onnx_cases import make_model, rng_array

    nodes = [h.make_node("Conv", ["data", "w"], ["conv"], name="conv")]
    model = make_model(nodes, {"data": ["N", 3, 6, 5]}, ["conv"], {"w": rng_array((2, 3, 3, 2), 1)})
    h.set_model_props(model, meta)
    return model


@pytest.mark.parametrize("inputs", [[1, 3, 6, 5, 1], [1, 9, 6, 5]])
def test_declared_inputs_must_agree_with_the_graph(tmp_path, inputs):
    # before: "input 'data' must have 5 dimensions" when the model's own preprocessed image went in
    from preimage.converters.onnx_torch.load import load_features

    path = tmp_path / "m.onnx"
    onnx.save(_conv_model({"preimage.inputs": json.dumps({"data": inputs})}), str(path))
    with pytest.raises(PreimageError, match="preimage.inputs.*the graph") as e:
        load_features(str(path), ["conv"])
    assert str(path) in str(e.value)


@pytest.mark.parametrize("key", ["channel_order", "raw_scale", "assumed"])
def test_null_preprocess_keys_with_defaults_are_damage(tmp_path, key):
    # before: TypeError ('NoneType' object is not iterable) building the Preprocess
    from preimage.preprocess import Preprocess

    path = tmp_path / "m.onnx"
    onnx.save(_conv_model({"preimage.preprocess": json.dumps({key: None})}), str(path))
    with pytest.raises(PreimageError, match=f"preimage.preprocess.*{key}"):
        Preprocess.from_onnx(str(path))


def test_value_names_that_are_not_utf8(tmp_path):
    # before: TypeError joining the available names (protobuf hands invalid UTF-8 over as bytes)
    from preimage.converters.onnx_torch.load import load_features

    data = _conv_model({}).SerializeToString().replace(b"conv", b"c\xffnv")
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(PreimageError) as e:
        load_features(str(path), ["conv"])
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_t7_integer_field_out_of_range(tmp_path):
    # before: torch's TypeError ("Overflow when unpacking long long") at the first forward pass
    import t7writer as tw

    from preimage.converters.torch7.convert import load_t7_model

    conv = tw.module("nn.SpatialConvolution", nInputPlane=1, nOutputPlane=1, kW=1, kH=1, dW=1e300, dH=1, padW=0, padH=0,
                     weight=np.ones((1, 1, 1, 1)), bias=np.zeros(1))
    p = tmp_path / "m.t7"
    p.write_bytes(tw.dumps(tw.sequential(conv)))
    with pytest.raises(PreimageError, match="dW.*out of range"):
        load_t7_model(p)


def test_checkpoint_with_an_unknown_architecture_names_the_file(tmp_path):
    # before: KeyError for a missing entry, and an unknown architecture's error named no file
    from preimage.decoders.apply import load_decoder
    from preimage.decoders.checkpoint import CHECKPOINT_FORMAT

    p = tmp_path / "c.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "arch": "nope", "arch_options": {}, "feature_shape": [4],
                "image_shape": [3, 8, 8], "preprocess": {}, "iter": 1, "model": {}}, p)
    with pytest.raises(PreimageError, match="unknown decoder architecture 'nope'") as e:
        load_decoder(str(p))
    assert str(p) in str(e.value)
    torch.save({"format": CHECKPOINT_FORMAT, "arch": "alexnet_fc8"}, p)
    with pytest.raises(PreimageError, match="no 'arch_options' entry") as e:
        load_decoder(str(p))
    assert str(p) in str(e.value)


def test_convolution_group_zero(tmp_path):
    # before: ZeroDivisionError (integer modulo by zero) in the convolution emitter
    from preimage.converters.caffe.convert import convert_caffe

    p = tmp_path / "n.prototxt"
    p.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
                 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                 'convolution_param { num_output: 4 kernel_size: 3 group: 0 } }\n')
    with pytest.raises(PreimageError, match="layer 'conv'.*group must be positive"):
        convert_caffe(str(p), random_weights=True)
