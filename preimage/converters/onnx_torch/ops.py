"""Install every preimage extension of onnx2torch's converter registry (import for the side effect)."""
from . import constant_inputs, conv, conv_transpose, decisions, identity, lrn, pooling, slice  # noqa: F401
