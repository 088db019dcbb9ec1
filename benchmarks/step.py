"""Forward + backward-to-the-input speed of a converted AlexNet vs a hand-written frozen torch AlexNet.

For full-width AlexNet (227 x 227, random weights written by the project's Caffe writer and converted
with ``convert_caffe``), at each batch size and target layer, times one optimisation step of a
pre-image method: features = net(x); grad = d<features, R>/dx, with x requiring grad and every weight
frozen. Runs of the two nets are interleaved so that load from other processes hits both alike; the
median is reported. Also prints the FLOP floor: 2 x the forward FLOPs (forward, and backward to the
input only) per image at the float32 dense rate measured by this script on the same device and threads,
in the same run (the larger of a 2048 x 2048 GEMM and a direct convolution, AlexNet's conv1: on AMD CPUs
MKL's GEMM reaches about half of oneDNN's convolutions; best of the timings around the step timings); the JSON line's ``ratio`` is the
converted net's time over that floor (target 1.6 at batch 8). The figure against a fixed ``--gflops``
rate and the ratio to the hand-written net stay as further fields.

    python benchmarks/step.py                       # batch 1 and 8, conv3 and fc8, CPU
    python benchmarks/step.py --device cuda --batches 8 32

The last line is JSON (name, value, unit, baseline, ratio, target) for fc8 at the largest batch.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _flops import dense_gflops, forward_flops  # noqa: E402
from _handwritten_alexnet import HandwrittenAlexNet  # noqa: E402


def converted_alexnet(folder):
    """(onnx path) of a full-width AlexNet with seeded random weights, via the Caffe writer."""
    from preimage.converters.caffe.convert import convert_caffe
    from preimage.models.architectures import alexnet

    proto = os.path.join(folder, "alexnet.prototxt")
    with open(proto, "w") as f:
        f.write(alexnet())
    from preimage.converters.caffe.writer import write_caffemodel

    weights = os.path.join(folder, "alexnet.caffemodel")
    write_caffemodel(weights, proto, seed=0)
    out = os.path.join(folder, "alexnet.onnx")
    convert_caffe(proto, weights, out)
    return out


def step(fn, x, R):
    x = x.detach().requires_grad_()
    (g,) = torch.autograd.grad(fn(x), x, R)
    return g


def timed(fn, x, R, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    step(fn, x, R)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--layers", nargs="+", default=["conv3", "fc8"])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--gflops", type=float, default=155.0, help="an assumed float32 matrix rate, for a second floor "
                    "figure (the floor itself uses the GEMM rate measured in the run)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from preimage.converters.onnx_torch.load import load_features
    from preimage.device import resolve_device

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = converted_alexnet(tmp)
        import onnx

        proto = onnx.load(path)
        hand = HandwrittenAlexNet(proto).to(device)
        hand_lrn = HandwrittenAlexNet(proto, lrn="preimage").to(device)
        del proto
        converted = {layer: load_features(path, [layer], device=device) for layer in args.layers}
    rows = []
    gemm = [max(dense_gflops(device).values())]
    print(f"AlexNet 227x227, device {device}, torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'layer':6} {'batch':>5} {'converted':>10} {'handwritten':>12} {'ratio':>6} {'hand+fusedLRN':>13} "
          f"{'ratio':>6} {'floor':>7} {'conv/floor':>10} {'max rel diff':>12}   (ms per image)")
    for layer in args.layers:
        net = converted[layer]
        conv_fn = lambda t, net=net, layer=layer: net(t)[layer]  # noqa: E731
        hand_fn = lambda t, layer=layer: hand(t, upto=layer)  # noqa: E731
        lrn_fn = lambda t, layer=layer: hand_lrn(t, upto=layer)  # noqa: E731
        for batch in args.batches:
            g = torch.Generator().manual_seed(batch)
            x = (torch.randn(batch, 3, 227, 227, generator=g) * 50).to(device)
            with torch.no_grad():
                ref = hand_fn(x.clone())
                out = conv_fn(x)
            diff = float((out - ref).abs().max() / ref.abs().max())
            R = torch.randn(out.shape, generator=g).to(device)
            for fn in (conv_fn, hand_fn, lrn_fn):  # warm up
                step(fn, x, R)
            tc, th, tl = [], [], []
            for _ in range(args.repeats):
                tc.append(timed(conv_fn, x, R, device))
                th.append(timed(hand_fn, x, R, device))
                tl.append(timed(lrn_fn, x, R, device))
            mc, mh, ml = (1000 * statistics.median(t) / batch for t in (tc, th, tl))
            best = {k: 1000 * min(t) / batch for k, t in (("converted", tc), ("handwritten", th), ("fused_lrn", tl))}
            gemm.append(max(dense_gflops(device).values()))
            flop = 2 * forward_flops(hand, x, upto=layer)
            floor = 1000 * flop / (max(gemm) * 1e9)  # updated below with the run's best rate
            rows.append(dict(layer=layer, batch=batch, converted_ms=mc, handwritten_ms=mh, ratio=mc / mh,
                             handwritten_fused_lrn_ms=ml, ratio_to_fused_lrn=mc / ml, flop=flop,
                             floor_ms=floor, ratio_to_floor=mc / floor, handwritten_to_floor=mh / floor,
                             assumed_floor_ms=1000 * flop / (args.gflops * 1e9),
                             min_ms=best, min_ratio=best["converted"] / best["handwritten"],
                             max_rel_diff=diff))
            print(f"{layer:6} {batch:5d} {mc:10.2f} {mh:12.2f} {mc / mh:6.3f} {ml:13.2f} {mc / ml:6.3f} {floor:7.2f} "
                  f"{mc / floor:10.2f} "
                  f"{diff:12.2e}", flush=True)
    rate = max(gemm)
    for r in rows:  # the floor at the best GEMM rate of the whole run
        r["floor_ms"] = 1000 * r["flop"] / (rate * 1e9)
        r["ratio_to_floor"], r["handwritten_to_floor"] = r["converted_ms"] / r["floor_ms"], r["handwritten_ms"] / r["floor_ms"]
    print(f"dense rates measured during the run: {', '.join(f'{g:.0f}' for g in gemm)} GFLOP/s; floor at {rate:.0f}; "
          + "; ".join(f"{r['layer']} batch {r['batch']}: {r['ratio_to_floor']:.2f} x floor" for r in rows))
    print(json.dumps({"rows": rows}))
    last = [r for r in rows if r["layer"] == args.layers[-1] and r["batch"] == max(args.batches)][0]
    print(json.dumps({"name": f"alexnet_{last['layer']}_batch{last['batch']}_fwd_bwd_input_{device.type}",
                      "value": round(last["converted_ms"], 3), "unit": "ms/image",
                      "baseline": round(last["floor_ms"], 3), "ratio": round(last["ratio_to_floor"], 4),
                      "target": 1.6, "floor_gflops": round(rate, 1),
                      "ratio_assumed_rate": round(last["converted_ms"] / last["assumed_floor_ms"], 4),
                      "handwritten_ms": round(last["handwritten_ms"], 3),
                      "ratio_to_handwritten": round(last["ratio"], 4), "target_to_handwritten": 1.1}))


if __name__ == "__main__":
    main()
