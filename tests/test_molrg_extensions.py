"""Experiments molrg-jacobian-rank and molrg-jacobian-training (SPEC A9), through the engine.

Claim tests come in pairs: the claim's condition holds on a quick configuration,
and fails when its mechanism (training) is switched off.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from phase_transition.experiments import molrg_extensions as mx
from phase_transition.grid import run_grid
from phase_transition.registry import get_experiment

OFF = {"mlp_lr": 1e-9}  # training switched off: Adam moves nothing


def _run(name, grid=None, trials=1, **params):
    return run_grid(name, grid, trials=trials, quick=True, params=params or None, fail_fast=True, progress=False)


def _summary(exp, table):
    return exp.summarize(table, table.attrs["config"])


def test_registered_and_typed():
    assert get_experiment("molrg-jacobian-rank") is mx.JACOBIAN
    assert get_experiment("molrg-jacobian-training") is mx.JACOBIAN_TRAINING
    p = mx.JacobianParameters(denoiser="mlp")
    assert (p.n, p.K, p.d, p.N, p.n_steps, p.n_samples) == (48, 2, 7, 700, 18, 15)  # the authors' setup
    with pytest.raises(ValueError, match=r"K \* d"):
        mx.JacobianParameters(denoiser="mlp", n=4, K=2, d=3)
    with pytest.raises(ValueError, match="denoiser"):
        mx.JacobianParameters(denoiser="unet")
    with pytest.raises(ValueError, match="mid_snr_high"):
        mx.JacobianParameters(denoiser="mlp", mid_snr_low=5.0, mid_snr_high=1.0)


# --------------------------------------------------------------------------- Jacobian rank (Lemma 2, figure 3b)
@pytest.fixture(scope="module")
def jacobian_quick():
    table = _run("molrg-jacobian-rank")
    return table, _summary(mx.JACOBIAN, table)


def test_jacobian_rank_quick(jacobian_quick):
    table, summary = jacobian_quick
    p = {**mx.JACOBIAN.quick_params}
    S, K, d, n = 18, p["K"], p["d"], p["n"]
    cf = table[table["denoiser"] == "closed_form"]
    for r in mx.RANKS:
        assert (cf[f"{r}_rank_max"] <= K * d).all()  # Lemma 2 at every SNR of the grid, both definitions
    assert (cf["energy_rank_final_nearest_match"] == 1.0).all()  # d_k of the nearest component at high SNR
    np.testing.assert_allclose(cf[f"energy_rank_ratio_{S - 1}"], d / n)
    np.testing.assert_allclose(cf["threshold_rank_ratio_0"], K * d / n)  # low SNR: all subspaces
    emp = table[table["denoiser"] == "empirical"]
    assert (emp[f"threshold_rank_ratio_{S - 1}"] <= 1.0 / n).all()  # memorizing: (near) zero Jacobian
    dae = table[table["denoiser"] == "softmax_dae"]
    assert (dae["energy_rank_max"] <= K * d).all()  # same formula with learned bases: Lemma 2 too
    assert summary["closed_form_bound_violations"] == 0
    assert summary["rank_bound"] == K * d
    # the tidy view: one row per denoiser, trial and level, SNR = 1/sigma
    tidy = mx.jacobian_levels(table)
    assert len(tidy) == len(table) * S
    np.testing.assert_allclose(tidy["snr"], 1.0 / tidy["sigma"])
    assert {"energy_rank_ratio", "threshold_rank_ratio"} <= set(tidy.columns)
    fig = mx.JACOBIAN.plot(table, table.attrs["config"])
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "SNR = 1 / sigma"


def test_trained_mlp_low_rank_in_middle_band(jacobian_quick):
    _, summary = jacobian_quick
    assert mx.lemma2_mlp_claim(summary), summary
    # the relative-threshold rank sees the MLP at (nearly) full rank: why eq. 46 matters
    assert summary["mlp_threshold_rank_max"] >= 0.9 * summary["n"]


def test_untrained_mlp_is_not_low_rank():
    table = _run("molrg-jacobian-rank", {"denoiser": ["closed_form", "mlp"]}, **OFF)
    summary = _summary(mx.JACOBIAN, table)
    assert not mx.lemma2_mlp_claim(summary), summary


def test_jacobian_cells_do_not_depend_on_the_grid():
    params = {"mlp_steps": 40, "dae_steps": 20, "n_samples": 3}
    one = _run("molrg-jacobian-rank", {"denoiser": ["mlp"]}, trials=1, **params)
    two = _run("molrg-jacobian-rank", {"denoiser": ["mlp", "closed_form"]}, trials=2, **params)  # 2 networks batched
    a = one.drop(columns=["runtime_s"]).iloc[0]
    b = two[(two["denoiser"] == "mlp") & (two["trial"] == 0)].drop(columns=["runtime_s"]).iloc[0]
    pd.testing.assert_series_equal(a, b, check_names=False)


# --------------------------------------------------------------------------- figure 7
def test_jacobian_training_rank_approaches_closed_form():
    table = _run("molrg-jacobian-training")
    summary = _summary(mx.JACOBIAN_TRAINING, table)
    assert mx.training_claim(summary), summary
    assert (table["grad_norm_final"] > 0).all()
    fig = mx.JACOBIAN_TRAINING.plot(table, table.attrs["config"])
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "SNR = 1 / sigma"


def test_jacobian_training_without_training_does_not_approach():
    table = _run("molrg-jacobian-training", **OFF)
    assert not mx.training_claim(_summary(mx.JACOBIAN_TRAINING, table))
