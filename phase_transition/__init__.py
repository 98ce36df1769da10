"""The grid-sweep engine and the ``phase-transition`` command.

The engine knows nothing of MoLRG or locality: experiments (in
``phase_transition.experiments``) are the only place where the two meet.
"""

from .registry import Experiment, Task, get_experiment, list_experiments, register

__all__ = ["Experiment", "Task", "get_experiment", "list_experiments", "register"]
