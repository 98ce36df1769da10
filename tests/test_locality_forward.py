"""OU forward process and locality decay (SPEC B2, paper Theorem 2.1, figure 1)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from locality import (
    decay_rate,
    effective_radius,
    offdiag_profile,
    ou_covariance,
    ou_effective_radius,
    ou_precision,
    ou_profile,
    random_banded_precision,
)

TIMES = np.concatenate([[0.0], np.logspace(-3, 1, 40)])


def test_ou_precision_is_inverse_of_ou_covariance():
    P0 = random_banded_precision(20, 2, random_state=0)
    ts = np.array([0.0, 0.05, 0.5, 3.0])
    Pt = ou_precision(P0, ts)
    St = ou_covariance(np.linalg.inv(P0), ts)
    assert Pt.shape == (4, 20, 20)
    for P, S in zip(Pt, St):
        assert_allclose(P @ S, np.eye(20), atol=1e-10)
    assert_allclose(ou_precision(P0, 0.5), Pt[2], rtol=0, atol=1e-13)
    assert_allclose(ou_precision(P0, 40.0), np.eye(20), atol=1e-12)


def test_profile_paths_agree():
    P0 = random_banded_precision(50, 2, random_state=3)
    ts = np.array([0.0, 0.1, 1.0])
    dense = offdiag_profile(ou_precision(P0, ts))
    assert_allclose(ou_profile(P0, ts), dense, rtol=1e-10, atol=1e-14)
    assert_allclose(ou_profile(P0, ts, max_radius=10), dense[:, :11], rtol=1e-10, atol=1e-14)
    assert_allclose(ou_effective_radius(P0, ts), effective_radius(ou_precision(P0, ts)))


@pytest.mark.parametrize("b", [1, 2, 4])
def test_r_eff_is_b_at_t0_and_zero_at_large_t(b):
    for seed in range(3):
        P0 = random_banded_precision(60, b, random_state=seed)
        assert effective_radius(P0) == b
        assert ou_effective_radius(P0, 0.0) == b
        assert effective_radius(ou_precision(P0, 20.0)) == 0
        r = ou_effective_radius(P0, TIMES)
        assert r.max() > b  # it rises before it falls (figure 1)


def test_max_r_eff_nearly_independent_of_d_and_grows_with_b():
    # SPEC B2 / issue: mean over 5 draws of max_t r_eff(t), d = 100 vs 400, within 2.
    R = 60  # banded path; the asserts below check that the saturation value R is never reached
    peaks = {}
    for b in (1, 2, 4):
        for d in (100, 400):
            vals = [ou_effective_radius(random_banded_precision(d, b, random_state=100 * b + k), TIMES, max_radius=R).max()
                    for k in range(5)]
            assert max(vals) < R
            peaks[b, d] = np.mean(vals)
    for b in (1, 2, 4):
        assert abs(peaks[b, 100] - peaks[b, 400]) <= 2.0, peaks
    assert peaks[1, 100] < peaks[2, 100] < peaks[4, 100]
    assert peaks[1, 400] < peaks[2, 400] < peaks[4, 400]


def test_decay_rate_recovers_geometric_profile():
    d = 40
    idx = np.arange(d)
    P = 0.5 ** np.abs(idx[:, None] - idx[None, :])
    m = offdiag_profile(P)
    assert_allclose(m, 0.5 ** idx, rtol=1e-13)
    assert decay_rate(m) == pytest.approx(np.log(2.0), rel=1e-10)
    assert effective_radius(P, eps=0.1) == 3  # 0.5^3 >= 0.1 > 0.5^4


def test_bad_inputs():
    P0 = random_banded_precision(10, 1, random_state=0)
    with pytest.raises(ValueError, match="t must be finite and in \\[0, inf\\)"):
        ou_precision(P0, -0.1)
    with pytest.raises(ValueError, match="t must be"):
        ou_precision(P0, [0.1, np.nan])
    for eps in (0.0, 1.0, -1e-3, 2.0):
        with pytest.raises(ValueError, match="eps must be"):
            effective_radius(P0, eps=eps)
    with pytest.raises(ValueError, match="P0 must be symmetric"):
        ou_precision(P0 + np.triu(np.ones((10, 10)), 1), 0.1)
    with pytest.raises(ValueError, match="P0 must be positive definite"):
        ou_precision(-P0, 0.1)
    with pytest.raises(ValueError, match="max_radius"):
        ou_profile(P0, 0.1, max_radius=10)
