"""Identity without a copy.

Why this extension exists: onnx2torch 1.5.15 converts Identity to a module that clones its input (for
its quantization logic). preimage exposes every requested value through an Identity node (see
``graph.prune``) and the Caffe converter writes Identity for layers such as test-time Dropout, so each
clone would cost a full copy of an activation, forward and backward, in every optimisation step.
The converted graphs are purely functional, so passing the tensor through is exact. A channels-last
activation (``conv.py`` makes them on CPU) is given back in torch's default, contiguous layout, so what
the extractor returns can be ``.view``-ed as users expect (free for a tensor already contiguous).
"""
from torch import nn

from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

from .registry import override


class Identity(nn.Module):
    def forward(self, x):
        return x.contiguous()


@override("Identity")
def convert_identity(node, graph):
    return OperationConverterResult(torch_module=Identity(), onnx_mapping=onnx_mapping_from_node(node))
