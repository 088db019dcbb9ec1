"""Mahendran & Vedaldi (IJCV 2016), "Visualizing deep convolutional neural networks using natural
pre-images": Table 5 (error per layer and C), Table 4 (shallow representations) and the figures
(multi-seed reconstructions, masks, activation maximization, caricatures)."""
import os

import numpy as np

from .. import plots
from .common import (grid, img, model_layers, originals, pictures, register, spread, table_html, write_index,
                     write_table)

C_VALUES = (1.0, 20.0, 100.0, 300.0)
# Table 5's values that ../shared/reference/methods.md quotes (normalised error, %); the rest are left empty
# rather than guessed. The paper's "mpool5" is a converted AlexNet's pool5.
TABLE5_PAPER = {("conv1", 300.0): 14.2, ("pool5", 300.0): 17.5, ("fc8", 300.0): 9.0, ("conv1", 1.0): 69.5,
                ("fc8", 1.0): 13.6}
TABLE4_PAPER = {"HOGgle": (60.1, 11.6), "hog": (36.6, 17.3), "hogb": (11.5, 4.8), "dsift": (9.4, 8.6)}


def _target(ctx, layers, kind="invert", **kw):
    from ..sweep import Target

    iters, overrides = ctx.schedule()
    overrides = {**overrides, **kw.pop("overrides", {})}
    return Target(kind, ctx.model, layers, images=kw.pop("images", ctx.image_list()), preset="mahendran2016",
                  seeds=kw.pop("seeds", ctx.seeds or 1), iters=iters, overrides=overrides, device=ctx.device, **kw).open()


def _pct(v):
    return None if v is None else 100.0 * v


@register("mahendran-table5", "Mahendran & Vedaldi Table 5: normalised reconstruction error (mean +- std over the "
          "images) at every layer for C in {1, 20, 100, 300}, a plot of error against depth per C, and the "
          "reconstructions (rows: layers, columns: C). Quick: 1 image, 5 iterations.")
def table5(ctx):
    from ..sweep import run_trials

    layers = ctx.layers or model_layers(ctx.model)
    target = _target(ctx, layers)
    per, runs, interrupted = run_trials(target, [{"C": c} for c in C_VALUES], progress=ctx.progress)
    if interrupted:
        raise KeyboardInterrupt
    alexnet = {"conv1", "pool5", "fc8"} <= set(layers)  # the paper's values are AlexNet's: only beside AlexNet
    stats, rows = {}, []
    for c, results in zip(C_VALUES, per):
        for layer in layers:
            e = [r["normalized_error"] for r in results if r["layer"] == layer and r["normalized_error"] is not None]
            stats[(layer, c)] = (float(np.mean(e)), float(np.std(e)), len(e)) if e else (None, None, 0)
    for layer in layers:
        row = {"layer": layer}
        for c in C_VALUES:
            m, s, n = stats[(layer, c)]
            row[f"C={c:g} measured %"] = None if m is None else f"{100 * m:.1f} +- {100 * s:.1f}"
            p = TABLE5_PAPER.get((layer, c)) if alexnet else None
            row[f"C={c:g} paper %"] = None if p is None else f"{p:.1f}"
        rows.append(row)
    columns = ["layer"] + [f"C={c:g} {w} %" for c in C_VALUES for w in ("measured", "paper")]
    n_img = len(target.images)
    caption = (f"Normalised error ||Phi(x*) - Phi0|| / ||Phi0|| in %, mean +- std over {n_img} image(s) x "
               f"{target.seeds} seed(s); preset mahendran2016 with C overridden; paper: Table 5 (ILSVRC images).")
    write_table(ctx.out, "table5", columns, rows, caption)
    series = {f"C = {c:g}": (list(range(len(layers))), [_pct(stats[(l, c)][0]) for l in layers]) for c in C_VALUES}
    plot = _depth_plot(os.path.join(ctx.out, "error_vs_depth.png"), layers, series,
                       {f"C = {c:g}": [_pct(stats[(l, c)][1]) for l in layers] for c in C_VALUES})
    first = os.path.splitext(os.path.basename(target.images[0]))[0]
    cells = []
    for layer in layers:
        row = []
        for results, run in zip(per, runs):
            mine = [r for r in results if r["layer"] == layer and r["image"] == first and r["seed"] == 0]
            row.append(pictures(run, mine)[0] if mine else None)
        cells.append(row)
    g = grid(ctx.out, "reconstructions", cells, layers, [f"C = {c:g}" for c in C_VALUES],
             f"{first}: reconstructions per layer and C")
    return write_index(ctx.out, "Mahendran & Vedaldi Table 5 on this model", [
        ("Table 5", f"<p>{caption}</p>" + table_html(columns, rows) + '<p><a href="table5.md">table5.md</a>, '
         '<a href="table5.json">table5.json</a></p>'),
        ("Error against depth", img(plot, ctx.out, "error vs depth")),
        ("Reconstructions", img(g, ctx.out, "grid"))])


