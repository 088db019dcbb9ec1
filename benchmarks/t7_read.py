"""Benchmark: read a 200 MB torch.FloatTensor .t7 file with preimage's reader vs numpy.fromfile.

Both sides end with the whole tensor in memory and every element touched (a float64 sum), so a lazy
memory map gets no credit for pages it never reads. The file is written once (binary Torch7 layout,
by hand here) and read a few times warm (page cache), taking the best time of each.

    python benchmarks/t7_read.py [--mb 200] [--repeat 5]

The last line is JSON: name, value (read_t7 seconds), unit, baseline (numpy.fromfile seconds),
ratio (value / baseline), target (ratio <= 2).
"""
import argparse
import json
import os
import struct
import tempfile
import time

import numpy as np

from preimage.converters.torch7 import read_t7


def _string(s):
    return struct.pack("<i", len(s)) + s


def write_float_tensor(path, n):
    """A 1-D torch.FloatTensor of n floats: tensor header, storage header, then the raw floats."""
    head = struct.pack("<ii", 4, 1) + _string(b"V 1") + _string(b"torch.FloatTensor")
    head += struct.pack("<i", 1) + struct.pack("<qqq", n, 1, 1)
    head += struct.pack("<ii", 4, 2) + _string(b"V 1") + _string(b"torch.FloatStorage") + struct.pack("<q", n)
    chunk = np.arange(1 << 20, dtype=np.float32)
    with open(path, "wb") as f:
        f.write(head)
        left = n
        while left:
            k = min(left, chunk.size)
            f.write(chunk[:k].tobytes())
            left -= k
    return len(head)


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.mb * (1 << 20) // 4
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.t7")
        offset = write_float_tensor(path, n)

        def baseline():
            a = np.fromfile(path, dtype="<f4", count=n, offset=offset)
            return a, float(a.sum(dtype=np.float64))

        def ours():
            a = read_t7(path)
            return a, float(a.sum(dtype=np.float64))

        def ours_no_mmap():
            a = read_t7(path, use_mmap=False)
            return a, float(a.sum(dtype=np.float64))

        baseline()  # warm the page cache
        t_base, (a0, s0) = best(baseline, args.repeat)
        t_ours, (a1, s1) = best(ours, args.repeat)
        t_copy, (a2, s2) = best(ours_no_mmap, args.repeat)
        assert a1.shape == (n,) and s0 == s1 == s2, "read_t7 returned different data"
        del a0, a1, a2
    print(f"{args.mb} MB float tensor: numpy.fromfile+sum {t_base * 1e3:.1f} ms, read_t7 (mmap)+sum "
          f"{t_ours * 1e3:.1f} ms, read_t7(use_mmap=False)+sum {t_copy * 1e3:.1f} ms")
    print(json.dumps({"name": "t7_read_200mb_float_tensor", "value": round(t_ours, 4), "unit": "s",
                      "baseline": round(t_base, 4), "ratio": round(t_ours / t_base, 3), "target": "ratio <= 2"}))


if __name__ == "__main__":
    main()
