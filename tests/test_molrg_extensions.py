"""Experiments molrg-jacobian-rank and molrg-generalization (SPEC A9), run directly through the registry contract."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from phase_transition.experiments import molrg_extensions as mx
from phase_transition.registry import Task, get_experiment


def _tasks(exp, grid_points, trials=1, seed0=0):
    p = {**exp.params, **exp.quick_params}
    tasks = []
    for g, point in enumerate(grid_points):
        for t in range(trials):
            tasks.append(Task({**p, **point}, t, seed0 + 1000 * g + t))
    return tasks


def _table(tasks, rows):
    return pd.DataFrame(
        [{**{k: tk.params[k] for k in ("denoiser", "d", "N") if k in tk.params}, "trial": tk.trial, "seed": tk.seed, **r, "error": ""}
         for tk, r in zip(tasks, rows)]
    )


def test_registered():
    assert get_experiment("molrg-jacobian-rank") is mx.JACOBIAN
    assert get_experiment("molrg-generalization") is mx.GENERALIZATION
    assert mx.GENERALIZATION.chunk_by == ("d",)


@pytest.fixture(scope="module")
def generalization_quick():
    exp = mx.GENERALIZATION
    points = [{"d": 2, "N": N} for N in exp.quick_grid["N"]]
    tasks = _tasks(exp, points, seed0=17)
    rows = exp.run(tasks)
    return exp, tasks, rows


def test_generalization_quick_trend_and_references(generalization_quick):
    exp, tasks, rows = generalization_quick
    Ns = [tk.params["N"] for tk in tasks]
    gl = [r["gl_mlp"] for r in rows]
    rho = spearmanr(Ns, gl)[0]
    assert rho > 0.8, f"GL {gl} for N {Ns}"
    assert gl[0] < 0.3  # memorizes its 2 training points
    for r in rows:
        assert r["gl_empirical"] < 0.1  # the empirical optimal denoiser reproduces training points
        assert 0.8 <= r["gl_closed_form"] <= 1.2  # the true posterior mean generalizes


def test_generalization_plot_and_summary(generalization_quick):
    exp, tasks, rows = generalization_quick
    table = _table(tasks, rows)
    cfg = {**exp.params, **exp.quick_params}
    fig = exp.plot(table, cfg)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= 3
    summary = exp.summarize(table, cfg)
    assert summary["spearman_d2"] > 0.8
    assert summary["gl_empirical_mean"] < 0.1
    assert set(np.round(table["N_over_d"], 6)) == {1.0, 4.0, 16.0, 64.0}


def test_generalization_seeded():
    exp = mx.GENERALIZATION
    tasks = _tasks(exp, [{"d": 2, "N": 4}], seed0=3)
    small = [Task({**t.params, "steps": 5, "M": 20, "M_test": 20, "references": False}, t.trial, t.seed) for t in tasks]
    a, b = exp.run(small), exp.run(small)
    assert a == b
    assert "gl_closed_form" not in a[0]


def test_jacobian_rank_quick():
    exp = mx.JACOBIAN
    tasks = _tasks(exp, [{"denoiser": k} for k in exp.quick_grid["denoiser"]], trials=2, seed0=5)
    rows = exp.run(tasks)
    table = _table(tasks, rows)
    cfg = {**exp.params, **exp.quick_params}
    S = cfg["n_steps"]
    K, d, n = cfg["K"], cfg["d"], cfg["n"]
    cf = table[table["denoiser"] == "closed_form"]
    assert (cf["rank_max"] <= K * d).all()  # Lemma 2 at every SNR of the grid
    assert (cf["rank_final_nearest_match"] == 1.0).all()  # d_k of the nearest component at high SNR
    np.testing.assert_allclose(cf[f"rank_ratio_{S - 1}"], d / n)
    np.testing.assert_allclose(cf["rank_ratio_0"], K * d / n)  # low SNR: all subspaces
    emp = table[table["denoiser"] == "empirical"]
    assert (emp[f"rank_ratio_{S - 1}"] <= 1.0 / n).all()  # memorizing: (near) zero Jacobian
    dae = table[table["denoiser"] == "softmax_dae"]
    assert (dae["rank_max"] <= K * d).all()  # same formula with learned bases: Lemma 2 too
    mlp = table[table["denoiser"] == "mlp"]
    assert ((mlp[[f"rank_ratio_{i}" for i in range(S)]] > 0).all(axis=None))
    fig = exp.plot(table, cfg)
    assert len(fig.axes) == 1
    summary = exp.summarize(table, cfg)
    assert summary["closed_form_bound_violations"] == 0
    assert summary["rank_bound"] == K * d


def test_validation_errors():
    with pytest.raises(ValueError, match="K \\* d must be <= n"):
        mx.validate_jacobian({**mx.JAC_PARAMS, "n": 4, "K": 2, "d": 3})
    with pytest.raises(ValueError, match="denoiser must be one of"):
        mx.validate_jacobian({**mx.JAC_PARAMS, "denoiser": ["unet"]})
    with pytest.raises(ValueError, match="d must satisfy K \\* d <= n"):
        mx.validate_generalization({**mx.GEN_PARAMS, "n": 8, "K": 2, "d": [2, 8]})
    with pytest.raises(ValueError, match="N must be in"):
        mx.validate_generalization({**mx.GEN_PARAMS, "N": [0]})
    mx.validate_generalization({**mx.GEN_PARAMS, "d": [2, 4], "N": [2, 8]})
