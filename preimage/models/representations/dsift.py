"""Dense SIFT as VLFeat 0.9.21 computes it (vl_dsift_process): 4 x 4 spatial bins of ``bin`` pixels, 8
orientations, descriptors every ``step`` pixels; ``fast`` (default) uses the flat window, as Mahendran &
Vedaldi do, otherwise the Gaussian window.

Stages: ``grey`` (N x 1 x H x W, RGB -> grey with rgb2gray's weights), ``gradients`` (N x 2 x H x W:
central differences, one-sided on the border), ``orientations`` (N x 8 x H x W: the gradient norm
split between the two nearest of 8 orientations), ``cells`` (N x 8 x H x W: the orientation maps
filtered by the spatial bin's window; flat window only) and ``dsift`` (N x 128 x ny x nx: channel
by * 32 + bx * 8 + t, VLFeat's order; the flat window's bins reweighted by the Gaussian window's mean
over each bin, as VLFeat does; L2-normalised, clamped at 0.2 and normalised again; frame (i, j)
has its first bin centre at pixel (i * step, j * step), ny = (H - 3 * bin - 1) // step + 1).

VLFeat's fast atan2 (a rational approximation) and fast square root are reproduced as computed in
float32; the derivative of the fast square root is taken from the exact square root it approximates
(to 1e-6 relative).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import PreimageError
from .base import ONE, REPRESENTATIONS, Representation, field, grey
from .dsift_autograd import BINS_T, FlatCells, Orientations, filter_cells

EPS_F = float(np.finfo(np.float32).eps)  # VL_EPSILON_F
SQRT_FLOOR = 1e-8  # vl_fast_sqrt_f returns 0 below it
BINS_XY = 4


C3, C1 = 0.1821, 0.9675
TWO_PI = float(np.float32(2 * math.pi))
HALF_PI, QUARTER_PI = float(np.float32(math.pi / 2)), float(np.float32(math.pi / 4))  # 3 pi / 4 = their sum


def fast_atan2(y, x):
    """vl_fast_atan2_f, operation by operation, with the branches on the signs of x and y as
    multiplications by +-1 (exact; elementwise selects are many times slower than arithmetic on the
    CPU). Returns (angle in (-pi, pi], r, denominator, |y| + eps); the last three for the derivative."""
    abs_y = torch.abs(y) + EPS_F
    sx = torch.copysign(ONE, x + 0.0)  # +1 where x >= 0 (adding 0.0 turns -0.0 into +0.0), else -1
    den = torch.abs(x) + abs_y  # s x + |y| + eps
    r = sx * (torch.abs(x) - abs_y) / den  # (x - s (|y| + eps)) / den, the same rounding
    base = HALF_PI - sx * QUARTER_PI  # pi / 4 or 3 pi / 4, exactly VLFeat's float32 constants
    angle = (base + (C3 * r * r - C1) * r) * torch.copysign(ONE, y + 0.0)
    return angle, r, den, abs_y


def fast_sqrt(v):
    """vl_fast_sqrt_f (0 below 1e-8; else v times the bit-trick inverse square root after two Newton
    steps) in float32; the gradient is that of sqrt. Other dtypes: the exact square root."""
    small = v < SQRT_FLOOR
    safe = torch.where(small, torch.ones_like(v), v)
    exact = torch.sqrt(safe)
    if v.dtype == torch.float32:
        with torch.no_grad():
            approx = fast_sqrt_approx(safe.detach())
        exact = exact + (approx - exact).detach()
    return torch.where(small, torch.zeros_like(v), exact)


def fast_sqrt_approx(s):
    """vl_fast_sqrt_f's value for float32 ``s`` >= 1e-8 (no gradient)."""
    y = (0x5f3759df - (s.view(torch.int32) >> 1)).view(torch.float32)
    half = 0.5 * s
    y = y * (1.5 - half * y * y)
    y = y * (1.5 - half * y * y)
    return s * y


