"""The training loop: a :class:`Trainer` runs a step strategy (:mod:`.steps`) over a feature store.

The Trainer owns what every decoder's training shares: the loop and its data stream, checkpoints and
exact resume, validation and sample grids, logging (``metrics.jsonl``, TensorBoard, the progress bar),
DistributedDataParallel (through :class:`~.distributed.Distributed`) and mixed precision
(:class:`Precision`). What one step does (plain reconstruction, or DeePSiM's GAN step with its
balancing rule) is the strategy's::

    trainer = Trainer(store, "runs/fc8", cfg, model, ReconstructionStep(model, cfg, dist, precision),
                      dist=dist, precision=precision)
    trainer.resume(load_checkpoint("runs/fc8/checkpoint.pt"))   # when continuing
    summary = trainer.fit()

Exactness: the data order is a pure function of (seed, batch number) (:class:`~.dataset.BatchStream`),
and the checkpoint holds everything else that changes (model, the step's optimisers, schedules and
scalers, every rank's RNG states, the partial logging window), so a resumed run, on one process or
under DDP, continues the uninterrupted run's loss curve.
"""
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import torch
from tqdm import tqdm

from ..errors import PreimageError
from ..fileio import write_text_atomic
from ..preprocess import save_image
from .checkpoint import rng_state, save_checkpoint, set_rng_state
from .dataset import BatchStream, TargetTransform, iterate_rows, store_id
from .steps import GANStep, ReconstructionStep  # noqa: F401  the strategies, importable beside the Trainer


@dataclass
class TrainConfig:
    arch: str = "alexnet_fc8"
    batch: int = 64                       # global batch (split evenly over DDP ranks)
    iters: int = 10000
    lr: float = 1e-4
    lr_steps: Optional[List[int]] = None  # iterations at which the LR is multiplied by lr_gamma (default 60%, 85%)
    lr_gamma: float = 0.1
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    log_every: int = 50
    val_every: int = 1000
    val_max: Optional[int] = 2048         # at most this many validation images per measurement
    ckpt_every: int = 1000
    grid_images: int = 8
    seed: int = 0
    amp: str = "auto"                     # "auto" (on for CUDA), "on", "off"
    arch_options: dict = field(default_factory=dict)
    # DeePSiM (arch "deepsim") loss weights, as released: image L2, encoder feature L2, adversarial
    loss_image: float = 2e-6
    loss_feature: float = 0.01
    loss_adv: float = 100.0
    feature_layer: Optional[str] = None

    def milestones(self):
        return sorted(self.lr_steps) if self.lr_steps is not None else [int(self.iters * 0.6), int(self.iters * 0.85)]


class Precision:
    """Mixed precision: off on CPU; on CUDA bfloat16 autocast where the GPU has it (no loss scaling, so no
    GradScaler and its per-step host sync), float16 + GradScaler otherwise."""

    def __init__(self, mode, device):
        self.device = device
        self.enabled = mode == "on" or (mode == "auto" and device.type == "cuda")
        if self.enabled and device.type != "cuda":
            raise PreimageError("mixed precision (--amp on) needs a CUDA device")
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.enabled)

    def scaler(self):
        return torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)


class Interrupt:
    """Turn the first Ctrl-C into a request to stop after the current step (the second one is a hard stop)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, *a):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *a):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per logged step) and TensorBoard scalars/images, on rank 0 only."""

    def __init__(self, run_dir, start, tensorboard, enabled):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        truncate_metrics(self.path, start)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: only when tensorboard is installed

                self.writer = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=start)
            except ImportError:
                tqdm.write("note: tensorboard is not installed (pip install tensorboard); writing metrics.jsonl and "
                           "samples/ only")

    def write(self, rec):
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            for k, v in rec.items():
                if k != "iter" and isinstance(v, (int, float)) and v is not None:
                    self.writer.add_scalar(k, v, rec["iter"])

    def image(self, tag, grid, it):
        if self.writer is not None:
            self.writer.add_image(tag, grid, it)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class Progress:
    """Rank 0's progress bar with the live training loss. The loss is read from the device every ``every``
    steps only (one host sync per ``every`` steps; the mean of rank 0's steps since the last reading)."""

    def __init__(self, cfg, start, enabled, every=10, device="cpu"):
        self.enabled = enabled
        self.every = max(1, every)
        self.bar = tqdm(total=cfg.iters, initial=start, desc=f"train {cfg.arch}", unit="it", disable=not enabled)
        self.sum = torch.zeros((), device=device, dtype=torch.float64)
        self.n = 0
        self.postfix = {}

    def step(self, it, loss):
        if not self.enabled:
            return
        self.sum += loss
        self.n += 1
        self.bar.update(1)
        if it % self.every == 0:
            self.show(loss=(self.sum / self.n).item())

    def show(self, **values):
        if not self.enabled:
            return
        if "loss" in values:
            self.sum.zero_()
            self.n = 0
        self.postfix.update({k: f"{v:.4g}" for k, v in values.items() if v is not None})
        self.bar.set_postfix(self.postfix)

    def close(self):
        self.bar.close()


