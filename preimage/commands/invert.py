"""``preimage invert``, ``maximize`` and ``caricature``: thin click layers over :mod:`preimage.invert.api`."""
import click

from .options import device_option, model_option, output_folder, parse_sets, preset_name, size_option


class _SetOption(click.Option):
    """--set, whose help lists every parameter name it takes (read from the registries when help is shown,
    so a term registered by a plugin or a notebook is listed too)."""

    def get_help_record(self, ctx):
        from ..invert.presets import parameter_names

        name, text = super().get_help_record(ctx)
        return name, f"{text} Names: {', '.join(parameter_names())}."


def _common(f):
    opts = [
        model_option(help="Converted model (.onnx), or a .prototxt with its .caffemodel beside it."),
        click.option("--layer", "-l", "layers", multiple=True, required=True, help="Layer (or blob) to use; repeat for several."),
        click.option("--preset", default="mahendran2016", show_default=True, metavar="NAME", callback=preset_name,
                     help="Published method whose constants to use: mahendran2016, mahendran2016-shallow (Table 4: C = 20, "
                          "no jitter; use with hog/hogb/dsift:pixels=true), posenet2016, or any registered preset."),
        click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1), help="Random starts per image (different pre-images)."),
        click.option("--iters", type=click.IntRange(min=0), help="Iterations with jitter (preset: 300); then --set fine_iters=N at 0.1x rate."),
        click.option("--C", "C", type=float, help="Loss weight C (default: per layer, as in the paper)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", cls=_SetOption,
                     help="Override any parameter of the preset or of an energy term, e.g. --set B=100 --set "
                          "eta0=200 --set jitter=false --set weight.tv=0.5 --set tv.beta=1 --set l6.p=4 "
                          "--set fine_iters=0 (docs/invert.md explains each)."),
        click.option("--precision", type=click.Choice(["float32", "bfloat16", "float16"]),
                     help="Run the network's forward in this precision (autocast; bfloat16/float16 pay on GPUs). "
                          "Default float32."),
        click.option("--cuda-graphs", is_flag=True,
                     help="Replay the network's forward and backward from CUDA graphs (one launch per step; pays for "
                          "small batches on large GPUs). CUDA only; a model that cannot be captured runs without."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Samples optimised together (default: all in one batch); "
                     "each batch's results are written when it ends."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), metavar="N",
                     help="Save the optimisation state every N iterations, so that a killed run resumes from there "
                          "(a re-run of the same command skips finished samples in any case)."),
        size_option(help="Input size when the model does not declare one."),
        device_option(),
        click.option("--out", "-o", "out", type=click.Path(file_okay=False), help="Output folder (default: KIND-MODEL, e.g. invert-alexnet)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _run(kind, out, model, **kw):
    """The run through the sharded, resumable runner; SIGTERM is handled like Ctrl-C. Returns the run on
    rank 0 (None on the others) and the signal that stopped it (None: it finished)."""
    import signal

    from ..invert import sharded  # deferred: torch, onnx; --help stays fast

    stopped = {}

    def on_term(signum, frame):
        stopped["signal"] = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        run, interrupted = sharded.run_folder(kind, model, out=out, **kw)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if interrupted and "signal" not in stopped:
        stopped["signal"] = signal.SIGINT
    return run, stopped.get("signal")


def _finish(run, out, signum=None):
    from ..invert.report import summary  # deferred (torch); 'preimage invert --help' stays fast

    if run is None:  # a torchrun rank other than 0: rank 0 writes the merged report
        if signum:
            raise SystemExit(128 + int(signum))
        return
    onnx_model = getattr(run.model.features, "onnx_model", None)
    if onnx_model is not None and not any(p.key == "preimage.preprocess" for p in onnx_model.metadata_props):
        click.echo("warning: the model was not converted by preimage (no 'preimage.preprocess' metadata): images "
                   "were fed as BGR 0-255 without mean subtraction; for other input conventions use the Python "
                   "API's preprocess= (see docs/invert.md)", err=True)
    index = run.write(out)
    for layer, s in summary(run).items():
        err = s["mean_normalized_error"]
        if err is not None:
            click.echo(f"{layer}: mean normalised error {err:.4f} over {s['count']} result(s)")
    gains = {}
    for r in run.results:  # caricature: how much more of the chosen components the result holds
        if r.get("gain") is not None:
            gains.setdefault(r["layer"], []).append(r["gain"])
    for layer, g in gains.items():
        click.echo(f"{layer}: gain in the chosen components <Phi(x*), Phi0> / <Phi(x0), Phi0> = "
                   f"{sum(g) / len(g):.3g} (mean over {len(g)} result(s); 1 = unchanged)")
    for r in run.results:  # maximize: what each unit reached, beside its typical maximum M
        if r.get("unit") is not None and r.get("activation") is not None:
            click.echo(f"{r['layer']} unit {r['unit']} seed {r['seed']}: activation {r['activation']:.4g} "
                       f"(M = {r.get('M', float('nan')):.4g}: {r.get('M_source', '')})")
    click.echo(f"Report: {index}")
    if run.interrupted:
        click.echo("Interrupted: wrote the results so far; run the same command again to continue.", err=True)
        raise SystemExit(128 + int(signum or 2))  # the shell's convention: 130 after Ctrl-C, 143 after SIGTERM


@click.command()
@_common
@click.option("--mask", "masks", multiple=True,
              help="Reconstruct only part of the feature: window:5 (centred 5x5), box:Y,X,H,W, channels:0-47, "
                   "group:1/2, or a .npy 0/1 array; repeat to combine.")
@click.option("--images", "image_lists", multiple=True, type=click.Path(exists=True),
              help="A folder of images or a .txt list of paths (one a line), for runs over many images; repeatable.")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def invert(model, layers, preset, seeds, iters, C, sets, precision, cuda_graphs, batch_size, checkpoint_every, size,
           device, out, quiet, masks, image_lists, images):
    """Reconstruct IMAGES from a layer's features (natural pre-images, Mahendran & Vedaldi 2016).

    Without IMAGES, the bundled sample photographs are used. All images x seeds x layers are optimised
    in one batch (--batch-size to split). Writes PNGs, grid.png, metrics.json and index.html to -o DIR
    (default invert-<model>); each batch's results are written as soon as it ends. Ctrl-C or SIGTERM
    stops early and writes the results so far; running the same command again skips the finished
    samples and resumes the rest (from the last --checkpoint-every state). Under torchrun each process
    takes its share of the images (and its own GPU) and rank 0 writes the merged report.

    \b
    Examples:
      preimage invert --model alexnet.onnx --layer conv3 --layer fc8 cat.jpg
      preimage invert -m posenet.onnx -l fc5 --preset posenet2016 --seeds 4 street.png
      preimage invert -m alexnet.onnx -l conv5 --mask window:5 --iters 100 --device cuda
      preimage invert -m alexnet.onnx -l relu5 --set B=100 --set fine_iters=0 -o out/
      torchrun --nproc_per_node 4 -m preimage invert -m alexnet.onnx -l conv3 --images photos/ \\
          --batch-size 32 --checkpoint-every 50 -o runs/conv3
    """
    out = output_folder(out, "invert", model)
    run, signum = _run("invert", out, model, layers=list(layers), images=list(image_lists) + list(images) or None,
                       preset=preset, seeds=seeds, iters=iters, masks=list(masks), device=device,
                       overrides=parse_sets(sets, C, precision, cuda_graphs), batch_size=batch_size, size=size,
                       progress=not quiet, checkpoint_every=checkpoint_every)
    _finish(run, out, signum)


@click.command()
@_common
@click.option("--unit", "-u", "units", multiple=True, type=int, required=True,
              help="Channel (conv layers: at the centre location) or component to maximise; repeat for several.")
@click.option("--images", "images", multiple=True, type=click.Path(exists=True),
              help="Natural images giving the unit's typical maximum M (default: bundled samples); files, folders "
                   "or .txt lists.")
def maximize(model, layers, preset, seeds, iters, C, sets, precision, cuda_graphs, batch_size, checkpoint_every, size,
             device, out, quiet, units, images):
    """Synthesize images that excite a unit (activation maximization, Mahendran & Vedaldi 2016).

    Loss -<Phi(x), e_unit> / (M rho^2), M the unit's largest value on natural images, rho the layer's
    receptive-field size; C = 1 (the paper's); the same priors and schedule as inversion. For units with
    large receptive fields the priors then dominate (flat images): raise --C (e.g. 30-100) for stronger
    patterns; metrics.json records each unit's reached activation beside M.

    \b
    Examples:
      preimage maximize --model alexnet.onnx --layer fc8 --unit 281 --seeds 3
      preimage maximize -m alexnet.onnx -l conv5 -u 0 -u 1 -u 2 --device cuda
    """
    out = output_folder(out, "maximize", model)
    run, signum = _run("maximize", out, model, layers=list(layers), units=list(units), images=list(images) or None,
                       preset=preset, seeds=seeds, iters=iters, device=device,
                       overrides=parse_sets(sets, C, precision, cuda_graphs), batch_size=batch_size, size=size,
                       progress=not quiet, checkpoint_every=checkpoint_every)
    _finish(run, out, signum)


@click.command()
@_common
@click.option("--images", "image_lists", multiple=True, type=click.Path(exists=True),
              help="A folder of images or a .txt list of paths (one a line); repeatable.")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def caricature(model, layers, preset, seeds, iters, C, sets, precision, cuda_graphs, batch_size, checkpoint_every,
               size, device, out, quiet, image_lists, images):
    """Exaggerate what a layer sees in IMAGES (caricatures, Mahendran & Vedaldi 2016).

    Phi0 = max(0, Phi(x0)); loss -<Phi(x), Phi0> / ||Phi0||; starts from the image itself.

    \b
    Examples:
      preimage caricature --model alexnet.onnx --layer conv4 cat.jpg
      preimage caricature -m vggm.onnx -l relu5 -l fc8 --iters 200 photo.jpg
    """
    out = output_folder(out, "caricature", model)
    run, signum = _run("caricature", out, model, layers=list(layers), images=list(image_lists) + list(images) or None,
                       preset=preset, seeds=seeds, iters=iters, device=device,
                       overrides=parse_sets(sets, C, precision, cuda_graphs), batch_size=batch_size, size=size,
                       progress=not quiet, checkpoint_every=checkpoint_every)
    _finish(run, out, signum)
