"""The search space: ``--param NAME=SPEC`` parsed into Optuna distributions.

    lr=log:1e-10:1e4          log-uniform float in [1e-10, 1e4]
    weight.tv=lin:0:2         uniform float in [0, 2]
    iters=int:50:400          uniform integer in [50, 400]
    iters=int:log:10:1000     log-uniform integer
    optimizer=choice:adam,adagrad
    B=80                      a fixed value (recorded, not searched)
"""
from dataclasses import dataclass
from typing import Any, List, Optional

from ..errors import PreimageError

KINDS = ("log", "lin", "int", "choice")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str                     # log | lin | int | intlog | choice | fixed
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None
    value: Any = None             # kind == "fixed"

    @property
    def log(self):
        return self.kind in ("log", "intlog")

    @property
    def numeric(self):
        return self.kind in ("log", "lin", "int", "intlog")

    def distribution(self):
        import optuna.distributions as d

        if self.kind in ("log", "lin"):
            return d.FloatDistribution(self.low, self.high, log=self.kind == "log")
        if self.kind in ("int", "intlog"):
            return d.IntDistribution(int(self.low), int(self.high), log=self.kind == "intlog")
        if self.kind == "choice":
            return d.CategoricalDistribution(list(self.choices))
        return None

    def spec(self):
        if self.kind == "fixed":
            return f"{self.name}={self.value}"
        if self.kind == "choice":
            return f"{self.name}=choice:{','.join(map(str, self.choices))}"
        k = "int:log" if self.kind == "intlog" else self.kind
        return f"{self.name}={k}:{self.low:g}:{self.high:g}"


def _number(text, spec, what):
    try:
        return float(text)
    except ValueError:
        raise PreimageError(f"{spec!r}: {what} {text!r} is not a number", where="--param") from None


def parse_param(text):
    """One ``NAME=SPEC`` (see the module docstring) -> :class:`Param`."""
    if "=" not in text:
        raise PreimageError(f"{text!r}: expected NAME=SPEC, e.g. lr=log:1e-10:1e4", where="--param")
    name, spec = (t.strip() for t in text.split("=", 1))
    if not name:
        raise PreimageError(f"{text!r}: the parameter name is empty", where="--param")
    head, _, rest = spec.partition(":")
    if not rest or head not in KINDS:
        return Param(name, "fixed", value=spec)
    if head == "choice":
        choices = tuple(c.strip() for c in rest.split(",") if c.strip())
        if len(choices) < 1:
            raise PreimageError(f"{text!r}: choice needs at least one value", where="--param")
        return Param(name, "choice", choices=choices)
    kind = head
    parts = rest.split(":")
    if head == "int" and parts[0] == "log":
        kind, parts = "intlog", parts[1:]
    if len(parts) != 2:
        raise PreimageError(f"{text!r}: expected {head}:LOW:HIGH", where="--param")
    low, high = (_number(p, text, "bound") for p in parts)
    if not low <= high:
        raise PreimageError(f"{text!r}: LOW must not exceed HIGH", where="--param")
    if kind in ("log", "intlog") and low <= 0:
        raise PreimageError(f"{text!r}: a log range needs LOW > 0", where="--param")
    if kind in ("int", "intlog") and (low != int(low) or high != int(high)):
        raise PreimageError(f"{text!r}: int bounds must be whole numbers", where="--param")
    return Param(name, kind, low, high)


def parse_space(texts) -> List[Param]:
    params = [parse_param(t) for t in texts]
    names = [p.name for p in params]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PreimageError(f"parameter {dup[0]!r} given twice", where="--param")
    if not any(p.kind != "fixed" for p in params):
        raise PreimageError("nothing to search: give at least one range, e.g. --param lr=log:1e-10:1e4", where="--param")
    return params


def distributions(space):
    return {p.name: p.distribution() for p in space if p.kind != "fixed"}


def trial_params(space, trial):
    """The full parameter dict of an asked trial: its sampled values plus the fixed ones."""
    out = {p.name: p.value for p in space if p.kind == "fixed"}
    out.update(trial.params)
    return out
