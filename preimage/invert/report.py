"""Writing a run's outputs: reconstructions as PNG, grid.png, metrics.json, index.html (all atomic)."""
import html
import json
import os
import re

import cv2
import numpy as np
import torch

from ..fileio import write_text_atomic
from ..preprocess import save_image

PAD = 4


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "x"


def result_png(r):
    trial = f"__t{r['trial']}" if r.get("trial") is not None else ""  # a run of batched trials: one file each
    return f"images/{_safe(r['image'])}__{_safe(r['layer'])}__s{r['seed']}{trial}.png"


def _label(tile_w, text):
    strip = np.full((18, tile_w, 3), 255, np.uint8)
    scale = 0.4
    while scale > 0.2 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > tile_w - 4:
        scale -= 0.05
    cv2.putText(strip, text, (2, 13), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def grid(run, recon, originals=None):
    """Rows: images; columns: the original, then each layer x seed (the papers' figure layout).
    ``originals``: the originals as uint8 pictures when the caller has them already."""
    layers, seeds = run.layers, run.seeds
    h, w = next(iter(recon.values())).shape[:2]
    cols = ([("original", None)] if run.originals is not None else []) + [(l, s) for l in layers for s in seeds]
    rows = run.images
    H = 18 + len(rows) * (h + PAD) + PAD
    W = len(cols) * (w + PAD) + PAD
    canvas = np.full((H, W, 3), 255, np.uint8)
    if originals is None and run.originals is not None:
        originals = run.model.preprocess.to_uint8(run.originals)
    for c, (layer, seed) in enumerate(cols):
        x = PAD + c * (w + PAD)
        canvas[0:18, x:x + w] = _label(w, "original" if seed is None else f"{layer} s{seed}" if len(seeds) > 1 else layer)
        for r, name in enumerate(rows):
            y = 18 + PAD + r * (h + PAD)
            img = originals[r] if seed is None else recon.get((name, layer, seed))
            if img is not None:
                canvas[y:y + h, x:x + w] = img
    return canvas


def _plots_html(run, m):
    parts = []
    if any(len(d["loss_curve"]) >= 2 for d in m["results"]):
        parts.append('<h2>Loss curves</h2><img src="plots/loss.png" alt="loss against iteration">')
    if any(r.get("normalized_error") is not None for r in run.results):
        parts.append('<h2>Errors per layer</h2><img src="plots/errors.png" alt="error per layer">')
    return "\n".join(parts)


def _fmt(v):
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def summary(run):
    out = {}
    for layer in run.layers:
        errs = [r["normalized_error"] for r in run.results if r["layer"] == layer and r.get("normalized_error") is not None]
        rels = [r["relative_loss"] for r in run.results if r["layer"] == layer and r.get("relative_loss") is not None]
        out[layer] = {"mean_normalized_error": float(np.mean(errs)) if errs else None,
                      "mean_relative_loss": float(np.mean(rels)) if rels else None, "count": len(errs)}
    return out


def metrics(run):
    keys = ["image", "layer", "seed", "normalized_error", "relative_loss", "iterations", "seconds", "batch_size",
            "C", "T", "unit", "M", "M_source", "activation", "gain", "trial", "resumed_from", "input_window"]
    results = []
    for r in run.results:
        d = {k: r[k] for k in keys if k in r}
        d["png"] = result_png(r)
        d["loss_curve"] = [float(f"{v:.6g}") for v in r["loss"]]
        d["energy_curve"] = [float(f"{v:.6g}") for v in r["energy"]]
        results.append(d)
    cfg = run.config.to_dict()
    return {"kind": run.kind, "model": run.model.name, "preset": cfg["preset"], "config": cfg,
            "device": str(getattr(run, "device", "")) or None, "interrupted": run.interrupted,
            "seconds": run.seconds, "summary": summary(run), "results": results}


def write_report(run, out_dir, title=None):
    """Write everything for ``run`` into ``out_dir``; returns the path of index.html."""
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    pp = run.model.preprocess
    recon = {}
    if run.results:
        xs = torch.stack([r["x"] for r in run.results])
        for r, img in zip(run.results, pp.to_uint8(xs)):
            recon[(r["image"], r["layer"], r["seed"])] = img
            save_image(os.path.join(out_dir, result_png(r)), img)
    originals = pp.to_uint8(run.originals) if run.originals is not None else None
    for name, img in zip(run.images, originals or []):
        save_image(os.path.join(out_dir, "images", f"{_safe(name)}.png"), img)
    if recon:
        save_image(os.path.join(out_dir, "grid.png"), grid(run, recon, originals))
    m = metrics(run)
    write_text_atomic(os.path.join(out_dir, "metrics.json"), json.dumps(m, indent=1))
    write_plots(run, m, out_dir)
    index = os.path.join(out_dir, "index.html")
    write_text_atomic(index, _html(run, m, title))
    return index


def write_plots(run, m, out_dir):
    """plots/loss.png (loss against iteration, one line per result, a colour per layer) and
    plots/errors.png (mean +- std of the normalised error and relative loss per layer), when there are any."""
    from .. import plots

    series = {}
    for d in m["results"]:
        if len(d["loss_curve"]) >= 2:
            series[(d["layer"], d["image"], d["seed"], d.get("unit"), d.get("trial"))] = (range(1, len(d["loss_curve"]) + 1), d["loss_curve"])
    made = {}
    if series:
        what = "-<Phi, Phi0> / Z" if run.kind != "invert" else str(m["config"]["objective"])
        made["loss"] = plots.lines(os.path.join(out_dir, "plots", "loss.png"), series, xlabel="iteration (step)",
                                   ylabel=f"loss C x {what} (dimensionless)", logy=run.kind == "invert",
                                   title=f"{run.kind}: loss per result (colour: layer)", alpha=0.6)
    stats = error_table(run)
    if any(v["normalized_error"][0] is not None for v in stats.values()):
        groups = {"normalised error": [stats[l]["normalized_error"][0] for l in run.layers],
                  "relative loss": [stats[l]["relative_loss"][0] for l in run.layers]}
        errors = {"normalised error": [stats[l]["normalized_error"][1] for l in run.layers],
                  "relative loss": [stats[l]["relative_loss"][1] for l in run.layers]}
        made["errors"] = plots.bars(os.path.join(out_dir, "plots", "errors.png"), run.layers, groups, errors=errors,
                                    xlabel="layer", ylabel="error (dimensionless ratio; mean +- std)",
                                    title="reconstruction error per layer")
    return made


def error_table(run):
    """{layer: {"normalized_error": (mean, std), "relative_loss": (mean, std)}} over the layer's results."""
    out = {}
    for layer in run.layers:
        row = {}
        for key in ("normalized_error", "relative_loss"):
            v = [r[key] for r in run.results if r["layer"] == layer and r.get(key) is not None]
            row[key] = (float(np.mean(v)), float(np.std(v))) if v else (None, None)
        out[layer] = row
    return out


def _html(run, m, title):
    title = title or f"preimage {run.kind}: {run.model.name}"
    cfg = m["config"]
    rows = []
    for r, d in zip(run.results, m["results"]):
        rows.append("<tr>" + "".join(f"<td>{_fmt(d.get(k))}</td>" for k in
                                     ["image", "layer", "seed", "normalized_error", "relative_loss", "iterations", "C", "T"])
                    + f'<td><img src="{html.escape(d["png"])}" height="96"></td></tr>')
    summ = "".join(f"<tr><td>{html.escape(l)}</td><td>{_fmt(s['mean_normalized_error'])}</td>"
                   f"<td>{_fmt(s['mean_relative_loss'])}</td><td>{s['count']}</td></tr>" for l, s in m["summary"].items())
    note = "<p><b>Interrupted</b>: these are the results at the moment of Ctrl-C.</p>" if run.interrupted else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}} img{{image-rendering:pixelated}}</style></head>
