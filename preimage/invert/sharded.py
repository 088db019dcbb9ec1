"""Long runs of ``invert``, ``caricature`` and ``maximize``: sharded over processes, written as they finish,
resumable after Ctrl-C, SIGTERM or kill -9.

Under ``torchrun --nproc_per_node N`` each rank takes every N-th image (units, for ``maximize``), picks its
own GPU (``LOCAL_RANK``) and optimises its share. Each sample's result (its PNG and a ``results/KEY.pt``
holding the image, curves and metrics) is written when its batch finishes; a re-run of the same command
skips every sample whose result is there with the same settings, and a batch that was interrupted resumes
from its last checkpoint (``checkpoints/``, every ``checkpoint_every`` iterations and at the interruption).
Every sample is independent of the batch it is in, so the shards' union equals a one-process run. When all
ranks are done, rank 0 merges every result into one report.
"""
import hashlib
import json
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import List, Optional

import torch

from ..errors import PreimageError
from ..fileio import atomic_path, remove_stale_temporaries
from ..models import samples as bundled
from ..device import resolve_device
from ..distributed import Distributed
from ..preprocess import IMAGE_SUFFIXES, save_image
from . import api, engine, presets
from .graphs import graphed
from .model import check_layers
from .report import result_png


def expand_images(specs):
    """Image paths from files, folders (their images, sorted) and .txt lists (one path a line, relative to
    the list's folder; blank lines and # comments skipped)."""
    out = []
    for spec in specs or []:
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise PreimageError("no images in this folder", path=spec, where="--images")
            out += found
        elif spec.lower().endswith(".txt"):
            if not os.path.isfile(spec):
                raise PreimageError("no such image list", path=spec, where="--images")
            base = os.path.dirname(os.path.abspath(spec))
            with open(spec, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        out.append(line if os.path.isabs(line) else os.path.join(base, line))
        else:
            out.append(spec)
    return out


def _model_id(model):
    if isinstance(model, (str, os.PathLike)) and os.path.isfile(model):
        st = os.stat(model)
        return [os.path.abspath(os.fspath(model)), st.st_size, st.st_mtime_ns]
    return [repr(type(model))]


class Folder:
    """The results and checkpoints of a run in ``out``, keyed by sample, checked against its settings."""

    def __init__(self, out, kind, model, masks):
        self.out, self.kind = out, kind
        self.common = {"kind": kind, "model": _model_id(model), "masks": list(masks or [])}

    @staticmethod
    def key(image, layer, seed, trial=None):
        stem = os.path.splitext(os.path.basename(result_png({"image": image, "layer": layer, "seed": seed})))[0]
        return stem + ("" if trial is None else f"__t{trial}")

    def fingerprint(self, s, image, source):
        """What a sample's result depends on: the run's settings, the sample's place and its source."""
        d = dict(self.common, cfg=s.cfg.to_dict(), layer=s.layer, seed=s.seed, C=s.C, T=s.T, image=image,
                 source=source, trial=s.info.get("trial"))
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

    def sample_id(self, s, image, source):
        return self.key(image, s.layer, s.seed, s.info.get("trial")), self.fingerprint(s, image, source)

    def path(self, key, partial=False):
        return os.path.join(self.out, "results", key + (".partial.pt" if partial else ".pt"))

    def load(self, key, fingerprint, partial=False):
        """The saved result of a sample (finished, or with ``partial`` the state at an interruption)."""
        try:
            d = torch.load(self.path(key, partial), map_location="cpu", weights_only=False)
        except Exception:  # absent, or damaged: the sample is redone
            return None
        return d["result"] if isinstance(d, dict) and d.get("fingerprint") == fingerprint else None

    def save(self, key, fingerprint, result, partial=False):
        os.makedirs(os.path.join(self.out, "results"), exist_ok=True)  # only once there is something to keep
        with atomic_path(self.path(key, partial)) as tmp:
            torch.save({"fingerprint": fingerprint, "result": result}, tmp)
        if not partial and os.path.exists(self.path(key, True)):
            os.remove(self.path(key, True))
        remove_stale_temporaries(self.path(key, partial))  # a killed run's unfinished write of this result

    def checkpoint(self, fingerprints, every):
        h = hashlib.sha256("".join(fingerprints).encode()).hexdigest()[:20]
        return engine.Checkpoint(os.path.join(self.out, "checkpoints", f"{h}.pt"), every)


@dataclass
class Plan:
    """The samples of this rank, with their keys and fingerprints, and what the merged report needs."""

    m: object
    cfg: object
    samples: List
    keys: List[str]
    # filled by the planners: see _everyone
    prints: List[str]
    names: List[str]          # every image (or unit) name of the whole run, in order
    x0: Optional[torch.Tensor]
    layers: List[str]
    seeds: List[int]
    feats: Optional[dict] = None
    everyone: List = None
    mine: List[str] = None    # this rank's image names, in the order of ``feats``
    features: object = None   # what the steps run (maximize: on the units' receptive field); None: m.features


def _plan_images(kind, model, layers, paths, folder, ranks, device, opts):
    names = api.image_names(paths)
    mine = list(range(ranks.rank, len(paths), ranks.world))
    m, layers, device, _, x0 = api.prepare(model, layers, [paths[i] for i in mine] or paths[:1], device,
                                           opts["preprocess"], opts["size"])
    cfg = api.image_settings(kind, opts["preset"], opts["overrides"], opts["iters"])
    feats = api.features_of(m, x0)
    check_layers(feats, layers)
    seeds = api.seed_list(opts["seeds"])
    samples = api.image_samples(m, cfg, layers, [names[i] for i in mine], x0, feats, seeds, opts["masks"],
                                kind == "caricature", opts.get("trials")) if mine else []
    source = {names[i]: os.path.abspath(paths[i]) for i in range(len(paths))}
    ids = [folder.sample_id(s, s.info["image"], source[s.info["image"]]) for s in samples]
    plan = Plan(m, cfg, samples, [k for k, _ in ids], [f for _, f in ids], names, x0 if mine else None, layers,
                seeds, feats)
    plan.everyone = _everyone(folder, samples, names, lambda n: source[n])
    plan.mine = [names[i] for i in mine]
    return plan


def _plan_units(model, layers, units, paths, folder, ranks, device, opts):
    m, layers, device, _, x0 = api.prepare(model, layers, paths, device, opts["preprocess"], opts["size"])
    cfg = api.maximize_settings(opts["preset"], opts["overrides"], opts["iters"])
    feats = api.features_of(m, x0) if x0 is not None else api.features_of(
        m, torch.zeros(1, 3, *m.input_size, device=device, dtype=m.dtype))
    check_layers(feats, layers)
    seeds = api.seed_list(opts["seeds"])
    mine = list(units)[ranks.rank::ranks.world]
    samples = api.unit_samples(m, cfg, layers, mine, feats, seeds, 0 if x0 is None else x0.shape[0],
                               opts.get("trials")) if mine else []
    source = sorted(os.path.abspath(p) for p in paths)
    ids = [folder.sample_id(s, s.info["image"], source) for s in samples]
    names = [f"unit{u}" for u in units]
    plan = Plan(m, cfg, samples, [k for k, _ in ids], [f for _, f in ids], names, None, layers, seeds)
    plan.everyone = _everyone(folder, samples, names, lambda n: source)
    plan.features = api.unit_features(m, layers, feats, device) if samples else None
    return plan


def _everyone(folder, samples, names, source):
    """(key, fingerprint, layer, name, seed, trial) of every sample of the run, all ranks, from this rank's
    samples of its first image (or unit) as templates: C, T and the settings are the same for all of them."""
    if not samples:
        return []
    first = samples[0].info["image"]
    out = []
    for s in (t for t in samples if t.info["image"] == first):
        for n in names:
            out.append(folder.sample_id(s, n, source(n)) + (s.layer, n, s.seed, s.info.get("trial")))
    return out


def _optimise(plan, folder, kind, device, opts, ranks):
    """Run this rank's unfinished samples batch by batch, saving each batch's results as it ends."""
    todo = [k for k in range(len(plan.samples)) if folder.load(plan.keys[k], plan.prints[k]) is None]
    bs = opts["batch_size"] or max(1, len(todo))
    interrupted = False
    features = graphed(plan.features or plan.m.features, device, plan.cfg.cuda_graphs)
    for start in range(0, len(todo), bs):
        idx = todo[start:start + bs]
        chunk = [plan.samples[k] for k in idx]
        ck = folder.checkpoint([plan.prints[k] for k in idx], opts["checkpoint_every"])
        recipe = presets.recipe(chunk[0].cfg, chunk)
        desc = f"{kind} [rank {ranks.rank}]" if ranks.world > 1 else kind
        res, interrupted = engine.optimize(features, recipe, plan.m.input_size, device=device,
                                           dtype=plan.m.dtype, progress=opts["progress"] and ranks.main,
                                           desc=desc, precision=api.precision_of(chunk[0].cfg), checkpoint=ck)
        finish = plan.m.preprocess.to_uint8(torch.stack([r["x"] for r in res]))
        for k, s, r, img in zip(idx, chunk, res, finish):
            r.update(s.info)
            r.update(layer=s.layer, seed=s.seed, C=s.C, T=s.T if s.cfg.jitter else 1)
            if kind == "maximize":
                api.unit_activations([s], [r])
                r["input_window"] = api.input_window(plan.features)
            elif kind == "caricature":
                api.caricature_gain(plan.m, SimpleNamespace(results=[r]), plan.feats, plan.mine)
            # interrupted: the state so far, for the report; the checkpoint is what a re-run resumes from
            folder.save(plan.keys[k], plan.prints[k], r, partial=interrupted)
            save_image(os.path.join(folder.out, result_png(r)), img)
        if interrupted:
            break
        ck.remove()
    return interrupted


def run_folder(kind, model, layers, out, *, images=None, units=None, preset="mahendran2016", seeds=1, iters=None,
               masks=None, device="auto", overrides=None, batch_size=None, preprocess=None, size=None,
               progress=True, checkpoint_every=None, trials=None):
    """Run ``kind`` over ``images`` (or ``units``) into ``out``, resumably and sharded over torchrun ranks.

    Returns (Run with every finished result, or None on ranks other than 0; interrupted). Rank 0 merges the
    results of all ranks; the caller writes the report."""
    if isinstance(layers, str):
        layers = [layers]
    paths = expand_images(images) if images else bundled.paths()
    if kind != "maximize" and not paths:
        raise PreimageError(f"no images to {kind} (and no bundled samples found)")
    folder = Folder(out, kind, model, masks)
    opts = dict(preset=preset, seeds=seeds, iters=iters, masks=masks, overrides=overrides, batch_size=batch_size,
                preprocess=preprocess, size=size, progress=progress, checkpoint_every=checkpoint_every, trials=trials)
    # torchrun's process group (each rank on its GPU), or one process; closed once every rank has saved its share
    with Distributed(resolve_device(device)) as ranks:
        dev = ranks.device
        if kind == "maximize":
            plan = _plan_units(model, layers, units, paths, folder, ranks, dev, opts)
        else:
            plan = _plan_images(kind, model, layers, paths, folder, ranks, dev, opts)
        interrupted = ranks.any(_optimise(plan, folder, kind, dev, opts, ranks))
    if not ranks.main:
        return None, interrupted
    return _merge(kind, plan, folder, paths, dev, interrupted), interrupted


def _merge(kind, plan, folder, paths, device, interrupted):
    """Rank 0: every finished result of the run (all ranks), in the one-process order."""
    li = {l: i for i, l in enumerate(plan.layers)}
    ni = {n: i for i, n in enumerate(plan.names)}
    found = []
    for key, fp, layer, name, seed, trial in plan.everyone:
        r = folder.load(key, fp)
        if r is None and interrupted:
            r = folder.load(key, fp, partial=True)
        if r is not None:
            found.append(((trial or 0, li[layer], ni[name], seed), r))
    results = [r for _, r in sorted(found, key=lambda p: p[0])]
    x0 = None
    if kind != "maximize" and len(paths) <= 64:  # the grid's originals column; large runs keep metrics only
        x0 = plan.m.preprocess.load(paths, plan.m.input_size)
    run = api.Run(kind=kind, model=plan.m, config=plan.cfg, images=plan.names, originals=x0, layers=plan.layers,
                  seeds=plan.seeds, results=results, interrupted=interrupted, device=str(device))
    run.seconds = max([r.get("seconds", 0.0) for r in results] or [0.0])
    return run
