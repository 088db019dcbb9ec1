"""Optimizers that update an image batch in place, elementwise (so each sample's steps are independent of
the others in its batch), plus per-step hooks (projection, small-contribution clipping).

AdaGrad with momentum (Mahendran & Vedaldi 2016, Algorithm 1), per component, with rho = 0.9:

    G  <- rho G + g^2
    eta <- s / (1/eta0 + sqrt(G))          (s: the schedule's rate multiplier, 1 then 0.1)
    mu <- rho mu - eta g
    x  <- project_{B+}(x + mu)

Convention (stated, as the paper and the released code differ): eta0 = 0.05 B^2 / alpha as in the released
code, and g is the gradient of H W * E(x) (H W: the canvas size), so the regularizers' 1/(H W) does not
shrink the step; AdaGrad's statistics G are kept on that g (``grad_scale="hw"``, the default).
``grad_scale="rate"`` is the released code's literal form instead (statistics on the gradient of E, the
rate multiplied by H W); ``"none"`` steps on the gradient of E itself.
"""
import torch

from ..errors import PreimageError
from ..registry import Registry

HOOKS = Registry("step hook")


class AdaGradMomentum:
    name = "adagrad"

    def __init__(self, eta0, rho=0.9):
        self.eta0 = float(eta0)
        self.rho = float(rho)
        self.G = None
        self.mu = None

    def reset(self):
        self.G = self.mu = None

    @torch.no_grad()
    def step(self, x, g, scale=1.0, rate=1.0, gain=1.0):
        """One step on the gradient ``gain * g`` (gain: the H W factor, folded in to save a pass)."""
        if self.G is None:
            self.G = torch.zeros_like(x)
            self.mu = torch.zeros_like(x)
        self.G.mul_(self.rho).addcmul_(g, g, value=gain * gain)
        denom = self.G.sqrt().add_(1.0 / self.eta0)
        self.mu.mul_(self.rho).addcdiv_(g, denom, value=-scale * rate * gain)
        x.add_(self.mu)


class Adam:
    """Adam (Kingma & Ba) with bias correction, written out so its state is plain per-element tensors."""

    name = "adam"

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr = float(lr)
        self.b1, self.b2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.reset()

    def reset(self):
        self.m = self.v = None
        self.t = 0

    @torch.no_grad()
    def step(self, x, g, scale=1.0, rate=1.0, gain=1.0):
        if gain != 1.0:
            g = g * gain
        if self.m is None:
            self.m = torch.zeros_like(x)
            self.v = torch.zeros_like(x)
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        mhat = self.m / (1 - self.b1 ** self.t)
        vhat = self.v / (1 - self.b2 ** self.t)
        x.addcdiv_(mhat, vhat.sqrt().add_(self.eps), value=-self.lr * scale * rate)


OPTIMIZERS = {"adagrad": AdaGradMomentum, "adam": Adam}


def make(name, cfg):
    if name == "adagrad":
        eta0 = cfg.eta0 if cfg.eta0 is not None else 0.05 * cfg.B ** 2 / cfg.alpha
        return AdaGradMomentum(eta0, rho=cfg.rho)
    if name == "adam":
        return Adam(cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    raise PreimageError(f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZERS)}")


# ---- per-step hooks: hook(x, grad, cfg) modifies x in place after the step --------------------------
@HOOKS.register("project")
@torch.no_grad()
def project_ball(x, grad, cfg):
    """Project each pixel's colour vector onto the ball of radius B+ (not a per-channel clamp)."""
    if cfg.Bplus is None:
        return
    sq = (x * x).sum(dim=1, keepdim=True)
    x.mul_((cfg.Bplus * cfg.Bplus / sq.clamp_min_(1e-24)).clamp_(max=1.0).sqrt_())


@HOOKS.register("clip")
@torch.no_grad()
def clip_small_contributions(x, grad, cfg):
    """Zero the pixels whose contribution |sum_c grad * x| is below the given per-sample percentile
    (zero is the mean colour since x is mean subtracted); grad from before the step, x after it."""
    if not cfg.clip_percentile:
        return
    n = x.shape[0]
    contrib = (grad * x).sum(dim=1).abs().reshape(n, -1)  # N x HW
    threshold = torch.quantile(contrib, cfg.clip_percentile / 100.0, dim=1, keepdim=True)
    keep = (contrib >= threshold).reshape(n, 1, *x.shape[2:])
    x.mul_(keep)
