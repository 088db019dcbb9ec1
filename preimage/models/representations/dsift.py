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
from .base import REPRESENTATIONS, Representation, field, grey

EPS_F = float(np.finfo(np.float32).eps)  # VL_EPSILON_F
BINS_T, BINS_XY = 8, 4


C3, C1 = 0.1821, 0.9675


def fast_atan2(y, x, parts=False):
    """vl_fast_atan2_f, operation by operation (the x < 0 branch as sign flips, which are exact).
    ``parts``: also (r, denominator, |y| + eps), for the derivative."""
    abs_y = torch.abs(y) + EPS_F
    pos = x >= 0
    s = torch.where(pos, 1.0, -1.0).to(x.dtype)
    den = s * x + abs_y
    r = (x - s * abs_y) / den
    base = torch.where(pos, float(np.float32(math.pi / 4)), float(np.float32(3 * math.pi / 4))).to(x.dtype)
    angle = base + (C3 * r * r - C1) * r
    angle = torch.where(y < 0, -angle, angle)
    return (angle, r, den, abs_y) if parts else angle


def fast_sqrt(v):
    """vl_fast_sqrt_f (0 below 1e-8; else v times the bit-trick inverse square root after two Newton
    steps) in float32; the gradient is that of sqrt. Other dtypes: the exact square root."""
    small = v < 1e-8
    safe = torch.where(small, torch.ones_like(v), v)
    exact = torch.sqrt(safe)
    if v.dtype == torch.float32:
        with torch.no_grad():
            s = safe.detach()
            y = (0x5f3759df - (s.view(torch.int32) >> 1)).view(torch.float32)
            half = 0.5 * s
            y = y * (1.5 - half * y * y)
            y = y * (1.5 - half * y * y)
            approx = s * y
        exact = exact + (approx - exact).detach()
    return torch.where(small, torch.zeros_like(v), exact)


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
        angle, r, den, ay = fast_atan2(gy, gx, parts=True)
        two_pi = float(np.float32(2 * math.pi))
        angle = torch.where(angle < 0, angle + two_pi, angle)
        angle = torch.where(angle > two_pi, angle - two_pi, angle)
        wide = torch.float64 if angle.dtype == torch.float32 else angle.dtype
        nt = (angle.to(wide) * (BINS_T / (2 * math.pi))).to(angle.dtype)
        with torch.no_grad():
            b = torch.floor(nt)
        frac = nt - b
        s2 = gx * gx + gy * gy
        mod = fast_sqrt(s2)
        b = b.long()
        if keep is not None:  # d angle / d (gx, gy) of the rational function, d mod of the exact sqrt
            inv = torch.where(s2 < 1e-8, 0.0, torch.rsqrt(torch.where(s2 < 1e-8, 1.0, s2)))
            slope = ((3 * C3) * r * r - C1) * (BINS_T / (2 * math.pi)) / (den * den)
            slope = torch.where(gy < 0, -slope, slope)
            keep.update(b=b, frac=frac, mod=mod, ux=gx * inv, uy=gy * inv, kx=slope * 2 * ay,
                        ky=slope * -2 * gx * torch.sign(gy))
        o = torch.zeros(gx.shape[0], BINS_T, *gx.shape[2:], dtype=gx.dtype, device=gx.device)
        o = o.scatter(1, torch.remainder(b, BINS_T), (1 - frac) * mod)
        return o.scatter_add(1, torch.remainder(b + 1, BINS_T), frac * mod)

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
        out = torch.matmul(torch.matmul(ay, o), ax.t())
        if o.dtype != torch.float32 or not self.exact:
            return out
        with torch.no_grad():
            r = torch.as_tensor(rows, device=o.device)
            y = triangle_running_sums(o.detach().permute(2, 0, 1, 3).reshape(h, -1), self.bin).reshape(h, n, c, w)
            y = y.index_select(0, r)
            vl = triangle_running_sums(y.permute(3, 1, 2, 0).reshape(w, -1), self.bin).reshape(w, n, c, len(rows))
            vl = vl.index_select(0, torch.as_tensor(cols, device=o.device)).permute(1, 2, 3, 0)
        return out + (vl - out).detach()

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

    def descriptors(self, o, ny, nx):
        b, s = self.bin, self.step
        parts = []
        if self.fast:  # each bin reweighted by the Gaussian window's mean over it (times bin: unit height)
            rows = sorted({by * b + i * s for by in range(BINS_XY) for i in range(ny)})
            cols = sorted({bx * b + j * s for bx in range(BINS_XY) for j in range(nx)})
            cells = self.flat_cells(o, rows, cols)
            ry, rx = {r: k for k, r in enumerate(rows)}, {c: k for k, c in enumerate(cols)}
            means = [float(window_mean(b, i, self.window) * np.float32(b)) for i in range(BINS_XY)]
            idx = lambda pos, start, count: torch.as_tensor([pos[start + i * s] for i in range(count)],  # noqa: E731
                                                            device=o.device)
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
        o = _Orientations.apply(g, self)
        out["orientations"] = o
        if "cells" in wanted:
            if not self.fast:
                raise PreimageError("dsift: the 'cells' output exists for the flat window (fast=true) only",
                                    where="--layer")
            out["cells"] = self.flat_cells(o)
        if "dsift" in wanted:
            frame = self.bin * (BINS_XY - 1) + 1
            h, w = x.shape[2:]
            ny, nx = (h - frame) // self.step + 1, (w - frame) // self.step + 1
            out["dsift"] = self.descriptors(o, ny, nx)
        return out


