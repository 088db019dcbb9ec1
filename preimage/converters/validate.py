"""Compare a converted model with reference activations (and input gradients): ``preimage validate``.

    >>> from preimage.converters.validate import validate
    >>> report = validate("alexnet.onnx", "blobs.npz", grads="grads.npz", backend="both")
    >>> print(report.table()); report.ok

A reference is an ``.npz`` or a folder of ``.npy`` files (``conv1.npy``; ``layer/top.npy`` for a
layer's second top), keyed by Caffe blob name (``keys="blobs"``, pycaffe's ``net.blobs``) or by layer
output (``keys="layers"``). Each tensor passes when ``max |out - ref| <= rtol * max |ref|``. A reference
name the model does not have, or a shape that differs, fails its row.

Gradients (``grads``, the corpus' ``grads.npz`` format): ``R/<blob>`` is a fixed tensor and
``dx/<blob>`` (``dx/<input>/<blob>`` for several inputs) the gradient of ``sum(blob * R)`` with
respect to the input; checked through the torch backend with ``grad_rtol``.
"""
import copy
import json
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np
import onnx
import torch
from onnx import helper

from ..device import resolve_device
from ..errors import FormatError, PreimageError
from ..fileio import write_text_atomic
from ..preprocess import IMAGE_SUFFIXES, Preprocess
from .onnx_torch import graph as G
from .onnx_torch.graph import graph_inputs
from .onnx_torch.load import load_features, open_onnx


@dataclass
class Row:
    name: str
    backend: str
    kind: str  # "value" or "grad"
    shape: Optional[list]
    ref_shape: Optional[list]
    max_ref: Optional[float]
    max_err: Optional[float]
    rel_err: Optional[float]
    passed: bool
    note: str = ""


@dataclass
class Report:
    model: str
    reference: str
    rtol: float
    grad_rtol: float
    rows: List[Row] = field(default_factory=list)
    unmatched: List[str] = field(default_factory=list)
    conditioned: int = 0  # max pools / ReLUs that took their decisions from the reference (grads)

    @property
    def ok(self):
        return bool(self.rows) and all(r.passed for r in self.rows) and not self.unmatched

    @property
    def failed(self):
        return [r for r in self.rows if not r.passed]

    def summary(self):
        n, bad = len(self.rows), len(self.failed)
        text = f"{'PASS' if self.ok else 'FAIL'}: {n - bad}/{n} tensors within tolerance"
        worst = []
        for kind, tol in (("value", self.rtol), ("grad", self.grad_rtol)):
            errs = [r.rel_err for r in self.rows if r.kind == kind and r.rel_err is not None and not r.note]
            if errs:
                worst.append(f"{kind}s {max(errs):.2e} (tolerance {tol:g})")
        if worst:
            text += ", worst relative error: " + ", ".join(worst)
        noisy = [r.name for r in self.rows if r.passed and r.note.startswith("ill-conditioned")]
        if noisy:
            text += f"; {', '.join(noisy)} passed within float32 rounding noise (see its row)"
        if self.conditioned:
            text += f"; gradients use the reference's argmax/ReLU decisions in {self.conditioned} layers"
        if self.unmatched:
            text += f"; {len(self.unmatched)} reference name(s) match nothing in the model: {', '.join(self.unmatched)}"
        return text

    def table(self):
        backends = {r.backend for r in self.rows}
        head = ["name", "shape", "max|ref|", "max abs err", "rel err", "result"]
        lines = []
        for r in self.rows:
            name = r.name if r.kind == "value" else f"grad {r.name}"
            if len(backends) > 1:
                name = f"{name} [{r.backend}]"
            shape = "x".join(map(str, r.shape)) if r.shape is not None else "-"
            if r.ref_shape is not None and r.shape is not None and list(r.ref_shape) != list(r.shape):
                shape = f"{shape} (ref {'x'.join(map(str, r.ref_shape))})"
            lines.append([name, shape, _num(r.max_ref), _num(r.max_err), _num(r.rel_err),
                          ("pass" if r.passed else "FAIL") + (f"  {r.note}" if r.note else "")])
        widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
        fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        return "\n".join([fmt(head)] + [fmt(x) for x in lines])

    def to_json(self):
        return {"model": self.model, "reference": self.reference, "ok": self.ok, "rtol": self.rtol,
                "grad_rtol": self.grad_rtol, "summary": self.summary(), "unmatched": self.unmatched,
                "grad_decisions_from_reference": self.conditioned,
                "rows": [asdict(r) for r in self.rows]}


def _num(v):
    return "-" if v is None else f"{v:.3e}"


