r"""Solvers for the two problems the denoising loss reduces to (SPEC A6).

* PCA (paper Problem 12): :func:`pca_subspace` / :func:`pca_subspace_batch`,
  the top-``d`` right singular vectors of the data matrix ``X`` ``(N, n)``
  (rows are samples, so these are the left singular vectors of the paper's
  column matrix, i.e. the top eigenvectors of ``X^T X``).
* K-subspaces (paper Problem 18): :class:`KSubspaces`, :func:`k_subspaces` and
  :func:`k_subspaces_batch`, alternating

  .. math::

      j_i = \arg\max_k \|U_k^T x_i\|, \qquad
      U_k = \text{top-}d_k \text{ eigenvectors of } \sum_{j_i = k} x_i x_i^T ,

  until the labels stop changing.  One private kernel (:func:`_kss_kernel`)
  runs many independent problems (and restarts) at once along a leading axis,
  with a row mask so that problems with different ``N`` share one padded batch;
  the estimator is that kernel with ``B = 1``.
* Initializations: ``random`` (Haar bases) and ``spectral``
  (:func:`spectral_init`, after Wang-Liu-So-Balzano 2022: absolute cosine
  similarities, ``q`` nearest neighbours per row, symmetrized, spectral
  clustering, PCA per group).  The clustering step is batched over all
  problems and ``q`` values by default (one batched ``eigh`` of the normalized
  affinities, then scikit-learn's ``cluster_qr`` assignment reproduced in
  numpy); ``backend="sklearn"`` / ``spectral_backend="sklearn"`` runs the
  reference ``SpectralClustering(affinity="precomputed",
  assign_labels="cluster_qr")`` once per problem and ``q`` on the same
  affinity.  Why not scikit-learn by default: it has no batched interface,
  and one call per problem and ``q`` was 70-75% of a K-subspaces panel's time
  (``benchmarks/README.md``); the tests check that both backends give the same
  partitions.
* :func:`oracle_bases`: PCA of each TRUE cluster (reference only).

Numerical choices (documented here because SPEC leaves them open):

* Signs: every returned basis column has its largest-magnitude entry positive
  (scikit-learn ``svd_flip`` convention).
* Rank deficiency (``N < d`` or zero singular values, relative tolerance
  ``max(N, n) * eps * s_max`` as in ``numpy.linalg.matrix_rank``): the missing
  columns are a deterministic orthonormal completion, pivoted Gram-Schmidt of
  the standard basis vectors ``e_1, ..., e_n`` projected off the numerical
  range (the largest residual first).
* K-subspaces works in the coordinates of an orthonormal basis of each
  problem's row space when ``N < n`` (one QR per problem): energies, scatter
  matrices and eigenvectors are then ``r x r`` with ``r = max(N, d_max)``, and
  the result is mapped back exactly.  Scatter eigenvectors come from
  ``numpy.linalg.eigh``.
* Empty clusters: after each assignment, every empty cluster takes the
  worst-fit point (largest residual ``||x||^2 - max_k ||U_k^T x||^2``) among
  clusters holding at least two points; ties go to the lowest index.  With
  fewer valid points than clusters some clusters stay empty and their bases
  are the completion above: no error is raised.
"""

from __future__ import annotations

import itertools
import numbers
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .utils import check_choice, check_dims, check_int, check_matrix, check_random_state, problem_generators, random_orthonormal

try:  # scikit-learn's category, so users can filter it like KMeans' warnings
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover - scikit-learn is a dependency

    class ConvergenceWarning(UserWarning):
        """K-subspaces reached ``max_iter`` before its labels stopped changing."""


__all__ = [
    "INITS",
    "pca_subspace",
    "pca_subspace_batch",
    "oracle_bases",
    "spectral_init",
    "spectral_q_values",
    "SPECTRAL_BACKENDS",
    "KSubspaces",
    "KSubspacesResult",
    "k_subspaces",
    "k_subspaces_batch",
    "ConvergenceWarning",
]

INITS = ("spectral", "random")

_CHUNK = 512  # runs per block inside the K-subspaces kernel (bounds the (A, K, r, r) scatter stack)


# --------------------------------------------------------------------------- validation
def _check_data(X: Any, *, batched: bool) -> np.ndarray:
    X = check_matrix("X", X, ndim=3 if batched else 2)
    if X.shape[-2] < 1:
        raise ValueError(f"X must have at least one row (N >= 1), got shape {X.shape}")
    if X.shape[-1] < 1:
        raise ValueError(f"X must have at least one column (n >= 1), got shape {X.shape}")
    return X


def _check_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"mask must have shape (B, N) = {shape}, got {m.shape}")
    if m.dtype != bool:
        if not np.all(np.isin(m, (0, 1))):
            raise ValueError("mask must be boolean (or 0/1)")
        m = m.astype(bool)
    return m


def _check_options(init, n_init, max_iter, q, spectral_backend="batched"):
    check_choice("init", init, INITS)
    check_choice("spectral_backend", spectral_backend, SPECTRAL_BACKENDS)
    n_init = check_int("n_init", n_init, low=1)
    max_iter = check_int("max_iter", max_iter, low=1)
    _check_q(q)
    return n_init, max_iter


