"""From file to module: ``load_features`` of a full-width AlexNet ONNX vs ``torch.load`` of the same weights.

Writes a full-width AlexNet (seeded random weights, the project's Caffe writer and converter) to a
temporary folder, then times, in one process:

* the first ``load_features(path, ["fc8"])``: the build (parse, prune, convert) plus writing the cache
  beside the file (``preimage/converters/onnx_torch/cache.py``);
* a build without the cache (``cache=False``);
* later ``load_features`` calls (read back from the cache), interleaved with ``torch.load`` of the
  extractor's state dict saved with ``torch.save``; the best of --repeats each.

    python benchmarks/load.py
    python benchmarks/load.py --repeats 5

The last line is JSON: value = cached ``load_features`` seconds, baseline = ``torch.load`` seconds,
ratio = value / baseline (target <= 2).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step import converted_alexnet  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layer", default="fc8")
    args = ap.parse_args(argv)
    from preimage.converters.onnx_torch.load import load_features

    with tempfile.TemporaryDirectory() as tmp:
        path = converted_alexnet(tmp)
        first = timed(lambda: load_features(path, [args.layer]))
        build = timed(lambda: load_features(path, [args.layer], cache=False))
        weights = os.path.join(tmp, "weights.pt")
        torch.save(load_features(path, [args.layer]).state_dict(), weights)
        cached, plain = [], []
        for _ in range(args.repeats):
            cached.append(timed(lambda: load_features(path, [args.layer])))
            plain.append(timed(lambda: torch.load(weights)))
        size = os.path.getsize(weights) / 1e6
    value, baseline = min(cached), min(plain)
    print(f"AlexNet to {args.layer}, {size:.0f} MB of weights; torch threads {torch.get_num_threads()}")
    print(f"first load_features (build + write cache) {first:.2f} s; build without cache {build:.2f} s")
    print(f"cached load_features {value:.3f} s (all: {', '.join(f'{t:.3f}' for t in cached)}); torch.load "
          f"{baseline:.3f} s (all: {', '.join(f'{t:.3f}' for t in plain)}); ratio {value / baseline:.2f}")
    print(json.dumps({"name": f"load_features_alexnet_{args.layer}_cached", "value": round(value, 4), "unit": "s",
                      "baseline": round(baseline, 4), "ratio": round(value / baseline, 3), "target": 2.0,
                      "first_load_s": round(first, 3), "build_s": round(build, 3)}))


if __name__ == "__main__":
    main()
