"""Real Torch7 nets saved in ASCII mode (OpenCV's test data): conversion reproduces Torch7's outputs."""
import numpy as np
import pytest
import torch

from preimage.converters.torch7 import load_t7_model, read_t7

NETS = ["batch_norm", "concat", "deconv", "linear_2d", "logsoftmax", "logsoftmax_spatial", "parallel", "pool_max",
        "reshape", "reshape_batch", "reshape_single_sample", "softmax", "softmax_spatial"]


@pytest.mark.parametrize("name", NETS)
def test_real_ascii_net_reproduces_torch7_output(torch7_corpus, name):
    d = torch7_corpus / "real-ascii"
    x = read_t7(d / f"net_{name}_input.txt")
    expect = read_t7(d / f"net_{name}_output.txt")
    for dtype in (torch.float64, torch.float32):  # the nets are DoubleTensor models
        net = load_t7_model(d / f"net_{name}_net.txt", dtype=dtype)
        with torch.no_grad():
            got = net(torch.from_numpy(np.array(x)).to(dtype)).double().numpy()
        assert got.shape == expect.shape
        err = np.abs(got - expect).max() / np.abs(expect).max()
        assert err < 1e-6, f"{dtype}: relative error {err}"


def test_pool_max_indices_agree(torch7_corpus):
    """The pooling net's second reference output: the (0-based, per plane) positions of each window's max."""
    d = torch7_corpus / "real-ascii"
    x = torch.from_numpy(np.array(read_t7(d / "net_pool_max_input.txt")))
    idx = read_t7(d / "net_pool_max_output_2.txt")
    pool = load_t7_model(d / "net_pool_max_net.txt", dtype=torch.float64)[0]
    vals, ours = torch.nn.functional.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding,
                                                ceil_mode=pool.ceil_mode, return_indices=True)
    np.testing.assert_array_equal(vals.numpy(), read_t7(d / "net_pool_max_output.txt"))
    np.testing.assert_array_equal(ours.numpy(), idx)


def test_real_nngraph_gmodule(torch7_corpus):
    """mod = nn.gModule({a, b}, {nn.CAddTable(){b, nn.Linear(1, 2)(a)}}) with a, b = nn.Identity()()."""
    path = torch7_corpus / "real" / "gmodule_with_linear_identity.t7"
    lin = next(m for m in read_t7(path)["modules"].to_list() if m.typename == "nn.Linear")
    net = load_t7_model(path, dtype=torch.float64)
    a, b = np.random.default_rng(0).standard_normal((2, 4, 1)), np.random.default_rng(1).standard_normal((4, 2))
    expect = b + a[0] @ lin["weight"].T + lin["bias"]
    got = net(torch.from_numpy(a[0]), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    np.testing.assert_allclose(net([torch.from_numpy(a[0]), torch.from_numpy(b)]).numpy(), expect, rtol=1e-12)
