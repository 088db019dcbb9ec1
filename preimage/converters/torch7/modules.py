"""Small torch modules for Torch7 nn behaviour that has no exact ``torch.nn`` twin.

Dimensions given to these modules are Torch7's: 1-based and absolute (counting the batch dimension
when the input has one), exactly as stored in the .t7 file, so a converted model behaves like the Lua
one on inputs of the same shape.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import PreimageError


def _prod(xs):
    return math.prod(int(x) for x in xs)


class TorchSoftMax(nn.Module):
    """nn.SoftMax / nn.LogSoftMax: over dim 1 of 1-D and 3-D inputs (C x H x W), dim 2 of 2-D and 4-D."""

    def __init__(self, log=False):
        super().__init__()
        self.log = log

    def forward(self, x):
        dim = 0 if x.dim() in (1, 3) else 1
        return F.log_softmax(x, dim) if self.log else F.softmax(x, dim)

    def extra_repr(self):
        return f"log={self.log}"


class TorchView(nn.Module):
    """nn.View: reshape to ``size`` (one entry may be -1), keeping a leading batch dimension when the
    input holds several ``size``-shaped samples (or has more than ``num_input_dims`` dimensions)."""

    def __init__(self, size, num_input_dims=None):
        super().__init__()
        self.size = tuple(int(s) for s in size)
        self.num_input_dims = num_input_dims

    def forward(self, x):
        ind = x.dim()
        maxdim = self.num_input_dims or ind
        numel = _prod(s for s in self.size if s >= 0)
        inner = _prod(x.shape[ind - maxdim:])
        if numel == 0 or inner % numel:
            raise RuntimeError(f"nn.View{self.size}: input of shape {tuple(x.shape)} does not match")
        batch = 1 if -1 in self.size else inner // numel
        batch *= _prod(x.shape[:ind - maxdim])
        if batch == 1 and (self.num_input_dims is None or ind <= self.num_input_dims):
            return x.reshape(self.size)
        return x.reshape((-1,) + self.size if -1 not in self.size else (batch,) + self.size)

    def extra_repr(self):
        return f"size={self.size}, num_input_dims={self.num_input_dims}"


class TorchReshape(nn.Module):
    """nn.Reshape: ``size`` per sample; batch mode unless ``batch_mode`` is False, or it is unset and
    the input has exactly ``nelement`` elements and a first dimension other than 1."""

    def __init__(self, size, batch_mode=None):
        super().__init__()
        self.size = tuple(int(s) for s in size)
        self.batch_mode = batch_mode

    def forward(self, x):
        nelement = _prod(self.size)
        if self.batch_mode is False or (self.batch_mode is None and x.numel() == nelement and x.shape[0] != 1):
            return x.reshape(self.size)
        if x.numel() != x.shape[0] * nelement:
            raise RuntimeError(f"nn.Reshape{self.size}: input of shape {tuple(x.shape)} does not match")
        return x.reshape((-1,) + self.size)

    def extra_repr(self):
        return f"size={self.size}, batch_mode={self.batch_mode}"


class Concat(nn.Module):
    """nn.Concat: every child sees the input; outputs joined along (1-based) ``dimension``."""

    def __init__(self, *modules, dimension):
        super().__init__()
        self.branches = nn.ModuleList(modules)
        self.dimension = dimension

    def forward(self, x):
        return torch.cat([m(x) for m in self.branches], dim=self.dimension - 1)


class Parallel(nn.Module):
    """nn.Parallel: child i sees slice i of ``input_dimension``; outputs joined along ``output_dimension``."""

    def __init__(self, *modules, input_dimension, output_dimension):
        super().__init__()
        self.branches = nn.ModuleList(modules)
        self.input_dimension = input_dimension
        self.output_dimension = output_dimension

    def forward(self, x):
        n = x.shape[self.input_dimension - 1]
        if n != len(self.branches):
            raise RuntimeError(f"nn.Parallel has {len(self.branches)} modules but the input has {n} slices")
        outs = [m(x.select(self.input_dimension - 1, i)) for i, m in enumerate(self.branches)]
        return torch.cat(outs, dim=self.output_dimension - 1)


class ConcatTable(nn.Module):
    """nn.ConcatTable: a list with each child's output for the same input."""

    def __init__(self, *modules):
        super().__init__()
        self.branches = nn.ModuleList(modules)

    def forward(self, x):
        return [m(x) for m in self.branches]


class ParallelTable(nn.Module):
    """nn.ParallelTable: child i applied to element i of the input list."""

    def __init__(self, *modules):
        super().__init__()
        self.branches = nn.ModuleList(modules)

    def forward(self, xs):
        return [m(x) for m, x in zip(self.branches, xs)]


