"""Registering preimage's operator converters in onnx2torch's converter registry.

onnx2torch looks a converter up by (domain, op type, schema since-version). Its public ``add_converter``
refuses to replace an entry that is already there, so :func:`override` writes the registry's table
directly, for every since-version of the operator, and remembers the converter it replaced so that an
extension can hand the cases it does not need to treat back to onnx2torch. Nothing in the installed
package is edited; importing :mod:`preimage.converters.onnx_torch.ops` installs all extensions.
"""
from onnx import defs
from onnx2torch.node_converters import registry as _registry

_ORIGINALS = {}


def _since_versions(op_type, domain):
    return sorted({s.since_version for s in defs.get_all_schemas_with_history()
                   if s.name == op_type and s.domain == domain})


def override(op_type, domain=""):
    """Decorator: make ``fn(node, graph)`` onnx2torch's converter for ``op_type`` at every opset."""

    def deco(fn):
        for version in _since_versions(op_type, domain):
            key = _registry.OperationDescription(domain=domain, operation_type=op_type, version=version)
            previous = _registry._CONVERTER_REGISTRY.get(key)
            if previous is not None and previous is not fn and key not in _ORIGINALS:
                _ORIGINALS[key] = previous
            _registry._CONVERTER_REGISTRY[key] = fn
        return fn

    return deco


def original(op_type, node, graph, domain=""):
    """Run onnx2torch's own converter for ``node`` (its newest one that :func:`override` replaced)."""
    versions = _since_versions(op_type, domain)
    for version in reversed(versions):
        key = _registry.OperationDescription(domain=domain, operation_type=op_type, version=version)
        if key in _ORIGINALS:
            return _ORIGINALS[key](node, graph)
    raise NotImplementedError(f"onnx2torch has no converter of its own for {op_type}")
