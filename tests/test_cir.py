"""CIR simulation, exact references and metrics (SPEC B5, paper section 4.2)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from locality.cir import (
    FellerWarning,
    autocorrelation,
    autocorrelation_error,
    cir_autocorrelation,
    cir_stationary,
    cir_wasserstein,
    marginal_histogram,
    simulate_cir,
)

A, B, SIGMA = 0.5, 1.0, 0.5


def test_stationary_law_and_autocorrelation_formulas():
    law = cir_stationary(A, B, SIGMA)
    # Gamma(shape 2ab/sigma^2 = 4, scale sigma^2/(2a) = 1/4): mean b, variance b sigma^2/(2a)
    assert_allclose(law.args[0], 4.0, rtol=1e-14)
    assert_allclose([law.mean(), law.var()], [1.0, 0.25], rtol=1e-12)
    law2 = cir_stationary(2.0, 0.3, 0.7)
    assert_allclose([law2.mean(), law2.var()], [0.3, 0.3 * 0.49 / 4.0], rtol=1e-12)
    assert_allclose(cir_autocorrelation([0, 1, 3], a=0.5, dt=2.0), np.exp([0.0, -1.0, -3.0]), rtol=1e-14)


def test_exact_simulator_marginal_passes_ks_and_autocorrelation_matches():
    X = simulate_cir(20_000, 8, a=A, b=B, sigma=SIGMA, random_state=20240611)
    law = cir_stationary(A, B, SIGMA)
    # one column: 20 000 independent stationary values; the last one after 7 transitions
    assert stats.kstest(X[:, -1], law.cdf).pvalue > 0.01
    assert stats.kstest(X[:, 3], law.cdf).pvalue > 0.01
    rho = autocorrelation(X, 3)
    assert_allclose(rho[0], 1.0, rtol=1e-12)
    assert_allclose(rho[[1, 3]], np.exp(-A * np.array([1.0, 3.0])), atol=0.03)


def test_exact_simulator_other_dt_and_is_seeded():
    X = simulate_cir(4000, 32, a=1.0, b=2.0, sigma=0.8, dt=0.25, random_state=7)
    rho = autocorrelation(X, 4)
    assert_allclose(rho[1:], np.exp(-1.0 * 0.25 * np.arange(1, 5)), atol=0.03)
    assert_allclose(X.mean(), 2.0, atol=0.03)
    assert_allclose(simulate_cir(10, 5, random_state=3), simulate_cir(10, 5, random_state=3), rtol=0)
    assert not np.allclose(simulate_cir(10, 5, random_state=3), simulate_cir(10, 5, random_state=4))


def test_euler_maruyama_close_to_exact_law():
    X = simulate_cir(2000, 24, method="euler", em_step=0.01, random_state=11)
    law = cir_stationary(A, B, SIGMA)
    assert X.min() >= 0.0
    assert_allclose([X.mean(), X.var()], [law.mean(), law.var()], rtol=0.05)
    assert_allclose(autocorrelation(X, 1)[1], np.exp(-A), atol=0.03)
    # a coarse step is a different (biased) chain, but still well defined and non-negative
    Y = simulate_cir(500, 8, method="euler", em_step=0.5, random_state=11)
    assert Y.shape == (500, 8) and Y.min() >= 0.0


def test_feller_violation_warns_and_still_simulates():
    with pytest.warns(FellerWarning, match="Feller condition"):
        X = simulate_cir(5000, 6, a=0.5, b=0.1, sigma=0.5, random_state=2)
    assert X.min() >= 0.0
    assert_allclose(X.mean(), 0.1, rtol=0.1)
    with pytest.warns(FellerWarning, match="2ab"):
        cir_stationary(0.5, 0.1, 0.5)
    with pytest.warns(FellerWarning, match="clipped"):
        simulate_cir(10, 3, a=0.5, b=0.1, sigma=0.5, method="euler", random_state=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(a=0.0), r"^a must be finite and in \(0.0, inf\]"),
        (dict(a=-1.0), r"^a must be"),
        (dict(b=0.0), r"^b must be finite and in \(0.0, inf\]"),
        (dict(sigma=-0.5), r"^sigma must be finite and in \(0.0, inf\]"),
        (dict(dt=0.0), r"^dt must be"),
        (dict(method="milstein"), r"^method must be one of \['euler', 'exact'\]"),
        (dict(method="euler", em_step=0.3), r"dt / em_step must be a whole number"),
        (dict(method="euler", em_step=2.0), r"^em_step must be finite and in \(0.0, 1.0\]"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_cir(10, 5, **kwargs)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match=r"^n_series must be in \[1, inf\]"):
        simulate_cir(0, 5)
    with pytest.raises(ValueError, match=r"^length must be in \[1, inf\]"):
        simulate_cir(3, 0)
    with pytest.raises(ValueError, match=r"^a must be"):
        cir_stationary(a=-0.1)


def test_wasserstein_is_exact():
    law = cir_stationary(A, B, SIGMA)
    x = law.rvs(3000, random_state=np.random.default_rng(5))
    ref = law.ppf((np.arange(200_000) + 0.5) / 200_000)  # a fine quantile sample of the law
    for shift in (0.0, -0.2, 0.05):
        assert_allclose(cir_wasserstein(x + shift), stats.wasserstein_distance(x + shift, ref), atol=3e-5)
    # a pure shift of the law moves W1 by exactly the shift
    assert_allclose(cir_wasserstein(ref + 0.1), 0.1, atol=1e-4)
    assert cir_wasserstein(ref) < 1e-4
    # the exact training data sit close to the law: W1 shrinks like 1/sqrt(n)
    X = simulate_cir(1000, 64, random_state=1)
    assert cir_wasserstein(X) < 0.012
    with pytest.raises(ValueError, match="samples contains NaN"):
        cir_wasserstein([1.0, np.nan])
    with pytest.raises(ValueError, match="samples must not be empty"):
        cir_wasserstein([])


def test_wasserstein_equals_the_quantile_cell_formula():
    """The fast form (quantiles on the grid only) against the cell formula with the Gamma quantile
    evaluated everywhere (scipy.stats), for several sizes, shifts and a law other than the default."""
    def direct(x, a, b, sigma):
        x = np.sort(np.ravel(x))
        k, theta = 2 * a * b / sigma**2, sigma**2 / (2 * a)
        law, upper = stats.gamma(k, scale=theta), stats.gamma(k + 1, scale=theta)
        M = lambda u: k * theta * upper.cdf(law.ppf(u))  # noqa: E731
        n = x.size
        u0, u1 = np.arange(n) / n, np.arange(1, n + 1) / n
        us = np.clip(law.cdf(x), u0, u1)
        return np.sum(np.maximum(x * (2 * us - u0 - u1) - 2 * M(us) + M(u0) + M(u1), 0.0))

    rng = np.random.default_rng(3)
    for n, shift, params in ((1, 0.0, (A, B, SIGMA)), (7, -0.3, (A, B, SIGMA)), (500, 0.02, (A, B, SIGMA)),
                             (2000, 0.0, (1.5, 0.7, 0.9)), (300, -2.0, (A, B, SIGMA))):
        x = stats.gamma(4.0, scale=0.25).rvs(n, random_state=rng) + shift
        assert_allclose(cir_wasserstein(x, *params), direct(x, *params), rtol=1e-10, atol=1e-14)


def test_autocorrelation_of_independent_series_and_errors():
    rng = np.random.default_rng(9)
    Z = rng.standard_normal((2000, 32))
    rho = autocorrelation(Z, 5)
    assert_allclose(rho[1:], 0.0, atol=0.01)
    # the error of independent series is the reference itself at lag 1
    assert_allclose(autocorrelation_error(Z, a=0.5, max_lag=5), np.exp(-0.5), atol=0.01)
    with pytest.raises(ValueError, match=r"^max_lag must be in \[0, 31\]"):
        autocorrelation(Z, 32)
    with pytest.raises(ValueError, match="X must have 2 axes"):
        autocorrelation(Z[0], 2)
    with pytest.raises(ValueError, match="X is constant"):
        autocorrelation(np.ones((3, 4)), 1)


def test_marginal_histogram_matches_gamma_density():
    X = simulate_cir(4000, 16, random_state=4)
    edges, dens = marginal_histogram(X, bins=20, range=(0.0, 3.0))
    assert edges.shape == (21,) and dens.shape == (20,)
    law = cir_stationary()
    inside = np.mean((X >= 0) & (X <= 3.0))
    assert_allclose(np.sum(dens * np.diff(edges)), inside, rtol=1e-12)
    mass = np.diff(law.cdf(edges)) / np.diff(edges)
    assert_allclose(dens, mass, atol=0.04)
    with pytest.raises(ValueError, match="range must be increasing"):
        marginal_histogram(X, range=(1.0, 1.0))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: cir_wasserstein("abc"), TypeError, r"^samples must be an array of real numbers"),
        (lambda: cir_wasserstein([1.0 + 1j, 2.0]), TypeError, r"^samples must hold real numbers, got complex"),
        (lambda: cir_wasserstein([1.0, np.inf]), ValueError, r"^samples contains NaN or inf"),
        (lambda: autocorrelation(np.array([[1.0, np.nan, 2.0]] * 2), 1), ValueError, r"^X contains NaN or inf"),
        (lambda: autocorrelation(np.ones((2, 3), dtype=complex), 1), TypeError, r"^X must hold real numbers"),
        (lambda: marginal_histogram(["a", "b"]), TypeError, r"^X must hold real numbers, got strings"),
        (lambda: marginal_histogram([np.nan]), ValueError, r"^X contains NaN or inf"),
        (lambda: cir_autocorrelation([1, -1]), ValueError, r"^lags must be >= 0"),
        (lambda: cir_autocorrelation("1"), TypeError, r"^lags must be an array of real numbers"),
        (lambda: cir_stationary(a="x"), TypeError, r"^a must be"),
        (lambda: simulate_cir(3, 4, sigma=np.nan), ValueError, r"^sigma must be finite"),
        (lambda: simulate_cir(2.5, 4), (TypeError, ValueError), r"^n_series must be"),
    ],
)
def test_public_functions_reject_bad_input_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
