"""The grid-sweep engine: ``run_grid`` runs an experiment over a grid of parameters and trials.

Data path: experiment from the registry -> grid points (cartesian product, in the
order of the grid's keys) x trials -> one integer seed per (point, trial) ->
chunks (``Experiment.chunk_by``) -> each chunk run by one ``Experiment.run`` call
(locally with joblib, or on a Dask distributed cluster) -> rows (one or several per
task) -> a tidy table.

Reproducibility
    One :class:`numpy.random.SeedSequence` per sweep (``seed``); the trial seed of
    grid point ``p`` and trial ``j`` is ``SeedSequence(seed, spawn_key=(h(p), j))``
    reduced to a 63-bit int, with ``h(p)`` a stable hash of the point's grid
    values (of those named by ``Experiment.seed_by`` when it is set: points that
    agree on them share their trial seeds, common random numbers along the other
    keys).  It depends on neither the chunking, the order of execution nor the
    number of workers, so the table is identical for any ``n_jobs`` and backend;
    and two experiments swept with the same seed see the same data in the cells
    they share (``molrg-kss`` and ``molrg-sgd``, say).

Cache and resume
    Each finished chunk is written as JSON (rows, task list and a SHA-256
    checksum) to a temporary file, then renamed into place (``os.replace`` is
    atomic), under a folder keyed by the hash of the experiment name, its full
    configuration, the package version and the code fingerprint
    (:func:`phase_transition.fingerprint.code_fingerprint`: a hash of the source
    that computes the rows, plus ``Experiment.version``; figure code is left
    out, so editing a plot keeps the cache).  A re-run loads finished chunks and
    computes only the others; an interrupted run loses at most the chunks in
    flight.  A file that does not parse, fails its checksum or holds other tasks
    is reported with a warning and recomputed.

Concurrent runs and read-only folders
    Before computing, a run claims each missing chunk with a ``.claim`` file
    made under an exclusive lock of the folder (:class:`_Claims`); a chunk
    claimed by another live run is waited for and read, never recomputed, and
    a claim left by a process that died is taken over.  Temporary names are
    unique per process.  A folder holding every chunk is only read (its
    ``config.json`` is rewritten only when it differs), so a complete cache
    works from a read-only folder; a folder that must be written and cannot be
    is a ``ValueError`` before any work.

Parameters
----------
    With typed parameters (``Experiment.parameters``, see
    :mod:`phase_transition.params`) :func:`plan_grid` builds and validates one
    instance per grid point before any chunk runs; ``Task.params`` is that
    instance.

Failures
    If ``Experiment.run`` raises on a chunk, its tasks are re-run one at a time;
    a task that raises again gets a row with NaN metrics and the exception in the
    ``error`` column (``fail_fast=True`` re-raises instead).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import numbers
import os
import socket
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .fingerprint import code_fingerprint
from .results import _FILE_MODE, atomic_write

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: claims without the folder lock
    fcntl = None  # type: ignore[assignment]
from .registry import Experiment, Task, get_experiment

__all__ = ["run_grid", "plan_grid", "GridPlan", "CacheWarning", "package_version", "trial_seed"]

BACKENDS = ("loky", "dask")
_POLL_S = 0.05  # how often a run waiting for another run's chunk looks again


class CacheWarning(UserWarning):
    """A cache file was unreadable or inconsistent and is being recomputed."""


def package_version() -> str:
    """The installed version of ``lowdim-diffusion`` (``"unknown"`` when not installed)."""
    try:
        from importlib.metadata import version

        return version("lowdim-diffusion")
    except Exception:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _jsonable(v: Any) -> Any:
    """Plain Python scalars (and lists) for JSON and pandas."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(_jsonable(obj), sort_keys=True, default=repr).encode()).hexdigest()


def trial_seed(seed: int, point: Mapping[str, Any], trial: int) -> int:
    """The integer seed of grid ``point`` and ``trial`` in a sweep seeded with ``seed`` (see module doc)."""
    h = int(_digest(sorted(point.items()))[:16], 16)
    ss = np.random.SeedSequence(seed, spawn_key=(h, int(trial)))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class GridPlan:
    """Everything ``run_grid`` will do, validated: the configuration, the points and the chunks."""

    experiment: Experiment
    config: dict
    points: list  # list of dicts, cartesian order
    chunks: list  # list of lists of (point_index, Task)
    key: str  # configuration hash (cache folder)


