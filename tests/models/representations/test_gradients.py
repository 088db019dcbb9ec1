"""Input gradients of HOG, HOGb and DSIFT against float64 central finite differences, and the float32
module's gradient (VLFeat-exact values) against the float64 one."""
import numpy as np
import pytest
import torch

from preimage.models.representations import build

SPECS = ["hog:cell=4", "hog:cell=4,variant=dalaltriggs", "hogb:cell=4", "hogb:cell=3,variant=dalaltriggs",
         "dsift:bin=3,step=2", "dsift:bin=3,step=3,fast=false"]


def _image(spec, seed=0):
    """A smooth random image (no exact ties between channels or orientation bins)."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = (1, 15, 14) if spec.startswith("dsift") else (3, 14, 13)
    base = torch.nn.functional.interpolate(torch.rand(1, c, 5, 5, generator=g, dtype=torch.float64), (h, w),
                                           mode="bilinear", align_corners=False)
    return base + 0.05 * torch.rand(1, c, h, w, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("spec", SPECS)
def test_gradient_matches_finite_differences(spec):
    net = build(spec, dtype=torch.float64)
    x = _image(spec).requires_grad_()
    out = net(x)[net.name]
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    rng = np.random.default_rng(2)
    eps = 1e-6
    for _ in range(4):  # directional derivatives along random directions
        d = torch.from_numpy(rng.standard_normal(x.shape))
        with torch.no_grad():
            fd = ((net(x + eps * d)[net.name] * w).sum() - (net(x - eps * d)[net.name] * w).sum()) / (2 * eps)
        an = (grad * d).sum()
        assert abs(an - fd) <= 1e-5 * max(1.0, abs(fd)), f"{spec}: autograd {an.item():.8f} vs FD {fd.item():.8f}"


@pytest.mark.parametrize("spec", ["hog:cell=4", "hogb:cell=4", "dsift:bin=3,step=2"])
def test_float32_gradient_is_the_float64_one(spec):
    x64 = _image(spec, seed=3)
    grads = []
    for dtype in (torch.float64, torch.float32):
        net = build(spec, dtype=dtype)
        x = x64.to(dtype).requires_grad_()
        out = net(x)[net.name]
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
        (g,) = torch.autograd.grad((out * w).sum(), x)
        grads.append(g.double())
    assert torch.isfinite(grads[1]).all()
    err = (grads[1] - grads[0]).abs().max() / grads[0].abs().max()
    assert err < 1e-3, f"{spec}: float32 gradient differs by {err:.2e}"


def test_zero_gradients_are_finite():
    """A flat image (zero gradients everywhere) gives finite, zero input gradients."""
    for spec in ("hog", "hogb", "dsift"):
        net = build(spec)
        x = torch.full((1, 3, 40, 40), 0.5, requires_grad=True)
        net(x)[net.name].sum().backward()
        assert torch.isfinite(x.grad).all(), spec


def test_lbp_is_forward_only():
    from preimage.errors import PreimageError

    net = build("lbp")
    with pytest.raises(PreimageError, match="not differentiable"):
        net(torch.rand(1, 3, 40, 40, requires_grad=True))
    with torch.no_grad():
        assert not net(torch.rand(1, 3, 40, 40, requires_grad=True))["lbp"].requires_grad
