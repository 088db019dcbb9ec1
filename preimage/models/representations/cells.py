"""Pooling of per-pixel values into cells with VLFeat's bilinear spatial weights (HOG, LBP).

Pixel p (0-based) of an axis sits at h = (p + 0.5) / cell - 0.5 in cell units: it gives 1 - frac(h) to
cell floor(h) and frac(h) to the next one, for the pixels 1 .. L - 2 (VLFeat skips the border, where
the 3 x 3 neighbourhood is incomplete). Along x the weights are applied with ``index_add`` (two
targets per pixel, so the per-orientation maps never exist at full resolution), along y with a small
dense matrix.
"""
import math

import numpy as np
import torch


def axis_weights(length, cell, count):
    """(left, right, w_left, w_right, dense) for the interior pixels 1 .. length-2 of one axis.

    ``left``/``right``: target cell + 1 (0 and count + 1 are dummy slots for cells outside the grid);
    ``dense``: count x (length - 2) float64 matrix of the same weights. Weights are rounded to float32
    as VLFeat computes them (h in double, then float).
    """
    p = np.arange(1, length - 1, dtype=np.float64)
    h = ((p + 0.5) / cell - 0.5).astype(np.float32)
    b = np.floor(h).astype(np.int64)
    wr = (h - b.astype(np.float32)).astype(np.float32)
    wl = (1.0 - wr.astype(np.float64)).astype(np.float32)
    keep = b < count  # VLFeat's LBP skips pixels past the last cell (HOG's grid always covers them)
    wl, wr = np.where(keep, wl, 0), np.where(keep & (b + 1 < count), wr, 0)
    wl = np.where(b >= 0, wl, 0)
    left = np.clip(b + 1, 0, count + 1)
    right = np.clip(b + 2, 0, count + 1)
    dense = np.zeros((count, length - 2))
    cols = np.arange(length - 2)
    ok = (b >= 0) & (b < count)
    dense[b[ok], cols[ok]] += wl[ok]
    ok = (b + 1 >= 0) & (b + 1 < count)
    dense[b[ok] + 1, cols[ok]] += wr[ok]
    return left, right, wl, wr, dense


class CellPool:
    """Pools (value, bin) pairs of the interior pixels of H x W images into nbins x ny x nx cells."""

    def __init__(self, height, width, cell, ny, nx, device, dtype):
        self.ny, self.nx, self.h, self.w = ny, nx, height - 2, width - 2
        ly, ry, wly, wry, dy = axis_weights(height, cell, ny)
        lx, rx, wlx, wrx, _ = axis_weights(width, cell, nx)
        t = lambda a, dt=torch.int64: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
        self.left, self.right = t(lx), t(rx)
        self.wl, self.wr = t(wlx, dtype), t(wrx, dtype)
        self.dense = t(dy, dtype)

    def __call__(self, pairs, nbins):
        """pairs: [(values N x h x w, bins N x h x w int32 or int64)] -> N x nbins x ny x nx."""
        v0 = pairs[0][0]
        n, stride = v0.shape[0], self.nx + 2
        out = torch.zeros(n * nbins * self.h * stride, dtype=v0.dtype, device=v0.device)
        # int32 index arithmetic where the positions fit (3-4x faster than int64 on the CPU)
        it = torch.int32 if out.numel() < 2 ** 31 else torch.int64
        rows = torch.arange(self.h, device=v0.device, dtype=it).view(1, -1, 1)
        first = (torch.arange(n, device=v0.device, dtype=it) * nbins).view(-1, 1, 1)
        left, right = self.left.to(it), self.right.to(it)
        for values, bins in pairs:
            base = ((first + bins.to(it)) * self.h + rows) * stride
            out.index_add_(0, (base + left).reshape(-1), (values * self.wl).reshape(-1))
            out.index_add_(0, (base + right).reshape(-1), (values * self.wr).reshape(-1))
        rows_x = out.view(n, nbins, self.h, stride)[..., 1:self.nx + 1]
        return torch.matmul(self.dense, rows_x)


def cell_field(cell, extra=1):
    """(size, offset) of cell 0's field: the pixels its bilinear weights reach, plus ``extra`` on each
    side for the 3 x 3 neighbourhood the per-pixel values read."""
    lo = math.floor(cell * -0.5 - 0.5) + 1
    hi = math.ceil(cell * 1.5 - 0.5) - 1
    return hi - lo + 1 + 2 * extra, lo - extra
