"""Scaling of sharded inversion: image-steps per second for 1 and N processes (torchrun), on CPU or GPUs.

A half-width AlexNet (227 x 227, seeded random weights through the Caffe converter) is inverted at conv3
for --images synthetic photographs x 1 seed, --iters iterations, with ``preimage invert --images DIR``
under ``torchrun --nproc_per_node N``. On CPU the cores are split evenly between the processes
(OMP_NUM_THREADS = cores / N), so the comparison is the same machine used two ways; on CUDA each process
takes its own GPU. The rate is counted from the optimisation time each rank reports (start-up, model
loading and the merged report are excluded and printed apart).

    python benchmarks/invert_scale.py                       # CPU: 1 and 2 processes
    python benchmarks/invert_scale.py --device cuda         # 1..N GPUs

Scaling efficiency = rate(N) / ideal. On CUDA the ideal is N x rate(1) (N GPUs); on CPU the processes share
the same cores, so the ideal is rate(1) itself (the machine used as one process or as N). Target >= 0.8.
The last line is JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def build(d):
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.converters.caffe.writer import write_caffemodel
    from preimage.models.architectures import alexnet

    proto = os.path.join(d, "alexnet.prototxt")
    with open(proto, "w") as f:
        f.write(alexnet(width=0.5))
    write_caffemodel(os.path.join(d, "alexnet.caffemodel"), proto)
    convert_caffe(proto, os.path.join(d, "alexnet.caffemodel"), os.path.join(d, "alexnet.onnx"))
    return os.path.join(d, "alexnet.onnx")


def images(d, n):
    import cv2

    folder = os.path.join(d, "images")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):  # smooth random scenes (blurred noise), as photographs are smooth
        img = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3)).astype(np.uint8), (0, 0), 6)
        cv2.imwrite(os.path.join(folder, f"img{i:03d}.png"), cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX))
    return folder


def run(model, folder, out, procs, iters, device, threads):
    cmd = ["-m", "preimage", "invert", "-m", model, "-l", "conv3", "--images", folder, "--iters", str(iters),
           "--set", "fine_iters=0", "-q", "-o", out, "--device", device]
    if procs > 1:
        cmd = ["-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", "29533"] + cmd
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable] + cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(p.stdout + p.stderr)
    m = json.load(open(os.path.join(out, "metrics.json")))
    steps = sum(r["iterations"] for r in m["results"])
    optimise = max(r["seconds"] for r in m["results"])  # the slowest rank's batch
    return steps / optimise, wall, optimise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--procs", type=int, nargs="+", default=None)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    if args.device.startswith("cuda"):
        import torch
        procs = args.procs or list(range(1, torch.cuda.device_count() + 1))
    else:
        procs = args.procs or [1, 2]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        model = build(d)
        folder = images(d, args.images)
        for n in procs:
            threads = max(1, cores // n) if not args.device.startswith("cuda") else 1
            rate, wall, opt = run(model, folder, os.path.join(d, f"out{n}"), n, args.iters, args.device, threads)
            rows.append((n, rate, wall, opt))
            print(f"{n} process(es) x {threads} thread(s): {rate:.2f} image-steps/s "
                  f"(optimisation {opt:.1f} s, command {wall:.1f} s)", flush=True)
    base = rows[0][1]
    n, rate = rows[-1][0], rows[-1][1]
    ideal = base * (n if args.device.startswith("cuda") else 1)
    eff = rate / ideal
    print(f"scaling efficiency at {n} processes: {eff:.2f}")
    print(json.dumps({"name": f"invert_scale_{args.device}_{n}proc", "value": round(rate, 3),
                      "unit": "image-steps/s", "baseline": round(ideal, 3), "ratio": round(eff, 3),
                      "target": 0.8}))


if __name__ == "__main__":
    main()
