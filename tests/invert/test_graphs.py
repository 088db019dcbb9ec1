"""--cuda-graphs: the features adapter around torch's graph capture (one capture per input shape, the
same values and gradients, a fallback when capture fails or off CUDA). The CPU cannot capture, so a
stand-in replaces torch.cuda.make_graphed_callables here; the capture itself is torch's."""
import warnings

import pytest
import torch

from preimage.invert import api
from preimage.invert.graphs import GraphedFeatures, graphed
from invert_nets import Net


class StandIn:
    """Records what would be captured; 'replays' by calling the module (as a graph replay computes)."""

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def __call__(self, module, sample_args):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.calls.append(tuple(sample_args[0].shape))
        assert sample_args[0].requires_grad
        return module


def _values_and_grad(f, x):
    xi = x.clone().requires_grad_()
    out = f(xi)
    loss = (out["a"] ** 2).sum() + out["fc"].sum()
    (g,) = torch.autograd.grad(loss, xi)
    return {k: v.detach() for k, v in out.items()}, g


def test_one_capture_per_shape_and_the_same_values_and_gradients():
    net, maker = Net(), StandIn()
    fast = GraphedFeatures(net, maker=maker)
    for n in (3, 3, 2, 3):
        x = torch.randn(n, 3, 16, 16)
        want, g_want = _values_and_grad(net, x)
        got, g_got = _values_and_grad(fast, x)
        assert list(got) == list(want)
        for k in want:
            assert torch.equal(got[k], want[k])
        assert torch.equal(g_got, g_want)
    assert maker.calls == [(3, 3, 16, 16), (2, 3, 16, 16)] and fast.captured == 2


def test_no_capture_without_gradients_and_a_fallback_when_capture_fails():
    net = Net()
    maker = StandIn()
    with torch.no_grad():
        GraphedFeatures(net, maker=maker)(torch.randn(2, 3, 16, 16))
    assert maker.calls == []
    fast = GraphedFeatures(net, maker=StandIn(fail=True))
    x = torch.randn(2, 3, 16, 16)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        got, g = _values_and_grad(fast, x)
    want, g_want = _values_and_grad(net, x)
    assert torch.equal(got["fc"], want["fc"]) and torch.equal(g, g_want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the failure is remembered: no second attempt, no second warning
        _values_and_grad(fast, x)


def test_off_cuda_the_option_warns_and_runs_as_before():
    net = Net()
    assert graphed(net, "cpu", False) is net
    with pytest.warns(RuntimeWarning, match="needs a CUDA device"):
        assert graphed(net, "cpu", True) is net
    from preimage.preprocess import Preprocess

    pre = Preprocess(channel_order="RGB", mean=[0.0, 0.0, 0.0], raw_scale=255.0, input_size=[16, 16])
    with pytest.warns(RuntimeWarning, match="needs a CUDA device"):
        a = api.maximize(net, ["a"], [1], preprocess=pre, size=(16, 16), iters=3,
                         overrides={"fine_iters": "0", "cuda_graphs": "true"}, progress=False, images=[])
    b = api.maximize(net, ["a"], [1], preprocess=pre, size=(16, 16), iters=3, overrides={"fine_iters": "0"},
                     progress=False, images=[])
    assert torch.equal(a.results[0]["x"], b.results[0]["x"])
