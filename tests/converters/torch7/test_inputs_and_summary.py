"""Issue 12, item 4: a two-input nngraph gModule converts (one --input-shape per input) or fails with a one-line
error, a repeated --input-shape is never silently dropped, and `inspect` summarises modules by default."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

import t7writer as tw
from preimage.cli import cli
from preimage.converters.torch7 import load_t7_model
from preimage.errors import PreimageError

RNG = np.random.default_rng(12)
W, B = RNG.standard_normal((2, 3)), RNG.standard_normal(2)


def _node(module=None, parents=(), **extra):
    data = {"mapindex": tw.lua_list(*[p.fields["data"] for p in parents]), **extra}
    if module is not None:
        data["module"] = module
    return tw.Obj("nngraph.Node", {"data": data, "children": {}, "id": 0, "marked": False, "visited": False})


def two_input_gmodule(tmp_path):
    """nngraph's `a, b = x:split(2)`; out = Identity(a) + Linear(b), as `nn.gModule({a, b}, {out})` saves it:
    forward order input, split, select 1 and 2, Identity, Linear, CAddTable, output (four modules)."""
    ident, lin, add = tw.module("nn.Identity"), tw.module("nn.Linear", weight=W, bias=B), tw.module("nn.CAddTable")
    x = _node(input={})
    split = _node(None, [x], nSplitOutputs=2)
    a, b = _node(None, [split], selectindex=1), _node(None, [split], selectindex=2)
    ia = _node(ident, [a])
    ib = _node(tw.module("nn.Identity"), [b])
    lb = _node(lin, [ib])
    s = _node(add, [ia, lb])
    out = _node(None, [s])
    nodes = [x, split, a, ia, b, ib, lb, s, out]
    g = tw.Obj("nn.gModule", {"forwardnodes": tw.lua_list(*nodes), "backwardnodes": tw.lua_list(*nodes[::-1]),
                              "innode": x, "outnode": out, "nInputs": 2, "modules": tw.lua_list(ident, lin, add),
                              "_type": "torch.DoubleTensor", "train": False})
    return tw.save(tmp_path / "two.t7", g)


def reference(a, b):
    return a + b @ W.T + B


def test_two_input_gmodule_runs_on_two_tensors_and_refuses_one(tmp_path):
    net = load_t7_model(two_input_gmodule(tmp_path), dtype=torch.float64)
    a, b = RNG.standard_normal((4, 2)), RNG.standard_normal((4, 3))
    np.testing.assert_allclose(net(torch.from_numpy(a), torch.from_numpy(b)).numpy(), reference(a, b), rtol=1e-12)
    with pytest.raises(PreimageError, match="takes 2 input"):  # before: IndexError deep in the graph
        net(torch.from_numpy(a))


def test_convert_two_input_gmodule_to_onnx_with_one_shape_per_input(tmp_path):
    p = two_input_gmodule(tmp_path)
    r = CliRunner().invoke(cli, ["convert", "torch7", str(p), "--input-shape", "1,2", "--input-shape", "1,3"])
    assert r.exit_code == 0, r.output
    sess = ort.InferenceSession(str(tmp_path / "two.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_1", "input_2"]
    a, b = RNG.standard_normal((5, 2)).astype(np.float32), RNG.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"input_1": a, "input_2": b})[0], reference(a, b), rtol=1e-5, atol=1e-5)


def test_wrong_number_of_input_shapes_is_a_one_line_error(tmp_path):
    p = two_input_gmodule(tmp_path)
    r = CliRunner().invoke(cli, ["convert", "torch7", str(p), "--input-shape", "1,2"])
    assert r.exit_code == 2 and "takes 2 input(s), but 1" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "two.onnx").exists()
    single = tw.save(tmp_path / "one.t7", tw.sequential(tw.module("nn.Tanh")))
    r = CliRunner().invoke(cli, ["convert", "torch7", str(single), "--input-shape", "1,3", "--input-shape", "1,5"])
    assert r.exit_code == 2 and "takes 1 input(s), but 2" in r.output  # before: the last one silently won
    assert not (tmp_path / "one.onnx").exists()


def test_caffe_input_shape_given_twice_is_an_error(tiny_posenet, tmp_path):
    r = CliRunner().invoke(cli, ["convert", "caffe", str(tiny_posenet / "posenet.prototxt"), "-o", str(tmp_path / "p.onnx"),
                                 "--input-shape", "data=1,3,61,61", "--input-shape", "data=1,3,99,99"])
    assert r.exit_code == 2 and "'data' is given twice" in r.output and not (tmp_path / "p.onnx").exists()


def test_inspect_summarises_a_gmodule_and_keeps_the_full_tree_behind_a_flag(tmp_path):
    p = two_input_gmodule(tmp_path)
    r = CliRunner().invoke(cli, ["inspect", str(p)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) <= 15, r.output
    assert "nngraph.Node" not in r.output and "backwardnodes" not in r.output
    assert any("nn.Linear <- 6" in line for line in lines) and any("nn.CAddTable <- 4, 7" in line for line in lines)
    assert "weight: torch.DoubleTensor float64 [2, 3]" in r.output
    assert any("(no module) <- 2 element 2" in line for line in lines)
    full = CliRunner().invoke(cli, ["inspect", str(p), "--full"])
    assert full.exit_code == 0 and "backwardnodes" in full.output and "nngraph.Node" in full.output
    assert len(full.output.splitlines()) > 3 * len(lines)
