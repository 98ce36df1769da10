"""Exact localization error of the score of a Gaussian (SPEC B3, paper Theorem 3.2, eq. 3.14, Prop. 3.3).

For ``x ~ N(0, Sigma)`` with precision ``P = Sigma^{-1}`` the score is
``s(x) = -P x``.  Restrict component ``i`` to the neighbourhood
``S_i = {j : |i - j| <= r}``:

* the L2-optimal localized score is ``E[s_i(x) | x_S] = -((Sigma_SS)^{-1} x_S)_i``,
  the score of the marginal on ``S`` (Prop. 3.3), and its error is exactly
  ``e_i(r) = P[i, i] - ((Sigma_SS)^{-1})[i, i]``  (:func:`localization_error`);
* the naive truncation ``-(P restricted to the band) x`` has error
  ``q_i^T Sigma q_i``, ``q_i`` the dropped part of row ``i`` (:func:`truncation_error`);
* Pythagoras: truncation error ``= e_i(r) + E|optimal - truncated|^2``
  (:func:`localization_decomposition`).

The windows of all rows are factored at once: each row's window is padded to the
common width ``w = 2R + 1`` with identity rows/columns (which leaves the inverse
of the real block unchanged) and ordered innermost first (offsets
``0, -1, +1, -2, +2, ...``), so the window of radius ``r <= R`` is the leading
``(2r + 1)``-block.  With the Cholesky factor ``L`` of the radius-``R`` window and
``x = L^{-1} e_0``, ``((Sigma_SS)^{-1})[i, i] = sum_{k < 2r + 1} x_k^2`` for every
``r <= R`` at once: one batched ``(d, w, w)`` Cholesky (in chunks of rows) serves
all radii, ``O(d R^3)`` time and ``O(d R)`` memory beyond one chunk.  The windows
need only the band of ``Sigma`` of half-width ``2R``, so a banded input
(:class:`~locality.banded.BandedMatrix`) or :func:`ou_localization_error` (which
never forms ``Sigma_t``) reaches any ``d``.  For ``r >= d - 1`` every window is
the whole index set and the errors are 0.

The banded truncation error uses ``q_i^T Sigma q_i = (B Sigma B)_{ii} - P_{ii}``
with ``B`` the band of radius ``r`` of ``P`` (because ``P Sigma = I``): it needs
the band of ``P`` (half-width ``r``) and of ``Sigma`` (half-width ``2r``) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .banded import BandedMatrix, _gather, band_inverse, band_windows, window_offsets
from .forward import _as_banded_precision, check_times, ou_covariance_band, ou_precision
from .precision import band_mask, check_covariance

__all__ = [
    "window_blocks",
    "marginal_score_rows",
    "marginal_score_matrix",
    "localization_error",
    "truncation_error",
    "ou_localization_error",
    "OULocalizationError",
    "LocalizationDecomposition",
    "localization_decomposition",
    "check_radius",
]


def check_radius(r: Any, name: str = "r") -> np.ndarray:
    """Localization radii as an int array (scalar -> 0-d); each must be an integer ``>= 0``."""
    arr = np.asarray(r)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be an integer or a 1-d array of integers, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integers, got {r!r}")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer or an array of integers, got {r!r}")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be in [0, inf), got {arr[arr < 0].ravel()[0]}")
    return arr


def _window_index(d: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window layout for radius ``r``: positions ``(d, w)``, validity ``(d, w)``, centres ``(d,)``.

    ``w = min(2r + 1, d)``; row ``i``'s window ``S_i = [lo_i, hi_i)`` with
    ``lo_i = max(0, i - r)``, ``hi_i = min(d, i + r + 1)`` occupies positions
    ``0 .. hi_i - lo_i - 1``; ``i`` itself sits at ``centre_i = i - lo_i``.
    """
    w = min(2 * r + 1, d)
    i = np.arange(d)
    lo = np.maximum(0, i - r)
    hi = np.minimum(d, i + r + 1)
    pos = lo[:, None] + np.arange(w)[None, :]
    return pos, pos < hi[:, None], i - lo


