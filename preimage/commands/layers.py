"""``preimage layers MODEL``: a thin click layer over :func:`preimage.converters.geometry.layer_table`."""
import json
import os

import click

from ..errors import PreimageError


def _fmt_shape(s):
    if not s:
        return "?"
    return "x".join(("N" if i == 0 else "?") if d is None else str(d) for i, d in enumerate(s))  # ?: a free H/W


def _fmt_rf(rf):
    if not rf:
        return ""
    (th, tw) = rf["stride"]
    if rf["size"] is None:  # the whole input, whose size the model leaves free
        size = "global"
    else:
        sh, sw = rf["size"]
        size = f"{sh}" if sh == sw else f"{sh}x{sw}"
    stride = f"{th}" if th == tw else f"{th}x{tw}"
    return f"{size} / {stride}"


@click.command("layers", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--blobs/--no-blobs", default=True, show_default=True, help="Also list the Caffe blobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON instead.")
@click.option("--torch", "torch_view", is_flag=True,
              help="Add a column: can this value be inverted through the PyTorch module (and if not, why).")
def layers(model, blobs, as_json, torch_view):
    """List a model's layers and blobs: output shapes and receptive fields.

    MODEL is a converted .onnx, a Caffe .prototxt (read for its structure only, no weights needed), or a
    representation (hog, hogb, dsift, lbp, with options: hog:cell=4; shapes at its input size).
    For each layer: its type, the ONNX value holding its output, the output shape (batch as declared)
    and, for layers computed from the image, the receptive field in input pixels: size / stride
    (as in Mahendran & Vedaldi's tables: AlexNet conv1 11/4, pool5 195/32, fc6 355/32). "global": the
    unit sees the whole input, whose size the model leaves free (global pooling with dynamic H/W).
    An .onnx model is checked first (onnx.checker, operator types, the preimage.* metadata): a model
    that fails gets a one-line error and exit status 2, not a table.

    \b
    Examples:
      preimage layers alexnet.onnx
      preimage layers deploy.prototxt --no-blobs
      preimage layers alexnet.onnx --json > alexnet_layers.json
      preimage layers alexnet.onnx --torch          # + which names 'preimage invert' can use
      preimage layers hog:cell=8                    # a representation's stages and geometry
    """
    # deferred: onnx and the converters (about a second); 'preimage layers --help' stays fast
    from ..converters.geometry import layer_table
    from ..converters.onnx_torch.graph import check_is_model
    from ..models.representations import is_spec
    from ..models.representations import layer_table as representation_table

    if is_spec(model):
        table = representation_table(model)
        if torch_view:
            lbp = table["layers"][-1]["name"] == "lbp"
            for r in table["layers"]:
                r["torch"] = "no: LBP is not differentiable" if lbp and r["name"] != "grey" else "yes"
        _print_table(table, as_json, torch_view, blobs)
        return
    if not os.path.isfile(model):
        raise PreimageError("no such model file", path=model)
    if not (model.endswith(".onnx") or model.endswith(".prototxt")):
        raise PreimageError("expected a .onnx model or a Caffe .prototxt", path=model)
    loaded = model
    if model.endswith(".onnx"):
        from ..converters.onnx_torch.graph import check_onnx, read_model  # deferred: onnx; --help stays fast

        # a damaged file, a non-ONNX file (an empty graph), damaged preimage.* metadata: one line each
        loaded = read_model(model, load_external_data=False)
        check_onnx(loaded, model)  # no table for a model onnx.checker rejects
    table = layer_table(loaded)
    inv = _invertible(model, loaded) if torch_view else None
    if inv is not None:
        for r in table["layers"]:
            r["torch"] = "no: left out" if r.get("left_out") else inv.get(r["values"][0], "no: not computed from the image")
        for r in table["blobs"]:
            r["torch"] = inv.get(r["value"], "no: not computed from the image")
    _print_table(table, as_json, inv is not None, blobs)


def _print_table(table, as_json, inv, blobs):
    if as_json:
        click.echo(json.dumps(table, indent=1))
        return
    dynamic = any(r["shape"] and r["shape"][0] is None for r in table["layers"])  # batch is free: say N, as the rows do
    ins = ", ".join(f"{n} {_fmt_shape([None] + list(s[1:]) if dynamic and s else s)}" for n, s in table["inputs"].items())
    click.echo(f"inputs: {ins}")
    rows = [("layer", "type", "output value", "shape", "RF size / stride") + (("torch",) if inv else ())]
    for r in table["layers"]:
        vals = r["values"]
        if r.get("left_out"):  # not converted (preimage.unsupported): no value, no shape
            rows.append((r["name"], r["type"], "LEFT OUT", "-", "") + ((r["torch"],) if inv else ()))
            continue
        rows.append((r["name"], r["type"], vals[0] + (f" (+{len(vals) - 1})" if len(vals) > 1 else ""),
                     _fmt_shape(r["shape"]), _fmt_rf(r["receptive_field"])) + ((r["torch"],) if inv else ()))
    _print_rows(rows)
    for r in table["layers"]:
        if r.get("left_out") and r.get("blocked_by") == r["name"]:
            click.echo(f"left out: {r['name']} ({r['type']}): {r['left_out']}")
    if blobs and table["blobs"]:
        click.echo("")
        rows = [("blob", "final value", "shape", "RF size / stride") + (("torch",) if inv else ())]
        for r in table["blobs"]:
            rows.append((r["blob"], r["value"], _fmt_shape(r["shape"]), _fmt_rf(r["receptive_field"]))
                        + ((r["torch"],) if inv else ()))
        _print_rows(rows)
        values = {v for r in table["layers"] for v in r["values"]}
        both = [r["blob"] for r in table["blobs"] if r["blob"] in values and r["value"] != r["blob"]]
        if both:
            shown = ", ".join(both[:6]) + (", ..." if len(both) > 6 else "")
            click.echo(f"\n{shown}: both a layer output and a blob (after in-place layers). In -l/--layer and "
                       f"outputs=, a bare name is the layer output (with a warning); write layer:{both[0]} or "
                       f"blob:{both[0]} to choose.")


def _invertible(model, loaded):
    """{value: "yes" | "no: reason"} from the torch converters' point of view (structure only)."""
    # deferred: onnx and the converters, only for --torch
    import onnx

    from ..converters.caffe.convert import convert_caffe_full
    from ..converters.onnx_torch.invertible import torch_view

    if model.endswith(".prototxt"):
        return torch_view(convert_caffe_full(model, weightless=True).model)
    return torch_view(loaded)


def _print_rows(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
