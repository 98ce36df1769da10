"""Experiment molrg-generalization (SPEC A9, figure 5a), through the engine.

Claim tests come in pairs: the claim's condition holds on a quick configuration,
and fails when its mechanism (training) is switched off.
"""

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
from scipy.stats import spearmanr

from phase_transition.experiments import molrg_generalization as mg
from phase_transition.grid import plan_grid, run_grid
from phase_transition.registry import get_experiment


def _run(name, grid=None, trials=1, **params):
    return run_grid(name, grid, trials=trials, quick=True, params=params or None, fail_fast=True, progress=False)


def test_registered_and_typed():
    assert get_experiment("molrg-generalization") is mg.GENERALIZATION
    assert mg.GENERALIZATION.chunk_by == ("d",)
    with pytest.raises(ValueError, match=r"K \* d"):
        plan_grid(mg.GENERALIZATION, {"d": [2, 8], "N": [2]}, params={"n": 8})
    with pytest.raises(ValueError, match="N"):
        plan_grid(mg.GENERALIZATION, {"d": [2], "N": [0]})


# --------------------------------------------------------------------------- generalization (figure 5a)
@pytest.fixture(scope="module")
def generalization_quick():
    table = _run("molrg-generalization")
    return table, mg.GENERALIZATION.summarize(table, table.attrs["config"])


def test_generalization_collapse_quick(generalization_quick):
    table, summary = generalization_quick
    assert summary["collapse"], summary
    assert summary["half_spread_steps"] <= 1.0 and 0.0 <= summary["gl_min"] and summary["gl_max"] <= 1.3
    assert summary["gl_empirical_mean"] < 0.1  # the empirical optimal denoiser reproduces training points
    assert 0.8 <= summary["gl_closed_form_mean"] <= 1.2  # the true posterior mean generalizes
    for d, rows in table.groupby("d"):
        assert spearmanr(rows["N"], rows["gl_mlp"])[0] > 0.8
    fig = mg.GENERALIZATION.plot(table, table.attrs["config"])
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= 3


def test_undertrained_generalization_fails_collapse():
    table = _run("molrg-generalization", steps=15, references=False)
    summary = mg.collapse_check(table)
    assert not summary["collapse"], summary


def test_generalization_cell_does_not_depend_on_the_grid():
    params = {"steps": 30, "M": 40, "M_test": 40}
    small = _run("molrg-generalization", {"d": [2], "N": [2, 8]}, **params)
    large = _run("molrg-generalization", {"d": [2], "N": [2, 8, 32]}, **params)
    a = small[small["N"] == 2].drop(columns=["runtime_s"]).iloc[0]
    b = large[large["N"] == 2].drop(columns=["runtime_s"]).iloc[0]
    pd.testing.assert_series_equal(a, b, check_names=False)
    assert a["gl_mlp"] == b["gl_mlp"]
