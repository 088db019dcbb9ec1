"""DSIFT's written backward passes: grey -> the 8 orientation maps, and grey -> the flat window's cells
taken image by image.

The representation object (``dsift.DSIFT``) is passed in and supplies the forward formulas; this module
holds only the derivatives and the chunking, so that it needs nothing from ``dsift``.
"""
import torch

BINS_T = 8


class Orientations(torch.autograd.Function):
    """grey -> the 8 orientation maps, with a written backward (the derivative of the same formulas:
    central differences, vl_fast_atan2_f's rational function, the exact square root)."""

    @staticmethod
    def forward(ctx, g, rep):
        gx, gy = rep.gradients(g)
        keep = {} if ctx.needs_input_grad[0] else None
        o = rep.orientations(gx, gy, keep)
        if keep is not None:
            ctx.save_for_backward(*(keep[k] for k in KEPT))
        return o

    @staticmethod
    def backward(ctx, do):
        keep = dict(zip(KEPT, ctx.saved_tensors))
        return orientation_adjoint(keep, do.permute(0, 2, 3, 1)), None


KEPT = ("lo", "hi", "frac", "mod", "ux", "uy", "kx", "ky")


def orientation_adjoint(keep, last):
    """d loss / d grey from d loss / d orientation maps, given N x H x W x 8 (``last``)."""
    frac, mod = keep["frac"], keep["mod"]
    d0 = last.gather(3, keep["lo"]).view(frac.shape)
    d1 = last.gather(3, keep["hi"]).view(frac.shape)
    dmod = d0 + frac * (d1 - d0)
    dangle = mod * (d1 - d0)
    dgx = dmod * keep["ux"] + dangle * keep["kx"]
    dgy = dmod * keep["uy"] + dangle * keep["ky"]
    return difference_adjoint(dgx, 3) + difference_adjoint(dgy, 2)


def difference_adjoint(d, dim):
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


def filter_cells(last, ay, ax):
    """The flat window's separable filter at the sampled rows and columns: ``last`` N x H x W x 8 ->
    N x 8 x R x C (rows first, then columns)."""
    n, h, w, c = last.shape
    t = torch.matmul(ay, last.reshape(n, h, w * c)).view(n, ay.shape[0], w, c)
    return torch.matmul(t.permute(0, 1, 3, 2), ax.t()).permute(0, 2, 1, 3)


def filter_cells_adjoint(d, ay, ax):
    """The adjoint of :func:`filter_cells`: N x 8 x R x C -> N x H x W x 8."""
    n, c, r, _ = d.shape
    t = torch.matmul(d.permute(0, 2, 1, 3), ax)  # N x R x 8 x W
    w = t.shape[-1]
    return torch.matmul(ay.t(), t.permute(0, 1, 3, 2).reshape(n, r, w * c)).view(n, ay.shape[1], w, c)


class FlatCells(torch.autograd.Function):
    """grey (N x 1 x H x W) -> the flat window's cells at the sampled rows and columns (N x 8 x R x C),
    ``chunk`` images at a time. The full-resolution orientation maps (8 values per pixel) are never
    held for the whole batch: one chunk's maps stay in the CPU's cache through the filter, which
    makes this about twice as fast as the stage-by-stage path on the CPU. The backward recomputes a
    chunk's orientation terms from the saved grey image instead of keeping them (the same formulas,
    hence the same values). ``full``: a tensor N x H x W x 8 to receive every chunk's maps (for
    VLFeat's exact running sums), or None."""

    @staticmethod
    def forward(ctx, g, rep, ay, ax, chunk, full):
        n = g.shape[0]
        out = g.new_empty(n, BINS_T, ay.shape[0], ax.shape[0])
        for i in range(0, n, chunk):
            gx, gy = rep.gradients(g[i:i + chunk])
            last = rep.orientations(gx, gy).permute(0, 2, 3, 1)
            if full is not None:
                full[i:i + chunk] = last
            out[i:i + chunk] = filter_cells(last, ay, ax)
        ctx.save_for_backward(g, ay, ax)
        ctx.rep, ctx.chunk = rep, chunk
        return out

    @staticmethod
    def backward(ctx, dout):
        g, ay, ax = ctx.saved_tensors
        dg = torch.empty_like(g)
        for i in range(0, g.shape[0], ctx.chunk):
            keep = {}
            gx, gy = ctx.rep.gradients(g[i:i + ctx.chunk])
            ctx.rep.orientations(gx, gy, keep)
            dg[i:i + ctx.chunk] = orientation_adjoint(keep, filter_cells_adjoint(dout[i:i + ctx.chunk], ay, ax))
        return dg, None, None, None, None, None
