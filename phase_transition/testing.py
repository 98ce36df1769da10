"""Toy experiments for testing the engine (importable by joblib and Dask workers).

``toy-noise`` draws one normal number per task from the task's generator, so the
table is a fingerprint of the seeds.  Knobs used by the tests:

* ``fail_x``: a task with ``x == fail_x`` and trial 0 raises ``ValueError``;
* :data:`CALLS` counts ``run`` calls in this process; setting
  :data:`INTERRUPT_AFTER` to k makes the (k+1)-th call raise ``KeyboardInterrupt``;
* the environment variable ``TOY_EXIT_AFTER=k`` makes the (k+1)-th call kill its
  process with ``os._exit(3)`` (a killed worker or process).
"""

from __future__ import annotations

import os

import numpy as np

from .plots import mean_std_lines
from .registry import Experiment, register

CALLS = [0]
INTERRUPT_AFTER: list[int | None] = [None]


def _run(tasks):
    CALLS[0] += 1
    if INTERRUPT_AFTER[0] is not None and CALLS[0] > INTERRUPT_AFTER[0]:
        raise KeyboardInterrupt
    exit_after = os.environ.get("TOY_EXIT_AFTER")
    if exit_after is not None and CALLS[0] > int(exit_after):
        os._exit(3)
    rows = []
    for t in tasks:
        if t.params["x"] == t.params["fail_x"] and t.trial == 0:
            raise ValueError(f"toy failure at x={t.params['x']}")
        rows.append({"value": float(t.rng.standard_normal()) * t.params["scale"] + t.params["x"], "positive": None})
        rows[-1]["positive"] = rows[-1]["value"] > t.params["x"]
    return rows


def _plot(table, config):
    return mean_std_lines(table, "x", "value", hue="y").figure


def _summarize(table, config):
    return {"mean_value": float(table["value"].mean()), "rows": int(len(table))}


def _validate(config):
    if config["params"]["scale"] <= 0:
        raise ValueError(f"scale must be > 0, got {config['params']['scale']}")


def make_toy(name: str, chunk_by=("y",)) -> Experiment:
    """A toy experiment named ``name`` (registered) with grid x in {0,1,2}, y in {10, 20}."""
    return register(Experiment(
        name=name,
        description="toy experiment for engine tests",
        run=_run,
        grid={"x": [0, 1, 2], "y": [10, 20]},
        quick_grid={"x": [0, 1], "y": [10]},
        params={"scale": 1.0, "fail_x": -1, "label": "a", "flag": False},
        trials=3,
        quick_trials=2,
        chunk_by=chunk_by,
        plot=_plot,
        summarize=_summarize,
        validate=_validate,
        doc="Toy.",
    ))


TOY = make_toy("toy-noise")
TOY_PER_POINT = make_toy("toy-noise-per-point", chunk_by=None)
