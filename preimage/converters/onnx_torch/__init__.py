"""ONNX -> differentiable PyTorch modules (onnx2torch plus preimage's operator extensions)."""
