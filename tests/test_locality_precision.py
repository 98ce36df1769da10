"""Banded precisions and the AR(1) target (SPEC B1)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from locality import (
    ar1_covariance,
    ar1_precision,
    ar1_sample,
    band_mask,
    bandwidth,
    check_precision,
    condition_number,
    random_banded_precision,
)


@pytest.mark.parametrize("b", [0, 1, 3])
def test_random_banded_precision_is_banded_spd(b):
    P, L = random_banded_precision(30, b, random_state=0, return_factor=True)
    assert_allclose(P, P.T, rtol=0, atol=0)
    assert np.all(P[~band_mask(30, b)] == 0)
    assert bandwidth(P) == b
    assert np.linalg.eigvalsh(P).min() > 0
    assert_allclose(L @ L.T, P, rtol=1e-14, atol=1e-14)
    assert np.all(np.triu(L, 1) == 0) and np.all(np.diag(L) >= 1.0)


def test_random_banded_precision_seeded_and_knobs_move_kappa():
    assert_allclose(random_banded_precision(20, 2, random_state=5), random_banded_precision(20, 2, random_state=5))
    assert not np.allclose(random_banded_precision(20, 2, random_state=5), random_banded_precision(20, 2, random_state=6))
    kap = [np.mean([condition_number(random_banded_precision(60, 2, offdiag_scale=s, random_state=k)) for k in range(3)])
           for s in (0.25, 1.0, 2.0)]
    assert kap[0] < kap[1] < kap[2]
    k_narrow = condition_number(random_banded_precision(60, 1, diag_range=(2.0, 2.0), offdiag_scale=0.1, random_state=0))
    assert k_narrow < 1.3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d=10, bandwidth=-1), "bandwidth"),
        (dict(d=10, bandwidth=10), "bandwidth"),
        (dict(d=10, bandwidth=2, diag_range=(0.0, 1.0)), "diag_range"),
        (dict(d=10, bandwidth=2, offdiag_scale=-1.0), "offdiag_scale"),
        (dict(d=0, bandwidth=0), "d must be"),
    ],
)
def test_random_banded_precision_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_banded_precision(**kwargs)


def test_ar1_covariance_and_precision_are_inverse():
    S, P = ar1_covariance(40), ar1_precision(40)
    assert_allclose(S @ P, np.eye(40), atol=1e-10)
    assert bandwidth(P, tol=1e-14) == 1
    a, v = 0.9, 0.1 / (1 - 0.81)
    assert_allclose(S[0, :3], v * a ** np.arange(3), rtol=1e-14)
    S2, P2 = ar1_covariance(5, gamma=2.0, dt=0.2, sigma=0.5), ar1_precision(5, gamma=2.0, dt=0.2, sigma=0.5)
    assert_allclose(S2 @ P2, np.eye(5), atol=1e-12)


def test_ar1_sample_matches_covariance():
    X = ar1_sample(20000, 12, random_state=1)
    emp = X.T @ X / len(X)
    S = ar1_covariance(12)
    se = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / len(X))
    assert np.max(np.abs(emp - S) / se) < 5.0


def test_ar1_bad_input():
    with pytest.raises(ValueError, match="gamma"):
        ar1_covariance(10, gamma=-1.0)
    with pytest.raises(ValueError, match="gamma \\* dt"):
        ar1_precision(10, gamma=30.0, dt=0.1)


def test_check_precision_rejects_bad_matrices():
    with pytest.raises(ValueError, match="P must be symmetric"):
        check_precision(np.array([[2.0, 1.0], [0.0, 2.0]]))
    with pytest.raises(ValueError, match="P must be positive definite"):
        check_precision(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        check_precision(np.ones((2, 3)))
    assert condition_number(np.diag([1.0, 4.0])) == pytest.approx(4.0, rel=1e-14)


def test_coupling_bounds_kappa_at_every_d():
    # kappa(P_0) <= ((hi / lo) (1 + c) / (1 - c))^2 whatever d (the offdiag_scale knob grows with d instead)
    bound = (3.0 * 1.8 / 0.2) ** 2
    for d in (50, 400, 1600):
        assert condition_number(random_banded_precision(d, 4, coupling=0.8, random_state=d)) <= bound
    with pytest.raises(ValueError, match="not both"):
        random_banded_precision(10, 2, offdiag_scale=1.0, coupling=0.5)
    with pytest.raises(ValueError, match="coupling"):
        random_banded_precision(10, 2, coupling=1.0)
