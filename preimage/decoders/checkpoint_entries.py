"""Check a loaded training checkpoint's entries before a decoder is built from them.

A checkpoint is a dict read from a file (``torch.load(..., weights_only=True)``); a damaged or
hand-edited one can lack an entry or hold one of another kind. :func:`build_net` checks the entries the
decoder needs (``arch``, ``arch_options``, ``feature_shape``, ``image_shape``, ``preprocess``, ``layer``,
``model_path``, ``iter``, ``model``), then builds the network and loads its weights; every problem is
one :class:`PreimageError` naming the file and the entry, never a KeyError or a torch traceback.
"""
import math

import torch

from ..converters.metadata import problem_of
from ..errors import FormatError, PreimageError
from .architectures import build_decoder


def _shape(v, n=None):
    ok = isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                          for d in v)
    return ok and (n is None or len(v) == n) and math.prod(v) < 2**31


ENTRIES = {
    "arch": (lambda v: isinstance(v, str), "an architecture name"),
    "arch_options": (lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), "an object of options"),
    "feature_shape": (_shape, "a list of positive ints"),
    "image_shape": (lambda v: _shape(v, 3), "[C, H, W], positive ints"),
    "preprocess": (lambda v: v is None or (isinstance(v, dict) and not problem_of("preimage.preprocess", v)),
                   "preprocessing metadata (an object: mean, channel_order, input_size, ...)"),
    "layer": (lambda v: v is None or isinstance(v, str), "a layer name"),
    "model_path": (lambda v: v is None or isinstance(v, str), "a model path"),
    "iter": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an iteration count"),
    "model": (lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()),
              "the decoder's state_dict (names to tensors)"),
}
OPTIONAL = {"layer", "model_path"}


def check_entries(ck, path):
    """Raise FormatError naming ``path`` and the first missing or malformed entry."""
    for key, (ok, what) in ENTRIES.items():
        if key not in ck:
            if key in OPTIONAL:
                continue
            raise FormatError(f"damaged decoder checkpoint: no {key!r} entry ({what})", path=path)
        if not ok(ck[key]):
            raise FormatError(f"damaged decoder checkpoint: entry {key!r} is not {what}", path=path)


def build_net(ck, path):
    """The decoder network of checkpoint ``ck`` (read from ``path``), its weights loaded."""

    check_entries(ck, path)
    try:
        net = build_decoder(ck["arch"], ck["feature_shape"], ck["image_shape"], **ck["arch_options"])
        net.load_state_dict(ck["model"])
    except PreimageError as e:  # e.g. an unknown architecture: name the file
        raise FormatError(f"damaged decoder checkpoint: {e}", path=path) from None
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError, ArithmeticError) as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise
        text = " ".join(str(e).split())[:240]  # load_state_dict's lists of keys, joined
        raise FormatError(f"damaged decoder checkpoint: the decoder cannot be built from its entries "
                          f"({type(e).__name__}: {text})", path=path) from None
    return net