def window_blocks(A: np.ndarray, r: int) -> np.ndarray:
    """Padded local blocks ``A[S_i, S_i]`` of (a stack of) matrices, shape ``(..., d, w, w)``.

    Kernel (clean input: ``A`` float array ``(..., d, d)``, ``r >= 0``).  The
    block of row ``i`` is ``A[S_i, S_i]`` followed by an identity block on the
    unused positions (see :func:`_window_index`), so the inverse of the padded
    block restricted to the valid positions is ``inv(A[S_i, S_i])``.

    Rows ``i >= r`` (``lo_i = i - r``) are the diagonal windows of ``blockdiag(A, I_w)``,
    copied from one strided view; the first ``r`` rows (whose windows are cut at the
    start) are patched one by one.  :func:`_window_blocks_reference` is the direct gather.
    """
    d = A.shape[-1]
    w = min(2 * r + 1, d)
    batch = A.shape[:-2]
    Ap = np.zeros(batch + (d + w, d + w), dtype=A.dtype)
    Ap[..., :d, :d] = A
    Ap[..., np.arange(d, d + w), np.arange(d, d + w)] = 1.0
    out = np.empty(batch + (d, w, w), dtype=A.dtype)
    n_shift = d - min(r, d)  # rows i = r .. d - 1, lo_i = i - r
    if n_shift:
        s0, s1 = Ap.strides[-2:]
        view = np.lib.stride_tricks.as_strided(Ap, shape=batch + (n_shift, w, w), strides=Ap.strides[:-2] + (s0 + s1, s0, s1),
                                               writeable=False)
        out[..., d - n_shift:, :, :] = view
    for i in range(min(r, d)):  # lo_i = 0, hi_i = i + r + 1
        hi = min(d, i + r + 1)
        blk = out[..., i, :, :]
        blk[...] = 0.0
        blk[..., :hi, :hi] = A[..., :hi, :hi]
        blk[..., np.arange(hi, w), np.arange(hi, w)] = 1.0
    return out


def _window_blocks_reference(A: np.ndarray, r: int) -> np.ndarray:
    """:func:`window_blocks` by one fancy-index gather (the independent reference of the tests)."""
    d = A.shape[-1]
    pos, valid, _ = _window_index(d, r)
    pc = np.minimum(pos, d - 1)
    B = A[..., pc[:, :, None], pc[:, None, :]]  # (..., d, w, w)
    both = valid[:, :, None] & valid[:, None, :]
    eye = np.eye(pos.shape[1], dtype=bool)[None]
    return np.where(both, B, np.where(eye, 1.0, 0.0))


def marginal_score_rows(Sigma: np.ndarray, r: int) -> np.ndarray:
    """Rows ``((Sigma_SS)^{-1})[i, S_i]`` for every ``i``, padded, shape ``(..., d, w)``.

    Kernel (clean input).  Entry ``[i, j]`` is the coefficient of
    ``x_{pos[i, j]}`` (layout of :func:`_window_index`; 0 on padded positions).
    """
    d = Sigma.shape[-1]
    pos, valid, centre = _window_index(d, r)
    B = window_blocks(Sigma, r)
    e = np.zeros(B.shape[:-1] + (1,))
    e[..., np.arange(d), centre, 0] = 1.0
    rows = np.linalg.solve(B, e)[..., 0]  # symmetric blocks: column c of the inverse = row c
    return np.where(valid, rows, 0.0)


def _rows_to_dense(rows: np.ndarray, r: int) -> np.ndarray:
    """Scatter padded rows ``(..., d, w)`` (layout of :func:`_window_index`) into ``(..., d, d)``."""
    d, w = rows.shape[-2:]
    pos, valid, _ = _window_index(d, r)
    out = np.zeros(rows.shape[:-2] + (d, d + w))
    out[..., np.arange(d)[:, None], pos] = np.where(valid, rows, 0.0)
    return out[..., :, :d]


