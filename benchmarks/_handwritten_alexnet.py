"""A hand-written, frozen PyTorch AlexNet (BVLC/Caffe layout) that takes its weights from a converted
ONNX model: the baseline that ``step.py`` compares the converted module against.

Written the way a researcher would write it by hand: nn.Conv2d / nn.LocalResponseNorm / nn.MaxPool2d /
nn.Linear in a row, parameters frozen, no ONNX machinery.
"""
import torch
from onnx import numpy_helper
from torch import nn

# name: (kind, stride, pad, group) for the BVLC AlexNet deploy net
LAYERS = [
    ("conv1", "conv", 4, 0, 1), ("relu1", "relu"), ("norm1", "lrn"), ("pool1", "pool"),
    ("conv2", "conv", 1, 2, 2), ("relu2", "relu"), ("norm2", "lrn"), ("pool2", "pool"),
    ("conv3", "conv", 1, 1, 1), ("relu3", "relu"),
    ("conv4", "conv", 1, 1, 2), ("relu4", "relu"),
    ("conv5", "conv", 1, 1, 2), ("relu5", "relu"), ("pool5", "pool"),
    ("fc6", "fc"), ("relu6", "relu"), ("fc7", "fc"), ("relu7", "relu"), ("fc8", "fc"),
]


def _weights(onnx_model, layer):
    inits = {t.name: t for t in onnx_model.graph.initializer}
    for node in onnx_model.graph.node:
        if node.name == layer and node.op_type in ("Conv", "Gemm"):
            w = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).copy())
            b = torch.from_numpy(numpy_helper.to_array(inits[node.input[2]]).copy()) if len(node.input) > 2 else None
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            if node.op_type == "Gemm" and not trans_b:
                w = w.t().contiguous()
            return w, b
    raise KeyError(f"no Conv/Gemm node named {layer} in the ONNX model")


class HandwrittenAlexNet(nn.Module):
    """``lrn="torch"``: torch.nn.LocalResponseNorm (what one writes by hand); ``"preimage"``: preimage's
    fused LRN, to separate graph overhead from the LRN implementation."""

    def __init__(self, onnx_model, lrn="torch"):
        super().__init__()
        self.names = []
        for spec in LAYERS:
            name, kind = spec[:2]
            if kind == "conv":
                w, b = _weights(onnx_model, name)
                m = nn.Conv2d(w.shape[1] * spec[4], w.shape[0], w.shape[2:], spec[2], spec[3], groups=spec[4])
                m.weight.data, m.bias.data = w, b
            elif kind == "fc":
                w, b = _weights(onnx_model, name)
                m = nn.Linear(w.shape[1], w.shape[0])
                m.weight.data, m.bias.data = w, b
            elif kind == "relu":
                m = nn.ReLU(inplace=True)
            elif kind == "lrn":
                if lrn == "torch":
                    m = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
                else:
                    from preimage.converters.onnx_torch.lrn import LRN

                    m = LRN(5, alpha=1e-4, beta=0.75, bias=1.0)
            else:
                m = nn.MaxPool2d(3, 2)
            self.add_module(name, m)
            self.names.append(name)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x, upto="fc8"):
        for name in self.names:
            if name == "fc6":
                x = x.flatten(1)
            x = getattr(self, name)(x)
            if name == upto:
                return x
        return x
