"""Dosovitskiy & Brox (CVPR 2016), "Inverting visual representations with convolutional networks": a
trained decoder applied to all features, the top-k only, all but the top-k, binarised features,
interpolations and random features, with the image-space reconstruction error table."""
import os

import numpy as np
import torch

from .. import plots
from ..errors import PreimageError
from .common import grid, img, register, table_html, write_index, write_table

PER_IMAGE = ["none", "topk=5", "all-but-topk=5", "binarize"]


def _error(recon, x):
    """||x_hat - x|| / ||x|| per image, in the encoder's input space (x resized to the decoder's output)."""
    if recon.shape[-2:] != x.shape[-2:]:
        x = torch.nn.functional.interpolate(x, size=recon.shape[-2:], mode="bilinear", align_corners=False)
    d = (recon - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    return d.tolist()


@register("dosovitskiy-experiments", "Dosovitskiy & Brox's decoder experiments with a trained decoder (--decoder): "
          "reconstruction from all features, the 5 largest only, all but the 5 largest, binarised features "
          "(table: image-space error ||x_hat - x|| / ||x||, mean +- std), interpolation between two images and "
          "random features (truncated Gaussian, histogram). Quick: 2 images, 4 interpolation steps, 4 samples.")
def experiments(ctx):
    from ..decoders import FeatureStats, load_decoder, run_experiment
    from ..decoders.apply import encode_images
    from ..decoders.extract import resolve_encoder
    from ..device import resolve_device

    path = ctx.options.get("decoder")
    if not path:
        raise PreimageError("dosovitskiy-experiments needs a trained decoder: --decoder runs/fc8/checkpoint.pt",
                            where="--decoder")
    device = resolve_device(ctx.device)
    dec = load_decoder(path, device)
    model = ctx.model or dec.model_path
    layer = (ctx.layers or [dec.layer])[0]
    if model is None or layer is None:
        raise PreimageError("the decoder does not record its model and layer: pass --model and --layer")
    images = ctx.image_list(2)
    if len(images) < 2:
        raise PreimageError("give at least two images (interpolation and random features need them)")
    enc, _ = resolve_encoder(model, layer, device)
    x, feats = encode_images(enc, layer, images, size=dec.image_shape[1:] if dec.image_shape else None, device=device)
    stats = FeatureStats(feats)
    steps, n = (4, 4) if ctx.quick else (8, 8)
    rows, table = [], []
    with torch.no_grad():
        for spec in PER_IMAGE:
            f, _ = (feats, None) if spec == "none" else run_experiment(spec, feats, stats)
            out = dec(f.float())
            e = _error(out, x.float())
            table.append({"experiment": "all features" if spec == "none" else spec,
                          "error mean": float(np.mean(e)), "error std": float(np.std(e)), "images": len(e),
                          "paper": None})
            rows.append(("all features" if spec == "none" else spec, dec.preprocess.to_uint8(out)))
        randoms = []
        for spec in (f"interpolate={steps}", f"gaussian={n}", f"histogram={n}"):
            f, labels = run_experiment(spec, feats, stats)
            randoms.append((spec, dec.preprocess.to_uint8(dec(f.float())), labels))
    originals = dec.preprocess.to_uint8(torch.nn.functional.interpolate(x.float(), size=tuple(dec.image_shape[1:]))) \
        if dec.image_shape else dec.preprocess.to_uint8(x.float())
    names = [os.path.splitext(os.path.basename(p))[0] for p in images]
    g1 = grid(ctx.out, "feature_experiments", [list(originals)] + [list(r) for _, r in rows],
              ["original"] + [n_ for n_, _ in rows], names, "decoding manipulated features")
    g2 = grid(ctx.out, "interpolation_random", [list(r) for _, r, _ in randoms], [s for s, _, _ in randoms],
              None, "interpolation (first two images) and random features")
    columns = ["experiment", "error mean", "error std", "images", "paper"]
    caption = ("Image-space reconstruction error ||x_hat - x|| / ||x|| in the encoder's input space (mean-subtracted), "
               f"over {len(images)} image(s); decoder {os.path.basename(os.fspath(path))} on {layer}. The paper's "
               "values are not in the shared reference: left empty.")
    write_table(ctx.out, "errors", columns, table, caption)
    plot = plots.bars(os.path.join(ctx.out, "errors.png"), [t["experiment"] for t in table],
                      {"error": [t["error mean"] for t in table]}, errors={"error": [t["error std"] for t in table]},
                      xlabel="features decoded", ylabel="||x_hat - x|| / ||x|| (dimensionless)",
                      title="reconstruction error per experiment")
    return write_index(ctx.out, "Dosovitskiy & Brox decoder experiments", [
        ("Reconstruction error", f"<p>{caption}</p>" + table_html(columns, table)), ("Error plot", img(plot, ctx.out)),
        ("Feature manipulations", img(g1, ctx.out)), ("Interpolation and random features", img(g2, ctx.out))])
