"""Feature store: extraction against an independent NumPy reference, corrupt images, splits, resume."""
import json
import os

import numpy as np
import pytest
import torch

from preimage.decoders.dataset import BatchStream, FeatureStore, TargetTransform
from preimage.decoders.extract import extract_features
from preimage.errors import PreimageError
from preimage.preprocess import load_image


def reference_input(path):
    """The network input by hand: RGB -> BGR, minus the per-channel mean, C x H x W (float64)."""
    rgb = load_image(path).astype(np.float64)
    return (rgb[..., ::-1] - np.array([104.0, 117.0, 123.0])).transpose(2, 0, 1)


def test_extract_matches_reference_and_skips_corrupt(encoder, image_dir, tmp_path, capsys):
    (image_dir / "broken.png").write_bytes(b"\x89PNG not really")
    (image_dir / "empty.jpg").write_bytes(b"")
    idx = extract_features(encoder, "conv2", image_dir, tmp_path / "feats", shard_size=6, batch=4, progress=False)
    assert idx["count"] == 20 and len(idx["shards"]) == 4
    assert sorted(os.path.basename(s["path"]) for s in idx["skipped"]) == ["broken.png", "empty.jpg"]
    assert "broken.png" in capsys.readouterr().err
    store = FeatureStore(tmp_path / "feats")
    assert store.feature_shape == (16, 8, 8) and store.image_shape == (3, 32, 32)
    assert isinstance(store._arrays(0)[0], np.memmap)
    rows = np.array([17, 3, 9])
    feats, imgs = store.get(rows)
    paths = store.paths(rows)
    x = torch.from_numpy(np.stack([reference_input(p) for p in paths])).float()
    with torch.no_grad():
        ref = encoder(x)["conv2"].numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-5)
    # stored pixels are the image itself (32 x 32 already: no resize), as uint8 RGB
    np.testing.assert_array_equal(imgs[0].transpose(1, 2, 0), load_image(paths[0]).astype(np.uint8))
    # TargetTransform reproduces the network input from the stored pixels
    np.testing.assert_allclose(TargetTransform(store.preprocess, store.image_shape)(torch.from_numpy(imgs)).numpy(),
                               x.numpy(), atol=1e-4)


def test_splits_disjoint_and_complete(encoder, image_dir, tmp_path):
    extract_features(encoder, "fc", image_dir, tmp_path / "f", split=(0.6, 0.2, 0.2), progress=False)
    store = FeatureStore(tmp_path / "f")
    parts = [store.split(s) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [12, 4, 4]
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))


def test_resume_keeps_finished_shards(encoder, image_dir, tmp_path):
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return encoder(x)

    flaky.preprocess = encoder.preprocess
    out = tmp_path / "feats"
    with pytest.raises(KeyboardInterrupt):
        extract_features(flaky, "fc", image_dir, out, shard_size=8, batch=4, progress=False)
    assert not (out / "index.json").exists()
    with pytest.raises(PreimageError, match="unfinished"):
        FeatureStore(out)
    first = (out / "features-00000.npy").stat().st_mtime_ns
    assert not (out / "shard-00001.json").exists()
    calls["n"] = 100
    extract_features(flaky, "fc", image_dir, out, shard_size=8, batch=4, progress=False)
    assert (out / "features-00000.npy").stat().st_mtime_ns == first
    extract_features(encoder, "fc", image_dir, tmp_path / "clean", shard_size=8, batch=4, progress=False)
    a, b = FeatureStore(out), FeatureStore(tmp_path / "clean")
    np.testing.assert_array_equal(a.get(np.arange(20))[0], b.get(np.arange(20))[0])
    # a different image set in the same folder is refused, not mixed in
    with pytest.raises(PreimageError, match="other images"):
        extract_features(encoder, "fc", sorted(image_dir.iterdir())[:5], out, shard_size=8, progress=False)


def test_batch_stream_order_resumes_and_shards(encoder, image_dir, tmp_path):
    extract_features(encoder, "fc", image_dir, tmp_path / "f", split=(1, 0, 0), progress=False)
    store = FeatureStore(tmp_path / "f")
    rows = store.split("train")
    full = BatchStream(store, rows, 6, seed=3)
    seq = [next(full)[0] for _ in range(8)]
    full.close()
    # every epoch is a permutation of the split
    pos = np.concatenate([full.positions(b) for b in range(10)])
    assert sorted(pos[:20].tolist()) == list(range(20)) and sorted(pos[20:40].tolist()) == list(range(20))
    late = BatchStream(store, rows, 6, seed=3, start=5)
    for b in range(5, 8):
        torch.testing.assert_close(next(late)[0], seq[b], rtol=0, atol=0)
    late.close()
    halves = [BatchStream(store, rows, 6, seed=3, rank=r, world=2) for r in range(2)]
    torch.testing.assert_close(torch.cat([next(h)[0] for h in halves]), seq[0], rtol=0, atol=0)
    for h in halves:
        h.close()


def test_bad_inputs_are_clear(encoder, tmp_path):
    with pytest.raises(PreimageError, match="no such image folder"):
        extract_features(encoder, "fc", tmp_path / "nope", tmp_path / "f", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreimageError, match="no images found"):
        extract_features(encoder, "fc", tmp_path / "empty", tmp_path / "f", progress=False)
    with pytest.raises(PreimageError, match="not a feature store"):
        FeatureStore(tmp_path / "empty")


def test_image_list_file_with_missing_entry(encoder, image_dir, tmp_path):
    names = sorted(p.name for p in image_dir.iterdir())[:4]
    lst = image_dir / "list.txt"
    lst.write_text("# four images and one that is gone\n" + "\n".join(names[:2] + ["gone.png"] + names[2:]) + "\n\n")
    idx = extract_features(encoder, "fc", lst, tmp_path / "f", split=(1, 0, 0), progress=False)
    assert idx["count"] == 4 and [os.path.basename(s["path"]) for s in idx["skipped"]] == ["gone.png"]
    assert [os.path.basename(p) for p in FeatureStore(tmp_path / "f").paths(range(4))] == names
    assert json.loads((tmp_path / "f" / "index.json").read_text())["layer"] == "fc"


def test_shards_opened_concurrently_are_complete(encoder, image_dir, tmp_path, monkeypatch):
    """Prefetch threads open shards at the same time: none may see a half-opened shard."""
    import threading
    import time

    import preimage.decoders.dataset as dataset

    extract_features(encoder, "fc", image_dir, tmp_path / "f", shard_size=2, progress=False)
    real_load = np.load

    def slow_load(*a, **k):  # widen the window between opening a shard's two arrays
        time.sleep(0.002)
        return real_load(*a, **k)

    monkeypatch.setattr(dataset.np, "load", slow_load)
    store = FeatureStore(tmp_path / "f")
    errors = []

    def read_all():
        try:
            store.get(np.arange(len(store)))
        except Exception as e:  # collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=read_all) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_extract_with_device_auto(encoder, image_dir, tmp_path):
    """The command's default --device auto (it once reached torch.device('auto') and crashed)."""
    idx = extract_features(encoder, "fc", sorted(image_dir.iterdir())[:4], tmp_path / "f", split=(1, 0, 0),
                           device="auto", progress=False)
    assert idx["count"] == 4 and idx["feature_shape"] == [32]