def _check_q(q):
    if q is None:
        return None
    if isinstance(q, (numbers.Integral, np.integer)) and not isinstance(q, bool):
        return (check_int("q", q, low=1),)
    try:
        qs = tuple(q)
    except TypeError:
        raise TypeError(f"q must be None, a positive int or a sequence of them, got {q!r}") from None
    if not qs:
        raise ValueError("q must not be an empty sequence")
    return tuple(check_int(f"q[{i}]", v, low=1) for i, v in enumerate(qs))


# --------------------------------------------------------------------------- PCA kernel
def _sign_flip(U: np.ndarray) -> np.ndarray:
    """Make the largest-magnitude entry of every column positive (sklearn ``svd_flip``); ``(..., n, d)``."""
    idx = np.abs(U).argmax(-2)[..., None, :]
    s = np.sign(np.take_along_axis(U, idx, -2))
    s[s == 0] = 1
    return U * s


def _complete(V: np.ndarray, rank: np.ndarray, d: int) -> np.ndarray:
    """Keep the first ``min(rank_b, d)`` columns of ``V`` ``(B, n, m)`` and complete to ``d`` columns.

    Completion: pivoted Gram-Schmidt on the standard basis projected off the
    kept columns (the column with the largest residual first, ties to the
    lowest index), so the result depends only on the kept span.  Batched; the
    loop runs over the at most ``d`` columns.
    """
    B, n, m = V.shape
    out = np.zeros((B, n, d), dtype=V.dtype)
    keep = np.minimum(rank, d)
    take = min(m, d)
    if take:
        out[:, :, :take] = V[:, :, :take] * (np.arange(take) < keep[:, None])[:, None, :]
    if np.all(keep >= d):
        return out
    R = np.eye(n, dtype=V.dtype) - out @ np.swapaxes(out, -1, -2)  # column j: residual of e_j
    for j in range(d):
        act = np.flatnonzero(keep <= j)
        if act.size == 0:
            continue
        Ra = R[act]
        norms = (Ra * Ra).sum(-2)  # (A, n)
        piv = norms.argmax(-1)
        v = Ra[np.arange(act.size), :, piv]
        Q = out[act]
        v = v - (Q @ (np.swapaxes(Q, -1, -2) @ v[..., None]))[..., 0]  # re-orthogonalize once
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
        out[act, :, j] = v
        R[act] = Ra - v[:, :, None] * (v[:, None, :] @ Ra)
    return out


def _pca_kernel(X: np.ndarray, counts: np.ndarray, d: int) -> np.ndarray:
    """Top-``d`` right singular vectors of each ``X[b]`` ``(B, N, n)`` (padding rows zero), sign-fixed.

    Private: assumes validated finite input; ``counts[b]`` is the number of
    valid rows (sets the rank tolerance).  Returns ``(B, n, d)``.
    """
    B, N, n = X.shape
    _, s, Vh = np.linalg.svd(X, full_matrices=False)
    V = np.swapaxes(Vh, -1, -2)
    tol = s[:, :1] * np.maximum(counts, n)[:, None] * np.finfo(X.dtype).eps
    rank = (s > tol).sum(-1)
    return _sign_flip(_complete(V, rank, d))


def pca_subspace(X: Any, d: int) -> np.ndarray:
    """PCA basis: the top-``d`` principal directions of the rows of ``X`` (SPEC A6, paper Problem 12).

    Maximizes ``sum_i ||U^T x_i||^2`` over orthonormal ``U`` (no centring: the
    MoLRG has zero mean).  When ``N < d`` or ``X`` has zero singular values the
    missing directions are a deterministic orthonormal completion (module
    docstring); columns are sign-fixed.

    Parameters
    ----------
    X : array ``(N, n)``
        Samples in rows, finite.
    d : int
        Subspace dimension, ``1 <= d <= n``.

    Returns
    -------
    U : array ``(n, d)``
        Orthonormal, in the dtype of ``X`` (float32 stays float32).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[3.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    >>> np.abs(pca_subspace(X, 2))
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    """
    X = _check_data(X, batched=False)
    d = check_int("d", d, low=1, high=X.shape[1])
    return _pca_kernel(X[None], np.array([X.shape[0]]), d)[0]


def pca_subspace_batch(X: Any, d: int, *, mask: Any = None) -> np.ndarray:
    """:func:`pca_subspace` for ``B`` problems at once (one batched SVD).

    Parameters
    ----------
    X : array ``(B, N, n)``
    d : int
    mask : bool array ``(B, N)``, optional
        Valid rows; padding rows are ignored (a problem may have ``N_b < N``).

    Returns
    -------
    array ``(B, n, d)``
    """
    X = _check_data(X, batched=True)
    d = check_int("d", d, low=1, high=X.shape[2])
    mask = _check_mask(mask, X.shape[:2])
    return _pca_kernel(np.where(mask[..., None], X, 0), mask.sum(-1), d)


