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
    backward pass; autograd's version check would catch any mistake loudly).

    Overwriting is only done while nothing can see it: a hook on the producing module (the way Lucent,
    Captum and torchlens read a layer) keeps a reference to that module's output, which must stay the
    module's own output, not this ReLU's. So at each call the ReLU looks for hooks on itself, on its
    producer (bound by :func:`bind_producers`) and global module hooks, and computes out of place when
    there are any. Without a bound producer it never runs in place.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace
        self.decide_from = None  # a tensor whose > 0 mask replaces x > 0 (see module docstring)
        # the producing module, kept out of the module tree (a plain attribute, not a submodule)
        object.__setattr__(self, "producer", None)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        if self.decide_from is not None and self.decide_from.shape == x.shape:
            return x * (self.decide_from > 0).to(x.dtype)
        if self.inplace and self.producer is not None and not (observed(self) or observed(self.producer)):
            return torch.relu_(x)
        return torch.relu(x)


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
# torch keeps global module hooks (register_module_forward_hook, ...) in these module-level dicts
_GLOBAL_HOOK_DICTS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                      "_global_backward_pre_hooks")


def observed(module):
    """True when a hook could see ``module``'s input or output (its own hooks or global module hooks)."""
    if any(getattr(module, d, None) for d in _HOOK_DICTS):
        return True
    return any(getattr(torch.nn.modules.module, d, None) for d in _GLOBAL_HOOK_DICTS)


def bind_producers(graph_module):
    """Tell each in-place ReLU of a converted graph which module produces its input (by ONNX value)."""
    producers = {}
    for module in graph_module.modules():
        mapping = getattr(module, "onnx_mapping", None)
        if mapping is not None:
            for v in mapping.outputs:
                producers[v] = module
    for module in graph_module.modules():
        if isinstance(module, ReLU) and module.inplace:
            object.__setattr__(module, "producer", producers.get(module.onnx_mapping.inputs[0]))
    return graph_module


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
