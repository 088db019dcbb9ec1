"""Models written in pieces (weights first, then the rest) read back as the same model."""
import numpy as np
import onnx
from onnx import helper, numpy_helper

from preimage.converters.caffe.onnxfile import save_model


def _model(n_inits):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), f"w{i}") for i in range(n_inits)]
    nodes = [helper.make_node("Add", ["x", f"w{i}"], [f"y{i}"], name=f"add{i}") for i in range(n_inits)]
    outs = [helper.make_tensor_value_info(f"y{i}", onnx.TensorProto.FLOAT, [3, 4]) for i in range(n_inits)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 4])], outs,
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    m.metadata_props.add(key="k", value="v")
    return m


def test_round_trip(tmp_path):
    for n in (0, 1, 5):
        m = _model(n)
        path = tmp_path / f"m{n}.onnx"
        save_model(m, path)
        back = onnx.load(str(path))
        assert back.graph.node == m.graph.node and back.graph.output == m.graph.output
        assert {t.name: t.raw_data for t in back.graph.initializer} == {t.name: t.raw_data for t in m.graph.initializer}
        assert back.ir_version == 8 and back.metadata_props[0].value == "v"
        onnx.checker.check_model(str(path), full_check=True)
