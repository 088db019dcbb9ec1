"""Known Caffe-era architectures, written as deploy prototxt text.

Each function returns the text of a deploy ``.prototxt`` (``Input`` layer, TEST-phase layers, no loss),
laid out like the published models so that converted models get the published layer names. ``width``
scales every convolution's channel count and ``fc_width`` every hidden fully connected layer (the final
classifier keeps ``num_classes``): narrow variants make fast tests and demos with the real geometry.

    >>> from preimage.models import architectures
    >>> text = architectures.alexnet(width=0.25)
    >>> architectures.ARCHITECTURES
    ('alexnet', 'caffenet', 'vggm', 'posenet', 'googlenet')
"""
from ..errors import PreimageError


def _n(channels, width, multiple=1):
    """Scaled channel count, a positive multiple of ``multiple`` (groups need divisible counts)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


# ---- one function per layer kind; each returns one prototxt `layer { ... }` block -----------------
def input_layer(name, shape):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}'


def conv(name, bottom, num_output, kernel, stride=1, pad=0, group=1):
    extra = (f" stride: {stride}" if stride != 1 else "") + (f" pad: {pad}" if pad else "") + (f" group: {group}" if group != 1 else "")
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f'  convolution_param {{ num_output: {num_output} kernel_size: {kernel}{extra} }} }}')


def relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}'


def lrn(name, bottom, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    k_text = f" k: {k:g}" if k != 1.0 else ""
    return (f'layer {{ name: "{name}" type: "LRN" bottom: "{bottom}" top: "{name}"\n'
            f'  lrn_param {{ local_size: {local_size} alpha: {alpha:g} beta: {beta:g}{k_text} }} }}')


def max_pool(name, bottom, kernel, stride):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}"\n'
            f'  pooling_param {{ pool: MAX kernel_size: {kernel} stride: {stride} }} }}')


def inner_product(name, bottom, num_output):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}"\n'
            f'  inner_product_param {{ num_output: {num_output} }} }}')


def dropout(name, blob, ratio=0.5):
    return (f'layer {{ name: "{name}" type: "Dropout" bottom: "{blob}" top: "{blob}"\n'
            f'  dropout_param {{ dropout_ratio: {ratio:g} }} }}')


def softmax(name, bottom):
    return f'layer {{ name: "{name}" type: "Softmax" bottom: "{bottom}" top: "{name}" }}'


def _net(name, layers, comment):
    return f"# {comment}\nname: \"{name}\"\n" + "\n".join(layers) + "\n"


def _classifier(bottom, fc_width, num_classes, first=6):
    """fc6 -> relu -> dropout -> fc7 -> relu -> dropout -> fc8 -> prob (AlexNet / VGG-M head)."""
    a, b, c = (f"fc{first}", f"fc{first + 1}", f"fc{first + 2}")
    h = _n(4096, fc_width)
    return [
        inner_product(a, bottom, h), relu(f"relu{first}", a), dropout(f"drop{first}", a),
        inner_product(b, a, h), relu(f"relu{first + 1}", b), dropout(f"drop{first + 1}", b),
        inner_product(c, b, num_classes), softmax("prob", c),
    ]


def alexnet(width=1.0, fc_width=None, num_classes=1000, input_size=227, batch=1):
    """BVLC AlexNet (Krizhevsky et al. 2012) in Caffe's deploy order: conv, ReLU, LRN, pool."""
    fc_width = width if fc_width is None else fc_width
    c1, c2, c3, c4, c5 = (_n(96, width, 2), _n(256, width, 2), _n(384, width, 2), _n(384, width, 2), _n(256, width, 2))
    layers = [
        input_layer("data", (batch, 3, input_size, input_size)),
        conv("conv1", "data", c1, 11, stride=4), relu("relu1", "conv1"),
        lrn("norm1", "conv1"), max_pool("pool1", "norm1", 3, 2),
        conv("conv2", "pool1", c2, 5, pad=2, group=2), relu("relu2", "conv2"),
        lrn("norm2", "conv2"), max_pool("pool2", "norm2", 3, 2),
        conv("conv3", "pool2", c3, 3, pad=1), relu("relu3", "conv3"),
        conv("conv4", "conv3", c4, 3, pad=1, group=2), relu("relu4", "conv4"),
        conv("conv5", "conv4", c5, 3, pad=1, group=2), relu("relu5", "conv5"),
        max_pool("pool5", "conv5", 3, 2),
    ] + _classifier("pool5", fc_width, num_classes)
    return _net("AlexNet", layers, f"AlexNet (BVLC deploy layout), conv width x{width:g}, fc width x{fc_width:g}")


