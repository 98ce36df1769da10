"""The grid-sweep engine and the ``phase-transition`` command.

The engine knows nothing of MoLRG or locality: experiments (in
``phase_transition.experiments``) are the only place where the two meet.
"""

from .grid import plan_grid, run_grid, trial_seed
from .registry import Experiment, Task, get_experiment, list_experiments, register
from .results import save_results

__all__ = [
    "Experiment",
    "Task",
    "get_experiment",
    "list_experiments",
    "register",
    "run_grid",
    "plan_grid",
    "trial_seed",
    "save_results",
]
