r"""The OU forward process and the decay of locality along it (SPEC B2, paper Theorem 2.1, figure 1).

Under ``dX = -X dt + sqrt(2) dW`` started at ``N(0, Sigma_0)``,
``Sigma_t = e^{-2t} Sigma_0 + (1 - e^{-2t}) I`` and the score is ``-P_t x`` with
``P_t = Sigma_t^{-1}``.  One eigendecomposition ``P_0 = Q diag(lam) Q^T`` serves
every ``t``:

.. math::  P_t = Q \, \mathrm{diag}\big(\lambda / (e^{-2t} + (1 - e^{-2t}) \lambda)\big) Q^T,

which never inverts anything (and stays accurate for ill-conditioned ``P_0``).

Locality is measured by the off-diagonal profile ``m_r(t) = mean_i |P_t[i, i+r]|``
and the effective radius ``r_eff(t) = max {r : m_r(t) >= eps m_0(t)}`` (paper eq. 4.1).

Banded path (any ``d``, used whenever ``P0`` is a :class:`~locality.banded.BandedMatrix`).
With ``e = e^{-2t}`` and the banded ``A_t = e I + (1 - e) P_0``,

.. math::  \Sigma_t = P_0^{-1} A_t, \qquad P_t = A_t^{-1} P_0, \qquad
           \Sigma_t = e \, P_0^{-1} + (1 - e) I,

so the band of ``P_t`` up to half-width ``R`` is the band of the product of the
band of ``A_t^{-1}`` (half-width ``R + b``, :func:`~locality.banded.band_inverse`)
with ``P_0`` (no cancellation at small ``t``: ``A_0 = I``), and the band of
``Sigma_t`` is ``e`` times the band of ``P_0^{-1}`` plus ``(1 - e) I``.  Time
``O(d (b + R)^2)`` per time, memory ``O(d (b + R))``; the entries are exact up to
rounding (they are not truncated: only entries outside the requested band are
left out).  The profile and ``r_eff`` widen ``R`` automatically (doubling) until
``m_R(t) < eps m_0(t)`` at every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from molrg._validation import check_int, check_real

from .banded import BandedMatrix, band_inverse, band_product
from .precision import check_covariance, check_precision

__all__ = [
    "check_times",
    "ou_covariance",
    "ou_covariance_band",
    "ou_precision",
    "offdiag_profile",
    "ou_profile",
    "effective_radius",
    "radius_from_profile",
    "ou_effective_radius",
    "decay_rate",
    "decay_fit",
    "DecayFit",
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


def _ou_matrices(P0: BandedMatrix, t: np.ndarray) -> BandedMatrix:
    """``A_t = e I + (1 - e) P_0`` for each time, batched ``(n_t, b + 1, d)`` (kernel: clean input)."""
    e = np.exp(-2.0 * np.atleast_1d(t))[:, None, None]
    data = (1.0 - e) * P0.data[None]
    data[:, 0, :] += e[:, 0]
    return BandedMatrix._trusted(data)


def _ou_precision_band(P0: BandedMatrix, t: np.ndarray, R: int) -> BandedMatrix:
    """Band of ``P_t`` (half-width ``R``) for each time, batched (kernel: clean input, unbatched ``P0``)."""
    R = min(R, P0.d - 1)
    Z = band_inverse(_ou_matrices(P0, t), min(R + P0.half_width, P0.d - 1))
    return band_product(Z, P0, R)


def _ou_profile_band(P0: BandedMatrix, t: np.ndarray, R: int) -> np.ndarray:
    """Profiles ``(n_t, R + 1)`` of the bands of ``P_t``, a few times at a time (bounded memory)."""
    step = max(1, _TIME_CHUNK_ENTRIES // (P0.d * (R + P0.half_width + 1)))
    return np.concatenate([_ou_precision_band(P0, t[s : s + step], R).profile(R) for s in range(0, t.size, step)])


#: float64 entries of the bands of ``P_t`` held at once by the profile functions (about 64 MB)
_TIME_CHUNK_ENTRIES = 2**23


def ou_covariance_band(P0: Any, t: Any, half_width: int) -> BandedMatrix:
    """Band (half-width ``R``) of ``Sigma_t = e^{-2t} P_0^{-1} + (1 - e^{-2t}) I`` from the precision ``P_0`` (SPEC B2).

    ``Sigma_t`` itself is never formed: the band of ``P_0^{-1}`` comes from
    :func:`~locality.banded.band_inverse`, ``O(d (b + R)^2)``.

    Parameters
    ----------
    P0 : BandedMatrix or array of shape (d, d)
        Symmetric positive definite precision at ``t = 0`` (dense input is read
        as banded with its exact bandwidth).
    t : float or array of shape (n_t,)
        Times ``>= 0``.
    half_width : int
        ``R`` in ``[0, d - 1]``.

    Returns
    -------
    BandedMatrix, batched ``(n_t, R + 1, d)`` for an array ``t``.
    """
    P0 = _as_banded_precision(P0)
    t = check_times(t)
    R = check_int("half_width", half_width, low=0, high=P0.d - 1)
    Z = band_inverse(P0, R)
    e = np.exp(-2.0 * np.atleast_1d(t))[:, None, None]
    data = e * Z.data[None]
    data[:, 0, :] += 1.0 - e[:, 0]
    out = BandedMatrix(data)
    return out[0] if t.ndim == 0 else out


def _as_banded_precision(P0: Any) -> BandedMatrix:
    P0 = check_precision(P0, "P0")
    if isinstance(P0, BandedMatrix):
        if P0.batch_shape:
            raise ValueError(f"P0 must be one matrix, got a batch of shape {P0.batch_shape}")
        return P0
    return BandedMatrix.from_dense(P0)


def ou_precision(P0: Any, t: Any, *, half_width: int | None = None):
    """Precision ``P_t = Sigma_t^{-1}`` of the OU marginal (SPEC B2, paper Theorem 2.1).

    Dense ``P0``: one eigendecomposition serves every time (see the module
    docstring).  Banded ``P0`` (:class:`~locality.banded.BandedMatrix`): the band
    of ``P_t`` up to ``half_width`` (default: the bandwidth ``b`` of ``P0``),
    ``O(d (b + R)^2)`` per time, exact up to rounding.

    Parameters
    ----------
    P0 : array of shape (d, d) or BandedMatrix
        Symmetric positive definite precision at ``t = 0``.
    t : float or array of shape (n_t,)
        Times ``>= 0``.
    half_width : int, optional
        Banded path only (dense ``P0`` with ``half_width`` takes the banded
        path too): ``R`` in ``[0, d - 1]``.

    Returns
    -------
    ndarray of shape (d, d), or (n_t, d, d) for an array ``t`` (a stack of
    precisions); a BandedMatrix (batched over times for an array ``t``) on the
    banded path.

    Examples
    --------
    >>> P0 = np.array([[2.0, -1.0], [-1.0, 2.0]])
    >>> np.allclose(ou_precision(P0, 0.0), P0)
    True
    >>> np.allclose(ou_precision(P0, 50.0), np.eye(2))
    True
    """
    if isinstance(P0, BandedMatrix) or half_width is not None:
        P0 = _as_banded_precision(P0)
        t = check_times(t)
        R = P0.half_width if half_width is None else check_int("half_width", half_width, low=0, high=P0.d - 1)
        out = _ou_precision_band(P0, t, R)
        return out[0] if t.ndim == 0 else out
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
    P : array of shape (..., d, d) or BandedMatrix
        A matrix or a stack of matrices.
    max_radius : int, optional
        ``R`` (default: ``d - 1``, or the stored half-width of a BandedMatrix;
        maximum ``d - 1``).

    Returns
    -------
    ndarray of shape (..., R + 1)
    """
    if isinstance(P, BandedMatrix):
        R = P.half_width if max_radius is None else check_int("max_radius", max_radius, low=0, high=P.d - 1)
        return P.profile(R)
    P = np.asarray(P, dtype=np.float64)
    if P.ndim < 2 or P.shape[-1] != P.shape[-2]:
        raise ValueError(f"P must be a square matrix or a stack of them, got shape {P.shape}")
    d = P.shape[-1]
    R = d - 1 if max_radius is None else check_int("max_radius", max_radius, low=0, high=d - 1)
    return _profile_dense(P, R)


