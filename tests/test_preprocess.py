import numpy as np

from preimage.preprocess import Preprocess, load_image, save_image


def test_round_trip_bgr_mean_scale(tmp_path):
    p = Preprocess(channel_order="BGR", mean=[10.0, 20.0, 30.0], scale=0.5, input_size=[4, 6])
    rgb = np.random.default_rng(0).uniform(0, 255, (4, 6, 3)).astype(np.float32)
    x = p.image_to_array(rgb)
    # independent formula: BGR channel c = (rgb[..., 2 - c] - mean[c]) * scale
    for c in range(3):
        np.testing.assert_allclose(x[c], (rgb[..., 2 - c] - [10, 20, 30][c]) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(p.array_to_image(x), rgb, rtol=1e-5, atol=1e-4)


def test_missing_mean_is_assumed_and_said():
    p = Preprocess.from_metadata({"channel_order": "BGR"})
    assert p.mean == [104.0, 117.0, 123.0] and "mean" in p.assumed


def test_image_files(tmp_path):
    img = np.zeros((5, 7, 3), np.uint8)
    img[..., 0] = 200  # red
    save_image(tmp_path / "a.png", img)
    back = load_image(tmp_path / "a.png")
    assert back.shape == (5, 7, 3) and back[0, 0, 0] == 200 and back[0, 0, 2] == 0
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    import pytest
    from preimage.errors import PreimageError

    with pytest.raises(PreimageError, match="bad.jpg"):
        load_image(bad)


def test_mean_file_per_pixel_and_read_once(tmp_path, monkeypatch):
    """A .npy mean image is subtracted pixel by pixel (centre-cropped to the input) and read once, not per image."""
    import preimage.preprocess as P

    mean = np.random.default_rng(1).uniform(0, 255, (3, 6, 8)).astype(np.float32)  # BGR, C x H x W
    np.save(tmp_path / "mean.npy", mean)
    reads = []
    real = P.load_mean_file
    monkeypatch.setattr(P, "load_mean_file", lambda path: reads.append(path) or real(path))
    p = Preprocess(channel_order="BGR", mean_file="mean.npy", base_dir=str(tmp_path), input_size=[6, 6])
    rng = np.random.default_rng(2)
    for _ in range(3):
        rgb = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
        x = p.image_to_array(rgb)
        np.testing.assert_allclose(x, rgb[..., ::-1].transpose(2, 0, 1) - mean[:, :, 1:7], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(p.array_to_image(x), rgb, rtol=1e-5, atol=1e-3)
    assert len(reads) == 1
