r"""Localized DDPM with the DSM-optimal linear score (SPEC B4, paper section 4.1.2, eqs. 4.3-4.6, figure 2).

Schedule :class:`~locality.schedule.DDPMSchedule` (``T`` steps, index
``k = 0..T-1``).  From ``N`` samples with second-moment matrix
``Sigma_hat = X^T X / N`` (:func:`empirical_covariance`; the target has mean 0
and the score ``-P x`` has no bias, so the uncentred moment is exactly what
denoising score matching fits), the DSM-optimal linear score at step ``k`` is
``-P_hat_k x`` with

.. math::  \hat P_k = (\bar\alpha_k \hat\Sigma + (1 - \bar\alpha_k) I)^{-1}   \quad\text{(eq. 4.3)}.

:class:`LinearScore` holds the score matrices ``M_k`` of three samplers:

* ``"none"``: ``M_k = P_hat_k`` (eq. 4.4, the non-localized reference);
* ``"truncate"``: ``M_k = P_hat_k * band_r`` (eq. 4.5);
* ``"marginal"``: row ``i`` of ``M_k`` is row ``i`` of
  ``(A_k[S_i, S_i])^{-1}``, ``A_k = alpha_bar_k Sigma_hat + (1 - alpha_bar_k) I``,
  the minimizer of the localized DSM loss (SPEC B4, Prop. 3.3).

Nothing is inverted per step: one eigendecomposition of ``Sigma_hat`` (``"none"``,
``"truncate"``) or one batched eigendecomposition of its ``d`` local blocks
(``"marginal"``) serves all ``T`` steps, since
``(a S + (1 - a) I)^{-1} = V diag(1 / (a mu + 1 - a)) V^T``.

Backward step: ``x_{k-1} = (x_k - beta_k M_k x_k) / sqrt(alpha_k) + sqrt(beta_k) z``
from ``x_T ~ N(0, I)`` (:func:`sample_backward`, batched over samples and over
independent problems).  Everything is linear, so the generated covariance is
exact by ``C <- B_k C B_k^T + beta_k I``, ``B_k = (I - beta_k M_k) / sqrt(alpha_k)``,
from ``C = I`` (:func:`generated_covariance`).  The error of eq. 4.6 is
:func:`relative_covariance_error`, the maps of figure 2 :func:`entrywise_error`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from molrg._validation import check_choice, check_int, check_matrix, check_random_state

from .localization import _rows_to_dense, _window_index, check_radius
from .precision import check_covariance
from .schedule import DDPMSchedule

__all__ = [
    "empirical_covariance",
    "dsm_precision",
    "LinearScore",
    "generated_covariance",
    "generated_covariance_banded",
    "sample_backward",
    "relative_covariance_error",
    "entrywise_error",
    "tradeoff_curve",
    "covariance_errors",
    "gaussian_samples",
    "METHODS",
]

METHODS = ("none", "truncate", "marginal")


# --------------------------------------------------------------------------- data
def empirical_covariance(X: Any) -> np.ndarray:
    """Second-moment matrix ``X^T X / N`` of mean-zero data, one sample per row (SPEC B4).

    Parameters
    ----------
    X : array of shape (N, d) or (B, N, d)
        ``N >= 2`` samples (a leading axis for independent data sets).

    Returns
    -------
    ndarray of shape (d, d) or (B, d, d), float64.
    """
    X = np.asarray(X)
    if X.ndim not in (2, 3):
        raise ValueError(f"X must have shape (N, d) or (B, N, d), got shape {X.shape}")
    X = check_matrix("X", X, ndim=X.ndim, dtype=np.float64)
    N = X.shape[-2]
    if N < 2:
        raise ValueError(f"N (the number of samples, rows of X) must be in [2, inf), got {N}")
    return np.swapaxes(X, -1, -2) @ X / N


def _check_symmetric(name: str, S: Any) -> tuple[np.ndarray, float]:
    """Finite symmetric square matrices (stacks allowed) as float64, and their largest |entry|."""
    S = np.asarray(S, dtype=np.float64)
    if S.ndim < 2 or S.shape[-1] != S.shape[-2]:
        raise ValueError(f"{name} must be square, shape (..., d, d), got shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError(f"{name} contains NaN or inf")
    scale = max(float(np.max(np.abs(S))), 1e-300)
    asym = float(np.max(np.abs(S - np.swapaxes(S, -1, -2))))
    if asym > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric, got max |{name} - {name}^T| = {asym:.3g}")
    return S, scale


def _check_eigenvalues(name: str, lam_min: float, scale: float) -> None:
    if lam_min < -1e-10 * scale:
        raise ValueError(f"{name} must be positive semi-definite, got smallest eigenvalue {lam_min:.3g}")


def _check_psd(name: str, S: Any) -> np.ndarray:
    """Symmetric positive semi-definite (an empirical covariance may be singular), stacks allowed."""
    S, scale = _check_symmetric(name, S)
    _check_eigenvalues(name, float(np.min(np.linalg.eigvalsh(S))), scale)
    return 0.5 * (S + np.swapaxes(S, -1, -2))


def _check_psd_eigh(name: str, S: Any) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """:func:`_check_psd` with the eigenvalues from ``eigh`` of the symmetrized matrix; returns it and ``(mu, V)``."""
    S, scale = _check_symmetric(name, S)
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    mu, V = np.linalg.eigh(S)
    _check_eigenvalues(name, float(np.min(mu)), scale)
    return S, (mu, V)


def dsm_precision(Sigma_hat: Any, alpha_bar: Any) -> np.ndarray:
    """DSM-optimal precision ``(alpha_bar Sigma_hat + (1 - alpha_bar) I)^{-1}`` (SPEC B4, eq. 4.3).

    ``alpha_bar`` a scalar in ``(0, 1]`` (``< 1`` if ``Sigma_hat`` is singular) or
    an array of them (one eigendecomposition serves all): shape ``(d, d)`` or
    ``(n, d, d)``.
    """
    S = _check_psd("Sigma_hat", Sigma_hat)
    if S.ndim != 2:
        raise ValueError(f"Sigma_hat must have shape (d, d), got shape {S.shape}")
    a = np.asarray(alpha_bar, dtype=np.float64)
    if a.ndim > 1 or np.any(~np.isfinite(a)) or np.any(a <= 0) or np.any(a > 1):
        raise ValueError(f"alpha_bar must be a scalar or 1-d array of values in (0, 1], got {alpha_bar!r}")
    mu, V = np.linalg.eigh(S)
    den = a[..., None] * mu + (1.0 - a[..., None])
    if np.any(den <= 0):
        raise ValueError("alpha_bar = 1 needs a positive definite Sigma_hat")
    return (V / den[..., None, :]) @ V.T


# --------------------------------------------------------------------------- the score operator
def _local_eigh(S: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the padded local blocks of :func:`locality.localization.window_blocks`, ``(..., d, w)``, ``(..., d, w, w)``.

    The same eigenpairs as ``eigh(window_blocks(S, r))`` up to their order (the unit
    eigenvalues of the identity padding come last, eigenvectors ``e_p`` on the padded
    positions ``p``), computed without the padding: one batched ``eigh`` of the true
    ``n x n`` blocks per block size ``n`` (the windows cut by the ends of the chain are
    smaller than ``w``), and one per distinct window (rows whose window is all of
    ``[0, d)`` share it).
    """
    d = S.shape[-1]
    pos, valid, _ = _window_index(d, r)
    w = pos.shape[1]
    lo, size = pos[:, 0], valid.sum(axis=1)
    batch = S.shape[:-2]
    mu = np.ones(batch + (d, w))
    Vb = np.zeros(batch + (d, w, w))
    Vb[..., np.arange(w), np.arange(w)] = 1.0
    windows, inverse = np.unique(np.stack([lo, size], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for n in np.unique(windows[:, 1]):
        ws = np.flatnonzero(windows[:, 1] == n)
        idx = windows[ws, 0][:, None] + np.arange(n)  # (n_w, n)
        m_n, V_n = np.linalg.eigh(S[..., idx[:, :, None], idx[:, None, :]])  # (..., n_w, n), (..., n_w, n, n)
        for q, wi in enumerate(ws):
            rows = np.flatnonzero(inverse == wi)
            mu[..., rows, :n] = m_n[..., q, None, :]
            Vb[..., rows, :n, :n] = V_n[..., q, None, :, :]
    return mu, Vb


class LinearScore:
    """Score matrices ``M_k`` (score ``-M_k x``) of a (localized) DSM-optimal linear score (SPEC B4).

    Parameters
    ----------
    Sigma_hat : array of shape (..., d, d)
        Empirical covariance(s), symmetric positive semi-definite; leading axes
        are independent problems sharing ``method`` and ``r``.
    schedule : DDPMSchedule, optional
        Default ``DDPMSchedule()`` (T = 1000, beta from 1e-4 to 0.02).
    method : {"none", "truncate", "marginal"}, default "none"
    r : int, optional
        Localization radius ``>= 0`` (required unless ``method="none"``;
        ``r >= d - 1`` is the same as ``"none"``).

    Examples
    --------
    >>> from locality.precision import ar1_covariance
    >>> sc = LinearScore(ar1_covariance(8), method="marginal", r=2)
    >>> sc.matrix(999).shape
    (8, 8)
    """

    def __init__(self, Sigma_hat: Any, *, schedule: DDPMSchedule | None = None, method: str = "none", r: Any = None):
        if method == "marginal":  # local eigenpairs only: the check's own eigvalsh
            self._setup(_check_psd("Sigma_hat", Sigma_hat), None, schedule, method, r)
        else:  # the eigenpairs of Sigma_hat serve the PSD check and the score
            self._setup(*_check_psd_eigh("Sigma_hat", Sigma_hat), schedule, method, r)

    def localized(self, method: str, r: Any = None) -> LinearScore:
        """The score of the same ``Sigma_hat`` and schedule with localization ``method`` and radius ``r``.

        Equal to ``LinearScore(Sigma_hat, schedule=self.schedule, method=method, r=r)`` without
        validating ``Sigma_hat`` again (one ``eigvalsh`` of each ``d x d`` matrix saved) and reusing
        this score's eigenpairs of ``Sigma_hat`` where the new one needs them.
        """
        new = object.__new__(LinearScore)
        new._setup(self._S, None if self._V is None else (self._mu, self._V), self.schedule, method, r)
        return new

    def _setup(self, S: np.ndarray, eig: Any, schedule: DDPMSchedule | None, method: str, r: Any) -> None:
        self._S = S
        self.schedule = DDPMSchedule() if schedule is None else schedule
        if not isinstance(self.schedule, DDPMSchedule):
            raise TypeError(f"schedule must be a DDPMSchedule, got {type(self.schedule).__name__}")
        self.method = check_choice("method", method, METHODS)
        d = S.shape[-1]
        if method != "none":
            if r is None:
                raise ValueError(f"r must be given for method={method!r}")
            r = int(check_radius(r))
        self.r = r
        self.d = d
        self.batch_shape = S.shape[:-2]
        self._alpha_bars = np.asarray(self.schedule.alpha_bars)
        self._local = method in ("truncate", "marginal") and r < d - 1
        # the eigenpairs: of the local blocks (marginal, _Vb) or of S (_V); the other one is None
        self._V: Any = None
        self._Vb: Any = None
        if method == "marginal" and self._local:
            self._mu, self._Vb = _local_eigh(S, r)
        else:
            self._mu, self._V = np.linalg.eigh(S) if eig is None else eig
        self._W_cache: np.ndarray | None = None

    @property
    def _W(self) -> np.ndarray:
        """Factors of the band rows, ``(..., d, f, w)``: ``band_rows = spectrum @ _W`` (computed on first use).

        ``"marginal"``: ``W[i, m, j] = V_i[c_i, m] V_i[j, m]`` (row ``c_i`` of the local inverse,
        zero on padded ``j``); ``"truncate"``: ``W[i, m, j] = V[i, m] V[pos_ij, m]``, the band of
        ``V g V^T``.
        """
        if self._W_cache is None:
            if not self._local:
                raise ValueError("_W needs a localized score")
            d, r = self.d, int(self.r)
            pos, valid, centre = _window_index(d, r)
            if self.method == "marginal":
                V = self._Vb
                vc = V[..., np.arange(d), centre, :]  # (..., d, w): V[i, c_i, m]
                self._W_cache = vc[..., :, None] * np.swapaxes(V, -1, -2) * valid[:, None, :]
            else:
                V = self._V
                Vp = V[..., np.minimum(pos, d - 1), :]  # (..., d, w, m)
                self._W_cache = V[..., :, :, None] * np.swapaxes(Vp, -1, -2) * valid[:, None, :]
        return self._W_cache

    @property
    def T(self) -> int:
        return self.schedule.T

    def spectrum(self, k: Any) -> np.ndarray:
        """``1 / (alpha_bar_k mu + 1 - alpha_bar_k)``: eigenvalues of ``P_hat_k`` (or of the local inverses).

        Shape ``mu.shape`` for a scalar ``k``; for an array of ``K`` steps the step axis comes
        right before the last axis.
        """
        a = self._alpha_bars[k]
        if np.ndim(a) == 0:
            return 1.0 / (a * self._mu + (1.0 - a))
        a = a[:, None]
        return 1.0 / (a * self._mu[..., None, :] + (1.0 - a))

    def matrices(self, k_lo: int, k_hi: int) -> np.ndarray:
        """``M_k`` for ``k_lo <= k < k_hi``, shape ``(..., K, d, d)``.

        The localized rows of all steps of the chunk come from one batched
        product with the precomputed factors (no per-step solve).
        """
        k_lo = check_int("k_lo", k_lo, low=0, high=self.T - 1)
        k_hi = check_int("k_hi", k_hi, low=k_lo + 1, high=self.T)
        ks = np.arange(k_lo, k_hi)
        if self._local:
            return _rows_to_dense(self.band_rows(k_lo, k_hi), self.r)
        g = self.spectrum(ks)  # (..., K, d)
        V = self._V[..., None, :, :]
        return (V * g[..., None, :]) @ np.swapaxes(V, -1, -2)

    def band_rows(self, k_lo: int, k_hi: int) -> np.ndarray:
        """The band of ``M_k`` for ``k_lo <= k < k_hi``: padded rows ``(..., K, d, w)``, ``w = min(2 r + 1, d)``.

        Entry ``[..., k, i, j]`` is ``M_k[i, lo_i + j]`` with ``lo_i = max(0, i - r)``
        (zero where ``lo_i + j >= min(d, i + r + 1)``), the layout of
        :func:`locality.localization.window_blocks`.  Localized scores only.
        """
        if not self._local:
            raise ValueError(f"band_rows needs a localized score (method 'truncate' or 'marginal' with r < d - 1), "
                             f"got method={self.method!r}, r={self.r!r}, d={self.d}")
        k_lo = check_int("k_lo", k_lo, low=0, high=self.T - 1)
        k_hi = check_int("k_hi", k_hi, low=k_lo + 1, high=self.T)
        ks = np.arange(k_lo, k_hi)
        if self.method == "marginal":
            G = self.spectrum(ks)  # (..., d, K, w)
        else:
            G = self.spectrum(ks)[..., None, :, :]  # (..., 1, K, d)
        return np.swapaxes(G @ self._W, -2, -3)  # (..., K, d, w)

    def matrix(self, k: int) -> np.ndarray:
        """``M_k``, shape ``(..., d, d)``, for step index ``k`` in ``[0, T - 1]``."""
        k = check_int("k", k, low=0, high=self.T - 1)
        return self.matrices(k, k + 1)[..., 0, :, :]

    def chunks(self, size: int = 50):
        """Yield ``(k, M_k)`` for ``k = T-1, ..., 0`` (backward order), computed ``size`` steps at a time."""
        for hi in range(self.T, 0, -size):
            lo = max(0, hi - size)
            M = self.matrices(lo, hi)
            for j in range(hi - lo - 1, -1, -1):
                yield lo + j, M[..., j, :, :]

    @property
    def symmetric_none(self) -> bool:
        """True when every ``M_k`` is a function of ``Sigma_hat`` (method "none" or r >= d - 1)."""
        return not self._local


# --------------------------------------------------------------------------- samplers
def generated_covariance(score: LinearScore, *, chunk: int = 50, dtype: Any = np.float64) -> np.ndarray:
    """Exact covariance of the backward chain's output (SPEC B4): ``C <- B C B^T + beta I`` from ``C = I``.

    For the non-localized score all ``B_k`` share the eigenvectors of
    ``Sigma_hat`` and the recursion runs on the eigenvalues, ``O(T d)``; for
    ``r = 0`` every ``M_k`` is diagonal and so is ``C_gen`` (the same scalar
    recursion per coordinate, :func:`_generated_covariance_diagonal`, float64 for
    either ``dtype``); otherwise two ``d x d`` products per step, batched over the
    leading axes.

    Parameters
    ----------
    score : LinearScore
    chunk : int, default 50
        Steps whose score matrices are formed at once.
    dtype : {numpy.float64, numpy.float32}, default float64
        Arithmetic of the localized recursion.  ``float32`` runs the same
        recursion (:func:`_generated_covariance_single`: one contiguous GEMM per
        step, band rows formed from per-row factors) in single precision, several
        times faster at ``d = 64`` (issue 16); measured against float64 at
        ``d = 64``, ``T = 1000``, both localizations, ``r = 2 .. 32``,
        ``N = 32 .. 128``: ``max |C_32 - C_64| <= 8.7e-7`` (rounding accumulated
        over ``T`` steps, far below every difference the experiments read;
        ``tests/test_locality_ddpm.py`` holds it under ``2e-6``).  The result is float64.

    Returns
    -------
    ndarray of shape (..., d, d)
    """
    if not isinstance(score, LinearScore):
        raise TypeError(f"score must be a LinearScore, got {type(score).__name__}")
    chunk = check_int("chunk", chunk, low=1)
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}")
    if not score.symmetric_none and score.r == 0:
        return _generated_covariance_diagonal(score)
    if dt == np.float32 and not score.symmetric_none:
        return _generated_covariance_single(score, chunk)
    sch = score.schedule
    betas, alphas = np.asarray(sch.betas), np.asarray(sch.alphas)
    d = score.d
    if score.symmetric_none:
        c = np.ones(score.batch_shape + (d,))
        for k in range(sch.T - 1, -1, -1):
            b = (1.0 - betas[k] * score.spectrum(k)) / np.sqrt(alphas[k])
            c = b * b * c + betas[k]
        V = score._V
        C = (V * c[..., None, :]) @ np.swapaxes(V, -1, -2)
        return 0.5 * (C + np.swapaxes(C, -1, -2))
    # Unrolled: C_0 = sum_k beta_k Phi_k Phi_k^T + Phi_T Phi_T^T, Phi_k = B_0 ... B_{k-1}.
    # With Phi_k = Psi_k / sqrt(alpha_bar_{k-1}):  Psi_{k+1} = Psi_k (I - beta_k M_k), one
    # product per step; the sum is accumulated chunk by chunk as one wide product F F^T.
    inv_abar = 1.0 / np.concatenate([[1.0], np.asarray(sch.alpha_bars)])  # 1/alpha_bar_{k-1}, k = 0..T
    Psi = np.broadcast_to(np.eye(d), score.batch_shape + (d, d)).copy()
    acc = np.zeros_like(Psi)
    for lo in range(0, sch.T, chunk):
        hi = min(sch.T, lo + chunk)
        M = score.matrices(lo, hi) * (-betas[lo:hi])[:, None, None]
        K = hi - lo
        store = np.empty(M.shape)
        for j in range(K):
            store[..., j, :, :] = Psi
            Psi = Psi + Psi @ M[..., j, :, :]
        store *= np.sqrt(betas[lo:hi] * inv_abar[lo:hi])[:, None, None]
        F = np.swapaxes(store, -3, -2).reshape(score.batch_shape + (d, K * d))
        acc += F @ np.swapaxes(F, -1, -2)
    C = acc + inv_abar[sch.T] * (Psi @ np.swapaxes(Psi, -1, -2))
    return 0.5 * (C + np.swapaxes(C, -1, -2))


def _step_factors(score: LinearScore, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, int]:
    """Factors of the score matrices ``M_k`` of a localized ``score``, row by row (in ``dtype``).

    Row ``i`` of ``M_k``, restricted to ``wc`` stored columns, is ``g_k[i] @ Wf[i]`` with
    ``g_k[i] = 1 / (alpha_bar_k mu_i + 1 - alpha_bar_k)``:

    * ``"marginal"``: ``Wf[i, m, j] = V_i[c_i, m] V_i[col_ij - lo_i, m]`` on the window
      ``S_i = [lo_i, hi_i)`` of row ``i`` (``mu_i, V_i``: eigenpairs of the padded block
      ``Sigma_hat[S_i, S_i]``, ``c_i = i - lo_i``), zero off the window;
    * ``"truncate"``: ``Wf[i, m, j] = V[i, m] V[col_ij, m]`` for ``|col_ij - i| <= r``
      (``mu, V``: eigenpairs of ``Sigma_hat``, the same spectrum for every row).

    Stored columns: ``col_ij = i - r + j``, ``wc = 2 r + 1`` ("centred", when ``2 r + 1 < d``;
    zero where ``col_ij`` is outside ``[0, d)``), else ``col_ij = j``, ``wc = d``.

    Returns ``Wf`` ``(nb, d, f, wc)``, the spectra ``(nb, d, f)`` (marginal) or ``(nb, f)``
    (truncate), and the column offset: ``r`` (centred) or ``0``.
    """
    d, r = score.d, int(score.r)
    nb = int(np.prod(score.batch_shape, dtype=int))
    centred = 2 * r + 1 < d
    wc = 2 * r + 1 if centred else d
    i = np.arange(d)
    col = i[:, None] - r + np.arange(wc)[None, :] if centred else np.broadcast_to(np.arange(wc), (d, wc))
    if score.method == "marginal":
        pos, valid, centre = _window_index(d, r)
        w = pos.shape[1]
        V = score._Vb.reshape(nb, d, w, w).astype(dtype)
        lo, hi = pos[:, 0], pos[:, 0] + valid.sum(axis=1)
        keep = (col >= lo[:, None]) & (col < hi[:, None])  # (d, wc): col_ij in the window S_i
        p = np.clip(col - lo[:, None], 0, w - 1)
        Vt = np.swapaxes(V, -1, -2)  # (nb, d, m, pos)
        vc = V[:, i, centre, :]  # (nb, d, w): V_i[c_i, m]
        Wf = Vt[:, i[:, None, None], np.arange(w)[None, :, None], p[:, None, :]]  # (nb, d, w, wc): V_i[col_ij - lo_i, m]
        mu: np.ndarray = score._mu.reshape(nb, d, w)
    else:
        V = score._V.reshape(nb, d, d).astype(dtype)
        keep = (col >= 0) & (col < d) & (np.abs(col - i[:, None]) <= r)
        Vt = np.swapaxes(V, -1, -2)  # (nb, m, c)
        # Wf[i, m, j] = V[col_ij, m] (times V[i, m] below)
        Wf = np.broadcast_to(Vt[:, None], (nb, d, d, d)).copy() if not centred else Vt[:, :, np.clip(col, 0, d - 1)].transpose(0, 2, 1, 3).copy()
        vc = V  # (nb, d, m): V[i, m]
        mu = score._mu.reshape(nb, d)
    Wf *= vc[..., None]
    Wf *= keep[None, :, None, :]
    return Wf, mu, (r if centred else 0)


def _generated_covariance_single(score: LinearScore, chunk: int, dtype: Any = np.float32) -> np.ndarray:
    """The localized recursion of :func:`generated_covariance` in single precision (kernel: a localized ``score``).

    Same unrolled form, ``C_0 = sum_{k<T} beta_k Phi_k Phi_k^T + Phi_T Phi_T^T`` with
    ``Phi_k = Psi_k / sqrt(alpha_bar_{k-1})``, ``Psi_{k+1} = Psi_k (I - beta_k M_k)``, ``Psi_0 = I``,
    organised so that each step is one GEMM on contiguous operands plus one add (issue 16):

    * the ``-beta_k M_k`` of a chunk of ``K`` steps are formed row by row from the factors of
      :func:`_step_factors`, ``d`` batched products per chunk, each restricted to the window
      columns ``[lo_i, hi_i)`` of row ``i`` (and, marginal, to its ``n_i = hi_i - lo_i`` true
      eigenpairs): ``O(sum_i n_i^2)`` (marginal) or ``O(d sum_i n_i)`` (truncate) per step
      instead of a dense ``d^3`` product, written straight into a reused buffer in which
      column ``c`` of row ``i`` sits at position ``c + r`` (centred) or ``c`` (so every band
      lands in place with no scatter; the rest stays zero; one spare row per step keeps the
      step stride off multiples of 4 KiB);
      the spectra ``g_k`` are evaluated in place in one reused buffer, ``1 - alpha_bar_k``
      taken from float64 (no cancellation at ``alpha_bar_k`` near 1);
    * the transposes ``Psi_k^T`` of a chunk are stored contiguously, ``(K d, d)``, each
      ``Psi_k^T + (-beta_k M_k)^T Psi_k^T`` written in place;
    * after the chunk they are weighted in place by ``sqrt(beta_k / alpha_bar_{k-1})`` and
      the sum is one symmetric product ``G^T G`` per problem.

    ``dtype=float64`` runs the same code in double precision (a test checks it against
    the plain recursion).
    """
    f32 = np.dtype(dtype).type
    sch = score.schedule
    T = sch.T
    betas, abar = np.asarray(sch.betas), np.asarray(sch.alpha_bars)
    d = score.d
    nb = int(np.prod(score.batch_shape, dtype=int))
    inv_abar = 1.0 / np.concatenate([[1.0], abar])  # 1/alpha_bar_{k-1}, k = 0..T
    wt = np.sqrt(np.concatenate([betas * inv_abar[:T], inv_abar[T:]])).astype(f32)  # weight of Psi_k, k = 0..T
    Wf, mu64, off = _step_factors(score, f32)
    win_lo = np.maximum(0, np.arange(d) - score.r)
    win_hi = np.minimum(d, np.arange(d) + score.r + 1)
    K = min(chunk, T)
    marginal = score.method == "marginal"
    abar32, onem32, betas32 = abar.astype(f32), (1.0 - abar).astype(f32), betas.astype(f32)
    mu = (mu64[..., None, :] if marginal else mu64[:, None, :]).astype(f32)  # (nb, d, 1, f) or (nb, 1, f)
    G = np.empty((nb, d, K, mu.shape[-1]) if marginal else (nb, K, mu.shape[-1]), f32)
    # -beta_k M_k, column c of row i at position c + off; one spare row per step keeps the step stride off
    # multiples of 4 KiB (cache-set aliasing in the row-by-row writes)
    X = np.zeros((nb, K, d + 1, d + 2 * off), f32)[:, :, :d, :]
    cur, nxt = np.empty((nb, K, d, d), f32), np.empty((nb, K, d, d), f32)
    cur[:, 0] = np.eye(d, dtype=f32)
    acc = np.zeros((nb, d, d), f32)
    for s_lo in range(0, T + 1, K):  # slots s_lo .. s_lo + K - 1 of `cur` hold Psi_s^T
        ks = np.arange(s_lo, min(s_lo + K, T))  # the steps taking slot s to s + 1
        n = ks.size
        if n:
            g = G[..., :n, :]  # -beta_k / (alpha_bar_k mu + 1 - alpha_bar_k)
            np.multiply(mu, abar32[ks, None], out=g)
            g += onem32[ks, None]
            np.divide(-betas32[ks, None], g, out=g)
            for i in range(d):  # only the window columns [lo_i, hi_i) and (marginal) its n_i true eigenpairs
                lo_i, hi_i = int(win_lo[i]), int(win_hi[i])
                j0 = lo_i - (i - off) if off else lo_i
                np.matmul(G[:, i, :n, :hi_i - lo_i] if marginal else g, Wf[:, i, :hi_i - lo_i if marginal else d, j0:j0 + hi_i - lo_i],
                          out=X[:, :n, i, lo_i + off:hi_i + off])
            for j in range(n):
                dst = cur[:, j + 1] if j + 1 < K else nxt[:, 0]
                np.matmul(np.swapaxes(X[:, j, :, off:off + d], -1, -2), cur[:, j], out=dst)
                dst += cur[:, j]
        m = min(K, T + 1 - s_lo)
        F = cur[:, :m]
        F *= wt[s_lo:s_lo + m, None, None]
        F = F.reshape(nb, m * d, d)
        acc += np.matmul(np.swapaxes(F, -1, -2), F)
        cur, nxt = nxt, cur
    C = acc.astype(np.float64)
    C = 0.5 * (C + np.swapaxes(C, -1, -2))
    return C.reshape(score.batch_shape + (d, d))


def _generated_covariance_diagonal(score: LinearScore) -> np.ndarray:
    """Exact generated covariance for ``r = 0``: every ``M_k`` is diagonal, so the ``B_k`` commute.

    ``C_gen = diag(c)`` with the scalar recursion ``c <- b_k^2 c + beta_k``, ``b_k = (1 - beta_k m_k) / sqrt(alpha_k)``
    per coordinate, from ``c = 1`` (``O(T d)``, float64, for either ``dtype``).
    """
    sch = score.schedule
    betas, alphas = np.asarray(sch.betas), np.asarray(sch.alphas)
    m = score.band_rows(0, sch.T)[..., 0]  # (..., T, d): the diagonals M_k[i, i]
    c = np.ones(score.batch_shape + (score.d,))
    for k in range(sch.T - 1, -1, -1):
        b = (1.0 - betas[k] * m[..., k, :]) / np.sqrt(alphas[k])
        c = b * b * c + betas[k]
    return c[..., :, None] * np.eye(score.d)


def _row_block_layout(d: int, r: int, s: int):
    """Dense row blocks of a band matrix of half-width ``r``: block ``q`` holds rows ``[a_q, b_q)``
    (``s`` rows) and columns ``[lo_q, hi_q)``, ``lo_q = max(0, a_q - r)``, ``hi_q = min(d, b_q + r)``.

    Returns the bounds ``(n_blocks, 4)`` (rows ``a, b``, columns ``lo, hi``), the padded block shape
    ``(n_blocks, s, min(s + 2 r, d))``, the flat index in that array of the valid entries of the
    padded rows of :func:`locality.localization._window_index` (row-major order), and that of the
    diagonal entries ``(i, i)``.
    """
    pos, valid, _ = _window_index(d, r)
    a = np.arange(0, d, s)
    bounds = np.stack([a, np.minimum(d, a + s), np.maximum(0, a - r), np.minimum(d, a + s + r)], axis=1)
    width = min(s + 2 * r, d)
    i, j = np.nonzero(valid)
    q = i // s
    flat = (q * s + (i - a[q])) * width + (pos[i, j] - bounds[q, 2])
    i = np.arange(d)
    q = i // s
    flat_diag = (q * s + (i - a[q])) * width + (i - bounds[q, 2])
    return bounds, (a.size, s, width), flat, flat_diag


#: rows per dense block of B_k in :func:`generated_covariance_banded` (16 .. 32 within noise at d = 512, 1024, r = 4 .. 16)
_ROW_BLOCK = 24


def generated_covariance_banded(score: LinearScore, *, chunk: int = 50, block: int | None = None) -> np.ndarray:
    """Exact generated covariance (SPEC B4) in ``O(T d^2 r)``, using the structure of the score matrices.

    The same quantity as :func:`generated_covariance`, computed so that it stays
    cheap at ``d = 1024`` (issue 15, item 3):

    * non-localized score (``method="none"`` or ``r >= d - 1``): every ``M_k`` is
      a function of ``Sigma_hat``, so all ``B_k`` commute and ``C_gen`` is the
      scalar recursion ``c <- b_k^2 c + beta_k`` on the eigenvalues, applied in
      the eigenbasis of ``Sigma_hat`` (one eigendecomposition, ``O(d^3 + T d)``;
      delegated to :func:`generated_covariance`); ``r = 0``: the diagonal recursion;
    * localized score: ``M_k`` is banded (half-width ``r``), and the recursion
      ``C <- B_k C B_k^T + beta_k I`` with ``B_k = (I - beta_k M_k) / sqrt(alpha_k)``
      is run on ``D = C prod_k alpha_k`` (a scalar factor, so that no step needs an
      elementwise pass over a ``d x d`` array) as ``V = (I - beta_k M_k) D`` and
      ``D <- V (I - beta_k M_k)^T + beta_k prod_k alpha_k I`` (no symmetry of ``C`` assumed),
      both products as dense matrix products on row blocks of ``I - beta_k M_k``
      (``block`` rows, the ``block + 2 r`` columns they touch):
      ``O(d^2 (block + 2 r))`` per step in BLAS, no ``d x d x d`` product, no dense ``M_k``
      (2.5-3x less CPU than sparse CSR products at ``d = 1024``, ``r = 4 .. 16``).

    Parameters
    ----------
    score : LinearScore
    chunk : int, default 50
        Steps whose bands are formed at once.
    block : int, optional
        Rows per block of ``M_k`` (default ``_ROW_BLOCK``).

    Returns
    -------
    ndarray of shape (..., d, d)
    """
    if not isinstance(score, LinearScore):
        raise TypeError(f"score must be a LinearScore, got {type(score).__name__}")
    chunk = check_int("chunk", chunk, low=1)
    block = _ROW_BLOCK if block is None else check_int("block", block, low=1)
    if score.symmetric_none:
        return generated_covariance(score, chunk=chunk)
    if score.r == 0:
        return _generated_covariance_diagonal(score)
    sch = score.schedule
    betas, alphas = np.asarray(sch.betas), np.asarray(sch.alphas)
    d, r = score.d, int(score.r)
    s = min(block, d)
    bounds, bshape, flat, flat_diag = _row_block_layout(d, r, s)
    _, valid, _ = _window_index(d, r)
    n_prob = int(np.prod(score.batch_shape, dtype=int))
    # C = gamma D with the scalar gamma = prod 1/alpha_k over the steps done, so that a step is
    # V = B_k D, D <- V B_k^T + (beta_k / gamma) I with B_k = I - beta_k M_k: two block products,
    # no elementwise pass over the d x d arrays
    D = np.broadcast_to(np.eye(d), (n_prob, d, d)).copy()
    V = np.empty((d, d))
    out = np.empty((n_prob, d, d))
    diag = np.arange(d)
    gamma = 1.0
    for hi in range(sch.T, 0, -chunk):
        lo = max(0, hi - chunk)
        K = hi - lo
        rows = score.band_rows(lo, hi).reshape((n_prob, K, d, -1))
        blocks = np.zeros((n_prob, K) + bshape)
        flat_blocks = blocks.reshape(n_prob, K, -1)
        flat_blocks[..., flat] = rows[..., valid] * (-betas[lo:hi])[:, None]
        flat_blocks[..., flat_diag] += 1.0  # the blocks of B_k = I - beta_k M_k
        for j in range(K - 1, -1, -1):
            k = lo + j
            gamma /= alphas[k]
            for p in range(n_prob):
                Dp, Op, Bb = D[p], out[p], blocks[p, j]
                for q, (a, b, c0, c1) in enumerate(bounds):  # V = B D
                    np.matmul(Bb[q, : b - a, : c1 - c0], Dp[c0:c1], out=V[a:b])
                for q, (a, b, c0, c1) in enumerate(bounds):  # D <- V B^T + (beta / gamma) I
                    np.matmul(V[:, c0:c1], Bb[q, : b - a, : c1 - c0].T, out=Op[:, a:b])
                Op[diag, diag] += betas[k] / gamma
            D, out = out, D
    C = gamma * D
    C = 0.5 * (C + np.swapaxes(C, -1, -2))
    return C.reshape(score.batch_shape + (d, d))


def sample_backward(score: LinearScore, n_samples: int, *, random_state: Any = None) -> np.ndarray:
    """Samples of the (localized) DDPM backward chain, shape ``(..., n_samples, d)`` (SPEC B4, eqs. 4.4-4.5).

    ``x_T ~ N(0, I)``; ``x_{k-1} = (x_k - beta_k M_k x_k) / sqrt(alpha_k) + sqrt(beta_k) z``
    for ``k = T-1, ..., 0``, all samples and problems at once.
    """
    if not isinstance(score, LinearScore):
        raise TypeError(f"score must be a LinearScore, got {type(score).__name__}")
    n = check_int("n_samples", n_samples, low=1)
    rng = check_random_state(random_state)
    sch = score.schedule
    betas, alphas = np.asarray(sch.betas), np.asarray(sch.alphas)
    shape = score.batch_shape + (n, score.d)
    x = rng.standard_normal(shape)
    for k, M in score.chunks():
        Mt = np.swapaxes(M, -1, -2)
        x = (x - betas[k] * (x @ Mt)) / np.sqrt(alphas[k]) + np.sqrt(betas[k]) * rng.standard_normal(shape)
    return x


# --------------------------------------------------------------------------- errors
def relative_covariance_error(Sigma_gen: Any, Sigma: Any) -> np.ndarray:
    """``||Sigma_gen - Sigma||_2 / ||Sigma||_2`` (spectral norm; SPEC B4, eq. 4.6), batched over leading axes."""
    S = check_covariance(Sigma, "Sigma")
    G = np.asarray(Sigma_gen, dtype=np.float64)
    if G.shape[-2:] != S.shape:
        raise ValueError(f"Sigma_gen must have shape (..., {S.shape[0]}, {S.shape[1]}), got shape {G.shape}")
    num = np.linalg.norm(G - S, ord=2, axis=(-2, -1))
    return num / np.linalg.norm(S, ord=2)


def entrywise_error(Sigma_gen: Any, Sigma: Any) -> np.ndarray:
    """Entrywise error map ``(Sigma_gen - Sigma) / ||Sigma||_2`` (signed; figure 2, bottom row)."""
    S = check_covariance(Sigma, "Sigma")
    G = np.asarray(Sigma_gen, dtype=np.float64)
    if G.shape[-2:] != S.shape:
        raise ValueError(f"Sigma_gen must have shape (..., {S.shape[0]}, {S.shape[1]}), got shape {G.shape}")
    return (G - S) / np.linalg.norm(S, ord=2)


# --------------------------------------------------------------------------- the trade-off curve
def _generators(random_state: Any, n: int) -> list[np.random.Generator]:
    """One generator per problem: a sequence of ``n`` seeds/generators, or one source split ``n`` ways in order."""
    if isinstance(random_state, (list, tuple)):
        if len(random_state) != n:
            raise ValueError(f"random_state must hold one seed or generator per problem ({n}), got {len(random_state)}")
        return [check_random_state(g) for g in random_state]
    rng = check_random_state(random_state)
    return [rng] * n


def gaussian_samples(Sigma: Any, n_samples: int, *, random_state: Any = None) -> np.ndarray:
    """``n_samples`` draws from ``N(0, Sigma)`` by Cholesky, shape ``(..., n_samples, d)`` (batched ``Sigma``).

    The output of the backward chain of :func:`sample_backward` is exactly
    ``N(0, generated_covariance(score))`` (everything is linear and Gaussian),
    so drawing from it directly samples the chain's law at the cost of one
    Cholesky instead of ``T`` steps (issue 16; the chain itself is checked
    against this in the ``formula-checks`` experiment).  ``random_state``: one
    source, or a sequence with one per leading problem (one stream each).
    """
    S = np.asarray(Sigma, dtype=np.float64)
    if S.ndim < 2 or S.shape[-1] != S.shape[-2]:
        raise ValueError(f"Sigma must have shape (..., d, d), got shape {S.shape}")
    n = check_int("n_samples", n_samples, low=1)
    L = np.linalg.cholesky(S)
    d = S.shape[-1]
    flat = L.reshape((-1, d, d))
    rngs = _generators(random_state, flat.shape[0])
    Z = np.stack([rng.standard_normal((n, d)) for rng in rngs])
    return (Z @ np.swapaxes(flat, -1, -2)).reshape(S.shape[:-2] + (n, d))


def covariance_errors(
    Sigma: Any,
    Sigma_hat: Any,
    *,
    method: str,
    r: int,
    schedule: DDPMSchedule | None = None,
    n_generated: int = 0,
    sample_mask: Any = None,
    random_state: Any = None,
    dtype: Any = np.float64,
    nonlocal_reference: bool = True,
) -> dict[str, np.ndarray]:
    """Relative covariance errors (eq. 4.6) of the localized and the non-localized DDPM, one per data set (SPEC B4).

    The one trade-off pipeline: :func:`tradeoff_curve` and the ``locality-tradeoff``
    experiment both call it.

    Parameters
    ----------
    Sigma : array of shape (d, d)
        True covariance.
    Sigma_hat : array of shape (B, d, d)
        Empirical covariances of ``B`` data sets.
    method : {"truncate", "marginal"}
    r : int
        Radius ``>= 0``.
    n_generated : int, default 0
        With ``> 0``: also the error of the sample covariance of that many draws
        from the generated law (:func:`gaussian_samples`).
    sample_mask : array of ``B`` bools, optional
        The data sets that get the sampled errors (NaN for the others; default all).
    random_state : None, int, Generator, or a sequence of ``B`` of them (used in order
        by the data sets of ``sample_mask``)
    dtype : {numpy.float64, numpy.float32}, default float64
        Arithmetic of the localized propagation (:func:`generated_covariance`).
    nonlocal_reference : bool, default True
        Also the non-localized sampler (``"nonlocal"``, ``"nonlocal_sampled"``);
        False skips it (the caller has it already).

    Returns
    -------
    dict with ``"exact"``, ``"nonlocal"`` (each ``(B,)``), ``"Sigma_gen"`` ``(B, d, d)``,
    and with ``n_generated > 0`` ``"sampled"`` and ``"nonlocal_sampled"`` ``(B,)``.
    """
    S = check_covariance(Sigma, "Sigma")
    method = check_choice("method", method, ("truncate", "marginal"))
    n_generated = check_int("n_generated", n_generated, low=0)
    Sh = _check_psd("Sigma_hat", Sigma_hat)
    if Sh.ndim != 3:
        raise ValueError(f"Sigma_hat must have shape (B, d, d), got shape {Sh.shape}")
    C = generated_covariance(LinearScore(Sh, schedule=schedule, method=method, r=r), dtype=dtype)
    out = {"exact": relative_covariance_error(C, S), "Sigma_gen": C}
    if nonlocal_reference:
        C_ref = generated_covariance(LinearScore(Sh, schedule=schedule, method="none"))
        out["nonlocal"] = relative_covariance_error(C_ref, S)
    if n_generated:
        mask = np.ones(Sh.shape[0], bool) if sample_mask is None else np.asarray(sample_mask, bool)
        if mask.shape != (Sh.shape[0],):
            raise ValueError(f"sample_mask must have shape ({Sh.shape[0]},), got shape {mask.shape}")
        out["sampled"] = np.full(Sh.shape[0], np.nan)
        out["nonlocal_sampled"] = np.full(Sh.shape[0], np.nan)
        if mask.any():
            rngs = _generators(random_state, int(mask.sum()))
            Xg = gaussian_samples(C[mask], n_generated, random_state=rngs)
            out["sampled"][mask] = relative_covariance_error(empirical_covariance(Xg), S)
            if nonlocal_reference:
                Xr = gaussian_samples(C_ref[mask], n_generated, random_state=rngs)
                out["nonlocal_sampled"][mask] = relative_covariance_error(empirical_covariance(Xr), S)
    return out


def tradeoff_curve(
    Sigma: Any,
    N: int,
    radii: Any,
    *,
    method: str = "marginal",
    n_draws: int = 20,
    schedule: DDPMSchedule | None = None,
    n_generated: int = 0,
    random_state: Any = None,
) -> dict[str, np.ndarray]:
    """Relative covariance error of the localized DDPM against the radius (SPEC B4, figure 2 top).

    ``n_draws`` data sets of ``N`` samples from ``N(0, Sigma)``; for each, the
    exact generated covariance for every radius (batched over the draws), and
    the non-localized reference (:func:`covariance_errors`).  With
    ``n_generated > 0`` also the error of the sample covariance of that many
    draws from the generated law.

    Returns
    -------
    dict with ``"exact"`` (n_draws, n_radii), ``"nonlocal"`` (n_draws,), and
    with ``n_generated > 0`` ``"sampled"`` (n_draws, n_radii) and
    ``"nonlocal_sampled"`` (n_draws,).
    """
    S = check_covariance(Sigma, "Sigma")
    N = check_int("N", N, low=2)
    radii = np.atleast_1d(check_radius(radii, "radii"))
    method = check_choice("method", method, ("truncate", "marginal"))
    n_draws = check_int("n_draws", n_draws, low=1)
    n_generated = check_int("n_generated", n_generated, low=0)
    rng = check_random_state(random_state)
    Sh = empirical_covariance(gaussian_samples(np.broadcast_to(S, (n_draws,) + S.shape), N, random_state=rng))
    out: dict[str, np.ndarray] = {"exact": np.empty((n_draws, radii.size))}
    if n_generated:
        out["sampled"] = np.empty((n_draws, radii.size))
    for j, r in enumerate(radii):
        res = covariance_errors(S, Sh, method=method, r=int(r), schedule=schedule, n_generated=n_generated,
                                random_state=rng)
        out["exact"][:, j] = res["exact"]
        out["nonlocal"] = res["nonlocal"]
        if n_generated:
            out["sampled"][:, j] = res["sampled"]
            out["nonlocal_sampled"] = res["nonlocal_sampled"]
    return out
