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

:func:`train_decoder` puts together what :class:`~.trainer.Trainer` runs: the configuration (a new
one, or the checkpoint's), the encoder, the decoder and its step strategy (:mod:`.steps`).
"""
import os

import torch

from ..device import resolve_device
from ..errors import PreimageError
from ..fileio import sha256_file
from ..models.representations import is_spec
from . import extract
from .architectures import build_decoder, encoder_geometry, stages_to_json
from .checkpoint import load_checkpoint
from .shallow_architectures import default_arch
from .dataset import FeatureStore, store_id
from ..distributed import Distributed
from .steps import GANStep, ReconstructionStep, balance, euclidean_loss
from .trainer import Precision, TrainConfig, Trainer, read_metrics

__all__ = ["TrainConfig", "balance", "euclidean_loss", "load_checkpoint", "read_metrics", "store_id", "train_decoder"]

RESUMABLE_OPTIONS = ("iters", "log_every", "val_every", "ckpt_every", "val_max")  # what may change on resume


def train_decoder(store, run_dir, arch=None, *, encoder=None, device="auto", stop_after=None, progress=True,
                  tensorboard=True, other_store=False, **options):
    """Train (or resume training of) a decoder; returns a summary dict (iter, train_loss, val_loss, ...).

    ``store``: a feature store folder or :class:`FeatureStore`. ``options``: fields of :class:`TrainConfig`.
    ``encoder``: the model's feature callable, needed by ``mirror`` (its geometry) and ``deepsim`` (its
    feature loss); a path is loaded with the ONNX -> torch converter; by default the model the store was
    extracted from (when it recorded one). ``stop_after``: stop (with a checkpoint) once this many
    iterations are done, as an interruption would. A run folder trained on another feature store is
    refused unless ``other_store=True`` (fine-tuning on new data).
    """
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    run_dir = os.fspath(run_dir)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    with Distributed(resolve_device(device)) as dist:
        ckpt = load_checkpoint(ckpt_path) if os.path.isfile(ckpt_path) else None
        if ckpt is None and arch is None:  # a representation's store: its two-stream decoder
            arch = default_arch(store.index.get("model"), store.feature_shape)
        cfg = resume_config(ckpt, options, arch, run_dir) if ckpt is not None else new_config(options, arch)
        if ckpt is not None and not other_store:
            check_same_store(ckpt, store, run_dir)
        needs_encoder = cfg.arch == "deepsim" or (cfg.arch == "mirror" and "stages" not in cfg.arch_options)
        if encoder is None and needs_encoder:
            encoder = store_encoder(store, cfg.arch)
        if isinstance(encoder, (str, os.PathLike)):
            layers = [store.layer] + ([cfg.feature_layer] if cfg.feature_layer else [])
            encoder, _ = extract.resolve_encoder(encoder, layers if len(layers) > 1 else layers[0], dist.device)
        if encoder is not None and hasattr(encoder, "eval"):
            encoder.eval()
        model = build_model(cfg, store, encoder, dist)
        precision = Precision(cfg.amp, dist.device)
        if getattr(model, "adversarial", False):
            if encoder is None or not cfg.feature_layer:
                raise PreimageError("deepsim trains with an encoder feature loss: pass --model and --feature-layer")
            step = GANStep(model, cfg, dist, precision, encoder)
        else:
            step = ReconstructionStep(model, cfg, dist, precision)
        meta = {"arch": cfg.arch, "arch_options": cfg.arch_options, "feature_shape": list(store.feature_shape),
                "image_shape": list(store.image_shape), "layer": store.layer, "model_path": store.index.get("model"),
                "preprocess": store.preprocess.to_metadata()}
        trainer = Trainer(store, run_dir, cfg, model, step, dist=dist, precision=precision, meta=meta,
                          tensorboard=tensorboard, progress=progress)
        if ckpt is not None:
            trainer.resume(ckpt)
        return trainer.fit(stop_after)


def new_config(options, arch):
    unknown = set(options) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise PreimageError(f"unknown training options: {', '.join(sorted(unknown))}")
    cfg = TrainConfig(**{k: v for k, v in options.items() if v is not None})
    if arch is not None:
        cfg.arch = arch
    cfg.lr_steps = cfg.milestones()
    return cfg


def resume_config(ckpt, options, arch, run_dir):
    """The checkpoint's configuration, with the options that may change on resume applied."""
    cfg = TrainConfig(**ckpt["config"])
    for k in RESUMABLE_OPTIONS:
        if options.get(k) is not None:
            setattr(cfg, k, options[k])
    if arch is not None and arch != cfg.arch:
        raise PreimageError(f"the run folder holds a '{cfg.arch}' run, not '{arch}': use a new folder", path=run_dir)
    cfg.lr_steps = cfg.milestones()
    return cfg


def check_same_store(ckpt, store, run_dir):
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


def store_encoder(store, arch):
    """The model file the store was extracted from (the store records its path and sha256), checked to be
    there and unchanged; None when the store recorded none (features written from arrays, or a callable)."""
    path = store.index.get("model")
    if not path:
        return None
    if is_spec(path):  # a representation (hog, dsift, ...): rebuilt from its spec
        return path
    if not os.path.isfile(path):
        raise PreimageError(f"{arch} needs the encoder: the store was extracted from {path}, which is no longer there "
                            "(moved or deleted); pass the model with --model", path=store.path)
    want = store.index.get("model_sha256")
    if want and sha256_file(path) != want:
        raise PreimageError(f"{arch} needs the encoder: {path} has changed since the store was extracted from it "
                            "(its sha256 differs); pass the model with --model", path=store.path)
    return path


def build_model(cfg, store, encoder, dist):
    """The decoder of ``cfg.arch`` for the store's shapes, seeded (so every rank starts from the same weights)."""
    arch_options = dict(cfg.arch_options)
    if cfg.arch == "mirror" and "stages" not in arch_options:
        if encoder is None:
            raise PreimageError("the mirror decoder is built from the encoder's geometry: pass the model (--model)")
        arch_options["stages"] = stages_to_json(encoder_geometry(encoder, store.image_shape, dist.device))
        cfg.arch_options = arch_options
    torch.manual_seed(cfg.seed)
    model = build_decoder(cfg.arch, store.feature_shape, store.image_shape, **arch_options).to(dist.device)
    if dist.world > 1 and dist.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
