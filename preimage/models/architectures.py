"""Known Caffe-era architectures, written as deploy prototxt text.

Each function returns the text of a deploy ``.prototxt`` (``Input`` layer, TEST-phase layers, no loss),
laid out like the published models so that converted models get the published layer names. ``width``
scales every convolution's channel count and ``fc_width`` every hidden fully connected layer (the final
classifier keeps ``num_classes``): narrow variants make fast tests and demos with the real geometry.

    >>> from preimage.models import architectures
    >>> text = architectures.alexnet(width=0.25)
    >>> architectures.ARCHITECTURES
    ('alexnet', 'caffenet', 'vggm', 'posenet')
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


BUILDERS = {"alexnet": alexnet, "caffenet": caffenet, "vggm": vggm, "posenet": posenet}
ARCHITECTURES = tuple(BUILDERS)


def prototxt(name, **kwargs):
    """The prototxt text of a known architecture by name (see ``ARCHITECTURES``)."""
    if name not in BUILDERS:
        raise PreimageError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return BUILDERS[name](**kwargs)
