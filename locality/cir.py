r"""The Cox-Ingersoll-Ross time series of the locality paper (SPEC B5, paper section 4.2).

The CIR model

.. math::  dX_t = a (b - X_t)\,dt + \sigma \sqrt{X_t}\, dW_t

sampled every ``dt`` (``D`` in the SPEC) time units gives a stationary, positive,
short-memory time series: the target of the localized neural score of
:mod:`locality.cir_score` (paper figure 3).

* Exact transition (paper eq. 4.8): ``X_{t+D} = c * chi2'(4ab/sigma^2, X_t e^{-aD}/c)``
  with ``c = sigma^2 (1 - e^{-aD}) / (4a)`` and ``chi2'(df, nonc)`` noncentral
  chi-square (:func:`simulate_cir`, ``method="exact"``).
* Euler-Maruyama as in the paper (``method="euler"``): inner step ``em_step``, one
  value kept every ``dt / em_step`` steps, clipped at 0 (see :func:`simulate_cir`).
* Stationary law (:func:`cir_stationary`): Gamma with shape ``2ab/sigma^2`` and scale
  ``sigma^2/(2a)`` (mean ``b``, variance ``b sigma^2 / (2a)``); autocorrelation
  at lag ``h`` (in samples) ``exp(-a h D)`` (:func:`cir_autocorrelation`).
* Metrics for generated series: the exact Wasserstein-1 distance of the marginal
  to the Gamma law (:func:`cir_wasserstein`), the ensemble autocorrelation
  (:func:`autocorrelation`) and its error against ``exp(-a h D)``
  (:func:`autocorrelation_error`), and histogram data (:func:`marginal_histogram`).

The Feller condition ``2ab >= sigma^2`` keeps the process away from 0; when it
fails the exact law is still valid, but the process touches 0 and the
Euler-Maruyama clipping matters: a :class:`FellerWarning` is issued.

Defaults follow SPEC B5: ``a = 0.5, b = 1, sigma = 0.5, dt = 1`` (Gamma shape 4,
scale 1/4, lag-1 autocorrelation ``exp(-0.5) = 0.607``).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special, stats

from molrg._validation import check_array, check_choice, check_int, check_matrix, check_random_state, check_real

__all__ = [
    "FellerWarning",
    "check_cir_params",
    "cir_stationary",
    "cir_autocorrelation",
    "simulate_cir",
    "cir_wasserstein",
    "autocorrelation",
    "autocorrelation_error",
    "marginal_histogram",
]


class FellerWarning(UserWarning):
    """The CIR parameters violate the Feller condition ``2ab >= sigma^2``."""


def check_cir_params(a: Any, b: Any, sigma: Any, *, warn: bool = True, stacklevel: int = 3) -> tuple[float, float, float]:
    """Validate the CIR parameters: ``a, b, sigma`` finite and ``> 0``.

    Issues a :class:`FellerWarning` (unless ``warn=False``) when ``2ab < sigma^2``.
    Returns ``(a, b, sigma)`` as floats.
    """
    a = check_real("a", a, low=0.0, low_open=True)
    b = check_real("b", b, low=0.0, low_open=True)
    sigma = check_real("sigma", sigma, low=0.0, low_open=True)
    if warn and 2.0 * a * b < sigma**2:
        warnings.warn(
            f"the Feller condition 2ab >= sigma^2 fails (2ab = {2 * a * b:g} < sigma^2 = {sigma**2:g}): "
            "the CIR process reaches 0 and the Euler-Maruyama scheme is clipped there",
            FellerWarning,
            stacklevel=stacklevel,
        )
    return a, b, sigma


def cir_stationary(a: float = 0.5, b: float = 1.0, sigma: float = 0.5):
    """The stationary law of the CIR process: a frozen ``scipy.stats.gamma``.

    Shape ``2ab/sigma^2``, scale ``sigma^2/(2a)`` (SPEC B5): mean ``b``, variance
    ``b sigma^2/(2a)``.

    Examples
    --------
    >>> law = cir_stationary(0.5, 1.0, 0.5)
    >>> round(float(law.mean()), 12), round(float(law.var()), 12)
    (1.0, 0.25)
    """
    a, b, sigma = check_cir_params(a, b, sigma)
    return stats.gamma(2.0 * a * b / sigma**2, scale=sigma**2 / (2.0 * a))


def cir_autocorrelation(lags: Any, a: float = 0.5, dt: float = 1.0) -> np.ndarray:
    """Autocorrelation of the stationary CIR series at integer ``lags``: ``exp(-a h dt)``.

    Examples
    --------
    >>> np.round(cir_autocorrelation([0, 1, 2], a=0.5), 4)
    array([1.    , 0.6065, 0.3679])
    """
    a = check_real("a", a, low=0.0, low_open=True)
    dt = check_real("dt", dt, low=0.0, low_open=True)
    lags = check_array("lags", lags, dtype=np.float64)
    if np.any(lags < 0):
        raise ValueError(f"lags must be >= 0, got min {lags.min()}")
    return np.exp(-a * lags * dt)


def simulate_cir(
    n_series: int,
    length: int,
    *,
    a: float = 0.5,
    b: float = 1.0,
    sigma: float = 0.5,
    dt: float = 1.0,
    method: str = "exact",
    em_step: float = 0.01,
    random_state: Any = None,
) -> np.ndarray:
    """Stationary CIR series sampled every ``dt``: array ``(n_series, length)``, float64.

    Every series starts from the stationary Gamma law (:func:`cir_stationary`), so
    the whole series is stationary (no burn-in needed).

    Parameters
    ----------
    n_series, length : int
        Number of independent series (``>= 1``) and values per series (``>= 1``).
    a, b, sigma : float
        Mean-reversion rate, long-run mean and volatility, all ``> 0``.  When
        ``2ab < sigma^2`` (Feller condition violated) a :class:`FellerWarning` is issued.
    dt : float
        Time between two recorded values (``D`` of SPEC B5), ``> 0``.
    method : {"exact", "euler"}
        ``"exact"``: the scaled noncentral chi-square transition (paper eq. 4.8)
        ``X_{t+dt} = c * noncentral_chisquare(4ab/sigma^2, X_t e^{-a dt}/c)``,
        ``c = sigma^2 (1 - e^{-a dt})/(4a)``.
        ``"euler"``: the paper's Euler-Maruyama scheme with inner step ``em_step``,
        one value recorded every ``dt / em_step`` steps (the sub-sampling, which must
        be a whole number); the step is
        ``X <- max(X + a (b - X) h + sigma sqrt(X) sqrt(h) Z, 0)``: the iterate is
        clipped at 0 so that the square root stays real.  Clipping is a (small)
        bias of the scheme, negligible under the Feller condition, where the
        process stays away from 0.
    em_step : float
        Inner Euler-Maruyama step ``h`` (``method="euler"`` only), ``0 < h <= dt``.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    X : ndarray of shape (n_series, length)

    Examples
    --------
    >>> X = simulate_cir(2000, 8, random_state=0)
    >>> X.shape, bool(abs(X.mean() - 1.0) < 0.05)
    ((2000, 8), True)
    """
    n_series = check_int("n_series", n_series, low=1)
    length = check_int("length", length, low=1)
    a, b, sigma = check_cir_params(a, b, sigma)
    dt = check_real("dt", dt, low=0.0, low_open=True)
    check_choice("method", method, ("exact", "euler"))
    rng = check_random_state(random_state)

    shape, scale = 2.0 * a * b / sigma**2, sigma**2 / (2.0 * a)
    X = np.empty((n_series, length))
    X[:, 0] = rng.gamma(shape, scale, size=n_series)
    if method == "exact":
        decay = np.exp(-a * dt)
        c = sigma**2 * (1.0 - decay) / (4.0 * a)
        df = 4.0 * a * b / sigma**2
        for j in range(1, length):
            X[:, j] = c * rng.noncentral_chisquare(df, X[:, j - 1] * decay / c)
        return X
    # Euler-Maruyama with sub-sampling
    em_step = check_real("em_step", em_step, low=0.0, high=dt, low_open=True)
    ratio = dt / em_step
    subsample = int(round(ratio))
    if abs(ratio - subsample) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"dt / em_step must be a whole number (the sub-sampling), got dt={dt}, em_step={em_step}")
    sqrt_h = np.sqrt(em_step)
    x = X[:, 0].copy()
    for j in range(1, length):
        for _ in range(subsample):
            z = rng.standard_normal(n_series)
            x = x + a * (b - x) * em_step + sigma * np.sqrt(x) * sqrt_h * z
            np.maximum(x, 0.0, out=x)
        X[:, j] = x
    return X


# --------------------------------------------------------------------------- metrics
def cir_wasserstein(samples: Any, a: float = 0.5, b: float = 1.0, sigma: float = 0.5) -> float:
    """Exact Wasserstein-1 distance between the empirical law of ``samples`` and the Gamma law.

    ``W1 = int_0^1 |F_n^{-1}(u) - F^{-1}(u)| du`` computed in closed form: on the
    ``i``-th quantile cell ``((i-1)/n, i/n]`` the empirical quantile is the order
    statistic ``x_(i)``, and the integral of the Gamma quantile ``Q`` is
    ``M(u) = int_0^u Q = k theta G_{k+1}(Q(u))`` (``G_{k+1}`` the CDF of
    Gamma(shape ``k+1``, scale ``theta``)).  No sampling of the reference law, no
    truncation.  Negative values (a generator may produce them) are allowed.
    The quantile function is needed on the grid ``i/n`` only (cached per ``n``):
    inside a cell ``M(F(x)) = k theta G_{k+1}(x)``.

    Parameters
    ----------
    samples : array_like
        Any shape; all values are pooled (the series are stationary).
    a, b, sigma : float
        CIR parameters of the reference law (:func:`cir_stationary`).

    Examples
    --------
    >>> law = cir_stationary()
    >>> x = law.ppf((np.arange(1000) + 0.5) / 1000)
    >>> bool(cir_wasserstein(x) < 2e-3)
    True
    """
    x = np.sort(check_array("samples", samples, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("samples must not be empty")
    a, b, sigma = check_cir_params(a, b, sigma, warn=False)
    k, theta = 2.0 * a * b / sigma**2, sigma**2 / (2.0 * a)
    n = x.size
    Mg = _partial_moments_on_grid(n, k, theta)  # M(i/n), i = 0 .. n
    # u* = F(x) clipped to the cell; M(u*) = k theta G_{k+1}(x) where F(x) lies in the cell
    # (Q(F(x)) = x: no quantile function needed off the grid), M at the cell's end otherwise
    y = np.maximum(x, 0.0) / theta
    F = special.gammainc(k, y)
    u0 = np.arange(n) / n
    u1 = np.arange(1, n + 1) / n
    below, above = F < u0, F > u1
    ustar = np.where(below, u0, np.where(above, u1, F))
    Mstar = np.where(below, Mg[:-1], np.where(above, Mg[1:], k * theta * special.gammainc(k + 1.0, y)))
    cells = x * (2.0 * ustar - u0 - u1) - 2.0 * Mstar + Mg[:-1] + Mg[1:]
    return float(np.sum(np.maximum(cells, 0.0)))


@lru_cache(maxsize=16)
def _partial_moments_on_grid(n: int, k: float, theta: float) -> np.ndarray:
    """``M(i/n) = int_0^{i/n} Q = k theta G_{k+1}(Q(i/n))`` for ``i = 0 .. n`` (read-only, cached:
    a sweep measures many samples of the same size).
    """
    u = np.arange(n + 1) / n
    M = k * theta * special.gammainc(k + 1.0, special.gammaincinv(k, u))
    M[0], M[-1] = 0.0, k * theta  # exact ends
    M.setflags(write=False)
    return M


def autocorrelation(X: Any, max_lag: int = 10) -> np.ndarray:
    """Ensemble autocorrelation of stationary series, lags ``0 .. max_lag``.

    ``rho(h) = mean_{series, t} (X_t - m)(X_{t+h} - m) / v`` with ``m`` and ``v`` the
    mean and variance of all values pooled (the paper's "ensemble average over
    the samples"); ``rho(0) = 1``.

    Parameters
    ----------
    X : array_like of shape (n_series, length)
    max_lag : int
        ``0 <= max_lag < length``.

    Returns
    -------
    rho : ndarray of shape (max_lag + 1,)
    """
    X = check_matrix("X", X, ndim=2, dtype=np.float64)
    max_lag = check_int("max_lag", max_lag, low=0, high=X.shape[1] - 1)
    Z = X - X.mean()
    v = np.mean(Z**2)
    if v <= 0:
        raise ValueError("X is constant: the autocorrelation is undefined")
    L = X.shape[1]
    return np.array([np.mean(Z[:, : L - h] * Z[:, h:]) / v for h in range(max_lag + 1)])


def autocorrelation_error(X: Any, a: float = 0.5, dt: float = 1.0, max_lag: int = 10) -> float:
    """Largest ``|rho_hat(h) - exp(-a h dt)|`` over lags ``1 .. max_lag`` (see :func:`autocorrelation`)."""
    max_lag = check_int("max_lag", max_lag, low=1)
    rho = autocorrelation(X, max_lag)
    h = np.arange(1, max_lag + 1)
    return float(np.max(np.abs(rho[1:] - cir_autocorrelation(h, a, dt))))


def marginal_histogram(X: Any, bins: int = 30, range: tuple[float, float] = (0.0, 3.0)) -> tuple[np.ndarray, np.ndarray]:
    """Histogram data of the pooled values: ``(edges, density)``.

    ``density`` integrates to the fraction of values inside ``range`` (values
    outside are not silently folded in), so it is directly comparable with the
    Gamma density ``cir_stationary(...).pdf``.
    """
    bins = check_int("bins", bins, low=1)
    lo, hi = (check_real("range[0]", range[0]), check_real("range[1]", range[1]))
    if not hi > lo:
        raise ValueError(f"range must be increasing, got {range}")
    x = check_array("X", X, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("X must not be empty")
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    density = counts / (x.size * np.diff(edges))
    return edges, density
