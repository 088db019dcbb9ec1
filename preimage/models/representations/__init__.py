"""Hand-crafted representations (HOG, HOGb, DSIFT, LBP) as torch modules with the FeatureExtractor interface.

    >>> from preimage.models.representations import build
    >>> net = build("hog:cell=8,variant=uoctti")            # or "hogb", "dsift:bin=8,step=8", "lbp"
    >>> x = net.preprocess.load(["cat.jpg"])                 # RGB in [0, 1]
    >>> net(x)["hog"].shape                                  # N x 31 x H/8 x W/8, VLFeat 0.9.21's values

A spec is ``NAME`` or ``NAME:key=value,key=value``; every representation is one function registered in
:data:`REPRESENTATIONS` (its keyword arguments are the options). See docs/representations.md.
"""
from .base import REPRESENTATIONS, Representation, build, is_spec, layer_table, parse_spec  # noqa: F401
from . import dsift, hog, lbp  # noqa: F401  (register the builders)

__all__ = ["REPRESENTATIONS", "Representation", "build", "is_spec", "layer_table", "parse_spec"]
