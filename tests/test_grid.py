"""The sweep engine: table layout, seeds, parallel backends, errors, cache and resume."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from toy_experiments import ARRAY, EMPTY_ENTRY, LEVELS, TOY, WRONG_COUNT

from phase_transition import run_grid, trial_seed
from phase_transition.grid import CacheWarning, plan_grid

TESTS = Path(__file__).resolve().parent


def _values(df: pd.DataFrame) -> pd.DataFrame:
    """The table without the wall times (the only column allowed to differ between runs)."""
    return df.drop(columns="runtime_s").reset_index(drop=True)


def _calls(log: Path) -> list[str]:
    return sorted(p.read_text() for p in log.glob("call-*"))


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return run_grid(TOY, quick=True, seed=7, progress=False)


# --------------------------------------------------------------------------- layout and seeds
def test_table_layout(reference):
    df = reference
    assert list(df.columns) == ["a", "b", "trial", "seed", "value", "big", "runtime_s", "error"]
    assert len(df) == 3 * 2 * 3
    # grid order (a outer, b inner), then trial
    expected = [(a, b, j) for a in (1, 2, 3) for b in (0.5, 1.0) for j in range(3)]
    assert list(zip(df["a"], df["b"], df["trial"])) == expected
    assert (df["error"] == "").all()
    assert (df["runtime_s"] >= 0).all()
    assert df["seed"].nunique() == len(df)
    assert df["seed"].dtype.kind == "i"
    assert df["big"].dtype == bool
    cfg = df.attrs["config"]
    assert cfg["experiment"] == "toy-sweep"
    assert cfg["grid"] == {"a": [1, 2, 3], "b": [0.5, 1.0]}
    assert cfg["params"] == {"scale": 2.0, "fail_on": -1, "label": "x", "log_dir": "", "mode": "plain",
                             "fail_all": False, "sleep_s": 0.0}  # quick_params applied
    assert cfg["trials"] == 3 and cfg["seed"] == 7
    assert isinstance(cfg["version"], str) and cfg["version"]
    assert cfg["runtime_s"] >= 0 and cfg["n_rows"] == 18 and cfg["n_errors"] == 0


def test_values_follow_seeds(reference):
    """Each row is reproducible from its own seed alone."""
    for row in reference.itertuples():
        expected = row.a * row.b * 2.0 + np.random.default_rng(row.seed).normal()
        assert row.value == pytest.approx(expected, rel=1e-12)
        assert row.seed == trial_seed(7, {"a": row.a, "b": row.b}, row.trial)


def test_seeds_independent_of_the_rest_of_the_grid(reference):
    """A sub-grid, another chunking or a reordered grid sees the same seeds and values."""
    sub = run_grid(TOY, {"a": [3, 1], "b": [1.0]}, quick=True, seed=7, progress=False)
    merged = sub.merge(reference, on=["a", "b", "trial"], suffixes=("", "_ref"))
    assert len(merged) == len(sub) == 6
    np.testing.assert_array_equal(merged["seed"], merged["seed_ref"])
    np.testing.assert_allclose(merged["value"], merged["value_ref"], rtol=0, atol=0)
    assert list(sub["a"]) == [3, 3, 3, 1, 1, 1]  # the order of the given grid
    other = run_grid(TOY, quick=True, seed=8, progress=False)
    assert not np.isin(other["seed"], reference["seed"]).any()


def test_chunks_follow_chunk_by():
    plan = plan_grid(TOY, quick=True)
    assert len(plan.chunks) == 3  # one per value of a
    for chunk in plan.chunks:
        assert len({t.params["a"] for _, t in chunk}) == 1
        assert len(chunk) == 2 * 3
    assert sum(len(c) for c in plan.chunks) == 18


def test_numpy_metrics_become_plain_values():
    df = run_grid(ARRAY, progress=False)
    assert list(df.columns) == ["a", "trial", "seed", "x", "n", "ok", "runtime_s", "error"]
    assert df["ok"].dtype == bool and df["n"].dtype.kind == "i"
    np.testing.assert_allclose(df["x"], [0.5, 0.5, 1.0, 1.0])


# --------------------------------------------------------------------------- backends
def test_same_table_for_any_number_of_jobs_and_dask(reference):
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    two = run_grid(TOY, quick=True, seed=7, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(_values(two), _values(reference))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        on_client = run_grid(TOY, quick=True, seed=7, backend="dask", scheduler=client, progress=False)
        assert client.status == "running"  # a client given by the caller is left open
        on_address = run_grid(TOY, quick=True, seed=7, backend="dask", scheduler=cluster.scheduler_address,
                              progress=False)
    pd.testing.assert_frame_equal(_values(on_client), _values(reference))
    pd.testing.assert_frame_equal(_values(on_address), _values(reference))


# --------------------------------------------------------------------------- failures
def test_a_failing_trial_is_a_row_with_its_error():
    df = run_grid(TOY, quick=True, seed=7, params={"fail_on": 2}, progress=False)
    assert len(df) == 18
    bad = df["error"] != ""
    assert list(zip(df.loc[bad, "a"], df.loc[bad, "trial"])) == [(2, 1), (2, 1)]
    assert df.loc[bad, "error"].str.contains("ValueError: toy failure at a=2 trial=1").all()
    assert df.loc[bad, "value"].isna().all()
    assert df.loc[~bad, "value"].notna().all()
    assert df.attrs["config"]["n_errors"] == 2
    # the healthy trials of the failing chunk keep the values of a clean run
    clean = run_grid(TOY, quick=True, seed=7, progress=False)
    np.testing.assert_allclose(df.loc[~bad, "value"], clean.loc[~bad, "value"], rtol=0, atol=0)


def test_fail_fast_reraises():
    with pytest.raises(ValueError, match="toy failure"):
        run_grid(TOY, quick=True, params={"fail_on": 3}, fail_fast=True, progress=False)


def test_run_must_return_one_dict_per_task():
    df = run_grid(WRONG_COUNT, progress=False)
    assert len(df) == 4
    assert df["error"].str.contains("must return a list of").all()


def test_several_rows_per_task_make_a_tidy_table(tmp_path):
    df = run_grid(LEVELS, progress=False, cache_dir=tmp_path)
    ok = df[df["error"] == ""]
    # a = 1, 2, 3 levels per task, trial 1 of a = 3 failed (one row of NaN with its error)
    assert len(ok) == 2 * (1 + 2) + 3 and len(df) == len(ok) + 1
    assert df.loc[df["error"] != "", "value"].isna().all()
    assert list(df.columns[:3]) == ["a", "trial", "seed"]
    for (a, trial), rows in ok.groupby(["a", "trial"]):
        assert rows["level"].tolist() == list(range(a))  # each task's rows in their order
        seed = trial_seed(0, {"a": a}, trial)
        assert (rows["seed"] == seed).all()
        np.testing.assert_array_equal(rows["value"], np.random.default_rng(seed).standard_normal(a))
    # the task's time is spread over its rows: the chunk's total is kept
    assert df.attrs["config"]["n_rows"] == len(df)
    again = run_grid(LEVELS, progress=False, cache_dir=tmp_path)  # from the cache: the same table
    assert again.attrs["config"]["cached_chunks"] == again.attrs["config"]["n_chunks"]
    pd.testing.assert_frame_equal(df, again)


def test_seed_by_gives_common_random_numbers_along_the_other_keys():
    import dataclasses

    paired = dataclasses.replace(TOY, name="toy-paired", seed_by=("a",))
    plan = plan_grid(paired, quick=True, seed=3)
    seeds = {(t.params["a"], t.params["b"], t.trial): t.seed for chunk in plan.chunks for _, t in chunk}
    for (a, b, trial), s in seeds.items():
        assert s == trial_seed(3, {"a": a}, trial) == seeds[(a, 0.5, trial)]  # the same draw for every b
    assert len({s for (a, _, trial), s in seeds.items() if trial == 0}) == 3  # but not across a
    plain = plan_grid(TOY, quick=True, seed=3)  # default: the seed hashes the whole point
    assert len({t.seed for chunk in plain.chunks for _, t in chunk if t.trial == 0}) == 6
    with pytest.raises(ValueError, match="seed_by must name grid keys"):
        dataclasses.replace(TOY, name="toy-bad", seed_by=("nope",))


def test_an_empty_list_of_rows_is_an_error():
    df = run_grid(EMPTY_ENTRY, progress=False)
    assert df["error"].str.contains("non-empty list of dicts").all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grid": {"zzz": [1]}}, "grid key 'zzz'"),
        ({"grid": {"a": []}}, r"grid\['a'\]"),
        ({"params": {"nope": 1}}, "parameter 'nope'"),
        ({"trials": 0}, "trials must be"),
        ({"trials": 2.5}, "trials must be"),
        ({"seed": -1}, "seed must be"),
        ({"n_jobs": 0}, "n_jobs must be"),
        ({"backend": "spark"}, "backend must be one of"),
        ({"scheduler": "tcp://127.0.0.1:8786"}, "scheduler is used only with backend='dask'"),
        ({"params": {"scale": -1.0}}, "scale must be a finite number > 0.0, got -1.0"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_grid(TOY, quick=True, progress=False, **kwargs)


@pytest.mark.parametrize("kwargs", [{"grid": [1, 2]}, {"params": "scale=2"}])
def test_grid_and_params_must_be_mappings(kwargs):
    with pytest.raises(TypeError, match=f"{next(iter(kwargs))} must be a dict"):
        run_grid(TOY, quick=True, progress=False, **kwargs)


def test_unknown_experiment_name():
    with pytest.raises(ValueError, match="unknown experiment 'no-such-thing'"):
        run_grid("no-such-thing")


# --------------------------------------------------------------------------- cache and resume
def _toy_params(log: Path, **extra) -> dict:
    log.mkdir(exist_ok=True)
    return {"log_dir": str(log), **extra}


def test_cache_skips_finished_chunks(tmp_path, reference):
    log, cache = tmp_path / "log", tmp_path / "cache"
    params = _toy_params(log)
    first = run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    assert len(_calls(log)) == 3
    again = run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    assert len(_calls(log)) == 3  # nothing recomputed
    pd.testing.assert_frame_equal(again, first)  # cached runtimes are kept too
    pd.testing.assert_frame_equal(_values(again), _values(reference))
    c1, c2 = first.attrs["config"], again.attrs["config"]
    assert (c1["cached_chunks"], c2["cached_chunks"]) == (0, c1["n_chunks"]) == (0, 3)
    assert c2["compute_s"] == c1["compute_s"] > 0  # the compute time of cached chunks is still reported
    # another configuration is another cache folder
    run_grid(TOY, quick=True, seed=8, params=params, cache_dir=cache, progress=False)
    assert len(_calls(log)) == 6
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_resume_after_keyboard_interrupt(tmp_path, reference):
    log, cache = tmp_path / "log", tmp_path / "cache"
    params = _toy_params(log)
    (log / "crash").write_text("1 interrupt")
    with pytest.raises(KeyboardInterrupt):
        run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    finished = _calls(log)
    assert len(finished) == 1
    (log / "crash").unlink()
    resumed = run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(_values(resumed), _values(reference))
    assert not resumed.duplicated(["a", "b", "trial"]).any()
    calls = _calls(log)
    assert len(calls) == 3  # the finished chunk was not recomputed
    assert len(set(calls)) == 3  # and no chunk ran twice


def test_resume_after_the_process_is_killed(tmp_path, reference):
    """The sweeping process dies (os._exit) after two chunks; a new process finishes the rest."""
    log, cache = tmp_path / "log", tmp_path / "cache"
    params = _toy_params(log)
    (log / "crash").write_text("2 exit")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from phase_transition import run_grid
        from toy_experiments import TOY
        run_grid(TOY, quick=True, seed=7, params={params!r}, cache_dir={str(cache)!r}, progress=False)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert len(_calls(log)) == 2
    (log / "crash").unlink()
    resumed = run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(_values(resumed), _values(reference))
    assert len(_calls(log)) == 3
    # no temporary files left behind as chunks
    folder = next(p for p in cache.iterdir() if p.is_dir())
    assert len(list(folder.glob("chunk-*.json"))) == 3


def test_resume_after_a_worker_is_killed(tmp_path, reference):
    """A joblib worker kills itself: the sweep fails loudly, finished chunks survive, a re-run completes."""
    log, cache = tmp_path / "log", tmp_path / "cache"
    params = _toy_params(log)
    (log / "crash").write_text("1 exit")
    with pytest.raises(Exception) as info:
        run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, n_jobs=2, progress=False)
    assert not isinstance(info.value, AssertionError)
    folder = next(p for p in cache.iterdir() if p.is_dir())
    cached = len(list(folder.glob("chunk-*.json")))
    assert cached <= len(_calls(log)) <= 3
    before = len(_calls(log))
    (log / "crash").unlink()
    resumed = run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(_values(resumed), _values(reference))
    assert len(_calls(log)) - before == 3 - cached


def test_corrupted_cache_files_are_recomputed(tmp_path, reference):
    log, cache = tmp_path / "log", tmp_path / "cache"
    params = _toy_params(log)
    run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    folder = next(p for p in cache.iterdir() if p.is_dir())
    files = sorted(folder.glob("chunk-*.json"))
    assert len(files) == 3
    # 1: truncated JSON; 2: a value changed (checksum mismatch); 3: another chunk's task list, consistent checksum
    files[0].write_text(files[0].read_text()[:40])
    data = json.loads(files[1].read_text())
    data["rows"][0]["value"] += 1.0
    files[1].write_text(json.dumps(data))
    good = json.loads(files[2].read_text())
    other = json.loads(files[1].read_text())
    good["tasks"] = other["tasks"]
    files[2].write_text(json.dumps(good))
    with pytest.warns(CacheWarning) as record:
        resumed = run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    assert len([w for w in record if issubclass(w.category, CacheWarning)]) == 3
    assert len(_calls(log)) == 6  # all three recomputed
    pd.testing.assert_frame_equal(_values(resumed), _values(reference))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # now clean again
        run_grid(TOY, quick=True, seed=7, params=params, cache_dir=cache, progress=False)
    assert len(_calls(log)) == 6


# --------------------------------------------------------------------------- progress
def test_progress_bar_only_when_asked(capsys):
    run_grid(TOY, quick=True, progress=True)
    assert "toy-sweep" in capsys.readouterr().err
    run_grid(TOY, quick=True)  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
