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

from ..registry import Registry

HOOKS = Registry("step hook")


OPTIMIZERS = Registry("optimizer")


class AdaGradMomentum:
    """Algorithm 1. torch.optim has no AdaGrad with this momentum form, hence written out; every
    hyperparameter may be a float or a per-sample tensor broadcastable to x (batched trials)."""

    name = "adagrad"

    def __init__(self, eta0, rho=0.9):
        self.eta0 = eta0 if isinstance(eta0, torch.Tensor) else float(eta0)
        self.rho = rho if isinstance(rho, torch.Tensor) else float(rho)
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

    def state_dict(self):
        return {"G": self.G, "mu": self.mu}

    def load_state_dict(self, state):
        self.G, self.mu = state["G"], state["mu"]


class Adam:
    """Adam (Kingma & Ba) with bias correction, written out for per-sample hyperparameters: torch.optim
    takes one learning rate per parameter group, and N trials of one batch need one per sample. With
    equal hyperparameters the registry's "adam" uses torch.optim.Adam itself (:class:`TorchAdam`)."""

    name = "adam"

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8):
        def f(v):
            return v if isinstance(v, torch.Tensor) else float(v)
        self.lr = f(lr)
        self.b1, self.b2 = (f(b) for b in betas)
        self.eps = f(eps)
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
        self.m.mul_(self.b1).add_(g * (1 - self.b1))
        self.v.mul_(self.b2).addcmul_(g, g * (1 - self.b2))
        mhat = self.m / (1 - self.b1 ** self.t)
        vhat = self.v / (1 - self.b2 ** self.t)
        x.sub_(mhat / vhat.sqrt().add_(self.eps) * (self.lr * scale * rate))

    def state_dict(self):
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state):
        self.m, self.v, self.t = state["m"], state["v"], state["t"]


class TorchAdam:
    """torch.optim.Adam on one image tensor (equal hyperparameters for the whole batch)."""

    name = "adam"

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.opt = None
        self._pending = None

    @torch.no_grad()
    def step(self, x, g, scale=1.0, rate=1.0, gain=1.0):
        if self.opt is None:
            self.opt = torch.optim.Adam([x], lr=self.lr * scale * rate, betas=self.betas, eps=self.eps)
            if self._pending is not None:
                self.opt.load_state_dict(self._pending)
        x.grad = g * gain if gain != 1.0 else g
        self.opt.step()
        x.grad = None

    def state_dict(self):
        return None if self.opt is None else self.opt.state_dict()

    def load_state_dict(self, state):
        self._pending = state


def _uniform(*values):
    return all(not isinstance(v, torch.Tensor) for v in values)


@OPTIMIZERS.register("adagrad")
def adagrad(eta0, rho=0.9):
    """AdaGrad with momentum (Algorithm 1); eta0 defaults to 0.05 B^2 / alpha in the presets."""
    return AdaGradMomentum(eta0, rho=rho)


@OPTIMIZERS.register("adam")
def adam(lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam: torch.optim.Adam when the batch shares its hyperparameters, else the per-sample form."""
    if _uniform(lr, beta1, beta2, eps):
        return TorchAdam(lr, betas=(beta1, beta2), eps=eps)
    return Adam(lr, betas=(beta1, beta2), eps=eps)


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
    q = cfg.clip_percentile
    if not isinstance(q, torch.Tensor) and not q:
        return
    n = x.shape[0]
    contrib = (grad * x).sum(dim=1).abs().reshape(n, -1)  # N x HW
    if isinstance(q, torch.Tensor):  # per-sample percentiles (batched trials): row i at its own q_i
        q = q.reshape(-1).to(contrib.dtype) / 100.0
        threshold = torch.quantile(contrib, q, dim=1).diagonal().unsqueeze(1)
    else:
        threshold = torch.quantile(contrib, q / 100.0, dim=1, keepdim=True)
    keep = (contrib >= threshold).reshape(n, 1, *x.shape[2:])
    x.mul_(keep)
