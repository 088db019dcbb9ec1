"""Benchmark: convert a full-width AlexNet caffemodel (61M parameters, ~233 MB) to ONNX.

Writes the caffemodel with preimage's own writer (seeded random weights), then measures, each in a
fresh child process (so peak memory is that of one job alone, read with getrusage's ru_maxrss):

- floor:   read the file and parse it with protobuf (``NetParameter.ParseFromString``), nothing else;
- convert: ``convert_caffe(prototxt, caffemodel, out.onnx)``, the whole conversion including writing,
  returning the model with its weights (the JSON's value, ratio and memory_ratio);
- command: what ``preimage convert caffe`` runs (the weights go to the file only; extra keys).

Times are the best of ``--repeat`` runs (the machine may be shared). Peak memory is the child's whole
resident set (interpreter and imports included). Targets: time <= 2x the floor, peak memory <= 2.5x
the file size. The figures are printed last as one JSON line.

    python benchmarks/convert.py [--repeat 3] [--workdir DIR] [--width 1.0]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def child_floor(caffemodel):
    from preimage.converters.caffe.proto import caffe_pb2

    t0 = time.perf_counter()
    with open(caffemodel, "rb") as f:
        data = f.read()
    net = caffe_pb2.NetParameter()
    net.ParseFromString(data)
    return time.perf_counter() - t0


def child_convert(prototxt, caffemodel, out):
    from preimage.converters.caffe import convert_caffe

    t0 = time.perf_counter()
    model = convert_caffe(prototxt, caffemodel, out)
    secs = time.perf_counter() - t0
    child_convert.n_params = sum(int(__import__("numpy").prod(t.dims)) for t in model.graph.initializer
                                 if t.name.endswith(("/weight", "/bias")))
    return secs


def child_command(prototxt, caffemodel, out):
    """What `preimage convert caffe` runs: the weights go to the file and are not kept in memory."""
    from preimage.converters.caffe.convert import convert_caffe_full

    t0 = time.perf_counter()
    convert_caffe_full(prototxt, caffemodel, out, keep_weights=False)
    return time.perf_counter() - t0


def run_child(args):
    """Run one measurement in a fresh interpreter; returns (seconds, peak MiB, MiB after imports).
    Dirty pages of earlier steps (the 233 MB caffemodel, earlier outputs) are flushed first, so that
    one measurement does not pay for the previous one's disk writeback."""
    os.sync()
    p = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def child_main(kind, *paths):
    # imports first, so that their memory is known separately
    import numpy  # noqa: F401
    import onnx  # noqa: F401

    from preimage.converters.caffe import convert_caffe  # noqa: F401
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    if kind == "write":
        from preimage.converters.caffe.writer import write_caffemodel

        t0 = time.perf_counter()
        write_caffemodel(paths[1], paths[0], seed=0)
        secs = time.perf_counter() - t0
    elif kind == "command":
        secs = child_command(*paths)
    else:
        secs = child_floor(*paths) if kind == "floor" else child_convert(*paths)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = r1.ru_maxrss / 1024
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # all threads
    print(json.dumps({"seconds": secs, "cpu_seconds": cpu, "peak_mib": peak, "base_mib": base,
                      "parameters": getattr(child_convert, "n_params", None)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="where the files go (default: /dev/shm, a RAM folder, so that disk writeback on a shared "
                         "machine does not dominate; pass a disk folder to include it)")
    ap.add_argument("--width", type=float, default=1.0, help="AlexNet width (1.0 = the full 61M-parameter net)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main(*args.child)

    from preimage.models import architectures

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        proto = os.path.join(tmp, "alexnet.prototxt")
        model = os.path.join(tmp, "alexnet.caffemodel")
        out = os.path.join(tmp, "alexnet.onnx")
        with open(proto, "w") as f:
            f.write(architectures.alexnet(width=args.width, fc_width=args.width))
        # written by a child: Linux keeps a process's peak RSS across fork + exec, so the measuring
        # children must be started from a parent that never held the weights
        t0 = time.perf_counter()
        run_child(["write", proto, model])
        t_write = time.perf_counter() - t0
        size_mib = os.path.getsize(model) / 2**20
        print(f"wrote {model}: {size_mib:.1f} MiB in {t_write:.1f} s", file=sys.stderr)
        floor = [run_child(["floor", model]) for _ in range(args.repeat)]
        conv = []
        for _ in range(args.repeat):
            if os.path.exists(out):  # each run writes a new file (not the removal of the previous one)
                os.remove(out)
            conv.append(run_child(["convert", proto, model, out]))
        cmd = []
        for _ in range(args.repeat):
            if os.path.exists(out):
                os.remove(out)
            cmd.append(run_child(["command", proto, model, out]))
        onnx_mib = os.path.getsize(out) / 2**20
    f_t = min(r["seconds"] for r in floor)
    c_t = min(r["seconds"] for r in conv)
    f_mem = min(r["peak_mib"] for r in floor)
    c_mem = min(r["peak_mib"] for r in conv)
    c_base = min(r["base_mib"] for r in conv)
    f_cpu = min(r["cpu_seconds"] for r in floor)
    c_cpu = min(r["cpu_seconds"] for r in conv)
    print(f"floor (read + protobuf parse): {f_t:.3f} s, peak {f_mem:.0f} MiB", file=sys.stderr)
    print(f"convert_caffe (incl. writing {onnx_mib:.0f} MiB ONNX): {c_t:.3f} s, peak {c_mem:.0f} MiB "
          f"(of which {c_base:.0f} MiB interpreter and imports)", file=sys.stderr)
    k_t = min(r["seconds"] for r in cmd)
    k_mem = min(r["peak_mib"] for r in cmd)
    print(f"preimage convert caffe's path (weights to the file only): {k_t:.3f} s, peak {k_mem:.0f} MiB",
          file=sys.stderr)
    print(f"CPU time (all threads): floor {f_cpu:.3f} s, convert {c_cpu:.3f} s", file=sys.stderr)
    print(f"machine load average during the runs: {os.getloadavg()}", file=sys.stderr)
    print(json.dumps({
        "name": "convert_caffe_alexnet_full", "value": round(c_t, 4), "unit": "s", "baseline": round(f_t, 4),
        "ratio": round(c_t / f_t, 3), "target": 2.0,
        "peak_memory_mib": round(c_mem, 1), "file_mib": round(size_mib, 1),
        "memory_ratio": round(c_mem / size_mib, 3), "memory_target": 2.5,
        "floor_peak_memory_mib": round(f_mem, 1), "imports_mib": round(c_base, 1),
        "cpu_seconds": round(c_cpu, 4), "floor_cpu_seconds": round(f_cpu, 4), "cpu_ratio": round(c_cpu / f_cpu, 3),
        "command_seconds": round(k_t, 4), "command_ratio": round(k_t / f_t, 3),
        "command_peak_memory_mib": round(k_mem, 1), "command_memory_ratio": round(k_mem / size_mib, 3),
        "workdir": args.workdir or tempfile.gettempdir(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "parameters": conv[0]["parameters"],
    }))


if __name__ == "__main__":
    main()
