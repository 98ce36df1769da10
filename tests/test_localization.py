"""Exact localization error of the score (SPEC B3, paper Theorem 3.2, eq. 3.14, Prop. 3.3)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from locality import (
    ar1_covariance,
    localization_decomposition,
    localization_error,
    marginal_score_matrix,
    ou_covariance,
    random_banded_precision,
    truncation_error,
)
from phase_transition.experiments.checks import brute_force_localization  # the independent reference


@pytest.fixture(scope="module")
def sigma_t():
    P0 = random_banded_precision(25, 2, random_state=7)
    return ou_covariance(np.linalg.inv(P0), 0.3)


@pytest.mark.parametrize("r", [0, 1, 3, 7, 12])
def test_matches_brute_force_conditional_variance(sigma_t, r):
    assert_allclose(localization_error(sigma_t, r), brute_force_localization(sigma_t, r), rtol=0, atol=1e-10)


def test_nonnegative_monotone_and_zero_beyond_d(sigma_t):
    d = len(sigma_t)
    radii = np.arange(0, d + 3)
    e = localization_error(sigma_t, radii)
    assert e.shape == (d + 3, d)
    assert np.all(e >= 0)
    assert np.all(np.diff(e, axis=0) <= 1e-13)
    assert np.all(e[d - 1 :] == 0)
    assert e[0].sum() > 1e-2  # not trivially zero
    assert_allclose(localization_error(sigma_t, 4), e[4], rtol=0, atol=0)


def test_pythagorean_identity(sigma_t):
    for r in (0, 2, 5):
        dec = localization_decomposition(sigma_t, r)
        assert_allclose(dec.truncation, dec.optimal + dec.distance, rtol=0, atol=1e-10)
        assert np.all(dec.truncation >= dec.optimal - 1e-12)
        assert dec.distance.max() > 0
    assert_allclose(truncation_error(sigma_t, [0, 2]), [localization_decomposition(sigma_t, r).truncation for r in (0, 2)])


def test_markov_target_is_exactly_local():
    # AR(1): tridiagonal precision, so the radius-1 marginal score is the exact score.
    S = ar1_covariance(16)
    assert_allclose(localization_error(S, [1, 2, 5]), 0.0, atol=1e-11)
    assert localization_error(S, 0).min() > 1.0


def test_marginal_score_matrix_rows(sigma_t):
    M = marginal_score_matrix(sigma_t, 3)
    assert_allclose(M[10, 7:14], np.linalg.inv(sigma_t[7:14, 7:14])[3], rtol=1e-12, atol=1e-13)
    assert_allclose(M[0, :4], np.linalg.inv(sigma_t[:4, :4])[0], rtol=1e-12, atol=1e-13)
    assert np.all(M[10, :7] == 0) and np.all(M[10, 14:] == 0)
    assert_allclose(marginal_score_matrix(sigma_t, 30), np.linalg.inv(sigma_t), rtol=1e-12, atol=1e-12)


def test_bad_inputs(sigma_t):
    with pytest.raises(ValueError, match="r must be in \\[0, inf\\)"):
        localization_error(sigma_t, -1)
    with pytest.raises(ValueError, match="r must be in"):
        truncation_error(sigma_t, [1, -2])
    with pytest.raises(ValueError, match="Sigma must be positive definite"):
        localization_error(-sigma_t, 1)
    with pytest.raises(ValueError, match="Sigma must be symmetric"):
        localization_error(sigma_t + np.triu(np.ones_like(sigma_t), 1), 1)
    with pytest.raises(ValueError, match="r must hold integers"):
        localization_error(sigma_t, 1.5)


def test_window_blocks_match_the_direct_gather():
    """window_blocks (strided view + patched first rows) against the fancy-index reference, every r, stacks."""
    from locality.localization import _window_blocks_reference, window_blocks

    rng = np.random.default_rng(2)
    for d in (1, 2, 5, 9):
        A = rng.standard_normal((3, d, d))
        for r in range(d + 2):
            np.testing.assert_array_equal(window_blocks(A, r), _window_blocks_reference(A, r))
    A = rng.standard_normal((7, 7))
    np.testing.assert_array_equal(window_blocks(A, 2), _window_blocks_reference(A, 2))


def test_banded_truncation_against_the_dropped_rows(monkeypatch):
    """Banded truncation error ((B Sigma B)_ii - P_ii by one cumulative sum over the window) against
    q_i^T Sigma q_i with the dropped parts q_i of P's rows written out, over several row chunks."""
    import locality.localization as LZ
    from locality import BandedMatrix, ou_localization_error, ou_precision

    P0 = random_banded_precision(40, 2, coupling=0.7, random_state=5, banded=True)
    t = 0.4
    S = ou_covariance(np.linalg.inv(P0.to_dense()), t)
    P = np.linalg.inv(S)
    radii = np.array([0, 1, 2, 5, 9, 38, 50])
    d = S.shape[0]
    ref = np.zeros((radii.size, d))
    for k, r in enumerate(radii):
        for i in range(d):
            q = np.where(np.abs(np.arange(d) - i) > r, P[i], 0.0)
            ref[k, i] = q @ S @ q
    monkeypatch.setattr(LZ, "_WINDOW_ENTRIES", 7 * 19 * 19)  # chunks of 7 rows at R = 9
    res = ou_localization_error(P0, t, radii)
    scale = float(np.max(np.diag(P)))
    assert_allclose(res.truncation, ref, rtol=1e-9, atol=1e-13 * scale)
    Sb = BandedMatrix.from_dense(S, d - 1)
    Pb = ou_precision(P0, t, half_width=9)
    _, trunc = LZ._window_errors(Sb.with_half_width(18), Pb.data[0], radii[:5], Pb)
    assert_allclose(trunc, ref[:5], rtol=1e-9, atol=1e-13 * scale)


def test_error_summary_fits_above_the_rounding_floor():
    """locality-error's decay fit reads, per d, only the radii above 1e-10 of that d's largest sum_i e_i:
    sums at the rounding floor (~1e-16 per component) must not enter the slope, at any d."""
    import pandas as pd

    from phase_transition import get_experiment

    rows = []
    for d in (50, 102400):
        for r in range(13):
            e = d * 1e-3 * 10.0 ** (-1.1 * r) if r <= 8 else d * (2e-16 + 1e-17 * r)  # floor beyond r = 8
            for trial in range(2):
                rows.append({"d": d, "r": r, "trial": trial, "error_sum": e, "error_max": e / d, "error_mean": e / d,
                             "truncation_sum": e, "error": ""})
    s = get_experiment("locality-error").summarize(pd.DataFrame(rows), {})
    for d in (50, 102400):
        assert s[f"decades per unit r of sum_i e_i (d={d})"] == pytest.approx(1.1, abs=1e-3)
