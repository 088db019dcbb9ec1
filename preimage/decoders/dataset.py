"""The feature store: sharded, memory-mappable features plus the images they came from.

A store is a folder::

    index.json              written last: the store is complete when it exists
    shard-00000.json        per shard: count, image paths, skipped images (written after its arrays)
    features-00000.npy      N x feature_shape (float32 or float16), memory-mapped when read
    images-00000.npy        N x 3 x H x W uint8 RGB: each image resized and centre-cropped to the
                            model's input size, i.e. the network input before mean/scale/channel order
    split-train.npy, split-val.npy, split-test.npy   global row numbers of each split
    sources.txt             the image list being extracted (for resuming)

The images are kept as uint8 pixels (4x smaller than float and exact); the network's preprocessing
(mean, scale, channel order, recorded in ``index.json``) is applied on the fly by
:class:`TargetTransform`, on the training device.
"""
import collections
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import FormatError, PreimageError
from ..preprocess import Preprocess

FORMAT = "preimage-features/1"
SPLITS = ("train", "val", "test")


def shard_name(kind, i):
    return f"{kind}-{i:05d}.{'json' if kind == 'shard' else 'npy'}"


class FeatureStore:
    """Read access to a finished store; arrays are memory-mapped, rows are addressed globally."""

    def __init__(self, path):
        self.path = os.fspath(path)
        index = os.path.join(self.path, "index.json")
        if not os.path.isfile(index):
            hint = " (extraction unfinished: run the same 'decoder extract' command again to resume)" if os.path.isfile(
                os.path.join(self.path, "sources.txt")) else ""
            raise PreimageError("not a feature store: index.json missing" + hint, path=self.path)
        try:
            with open(index) as f:
                self.index = json.load(f)
        except (OSError, ValueError) as e:
            raise FormatError(f"unreadable store index ({e})", path=index) from None
        if self.index.get("format") != FORMAT:
            raise FormatError(f"expected a store of format {FORMAT}, found {self.index.get('format')!r}", path=index)
        self.feature_shape = tuple(self.index["feature_shape"])
        self.image_shape = tuple(self.index["image_shape"])
        self.layer = self.index.get("layer")
        self.preprocess = Preprocess.from_metadata(self.index.get("preprocess") or {})
        counts = [s["count"] for s in self.index["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._features = [None] * len(counts)
        self._images = [None] * len(counts)

    def __len__(self):
        return int(self.offsets[-1])

    def _arrays(self, i):
        # Prefetch threads call this concurrently: open both arrays first, then publish them, images
        # last, so a thread that sees a shard's images also sees its features.
        if self._images[i] is None:
            s = self.index["shards"][i]
            opened = {}
            for kind in ("features", "images"):
                p = os.path.join(self.path, s[kind])
                try:
                    opened[kind] = np.load(p, mmap_mode="r")
                except (OSError, ValueError) as e:
                    raise FormatError(f"unreadable shard ({e})", path=p) from None
            self._features[i] = opened["features"]
            self._images[i] = opened["images"]
        return self._features[i], self._images[i]

    def split(self, name):
        """Global row numbers of split ``name`` (``train``, ``val``, ``test``; ``all`` for every row)."""
        if name == "all":
            return np.arange(len(self), dtype=np.int64)
        p = os.path.join(self.path, f"split-{name}.npy")
        if not os.path.isfile(p):
            raise PreimageError(f"the store has no '{name}' split", path=self.path)
        return np.load(p).astype(np.int64)

    def paths(self, rows):
        out = []
        for r in rows:
            i = int(np.searchsorted(self.offsets, r, side="right") - 1)
            out.append(self.index["shards"][i]["paths"][r - self.offsets[i]])
        return out

    def get(self, rows):
        """Rows (any order) -> (features float32 N x feature_shape, images uint8 N x 3 x H x W) numpy arrays.

        Reads shard by shard in sorted order (sequential access on memory-mapped files), then restores
        the requested order.
        """
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        shard = np.searchsorted(self.offsets, srt, side="right") - 1
        feats = np.empty((len(rows), *self.feature_shape), np.float32)
        imgs = np.empty((len(rows), *self.image_shape), np.uint8)
        for i in np.unique(shard):
            sel = shard == i
            f, im = self._arrays(int(i))
            local = srt[sel] - self.offsets[i]
            dest = order[sel]
            feats[dest] = f[local]
            imgs[dest] = im[local]
        return feats, imgs


class TargetTransform(torch.nn.Module):
    """uint8 RGB N x 3 x H x W -> the network's preprocessed input (mean, scale, channel order), in torch."""

    def __init__(self, preprocess, image_shape):
        super().__init__()
        self.bgr = preprocess.channel_order.upper() == "BGR"
        self.raw = float(preprocess.raw_scale) / 255.0
        self.scale = float(preprocess.scale)
        mean = torch.from_numpy(np.ascontiguousarray(preprocess.mean_array(tuple(image_shape[1:]))))
        self.register_buffer("mean", mean.float().reshape(1, *mean.shape), persistent=False)

    def forward(self, img):
        x = img.float()
        if self.bgr:
            x = x.flip(1)
        return (x * self.raw - self.mean) * self.scale

    def inverse(self, x):
        """Network input -> RGB float in [0, 255] (not clipped)."""
        x = (x / self.scale + self.mean) / self.raw
        return x.flip(1) if self.bgr else x


class BatchStream:
    """Endless, deterministic, resumable stream of training batches from a store split.

    The stream is the concatenation of per-epoch permutations of the split (epoch ``e`` shuffled with
    seed ``(seed, e)``); global batch ``b`` is positions ``[b * B, (b + 1) * B)`` of it, so the data
    order depends only on (seed, batch number): resuming at batch ``b`` continues it exactly. With
    ``world`` ranks, rank ``r`` takes the ``r``-th contiguous ``B / world`` slice of each global batch.

    ``workers`` threads read the next ``prefetch`` batches from the memory-mapped shards while the
    step runs (NumPy's gathers and pinning release the GIL); batches come out in order. On CUDA they
    are pinned and copied without blocking.
    """

    def __init__(self, store, rows, batch, seed=0, start=0, rank=0, world=1, device="cpu", prefetch=4, workers=2,
                 shuffle=True):
        if batch % world:
            raise PreimageError(f"the global batch ({batch}) must be divisible by the number of processes ({world})")
        if len(rows) == 0:
            raise PreimageError("the training split is empty", path=store.path)
        self.store, self.rows, self.batch, self.seed = store, np.asarray(rows), batch, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.device = torch.device(device)
        self.pin = self.device.type == "cuda"
        self.next_batch = start
        self._perms = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="preimage-batches")
        self._pending = collections.deque(self._pool.submit(self._load, b) for b in range(start, start + max(1, prefetch)))
        self._submitted = start + max(1, prefetch)

    def _perm(self, epoch):
        with self._lock:
            if epoch not in self._perms:
                n = len(self.rows)
                self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
                for old in [e for e in self._perms if e < epoch - 1]:
                    del self._perms[old]
            return self._perms[epoch]

    def positions(self, b):
        """Row numbers of this rank's part of global batch ``b``."""
        n, per = len(self.rows), self.batch // self.world
        pos = np.arange(b * self.batch + self.rank * per, b * self.batch + (self.rank + 1) * per)
        out = np.empty(per, np.int64)
        for e in np.unique(pos // n):
            sel = pos // n == e
            out[sel] = self.rows[self._perm(int(e))[pos[sel] % n]]
        return out

    def _load(self, b):
        f, im = self.store.get(self.positions(b))
        f, im = torch.from_numpy(f), torch.from_numpy(im)
        if self.pin:
            f, im = f.pin_memory(), im.pin_memory()
        return f, im

    def __iter__(self):
        return self

    def __next__(self):
        fut = self._pending.popleft()
        self._pending.append(self._pool.submit(self._load, self._submitted))
        self._submitted += 1
        f, im = fut.result()  # re-raises a reading error here, in the training loop
        self.next_batch += 1
        return f.to(self.device, non_blocking=True), im.to(self.device, non_blocking=True)

    def close(self):
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def iterate_rows(store, rows, batch, device="cpu"):
    """Batches of (features, images) tensors over ``rows`` in order (for validation and apply)."""
    for s in range(0, len(rows), batch):
        f, im = store.get(rows[s:s + batch])
        yield torch.from_numpy(f).to(device), torch.from_numpy(im).to(device)