def oracle_bases(X: Any, labels: Any, dims: Any) -> tuple[np.ndarray, ...]:
    """Oracle: PCA of each true cluster, ``U_k = pca_subspace(X[labels == k], d_k)`` (SPEC A6).

    Uses the true labels, so it is a reference only: it shows what the data
    allows.  Empty clusters get the deterministic completion.

    Parameters
    ----------
    X : array ``(N, n)`` or ``(B, N, n)``
    labels : int array ``(N,)`` or ``(B, N)``
        Component of each row in ``0..K-1``; negative values mark padding rows.
    dims : int or sequence of K ints

    Returns
    -------
    tuple of K arrays ``(n, d_k)`` (or ``(B, n, d_k)``)
    """
    X = np.asarray(X)
    batched = X.ndim == 3
    X = _check_data(X, batched=batched)
    dims = check_dims("dims", dims, X.shape[-1])
    labels = np.asarray(labels)
    if labels.shape != X.shape[:-1]:
        raise ValueError(f"labels must have shape {X.shape[:-1]} (one per row of X), got {labels.shape}")
    if labels.dtype.kind not in "iu" or (labels.size and labels.max() >= len(dims)):
        raise ValueError(f"labels must be integers < K = {len(dims)} (negative: padding)")
    Xb, Lb = (X, labels) if batched else (X[None], labels[None])
    out = []
    for k, d in enumerate(dims):
        m = Lb == k
        out.append(_pca_kernel(np.where(m[..., None], Xb, 0), m.sum(-1), d))
    return tuple(U if batched else U[0] for U in out)


# --------------------------------------------------------------------------- K-subspaces kernel
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
    C = np.empty((A, K, r, r), dtype=Z.dtype)
    Zt = np.swapaxes(Z, -1, -2)
    for k in range(K):
        C[:, k] = Zt @ (Z * (labels == k)[..., None])
    lam, V = np.linalg.eigh(C)
    return V[..., ::-1][..., :dmax], lam[..., ::-1][..., :dmax]


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

    Each run iterates assign (ties within ``8 r eps ||z||^2`` keep the previous
    label) -> (re-seed empty clusters) -> refit until its
    labels equal those of the previous assignment (converged; no refit then) or
    ``max_iter`` refits were done (followed by a final assignment).  Only the
    still-active runs are computed in each sweep.

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
            # ties (within round-off) keep the previous label, so exact ties cannot oscillate
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


# --------------------------------------------------------------------------- spectral start
def spectral_q_values(N: int, K: int, d_max: int, q: Any = None) -> tuple[int, ...]:
    """Neighbour counts ``q`` tried by the spectral start for a problem with ``N`` valid rows.

    ``q=None`` (default) tries ``q = d_max + 1`` (the smallest that can connect a
    ``d``-dimensional subspace, SPEC A6) and ``q = round(N / K) - 1`` (all the
    points of an average cluster); every value is clipped to ``[1, N - 1]`` and
    duplicates are dropped.  An int or a sequence is used as given (clipped).
    """
    qs = _check_q(q)
    if qs is None:
        qs = (d_max + 1, int(round(N / K)) - 1)
    hi = max(N - 1, 1)
    return tuple(sorted({min(max(v, 1), hi) for v in qs}))


SPECTRAL_BACKENDS = ("batched", "sklearn")

_SPECTRAL_BLOCK = 1 << 22  # affinity entries per block of the spectral start (bounds the (runs, N, N) stacks)


def _knn_affinity(Z: np.ndarray, q: np.ndarray) -> np.ndarray:
    """q-nearest absolute-cosine affinities of the rows of every ``Z[i]`` ``(R, N, r)``, as ``(R, N, N)``.

    Shared by both spectral backends.  All rows are valid (the caller gathers
    the valid rows of equal-``N`` runs); ``q`` ``(R,)`` is per run, in
    ``[1, N - 1]``.  Row ``i`` keeps its ``q`` largest ``|cos(z_i, z_j)|``,
    ``j != i``, chosen by a stable sort (ties: lowest index first), so exactly
    ``q`` entries per row; then ``A <- (A + A^T) / 2``.  Zero rows have
    cosine 0 with everything (no weight).
    """
    R, N, _ = Z.shape
    norms = np.linalg.norm(Z, axis=-1, keepdims=True)
    Zn = Z / np.where(norms > 0, norms, 1)
    S = np.abs(Zn @ np.swapaxes(Zn, -1, -2))
    diag = np.arange(N)
    S[:, diag, diag] = -1.0  # self last in every row (q <= N - 1 never reaches it)
    order = np.argsort(-S, axis=-1, kind="stable")
    keep = np.empty(S.shape, dtype=bool)
    np.put_along_axis(keep, order, np.broadcast_to(diag < np.asarray(q)[:, None, None], S.shape), axis=-1)
    A = np.where(keep, np.maximum(S, 0), 0).astype(Z.dtype, copy=False)
    return 0.5 * (A + np.swapaxes(A, -1, -2))


