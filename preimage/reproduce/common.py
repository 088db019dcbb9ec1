"""What every reproduction shares: the registry, the run context, tables (Markdown + JSON), pictures and
the index.html writer."""
import html
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .. import plots
from ..errors import PreimageError
from ..fileio import write_text_atomic
from ..registry import Registry

REPRODUCTIONS = Registry("reproduction")

SKIP_TYPES = {"Input", "Data", "Dropout", "Softmax", "SoftmaxWithLoss", "Split", "Silence", "Accuracy", "Flatten",
              "Concat", "Slice", "Reshape"}


def register(name, summary):
    """Register ``fn(ctx) -> index path`` under ``name``; ``summary`` is what ``--list`` prints."""
    def deco(fn):
        fn.summary = summary
        return REPRODUCTIONS.register(name)(fn)

    return deco


def describe():
    return [(name, fn.summary) for name, fn in sorted(REPRODUCTIONS.items())]


@dataclass
class Context:
    model: Any = None                     # model path (or opened model / callable) where the reproduction needs one
    images: Optional[List[str]] = None    # None -> the bundled sample photographs
    out: str = "reproduce"
    quick: bool = False
    device: str = "auto"
    layers: Optional[List[str]] = None    # None -> the reproduction's own choice from the model's layers
    seeds: Optional[int] = None
    iters: Optional[int] = None
    progress: bool = True
    options: Dict[str, Any] = field(default_factory=dict)  # reproduction-specific (decoder=, trials=, ...)

    def image_list(self, n_quick=1):
        from ..models import samples

        imgs = list(self.images) if self.images else samples.paths()
        return imgs[:n_quick] if self.quick else imgs

    def schedule(self, quick_iters=5):
        """(iters, overrides) of the papers' schedule, or a short one for --quick."""
        if self.iters is not None:
            return self.iters, ({"fine_iters": "0"} if self.quick else {})
        return (quick_iters, {"fine_iters": "0"}) if self.quick else (None, {})


def reproduce(name, **kw):
    """Run the reproduction ``name`` with :class:`Context` fields ``kw``; returns index.html's path."""
    fn = REPRODUCTIONS.get_or_fail(name)
    ctx = kw.pop("ctx", None) or Context(**kw)
    os.makedirs(ctx.out, exist_ok=True)
    return fn(ctx)


def model_layers(model):
    """The model's layer outputs in network order (from the converter's ``preimage.layers`` metadata),
    leaving out inputs, dropout, softmax and plumbing."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model).lower().endswith(".onnx"):
        raise PreimageError("this reproduction reads the layer list of a converted .onnx model; pass --layer for others",
                            where="--layer")
    from ..converters.onnx_torch.graph import metadata, read_model

    layers = metadata(read_model(os.fspath(model)), "preimage.layers", []) or []
    out = []
    for l in layers:
        value = l.get("value") or l.get("name")
        if l.get("type") in SKIP_TYPES or not value or value in out:
            continue
        out.append(value)
    if not out:
        raise PreimageError("the model has no preimage.layers metadata (not converted by preimage): pass --layer",
                            path=os.fspath(model), where="--layer")
    return out


def spread(layers, k):
    """``k`` layers evenly spaced over ``layers`` (the first and the last included)."""
    if len(layers) <= k:
        return list(layers)
    idx = sorted({round(i * (len(layers) - 1) / (k - 1)) for i in range(k)})
    return [layers[i] for i in idx]


def pictures(run, results):
    """The results' images as uint8 RGB pictures (de-normalised with the model's preprocessing)."""
    import torch

    if not results:
        return []
    xs = torch.nan_to_num(torch.stack([r["x"] for r in results]), nan=0.0)
    return run.model.preprocess.to_uint8(xs)


def originals(run):
    return run.model.preprocess.to_uint8(run.originals) if run.originals is not None else []


def write_table(out, name, columns, rows, caption=""):
    """``name``.md and ``name``.json: ``rows`` are dicts keyed by ``columns``; returns the Markdown text."""
    def cell(v):
        if v is None:
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    md = [f"{caption}\n" if caption else "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    md += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    text = "\n".join(md).lstrip("\n") + "\n"
    write_text_atomic(os.path.join(out, f"{name}.md"), text)
    write_text_atomic(os.path.join(out, f"{name}.json"), json.dumps({"caption": caption, "columns": columns, "rows": rows},
                                                                    indent=1))
    return text


def table_html(columns, rows):
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else (f'{r[c]:.4g}' if isinstance(r[c], float) else str(r[c])))}</td>"
                                    for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_index(out, title, sections, note=""):
    """index.html from ``sections``: (heading, html) pairs; image paths are relative to ``out``."""
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}} img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>{note}{body}</body></html>
"""
    path = os.path.join(out, "index.html")
    write_text_atomic(path, page)
    return path


def img(path, out, alt=""):
    return f'<p><img src="{html.escape(os.path.relpath(path, out))}" alt="{html.escape(alt)}"></p>' if path else ""


def grid(out, name, rows, row_labels, col_labels, title):
    return plots.image_grid(os.path.join(out, f"{name}.png"), rows, row_labels=row_labels, col_labels=col_labels,
                            title=title)