def caffenet(width=1.0, fc_width=None, num_classes=1000, input_size=227, batch=1):
    """BVLC CaffeNet: AlexNet with pooling before normalisation."""
    fc_width = width if fc_width is None else fc_width
    c1, c2, c3, c4, c5 = (_n(96, width, 2), _n(256, width, 2), _n(384, width, 2), _n(384, width, 2), _n(256, width, 2))
    layers = [
        input_layer("data", (batch, 3, input_size, input_size)),
        conv("conv1", "data", c1, 11, stride=4), relu("relu1", "conv1"),
        max_pool("pool1", "conv1", 3, 2), lrn("norm1", "pool1"),
        conv("conv2", "norm1", c2, 5, pad=2, group=2), relu("relu2", "conv2"),
        max_pool("pool2", "conv2", 3, 2), lrn("norm2", "pool2"),
        conv("conv3", "norm2", c3, 3, pad=1), relu("relu3", "conv3"),
        conv("conv4", "conv3", c4, 3, pad=1, group=2), relu("relu4", "conv4"),
        conv("conv5", "conv4", c5, 3, pad=1, group=2), relu("relu5", "conv5"),
        max_pool("pool5", "conv5", 3, 2),
    ] + _classifier("pool5", fc_width, num_classes)
    return _net("CaffeNet", layers, f"CaffeNet (BVLC reference), conv width x{width:g}, fc width x{fc_width:g}")


def vggm(width=1.0, fc_width=None, num_classes=1000, input_size=224, batch=1):
    """VGG-M (Chatfield et al. 2014): 7x7/2 conv1, LRN with k = 2, strided conv2."""
    fc_width = width if fc_width is None else fc_width
    c1, c2, c3 = _n(96, width), _n(256, width), _n(512, width)
    norm = dict(local_size=5, alpha=5e-4, beta=0.75, k=2.0)
    layers = [
        input_layer("data", (batch, 3, input_size, input_size)),
        conv("conv1", "data", c1, 7, stride=2), relu("relu1", "conv1"),
        lrn("norm1", "conv1", **norm), max_pool("pool1", "norm1", 3, 2),
        conv("conv2", "pool1", c2, 5, stride=2, pad=1), relu("relu2", "conv2"),
        lrn("norm2", "conv2", **norm), max_pool("pool2", "norm2", 3, 2),
        conv("conv3", "pool2", c3, 3, pad=1), relu("relu3", "conv3"),
        conv("conv4", "conv3", c3, 3, pad=1), relu("relu4", "conv4"),
        conv("conv5", "conv4", c3, 3, pad=1), relu("relu5", "conv5"),
        max_pool("pool5", "conv5", 3, 2),
    ] + _classifier("pool5", fc_width, num_classes)
    return _net("VGG_CNN_M", layers, f"VGG-M, conv width x{width:g}, fc width x{fc_width:g}")


def posenet(width=1.0, fc_width=None, input_size=101, batch=1):
    """The PoseNet tower of the street-view pose models (Zamir et al. 2016): fc5 is the descriptor."""
    fc_width = width if fc_width is None else fc_width
    d = _n(500, fc_width)
    layers = [
        input_layer("data", (batch, 3, input_size, input_size)),
        conv("conv1", "data", _n(20, width), 7), relu("relu1", "conv1"), max_pool("pool1", "conv1", 2, 2),
        conv("conv2", "pool1", _n(40, width), 5, pad=2), relu("relu2", "conv2"), max_pool("pool2", "conv2", 2, 2),
        conv("conv3", "pool2", _n(80, width), 4), relu("relu3", "conv3"), max_pool("pool3", "conv3", 2, 2),
        conv("conv4", "pool3", _n(160, width), 4, stride=2), relu("relu4", "conv4"), max_pool("pool4", "conv4", 2, 2),
        inner_product("fc5", "pool4", d), relu("relu5", "fc5"),
        inner_product("fc6", "fc5", d), relu("relu6", "fc6"),
    ]
    return _net("PoseNet", layers, f"PoseNet tower, conv width x{width:g}, fc width x{fc_width:g}")


# ---- GoogLeNet (BVLC's bvlc_googlenet deploy net) ------------------------------------------------------
def _conv_relu(name, bottom, num_output, kernel, relu_name, stride=1, pad=0):
    return [conv(name, bottom, num_output, kernel, stride, pad), relu(relu_name, name)]


def _pool(name, bottom, kernel, stride, pad=0, method="MAX"):
    extra = f" pad: {pad}" if pad else ""
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}"\n'
            f'  pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride}{extra} }} }}')


