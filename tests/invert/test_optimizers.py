"""Optimizer steps against independent float64 transcriptions (NumPy Algorithm 1; torch.optim.Adam)."""
import numpy as np
import pytest
import torch

from preimage.invert.optimizers import AdaGradMomentum, Adam, clip_small_contributions, project_ball
from preimage.invert.presets import Config


def _algorithm1_numpy(x, grad_fn, eta0, rho, radius, steps, scale=1.0):
    """Mahendran & Vedaldi Algorithm 1, written from the paper: per component, then projection per pixel."""
    G = np.zeros_like(x)
    mu = np.zeros_like(x)
    xs = []
    for _ in range(steps):
        g = grad_fn(x)
        G = rho * G + g * g
        eta = scale / (1 / eta0 + np.sqrt(G))
        mu = rho * mu - eta * g
        x = x + mu
        norm = np.sqrt((x ** 2).sum(axis=1, keepdims=True))
        x = np.where(norm > radius, x * radius / np.maximum(norm, 1e-300), x)
        xs.append(x.copy())
    return xs


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_adagrad_momentum_matches_algorithm1(scale):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3 * 4 * 4,))
    target = rng.normal(size=(2, 3, 4, 4)) * 100
    grad_np = lambda x: A.reshape(1, 3, 4, 4) * (x - target) * 3.0  # noqa: E731
    x0 = rng.normal(size=(2, 3, 4, 4)) * 30
    eta0 = 0.05 * 80 ** 2 / 6
    ref = _algorithm1_numpy(x0.copy(), grad_np, eta0, 0.9, 160.0, 20, scale)

    cfg = Config(Bplus=160.0)
    opt = AdaGradMomentum(eta0, rho=0.9)
    x = torch.from_numpy(x0.copy())
    for k in range(20):
        g = torch.from_numpy(grad_np(x.numpy()))
        opt.step(x, g, scale)
        project_ball(x, g, cfg)
        np.testing.assert_allclose(x.numpy(), ref[k], rtol=1e-10, atol=1e-10)
    assert x.norm(dim=1).max() <= 160 + 1e-9


def test_adam_matches_torch_adam():
    torch.manual_seed(0)
    x0 = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    target = torch.randn_like(x0)
    p = x0.clone().requires_grad_(True)
    ref = torch.optim.Adam([p], lr=0.3, betas=(0.9, 0.99), eps=1e-8)
    mine = Adam(0.3, betas=(0.9, 0.99), eps=1e-8)
    x = x0.clone()
    for _ in range(15):
        ref.zero_grad()
        ((p - target) ** 4).sum().backward()
        ref.step()
        mine.step(x, 4 * (x - target) ** 3)
        np.testing.assert_allclose(x.numpy(), p.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_small_contribution_clipping_zeroes_the_lowest_pixels_per_sample():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    g = torch.randn_like(x)
    contrib = (g * x).sum(1).abs().reshape(2, -1)
    cfg = Config(clip_percentile=21.4)
    y = x.clone()
    clip_small_contributions(y, g, cfg)
    for i in range(2):
        thr = np.percentile(contrib[i].numpy(), 21.4)
        zeroed = (y[i] == 0).all(0).reshape(-1).numpy()
        np.testing.assert_array_equal(zeroed, contrib[i].numpy() < thr)
        kept = ~zeroed
        np.testing.assert_array_equal(y[i].reshape(3, -1)[:, kept].numpy(), x[i].reshape(3, -1)[:, kept].numpy())
    assert 20 <= int((y == 0).all(1).sum()) // 2 <= 22
