"""preimage: faithful conversion of legacy Caffe and Torch7 CNNs, validation, and feature inversion.

The Python API mirrors the CLI; the most used entry points are importable from here lazily, e.g.
``preimage.convert_caffe``, ``preimage.load_features``.
"""
import importlib

__version__ = "0.2.0"

_API = {
    "PreimageError": "preimage.errors",
    "convert_caffe": "preimage.converters.caffe.convert",
    "load_features": "preimage.converters.onnx_torch.load",
    "validate": "preimage.converters.validate",
    "read_t7": "preimage.converters.torch7.reader",
    "Preprocess": "preimage.preprocess",
}


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'preimage' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
