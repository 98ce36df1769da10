r"""The K-subspaces iteration on many problems at once (SPEC A6; paper Problem 18).

Private kernels: inputs are validated by :mod:`molrg._kss`.  One call runs
many independent runs (problems and their restarts) along a leading axis, with
a row mask so that problems with different ``N`` share one padded batch:

.. math::

    j_i = \arg\max_k \|U_k^T z_i\|, \qquad
    U_k = \text{top-}d_k \text{ eigenvectors of } \sum_{j_i = k} z_i z_i^T ,

until the labels stop changing.

Numerical choices:

* Row-space coordinates: when ``N < n`` each problem is written in an
  orthonormal basis of its row space (one QR, :func:`_reduce`): energies,
  scatter matrices and eigenvectors are then ``r x r`` with ``r = max(N, d_max)``
  and the result is mapped back exactly.
* Refits: small problems (``r <= 128`` and ``N <= 1000``, every figure-4
  panel) form all scatter matrices by masked batched products and go through
  one batched ``numpy.linalg.eigh``; larger ones gather each cluster's rows
  (``O(N r^2)`` per refit instead of ``O(K N r^2)``) and take only the top
  ``d_max`` eigenpairs (``scipy.linalg.eigh(subset_by_index=...)``), or a thin
  SVD of the cluster's rows when the cluster has fewer rows than ``r``.
* Ties: an assignment within ``8 r eps ||z||^2`` of the previous label's
  energy keeps the previous label, so exact ties cannot oscillate.
* Empty clusters: after each assignment, every empty cluster takes the
  worst-fit point (largest residual ``||z||^2 - max_k ||U_k^T z||^2``) among
  clusters holding at least two points; ties go to the lowest index.  With
  fewer valid points than clusters some clusters stay empty (their bases are
  then arbitrary orthonormal eigenvectors of a zero matrix): no error is raised.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__: list[str] = []

_CHUNK = 512  # runs per block (bounds the (A, K, r, r) scatter stack)
_SUBSET_EIGH_MIN = 128  # r above which refits compute the top d_max eigenpairs only
_GATHER_MIN_N = 1000  # rows above which refits gather each cluster's rows (one r x r product per cluster)


def _energies(Z: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``||U_k^T z_i||^2`` for ``Z`` ``(A, N, r)`` and zero-padded bases ``U`` ``(A, K, r, dmax)``: ``(A, N, K)``."""
    A, K, r, dm = U.shape
    Y = Z @ np.transpose(U, (0, 2, 1, 3)).reshape(A, r, K * dm)
    return (Y * Y).reshape(A, Z.shape[1], K, dm).sum(-1)


