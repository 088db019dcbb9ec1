"""``preimage demo``: the whole pipeline on bundled material, in a few minutes on a laptop CPU.

1. Write Caffe models with seeded random weights through preimage's caffemodel writer: an
   AlexNet-architecture net (in the current layout AND in the 2014-era V1 layout) and a
   PoseNet-architecture net.
2. Convert them to ONNX.
3. Validate: ONNX Runtime against the PyTorch module on every blob, and the V1-layout conversion
   against the current-layout one.
4. Invert the bundled sample photographs at a few layers of each (mahendran2016, batched).
5. Write the report: index.html, grid.png, metrics.json (and per-model reports) into the output folder.

    >>> from preimage.models.demo import run_demo
    >>> summary = run_demo("preimage-demo")          # or quick=True for a seconds-long smoke run
"""
import json
import os
import time

import numpy as np

from ..fileio import atomic_path, write_text_atomic

# AlexNet is narrowed (channels / 4, fc / 16) so that the demo finishes in minutes on two CPU cores; the
# geometry (kernels, strides, groups, LRN, receptive fields) is the real one.
FULL = {
    "alexnet": dict(kwargs=dict(width=0.25, fc_width=1 / 16), layers=["conv3", "relu5", "fc8"], legacy_v1=True),
    "posenet": dict(kwargs=dict(width=1.0), layers=["conv4", "fc5"], legacy_v1=False),
}
QUICK = {
    "alexnet": dict(kwargs=dict(width=0.125, fc_width=1 / 32, input_size=99), layers=["conv3", "fc8"], legacy_v1=True),
    "posenet": dict(kwargs=dict(width=0.25, input_size=61), layers=["fc5"], legacy_v1=False),
}


def build_models(folder, quick=False, seed=0, log=print):
    """Write the demo prototxts and caffemodels (seeded random weights) and convert them to ONNX.
    Returns {net: {"prototxt", "caffemodel", "onnx", ["onnx_v1", ...]}}."""
    from ..converters.caffe.convert import convert_caffe
    from ..converters.caffe.writer import random_weights, write_caffemodel
    from . import architectures

    os.makedirs(folder, exist_ok=True)
    spec = QUICK if quick else FULL
    out = {}
    for net, s in spec.items():
        proto = os.path.join(folder, f"{net}.prototxt")
        write_text_atomic(proto, getattr(architectures, net)(**s["kwargs"]))
        weights = random_weights(proto, seed=seed)
        files = {"prototxt": proto, "caffemodel": os.path.join(folder, f"{net}.caffemodel"),
                 "onnx": os.path.join(folder, f"{net}.onnx")}
        write_caffemodel(files["caffemodel"], proto, weights)
        convert_caffe(proto, files["caffemodel"], files["onnx"])
        log(f"  {net}: wrote {os.path.basename(proto)} + {os.path.basename(files['caffemodel'])}, converted -> {os.path.basename(files['onnx'])}")
        if s["legacy_v1"]:
            files["caffemodel_v1"] = os.path.join(folder, f"{net}_v1.caffemodel")
            files["onnx_v1"] = os.path.join(folder, f"{net}_v1.onnx")
            write_caffemodel(files["caffemodel_v1"], proto, weights, legacy_v1=True)
            convert_caffe(proto, files["caffemodel_v1"], files["onnx_v1"])
            log(f"  {net}: same weights in the V1 layout -> {os.path.basename(files['onnx_v1'])}")
        out[net] = files
    return out


def validate_models(models, image, folder, log=print):
    """ONNX Runtime vs PyTorch on every blob, and the V1-layout model vs the current one."""
    import torch

    from ..converters.onnx_torch import graph as G
    from ..converters.onnx_torch.load import load_features
    from ..converters.validate import validate

    results = {}
    for net, files in models.items():
        blobs = list(G.blob_map(G.read_model(files["onnx"])))  # metadata only: no torch module for it
        fx = load_features(files["onnx"], outputs=blobs, device="cpu", keys="blobs")
        x = fx.preprocess.load([image])
        with torch.no_grad():
            ref = {k: v.numpy() for k, v in fx(x).items()}
        ref_path = os.path.join(folder, f"{net}_torch_blobs.npz")
        with atomic_path(ref_path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **ref)
        checks = [("onnxruntime vs torch", files["onnx"], "onnxruntime")]
        if "onnx_v1" in files:
            checks.append(("V1 layout vs current layout", files["onnx_v1"], "both"))
        for label, model, backend in checks:
            report = validate(model, ref_path, input=image, backend=backend, rtol=1e-4)
            worst = max((r.rel_err for r in report.rows if r.rel_err is not None), default=float("nan"))
            results[f"{net}: {label}"] = {"ok": report.ok, "tensors": len(report.rows), "worst_rel_err": worst}
            log(f"  {net}: {label}: {'PASS' if report.ok else 'FAIL'} ({len(report.rows)} tensors, worst relative error {worst:.2g})")
    return results


def _stack_grids(paths, out):
    from ..preprocess import load_image, save_image

    imgs = [load_image(p).astype(np.uint8) for p in paths if os.path.exists(p)]
    if not imgs:
        return
    w = max(i.shape[1] for i in imgs)
    rows = [np.pad(i, ((0, 8), (0, w - i.shape[1]), (0, 0)), constant_values=255) for i in imgs]
    save_image(out, np.concatenate(rows))


