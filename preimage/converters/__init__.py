"""Converters: Caffe -> ONNX (``caffe/``), Torch7 -> PyTorch/ONNX (``torch7/``), ONNX -> PyTorch (``onnx_torch/``)."""