def _inception(name, bottom, widths, width):
    """One inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1, concatenated."""
    c1, r3, c3, r5, c5, pp = (_n(c, width) for c in widths)
    p = f"inception_{name}"
    layers = _conv_relu(f"{p}/1x1", bottom, c1, 1, f"{p}/relu_1x1")
    layers += _conv_relu(f"{p}/3x3_reduce", bottom, r3, 1, f"{p}/relu_3x3_reduce")
    layers += _conv_relu(f"{p}/3x3", f"{p}/3x3_reduce", c3, 3, f"{p}/relu_3x3", pad=1)
    layers += _conv_relu(f"{p}/5x5_reduce", bottom, r5, 1, f"{p}/relu_5x5_reduce")
    layers += _conv_relu(f"{p}/5x5", f"{p}/5x5_reduce", c5, 5, f"{p}/relu_5x5", pad=2)
    layers.append(_pool(f"{p}/pool", bottom, 3, 1, pad=1))
    layers += _conv_relu(f"{p}/pool_proj", f"{p}/pool", pp, 1, f"{p}/relu_pool_proj")
    tops = " ".join(f'bottom: "{p}/{b}"' for b in ("1x1", "3x3", "5x5", "pool_proj"))
    layers.append(f'layer {{ name: "{p}/output" type: "Concat" {tops} top: "{p}/output" }}')
    return layers


_GOOGLENET_MODULES = [("3a", (64, 96, 128, 16, 32, 32)), ("3b", (128, 128, 192, 32, 96, 64)), "pool3",
                      ("4a", (192, 96, 208, 16, 48, 64)), ("4b", (160, 112, 224, 24, 64, 64)),
                      ("4c", (128, 128, 256, 24, 64, 64)), ("4d", (112, 144, 288, 32, 64, 64)),
                      ("4e", (256, 160, 320, 32, 128, 128)), "pool4",
                      ("5a", (256, 160, 320, 32, 128, 128)), ("5b", (384, 192, 384, 48, 128, 128))]


def _ceil_pool_size(size, k, s):
    return -(-(size - k) // s) + 1


def googlenet(width=1.0, num_classes=1000, input_size=224, batch=1):
    """BVLC GoogLeNet (Szegedy et al. 2015) deploy net with its published layer names
    (conv1/7x7_s2 ... inception_4e/output ... loss3/classifier, prob). pool5 averages the whole last map
    (7 x 7 at 224 px), so smaller inputs work too."""
    layers = [input_layer("data", [batch, 3, input_size, input_size])]
    layers += _conv_relu("conv1/7x7_s2", "data", _n(64, width), 7, "conv1/relu_7x7", stride=2, pad=3)
    layers.append(_pool("pool1/3x3_s2", "conv1/7x7_s2", 3, 2))
    layers.append(lrn("pool1/norm1", "pool1/3x3_s2"))
    layers += _conv_relu("conv2/3x3_reduce", "pool1/norm1", _n(64, width), 1, "conv2/relu_3x3_reduce")
    layers += _conv_relu("conv2/3x3", "conv2/3x3_reduce", _n(192, width), 3, "conv2/relu_3x3", pad=1)
    layers.append(lrn("conv2/norm2", "conv2/3x3"))
    layers.append(_pool("pool2/3x3_s2", "conv2/norm2", 3, 2))
    size = _ceil_pool_size(_ceil_pool_size((input_size + 6 - 7) // 2 + 1, 3, 2), 3, 2)
    bottom = "pool2/3x3_s2"
    for item in _GOOGLENET_MODULES:
        if isinstance(item, str):
            layers.append(_pool(f"{item}/3x3_s2", bottom, 3, 2))
            bottom = f"{item}/3x3_s2"
            size = _ceil_pool_size(size, 3, 2)
            continue
        layers += _inception(item[0], bottom, item[1], width)
        bottom = f"inception_{item[0]}/output"
    layers.append(_pool("pool5/7x7_s1", bottom, size, 1, method="AVE"))
    layers.append(dropout("pool5/drop_7x7_s1", "pool5/7x7_s1", 0.4))
    layers.append(inner_product("loss3/classifier", "pool5/7x7_s1", num_classes))
    layers.append(softmax("prob", "loss3/classifier"))
    return _net("GoogleNet", layers, f"GoogLeNet (BVLC deploy layout), width {width:g}, {input_size} px input")


BUILDERS = {"alexnet": alexnet, "caffenet": caffenet, "vggm": vggm, "posenet": posenet, "googlenet": googlenet}
ARCHITECTURES = tuple(BUILDERS)


def prototxt(name, **kwargs):
    """The prototxt text of a known architecture by name (see ``ARCHITECTURES``)."""
    if name not in BUILDERS:
        raise PreimageError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return BUILDERS[name](**kwargs)