def run_demo(out_dir="preimage-demo", *, quick=False, device="auto", iters=None, fine_iters=None, seeds=1,
             images=None, progress=True, log=print):
    """Run the demo into ``out_dir``; returns the summary written to ``out_dir/metrics.json``."""
    from ..invert import api
    from ..invert.report import metrics as run_metrics, summary as run_summary
    from . import samples

    t_start = time.perf_counter()
    spec = QUICK if quick else FULL
    images = list(images) if images else samples.paths()
    if quick:
        images = images[:2]
    # the paper's full schedule: about 40 s on two idle CPU cores with AlexNet at 1/4 width
    iters = iters if iters is not None else (4 if quick else 300)
    fine_iters = fine_iters if fine_iters is not None else (1 if quick else 50)
    from ..device import resolve_device
    from ..preprocess import load_image

    resolve_device(device)  # a bad --device or image is reported before minutes of work, not after
    for p in images:
        load_image(p)
    os.makedirs(out_dir, exist_ok=True)
    models_dir = os.path.join(out_dir, "models")

    log(f"[1/4] Writing Caffe models with seeded random weights and converting them to ONNX ({models_dir})")
    t = time.perf_counter()
    models = build_models(models_dir, quick=quick, log=log)
    timings = {"build_convert": time.perf_counter() - t}

    log("[2/4] Validating the conversions")
    t = time.perf_counter()
    validation = validate_models(models, images[0], models_dir, log=log)
    timings["validate"] = time.perf_counter() - t

    log(f"[3/4] Inverting {len(images)} sample photographs ({iters} + {fine_iters} iterations, "
        f"{'quick variant' if quick else 'AlexNet at 1/4 width so that it runs in a minute on a CPU'})")
    runs = {}
    for net, files in models.items():
        t = time.perf_counter()
        run = api.invert(files["onnx"], spec[net]["layers"], images, seeds=seeds, iters=iters,
                         overrides={"fine_iters": fine_iters}, device=device, progress=progress)
        run.write(os.path.join(out_dir, net), title=f"preimage demo: {net} (random weights)")
        timings[f"invert_{net}"] = time.perf_counter() - t
        runs[net] = run
        for layer, s in run_summary(run).items():
            log(f"  {net} {layer}: mean normalised error {s['mean_normalized_error']:.3f} "
                f"({s['count']} reconstructions, {timings[f'invert_{net}']:.0f} s for the batch)")
        if run.interrupted:
            log("  interrupted: writing what there is")
            break

    log("[4/4] Writing the report")
    _stack_grids([os.path.join(out_dir, net, "grid.png") for net in runs], os.path.join(out_dir, "grid.png"))
    results = []
    for net, run in runs.items():
        for r in run_metrics(run)["results"]:
            r = dict(r, model=net, png=f"{net}/{r['png']}")
            results.append(r)
    timings["total"] = time.perf_counter() - t_start
    summary = {"kind": "demo", "quick": quick, "images": [os.path.basename(p) for p in images],
               "validation": validation, "timings_s": timings,
               "summary": {net: run_summary(run) for net, run in runs.items()},
               "interrupted": any(r.interrupted for r in runs.values()), "results": results}
    write_text_atomic(os.path.join(out_dir, "metrics.json"), json.dumps(summary, indent=1))
    index = os.path.join(out_dir, "index.html")
    write_text_atomic(index, _html(summary, runs))
    log(f"Done in {timings['total']:.0f} s. Open {index}")
    return summary


def _html(summary, runs):
    import html

    val = "".join(f"<tr><td>{html.escape(k)}</td><td>{'PASS' if v['ok'] else 'FAIL'}</td><td>{v['tensors']}</td>"
                  f"<td>{v['worst_rel_err']:.2g}</td></tr>" for k, v in summary["validation"].items())
    err = "".join(f"<tr><td>{net}</td><td>{html.escape(l)}</td><td>{s['mean_normalized_error']:.3f}</td>"
                  f"<td>{s['count']}</td></tr>" for net, layers in summary["summary"].items() for l, s in layers.items())
    links = " &middot; ".join(f'<a href="{net}/index.html">{net} details</a>' for net in runs)
    t = summary["timings_s"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>preimage demo</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}}</style></head><body>
<h1>preimage demo</h1>
<p>Caffe models with seeded random weights (AlexNet architecture, also written in the V1 layout; PoseNet
architecture) were written with preimage's caffemodel writer, converted to ONNX, validated, and the sample
photographs were reconstructed from their features with the <code>mahendran2016</code> preset. With random
weights the reconstructions show what the architecture alone preserves. Total time {t['total']:.0f} s.</p>
<h2>Validation</h2><table><tr><th>check</th><th>result</th><th>tensors</th><th>worst relative error</th></tr>{val}</table>
<h2>Reconstruction error</h2><table><tr><th>model</th><th>layer</th><th>mean normalised error</th><th>n</th></tr>{err}</table>
<h2>Reconstructions</h2><p>Per model: the originals, then each layer. {links} &middot; <a href="metrics.json">metrics.json</a></p>
<img src="grid.png" style="max-width:100%">
</body></html>
"""
