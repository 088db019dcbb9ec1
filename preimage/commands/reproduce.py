"""``preimage reproduce NAME``: thin click layer over :mod:`preimage.reproduce`."""
import click

from .options import device_option, model_option

CTX = {"help_option_names": ["-h", "--help"]}


def _trials(ctx, param, value):
    if value is None:
        return None
    from ..errors import PreimageError

    try:
        parts = [int(v) for v in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 2 or min(parts) < 1:
        raise PreimageError(f"expected two positive trial counts N1,N2, got {value!r}", where="--trials")
    return tuple(parts)


@click.command(context_settings=CTX)
@click.argument("name", required=False)
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--list", "show", is_flag=True, help="List the reproductions and what each regenerates.")
@model_option(required=False, help="Converted model (.onnx), e.g. the corpus AlexNet or PoseNet.")
@click.option("--layer", "-l", "layers", multiple=True, help="Layers to use instead of the reproduction's choice.")
@click.option("--quick", is_flag=True, help="A small, fast version (few images, iterations and trials).")
@click.option("--seeds", type=click.IntRange(min=1), help="Random starts per image (default: the reproduction's).")
@click.option("--iters", type=click.IntRange(min=0), help="Iterations (default: the paper's schedule; --quick: 5).")
@click.option("--decoder", type=click.Path(exists=True, dir_okay=False), help="dosovitskiy-experiments: decoder checkpoint.")
@click.option("--trials", callback=_trials, metavar="N1,N2", help="posenet-search: trials of each search (paper: 1500,2500).")
@click.option("--batch-size", "batch", type=click.IntRange(min=1), help="posenet-search: trials per batch (default 50).")
@click.option("--seed", type=int, help="posenet-search: sampler seed.")
@device_option()
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Output folder (default: reproduce-NAME).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def reproduce(name, images, show, model, layers, quick, seeds, iters, decoder, trials, batch, seed, device, out, quiet):
    """Regenerate a published table or figure (NAME) on your model and IMAGES (default: the bundled samples).

    Writes a folder with the table as Markdown and JSON (the paper's values beside the measured ones where
    they apply), plots, image grids laid out like the paper's figures and index.html.

    \b
    Examples:
      preimage reproduce --list
      preimage reproduce mahendran-table5 -m alexnet.onnx --quick
      preimage reproduce mahendran-figures -m alexnet.onnx cat.jpg --device cuda
      preimage reproduce posenet-search -m posenet.onnx --trials 300,500 --device cuda
      preimage reproduce dosovitskiy-experiments --decoder runs/fc8/checkpoint.pt -m alexnet.onnx a.jpg b.jpg
    """
    from ..errors import PreimageError
    from ..reproduce import REPRODUCTIONS, Context, describe
    from ..reproduce import reproduce as run

    if show or not name:
        if not show:
            click.echo("Give a NAME (or --list). Reproductions:")
        for n, summary in describe():
            click.echo(f"{n}\n    {summary}")
        return
    REPRODUCTIONS.get_or_fail(name)
    if model is None and name not in ("dosovitskiy-experiments", "mahendran-table4"):  # these build their own
        raise PreimageError(f"{name} needs --model (a converted .onnx)", where="--model")
    options = {k: v for k, v in dict(decoder=decoder, trials=trials, batch=batch, seed=seed).items() if v is not None}
    ctx = Context(model=model, images=list(images) or None, out=out or f"reproduce-{name}", quick=quick, device=device,
                  layers=list(layers) or None, seeds=seeds, iters=iters, progress=not quiet, options=options)
    try:
        index = run(name, ctx=ctx)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        raise SystemExit(130)
    click.echo(f"Report: {index}")
