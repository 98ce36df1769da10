"""Toy experiments for the engine tests (``test_grid``, ``test_cli``, ``test_report``).

Not collected by pytest (no ``test_`` prefix) and not part of the registry
package: the tests import this module and register ``TOY`` themselves.

Side channels go through files in the folder named by the ``log_dir`` parameter
(files, not environment variables, because joblib reuses its worker processes):

* every ``run`` call writes one ``call-*`` file there (counting calls across
  processes);
* while a file ``crash`` holding ``"<k> <mode>"`` exists, a call made after
  ``k`` logged calls raises ``KeyboardInterrupt`` (mode ``interrupt``) or kills
  its own process with ``os._exit(3)`` (mode ``exit``).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from phase_transition.params import Parameters, param
from phase_transition.registry import Experiment


def _log_and_maybe_crash(tasks) -> None:
    log_dir = tasks[0].params["log_dir"]
    if not log_dir:
        return
    log = Path(log_dir)
    done = len(list(log.glob("call-*")))
    crash = log / "crash"
    if crash.exists():
        after, mode = crash.read_text().split()
        if done >= int(after):
            if mode == "exit":
                os._exit(3)
            raise KeyboardInterrupt
    keys = ";".join(f"{t.params['a']}-{t.params['b']}-{t.trial}" for t in tasks)
    (log / f"call-{uuid.uuid4().hex}").write_text(keys)


def toy_run(tasks):
    """One row per task: a noisy product (seeded by the task) and a boolean."""
    _log_and_maybe_crash(tasks)
    if tasks[0].params["sleep_s"]:
        time.sleep(tasks[0].params["sleep_s"])
    rows = []
    for task in tasks:
        p = task.params
        if p["fail_all"]:
            raise MemoryError(f"toy: cannot allocate for a={p['a']}")
        if p["a"] == p["fail_on"] and task.trial == 1:
            raise ValueError(f"toy failure at a={p['a']} trial={task.trial}")
        value = p["a"] * p["b"] * p["scale"] + task.rng.normal()
        rows.append({"value": float(value), "big": bool(value > 2.0)})
    return rows


@dataclass(frozen=True, kw_only=True)
class ToyParameters(Parameters):
    """The toy sweep's parameters: grid keys ``a`` and ``b``, the rest fixed."""

    a: int = param(ge=1, le=100, help="first factor (grid)")
    b: float = param(gt=0.0, help="second factor (grid)")
    scale: float = param(1.0, gt=0.0, help="multiplies the product")
    fail_on: int = param(-1, help="the value of a whose trial 1 raises (-1: none)")
    label: str = param("x", help="free text")
    log_dir: str = param("", help="folder of the call log (empty: no log)")
    mode: str = param("plain", choices=("plain", "fancy"), help="a choice, for the CLI tests")
    fail_all: bool = param(False, help="every trial raises")
    sleep_s: float = param(0.0, ge=0.0, help="seconds each run call sleeps (concurrency tests)")

    def validate(self):
        if self.fail_on == 0:
            raise ValueError("fail_on must not be 0 (toy cross-field rule)")


def toy_plot(table: pd.DataFrame, config) -> Figure:
    from phase_transition.plots import success_heatmap

    return success_heatmap(table, [("big", "P(value > 2)")], x="a", y="b")


def toy_summarize(table: pd.DataFrame, config) -> dict:
    ok = table[table["error"] == ""]
    return {"mean value": float(ok["value"].mean()), "rows": int(len(table))}


TOY = Experiment(
    name="toy-sweep",
    description="Toy sweep used by the engine tests",
    run=toy_run,
    grid={"a": [1, 2, 3, 4], "b": [0.5, 1.0, 2.0]},
    quick_grid={"a": [1, 2, 3], "b": [0.5, 1.0]},
    parameters=ToyParameters,
    quick_params={"scale": 2.0},
    trials=4,
    quick_trials=3,
    chunk_by=("a",),
    plot=toy_plot,
    summarize=toy_summarize,
    doc="A product of the grid values plus standard normal noise.",
)


def wrong_count_run(tasks):
    """Violates the contract: one row too few."""
    return [{"value": 1.0} for _ in tasks[1:]]


WRONG_COUNT = Experiment(
    name="toy-wrong-count",
    description="run returns too few rows",
    run=wrong_count_run,
    grid={"a": [1, 2]},
    quick_grid={"a": [1]},
    trials=2,
)


def array_run(tasks):
    """Metrics as numpy scalars (converted by the engine to plain Python values)."""
    return [{"x": np.float32(t.params["a"]) / 2, "n": np.int64(t.trial), "ok": np.bool_(True)} for t in tasks]


ARRAY = Experiment(
    name="toy-numpy",
    description="numpy scalar metrics",
    run=array_run,
    grid={"a": [1, 2]},
    quick_grid={"a": [1]},
    trials=2,
)


def levels_run(tasks):
    """Several rows per task: one per level, each from the task's own generator (so the rows are seeded)."""
    out = []
    for t in tasks:
        if t.params["a"] == 3 and t.trial == 1:
            raise ValueError("toy failure at a=3 trial=1")
        draws = t.rng.standard_normal(t.params["a"])
        out.append([{"level": j, "value": float(v)} for j, v in enumerate(draws)])
    return out


LEVELS = Experiment(
    name="toy-levels",
    description="several rows per task (one per level)",
    run=levels_run,
    grid={"a": [1, 2, 3]},
    quick_grid={"a": [1, 2, 3]},
    trials=2,
    chunk_by=None,
)


def empty_entry_run(tasks):
    return [[] for _ in tasks]


EMPTY_ENTRY = Experiment(
    name="toy-empty-entry",
    description="run returns an empty list for a task",
    run=empty_entry_run,
    grid={"a": [1]},
    quick_grid={"a": [1]},
    trials=1,
)


def broken_plot(table, config):
    raise RuntimeError("toy plot is broken")


BROKEN_PLOT = Experiment(
    name="toy-broken-plot",
    description="its figure raises",
    run=array_run,
    grid={"a": [1, 2]},
    quick_grid={"a": [1]},
    trials=1,
    quick_trials=1,
    plot=broken_plot,
)
