"""Torch7 nn modules -> :class:`~preimage.converters.torch7.build.Node` trees (then torch modules).

One registered function per Torch7 class (``@converts("nn.Foo", "cudnn.Foo")``), reading the module's
fields as stored in the .t7 file. Traps handled here:

- Torch gives kernel/stride/padding as (W, H); torch.nn wants (H, W).
- SpatialConvolutionMM stores its weight as a matrix nOut x (nIn*kH*kW).
- BatchNormalization before version 2 stored ``running_std`` = 1/sqrt(var + eps); it becomes
  ``running_var = 1/running_std**2`` with eps 0, which computes exactly ``(x - mean) * running_std``.
- SpatialFullConvolution ``adjW/adjH`` are torch's ``output_padding``; weight is nIn x nOut x kH x kW.
- nn.Dropout without ``v2`` (the original version) scales by (1 - p) at test time; nn.SpatialDropout too.
- Dimensions in Concat/Parallel/JoinTable are 1-based and absolute, kept as such (see modules.py).
"""
import math

import numpy as np

from ...errors import FormatError, UnsupportedError
from ...registry import Registry
from .build import Node
from .types import LuaTable, TorchObject

CONVERTERS = Registry("Torch7 module converter")
converts = CONVERTERS.register  # @converts("nn.ReLU", "cudnn.ReLU"): one converter for those class names
_REQUIRED = object()


class Ctx:
    """What a converter sees: the module's fields and its place in the tree (for error messages)."""

    def __init__(self, module, path, file=None):
        self.m = module
        self.path = path
        self.file = file
        self.where = f"{path} ({module.typename})"

    def error(self, message, cls=FormatError):
        return cls(message, path=self.file, where=self.where)

    def get(self, name, default=_REQUIRED):
        v = self.m.get(name)
        if v is None:
            if default is _REQUIRED:
                raise self.error(f"missing field '{name}'")
            return default
        return v

    def int(self, name, default=_REQUIRED):
        v = self.get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v:
            raise self.error(f"field '{name}' should be an integer, found {v!r}")
        if abs(v) >= 2**31:  # sizes, strides, dimensions: torch takes 64-bit ints; no real model gets near
            raise self.error(f"field '{name}' is out of range ({v!r})")
        return int(v)

    def float(self, name, default=_REQUIRED):
        v = self.get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(f"field '{name}' should be a number, found {v!r}")
        return float(v)

    def bool(self, name, default=_REQUIRED):
        v = self.get(name, default)
        return bool(v) if not isinstance(v, (int, float)) or isinstance(v, bool) else v != 0

    def tensor(self, name, shape=None, required=True):
        v = self.m.get(name)
        if v is None or (isinstance(v, np.ndarray) and v.size == 0 and not required):
            if required:
                raise self.error(f"missing tensor '{name}'")
            return None
        if not isinstance(v, np.ndarray):
            raise self.error(f"field '{name}' should be a tensor, found {type(v).__name__}")
        if shape is not None:
            if v.size != int(np.prod(shape)):
                raise self.error(f"tensor '{name}' has shape {v.shape}, expected {tuple(shape)}")
            v = v.reshape(shape)
        return v

    def sizes(self, name, default=_REQUIRED):
        v = self.get(name, default)
        if isinstance(v, np.ndarray):
            return [int(x) for x in v.reshape(-1)]
        if isinstance(v, LuaTable):
            return [int(x) for x in v.to_list()]
        if isinstance(v, (int, float)):
            return [int(v)]
        raise self.error(f"field '{name}' should be a list of sizes, found {type(v).__name__}")

    def children(self):
        mods = self.m.get("modules")
        if mods is None:
            return []
        if not isinstance(mods, LuaTable):
            raise self.error("field 'modules' should be a table")
        return [convert_module(c, f"{self.path}.modules[{i}]", self.file) for i, c in enumerate(mods.to_list(), 1)]

    def node(self, module, kwargs=None, children=(), tensors=None):
        return Node(module, kwargs, children, tensors, source=self.where)


