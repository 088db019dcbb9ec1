"""Activation maximization side by side with Lucent (torch-lucent): steps per second, three ways.

One channel of full-width AlexNet (seeded random weights, converted from Caffe to ONNX by preimage),
its centre unit maximised for a batch of images at the network's size (227 x 227), pixels as the
parameters (no FFT, no colour decorrelation), and the same jitter: each image is a canvas T - 1 pixels
larger than the input, and every step a random T x T offset crops it (T from the layer's stride, as
preimage chooses it). Lucent's steps use its own loop (``render_vis``), objective (``neuron``) and
Adam; preimage's use the mahendran2016 preset (which also computes its two regularizers every step).

1. Lucent driving onnx2torch's plain conversion of the same ONNX (the module a user has without
   preimage: the whole graph, up to the softmax, runs every step);
2. Lucent driving preimage's module (``load_features(onnx, [layer])``: pruned to the layer);
3. preimage itself (``preimage.invert.api.maximize``). Its step runs the network on the unit's
   receptive field only (99 x 99 of 227 x 227 at relu3; ``preimage.invert.window``, checked at set-up
   to give the whole input's values and gradients), which Lucent, hooking a module, cannot know to do;
4. preimage with that window off (``window=False``): the same step on the whole input, for the
   share of the gain that is the window's. A channel objective (the mean over all locations) has no
   such window, so it gets this rate.

A rate is (2k - k) steps over the time difference of a 2k-step and a k-step run (set-up cancels), the
best of --repeats; the three ways are interleaved, so that load from other processes hits them alike.
The same rates in process time (``time.process_time``, the steadier figure on a shared machine with one
thread) are printed beside them and kept in the JSON line as ``*_cpu_time``.

    python benchmarks/vs_lucent.py                  # conv3 (its ReLU output), batch 8, CPU
    python benchmarks/vs_lucent.py --layer relu5 --batch 4 --steps 2

Installs nothing: torch-lucent is in the ``bench`` extra of setup.cfg; without it the script says so
and exits 0. The last line is JSON: value = preimage's steps/s, baseline = Lucent on onnx2torch's
module, ratio = value / baseline (target >= 2; ``ratio_vs_lucent_on_preimage_module``: target >= 1.3).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def build_onnx(folder):
    """The ONNX file, written by a child process so that this one has not installed preimage's converters
    in onnx2torch's registry before the plain conversion."""
    code = f"import sys; sys.path.insert(0, {HERE!r}); from step import converted_alexnet; print(converted_alexnet({folder!r}))"
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()[-1]


def crop_jitter(size, T, seed):
    """A Lucent transform: per-image random crops of ``size`` from a canvas ``T - 1`` larger."""
    g = torch.Generator().manual_seed(seed)
    H, W = size

    def inner(canvas):
        offsets = torch.randint(0, T, (canvas.shape[0], 2), generator=g).tolist()
        return torch.cat([canvas[i:i + 1, :, dy:dy + H, dx:dx + W] for i, (dy, dx) in enumerate(offsets)])

    return inner


def lucent_rate_fn(model, hook_name, unit, batch, size, T):
    from lucent.optvis import objectives, render

    def run(steps):
        canvas = (torch.randn(batch, 3, size[0] + T - 1, size[1] + T - 1) * 0.01).requires_grad_()
        t, c = time.perf_counter(), time.process_time()
        render.render_vis(model, objectives.neuron(hook_name, unit), param_f=lambda: ([canvas], lambda: canvas),
                          optimizer=lambda p: torch.optim.Adam(p, lr=0.05), transforms=[crop_jitter(size, T, 0)],
                          thresholds=(steps,), preprocess=False, progress=False, show_image=False)
        seconds = time.perf_counter() - t, time.process_time() - c
        for m in model.modules():  # render_vis leaves its hooks on every module: remove them
            m._forward_hooks.clear()
        return seconds

    return run


