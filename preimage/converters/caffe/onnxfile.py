"""Writing ONNX models in pieces, so that a model is never serialized (copied) in one block.

Protobuf merges repeated occurrences of an embedded message field, so a model file can be written as
one ``graph { initializer {...} }`` fragment per weight tensor followed by the model without weights
(field order is free in protobuf): any protobuf reader (onnx.load, onnxruntime) sees one model, and
peak memory stays near the model's own size instead of twice it. Weight bytes already in memory (a
view of the caffemodel) are written as they are, on a second thread while the rest is built.
"""
import queue
import threading

import onnx
from onnx import TensorProto

from ...errors import PreimageError
from ...fileio import atomic_path
from .wire import len_prefix


def save_model(model, path):
    """Write an ONNX model atomically without serializing it in one piece (see :func:`write_model`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write_model(f, model)


def _fragment(t, raw=None):
    """The bytes of ``ModelProto { graph { initializer { t } } }`` as a list of pieces; ``raw``: the
    tensor's raw_data bytes already in memory (written as they are, not copied out of ``t``)."""
    if raw is not None:  # TensorProto without raw_data, then raw_data (field 9) from our bytes
        h = TensorProto(name=t.name, data_type=t.data_type, dims=t.dims)
        body = [h.SerializeToString(), len_prefix(9, len(raw)), raw]
    else:
        body = [t.SerializeToString()]
    n = sum(len(x) for x in body)
    inner = len_prefix(5, n)  # GraphProto.initializer = 5
    return [len_prefix(7, len(inner) + n) + inner] + body  # ModelProto.graph = 7


def write_model(f, model, raw=None, skip=(), before_header=None):
    """Write ``model`` to the open file ``f`` as protobuf, in pieces.

    Protobuf merges repeated occurrences of an embedded message field, so the file is written as one
    ``graph { initializer {...} }`` fragment per weight tensor, followed by the model without weights
    (field order is free in protobuf). Any protobuf reader (onnx.load, onnxruntime) sees one model;
    peak memory stays near the model's own size instead of twice it. ``raw`` ({initializer: bytes})
    supplies weight bytes already in memory; ``skip``: initializers already written to ``f``.
    ``before_header()`` runs after the weights and before the rest is serialized.
    """
    raw = raw or {}
    for t in model.graph.initializer:
        if t.name in skip:
            continue
        for piece in _fragment(t, raw.get(t.name)):
            f.write(piece)
    if before_header is not None:
        before_header()
    shell = onnx.ModelProto()
    _copy_without_initializers(model, shell)
    f.write(shell.SerializeToString())


class FragmentWriter:
    """Writes initializer fragments to a file on a second thread (file writes release the GIL), so
    writing the weights overlaps with building the rest of the model."""

    def __init__(self, f):
        self.f, self.q, self.written, self.error = f, queue.Queue(maxsize=4), set(), None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    for piece in item:
                        self.f.write(piece)
                except OSError as e:
                    self.error = e

    def __call__(self, tensor, raw):
        self.q.put(_fragment(tensor, raw))
        self.written.add(tensor.name)

    def close(self):
        self.q.put(None)
        self.t.join()
        if self.error is not None:
            raise PreimageError(f"could not write the model: {self.error}")
        return self.written


def _is_repeated(field):
    rep = getattr(field, "is_repeated", None)
    return rep if rep is not None else field.label == field.LABEL_REPEATED


def _copy_fields(src, dst, skip):
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if _is_repeated(field):
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def _copy_without_initializers(model, shell):
    """Copy every field but the weights (serializing the whole model would copy the weights)."""
    _copy_fields(model, shell, "graph")
    _copy_fields(model.graph, shell.graph, "initializer")