class CAddTable(nn.Module):
    """nn.CAddTable: the element-wise sum of the input list."""

    def forward(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class CMulTable(nn.Module):
    """nn.CMulTable: the element-wise product of the input list."""

    def forward(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class JoinTable(nn.Module):
    """nn.JoinTable: concatenate the input list along (1-based) ``dimension``; negative counts from the
    end; with ``n_input_dims`` set, a batched input (one more dimension) shifts it by one."""

    def __init__(self, dimension, n_input_dims=None):
        super().__init__()
        self.dimension = dimension
        self.n_input_dims = n_input_dims

    def forward(self, xs):
        d = self.dimension
        if d < 0:
            d = xs[0].dim() + d + 1
        elif self.n_input_dims is not None and xs[0].dim() == self.n_input_dims + 1:
            d += 1
        return torch.cat(list(xs), dim=d - 1)


class SelectTable(nn.Module):
    """nn.SelectTable: element ``index`` (1-based; negative from the end) of the input list."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, xs):
        return xs[self.index - 1 if self.index > 0 else len(xs) + self.index]


class MulConstant(nn.Module):
    def __init__(self, constant):
        super().__init__()
        self.constant = float(constant)

    def forward(self, x):
        return x * self.constant

    def extra_repr(self):
        return str(self.constant)


class AddConstant(nn.Module):
    def __init__(self, constant):
        super().__init__()
        self.constant = float(constant)

    def forward(self, x):
        return x + self.constant

    def extra_repr(self):
        return str(self.constant)


class Power(nn.Module):
    """nn.Power / nn.Square / nn.Sqrt: ``x ** p``."""

    def __init__(self, p):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        return x * x if self.p == 2 else torch.sqrt(x) if self.p == 0.5 else torch.pow(x, self.p)


class UpsampleBilinear(nn.Module):
    """nn.SpatialUpSamplingBilinear: corners aligned; output (H - 1) * s + 1 (scale s) or a fixed size."""

    def __init__(self, scale_factor=None, size=None):
        super().__init__()
        self.scale_factor = scale_factor
        self.size = None if size is None else tuple(int(v) for v in size)

    def forward(self, x):
        if self.size is not None:
            size = self.size
        else:
            size = tuple((int(n) - 1) * self.scale_factor + 1 for n in x.shape[-2:])
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class Narrow(nn.Module):
    """nn.Narrow: ``length`` elements from (1-based) ``index`` along (1-based) ``dimension``;
    negative index/length count from the end, as in Torch7."""

    def __init__(self, dimension, index, length):
        super().__init__()
        self.dimension, self.index, self.length = dimension, index, length

    def forward(self, x):
        d = self.dimension - 1
        n = x.shape[d]
        start = self.index - 1 if self.index > 0 else n + self.index
        length = self.length if self.length > 0 else n - start + self.length + 1
        return x.narrow(d, start, length)


class Reduce(nn.Module):
    """nn.Sum / nn.Mean over (1-based) ``dimension``; with ``n_input_dims``, a batched input shifts it."""

    def __init__(self, dimension, mean=False, n_input_dims=None):
        super().__init__()
        self.dimension, self.mean, self.n_input_dims = dimension, mean, n_input_dims

    def forward(self, x):
        d = self.dimension
        if d < 0:
            d = x.dim() + d + 1
        elif self.n_input_dims is not None and x.dim() == self.n_input_dims + 1:
            d += 1
        return x.mean(d - 1) if self.mean else x.sum(d - 1)


class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


class Graph(nn.Module):
    """nngraph's gModule: nodes run in topological order; node i is ``[module, parents, select]``.

    ``module`` indexes ``self.branches`` (-1: no module, the node passes its input on), ``parents`` are
    earlier nodes whose outputs form the node's input (a list; one parent gives its output itself),
    ``select`` (1-based, 0 for none) picks one element of a table input (nngraph's split nodes).
    The input node receives the graph's inputs; the output node's input is the graph's output.
    """

    def __init__(self, *modules, nodes, input_node, output_node):
        super().__init__()
        self.branches = nn.ModuleList(modules)
        self.nodes = [(int(m), [int(p) for p in parents], int(sel)) for m, parents, sel in nodes]
        self.input_node = input_node
        self.output_node = output_node

    @property
    def n_inputs(self):
        """How many inputs the graph takes: nngraph splits a table input into the elements its select
        nodes pick (a node reading the input node, or a module-less node passing it on, is such a split)."""
        passes = {self.input_node}
        for i, (mod, parents, select) in enumerate(self.nodes):
            if mod < 0 and not select and len(parents) == 1 and parents[0] in passes:
                passes.add(i)
        picks = [select for mod, parents, select in self.nodes if select and parents and parents[0] in passes]
        return max(picks, default=1)

    def forward(self, *inputs):
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        if len(inputs) != self.n_inputs:
            raise PreimageError(f"this nngraph gModule takes {self.n_inputs} input(s) (a table in Lua), got "
                                f"{len(inputs)}: call it with {self.n_inputs} tensors (on the command line: "
                                f"--input-shape once per input)")
        values = [None] * len(self.nodes)
        for i, (mod, parents, select) in enumerate(self.nodes):
            args = list(inputs) if i == self.input_node else [values[p] for p in parents]
            if select:
                if not isinstance(args[0], (list, tuple)) or len(args[0]) < select:
                    got = f"a tensor of shape {list(args[0].shape)}" if torch.is_tensor(args[0]) else \
                        f"{len(args[0])} value(s)" if isinstance(args[0], (list, tuple)) else type(args[0]).__name__
                    raise PreimageError(f"gModule node {i + 1} takes element {select} of a table, got {got}")
                out = args[0][select - 1]
            else:
                x = args[0] if len(args) == 1 else args
                out = self.branches[mod](x) if mod >= 0 else x
            values[i] = out
        return values[self.output_node]


CUSTOM_MODULES = {c.__name__: c for c in (
    Graph, TorchSoftMax, TorchView, TorchReshape, Concat, Parallel, ConcatTable, ParallelTable, CAddTable,
    CMulTable, JoinTable, SelectTable, MulConstant, AddConstant, Power, Abs, UpsampleBilinear, Narrow, Reduce)}
