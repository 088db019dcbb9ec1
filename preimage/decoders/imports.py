"""Decoders trained elsewhere: Caffe (prototxt + caffemodel), Torch7 (.t7, or its converted .pt), ONNX.

Each becomes a :class:`~.checkpoint.Decoder` that ``apply`` accepts. An imported decoder outputs images in
its encoder's preprocessed input space, like ours; the picture conversion (mean, scale, channel order)
comes from the encoder model given to ``apply`` (``--model``), or from ``preprocess=``.
One registered importer per file kind.
"""
import json
import os

import torch

from ..errors import PreimageError
from ..registry import Registry
from .checkpoint import Decoder, read_torch_file

IMPORTERS = Registry("decoder importer")
register = IMPORTERS.register


def import_decoder(path, feature_shape=None, layer=None, preprocess=None, model_path=None, loaded=None, **_):
    """``loaded``: the file's :func:`read_torch_file` result when the caller already has it."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMPORTERS:
        raise PreimageError(f"not a decoder file: expected a training checkpoint (.pt), a Caffe .prototxt, a Torch7 .t7 "
                            f"or an .onnx decoder (found '{ext or 'no extension'}')", path=path)
    net, inferred, source = IMPORTERS[ext](path, **({"loaded": loaded} if loaded is not None else {}))
    feature_shape = feature_shape or inferred
    if feature_shape is None:
        raise PreimageError("cannot tell the decoder's input shape from the file: pass feature_shape "
                            "(--feature-shape C H W or --feature-shape D)", path=path)
    dec = Decoder(net, feature_shape, None, preprocess, layer=layer, model_path=model_path,
                  source={"imported": True, **source})
    with torch.no_grad():
        try:
            out = dec(torch.zeros(1, *dec.feature_shape, device=next((p.device for p in dec.parameters()), "cpu")))
        except PreimageError:
            raise
        except Exception as e:  # a shape mismatch deep in torch: say which shape was tried
            raise PreimageError(f"the decoder does not accept features of shape {list(dec.feature_shape)} "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})", path=path) from None
    if out.dim() != 4:
        raise PreimageError(f"a decoder must output N x C x H x W images, this one gives shape {list(out.shape)}", path=path)
    dec.image_shape = tuple(out.shape[1:])
    return dec


def _onnx_like(path):
    from ..converters.onnx_torch.load import load_features  # deferred: onnx + onnx2torch, for this kind only

    fx = load_features(path)  # a .prototxt is converted on the fly (its .caffemodel beside it)
    if len(fx.outputs) != 1 or len(fx.input_names) != 1:
        raise PreimageError(f"a decoder has one input and one output; this one has inputs {fx.input_names} and outputs "
                            f"{fx.outputs}", path=path)
    shape = fx.input_shapes.get(fx.input_names[0])
    feature_shape = tuple(shape[1:]) if shape and all(isinstance(d, int) and d > 0 for d in shape[1:]) else None
    return fx, feature_shape, {"format": "onnx" if path.endswith(".onnx") else "caffe", "file": os.path.abspath(path)}


@register(".prototxt")
def caffe_decoder(path):
    """A Caffe deploy prototxt (weights: the .caffemodel beside it), through the Caffe converter."""
    return _onnx_like(path)


@register(".onnx")
def onnx_decoder(path):
    return _onnx_like(path)


def _first_input_shape(module):
    """(D,) for a model starting with Linear / View; None when the spatial size cannot be known."""
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            return (m.in_features,)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            return None
    return None


@register(".t7")
def torch7_decoder(path):
    """A Torch7 nn model, through the Torch7 converter."""
    from ..converters.torch7 import load_t7_model  # deferred: the Torch7 converter, for this kind only

    net = load_t7_model(path)
    return net, _first_input_shape(net), {"format": "torch7", "file": os.path.abspath(path)}


@register(".pt", ".pth")
def torch7_checkpoint_decoder(path, loaded=None):
    """A Torch7 model converted with ``preimage convert torch7 ... -o MODEL.pt``."""
    from ..converters.torch7.build import CHECKPOINT_FORMAT, from_checkpoint  # deferred, as above

    ck = loaded if loaded is not None else read_torch_file(path)
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise PreimageError("not a decoder checkpoint: expected one written by 'preimage decoder train' or by "
                            "'preimage convert torch7 ... -o MODEL.pt'", path=path)
    net = from_checkpoint(ck, path)
    return net, _first_input_shape(net), {"format": "torch7-checkpoint", "file": os.path.abspath(path),
                                          "source": json.loads(json.dumps(ck.get("source", {}), default=str))}
