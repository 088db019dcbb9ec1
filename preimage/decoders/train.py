"""Train a decoder on a feature store: Adam, step LR drops, validation, exact resume, DDP.

One process::

    train_decoder("feats/", "runs/fc8", arch="alexnet_fc8", batch=64, iters=100_000)

Several (one per GPU, or CPU processes with gloo), same arguments, through torchrun::

    torchrun --nproc_per_node 4 -m preimage decoder train feats/ --arch alexnet_fc8 -o runs/fc8

The run folder holds ``checkpoint.pt`` (everything needed to continue exactly: model, optimiser,
schedule, gradient scaler, data position, RNG states, partial logging window), ``metrics.jsonl`` (one
JSON object per logged step), ``samples/`` (reconstruction grids of validation images) and ``tb/``
(TensorBoard scalars and image grids, when tensorboard is installed). Running the same command again
resumes from the checkpoint; the loss curve continues exactly as if never interrupted.
"""
import json
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..device import resolve_device
from ..errors import PreimageError
from ..fileio import atomic_path, write_text_atomic
from .architectures import build_decoder, encoder_geometry, _json_stages
from .dataset import BatchStream, FeatureStore, TargetTransform, iterate_rows

CHECKPOINT_FORMAT = "preimage-decoder/1"


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


def _dist_setup(device):
    """Initialise torch.distributed when launched by torchrun; returns (rank, world, device, whether
    this call opened the process group, so that the caller closes it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device, False
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    opened = not dist.is_initialized()
    if opened:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, opened


def _all_mean(t, world):
    if world > 1:
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
        t /= world
    return t


def _all_sum(t, world):
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


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


class _Interrupt:
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


def _rng_state(device):
    # plain tensors / ints / tuples only, so checkpoints load with torch.load(weights_only=True)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": random.getstate(),
          "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                    "cached": float(cached)}}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st, device):
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(st["python"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def _grid(target_tf, recon, target, path, writer, it):
    import torchvision

    imgs = torch.cat([target_tf.inverse(target.float()), target_tf.inverse(recon.float())]).clamp(0, 255) / 255.0
    grid = torchvision.utils.make_grid(imgs, nrow=target.shape[0], padding=2)
    from ..preprocess import save_image

    save_image(path, (grid.permute(1, 2, 0) * 255).cpu().numpy())
    if writer is not None:
        writer.add_image("val/targets_top_reconstructions_bottom", grid, it)


def store_id(store):
    """A fingerprint of a feature store (its index: model, layer, shapes, shards, image paths; and the first
    64 KiB of its first and last feature shards, since stores written from arrays may share an index), so
    that a run folder can tell which store it was trained on (a moved or copied store keeps its id)."""
    import hashlib

    h = hashlib.sha1(json.dumps(store.index, sort_keys=True).encode())
    shards = store.index.get("shards") or []
    for s in shards[:1] + shards[-1:]:
        try:
            with open(os.path.join(store.path, s["features"]), "rb") as f:
                h.update(f.read(1 << 16))
        except OSError:
            pass  # an unreadable shard is reported when training reads it
    return h.hexdigest()[:16]


def _check_same_store(ckpt, store, run_dir):
    if "store_id" in ckpt:
        same = ckpt["store_id"] == store_id(store)
    else:  # checkpoints written before store ids: compare what they recorded
        same = (ckpt.get("layer"), list(ckpt.get("feature_shape", [])), list(ckpt.get("image_shape", [])),
                ckpt.get("model_path")) == (store.layer, list(store.feature_shape), list(store.image_shape),
                                            store.index.get("model"))
    if not same:
        raise PreimageError(f"this run was trained on the feature store {ckpt.get('store') or '(unrecorded)'}, not on "
                            f"{os.path.abspath(store.path)}: use a new run folder (-o), or pass --other-store to "
                            "continue it on the new store", path=run_dir)


def train_decoder(store, run_dir, arch=None, *, encoder=None, device="auto", stop_after=None, progress=True,
                  tensorboard=True, other_store=False, **options):
    """Train (or resume training of) a decoder; returns a summary dict (iter, train_loss, val_loss, ...).

    ``store``: a feature store folder or :class:`FeatureStore`. ``options``: fields of :class:`TrainConfig`.
    ``encoder``: the model's feature callable, needed by ``mirror`` (its geometry) and ``deepsim`` (its
    feature loss); a path is loaded with the ONNX -> torch converter. ``stop_after``: stop (with a
    checkpoint) once this many iterations are done, as an interruption would. A run folder trained on
    another feature store is refused unless ``other_store=True`` (fine-tuning on new data).
    """
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    run_dir = os.fspath(run_dir)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    device = resolve_device(device)
    rank, world, device, opened_group = _dist_setup(device)
    ckpt = None
    if os.path.isfile(ckpt_path):
        ckpt = load_checkpoint(ckpt_path)
        if not other_store:
            _check_same_store(ckpt, store, run_dir)
        cfg = TrainConfig(**ckpt["config"])
        for k in ("iters", "log_every", "val_every", "ckpt_every", "val_max"):  # what may change on resume
            if options.get(k) is not None:
                setattr(cfg, k, options[k])
        if arch is not None and arch != cfg.arch:
            raise PreimageError(f"the run folder holds a '{cfg.arch}' run, not '{arch}': use a new folder", path=run_dir)
    else:
        unknown = set(options) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise PreimageError(f"unknown training options: {', '.join(sorted(unknown))}")
        cfg = TrainConfig(**{k: v for k, v in options.items() if v is not None})
        if arch is not None:
            cfg.arch = arch
    if cfg.lr_steps is None:
        cfg.lr_steps = cfg.milestones()

    if isinstance(encoder, (str, os.PathLike)):
        from .extract import resolve_encoder

        layers = [store.layer] + ([cfg.feature_layer] if cfg.feature_layer else [])
        encoder, _ = resolve_encoder(encoder, layers if len(layers) > 1 else layers[0], device)
    arch_options = dict(cfg.arch_options)
    if cfg.arch == "mirror" and "stages" not in arch_options:
        if encoder is None:
            raise PreimageError("the mirror decoder is built from the encoder's geometry: pass the model (--model)")
        arch_options["stages"] = _json_stages(encoder_geometry(encoder, store.image_shape, device))
        cfg.arch_options = arch_options

    torch.manual_seed(cfg.seed)
    model = build_decoder(cfg.arch, store.feature_shape, store.image_shape, **arch_options).to(device)
    adversarial = getattr(model, "adversarial", False)
    if adversarial and (encoder is None or not cfg.feature_layer):
        raise PreimageError("deepsim trains with an encoder feature loss: pass --model and --feature-layer")
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    gen = model.generator if adversarial else model
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.lr_steps, gamma=cfg.lr_gamma)
    d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=cfg.lr, betas=tuple(cfg.betas)) if adversarial else None
    d_sched = torch.optim.lr_scheduler.MultiStepLR(d_opt, milestones=cfg.lr_steps, gamma=cfg.lr_gamma) if adversarial else None
    amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    if amp and device.type != "cuda":
        raise PreimageError("mixed precision (--amp on) needs a CUDA device")
    # bfloat16 where the GPU has it: no loss scaling, so no GradScaler and its per-step host sync
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    d_scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

    start, window, bal = 0, [0.0, 0], [None, None]
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if adversarial:
            d_opt.load_state_dict(ckpt["d_optimizer"])
            d_sched.load_state_dict(ckpt["d_scheduler"])
            d_scaler.load_state_dict(ckpt["d_scaler"])
            bal = list(ckpt["train_state"]["balance"])
        start = ckpt["iter"]
        window = list(ckpt["train_state"]["window"])
        _set_rng_state(ckpt["rng"], device)
        if rank == 0 and progress:
            tqdm.write(f"resuming {run_dir} from iteration {start}")

    ddp_gen, ddp_disc = gen, (model.discriminator if adversarial else None)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        ddp_gen = DDP(gen, device_ids=ids)
        if adversarial:
            ddp_disc = DDP(model.discriminator, device_ids=ids)

    target_tf = TargetTransform(store.preprocess, store.image_shape).to(device)
    val_rows = store.split("val")
    if cfg.val_max is not None:
        val_rows = val_rows[:cfg.val_max]
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    writer = None
    if rank == 0:
        os.makedirs(os.path.join(run_dir, "samples"), exist_ok=True)
        _truncate_metrics(metrics_path, start)
        write_text_atomic(os.path.join(run_dir, "config.json"), json.dumps(asdict(cfg), indent=1))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=start)
            except ImportError:
                tqdm.write("note: tensorboard is not installed (pip install tensorboard); writing metrics.jsonl and samples/ only")

    stream = BatchStream(store, store.split("train"), cfg.batch, seed=cfg.seed, start=start, rank=rank, world=world,
                         device=device)

    this_store = store_id(store)

    def save(it):
        if rank != 0:
            return
        state = {
            "format": CHECKPOINT_FORMAT, "arch": cfg.arch, "arch_options": cfg.arch_options,
            "feature_shape": list(store.feature_shape), "image_shape": list(store.image_shape), "layer": store.layer,
            "model_path": store.index.get("model"), "preprocess": store.preprocess.to_metadata(), "config": asdict(cfg),
            "store": os.path.abspath(store.path), "store_id": this_store,
            "iter": it, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(), "rng": _rng_state(device),
            "train_state": {"window": window, "balance": bal},
        }
        if adversarial:
            state.update(d_optimizer=d_opt.state_dict(), d_scheduler=d_sched.state_dict(), d_scaler=d_scaler.state_dict())
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    grid_batch = []

    def validate(it):
        gen.eval()
        sq = torch.zeros(2, device=device, dtype=torch.float64)
        mine = val_rows[rank::world]
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            for f, im in iterate_rows(store, mine, cfg.batch, device):
                out = gen(f).float()
                sq[0] += (out - target_tf(im)).double().pow(2).sum()
                sq[1] += out.numel()
        _all_sum(sq, world)
        val = (sq[0] / sq[1]).item() if sq[1] > 0 else None
        if rank == 0 and len(val_rows):
            if not grid_batch:  # the same validation rows every time: read and transform them once
                f, im = next(iterate_rows(store, val_rows[:cfg.grid_images], cfg.grid_images, device))
                grid_batch.extend((f, target_tf(im)))
            f, target = grid_batch
            with torch.no_grad():
                _grid(target_tf, gen(f), target, os.path.join(run_dir, "samples", f"iter-{it:07d}.png"), writer, it)
        gen.train()
        return val

    def recon_step(f, im):
        t = target_tf(im)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            out = ddp_gen(f)
        loss = F.mse_loss(out.float(), t)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        return loss.detach(), {}

    def gan_step(f, im):
        # The balancing rule needs last step's losses on the host: one sync per step (GAN training only).
        # Under DDP the losses are averaged over ranks first, so every rank takes the same decision.
        train_d, train_g = balance(*bal)
        t = target_tf(im)
        with torch.set_grad_enabled(train_g), torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            out = ddp_gen(f)
            real_feat = encoder(t)[cfg.feature_layer].detach()
            fake_feat = encoder(out)[cfg.feature_layer]
            logits_fake = model.discriminator(out)  # not the DDP wrapper: no gradient sync for this pass
        ones = torch.ones(out.shape[0], dtype=torch.long, device=device)
        l_img = euclidean_loss(out, t)
        l_feat = euclidean_loss(fake_feat, real_feat)
        l_adv = F.cross_entropy(logits_fake.float(), ones)
        g_loss = cfg.loss_image * l_img + cfg.loss_feature * l_feat + cfg.loss_adv * l_adv
        opt.zero_grad(set_to_none=True)
        if train_g:
            scaler.scale(g_loss).backward()
            scaler.step(opt)
            scaler.update()
        with torch.set_grad_enabled(train_d), torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            logits = ddp_disc(torch.cat([t, out.detach()]))
        labels = torch.cat([ones, torch.zeros_like(ones)])
        d_loss = F.cross_entropy(logits.float(), labels)
        d_opt.zero_grad(set_to_none=True)  # also drops the generator pass's gradients on the discriminator
        if train_d:
            d_scaler.scale(d_loss).backward()
            d_scaler.step(d_opt)
            d_scaler.update()
        sched.step()
        d_sched.step()
        losses = _all_mean(torch.stack([d_loss.detach(), l_adv.detach(), l_img.detach(), l_feat.detach()]).float(), world)
        bal[0], bal[1], li, lf = losses.tolist()
        return g_loss.detach(), {"image_loss": li, "feature_loss": lf, "adv_loss": bal[1], "disc_loss": bal[0],
                                 "train_disc": train_d, "train_gen": train_g}

    step = gan_step if adversarial else recon_step
    model.train()
    if encoder is not None and hasattr(encoder, "eval"):
        encoder.eval()
    it, last = start, {}
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    loss_sum += window[0]
    n_in_window = window[1]
    wait, t0, n_imgs = 0.0, time.perf_counter(), 0
    bar = tqdm(total=cfg.iters, initial=start, desc=f"train {cfg.arch}", unit="it", disable=not progress or rank != 0)
    try:
        with _Interrupt() as intr:
            while it < cfg.iters:
                tw = time.perf_counter()
                f, im = next(stream)
                wait += time.perf_counter() - tw
                loss, extra = step(f, im)
                it += 1
                n_imgs += cfg.batch
                loss_sum += loss
                n_in_window += 1
                bar.update(1)
                do_val = (it % cfg.val_every == 0 or it == cfg.iters) and len(val_rows) > 0
                if it % cfg.log_every == 0 or it == cfg.iters or do_val:
                    train_loss = (_all_mean(loss_sum, world) / n_in_window).item()
                    loss_sum.zero_()
                    n_in_window = 0
                    dt = time.perf_counter() - t0
                    rec = {"iter": it, "train_loss": train_loss, "lr": sched.get_last_lr()[0],
                           "images_per_s": n_imgs / dt if dt > 0 else None, "data_wait": wait / dt if dt > 0 else None}
                    rec.update(extra)
                    if do_val:
                        rec["val_loss"] = validate(it)
                    if rank == 0:
                        _append_metrics(metrics_path, rec)
                        if writer is not None:
                            for k, v in rec.items():
                                if k != "iter" and isinstance(v, (int, float)) and v is not None:
                                    writer.add_scalar(k, v, it)
                        bar.set_postfix(loss=f"{train_loss:.4g}", **({"val": f"{rec['val_loss']:.4g}"} if rec.get("val_loss") is not None else {}))
                    last = rec
                    wait, t0, n_imgs = 0.0, time.perf_counter(), 0
                stopping = stop_after is not None and it >= stop_after
                if world == 1:
                    stopping = stopping or intr.requested
                elif it % cfg.log_every == 0 and it < cfg.iters:  # ranks agree on a Ctrl-C at logging steps
                    import torch.distributed as dist

                    flag = torch.tensor(float(intr.requested), device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    stopping = stopping or bool(flag.item())
                if it % cfg.ckpt_every == 0 or it == cfg.iters or stopping:
                    window = [float(_all_mean(loss_sum, world).item()), n_in_window]
                    save(it)
                if stopping:
                    break
    finally:
        stream.close()
        bar.close()
        if writer is not None:
            writer.close()
        if opened_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    if not last and rank == 0 and os.path.isfile(metrics_path):  # nothing left to do: report the last logged step
        logged = read_metrics(run_dir)
        last = logged[-1] if logged else {}
    return {"iter": it, "finished": it >= cfg.iters, "run_dir": run_dir, **{k: v for k, v in last.items() if k != "iter"}}


def _append_metrics(path, rec):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def _truncate_metrics(path, upto):
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


def load_checkpoint(path):
    path = os.fspath(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickling errors are long; say what was expected
        raise PreimageError(f"not a readable decoder checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})", path=path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PreimageError(f"not a preimage decoder checkpoint (expected format {CHECKPOINT_FORMAT})", path=path)
    return ckpt


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
