"""Apply a trained (or imported) decoder: reconstructions, grids, and the papers' experiments.

::

    dec = load_decoder("runs/fc8/checkpoint.pt")
    result = apply_decoder(dec, ["a.jpg", "b.jpg"], "out/", model="alexnet.onnx", experiment="topk=5")
"""
import os

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..errors import PreimageError
from ..preprocess import Preprocess, load_image, resize_center_crop, save_image
from . import extract
from .checkpoint import Decoder, decoder_from_checkpoint, is_training_checkpoint, read_torch_file
from .dataset import FeatureStore
from .experiments import FeatureStats, is_per_image, parse_spec, run_experiment
from .imports import import_decoder
from .report import row_metrics, summary, write_report

__all__ = ["Decoder", "apply_decoder", "encode_images", "load_decoder", "make_grid"]


def load_decoder(path, device="cpu", **overrides):
    """A :class:`Decoder` from a training checkpoint, or imported from Caffe / Torch7 / ONNX
    (see :mod:`.imports`; ``overrides``: ``feature_shape``, ``layer``, ``preprocess`` for imports)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PreimageError("no such decoder file", path=path)
    ck = read_torch_file(path)  # once: a training checkpoint can hold a gigabyte of weights and optimiser state
    if is_training_checkpoint(ck):
        dec = decoder_from_checkpoint(ck, path)
    else:
        dec = import_decoder(path, loaded=ck, **overrides)
    for k in ("layer", "model_path"):
        if overrides.get(k):
            setattr(dec, k, overrides[k])
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec.to(resolve_device(device)).eval()


def encode_images(encoder, layer, paths, size=None, device="cpu"):
    """Images -> (network inputs N x 3 x H x W, features N x ...), preprocessed with the encoder's metadata."""
    pre = getattr(encoder, "preprocess", None) or Preprocess()
    size = size or pre.input_size
    if not size:
        raise PreimageError("the model does not record its input size: pass --size H W")
    x = pre.load(paths, tuple(size)).to(device)
    try:
        with torch.no_grad():
            out = encoder(x)
    except RuntimeError as e:  # a decoder trained on another model's images: its size does not fit this one
        if isinstance(e, torch.OutOfMemoryError):
            raise
        raise PreimageError(f"the model does not run on {size[0]}x{size[1]} images ({str(e).splitlines()[0]}): "
                            "pass the model and layer the decoder was trained on (--model, --layer)") from None
    f = out[layer] if isinstance(out, dict) else out
    return x, f


def make_grid(rows, pad=2, background=255):
    """A grid picture from rows of H x W x 3 uint8 images (rows may differ in length; all one size)."""
    rows = [r for r in rows if len(r)]
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), background, np.uint8)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            if img.shape[:2] != (h, w):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = img
    return grid


def apply_decoder(decoder, images, output_dir, *, model=None, layer=None, experiment=None, stats=None, device="cpu",
                  batch=32, size=None):
    """Decode ``images`` (paths) through ``model``'s ``layer``; write the PNGs, ``grid-TAG.png`` (pixels as they
    are, originals over reconstructions), ``figure-TAG.png`` (the same, labelled), ``errors-TAG.png``,
    ``metrics.json`` (errors per decoded image, see :mod:`.report`) and ``index.html`` to ``output_dir``.

    ``experiment``: a spec from :mod:`.experiments` (``topk=5``, ``all-but-topk=5``, ``interpolate=8``,
    ``gaussian=16``, ``histogram=16``, ``binarize``, ``neuron=IDX``). ``stats``: features (tensor) or a
    feature store folder whose population statistics drive the random experiments (default: the images').
    Returns ``{"files": [...], "grid", "figure", "errors", "metrics", "index": paths, "labels": [...]}``.
    """
    if experiment:
        parse_spec(experiment)  # a misspelt experiment or value: say so before any work
    device = resolve_device(device)
    dec = decoder if isinstance(decoder, Decoder) else load_decoder(decoder, device)
    dec = dec.to(device)
    layer = layer or dec.layer
    model = model or dec.model_path
    images = [os.fspath(p) for p in ([images] if isinstance(images, (str, os.PathLike)) else images)]
    enc, feats, originals = None, None, []
    if images:
        enc, feats, originals = _encode_inputs(dec, images, model, layer, size, device)
    elif layer is not None and _at_hand(model):
        enc, _ = extract.resolve_encoder(model, layer, device)  # only to measure the feature error
    st = _population(stats, device)
    if feats is None:
        if experiment is None or not (experiment.startswith(("gaussian", "histogram", "neuron"))):
            raise PreimageError("give images to decode (or a random-feature experiment with --stats)")
        if st is None:
            raise PreimageError(f"experiment '{experiment}' without images needs --stats FEATS/ (a feature store)")
        feats = torch.zeros(0, *st.shape, device=device)
    labels = [os.path.basename(p) for p in images]
    if experiment:
        feats, labels = run_experiment(experiment, feats, st)
    feats = feats.to(device).float()
    with torch.no_grad():
        x = torch.cat([dec(feats[s:s + batch]) for s in range(0, len(feats), batch)])
    recon = dec.preprocess.to_uint8(x)
    tag = (experiment or "recon").replace("=", "")
    files = _write_pngs(output_dir, tag, recon, labels, experiment)
    rows = [originals, recon] if originals and len(originals) == len(recon) else ([originals[:2], recon] if originals else [recon])
    grid = os.path.join(output_dir, f"grid-{tag}.png")
    save_image(grid, make_grid(rows))
    per_image = bool(originals) and is_per_image(experiment) and len(originals) == len(recon)
    results = row_metrics(recon, originals, per_image, feature_errors(enc, layer, x, feats, batch), labels, files, images)
    source = dec.source or {}
    m = {"decoder": source.get("checkpoint") or source.get("file"), "source": source, "model": _model_name(model),
         "layer": layer, "experiment": experiment, "summary": summary(results), "results": results}
    report = write_report(output_dir, tag, m, recon, originals if per_image else originals[:2], grid)
    return {"files": files, "grid": grid, "labels": labels, **report}


