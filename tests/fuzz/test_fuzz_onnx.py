"""Mutated ONNX models (graph structure, attributes, initializers, types, ``preimage.*`` metadata) and
damaged .onnx bytes through ``preimage layers`` (CLI), ``load_features`` and a forward pass, and the
model's preprocessing: a table / features / an image tensor, or a one-line error (exit 2), never a
traceback or a hang."""
import numpy as np
import pytest
from click.testing import CliRunner

import harness
from mutators import mutate_bytes, mutate_onnx

N_STRUCTURE = 200
N_BYTES = 100


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory):
    """A small converted Caffe net (conv, ReLU in place, LRN, pooling, fc, softmax) with all its
    metadata, and a sample image."""
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.preprocess import save_image

    d = tmp_path_factory.mktemp("onnx_seed")
    (d / "net.prototxt").write_text("""name: "fz"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 15 dim: 13 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 3 kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 3 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
""")
    model = convert_caffe(str(d / "net.prototxt"), random_weights=True)
    save_image(d / "img.png", (np.random.default_rng(0).random((15, 13, 3)) * 255).astype(np.uint8))
    return model, d


def _read(path, image):
    """What a user does with a model: list it (CLI), load it for a layer and a blob, run it, preprocess an
    image for it. Every step runs on every mutant (a model 'layers' refuses still goes to load_features);
    the first clean error is the outcome, any other exception a failure."""
    from preimage.cli import cli
    from preimage.converters.onnx_torch.load import load_features
    from preimage.errors import PreimageError

    def listing():
        harness.cli_outcome(CliRunner().invoke(cli, ["layers", str(path), "--torch"]))

    def features():
        fx = load_features(str(path), outputs=["conv1", "prob"])
        x = fx.preprocess.load([str(image)])
        try:
            out = fx(x)
        except RuntimeError:  # a shape the mutation changed no longer fits this input: torch's one-line message
            return
        assert set(out) == {"conv1", "prob"}

    errors = []
    for step in (listing, features):
        try:
            step()
        except PreimageError as e:
            errors.append(e)
    if errors:
        raise errors[0]


def test_mutated_onnx_structure_and_metadata(seed_model, tmp_path):
    import onnx

    model, d = seed_model
    onnx.save(model, str(tmp_path / "seed.onnx"))

    def make(rng, k):
        path = tmp_path / f"m{k}.onnx"
        m = mutate_onnx(model, rng)
        if rng.random() < 0.3:
            m = mutate_onnx(m, rng)  # two edits now and then
        onnx.save(m, str(path))
        return path

    res = harness.run("onnx structure+metadata", N_STRUCTURE, make, lambda p: _read(p, d / "img.png"),
                      expect_in_error=lambda p: str(p), warm=tmp_path / "seed.onnx")
    res.check(min_clean=0.2, min_ok=0.1)


def test_damaged_onnx_bytes(seed_model, tmp_path):
    model, d = seed_model
    data = model.SerializeToString()

    def make(rng, k):
        path = tmp_path / f"b{k}.onnx"
        path.write_bytes(mutate_bytes(data, rng))
        return path

    res = harness.run("onnx bytes", N_BYTES, make, lambda p: _read(p, d / "img.png"), seed=29,
                      expect_in_error=lambda p: str(p))
    res.check(min_clean=0.2, min_ok=0.05)
