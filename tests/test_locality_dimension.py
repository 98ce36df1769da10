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


def _csr_recursion(score):
    """The recursion C <- B C B^T + beta I with sparse CSR products (the previous implementation), float64."""
    import scipy.sparse as sp

    from locality.localization import _window_index

    sch = score.schedule
    d = score.d
    pos, valid, _ = _window_index(d, score.r)
    indptr = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
    rows = score.band_rows(0, sch.T).reshape((-1, sch.T, d, pos.shape[1]))
    out = []
    for p in range(rows.shape[0]):
        C = np.eye(d)
        for k in range(sch.T - 1, -1, -1):
            M = sp.csr_matrix((rows[p, k][valid], pos[valid], indptr), shape=(d, d))
            B = sp.identity(d, format="csr") - sch.betas[k] * M
            C = (B @ (B @ C).T).T / sch.alphas[k] + sch.betas[k] * np.eye(d)
        out.append(0.5 * (C + C.T))
    return np.array(out).reshape(score.batch_shape + (d, d))


@pytest.mark.parametrize("d, r, block", [(37, 3, 8), (37, 9, 5), (37, 2, 64), (50, 1, 1), (50, 24, 7)])
def test_banded_propagation_row_blocks(d, r, block):
    """Row blocks of B_k = I - beta_k M_k (blocks not dividing d, r above the block size, one block, r = d // 2 - 1)
    against the dense unrolled recursion and the sparse CSR recursion, batched problems, chunk edges."""
    _, Sh = _sigma_hat(d, 30, 2, 3)
    for method in ("truncate", "marginal"):
        sc = LinearScore(Sh, schedule=DDPMSchedule(T=60), method=method, r=r)
        got = generated_covariance_banded(sc, chunk=13, block=block)
        dense, csr = generated_covariance(sc), _csr_recursion(sc)
        scale = np.max(np.abs(dense))
        assert np.max(np.abs(got - dense)) <= 1e-12 * scale
        assert np.max(np.abs(got - csr)) <= 1e-12 * scale
        np.testing.assert_array_equal(got, np.swapaxes(got, -1, -2))
    one = LinearScore(Sh[1], schedule=DDPMSchedule(T=60), method="marginal", r=r)
    np.testing.assert_allclose(generated_covariance_banded(one, block=block), got[1], rtol=0, atol=1e-13 * scale)
