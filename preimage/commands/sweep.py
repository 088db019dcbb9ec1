"""``preimage sweep invert|maximize|caricature|decoder``: thin click layer over :mod:`preimage.sweep`."""
import click

from .options import device_option, model_option, output_folder, parse_sets, preset_name, size_option

CTX = {"help_option_names": ["-h", "--help"]}


def _search_options(f):
    opts = [
        click.option("--param", "-p", "params", multiple=True, required=True, metavar="NAME=SPEC",
                     help="A searched parameter: NAME=log:LOW:HIGH, lin:LOW:HIGH, int:LOW:HIGH, int:log:LOW:HIGH, "
                          "choice:A,B,C, or NAME=VALUE (fixed). Repeat for several."),
        click.option("--trials", "-n", "n_trials", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Trials the study should have in all (over every worker and every earlier run)."),
        click.option("--sampler", type=click.Choice(["random", "tpe"]), default="random", show_default=True,
                     help="random: the papers' method; tpe: Optuna's Tree-structured Parzen Estimator."),
        click.option("--seed", type=int, default=None, help="Sampler seed (default: fresh randomness)."),
        click.option("--storage", default=None, metavar="URL",
                     help="Any Optuna storage URL, e.g. postgresql://user@host/db, shared by workers on many "
                          "machines (default: sqlite:///OUT/study.db)."),
        click.option("--study", "study_name", default="sweep", show_default=True, help="Study name in the storage."),
        click.option("--out", "-o", "out", type=click.Path(file_okay=False), help="Run folder (default: sweep-KIND-MODEL)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress output."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _inversion_options(f):
    opts = [
        model_option(help="Converted model (.onnx), or a .prototxt with its .caffemodel beside it."),
        click.option("--layer", "-l", "layers", multiple=True, required=True, help="Layer (or blob); repeat for several."),
        click.option("--preset", default="mahendran2016", show_default=True, metavar="NAME", callback=preset_name,
                     help="The method whose constants every trial starts from (mahendran2016, mahendran2016-shallow, "
                          "posenet2016, or any registered preset)."),
        click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1), help="Random starts per image."),
        click.option("--iters", type=click.IntRange(min=0), help="Iterations per trial (preset: 300)."),
        click.option("--C", "C", type=float, help="Loss weight C for every trial (unless searched)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="A fixed preset override for every trial."),
        click.option("--objective", default=None, type=click.Choice(["relative_loss", "normalized_error", "final_loss", "activation"]),
                     help="Minimised score (default: relative_loss for invert, final_loss for caricature, activation "
                          "for maximize)."),
        click.option("--batch-size", "batch", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Trials optimised together in one batch (x images x seeds x layers)."),
        click.option("--sequential", is_flag=True, help="Run trials one after another instead of in one batch."),
        size_option(help="Input size when the model does not declare one."),
        device_option(),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _report(summary):
    if summary.best_value is not None:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.best_params.items())
        click.echo(f"best: trial {summary.best_number}, objective {summary.best_value:.4g} ({params})")
    click.echo(f"{summary.complete} finished trial(s) in study '{summary.study}' ({summary.ran} run here, "
               f"{summary.seconds:.1f} s); storage {summary.storage}")
    if summary.index:
        click.echo(f"Report: {summary.index}")
    if summary.interrupted:
        click.echo("Interrupted: finished trials are kept; run the same command again to continue.", err=True)
        raise SystemExit(130)


def _inversion(kind, model, layers, images, units, masks, preset, seeds, iters, C, sets, objective, batch, sequential,
               size, device, params, n_trials, sampler, seed, storage, study_name, out, quiet):
    from ..sweep import Target, parse_space, sweep_inversion

    space = parse_space(params)
    out = output_folder(out, f"sweep-{kind}", model)
    target = Target(kind, model, list(layers), images=list(images) or None, units=list(units or []) or None,
                    preset=preset, seeds=seeds, iters=iters, masks=list(masks or []) or None,
                    overrides=parse_sets(sets, C), device=device, score=objective, size=size)
    summary = sweep_inversion(target, space, out, n_trials=n_trials, batch=batch, sampler=sampler, seed=seed,
                              storage=storage, study_name=study_name, batched=False if sequential else None,
                              progress=not quiet)
    _report(summary)


@click.group(context_settings=CTX)
def sweep():
    """Hyperparameter searches (Optuna) over inversion parameters and decoder training options.

    \b
    The PoseNet study's two searches on your model:
      preimage sweep invert -m posenet.onnx -l conv4 --preset posenet2016 --set weight.l6=0 \\
          --set weight.sqrt_tv=0 --param lr=log:1e-10:1e4 --trials 1500 -o lr-search
      preimage sweep invert -m posenet.onnx -l conv4 --preset posenet2016 --param lr=log:1e-2:1e3 \\
          --param weight.sqrt_tv=log:1e-8:1e-2 --param weight.l6=log:1e-20:1e-10 --trials 2500 -o joint
    \b
    Re-run the same command to continue a study (Ctrl-C keeps finished trials). Start it on several
    machines with --storage postgresql://... to share one study. Reports: OUT/index.html.
    """


@sweep.command(context_settings=CTX)
@_inversion_options
@click.option("--mask", "masks", multiple=True, help="Feature mask for every trial (see preimage invert --help).")
@_search_options
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def invert(model, layers, preset, seeds, iters, C, sets, objective, batch, sequential, size, device, masks, params,
           n_trials, sampler, seed, storage, study_name, out, quiet, images):
    """Search inversion parameters on IMAGES (default: the bundled samples); minimises the relative loss.

    \b
    Examples:
      preimage sweep invert -m alexnet.onnx -l conv3 --param eta0=log:10:1e4 --param weight.tv=log:0.01:10 --trials 64
      preimage sweep invert -m posenet.onnx -l fc5 --preset posenet2016 --param lr=log:1e-10:1e4 --sampler tpe
    """
    _inversion("invert", model, layers, images, None, masks, preset, seeds, iters, C, sets, objective, batch, sequential,
               size, device, params, n_trials, sampler, seed, storage, study_name, out, quiet)


@sweep.command(context_settings=CTX)
@_inversion_options
@click.option("--unit", "-u", "units", multiple=True, type=int, required=True, help="Unit to maximise; repeat.")
@_search_options
@click.option("--images", "images", multiple=True, type=click.Path(dir_okay=False), help="Images giving each unit's M.")
def maximize(model, layers, preset, seeds, iters, C, sets, objective, batch, sequential, size, device, units, params,
             n_trials, sampler, seed, storage, study_name, out, quiet, images):
    """Search activation-maximization parameters; minimises -activation / M (i.e. maximises the unit).

    \b
    Example:
      preimage sweep maximize -m alexnet.onnx -l fc8 -u 281 --param C=log:1:300 --param weight.tv=log:0.01:10
    """
    _inversion("maximize", model, layers, images, units, None, preset, seeds, iters, C, sets, objective, batch,
               sequential, size, device, params, n_trials, sampler, seed, storage, study_name, out, quiet)


@sweep.command(context_settings=CTX)
@_inversion_options
@_search_options
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
def caricature(model, layers, preset, seeds, iters, C, sets, objective, batch, sequential, size, device, params,
               n_trials, sampler, seed, storage, study_name, out, quiet, images):
    """Search caricature parameters; minimises the final loss -<Phi(x), Phi0> / ||Phi0||.

    \b
    Example:
      preimage sweep caricature -m alexnet.onnx -l conv4 --param C=log:1:100 cat.jpg --trials 32
    """
    _inversion("caricature", model, layers, images, None, None, preset, seeds, iters, C, sets, objective, batch,
               sequential, size, device, params, n_trials, sampler, seed, storage, study_name, out, quiet)


@sweep.command(context_settings=CTX)
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--arch", default="alexnet_fc8", show_default=True, help="Decoder architecture (see preimage decoder train).")
@click.option("--iters", type=click.IntRange(min=1), default=500, show_default=True, help="Training iterations per trial.")
@model_option(required=False, help="The encoder model (needed by the mirror and deepsim architectures).")
@device_option()
@_search_options
def decoder(store, arch, iters, model, device, params, n_trials, sampler, seed, storage, study_name, out, quiet):
    """Search decoder training options on the feature store STORE; minimises the validation loss after
    --iters iterations (short training). Trials run one after another.

    \b
    Example:
      preimage sweep decoder feats/ --arch alexnet_fc8 --iters 2000 --param lr=log:1e-5:1e-2 \\
          --param weight_decay=log:1e-8:1e-3 --trials 20 -o dec-search
    """
    import os

    from ..sweep import parse_space, sweep_decoder

    space = parse_space(params)
    out = out or f"sweep-decoder-{os.path.basename(os.path.normpath(store))}"
    summary = sweep_decoder(store, space, out, n_trials=n_trials, arch=arch, iters=iters, encoder=model, device=device,
                            sampler=sampler, seed=seed, storage=storage, study_name=study_name, progress=not quiet)
    _report(summary)
