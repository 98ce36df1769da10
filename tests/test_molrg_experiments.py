"""MoLRG phase-transition experiments on their quick grids: the phenomena of figures 4 and 8 (issue 4)."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from pandas.testing import assert_frame_equal

from phase_transition import get_experiment, run_grid


def _cells(df, col="success"):
    return df.groupby(["d", "N"])[col].mean().reset_index()


@pytest.fixture(scope="module")
def kss_quick():
    return run_grid("molrg-kss", quick=True)


def test_pca_boundary_is_exactly_n_equals_d():
    df = run_grid("molrg-pca", quick=True)
    assert (df["error"] == "").all()
    cells = _cells(df)
    above = cells["N"] >= cells["d"]
    assert (cells.loc[above, "success"] == 1.0).all()
    assert (cells.loc[~above, "success"] == 0.0).all()
    # below the boundary the error is large (a missing direction costs sqrt(2) per dimension)
    assert df.loc[df["N"] < df["d"], "subspace_error"].min() > 1.0
    assert df.loc[df["N"] >= df["d"], "subspace_error"].max() < 1e-8


def test_kss_succeeds_far_above_and_fails_below_k_d(kss_quick):
    df = kss_quick
    K = df.attrs["config"]["params"]["K"]
    assert K == 2 and (df["error"] == "").all()
    far = df["N"] >= 4 * K * df["d"]
    below = df["N"] < K * df["d"]
    assert far.any() and below.any()
    assert df.loc[far, "success"].mean() >= 0.9
    assert df.loc[below, "success"].sum() == 0
    # the data never allow more than the oracle sees
    assert df.loc[below, "oracle_success"].sum() == 0
    summary = get_experiment("molrg-kss").summarize(df, df.attrs["config"])
    assert summary["success_far_above"] >= 0.9 and summary["success_below_boundary"] == 0.0


@pytest.mark.parametrize("name", ["molrg-kss-k3", "molrg-sgd-k3"])
def test_three_components_boundary(name):
    """Figure 8: with K = 3 the boundary moves to N = 3 d, for K-subspaces and for SGD."""
    df = run_grid(name, quick=True)
    assert df.attrs["config"]["params"]["K"] == 3 and (df["error"] == "").all()
    far, below = df["N"] >= 12 * df["d"], df["N"] < 3 * df["d"]
    assert far.any() and below.any()
    assert df.loc[far, "success"].mean() >= 0.9
    assert df.loc[below, ["success", "oracle_success"]].to_numpy().sum() == 0
    # between K = 2's boundary and K = 3's nothing succeeds: the boundary moved
    mid = (df["N"] >= 2 * df["d"]) & below
    assert mid.any() and df.loc[mid, "success"].sum() == 0


def test_kss_table_is_independent_of_workers(kss_quick):
    two = run_grid("molrg-kss", quick=True, n_jobs=2)
    assert_frame_equal(kss_quick.drop(columns="runtime_s"), two.drop(columns="runtime_s"))


def test_sgd_and_kss_agree_on_the_same_data():
    df = run_grid("molrg-sgd-vs-kss", quick=True)
    assert (df["error"] == "").all()
    assert df["agree"].mean() >= 0.9
    below = df["N"] < 2 * df["d"]
    assert df.loc[below, ["success", "kss_success"]].to_numpy().sum() == 0
    far = df["N"] >= 8 * df["d"]
    assert df.loc[far, "success"].mean() >= 0.9 and df.loc[far, "kss_success"].mean() >= 0.9


def test_sgd_single_learns_the_subspace_above_n_equals_d():
    df = run_grid("molrg-sgd-single", quick=True)
    assert (df["error"] == "").all()
    assert df.loc[df["N"] < df["d"], "success"].sum() == 0
    assert df.loc[df["N"] >= 2 * df["d"], "success"].mean() >= 0.8


def test_figures_show_the_heatmaps(kss_quick):
    exp = get_experiment("molrg-kss")
    fig = exp.plot(kss_quick, kss_quick.attrs["config"])
    assert isinstance(fig, Figure)
    heat_axes = [ax for ax in fig.axes if ax.get_xlabel().startswith("N")]
    assert len(heat_axes) == 2  # solver and oracle
    mesh = heat_axes[0].collections[0].get_array()
    cells = kss_quick.pivot_table(index="d", columns="N", values="success", aggfunc="mean")
    np.testing.assert_allclose(np.asarray(mesh).reshape(cells.shape), cells.to_numpy(), atol=0)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("molrg-kss", dict(params={"K": 7}, grid={"d": [8]}), "K\\*d <= n"),
        ("molrg-sgd", dict(params={"parameterization": "single"}), "needs K = 1"),
        ("molrg-sgd", dict(params={"init": "psychic"}), "init must be one of"),
        ("molrg-pca", dict(params={"tau": 0.0}), "tau"),
        ("molrg-pca", dict(grid={"N": [0]}), "N must be"),
    ],
)
def test_bad_parameters(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_grid(name, quick=True, **kwargs)