def convert_module(obj, path="model", file=None):
    """Convert one Torch7 nn module (a TorchObject read from a .t7 file) to a Node tree."""
    if not isinstance(obj, TorchObject):
        raise UnsupportedError(f"expected an nn module, found {type(obj).__name__}", path=file, where=path)
    fn = CONVERTERS.get(obj.typename)
    if fn is None:
        raise UnsupportedError(f"unsupported Torch7 module {obj.typename} (supported: "
                               f"{', '.join(sorted(n for n in CONVERTERS if n.startswith('nn.')))}; cudnn.* twins too)",
                               path=file, where=f"{path} ({obj.typename})")
    return fn(Ctx(obj, path, file))


# ---------------------------------------------------------------- containers and tables
@converts("nn.Sequential")
def _sequential(c):
    return c.node("Sequential", children=c.children())


@converts("nn.Concat")
def _concat(c):
    return c.node("Concat", {"dimension": c.int("dimension")}, c.children())


@converts("nn.Parallel")
def _parallel(c):
    return c.node("Parallel", {"input_dimension": c.int("inputDimension"),
                               "output_dimension": c.int("outputDimension")}, c.children())


@converts("nn.ConcatTable")
def _concat_table(c):
    return c.node("ConcatTable", children=c.children())


@converts("nn.ParallelTable")
def _parallel_table(c):
    return c.node("ParallelTable", children=c.children())


@converts("nn.CAddTable")
def _cadd_table(c):
    return c.node("CAddTable")


@converts("nn.CMulTable")
def _cmul_table(c):
    return c.node("CMulTable")


@converts("nn.JoinTable")
def _join_table(c):
    n = c.get("nInputDims", None)
    return c.node("JoinTable", {"dimension": c.int("dimension"), "n_input_dims": None if n is None else c.int("nInputDims")})


@converts("nn.SelectTable")
def _select_table(c):
    return c.node("SelectTable", {"index": c.int("index")})


@converts("nn.Identity", "nn.Contiguous", "nn.Copy")
def _identity(c):
    return c.node("Identity")


@converts("nn.gModule")
def _gmodule(c):
    """nngraph: forwardnodes is the topological order; a node's data.mapindex lists its parents' data."""
    order = c.get("forwardnodes")
    nodes = order.to_list() if isinstance(order, LuaTable) else None
    if not nodes or not all(isinstance(n, TorchObject) and isinstance(n.get("data"), LuaTable) for n in nodes):
        raise c.error("field 'forwardnodes' should be a list of nngraph.Node")
    position = {id(n["data"]): i for i, n in enumerate(nodes)}

    def node_of(field):
        n = c.get(field)
        if not isinstance(n, TorchObject) or id(n.get("data")) not in position:
            raise c.error(f"field '{field}' is not one of the graph's forward nodes")
        return position[id(n["data"])]

    spec, children = [], []
    for i, n in enumerate(nodes):
        data = n["data"]
        mapindex = data.get("mapindex")
        parents = mapindex.to_list() if isinstance(mapindex, LuaTable) else []
        if any(id(p) not in position or position[id(p)] >= i for p in parents):
            raise c.error(f"forward node {i + 1} has a parent that is not an earlier forward node")
        module = data.get("module")
        index = -1
        if module is not None:
            index = len(children)
            children.append(convert_module(module, f"{c.path}.forwardnodes[{i + 1}].data.module", c.file))
        select = data.get("selectindex") or 0
        spec.append([index, [position[id(p)] for p in parents], int(select)])
    return c.node("Graph", {"nodes": spec, "input_node": node_of("innode"), "output_node": node_of("outnode")},
                  children)


# ---------------------------------------------------------------- convolutions
@converts("nn.SpatialConvolution", "nn.SpatialConvolutionMM", "cudnn.SpatialConvolution",
          "nn.SpatialDilatedConvolution", "cudnn.SpatialDilatedConvolution")
