"""Training throughput of the AlexNet fc8 decoder, and the share of step time spent waiting for data.

Builds a synthetic feature store (random fc8 features, random 227 x 227 images, written as ordinary
shards), then:

* pipeline: ``train_decoder`` as a user runs it (memory-mapped shards, prefetch thread, pinned memory
  and AMP on CUDA): images/s and the data-wait share it logs, after a warm-up;
* baseline: the same model, loss and Adam step on one batch already on the device (no data loading):
  the throughput the pipeline would reach if data were free.

Prints a table, then one JSON line: value = pipeline images/s, baseline = compute-only images/s,
ratio = value / baseline, target = 0.9 (the data wait under 10% of step time), data_wait_share,
loader_images_per_s (the data pipeline alone, without training: it bounds the step rate it can feed).

    python benchmarks/decoder_train.py                      # CUDA if available, batch 64
    python benchmarks/decoder_train.py --device cpu --iters 8 --width 0.25
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from preimage.decoders.architectures import build_decoder
from preimage.decoders.dataset import FeatureStore, TargetTransform
from preimage.decoders.extract import write_store
from preimage.decoders.train import read_metrics, train_decoder
from preimage.device import resolve_device


def make_store(path, n, size, feat_dim, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, feat_dim)).astype(np.float32)
    imgs = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    write_store(path, feats, imgs, layer="fc8", shard_size=512, split=(0.95, 0.05, 0))


def compute_only(store, arch_options, batch, iters, warmup, device, amp):
    """Images/s of the bare training step on a fixed on-device batch."""
    torch.manual_seed(0)
    model = build_decoder("alexnet_fc8", store.feature_shape, store.image_shape, **arch_options).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16  # as train_decoder
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    tf = TargetTransform(store.preprocess, store.image_shape).to(device)
    f, im = store.get(np.arange(batch) % len(store))
    f, im = torch.from_numpy(f).to(device), torch.from_numpy(im).to(device)

    def step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            out = model(f)
        loss = F.mse_loss(out.float(), tf(im))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t)


def loader_only(store, batch, n, device):
    """Images/s the data pipeline alone delivers (no training step): an upper bound on the step rate it can feed."""
    from preimage.decoders.dataset import BatchStream

    stream = BatchStream(store, store.split("train"), batch, seed=1, device=device)
    next(stream)
    t = time.perf_counter()
    for _ in range(n):
        f, im = next(stream)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    stream.close()
    return batch * n / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (default: 200 on CUDA, 6 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="(default: 20 on CUDA, 2 on CPU)")
    ap.add_argument("--width", type=float, default=1.0, help="channel scale of the decoder (1 = the paper's)")
    ap.add_argument("--size", type=int, default=227, help="image size (AlexNet's input: 227)")
    ap.add_argument("--images", type=int, default=4096, help="images in the synthetic store")
    ap.add_argument("--store", default=None, help="keep the synthetic store in this folder (default: a temporary one)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    iters = args.iters or (200 if cuda else 6)
    warmup = args.warmup or (20 if cuda else 2)
    amp = cuda
    arch_options = {"width": args.width}

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = args.store or os.path.join(tmp, "store")
        if not os.path.isfile(os.path.join(store_dir, "index.json")):
            print(f"writing a synthetic store of {args.images} images ({args.size} px) ...", file=sys.stderr, flush=True)
            make_store(store_dir, args.images, args.size, 1000)
        store = FeatureStore(store_dir)
        run = os.path.join(tmp, "run")
        train_decoder(store, run, arch="alexnet_fc8", arch_options=arch_options, batch=args.batch,
                      iters=warmup + iters, log_every=warmup, val_every=10 ** 9, ckpt_every=10 ** 9, device=str(device),
                      amp="on" if amp else "off", progress=True, tensorboard=False)
        rec = [m for m in read_metrics(run) if m["iter"] == warmup + iters][0]
        base = compute_only(store, arch_options, args.batch, iters, warmup, device, amp)
        feed = loader_only(store, args.batch, max(50, iters), device)

    ips, wait = rec["images_per_s"], rec["data_wait"]
    name = torch.cuda.get_device_name(device) if cuda else f"cpu x{torch.get_num_threads()} threads"
    print(f"{'device':<28}{name}")
    print(f"{'decoder':<28}alexnet_fc8 width {args.width}, {args.size} px, batch {args.batch}, AMP {'on' if amp else 'off'}")
    print(f"{'pipeline images/s':<28}{ips:.1f}")
    print(f"{'compute-only images/s':<28}{base:.1f}")
    print(f"{'loader-only images/s':<28}{feed:.1f} (what the data pipeline alone delivers)")
    print(f"{'data wait share':<28}{100 * wait:.2f}% (target < 10%)")
    print(json.dumps({"name": f"decoder_train_alexnet_fc8_batch{args.batch}_{device.type}", "value": round(ips, 2),
                      "unit": "images/s", "baseline": round(base, 2), "ratio": round(ips / base, 4), "target": 0.9,
                      "data_wait_share": round(wait, 4),
                      "loader_images_per_s": round(feed, 1)}))


if __name__ == "__main__":
    main()