def tile(imgs, ncol, pad=2):
    """N x C x H x W -> one C x H' x W' picture, ``ncol`` per row, ``pad`` black pixels around each."""
    n, c, h, w = imgs.shape
    ncol = min(ncol, n)
    nrow = -(-n // ncol)
    out = imgs.new_zeros(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        y, x = pad + (i // ncol) * (h + pad), pad + (i % ncol) * (w + pad)
        out[:, y:y + h, x:x + w] = imgs[i]
    return out


class Trainer:
    """Runs ``step`` (a strategy from :mod:`.steps`) on ``store``'s train split; writes ``run_dir``.

    ``model``: the whole decoder module (saved in checkpoints); ``meta``: what the checkpoint records of
    the decoder besides its weights (see :mod:`.checkpoint`).
    """

    def __init__(self, store, run_dir, cfg, model, step, *, dist, precision, meta=None, tensorboard=True, progress=True):
        self.store, self.run_dir, self.cfg, self.model, self.step = store, os.fspath(run_dir), cfg, model, step
        self.dist, self.precision, self.device = dist, precision, dist.device
        self.meta = dict(meta or {})
        self.tensorboard, self.progress = tensorboard, progress
        self.start = 0
        self.window = [0.0, 0]  # loss sum and number of steps of the logging window in progress
        self.target_tf = TargetTransform(store.preprocess, store.image_shape).to(self.device)
        self.val_rows = store.split("val")
        if cfg.val_max is not None:
            self.val_rows = self.val_rows[:cfg.val_max]
        self.store_id = store_id(store)
        self._grid_batch = None

    @property
    def checkpoint_path(self):
        return os.path.join(self.run_dir, "checkpoint.pt")

    def resume(self, ckpt):
        """Continue from a loaded checkpoint: model, step state, iteration, window and this rank's RNG."""
        self.model.load_state_dict(ckpt["model"])
        self.step.load_state_dict(ckpt)
        self.start = int(ckpt["iter"])
        self.window = list(ckpt["train_state"]["window"])
        ranks = ckpt.get("rng_ranks")
        set_rng_state(ranks[self.dist.rank] if ranks and len(ranks) == self.dist.world else ckpt["rng"], self.device)
        if self.dist.main and self.progress:
            tqdm.write(f"resuming {self.run_dir} from iteration {self.start}")

    def save(self, it, window):
        """A checkpoint at iteration ``it`` (a collective: every rank calls it; rank 0 writes)."""
        rngs = self.dist.gather(rng_state(self.device))
        if not self.dist.main:
            return
        state = {**self.meta, "config": asdict(self.cfg), "store": os.path.abspath(self.store.path),
                 "store_id": self.store_id, "iter": it, "model": self.model.state_dict(), **self.step.state_dict(),
                 "rng": rngs[0], "rng_ranks": rngs, "train_state": {"window": window, **self.step.train_state()}}
        save_checkpoint(self.checkpoint_path, state)

    def validate(self, it, log):
        """Validation MSE over the val split (shared over ranks), and rank 0's sample grid."""
        gen, dist = self.step.generator, self.dist
        gen.eval()
        sq = torch.zeros(2, device=self.device, dtype=torch.float64)
        with torch.no_grad(), self.precision.autocast():
            for f, im in iterate_rows(self.store, self.val_rows[dist.rank::dist.world], self.cfg.batch, self.device):
                out = gen(f).float()
                sq[0] += (out - self.target_tf(im)).double().pow(2).sum()
                sq[1] += out.numel()
        dist.sum_(sq)
        val = (sq[0] / sq[1]).item() if sq[1] > 0 else None
        if dist.main and len(self.val_rows):
            self._sample_grid(it, log)
        gen.train()
        return val

    def _sample_grid(self, it, log):
        if self._grid_batch is None:  # the same validation rows every time: read and transform them once
            n = self.cfg.grid_images
            f, im = next(iterate_rows(self.store, self.val_rows[:n], n, self.device))
            self._grid_batch = (f, self.target_tf(im))
        f, target = self._grid_batch
        with torch.no_grad():
            recon = self.step.generator(f)
        tf = self.target_tf
        imgs = torch.cat([tf.inverse(target.float()), tf.inverse(recon.float())]).clamp(0, 255) / 255.0
        grid = tile(imgs, ncol=target.shape[0])
        save_image(os.path.join(self.run_dir, "samples", f"iter-{it:07d}.png"), (grid.permute(1, 2, 0) * 255).cpu().numpy())
        log.image("val/targets_top_reconstructions_bottom", grid, it)

    def _prepare_run_dir(self):
        if self.dist.main:
            os.makedirs(os.path.join(self.run_dir, "samples"), exist_ok=True)
            write_text_atomic(os.path.join(self.run_dir, "config.json"), json.dumps(asdict(self.cfg), indent=1))

    def fit(self, stop_after=None):
        """Train to ``cfg.iters`` (or until ``stop_after`` iterations / Ctrl-C, with a checkpoint); a summary dict."""
        cfg, dist = self.cfg, self.dist
        self._prepare_run_dir()
        log = MetricsLog(self.run_dir, self.start, self.tensorboard, dist.main)
        bar = Progress(cfg, self.start, self.progress and dist.main, every=min(cfg.log_every, 10), device=self.device)
        stream = BatchStream(self.store, self.store.split("train"), cfg.batch, seed=cfg.seed, start=self.start,
                             rank=dist.rank, world=dist.world, device=self.device)
        loop = _Loop(self, log, bar)
        self.model.train()
        try:
            with Interrupt() as intr:
                while loop.it < cfg.iters:
                    t_wait = time.perf_counter()
                    f, im = next(stream)
                    loop.wait += time.perf_counter() - t_wait
                    loss, extra = self.step(f, self.target_tf(im))
                    loop.after_step(loss, extra)
                    stopping = loop.stopping(stop_after, intr)
                    if loop.it % cfg.ckpt_every == 0 or loop.it == cfg.iters or stopping:
                        self.save(loop.it, [float(dist.mean(loop.loss_sum).item()), loop.n_in_window])
                    if stopping:
                        break
        finally:
            stream.close()
            bar.close()
            log.close()
        return loop.summary()


class _Loop:
    """The running state of one :meth:`Trainer.fit`: iteration, logging window, timings."""

    def __init__(self, trainer, log, bar):
        self.t, self.log, self.bar = trainer, log, bar
        self.it = trainer.start
        self.loss_sum = torch.zeros((), device=trainer.device, dtype=torch.float64) + trainer.window[0]
        self.n_in_window = trainer.window[1]
        self.last = {}
        self._reset_timing()

    def _reset_timing(self):
        self.wait, self.t0, self.n_imgs = 0.0, time.perf_counter(), 0

    def after_step(self, loss, extra):
        cfg, t = self.t.cfg, self.t
        self.it += 1
        self.n_imgs += cfg.batch
        self.loss_sum += loss
        self.n_in_window += 1
        self.bar.step(self.it, loss)
        do_val = (self.it % cfg.val_every == 0 or self.it == cfg.iters) and len(t.val_rows) > 0
        if not (self.it % cfg.log_every == 0 or self.it == cfg.iters or do_val):
            return
        train_loss = (t.dist.mean(self.loss_sum) / self.n_in_window).item()
        self.loss_sum.zero_()
        self.n_in_window = 0
        dt = time.perf_counter() - self.t0
        rec = {"iter": self.it, "train_loss": train_loss, "lr": t.step.lr(),
               "images_per_s": self.n_imgs / dt if dt > 0 else None, "data_wait": self.wait / dt if dt > 0 else None}
        rec.update(extra)
        if do_val:
            rec["val_loss"] = t.validate(self.it, self.log)
        self.log.write(rec)
        self.bar.show(val=rec.get("val_loss"))
        self.last = rec
        self._reset_timing()

    def stopping(self, stop_after, intr):
        cfg, dist = self.t.cfg, self.t.dist
        stop = stop_after is not None and self.it >= stop_after
        if dist.world == 1:
            return stop or intr.requested
        if self.it % cfg.log_every == 0 and self.it < cfg.iters:  # ranks agree on a Ctrl-C at logging steps
            stop = dist.any(intr.requested) or stop
        return stop

    def summary(self):
        t = self.t
        last = self.last
        if not last and t.dist.main and os.path.isfile(self.log.path):  # nothing left to do: the last logged step
            logged = read_metrics(t.run_dir)
            last = logged[-1] if logged else {}
        return {"iter": self.it, "finished": self.it >= t.cfg.iters, "run_dir": t.run_dir,
                **{k: v for k, v in last.items() if k != "iter"}}


def truncate_metrics(path, upto):
    """On resume, drop logged steps after the checkpoint (they will be recomputed identically)."""
    if not os.path.isfile(path):
        return
    keep = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:  # a line cut by a hard kill
                continue
            if rec.get("iter", 0) <= upto:
                keep.append(line if line.endswith("\n") else line + "\n")
    write_text_atomic(path, "".join(keep))


def read_metrics(run_dir):
    """The run's metrics.jsonl as a list of dicts (a last line cut by a hard kill is left out)."""
    out = []
    with open(os.path.join(os.fspath(run_dir), "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
