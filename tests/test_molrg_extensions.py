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
    # tidy: one row per denoiser, trial and noise level, SNR = 1/sigma
    assert len(table) == len(mx.DENOISERS) * table["trial"].nunique() * S
    assert (table.groupby(["denoiser", "trial"]).size() == S).all()
    assert (table.groupby(["denoiser", "trial"])["level"].apply(list) == [list(range(S))] * (len(table) // S)).all()
    np.testing.assert_allclose(table["snr"], 1.0 / table["sigma"])
    mid = (table["snr"] >= mx.JacobianParameters(denoiser="mlp").mid_snr_low) & (table["snr"] <= 5.0)
    assert (table["mid_band"] == mid).all()
    cf = table[table["denoiser"] == "closed_form"]
    for r in mx.RANKS:
        assert (cf[f"{r}_rank_max"] <= K * d).all()  # Lemma 2 at every SNR of the grid, both definitions
    last, first = cf[cf["level"] == S - 1], cf[cf["level"] == 0]
    assert (last["energy_rank_nearest_match"] == 1.0).all()  # d_k of the nearest component at high SNR
    assert cf.loc[cf["level"] < S - 1, "energy_rank_nearest_match"].isna().all()
    np.testing.assert_allclose(last["energy_rank_ratio"], d / n)
    np.testing.assert_allclose(first["threshold_rank_ratio"], K * d / n)  # low SNR: all subspaces
    emp = table[table["denoiser"] == "empirical"]
    assert (emp.loc[emp["level"] == S - 1, "threshold_rank_ratio"] <= 1.0 / n).all()  # memorizing: (near) zero Jacobian
    dae = table[table["denoiser"] == "softmax_dae"]
    assert (dae["energy_rank_max"] <= K * d).all()  # same formula with learned bases: Lemma 2 too
    assert summary["closed_form_bound_violations"] == 0
    assert summary["rank_bound"] == K * d
    mlp_mid = table[(table["denoiser"] == "mlp") & table["mid_band"]]
    assert summary["mlp_energy_rank_ratio_mid_min"] == mlp_mid["energy_rank_ratio"].min()
    fig = mx.JACOBIAN.plot(table, table.attrs["config"])
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "SNR = 1 / sigma"


def test_bound_violations_are_counted():
    table = pd.DataFrame({"denoiser": ["closed_form"] * 3, "trial": 0, "level": [0, 1, 2], "mid_band": True,
                          "rank_bound": 4, "energy_rank_max": [4, 5, 3], "threshold_rank_max": [4, 4, 6],
                          "energy_rank_ratio": 0.1, "energy_rank_nearest_match": [np.nan, np.nan, 1.0], "error": ""})
    summary = mx.summarize_jacobian(table, {"params": {"n": 16}})
    assert summary["closed_form_bound_violations"] == 2  # levels 1 and 2 exceed the bound


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
    a = one.drop(columns=["runtime_s"]).reset_index(drop=True)
    b = two[(two["denoiser"] == "mlp") & (two["trial"] == 0)].drop(columns=["runtime_s"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- figure 7
def test_jacobian_training_rank_approaches_closed_form():
    table = _run("molrg-jacobian-training")
    summary = _summary(mx.JACOBIAN_TRAINING, table)
    assert mx.training_claim(summary), summary
    # tidy, two series: rank rows (trial, snapshot, level) and gradient-norm rows (trial, iteration)
    rank, grad = table[table["series"] == "rank"], table[table["series"] == "grad_norm"]
    assert len(rank) + len(grad) == len(table)
    steps = mx.checkpoint_steps(400, 4)
    assert steps == [13, 40, 126, 400]
    assert sorted(set(rank["checkpoint"])) == steps
    assert (rank.groupby(["trial", "checkpoint"]).size() == 18).all()
    its = grad["iteration"].to_numpy()
    assert its[0] == 1 and its[-1] == 400 and (np.diff(its) > 0).all() and (grad["grad_norm"] > 0).all()
    assert rank["iteration"].isna().all() and grad["level"].isna().all()
    # the closed form's ratios are the same at every snapshot (same trajectories starts, same model)
    cf = rank.pivot_table(index="level", columns="checkpoint", values="closed_form_energy_rank_ratio")
    assert (cf.nunique(axis=1) == 1).all()
    fig = mx.JACOBIAN_TRAINING.plot(table, table.attrs["config"])
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "SNR = 1 / sigma"


def test_jacobian_training_without_training_does_not_approach():
    table = _run("molrg-jacobian-training", **OFF)
    assert not mx.training_claim(_summary(mx.JACOBIAN_TRAINING, table))