def triangle_running_sums(x, d):
    """vl_imconvcoltri_f along dim 0 of an L x M float32 tensor (padding by continuity, step 1), with
    its float32 running sums taken in VLFeat's order."""
    length = x.shape[0]
    buf = torch.empty(length + d, x.shape[1], dtype=x.dtype, device=x.device)  # buf[p] = buffer[p - d]
    buf[d + length - 1] = x[length - 1]
    for y in range(length - 2, -1, -1):  # integrate backward
        torch.add(buf[d + y + 1], x[y], out=buf[d + y])
    for p in range(d - 1, -1, -1):  # continuity: the first sample repeated
        torch.add(buf[p + 1], x[0], out=buf[p])
    last = buf[d + length - 1].clone()
    head = buf[:length] - buf[d:d + length]  # buffer[y] -= buffer[y + d], y < L - d (reads unmodified values)
    k = torch.arange(length - d, length, dtype=x.dtype, device=x.device)
    tail = buf[length:] - last * (length - d - k)[:, None]
    buf[:length], buf[length:] = head, tail
    for p in range(1, length + d):  # integrate forward
        buf[p] += buf[p - 1]
    scale = float(np.float32(1.0 / (d * d)))
    return scale * (buf[d:] - buf[:length])


def _window(bin, index, window):
    t = np.arange(-bin + 1, bin, dtype=np.float32)
    delta = np.float32(bin * (index - np.float32(0.5) * (BINS_XY - 1)))
    sigma = np.float32(bin) * np.float32(window)
    z = ((t - delta) / sigma).astype(np.float32)
    return t, np.exp(np.float32(-0.5) * z * z).astype(np.float32)


class _Orientations(torch.autograd.Function):
    """grey -> the 8 orientation maps, with a written backward (the derivative of the same formulas:
    central differences, vl_fast_atan2_f's rational function, the exact square root)."""

    @staticmethod
    def forward(ctx, g, rep):
        gx, gy = rep.gradients(g)
        keep = {} if ctx.needs_input_grad[0] else None
        o = rep.orientations(gx, gy, keep)
        if keep is not None:
            ctx.save_for_backward(*(keep[k] for k in ("b", "frac", "mod", "ux", "uy", "kx", "ky")))
        return o

    @staticmethod
    def backward(ctx, do):
        b, frac, mod, ux, uy, kx, ky = ctx.saved_tensors
        d0 = do.gather(1, torch.remainder(b, BINS_T))
        d1 = do.gather(1, torch.remainder(b + 1, BINS_T))
        dmod = d0 + frac * (d1 - d0)
        dangle = mod * (d1 - d0)
        dgx = dmod * ux + dangle * kx
        dgy = dmod * uy + dangle * ky
        return _difference_adjoint(dgx, 3) + _difference_adjoint(dgy, 2), None


def _difference_adjoint(d, dim):
    """Adjoint of DSIFT's differences along ``dim``: one-sided on the border, central (x 0.5) inside."""
    n = d.shape[dim]
    out = torch.zeros_like(d)
    first, last = d.narrow(dim, 0, 1), d.narrow(dim, n - 1, 1)
    mid = 0.5 * d.narrow(dim, 1, n - 2)
    out.narrow(dim, 1, 1).add_(first)
    out.narrow(dim, 0, 1).sub_(first)
    out.narrow(dim, 2, n - 2).add_(mid)
    out.narrow(dim, 0, n - 2).sub_(mid)
    out.narrow(dim, n - 1, 1).add_(last)
    out.narrow(dim, n - 2, 1).sub_(last)
    return out


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