class DSIFT(Representation):
    stages = ("grey", "gradients", "orientations", "cells", "dsift")

    def __init__(self, bin=8, step=8, fast=True, window=2.0, exact=True, size=(256, 256), pixels=False):
        super().__init__("dsift", size, pixels)
        if bin < 2 or step < 1:
            raise PreimageError(f"dsift: need bin >= 2 and step >= 1 (got bin={bin}, step={step})", where="--model")
        self.bin, self.step, self.fast, self.window = int(bin), int(step), bool(fast), float(window)
        self.exact = bool(exact)
        self._matrices = {}
        self.register_buffer("_dev", torch.zeros(0), persistent=False)

    def min_size(self):
        return self.bin * (BINS_XY - 1) + 1

    def fields(self):
        b, s = self.bin, self.step
        half = b - 1  # the triangle's reach either side of a bin centre
        cell = 2 * half + 1 + 2
        return {"grey": field(1, 1, 0), "gradients": field(3, 1, -1), "orientations": field(3, 1, -1),
                "cells": field(cell, 1, -half - 1),
                "dsift": field(cell + (BINS_XY - 1) * b, s, -half - 1)}

    @staticmethod
    def gradients(g):
        def diff(a, dim):
            n = a.shape[dim]
            first = a.narrow(dim, 1, 1) - a.narrow(dim, 0, 1)
            last = a.narrow(dim, n - 1, 1) - a.narrow(dim, n - 2, 1)
            mid = 0.5 * (a.narrow(dim, 2, n - 2) - a.narrow(dim, 0, n - 2))
            return torch.cat([first, mid, last], dim)
        return diff(g, 3), diff(g, 2)

    def orientations(self, gx, gy, keep=None):
        """The 8 maps; ``keep`` (a dict) receives what the derivative needs."""
        angle, r, den, ay = fast_atan2(gy, gx)
        # VLFeat adds 2 pi to negative angles (here by arithmetic: ``wrap`` is 1 there, else 0)
        wrap = 0.5 - 0.5 * torch.copysign(ONE, angle + 0.0)
        angle = angle + TWO_PI * wrap
        wide = torch.float64 if angle.dtype == torch.float32 else angle.dtype  # VLFeat scales in double
        nt = (angle.to(wide) * (BINS_T / (2 * math.pi))).to(angle.dtype)
        with torch.no_grad():
            b = torch.floor(nt)
        frac = nt - b
        s2 = gx * gx + gy * gy
        # vl_fast_sqrt_f, 0 below 1e-8: ``big`` is 1 where s2 >= 1e-8, else 0, by arithmetic
        big = torch.clamp((s2 - SQRT_FLOOR) * 1e30 + 1, 0, 1)
        safe = torch.clamp(s2, min=SQRT_FLOOR)
        mod = fast_sqrt_approx(safe) * big if s2.dtype == torch.float32 else torch.sqrt(safe) * big
        n, _, h, w = gx.shape
        b = b.long()
        lo = (b & (BINS_T - 1)).view(n, h, w, 1)  # bin 8 (angle 2 pi) is bin 0 (BINS_T is a power of two)
        hi = ((b + 1) & (BINS_T - 1)).view(n, h, w, 1)
        if keep is not None:  # d angle / d (gx, gy) of the rational function, d mod of the exact sqrt
            inv = torch.rsqrt(safe) * big
            slope = ((3 * C3) * r * r - C1) * (BINS_T / (2 * math.pi)) / (den * den)
            slope = slope * torch.copysign(ONE, gy + 0.0)
            keep.update(lo=lo, hi=hi, frac=frac, mod=mod, ux=gx * inv, uy=gy * inv, kx=slope * 2 * ay,
                        ky=slope * -2 * gx * torch.sign(gy))
        # Each pixel feeds two of the 8 maps. They are laid out N x H x W x 8 (a channels-last view is
        # returned), so the scatter here, the gathers of the backward and the cells' filter over the
        # rows all run over contiguous memory.
        o = torch.zeros(n, h, w, BINS_T, dtype=gx.dtype, device=gx.device)
        o.scatter_(3, lo, ((1 - frac) * mod).view(n, h, w, 1))
        o.scatter_add_(3, hi, (frac * mod).view(n, h, w, 1))
        return o.permute(0, 3, 1, 2)

    @staticmethod
    def _conv(o, kernel, dim):
        """Correlate every map with ``kernel`` along ``dim`` (2: y, 3: x), replicating the border (a sum
        of shifted copies: single-channel 1-d convolutions are slow in torch's CPU backends)."""
        r = (len(kernel) - 1) // 2
        x = F.pad(o, (0, 0, r, r) if dim == 2 else (r, r, 0, 0), mode="replicate")
        n = o.shape[dim]
        out = None
        for t, k in enumerate(kernel):
            term = float(k) * x.narrow(dim, t, n)
            out = term if out is None else out + term
        return out

    def _sample(self, maps, ny, nx, by, bx):
        b, s = self.bin, self.step
        y0, x0 = by * b, bx * b
        return maps[..., y0:y0 + (ny - 1) * s + 1:s, x0:x0 + (nx - 1) * s + 1:s]

    def flat_cells(self, o, rows=None, cols=None):
        """Both axes filtered by vl_imconvcoltri's triangle (half-width bin, unit integral, border
        replicated), at ``rows`` x ``cols`` only (default all): two small matrix products.

        With ``exact`` (default) the float32 value is VLFeat's own integral-signal computation (its
        float32 running sums round differently from a direct filter, by up to 1e-4 of the largest
        descriptor value on 300 x 450 images; this costs sequential passes over the image); the
        derivative is always the direct filter's (the same linear map)."""
        n, c, h, w = o.shape
        rows = list(range(h)) if rows is None else rows
        cols = list(range(w)) if cols is None else cols
        ay = self._matrix(h, rows, o)
        ax = self._matrix(w, cols, o)
        last = o.permute(0, 2, 3, 1)  # N x H x W x 8: a view of the orientation maps' own layout
        out = filter_cells(last, ay, ax)
        return self._exact(out, last, rows, cols)

    def _exact(self, out, last, rows, cols):
        """``out`` with VLFeat's float32 running-sum values (from the maps ``last``, N x H x W x 8) and
        the direct filter's derivative; ``out`` itself where ``exact`` is off or not float32."""
        if out.dtype != torch.float32 or not self.exact:
            return out
        with torch.no_grad():
            y = triangle_running_sums(last.detach(), self.bin, 1)
            y = y.index_select(1, torch.as_tensor(rows, device=out.device))
            vl = triangle_running_sums(y, self.bin, 2).index_select(2, torch.as_tensor(cols, device=out.device))
            vl = vl.permute(0, 3, 1, 2)
        return out + (vl - out).detach()

    def sampled_cells(self, g, rows, cols, chunk=1):
        """grey -> the flat window's cells at ``rows`` x ``cols``, image by image (:class:`FlatCells`)."""
        n, _, h, w = g.shape
        full = g.new_empty(n, h, w, BINS_T) if (self.exact and g.dtype == torch.float32) else None
        out = FlatCells.apply(g, self, self._matrix(h, rows, g), self._matrix(w, cols, g), chunk, full)
        return out if full is None else self._exact(out, full, rows, cols)

    def _matrix(self, length, at, like):
        key = (length, tuple(at), like.dtype, like.device)
        if key not in self._matrices:
            d = self.bin
            m = np.zeros((len(at), length))
            for k, i in enumerate(at):
                for t in range(-d + 1, d):
                    m[k, min(max(i + t, 0), length - 1)] += float(np.float32((d - abs(t)) / (d * d)))
            if len(self._matrices) > 8:
                self._matrices.clear()
            self._matrices[key] = torch.as_tensor(m, dtype=like.dtype, device=like.device)
        return self._matrices[key]

    def sample_points(self, ny, nx):
        """The rows and columns at which the descriptors read the flat window's cells."""
        b, s = self.bin, self.step
        return (sorted({by * b + i * s for by in range(BINS_XY) for i in range(ny)}),
                sorted({bx * b + j * s for bx in range(BINS_XY) for j in range(nx)}))

    def descriptors(self, o, ny, nx, cells=None):
        """The 128 components per frame from the orientation maps ``o`` (or, flat window, from the
        ``cells`` at :meth:`sample_points`, when they were computed already)."""
        b, s = self.bin, self.step
        parts = []
        if self.fast:  # each bin reweighted by the Gaussian window's mean over it (times bin: unit height)
            rows, cols = self.sample_points(ny, nx)
            cells = self.flat_cells(o, rows, cols) if cells is None else cells
            ry, rx = {r: k for k, r in enumerate(rows)}, {c: k for k, c in enumerate(cols)}
            means = [float(window_mean(b, i, self.window) * np.float32(b)) for i in range(BINS_XY)]
            idx = lambda pos, start, count: torch.as_tensor([pos[start + i * s] for i in range(count)],  # noqa: E731
                                                            device=cells.device)
            for by in range(BINS_XY):
                sel = cells.index_select(2, idx(ry, by * b, ny))
                for bx in range(BINS_XY):
                    w = float(np.float32(means[bx]) * np.float32(means[by]))
                    parts.append(w * sel.index_select(3, idx(rx, bx * b, nx)))
        else:
            # vl_imconvcol convolves (the kernel reversed, as correlation sees it)
            kernels = [gaussian_kernel(b, i, self.window)[::-1].copy() for i in range(BINS_XY)]
            ys = [self._conv(o, kernels[by], 2) for by in range(BINS_XY)]
            for by in range(BINS_XY):
                for bx in range(BINS_XY):
                    parts.append(self._sample(self._conv(ys[by], kernels[bx], 3), ny, nx, by, bx))
        d = torch.cat(parts, 1)
        d = d / (fast_sqrt((d * d).sum(1, keepdim=True)) + EPS_F)
        d = torch.clamp(d, max=0.2)
        return d / (fast_sqrt((d * d).sum(1, keepdim=True)) + EPS_F)

    def compute(self, x, wanted):
        g = grey(x)
        out = {"grey": g}
        if wanted <= {"grey"}:
            return out
        if "gradients" in wanted:
            out["gradients"] = torch.cat(self.gradients(g), 1)
        if wanted <= {"grey", "gradients"}:
            return out
        frame = self.bin * (BINS_XY - 1) + 1
        h, w = x.shape[2:]
        ny, nx = (h - frame) // self.step + 1, (w - frame) // self.step + 1
        if self.fast and not wanted & {"orientations", "cells"}:  # the descriptors alone: image by image
            out["dsift"] = self.descriptors(None, ny, nx, self.sampled_cells(g, *self.sample_points(ny, nx)))
            return out
        o = Orientations.apply(g, self)
        out["orientations"] = o
        if "cells" in wanted:
            if not self.fast:
                raise PreimageError("dsift: the 'cells' output exists for the flat window (fast=true) only",
                                    where="--layer")
            out["cells"] = self.flat_cells(o)
        if "dsift" in wanted:
            out["dsift"] = self.descriptors(o, ny, nx)
        return out


