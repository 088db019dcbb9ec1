"""Build the Caffe-forks corpus (tests/converters/caffe/forks/) and its reference outputs from OpenCV 4.

    python tools/caffe_forks_reference.py                      # all nets, into tests/converters/caffe/forks
    python tools/caffe_forks_reference.py --out DIR --venv /tmp/cv4 --nets ssd,interp

Step 1 (the project's Python): each net's ``net.prototxt``, ``net.caffemodel`` (seeded random weights by
the project's caffemodel writer) and ``inputs.npz``; where OpenCV lacks a fork's layer, an
``opencv.prototxt`` computing the same thing with layers OpenCV has (listed in ``meta.json``).
Step 2: a virtual environment with ``opencv-python-headless<5`` and numpy (made once; the 5.x that the
project installs has no Caffe importer any more). Step 3 (this file again, run by the venv's Python with
``--opencv``, importing only cv2 and numpy): every layer's own output through ``cv2.dnn`` (OpenCV's
``forward(name)`` returns a layer's output before any in-place layer after it) -> ``layers.npz``.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "tests", "converters", "caffe", "forks")


def _input(shape):
    return 'name: "net"\ninput: "data"\ninput_shape { ' + " ".join(f"dim: {d}" for d in shape) + " }\n"


def _conv(name, bottom, n, k=3, pad=1, stride=1, kind="Convolution", group=None):
    g = f" group: {group}" if group else ""
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{name}"\n'
            f'  convolution_param {{ num_output: {n} kernel_size: {k} pad: {pad} stride: {stride}{g} }} }}\n')


def _relu(name, blob, kind="ReLU"):
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{blob}" top: "{blob}" }}\n'


def _layer(name, kind, bottoms, body="", tops=None):
    bs = " ".join(f'bottom: "{b}"' for b in bottoms)
    ts = " ".join(f'top: "{t}"' for t in (tops or [name]))
    return f'layer {{ name: "{name}" type: "{kind}" {bs} {ts} {body} }}\n'


def _nets():
    """{name: (prototxt text, opencv text or None, note)}: one net per layer family, and an SSD head."""
    nets = {}
    t = _input([1, 3, 12, 14]) + _conv("conv1", "data", 8) + _relu("relu1", "conv1")
    t += _layer("norm_c", "Normalize", ["conv1"], "norm_param { across_spatial: false channel_shared: false }")
    t += _layer("norm_s", "Normalize", ["conv1"], "norm_param { across_spatial: true channel_shared: true eps: 1e-6 }")
    nets["normalize"] = (t, None, "")
    t = _input([1, 3, 9, 11]) + _conv("conv1", "data", 6)
    t += _layer("zoom", "Interp", ["conv1"], "interp_param { zoom_factor: 3 }")
    t += _layer("sized", "Interp", ["conv1"], "interp_param { height: 7 width: 17 }")
    # OpenCV 4 ignores pad_beg / pad_end and refuses shrink_factor and a second bottom: those cases are
    # tested against a NumPy transcription of DeepLab's caffe_cpu_interp2 (tests/converters/caffe)
    nets["interp"] = (t, None, "")
    pool = _layer("pool1", "Pooling", ["conv1"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
                  tops=["pool1", "pool1_mask"])
    t = _input([1, 3, 9, 11]) + _conv("conv1", "data", 4) + _relu("relu1", "conv1") + pool
    t += _layer("upsample1", "Upsample", ["pool1", "pool1_mask"], "upsample_param { scale: 2 upsample_h: 9 upsample_w: 11 }")
    nets["segnet_upsample"] = (t, t.split('layer { name: "upsample1"')[0],
                               "OpenCV has no Upsample: its reference is SegNet's scatter (top[mask[i]] = "
                               "bottom[i]) written in NumPy over OpenCV's pool1 and pool1_mask")
    t = _input([1, 3, 8, 10]) + _conv("conv1", "data", 6)
    t += _layer("bn_inf", "BN", ["conv1"], "bn_param { bn_mode: INFERENCE }")
    t += _layer("bn_learn", "BN", ["conv1"], "bn_param { bn_mode: LEARN }")
    cv = _input([1, 3, 8, 10]) + _conv("conv1", "data", 6)
    cv += _layer("bn_inf", "Scale", ["conv1"], "scale_param { bias_term: true }")
    cv += _layer("bn_learn/mvn", "MVN", ["conv1"], "mvn_param { normalize_variance: true eps: 1e-9 }")
    cv += _layer("bn_learn", "Scale", ["bn_learn/mvn"], "scale_param { bias_term: true }")
    nets["segnet_bn"] = (t, cv, "OpenCV has no BN: INFERENCE as Scale (scale, shift), LEARN as MVN (one sample: "
                                "the batch statistics; eps on the std, 1e-9) + Scale")
    t = _input([1, 4, 10, 10]) + _conv("conv1", "data", 8)
    t += _conv("dw1", "conv1", 8, kind="ConvolutionDepthwise", group=8) + _relu("relu6_1", "dw1", "ReLU6")
    t += _conv("dw2", "dw1", 16, stride=2, kind="DepthwiseConvolution", group=8) + _relu("relu6_2", "dw2", "ReLU6")
    nets["depthwise"] = (t, t.replace('"DepthwiseConvolution"', '"Convolution"'),
                         "OpenCV has no DepthwiseConvolution: the reference runs it as the grouped Convolution it is")
    t = _input([1, 3, 6, 8]) + _conv("conv1", "data", 12)
    t += _layer("shuffle2", "ShuffleChannel", ["conv1"], "shuffle_channel_param { group: 2 }")
    t += _layer("shuffle3", "ShuffleChannel", ["shuffle2"], "shuffle_channel_param { group: 3 }")
    nets["shufflechannel"] = (t, None, "")
    t = _input([1, 3, 8, 8]) + _conv("conv1", "data", 8) + _conv("conv2", "conv1", 8)
    t += _layer("squeeze", "Pooling", ["conv2"], "pooling_param { pool: AVE global_pooling: true }")
    t += _conv("excite", "squeeze", 8, k=1, pad=0)
    t += _layer("gate", "Sigmoid", ["excite"])
    t += _layer("axpy", "Axpy", ["gate", "conv2", "conv1"])
    # SENet's AxpyLayer computes bottom0 * bottom1 + bottom2; OpenCV 4's importer builds
    # bottom0 * bottom2 + bottom1, so its reference net lists bottoms 1 and 2 swapped
    nets["axpy"] = (t, t.replace('bottom: "conv2" bottom: "conv1"', 'bottom: "conv1" bottom: "conv2"'),
                    "OpenCV 4 scales bottom 2 where SENet scales bottom 1: the reference net swaps them")
    t = _input([1, 3, 8, 12]) + _conv("conv1", "data", 8)
    t += _layer("reorg", "Reorg", ["conv1"], "reorg_param { stride: 2 }")
    nets["reorg"] = (t, None, "")
    nets["ssd"] = (_ssd(), None, "DetectionOutput is left out by preimage; OpenCV runs it, its output is not compared")
    return nets


def _ssd():
    """A small VGG-like trunk with an SSD head on two maps (conv4_3 normalized, fc7)."""
    t = _input([1, 3, 32, 32])
    t += _conv("conv1_1", "data", 8) + _relu("relu1_1", "conv1_1")
    t += _layer("pool1", "Pooling", ["conv1_1"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    t += _conv("conv2_1", "pool1", 12) + _relu("relu2_1", "conv2_1")
    t += _layer("pool2", "Pooling", ["conv2_1"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    t += _conv("conv4_3", "pool2", 16) + _relu("relu4_3", "conv4_3")
    t += _layer("pool4", "Pooling", ["conv4_3"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    t += _conv("fc7", "pool4", 16, k=1, pad=0) + _relu("relu7", "fc7")
    t += _layer("conv4_3_norm", "Normalize", ["conv4_3"],
                "norm_param { across_spatial: false channel_shared: false scale_filler { type: \"constant\" value: 20 } }")
    heads, priors = {"loc": [], "conf": []}, []
    for src, (mn, mx) in (("conv4_3_norm", (6, 12)), ("fc7", (12, 20))):
        nprior = 4  # aspect ratios 1, 2, 1/2 and the max size
        for kind, per in (("loc", 4), ("conf", 3)):
            name = f"{src}_mbox_{kind}"
            t += _conv(name, src, nprior * per)
            t += _layer(f"{name}_perm", "Permute", [name], "permute_param { order: 0 order: 2 order: 3 order: 1 }")
            t += _layer(f"{name}_flat", "Flatten", [f"{name}_perm"], "flatten_param { axis: 1 }")
            heads[kind].append(f"{name}_flat")
        t += _layer(f"{src}_mbox_priorbox", "PriorBox", [src, "data"],
                    f"prior_box_param {{ min_size: {mn} max_size: {mx} aspect_ratio: 2 flip: true clip: false "
                    "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5 }")
        priors.append(f"{src}_mbox_priorbox")
    t += _layer("mbox_loc", "Concat", heads["loc"], "concat_param { axis: 1 }")
    t += _layer("mbox_conf", "Concat", heads["conf"], "concat_param { axis: 1 }")
    t += _layer("mbox_priorbox", "Concat", priors, "concat_param { axis: 2 }")
    t += _layer("mbox_conf_reshape", "Reshape", ["mbox_conf"], "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }")
    t += _layer("mbox_conf_softmax", "Softmax", ["mbox_conf_reshape"], "softmax_param { axis: 2 }")
    t += _layer("mbox_conf_flatten", "Flatten", ["mbox_conf_softmax"], "flatten_param { axis: 1 }")
    t += _layer("detection_out", "DetectionOutput", ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"],
                "detection_output_param { num_classes: 3 share_location: true background_label_id: 0 "
                "nms_param { nms_threshold: 0.45 top_k: 20 } code_type: CENTER_SIZE keep_top_k: 10 "
                "confidence_threshold: 0.01 }")
    return t


INPUT_SPAN = {"depthwise": 6.0}  # inputs uniform in (-span, span): ReLU6 must meet values above 6


def build(out, names):
    """Step 1: prototxt, caffemodel, inputs and meta for each net (needs the project installed)."""
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    from preimage.converters.caffe.writer import write_caffemodel

    nets = _nets()
    for name in names:
        text, cv, note = nets[name]
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "net.prototxt"), "w") as f:
            f.write(text)
        if cv is not None:
            with open(os.path.join(d, "opencv.prototxt"), "w") as f:
                f.write(cv)
        write_caffemodel(os.path.join(d, "net.caffemodel"), os.path.join(d, "net.prototxt"), seed=7)
        shape = [int(v) for v in text.split("input_shape {")[1].split("}")[0].replace("dim:", " ").split()]
        rng = np.random.default_rng(2026)
        span = INPUT_SPAN.get(name, 1.0)
        np.savez(os.path.join(d, "inputs.npz"), data=rng.uniform(-span, span, shape).astype(np.float32))
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump({"name": name, "note": note, "weights": "preimage writer, seed 7",
                       "input": f"uniform(-{span:g}, {span:g}), seed 2026"}, f, indent=1)


def ensure_venv(venv):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "opencv-python-headless<5", "numpy"], check=True)
    return py


# ---- step 3: runs in the OpenCV 4 venv (cv2 and numpy only) --------------------------------------------
def _segnet_scatter(pooled, mask, out_hw):
    """SegNet's UpsampleLayer::Forward_cpu: in each plane, top[mask[i]] = bottom[i], zero elsewhere."""
    import numpy as np

    n, c = pooled.shape[:2]
    top = np.zeros((n, c, out_hw[0] * out_hw[1]), np.float32)
    for i in range(n):
        for j in range(c):
            top[i, j, mask[i, j].astype(np.int64).ravel()] = pooled[i, j].ravel()
    return top.reshape(n, c, *out_hw)


