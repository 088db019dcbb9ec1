"""HOG as VLFeat 0.9.21 computes it (vl_hog_put_image + vl_hog_extract), UoCTTI and Dalal-Triggs variants,
hard (HOG) or bilinear (HOGb) orientation assignment.

Stages: ``gradients`` (N x 2 x H x W: the x, y central differences of the channel with the largest
gradient, zero on the border), ``orientations`` (N x 2K x H x W: each pixel's gradient norm in its
directed orientation bin(s)), ``cells`` (N x 2K x Hc x Wc: bilinearly pooled), ``blocks`` (N x 4K x Hc x
Wc: the undirected cell histogram normalised by each of the four 2 x 2 blocks around the cell, truncated
at 0.2, as Dalal-Triggs stacks them) and ``hog`` / ``hogb`` (UoCTTI: 2K directed + K undirected + 4
texture = 31 for K = 9; Dalal-Triggs: the 4K block components). Hc = (H + cell/2) // cell, likewise Wc.

The discrete choices (channel, orientation bin) are taken exactly as VLFeat takes them, ties included,
from float32 scores <g, o_k> of the raw gradient computed in the same order; gradients flow through the values only (the choices are
piecewise constant). HOGb's bin weight acos(<u, g/|g|>) / (pi / K) has an unbounded derivative where a
gradient is aligned with a bin; its derivative is taken from the equal angle atan2(u x g, u . g), whose
derivative is bounded (1 / |g|).
"""
import math

import numpy as np
import torch

from ...errors import PreimageError
from .base import ONE, REPRESENTATIONS, Representation, field
from .cells import CellPool, cell_field

TRUNCATE = 0.2


