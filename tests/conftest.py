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


@pytest.fixture(scope="session")
def tiny_posenet(tmp_path_factory):
    """A quarter-width PoseNet at 61x61 with seeded random weights: posenet.prototxt, posenet.caffemodel
    and the converted posenet.onnx side by side in one folder (tests only read it)."""
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.converters.caffe.writer import write_caffemodel
    from preimage.models import architectures

    d = tmp_path_factory.mktemp("tiny_posenet")
    proto = d / "posenet.prototxt"
    proto.write_text(architectures.posenet(width=0.25, input_size=61))
    write_caffemodel(str(d / "posenet.caffemodel"), str(proto))
    convert_caffe(str(proto), str(d / "posenet.caffemodel"), str(d / "posenet.onnx"))
    return d