def opencv_reference(out, names):
    import cv2
    import numpy as np

    for name in names:
        d = os.path.join(out, name)
        proto = os.path.join(d, "opencv.prototxt")
        if not os.path.exists(proto):
            proto = os.path.join(d, "net.prototxt")
        net = cv2.dnn.readNetFromCaffe(proto, os.path.join(d, "net.caffemodel"))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        x = np.load(os.path.join(d, "inputs.npz"))["data"]
        import re

        with open(os.path.join(d, "net.prototxt")) as f:  # OpenCV adds layers of its own (e.g. "axpy/scale")
            declared = set(re.findall(r'layer \{ name: "([^"]+)"', f.read()))
        layers = [n for n in net.getLayerNames() if n in declared]
        net.setInput(x)
        outs = net.forwardAndRetrieve(layers)
        ref = {}
        for lname, got in zip(layers, outs):
            if len(got) == 1:
                ref[lname] = np.asarray(got[0], np.float32)
            else:  # several tops: <layer>/<top> as the converter names them; OpenCV lists them in order
                tops = _tops(os.path.join(d, "net.prototxt"), lname)
                for top, g in zip(tops, got):
                    ref[f"{lname}/{top}"] = np.asarray(g, np.float32)
        if name == "segnet_upsample":
            ref["upsample1"] = _segnet_scatter(ref["pool1/pool1"], ref["pool1/pool1_mask"], (9, 11))
        np.savez_compressed(os.path.join(d, "layers.npz"), **ref)
        meta_path = os.path.join(d, "meta.json")
        with open(meta_path) as f:
            meta = json.load(f)
        meta["source"] = f"OpenCV {cv2.__version__} dnn Caffe importer (CPU), layers' own outputs"
        meta["layers"] = sorted(ref)
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=1)
        print(f"{name}: {len(ref)} layer outputs")


def _tops(prototxt, layer):
    import re

    text = open(prototxt).read()
    m = re.search(r'layer \{ name: "' + re.escape(layer) + r'"(.*?)\}\n', text, re.S)
    return re.findall(r'top: "([^"]+)"', m.group(1)) if m else []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="corpus folder (default: tests/converters/caffe/forks)")
    ap.add_argument("--venv", default="/tmp/cv4", help="where the OpenCV 4 venv is (made if absent)")
    ap.add_argument("--nets", default=None, help="comma-separated subset of the nets")
    ap.add_argument("--opencv", action="store_true", help="(internal) step 3, run by the venv's Python")
    a = ap.parse_args(argv)
    names = a.nets.split(",") if a.nets else list(_nets())
    if a.opencv:
        opencv_reference(a.out, names)
        return
    build(a.out, names)
    py = ensure_venv(a.venv)
    subprocess.run([py, os.path.abspath(__file__), "--opencv", "--out", a.out, "--nets", ",".join(names)],
                   check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


if __name__ == "__main__":
    main()
