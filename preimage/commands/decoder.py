"""``preimage decoder extract|train|apply``: thin click layer over :mod:`preimage.decoders`."""
import json
import os

import click

from ..errors import PreimageError
from .options import device_option, model_option, shape_callback, size_option

CTX = {"help_option_names": ["-h", "--help"]}


def _main_rank():
    """Under torchrun only rank 0 reports (every rank runs the same command)."""
    return os.environ.get("RANK", "0") == "0"


def _numbers(text, kind, what, count=None):
    if text is None:
        return None
    try:
        vals = [kind(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise PreimageError(f"{what}: expected comma-separated numbers, got '{text}'") from None
    if count is not None and len(vals) != count:
        raise PreimageError(f"{what}: expected {count} numbers, got '{text}'")
    return vals


@click.group(context_settings=CTX)
def decoder():
    """Learned upconvolutional decoders (Dosovitskiy & Brox; the PoseNet study): extract features over an
    image folder, train a decoder on them, apply it and run the papers' feature experiments.

    \b
    A whole session:
      preimage decoder extract --model alexnet.onnx --layer fc8 --images photos/ -o feats/
      preimage decoder train feats/ --arch alexnet_fc8 --iters 100000 -o runs/fc8
      preimage decoder apply --decoder runs/fc8/checkpoint.pt cat.jpg dog.jpg -o out/
      preimage decoder apply --decoder runs/fc8/checkpoint.pt cat.jpg --experiment topk=5 -o out/
    """


@decoder.command(context_settings=CTX)
@model_option(help="The encoder: a converted .onnx (or a .prototxt with its .caffemodel beside it).")
@click.option("--layer", "-l", required=True, help="Layer (or blob) whose features to store, e.g. fc8, conv5, pool5.")
@click.option("--images", "-i", required=True, type=click.Path(exists=True),
              help="A folder of images (searched recursively) or a text file with one image path per line.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="The feature store folder.")
@size_option(help="Network input size (default: the model's). Images are resized and centre-cropped to it.")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True, help="Images per forward pass.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1024, show_default=True, help="Images per shard file.")
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="train,val,test fractions (e.g. the PoseNet study's 650k/100k/50k is 0.8125,0.125,0.0625).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Stored feature type (float16 halves the store).")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Threads decoding images.")
@device_option()
def extract(model, layer, images, output, size, batch, shard_size, split, seed, dtype, workers, device):
    """Run a converted model over images and store LAYER's features plus the images.

    Writes a sharded, memory-mappable store (features-*.npy, images-*.npy, index.json) with a
    train/val/test split. Interrupted? Run the same command again: finished shards are kept. Unreadable
    images are reported and skipped. Preprocessing the model does not record (mean, channel order,
    scale) is assumed, with a warning naming it. The store records the model's path and sha256, so
    'decoder train --arch mirror' finds it without --model.

    Many images? Launch the same command with torchrun: each process (one per GPU) extracts its share
    of the shards into the same store; the result is the store one process writes.

    \b
    Examples:
      preimage decoder extract -m alexnet.onnx -l fc8 -i photos/ -o feats/
      preimage decoder extract -m posenet.onnx -l fc5 -i list.txt --size 101 101 --shard-size 4096 -o feats/
      torchrun --nproc_per_node 4 --no-python preimage decoder extract -m posenet.onnx -l fc5 -i list.txt -o feats/
    """
    from ..decoders.extract import extract_features  # deferred: torch; --help stays fast

    idx = extract_features(model, layer, images, output, size=size, batch=batch, shard_size=shard_size,
                           split=_numbers(split, float, "--split", 3), seed=seed, device=device, feature_dtype=dtype,
                           workers=workers)
    if _main_rank():
            click.echo(f"{idx['count']} image{'s' if idx['count'] != 1 else ''} -> {output} (features {idx['feature_shape']}, "
                   f"split {idx['split']}, {len(idx['skipped'])} skipped)")


@decoder.command(context_settings=CTX)
@click.argument("features", type=click.Path(exists=True, file_okay=False))
@click.option("--arch", "-a", default=None,
              help="alexnet_fc8 (default), alexnet_conv5, mirror (needs the encoder: --model, or the one the store "
                   "was extracted from), deepsim (the encoder, and --feature-layer); for HOG, dense SIFT and LBP maps "
                   "hog_twostream, sift_twostream, lbp_twostream (the default for a store extracted with -m hog, "
                   "hogb, dsift or lbp).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoint.pt, metrics.jsonl, samples/, tb/. An existing run there is resumed.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Global batch (split over torchrun processes).  [default: 64]")
@click.option("--iters", type=click.IntRange(min=1), default=None, help="Training iterations.  [default: 10000]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Adam learning rate.  [default: 1e-4]")
@click.option("--lr-steps", default=None, help="Iterations at which the LR drops (default: 60%,85% of --iters).")
@click.option("--lr-gamma", type=float, default=None, help="LR factor at each drop.  [default: 0.1]")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=None, help="Scale the architecture's channel counts (e.g. 0.5).")
@click.option("--log-every", type=click.IntRange(min=1), default=None, help="[default: 50]")
@click.option("--val-every", type=click.IntRange(min=1), default=None, help="[default: 1000]")
@click.option("--ckpt-every", type=click.IntRange(min=1), default=None, help="[default: 1000]")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--amp", type=click.Choice(["auto", "on", "off"]), default=None, help="Mixed precision (auto: on CUDA).")
@model_option(required=False, help="The encoder (for mirror's geometry and deepsim's feature loss; default: the model the "
              "store was extracted from, when it is still there unchanged).")
@click.option("--feature-layer", default=None, help="deepsim: encoder layer of the feature loss (e.g. pool5).")
@click.option("--no-tensorboard", is_flag=True, help="Do not write TensorBoard logs.")
@click.option("--other-store", is_flag=True,
              help="Continue a run folder that was trained on another feature store (otherwise refused).")
@device_option()
def train(features, arch, output, batch, iters, lr, lr_steps, lr_gamma, width, log_every, val_every, ckpt_every, seed,
          amp, model, feature_layer, no_tensorboard, other_store, device):
    """Train a decoder on a feature store (Adam, step LR drops, validation, checkpoints).

    Ctrl-C stops after the current step with a checkpoint; the same command resumes exactly. Several
    GPUs or machines: launch the same command with torchrun (DistributedDataParallel; NCCL on GPU,
    gloo on CPU); the global --batch is split over the processes.

    \b
    Examples:
      preimage decoder train feats/ --arch alexnet_fc8 --iters 100000 -o runs/fc8
      preimage decoder train feats/ --arch mirror --model posenet.onnx --iters 140000 --lr-steps 80000,120000 -o runs/pose
      preimage decoder extract -m hog -l hog -i photos/ -o hogfeats/ && preimage decoder train hogfeats/ -o runs/hog
      torchrun --nproc_per_node 4 --no-python preimage decoder train feats/ --arch alexnet_conv5 -o runs/c5
    """
    from ..decoders.train import train_decoder  # deferred: torch; --help stays fast

    opts = dict(batch=batch, iters=iters, lr=lr, lr_steps=_numbers(lr_steps, int, "--lr-steps"), lr_gamma=lr_gamma,
                log_every=log_every, val_every=val_every, ckpt_every=ckpt_every, seed=seed, amp=amp,
                feature_layer=feature_layer)
    if width is not None:
        opts["arch_options"] = {"width": width}
    r = train_decoder(features, output, arch, encoder=model, device=device, tensorboard=not no_tensorboard,
                     other_store=other_store, **opts)
    state = "finished" if r["finished"] else "stopped (run again to resume)"
    if _main_rank():
            click.echo(f"{state} at iteration {r['iter']}: "
                   + json.dumps({k: r.get(k) for k in ("train_loss", "val_loss") if r.get(k) is not None}))


@decoder.command(context_settings=CTX)
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--decoder", "-d", "decoder_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="checkpoint.pt from 'decoder train', or an imported decoder: Caffe .prototxt (+ .caffemodel), "
                   "Torch7 .t7 (or its converted .pt), .onnx.")