def _depth_plot(path, layers, series, errors):
    fig = plots.figure(max(6.0, 0.45 * len(layers) + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for k, (name, (x, y)) in enumerate(series.items()):
        yy = np.array([np.nan if v is None else v for v in y], float)
        ee = np.array([0 if v is None else v for v in errors[name]], float)
        ax.errorbar(x, yy, yerr=ee, color=plots.COLORS[k], marker="o", ms=3, capsize=2, lw=1.2, label=name)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("layer (network depth)")
    ax.set_ylabel("normalised error (%), mean +- std")
    ax.set_title("reconstruction error against depth, per C")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return plots.save(fig, path)


TABLE4_SPECS = {"hog": "hog:pixels=true", "hogb": "hogb:pixels=true", "dsift": "dsift:pixels=true,exact=false"}


@register("mahendran-table4", "Mahendran & Vedaldi Table 4: normalised error of HOG, HOGb and DSIFT inversions "
          "(C = 20, no jitter). Needs the shallow representations (preimage.models.representations: "
          "--model hog|hogb|dsift).")
def table4(ctx):
    from ..invert import api
    from ..models import representations

    iters, overrides = ctx.schedule()
    rows, cells, labels = [], [], []
    for spec, full in TABLE4_SPECS.items():
        rep = representations.build(full, device=ctx.device)
        run = api.invert(rep, list(rep.outputs)[:1], ctx.image_list(), seeds=ctx.seeds or 1, iters=iters, device=ctx.device,
                         preset="mahendran2016-shallow", overrides=overrides, progress=ctx.progress)
        e = [r["normalized_error"] for r in run.results]
        p = TABLE4_PAPER.get(spec)
        rows.append({"representation": spec, "measured %": f"{100 * np.mean(e):.1f} +- {100 * np.std(e):.1f}",
                     "paper %": None if p is None else f"{p[0]:.1f} +- {p[1]:.1f}"})
        cells.append(originals(run)[:1] + list(pictures(run, run.results[:1])))
        labels.append(spec)
    rows.append({"representation": "HOGgle (not built)", "measured %": None,
                 "paper %": "%.1f +- %.1f" % TABLE4_PAPER["HOGgle"]})
    columns = ["representation", "measured %", "paper %"]
    caption = ("Normalised error in %, mean +- std over the images; C = 20, no jitter (section 5.1), preset "
               "mahendran2016-shallow on " + ", ".join(TABLE4_SPECS.values()) + ".")
    write_table(ctx.out, "table4", columns, rows, caption)
    g = grid(ctx.out, "reconstructions", cells, labels, ["original", "reconstruction"], "shallow representations")
    return write_index(ctx.out, "Mahendran & Vedaldi Table 4", [("Table 4", f"<p>{caption}</p>" + table_html(columns, rows)),
                                                                 ("Reconstructions", img(g, ctx.out))])


def _feature_shapes(target, layers):
    import torch

    m = target.model
    with torch.no_grad():
        f = m.features(torch.zeros(1, 3, *m.input_size, device=target.device, dtype=m.dtype))
    return {l: tuple(f[l].shape[1:]) for l in layers}


@register("mahendran-figures", "Mahendran & Vedaldi's figures: multi-seed reconstructions per layer, "
          "reconstructions from a 5x5 window and from each channel group, activation maximization of a few units "
          "per layer, and caricatures. Quick: 1 image, 2 seeds, 2 units, 5 iterations.")
def figures(ctx):
    from ..invert import api

    all_layers = ctx.layers or model_layers(ctx.model)
    layers = spread(all_layers, 3 if ctx.quick else 6)
    iters, overrides = ctx.schedule()
    image = ctx.image_list()[:1]
    seeds = ctx.seeds or (2 if ctx.quick else 4)
    opened = _open(ctx, all_layers)
    model = opened.model  # opened once, used by every run below
    common = dict(device=opened.device, iters=iters, overrides=overrides, progress=ctx.progress)
    sections = []

    run = api.invert(model, layers, image, seeds=seeds, **common)
    pics = dict(zip([(r["layer"], r["seed"]) for r in run.results], pictures(run, run.results)))
    orig = originals(run)[0]
    rows = [[orig] + [pics[(l, s)] for s in range(seeds)] for l in layers]
    g = grid(ctx.out, "multi_seed", rows, layers, ["original"] + [f"seed {s}" for s in range(seeds)],
             "reconstructions from different random starts")
    sections.append(("Multiple reconstructions (different seeds)", img(g, ctx.out)))

    target_shapes = _feature_shapes(opened, all_layers)
    conv = [l for l in all_layers if len(target_shapes[l]) == 3]
    conv = spread(conv, 2 if ctx.quick else 4)
    rows, labels = [], []
    for layer in conv:
        c, h, w = target_shapes[layer]
        k = min(5, h, w)
        row = [orig]
        specs = [None, [f"window:{k}"]] + ([["group:1/2"], ["group:2/2"]] if c >= 2 and c % 2 == 0 else [])
        for masks in specs:
            r = api.invert(model, [layer], image, masks=masks, **common)
            row.append(pictures(r, r.results)[0])
        rows.append(row)
        labels.append(layer)
    if rows:
        g = grid(ctx.out, "masks", rows, labels, ["original", "all", "centred 5x5 window", "group 1/2", "group 2/2"],
                 "reconstructions from part of the feature")
        sections.append(("Window and group masks", img(g, ctx.out)))

    units = list(range(2 if ctx.quick else 4))
    rows = []
    for layer in layers:
        n = target_shapes[layer][0]
        r = api.maximize(model, [layer], [u for u in units if u < n], seeds=1, **common)
        rows.append(list(pictures(r, r.results)))
    g = grid(ctx.out, "maximization", rows, layers, [f"unit {u}" for u in units], "activation maximization")
    sections.append(("Activation maximization", img(g, ctx.out)))

    r = api.caricature(model, layers, ctx.image_list(1 if ctx.quick else 2), **common)
    by = {(x["image"], x["layer"]): p for x, p in zip(r.results, pictures(r, r.results))}
    rows = [[o] + [by[(name, l)] for l in layers] for name, o in zip(r.images, originals(r))]
    g = grid(ctx.out, "caricatures", rows, r.images, ["original"] + layers, "caricatures")
    sections.append(("Caricatures", img(g, ctx.out)))
    return write_index(ctx.out, "Mahendran & Vedaldi figures on this model", sections)


def _open(ctx, layers):
    from ..sweep import Target

    return Target("invert", ctx.model, layers, device=ctx.device).open()