class HOG(Representation):
    stages = ("gradients", "orientations", "cells", "blocks")

    def __init__(self, name, cell=8, variant="uoctti", orientations=9, bilinear=False, size=(256, 256),
                 pixels=False):
        super().__init__(name, size, pixels)
        if variant not in ("uoctti", "dalaltriggs"):
            raise PreimageError(f"{name}: variant must be uoctti or dalaltriggs, got {variant!r}", where="--model")
        if cell < 1 or orientations < 3:
            raise PreimageError(f"{name}: need cell >= 1 and orientations >= 3 (got cell={cell}, "
                                f"orientations={orientations})", where="--model")
        self.stages = HOG.stages + (name,)
        self.cell, self.variant, self.k, self.bilinear = int(cell), variant, int(orientations), bool(bilinear)
        self.dimension = 3 * self.k + 4 if variant == "uoctti" else 4 * self.k
        angles = np.arange(self.k) * math.pi / self.k
        ox, oy = np.cos(angles), np.sin(angles)
        # float32 tables as VLFeat stores them; the directed half is the exact negation
        self.register_buffer("ox32", torch.tensor(np.concatenate([ox, -ox]).astype(np.float32)), persistent=False)
        self.register_buffer("oy32", torch.tensor(np.concatenate([oy, -oy]).astype(np.float32)), persistent=False)
        self.register_buffer("ox64", torch.tensor(np.concatenate([ox, -ox])), persistent=False)
        self.register_buffer("oy64", torch.tensor(np.concatenate([oy, -oy])), persistent=False)
        self._pools = {}

    def min_size(self):
        return max(4, self.cell)

    def grid(self, h, w):
        return (h + self.cell // 2) // self.cell, (w + self.cell // 2) // self.cell

    def fields(self):
        size, off = cell_field(self.cell)
        c = self.cell
        return {"gradients": field(3, 1, -1), "orientations": field(3, 1, -1), "cells": field(size, c, off),
                "blocks": field(size + 2 * c, c, off - c), self.name: field(size + 2 * c, c, off - c)}

    # -- per pixel ------------------------------------------------------------------------------------
    def gradients(self, x):
        """(gx, gy, g2) of the channel with the largest gradient at each interior pixel (the first on a
        tie, VLFeat's >): N x (H-2) x (W-2) each."""
        return _PixelGradients.apply(x)

    def _tables(self, dtype):
        return (self.ox32, self.oy32) if dtype == torch.float32 else (self.ox64.to(dtype), self.oy64.to(dtype))

    def choose(self, gx, gy, ox, oy):
        """VLFeat's best and second best directed bins: the nearest two to the gradient's angle, except
        within 1e-3 bin of a midpoint between bins, where VLFeat's float32 scores decide (``exact_choice``).
        Near a bin centre the second bin's weight is 0 in float32 whenever the angle cannot tell the
        neighbours apart (acos(1) = 0), so the angle's side is enough there."""
        t = torch.atan2(gy, gx) * (self.k / math.pi)
        j = torch.round(t)
        frac = t - j
        k2 = 2 * self.k
        best = torch.remainder(j + k2, k2)
        second = torch.remainder(best + torch.copysign(ONE, frac + 0.0), k2)  # the side of the angle (+ at 0)
        best, second = best.to(torch.int32), second.to(torch.int32)  # (int64 is ~10x slower here)
        near = (frac.abs() - 0.5).abs() < 1e-3
        if bool(near.any()):
            b, sc, _ = self.exact_choice(gx[near], gy[near], ox, oy)
            best[near], second[near] = b.to(torch.int32), sc.to(torch.int32)
        return best, second

    def exact_choice(self, ux, uy, ox, oy):
        """VLFeat's best (and second best) directed bins and the best score, from the three directed bins
        nearest the gradient's angle: the undirected scores |<g, o_k>| compete, the first k wins a tie."""
        k2 = 2 * self.k
        step = math.pi / self.k
        j = torch.round(torch.atan2(uy, ux) / step).long()
        cands = [torch.remainder(j + m, k2) for m in (-1, 0, 1)]
        scores = [ux * ox[c] + uy * oy[c] for c in cands]
        unds = [torch.remainder(c, self.k) for c in cands]

        def beats(sa, ua, sb, ub):
            return (sa > sb) | ((sa == sb) & (ua < ub))

        b_s, b_u, b_c = scores[0], unds[0], cands[0]
        s_s, s_u, s_c = None, None, None
        for s, u, c in zip(scores[1:], unds[1:], cands[1:]):
            win = beats(s, u, b_s, b_u)
            if s_s is None:  # the loser of the first pair is second for now
                s_s, s_u, s_c = torch.where(win, b_s, s), torch.where(win, b_u, u), torch.where(win, b_c, c)
            else:
                nb_s, nb_u, nb_c = torch.where(win, b_s, s), torch.where(win, b_u, u), torch.where(win, b_c, c)
                w2 = beats(nb_s, nb_u, s_s, s_u)
                s_s, s_u, s_c = torch.where(w2, nb_s, s_s), torch.where(w2, nb_u, s_u), torch.where(w2, nb_c, s_c)
            b_s, b_u, b_c = torch.where(win, s, b_s), torch.where(win, u, b_u), torch.where(win, c, b_c)
        return b_c, s_c, b_s

    def orientation_pairs(self, gx, gy, g2):
        """[(value, directed bin)] per pixel: |g| in the nearest bin, or split between the two nearest."""
        grad = torch.sqrt(g2 + 1e-30)  # (+1e-30: a finite derivative where g = 0; no float32 value changes)
        ox, oy = self._tables(gx.dtype)
        with torch.no_grad():  # VLFeat 0.9.21 scores the raw (not normalised) gradient
            best, second = self.choose(gx.detach(), gy.detach(), ox, oy)
        if not self.bilinear:
            return [(grad, best)]
        flat = best.reshape(-1)
        bx, by = ox.index_select(0, flat).view_as(best), oy.index_select(0, flat).view_as(best)
        score = (gx.detach() * bx + gy.detach() * by)
        nonzero = g2 > 0
        dot = torch.where(nonzero, gx * bx + gy * by, 1.0)
        cross = torch.where(nonzero, gy * bx - gx * by, 0.0)
        w1 = torch.abs(torch.atan2(cross, dot)) / (math.pi / self.k)
        if gx.dtype == torch.float32:  # VLFeat's value: acosf of the float32 score over sqrtf(g2) (correctly
            # rounded, which torch's float32 sqrt on CPU is not; acos near 1 magnifies one ulp ~1e3-fold)
            norm = torch.sqrt(g2.detach().double()).float().double()
            cos = torch.clamp(score.double() / torch.clamp(norm, min=1e-10), max=1.0).float()
            exact = (torch.acos(cos).double() / (math.pi / self.k)).float()
            w1 = w1 + (exact - w1).detach()
        return [(grad * (1 - w1), best), (grad * w1, second)]

    # -- cells, blocks, descriptor ---------------------------------------------------------------------
    def pool(self, h, w, dtype, device):
        key = (h, w, dtype, device)
        if key not in self._pools:
            self._pools = {key: CellPool(h, w, self.cell, *self.grid(h, w), device, dtype)}
        return self._pools[key]

    def normalise(self, cells):
        k = self.k
        und = cells[:, :k] + cells[:, k:]
        norm = (und * und).sum(1, keepdim=True)
        p = torch.nn.functional.pad(norm, (1, 1, 1, 1), mode="replicate")
        blocks = p[..., :-1, :-1] + p[..., :-1, 1:] + p[..., 1:, :-1] + p[..., 1:, 1:]  # 2 x 2 block sums
        wide = torch.float64 if cells.dtype == torch.float32 else cells.dtype  # VLFeat: double here
        f = 1.0 / torch.sqrt(blocks.to(wide) + 1e-4)
        factors = [f[..., :-1, :-1], f[..., :-1, 1:], f[..., 1:, :-1], f[..., 1:, 1:]]  # UL, UR, LL, LR
        c = cells.to(wide)
        und = und.to(wide)  # VLFeat adds the scaled halves; the sum of the scaled values equals it to rounding
        hc = [torch.clamp(fi * und, max=TRUNCATE) for fi in factors]
        blocks_out = torch.cat(hc, dim=1)
        if self.variant == "dalaltriggs":
            return blocks_out.to(cells.dtype), blocks_out.to(cells.dtype)
        directed = 0.5 * sum(torch.clamp(fi * c, max=TRUNCATE) for fi in factors)
        undirected = 0.5 * sum(hc)
        texture = torch.cat([h.sum(1, keepdim=True) for h in hc], dim=1) * float(np.float32(1.0 / np.sqrt(np.float32(18.0))))
        out = torch.cat([directed, undirected, texture], dim=1)
        return out.to(cells.dtype), blocks_out.to(cells.dtype)

    def compute(self, x, wanted):
        n, _, h, w = x.shape
        gx, gy, g2 = self.gradients(x)
        out = {}
        if "gradients" in wanted:
            out["gradients"] = torch.nn.functional.pad(torch.stack([gx, gy], 1), (1, 1, 1, 1))
        pairs = self.orientation_pairs(gx, gy, g2)
        if "orientations" in wanted:
            o = torch.zeros(n, 2 * self.k, h - 2, w - 2, dtype=x.dtype, device=x.device)
            for v, b in pairs:
                o = o.scatter_add(1, b[:, None].long(), v[:, None])
            out["orientations"] = torch.nn.functional.pad(o, (1, 1, 1, 1))
        if not wanted & {"cells", "blocks", self.name}:
            return out
        cells = self.pool(h, w, x.dtype, x.device)(pairs, 2 * self.k)
        out["cells"] = cells
        if wanted & {"blocks", self.name}:
            out[self.name], out["blocks"] = self.normalise(cells)
        return out


class _PixelGradients(torch.autograd.Function):
    """Central differences and the per-pixel channel choice, with a written backward (one buffer instead
    of autograd's full-size zero tensor per slice and per choice).

    The choice is VLFeat's running strict > (the first channel wins a tie), kept as 0/1 float masks: the
    chosen values are sums of the channels times their masks (exact, as x * 1 + y * 0 = x), and the
    backward routes each pixel's gradient by the same masks. On the CPU this is twice as fast as an index
    (torch.where, max's indices and int64 conversions are many times slower than float arithmetic here)."""

    @staticmethod
    def forward(ctx, x):
        gx = x[:, :, 1:-1, 2:] - x[:, :, 1:-1, :-2]
        gy = x[:, :, 2:, 1:-1] - x[:, :, :-2, 1:-1]
        g2 = gx * gx + gy * gy
        bx, by, b2 = gx[:, 0], gy[:, 0], g2[:, 0]
        masks = [None]  # masks[c]: 1 where channel c is the chosen one (None: channel 0 while alone)
        for c in range(1, x.shape[1]):
            take = torch.clamp(torch.sign(g2[:, c] - b2), min=0)  # 1 where g2_c > the best so far, else 0
            keep = 1 - take
            masks = [keep if m is None else m * keep for m in masks] + [take]
            bx = bx * keep + gx[:, c] * take
            by = by * keep + gy[:, c] * take
            b2 = torch.maximum(b2, g2[:, c])
        ctx.save_for_backward(bx, by, *[m for m in masks if m is not None])
        ctx.channels = x.shape[1]
        return bx, by, b2

    @staticmethod
    def backward(ctx, dgx, dgy, dg2):
        bx, by, *masks = ctx.saved_tensors
        n, h, w = bx.shape
        dgx = torch.zeros_like(bx) if dgx is None else dgx
        dgy = torch.zeros_like(by) if dgy is None else dgy
        if dg2 is not None:
            dgx = dgx + 2 * bx * dg2
            dgy = dgy + 2 * by * dg2
        dx = torch.zeros(n, ctx.channels, h + 2, w + 2, dtype=bx.dtype, device=bx.device)
        for c in range(ctx.channels):
            ex, ey = (dgx * masks[c], dgy * masks[c]) if ctx.channels > 1 else (dgx, dgy)
            dx[:, c, 1:-1, 2:] += ex
            dx[:, c, 1:-1, :-2] -= ex
            dx[:, c, 2:, 1:-1] += ey
            dx[:, c, :-2, 1:-1] -= ey
        return dx


@REPRESENTATIONS.register("hog")
def hog(cell=8, variant="uoctti", orientations=9, size=256, pixels=False):
    """HOG with hard orientation assignment (VLFeat vl_hog; UoCTTI = DPM V5's 31 components)."""
    return HOG("hog", cell, variant, orientations, bilinear=False, size=_size(size), pixels=pixels)


@REPRESENTATIONS.register("hogb")
def hogb(cell=8, variant="uoctti", orientations=9, size=256, pixels=False):
    """HOG with bilinear orientation assignment (vl_hog_set_use_bilinear_orientation_assignments)."""
    return HOG("hogb", cell, variant, orientations, bilinear=True, size=_size(size), pixels=pixels)


def _size(size):
    return [size, size] if isinstance(size, int) else list(size)
