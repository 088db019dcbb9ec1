"""Any model's values at any layers, for images: the API behind ``preimage features``.

    >>> from preimage.features import extract_features, save_features
    >>> feats = extract_features("alexnet.onnx", ["conv3", "fc8"], ["cat.jpg", "dog.jpg"])
    >>> feats["fc8"].shape, feats["fc8"].dtype          # ((2, 1000), dtype('float32'))
    >>> feats = extract_features("hog:cell=8", ["hog", "cells"], ["cat.jpg"], size=(240, 320))
    >>> save_features("feats.npz", feats)

``model``: a converted .onnx (or .prototxt with its .caffemodel), a representation spec (``hog``,
``dsift:bin=4,step=2``, ``lbp``; see docs/representations.md) or a loaded feature extractor (anything
``x -> {name: tensor}`` with a ``.preprocess``).
"""
import os

import numpy as np
import torch

from .device import resolve_device
from .errors import PreimageError
from .fileio import atomic_path


def _extractor(model, layers, device):
    if isinstance(model, (str, os.PathLike)) or hasattr(model, "ParseFromString"):
        from .converters.onnx_torch.load import load_features

        if isinstance(model, (str, os.PathLike)):
            from .models.representations import is_spec

            if not is_spec(model) and not os.path.isfile(os.fspath(model)):
                raise PreimageError("model file not found (or not a representation: hog, hogb, dsift, lbp)",
                                    path=os.fspath(model))
        return load_features(model, outputs=list(layers), device=device)
    if not callable(model):
        raise PreimageError(f"expected a model path, a representation spec or a feature extractor, got "
                            f"{type(model).__name__}")
    return model


def extract_features(model, layers, images, size=None, device="cpu", batch_size=16):
    """``{layer: float32 array N x ...}`` of ``model``'s values at ``layers`` for ``images`` (paths),
    preprocessed by the model's own preprocessing at ``size`` = (H, W) (default: its input size; images
    keep their own size where it has none, and must then share one)."""
    layers = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers or []))
    if not layers:
        raise PreimageError("give at least one layer", where="--layer")
    images = [images] if isinstance(images, (str, os.PathLike)) else list(images or [])
    if not images:
        raise PreimageError("give at least one image")
    dev = resolve_device(device)
    fx = _extractor(model, layers, dev)
    pre = getattr(fx, "preprocess", None)
    if pre is None:
        raise PreimageError("the feature extractor has no .preprocess to turn images into inputs")
    out = {name: [] for name in layers}
    for start in range(0, len(images), batch_size):
        paths = images[start:start + batch_size]
        arrays = [pre.image_to_array(_load(p), size) for p in paths]
        sizes = sorted({"x".join(map(str, a.shape[1:])) for a in arrays})
        if len(sizes) > 1:
            raise PreimageError(f"the images have different sizes ({', '.join(sizes)}) and the model declares "
                                "none: pass --size H W", path=paths[0])
        x = torch.from_numpy(np.stack(arrays)).to(dev)
        with torch.no_grad():
            values = fx(x)
        for name in layers:
            if name not in values:
                raise PreimageError(f"the model did not compute {name!r}", where="--layer")
            out[name].append(values[name].detach().float().cpu().numpy())
    try:
        return {name: np.ascontiguousarray(np.concatenate(v), dtype=np.float32) for name, v in out.items()}
    except ValueError:  # batches of different image sizes
        raise PreimageError("the images have different sizes and the model declares none: pass --size H W") from None


def _load(path):
    from .preprocess import load_image

    return load_image(path)


def save_features(path, features):
    """Write ``{name: array}`` to an .npz, atomically (no half-written file on failure)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise PreimageError("the output must be an .npz file", path=path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **features)
    return path
