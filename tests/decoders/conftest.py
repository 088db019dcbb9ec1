"""Small, fast fixtures for the decoder tests: procedural images and a tiny random conv encoder."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from preimage.preprocess import Preprocess, save_image

SIZE = 32


def procedural_image(rng, size=SIZE):
    """A smooth picture: a colour gradient plus a few coloured Gaussian blobs (uint8 RGB)."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.zeros((size, size, 3))
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img += a * x[..., None] + b * (1 - x[..., None])
    for _ in range(3):
        cy, cx, s = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.25)
        col = rng.uniform(-150, 150, 3)
        img += col * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


class TinyEncoder(nn.Module):
    """conv 3->8 3x3, ReLU, max pool 2, conv 8->16 3x3/2, ReLU, fc -> 32. Outputs by name."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 32)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p[0].numel()) ** 0.5) * 0.5)
        self.preprocess = Preprocess(channel_order="BGR", mean=[104.0, 117.0, 123.0], raw_scale=255.0, input_size=[SIZE, SIZE])
        self.eval()

    def forward(self, x):
        c1 = self.pool(torch.relu(self.conv1(x)))
        c2 = torch.relu(self.conv2(c1))
        return {"conv1": c1, "conv2": c2, "fc": self.fc(c2.flatten(1))}


@pytest.fixture
def encoder():
    return TinyEncoder()


@pytest.fixture
def image_dir(tmp_path):
    """20 procedural 32 x 32 PNG images."""
    rng = np.random.default_rng(0)
    d = tmp_path / "images"
    d.mkdir()
    for i in range(20):
        save_image(d / f"img{i:02d}.png", procedural_image(rng))
    return d


@pytest.fixture
def make_image():
    """procedural_image(rng, size=32) for tests that need their own image sets."""
    return procedural_image


@pytest.fixture
def four(encoder, make_image, tmp_path):
    """A feature store of four procedural images (all in the training split)."""
    from preimage.decoders.extract import extract_features

    d = tmp_path / "four"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        save_image(d / f"{i}.png", make_image(rng))
    extract_features(encoder, "fc", d, tmp_path / "f4", split=(1, 0, 0), progress=False)
    return tmp_path / "f4"
