"""One run path: sweep, save, plot and summarize an experiment (``phase-transition run`` and the report).

:func:`run_experiment` is the only place where a sweep becomes files:

1. plan and validate (:func:`~phase_transition.grid.plan_grid`: every bad
   parameter is one ``ValueError``/``TypeError`` before any work);
2. check that the output folder is writable (:class:`OutputError` otherwise);
3. run the sweep (:func:`~phase_transition.grid.run_grid`, with its cache);
4. keep the successful rows (:func:`~phase_transition.plots.successful_rows`),
   the one shared place where failed rows are left out: ``plot`` and
   ``summarize`` receive only those;
5. write ``<name>.csv`` and ``<name>.json`` (byte-stable, see
   :mod:`phase_transition.results`; when the folder already holds a table
   with the same values, floats within ``results.RTOL``, that saved table is
   kept and the figure and summary are drawn from it), and ``<name>.png``
   unless every row failed
   (then no figure is drawn and a figure left from an earlier run is removed,
   so no picture contradicts the table).

:func:`replot` rebuilds the figure from a saved table alone
(``phase-transition plot NAME --from DIR``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .grid import plan_grid, run_grid
from .plots import successful_rows
from .registry import Experiment, get_experiment
from .results import atomic_write, figure_bytes, load_results, save_results, tables_equivalent

__all__ = ["run_experiment", "replot", "ExperimentRun", "RunError", "OutputError", "check_writable", "check_plan"]


class RunError(ValueError):
    """The run cannot start: a bad parameter or output folder (raised before any work; the CLI exits 2)."""


class OutputError(RunError):
    """The output folder cannot be created or written."""


def check_plan(experiment, **kwargs):
    """:func:`~phase_transition.grid.plan_grid`, its ``ValueError``/``TypeError`` turned into :class:`RunError`."""
    try:
        return plan_grid(experiment, **kwargs)
    except (ValueError, TypeError) as exc:
        raise RunError(str(exc).replace("\n", " ")) from exc


def check_writable(folder: str | os.PathLike, what: str = "--out") -> Path:
    """Create ``folder`` if needed and check that a file can be written into it (:class:`OutputError` otherwise)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {folder}: not a writable folder ({exc.strerror or exc})") from None
    return folder


@dataclass(frozen=True)
class ExperimentRun:
    """What :func:`run_experiment` did: the table, its configuration and summary, the files written.

    ``n_errors`` rows failed out of ``n_rows``; ``all_failed`` means no figure
    and no summary were made; ``first_error`` quotes the first failure.
    ``config`` is this call's configuration (with this call's timings),
    ``saved`` the JSON as written (timings kept from the folder when the table
    did not change).
    """

    experiment: str
    table: pd.DataFrame = field(repr=False)
    config: dict = field(repr=False)
    summary: dict
    paths: dict
    n_rows: int
    n_errors: int
    saved: dict = field(default_factory=dict, repr=False)

    @property
    def all_failed(self) -> bool:
        return self.n_rows > 0 and self.n_errors == self.n_rows

    @property
    def first_error(self) -> str:
        errors = self.table.loc[self.table["error"] != "", "error"]
        return str(errors.iloc[0]) if len(errors) else ""

    def message(self) -> str:
        """One line: rows, failures and time; for an all-failed sweep, the count and the first error."""
        if self.all_failed:
            return f"{self.experiment}: all {self.n_rows} rows failed; first error: {self.first_error}"
        text = f"{self.experiment}: {self.n_rows} rows, {self.n_errors} failed"
        return text + (f" (first error: {self.first_error})" if self.n_errors else "")

    def to_frame(self) -> pd.DataFrame:
        """The sweep's table (one row per grid point and trial)."""
        return self.table


