"""Run an encoder over an image folder and write a feature store (see :mod:`.dataset`).

Resumable: each shard (a fixed slice of the sorted image list) is written atomically, its JSON last;
a second run with the same arguments keeps the finished shards and does the rest. An unreadable or
corrupt image is reported and skipped.

Under ``torchrun --nproc_per_node N`` each rank takes every N-th unfinished shard (each on its own GPU,
``LOCAL_RANK``) and writes it into the same store; rank 0 merges the shards' records into ``index.json``
when all ranks are done. Shards are the same slices of the image list whatever the number of
processes, so the store equals a single process's, and an interrupted sharded run resumes with any N.
"""
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from ..device import resolve_device
from ..errors import PreimageError
from ..fileio import atomic_path, sha256_file, write_text_atomic
from ..preprocess import IMAGE_SUFFIXES, Preprocess, load_image, resize_center_crop
from .dataset import FORMAT, SPLITS, TargetTransform, shard_name
from ..distributed import Distributed


def list_images(source):
    """A folder (searched recursively, sorted) or a text file with one image path per line
    (relative paths are relative to the list file; blank lines and ``#`` comments ignored)."""
    source = os.fspath(source)
    if os.path.isdir(source):
        out = []
        for root, dirs, files in os.walk(source):
            dirs.sort()
            out += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
        if not out:
            raise PreimageError(f"no images found (looked for {', '.join(IMAGE_SUFFIXES)})", path=source)
        return out
    if os.path.isfile(source):
        base = os.path.dirname(os.path.abspath(source))
        with open(source, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
        out = [ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines if ln and not ln.startswith("#")]
        if not out:
            raise PreimageError("the image list is empty", path=source)
        return out
    raise PreimageError("no such image folder or list file", path=source)


def resolve_encoder(model, layer, device="cpu"):
    """``model``: a path (.onnx / .prototxt, loaded with the ONNX -> torch converter) or a callable
    ``x -> {name: tensor}``; returns the callable and its Preprocess (``.preprocess`` or the default)."""
    if isinstance(model, (str, os.PathLike)):
        from ..converters.onnx_torch.load import load_features  # deferred: onnx + onnx2torch, for paths only

        model = load_features(os.fspath(model), [layer] if isinstance(layer, str) else list(layer), device=device)
    pre = getattr(model, "preprocess", None) or Preprocess()
    return model, pre


def _load_pixels(path, size):
    img = resize_center_crop(load_image(path), tuple(size))
    return np.ascontiguousarray(np.clip(img, 0, 255).round().astype(np.uint8).transpose(2, 0, 1))


def _split_rows(n, split, seed):
    fr = np.asarray(split, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0:
        raise PreimageError(f"--split needs three non-negative fractions train,val,test; got {list(split)}")
    fr = fr / fr.sum()
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(fr[1] * n)), int(round(fr[2] * n))
    if fr[1] > 0 and n_val == 0 and n >= 3:
        n_val = 1
    if fr[2] > 0 and n_test == 0 and n >= 3:
        n_test = 1
    n_train = n - n_val - n_test
    return {"train": np.sort(perm[:n_train]), "val": np.sort(perm[n_train:n_train + n_val]), "test": np.sort(perm[n_train + n_val:])}


def extract_features(model, layer, images, output, *, size=None, batch=32, shard_size=1024, split=(0.8, 0.1, 0.1),
                     seed=0, device="cpu", feature_dtype="float32", workers=4, progress=True):
    """Extract ``layer``'s features of ``images`` (folder, list file, or list of paths) into the store ``output``.

    Returns the store's index (a dict). ``size`` = (H, W) of the network input (default: the model's
    ``input_size``). Interrupted runs resume from the finished shards when called again. Under torchrun
    (``WORLD_SIZE`` > 1) the ranks share the unfinished shards and write them into the same store; rank 0
    writes the index once all are done. The store is the one a single process writes.
    """
    with Distributed(resolve_device(device)) as dist:
        enc, pre = resolve_encoder(model, layer, dist.device)
        size = tuple(size or pre.input_size or ())
        if len(size) != 2:
            raise PreimageError("the model does not record its input size: pass --size H W")
        if pre.input_size and tuple(pre.input_size) != size:
            _check_size(enc, pre, size, dist.device)  # before anything is written
        if dist.main:
            for line in assumed_preprocessing(enc, pre):
                tqdm.write(f"warning: {line}", file=sys.stderr)
        paths = [os.fspath(p) for p in (list(images) if isinstance(images, (list, tuple)) else list_images(images))]
        output = os.fspath(output)
        settings = {"layer": layer, "size": list(size), "shard_size": int(shard_size), "feature_dtype": feature_dtype}
        _claim_folder(output, settings, paths, dist)
        n_shards = (len(paths) + shard_size - 1) // shard_size
        todo = [i for i in range(n_shards) if not os.path.isfile(os.path.join(output, shard_name("shard", i)))]
        dist.barrier()  # every rank has listed the finished shards before any rank writes one
        mine = todo[dist.rank::dist.world]
        count = sum(min(shard_size, len(paths) - i * shard_size) for i in mine)
        desc = f"extract {layer}" + (f" (rank 0 of {dist.world}: its {len(mine)} shards)" if dist.world > 1 else "")
        done = len(paths) - sum(min(shard_size, len(paths) - i * shard_size) for i in todo)
        bar = tqdm(total=count if dist.world > 1 else len(paths), initial=0 if dist.world > 1 else done, desc=desc,
                   unit="img", disable=not progress or not dist.main)
        shards = _ShardWriter(output, enc, pre, layer, size, batch, feature_dtype, workers, bar, dist.device)
        try:
            for i in mine:
                shards.write(i, paths[i * shard_size:(i + 1) * shard_size])
        except KeyboardInterrupt:
            bar.close()
            tqdm.write(f"interrupted: finished shards are kept in {output}; run the same command again to resume")
            raise
        finally:
            shards.close()
        bar.close()
        dist.barrier()  # all shards written
        if dist.main:
            index = _write_index(output, model, layer, size, shard_size, feature_dtype, pre, n_shards, split, seed)
        dist.barrier()  # the index written
        if not dist.main:
            with open(os.path.join(output, "index.json"), encoding="utf-8") as f:
                index = json.load(f)
        return index


def assumed_preprocessing(enc, pre):
    """Lines naming the preprocessing that was not in the model but assumed (empty when all was recorded)."""
    if getattr(enc, "preprocess", None) is None:
        return [f"the model has no preprocessing record; assumed channel order {pre.channel_order}, no mean, "
                f"raw scale {pre.raw_scale:g}, scale {pre.scale:g}"]
    if not pre.assumed:
        return []
    values = {"channel_order": f"channel order {pre.channel_order}", "raw_scale": f"raw scale {pre.raw_scale:g}",
              "scale": f"scale {pre.scale:g}", "input_size": f"input size {pre.input_size}",
              "mean": f"mean {pre.mean} ({pre.channel_order}, ImageNet's)" if pre.mean else "no mean"}
    named = ", ".join(values.get(k, k) for k in pre.assumed)
    return [f"the model does not record its {', '.join(pre.assumed)}: assumed {named}. If it was trained otherwise, "
            "set them when converting it; the features stored here use these values"]


def _claim_folder(output, settings, paths, dist):
    """Check (every rank) or write (rank 0) ``sources.txt``: the image list and settings being extracted."""
    sources = os.path.join(output, "sources.txt")
    header = "# " + json.dumps(settings, sort_keys=True)
    if os.path.isfile(sources):
        with open(sources, encoding="utf-8") as f:
            old = f.read().splitlines()
        if old[:1] != [header] or old[1:] != paths:
            raise PreimageError("the folder holds an extraction with other images or settings: use a new output "
                                "folder (or delete this one) to start over", path=output)
    dist.barrier()  # every rank has read it before rank 0 writes it
    if dist.main:
        os.makedirs(output, exist_ok=True)
        if not os.path.isfile(sources):
            write_text_atomic(sources, "\n".join([header] + paths) + "\n")
        if os.path.isfile(os.path.join(output, "index.json")):
            os.unlink(os.path.join(output, "index.json"))  # rewritten at the end; a store is complete only with it


class _ShardWriter:
    """Reads one shard's images (``workers`` threads), runs the encoder, writes the shard (see _write_shard)."""

    def __init__(self, output, enc, pre, layer, size, batch, feature_dtype, workers, bar, device):
        self.output, self.enc, self.layer, self.size, self.batch = output, enc, layer, size, batch
        self.feature_dtype, self.bar, self.device = feature_dtype, bar, device
        self.pool = ThreadPoolExecutor(max(1, workers))
        self.to_input = TargetTransform(pre, (3, *size)).to(device)  # built once: its mean may come from a file
        self.feature_shape = None

    def _load(self, p):
        try:
            return p, _load_pixels(p, self.size), None
        except PreimageError as e:
            return p, None, str(e)
        except Exception as e:  # a decoder library's own error on a damaged file: report, skip
            return p, None, f"{p}: unreadable image ({type(e).__name__}: {e})"

    def _features(self, px):
        with torch.no_grad():
            out = self.enc(self.to_input(torch.from_numpy(px).to(self.device)))
        if isinstance(out, dict):
            if self.layer not in out:
                raise PreimageError(f"the model returned no '{self.layer}' (has: {', '.join(out)})")
            out = out[self.layer]
        return out.detach().float().cpu().numpy().astype(self.feature_dtype)

    def write(self, i, chunk):
        kept, pixels, skipped, feats = [], [], [], []
        for s in range(0, len(chunk), self.batch):
            good = []
            for p, px, err in self.pool.map(self._load, chunk[s:s + self.batch]):
                if err:
                    tqdm.write(f"skipping {err}", file=sys.stderr)
                    skipped.append({"path": p, "error": err})
                else:
                    good.append((p, px))
            self.bar.update(len(chunk[s:s + self.batch]))
            if good:
                px = np.stack([g[1] for g in good])
                feats.append(self._features(px))
                kept += [g[0] for g in good]
                pixels.append(px)
        if feats:
            f_arr, i_arr = np.concatenate(feats), np.concatenate(pixels)
            self.feature_shape = list(f_arr.shape[1:])
        else:
            f_arr = np.zeros((0, *(self.feature_shape or [0])), self.feature_dtype)
            i_arr = np.zeros((0, 3, *self.size), np.uint8)
        _write_shard(self.output, i, f_arr, i_arr, kept, skipped)

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


def _check_size(enc, pre, size, device):
    """One forward pass on a blank image: a --size the model's layers cannot take is one clear line."""
    x = TargetTransform(pre, (3, *size)).to(device)(torch.zeros(1, 3, *size, dtype=torch.uint8, device=device))
    try:
        with torch.no_grad():
            enc(x)
    except RuntimeError as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise
        raise PreimageError(f"the model does not run on {size[0]}x{size[1]} inputs ({str(e).splitlines()[0]}); "
                            f"leave out --size to use its own {pre.input_size[0]}x{pre.input_size[1]}",
                            where="--size") from None


def _write_shard(output, i, features, images, paths, skipped):
    """Shard ``i``: its two arrays, then its JSON (a shard is finished only when the JSON exists)."""
    for kind, arr in (("features", features), ("images", images)):
        with atomic_path(os.path.join(output, shard_name(kind, i))) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr))
    meta = {"count": len(features), "paths": list(paths), "skipped": skipped, "feature_shape": list(features.shape[1:])}
    write_text_atomic(os.path.join(output, shard_name("shard", i)), json.dumps(meta))


