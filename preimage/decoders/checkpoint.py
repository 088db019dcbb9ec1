"""The decoder object and the training checkpoint format (read and written here only).

A training checkpoint (``checkpoint.pt`` in a run folder) is a dict of plain tensors, numbers, strings
and lists, so it loads with ``torch.load(..., weights_only=True)``::

    format          "preimage-decoder/1"
    arch, arch_options, feature_shape, image_shape, layer, model_path, preprocess   what the decoder is
    config          the TrainConfig (asdict)
    store, store_id the feature store it was trained on (path and fingerprint)
    iter            iterations done
    model           the decoder's state_dict (generator and discriminator for deepsim)
    optimizer, scheduler, scaler (+ d_optimizer, d_scheduler, d_scaler for deepsim)   the step's state
    train_state     {"window": [loss sum, steps] of the partial logging window, "balance": GAN losses}
    rng             RNG states of rank 0 (torch, NumPy, Python, CUDA); rng_ranks: those of every rank

Both :mod:`.apply` (training checkpoints) and :mod:`.imports` (decoders trained elsewhere) make a
:class:`Decoder`; neither imports the other.
"""
import os
import random

import numpy as np
import torch
import torch.nn as nn

from ..errors import PreimageError
from ..fileio import atomic_path
from ..preprocess import Preprocess
from .checkpoint_entries import build_net

CHECKPOINT_FORMAT = "preimage-decoder/1"


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


def read_torch_file(path):
    """A .pt / .pth / .ckpt file loaded with ``weights_only`` (None for other files, or one torch cannot load
    safely: the caller says what was expected). Loaded once and handed on: checkpoints can be large."""
    if not os.fspath(path).endswith((".pt", ".pth", ".ckpt")):
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def is_training_checkpoint(obj):
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path):
    """A training checkpoint as a dict; a one-line PreimageError for anything else."""
    path = os.fspath(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickling errors are long; say what was expected
        raise PreimageError(f"not a readable decoder checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                            path=path) from None
    if not is_training_checkpoint(ckpt):
        raise PreimageError(f"not a preimage decoder checkpoint (expected format {CHECKPOINT_FORMAT})", path=path)
    return ckpt


def save_checkpoint(path, state):
    """Write ``state`` (the keys above, ``format`` added) atomically: a kill never leaves half a checkpoint."""
    with atomic_path(os.fspath(path)) as tmp:
        torch.save({**state, "format": CHECKPOINT_FORMAT}, tmp)


def decoder_from_checkpoint(ck, path):
    """The :class:`Decoder` of a loaded training checkpoint (its generator only is used to decode)."""
    net = build_net(ck, path)  # the entries checked first: a damaged checkpoint is one line naming the file
    return Decoder(net, ck["feature_shape"], ck["image_shape"], ck["preprocess"], ck.get("layer"), ck.get("model_path"),
                   source={"checkpoint": os.path.abspath(path), "iter": ck["iter"]})


def rng_state(device):
    """This process's RNG states as plain tensors / ints / tuples (so checkpoints load with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": random.getstate(),
          "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                    "cached": float(cached)}}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st, device):
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(st["python"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)
