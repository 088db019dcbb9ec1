"""Regularizers: values against float64 NumPy transcriptions of the formulas, gradients against finite
differences, and the B+ projection."""
import numpy as np
import pytest
import torch

from preimage.invert import regularizers as R
from preimage.invert.optimizers import project_ball
from preimage.invert.presets import Config


def _np_tv(x, beta, V):  # x: C x H x W, forward differences with the last difference 0
    dx = np.zeros_like(x)
    dy = np.zeros_like(x)
    dx[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    dy[:, :-1, :] = x[:, 1:, :] - x[:, :-1, :]
    H, W = x.shape[1:]
    return ((dx ** 2 + dy ** 2) ** (beta / 2)).sum() / (H * W * V ** beta)


def _np_bounded(x, alpha, B):
    H, W = x.shape[1:]
    return (np.sqrt((x ** 2).sum(0)) ** alpha).sum() / (H * W * B ** alpha)


def _fd_grad(fn, x, eps=1e-5, count=25, seed=0):
    """Central finite differences of sum(fn(x)) at ``count`` random coordinates."""
    rng = np.random.default_rng(seed)
    flat = x.detach().clone().reshape(-1)
    idx = rng.choice(flat.numel(), size=count, replace=False)
    out = []
    for i in idx:
        xp, xm = flat.clone(), flat.clone()
        xp[i] += eps
        xm[i] -= eps
        out.append((fn(xp.reshape(x.shape)).sum() - fn(xm.reshape(x.shape)).sum()).item() / (2 * eps))
    return idx, np.array(out)


CASES = [
    ("bounded_range", dict(alpha=6.0, B=80.0), lambda a: _np_bounded(a, 6.0, 80.0)),
    ("bounded_range", dict(alpha=2.0, B=10.0), lambda a: _np_bounded(a, 2.0, 10.0)),
    ("tv", dict(beta=2.0, V=80 / 6.5), lambda a: _np_tv(a, 2.0, 80 / 6.5)),
    ("tv", dict(beta=1.5, V=3.0), lambda a: _np_tv(a, 1.5, 3.0)),
    ("l6", {}, lambda a: (a ** 6).sum()),
    ("sqrt_tv", {}, lambda a: _np_tv(a, 1.0, 1.0) * a.shape[1] * a.shape[2]),
]


@pytest.mark.parametrize("name,params,reference", CASES)
def test_value_and_gradient(name, params, reference):
    torch.manual_seed(1)
    x = (torch.randn(2, 3, 7, 9, dtype=torch.float64) * 40).requires_grad_(True)
    fn = R.REGULARIZERS[name]
    val = fn(x, **params)
    assert val.shape == (2,)
    for i in range(2):  # one value per sample, each from its own sample only
        ref = reference(x[i].detach().numpy())
        assert val[i].item() == pytest.approx(ref, rel=1e-7)
    (grad,) = torch.autograd.grad(val.sum(), x)
    idx, fd = _fd_grad(lambda z: fn(z, **params), x, eps=1e-4)
    np.testing.assert_allclose(grad.reshape(-1)[idx].numpy(), fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_tv_of_constant_and_ramp():
    x = torch.full((1, 3, 5, 6), 7.0, dtype=torch.float64)
    assert R.tv(x).item() == 0
    ramp = torch.arange(6, dtype=torch.float64).expand(1, 3, 5, 6).clone()
    # every forward difference is 1 except the replicated last column: 3 channels x 5 rows x 5 columns
    assert R.tv(ramp, beta=2.0, V=1.0).item() == pytest.approx(3 * 5 * 5 / 30)


def test_projection_is_a_ball_not_a_clamp():
    cfg = Config(Bplus=160.0)
    x = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    x[0, :, 0, 0] = torch.tensor([300.0, 400.0, 0.0])   # norm 500 -> scaled to 160, direction kept
    x[0, :, 1, 1] = torch.tensor([100.0, -100.0, 50.0])  # norm 150 -> untouched
    before = x.clone()
    project_ball(x, None, cfg)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [96.0, 128.0, 0.0], rtol=1e-12)
    np.testing.assert_allclose(x[0, :, 1, 1].numpy(), before[0, :, 1, 1].numpy())
    assert x.norm(dim=1).max().item() <= 160 + 1e-9
