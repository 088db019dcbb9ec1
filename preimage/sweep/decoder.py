"""Decoder-training trials: each trial trains a decoder for a short while (``train_decoder``) and scores
it by its validation loss at the end. Trials run one after another (each is a whole training run).

    sweep_decoder("feats/", parse_space(["lr=log:1e-5:1e-2", "weight_decay=log:1e-8:1e-3"]), "sweep-dec",
                  n_trials=20, arch="alexnet_fc8", iters=500)
"""
import glob
import math
import os

from ..errors import PreimageError
from .runner import run_sweep


def _check(space):
    from ..decoders import TrainConfig

    known = set(TrainConfig.__dataclass_fields__) - {"arch", "iters", "val_every", "ckpt_every"}
    for p in space:
        if p.name not in known:
            raise PreimageError(f"{p.name!r} is not a decoder training option; searchable: {', '.join(sorted(known))}",
                                where="--param")


def _typed(name, value):
    from ..decoders import TrainConfig

    default = TrainConfig.__dataclass_fields__[name].default
    if isinstance(value, str):
        if isinstance(default, int) and not isinstance(default, bool):
            return int(float(value))
        if isinstance(default, float) or default is None:
            try:
                return float(value)
            except ValueError:
                return value
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value == int(value):
        return int(value)
    return value


def decoder_evaluator(store, out_dir, arch, iters, encoder=None, device="auto", options=None, progress=False):
    from ..decoders import train_decoder

    def evaluate(numbers, params):
        outcomes = []
        for number, p in zip(numbers, params):
            folder = os.path.join("trials", f"{number:05d}")
            opts = dict(options or {})
            opts.update({k: _typed(k, v) for k, v in p.items()})
            try:
                res = train_decoder(store, os.path.join(out_dir, folder), arch, encoder=encoder, device=device,
                                    iters=iters, val_every=iters, ckpt_every=iters, progress=progress,
                                    tensorboard=False, **opts)
            except KeyboardInterrupt:
                return outcomes + [None] * (len(numbers) - len(outcomes)), True
            if not res.get("finished"):  # training stopped by Ctrl-C (it checkpointed and returned)
                return outcomes + [None] * (len(numbers) - len(outcomes)), True
            val = res.get("val_loss")
            if val is None:
                raise PreimageError("the feature store has no validation split: decoder sweeps score the validation "
                                    "loss (extract with --split, e.g. 0.8,0.2,0)", path=os.fspath(store))
            grids = sorted(glob.glob(os.path.join(out_dir, folder, "samples", "*.png")))
            attrs = {"train_loss": res.get("train_loss"), "iter": res.get("iter"),
                     "pictures": [os.path.relpath(grids[-1], out_dir)] if grids else []}
            outcomes.append((float(val) if math.isfinite(val) else math.inf, attrs))
        return outcomes, False

    return evaluate


def sweep_decoder(store, space, out_dir, *, n_trials, arch="alexnet_fc8", iters=500, encoder=None, device="auto",
                  options=None, sampler="random", seed=None, storage=None, study_name=None, progress=False,
                  report=True):
    """Search decoder training options (fields of ``TrainConfig``: lr, batch, weight_decay, lr_gamma, ...);
    objective: validation loss after ``iters`` iterations."""
    _check(space)
    definition = {"kind": "decoder", "store": os.path.basename(os.path.normpath(os.fspath(store))), "arch": arch,
                  "iters": iters, "options": {k: str(v) for k, v in (options or {}).items()},
                  "objective": "val_loss", "space": [p.spec() for p in space]}
    evaluate = decoder_evaluator(store, out_dir, arch, iters, encoder=encoder, device=device, options=options,
                                 progress=progress)
    return run_sweep(evaluate, space, out_dir, definition=definition, n_trials=n_trials, batch=1, sampler=sampler,
                     seed=seed, storage=storage, study_name=study_name, report=report,
                     title=f"preimage sweep decoder: {arch} on {definition['store']}")
