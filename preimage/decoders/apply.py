"""Apply a trained (or imported) decoder: reconstructions, grids, and the papers' experiments.

::

    dec = load_decoder("runs/fc8/checkpoint.pt")
    result = apply_decoder(dec, ["a.jpg", "b.jpg"], "out/", model="alexnet.onnx", experiment="topk=5")
"""
import os

import numpy as np
import torch
import torch.nn as nn

from ..device import resolve_device
from ..errors import PreimageError
from ..preprocess import Preprocess, load_image, resize_center_crop, save_image
from .architectures import build_decoder
from .experiments import FeatureStats, run_experiment


class Decoder(nn.Module):
    """A decoder with what it needs to be used: features ``N x feature_shape`` -> images ``N x 3 x H x W``
    in the encoder's preprocessed input space. ``preprocess`` turns its output back into pictures."""

    def __init__(self, net, feature_shape, image_shape, preprocess, layer=None, model_path=None, source=None):
        super().__init__()
        self.net = net
        self.feature_shape = tuple(feature_shape) if feature_shape else None
        self.image_shape = tuple(image_shape) if image_shape else None
        self.preprocess = preprocess if isinstance(preprocess, Preprocess) else Preprocess.from_metadata(preprocess or {})
        self.layer = layer
        self.model_path = model_path
        self.source = source
        self.eval()

    def forward(self, f):
        if self.feature_shape is not None:
            f = f.reshape(-1, *self.feature_shape)
        out = self.net(f)
        if isinstance(out, dict):  # an imported ONNX/Caffe decoder returns {output name: tensor}
            out = next(iter(out.values()))
        return out


def load_decoder(path, device="cpu", **overrides):
    """A :class:`Decoder` from a training checkpoint, or imported from Caffe / Torch7 / ONNX
    (see :mod:`.imports`; ``overrides``: ``feature_shape``, ``layer``, ``preprocess`` for imports)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PreimageError("no such decoder file", path=path)
    from .imports import import_decoder, read_torch_file
    from .train import CHECKPOINT_FORMAT

    ck = read_torch_file(path)  # once: a training checkpoint can hold a gigabyte of weights and optimiser state
    if isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT:
        net = build_decoder(ck["arch"], ck["feature_shape"], ck["image_shape"], **ck["arch_options"])
        net.load_state_dict(ck["model"])
        dec = Decoder(net, ck["feature_shape"], ck["image_shape"], ck["preprocess"], ck.get("layer"), ck.get("model_path"),
                      source={"checkpoint": os.path.abspath(path), "iter": ck["iter"]})
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
                import cv2

                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = img
    return grid


def apply_decoder(decoder, images, output_dir, *, model=None, layer=None, experiment=None, stats=None, device="cpu",
                  batch=32, size=None):
    """Decode ``images`` (paths) through ``model``'s ``layer`` and write PNGs + ``grid.png`` to ``output_dir``.

    ``experiment``: a spec from :mod:`.experiments` (``topk=5``, ``all-but-topk=5``, ``interpolate=8``,
    ``gaussian=16``, ``histogram=16``, ``binarize``, ``neuron=IDX``). ``stats``: features (tensor) or a
    feature store folder whose population statistics drive the random experiments (default: the images').
    Returns ``{"files": [...], "grid": path, "labels": [...]}``.
    """
    from .experiments import parse_spec
    from .extract import resolve_encoder

    if experiment:
        parse_spec(experiment)  # a misspelt experiment or value: say so before any work
    device = resolve_device(device)
    dec = decoder if isinstance(decoder, Decoder) else load_decoder(decoder, device)
    dec = dec.to(device)
    layer = layer or dec.layer
    model = model or dec.model_path
    images = [os.fspath(p) for p in ([images] if isinstance(images, (str, os.PathLike)) else images)]
    feats, originals = None, []
    if images:
        if model is None or layer is None:
            raise PreimageError("decoding images needs the model and layer that produce the features (--model, --layer)")
        enc, _ = resolve_encoder(model, layer, device)
        imported = bool(dec.source and dec.source.get("imported"))
        # our decoders were trained on images of the size the features were extracted at; an imported
        # decoder's output size says nothing about the encoder's input: use the encoder's own
        size = size or (None if imported or not dec.image_shape else dec.image_shape[1:])
        x, feats = encode_images(enc, layer, images, size=size, device=device)
        if dec.feature_shape and feats[0].numel() != int(np.prod(dec.feature_shape)):
            shape = "x".join(map(str, feats.shape[1:]))
            raise PreimageError(f"{os.path.basename(os.fspath(model))} {layer} gives {shape} features, the decoder "
                                f"takes {'x'.join(map(str, dec.feature_shape))}: pass the model and layer it was "
                                "trained on (--model, --layer)")
        if imported and not dec.preprocess.to_metadata().get("input_size"):
            dec.preprocess = getattr(enc, "preprocess", None) or dec.preprocess  # the encoder's pictures
        originals = [np.clip(load_image(p), 0, 255).astype(np.uint8) for p in images]
        originals = [resize_center_crop(o, tuple(dec.image_shape[1:])) if dec.image_shape else o for o in originals]
    if stats is not None and not torch.is_tensor(stats):
        from .dataset import FeatureStore

        st = FeatureStore(stats)
        rows = st.split("train")[:20000]
        stats = torch.from_numpy(st.get(rows)[0])
    st = FeatureStats(stats.to(device)) if stats is not None else None
    if feats is None:
        if experiment is None or not (experiment.startswith(("gaussian", "histogram", "neuron"))):
            raise PreimageError("give images to decode (or a random-feature experiment with --stats)")
        if st is None:
            raise PreimageError(f"experiment '{experiment}' without images needs --stats FEATS/ (a feature store)")
        feats = torch.zeros(0, *st.shape, device=device)
    labels = [os.path.basename(p) for p in images]
    if experiment:
        feats, labels = run_experiment(experiment, feats, st)
    outs = []
    with torch.no_grad():
        for s in range(0, len(feats), batch):
            outs.append(dec(feats[s:s + batch].to(device).float()))
    recon = dec.preprocess.to_uint8(torch.cat(outs))
    os.makedirs(output_dir, exist_ok=True)
    files = []
    tag = (experiment or "recon").replace("=", "")
    for i, img in enumerate(recon):
        stem = os.path.splitext(labels[i])[0] if not experiment else f"{i:03d}"
        if not experiment:
            stem = f"{i:03d}-{stem}"
        p = os.path.join(output_dir, f"{tag}-{stem}.png")
        save_image(p, img)
        files.append(p)
    rows = [originals, recon] if originals and len(originals) == len(recon) else ([originals[:2], recon] if originals else [recon])
    grid = os.path.join(output_dir, f"grid-{tag}.png")
    save_image(grid, make_grid(rows))
    return {"files": files, "grid": grid, "labels": labels}