def preimage_rate_fn(path, layer, unit, batch, window=True):
    from preimage.invert import api

    def run(steps):
        t, c = time.perf_counter(), time.process_time()
        api.maximize(path, [layer], [unit], seeds=batch, iters=steps, overrides={"fine_iters": 0}, device="cpu",
                     batch_size=batch, progress=False, window=window)
        return time.perf_counter() - t, time.process_time() - c

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", default="relu3", help="ONNX value (default relu3: conv3 after its ReLU)")
    ap.add_argument("--unit", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="k: rates from runs of 2k and k steps")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        import lucent  # noqa: F401
        from lucent.optvis import render  # noqa: F401
    except ImportError as e:
        print(f"torch-lucent is not installed ({e}); pip install -e '.[bench]'. Skipping.")
        print(json.dumps({"name": "maximize_vs_lucent", "value": None, "unit": "steps/s", "baseline": None,
                          "ratio": None, "target": 2.0, "skipped": "torch-lucent not installed"}))
        return
    import onnx2torch

    with tempfile.TemporaryDirectory() as tmp:
        path = build_onnx(tmp)
        assert "preimage.converters.onnx_torch.ops" not in sys.modules
        plain = onnx2torch.convert(path).eval()
        for p in plain.parameters():
            p.requires_grad_(False)
        from preimage.converters.onnx_torch.load import load_features
        from preimage.invert.model import open_model
        from preimage.invert.transforms import jitter_amount

        fx = load_features(path, [args.layer])
        m = open_model(path, [args.layer], "cpu")
        T = jitter_amount(m.stride(args.layer))
        size = tuple(m.input_size)
        ways = {
            "lucent_on_onnx2torch": lucent_rate_fn(plain, args.layer, args.unit, args.batch, size, T),
            "lucent_on_preimage_module": lucent_rate_fn(fx, f"module_{args.layer}", args.unit, args.batch, size, T),
            "preimage": preimage_rate_fn(path, args.layer, args.unit, args.batch),
            "preimage_whole_input": preimage_rate_fn(path, args.layer, args.unit, args.batch, window=False),
        }
        for run in ways.values():  # warm-up
            run(1)
        rates, cpu = {k: 0.0 for k in ways}, {k: 0.0 for k in ways}
        for _ in range(args.repeats):
            for name, run in ways.items():
                short, long_ = run(args.steps), run(2 * args.steps)
                rates[name] = max(rates[name], args.steps / max(1e-9, long_[0] - short[0]))
                cpu[name] = max(cpu[name], args.steps / max(1e-9, long_[1] - short[1]))
    print(f"AlexNet {args.layer} unit {args.unit}, batch {args.batch}, {size[0]}x{size[1]}, jitter T={T}, "
          f"torch threads {torch.get_num_threads()}; steps/s (images/s = x {args.batch}):")
    for name, r in rates.items():
        print(f"  {name:28s} {r:8.3f}   preimage / this: {rates['preimage'] / r:5.2f}   (process time: {cpu[name]:.3f} "
              f"steps/s, preimage / this {cpu['preimage'] / cpu[name]:.2f})")
    print(json.dumps({"name": f"maximize_alexnet_{args.layer}_batch{args.batch}_vs_lucent", "value": round(rates["preimage"], 4),
                      "unit": "steps/s", "baseline": round(rates["lucent_on_onnx2torch"], 4),
                      "ratio": round(rates["preimage"] / rates["lucent_on_onnx2torch"], 3), "target": 2.0,
                      "lucent_on_preimage_module": round(rates["lucent_on_preimage_module"], 4),
                      "ratio_vs_lucent_on_preimage_module": round(rates["preimage"] / rates["lucent_on_preimage_module"], 3),
                      "target_vs_lucent_on_preimage_module": 1.3,
                      "preimage_whole_input": round(rates["preimage_whole_input"], 4),
                      "ratio_cpu_time": round(cpu["preimage"] / cpu["lucent_on_onnx2torch"], 3),
                      "ratio_vs_lucent_on_preimage_module_cpu_time":
                          round(cpu["preimage"] / cpu["lucent_on_preimage_module"], 3)}))


if __name__ == "__main__":
    main()
