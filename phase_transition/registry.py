"""The Experiment record and the registry of named experiments.

An experiment is everything the sweep engine needs to know, and nothing more:

* a name, a one-line description and a longer doc;
* ``grid``: the default (paper-scale) grid, ``{parameter: [values]}``; the
  engine sweeps the cartesian product of these lists, times ``trials``;
* ``quick_grid``: a small grid for tests and the quick report (same keys);
* ``parameters``: the typed parameters, a frozen dataclass deriving from
  :class:`phase_transition.params.Parameters` that declares every parameter
  once (type, default, range, help; see :mod:`phase_transition.params`).  The
  grid keys are some of its fields, the other fields are the fixed parameters;
* ``params``: (older form, instead of ``parameters``) fixed parameters with
  their default values (their types are the types of the defaults);
  with ``parameters`` it is filled with the defaults of the non-grid fields;
* ``quick_params``: overrides of the fixed parameters for the quick run;
* ``run(tasks)``: the one place where mathematics meets the engine.  It gets a
  list of :class:`Task` (all grid points and trials of one chunk) and returns
  one entry per task, in the same order: a ``dict`` of metrics (one row of the
  table), or a list of such dicts when one task measures several observations
  (one row per noise level of one trained model, say; the rows keep their
  order, and each gets the task's grid values, ``trial`` and ``seed``).  It is
  expected to batch the tasks into one solver call.  It may raise: the engine then re-runs the
  tasks one at a time to find and record the failing ones;
* ``chunk_by``: the grid keys whose values define a chunk; tasks whose grid
  points agree on them run in one ``run`` call (``None``: one chunk per grid
  point, holding all its trials);
* ``seed_by``: the grid keys the trial seeds depend on (``None``: all of them).
  Tasks whose points agree on these keys get the same seed for the same trial:
  common random numbers, so a curve over the other keys (the radius, the
  method) compares every value on the same data draws;
* ``plot(table, config)``: the figure (a :class:`matplotlib.figure.Figure`);
* ``summarize(table, config)``: a small dict of headline numbers for the report;
* ``validate(config)``: (older form) raises ``ValueError`` on bad parameter
  values before anything runs; typed ``parameters`` replace it;
* ``version``: a string the author bumps by hand to invalidate cached results
  (the cache is also keyed on a fingerprint of the code, see
  :mod:`phase_transition.grid`).

Experiments register themselves at import with :func:`register`; the modules in
``phase_transition/experiments/`` are imported on first use of the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Task", "Experiment", "register", "get_experiment", "list_experiments"]


@dataclass(frozen=True)
class Task:
    """One grid point and trial handed to ``Experiment.run``.

    ``params`` holds the grid values of this point merged over the fixed
    parameters (so ``run`` reads every parameter from one mapping): the
    experiment's validated :class:`~phase_transition.params.Parameters`
    instance (``task.params.N`` or ``task.params["N"]``), or a dict for an
    experiment declared with the older ``params=``; ``seed`` is the
    trial's integer seed (derived by the engine from the sweep's SeedSequence,
    independent of chunking and worker count).
    """

    params: Mapping[str, Any]
    trial: int
    seed: int

    @property
    def rng(self) -> np.random.Generator:
        """A fresh generator for this trial: ``numpy.random.default_rng(seed)``."""
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class Experiment:
    """A named, documented experiment: what the sweep engine runs (see the module doc).

    Parameters
    ----------
    name : str
        The registry key and the command-line name (``phase-transition run NAME``).
    description : str
        One line for ``phase-transition list`` and the report.
    run : callable
        ``run(tasks) -> list``: per :class:`Task`, in order, a dict of metrics (one row)
        or a non-empty list of dicts (several rows of that task).
    grid, quick_grid : dict of {str: list}
        Default (paper-scale) and quick values of the swept parameters (same keys).
    parameters : type, optional
        The typed parameters (a frozen :class:`~phase_transition.params.Parameters`
        dataclass); grid keys and fixed parameters are its fields.
    params, quick_params : dict
        Fixed parameters with their defaults (older form; derived from
        ``parameters`` when given), and overrides for the quick run.
    trials, quick_trials : int
        Independent trials per grid point (default and quick).
    chunk_by : tuple of str, optional
        Grid keys whose values define a chunk (None: one chunk per grid point).
    seed_by : tuple of str, optional
        Grid keys the trial seeds depend on (None: all; the others share the seeds:
        common random numbers along them).
    plot : callable, optional
        ``plot(table, config) -> matplotlib.figure.Figure``.
    summarize : callable, optional
        ``summarize(table, config) -> dict`` of headline numbers.
    validate : callable, optional
        ``validate(config)`` raises ``ValueError`` naming a bad parameter (older form).
    version : str
        Bumped by hand to invalidate the cache of this experiment.
    doc : str
        Longer description (the report uses its first line).
    family : str
        Free-form grouping (``"molrg"``, ``"locality"``, ...).
    """

    name: str
    description: str
    run: Callable[[Sequence[Task]], list]
    grid: Mapping[str, Sequence[Any]]
    quick_grid: Mapping[str, Sequence[Any]]
    params: Mapping[str, Any] = field(default_factory=dict)
    quick_params: Mapping[str, Any] = field(default_factory=dict)
    trials: int = 20
    quick_trials: int = 5
    chunk_by: tuple[str, ...] | None = None
    seed_by: tuple[str, ...] | None = None
    plot: Callable[[Any, Mapping[str, Any]], Any] | None = None
    summarize: Callable[[Any, Mapping[str, Any]], dict] | None = None
    validate: Callable[[Mapping[str, Any]], None] | None = None
    doc: str = ""
    family: str = ""
    parameters: type | None = None
    version: str = ""

    def __post_init__(self):
        if self.parameters is not None:
            from .params import parameter_specs

            specs = parameter_specs(self.parameters)
            unknown = set(self.grid) - set(specs)
            if unknown:
                raise ValueError(f"experiment {self.name}: grid keys {sorted(unknown)} are not fields of "
                                 f"{self.parameters.__name__}")
            no_default = [k for k, s in specs.items() if k not in self.grid and not s.has_default]
            if no_default:
                raise ValueError(f"experiment {self.name}: {sorted(no_default)} have no default and are not grid keys")
            defaults = {k: s.default for k, s in specs.items() if k not in self.grid}
            if self.params and dict(self.params) != defaults:  # (equal: a dataclasses.replace copy)
                raise ValueError(f"experiment {self.name}: give parameters= or params=, not both")
            object.__setattr__(self, "params", defaults)
        if set(self.grid) != set(self.quick_grid):
            raise ValueError(f"experiment {self.name}: grid and quick_grid must have the same keys")
        overlap = set(self.grid) & set(self.params)
        if overlap:
            raise ValueError(f"experiment {self.name}: {sorted(overlap)} are both grid keys and fixed params")
        unknown = set(self.quick_params) - set(self.params)
        if unknown:
            raise ValueError(f"experiment {self.name}: quick_params {sorted(unknown)} are not params")
        for name in ("chunk_by", "seed_by"):
            keys = getattr(self, name)
            if keys is not None and not set(keys) <= set(self.grid):
                raise ValueError(f"experiment {self.name}: {name} must name grid keys")


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (a name may be registered once)."""
    if experiment.name in _REGISTRY and _REGISTRY[experiment.name] is not experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    return experiment


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import experiments

    for info in sorted(pkgutil.iter_modules(experiments.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{experiments.__name__}.{info.name}")


def get_experiment(name: str | Experiment) -> Experiment:
    """The registered experiment called ``name`` (``ValueError`` listing the known names otherwise)."""
    if isinstance(name, Experiment):
        return name
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_experiments() -> list[Experiment]:
    """All registered experiments, sorted by name."""
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
