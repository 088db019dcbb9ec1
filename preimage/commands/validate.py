"""``preimage validate``: thin click layer over :func:`preimage.converters.validate.validate`."""
import click

from ..errors import PreimageError
from .options import device_option, model_option


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_option(help="Converted .onnx (or a .prototxt with its .caffemodel beside it, converted on the fly).")
@click.option("--reference", "-r", required=True, type=click.Path(),
              help="Reference activations: .npz, .npy, or a folder of .npy files (pycaffe dump).")
@click.option("--input", "-i", "input_", type=click.Path(dir_okay=False), default=None,
              help="Network input: .npy / .npz (by input name) or an image file, preprocessed with the model's "
                   "metadata. Default: the input blob(s) in the reference, else inputs.npz / input.npy beside it.")
@click.option("--grads", "-g", type=click.Path(dir_okay=False), default=None,
              help="Gradient reference (.npz with R/<blob> and dx/<blob>, or dx/<input>/<blob>) to check input "
                   "gradients through the torch module.")
@click.option("--keys", type=click.Choice(["blobs", "layers"]), default="blobs", show_default=True,
              help="What the reference's names are: Caffe blobs (net.blobs, after in-place layers) or layer outputs.")
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "both"]), default="torch", show_default=True,
              help="What runs the model: the PyTorch module (what inversion uses), onnxruntime on the ONNX file, "
                   "or both.")
@click.option("--rtol", type=float, default=1e-5, show_default=True,
              help="A tensor passes when max|out - ref| <= rtol * max|ref|.")
@click.option("--grad-rtol", type=float, default=1e-4, show_default=True, help="The same for gradients.")
@click.option("--grad-decisions", type=click.Choice(["reference", "model"]), default="reference", show_default=True,
              help="For --grads: take max-pooling argmax and ReLU on/off from the reference activations "
                   "(float32 rounding flips near-ties between Caffe and torch, which moves a window's gradient "
                   "to another pixel), or from the model's own forward pass.")
@device_option(default="cpu")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the report (every row, the summary) as JSON to this file.")
def validate(model, reference, input_, grads, keys, backend, rtol, grad_rtol, grad_decisions, device, json_out):
    """Compare a converted model with reference activations and input gradients.

    Prints one row per tensor (name, shape, max |ref|, max abs error, relative error, pass/FAIL) and a
    summary line. Exits with status 1 when any tensor fails, a shape differs (both shapes are shown)
    or a reference name matches nothing in the model (the names are listed); 0 when all pass.

    \b
    Examples:
      preimage validate --model alexnet.onnx --reference blobs.npz
      preimage validate -m alexnet.onnx -r layers.npz --keys layers --backend both
      preimage validate -m alexnet.onnx -r blobs.npz --grads grads.npz --json report.json
      preimage validate -m net.prototxt -r dump/ --input cat.jpg      # folder of .npy, image input
    """
    from ..converters.validate import validate as run, write_json  # deferred: torch, onnx; --help stays fast

    try:
        report = run(model, reference, input=input_, grads=grads, keys=keys, backend=backend, rtol=rtol,
                     grad_rtol=grad_rtol, device=device, decisions=grad_decisions)
    except RuntimeError as e:  # torch on an input of the wrong size: the reference is another model's
        if type(e).__name__ == "OutOfMemoryError":
            raise
        raise PreimageError(f"the model does not run on this input ({str(e).splitlines()[0]}): are the "
                            "reference and --input made for this model?", path=input_ or reference) from None
    click.echo(report.table())
    for name in report.unmatched:
        click.echo(f"unmatched reference name: {name} (no such {'blob' if keys == 'blobs' else 'layer'} in the model)")
    if not report.ok and keys == "blobs" and report.unmatched:
        click.echo("hint: if the reference holds layer outputs (before in-place layers such as ReLU, e.g. "
                   "layers.npz), pass --keys layers", err=True)
    elif keys == "layers" and 0 < len(report.failed) < len(report.rows):  # all failing: more likely the input
        click.echo("hint: if the reference holds pycaffe's net.blobs (after in-place layers, e.g. blobs.npz), "
                   "leave out --keys layers", err=True)
    click.echo(report.summary())
    if json_out:
        write_json(report, json_out)
    if not report.ok:
        raise SystemExit(1)