def marginal_score_matrix(Sigma: Any, r: int) -> np.ndarray:
    """The marginal-localized precision ``M``: row ``i`` is ``((Sigma_SS)^{-1})[i, :]`` placed on ``S_i``.

    ``-M x`` is the L2-optimal score whose component ``i`` depends on ``x_{S_i}``
    only (SPEC B3, Prop. 3.3).  ``M`` is banded with bandwidth ``r`` and in
    general not symmetric; ``M = P`` for ``r >= d - 1``.
    """
    S = check_covariance(Sigma, "Sigma")
    r = int(check_radius(r))
    d = S.shape[0]
    if r >= d - 1:
        return np.linalg.inv(S)
    return _rows_to_dense(marginal_score_rows(S, r), r)


def _precision_diag(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P = np.linalg.inv(S)
    P = 0.5 * (P + P.T)
    return P, np.diagonal(P).copy()


#: rows per chunk of the batched window factorizations: about 2^22 floats per chunk
_WINDOW_ENTRIES = 2**22


def _window_errors(Sb: BandedMatrix, p: np.ndarray, radii: np.ndarray, Pb: BandedMatrix | None = None):
    """Optimal (and, with the band ``Pb`` of ``P``, truncation) errors for ``radii``, shapes ``(n_r, d)``.

    Kernel (clean input): ``Sb`` the band of ``Sigma`` of half-width ``>= min(2 max(radii), d - 1)``,
    ``p`` the diagonal of ``P = Sigma^{-1}``, ``Pb`` the band of ``P`` of half-width ``>= max(radii)``.
    Radii ``>= d - 1`` give 0.
    """
    d = Sb.d
    R = int(min(radii.max(initial=0), d - 1))
    w = 2 * R + 1
    offs = window_offsets(R)
    opt = np.zeros((radii.size, d))
    trunc = np.zeros((radii.size, d)) if Pb is not None else None
    live = radii < d - 1
    step = max(1, _WINDOW_ENTRIES // (w * w))
    kk = 2 * np.minimum(radii, R)  # last window position of each radius
    strict = np.tri(w, k=-1, dtype=bool)  # strictly lower triangle of a window
    for lo in range(0, d, step):
        rows = slice(lo, min(d, lo + step))
        W, valid = band_windows(Sb, R, rows)  # (c, w, w)
        L = np.linalg.cholesky(W)
        x = np.zeros(W.shape[:-1])
        x[:, 0] = 1.0 / L[:, 0, 0]
        for k in range(1, w):  # x = L^{-1} e_0, a loop over the window (length w), not over rows
            x[:, k] = -np.einsum("ij,ij->i", L[:, k, :k], x[:, :k]) / L[:, k, k]
        inv_diag = np.cumsum(x * x, axis=-1)[:, kk]  # (c, n_r)
        opt[:, rows] = np.where(live[:, None], np.maximum(p[rows][None, :] - inv_diag.T, 0.0), 0.0)
        if Pb is not None:
            i = np.arange(d)[rows]
            pos = i[:, None] + offs[None, :]
            b = np.where(valid, _gather(Pb.data, np.broadcast_to(i[:, None], pos.shape), pos), 0.0)
            # (B Sigma B)_ii over the leading (2r + 1)-window = sum_{a, c <= 2r} b_a W_ac b_c
            # = cumsum_a b_a (W_aa b_a + 2 sum_{c < a} W_ac b_c) (W symmetric; b = 0 on padded
            # positions, so the identity padding adds nothing)
            Wb = np.einsum("iac,ic->ia", np.where(strict, W, 0.0), b)
            quad = np.cumsum(b * (2.0 * Wb + np.einsum("iaa->ia", W) * b), axis=-1)[:, kk]
            t = quad - p[rows][:, None]  # (c, n_r)
            trunc[:, rows] = np.where(  # type: ignore[index]  # trunc is an array when Pb is given
                live[:, None], np.maximum(t.T, 0.0), 0.0)
    return opt, trunc


def _sigma_band_and_pdiag(Sigma: Any, R: int) -> tuple[BandedMatrix, np.ndarray, np.ndarray | None]:
    """(band of Sigma of half-width min(2R, d-1), diag of P, dense P or None) from dense or banded Sigma."""
    S = check_covariance(Sigma, "Sigma")
    if isinstance(S, BandedMatrix):
        if S.batch_shape:
            raise ValueError(f"Sigma must be one matrix, got a batch of shape {S.batch_shape}")
        d = S.d
        return S.with_half_width(min(2 * R, d - 1)), band_inverse(S, 0).data[0], None
    P, p = _precision_diag(S)
    d = S.shape[0]
    return BandedMatrix.from_dense(S, min(2 * R, d - 1)), p, P


def localization_error(Sigma: Any, r: Any) -> np.ndarray:
    r"""Exact per-component localization error ``e_i(r)`` (SPEC B3, paper eq. 3.14, Prop. 3.3).

    .. math::  e_i(r) = E|s_i(x) - E[s_i(x) | x_{S_i}]|^2
               = P_{ii} - ((\Sigma_{S_i S_i})^{-1})_{ii},
       \quad S_i = \{j : |i - j| \le r\}.

    One batched window factorization serves every radius (module docstring).

    Parameters
    ----------
    Sigma : array of shape (d, d) or BandedMatrix
        Symmetric positive definite covariance (e.g. ``Sigma_t`` of the OU
        process).  A BandedMatrix is the banded matrix it stores (its ``P_ii``
        come from :func:`~locality.banded.band_inverse`); for the OU marginal of
        a banded precision at large ``d`` use :func:`ou_localization_error`.
    r : int or array of shape (n_r,)
        Radii ``>= 0``; ``r >= d - 1`` gives exactly 0.

    Returns
    -------
    ndarray of shape (d,), or (n_r, d) for an array ``r``.  Non-negative
    (rounding below 0 is clipped) and non-increasing in ``r``.

    Examples
    --------
    >>> from locality.precision import ar1_covariance
    >>> e = localization_error(ar1_covariance(8), [0, 1, 7])
    >>> bool(np.all(e[1] < 1e-12)), bool(np.all(e[2] == 0))   # AR(1): Markov, radius 1 is exact
    (True, True)
    """
    radii = check_radius(r)
    R = int(np.max(radii, initial=0))
    Sb, p, _ = _sigma_band_and_pdiag(Sigma, R)
    opt, _ = _window_errors(Sb, p, np.atleast_1d(radii))
    return opt[0] if radii.ndim == 0 else opt


@dataclass(frozen=True)
class OULocalizationError:
    """Per-component optimal and truncation errors of the OU score at one time (SPEC B3).

    ``optimal[k, i] = e_i(radii[k])`` and ``truncation[k, i] = q_i^T Sigma_t q_i``.
    """

    radii: np.ndarray
    optimal: np.ndarray
    truncation: np.ndarray

    def to_frame(self):
        """Tidy table: one row per radius and component (``r``, ``i``, ``optimal``, ``truncation``)."""
        import pandas as pd

        n_r, d = self.optimal.shape
        return pd.DataFrame({"r": np.repeat(self.radii, d), "i": np.tile(np.arange(d), n_r),
                             "optimal": self.optimal.ravel(), "truncation": self.truncation.ravel()})


def ou_localization_error(P0: Any, t: Any, r: Any) -> OULocalizationError:
    """Localization errors of the OU score at time ``t`` from the precision ``P_0`` (SPEC B2-B3), any ``d``.

    Needs only the band of ``Sigma_t`` of half-width ``2R``
    (:func:`~locality.forward.ou_covariance_band`) and the band of ``P_t`` of
    half-width ``R`` (:func:`~locality.forward.ou_precision`), ``R = max(r)``:
    ``Sigma_t`` is never formed.  Time ``O(d (b + 2R)^2 + d R^3)``, memory ``O(d (b + R))``
    plus one chunk of windows.

    Parameters
    ----------
    P0 : BandedMatrix or array of shape (d, d)
        Symmetric positive definite precision at ``t = 0`` (dense: read with its bandwidth).
    t : float
        Time ``>= 0``.
    r : int or array of shape (n_r,)
        Radii ``>= 0``.

    Returns
    -------
    OULocalizationError
        ``optimal`` and ``truncation`` of shape (n_r, d) (equal, for dense
        input, to :func:`localization_error` and :func:`truncation_error` of
        ``ou_covariance(inv(P0), t)`` to rounding).
    """
    P0 = _as_banded_precision(P0)
    t = check_times(t)
    if t.ndim != 0:
        raise ValueError(f"t must be a scalar time, got shape {t.shape}")
    radii = np.atleast_1d(check_radius(r))
    d = P0.d
    R = int(min(radii.max(initial=0), d - 1))
    Sb = ou_covariance_band(P0, float(t), min(2 * R, d - 1))
    Pb = ou_precision(P0, float(t), half_width=R)
    opt, trunc = _window_errors(Sb, Pb.data[0], radii, Pb)
    return OULocalizationError(radii, opt, trunc)


def truncation_error(Sigma: Any, r: Any) -> np.ndarray:
    """Error ``q_i^T Sigma q_i`` of the banded truncation ``-(P * band_r) x`` (SPEC B3).

    ``q_i`` is row ``i`` of ``P`` with the band ``|i - j| <= r`` set to zero.
    Same shapes as :func:`localization_error`.
    """
    if isinstance(Sigma, BandedMatrix):  # banded: (B Sigma B)_ii - P_ii, module docstring
        radii = check_radius(r)
        R = int(np.max(radii, initial=0))
        Sb, p, _ = _sigma_band_and_pdiag(Sigma, R)
        _, trunc = _window_errors(Sb, p, np.atleast_1d(radii), band_inverse(Sigma, min(R, Sigma.d - 1)))
        return trunc[0] if radii.ndim == 0 else trunc
    S = check_covariance(Sigma, "Sigma")
    radii = check_radius(r)
    d = S.shape[0]
    P, _ = _precision_diag(S)
    out = np.zeros((radii.size, d))
    for k, rr in enumerate(np.atleast_1d(radii)):
        if rr >= d - 1:
            continue
        Q = np.where(band_mask(d, int(rr)), 0.0, P)
        out[k] = np.einsum("ij,ij->i", Q @ S, Q)
    return out[0] if radii.ndim == 0 else out


@dataclass(frozen=True)
class LocalizationDecomposition:
    """Per-component terms of the Pythagorean identity ``truncation = optimal + distance`` (SPEC B3)."""

    optimal: np.ndarray
    truncation: np.ndarray
    distance: np.ndarray


def localization_decomposition(Sigma: Any, r: int) -> LocalizationDecomposition:
    """The three terms of ``E|s_i - trunc_i|^2 = e_i(r) + E|opt_i - trunc_i|^2`` (SPEC B3).

    ``distance[i] = delta_i^T Sigma_SS delta_i`` with
    ``delta_i = ((Sigma_SS)^{-1})[i, :] - P[i, S]`` (the two localized scores
    differ by ``delta_i^T x_S``), computed independently of the other two terms.
    """
    S = check_covariance(Sigma, "Sigma")
    r = int(check_radius(r))
    d = S.shape[0]
    opt = localization_error(S, r)
    trunc = truncation_error(S, r)
    if r >= d - 1:
        return LocalizationDecomposition(opt, trunc, np.zeros(d))
    P, _ = _precision_diag(S)
    rows = marginal_score_rows(S, r)  # (d, w)
    pos, valid, _ = _window_index(d, r)
    pc = np.minimum(pos, d - 1)
    p_band = np.where(valid, P[np.arange(d)[:, None], pc], 0.0)
    delta = rows - p_band
    B = window_blocks(S, r)
    dist = np.einsum("ij,ijk,ik->i", delta, B, delta)
    return LocalizationDecomposition(opt, trunc, dist)
