"""The sweep loop: ask Optuna for a batch of trials, run them together, tell each; report as it goes.

    from preimage.sweep import Target, sweep_inversion, parse_space
    target = Target("invert", "posenet.onnx", ["conv4"], images=["a.jpg"], preset="posenet2016")
    summary = sweep_inversion(target, parse_space(["lr=log:1e-10:1e4"]), "sweep-posenet", n_trials=300, batch=50)

Re-running the same call continues the study (resume); the same call on several processes or machines
against one ``storage`` shares it. Ctrl-C tells the running trials FAIL ("interrupted") and keeps every
finished one.
"""
import contextlib
import fcntl
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import PreimageError
from . import study as st
from .inversion import check, has_batched_trials, run_trials, save_pictures, score, summarize
from .space import distributions, trial_params


@dataclass
class Summary:
    study: str
    storage: str
    complete: int
    ran: int                      # trials this process finished
    best_value: Optional[float]
    best_params: Optional[dict]
    best_number: Optional[int]
    interrupted: bool
    index: Optional[str]
    seconds: float


def _loop(study, space, n_trials, batch, evaluate, report, report_every):
    """Run batches until the budget is met. ``evaluate(numbers, params) -> (outcomes, interrupted)``;
    an outcome is (value, user_attrs) or None (cut short). Returns (trials finished here, interrupted)."""
    ran, interrupted, last_report = 0, False, time.monotonic()
    dists = distributions(space)
    pending = []
    try:
        while True:
            pending = st.ask_batch(study, n_trials, batch, dists)
            if not pending:
                break
            params = [trial_params(space, t) for t in pending]
            outcomes, interrupted = evaluate([t.number for t in pending], params)
            for t, o in zip(list(pending), outcomes):
                if o is None:
                    continue
                value, attrs = o
                for k, v in attrs.items():
                    t.set_user_attr(k, v)
                t.set_user_attr("status", "complete" if math.isfinite(value) else "diverged")
                study.tell(t, value)
                pending.remove(t)
                ran += 1
            if interrupted:
                break
            if report is not None and time.monotonic() - last_report > report_every:
                report()
                last_report = time.monotonic()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        st.fail(study, pending, "interrupted")
    return ran, interrupted


@contextlib.contextmanager
def _report_lock(out_dir):
    with open(os.path.join(out_dir, ".report.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_sweep(evaluate, space, out_dir, *, definition, n_trials, batch=1, sampler="random", seed=None, storage=None,
              study_name=None, report=True, report_every=30.0, title=None):
    """The generic sweep (inversion and decoder sweeps are built on it). Returns a :class:`Summary`."""
    if n_trials < 1:
        raise PreimageError("--trials must be at least 1", where="--trials")
    os.makedirs(out_dir, exist_ok=True)
    url = st.storage_url(storage, out_dir)
    name = study_name or "sweep"
    study = st.open_study(name, url, st.make_sampler(sampler, seed), definition)
    st.fail_stale(study)
    t0 = time.perf_counter()

    def write(final=False):
        from .report import write_index

        # Workers sharing a run folder write its report in turn, each reading the study inside the lock, so
        # the last writer has every trial that was told before it (without it, a worker that read the study
        # first could write last and drop the other's final trial).
        with _report_lock(out_dir):
            return write_index(study, out_dir, space, definition, title=title, importance=final)

    ran, interrupted = _loop(study, space, n_trials, max(1, batch), evaluate, write if report else None, report_every)
    index = write(final=True) if report else None
    done = [t for t in st.counted(study) if t.state.name == "COMPLETE"]
    best = min(done, key=lambda t: t.value) if done else None
    return Summary(study=name, storage=url, complete=len(done), ran=ran, best_value=best.value if best else None,
                   best_params=best.params if best else None, best_number=best.number if best else None,
                   interrupted=interrupted, index=index, seconds=time.perf_counter() - t0)


def inversion_definition(target, space, extra=None):
    model = target.model
    if isinstance(model, (str, os.PathLike)):
        model = os.path.splitext(os.path.basename(os.fspath(model)))[0]
    else:  # an opened Model has the file's stem as its name; a plain callable its class name
        model = str(getattr(model, "name", type(model).__name__))
    d = {"kind": target.kind, "model": model,
         "layers": list(target.layers), "images": [os.path.basename(os.fspath(i)) for i in target.images or []],
         "units": list(target.units or []), "preset": target.preset, "seeds": target.seeds, "iters": target.iters,
         "masks": list(target.masks or []), "overrides": {k: str(v) for k, v in target.overrides.items()},
         "objective": target.score, "space": [p.spec() for p in space]}
    d.update(extra or {})
    return d


def inversion_evaluator(target, out_dir, batched=None, progress=False, pictures=True):
    """evaluate(numbers, params) for inversion trials: one batched run per batch of trials."""
    opened = []

    def evaluate(numbers, params):
        if not opened:
            target.open()
            opened.append(True)
        together = has_batched_trials(target.kind) if batched is None else batched
        per, runs, interrupted = run_trials(target, params, batched=together, progress=progress)
        outcomes = []
        for number, results, run in zip(numbers, per, runs):
            if results is None:
                outcomes.append(None)
                continue
            attrs = {"results": summarize(results), "seconds_batch": run.seconds, "trials_in_batch": len(numbers) if together else 1}
            if pictures:
                folder = os.path.join("trials", f"{number:05d}")
                attrs["pictures"] = [os.path.join(folder, n) for n in save_pictures(run, results, os.path.join(out_dir, folder))]
            outcomes.append((score(target, results), attrs))
        return outcomes, interrupted

    return evaluate


def sweep_inversion(target, space, out_dir, *, n_trials, batch=16, sampler="random", seed=None, storage=None,
                    study_name=None, batched=None, progress=False, report=True, report_every=30.0):
    """Search ``space`` for ``target`` (a :class:`~preimage.sweep.inversion.Target`), minimising its
    objective; ``batch`` trials per optimisation run."""
    check(target, space)
    definition = inversion_definition(target, space)
    evaluate = inversion_evaluator(target, out_dir, batched=batched, progress=progress)
    title = f"preimage sweep {target.kind}: {definition['model']} {', '.join(target.layers)}"
    return run_sweep(evaluate, space, out_dir, definition=definition, n_trials=n_trials, batch=batch, sampler=sampler,
                     seed=seed, storage=storage, study_name=study_name, report=report, report_every=report_every,
                     title=title)
