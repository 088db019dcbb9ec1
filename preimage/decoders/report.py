"""What ``decoder apply`` writes beside the PNGs: metrics.json, a labelled figure, an error plot, index.html.

Errors, per decoded row:

``pixel_rmse``     root mean squared difference to the original picture, in 8-bit RGB levels (0-255), and
``psnr_db``        20 log10(255 / pixel_rmse), for rows that reconstruct an input image (plain
                   reconstruction, and the per-image experiments: topk, all-but-topk, binarize);
``feature_error``  ||phi(x') - f|| / ||f||: the decoded picture x' sent through the encoder again, against the
                   features f it was decoded from (the normalised error ``invert`` reports), when the encoder
                   is at hand and takes the decoder's output size.

Plots are drawn with matplotlib (Agg, no display needed), every axis labelled with its unit.
"""
import html
import json
import math
import os

import numpy as np

from ..fileio import atomic_path, write_text_atomic


def row_metrics(recon, originals, per_image, feature_errors, labels, files, images):
    """One dict per decoded row (see the module docstring)."""
    rows = []
    for i, img in enumerate(recon):
        d = {"label": labels[i], "png": os.path.basename(files[i]),
             "image": os.path.basename(images[i]) if per_image and i < len(images) else None,
             "pixel_rmse": None, "psnr_db": None}
        if per_image and i < len(originals):
            mse = float(np.mean((img.astype(np.float64) - originals[i].astype(np.float64)) ** 2))
            d["pixel_rmse"] = math.sqrt(mse)
            d["psnr_db"] = 10 * math.log10(255.0 ** 2 / mse) if mse > 0 else None
        d["feature_error"] = feature_errors[i] if feature_errors is not None else None
        rows.append(d)
    return rows


def summary(rows):
    out = {"count": len(rows)}
    for k in ("pixel_rmse", "psnr_db", "feature_error"):
        v = [r[k] for r in rows if r.get(k) is not None]
        out[f"mean_{k}"] = float(np.mean(v)) if v else None
    return out


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib is only for these pictures
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def labelled_grid(path, recon, originals, labels, title):
    """Originals (when given) over reconstructions, each column titled with its label, rows named."""
    rows = ([("original", originals)] if len(originals) else []) + [("decoded", recon)]
    ncol = max(len(r) for _, r in rows)
    fig = _figure(1.0 + 1.3 * ncol, 0.6 + 1.45 * len(rows))
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(imgs):
                ax.set_axis_off()
                continue
            ax.imshow(imgs[c], interpolation="nearest")
            if c == 0:
                ax.set_ylabel(name)
            if name == "decoded":
                ax.set_xlabel(str(labels[c]) if c < len(labels) else "", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def error_plot(path, rows, title):
    """Bar charts of the errors per row (PSNR in dB, feature error as a fraction); None when there are none."""
    panels = [(k, lab) for k, lab in (("psnr_db", "PSNR to the original (dB)"),
                                      ("feature_error", "feature error ||phi(x') - f|| / ||f|| (fraction)"))
              if any(r.get(k) is not None for r in rows)]
    if not panels:
        return None
    fig = _figure(max(4.0, 0.45 * len(rows) + 2), 2.6 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    x = np.arange(len(rows))
    for ax, (k, lab) in zip(axes[:, 0], panels):
        ax.bar(x, [r.get(k) if r.get(k) is not None else np.nan for r in rows], color="#4477aa")
        ax.set_ylabel(lab, fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels([r["image"] or r["label"] for r in rows], rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("decoded image (label)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path


def _fmt(v):
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def write_index(output_dir, m, figure, grid, errors):
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in ("label", "image", "pixel_rmse", "psnr_db", "feature_error"))
        + f'<td><img src="{html.escape(r["png"])}" height="64"></td></tr>' for r in m["results"])
    s = m["summary"]
    plot = f'<h2>Errors</h2><img src="{html.escape(os.path.basename(errors))}">' if errors else ""
    title = f"preimage decoder apply: {m['experiment'] or 'reconstruction'}"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}} img{{image-rendering:pixelated}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Decoder <code>{html.escape(str(m['decoder']))}</code>; encoder <code>{html.escape(str(m['model']))}</code>,
layer <code>{html.escape(str(m['layer']))}</code>. {s['count']} decoded images.
Pixel RMSE in 8-bit RGB levels and PSNR (dB) against the original, for rows that reconstruct an input image;
feature error = ||&Phi;(x&prime;) &minus; f|| / ||f|| (the decoded picture through the encoder again, against the
features it was decoded from). Numbers: <a href="metrics.json">metrics.json</a>; unlabelled pixel grid:
<a href="{html.escape(os.path.basename(grid))}">{html.escape(os.path.basename(grid))}</a>.</p>
<table><tr><th>mean pixel RMSE</th><th>mean PSNR (dB)</th><th>mean feature error</th></tr>
<tr><td>{_fmt(s['mean_pixel_rmse'])}</td><td>{_fmt(s['mean_psnr_db'])}</td><td>{_fmt(s['mean_feature_error'])}</td></tr></table>
<h2>Decoded</h2><img src="{html.escape(os.path.basename(figure))}" style="max-width:100%">{plot}
<h2>Per image</h2><table><tr><th>label</th><th>image</th><th>pixel RMSE</th><th>PSNR (dB)</th><th>feature error</th>
<th>decoded</th></tr>{rows}</table>
</body></html>
"""
    index = os.path.join(output_dir, "index.html")
    write_text_atomic(index, page)
    return index


def write_report(output_dir, tag, m, recon, originals, grid):
    """metrics.json, figure-TAG.png, errors-TAG.png (when there are errors) and index.html; their paths."""
    title = f"{m['experiment'] or 'reconstruction'} | {os.path.basename(str(m['decoder']))} | layer {m['layer']}"
    figure = os.path.join(output_dir, f"figure-{tag}.png")
    labelled_grid(figure, recon, originals, [r["label"] for r in m["results"]], title)
    errors = error_plot(os.path.join(output_dir, f"errors-{tag}.png"), m["results"], title)
    write_text_atomic(os.path.join(output_dir, "metrics.json"), json.dumps(m, indent=1))
    index = write_index(output_dir, m, figure, grid, errors)
    return {"metrics": os.path.join(output_dir, "metrics.json"), "figure": figure, "errors": errors, "index": index}