def load_arrays(path, what="reference"):
    """``{key: array}`` from an .npz, an .npy (key = file stem) or a folder of .npy files (key = relative
    path without .npy, so ``fc/a.npy`` -> ``fc/a``)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        out = {}
        for folder, _, files in os.walk(path):
            for f in sorted(files):
                if f.endswith(".npy"):
                    full = os.path.join(folder, f)
                    key = os.path.relpath(full, path)[:-4].replace(os.sep, "/")
                    out[key] = _load_npy(full)
        if not out:
            raise PreimageError(f"{what} folder holds no .npy files", path=path)
        return out
    if not os.path.isfile(path):
        raise PreimageError(f"no such {what} file", path=path)
    if path.endswith(".npy"):
        return {os.path.splitext(os.path.basename(path))[0]: _load_npy(path)}
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise FormatError(f"not a readable .npz {what} ({type(e).__name__}: {e})", path=path) from None


def _load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise FormatError(f"not a readable .npy array ({type(e).__name__}: {e})", path=path) from None


def load_input(input, model, reference_path=None, reference=None):
    """``{input name: float32 array N x ...}`` from an .npy/.npz/image file, or found beside the reference.

    Without ``input``: the reference's own entries for the input blobs (pycaffe's ``net.blobs`` holds
    them), else ``inputs.npz`` / ``input.npy`` in the reference's folder.
    """
    names = graph_inputs(model)
    if input is None:
        if reference is not None and all(n in reference for n in names):
            return {n: np.asarray(reference[n], np.float32) for n in names}
        folder = os.path.dirname(os.path.abspath(reference_path)) if reference_path and not os.path.isdir(reference_path) \
            else os.fspath(reference_path or ".")
        for candidate in ("inputs.npz", "input.npy"):
            if os.path.isfile(os.path.join(folder, candidate)):
                return load_input(os.path.join(folder, candidate), model)
        raise PreimageError(f"no input given and none found in the reference or beside it (expected the input "
                            f"blob(s) {names} in the reference, or inputs.npz / input.npy); pass --input")
    path = os.fspath(input)
    if path.lower().endswith(IMAGE_SUFFIXES):
        if len(names) != 1:
            raise PreimageError(f"an image can feed a single-input model only; this one has inputs {names}", path=path)
        return {names[0]: Preprocess.from_onnx(model).load([path]).numpy()}
    arrays = load_arrays(path, "input")
    if path.endswith(".npy") or (len(arrays) == 1 and len(names) == 1):
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise PreimageError(f"input file lacks the model input(s) {missing} (it has {sorted(arrays)})", path=path)
    out = {}
    for n in names:
        a = np.asarray(arrays[n], np.float32)
        out[n] = a[None] if a.ndim == 3 else a
    return out


def _compare(name, backend, kind, got, ref, rtol, note=""):
    ref = np.asarray(ref)
    if got is None:
        return Row(name, backend, kind, None, list(ref.shape), None, None, None, False, note or "not computed")
    got = np.asarray(got)
    max_ref = float(np.abs(ref).max()) if ref.size else 0.0
    if got.shape != ref.shape:
        return Row(name, backend, kind, list(got.shape), list(ref.shape), max_ref, None, None, False,
                   f"shape mismatch: model {list(got.shape)} vs reference {list(ref.shape)}")
    err = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max()) if ref.size else 0.0
    rel = err / max_ref if max_ref > 0 else (0.0 if err == 0 else float("inf"))
    passed = bool(np.isfinite(got).all()) and rel <= rtol
    return Row(name, backend, kind, list(got.shape), list(ref.shape), max_ref, err, rel, passed, note)


def _run_onnxruntime(model, inputs, values):
    import onnxruntime as ort  # deferred: only for --backend onnxruntime or both

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for v in dict.fromkeys(values):
        m.graph.output.append(helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    while True:
        try:
            sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            break
        except Exception as e:  # a newer IR than this onnxruntime reads: the ops are the same, lower it
            msg = str(e)
            if "max supported IR version" in msg and m.ir_version > 3:
                m.ir_version = int(msg.rsplit(":", 1)[1].strip().split()[0].rstrip("."))
                continue
            raise PreimageError(f"onnxruntime cannot load the model: {msg.splitlines()[0]}") from None
    feeds = {i.name: inputs[i.name] for i in sess.get_inputs()}
    names = list(dict.fromkeys(values))
    return dict(zip(names, sess.run(names, feeds)))


def check_reference_paths(reference, grads=None):
    """Refuse, in one line, a reference or grads path that cannot hold arrays (an image, a folder of
    .npz files): numpy would otherwise answer with advice about pickles or read nothing useful."""
    for path, what, kinds in ((reference, "reference (-r/--reference)", (".npz", ".npy")),
                              (grads, "grads (--grads)", (".npz",))):
        if path is None or isinstance(path, dict):
            continue
        path = os.fspath(path)
        if os.path.isfile(path) and os.path.splitext(path)[1].lower() not in kinds:
            expected = "an .npz, an .npy or a folder of .npy files" if kinds[1:] else "an .npz"
            raise PreimageError(f"the {what} expects arrays: {expected} (a pycaffe dump), not a "
                                f"{os.path.splitext(path)[1] or 'extension-less'} file", path=path)
    if reference is not None and not isinstance(reference, dict) and os.path.isdir(reference):
        reference = os.fspath(reference)  # a folder of .npy files is read; an .npz inside it is not
        npz = sorted(f for f in os.listdir(reference) if f.endswith(".npz") and f != "grads.npz")
        if npz and not any(f.endswith(".npy") and f != "input.npy" for f in os.listdir(reference)):
            hint = os.path.join(reference, "blobs.npz" if "blobs.npz" in npz else npz[0])
            raise PreimageError(f"this folder holds {', '.join(npz)} rather than .npy files: pass the file, e.g. "
                                f"-r {hint}" + (" (layers.npz with --keys layers)" if "layers.npz" in npz else ""),
                                path=reference)


def validate(model, reference, input=None, grads=None, keys="blobs", backend="torch", rtol=1e-5,
             grad_rtol=1e-4, device="cpu", decisions="reference"):
    """Run ``model`` on the reference input and compare; returns a :class:`Report` (``.ok``, ``.table()``).

    ``model``: .onnx path, ModelProto or .prototxt (converted with its .caffemodel). ``reference``: .npz,
    .npy or folder of .npy. ``keys``: ``"blobs"`` or ``"layers"``. ``backend``: ``"torch"``,
    ``"onnxruntime"`` or ``"both"``. ``grads``: an .npz with ``R/<blob>`` and ``dx/...`` entries.
    ``decisions``: ``"reference"`` (default) lets max pooling and ReLU take their argmax / on-off
    decisions from the reference activations while gradients are checked (float32 rounding flips
    near-ties between Caffe and torch; see ``onnx_torch/decisions.py``); ``"model"`` uses the model's own.
    """
    if keys not in ("blobs", "layers"):
        raise PreimageError(f"keys must be 'blobs' or 'layers', not {keys!r}")
    if backend not in ("torch", "onnxruntime", "both"):
        raise PreimageError(f"backend must be torch, onnxruntime or both, not {backend!r}")
    check_reference_paths(reference, grads)
    onnx_model, base_dir, where = open_onnx(model)
    ref = load_arrays(reference)
    inputs = load_input(input, onnx_model, reference, ref)
    report = Report(str(where), os.fspath(reference), rtol, grad_rtol)
    found, missing = G.resolve(onnx_model, list(ref), keys)
    report.unmatched = missing
    if not found and missing:
        raise PreimageError(f"none of the reference's {len(ref)} names match the model (keys={keys}): "
                            f"{', '.join(missing[:10])}...; the model has: {G.describe_available(onnx_model, keys)}",
                            path=os.fspath(reference))

    grad_ref = load_arrays(grads, "gradients") if grads is not None else {}
    r_names = [k[2:] for k in grad_ref if k.startswith("R/")]
    grad_found, grad_missing = G.resolve(onnx_model, r_names, "blobs")
    report.unmatched += [f"R/{n}" for n in grad_missing]

    backends = ["torch", "onnxruntime"] if backend == "both" else [backend]
    if "torch" in backends or grad_found:
        dev = resolve_device(device)
        if keys == "blobs":  # one module computes the values and the gradients' blobs
            net = net_g = load_features(onnx_model, list(dict.fromkeys(list(found) + list(grad_found))),
                                        device=dev, keys="blobs")
        else:  # grads are keyed by blob name: a second module reads them as blobs
            net = load_features(onnx_model, list(found), device=dev, keys=keys)
            net_g = load_features(onnx_model, list(grad_found), device=dev, keys="blobs") if grad_found else None
        xs = {n: torch.from_numpy(inputs[n]).to(dev) for n in net.input_names}
        for n, x in xs.items():
            try:
                net.check_input(n, x)
            except PreimageError as e:
                raise PreimageError(f"{e}; the input came from {input or 'the reference'}") from None
        if "torch" in backends:
            with torch.no_grad():
                out = net(**xs)
            for name in found:
                report.rows.append(_compare(name, "torch", "value", out[name].cpu().numpy(), ref[name], rtol))
        if grad_found:
            given = {}
            if decisions == "reference":
                for name, value in found.items():
                    given[value] = torch.from_numpy(np.asarray(ref[name], np.float32)).to(dev)
            _check_grads(report, net_g, inputs, grad_ref, grad_found, dev, grad_rtol, given)
    if "onnxruntime" in backends:
        out = _run_onnxruntime(onnx_model, inputs, list(found.values()))
        for name, value in found.items():
            report.rows.append(_compare(name, "onnxruntime", "value", out[value], ref[name], rtol))
    order = {v: i for i, v in enumerate(G.value_names(onnx_model))}
    values = sorted((r for r in report.rows if r.kind == "value"), key=lambda r: (order[found[r.name]], r.backend))
    report.rows = values + [r for r in report.rows if r.kind != "value"]
    return report


NOISE_FACTOR = 4.0


def _input_grads(net, inputs, given, blobs, R, dtype, device):
    """{(blob, input): gradient of sum(blob * R[blob]) w.r.t. each input} at ``dtype``."""
    # deferred: decisions.py loads onnx2torch (seconds), needed only when gradients are checked
    from .onnx_torch.decisions import recorded_decisions, reference_decisions

    names = list(net.input_names)
    xs = {n: torch.from_numpy(inputs[n]).to(device=device, dtype=dtype).requires_grad_() for n in names}
    given = {k: v.to(dtype) for k, v in given.items()}
    with recorded_decisions(net) as seen, reference_decisions(net, given) as n_conditioned:
        out = net(**xs)
    grads = {}
    for blob in blobs:
        value = out[blob]
        if tuple(R[blob].shape) != tuple(value.shape):
            continue
        gs = torch.autograd.grad((value * R[blob].to(dtype)).sum(), [xs[n] for n in names], retain_graph=True,
                                 allow_unused=True)
        for n, g in zip(names, gs):
            grads[blob, n] = (torch.zeros_like(xs[n]) if g is None else g).detach().double().cpu().numpy()
    return grads, {b: list(out[b].shape) for b in blobs}, n_conditioned, seen


def _check_grads(report, net, inputs, grad_ref, grad_found, device, rtol, given):
    """Rows for every dx/... entry. A row beyond ``rtol`` gets a second chance only if the gradient is
    ill-conditioned: when float32 itself cannot resolve it (the model's float32 and float64 gradients
    differ by ``noise``), the tolerance is NOISE_FACTOR x noise (e.g. the input gradient of a saturated
    softmax, which both Caffe and torch compute from a catastrophic cancellation)."""
    all_inputs = list(net.all_input_names)
    R = {b: torch.from_numpy(np.asarray(grad_ref[f"R/{b}"], np.float32)).to(device) for b in grad_found}
    g32, shapes, report.conditioned, seen = _input_grads(net, inputs, given, list(grad_found), R, torch.float32,
                                                         device)
    pending = []
    for blob in grad_found:
        if [int(d) for d in R[blob].shape] != shapes[blob]:
            report.rows.append(Row(blob, "torch", "grad", shapes[blob], list(R[blob].shape), None, None, None, False,
                                   f"R/{blob} has shape {list(R[blob].shape)}, the blob {shapes[blob]}"))
            continue
        for n in all_inputs:
            key = f"dx/{blob}" if len(all_inputs) == 1 else f"dx/{n}/{blob}"
            if key not in grad_ref:
                continue
            label = blob if len(all_inputs) == 1 else f"{blob} wrt {n}"
            got = g32.get((blob, n))
            if got is None:  # the requested outputs do not depend on this input at all
                got = np.zeros(inputs[n].shape)
            row = _compare(label, "torch", "grad", got, grad_ref[key], rtol)
            report.rows.append(row)
            if not row.passed and row.rel_err is not None and (blob, n) in g32:
                pending.append((row, blob, n))
    if pending:
        # the float64 twin takes every discrete decision of the float32 run (its argmax, its ReLU masks),
        # so that the difference measures continuous rounding only, never a flipped window
        net64 = copy.deepcopy(net).to(torch.float64)
        g64 = _input_grads(net64, inputs, {**seen, **given}, sorted({b for _, b, _ in pending}), R, torch.float64,
                           device)[0]
        for row, blob, n in pending:
            noise = float(np.abs(g32[blob, n] - g64[blob, n]).max()) / row.max_ref if row.max_ref else 0.0
            if row.rel_err <= NOISE_FACTOR * noise:
                row.passed = True
                row.note = (f"ill-conditioned: float32 vs float64 differ by {noise:.1e}; "
                            f"passes within {NOISE_FACTOR:g}x that")


def write_json(report, path):
    write_text_atomic(path, json.dumps(report.to_json(), indent=1) + "\n")
