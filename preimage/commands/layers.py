"""``preimage layers MODEL``: a thin click layer over :func:`preimage.converters.geometry.layer_table`."""
import json

import click


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

    \b
    Examples:
      preimage layers alexnet.onnx
      preimage layers deploy.prototxt --no-blobs
      preimage layers alexnet.onnx --json > alexnet_layers.json
      preimage layers alexnet.onnx --torch          # + which names 'preimage invert' can use
      preimage layers hog:cell=8                    # a representation's stages and geometry
    """
    import os

    from ..converters.geometry import layer_table
    from ..errors import PreimageError
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
        import onnx

        try:
            loaded = onnx.load(model, load_external_data=False)
        except Exception as e:  # a damaged file: say so in one line
            raise PreimageError(f"not a readable ONNX model ({str(e).splitlines()[0][:120]})", path=model) from None
        from ..converters.onnx_torch.graph import check_is_model

        check_is_model(loaded, model)  # protobuf reads many other files as an empty graph
    table = layer_table(loaded)
    inv = _invertible(model) if torch_view else None
    if inv is not None:
        for r in table["layers"]:
            r["torch"] = inv.get(r["values"][0], "no: not computed from the image")
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
        rows.append((r["name"], r["type"], vals[0] + (f" (+{len(vals) - 1})" if len(vals) > 1 else ""),
                     _fmt_shape(r["shape"]), _fmt_rf(r["receptive_field"])) + ((r["torch"],) if inv else ()))
    _print_rows(rows)
    if blobs and table["blobs"]:
        click.echo("")
        rows = [("blob", "final value", "shape", "RF size / stride") + (("torch",) if inv else ())]
        for r in table["blobs"]:
            rows.append((r["blob"], r["value"], _fmt_shape(r["shape"]), _fmt_rf(r["receptive_field"]))
                        + ((r["torch"],) if inv else ()))
        _print_rows(rows)


def _invertible(model):
    """{value: "yes" | "no: reason"} from the torch converters' point of view (structure only)."""
    from ..converters.onnx_torch.invertible import torch_view

    if model.endswith(".prototxt"):
        from ..converters.caffe.convert import convert_caffe_full

        return torch_view(convert_caffe_full(model, weightless=True).model)
    import onnx

    return torch_view(onnx.load(model, load_external_data=False))


def _print_rows(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
