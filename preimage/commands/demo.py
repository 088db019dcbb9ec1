"""``preimage demo``: thin click layer over :func:`preimage.models.demo.run_demo`."""
import click

from .options import device_option


@click.command()
@click.option("--out", "-o", "out", default="preimage-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (models, reconstructions, report).")
@device_option()
@click.option("--iters", type=click.IntRange(min=0), help="Iterations with jitter (default 300; 4 with --quick).")
@click.option("--fine-iters", type=click.IntRange(min=0), help="Final iterations at 0.1x rate without jitter (default 50).")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1), help="Random starts per image.")
@click.option("--quick", is_flag=True, help="Tiny models and a few iterations: a smoke test in seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def demo(out, device, iters, fine_iters, seeds, quick, quiet, images):
    """Build bundled Caffe models, convert, validate, and invert sample photographs.

    Writes an AlexNet-architecture and a PoseNet-architecture Caffe model with seeded random weights (the
    AlexNet one also in the 2014 V1 layout), converts them to ONNX, checks ONNX Runtime against PyTorch
    and V1 against current layout, then reconstructs the bundled photos (or IMAGES) from conv3, relu5,
    fc8 (AlexNet) and conv4, fc5 (PoseNet) with the paper's 300 + 50 iterations. Open OUT/index.html
    afterwards. About 40 s on two idle CPU cores (AlexNet is built at 1/4 width for that; a busy machine
    can take several times longer: --iters 150 halves it).

    \b
    Examples:
      preimage demo
      preimage demo -o /tmp/demo --device cuda --seeds 2
      preimage demo --quick
    """
    from ..models.demo import run_demo  # deferred: torch, onnx, the whole package; --help stays fast

    run_demo(out, quick=quick, device=device, iters=iters, fine_iters=fine_iters, seeds=seeds,
             images=list(images) or None, progress=not quiet, log=click.echo)
