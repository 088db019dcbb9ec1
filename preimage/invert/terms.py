"""The energy terms by name, for notebooks::

    from preimage.invert import terms
    energy = 300 * terms.feature_l2("conv3", target) + terms.bounded_range(alpha=6, B=80) + terms.tv(beta=2)

Each name is the registered factory of :data:`preimage.invert.energy.TERMS`; a term registered later
(``@regularizers.prior("l1")``) is reachable as ``terms.make("l1", ...)``.
"""
from . import objectives, regularizers  # noqa: F401  (importing them registers the terms)
from .energy import TERMS, make

feature_l2 = TERMS["feature_l2"]
l2_distance = TERMS["l2_distance"]
inner_product = TERMS["inner_product"]
unit = TERMS["unit"]
relative_loss = TERMS["relative_loss"]
normalized_error = TERMS["normalized_error"]
bounded_range = TERMS["bounded_range"]
tv = TERMS["tv"]
l6 = TERMS["l6"]
sqrt_tv = TERMS["sqrt_tv"]

__all__ = ["objectives", "regularizers", "TERMS", "make", "feature_l2", "l2_distance", "inner_product", "unit", "relative_loss",
           "normalized_error", "bounded_range", "tv", "l6", "sqrt_tv"]
