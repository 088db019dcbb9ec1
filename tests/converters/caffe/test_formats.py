"""Reading the many forms of Caffe files: V0/V1 layouts, input declarations, data layers, phases, sharing."""

import numpy as np
import pytest

from preimage.converters.caffe import convert_caffe
from preimage.converters.caffe.convert import convert_caffe_full
from preimage.converters.caffe.writer import random_weights, write_caffemodel
from preimage.errors import PreimageError

from caffe_helpers import corpus_dir, meta, rel_err, run

V2 = """name: "small"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 19 input_dim: 19
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 5 stride: 2 pad: 1 group: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.01 beta: 0.75 k: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "norm1" top: "fc" inner_product_param { num_output: 6 } }
"""

V0 = """name: "small"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 19 input_dim: 19
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 5 stride: 2 pad: 1 } bottom: "data" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 3 stride: 2 } bottom: "conv1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.01 beta: 0.75 } bottom: "pool1" top: "norm1" }
layers { layer { name: "fc" type: "innerproduct" num_output: 6 } bottom: "norm1" top: "fc" }
"""

V1 = """name: "small"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 19 input_dim: 19
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 5 stride: 2 pad: 1 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "norm1" type: LRN bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.01 beta: 0.75 } }
layers { name: "fc" type: INNER_PRODUCT bottom: "norm1" top: "fc" inner_product_param { num_output: 6 } }
"""


def _outputs(model, x):
    return run(model, {"data": x}, ["conv1", "relu1", "pool1", "norm1", "fc"])


