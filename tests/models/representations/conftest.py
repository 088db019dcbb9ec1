"""Fixtures for the representation tests: VLFeat through ctypes (skipped when absent) and real photographs."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("preimage_tests_vlfeat", Path(__file__).with_name("vlfeat.py"))
vlfeat_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vlfeat_module)


@pytest.fixture(scope="session")
def vlfeat():
    if vlfeat_module.lib() is None:
        pytest.skip(vlfeat_module.REASON)
    return vlfeat_module


def _photos():
    """Real photographs as H x W x 3 float32 RGB in [0, 1]: the bundled samples and scikit-image's."""
    from preimage.models import samples
    from preimage.preprocess import load_image

    out = {name: load_image(p) / 255.0 for name, p in zip(samples.names(), samples.paths())}
    try:
        from skimage import data
    except ImportError:
        return out
    for name in ("camera", "rocket", "coins"):
        im = getattr(data, name)().astype(np.float32) / 255.0
        out[name] = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im[..., :3]
    return out


# (top, left, height, width): most sizes are not multiples of the cell / bin sizes
CROPS = [(0, 0, 64, 64), (37, 11, 67, 93), (90, 120, 101, 77), (5, 40, 45, 130)]


@pytest.fixture(scope="session")
def photo_crops():
    """[(label, C x H x W float32 array)] for every photograph and crop."""
    out = []
    for name, im in _photos().items():
        for top, left, h, w in CROPS:
            crop = im[top:top + h, left:left + w]
            if crop.shape[:2] == (h, w):
                out.append((f"{name}[{top}:{top + h},{left}:{left + w}]",
                            np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)))
    return out
