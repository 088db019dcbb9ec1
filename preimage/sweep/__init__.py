"""Hyperparameter searches over inversion (``invert``, ``maximize``, ``caricature``) and decoder training,
on Optuna: random sampling (the papers' method) or TPE; SQLite in the run folder or any database URL;
resumable; batched (many trials in one optimisation). The Python API behind ``preimage sweep``."""
from .decoder import sweep_decoder
from .inversion import SCORES, Target, has_batched_trials, run_trials
from .runner import Summary, run_sweep, sweep_inversion
from .space import Param, parse_param, parse_space

__all__ = ["SCORES", "Param", "Summary", "Target", "has_batched_trials", "parse_param", "parse_space", "run_sweep",
           "run_trials", "sweep_decoder", "sweep_inversion"]
