"""Taking max-pooling and ReLU decisions from reference activations, for gradient checks.

A max-pooling window whose two largest values differ by less than float32 rounding (1e-6 relative)
can pick a different argmax in Caffe (OpenBLAS) and in torch (MKL-DNN): the forward values still agree
to 1e-6, but the gradient for that window goes to a different pixel, an error of order one on a
patch of the input gradient. ReLU inputs within rounding of zero flip the same way. To compare
gradients with a reference (``preimage validate --grads``) the converted module can take these
discrete decisions from the reference's own activations: max pooling gathers its input at the argmax
of the reference input, ReLU multiplies by the reference's ``> 0`` mask. Everything continuous stays
the module's own computation, so a wrong weight or rule still shows.

This module also registers the Relu converter (a ReLU that can be told its mask); without a
reference it is ``torch.relu``.
"""
import contextlib

import torch
from torch import nn

from onnx2torch.onnx_graph import ValueType
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

from .pooling import Pool2d
from .registry import override


class ReLU(nn.Module):
    """``inplace``: overwrite the input, as a hand-written net would after a convolution (set by the
    converter only where nothing else reads the input and its producer does not keep its output for the
    backward pass; autograd's version check would catch any mistake loudly)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace
        self.decide_from = None  # a tensor whose > 0 mask replaces x > 0 (see module docstring)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        if self.decide_from is not None and self.decide_from.shape == x.shape:
            return x * (self.decide_from > 0).to(x.dtype)
        return torch.relu_(x) if self.inplace else torch.relu(x)


# producers whose backward does not need their own output, so that a ReLU may overwrite it
_OUTPUT_NOT_SAVED = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub"}


@override("Relu")
def convert_relu(node, graph):
    x = node.input_values[0]
    inplace = False
    if graph.value_type(x) == ValueType.NODE_OUTPUT and x not in graph.output_values:
        producer = graph.value_as_node_output(x)[0]
        readers = sum(v == x for n in graph.nodes.values() for v in n.input_values)
        inplace = producer.operation_type in _OUTPUT_NOT_SAVED and readers == 1
    return OperationConverterResult(torch_module=ReLU(inplace), onnx_mapping=onnx_mapping_from_node(node))


@contextlib.contextmanager
def reference_decisions(net, values):
    """Within the block, max pools and ReLUs of ``net`` (a FeatureExtractor) decide from ``values``.

    ``values``: ``{ONNX value name: tensor}`` (reference activations, on the net's device). A max pool
    uses the reference of its input, a ReLU that of its output (or input). Yields the number of
    modules conditioned.
    """
    touched = []
    try:
        for module in net.modules():
            mapping = getattr(module, "onnx_mapping", None)
            if mapping is None:
                continue
            ref = None
            if isinstance(module, Pool2d) and module.mode == "max":
                ref = values.get(mapping.inputs[0])
            elif isinstance(module, ReLU):
                ref = values.get(mapping.outputs[0])
                ref = values.get(mapping.inputs[0]) if ref is None else ref
            if ref is not None:
                module.decide_from = ref
                touched.append(module)
        yield len(touched)
    finally:
        for module in touched:
            module.decide_from = None


@contextlib.contextmanager
def recorded_decisions(net):
    """Within the block, record what the max pools and ReLUs of ``net`` decide from: yields a dict
    ``{ONNX value name: tensor}`` (pool inputs, ReLU outputs) filled by each forward pass, to be given to
    :func:`reference_decisions` of another copy (e.g. the float64 twin in a rounding-noise estimate)."""
    seen, handles = {}, []

    def hook(module, inputs, output):
        if isinstance(module, Pool2d):
            seen[module.onnx_mapping.inputs[0]] = inputs[0].detach()
        else:
            seen[module.onnx_mapping.outputs[0]] = output.detach()

    try:
        for module in net.modules():
            if getattr(module, "onnx_mapping", None) is None:
                continue
            if (isinstance(module, Pool2d) and module.mode == "max") or isinstance(module, ReLU):
                handles.append(module.register_forward_hook(hook))
        yield seen
    finally:
        for h in handles:
            h.remove()