def triangle_running_sums(x, d, dim=0):
    """vl_imconvcoltri_f along ``dim`` of a float32 tensor (padding by continuity, step 1), with its
    float32 running sums taken in VLFeat's order: one slice along ``dim`` at a time, each step
    vectorised over the others, in place in one buffer (torch's CPU ``cumsum`` accumulates in float64
    and numpy's is strided along a leading axis, so neither rounds, or runs, like this)."""
    length = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = length + d
    buf = torch.empty(shape, dtype=x.dtype, device=x.device)  # buf[p] = VLFeat's buffer[p - d]
    row, at = buf.select, x.select
    row(dim, d + length - 1).copy_(at(dim, length - 1))
    for y in range(length - 2, -1, -1):  # integrate backward
        torch.add(row(dim, d + y + 1), at(dim, y), out=row(dim, d + y))
    for p in range(d - 1, -1, -1):  # continuity: the first sample repeated
        torch.add(row(dim, p + 1), at(dim, 0), out=row(dim, p))
    last = row(dim, d + length - 1).clone()
    for start in range(0, length, d):  # buffer[y] -= buffer[y + d], y < L: each block reads one not yet changed
        n = min(d, length - start)
        buf.narrow(dim, start, n).sub_(buf.narrow(dim, start + d, n))
    k = torch.arange(length - d, length, dtype=x.dtype, device=x.device)
    coef = (length - d - k).view([d if i == dim else 1 for i in range(x.ndim)])
    buf.narrow(dim, length, d).sub_(last.unsqueeze(dim) * coef)
    for p in range(1, length + d):  # integrate forward
        row(dim, p).add_(row(dim, p - 1))
    scale = float(np.float32(1.0 / (d * d)))
    return scale * (buf.narrow(dim, d, length) - buf.narrow(dim, 0, length))


