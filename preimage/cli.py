"""The ``preimage`` command: a thin layer over the Python API.

Commands are loaded lazily from the table below (``name -> "module:attribute"``), so ``preimage --help``
stays fast and a command's heavy imports (torch, onnxruntime) happen only when it runs. A new command
is one entry here plus its module under ``preimage/commands/``.
"""
import errno
import importlib
import os
import warnings

import click

from .errors import PreimageError

COMMANDS = {
    "convert": "preimage.cli:convert",
    "layers": "preimage.commands.layers:layers",
    "inspect": "preimage.commands.torch7:inspect",
    "validate": "preimage.commands.validate:validate",
    "invert": "preimage.commands.invert:invert",
    "maximize": "preimage.commands.invert:maximize",
    "caricature": "preimage.commands.invert:caricature",
    "demo": "preimage.commands.demo:demo",
    "decoder": "preimage.commands.decoder:decoder",
    "sweep": "preimage.commands.sweep:sweep",
    "reproduce": "preimage.commands.reproduce:reproduce",
    "features": "preimage.commands.features:features",
}

CONVERT_COMMANDS = {
    "caffe": "preimage.commands.convert_caffe:convert_caffe",
    "torch7": "preimage.commands.torch7:convert_torch7",
}

SHORT_HELP = {
    "convert": "Convert a Caffe or Torch7 model to ONNX (or PyTorch).",
    "layers": "List a model's layers, blobs, shapes and receptive fields.",
    "inspect": "Print the object tree of a Torch7 .t7 file.",
    "validate": "Compare a converted model with reference activations and gradients.",
    "invert": "Reconstruct images from a layer's features by optimization.",
    "maximize": "Synthesize an image that maximizes a unit (activation maximization).",
    "caricature": "Exaggerate what a layer sees in an image.",
    "demo": "Build bundled models, convert, validate and invert sample images.",
    "decoder": "Learned upconvolutional decoders: extract, train, apply.",
    "sweep": "Hyperparameter search (Optuna) over inversion or decoder training.",
    "reproduce": "Regenerate a paper's table or figure on your model and images.",
    "features": "Write a model's values at some layers for images to an .npz.",
    "caffe": "Caffe prototxt + caffemodel -> ONNX.",
    "torch7": "Torch7 .t7 model -> ONNX or PyTorch checkpoint.",
}


class UserError(click.ClickException):
    exit_code = 2


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def __init__(self, *args, lazy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        module, attr = self.lazy[name].split(":")
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            # A command whose module is not there yet still shows in --help, and says why it can't run.
            @click.command(name=name, help=f"(unavailable: {e})", context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def cmd(args, _e=e):
                raise UserError(f"'{name}' is not available in this installation: {_e}")
        return cmd

    def format_commands(self, ctx, formatter):
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PreimageError as e:
            raise UserError(str(e)) from None
        except OSError as e:  # an output folder that cannot be written, a full disk: the file and the reason
            if e.filename is None:
                raise
            raise UserError(_os_error_line(e)) from None


def _os_error_line(e):
    """'PATH: cannot write (reason)' for an OSError; atomic writes' hidden temporary names become their folder."""
    path = os.fspath(e.filename)
    name = os.path.basename(path)
    if name.startswith(".") and name.endswith(".part"):
        path = os.path.dirname(path) or "."
        return f"{path}: cannot write an output file here ({e.strerror})"
    if e.errno in (errno.EEXIST, errno.ENOTDIR):  # makedirs met a file where an output folder must go
        return f"{path}: a file stands where a folder is needed ({e.strerror})"
    return f"{path}: {e.strerror}"


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="preimage")
def cli():
    """preimage: bring legacy Caffe and Torch7 CNNs back to life and see what their features know.

    \b
    Typical use:
      preimage convert caffe posenet.prototxt        # -> posenet.onnx (weights from posenet.caffemodel)
      preimage validate --model posenet.onnx --reference blobs.npz
      preimage invert --model posenet.onnx --layer fc5 street.jpg
      preimage demo                                  # everything, on bundled models and images

    Run 'preimage COMMAND --help' for each command's options.
    """


@cli.group(cls=LazyGroup, lazy=CONVERT_COMMANDS)
def convert():
    """Convert a legacy model (Caffe or Torch7) to ONNX.

    \b
    Examples:
      preimage convert caffe alexnet.prototxt                 # weights from alexnet.caffemodel -> alexnet.onnx
      preimage convert torch7 decoder.t7 --input-shape 1,256,6,6
      preimage convert torch7 net.t7 -o net.pt                # a PyTorch checkpoint instead

    Run 'preimage convert caffe --help' or 'preimage convert torch7 --help' for the options.
    """


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """preimage's own warnings as one line, like the commands' notices; others as Python shows them."""
    if category.__module__.startswith("preimage."):
        click.echo(f"warning: {message}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv=None):
    warnings.showwarning = _show_warning
    return cli.main(args=argv, prog_name="preimage")


if __name__ == "__main__":
    main()