def _cluster_qr_batched(E: np.ndarray) -> np.ndarray:
    """scikit-learn's ``cluster_qr`` on every embedding ``E`` ``(R, N, K)`` at once: labels ``(R, N)``.

    Pivots: greedy column-pivoted QR of ``E^T`` (``K`` steps: the node with the
    largest residual norm, first on ties, then project it out), as LAPACK
    ``geqp3`` in ``scipy.linalg.qr(pivoting=True)``; then the rotation
    ``U V^T`` from the SVD of the ``K x K`` pivot block and the argmax of
    ``|E U V^T|`` per row.
    """
    R, N, K = E.shape
    res = E.copy()
    piv = np.empty((R, K), dtype=np.int64)
    rows = np.arange(R)
    for j in range(K):
        p = np.einsum("rnk,rnk->rn", res, res).argmax(-1)
        piv[:, j] = p
        v = res[rows, p]
        nv = np.linalg.norm(v, axis=-1, keepdims=True)
        v = v / np.where(nv > 0, nv, 1)
        res -= (res @ v[:, :, None]) * v[:, None, :]
    P = np.take_along_axis(E, piv[:, :, None], 1)  # (R, K pivots, K)
    u, _, vh = np.linalg.svd(np.swapaxes(P, -1, -2))
    return np.abs(E @ (u @ vh)).argmax(-1)


def _spectral_cluster_batched(A: np.ndarray, K: int) -> np.ndarray:
    """Spectral clustering of every affinity ``A`` ``(R, N, N)`` into ``K`` groups, one batched ``eigh``.

    Reproduces ``SpectralClustering(affinity="precomputed", assign_labels="cluster_qr")``
    (scikit-learn's ``spectral_embedding`` with ``norm_laplacian=True,
    drop_first=False``): the eigenvectors ``x`` of the ``K`` smallest
    eigenvalues of ``L = I - D^{-1/2} A D^{-1/2}`` (= the ``K`` largest of
    ``D^{-1/2} A D^{-1/2}``; isolated nodes use degree 1, as
    ``scipy.sparse.csgraph.laplacian``), rescaled to ``u = D^{-1/2} x``, then
    :func:`_cluster_qr_batched`.  ``cluster_qr`` is invariant to an orthogonal
    change of basis of the embedding, so eigenvector signs and order do not
    matter; only a degenerate ``K``-th eigenvalue (more than ``K`` connected
    components) leaves the choice open, and the two backends may then differ.
    """
    deg = A.sum(-1)
    dd = np.where(deg > 0, np.sqrt(deg), 1)
    M = A / dd[:, :, None] / dd[:, None, :]
    _, V = np.linalg.eigh(M)
    return _cluster_qr_batched(V[:, :, -K:] / dd[:, :, None])


def _spectral_cluster_sklearn(A: np.ndarray, K: int, seeds: np.ndarray) -> np.ndarray:
    """Reference backend: scikit-learn ``SpectralClustering`` on each ``A[i]`` (seeded ARPACK start)."""
    from sklearn.cluster import SpectralClustering

    out = np.empty(A.shape[:2], dtype=np.int64)
    with warnings.catch_warnings():
        # disconnected graphs are the expected case for well-separated subspaces
        warnings.simplefilter("ignore", UserWarning)
        for i in range(A.shape[0]):
            model = SpectralClustering(
                n_clusters=K, affinity="precomputed", assign_labels="cluster_qr", random_state=int(seeds[i])
            )
            out[i] = model.fit_predict(A[i])
    return out