def _window(bin, index, window):
    t = np.arange(-bin + 1, bin, dtype=np.float32)
    delta = np.float32(bin * (index - np.float32(0.5) * (BINS_XY - 1)))
    sigma = np.float32(bin) * np.float32(window)
    z = ((t - delta) / sigma).astype(np.float32)
    return t, np.exp(np.float32(-0.5) * z * z).astype(np.float32)


def gaussian_kernel(bin, index, window):
    """_vl_dsift_new_kernel: the triangle 1 - |t| / bin times the Gaussian (sigma = bin * window) of bin
    ``index``, as float32."""
    t, g = _window(bin, index, window)
    k = (np.float32(1) - np.abs(t) / np.float32(bin)) * g
    return k.astype(np.float32).astype(np.float64)


def window_mean(bin, index, window):
    """_vl_dsift_get_bin_window_mean: the Gaussian window's mean over bin ``index`` (float32)."""
    _, g = _window(bin, index, window)
    acc = np.float32(0)
    for v in g:
        acc = np.float32(acc + v)
    return np.float32(acc / np.float32(2 * bin - 1))


@REPRESENTATIONS.register("dsift")
def dsift(bin=8, step=8, fast=True, window=2.0, exact=True, size=256, pixels=False):
    """Dense SIFT (VLFeat vl_dsift; 4 x 4 x 8 = 128 components per frame, fast = flat window, window =
    the Gaussian window's sigma in bins, VLFeat's windowSize; exact = VLFeat's float32 rounding of the
    flat window's running sums, slower; exact=false agrees with VLFeat to ~1e-4)."""
    return DSIFT(bin, step, fast, window, exact, size=[size, size] if isinstance(size, int) else list(size),
                 pixels=pixels)
