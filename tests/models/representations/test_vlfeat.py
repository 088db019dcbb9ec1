"""Every representation's forward against VLFeat 0.9.21 (libvl through ctypes), on real photographs at
sizes that are not multiples of the cell size: max |ours - VLFeat| <= 1e-5 max |VLFeat| per tensor."""
import numpy as np
import pytest
import torch

from preimage.models.representations import build

TOL = 1e-5


def _check(got, ref, label):
    assert got.shape == ref.shape, f"{label}: shape {got.shape} != VLFeat's {ref.shape}"
    err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
    assert err <= TOL, f"{label}: max error {err:.2e} of the largest value"


@pytest.mark.parametrize("spec", ["hog", "hog:variant=dalaltriggs", "hogb", "hogb:variant=dalaltriggs",
                                  "hog:cell=5", "hogb:cell=7,orientations=6"])
def test_hog_matches_vlfeat(vlfeat, photo_crops, spec):
    net = build(spec)
    for label, x in photo_crops:
        got = net(torch.from_numpy(x)[None])[net.name][0].numpy()
        ref = vlfeat.hog(x, cell=net.cell, variant=net.variant, orientations=net.k, bilinear=net.bilinear)
        _check(got, ref, f"{spec} {label}")


def test_hog_grey_input_and_batch(vlfeat, photo_crops):
    net = build("hogb")
    xs = [x for _, x in photo_crops if x.shape[1:] == (67, 93)][:3]
    grey = np.ascontiguousarray(xs[0][1:2])  # one channel
    _check(net(torch.from_numpy(grey)[None])["hogb"][0].numpy(), vlfeat.hog(grey, bilinear=True), "grey")
    batch = net(torch.from_numpy(np.stack(xs)))["hogb"].numpy()
    for i, x in enumerate(xs):
        _check(batch[i], vlfeat.hog(x, bilinear=True), f"batch item {i}")


@pytest.mark.parametrize("spec", ["dsift", "dsift:bin=4,step=2", "dsift:bin=5,step=3", "dsift:fast=false",
                                  "dsift:bin=4,step=4,fast=false,window=1.5"])
def test_dsift_matches_vlfeat(vlfeat, photo_crops, spec):
    net = build(spec).select(["grey", "dsift"])
    for label, x in photo_crops:
        out = net(torch.from_numpy(x)[None])
        ref = vlfeat.dsift(out["grey"][0, 0].numpy(), bin=net.bin, step=net.step, fast=net.fast, window=net.window)
        _check(out["dsift"][0].numpy(), ref, f"{spec} {label}")


def test_grey_is_rgb2gray(photo_crops):
    x = photo_crops[0][1]
    g = build("dsift").select("grey")(torch.from_numpy(x)[None])["grey"][0, 0].numpy()
    ref = 0.2989 * x[0].astype(np.float64) + 0.5870 * x[1] + 0.1140 * x[2]
    assert np.abs(g - ref).max() < 1e-6


@pytest.mark.parametrize("spec", ["lbp", "lbp:cell=8", "lbp:cell=7"])
def test_lbp_matches_vlfeat(vlfeat, photo_crops, spec):
    net = build(spec).select(["grey", "lbp"])
    for label, x in photo_crops:
        out = net(torch.from_numpy(x)[None])
        _check(out["lbp"][0].numpy(), vlfeat.lbp(out["grey"][0, 0].numpy(), cell=net.cell), f"{spec} {label}")


def test_full_size_photograph(vlfeat, photo_crops):
    """One whole bundled photograph (256 x 385) through every representation's default."""
    from preimage.models import samples
    from preimage.preprocess import load_image

    x = np.ascontiguousarray(load_image(samples.paths(["chelsea"])[0]).transpose(2, 0, 1) / 255.0, dtype=np.float32)
    t = torch.from_numpy(x)[None]
    _check(build("hog")(t)["hog"][0].numpy(), vlfeat.hog(x), "hog")
    _check(build("hogb")(t)["hogb"][0].numpy(), vlfeat.hog(x, bilinear=True), "hogb")
    d = build("dsift").select(["grey", "dsift"])(t)
    _check(d["dsift"][0].numpy(), vlfeat.dsift(d["grey"][0, 0].numpy()), "dsift")
