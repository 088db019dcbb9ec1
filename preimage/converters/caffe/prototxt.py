"""Reading a Caffe net definition (``.prototxt``): text parsing, legacy upgrades, TEST-phase filtering.

The result is always a list of V2-style ``caffe_pb2.LayerParameter`` (string types), whatever the file
used: V1 ``layers { type: CONVOLUTION }``, V0 ``layers { layer { type: "conv" } }``, or declared inputs
(``input`` + ``input_dim`` / ``input_shape``).
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List

from google.protobuf import text_format

from ...errors import FormatError, PreimageError
from .proto import caffe_pb2
from .upgrade import merge_v0_padding, upgrade_v1_layer

# Pooling field 13 is `round_mode: CEIL|FLOOR` in BVLC Caffe and `ceil_mode: true|false` in widespread
# forks. The text is rewritten to BVLC's spelling before parsing (line numbers are kept).
_CEIL_MODE = re.compile(r"(?<![\w])ceil_mode(\s*:\s*)(true|false|True|False|1|0|t|f)\b")


def _ceil_mode_to_round_mode(text):
    def repl(m):
        ceil = m.group(2).lower() in ("true", "1", "t")
        return "round_mode" + m.group(1) + ("CEIL" if ceil else "FLOOR")

    return _CEIL_MODE.sub(repl, text)


@dataclass
class NetSpec:
    """A parsed, upgraded net: its name, declared inputs (name -> shape) and layers in Caffe order."""

    path: str
    name: str
    inputs: Dict[str, List[int]] = field(default_factory=dict)
    layers: List[object] = field(default_factory=list)  # caffe_pb2.LayerParameter
    legacy_format: str = "V2"
    notices: List[str] = field(default_factory=list)
    input_shapes: Dict[str, List[int]] = field(default_factory=dict)  # the caller's overrides


def parse_net_text(text, path="<prototxt>"):
    """Text -> caffe_pb2.NetParameter, with a one-line error carrying line:column on bad syntax."""
    net = caffe_pb2.NetParameter()
    try:
        text_format.Merge(_ceil_mode_to_round_mode(text), net, allow_unknown_field=False)
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        msg = str(e)
        # protobuf prefixes "line:col : "; keep only the explanation
        msg = re.sub(r"^\s*\d+:\d+\s*:\s*", "", msg)
        where = f"{line}:{col}" if line is not None else None
        raise FormatError(f"prototxt syntax error: {msg}", path=path, where=where) from None
    return net


def read_net(path):
    """Read and upgrade a ``.prototxt`` into a :class:`NetSpec` (TEST phase)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PreimageError("no such prototxt file", path=path)
    with open(path, "rb") as f:
        raw = f.read()
    if b"\x00" in raw[:65536]:
        raise FormatError("not a text prototxt (it is binary; did you pass the .caffemodel?)", path=path)
    if raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # old files with Latin-1 comments
        text = raw.decode("latin-1")
    return net_spec_from_param(parse_net_text(text, path), path)


def net_spec_from_param(net, path="<prototxt>"):
    spec = NetSpec(path=path, name=net.name or os.path.splitext(os.path.basename(path))[0])
    if len(net.layers) and len(net.layer):
        raise FormatError("the net mixes V1 'layers' and V2 'layer' entries; use one layout", path=path)
    if len(net.layers):
        spec.legacy_format = "V1"
        if any(l.HasField("layer") for l in net.layers):
            spec.legacy_format = "V0"
        layers = merge_v0_padding([upgrade_v1_layer(l, path, i) for i, l in enumerate(net.layers)], path)
    else:
        layers = list(net.layer)
    spec.inputs = _declared_inputs(net, path)
    spec.layers = [l for l in layers if _included_in_test(l)]
    dropped = [l.name for l in layers if not _included_in_test(l)]
    if dropped:
        spec.notices.append(f"skipped {len(dropped)} layer(s) not in the TEST phase: {', '.join(dropped[:6])}"
                            + (" ..." if len(dropped) > 6 else ""))
    return spec


def _declared_inputs(net, path):
    names = list(net.input)
    if not names:
        if len(net.input_shape) or len(net.input_dim):
            raise FormatError("input_shape/input_dim given without any 'input' name", path=path)
        return {}
    shapes = {}
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise FormatError(f"{len(names)} inputs declared but {len(net.input_shape)} input_shape entries", path=path)
        for n, s in zip(names, net.input_shape):
            shapes[n] = [int(d) for d in s.dim]
    elif len(net.input_dim):
        dims = [int(d) for d in net.input_dim]
        if len(dims) != 4 * len(names):
            raise FormatError(f"{len(names)} inputs need {4 * len(names)} input_dim values, found {len(dims)}",
                              path=path)
        for i, n in enumerate(names):
            shapes[n] = dims[4 * i:4 * i + 4]
    else:
        raise FormatError(f"input '{names[0]}' has no input_dim or input_shape", path=path)
    return shapes


def _meets_rule(rule, phase=caffe_pb2.TEST, level=0, stages=()):
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def _included_in_test(layer):
    """Caffe's NetStateRule logic for the TEST phase at level 0 with no stages."""
    if len(layer.include):
        return any(_meets_rule(r) for r in layer.include)
    if len(layer.exclude):
        return not any(_meets_rule(r) for r in layer.exclude)
    if layer.HasField("phase") and layer.phase != caffe_pb2.TEST:
        return True  # a layer's own phase field does not exclude it
    return True
