import numpy as np

from preimage.models.preprocess import Preprocess, load_image, save_image


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
