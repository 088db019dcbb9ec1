"""``preimage invert``, ``maximize`` and ``caricature``: thin click layers over :mod:`preimage.invert.api`."""
import click

from .model_path import model_path


class _SetOption(click.Option):
    """--set, whose help lists every parameter name it takes (read from the registries when help is shown,
    so a term registered by a plugin or a notebook is listed too)."""

    def get_help_record(self, ctx):
        from ..invert.presets import parameter_names

        name, text = super().get_help_record(ctx)
        return name, f"{text} Names: {', '.join(parameter_names())}."


def _common(f):
    opts = [
        click.option("--model", "-m", required=True, callback=model_path, help="Converted model (.onnx), or a .prototxt with its .caffemodel beside it."),
        click.option("--layer", "-l", "layers", multiple=True, required=True, help="Layer (or blob) to use; repeat for several."),
        click.option("--preset", default="mahendran2016", show_default=True, type=click.Choice(["mahendran2016", "posenet2016"]),
                     help="Published method whose constants to use."),
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
        click.option("--batch-size", type=click.IntRange(min=1), help="Samples optimised together (default: all in one batch)."),
        click.option("--size", nargs=2, type=click.IntRange(min=1), metavar="H W", help="Input size when the model does not declare one."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 or auto."),
        click.option("--out", "-o", "out", type=click.Path(file_okay=False), help="Output folder (default: KIND-MODEL, e.g. invert-alexnet)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _overrides(sets, C, precision=None):
    out = {} if precision is None else {"precision": precision}
    for s in sets:
        if "=" not in s:
            from ..errors import PreimageError
            raise PreimageError(f"expected KEY=VALUE, got {s!r}", where="--set")
        k, v = s.split("=", 1)
        out[k.strip()] = v.strip()
    if C is not None:
        out["C"] = C
    return out


def _out_dir(out, kind, model):
    """The output folder (default KIND-MODEL), checked before minutes of optimisation rather than after."""
    import os

    from ..errors import PreimageError

    out = out or f"{kind}-{os.path.splitext(os.path.basename(model))[0]}"
    p = os.path.abspath(out)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    if not os.path.isdir(p):
        raise PreimageError("a file stands where the output folder is needed", path=p, where="--out")
    if not os.access(p, os.W_OK):
        raise PreimageError("cannot write the output folder here (permission denied)", path=p, where="--out")
    return out


def _finish(run, out, default_out):
    from ..invert.report import summary

    out = out or default_out
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
        click.echo("Interrupted: wrote the results so far.", err=True)
        raise SystemExit(130)  # the shell's convention for a run stopped by Ctrl-C


@click.command()
@_common
@click.option("--mask", "masks", multiple=True,
              help="Reconstruct only part of the feature: window:5 (centred 5x5), box:Y,X,H,W, channels:0-47, "
                   "group:1/2, or a .npy 0/1 array; repeat to combine.")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def invert(model, layers, preset, seeds, iters, C, sets, precision, batch_size, size, device, out, quiet, masks,
           images):
    """Reconstruct IMAGES from a layer's features (natural pre-images, Mahendran & Vedaldi 2016).

    Without IMAGES, the bundled sample photographs are used. All images x seeds x layers are optimised
    in one batch. Writes PNGs, grid.png, metrics.json and index.html to -o DIR (default invert-<model>).
    Ctrl-C stops early and still writes the results so far.

    \b
    Examples:
      preimage invert --model alexnet.onnx --layer conv3 --layer fc8 cat.jpg
      preimage invert -m posenet.onnx -l fc5 --preset posenet2016 --seeds 4 street.png
      preimage invert -m alexnet.onnx -l conv5 --mask window:5 --iters 100 --device cuda
      preimage invert -m alexnet.onnx -l relu5 --set B=100 --set fine_iters=0 -o out/
    """
    from ..invert import api

    out = _out_dir(out, "invert", model)
    run = api.invert(model, list(layers), list(images) or None, preset=preset, seeds=seeds, iters=iters,
                     masks=list(masks), device=device, overrides=_overrides(sets, C, precision), batch_size=batch_size,
                     size=size, progress=not quiet)
    _finish(run, out, f"invert-{run.model.name}")


@click.command()
@_common
@click.option("--unit", "-u", "units", multiple=True, type=int, required=True,
              help="Channel (conv layers: at the centre location) or component to maximise; repeat for several.")
@click.option("--images", "images", multiple=True, type=click.Path(dir_okay=False),
              help="Natural images giving the unit's typical maximum M (default: bundled samples).")
def maximize(model, layers, preset, seeds, iters, C, sets, precision, batch_size, size, device, out, quiet, units,
             images):
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
    from ..invert import api

    out = _out_dir(out, "maximize", model)
    run = api.maximize(model, list(layers), list(units), list(images) or None, preset=preset, seeds=seeds,
                       iters=iters, device=device, overrides=_overrides(sets, C, precision), batch_size=batch_size,
                       size=size, progress=not quiet)
    _finish(run, out, f"maximize-{run.model.name}")


@click.command()
@_common
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def caricature(model, layers, preset, seeds, iters, C, sets, precision, batch_size, size, device, out, quiet,
               images):
    """Exaggerate what a layer sees in IMAGES (caricatures, Mahendran & Vedaldi 2016).

    Phi0 = max(0, Phi(x0)); loss -<Phi(x), Phi0> / ||Phi0||; starts from the image itself.

    \b
    Examples:
      preimage caricature --model alexnet.onnx --layer conv4 cat.jpg
      preimage caricature -m vggm.onnx -l relu5 -l fc8 --iters 200 photo.jpg
    """
    from ..invert import api

    out = _out_dir(out, "caricature", model)
    run = api.caricature(model, list(layers), list(images) or None, preset=preset, seeds=seeds, iters=iters,
                         device=device, overrides=_overrides(sets, C, precision), batch_size=batch_size, size=size,
                         progress=not quiet)
    _finish(run, out, f"caricature-{run.model.name}")