#: relative floor below which the banded profile counts as fallen (``ou_profile`` without ``max_radius``)
PROFILE_FLOOR = 1e-12


def _band_profile_widening(P0: BandedMatrix, t: np.ndarray, stop: float) -> np.ndarray:
    """Profiles of ``P_t`` (rows: times), the band widened by doubling until ``m_R < stop m_0`` at every time.

    Kernel (clean input).  Entries beyond a time's final half-width are below
    ``stop m_0`` and reported as 0.
    """
    d, b = P0.d, P0.half_width
    R = min(max(2 * b + 6, 12), d - 1)
    profiles: list[np.ndarray] = [np.zeros(0)] * t.size
    todo = np.arange(t.size)
    while todo.size:
        m = _ou_profile_band(P0, t[todo], R)  # (n, R + 1)
        done = (m[:, -1] < stop * m[:, 0]) | (R >= d - 1)
        for j, i in enumerate(todo):
            if done[j]:
                profiles[i] = m[j]
        todo = todo[~done]
        R = min(2 * R, d - 1)
    width = int(max(p.size for p in profiles))
    out = np.zeros((t.size, width))
    for row, p in enumerate(profiles):
        out[row, : p.size] = p
    return out


def ou_profile(
    P0: Any, t: Any, *, max_radius: int | None = None, chunk: int = 8, floor: float = PROFILE_FLOOR
) -> np.ndarray:
    """Off-diagonal profile ``m_r(t)`` of ``P_t`` for many times at once (SPEC B2).

    Dense ``P0``: one eigendecomposition.  With ``max_radius=None`` every ``r``
    up to ``d - 1`` is exact (dense ``P_t``, ``chunk`` times at a time to bound
    the memory).  With ``max_radius = R`` only the band is formed:
    ``P_t[i, i+r] = sum_k Q[i, k] Q[i+r, k] f_k(t)``, i.e. for each ``r`` one
    ``(d - r, d) x (d, n_t)`` product, ``O(R d^2 n_t)`` instead of ``O(d^3 n_t)``.

    Banded ``P0`` (:class:`~locality.banded.BandedMatrix`, any ``d``): the band
    of each ``P_t`` (module docstring), ``O(d (b + R)^2)`` per time.  With
    ``max_radius=None`` the band is widened until ``m_R < floor m_0`` (default
    ``1e-12``, :data:`PROFILE_FLOOR`) and the entries beyond are reported as 0.

    Returns
    -------
    ndarray of shape (R + 1,) for a scalar ``t`` or (n_t, R + 1).
    """
    if isinstance(P0, BandedMatrix):
        P0 = _as_banded_precision(P0)
        t = check_times(t)
        tt = np.atleast_1d(t)
        if max_radius is None:
            out = _band_profile_widening(P0, tt, check_real("floor", floor, low=0.0, high=1.0, low_open=True))
        else:
            R = check_int("max_radius", max_radius, low=0, high=P0.d - 1)
            out = _ou_profile_band(P0, tt, R)
        return out[0] if t.ndim == 0 else out
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
    P : array of shape (d, d) or (n, d, d), or BandedMatrix
        A symmetric precision or a stack of them (e.g. the output of
        :func:`ou_precision`); a BandedMatrix is the matrix it stores (0
        beyond its band).  Its diagonal must not vanish (``m_0 > 0``).
    eps : float in (0, 1), default 1e-3
        Relative threshold.

    Returns
    -------
    int, or int array of shape (n,) for a stack.

    Raises
    ------
    ValueError
        For a non-square, non-finite or non-symmetric (to 1e-10 of its largest
        entry) matrix, or one whose diagonal is all zero (the profile is then
        undefined).

    Examples
    --------
    >>> effective_radius(np.eye(4) + 0.5 * np.eye(4, k=1) + 0.5 * np.eye(4, k=-1))
    1
    """
    eps = _check_eps(eps)
    if isinstance(P, BandedMatrix):
        m = P.profile()
    else:
        P = np.asarray(P)
        if P.dtype.kind not in "fiu":
            raise TypeError(f"P must hold real numbers, got dtype {P.dtype}")
        P = P.astype(np.float64, copy=False)
        if P.ndim not in (2, 3) or P.shape[-1] != P.shape[-2]:
            raise ValueError(f"P must have shape (d, d) or (n, d, d), got shape {P.shape}")
        if not np.all(np.isfinite(P)):
            raise ValueError("P contains NaN or inf")
        scale = float(np.max(np.abs(P))) if P.size else 0.0
        asym = float(np.max(np.abs(P - np.swapaxes(P, -1, -2)))) if P.size else 0.0
        if asym > 1e-10 * scale:
            raise ValueError(f"P must be symmetric, got max |P - P^T| = {asym:.3g}")
        m = _profile_dense(P, P.shape[-1] - 1)
    if np.any(m[..., 0] <= 0):
        raise ValueError("P must have a nonzero diagonal (m_0 = mean_i |P[i, i]| > 0), got an all-zero diagonal")
    r = radius_from_profile(m, eps)
    return int(r) if r.ndim == 0 else r


def ou_effective_radius(P0: Any, t: Any, eps: float = 1e-3, *, max_radius: int | None = None) -> np.ndarray:
    """``r_eff(t)`` of ``P_t`` for many times (see :func:`ou_profile`).

    Dense ``P0``: one eigendecomposition; with ``max_radius = R`` the result
    saturates at ``R``: choose ``R`` above the radii of interest (the exact
    value is returned whenever it is ``< R``).  Banded ``P0``: without
    ``max_radius`` the band is widened until the profile has fallen below
    ``eps`` at every time (exact whenever the profile stays below ``eps``
    beyond the first radius where it falls below it, as it does for a decaying
    profile).
    """
    eps = _check_eps(eps)
    if isinstance(P0, BandedMatrix) and max_radius is None:
        P0 = _as_banded_precision(P0)
        t = check_times(t)
        r = radius_from_profile(_band_profile_widening(P0, np.atleast_1d(t), eps), eps)
        return r[0] if t.ndim == 0 else r
    return radius_from_profile(ou_profile(P0, t, max_radius=max_radius), eps)


@dataclass(frozen=True)
class DecayFit:
    """Least-squares fits of a profile ``m_r`` (SPEC B2, Theorem 2.1): exponential against power law.

    ``rate``: ``c`` of ``m_r ~ A e^{-c r}`` (fit of ``log m_r`` on ``r``);
    ``exponential_rmse``: root-mean-square residual of that fit (natural log);
    ``power_exponent``: ``p`` of ``m_r ~ A r^{-p}`` (fit of ``log m_r`` on ``log r``);
    ``power_rmse``: its residual.  Theorem 2.1 predicts ``exponential_rmse < power_rmse``.
    """

    rate: float
    exponential_rmse: float
    power_exponent: float
    power_rmse: float
    n_points: int


def decay_fit(m: Any, *, r_min: int = 1, r_max: int | None = None, floor: float = 1e-13) -> DecayFit:
    """Exponential and power-law fits of a profile over ``r_min <= r <= r_max`` (``m_r > floor m_0`` only).

    ``r_min >= 1`` (the power law needs ``log r``).  NaN fields when fewer than three radii are usable.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 1:
        raise ValueError(f"m must be a 1-d profile, got shape {m.shape}")
    R = m.size - 1
    r_min = check_int("r_min", r_min, low=1, high=max(R, 1))
    r_max = R if r_max is None else check_int("r_max", r_max, low=r_min, high=R)
    r = np.arange(r_min, r_max + 1)
    v = m[r_min : r_max + 1]
    keep = v > floor * m[0]
    if keep.sum() < 3:
        nan = float("nan")
        return DecayFit(nan, nan, nan, nan, int(keep.sum()))
    y = np.log(v[keep])
    fits = []
    for x in (r[keep].astype(float), np.log(r[keep])):
        coef = np.polyfit(x, y, 1)
        fits.append((-float(coef[0]), float(np.sqrt(np.mean((np.polyval(coef, x) - y) ** 2)))))
    return DecayFit(fits[0][0], fits[0][1], fits[1][0], fits[1][1], int(keep.sum()))


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
