"""Caffe -> ONNX conversion (see docs/caffe.md)."""
from .convert import convert_caffe  # noqa: F401
