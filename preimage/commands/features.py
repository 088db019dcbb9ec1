"""``preimage features``: a thin click layer over :func:`preimage.features.extract_features`."""
import click

from .options import device_option, model_option, size_option


@click.command("features", context_settings={"help_option_names": ["-h", "--help"]})
@model_option(help="Converted model (.onnx, or a .prototxt with its .caffemodel beside it), or a representation: "
                  "hog, hogb, dsift, lbp, with options (hog:cell=8,variant=uoctti).")
@click.option("--layer", "-l", "layers", multiple=True, required=True,
              help="Layer or blob name (repeat for several); for a representation, one of its stages.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The .npz to write.")
@size_option(help="Resize and centre-crop the images to H x W (default: the model's input size).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@device_option(default="cpu")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def features(model, layers, output, size, batch_size, device, images):
    """Write a model's values at LAYERs for IMAGEs to an .npz: one float32 array per layer, batch first.

    Works alike for converted Caffe / Torch7 models and for the representations (HOG, HOGb, DSIFT, LBP,
    which reproduce VLFeat 0.9.21). The images are preprocessed as the model expects (mean, channel
    order, input size). The file is written atomically.

    \b
    Examples:
      preimage features -m alexnet.onnx -l conv3 -l fc8 cat.jpg dog.jpg -o feats.npz
      preimage features -m hog:cell=8 -l hog -l cells photo.jpg -o hog.npz
      preimage features -m dsift:bin=4,step=2 -l dsift --size 240 320 *.jpg -o sift.npz
    """
    from ..features import extract_features, save_features  # deferred: torch; --help stays fast

    feats = extract_features(model, list(layers), list(images), size=size, device=device, batch_size=batch_size)
    save_features(output, feats)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in feats.items())
    click.echo(f"wrote {output}: {shapes}")
