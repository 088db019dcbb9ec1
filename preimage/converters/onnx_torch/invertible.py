"""Which values of a converted model can be inverted through the torch module (``preimage layers --torch``).

A value can be inverted (pre-images, activation maximisation, decoders trained on it) when it is
computed from an image input by operators that convert to torch and carry a gradient. Values that do
not depend on an image input, that pass through an operator without a torch converter, or through one
without a gradient (ArgMax, comparisons, rounding, shape arithmetic) cannot; the reason is given.
"""
from . import graph as G

NO_GRADIENT = {"ArgMax", "ArgMin", "Shape", "Size", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
               "Not", "And", "Or", "Xor", "Floor", "Ceil", "Round", "Sign", "NonZero", "IsNaN", "IsInf",
               "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def torch_view(model):
    """``{value name: "yes" | "no: <reason>"}`` for every value computed from an image input."""
    # deferred: onnx2torch (with torchvision: seconds to import) is needed only when a model is looked at
    from onnx2torch.node_converters import get_converter

    from . import ops  # noqa: F401  deferred (preimage's converters in onnx2torch's registry count as available)

    model = G.read_model(model)
    inputs = G.metadata(model, "preimage.inputs", None) or {n: None for n in G.graph_inputs(model)}
    state = {name: "yes" for name in inputs}
    opsets = {o.domain: o.version for o in model.opset_import}
    for node in model.graph.node:
        upstream = [state[v] for v in node.input if v in state]
        if not upstream:
            continue
        try:
            get_converter(node.op_type, opsets.get(node.domain, opsets.get("", 1)), node.domain)
            convertible = True
        except NotImplementedError:
            convertible = False
        if not convertible:
            verdict = f"no: {node.op_type} has no torch converter"
        elif node.op_type in NO_GRADIENT:
            verdict = f"no: {node.op_type} has no gradient"
        elif "yes" in upstream:
            verdict = "yes"
        else:
            verdict = upstream[0]
        for o in node.output:
            if o:
                state[o] = verdict
    return state