def _conv(c):
    nin, nout = c.int("nInputPlane"), c.int("nOutputPlane")
    kw, kh = c.int("kW"), c.int("kH")
    dw, dh = c.int("dW", 1), c.int("dH", 1)
    pad = c.int("padding", 0)  # the oldest versions had one 'padding' for both
    pw, ph = c.int("padW", pad), c.int("padH", pad)
    groups = c.int("groups", 1)
    dil = (c.int("dilationH", 1), c.int("dilationW", 1))
    if groups < 1 or nin % groups or nout % groups:
        raise c.error(f"groups={groups} does not divide nInputPlane={nin} and nOutputPlane={nout}")
    weight = c.tensor("weight", (nout, nin // groups, kh, kw))
    bias = c.tensor("bias", (nout,), required=False)
    return c.node("Conv2d", dict(in_channels=nin, out_channels=nout, kernel_size=(kh, kw), stride=(dh, dw),
                                 padding=(ph, pw), dilation=dil, groups=groups, bias=bias is not None),
                  tensors={"weight": weight, "bias": bias})


@converts("nn.SpatialFullConvolution", "cudnn.SpatialFullConvolution")
def _full_conv(c):
    nin, nout = c.int("nInputPlane"), c.int("nOutputPlane")
    kw, kh = c.int("kW"), c.int("kH")
    dw, dh = c.int("dW", 1), c.int("dH", 1)
    pw, ph = c.int("padW", 0), c.int("padH", 0)
    aw, ah = c.int("adjW", 0), c.int("adjH", 0)
    groups = c.int("groups", 1)
    if aw >= dw or ah >= dh:
        raise c.error(f"adjW/adjH ({aw}, {ah}) must be smaller than the stride ({dw}, {dh})")
    weight = c.tensor("weight", (nin, nout // groups, kh, kw))
    bias = c.tensor("bias", (nout,), required=False)
    return c.node("ConvTranspose2d", dict(in_channels=nin, out_channels=nout, kernel_size=(kh, kw), stride=(dh, dw),
                                          padding=(ph, pw), output_padding=(ah, aw), groups=groups,
                                          bias=bias is not None),
                  tensors={"weight": weight, "bias": bias})


@converts("nn.Linear")
def _linear(c):
    weight = c.tensor("weight")
    if weight.ndim != 2:
        raise c.error(f"weight should be 2-D (out x in), found shape {weight.shape}")
    nout, nin = weight.shape
    bias = c.tensor("bias", (nout,), required=False)
    return c.node("Linear", dict(in_features=nin, out_features=nout, bias=bias is not None),
                  tensors={"weight": weight, "bias": bias})


# ---------------------------------------------------------------- normalisation
@converts("nn.BatchNormalization", "cudnn.BatchNormalization", "nn.SpatialBatchNormalization",
          "cudnn.SpatialBatchNormalization", "nn.VolumetricBatchNormalization", "cudnn.VolumetricBatchNormalization")
def _batch_norm(c):
    mean = c.tensor("running_mean")
    n = mean.size
    mean = mean.reshape(n)
    eps = c.float("eps", 1e-5)
    var = c.tensor("running_var", (n,), required=False)
    if var is None:
        std = c.tensor("running_std", (n,), required=False)
        if std is None:
            raise c.error("has neither running_var nor running_std")
        with np.errstate(divide="ignore"):
            var = 1.0 / np.square(std.astype(np.float64))  # old form: running_std = 1/sqrt(var + eps)
        eps = 0.0
    weight = c.tensor("weight", (n,), required=False)
    bias = c.tensor("bias", (n,), required=False)
    affine = weight is not None
    if affine and bias is None:
        bias = np.zeros(n)
    if not affine:
        bias = None
    kind = "BatchNorm3d" if "Volumetric" in c.m.typename else "BatchNorm2d" if "Spatial" in c.m.typename else "BatchNorm1d"
    return c.node(kind, dict(num_features=n, eps=eps, affine=affine),
                  tensors={"weight": weight, "bias": bias, "running_mean": mean, "running_var": var})


@converts("nn.InstanceNormalization")
def _instance_norm(c):
    """The InstanceNormalization of fast-neural-style (and others): per-sample, per-channel statistics
    (biased variance) at test time too, then an affine weight and bias."""
    weight = c.tensor("weight")
    n = weight.size
    bias = c.tensor("bias", (n,))
    return c.node("InstanceNorm2d", dict(num_features=n, eps=c.float("eps", 1e-5), affine=True),
                  tensors={"weight": weight.reshape(n), "bias": bias})


@converts("nn.SpatialCrossMapLRN", "cudnn.SpatialCrossMapLRN")
def _lrn(c):
    size = c.int("size", 5)
    return c.node("LocalResponseNorm", dict(size=size, alpha=c.float("alpha", 1e-4), beta=c.float("beta", 0.75),
                                            k=c.float("k", 1.0)))


# ---------------------------------------------------------------- activations
@converts("nn.ReLU", "cudnn.ReLU", "nn.Threshold")
def _threshold(c):
    th, val = c.float("threshold", 0.0), c.float("val", 0.0)
    if th == 0 and val == 0:
        return c.node("ReLU")
    return c.node("Threshold", dict(threshold=th, value=val))


@converts("nn.ReLU6")
def _relu6(c):
    return c.node("Hardtanh", dict(min_val=0.0, max_val=6.0))


@converts("nn.HardTanh")
def _hardtanh(c):
    return c.node("Hardtanh", dict(min_val=c.float("min_val", -1.0), max_val=c.float("max_val", 1.0)))


@converts("nn.LeakyReLU")
def _leaky_relu(c):
    return c.node("LeakyReLU", dict(negative_slope=c.float("negval", 0.01)))


@converts("nn.PReLU")
def _prelu(c):
    weight = c.tensor("weight")
    n = weight.size
    return c.node("PReLU", dict(num_parameters=n), tensors={"weight": weight.reshape(n)})


@converts("nn.ELU")
def _elu(c):
    return c.node("ELU", dict(alpha=c.float("alpha", 1.0)))


@converts("nn.SoftPlus")
def _softplus(c):
    return c.node("Softplus", dict(beta=c.float("beta", 1.0), threshold=c.float("threshold", 20.0)))


@converts("nn.Tanh", "cudnn.Tanh")
def _tanh(c):
    return c.node("Tanh")


@converts("nn.Sigmoid", "cudnn.Sigmoid")
def _sigmoid(c):
    return c.node("Sigmoid")


@converts("nn.SoftMax", "cudnn.SoftMax", "nn.SpatialSoftMax", "cudnn.SpatialSoftMax")
def _softmax(c):
    return c.node("TorchSoftMax", dict(log=False))


@converts("nn.LogSoftMax", "cudnn.LogSoftMax")
def _log_softmax(c):
    return c.node("TorchSoftMax", dict(log=True))


@converts("nn.Abs")
def _abs(c):
    return c.node("Abs")


@converts("nn.Square")
def _square(c):
    return c.node("Power", dict(p=2.0))


@converts("nn.Sqrt")
def _sqrt(c):
    return c.node("Power", dict(p=0.5))


@converts("nn.Power")
def _power(c):
    return c.node("Power", dict(p=c.float("pow")))


@converts("nn.MulConstant")
def _mul_constant(c):
    return c.node("MulConstant", dict(constant=c.float("constant_scalar")))


@converts("nn.AddConstant")
def _add_constant(c):
    return c.node("AddConstant", dict(constant=c.float("constant_scalar")))


@converts("nn.Dropout", "nn.SpatialDropout")
def _dropout(c):
    # Original nn.Dropout (no v2 field) and SpatialDropout scale by (1 - p) at test time; v2 does not.
    if c.m.typename == "nn.Dropout" and c.bool("v2", False):
        return c.node("Identity")
    p = c.float("p", 0.5)
    return c.node("MulConstant", dict(constant=1.0 - p)) if p else c.node("Identity")


# ---------------------------------------------------------------- shapes
@converts("nn.View")
def _view(c):
    n = c.get("numInputDims", None)
    num_input_dims = None if n is None else c.int("numInputDims")
    return c.node("TorchView", dict(size=tuple(c.sizes("size")), num_input_dims=num_input_dims))


@converts("nn.Reshape")
def _reshape(c):
    mode = c.get("batchMode", None)
    return c.node("TorchReshape", dict(size=tuple(c.sizes("size")), batch_mode=None if mode is None else bool(mode)))


# ---------------------------------------------------------------- pooling, upsampling, padding
def _pool_geometry(c):
    """kernel_size, stride, padding as (h, w) pairs; torch (like cudnn) takes padding up to half the kernel."""
    kw, kh = c.int("kW"), c.int("kH")
    dw, dh = c.int("dW", kw), c.int("dH", kh)
    pw, ph = c.int("padW", 0), c.int("padH", 0)
    if 2 * pw > kw or 2 * ph > kh:
        raise c.error(f"padding ({pw}, {ph}) larger than half the kernel ({kw}, {kh})", UnsupportedError)
    return dict(kernel_size=(kh, kw), stride=(dh, dw), padding=(ph, pw))


@converts("nn.SpatialMaxPooling", "cudnn.SpatialMaxPooling")
def _max_pool(c):
    return c.node("MaxPool2d", dict(**_pool_geometry(c), ceil_mode=c.bool("ceil_mode", False)))


@converts("nn.SpatialAveragePooling", "cudnn.SpatialAveragePooling")
def _avg_pool(c):
    geometry = _pool_geometry(c)
    pool = c.node("AvgPool2d", dict(**geometry, ceil_mode=c.bool("ceil_mode", False),
                                    count_include_pad=c.bool("count_include_pad", True)))
    if c.bool("divide", True):
        return pool
    kh, kw = geometry["kernel_size"]
    return c.node("Sequential", children=[pool, c.node("MulConstant", dict(constant=float(kw * kh)))])


@converts("nn.SpatialUpSamplingNearest")
def _upsample_nearest(c):
    s = c.int("scale_factor", None) or c.int("scale", None)
    if not s or s < 1:
        raise c.error("missing or bad 'scale_factor'")
    return c.node("Upsample", dict(scale_factor=float(s), mode="nearest"))


@converts("nn.SpatialUpSamplingBilinear")
def _upsample_bilinear(c):
    s = c.int("scale_factor", None)
    if s is not None:
        if s < 1:
            raise c.error(f"bad scale_factor {s}")
        return c.node("UpsampleBilinear", dict(scale_factor=s))
    return c.node("UpsampleBilinear", dict(size=(c.int("oheight"), c.int("owidth"))))


@converts("nn.Narrow")
def _narrow(c):
    return c.node("Narrow", dict(dimension=c.int("dimension"), index=c.int("index"), length=c.int("length", 1)))


@converts("nn.Sum", "nn.Mean")
def _reduce(c):
    n = c.get("nInputDims", None)
    mean = c.m.typename == "nn.Mean" or c.bool("sizeAverage", False)
    return c.node("Reduce", dict(dimension=c.int("dimension", 1), mean=mean,
                                 n_input_dims=None if n is None else c.int("nInputDims")))


def _pads(c):
    return tuple(c.int(k, 0) for k in ("pad_l", "pad_r", "pad_t", "pad_b"))


@converts("nn.SpatialZeroPadding")
def _zero_pad(c):
    return c.node("ZeroPad2d", dict(padding=_pads(c)))


@converts("nn.SpatialReflectionPadding")
def _reflection_pad(c):
    return c.node("ReflectionPad2d", dict(padding=_pads(c)))


@converts("nn.SpatialReplicationPadding")
def _replication_pad(c):
    return c.node("ReplicationPad2d", dict(padding=_pads(c)))
