"""Image <-> network-input conversion, driven by a converted model's ``preimage.preprocess`` metadata.

The metadata (a JSON object written by the converters) may hold:

``input``          name of the image input (default: the model's first input)
``channel_order``  ``"BGR"`` (Caffe's default) or ``"RGB"``
``mean``           per-channel mean in the network's channel order, in raw pixel units
``mean_file``      a mean image (``.binaryproto`` or ``.npy``, C x H x W, network channel order); its
                   per-pixel values are used, centre-cropped/resized to the input size
``raw_scale``      the pixel range the network expects (255 for Caffe ImageNet models, 1 for [0, 1])
``scale``          multiplier applied after mean subtraction (Caffe's ``transform_param.scale``)
``input_size``     ``[H, W]`` of the network input
``assumed``        list of the keys above that were not in the source model but filled with defaults

Network input = (pixel * raw_scale / 255 - mean) * scale, channels reordered to ``channel_order``.
"""
import functools
import json
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import cv2
import numpy as np

from .errors import FormatError, PreimageError
from .fileio import write_bytes_atomic

IMAGENET_MEAN_BGR = [104.0, 117.0, 123.0]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_image(path):
    """Read an image file as float32 H x W x 3 RGB in [0, 255]; a clear error if it can't be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PreimageError("no such image file", path=path)
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise FormatError("not a readable image (expected JPEG, PNG, BMP, TIFF, ...)", path=path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)


def save_image(path, rgb):
    """Write an H x W x 3 RGB uint8 (or float in [0, 255]) array as PNG/JPEG, atomically."""
    arr = np.clip(np.asarray(rgb, dtype=np.float32), 0, 255).round().astype(np.uint8)
    ok, buf = cv2.imencode(os.path.splitext(os.fspath(path))[1] or ".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    if not ok:
        raise PreimageError("could not encode image", path=path)
    write_bytes_atomic(path, buf.tobytes())


def resize_center_crop(img, size):
    """Resize so the image covers ``size`` = (H, W), keeping aspect ratio, then crop the centre."""
    h, w = img.shape[:2]
    th, tw = size
    s = max(th / h, tw / w)
    nh, nw = max(th, int(round(h * s))), max(tw, int(round(w * s)))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (nw, nh), interpolation=interp)
    y0, x0 = (nh - th) // 2, (nw - tw) // 2
    return img[y0:y0 + th, x0:x0 + tw]


@dataclass
class Preprocess:
    """How to turn an image into the network's input and back."""

    input: Optional[str] = None
    channel_order: str = "BGR"
    mean: Optional[List[float]] = None
    mean_file: Optional[str] = None
    raw_scale: float = 255.0
    scale: float = 1.0
    input_size: Optional[List[int]] = None
    assumed: List[str] = field(default_factory=list)
    base_dir: Optional[str] = field(default=None, repr=False)

    @classmethod
    def from_metadata(cls, meta, base_dir=None):
        meta = dict(meta or {})
        known = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta and k != "base_dir"}
        p = cls(**known, base_dir=base_dir)
        if p.mean is None and p.mean_file is None and "mean" not in meta:
            p.mean = list(IMAGENET_MEAN_BGR if p.channel_order.upper() == "BGR" else IMAGENET_MEAN_BGR[::-1])
            p.assumed = sorted(set(p.assumed) | {"mean"})
        return p

    @classmethod
    def from_onnx(cls, model):
        """Read the ``preimage.preprocess`` entry of an ONNX model (path or ModelProto)."""
        import onnx  # deferred: this floor needs onnx only to read a model's metadata

        base_dir = None
        if isinstance(model, (str, os.PathLike)):
            base_dir = os.path.dirname(os.path.abspath(model))
            model = onnx.load(os.fspath(model), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
        meta = json.loads(props.get("preimage.preprocess", "{}") or "{}")
        p = cls.from_metadata(meta, base_dir=base_dir)
        if p.input_size is None:
            inputs = json.loads(props.get("preimage.inputs", "{}") or "{}")
            name = p.input or (next(iter(inputs)) if inputs else None)
            shape = inputs.get(name) if name else None
            if shape and len(shape) == 4:
                p.input_size = [int(shape[2]), int(shape[3])]
        return p

    def to_metadata(self):
        d = asdict(self)
        d.pop("base_dir")
        return {k: v for k, v in d.items() if v is not None and v != []}

    def mean_array(self, size):
        """The mean as a float32 array broadcastable to C x H x W (``size`` = (H, W)), network channel order."""
        if self.mean_file:
            path = self.mean_file
            if self.base_dir and not os.path.isabs(path):
                path = os.path.join(self.base_dir, path)
            path = os.fspath(path)
            stamp = os.stat(path).st_mtime_ns if os.path.isfile(path) else None
            return _sized_mean(path, stamp, None if size is None else tuple(size)).copy()
        if self.mean is not None:
            return np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        return np.zeros((1, 1, 1), np.float32)

    def image_to_array(self, img, size=None):
        """H x W x 3 RGB [0, 255] -> C x H x W float32 network input (resized to ``size`` or input_size)."""
        size = size or self.input_size
        img = np.asarray(img, dtype=np.float32)
        if size is not None:
            img = resize_center_crop(img, tuple(size))
        if self.channel_order.upper() == "BGR":
            img = img[..., ::-1]
        chw = np.ascontiguousarray(img.transpose(2, 0, 1)) * (self.raw_scale / 255.0)
        return ((chw - self.mean_array(chw.shape[1:])) * self.scale).astype(np.float32)

    def array_to_image(self, x):
        """C x H x W network input -> H x W x 3 RGB float in [0, 255] (not clipped)."""
        x = np.asarray(x, dtype=np.float32)
        chw = (x / self.scale + self.mean_array(x.shape[1:])) * (255.0 / self.raw_scale)
        img = chw.transpose(1, 2, 0)
        return img[..., ::-1] if self.channel_order.upper() == "BGR" else img

    def load(self, paths, size=None):
        """Image files -> N x C x H x W float32 torch tensor."""
        import torch  # deferred: this floor stays importable without torch (numpy in, numpy out)

        arrays = [self.image_to_array(load_image(p), size) for p in paths]
        return torch.from_numpy(np.stack(arrays))

    def to_uint8(self, x):
        """N x C x H x W tensor/array -> list of H x W x 3 RGB uint8 images."""
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        return [np.clip(self.array_to_image(xi), 0, 255).round().astype(np.uint8) for xi in x]


@functools.lru_cache(maxsize=8)
def _sized_mean(path, stamp, size):
    """The mean image at ``size``, read once per file version (``stamp``), not once per image."""
    m = load_mean_file(path)
    if size is not None and tuple(m.shape[1:]) != size:
        m = resize_center_crop(m.transpose(1, 2, 0), size)
        m = m.transpose(2, 0, 1) if m.ndim == 3 else m[None]
    return m.astype(np.float32)


def load_mean_file(path):
    """A mean image from a Caffe ``.binaryproto`` (BlobProto) or ``.npy``: C x H x W float32."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PreimageError("mean file not found", path=path)
    if path.endswith(".npy"):
        m = np.load(path)
    else:
        # deferred: protobuf and the Caffe schema are needed only for a .binaryproto mean; at module level
        # this floor would load the Caffe converter package with it
        from .converters.caffe.proto import caffe_pb2

        blob = caffe_pb2.BlobProto()
        try:
            with open(path, "rb") as f:
                blob.ParseFromString(f.read())
        except Exception as e:  # protobuf's DecodeError carries no place; say what was expected
            raise FormatError(f"not a Caffe BlobProto mean file ({e})", path=path) from None
        dims = list(blob.shape.dim) or [blob.num, blob.channels, blob.height, blob.width]
        m = np.asarray(blob.data, dtype=np.float32).reshape(dims)
    m = np.asarray(m, dtype=np.float32)
    if m.ndim == 4:
        m = m[0]
    if m.ndim != 3:
        raise FormatError(f"mean image must be C x H x W, found shape {m.shape}", path=path)
    return m
