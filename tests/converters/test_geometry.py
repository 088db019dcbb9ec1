"""Receptive fields from the ONNX graph: the published AlexNet table, and a brute-force check of which
input pixels really reach one output unit."""
import numpy as np
import onnxruntime as ort
import pytest

from preimage.converters.caffe import convert_caffe
from preimage.converters.caffe.writer import random_weights, write_caffemodel
from preimage.converters.geometry import layer_table, receptive_fields
from preimage.models import architectures

# Mahendran & Vedaldi (IJCV 2016), AlexNet: receptive-field size / stride
ALEXNET = {"conv1": (11, 4), "pool1": (19, 8), "conv2": (51, 8), "pool2": (67, 16), "conv3": (99, 16),
           "conv4": (131, 16), "conv5": (163, 16), "pool5": (195, 32), "fc6": (355, 32), "fc7": (355, 32),
           "fc8": (355, 32)}


def test_alexnet_table(tmp_path):
    proto = tmp_path / "alexnet.prototxt"
    proto.write_text(architectures.alexnet(width=0.125, fc_width=0.01))
    rf = receptive_fields(str(proto))  # structure only: no weights needed
    for layer, (size, stride) in ALEXNET.items():
        assert rf[layer]["size"] == (size, size), layer
        assert rf[layer]["stride"] == (stride, stride), layer
    assert rf["relu1"] == rf["conv1"] and rf["norm2"] == rf["conv2"]  # elementwise ops pass through
    assert rf["data"]["size"] == (1, 1)


NET = """name: "rf"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 29 dim: 29 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 2 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "p1" type: "Pooling" bottom: "c1" top: "p1" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "c2" type: "Convolution" bottom: "p1" top: "c2" convolution_param { num_output: 2 kernel_h: 3 kernel_w: 1 dilation: 2 } }
"""


