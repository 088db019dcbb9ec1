"""What the inversion needs from a model: features, preprocessing, geometry, layer order.

``open_model`` accepts a converted model (.onnx path or ModelProto, or a .prototxt converted on the fly),
a representation spec (``hog``, ``hogb:cell=8``, ``dsift``, ``lbp``),
a ``FeatureExtractor`` from ``preimage.converters.onnx_torch``, or any callable x -> {name: tensor} (a plain
torch module, for notebooks and tests).
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from ..converters.onnx_torch.load import load_features
from ..converters.metadata import read_metadata
from ..errors import PreimageError
from ..preprocess import Preprocess


@dataclass
class Model:
    features: Any                                   # callable x -> {name: tensor}
    preprocess: Preprocess
    receptive_fields: Dict[str, Dict] = field(default_factory=dict)
    layers: List[Dict] = field(default_factory=list)  # Caffe layer list (name, type, value, tops), may be empty
    input_size: Optional[List[int]] = None
    name: str = "model"
    dtype: torch.dtype = torch.float32

    def stride(self, layer, feature_shape=None):
        """Receptive-field stride of ``layer``: from the model's geometry; for a layer beyond the spatial
        part (fc), the largest stride the model has; else estimated from the feature map size."""
        rf = self.receptive_fields or {}
        if layer in rf and rf[layer].get("stride"):
            return tuple(rf[layer]["stride"])
        if feature_shape is not None and len(feature_shape) == 3 and self.input_size:
            return (max(1, round(self.input_size[0] / feature_shape[1])), max(1, round(self.input_size[1] / feature_shape[2])))
        strides = [tuple(v["stride"]) for v in rf.values() if v.get("stride")]
        return max(strides, key=max) if strides else (1, 1)

    def rf_size(self, layer):
        rf = self.receptive_fields or {}
        if layer in rf and rf[layer].get("size"):
            return max(rf[layer]["size"])
        return max(self.input_size) if self.input_size else 1


def _freeze(module):
    if isinstance(module, torch.nn.Module):
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
    return module


def open_model(model, layers, device="cpu", preprocess=None):
    """Load ``model`` computing the features ``layers`` on ``device``; returns a :class:`Model`."""
    if isinstance(model, Model):
        return model
    from ..models.representations import build, is_spec

    if is_spec(model):  # a representation ("hog", "dsift:bin=4"): before the file check
        fx = build(model, device=device, outputs=list(layers))
        name = os.fspath(model).replace(":", "_").replace(",", "_").replace("=", "")
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise PreimageError("model file not found", path=path)
        fx = load_features(path, outputs=list(layers), device=str(device))
        name = os.path.splitext(os.path.basename(path))[0]
    elif hasattr(model, "onnx_model") or hasattr(model, "ParseFromString"):
        if hasattr(model, "ParseFromString"):
            fx = load_features(model, outputs=list(layers), device=str(device))
        else:
            fx = model
        name = getattr(getattr(fx, "onnx_model", None), "graph", None)
        name = name.name if name is not None and name.name else "model"
    elif callable(model):
        fx = model
        name = type(model).__name__
    else:
        raise PreimageError(f"expected a model path, a FeatureExtractor or a callable, got {type(model).__name__}")

    _freeze(fx)
    if isinstance(fx, torch.nn.Module):
        fx.to(device)
    onnx_model = getattr(fx, "onnx_model", None)
    pp = preprocess or getattr(fx, "preprocess", None) or (Preprocess.from_onnx(onnx_model) if onnx_model is not None else Preprocess())
    layer_list = read_metadata(onnx_model, "preimage.layers", []) if onnx_model is not None else []
    rf = getattr(fx, "receptive_fields", None) or {}
    size = pp.input_size
    if size is None:
        shapes = getattr(fx, "input_shapes", None)
        shape = (list(shapes.values())[0] if isinstance(shapes, dict) else shapes[0]) if shapes else None
        if shape and len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
            size = [int(shape[2]), int(shape[3])]
    dtype = torch.float32
    if isinstance(fx, torch.nn.Module):
        floats = [t.dtype for t in list(fx.parameters()) + list(fx.buffers()) if t.dtype.is_floating_point]
        dtype = floats[0] if floats else torch.float32
    m = Model(features=fx, preprocess=pp, receptive_fields=rf, layers=layer_list, input_size=size, name=name,
              dtype=dtype)
    return m


def check_layers(feats, layers):
    missing = [l for l in layers if l not in feats]
    if missing:
        known = ", ".join(list(feats)[:20])
        raise PreimageError(f"layer {missing[0]!r} is not among the model's features (available: {known})",
                            where="--layer")
