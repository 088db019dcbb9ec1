"""Upgrading legacy Caffe layer descriptions to the V2 ``LayerParameter`` form.

V1 (2014-2015 files: ``layers { type: CONVOLUTION ... }``) keeps the per-type parameter messages, so the
upgrade is a rename of the type and a copy of the shared fields. V0 (``layers { layer { type: "conv" }}``,
pre-2014) kept everything in one flat message; the common vision layers are upgraded here.
"""
from ...errors import UnsupportedError
from .proto import caffe_pb2

V1 = caffe_pb2.V1LayerParameter

V1_TYPE_NAMES = {
    V1.ABSVAL: "AbsVal", V1.ACCURACY: "Accuracy", V1.ARGMAX: "ArgMax", V1.BNLL: "BNLL", V1.CONCAT: "Concat",
    V1.CONTRASTIVE_LOSS: "ContrastiveLoss", V1.CONVOLUTION: "Convolution", V1.DATA: "Data",
    V1.DECONVOLUTION: "Deconvolution", V1.DROPOUT: "Dropout", V1.DUMMY_DATA: "DummyData",
    V1.EUCLIDEAN_LOSS: "EuclideanLoss", V1.ELTWISE: "Eltwise", V1.EXP: "Exp", V1.FLATTEN: "Flatten",
    V1.HDF5_DATA: "HDF5Data", V1.HDF5_OUTPUT: "HDF5Output", V1.HINGE_LOSS: "HingeLoss", V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData", V1.INFOGAIN_LOSS: "InfogainLoss", V1.INNER_PRODUCT: "InnerProduct",
    V1.LRN: "LRN", V1.MEMORY_DATA: "MemoryData", V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    V1.MVN: "MVN", V1.POOLING: "Pooling", V1.POWER: "Power", V1.RELU: "ReLU", V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", V1.SILENCE: "Silence", V1.SOFTMAX: "Softmax",
    V1.SOFTMAX_LOSS: "SoftmaxWithLoss", V1.SPLIT: "Split", V1.SLICE: "Slice", V1.TANH: "TanH",
    V1.WINDOW_DATA: "WindowData", V1.THRESHOLD: "Threshold",
}

# V1 per-type parameter fields that exist under the same name (and message type) in LayerParameter.
_V1_PARAM_FIELDS = [
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param", "convolution_param",
    "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "exp_param", "hdf5_data_param",
    "hdf5_output_param", "hinge_loss_param", "image_data_param", "infogain_loss_param",
    "inner_product_param", "lrn_param", "memory_data_param", "mvn_param", "pooling_param", "power_param",
    "relu_param", "sigmoid_param", "softmax_param", "slice_param", "tanh_param", "threshold_param",
    "window_data_param", "transform_param", "loss_param",
]


def upgrade_v1_layer(v1, path="<prototxt>", index=0):
    """caffe_pb2.V1LayerParameter -> caffe_pb2.LayerParameter (blobs included)."""
    if v1.HasField("layer"):
        return upgrade_v0_layer(v1, path, index)
    out = caffe_pb2.LayerParameter()
    out.name = v1.name or f"layer{index}"
    if v1.type not in V1_TYPE_NAMES:
        raise UnsupportedError(f"V1 layer type {caffe_pb2.V1LayerParameter.LayerType.Name(v1.type)} is not supported",
                               path=path, where=f"layer '{out.name}'")
    out.type = V1_TYPE_NAMES[v1.type]
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    out.loss_weight.extend(v1.loss_weight)
    out.blobs.extend(v1.blobs)
    n_params = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(n_params):
        p = out.param.add()
        if i < len(v1.param):
            p.name = v1.param[i]
        if i < len(v1.blobs_lr):
            p.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            p.decay_mult = v1.weight_decay[i]
    for f in _V1_PARAM_FIELDS:
        if v1.HasField(f):
            getattr(out, f).CopyFrom(getattr(v1, f))
    return out


