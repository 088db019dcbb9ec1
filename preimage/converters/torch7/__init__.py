"""Torch7 .t7 files: a reader of our own, and nn modules -> PyTorch / ONNX."""
