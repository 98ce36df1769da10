"""The locality experiments registered with the sweep engine (SPEC B2-B4, figures 1 and 2)."""

import itertools

import numpy as np
import pandas as pd
import pytest

from phase_transition import Task, get_experiment

NAMES = ["locality-radius", "locality-decay", "locality-error", "locality-tradeoff"]


def _tasks(exp, grid=None, trials=2, **overrides):
    grid = dict(exp.quick_grid if grid is None else grid)
    params = {**exp.params, **exp.quick_params, **overrides}
    keys = list(grid)
    tasks = []
    for values in itertools.product(*(grid[k] for k in keys)):
        for trial in range(trials):
            point = dict(zip(keys, values))
            seed = 1000 * trial + 17  # one seed per trial, shared by the grid points (like common random numbers)
            tasks.append(Task(params={**params, **point}, trial=trial, seed=seed))
    return tasks


def _table(exp, tasks):
    rows = exp.run(tasks)
    assert len(rows) == len(tasks)
    return pd.DataFrame([{**{k: t.params[k] for k in exp.grid}, "trial": t.trial, "seed": t.seed, **row,
                          "runtime_s": 0.0, "error": ""} for t, row in zip(tasks, rows)])


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_grids(name):
    exp = get_experiment(name)
    assert exp.name == name and exp.family == "locality"
    assert set(exp.grid) == set(exp.quick_grid)
    assert exp.plot is not None and exp.summarize is not None


def test_radius_experiment(tmp_path):
    exp = get_experiment("locality-radius")
    table = _table(exp, _tasks(exp, grid={"d": [40, 80], "b": [1, 2], "offdiag_scale": [1.0], "t": [0.0, 0.05, 0.3, 20.0]}))
    t0 = table[table["t"] == 0.0]
    assert np.all(t0["r_eff"] == t0["b"])
    assert np.all(table.loc[table["t"] == 20.0, "r_eff"] == 0)
    assert np.all(table.groupby(["d", "b", "trial"])["kappa"].nunique() == 1)  # one draw per trial curve
    summary = exp.summarize(table, {})
    assert summary["r_eff(0) == b everywhere"] is True
    fig = exp.plot(table, {})
    fig.savefig(tmp_path / "radius.png")


def test_decay_experiment(tmp_path):
    exp = get_experiment("locality-decay")
    table = _table(exp, _tasks(exp, grid={"b": [1, 2], "r": list(range(0, 12))}, d=60, n_times=15))
    m = table.groupby(["b", "r"])["m_ratio"].mean()
    assert m[(1, 0)] == pytest.approx(1.0)
    assert m[(1, 8)] < 1e-2 * m[(1, 1)]
    rates = table.groupby("b")["decay_rate"].mean()
    assert rates[1] > rates[2] > 0  # wider band: slower decay
    exp.plot(table, {}).savefig(tmp_path / "decay.png")
    assert "decay rate per unit r (b=1)" in exp.summarize(table, {})


def test_error_experiment(tmp_path):
    exp = get_experiment("locality-error")
    table = _table(exp, _tasks(exp, grid={"d": [40, 120], "r": list(range(0, 7))}))
    s = table.groupby(["d", "r"])[["error_sum", "error_max", "truncation_sum"]].mean()
    for d in (40, 120):
        assert np.all(np.diff(s.loc[d, "error_sum"].to_numpy()) < 0)
        assert np.all(s.loc[d, "truncation_sum"].to_numpy() >= s.loc[d, "error_sum"].to_numpy() - 1e-12)
    # total error linear in d (per-component mean about the same), max per component comparable
    ratio = s.loc[120, "error_sum"].iloc[1:4].to_numpy() / s.loc[40, "error_sum"].iloc[1:4].to_numpy()
    assert np.all((ratio > 1.5) & (ratio < 6.0))
    summary = exp.summarize(table, {})
    assert summary["decades per unit r of sum_i e_i (d=120)"] > 0.3
    exp.plot(table, {}).savefig(tmp_path / "error.png")


def test_tradeoff_quick_grid_u_shape(tmp_path):
    exp = get_experiment("locality-tradeoff")
    assert exp.params["d"] == 64 and exp.quick_grid["N"] == [64]
    table = _table(exp, _tasks(exp, trials=3, n_generated=0))
    ref = table["rel_error_nonlocal"].mean()
    for method in ("truncate", "marginal"):
        curve = table[table["method"] == method].groupby("r")["rel_error"].mean()
        k = int(np.argmin(curve.to_numpy()))
        assert 0 < k < len(curve) - 1, (method, curve)
        assert curve.iloc[k] < ref, (method, curve.iloc[k], ref)
    assert table["rel_error_sampled"].isna().all()
    summary = exp.summarize(table, {})
    assert summary["N=64 marginal: min error"] < summary["N=64: non-localized error"]
    exp.plot(table, {"seed": 0}).savefig(tmp_path / "tradeoff.png")


def test_tradeoff_sampled_column():
    exp = get_experiment("locality-tradeoff")
    tasks = _tasks(exp, grid={"N": [64], "r": [8], "method": ["marginal"]}, trials=2, n_generated=400, T=200)
    table = _table(exp, tasks)
    assert np.isfinite(table.loc[table["trial"] == 0, "rel_error_sampled"]).all()
    assert table.loc[table["trial"] == 1, "rel_error_sampled"].isna().all()
    # sampled error = exact error + Monte-Carlo error of 400 samples in d = 64 (about sqrt(d / n) = 0.4)
    row = table.iloc[0]
    assert abs(row["rel_error_sampled"] - row["rel_error"]) < 0.8


def test_run_grid_end_to_end():
    grid = pytest.importorskip("phase_transition.grid")
    exp = get_experiment("locality-error")
    table = grid.run_grid(exp, {"d": [30], "r": [0, 1, 2]}, trials=2, seed=0, quick=True, n_jobs=1)
    assert {"d", "r", "trial", "seed", "error_sum", "runtime_s", "error"} <= set(table.columns)
    assert (table["error"].fillna("") == "").all()
