"""Masks select what they say, the masked loss ignores the rest, and jitter crops where it says."""
import numpy as np
import pytest
import torch

from preimage.errors import PreimageError
from preimage.invert import masks, objectives, transforms


def test_centred_window_and_box():
    m = masks.parse("window:5", (4, 13, 13))
    rows, cols = np.nonzero(m[0].numpy())
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 8, 4, 8)
    assert m.sum().item() == 4 * 25
    b = masks.parse("box:1,2,3,4", (2, 6, 7))
    rows, cols = np.nonzero(b[1].numpy())
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (1, 3, 2, 5)


def test_channels_groups_and_combination():
    c = masks.parse("channels:0,3-5", (8, 2, 2))
    assert [int(v) for v in c[:, 0, 0]] == [1, 0, 0, 1, 1, 1, 0, 0]
    g = masks.parse("group:2/2", (8, 2, 2))
    assert [int(v) for v in g[:, 0, 0]] == [0, 0, 0, 0, 1, 1, 1, 1]
    both = masks.combine(["group:1/2", "window:1"], (8, 3, 3))
    assert both.sum().item() == 4 and both[:4, 1, 1].all()
    vec = masks.parse("channels:2", (10,))
    assert vec.sum().item() == 1 and vec[2] == 1


def test_bad_specs_are_clear_errors(tmp_path):
    for spec in ["window:abc", "group:3/2", "channels:40", "frobnicate:1", str(tmp_path / "missing.npy")]:
        with pytest.raises(PreimageError):
            masks.parse(spec, (8, 5, 5))
    np.save(tmp_path / "m.npy", np.ones((3, 3)))
    with pytest.raises(PreimageError, match="broadcast"):
        masks.parse(str(tmp_path / "m.npy"), (8, 5, 5))


def test_masked_loss_ignores_features_outside_the_mask():
    torch.manual_seed(0)
    phi0 = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    mask = masks.parse("window:3", (4, 9, 9)).double()
    z = objectives.normaliser("l2", phi0, mask)
    phi = phi0 + 5 * (1 - mask)  # changed only outside the window
    assert objectives.l2(phi, phi0, mask, z).item() == 0
    phi2 = phi0 + 0.1 * mask
    expected = (0.1 ** 2 * 4 * 9) / (phi0 * mask).pow(2).sum().item()
    assert objectives.l2(phi2, phi0, mask, z).item() == pytest.approx(expected)
    assert objectives.normalized_error(phi2, phi0, mask).item() == pytest.approx(expected ** 0.5)


def test_jitter_amount_rule():
    assert [transforms.jitter_amount(s) for s in (1, 4, 8, 16, 32, (16, 8))] == [1, 1, 2, 4, 8, 4]


def test_jitter_crops_the_canvas_at_the_drawn_offsets():
    T, H, W = 4, 5, 6
    canvas = torch.arange(2 * 1 * (H + T - 1) * (W + T - 1), dtype=torch.float64).reshape(2, 1, H + T - 1, W + T - 1)
    j = transforms.Jitter(T, seeds=[0, 1])
    seen = set()
    for _ in range(200):
        offs = j.offsets()
        seen.update(offs)
        out = transforms.crop(canvas, offs, H, W)
        assert out.shape == (2, 1, H, W)
        for i, (t, l) in enumerate(offs):
            assert 0 <= t <= T - 1 and 0 <= l <= T - 1
            assert torch.equal(out[i], canvas[i, :, t:t + H, l:l + W])
    assert len(seen) == T * T  # every offset in [0, T-1]^2 occurs
    centre = transforms.crop(canvas, None, H, W)
    assert torch.equal(centre, canvas[:, :, 1:1 + H, 1:1 + W])  # (T - 1) // 2 = 1
    assert transforms.Jitter(1, [0]).offsets() is None
