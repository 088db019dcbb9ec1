"""Forward + backward-to-the-input speed of a converted AlexNet vs a hand-written frozen torch AlexNet.

For full-width AlexNet (227 x 227, random weights written by the project's Caffe writer and converted
with ``convert_caffe``), at each batch size and target layer, times one optimisation step of a
pre-image method: features = net(x); grad = d<features, R>/dx, with x requiring grad and every weight
frozen. Runs of the two nets are interleaved so that load from other processes hits both alike; the
median is reported. Also prints the FLOP floor: 2 x the forward FLOPs (forward, and backward to the
input only) per image at ``--gflops`` (the float32 matrix rate of the machine; ~155 on 2 cores).

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
from _flops import forward_flops  # noqa: E402
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
    ap.add_argument("--gflops", type=float, default=155.0, help="float32 matrix rate for the FLOP floor")
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
            floor = 1000 * 2 * forward_flops(hand, x, upto=layer) / (args.gflops * 1e9)
            rows.append(dict(layer=layer, batch=batch, converted_ms=mc, handwritten_ms=mh, ratio=mc / mh,
                             handwritten_fused_lrn_ms=ml, ratio_to_fused_lrn=mc / ml,
                             floor_ms=floor, ratio_to_floor=mc / floor, handwritten_to_floor=mh / floor,
                             min_ms=best, min_ratio=best["converted"] / best["handwritten"],
                             max_rel_diff=diff))
            print(f"{layer:6} {batch:5d} {mc:10.2f} {mh:12.2f} {mc / mh:6.3f} {ml:13.2f} {mc / ml:6.3f} {floor:7.2f} "
                  f"{mc / floor:10.2f} "
                  f"{diff:12.2e}", flush=True)
    print(json.dumps({"rows": rows}))
    last = [r for r in rows if r["layer"] == args.layers[-1] and r["batch"] == max(args.batches)][0]
    print(json.dumps({"name": f"alexnet_{last['layer']}_batch{last['batch']}_fwd_bwd_input_{device.type}",
                      "value": round(last["converted_ms"], 3), "unit": "ms/image",
                      "baseline": round(last["handwritten_ms"], 3), "ratio": round(last["ratio"], 4),
                      "target": 1.1}))


if __name__ == "__main__":
    main()
