"""Opening, joining and sharing an Optuna study.

Storage is a SQLite file in the run folder unless ``--storage`` names another database URL Optuna accepts
(``postgresql://...``, ``mysql://...``): every process running the same command against the same storage
and study name joins the one study. A study remembers what it searches (``definition``); joining with a
different definition is refused.

Trial budget: a study aims at ``n_trials`` trials that are finished (COMPLETE) or running. Each worker asks
for at most what is left; a trial asked beyond the budget by a worker racing another is marked FAIL with
``status = "surplus"`` and never run. Trials stopped by Ctrl-C are FAIL with ``status = "interrupted"``
and do not count, so re-running the command redoes them.
"""
import json
import os
import socket
import time

from ..errors import PreimageError

COUNTED = ("COMPLETE", "RUNNING", "WAITING")


def worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


def storage_url(storage, out_dir):
    if storage:
        return storage
    return "sqlite:///" + os.path.abspath(os.path.join(out_dir, "study.db"))


def _storage(url):
    """An RDBStorage; SQLite gets a long lock timeout (several local workers share one file). Creating the
    tables races when workers start together: retried."""
    import optuna

    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    last = None
    for attempt in range(20):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as e:  # sqlalchemy OperationalError: "table ... already exists", "database is locked"
            if "sqlite" not in url and "locked" not in str(e) and "exists" not in str(e):
                raise PreimageError(f"cannot open the study storage ({type(e).__name__}: {str(e).splitlines()[0]})",
                                    path=url, where="--storage") from None
            last = e
            time.sleep(0.2 + 0.1 * attempt)
    raise PreimageError(f"cannot open the study storage ({str(last).splitlines()[0]})", path=url, where="--storage")


def make_sampler(name, seed=None):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # liar: batched/parallel asks spread out
    raise PreimageError(f"unknown sampler {name!r}; expected random or tpe", where="--sampler")


def open_study(name, url, sampler, definition):
    """Create or join the study ``name`` at ``url``; ``definition`` (a JSON-able dict) must match the one
    the study was created with."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    storage = _storage(url)
    for attempt in range(20):
        try:
            study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="minimize",
                                        load_if_exists=True)
            break
        except Exception as e:  # two workers creating the study in the same instant
            if attempt == 19:
                raise
            time.sleep(0.2 + 0.1 * attempt)
    want = json.loads(json.dumps(definition, sort_keys=True))
    for attempt in range(50):
        have = study.user_attrs.get("definition")
        if have is None:
            study.set_user_attr("definition", want)
            continue  # read back: another worker may have written its own in the same instant
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise PreimageError(f"study {name!r} was created for another search (differs in: {', '.join(diff)}); "
                                "use the same command, or a new --study name / output folder", path=url, where="--study")
        return study
    return study


def counted(study):
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in COUNTED)
    return study.get_trials(deepcopy=False, states=states)


def fail_stale(study):
    """RUNNING trials of a worker on this machine that no longer runs (killed hard) are marked FAIL."""
    import optuna

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        w = str(t.user_attrs.get("worker", ""))
        h, _, pid = w.rpartition(":")
        if h == host and pid.isdigit() and not _alive(int(pid)):
            try:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            except Exception:  # another worker did it first
                pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ask_batch(study, n_trials, batch, distributions):
    """Ask for up to ``batch`` trials within the study's budget of ``n_trials``; surplus ones (lost races
    with other workers) are marked FAIL. Returns the trials to run (possibly empty: the study is done)."""
    import optuna

    left = n_trials - len(counted(study))
    if left <= 0:
        return []
    asked = []
    for _ in range(min(batch, left)):
        t = study.ask(fixed_distributions=distributions)
        t.set_user_attr("worker", worker_id())
        asked.append(t)
    numbers = sorted(x.number for x in counted(study))
    keep = []
    for t in asked:
        if numbers.index(t.number) < n_trials:
            keep.append(t)
        else:
            t.set_user_attr("status", "surplus")
            study.tell(t, state=optuna.trial.TrialState.FAIL)
    return keep


def fail(study, trials, status):
    import optuna

    for t in trials:
        try:
            t.set_user_attr("status", status)
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        except Exception:  # already told
            pass