def _write_index(output, model, layer, size, shard_size, feature_dtype, pre, n_shards, split, seed):
    shards, skipped, shapes = [], [], set()
    for i in range(n_shards):
        with open(os.path.join(output, shard_name("shard", i))) as f:
            meta = json.load(f)
        skipped += meta["skipped"]
        if meta["count"]:
            shapes.add(tuple(meta["feature_shape"]))
        shards.append({"features": shard_name("features", i), "images": shard_name("images", i),
                       "count": meta["count"], "paths": meta["paths"]})
    if len(shapes) != 1:
        raise PreimageError("no image could be read" if not shapes else f"shards disagree on the feature shape: {sorted(shapes)}",
                            path=output)
    n = sum(s["count"] for s in shards)
    rows = _split_rows(n, split, seed)
    for name in SPLITS:
        with atomic_path(os.path.join(output, f"split-{name}.npy")) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, rows[name])
    pre_meta = pre.to_metadata()
    if pre_meta.get("mean_file") and pre.base_dir and not os.path.isabs(pre_meta["mean_file"]):
        pre_meta["mean_file"] = os.path.join(pre.base_dir, pre_meta["mean_file"])  # the store must not depend on the cwd
    is_file = isinstance(model, (str, os.PathLike)) and os.path.isfile(model)
    index = {
        "format": FORMAT, "model": recorded_model(model),
        "model_sha256": sha256_file(model) if is_file else None,  # train finds the encoder by it (mirror, deepsim)
        "layer": layer, "feature_shape": list(shapes.pop()), "feature_dtype": feature_dtype,
        "image_shape": [3, *size], "preprocess": pre_meta, "shard_size": shard_size, "count": n,
        "split": {k: int(len(v)) for k, v in rows.items()}, "split_seed": seed, "skipped": skipped, "shards": shards,
    }
    write_text_atomic(os.path.join(output, "index.json"), json.dumps(index, indent=1))
    return index


