"""Sweep speed: inversion trials per second, batched (all trials in one optimisation, the batched-trials
API) against sequential (one api.invert run per trial), on the same model, images and parameter sets.

PoseNet architecture (seeded random weights via the Caffe converter, --width of the channels, --size
input), layer conv4, posenet2016 preset, --trials learning rates log-uniform in [1e-1, 1e2] (the same
values for both), --iters steps each, one image. The model is opened once for both.

    python benchmarks/sweep.py                          # CPU, 16 trials
    python benchmarks/sweep.py --device cuda --trials 64 --width 1 --iters 100

The last line is JSON: value = batched trials/s, baseline = sequential trials/s, ratio = speed-up
(target >= 4 on CPU at 16 trials).
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np


def build(width, size, d):
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.converters.caffe.writer import write_caffemodel
    from preimage.models import architectures

    proto = os.path.join(d, "posenet.prototxt")
    with open(proto, "w") as f:
        f.write(architectures.posenet(width=width, input_size=size))
    write_caffemodel(os.path.join(d, "posenet.caffemodel"), proto)
    out = os.path.join(d, "posenet.onnx")
    convert_caffe(proto, os.path.join(d, "posenet.caffemodel"), out)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--layer", default="conv4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="take the best of this many timings of each")
    args = ap.parse_args()

    from preimage.models import samples
    from preimage.sweep import Target, has_batched_trials, run_trials

    if not has_batched_trials():
        raise SystemExit("this preimage has no batched-trials API (api.invert(..., trials=...)): nothing to compare")
    rng = np.random.default_rng(0)
    params = [{"lr": float(10 ** rng.uniform(-1, 2))} for _ in range(args.trials)]
    with tempfile.TemporaryDirectory() as d:
        model = build(args.width, args.size, d)
        target = Target("invert", model, [args.layer], images=samples.paths()[:1], preset="posenet2016",
                        iters=args.iters, overrides={"fine_iters": 0}, device=args.device).open()
        run_trials(target, params[:2], batched=True)  # warm-up (allocator, oneDNN kernels)
        tb, tq = [], []
        for _ in range(args.repeats):
            t, (pb, _, _) = timed(lambda: run_trials(target, params, batched=True))
            tb.append(t)
            t, (ps, _, _) = timed(lambda: run_trials(target, params, batched=False))
            tq.append(t)
    worst = max(abs(a[0]["relative_loss"] - b[0]["relative_loss"]) for a, b in zip(pb, ps))
    batched, sequential = args.trials / min(tb), args.trials / min(tq)
    print(f"model posenet width {args.width} at {args.size}x{args.size}, layer {args.layer}, {args.iters} steps, "
          f"{args.trials} trials, device {args.device}")
    print(f"batched    {min(tb):8.2f} s  {batched:8.2f} trials/s  {1000 * min(tb) / args.trials:8.1f} ms/trial")
    print(f"sequential {min(tq):8.2f} s  {sequential:8.2f} trials/s  {1000 * min(tq) / args.trials:8.1f} ms/trial")
    print(f"speed-up {batched / sequential:.2f}x; largest relative-loss difference batched vs sequential {worst:.2e}")
    print(json.dumps({"name": f"sweep_posenet_{args.layer}_{args.trials}trials_{args.device}", "value": round(batched, 3),
                      "unit": "trials/s", "baseline": round(sequential, 3), "ratio": round(batched / sequential, 3),
                      "target": 4.0}))


if __name__ == "__main__":
    main()