def _refit(Z: np.ndarray, labels: np.ndarray, K: int, dmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``dmax`` eigenpairs (descending) of every cluster scatter ``sum_{j_i=k} z_i z_i^T``.

    ``Z`` ``(A, N, r)``, ``labels`` ``(A, N)`` (negative: no cluster).  Returns
    bases ``(A, K, r, dmax)`` and eigenvalues ``(A, K, dmax)``.
    """
    A, N, r = Z.shape
    if r > _SUBSET_EIGH_MIN or N > _GATHER_MIN_N:
        return _refit_top(Z, labels, K, dmax)
    C = np.empty((A, K, r, r), dtype=Z.dtype)
    Zt = np.swapaxes(Z, -1, -2)
    for k in range(K):
        C[:, k] = Zt @ (Z * (labels == k)[..., None])
    lam, V = np.linalg.eigh(C)
    return V[..., ::-1][..., :dmax], lam[..., ::-1][..., :dmax]


def _refit_top(Z: np.ndarray, labels: np.ndarray, K: int, dmax: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_refit` for large ``r`` or ``N``: only the top ``dmax`` eigenpairs, one matrix at a time.

    Each cluster's rows are gathered, so a refit costs ``O(N r^2)`` products in
    all (the batched masked products of :func:`_refit` cost ``K`` times that).
    """
    A, N, r = Z.shape
    U = np.empty((A, K, r, dmax), dtype=Z.dtype)
    lam = np.empty((A, K, dmax), dtype=Z.dtype)
    for a in range(A):
        for k in range(K):
            Zk = Z[a][labels[a] == k]
            if dmax <= Zk.shape[0] < r:  # fewer rows than r: the thin SVD of the rows is cheaper
                _, s, Vh = np.linalg.svd(Zk, full_matrices=False)
                U[a, k], lam[a, k] = Vh[:dmax].T, s[:dmax] ** 2
            else:
                w, V = scipy.linalg.eigh(Zk.T @ Zk, subset_by_index=[r - dmax, r - 1])
                U[a, k], lam[a, k] = V[:, ::-1], w[::-1]
    return U, lam


def _reseed(lab: np.ndarray, E: np.ndarray, Z: np.ndarray, mask: np.ndarray, K: int) -> np.ndarray:
    """Give every empty cluster the worst-fit point of a cluster with >= 2 points (in place, returned)."""
    A = lab.shape[0]
    counts = (lab[..., None] == np.arange(K)).sum(1)  # (A, K)
    empty = counts == 0
    if not empty.any():
        return lab
    resid = (Z * Z).sum(-1) - E.max(-1)
    rows = np.arange(A)
    for k in range(K):
        need = empty[:, k]
        if not need.any():
            continue
        donor_ok = mask & (np.take_along_axis(counts, np.maximum(lab, 0), 1) >= 2)
        score = np.where(donor_ok, resid, -np.inf)
        j = score.argmax(-1)
        ok = need & np.isfinite(score[rows, j])
        r_ok, j_ok = rows[ok], j[ok]
        counts[r_ok, lab[r_ok, j_ok]] -= 1
        lab[r_ok, j_ok] = k
        counts[r_ok, k] += 1
    return lab


def _kss_kernel(Z, mask, run_prob, U0, dims, max_iter, labels0=None):
    """K-subspaces iterations for many runs at once (private: inputs validated).

    Parameters
    ----------
    Z : ``(P, N, r)`` problems (padding rows zero); mask ``(P, N)``.
    run_prob : ``(R,)`` problem index of each run (restarts are extra runs).
    U0 : ``(R, K, r, dmax)`` starting bases, zero-padded beyond ``d_k`` (need
        not be orthonormal: only the first assignment uses them).
    dims, max_iter : as validated.
    labels0 : ``(R, N)``, optional
        Labels whose refit ``U0`` is (the spectral start).  A run whose first
        assignment reproduces them skips that refit (it would return ``U0``
        again) but counts it, so results and ``n_iter`` are those of the
        plain iteration.

    Each run iterates assign (ties keep the previous label) -> (re-seed empty
    clusters) -> refit until its labels equal those of the previous assignment
    (converged; no refit then) or ``max_iter`` refits were done (followed by a
    final assignment).  Only the still-active runs are computed in each sweep.

    Returns
    -------
    U ``(R, K, r, dmax)``, labels ``(R, N)`` (-1 on padding), objective ``(R,)``,
    n_iter ``(R,)`` (number of refits), converged ``(R,)``.
    """
    R = run_prob.shape[0]
    K, dmax = len(dims), max(dims)
    colmask = (np.arange(dmax) < np.asarray(dims)[:, None]).astype(Z.dtype)[:, None, :]  # (K, 1, dmax)
    U = np.array(U0, dtype=Z.dtype) * colmask
    labels = np.full((R, Z.shape[1]), -2, dtype=np.int64)
    obj = np.zeros(R, dtype=np.float64)
    n_iter = np.zeros(R, dtype=np.int64)
    converged = np.zeros(R, dtype=bool)
    active = np.arange(R)
    tie_tol = 8 * Z.shape[2] * np.finfo(Z.dtype).eps
    for it in range(max_iter + 1):
        if active.size == 0:
            break
        for start in range(0, active.size, _CHUNK):
            c = active[start : start + _CHUNK]
            Zc, mc = Z[run_prob[c]], mask[run_prob[c]]
            E = _energies(Zc, U[c])
            lab = E.argmax(-1)
            prev = labels[c]
            e_prev = np.take_along_axis(E, np.maximum(prev, 0)[..., None], -1)[..., 0]
            tol = tie_tol * (Zc * Zc).sum(-1)
            lab = np.where((prev >= 0) & (e_prev >= E.max(-1) - tol), prev, lab)
            lab[~mc] = -1
            lab = _reseed(lab, E, Zc, mc, K)
            obj[c] = (E.max(-1) * mc).sum(-1)
            same = (lab == labels[c]).all(-1)
            labels[c] = lab
            converged[c[same]] = True
            todo = ~same
            if it == max_iter or not todo.any():
                continue
            n_iter[c[todo]] += 1
            if it == 0 and labels0 is not None:  # refit of the start's own labels: U0 again
                todo &= ~(lab == labels0[c]).all(-1)
                if not todo.any():
                    continue
            U[c[todo]] = _refit(Zc[todo], lab[todo], K, dmax)[0] * colmask
        active = active[~converged[active]]
    return U, labels, obj, n_iter, converged


def _reduce(X: np.ndarray, dmax: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Row-space coordinates ``Z = X Q`` with ``Q`` ``(B, n, r)`` orthonormal, ``r = max(N, dmax) < n``.

    ``Q`` comes from a complete QR of ``X^T``; its first ``N`` columns span the
    row space, so energies and scatter eigenvectors are exact in ``Z``.  Returns
    ``(X, None)`` when there is nothing to gain (``r >= n``).
    """
    B, N, n = X.shape
    r = max(N, dmax)
    if r >= n:
        return X, None
    Q, _ = np.linalg.qr(np.swapaxes(X, -1, -2), mode="complete")
    Q = np.ascontiguousarray(Q[:, :, :r])
    return X @ Q, Q