<body><h1>{html.escape(title)}</h1>{note}
<p>Preset <code>{html.escape(str(cfg['preset']))}</code>, objective <code>{html.escape(str(cfg['objective']))}</code>,
{cfg['iters']} + {cfg['fine_iters']} iterations, {len(run.results)} results in {run.seconds:.1f} s.
Normalised error = ||&Phi;(x*) &minus; &Phi;<sub>0</sub>|| / ||&Phi;<sub>0</sub>||; relative loss =
||&Phi;(x) &minus; &Phi;(x<sub>0</sub>)|| / (||&Phi;(x)|| + ||&Phi;(x<sub>0</sub>)||).
Numbers: <a href="metrics.json">metrics.json</a>.</p>
<h2>Per layer</h2><table><tr><th>layer</th><th>mean normalised error</th><th>mean relative loss</th><th>n</th></tr>{summ}</table>
{_plots_html(run, m)}
<h2>Grid</h2><p>Rows: images. Columns: the original, then each layer and seed.</p><img src="grid.png" style="max-width:100%">
<h2>Results</h2><table><tr><th>image</th><th>layer</th><th>seed</th><th>normalised error</th><th>relative loss</th>
<th>iterations</th><th>C</th><th>T</th><th>reconstruction</th></tr>{''.join(rows)}</table>
</body></html>
"""
