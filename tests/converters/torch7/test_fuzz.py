"""Feed a few hundred mutated .t7 files to the reader and converter: every failure must be a PreimageError,
with no crash, no hang and no huge allocation."""
import time
import tracemalloc

import numpy as np

import t7writer as tw
from preimage.converters.torch7.convert import t7_to_node
from preimage.converters.torch7.build import build
from preimage.converters.torch7.reader import read_t7
from preimage.converters.torch7.types import TorchObject
from preimage.errors import PreimageError

N_MUTANTS = 360
INTERESTING = [0, 1, 2, 3, 4, 7, 8, 9, -1, 255, 2**31 - 1, -2**31, 2**16, 12345678]


def _seeds():
    rng = np.random.default_rng(5)
    conv = tw.module("nn.SpatialConvolution", nInputPlane=2, nOutputPlane=3, kW=3, kH=2, dW=1, dH=1, padW=1, padH=0,
                     weight=rng.standard_normal((3, 2, 2, 3)), bias=rng.standard_normal(3))
    bn = tw.module("nn.SpatialBatchNormalization", running_mean=np.zeros(3), running_var=np.ones(3), eps=1e-5,
                   weight=np.ones(3), bias=np.zeros(3), affine=True)
    model = tw.sequential(conv, bn, tw.module("nn.ReLU"), tw.module("nn.View", size=tw.Storage("torch.LongStorage", [-1])),
                          tw.module("nn.Linear", weight=rng.standard_normal((2, 4)), bias=np.zeros(2)))
    shared = tw.Storage("torch.FloatStorage", np.arange(10))
    table = {"a": tw.Tensor("torch.FloatTensor", [2, 3], [3, 1], 2, shared),
             "b": tw.Tensor("torch.FloatTensor", [3], [2], 1, shared), "h": tw.TdsHash({"x": 1}),
             "v": tw.TdsVec(["s", 2]), "f": tw.Func(b"\x1bLJbytecode", {}), "flag": True}
    table["me"] = table
    return [("model-bin8", tw.dumps(model)), ("model-bin4", tw.dumps(model, long_size=4)),
            ("model-ascii", tw.dumps(model, ascii=True)), ("table-bin8", tw.dumps(table)),
            ("table-ascii", tw.dumps(table, ascii=True, long_size=4))]


def _mutate(data, rng, ascii):
    b = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # flip a few bits
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1 and not ascii:  # an interesting int at an aligned offset
        i = int(rng.integers(0, len(b) // 4)) * 4
        b[i:i + 4] = int(rng.choice(INTERESTING)).to_bytes(4, "little", signed=True)
    elif kind == 1:  # an interesting token in ASCII
        toks = [i for i in range(1, len(b)) if b[i - 1:i] in (b"\n", b" ") and b[i:i + 1] not in (b"\n", b" ")]
        i = int(rng.choice(toks))
        j = i
        while j < len(b) and b[j:j + 1] not in (b"\n", b" "):
            j += 1
        b[i:j] = rng.choice([b"-1", b"0", b"99999999999", b"nan", b"x", b"1e308", b"4", b"2147483648", b""])
    elif kind == 2:  # truncate
        del b[int(rng.integers(0, len(b))):]
    elif kind == 3:  # delete a chunk
        i = int(rng.integers(0, len(b)))
        del b[i:i + int(rng.integers(1, 16))]
    elif kind == 4:  # duplicate a chunk
        i = int(rng.integers(0, len(b)))
        b[i:i] = b[i:i + int(rng.integers(1, 32))]
    else:  # random bytes
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 9))
        b[i:i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(b)


def test_mutated_files_fail_cleanly(tmp_path):
    rng = np.random.default_rng(2024)
    seeds = _seeds()
    failures, outcomes = [], {"read": 0, "converted": 0, "clean error": 0}
    start = time.perf_counter()
    tracemalloc.start()
    try:
        for k in range(N_MUTANTS):
            name, data = seeds[k % len(seeds)]
            mutant = _mutate(data, rng, "ascii" in name)
            p = tmp_path / f"m{k}.t7"
            p.write_bytes(mutant)
            tracemalloc.reset_peak()
            t0 = time.perf_counter()
            try:
                obj = read_t7(p)
                outcomes["read"] += 1
                if isinstance(obj, TorchObject) and obj.typename.startswith("nn."):
                    build(t7_to_node(p))
                    outcomes["converted"] += 1
            except PreimageError as e:
                outcomes["clean error"] += 1
                assert str(p) in str(e) or "model" in str(e), str(e)
            except Exception as e:  # noqa: BLE001 - anything else is a bug the test must report
                failures.append(f"{name} mutant {k}: {type(e).__name__}: {e}")
            elapsed = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            if elapsed > 2.0:
                failures.append(f"{name} mutant {k}: took {elapsed:.1f} s")
            if peak > 64 << 20:
                failures.append(f"{name} mutant {k}: allocated {peak >> 20} MB")
            p.unlink()
    finally:
        tracemalloc.stop()
    assert not failures, "\n".join(failures[:20])
    assert outcomes["clean error"] > N_MUTANTS // 3, outcomes  # the mutations do break files
    assert time.perf_counter() - start < 60
