"""Step strategies for the :class:`~.trainer.Trainer`: one optimisation step on a batch, and its state.

A strategy owns its optimisers, LR schedules and gradient scalers, and answers::

    step(features, target) -> (loss: 0-dim tensor, extra: dict of logged numbers)
    step.generator          the module that decodes (validated, sampled)
    step.lr()               the current learning rate
    step.state_dict() / step.load_state_dict(ckpt)   what a checkpoint holds of it
    step.train_state()      small numbers the checkpoint keeps beside the window (GAN: the balance)

``ReconstructionStep``: L2 in the encoder's input space (Dosovitskiy & Brox; the PoseNet study).
``GANStep``: DeePSiM's image + encoder-feature + adversarial losses with its balancing rule.
"""
import torch
import torch.nn.functional as F


def euclidean_loss(a, b):
    """Caffe's EuclideanLoss: sum of squared differences / (2 N) (the scale DeePSiM's weights assume)."""
    return (a.float() - b.float()).pow(2).sum() / (2 * a.shape[0])


def balance(d_loss, g_adv_loss):
    """DeePSiM's released balancing rule -> (train discriminator?, train generator?).

    Pause the discriminator while its loss is under 0.1 x the generator's adversarial loss (it is
    winning); pause the generator while the discriminator's loss is over 10 x (it is losing).
    """
    if d_loss is None or g_adv_loss is None:
        return True, True
    return not (d_loss < 0.1 * g_adv_loss), not (d_loss > 10.0 * g_adv_loss)


class _Optimised:
    """Adam + step LR drops + a gradient scaler for one module (generator or discriminator)."""

    def __init__(self, params, cfg, precision, weight_decay=0.0):
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=weight_decay)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=cfg.lr_steps, gamma=cfg.lr_gamma)
        self.scaler = precision.scaler()

    def backward_step(self, loss):
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def state_dict(self, prefix=""):
        return {f"{prefix}optimizer": self.opt.state_dict(), f"{prefix}scheduler": self.sched.state_dict(),
                f"{prefix}scaler": self.scaler.state_dict()}

    def load_state_dict(self, ckpt, prefix=""):
        self.opt.load_state_dict(ckpt[f"{prefix}optimizer"])
        self.sched.load_state_dict(ckpt[f"{prefix}scheduler"])
        self.scaler.load_state_dict(ckpt[f"{prefix}scaler"])


class ReconstructionStep:
    """Mean squared error between the decoded image and the target, one Adam step."""

    def __init__(self, model, cfg, dist, precision):
        self.generator = model
        self.net = dist.wrap(model)
        self.g = _Optimised(model.parameters(), cfg, precision, cfg.weight_decay)
        self.precision = precision

    def __call__(self, f, t):
        with self.precision.autocast():
            out = self.net(f)
        loss = F.mse_loss(out.float(), t)
        self.g.opt.zero_grad(set_to_none=True)
        self.g.backward_step(loss)
        self.g.sched.step()
        return loss.detach(), {}

    def lr(self):
        return self.g.sched.get_last_lr()[0]

    def state_dict(self):
        return self.g.state_dict()

    def load_state_dict(self, ckpt):
        self.g.load_state_dict(ckpt)

    def train_state(self):
        return {}


class GANStep:
    """DeePSiM: generator loss = w_img * image L2 + w_feat * encoder feature L2 + w_adv * adversarial
    (Caffe EuclideanLoss scaling), discriminator on real vs decoded images, paused by :func:`balance`."""

    def __init__(self, model, cfg, dist, precision, encoder):
        self.generator, self.discriminator = model.generator, model.discriminator
        self.gen_net, self.disc_net = dist.wrap(model.generator), dist.wrap(model.discriminator)
        self.g = _Optimised(model.generator.parameters(), cfg, precision, cfg.weight_decay)
        self.d = _Optimised(model.discriminator.parameters(), cfg, precision)
        self.cfg, self.dist, self.precision, self.encoder = cfg, dist, precision, encoder
        self.bal = [None, None]  # last step's (discriminator loss, generator adversarial loss), rank-averaged

    def _generator_losses(self, f, t, train_g):
        with torch.set_grad_enabled(train_g), self.precision.autocast():
            out = self.gen_net(f)
            real_feat = self.encoder(t)[self.cfg.feature_layer].detach()
            fake_feat = self.encoder(out)[self.cfg.feature_layer]
            logits_fake = self.discriminator(out)  # not the DDP wrapper: no gradient sync for this pass
        ones = torch.ones(out.shape[0], dtype=torch.long, device=out.device)
        l_img = euclidean_loss(out, t)
        l_feat = euclidean_loss(fake_feat, real_feat)
        l_adv = F.cross_entropy(logits_fake.float(), ones)
        return out, l_img, l_feat, l_adv

    def __call__(self, f, t):
        # The balancing rule needs last step's losses on the host: one sync per step (GAN training only).
        # They are averaged over ranks first, so every rank takes the same decision.
        cfg = self.cfg
        train_d, train_g = balance(*self.bal)
        out, l_img, l_feat, l_adv = self._generator_losses(f, t, train_g)
        g_loss = cfg.loss_image * l_img + cfg.loss_feature * l_feat + cfg.loss_adv * l_adv
        self.g.opt.zero_grad(set_to_none=True)
        if train_g:
            self.g.backward_step(g_loss)
        with torch.set_grad_enabled(train_d), self.precision.autocast():
            logits = self.disc_net(torch.cat([t, out.detach()]))
        labels = torch.cat([torch.ones(len(t), dtype=torch.long, device=t.device),
                            torch.zeros(len(t), dtype=torch.long, device=t.device)])
        d_loss = F.cross_entropy(logits.float(), labels)
        self.d.opt.zero_grad(set_to_none=True)  # also drops the generator pass's gradients on the discriminator
        if train_d:
            self.d.backward_step(d_loss)
        self.g.sched.step()
        self.d.sched.step()
        losses = self.dist.mean(torch.stack([d_loss.detach(), l_adv.detach(), l_img.detach(), l_feat.detach()]).float())
        self.bal[0], self.bal[1], li, lf = losses.tolist()
        return g_loss.detach(), {"image_loss": li, "feature_loss": lf, "adv_loss": self.bal[1], "disc_loss": self.bal[0],
                                 "train_disc": train_d, "train_gen": train_g}

    def lr(self):
        return self.g.sched.get_last_lr()[0]

    def state_dict(self):
        return {**self.g.state_dict(), **self.d.state_dict("d_")}

    def load_state_dict(self, ckpt):
        self.g.load_state_dict(ckpt)
        self.d.load_state_dict(ckpt, "d_")
        self.bal = list(ckpt["train_state"]["balance"])

    def train_state(self):
        return {"balance": list(self.bal)}