def _at_hand(model):
    """A callable, a representation spec, or a model file that exists (a recorded path may be gone: then no
    feature error)."""
    from ..models.representations import is_spec  # deferred: only for paths and specs

    return model is not None and (not isinstance(model, (str, os.PathLike)) or os.path.isfile(model) or is_spec(model))


def _model_name(model):
    if model is None or isinstance(model, (str, os.PathLike)):
        return None if model is None else os.fspath(model)
    return type(model).__name__  # a callable given in Python


def _encode_inputs(dec, images, model, layer, size, device):
    """(encoder, features of the images, their pictures at the decoder's size) for ``apply_decoder``."""
    if model is None or layer is None:
        raise PreimageError("decoding images needs the model and layer that produce the features (--model, --layer)")
    enc, _ = extract.resolve_encoder(model, layer, device)
    imported = bool(dec.source and dec.source.get("imported"))
    # our decoders were trained on images of the size the features were extracted at; an imported
    # decoder's output size says nothing about the encoder's input: use the encoder's own
    size = size or (None if imported or not dec.image_shape else dec.image_shape[1:])
    _, feats = encode_images(enc, layer, images, size=size, device=device)
    if dec.feature_shape and feats[0].numel() != int(np.prod(dec.feature_shape)):
        shape = "x".join(map(str, feats.shape[1:]))
        raise PreimageError(f"{os.path.basename(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else 'the model'} "
                            f"{layer} gives {shape} features, the decoder takes {'x'.join(map(str, dec.feature_shape))}: "
                            "pass the model and layer it was trained on (--model, --layer)")
    if imported and not dec.preprocess.to_metadata().get("input_size"):
        dec.preprocess = getattr(enc, "preprocess", None) or dec.preprocess  # the encoder's pictures
    originals = [np.clip(load_image(p), 0, 255).astype(np.uint8) for p in images]
    originals = [resize_center_crop(o, tuple(dec.image_shape[1:])) if dec.image_shape else o for o in originals]
    return enc, feats, originals


def _population(stats, device):
    """FeatureStats of a tensor or of a store's train split (its first 20000 rows); None without ``stats``."""
    if stats is None:
        return None
    if not torch.is_tensor(stats):
        st = FeatureStore(stats)
        stats = torch.from_numpy(st.get(st.split("train")[:20000])[0])
    return FeatureStats(stats.to(device))


def _write_pngs(output_dir, tag, recon, labels, experiment):
    os.makedirs(output_dir, exist_ok=True)
    files = []
    for i, img in enumerate(recon):
        stem = f"{i:03d}-{os.path.splitext(labels[i])[0]}" if not experiment else f"{i:03d}"
        p = os.path.join(output_dir, f"{tag}-{stem}.png")
        save_image(p, img)
        files.append(p)
    return files


def feature_errors(enc, layer, x, feats, batch=32):
    """||enc(x)[layer] - f|| / ||f|| per row; None without an encoder, or when it does not take the decoder's
    output (an imported decoder's size) or gives features of another size."""
    if enc is None or layer is None or len(x) == 0:
        return None
    out = []
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                o = enc(x[s:s + batch])
                out.append((o[layer] if isinstance(o, dict) else o).flatten(1).double())
    except (RuntimeError, KeyError):  # a size or layer the encoder does not take: no feature error
        return None
    phi, f = torch.cat(out), feats.flatten(1).double()
    if phi.shape != f.shape:
        return None
    return ((phi - f).norm(dim=1) / f.norm(dim=1).clamp_min(1e-12)).tolist()
