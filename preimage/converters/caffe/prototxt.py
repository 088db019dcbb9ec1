"""Reading a Caffe net definition (``.prototxt``): text parsing, legacy upgrades, TEST-phase filtering.

The result is always a list of V2-style ``caffe_pb2.LayerParameter`` (string types), whatever the file
used: V1 ``layers { type: CONVOLUTION }``, V0 ``layers { layer { type: "conv" } }``, or declared inputs
(``input`` + ``input_dim`` / ``input_shape``).
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from google.protobuf import text_format

from ...errors import FormatError, PreimageError
from .proto import caffe_pb2
from .textscan import blank, field_before, field_span, line_of, offset_of, top_level_blocks
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
    # layer name -> what in it no known schema has (SchemaIssue); such a layer parses (the field is
    # skipped) but is not converted
    unknown: Dict[str, list] = field(default_factory=dict)
    layer_lines: Dict[str, int] = field(default_factory=dict)  # layer name -> line of its block
    until: Optional[str] = None  # convert only what this layer or blob needs


@dataclass
class SchemaIssue:
    """A field (or enum value) that no schema preimage knows has: BVLC's or the forks' (caffe.proto)."""

    offset: int  # in the text
    line: int
    column: int
    what: str  # "field 'num_outptu' of caffe.ConvolutionParameter"
    message: str  # protobuf's own explanation, for --strict and for a net nothing is left of


_UNKNOWN_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')
_UNKNOWN_ENUM = re.compile(r'Enum type "([\w.]+)" has no value named (\w+)')


def _explanation(e):
    msg = re.sub(r"^\s*\d+:\d+\s*:\s*", "", str(e))  # protobuf prefixes "line:col : "
    return re.sub(r"^'.*?': ", "", msg)  # and sometimes quotes the whole line


def _syntax_error(e, path):
    line, col = e.GetLine(), e.GetColumn()
    where = f"{line}:{col}" if line is not None else None
    return FormatError(f"prototxt syntax error: {_explanation(e)}", path=path, where=where)


def parse_net_text(text, path="<prototxt>", issues=None):
    """Text -> caffe_pb2.NetParameter, with a one-line error carrying line:column on bad syntax.

    ``issues`` (a list): tolerant reading. A field or enum value that no known schema has is cut out of
    the text (blanked, so that line:column stay right), recorded as a :class:`SchemaIssue`, and the text
    parsed again. Real syntax errors (braces, a string where a number belongs) still raise."""
    work = _ceil_mode_to_round_mode(text)
    seen = set()
    while True:
        net = caffe_pb2.NetParameter()
        try:
            text_format.Merge(work, net, allow_unknown_field=False)
            return net
        except text_format.ParseError as e:
            if issues is None or e.GetLine() is None:
                raise _syntax_error(e, path) from None
            span, what = _unknown_span(work, e)
            if span is None or span[0] in seen:
                raise _syntax_error(e, path) from None
            seen.add(span[0])
            issues.append(SchemaIssue(span[0], line_of(work, span[0]), e.GetColumn(), what, _explanation(e)))
            work = blank(work, *span)


def _unknown_span(text, e):
    """The text span of the unknown field a ParseError reports, and a description; (None, None) when the
    error is a real syntax error."""
    msg = str(e)
    at = offset_of(text, e.GetLine(), e.GetColumn())
    m = _UNKNOWN_FIELD.search(msg)
    if m:
        if not text.startswith(m.group(2), at):
            return None, None
        return field_span(text, at), f"field '{m.group(2)}' of {m.group(1)}"
    m = _UNKNOWN_ENUM.search(msg)
    if m and text.startswith(m.group(2), at):
        start = field_before(text, at)
        if start is not None:
            span = field_span(text, start)
            name = text[start:at].split(":")[0].strip()
            return span, f"value {m.group(2)} of field '{name}' ({m.group(1)})"
    return None, None


def _layer_name(l):
    if isinstance(l, caffe_pb2.V1LayerParameter) and not l.name and l.HasField("layer"):
        return l.layer.name
    return l.name


def _locate(text, net, issues):
    """Layer lines ({name: line}) and schema issues by layer name (net-level ones under None). ``text``
    as parsed (issue offsets are offsets into it)."""
    lines, by_layer = {}, {}
    counts = {"layer": 0, "layers": 0}
    spans = []
    for word, start, end, line in top_level_blocks(text):
        if word not in counts:
            continue
        seq = net.layer if word == "layer" else net.layers
        if counts[word] < len(seq):
            name = _layer_name(seq[counts[word]])
            lines.setdefault(name, line)
            spans.append((start, end, name))
        counts[word] += 1
    for issue in issues:
        owner = next((name for s, e, name in spans if s <= issue.offset < e), None)
        by_layer.setdefault(owner, []).append(issue)
    return lines, by_layer


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
    issues = []
    net = parse_net_text(text, path, issues)
    if not len(net.layer) and not len(net.layers) and not len(net.input):
        raise FormatError("no layers and no inputs: this is not a Caffe net definition (is the file empty?)",
                          path=path)
    spec = net_spec_from_param(net, path)
    spec.layer_lines, by_layer = _locate(_ceil_mode_to_round_mode(text), net, issues)
    for issue in by_layer.pop(None, []):
        spec.notices.append(f"{os.path.basename(path)}:{issue.line}:{issue.column}: ignored {issue.what}, "
                            f"which no known Caffe schema (BVLC or the forks') has")
    spec.unknown = by_layer
    return spec


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
