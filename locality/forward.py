"""The OU forward process and the decay of locality along it (SPEC B2, paper Theorem 2.1, figure 1).

Under ``dX = -X dt + sqrt(2) dW`` started at ``N(0, Sigma_0)``,
``Sigma_t = e^{-2t} Sigma_0 + (1 - e^{-2t}) I`` and the score is ``-P_t x`` with
``P_t = Sigma_t^{-1}``.  One eigendecomposition ``P_0 = Q diag(lam) Q^T`` serves
every ``t``:

.. math::  P_t = Q \\, \\mathrm{diag}\\big(\\lambda / (e^{-2t} + (1 - e^{-2t}) \\lambda)\\big) Q^T,

which never inverts anything (and stays accurate for ill-conditioned ``P_0``).

Locality is measured by the off-diagonal profile ``m_r(t) = mean_i |P_t[i, i+r]|``
and the effective radius ``r_eff(t) = max {r : m_r(t) >= eps m_0(t)}`` (paper eq. 4.1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from molrg.utils import check_int, check_real

from .precision import check_covariance, check_precision

__all__ = [
    "check_times",
    "ou_covariance",
    "ou_precision",
    "offdiag_profile",
    "ou_profile",
    "effective_radius",
    "radius_from_profile",
    "ou_effective_radius",
    "decay_rate",
]


# --------------------------------------------------------------------------- validation
def check_times(t: Any, name: str = "t") -> np.ndarray:
    """Diffusion times as a float64 array (scalar -> 0-d); each must be finite and ``>= 0``."""
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-d array of times, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if np.any(bad):
        raise ValueError(f"{name} must be finite and in [0, inf), got {arr[bad].ravel()[0]}")
    return arr


def _check_eps(eps: Any) -> float:
    return check_real("eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)


# --------------------------------------------------------------------------- Sigma_t, P_t
def ou_covariance(Sigma0: Any, t: Any) -> np.ndarray:
    """``Sigma_t = e^{-2t} Sigma_0 + (1 - e^{-2t}) I`` (SPEC B2).

    Parameters
    ----------
    Sigma0 : array of shape (d, d)
        Symmetric positive definite covariance at ``t = 0``.
    t : float or array of shape (n_t,)
        Times ``>= 0``.

    Returns
    -------
    ndarray of shape (d, d), or (n_t, d, d) for an array ``t``.
    """
    S = check_covariance(Sigma0, "Sigma0")
    t = check_times(t)
    e = np.exp(-2.0 * t)[..., None, None]
    return e * S + (1.0 - e) * np.eye(S.shape[0])


def _ou_spectrum(lam: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Eigenvalues of ``P_t`` given those of ``P_0`` (private kernel: clean input)."""
    e = np.exp(-2.0 * t)[..., None]
    return lam / (e + (1.0 - e) * lam)


def ou_precision(P0: Any, t: Any) -> np.ndarray:
    """Precision ``P_t = Sigma_t^{-1}`` of the OU marginal (SPEC B2, paper Theorem 2.1).

    One eigendecomposition of ``P_0`` serves every time (see the module docstring).

    Parameters
    ----------
    P0 : array of shape (d, d)
        Symmetric positive definite precision at ``t = 0``.
    t : float or array of shape (n_t,)
        Times ``>= 0``.

    Returns
    -------
    ndarray of shape (d, d), or (n_t, d, d) for an array ``t`` (a stack of precisions).

    Examples
    --------
    >>> P0 = np.array([[2.0, -1.0], [-1.0, 2.0]])
    >>> np.allclose(ou_precision(P0, 0.0), P0)
    True
    >>> np.allclose(ou_precision(P0, 50.0), np.eye(2))
    True
    """
    P0 = check_precision(P0, "P0")
    t = check_times(t)
    lam, Q = np.linalg.eigh(P0)
    f = _ou_spectrum(lam, t)
    P = (Q * f[..., None, :]) @ Q.T
    return 0.5 * (P + np.swapaxes(P, -1, -2))


# --------------------------------------------------------------------------- locality profile
def _profile_dense(P: np.ndarray, R: int) -> np.ndarray:
    """``m_r = mean_i |P[..., i, i+r]|`` for ``r = 0..R`` of a (stack of) dense matrices."""
    return np.stack([np.abs(np.diagonal(P, r, axis1=-2, axis2=-1)).mean(axis=-1) for r in range(R + 1)], axis=-1)