def recorded_model(model):
    """What the store records as its model: a file's absolute path, a representation spec as given
    (``hog:cell=8``: no file, rebuilt from the spec), None for a callable."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    from ..models.representations import is_spec  # deferred: only for paths and specs

    return os.fspath(model).strip() if is_spec(model) else os.path.abspath(model)


def write_store(output, features, images, *, layer="features", preprocess=None, paths=None, shard_size=1024,
                split=(0.8, 0.1, 0.1), seed=0):
    """A feature store from arrays you already have: ``features`` N x ..., ``images`` N x 3 x H x W uint8 RGB
    (the network input before mean/scale/channel order). For features computed elsewhere, and benchmarks."""
    features, images = np.asarray(features), np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) != len(features):
        raise PreimageError(f"images must be N x 3 x H x W uint8 with one row per feature row; got {images.dtype} "
                            f"{list(images.shape)} for {len(features)} features")
    output = os.fspath(output)
    os.makedirs(output, exist_ok=True)
    pre = preprocess or Preprocess()
    paths = list(paths) if paths is not None else [f"array:{i}" for i in range(len(features))]
    n_shards = (len(features) + shard_size - 1) // shard_size
    for i in range(n_shards):
        sl = slice(i * shard_size, (i + 1) * shard_size)
        _write_shard(output, i, features[sl], images[sl], paths[sl], [])
    return _write_index(output, None, layer, images.shape[2:], shard_size, str(features.dtype), pre, n_shards, split, seed)