_V0_TYPES = {
    "conv": "Convolution", "pool": "Pooling", "innerproduct": "InnerProduct", "relu": "ReLU",
    "lrn": "LRN", "dropout": "Dropout", "softmax": "Softmax", "concat": "Concat", "data": "Data",
    "tanh": "TanH", "sigmoid": "Sigmoid", "bnll": "BNLL", "flatten": "Flatten", "split": "Split",
    "images": "ImageData", "softmax_loss": "SoftmaxWithLoss", "accuracy": "Accuracy",
    "euclidean_loss": "EuclideanLoss", "multinomial_logistic_loss": "MultinomialLogisticLoss",
    "padding": "V0Padding",  # merged into the next convolution by merge_v0_padding
}


def upgrade_v0_layer(v1, path="<prototxt>", index=0):
    """A V1 wrapper around a V0 layer -> LayerParameter. Covers the layers of the classic vision nets."""
    v0 = v1.layer
    out = caffe_pb2.LayerParameter()
    out.name = v0.name or v1.name or f"layer{index}"
    if v0.type not in _V0_TYPES:
        raise UnsupportedError(f"V0 layer type '{v0.type}' is not supported "
                               f"(supported: {', '.join(sorted(_V0_TYPES))})",
                               path=path, where=f"layer '{out.name}'")
    out.type = _V0_TYPES[v0.type]
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    out.blobs.extend(v0.blobs or v1.blobs)
    t = v0.type
    if t == "conv":
        c = out.convolution_param
        c.num_output = v0.num_output
        c.bias_term = v0.biasterm
        c.kernel_size.append(v0.kernelsize)
        if v0.pad:
            c.pad.append(v0.pad)
        if v0.stride != 1:
            c.stride.append(v0.stride)
        c.group = v0.group
    elif t == "pool":
        p = out.pooling_param
        p.pool = v0.pool
        p.kernel_size.append(v0.kernelsize)
        if v0.pad:
            p.pad.append(v0.pad)
        if v0.stride != 1:
            p.stride.append(v0.stride)
    elif t == "innerproduct":
        out.inner_product_param.num_output = v0.num_output
        out.inner_product_param.bias_term = v0.biasterm
    elif t == "lrn":
        l = out.lrn_param
        l.local_size, l.alpha, l.beta, l.k = v0.local_size, v0.alpha, v0.beta, v0.k
    elif t == "dropout":
        out.dropout_param.dropout_ratio = v0.dropout_ratio
    elif t == "concat":
        out.concat_param.axis = v0.concat_dim
    elif t == "padding":
        out.convolution_param.pad.append(v0.pad)  # carried to the consuming convolution
    elif t in ("data", "images"):
        tp = out.transform_param
        tp.scale = v0.scale
        if v0.meanfile:
            tp.mean_file = v0.meanfile
        tp.crop_size = v0.cropsize
        tp.mirror = v0.mirror
        if t == "data":
            out.data_param.source = v0.source
            out.data_param.batch_size = v0.batchsize
        else:
            out.image_data_param.source = v0.source
            out.image_data_param.batch_size = v0.batchsize
    return out


def merge_v0_padding(layers, path="<prototxt>"):
    """V0 nets padded with separate "padding" layers; fold each into the convolution it feeds."""
    pads = {l.top[0]: l for l in layers if l.type == "V0Padding"}
    if not pads:
        return layers
    out = []
    for l in layers:
        if l.type == "V0Padding":
            continue
        for i, bottom in enumerate(l.bottom):
            if bottom in pads:
                if l.type not in ("Convolution", "Pooling"):
                    raise UnsupportedError(f"a V0 padding layer feeds a {l.type} layer; only convolution and "
                                           f"pooling can absorb it", path=path, where=f"layer '{l.name}'")
                p = pads[bottom]
                param = l.convolution_param if l.type == "Convolution" else l.pooling_param
                del param.pad[:]
                param.pad.append(p.convolution_param.pad[0])
                l.bottom[i] = p.bottom[0]
        out.append(l)
    return out