def test_brute_force_field_of_a_unit(tmp_path):
    """Feed one image per input pixel (a single 1 at that pixel); the pixels that change unit (i, j) of
    c2 must span exactly its predicted field [offset + i*stride, offset + i*stride + size) (with holes
    where the dilated kernel skips rows)."""
    proto = tmp_path / "rf.prototxt"
    proto.write_text(NET)
    w = {k: [np.abs(a) + 0.1 for a in v] for k, v in random_weights(proto).items()}
    write_caffemodel(tmp_path / "rf.caffemodel", proto, w)
    model = convert_caffe(proto, tmp_path / "rf.caffemodel")
    rf = receptive_fields(model)["c2"]
    h = w_ = 29
    x = np.zeros((h * w_, 1, h, w_), np.float32)
    x[np.arange(h * w_), 0, np.arange(h * w_) // w_, np.arange(h * w_) % w_] = 1.0
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y0 = sess.run(["c2"], {"data": np.zeros((1, 1, h, w_), np.float32)})[0]
    y = sess.run(["c2"], {"data": x})[0]
    i, j = 2, 3  # a unit whose field lies inside the image
    changed = np.abs(y[:, 0, i, j] - y0[0, 0, i, j]) > 1e-6
    rows = sorted({p // w_ for p in np.flatnonzero(changed)})
    cols = sorted({p % w_ for p in np.flatnonzero(changed)})
    (sh, sw), (th, tw), (oh, ow) = rf["size"], rf["stride"], rf["offset"]
    assert (rows[0], rows[-1]) == (oh + i * th, oh + i * th + sh - 1)
    assert cols == list(range(ow + j * tw, ow + j * tw + sw))
    assert (sh, sw, th, tw) == (23, 7, 4, 4)  # 3 -> 7 (pool) -> 7 + 4 * (5 - 1) rows (dilated 3-tap)


def test_layer_table_lists_layers_blobs_and_fields(tmp_path):
    proto = tmp_path / "rf.prototxt"
    proto.write_text(NET + 'layer { name: "r" type: "ReLU" bottom: "c2" top: "c2" }\n')
    t = layer_table(str(proto))
    rows = {r["name"]: r for r in t["layers"]}
    assert rows["c1"]["shape"] == [None, 2, 15, 15] and rows["c1"]["receptive_field"]["size"] == (3, 3)
    assert rows["r"]["values"] == ["r"]
    blobs = {b["blob"]: b for b in t["blobs"]}
    assert blobs["c2"]["value"] == "r"
    assert t["inputs"] == {"data": [1, 1, 29, 29]}


def _gap_net(tmp_path, dynamic, reduce=False):
    import torch
    from torch import nn

    class Mean(nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    pool = [Mean()] if reduce else [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), *pool, nn.Linear(8, 4)).eval()
    path = tmp_path / "gap.onnx"
    axes = {"x": {0: "N", 2: "H", 3: "W"}} if dynamic else {"x": {0: "N"}}
    torch.onnx.export(net, torch.zeros(1, 3, 15, 15), str(path), dynamo=False, input_names=["x"], dynamic_axes=axes)
    import onnx

    m = onnx.load(str(path))
    return m, {n.op_type: n.output[0] for n in m.graph.node}


@pytest.mark.parametrize("reduce", [False, True])
def test_global_pool_of_a_free_size_input_sees_the_whole_input(tmp_path, reduce):
    # before: the global average pool's field was the conv's 3 x 3 (a free H/W has no size to add)
    m, out = _gap_net(tmp_path, dynamic=True, reduce=reduce)
    rf = receptive_fields(m)
    pooled = out["ReduceMean"] if reduce else out["GlobalAveragePool"]
    assert rf[out["Conv"]]["size"] == (3, 3) and "global" not in rf[out["Conv"]]
    for v in (pooled, out["Gemm"]):
        assert rf[v]["size"] is None and rf[v]["global"] is True
        assert rf[v]["stride"] == (2, 2)  # the pooled map's, as invert's jitter needs


def test_global_pool_of_a_known_size_input_spans_it(tmp_path):
    m, out = _gap_net(tmp_path, dynamic=False)
    rf = receptive_fields(m)
    # conv 3/2 on 15 x 15 gives 7 x 7 units, the last one's field ends at 2*6 + 3 = 15: the whole input
    assert rf[out["GlobalAveragePool"]]["size"] == (15, 15) and rf[out["GlobalAveragePool"]]["global"] is True
    assert rf[out["Gemm"]]["size"] == (15, 15)


# -- 'preimage layers' checks the model first (issue 13, item 4)


def _checked_case(kind):
    import sys
    from pathlib import Path

    from onnx import helper as h

    sys.path.insert(0, str(Path(__file__).parent / "onnx_torch"))
    from onnx_cases import make_model, rng_array

    nodes = [h.make_node("Conv", ["data", "w"], ["conv"], name="conv"), h.make_node("Relu", ["conv"], ["relu"], name="relu")]
    model = make_model(nodes, {"data": ["N", 3, 6, 5]}, ["relu"], {"w": rng_array((2, 3, 3, 2), 1)})
    if kind == "unknown op":
        model.graph.node[1].op_type = "Frobnicate"
    elif kind == "missing initializer":
        del model.graph.initializer[:]
    elif kind == "duplicate outputs":
        model.graph.node[1].output[0] = "conv"
    elif kind == "bad dtype":
        model.graph.initializer[0].data_type = 99
    elif kind == "wrong dtype for the op":
        model.graph.input[0].type.tensor_type.elem_type = 7  # int64 into a Conv
    return model


@pytest.mark.parametrize("kind", ["unknown op", "missing initializer", "duplicate outputs", "bad dtype",
                                  "wrong dtype for the op"])
def test_layers_refuses_a_model_the_checker_rejects(tmp_path, kind):
    # before: a table and exit status 0
    import onnx
    from click.testing import CliRunner

    from preimage.cli import cli

    path = tmp_path / "m.onnx"
    onnx.save(_checked_case(kind), str(path))
    with pytest.raises(onnx.checker.ValidationError if kind != "bad dtype" else Exception):  # independent verdict
        onnx.checker.check_model(str(path), full_check=True)
    res = CliRunner().invoke(cli, ["layers", str(path)])
    assert res.exit_code == 2 and str(path) in res.output and "onnx.checker rejects it" in res.output, res.output
    assert "Traceback" not in res.output and "layer " not in res.output


def test_layers_accepts_a_valid_model_without_declared_output_shapes(tmp_path):
    import onnx
    from click.testing import CliRunner

    from preimage.cli import cli

    path = tmp_path / "m.onnx"
    onnx.save(_checked_case("valid"), str(path))  # its output has no shape: unknown rank, valid for onnxruntime
    res = CliRunner().invoke(cli, ["layers", str(path), "--torch"])
    assert res.exit_code == 0 and "relu" in res.output, res.output