@model_option(required=False, help="The encoder (default: the one the decoder was trained on).")
@click.option("--layer", "-l", default=None, help="The encoder layer (default: the decoder's).")
@click.option("--output", "-o", default="decoded", show_default=True, type=click.Path(file_okay=False))
@click.option("--experiment", "-e", default=None,
              help="topk=K, all-but-topk=K, interpolate=STEPS (first two images), gaussian=N, histogram=N "
                   "(random features), binarize, neuron=INDEX.")
@click.option("--stats", type=click.Path(exists=True, file_okay=False), default=None,
              help="A feature store whose statistics drive gaussian/histogram/neuron (default: the images').")
@click.option("--feature-shape", default=None, callback=shape_callback,
              help="Imported decoders: input shape, e.g. 4096 or 256,6,6.")
@device_option()
def apply(images, decoder_path, model, layer, output, experiment, stats, feature_shape, device):
    """Reconstruct images from their features with a decoder; write PNGs, grids, metrics and a report.

    Writes to -o DIR: one PNG per decoded image, grid-TAG.png (originals over reconstructions, pixels
    as they are), figure-TAG.png (the same, labelled), errors-TAG.png (PSNR in dB and feature error per
    image), metrics.json (pixel RMSE in 8-bit levels, PSNR, and the feature error ||phi(x') - f|| / ||f||
    of each decoded image) and index.html. TAG is the experiment (recon without one).

    \b
    Examples:
      preimage decoder apply -d runs/fc8/checkpoint.pt cat.jpg dog.jpg -o out/
      preimage decoder apply -d runs/fc8/checkpoint.pt cat.jpg -e all-but-topk=5 -o out/
      preimage decoder apply -d runs/fc8/checkpoint.pt cat.jpg dog.jpg -e interpolate=8 -o out/
      preimage decoder apply -d runs/fc8/checkpoint.pt -e gaussian=16 --stats feats/ -o out/
      preimage decoder apply -d fc8_decoder.prototxt -m alexnet.onnx -l fc8 cat.jpg -o out/
    """
    # deferred: torch; 'preimage decoder apply --help' stays fast
    from ..decoders.apply import apply_decoder, load_decoder
    from ..decoders.experiments import parse_spec
    from ..device import resolve_device

    if experiment:
        parse_spec(experiment)  # before the decoder is loaded
    dev = resolve_device(device)
    dec = load_decoder(decoder_path, dev, feature_shape=feature_shape, layer=layer,
                       model_path=model)
    r = apply_decoder(dec, list(images), output, model=model, layer=layer, experiment=experiment, stats=stats, device=dev)
    n = len(r["files"])
    where = f"report: {r['index']}" if r.get("index") else f"grid: {r['grid']}"
    click.echo(f"{n} image{'s' if n != 1 else ''} -> {output}; {where}")
