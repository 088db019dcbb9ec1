"""Mutated decoder checkpoints (entries dropped or of another kind, tensors reshaped or retyped, damaged
bytes) through ``load_decoder`` and one decoding pass: a decoder that makes images, or a one-line
PreimageError naming the file, never a traceback or a hang."""
import pytest
import torch

import harness
from mutators import mutate_bytes, mutate_state

N_STATE = 150
N_BYTES = 60


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny training checkpoint of the format 'preimage decoder train' writes (one fc decoder)."""
    from preimage.decoders.architectures import build_decoder
    from preimage.decoders.checkpoint import CHECKPOINT_FORMAT

    torch.manual_seed(0)
    options = {"width": 1 / 64}
    net = build_decoder("alexnet_fc8", [8], [3, 24, 24], **options)
    state = {"format": CHECKPOINT_FORMAT, "arch": "alexnet_fc8", "arch_options": options, "feature_shape": [8],
             "image_shape": [3, 24, 24], "layer": "fc8", "model_path": None,
             "preprocess": {"channel_order": "BGR", "mean": [104.0, 117.0, 123.0], "input_size": [24, 24]},
             "config": {"lr": 1e-4}, "store": "/nonexistent/store", "store_id": "abc", "iter": 7,
             "model": net.state_dict(), "optimizer": {}, "rng": {"torch": torch.get_rng_state()}}
    path = tmp_path_factory.mktemp("ckpt_seed") / "checkpoint.pt"
    torch.save(state, path)
    return state, path


def _read(path):
    from preimage.decoders.apply import load_decoder

    dec = load_decoder(str(path))
    with torch.no_grad():
        try:
            out = dec(torch.zeros(2, *(dec.feature_shape or (8,))))
        except RuntimeError:  # a feature shape the mutation changed no longer fits this input: torch says so
            return
    assert out.dim() == 4 and out.shape[0] == 2, out.shape
    dec.preprocess.to_uint8(out)  # and the pictures can be made


def test_mutated_checkpoint_entries(checkpoint, tmp_path):
    state, seed_path = checkpoint

    def make(rng, k):
        p = tmp_path / f"m{k}.pt"
        mutant = mutate_state(state, rng)
        if rng.random() < 0.3:
            mutant = mutate_state(mutant, rng)
        torch.save(mutant, p)
        return p

    res = harness.run("decoder checkpoint entries", N_STATE, make, _read, seed=41, warm=seed_path,
                      expect_in_error=lambda p: str(p))
    res.check(min_clean=0.1, min_ok=0.1)


def test_damaged_checkpoint_bytes(checkpoint, tmp_path):
    _, seed_path = checkpoint
    data = seed_path.read_bytes()

    def make(rng, k):
        p = tmp_path / f"b{k}.pt"
        p.write_bytes(mutate_bytes(data, rng))
        return p

    res = harness.run("decoder checkpoint bytes", N_BYTES, make, _read, seed=43, warm=seed_path,
                      expect_in_error=lambda p: str(p))
    res.check(min_clean=0.2)