def _spectral_labels(Z, mask, run_prob, run_q, run_seed, K, backend="batched"):
    """Spectral clustering of the valid rows of ``Z[run_prob[i]]`` into ``K`` groups for every run ``i``.

    ``Z`` ``(P, N, r)``, ``mask`` ``(P, N)``; ``run_q`` neighbours per run
    (clipped to ``N_i - 1``); ``run_seed`` seeds the ``sklearn`` backend only
    (the ``batched`` one is deterministic).  Runs are grouped by their number
    of valid rows ``N_i``; the valid rows are gathered, so every affinity is
    ``N_i x N_i`` with no padding.  ``N_i <= K``: every point its own group;
    an all-zero affinity (all points zero): labels ``i mod K``.  Returns
    ``(R, N)`` labels, -1 on padding rows.
    """
    R, N = run_prob.shape[0], Z.shape[1]
    labels = np.full((R, N), -1, dtype=np.int64)
    counts = mask.sum(-1)[run_prob]
    for c in np.unique(counts):
        c = int(c)
        runs = np.flatnonzero(counts == c)
        step = max(1, _SPECTRAL_BLOCK // (c * c)) if c else runs.size
        for s in range(0, runs.size, step):
            rr = runs[s : s + step]
            pos = np.argsort(~mask[run_prob[rr]], axis=-1, kind="stable")[:, :c]  # valid rows, in order
            if c <= K:
                labels[rr[:, None], pos] = np.arange(c)
                continue
            Zc = np.take_along_axis(Z[run_prob[rr]], pos[..., None], 1)
            A = _knn_affinity(Zc, np.minimum(run_q[rr], c - 1))
            if backend == "batched":
                lab = _spectral_cluster_batched(A, K)
            else:
                lab = _spectral_cluster_sklearn(A, K, run_seed[rr])
            lab[~(A > 0).any((-1, -2))] = np.arange(c) % K  # nothing to cluster
            labels[rr[:, None], pos] = lab
    return labels


def _spectral_starts(Z, mask, run_prob, run_q, run_seed, dims, backend="batched"):
    """Spectral starting bases ``(R, K, r, dmax)`` and their labels ``(R, N)`` for runs (problem, q, seed).

    Labels from :func:`_spectral_labels` (the deterministic ``batched`` backend
    computes each distinct (problem, q) once; restarts repeat it); the PCA per
    group is one batched refit, so the bases are exactly the refit of the
    returned labels.  With unequal dims the groups are matched to the dims by
    the best assignment (all permutations for ``K <= 6``, else the Hungarian
    algorithm) on the captured energy ``sum of top-d_k eigenvalues``; the
    labels are renumbered to match.
    """
    K, dmax = len(dims), max(dims)
    R = run_prob.shape[0]
    if backend == "batched":
        key, first, inv = np.unique(np.stack([run_prob, run_q], 1), axis=0, return_index=True, return_inverse=True)
        labels = _spectral_labels(Z, mask, run_prob[first], run_q[first], run_seed[first], K, backend)[inv.ravel()]
    else:
        labels = _spectral_labels(Z, mask, run_prob, run_q, run_seed, K, backend)
    U, lam = np.empty((R, K, Z.shape[2], dmax), dtype=Z.dtype), None
    for start in range(0, R, _CHUNK):
        sl = slice(start, start + _CHUNK)
        U[sl], lam_c = _refit(Z[run_prob[sl]], labels[sl], K, dmax)
        lam = lam_c if lam is None else np.concatenate([lam, lam_c])
    if len(set(dims)) > 1:
        csum = np.cumsum(lam, -1)  # (R, K groups, dmax)
        gain = csum[:, :, np.asarray(dims) - 1]  # (R, group, slot)
        if K <= 6:  # perm[slot] = group; first best permutation
            perms = np.array(list(itertools.permutations(range(K))), dtype=np.int64)
            perm = perms[gain[:, perms, np.arange(K)].sum(-1).argmax(-1)]
        else:
            perm = np.empty((R, K), dtype=np.int64)
            for i in range(R):
                groups, slots = linear_sum_assignment(gain[i], maximize=True)
                perm[i, slots] = groups
        U = np.take_along_axis(U, perm[:, :, None, None], 1)
        slot_of = np.argsort(perm, axis=-1)  # group -> slot
        labels = np.where(labels >= 0, np.take_along_axis(slot_of, np.maximum(labels, 0), 1), labels)
    return U, labels


def _spectral_runs(counts, dims, q, rngs, n_init=None):
    """The spectral-start runs ``(problem, q, seed)`` of problems with ``counts`` valid rows, as three arrays.

    Every problem tries each ``q`` of :func:`spectral_q_values`.  ``n_init=None``
    (:func:`spectral_init`): one seed per ``q`` from the problem's generator;
    otherwise (K-subspaces restarts) ``n_init`` seeds, each paired with every ``q``.
    """
    run_prob, run_q, run_seed = [], [], []
    for b, count in enumerate(counts):
        qs = spectral_q_values(int(count), len(dims), max(dims), q)
        if n_init is None:
            seeds = rngs[b].integers(0, 2**31 - 1, size=len(qs))
        else:
            seeds = np.repeat(rngs[b].integers(0, 2**31 - 1, size=n_init), len(qs))
            qs = qs * n_init
        run_prob += [b] * len(qs)
        run_q += list(qs)
        run_seed += list(seeds)
    return np.asarray(run_prob, dtype=np.int64), np.asarray(run_q), np.asarray(run_seed)


def spectral_init(
    X: Any, dims: Any, *, mask: Any = None, q: Any = None, random_state: Any = None, backend: str = "batched"
) -> tuple[np.ndarray, ...]:
    """Spectral starting bases for K-subspaces (SPEC A6, after Wang-Liu-So-Balzano 2022).

    Absolute cosine similarities of the rows, the ``q`` largest kept in each
    row, symmetrized; spectral clustering into ``K = len(dims)`` groups; PCA of
    each group (top-``d_k`` eigenvectors of its scatter).  With several ``q``
    values (the default, see :func:`spectral_q_values`) the start with the
    largest K-subspaces objective is returned.

    Parameters
    ----------
    X : array ``(N, n)``, or ``(B, N, n)`` for ``B`` problems at once
    dims : int or sequence of K ints
    mask : bool array ``(B, N)``, optional
        Valid rows of each problem (batched ``X`` only); the others are ignored.
    q : None, int or sequence of ints, optional
        Neighbours kept per row.
    random_state : None, int or Generator (batched: also a sequence of B of them)
        Seeds scikit-learn's eigensolver start (``backend="sklearn"`` only); a
        batch uses one stream per problem (:func:`molrg.utils.problem_generators`).
    backend : {"batched", "sklearn"}, default "batched"
        Spectral clustering step.  ``batched``: numpy, one batched ``eigh`` of
        the normalized affinities ``D^{-1/2} A D^{-1/2}`` over all runs, then
        the ``cluster_qr`` assignment, deterministic.  ``sklearn``: the
        reference, ``SpectralClustering(affinity="precomputed",
        assign_labels="cluster_qr")`` once per run (ARPACK).  Both use the
        same affinity and give the same labels up to a permutation of the
        groups, except when the affinity graph has more than ``K`` connected
        components (then the top eigenspace is degenerate and either choice is
        as good).

    Returns
    -------
    tuple of K orthonormal arrays ``(n, d_k)`` (batched: ``(B, n, d_k)``)
    """
    batched = np.ndim(X) == 3
    X = _check_data(X, batched=batched)
    if not batched:
        if mask is not None:
            raise ValueError("mask is only used with a batch X of shape (B, N, n)")
        X = X[None]
    B, N, n = X.shape
    mask = np.ones((B, N), dtype=bool) if mask is None else _check_mask(mask, (B, N))
    if not mask.any(-1).all():
        raise ValueError("mask must keep at least one row (N >= 1) in every problem")
    dims = check_dims("dims", dims, n)
    check_choice("backend", backend, SPECTRAL_BACKENDS)
    rngs = problem_generators(random_state, B) if batched else [check_random_state(random_state)]
    run_prob, run_q, run_seed = _spectral_runs(mask.sum(-1), dims, q, rngs)
    Xm = np.where(mask[..., None], X, 0)
    U, _ = _spectral_starts(Xm, mask, run_prob, run_q, run_seed, dims, backend)
    score = _energies(Xm[run_prob], U).max(-1).sum(-1)  # K-subspaces objective of every run
    order = np.lexsort((-score, run_prob))  # per problem, best first (stable: the first q on ties)
    best = order[np.unique(run_prob[order], return_index=True)[1]]
    bases = tuple(_sign_flip(U[best, k, :, :d]) for k, d in enumerate(dims))
    return bases if batched else tuple(U_k[0] for U_k in bases)


# --------------------------------------------------------------------------- public K-subspaces
class KSubspacesResult(NamedTuple):
    """Result of :func:`k_subspaces_batch` (and :func:`k_subspaces` without the leading axis)."""

    bases: tuple  #: K arrays ``(B, n, d_k)``
    labels: np.ndarray  #: ``(B, N)`` int, -1 on padding rows
    objective: np.ndarray  #: ``(B,)`` ``sum_i max_k ||U_k^T x_i||^2``
    n_iter: np.ndarray  #: ``(B,)`` refits of the kept run


def _count_groups(counts: np.ndarray, ratio: float = 1.25, floor: int = 8) -> list[np.ndarray]:
    """Problems grouped by their number of valid rows: each group spans counts ``<= max(floor, ratio * smallest)``."""
    order = np.argsort(counts, kind="stable")
    groups, start = [], 0
    for i in range(1, order.size + 1):
        if i == order.size or counts[order[i]] > max(floor, ratio * counts[order[start]]):
            groups.append(np.sort(order[start:i]))
            start = i
    return groups


def _solve(X, mask, dims, init, n_init, max_iter, q, rngs, spectral_backend="batched"):
    """Validated inputs -> (KSubspacesResult, converged (B,)).  Shared by every public entry point.

    Problems are solved in groups of similar valid-row counts
    (:func:`_count_groups`), each with its valid rows gathered to the front and
    its padding cut to the group's largest count, so the row-space dimension
    ``r`` (and the cost of every ``r x r`` eigendecomposition) follows the
    problem sizes instead of the batch's largest ``N``.  Every problem uses its
    own generator, so the grouping does not change which random numbers it gets.
    """
    B, N, n = X.shape
    counts = mask.sum(-1)
    groups = _count_groups(counts)
    if len(groups) == 1 and counts.max() == N:
        return _solve_block(X, mask, dims, init, n_init, max_iter, q, rngs, spectral_backend)
    K = len(dims)
    bases = [np.empty((B, n, d), dtype=X.dtype) for d in dims]
    labels = np.full((B, N), -1, dtype=np.int64)
    obj, n_iter, conv = np.empty(B), np.empty(B, dtype=np.int64), np.empty(B, dtype=bool)
    for idx in groups:
        c = max(int(counts[idx].max()), 1)
        pos = np.argsort(~mask[idx], axis=-1, kind="stable")[:, :c]  # valid rows first, in order
        Xg = np.take_along_axis(X[idx], pos[..., None], 1)
        mg = np.take_along_axis(mask[idx], pos, 1)
        res, cg = _solve_block(Xg, mg, dims, init, n_init, max_iter, q, [rngs[i] for i in idx], spectral_backend)
        for k in range(K):
            bases[k][idx] = res.bases[k]
        labels[idx[:, None], pos] = res.labels
        obj[idx], n_iter[idx], conv[idx] = res.objective, res.n_iter, cg
    return KSubspacesResult(tuple(bases), labels, obj, n_iter), conv


def _solve_block(X, mask, dims, init, n_init, max_iter, q, rngs, spectral_backend="batched"):
    """:func:`_solve` on one padded block (no grouping)."""
    B, N, n = X.shape
    K, dmax = len(dims), max(dims)
    Xm = np.where(mask[..., None], X, 0).astype(X.dtype, copy=False)
    Z, Q = _reduce(Xm, dmax)
    counts = mask.sum(-1)
    labels0 = None
    if init == "random":
        S = n_init
        run_prob = np.repeat(np.arange(B), S)
        U0 = np.zeros((B, S, K, n, dmax), dtype=X.dtype)
        for b in range(B):
            for s in range(S):
                for k, d in enumerate(dims):
                    U0[b, s, k, :, :d] = random_orthonormal(n, d, random_state=rngs[b])
        U0 = U0.reshape(B * S, K, n, dmax)
        if Q is not None:  # project the Haar bases: same energies for points in the row space
            U0 = np.swapaxes(Q, -1, -2)[run_prob][:, None] @ U0
    elif init == "spectral":
        run_prob, run_q, run_seed = _spectral_runs(counts, dims, q, rngs, n_init)
        U0, labels0 = _spectral_starts(Z, mask, run_prob, run_q, run_seed, dims, spectral_backend)
    else:  # pragma: no cover - validated before
        raise ValueError(f"init must be one of {INITS}, got {init!r}")

    U, labels, obj, n_iter, conv = _kss_kernel(Z, mask, run_prob, U0, dims, max_iter, labels0)

    # best run per problem (first on ties): runs of one problem are contiguous
    order = np.lexsort((-obj, run_prob))
    first = np.r_[0, np.flatnonzero(np.diff(run_prob[order])) + 1]
    sel = order[first]
    U, labels, obj, n_iter, conv = U[sel], labels[sel], obj[sel], n_iter[sel], conv[sel]
    if Q is not None:
        U = Q[:, None] @ U
    bases = tuple(_sign_flip(np.ascontiguousarray(U[:, k, :, :d])) for k, d in enumerate(dims))
    return KSubspacesResult(bases, labels, obj, n_iter), conv


def _warn_unconverged(conv: np.ndarray, max_iter: int, stacklevel: int) -> None:
    if not np.all(conv):
        warnings.warn(
            f"K-subspaces did not converge within max_iter = {max_iter} iterations for "
            f"{int((~conv).sum())} of {conv.size} problem(s); increase max_iter",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )


def k_subspaces_batch(
    X: Any,
    dims: Any,
    *,
    mask: Any = None,
    init: str = "spectral",
    n_init: int = 1,
    max_iter: int = 100,
    q: Any = None,
    random_state: Any = None,
    spectral_backend: str = "batched",
) -> KSubspacesResult:
    """K-subspaces on ``B`` independent problems at once (SPEC A6; paper Problem 18).

    All problems (and all their restarts) run through one batched kernel:
    assignments are one batched matrix product, refits one batched ``eigh``
    over ``(runs, K)`` scatter matrices; each run stops as soon as its labels
    stop changing.  The spectral start is batched too (one ``eigh`` of the
    normalized affinities of all runs).  Problems of very different ``N`` are
    processed in groups of similar ``N`` (their padding cut), so that small
    problems do not pay for the largest one.

    Parameters
    ----------
    X : array ``(B, N, n)``
        Problems stacked along the first axis, samples in rows, finite.
    dims : int or sequence of K ints
        Subspace dimensions ``d_k`` (shared by the batch; may differ from each other).
    mask : bool array ``(B, N)``, optional
        Valid rows, so problems with different ``N`` share one padded batch.
    init : {"spectral", "random"}, default "spectral"
        Starting bases (see :func:`spectral_init`); ``random`` draws Haar bases.
    n_init : int, default 1
        Restarts per problem; the run with the largest objective is kept.  With
        ``spectral`` each restart also tries every ``q`` of
        :func:`spectral_q_values` (so ``n_init * len(q values)`` runs); the
        batched spectral start is deterministic, so there restarts only repeat
        the same runs (they differ with ``spectral_backend="sklearn"`` through
        its eigensolver's seed): use several ``q`` values instead.
    max_iter : int, default 100
        Maximum number of refits per run (a :class:`ConvergenceWarning` is
        issued if some run reaches it).
    q : None, int or sequence of ints
        Neighbours kept per row by the spectral start.
    random_state : None, int, Generator, or a sequence of B of them
        Randomness (Haar draws, seeds of the spectral eigensolver).  A sequence
        gives problem ``b`` its own stream, so its result does not depend on the
        batch it is solved in; a single value gives ``B`` child streams, which
        ties results to batch positions (:func:`molrg.utils.problem_generators`,
        shared with :func:`molrg.train_dae`).
    spectral_backend : {"batched", "sklearn"}, default "batched"
        Spectral clustering step of the spectral start (see
        :func:`spectral_init`): ``batched`` clusters all problems and ``q``
        values at once (one batched ``eigh``); ``sklearn`` is the per-problem
        scikit-learn reference.

    Returns
    -------
    KSubspacesResult
        ``(bases, labels, objective, n_iter)``: K arrays ``(B, n, d_k)``,
        ``(B, N)`` labels (-1 on padding), ``(B,)`` objectives and refit counts.
    """
    X = _check_data(X, batched=True)
    B, N, n = X.shape
    dims = check_dims("dims", dims, n)
    mask = _check_mask(mask, (B, N))
    n_init, max_iter = _check_options(init, n_init, max_iter, q, spectral_backend)
    rngs = problem_generators(random_state, B)
    res, conv = _solve(X, mask, dims, init, n_init, max_iter, q, rngs, spectral_backend)
    _warn_unconverged(conv, max_iter, stacklevel=2)
    return res


def k_subspaces(
    X: Any,
    dims: Any,
    *,
    init: str = "spectral",
    n_init: int = 1,
    max_iter: int = 100,
    q: Any = None,
    random_state: Any = None,
    spectral_backend: str = "batched",
) -> KSubspacesResult:
    """Function twin of :class:`KSubspaces` for one problem ``X`` ``(N, n)``.

    Returns ``(bases, labels, objective, n_iter)`` with bases a tuple of K
    arrays ``(n, d_k)``, labels ``(N,)``, a float objective and an int count.

    Examples
    --------
    >>> from molrg import MoLRG
    >>> X, y = MoLRG.random(48, [2, 2], random_state=0).sample(40, random_state=1)
    >>> bases, labels, objective, n_iter = k_subspaces(X, [2, 2], random_state=0)
    >>> [U.shape for U in bases]
    [(48, 2), (48, 2)]
    """
    X = _check_data(X, batched=False)
    dims = check_dims("dims", dims, X.shape[1])
    n_init, max_iter = _check_options(init, n_init, max_iter, q, spectral_backend)
    rngs = [check_random_state(random_state)]
    res, conv = _solve(X[None], np.ones((1, X.shape[0]), bool), dims, init, n_init, max_iter, q, rngs, spectral_backend)
    _warn_unconverged(conv, max_iter, stacklevel=2)
    return KSubspacesResult(tuple(U[0] for U in res.bases), res.labels[0], float(res.objective[0]), int(res.n_iter[0]))


class KSubspaces:
    """K-subspaces clustering (SPEC A6; paper Problem 18), scikit-learn style.

    Parameters
    ----------
    dims : int or sequence of K ints
        Subspace dimensions (an int means K = 1).
    init : {"spectral", "random"}, default "spectral"
    n_init : int, default 1
        Restarts; the best objective is kept (see :func:`k_subspaces_batch`:
        with the batched spectral start, restarts repeat the same runs).
    max_iter : int, default 100
    q : None, int or sequence of ints
        Neighbours of the spectral start (:func:`spectral_q_values`).
    random_state : None, int or Generator
    spectral_backend : {"batched", "sklearn"}, default "batched"
        Spectral clustering step of the spectral start (:func:`spectral_init`).

    Attributes
    ----------
    bases_ : tuple of K arrays ``(n, d_k)``
    labels_ : int array ``(N,)``
    objective_ : float
        ``sum_i max_k ||U_k^T x_i||^2``.
    n_iter_ : int
        Refits done by the kept run.

    Examples
    --------
    >>> from molrg import MoLRG, subspace_error
    >>> model = MoLRG.random(48, [4, 4], random_state=0)
    >>> X, _ = model.sample(60, random_state=1)
    >>> km = KSubspaces([4, 4], random_state=0).fit(X)
    >>> bool(subspace_error(km.bases_, model.bases) < 1e-6)
    True
    """

    def __init__(
        self, dims, *, init="spectral", n_init=1, max_iter=100, q=None, random_state=None, spectral_backend="batched"
    ):
        self.dims = dims
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.q = q
        self.random_state = random_state
        self.spectral_backend = spectral_backend

    def fit(self, X, y=None):
        """Fit on ``X`` ``(N, n)``; returns ``self``."""
        X = _check_data(X, batched=False)
        dims = check_dims("dims", self.dims, X.shape[1])
        n_init, max_iter = _check_options(self.init, self.n_init, self.max_iter, self.q, self.spectral_backend)
        rngs = [check_random_state(self.random_state)]
        res, conv = _solve(
            X[None], np.ones((1, X.shape[0]), bool), dims, self.init, n_init, max_iter, self.q, rngs, self.spectral_backend
        )
        _warn_unconverged(conv, max_iter, stacklevel=2)
        self.bases_ = tuple(U[0] for U in res.bases)
        self.labels_ = res.labels[0]
        self.objective_ = float(res.objective[0])
        self.n_iter_ = int(res.n_iter[0])
        return self

    def predict(self, X):
        """Nearest subspace ``argmax_k ||U_k^T x_i||`` of each row of ``X``."""
        if not hasattr(self, "bases_"):
            raise ValueError("this KSubspaces instance is not fitted yet; call fit first")
        X = _check_data(X, batched=False)
        if X.shape[1] != self.bases_[0].shape[0]:
            raise ValueError(f"X must have {self.bases_[0].shape[0]} columns, got shape {X.shape}")
        return np.stack([((X @ U) ** 2).sum(-1) for U in self.bases_], -1).argmax(-1)

    def __repr__(self) -> str:
        return (
            f"KSubspaces(dims={self.dims!r}, init={self.init!r}, n_init={self.n_init}, "
            f"max_iter={self.max_iter}, q={self.q!r}, random_state={self.random_state!r}, "
            f"spectral_backend={self.spectral_backend!r})"
        )
