"""Torch7 .t7 files: a reader of our own, and nn modules -> PyTorch / ONNX.

Entry points (imported lazily so ``import preimage.converters.torch7`` stays light):

- ``read_t7(path, ...)``: any .t7 object as Python/NumPy values (reader.py)
- ``load_t7_model(path, dtype=..., device=...)``: an nn model as an eval-mode ``torch.nn.Module``
- ``convert_torch7(path, output, input_shape=...)``: write ONNX or a weights_only PyTorch checkpoint
- ``load_checkpoint(path)``: rebuild a model from such a checkpoint
"""
import importlib

_API = {
    "read_t7": ".reader",
    "load_t7_model": ".convert",
    "convert_torch7": ".convert",
    "t7_to_node": ".convert",
    "load_checkpoint": ".build",
    "convert_module": ".nn",
}


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
