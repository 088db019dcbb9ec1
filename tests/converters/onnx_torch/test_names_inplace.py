"""Issue 12, item 3: ``layer:NAME`` / ``blob:NAME`` and the warning for a bare name that is both; and hooks on a
module that an in-place ReLU follows see that module's own output."""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from onnx_cases import rng_array, run_ort  # noqa: E402
from test_load import small_net  # noqa: E402

from preimage.converters.onnx_torch.graph import AmbiguousNameWarning, resolve, split_name  # noqa: E402
from preimage.converters.onnx_torch.load import load_features  # noqa: E402
from preimage.errors import PreimageError  # noqa: E402

X = rng_array((2, 3, 8, 8), 9)


def reference(*names):
    return run_ort(small_net(), {"data": X}, list(names))


def test_split_name():
    assert split_name("blob:fc5") == ("blob", "fc5")
    assert split_name("layer:conv1/top") == ("layer", "conv1/top")
    assert split_name("fc5") == (None, "fc5") and split_name("other:fc5") == (None, "other:fc5")


def test_a_bare_name_that_is_layer_and_blob_warns_once_naming_its_reading():
    model = small_net()
    model.graph.name = "warned_once"  # a model (by graph name) not used by other tests in this process
    with pytest.warns(AmbiguousNameWarning) as caught:
        for _ in range(3):
            resolve(model, ["conv1"])
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "'conv1'" in msg and "using the layer output" in msg and "blob:conv1" in msg and "'relu1'" in msg


def test_explicit_readings_pick_layer_or_blob_whatever_keys_says_and_do_not_warn():
    ref = reference("conv1", "relu1")
    assert ref["conv1"].min() < 0 < ref["relu1"].max()  # the two readings differ
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for keys in ("auto", "blobs", "layers"):
            out = load_features(small_net(), ["layer:conv1", "blob:conv1", "pool1"], keys=keys)(torch.from_numpy(X))
            assert list(out) == ["layer:conv1", "blob:conv1", "pool1"]
            np.testing.assert_allclose(out["layer:conv1"].numpy(), ref["conv1"], atol=1e-5)
            np.testing.assert_allclose(out["blob:conv1"].numpy(), ref["relu1"], atol=1e-5)


def test_blob_reading_of_a_name_that_is_only_a_layer_is_an_error():
    with pytest.raises(PreimageError, match="blob:relu1.*layer:NAME or blob:NAME"):
        load_features(small_net(), ["blob:relu1"])
    found, missing = resolve(small_net(), ["layer:relu1", "blob:data", "blob:nothing"])
    assert found == {"layer:relu1": "relu1", "blob:data": "data"} and missing == ["blob:nothing"]


def _module_for(net, value):
    return next(m for m in net.modules() if getattr(m, "onnx_mapping", None) is not None
                and value in m.onnx_mapping.outputs)


@pytest.mark.parametrize("how", ["local", "global"])
def test_a_forward_hook_on_the_module_before_an_inplace_relu_sees_its_own_output(how):
    ref = reference("conv1", "prob")
    net = load_features(small_net(), ["prob"])
    conv = _module_for(net, "conv1")
    seen = []

    def hook(module, inputs, output):
        if module is conv:
            seen.append(output)  # a reference, as Lucent and Captum keep it

    handle = conv.register_forward_hook(hook) if how == "local" else \
        torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        out = net(torch.from_numpy(X))
    finally:
        handle.remove()
    np.testing.assert_allclose(seen[0].numpy(), ref["conv1"], atol=1e-5)
    np.testing.assert_allclose(out["prob"].numpy(), ref["prob"], atol=1e-6)
    np.testing.assert_allclose(net(torch.from_numpy(X))["prob"].numpy(), ref["prob"], atol=1e-6)  # hook gone


def test_a_full_backward_hook_works_and_leaves_the_gradient_unchanged():
    net = load_features(small_net(), ["prob"])
    x = torch.from_numpy(X).requires_grad_()
    (g0,) = torch.autograd.grad(net(x)["prob"][:, 1].sum(), x)
    grads = []
    handle = _module_for(net, "conv1").register_full_backward_hook(lambda m, gi, go: grads.append(go[0]))
    try:
        (g1,) = torch.autograd.grad(net(x)["prob"][:, 1].sum(), x)
    finally:
        handle.remove()
    assert len(grads) == 1
    torch.testing.assert_close(g1, g0)


def test_validate_reads_layer_and_blob_prefixed_reference_names(tmp_path):
    from preimage.converters.validate import validate

    ref = reference("conv1", "relu1")
    npz = tmp_path / "ref.npz"
    np.savez(npz, **{"data": X, "layer:conv1": ref["conv1"], "blob:conv1": ref["relu1"]})
    for keys in ("blobs", "layers"):
        report = validate(small_net(), str(npz), keys=keys, backend="both")
        checked = {r.name for r in report.rows}
        assert {"layer:conv1", "blob:conv1"} <= checked and report.ok, report.table()