def offdiag_profile(P: Any, max_radius: int | None = None) -> np.ndarray:
    """Off-diagonal profile ``m_r = mean_i |P[i, i+r]|``, ``r = 0..R`` (SPEC B2).

    Parameters
    ----------
    P : array of shape (..., d, d)
        A matrix or a stack of matrices.
    max_radius : int, optional
        ``R`` (default and maximum ``d - 1``).

    Returns
    -------
    ndarray of shape (..., R + 1)
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim < 2 or P.shape[-1] != P.shape[-2]:
        raise ValueError(f"P must be a square matrix or a stack of them, got shape {P.shape}")
    d = P.shape[-1]
    R = d - 1 if max_radius is None else check_int("max_radius", max_radius, low=0, high=d - 1)
    return _profile_dense(P, R)


def ou_profile(P0: Any, t: Any, *, max_radius: int | None = None, chunk: int = 8) -> np.ndarray:
    """Off-diagonal profile ``m_r(t)`` of ``P_t`` for many times at once (SPEC B2).

    One eigendecomposition of ``P_0``.  With ``max_radius=None`` every ``r`` up
    to ``d - 1`` is exact (dense ``P_t``, ``chunk`` times at a time to bound the
    memory).  With ``max_radius = R`` only the band is formed:
    ``P_t[i, i+r] = sum_k Q[i, k] Q[i+r, k] f_k(t)``, i.e. for each ``r`` one
    ``(d - r, d) x (d, n_t)`` product, ``O(R d^2 n_t)`` instead of ``O(d^3 n_t)``.

    Returns
    -------
    ndarray of shape (R + 1,) for a scalar ``t`` or (n_t, R + 1).
    """
    P0 = check_precision(P0, "P0")
    t = check_times(t)
    chunk = check_int("chunk", chunk, low=1)
    d = P0.shape[0]
    R = d - 1 if max_radius is None else check_int("max_radius", max_radius, low=0, high=d - 1)
    lam, Q = np.linalg.eigh(P0)
    tt = np.atleast_1d(t)
    F = _ou_spectrum(lam, tt)  # (n_t, d)
    if R >= d // 4:
        out = np.empty((tt.size, R + 1))
        for s in range(0, tt.size, chunk):
            P = (Q * F[s : s + chunk, None, :]) @ Q.T
            out[s : s + chunk] = _profile_dense(P, R)
    else:
        out = np.empty((tt.size, R + 1))
        Ft = F.T  # (d, n_t)
        for r in range(R + 1):
            G = Q[: d - r] * Q[r:]  # (d - r, d)
            out[:, r] = np.abs(G @ Ft).mean(axis=0)
    return out[0] if t.ndim == 0 else out


def radius_from_profile(m: Any, eps: float = 1e-3) -> np.ndarray:
    """``r_eff = max {r : m_r >= eps m_0}`` from profiles ``m`` of shape (..., R + 1) (paper eq. 4.1)."""
    eps = _check_eps(eps)
    m = np.asarray(m, dtype=np.float64)
    ok = m >= eps * m[..., :1]
    R = m.shape[-1] - 1
    # index of the last True along the last axis (r = 0 is always True)
    return (R - np.argmax(ok[..., ::-1], axis=-1)).astype(np.int64)


def effective_radius(P: Any, eps: float = 1e-3) -> np.ndarray | int:
    """Effective localization radius ``r_eff = max {r : m_r >= eps m_0}`` (SPEC B2, paper eq. 4.1).

    Parameters
    ----------
    P : array of shape (d, d) or (n, d, d)
        A precision or a stack of them (e.g. the output of :func:`ou_precision`).
    eps : float in (0, 1), default 1e-3
        Relative threshold.

    Returns
    -------
    int, or int array of shape (n,) for a stack.

    Examples
    --------
    >>> effective_radius(np.eye(4) + 0.5 * np.eye(4, k=1) + 0.5 * np.eye(4, k=-1))
    1
    """
    eps = _check_eps(eps)
    P = np.asarray(P, dtype=np.float64)
    if P.ndim not in (2, 3) or P.shape[-1] != P.shape[-2]:
        raise ValueError(f"P must have shape (d, d) or (n, d, d), got shape {P.shape}")
    if not np.all(np.isfinite(P)):
        raise ValueError("P contains NaN or inf")
    r = radius_from_profile(_profile_dense(P, P.shape[-1] - 1), eps)
    return int(r) if r.ndim == 0 else r


def ou_effective_radius(P0: Any, t: Any, eps: float = 1e-3, *, max_radius: int | None = None) -> np.ndarray:
    """``r_eff(t)`` of ``P_t`` for many times with one eigendecomposition (see :func:`ou_profile`).

    With ``max_radius = R`` the result saturates at ``R``: choose ``R`` above the
    radii of interest (the exact value is returned whenever it is ``< R``).
    """
    eps = _check_eps(eps)
    return radius_from_profile(ou_profile(P0, t, max_radius=max_radius), eps)


def decay_rate(m: Any, *, r_min: int = 1, r_max: int | None = None, floor: float = 1e-13) -> float:
    """Exponential decay rate ``c`` of a profile, ``m_r ~ A e^{-c r}`` (SPEC B2, figure 1 top-left).

    Least-squares fit of ``log m_r`` against ``r`` over ``r_min <= r <= r_max``,
    keeping only ``m_r > floor * m_0`` (below that the entries are rounding
    noise).  ``c / log(10)`` is the number of decades per unit of ``r``.

    Returns
    -------
    float
        ``c`` (NaN when fewer than two radii are usable).
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 1:
        raise ValueError(f"m must be a 1-d profile, got shape {m.shape}")
    R = m.size - 1
    r_min = check_int("r_min", r_min, low=0, high=R)
    r_max = R if r_max is None else check_int("r_max", r_max, low=r_min, high=R)
    r = np.arange(r_min, r_max + 1)
    v = m[r_min : r_max + 1]
    keep = v > floor * m[0]
    if keep.sum() < 2:
        return float("nan")
    slope = np.polyfit(r[keep], np.log(v[keep]), 1)[0]
    return float(-slope)