@pytest.mark.parametrize("legacy_weights", [False, True])
def test_v0_v1_and_v2_texts_give_one_model(tmp_path, legacy_weights):
    files = {}
    for name, text in (("v2", V2), ("v1", V1), ("v0", V0)):
        files[name] = tmp_path / f"{name}.prototxt"
        files[name].write_text(text)
    w = random_weights(files["v2"], seed=5)
    weights = tmp_path / "w.caffemodel"
    write_caffemodel(weights, files["v2"], w, legacy_v1=legacy_weights)
    x = np.random.default_rng(1).standard_normal((1, 3, 19, 19)).astype(np.float32)
    ref = _outputs(convert_caffe(files["v2"], weights), x)
    for name in ("v1", "v0"):
        conv = convert_caffe_full(files[name], weights)
        got = _outputs(conv.model, x)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k])
        assert meta(conv.model)["preimage.source"]["legacy_format"] == name.upper()
    # and an independent check of the first layer: a direct float64 convolution
    wt, b = w["conv1"]
    xp = np.pad(x[0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    ref_conv = np.array([[[np.sum(xp[:, 2 * i:2 * i + 5, 2 * j:2 * j + 5] * wt[o]) + b[o] for j in range(9)]
                          for i in range(9)] for o in range(4)])
    assert rel_err(ref["conv1"][0], ref_conv) < 1e-5


def test_input_forms_and_several_inputs(tmp_path):
    text = ('input: "a"\ninput_shape { dim: 2 dim: 3 dim: 4 dim: 4 }\ninput: "b"\ninput_shape { dim: 2 dim: 3 dim: 4 dim: 4 }\n'
            'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n'
            'layer { name: "in2" type: "Input" top: "c" top: "d" input_param { shape { dim: 2 dim: 5 } } }\n'
            'layer { name: "cat" type: "Concat" bottom: "c" bottom: "d" top: "cat" }\n')
    p = tmp_path / "multi.prototxt"
    p.write_text(text)
    model = convert_caffe(p, random_weights=True)
    m = meta(model)
    assert m["preimage.inputs"] == {"a": [2, 3, 4, 4], "b": [2, 3, 4, 4], "c": [2, 5], "d": [2, 5]}
    assert [i.name for i in model.graph.input] == ["a", "b", "c", "d"]
    layers = {l["name"]: l for l in m["preimage.layers"]}
    assert layers["in2"]["values"] == ["in2/c", "in2/d"] and "a" not in layers  # declared inputs are no layers
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in m["preimage.inputs"].items()}
    got = run(model, feeds, ["sum", "cat", "in2/c"])
    np.testing.assert_allclose(got["sum"], feeds["a"] + feeds["b"], rtol=1e-6)
    np.testing.assert_array_equal(got["cat"], np.concatenate([feeds["c"], feeds["d"]], axis=1))
    np.testing.assert_array_equal(got["in2/c"], feeds["c"])


def test_input_dim_count_must_match(tmp_path):
    p = tmp_path / "bad.prototxt"
    p.write_text('input: "a"\ninput_dim: 1\ninput_dim: 3\n')
    with pytest.raises(PreimageError, match="need 4 input_dim values, found 2"):
        convert_caffe(p, random_weights=True)


TRAINVAL = """name: "tv"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mirror: true crop_size: 17 mean_value: 1 mean_value: 2 mean_value: 3 }
  data_param { source: "train_lmdb" batch_size: 64 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 17 mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.5 }
  data_param { source: "val_lmdb" batch_size: 5 backend: LMDB } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "drop_train_only" type: "Dropout" bottom: "conv" top: "conv" exclude { phase: TEST } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }
"""


def test_train_val_prototxt_becomes_a_deploy_model(tmp_path):
    p = tmp_path / "tv.prototxt"
    p.write_text(TRAINVAL)
    conv = convert_caffe_full(p, random_weights=True)
    model, m = conv.model, meta(conv.model)
    assert [i.name for i in model.graph.input] == ["data"]  # the label is unused once losses are dropped
    assert m["preimage.inputs"] == {"data": [5, 3, 17, 17]}
    assert [o.name for o in model.graph.output] == ["fc"]
    pre = m["preimage.preprocess"]
    assert pre["mean"] == [104, 117, 123] and pre["scale"] == 0.5 and pre["input_size"] == [17, 17]
    assert "mean" not in pre["assumed"]
    names = [l["name"] for l in m["preimage.layers"]]
    assert names == ["data", "conv", "fc"]
    notes = " ".join(conv.notices)
    assert "loss" in notes and "acc" in notes and "drop_train_only" in notes and "3 channels" in notes


def test_image_data_layer_mean_file_and_single_mean_value(tmp_path):
    (tmp_path / "mean.binaryproto").write_bytes(b"")
    p = tmp_path / "img.prototxt"
    p.write_text('layer { name: "img" type: "ImageData" top: "img" top: "label" transform_param { mean_file: "mean.binaryproto" } '
                 'image_data_param { source: "list.txt" batch_size: 2 new_height: 9 new_width: 7 } }\n'
                 'layer { name: "g" type: "ImageData" top: "g" top: "label2" transform_param { mean_value: 128 } '
                 'image_data_param { source: "l.txt" batch_size: 2 is_color: false new_height: 9 new_width: 7 } }\n'
                 'layer { name: "cat" type: "Concat" bottom: "img" bottom: "g" top: "cat" }\n')
    m = meta(convert_caffe(p, random_weights=True))
    assert m["preimage.inputs"] == {"img": [2, 3, 9, 7], "g": [2, 1, 9, 7]}
    assert m["preimage.preprocess"]["mean_file"] == str(tmp_path / "mean.binaryproto")


def test_shared_parameters_share_one_initializer():
    d = corpus_dir() / "posenet_siamese"
    if not d.is_dir():
        pytest.skip("Caffe conformance corpus not found")
    model = convert_caffe(d / "net.prototxt", d / "net.caffemodel")
    nodes = {n.name: n for n in model.graph.node}
    assert nodes["conv1"].input[1] == nodes["conv1_p"].input[1]
    assert nodes["fc5"].input[1:] == nodes["fc5_p"].input[1:]
    assert nodes["relu5"].input[1] == nodes["relu5_p"].input[1]
    assert nodes["common_fc"].input[1] != nodes["fc5"].input[1]
    names = [t.name for t in model.graph.initializer]
    assert len(names) == len(set(names))


def test_layer_named_differently_from_its_top(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text('layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }\n'
                 'layer { name: "act" type: "ReLU" bottom: "data" top: "out" }\n'
                 'layer { name: "act2" type: "Sigmoid" bottom: "out" top: "out" }\n')
    model = convert_caffe(p, random_weights=True)
    m = meta(model)
    assert [i.name for i in model.graph.input] == ["data"]
    assert m["preimage.blobs"] == {"data": "data", "out": "act2"}
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)
    got = run(model, {"data": x}, ["input", "act", "act2"])
    np.testing.assert_array_equal(got["input"], x)
    np.testing.assert_allclose(got["act2"], 1 / (1 + np.exp(-np.maximum(x, 0))), rtol=1e-6)


def test_v0_padding_layers_fold_into_the_convolution(tmp_path):
    padded = V0.replace(
        'layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 5 stride: 2 pad: 1 } bottom: "data" top: "conv1" }',
        'layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }\n'
        'layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 5 stride: 2 } bottom: "pad1" top: "conv1" }')
    (tmp_path / "v0.prototxt").write_text(padded)
    (tmp_path / "v2.prototxt").write_text(V2)
    model = convert_caffe(tmp_path / "v0.prototxt", random_weights=True, seed=2)
    ref = convert_caffe(tmp_path / "v2.prototxt", random_weights=True, seed=2)
    x = np.random.default_rng(3).standard_normal((1, 3, 19, 19)).astype(np.float32)
    np.testing.assert_array_equal(_outputs(model, x)["fc"], _outputs(ref, x)["fc"])
    assert "pad1" not in {l["name"] for l in meta(model)["preimage.layers"]}


def test_input_shape_override(tmp_path):
    p = tmp_path / "py.prototxt"
    p.write_text('layer { name: "data" type: "Python" top: "data" top: "label" python_param { module: "m" layer: "L" } }\n'
                 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 3 } }\n')
    with pytest.raises(PreimageError, match="cannot tell the shape"):
        convert_caffe(p, random_weights=True)
    m = meta(convert_caffe(p, random_weights=True, input_shapes={"data": [2, 3, 10, 12]}))
    assert m["preimage.inputs"] == {"data": [2, 3, 10, 12]}
    q = tmp_path / "v2.prototxt"
    q.write_text(V2)
    model = convert_caffe(q, random_weights=True, input_shapes={"data": [1, 3, 35, 35]})
    assert meta(model)["preimage.inputs"] == {"data": [1, 3, 35, 35]}
    with pytest.raises(PreimageError, match="not an input of the net"):
        convert_caffe(q, random_weights=True, input_shapes={"image": [1, 3, 35, 35]})
