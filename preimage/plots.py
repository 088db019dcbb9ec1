"""Small matplotlib helpers for reports: every figure has axes, labels and units, and is written as a PNG
atomically (a report never shows a half-written picture).

Figures are built on matplotlib's object API with the Agg canvas, never through ``pyplot``: no global
backend is switched and nothing needs a display.

    from preimage import plots
    plots.lines("loss.png", {"conv3": (iters, values)}, xlabel="iteration", ylabel="loss (normalised)", logy=True)
"""
import math
import os

import numpy as np

from .fileio import atomic_path

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def figure(width=6.0, height=4.0):
    """A new Figure on an Agg canvas (independent of pyplot's state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path):
    """Write ``fig`` to ``path`` as PNG, atomically; returns ``path``."""
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def finite(values):
    return [v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def _log_ok(values):
    v = finite(values)
    return bool(v) and min(v) > 0


def _label(ax, xlabel, ylabel, title=None, grid_axis="both"):
    """Axis labels (with units), the title when given, and a light grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, axis=grid_axis, alpha=0.3)


def lines(path, series, *, xlabel, ylabel, title=None, logy=False, logx=False, legend=True, alpha=1.0):
    """One line per entry of ``series`` ({label: (x, y)}); labels repeated across entries share a colour
    when given as (label, key) tuples."""
    fig = figure()
    ax = fig.add_subplot(1, 1, 1)
    colours, shown = {}, set()
    ys = []
    for key, (x, y) in series.items():
        label = key[0] if isinstance(key, tuple) else key
        colour = colours.setdefault(label, COLORS[len(colours) % len(COLORS)])
        ax.plot(x, y, color=colour, lw=1.2, alpha=alpha, label=None if label in shown else str(label))
        shown.add(label)
        ys.extend(y)
    if logy and _log_ok(ys):
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    _label(ax, xlabel, ylabel, title)
    if legend and shown and len(shown) <= 12:
        ax.legend(fontsize=8)
    return save(fig, path)


def bars(path, labels, groups, *, ylabel, xlabel, title=None, errors=None):
    """Grouped bar chart: ``groups`` {series name: [value per label]}, optional ``errors`` of the same shape
    (drawn as +- error bars). None values are left out."""
    fig = figure(max(6.0, 0.5 * len(labels) * max(1, len(groups)) ** 0.5 + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    n = max(1, len(groups))
    width = 0.8 / n
    x = np.arange(len(labels))
    for k, (name, vals) in enumerate(groups.items()):
        v = np.array([np.nan if a is None else a for a in vals], dtype=float)
        e = None
        if errors and name in errors:
            e = np.array([0.0 if a is None else a for a in errors[name]], dtype=float)
        ax.bar(x + (k - (n - 1) / 2) * width, v, width, yerr=e, capsize=2, color=COLORS[k % len(COLORS)], label=str(name))
    ax.set_xticks(x)
    ax.set_xticklabels([str(l) for l in labels], rotation=45 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    _label(ax, xlabel, ylabel, title, grid_axis="y")
    if len(groups) > 1:
        ax.legend(fontsize=8)
    return save(fig, path)


def scatter(path, x, y, *, xlabel, ylabel, title=None, logx=False, logy=False, highlight=None):
    """Points (x, y); ``highlight``: indices drawn larger in red (e.g. the best trials)."""
    fig = figure()
    ax = fig.add_subplot(1, 1, 1)
    pts = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and math.isfinite(b)]
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color=COLORS[0], alpha=0.7)
    if highlight:
        hx = [x[i] for i in highlight if y[i] is not None and math.isfinite(y[i])]
        hy = [y[i] for i in highlight if y[i] is not None and math.isfinite(y[i])]
        ax.scatter(hx, hy, s=40, color=COLORS[1], label="best", zorder=3)
        ax.legend(fontsize=8)
    numeric = all(isinstance(p[0], (int, float)) for p in pts)
    if logx and numeric and _log_ok([p[0] for p in pts]):
        ax.set_xscale("log")
    if logy and _log_ok([p[1] for p in pts]):
        ax.set_yscale("log")
    _label(ax, xlabel, ylabel, title)
    return save(fig, path)


def parallel_coordinates(path, columns, rows, values, *, value_label, logs=(), title=None):
    """Parallel-coordinate plot: one polyline per row over ``columns`` (each axis scaled to its range,
    log10 for names in ``logs``), coloured by ``values`` (lower = darker); axes carry their range."""
    fig = figure(max(6.0, 1.6 * len(columns) + 1.5), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    data = np.array([[np.nan if r.get(c) is None else float(r[c]) for c in columns] for r in rows], dtype=float)
    ranges = []
    for j, c in enumerate(columns):
        col = data[:, j]
        if c in logs:
            col = np.log10(np.where(col > 0, col, np.nan))
        lo, hi = np.nanmin(col) if np.isfinite(col).any() else 0.0, np.nanmax(col) if np.isfinite(col).any() else 1.0
        data[:, j] = (col - lo) / ((hi - lo) or 1.0)
        ranges.append((lo, hi))
    v = np.array([np.nan if a is None or not math.isfinite(a) else a for a in values], dtype=float)
    from matplotlib import cm
    from matplotlib.colors import Normalize

    norm = Normalize(np.nanmin(v) if np.isfinite(v).any() else 0, np.nanmax(v) if np.isfinite(v).any() else 1)
    cmap = cm.get_cmap("viridis") if hasattr(cm, "get_cmap") else __import__("matplotlib").colormaps["viridis"]
    for i in np.argsort(-np.nan_to_num(v, nan=np.inf)):
        ax.plot(range(len(columns)), data[i], color=cmap(norm(v[i])) if np.isfinite(v[i]) else "#ccc", lw=1, alpha=0.8)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([f"{c}\n[{'1e%.3g' % lo if c in logs else '%.3g' % lo} .. "
                        f"{'1e%.3g' % hi if c in logs else '%.3g' % hi}]" for c, (lo, hi) in zip(columns, ranges)],
                       fontsize=8)
    ax.set_yticks([0, 1])
    ax.set_yticklabels(["min", "max"])
    ax.set_ylabel("parameter (scaled to its range)")
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=value_label)
    if title:
        ax.set_title(title)
    return save(fig, path)


def image_grid(path, images, *, row_labels=None, col_labels=None, title=None, tile=1.4):
    """A grid of pictures (``images``: rows of H x W x 3 uint8 arrays or None for an empty cell) with row
    and column labels, as the papers lay out their figures."""
    nrows = len(images)
    ncols = max((len(r) for r in images), default=0)
    if not nrows or not ncols:
        return None
    fig = figure(tile * ncols + (1.2 if row_labels else 0.2), tile * nrows + (0.6 if title else 0.3))
    for i, row in enumerate(images):
        for j in range(ncols):
            ax = fig.add_subplot(nrows, ncols, i * ncols + j + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            img = row[j] if j < len(row) else None
            if img is not None:
                ax.imshow(img, interpolation="nearest")
            if i == 0 and col_labels and j < len(col_labels):
                ax.set_title(str(col_labels[j]), fontsize=8)
            if j == 0 and row_labels and i < len(row_labels):
                ax.set_ylabel(str(row_labels[i]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def save_png(path, image):
    """One H x W x 3 uint8 RGB picture as PNG, atomically (no matplotlib needed)."""
    import cv2

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(np.asarray(image, np.uint8)[..., ::-1]))
    if not ok:
        raise ValueError(f"could not encode {path}")
    from .fileio import write_bytes_atomic

    write_bytes_atomic(path, data.tobytes())
    return path
