"""Local binary patterns as VLFeat 0.9.21 computes them (vl_lbp_process, VlLbpUniform): forward only.

Each interior pixel's 8 neighbours (E, SE, S, SW, W, NW, N, NE = bits 0..7) are compared with the
centre (bit set where the neighbour is brighter); the 256 patterns map to 58 (56 with exactly one run
of ones, in the order i * 7 + (run length - 1) for a run starting at bit i; all-zeros / all-ones -> 56;
the rest -> 57). Patterns are pooled into cells with VLFeat's bilinear weights; each cell's histogram
h becomes sqrt(h) / (sqrt(sum h) + 1e-10).

Stages: ``grey`` (N x 1 x H x W), ``patterns`` (N x 1 x H x W: the 58-way pattern index, 0 on the border),
``cells`` (N x 58 x H/cell x W/cell, floor: the pooled counts) and ``lbp`` (normalised).
"""
import numpy as np
import torch

from ...errors import PreimageError
from .base import REPRESENTATIONS, Representation, field, grey
from .cells import CellPool, cell_field

PATTERNS = 58
# (dy, dx) of bits 0..7
NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def uniform_mapping():
    table = np.full(256, 57, np.int64)
    table[0x00] = table[0xFF] = 56
    for i in range(8):
        for j in range(1, 8):
            s = ((1 << j) - 1) << i
            table[(s | (s >> 8)) & 0xFF] = i * 7 + (j - 1)
    return table


class LBP(Representation):
    stages = ("grey", "patterns", "cells", "lbp")

    def __init__(self, cell=16, size=(256, 256), pixels=False):
        super().__init__("lbp", size, pixels)
        if cell < 1:
            raise PreimageError(f"lbp: cell must be >= 1, got {cell}", where="--model")
        self.cell = int(cell)
        self.register_buffer("mapping", torch.as_tensor(uniform_mapping()), persistent=False)
        self._pools = {}

    def min_size(self):
        return max(3, self.cell)

    def fields(self):
        size, off = cell_field(self.cell)
        return {"grey": field(1, 1, 0), "patterns": field(3, 1, -1), "cells": field(size, self.cell, off),
                "lbp": field(size, self.cell, off)}

    def patterns(self, g):
        h, w = g.shape[2:]
        centre = g[:, 0, 1:-1, 1:-1]
        code = torch.zeros_like(centre, dtype=torch.int64)
        for bit, (dy, dx) in enumerate(NEIGHBOURS):
            code |= (g[:, 0, 1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] > centre).long() << bit
        return self.mapping[code]

    def compute(self, x, wanted):
        if x.requires_grad and torch.is_grad_enabled():  # an optimization would silently go nowhere
            raise PreimageError("lbp is not differentiable: it serves decoders and 'preimage features', not "
                                "invert / maximize / caricature (use hog, hogb or dsift there)", where="--model")
        with torch.no_grad():
            g = grey(x.detach())
            out = {"grey": g}
            pat = self.patterns(g)
            out["patterns"] = torch.nn.functional.pad(pat[:, None].to(x.dtype), (1, 1, 1, 1))
            if not wanted & {"cells", "lbp"}:
                return out
            h, w = x.shape[2:]
            key = (h, w, x.dtype, x.device)
            if key not in self._pools:
                self._pools = {key: CellPool(h, w, self.cell, h // self.cell, w // self.cell, x.device, x.dtype)}
            cells = self._pools[key]([(torch.ones_like(pat, dtype=x.dtype), pat)], PATTERNS)
            out["cells"] = cells
            out["lbp"] = torch.sqrt(cells) / (torch.sqrt(cells.sum(1, keepdim=True)) + 1e-10)
        return out


@REPRESENTATIONS.register("lbp")
def lbp(cell=16, size=256, pixels=False):
    """Uniform LBP histograms per cell (VLFeat vl_lbp, 58 patterns); not differentiable."""
    return LBP(cell, size=[size, size] if isinstance(size, int) else list(size), pixels=pixels)
