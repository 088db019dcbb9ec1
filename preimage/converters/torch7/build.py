"""Architecture descriptions (plain data) -> torch modules, and weights_only checkpoints.

A converted Torch7 model is first a tree of :class:`Node` (module name from an allow-list, keyword
arguments, children, weights as NumPy arrays). :func:`build` turns it into a ``torch.nn.Module``.
The same plain description, saved next to the ``state_dict``, makes a checkpoint that
``torch.load(path, weights_only=True)`` accepts and :func:`load_checkpoint` rebuilds without the .t7.
"""
import numpy as np
import torch
from torch import nn

from ...errors import FormatError
from ...fileio import atomic_path
from .modules import CUSTOM_MODULES

CHECKPOINT_FORMAT = "preimage.torch7-checkpoint/1"

# Only these classes can be named by a description (a checkpoint cannot make us build anything else).
MODULES = {name: getattr(nn, name) for name in (
    "Sequential", "Identity", "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm2d",
    "ReLU", "Threshold", "LeakyReLU", "PReLU", "ELU", "Tanh", "Sigmoid", "Linear", "MaxPool2d", "AvgPool2d",
    "Upsample", "LocalResponseNorm", "ZeroPad2d", "ReflectionPad2d", "ReplicationPad2d", "Hardtanh",
    "Softplus")}
MODULES.update(CUSTOM_MODULES)


class Node:
    """One module of a converted model: ``module`` names a class in :data:`MODULES`."""

    def __init__(self, module, kwargs=None, children=(), tensors=None, source=""):
        if module not in MODULES:
            raise KeyError(module)
        self.module = module
        self.kwargs = dict(kwargs or {})
        self.children = list(children)
        self.tensors = {k: v for k, v in (tensors or {}).items() if v is not None}
        self.source = source

    def to_spec(self):
        return {"module": self.module, "kwargs": self.kwargs, "children": [c.to_spec() for c in self.children],
                "source": self.source}


def _construct(spec, pairs, node=None):
    name = spec["module"]
    if name not in MODULES:
        raise FormatError(f"unknown module {name!r} in the architecture description")
    child_nodes = node.children if node is not None else [None] * len(spec["children"])
    children = [_construct(c, pairs, n) for c, n in zip(spec["children"], child_nodes)]
    try:
        module = MODULES[name](*children, **spec["kwargs"])
    except (ValueError, TypeError, RuntimeError) as e:  # arguments taken from the file can be invalid
        raise FormatError(f"cannot build {name} with {spec['kwargs']}: {e}", where=spec.get("source")) from None
    if node is not None:
        pairs.append((module, node))
    return module


def build(node, dtype=torch.float32, device="cpu"):
    """Build the eval-mode ``torch.nn.Module`` for a :class:`Node` tree, weights copied in ``dtype``."""
    pairs = []
    model = _construct(node.to_spec(), pairs, node)
    model = model.to(device=device, dtype=dtype)
    with torch.no_grad():
        for module, n in pairs:
            for key, arr in n.tensors.items():
                target = getattr(module, key, None)
                if not isinstance(target, torch.Tensor):
                    raise FormatError(f"tensor '{key}' has no place in the converted module", where=n.source)
                value = torch.from_numpy(np.ascontiguousarray(arr))
                if tuple(target.shape) != tuple(value.shape):
                    raise FormatError(f"{key} has shape {tuple(value.shape)}, expected {tuple(target.shape)}",
                                      where=n.source)
                target.copy_(value.to(device=device, dtype=target.dtype))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def save_checkpoint(path, node, model, *, source=None):
    """Write ``{format, architecture, state_dict, dtype, source}``; loadable with ``weights_only=True``."""
    dtype = next((t.dtype for t in model.state_dict().values() if t.is_floating_point()), torch.float32)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "architecture": node.to_spec(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "dtype": str(dtype).replace("torch.", ""),
        "source": source or {},
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return ckpt


def load_checkpoint(path, device="cpu"):
    """Rebuild the model saved by ``preimage convert torch7 ... -o MODEL.pt`` (eval mode, frozen)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged pickle/zip
        raise FormatError(f"not a readable PyTorch checkpoint ({type(e).__name__}: {e})", path=path) from None
    return from_checkpoint(ckpt, path, device)


def from_checkpoint(ckpt, path=None, device="cpu"):
    """:func:`load_checkpoint` for a checkpoint already loaded (with ``weights_only=True``)."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise FormatError(f"not a preimage Torch7 checkpoint (expected format {CHECKPOINT_FORMAT!r})", path=path)
    model = _construct(ckpt["architecture"], [])
    dtype = getattr(torch, ckpt.get("dtype", "float32"))
    model = model.to(dtype=dtype)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()
