"""Shared fixtures: the conformance corpus in ../shared (tests skip cleanly when it is absent)."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PREIMAGE_SHARED", ROOT.parent / "shared"))
CAFFE_CORPUS = SHARED / "conformance" / "caffe"
TORCH7_CORPUS = SHARED / "conformance" / "torch7"


def caffe_nets():
    """Names of the Caffe corpus nets (empty when the corpus is absent)."""
    return sorted(p.name for p in CAFFE_CORPUS.iterdir() if (p / "net.prototxt").exists()) if CAFFE_CORPUS.is_dir() else []


@pytest.fixture
def caffe_corpus():
    if not CAFFE_CORPUS.is_dir():
        pytest.skip(f"Caffe conformance corpus not found at {CAFFE_CORPUS}")
    return CAFFE_CORPUS


@pytest.fixture
def torch7_corpus():
    if not TORCH7_CORPUS.is_dir():
        pytest.skip(f"Torch7 conformance corpus not found at {TORCH7_CORPUS}")
    return TORCH7_CORPUS
