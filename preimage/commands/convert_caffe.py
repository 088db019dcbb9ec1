"""``preimage convert caffe``: a thin click layer over :func:`preimage.converters.caffe.convert_caffe`."""
import json
import os

import click

from .options import parse_shape


@click.command("caffe", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("prototxt", type=click.Path(dir_okay=False))
@click.option("--weights", "-w", type=click.Path(dir_okay=False), default=None,
              help="The .caffemodel (default: the one of the same name beside the prototxt).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write the ONNX model (default: NET.onnx beside the prototxt).")
@click.option("--opset", type=int, default=None, show_default=False,
              help="ONNX opset, 13..17 (default 13).")
@click.option("--random-weights", is_flag=True,
              help="No caffemodel: seeded He-normal weights, for structure-only work.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random-weights.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=N,C,H,W",
              help="Replace an input's declared shape (repeatable, once per input), or give one the prototxt "
                   "cannot (Python or HDF5 data layers).")
@click.option("--until", metavar="LAYER", default=None,
              help="Convert only what LAYER (a layer or blob name) needs, e.g. a backbone without its head.")
@click.option("--strict", is_flag=True,
              help="Fail on the first layer that cannot be converted, instead of leaving it out.")
@click.option("--mean", metavar="M1,M2,M3", default=None,
              help="Per-channel mean in raw pixel units, in the net's channel order (or one value for all), "
                   "when the prototxt has none. Default: assumed 104,117,123 (ImageNet, BGR), with a warning.")
@click.option("--bgr/--rgb", "bgr", default=None,
              help="The net's channel order. Default: assumed BGR (Caffe's), with a warning.")
@click.option("--raw-scale", type=float, default=None,
              help="The pixel range the net expects: 255 for 0..255, 1 for 0..1. Default: assumed 255, with a warning.")
@click.option("--scale", type=float, default=None,
              help="Multiplier after mean subtraction (Caffe's transform_param.scale; e.g. 0.017). Default: the "
                   "prototxt's, else 1.")
def convert_caffe(prototxt, weights, output, opset, random_weights, seed, input_shapes, until, strict, mean, bgr,
                  raw_scale, scale):
    """Convert a Caffe net (deploy prototxt + caffemodel) to ONNX that computes what Caffe computed.

    \b
    Examples:
      preimage convert caffe alexnet.prototxt                  # uses alexnet.caffemodel -> alexnet.onnx
      preimage convert caffe net.prototxt --weights snap_iter_10000.caffemodel -o net.onnx
      preimage convert caffe net.prototxt --random-weights     # structure only, no caffemodel
      preimage convert caffe fcn.prototxt --input-shape data=1,3,500,500
      preimage convert caffe ssd.prototxt --until fc7          # the backbone, without the SSD head
      preimage convert caffe resnet.prototxt --rgb --mean 123.7,116.3,103.5 --scale 0.017

    \b
    A layer that cannot be converted (a detection head, a fork's or an unknown layer type, a field
    no known Caffe schema has) is left out together with the layers that need it: a warning names
    each, with its line, and the model's metadata 'preimage.unsupported' lists them. --strict makes
    that an error. Fork layers that are converted: docs/caffe.md ("Caffe forks").

    \b
    Every Caffe layer becomes ONNX nodes whose output is named after the layer (<layer>/<top> for
    several tops); the final value of every blob is listed in the model's metadata 'preimage.blobs'.
    V1 (2014-era 'layers') files, declared inputs and data layers are read; loss and accuracy
    layers are dropped. How images were prepared for the net (channel order, mean, pixel range) is
    stored in the model's 'preimage.preprocess' metadata: from the prototxt's transform_param, else
    from --bgr/--rgb, --mean, --raw-scale and --scale, else assumed (with a warning naming what).
    Then try: preimage layers NET.onnx
    """
    from ..converters.caffe.convert import convert_caffe_full  # deferred: onnx; --help stays fast

    if output is None:
        output = os.path.splitext(prototxt)[0] + ".onnx"
    shapes = {}
    for item in input_shapes:
        name, _, dims = item.partition("=")
        try:
            shapes[name.strip()] = list(parse_shape(dims))  # "1,3,x": a typo, not (1, 3)
        except click.BadParameter:
            raise click.BadParameter(f"expected NAME=N,C,H,W, got {item!r}", param_hint="--input-shape") from None
        if not name.strip():
            raise click.BadParameter(f"expected NAME=N,C,H,W, got {item!r}", param_hint="--input-shape")
        if sum(i.partition("=")[0].strip() == name.strip() for i in input_shapes) > 1:  # not: the last one wins
            raise click.BadParameter(f"input {name.strip()!r} is given twice; give each input's shape once",
                                     param_hint="--input-shape")
    conv = convert_caffe_full(prototxt, weights, output, opset=opset, random_weights=random_weights, seed=seed,
                              input_shapes=shapes, keep_weights=False,  # the file is all we need
                              strict=strict, until=until, preprocess=_preprocess(mean, bgr, raw_scale, scale))
    for note in conv.notices:
        click.echo(f"warning: {note}", err=True)
    m = conv.model
    n_params = conv.n_params
    meta = {p.key: p.value for p in m.metadata_props}
    layers = json.loads(meta.get("preimage.layers", "[]"))
    ins = ", ".join(f"{i.name} {_dims(i)}" for i in m.graph.input)
    outs = ", ".join(f"{o.name} {_dims(o)}" for o in m.graph.output)
    src = "random weights (seed %d)" % seed if random_weights else os.path.basename(conv.weights_path or "")
    click.echo(f"{os.path.basename(prototxt)} + {src} -> {output}")
    click.echo(f"  layers: {len(layers)}   ONNX nodes: {len(m.graph.node)}   parameters: {n_params:,}")
    click.echo(f"  inputs: {ins}")
    click.echo(f"  outputs: {outs}")
    left = json.loads(meta.get("preimage.unsupported", "[]"))
    if left:
        click.echo(f"  left out: {len(left)} layer(s): {', '.join(e['name'] for e in left[:8])}"
                   + (" ..." if len(left) > 8 else "") + "  (see the warnings; --strict to fail instead)")


def _preprocess(mean, bgr, raw_scale, scale):
    given = {}
    if mean is not None:
        try:
            given["mean"] = [float(v) for v in mean.split(",")]
        except ValueError:
            raise click.BadParameter(f"expected numbers like 104,117,123, got {mean!r}", param_hint="--mean") from None
    if bgr is not None:
        given["channel_order"] = "BGR" if bgr else "RGB"
    if raw_scale is not None:
        given["raw_scale"] = raw_scale
    if scale is not None:
        given["scale"] = scale
    return given


def _dims(v):
    return "x".join(d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim)
