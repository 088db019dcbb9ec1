"""Run seeded mutants through a reader and sort the outcomes.

Each mutant is made from ``numpy.random.default_rng([seed, k])``, so mutant ``k`` of a failing run is
remade alone. An outcome is ``ok`` (the reader returned, and the caller's check of the output held),
``clean`` (a one-line :class:`PreimageError`, or a CLI exit 2 without a traceback) or a failure: any
other exception (a traceback for a user), a mutant that ran longer than ``timeout`` seconds (a hang;
SIGALRM interrupts Python code), a multi-line error, or files left behind in the output folder.

``PREIMAGE_FUZZ_SCALE=20 python -m pytest tests/fuzz -s`` runs 20 times as many mutants (CI runs 1x).
"""
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import List

import numpy as np

from preimage.errors import PreimageError


SCALE = float(os.environ.get("PREIMAGE_FUZZ_SCALE", "1"))  # e.g. 20 for a deeper run by hand


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


@dataclass
class Outcomes:
    name: str
    n: int = 0
    ok: int = 0
    clean: int = 0
    seconds: float = 0.0
    failures: List[str] = field(default_factory=list)

    def line(self):
        return (f"{self.name}: {self.n} mutants in {self.seconds:.1f} s, {self.ok} read, {self.clean} clean errors, "
                f"{len(self.failures)} failures")

    def check(self, min_clean=0.2, min_ok=0.0):
        assert not self.failures, self.line() + "\n" + "\n".join(self.failures[:15])
        assert self.clean >= min_clean * self.n, f"the mutations rarely break the input: {self.line()}"
        assert self.ok >= min_ok * self.n, f"the mutations rarely leave a readable input: {self.line()}"


def run(name, n, make, read, *, seed=13, timeout=10.0, out_dir=None, expect_in_error=None, warm=None):
    """``make(rng, k) -> mutant`` (anything ``read`` takes); ``read(mutant)`` returns normally for a valid
    input (checking its output itself) or raises. ``out_dir``: a folder that must be empty after every
    mutant whose ``read`` failed (no partial output, no temporary file); ``read`` moves or removes what
    it writes on success. ``expect_in_error(mutant) -> str``: text a clean error must contain (the file).
    ``warm``: the unmutated input, read first (it must read; the first call's imports are not timed)."""
    res = Outcomes(name)
    if warm is not None:
        read(warm)
    n = max(1, int(round(n * SCALE)))
    old = signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    try:
        for k in range(n):
            rng = np.random.default_rng([seed, k])
            mutant = make(rng, k)
            res.n += 1
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, timeout)
            failed = True
            try:
                read(mutant)
                res.ok += 1
                failed = False
            except PreimageError as e:
                text = str(e)
                want = expect_in_error(mutant) if expect_in_error else None
                if "\n" in text:
                    res.failures.append(f"{name} mutant {k}: a multi-line error: {text[:300]!r}")
                elif want and want not in text:
                    res.failures.append(f"{name} mutant {k}: the error does not name {want}: {text[:300]}")
                else:
                    res.clean += 1
                    if os.environ.get("PREIMAGE_FUZZ_SHOW"):
                        print(f"  {name} {k}: {text[:160]}")
            except Hang:
                res.failures.append(f"{name} mutant {k}: still running after {timeout} s (a hang)")
            except Exception as e:  # noqa: BLE001 - anything else is what the fuzzer is for
                where = traceback.extract_tb(e.__traceback__)[-1]
                res.failures.append(f"{name} mutant {k}: {type(e).__name__}: {str(e)[:200]} "
                                    f"(at {os.path.basename(where.filename)}:{where.lineno} {where.name})")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            elapsed = time.perf_counter() - t0
            if elapsed > timeout:  # stuck in C code, where the alarm waits for the call to return
                res.failures.append(f"{name} mutant {k}: took {elapsed:.1f} s")
            if out_dir is not None and failed and os.listdir(out_dir):
                res.failures.append(f"{name} mutant {k}: left {sorted(os.listdir(out_dir))} after failing")
                for f in os.listdir(out_dir):
                    os.remove(os.path.join(out_dir, f))
    finally:
        signal.signal(signal.SIGALRM, old)
    res.seconds = time.perf_counter() - start
    print(res.line())
    return res


def cli_outcome(result, ok_codes=(0,)):
    """Turn a click CliRunner result into what an API call would do: an exit status in ``ok_codes``
    returns; exit 2 with one 'Error:' line and no traceback raises PreimageError; an exception that
    escaped the command is re-raised; any other status is a failure."""
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    if escaped:
        raise result.exception
    if result.exit_code in ok_codes:
        return
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        if "Traceback" in result.output or len(errors) != 1:
            raise AssertionError(f"exit 2 without a single 'Error:' line: {result.output[-300:]!r}")
        raise PreimageError(errors[0][len("Error: "):])
    raise AssertionError(f"exit status {result.exit_code}: {result.output[-300:]!r}")