def run_experiment(
    experiment: str | Experiment,
    out: str | os.PathLike,
    *,
    grid: dict | None = None,
    params: dict | None = None,
    trials: int | None = None,
    seed: int = 0,
    quick: bool = False,
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: Any = None,
    cache_dir: str | os.PathLike | None = None,
    fail_fast: bool = False,
    progress: bool | None = None,
) -> ExperimentRun:
    """Run ``experiment`` and write its table, configuration and figure into ``out`` (see the module doc).

    The arguments are those of :func:`~phase_transition.grid.run_grid`; ``out``
    receives ``<name>.csv``, ``<name>.json`` and ``<name>.png``, ``cache_dir``
    the chunk cache (None: no cache).  Raises :class:`RunError` (a
    ``ValueError``) for a bad parameter and :class:`OutputError` for an
    unwritable ``out`` or ``cache_dir``, before anything is computed.  An all-failed sweep is not an
    exception: it is written and reported by :attr:`ExperimentRun.all_failed`.
    """
    exp = get_experiment(experiment)
    check_plan(exp, grid=grid, trials=trials, seed=seed, params=params, quick=quick)  # validation before anything
    out = check_writable(out)
    if cache_dir is not None:
        check_writable(cache_dir, "cache folder")
    table = run_grid(exp, grid, trials=trials, seed=seed, params=params, quick=quick, n_jobs=n_jobs,
                     backend=backend, scheduler=scheduler, cache_dir=cache_dir, fail_fast=fail_fast,
                     progress=progress)
    config = table.attrs["config"]
    table = _keep_saved_values(table, out, exp.name)
    ok = successful_rows(table)
    figure, summary = None, {}
    if len(ok):
        figure = exp.plot(ok, config) if exp.plot is not None else None
        summary = exp.summarize(ok, config) if exp.summarize is not None else {}
    elif (out / f"{exp.name}.png").exists():
        (out / f"{exp.name}.png").unlink()  # no figure beside a table of failures
    paths = save_results(table, out, exp.name, figure=figure, summary=summary)
    _close(figure)
    saved = json.loads(paths["json"].read_text())
    return ExperimentRun(exp.name, table, config, dict(summary), paths, len(table), int(config["n_errors"]), saved)


def _keep_saved_values(table: pd.DataFrame, out: Path, name: str) -> pd.DataFrame:
    """The saved table of ``name`` in ``out`` when it holds the same values (:func:`tables_equivalent`), else ``table``.

    Figure, summary and CSV are then made from the saved values, so that a
    re-run whose floats differ only in the last bits rewrites nothing.  The
    configuration and timings are this run's.
    """
    try:
        saved, _ = load_results(out, name)
    except (OSError, ValueError):
        return table
    if not tables_equivalent(table, saved):
        return table
    saved = saved.drop(columns=["runtime_s"], errors="ignore")
    if "runtime_s" in table:
        saved.insert(saved.columns.get_loc("error") if "error" in saved else len(saved.columns), "runtime_s",
                     table["runtime_s"].to_numpy())
    saved.attrs = dict(table.attrs)
    return saved


def replot(experiment: str | Experiment, folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Rebuild the figure of ``experiment`` from its saved table in ``folder`` alone; returns the PNG path.

    Reads ``<name>.csv`` and ``<name>.json`` (:func:`~phase_transition.results.load_results`),
    calls the experiment's ``plot`` on the successful rows and writes
    ``out`` (default ``<folder>/<name>.png``; unchanged bytes are not rewritten).
    """
    exp = get_experiment(experiment)
    if exp.plot is None:
        raise RunError(f"{exp.name} has no figure")
    try:
        table, meta = load_results(folder, exp.name)
    except FileNotFoundError as exc:
        raise RunError(str(exc)) from None
    ok = successful_rows(table)
    if not len(ok):
        raise RunError(f"{exp.name}: every row of the saved table failed; there is nothing to plot")
    figure = exp.plot(ok, meta)
    path = Path(out) if out is not None else Path(folder) / f"{exp.name}.png"
    check_writable(path.parent)
    atomic_write(path, figure_bytes(figure))
    _close(figure)
    return path


def _close(figure) -> None:
    """Free a pyplot figure (figures built with the object API need nothing)."""
    if figure is None:
        return
    try:
        import matplotlib.pyplot as plt

        if plt.fignum_exists(getattr(figure, "number", -1)):
            plt.close(figure)
    except Exception:  # pragma: no cover - closing is best effort
        pass
