"""Mutated Caffe prototxts and caffemodels through the converter, written to a file as
``preimage convert caffe`` does: a valid ONNX model or a one-line PreimageError naming the file, never
a traceback, a hang or a partial output."""
import os

import onnx
import pytest

import harness
from mutators import mutate_bytes, mutate_text

# every kind of layer the small nets of the corpus use, with in-place layers, two tops and a V1 twin
NET = """name: "fuzz"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 19 dim: 17 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "pool1" top: "pool1" }
layer { name: "scale" type: "Scale" bottom: "pool1" top: "pool1" scale_param { bias_term: true } }
layer { name: "slice" type: "Slice" bottom: "pool1" top: "a" top: "b" slice_param { axis: 1 slice_point: 2 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "a" top: "cat" }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

N_PROTOTXT = 600
N_CAFFEMODEL = 300


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    from preimage.converters.caffe.writer import write_caffemodel

    d = tmp_path_factory.mktemp("caffe_seed")
    (d / "net.prototxt").write_text(NET)
    write_caffemodel(str(d / "net.caffemodel"), str(d / "net.prototxt"))
    v1_net = "".join(line for line in NET.splitlines(keepends=True) if '"bn"' not in line and '"scale"' not in line)
    (d / "v1.prototxt").write_text(v1_net)  # the V1 layout has no BatchNorm or Scale
    write_caffemodel(str(d / "v1.caffemodel"), str(d / "v1.prototxt"), legacy_v1=True)
    return d


def _convert_to(out_dir):
    from preimage.converters.caffe.convert import convert_caffe

    def read(files):
        prototxt, weights = files
        out = os.path.join(out_dir, "net.onnx")
        convert_caffe(prototxt, weights, out, random_weights=weights is None)
        model = onnx.load(out)  # a complete file: it loads and the checker accepts it
        onnx.checker.check_model(model)
        os.remove(out)
    return read


def test_mutated_prototxts(seed_files, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def make(rng, k):
        p = tmp_path / f"m{k}.prototxt"
        p.write_text(mutate_text(NET, rng))
        return str(p), None

    res = harness.run("prototxt", N_PROTOTXT, make, _convert_to(str(out_dir)), out_dir=str(out_dir),
                      expect_in_error=lambda m: m[0])
    res.check(min_clean=0.2, min_ok=0.05)


@pytest.mark.parametrize("seed_name", ["net.caffemodel", "v1.caffemodel"])
def test_mutated_caffemodels(seed_files, tmp_path, seed_name):
    data = (seed_files / seed_name).read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def make(rng, k):
        p = tmp_path / f"m{k}.caffemodel"
        p.write_bytes(mutate_bytes(data, rng))
        return str(seed_files / seed_name.replace(".caffemodel", ".prototxt")), str(p)

    res = harness.run(f"caffemodel ({seed_name})", N_CAFFEMODEL // 2, make, _convert_to(str(out_dir)),
                      out_dir=str(out_dir), seed=17)
    res.check(min_clean=0.2, min_ok=0.05)