def _check_values(name: str, values: Any) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not isinstance(values, np.ndarray):
        values = [values]
    values = [_jsonable(v) for v in values]
    if not values:
        raise ValueError(f"grid[{name!r}] must hold at least one value")
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"grid[{name!r}] has repeated values: {values}")
    return values


def plan_grid(
    experiment,
    grid: Mapping[str, Any] | None = None,
    *,
    trials: int | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    quick: bool = False,
) -> GridPlan:
    """Validate the arguments of :func:`run_grid` and lay out points, seeds and chunks (runs nothing)."""
    exp = get_experiment(experiment)
    for arg, value in (("grid", grid), ("params", params)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{arg} must be a dict of {{name: value}} or None, got {type(value).__name__}: {value!r}")
    base_grid = dict(exp.quick_grid if quick else exp.grid)
    for k, v in dict(grid or {}).items():
        if k not in base_grid:
            raise ValueError(f"grid key {k!r} is not a grid parameter of {exp.name}; grid parameters: {sorted(base_grid)}")
        base_grid[k] = v
    grid = {k: _check_values(k, v) for k, v in base_grid.items()}
    full_params = dict(exp.params)
    if quick:
        full_params.update(exp.quick_params)
    for k, v in dict(params or {}).items():
        if k not in exp.params:
            raise ValueError(f"parameter {k!r} is not a parameter of {exp.name}; parameters: {sorted(exp.params)}")
        full_params[k] = _jsonable(v)
    if trials is None:
        trials = exp.quick_trials if quick else exp.trials
    if isinstance(trials, bool) or not isinstance(trials, numbers.Integral) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = {
        "experiment": exp.name,
        "grid": grid,
        "params": full_params,
        "trials": int(trials),
        "seed": int(seed),
        "quick": bool(quick),
        "version": package_version(),
        "fingerprint": code_fingerprint(exp),
    }
    if exp.validate is not None:
        exp.validate(config)
    keys = list(grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    values = [_typed(exp, full_params, point, len(points)) for point in points]  # every point checked before any work
    if exp.parameters is not None and values:
        config["params"] = {k: values[0][k] for k in full_params}  # as coerced by the declared types
    groups: dict[Any, list] = {}
    for i, point in enumerate(points):
        gkey = i if exp.chunk_by is None else tuple(repr(point[k]) for k in exp.chunk_by)
        for j in range(trials):
            # the seed hashes the grid values as written in the grid (typed coercion changes no seed)
            seed_point = point if exp.seed_by is None else {k: point[k] for k in exp.seed_by}
            task = Task(params=values[i], trial=j, seed=trial_seed(seed, seed_point, j))
            groups.setdefault(gkey, []).append((i, task))
    key = _digest({k: config[k] for k in ("experiment", "grid", "params", "trials", "seed", "version", "fingerprint")})[:20]
    return GridPlan(exp, config, points, list(groups.values()), key)


def _typed(exp: Experiment, fixed: Mapping[str, Any], point: Mapping[str, Any], n_points: int):
    """The parameters of one grid point: a validated ``exp.parameters`` instance (a dict for older experiments)."""
    if exp.parameters is None:
        return {**fixed, **point}
    specs = exp.parameters.specs()  # type: ignore[attr-defined]
    try:
        for k, v in fixed.items():  # a bad fixed value is named without a grid point
            specs[k].coerce(v)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{exp.name}: {exc}") from None
    try:
        return exp.parameters(**fixed, **point)
    except (TypeError, ValueError) as exc:
        where = f" (grid point {', '.join(f'{k}={v!r}' for k, v in point.items())})" if n_points > 1 and point else ""
        raise type(exc)(f"{exp.name}: {exc}{where}") from None


# --------------------------------------------------------------------------- running one chunk
def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]


def _checked_rows(rows: Any, n: int, name: str) -> list:
    """One entry per task: a dict (one row) or a non-empty list of dicts (several rows), made JSON-plain."""
    def entry(r):
        if isinstance(r, Mapping):
            return {k: _jsonable(v) for k, v in r.items()}
        if isinstance(r, (list, tuple)) and r and all(isinstance(x, Mapping) for x in r):
            return [{k: _jsonable(v) for k, v in x.items()} for x in r]
        raise TypeError
    if not isinstance(rows, (list, tuple)) or len(rows) != n:
        raise TypeError(f"{name}.run must return a list of {n} entries (one per task), got {type(rows).__name__}")
    try:
        return [entry(r) for r in rows]
    except TypeError:
        raise TypeError(f"{name}.run must return, per task, a dict of metrics or a non-empty list of dicts") from None


def _with_timing(entry, dt: float, error: str):
    """Attach ``runtime_s`` (a task's time, spread over its rows) and ``error`` to an entry's rows."""
    if isinstance(entry, list):
        return [{**r, "runtime_s": dt / len(entry), "error": error} for r in entry]
    return {**entry, "runtime_s": dt, "error": error}


def run_chunk(experiment: Experiment, tasks: Sequence[Task], fail_fast: bool = False) -> list:
    """Run one chunk; returns one entry per task (a row, or a list of rows): metrics plus ``runtime_s`` and ``error``."""
    t0 = time.perf_counter()
    try:
        rows = _checked_rows(experiment.run(list(tasks)), len(tasks), experiment.name)
        errors = [""] * len(tasks)
        elapsed = [(time.perf_counter() - t0) / len(tasks)] * len(tasks)
    except Exception:
        if fail_fast:
            raise
        rows, errors, elapsed = [], [], []
        for task in tasks:  # isolate the failing trials
            t1 = time.perf_counter()
            try:
                rows.append(_checked_rows(experiment.run([task]), 1, experiment.name)[0])
                errors.append("")
            except Exception as exc_one:
                rows.append({})
                errors.append(_error_text(exc_one))
            elapsed.append(time.perf_counter() - t1)
    return [_with_timing(r, dt, e) for r, dt, e in zip(rows, elapsed, errors)]


# --------------------------------------------------------------------------- cache
def _chunk_tasks_record(chunk) -> list:
    return [[i, t.trial, t.seed] for i, t in chunk]


def _cache_path(folder: Path, index: int, chunk) -> Path:
    return folder / f"chunk-{index:05d}-{_digest(_chunk_tasks_record(chunk))[:12]}.json"


def _load_chunk(path: Path, chunk) -> list | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        rows = data["rows"]
        if data["checksum"] != _digest(rows) or data["tasks"] != _chunk_tasks_record(chunk) or len(rows) != len(chunk):
            raise ValueError("checksum or task list mismatch")
        return rows
    except Exception as exc:
        warnings.warn(f"cache file {path.name} is corrupted ({_error_text(exc)}); recomputing it", CacheWarning, stacklevel=3)
        return None


def _save_chunk(path: Path, chunk, rows: list) -> None:
    payload = json.dumps({"tasks": _chunk_tasks_record(chunk), "rows": rows, "checksum": _digest(rows)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _Claims:
    """Atomic per-chunk claims in a cache folder, so that concurrent runs never compute a chunk twice.

    A claim is a file ``<chunk>.claim`` holding ``host pid token`` (``token``:
    one per :class:`_Claims`, so two runs in one process are told apart).
    Claims are made and judged while holding an exclusive ``flock`` on the
    folder's ``.lock`` file (POSIX; without ``fcntl`` the claims are made
    without it).  A claim whose process is gone (same host, pid not alive) is
    stale and taken over; a chunk file that exists is finished.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.me = (socket.gethostname(), os.getpid(), uuid.uuid4().hex)
        self.unreadable: set[Path] = set()  # chunk files that exist but failed to load

    def check_writable(self) -> None:
        try:
            with self._locked():
                pass
        except OSError as exc:
            raise ValueError(f"cache_dir: cannot write into {self.folder} ({exc.strerror or exc})") from None

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    @staticmethod
    def _claim_path(path: Path) -> Path:
        return path.with_suffix(".claim")

    def _owner(self, path: Path):
        try:
            host, pid, token = self._claim_path(path).read_text().split()
            return host, int(pid), token
        except (OSError, ValueError):
            return None

    def _live_other(self, path: Path) -> bool:
        owner = self._owner(path)
        if owner is None or owner == self.me:
            return False
        host, pid, _ = owner
        if host != self.me[0]:
            return True  # another machine: assume alive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _write_claim(self, path: Path) -> None:
        atomic_write(self._claim_path(path), " ".join(map(str, self.me)))

    def claim(self, paths: Sequence[Path]) -> tuple[list[int], list[int], list[int]]:
        """Claim the chunks of ``paths``: indices claimed here, held by another live run, already finished."""
        mine, other, done = [], [], []
        with self._locked():
            for k, path in enumerate(paths):
                if path.exists() and path not in self.unreadable:
                    done.append(k)
                elif self._live_other(path):
                    other.append(k)
                else:
                    self._write_claim(path)
                    mine.append(k)
        return mine, other, done

    def force(self, path: Path) -> None:
        with self._locked():
            self._write_claim(path)

    def held_by_other(self, path: Path) -> bool:
        with self._locked():
            return self._live_other(path)

    def release(self, path: Path) -> None:
        with self._locked():
            if self._owner(path) == self.me:
                with contextlib.suppress(FileNotFoundError):
                    self._claim_path(path).unlink()


# --------------------------------------------------------------------------- backends
def _execute(plan: GridPlan, pending: list[int], n_jobs: int, backend: str, scheduler, fail_fast: bool):
    """Yield ``(chunk_index, rows)`` as chunks finish."""
    if not pending:  # everything cached: start no workers and no cluster
        return
    exp = plan.experiment
    tasks_of = {c: [t for _, t in plan.chunks[c]] for c in pending}
    if backend == "dask":
        try:
            from dask.distributed import Client, as_completed
        except ImportError as exc:  # pragma: no cover - dask is an optional dependency
            raise ImportError("backend='dask' needs dask.distributed: pip install 'lowdim-diffusion[distributed]'") from exc

        if isinstance(scheduler, Client):
            client = scheduler
        else:
            try:
                client = Client(scheduler) if scheduler else Client(processes=False)
            except OSError as exc:
                raise ValueError(f"scheduler {scheduler!r}: cannot connect ({exc})") from exc
        own = client is not scheduler
        futures: dict = {}
        try:
            futures = {client.submit(run_chunk, exp, tasks_of[c], fail_fast, pure=False): c for c in pending}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            unfinished = [f for f in futures if not f.done()]
            if unfinished and not own:  # interrupted: free the caller's cluster
                client.cancel(unfinished)
            if own:
                client.close()
    elif n_jobs == 1 or len(pending) <= 1:
        for c in pending:
            yield c, run_chunk(exp, tasks_of[c], fail_fast)
    else:
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")

        def job(c):
            return c, run_chunk(exp, tasks_of[c], fail_fast)

        yield from par(delayed(job)(c) for c in pending)


# --------------------------------------------------------------------------- public
def run_grid(
    experiment,
    grid: Mapping[str, Any] | None = None,
    *,
    trials: int | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    quick: bool = False,
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: Any = None,
    cache_dir: str | os.PathLike | None = None,
    fail_fast: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Run ``experiment`` over the cartesian product of ``grid`` times ``trials``.

    Parameters
    ----------
    experiment : str or Experiment
        A registered name (``phase-transition list``) or an :class:`Experiment`.
    grid : dict, optional
        Values for some grid parameters (``{"d": [2, 4]}``); the others keep the
        experiment's default (or quick) values.
    trials : int, optional
        Independent trials per grid point (default: the experiment's).
    seed : int, default 0
        Seed of the sweep (see the module doc: the table depends on it only).
    params : dict, optional
        Overrides of the experiment's fixed parameters.
    quick : bool, default False
        Start from the experiment's quick grid, parameters and trials.
    n_jobs : int, default 1
        Parallel chunks with joblib (``-1``: all cores).
    backend : {"loky", "dask"}, default "loky"
        ``dask`` runs chunks on a Dask distributed cluster: ``scheduler`` is its
        address or a ``dask.distributed.Client`` (None: a local in-process cluster).
    cache_dir : path, optional
        Where finished chunks are kept (None: no cache).
    fail_fast : bool, default False
        Re-raise the first exception of a trial instead of recording it.
    progress : bool, optional
        Show a tqdm bar over chunks (default: when stderr is a terminal).

    Returns
    -------
    pandas.DataFrame
        One row per (grid point, trial), or several where ``run`` returns a list of
        rows for a task (in its order): the grid parameters, ``trial``, ``seed``,
        the metrics, ``runtime_s`` and ``error``; ``df.attrs["config"]`` holds the
        configuration (experiment, grid, params, trials, seed, version, runtime).

    Examples
    --------
    >>> df = run_grid("molrg-pca", {"d": [2], "N": [1, 2, 3]}, trials=2)  # doctest: +SKIP
    >>> df.groupby("N")["success"].mean().tolist()  # doctest: +SKIP
    [0.0, 1.0, 1.0]
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    if scheduler is not None and backend != "dask":
        raise ValueError(f"scheduler is used only with backend='dask', got backend={backend!r}")
    plan = plan_grid(experiment, grid, trials=trials, seed=seed, params=params, quick=quick)
    t0 = time.perf_counter()
    results: dict[int, list] = {}
    folder = claims = None
    if cache_dir is not None:
        folder = Path(cache_dir) / f"{plan.experiment.name}-{plan.key}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cache_dir: cannot create {folder} ({exc.strerror or exc})") from None
        claims = _Claims(folder)
        for c, chunk in enumerate(plan.chunks):
            rows = _load_chunk(_cache_path(folder, c, chunk), chunk)
            if rows is not None:
                results[c] = rows
            elif _cache_path(folder, c, chunk).exists():
                claims.unreadable.add(_cache_path(folder, c, chunk))  # corrupted: recompute, do not wait for it
        config_text = json.dumps(plan.config, indent=1, sort_keys=True)
        if len(results) < len(plan.chunks):  # something to compute: the folder must be writable
            claims.check_writable()
        try:
            if not (folder / "config.json").is_file() or (folder / "config.json").read_text() != config_text:
                atomic_write(folder / "config.json", config_text)
        except OSError:  # a read-only folder holding a complete cache
            pass
    n_cached = len(results)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    from tqdm.auto import tqdm

    with tqdm(total=len(plan.chunks), initial=len(results), desc=plan.experiment.name, unit="chunk", disable=not show) as bar:
        waiting: list[int] = []
        pending = [c for c in range(len(plan.chunks)) if c not in results]
        while pending or waiting:
            if claims is not None and pending:
                # claim before computing: a chunk claimed by another live run is waited for, not recomputed
                mine, other, done = claims.claim([_cache_path(folder, c, plan.chunks[c]) for c in pending])
                for k in done:
                    rows = _load_chunk(_cache_path(folder, pending[k], plan.chunks[pending[k]]), plan.chunks[pending[k]])
                    if rows is None:
                        mine.append(k)
                        claims.force(_cache_path(folder, pending[k], plan.chunks[pending[k]]))
                    else:
                        results[pending[k]] = rows
                        n_cached += 1
                        bar.update(1)
                waiting += [pending[k] for k in other]
                pending = [pending[k] for k in sorted(mine)]
            try:
                for c, rows in _execute(plan, pending, n_jobs, backend, scheduler, fail_fast):
                    if folder is not None:
                        path = _cache_path(folder, c, plan.chunks[c])
                        _save_chunk(path, plan.chunks[c], rows)
                        claims.release(path)
                    results[c] = rows
                    bar.update(1)
            finally:
                if claims is not None:  # interrupted: give back what was claimed and not finished
                    for c in pending:
                        if c not in results:
                            claims.release(_cache_path(folder, c, plan.chunks[c]))
            pending = []
            if waiting:
                time.sleep(_POLL_S)
                still = []
                for c in waiting:
                    path = _cache_path(folder, c, plan.chunks[c])
                    if path.exists():
                        rows = _load_chunk(path, plan.chunks[c])
                        if rows is not None:
                            results[c] = rows
                            n_cached += 1
                            bar.update(1)
                            continue
                    if claims.held_by_other(path):
                        still.append(c)
                    else:  # the other run finished without it (interrupted, killed): compute it here
                        pending.append(c)
                waiting = still
    return _assemble(plan, results, time.perf_counter() - t0, n_cached)


def _assemble(plan: GridPlan, results: Mapping[int, list], runtime: float, n_cached: int = 0) -> pd.DataFrame:
    records = []
    metric_cols: dict[str, None] = {}
    for c, chunk in enumerate(plan.chunks):
        for (i, task), entry in zip(chunk, results[c]):
            for j, row in enumerate(entry if isinstance(entry, list) else [entry]):
                for k in row:
                    if k not in ("runtime_s", "error"):
                        metric_cols.setdefault(k, None)
                records.append((i, task.trial, j, {**plan.points[i], "trial": task.trial, "seed": task.seed, **row}))
    records.sort(key=lambda r: r[:3])
    columns = list(plan.config["grid"]) + ["trial", "seed"] + list(metric_cols) + ["runtime_s", "error"]
    df = pd.DataFrame([r[3] for r in records], columns=columns)
    df["error"] = df["error"].fillna("").astype(str)
    config = dict(plan.config)
    config["runtime_s"] = round(runtime, 3)
    # compute time of every chunk, whether run now or read from the cache (a chunk's time is spread over its rows)
    config["compute_s"] = round(float(df["runtime_s"].sum()), 3)
    config["n_chunks"] = len(plan.chunks)
    config["cached_chunks"] = int(n_cached)
    config["n_rows"] = len(df)
    config["n_errors"] = int((df["error"] != "").sum())
    df.attrs["config"] = config
    return df
