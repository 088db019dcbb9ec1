"""A sweep's report: results.json (every trial), plots/*.png and index.html.

The best trials are shown with their pictures (relative loss is blind to high-frequency noise, so the
papers picked winners by eye); then objective against trial number, against each parameter, a
parallel-coordinate plot and, when Optuna can compute it, the parameters' importance.
"""
import html
import json
import math
import os

from .. import plots
from ..fileio import write_text_atomic

BEST = 8


def _rows(study):
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "status": t.user_attrs.get("status"),
                     "value": t.value if t.value is not None and math.isfinite(t.value) else None,
                     "diverged": t.value is not None and not math.isfinite(t.value), "params": dict(t.params),
                     "worker": t.user_attrs.get("worker"), "pictures": t.user_attrs.get("pictures", []),
                     "results": t.user_attrs.get("results", [])})
    return rows


def _plots(rows, space, definition, out_dir):
    objective = definition.get("objective", "objective")
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    made = {}
    if not done:
        return made
    pdir = os.path.join(out_dir, "plots")
    nums = [r["number"] for r in done]
    vals = [r["value"] for r in done]
    best, cur = [], math.inf
    for v in vals:
        cur = min(cur, v)
        best.append(cur)
    made["history"] = plots.lines(os.path.join(pdir, "history.png"), {"trial": (nums, vals), "best so far": (nums, best)},
                                  xlabel="trial number", ylabel=f"{objective} (dimensionless, lower is better)",
                                  title="objective per trial", logy=True)
    order = sorted(range(len(done)), key=lambda i: vals[i])[:3]
    searched = [p for p in space if p.kind != "fixed"]
    for p in searched:
        xs = [r["params"].get(p.name) for r in done]
        made[f"param-{p.name}"] = plots.scatter(
            os.path.join(pdir, f"param-{_safe(p.name)}.png"), xs, vals, xlabel=f"{p.name} ({'log scale' if p.log else p.kind})",
            ylabel=f"{objective} (dimensionless)", logx=p.log, logy=True, highlight=order,
            title=f"objective against {p.name}")
    numeric = [p for p in searched if p.numeric]
    if numeric:
        made["parallel"] = plots.parallel_coordinates(
            os.path.join(pdir, "parallel.png"), [p.name for p in numeric], [r["params"] for r in done], vals,
            value_label=f"{objective} (lower is better)", logs={p.name for p in numeric if p.log},
            title="parallel coordinates (colour: objective)")
    return made


def _importance(study, out_dir, objective):
    """Parameter importance (Optuna's default evaluator) as a bar chart; skipped when it cannot be computed
    (fewer than a handful of trials, one parameter, or a missing optional dependency)."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    if len(complete) < 8 or len(study.best_trial.params) < 2:
        return None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the evaluator's note that it ranks for low values: we minimise
            evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=16, seed=0)
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                          target=lambda t: t.value if math.isfinite(t.value) else 1e300)
    except Exception:  # e.g. one distinct value, or an evaluator's optional dependency is absent
        return None
    if not imp:
        return None
    names = list(imp)
    return plots.bars(os.path.join(out_dir, "plots", "importance.png"), names, {"importance": [imp[n] for n in names]},
                      xlabel="parameter", ylabel=f"importance for {objective} (fraction of variance)",
                      title="parameter importance (fANOVA)")


def _safe(name):
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_index(study, out_dir, space, definition, title=None, importance=True):
    """Write results.json, plots/ and index.html for ``study`` into ``out_dir``; returns index.html's path.
    ``importance``: also fit the fANOVA importance (seconds; done for the final report only)."""
    rows = _rows(study)
    write_text_atomic(os.path.join(out_dir, "results.json"),
                      json.dumps({"study": study.study_name, "definition": definition, "trials": rows}, indent=1))
    made = _plots(rows, space, definition, out_dir)
    imp = _importance(study, out_dir, definition.get("objective", "objective")) if importance else None
    if imp is None and os.path.exists(os.path.join(out_dir, "plots", "importance.png")):
        imp = os.path.join(out_dir, "plots", "importance.png")  # from an earlier final report
    if imp:
        made["importance"] = imp
    index = os.path.join(out_dir, "index.html")
    write_text_atomic(index, _html(study, rows, space, definition, made, out_dir, title))
    return index


def _picture_cells(r, out_dir, height=80):
    cells = []
    for p in r["pictures"][:6]:
        if os.path.exists(os.path.join(out_dir, p)):
            cells.append(f'<img src="{html.escape(p)}" height="{height}" title="{html.escape(p)}">')
        else:
            cells.append("<i>(on another machine)</i>")
    return " ".join(cells)


def _html(study, rows, space, definition, made, out_dir, title):
    title = title or f"preimage sweep: {study.study_name}"
    names = [p.name for p in space if p.kind != "fixed"]
    done = sorted([r for r in rows if r["state"] == "COMPLETE"], key=lambda r: (r["value"] is None, r["value"] or 0))
    states = {}
    for r in rows:
        key = r["status"] if r["state"] == "FAIL" and r["status"] else r["state"].lower()
        states[key] = states.get(key, 0) + 1
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)

    def row(r, pics):
        cells = "".join(f"<td>{_fmt(r['params'].get(n))}</td>" for n in names)
        value = "diverged" if r["diverged"] else _fmt(r["value"])
        return (f"<tr><td>{r['number']}</td><td>{value}</td>{cells}"
                + (f"<td>{_picture_cells(r, out_dir)}</td>" if pics else "") + "</tr>")

    best = "".join(row(r, True) for r in done[:BEST])
    every = "".join(row(r, False) for r in done)
    figs = "".join(f'<h3>{html.escape(k)}</h3><img src="{html.escape(os.path.relpath(v, out_dir))}">'
                   for k, v in made.items())
    fixed = ", ".join(html.escape(p.spec()) for p in space if p.kind == "fixed")
    summary = ", ".join(f"{v} {html.escape(k)}" for k, v in sorted(states.items()))
    defn = html.escape(json.dumps(definition, indent=1))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}} img{{image-rendering:pixelated}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Study <code>{html.escape(study.study_name)}</code>: {summary}. Objective <b>{html.escape(str(definition.get('objective')))}</b>
(minimised). Search space: {', '.join(html.escape(p.spec()) for p in space if p.kind != 'fixed')}{'; fixed: ' + fixed if fixed else ''}.
All numbers: <a href="results.json">results.json</a>.</p>
<h2>Best trials</h2><p>Judge them by eye too: the objective is blind to high-frequency noise.</p>
<table><tr><th>trial</th><th>objective</th>{head}<th>pictures</th></tr>{best}</table>
<h2>Plots</h2>{figs}
<h2>All finished trials</h2><table><tr><th>trial</th><th>objective</th>{head}</tr>{every}</table>
<h2>Definition</h2><pre>{defn}</pre>
</body></html>
"""
