"""Decoders trained in Caffe or Torch7 become decoders that apply accepts; checked against their reference outputs."""
import numpy as np
import pytest
import torch

from preimage.decoders.apply import apply_decoder, load_decoder
from preimage.errors import PreimageError


def test_caffe_decoder_matches_caffe(caffe_corpus, tmp_path):
    pytest.importorskip("preimage.converters.caffe.convert")
    net = caffe_corpus / "decoder_fc"
    if not net.is_dir():
        pytest.skip("decoder_fc not in the corpus")
    dec = load_decoder(net / "net.prototxt")
    assert dec.feature_shape == (64,) and dec.image_shape == (3, 28, 28)
    x = np.load(net / "input.npy")
    ref = np.load(net / "blobs.npz")["deconv3"]
    with torch.no_grad():
        out = dec(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    # apply accepts it (random features from a population: no encoder needed)
    r = apply_decoder(dec, [], tmp_path / "out", experiment="gaussian=3", stats=torch.from_numpy(np.random.default_rng(0).normal(size=(50, 64))))
    assert len(r["files"]) == 3


def test_torch7_decoder_matches_torch7(torch7_corpus, tmp_path):
    pytest.importorskip("preimage.converters.torch7.convert")
    from preimage.converters.torch7.reader import read_t7

    d = torch7_corpus / "real-ascii"
    x = np.asarray(read_t7(d / "net_deconv_input.txt"))
    ref = np.asarray(read_t7(d / "net_deconv_output.txt"))
    with pytest.raises(PreimageError, match="not a decoder file"):
        load_decoder(d / "net_deconv_net.txt")  # .txt: not a known decoder file kind
    t7 = tmp_path / "deconv.t7"
    t7.write_bytes((d / "net_deconv_net.txt").read_bytes())
    with pytest.raises(PreimageError, match="feature_shape"):
        load_decoder(t7)  # starts with an upconvolution: spatial size unknown
    dec = load_decoder(t7, feature_shape=x.shape[1:])
    assert dec.image_shape == ref.shape[1:]
    with torch.no_grad():
        out = dec(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_imported_caffe_decoder_applies_to_images(caffe_corpus, encoder, image_dir, tmp_path):
    """An imported decoder takes the encoder's features of images (its own output size differs)."""
    pytest.importorskip("preimage.converters.caffe.convert")
    net = caffe_corpus / "decoder_fc"
    if not net.is_dir():
        pytest.skip("decoder_fc not in the corpus")
    dec = load_decoder(net / "net.prototxt")
    widen = torch.nn.Linear(32, 64)  # the tiny encoder's fc has 32 units; the Caffe decoder takes 64

    def enc(x):
        return {"fc": widen(encoder(x)["fc"])}

    enc.preprocess = encoder.preprocess
    imgs = sorted(image_dir.iterdir())[:2]
    r = apply_decoder(dec, imgs, tmp_path / "out", model=enc, layer="fc")
    assert len(r["files"]) == 2
    from preimage.preprocess import load_image

    assert load_image(r["files"][0]).shape == (28, 28, 3)
    assert dec.preprocess.mean == encoder.preprocess.mean


def test_torch7_checkpoint_decoder_read_once(torch7_corpus, tmp_path, monkeypatch):
    """A decoder converted to .pt by 'preimage convert torch7' is loaded with one torch.load (it was three)."""
    pytest.importorskip("preimage.converters.torch7.convert")
    from preimage.converters.torch7.convert import convert_torch7
    from preimage.converters.torch7.reader import read_t7

    d = torch7_corpus / "real-ascii"
    x = np.asarray(read_t7(d / "net_deconv_input.txt"))
    ref = np.asarray(read_t7(d / "net_deconv_output.txt"))
    t7 = tmp_path / "deconv.t7"
    t7.write_bytes((d / "net_deconv_net.txt").read_bytes())
    convert_torch7(t7, tmp_path / "deconv.pt")
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    dec = load_decoder(tmp_path / "deconv.pt", feature_shape=x.shape[1:])
    assert len(calls) == 1
    with torch.no_grad():
        out = dec(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
