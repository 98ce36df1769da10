"""The ``locality-dimension`` experiment (Theorem 3.4, Remark 3.3(1)) and the banded exact propagation."""

import itertools

import numpy as np
import pandas as pd
import pytest

from locality.ddpm import LinearScore, empirical_covariance, gaussian_samples, generated_covariance, generated_covariance_banded
from locality.precision import ar1_covariance
from locality.schedule import DDPMSchedule
from phase_transition import Task, get_experiment

# Quick grid: d = 64 and 512 (8x), N = 32 and 100, two data draws, 25-step strided schedule.
FIXED_FLAT = 1.5  # the localized error at the fixed radius r = 4 varies by less than this over d
BEST_FLAT = 2.5  # the localized error at its best radius (r in {4, 8, 16}) varies by less than this
NONLOCAL_GROWTH = 2.0  # the non-localized error grows by more than this (sqrt(8) = 2.8 expected)


def _sigma_hat(d, N, n, seed):
    S = ar1_covariance(d)
    return S, empirical_covariance(gaussian_samples(np.broadcast_to(S, (n, d, d)), N, random_state=seed))


@pytest.mark.parametrize("method", ["truncate", "marginal"])
@pytest.mark.parametrize("r", [0, 2, 5])
def test_banded_propagation_matches_dense(method, r):
    _, Sh = _sigma_hat(24, 40, 2, 0)
    sc = LinearScore(Sh, schedule=DDPMSchedule(T=200), method=method, r=r)
    dense, banded = generated_covariance(sc), generated_covariance_banded(sc)
    assert banded.shape == (2, 24, 24)
    assert np.max(np.abs(banded - dense)) <= 1e-10 * np.max(np.abs(dense))


def test_banded_propagation_nonlocal_and_band_rows():
    _, Sh = _sigma_hat(12, 30, 1, 1)
    sc = LinearScore(Sh[0], schedule=DDPMSchedule(T=50), method="none")
    np.testing.assert_allclose(generated_covariance_banded(sc), generated_covariance(sc), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="band_rows"):
        sc.band_rows(0, 1)
    loc = LinearScore(Sh[0], schedule=DDPMSchedule(T=50), method="marginal", r=2)
    assert loc.band_rows(3, 7).shape == (4, 12, 5)
    with pytest.raises(TypeError, match="score"):
        generated_covariance_banded(Sh[0])


def _table(grid, trials=2, **overrides):
    exp = get_experiment("locality-dimension")
    params = {**exp.params, **exp.quick_params, **overrides}
    tasks = [Task(params={**params, **dict(zip(grid, v))}, trial=tr, seed=17 + 1000 * tr)
             for v in itertools.product(*grid.values()) for tr in range(trials)]
    rows = exp.run(tasks)
    table = pd.DataFrame([{**{k: t.params[k] for k in grid}, "trial": t.trial, **row, "error": ""}
                          for t, row in zip(tasks, rows)])
    return exp, table, exp.summarize(table, {"params": params})


def _flat(s, Ns):
    """The claim's condition on the localized sampler: nearly flat in d at the fixed and at the best radius."""
    return all(s[f"N={N}: localized (fixed r) max / min over d >= 64"] < FIXED_FLAT
               and s[f"N={N}: localized (best r) max / min over d >= 64"] < BEST_FLAT for N in Ns)


def test_dimension_shape_on_quick_grid():
    exp = get_experiment("locality-dimension")
    grid = dict(exp.quick_grid)
    _, table, s = _table(grid)
    assert len(table) == 2 * len(grid["d"]) * len(grid["N"]) * len(grid["r"])
    for N in grid["N"]:
        assert s[f"N={N}: non-localized increasing in d (d >= 64)"], s
        assert s[f"N={N}: non-localized max / min over d >= 64"] > NONLOCAL_GROWTH, s
    assert _flat(s, grid["N"]), s
    fig = exp.plot(table, {"params": exp.params})
    assert len(fig.axes) == 1


def test_dimension_flatness_fails_without_localization():
    grid = dict(get_experiment("locality-dimension").quick_grid)
    grid["r"] = [4096]  # r >= d - 1: the "localized" sampler is the non-localized one
    _, table, s = _table(grid, fixed_radius=4096)
    np.testing.assert_allclose(table["rel_error"], table["rel_error_nonlocal"], rtol=1e-12)
    assert not _flat(s, grid["N"])


def test_dimension_random_banded_target_runs_and_validates():
    _, table, s = _table({"d": [16, 32], "N": [20], "r": [2, 4]}, trials=1, target="banded", b=2)
    assert np.all(np.isfinite(table["rel_error"])) and np.all(table["rel_error"] > 0)
    assert "N=20: localized error (best r)" in s
    P = get_experiment("locality-dimension").parameters
    with pytest.raises(ValueError, match="b"):
        P(d=4, N=10, r=1, target="banded", b=4)
