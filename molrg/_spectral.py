r"""The spectral start of K-subspaces (SPEC A6, after Wang-Liu-So-Balzano 2022).

Absolute cosine similarities of the rows, the ``q`` largest kept in each row,
symmetrized (``A <- (A + A^T) / 2``); spectral clustering into ``K`` groups
(the top ``K`` eigenvectors of ``D^{-1/2} A D^{-1/2}``, rescaled by
``D^{-1/2}``, then scikit-learn's ``cluster_qr`` assignment); PCA of each group.

Three methods compute the clustering step (``method=``; their graphs and
embeddings are in :mod:`molrg._spectral_graphs`):

* ``"dense"``: numpy, for the small problems of the figure-4 panels.  All
  problems and ``q`` values of a call at once: one batched ``eigh`` of the
  ``(runs, N, N)`` normalized affinities, then ``cluster_qr`` reproduced in
  numpy (:func:`_cluster_qr_batched`).  Deterministic.  Memory and time grow as
  ``N^2`` and ``N^3``.
* ``"sparse"``: for large ``N``.  The ``q`` nearest neighbours of every row
  under ``|cos|`` by an exact brute-force search in float32 row blocks (one
  GEMM per block and a per-row candidate threshold; the weights are then
  recomputed in the data's dtype), once per problem for its largest ``q``;
  the affinity is a sparse matrix with ``O(N q)`` entries.  Its connected
  components give exact top eigenvectors (eigenvalue 1); LOBPCG computes the
  others only (block of ``K - C + 2``, random start from the problem's
  generator, stopped when the residual is small against the spectral gap;
  :func:`molrg._spectral_graphs._sparse_cluster`).  Memory ``O(N (q + n))``
  plus the search's 64 MiB blocks.
* ``"sklearn"``: the reference, ``SpectralClustering(affinity="precomputed",
  assign_labels="cluster_qr")`` once per problem and ``q`` on the dense affinity.

``"auto"`` (the default) takes ``"dense"`` for problems with at most
:data:`SPARSE_MIN_N` = 1000 valid rows (every figure-4 panel, so their results
do not change) and ``"sparse"`` above.  Why not scikit-learn by default for small
problems: it has no batched interface, and one call per problem and ``q`` was
70-75% of a K-subspaces panel's time (``benchmarks/README.md``); the tests check
that the methods give the same partitions.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._kss_kernel import _CHUNK, _energies, _refit
from ._pca import _rescale, _sign_flip
from ._spectral_graphs import (
    _cluster_qr_batched,  # noqa: F401  (re-exported for tests)
    _knn_affinity,
    _sparse_labels,
    _spectral_cluster_batched,
    _spectral_cluster_sklearn,
    sparse_knn_affinity,  # noqa: F401  (re-exported: benchmarks)
)
from ._validation import check_batch, check_choice, check_dims, check_int, check_random_state, problem_generators

__all__ = ["spectral_init", "spectral_q_values", "SPECTRAL_METHODS", "SPARSE_MIN_N"]

SPECTRAL_METHODS = ("auto", "dense", "sparse", "sklearn")
SPARSE_MIN_N = 1000  #: ``method="auto"`` uses the sparse path above this many valid rows
_OLD_BACKENDS = {"batched": "dense", "sklearn": "sklearn"}  # deprecated backend= values
_SPECTRAL_BLOCK = 1 << 22  # affinity entries per block of the dense path (bounds the (runs, N, N) stacks)


def spectral_init(
    X: Any,
    dims: Any,
    *,
    mask: Any = None,
    q: Any = None,
    random_state: Any = None,
    method: str = "auto",
    backend: str | None = None,
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
        Seeds the sparse eigensolver's start and scikit-learn's; a batch uses
        one stream per problem (:func:`molrg.utils.problem_generators`).
    method : {"auto", "dense", "sparse", "sklearn"}, default "auto"
        Clustering step (module docstring): ``auto`` is ``dense`` up to
        :data:`SPARSE_MIN_N` valid rows and ``sparse`` above.
    backend : {"batched", "sklearn"}, optional
        Deprecated name of ``method`` (``"batched"`` is ``"dense"``).

    Returns
    -------
    tuple of K orthonormal arrays ``(n, d_k)`` (batched: ``(B, n, d_k)``)
    """
    method = _resolve_alias(method, backend, "backend", "method")
    if np.ndim(X) != 3 and mask is not None:
        raise ValueError("mask is only used with a batch X of shape (B, N, n)")
    X, mask, batched = check_batch(X, mask)
    B, N, n = X.shape
    dims = check_dims("dims", dims, n)
    check_choice("method", method, SPECTRAL_METHODS)
    qs = check_q(q)
    rngs = problem_generators(random_state, B) if batched else [check_random_state(random_state)]
    run_prob, run_q, run_seed = _spectral_runs(mask.sum(-1), dims, qs, rngs, method)
    Xm, _ = _rescale(np.where(mask[..., None], X, 0).astype(X.dtype, copy=False))
    U, _ = _spectral_starts(Xm, mask, run_prob, run_q, run_seed, dims, method)
    score = _energies(Xm[run_prob], U).max(-1).sum(-1)  # K-subspaces objective of every run
    order = np.lexsort((-score, run_prob))  # per problem, best first (stable: the first q on ties)
    best = order[np.unique(run_prob[order], return_index=True)[1]]
    bases = tuple(_sign_flip(U[best, k, :, :d]) for k, d in enumerate(dims))
    return bases if batched else tuple(U_k[0] for U_k in bases)


def spectral_q_values(N: int, K: int, d_max: int, q: Any = None, *, method: str = "dense") -> tuple[int, ...]:
    """Neighbour counts ``q`` tried by the spectral start for a problem with ``N`` valid rows.

    ``q=None`` (default) tries, for the dense method, ``q = d_max + 1`` (the
    smallest that can connect a ``d``-dimensional subspace, SPEC A6) and
    ``q = round(N / K) - 1`` (all the points of an average cluster); for the
    sparse method (large ``N``) ``q = max(d_max + 1, 10)`` only (a neighbour
    graph with ``O(N q)`` entries; 10 is scikit-learn's default neighbour
    count).  Every value is clipped to ``[1, N - 1]`` and duplicates are
    dropped.  An int or a sequence is used as given (clipped).
    """
    qs = check_q(q)
    if method == "auto":
        method = "sparse" if N > SPARSE_MIN_N else "dense"
    if qs is None:
        qs = (max(d_max + 1, 10),) if method == "sparse" else (d_max + 1, int(round(N / K)) - 1)
    hi = max(N - 1, 1)
    return tuple(sorted({min(max(v, 1), hi) for v in qs}))


def check_q(q: Any) -> tuple[int, ...] | None:
    """Validate ``q``: None, a positive int or a non-empty sequence of them (returned as a tuple)."""
    if q is None:
        return None
    if isinstance(q, (int, np.integer)) and not isinstance(q, (bool, np.bool_)):
        return (check_int("q", q, low=1),)
    if isinstance(q, (str, bytes)):
        raise TypeError(f"q must be None, a positive int or a sequence of them, got {q!r}")
    try:
        qs = tuple(q)
    except TypeError:
        raise TypeError(f"q must be None, a positive int or a sequence of them, got {q!r}") from None
    if not qs:
        raise ValueError("q must not be an empty sequence")
    return tuple(check_int(f"q[{i}]", v, low=1) for i, v in enumerate(qs))


def _resolve_alias(method: str, old: str | None, old_name: str, new_name: str, stacklevel: int = 3) -> str:
    """Map a deprecated ``backend=`` / ``spectral_backend=`` value to ``method``, with a FutureWarning."""
    if old is None or old == "deprecated":
        return method
    check_choice(old_name, old, tuple(_OLD_BACKENDS))
    warnings.warn(f"{old_name} is deprecated; use {new_name}={_OLD_BACKENDS[old]!r}", FutureWarning, stacklevel=stacklevel)
    return _OLD_BACKENDS[old]


def _problem_method(method: str, count: int) -> str:
    return ("sparse" if count > SPARSE_MIN_N else "dense") if method == "auto" else method


# --------------------------------------------------------------------------- runs and starts
def _spectral_runs(counts, dims, q, rngs, method, n_init=None):
    """The spectral-start runs ``(problem, q, seed)`` of problems with ``counts`` valid rows, as three arrays.

    Every problem tries each ``q`` of :func:`spectral_q_values`.  ``n_init=None``
    (:func:`spectral_init`): one seed per ``q`` from the problem's generator;
    otherwise (K-subspaces restarts) ``n_init`` seeds, each paired with every ``q``.
    """
    run_prob, run_q, run_seed = [], [], []
    for b, count in enumerate(counts):
        qs = spectral_q_values(int(count), len(dims), max(dims), q, method=_problem_method(method, int(count)))
        if n_init is None:
            seeds = rngs[b].integers(0, 2**31 - 1, size=len(qs))
        else:
            seeds = np.repeat(rngs[b].integers(0, 2**31 - 1, size=n_init), len(qs))
            qs = qs * n_init
        run_prob += [b] * len(qs)
        run_q += list(qs)
        run_seed += list(seeds)
    return np.asarray(run_prob, dtype=np.int64), np.asarray(run_q), np.asarray(run_seed)


def _spectral_starts(Z, mask, run_prob, run_q, run_seed, dims, method="auto"):
    """Spectral starting bases ``(R, K, r, dmax)`` and their labels ``(R, N)`` for runs (problem, q, seed).

    Labels from :func:`_spectral_labels` (the deterministic ``dense`` method
    computes each distinct (problem, q) once; restarts repeat it); the PCA per
    group is one batched refit, so the bases are exactly the refit of the
    returned labels.  With unequal dims the groups are matched to the dims by
    the best assignment (all permutations for ``K <= 6``, else the Hungarian
    algorithm) on the captured energy ``sum of top-d_k eigenvalues``; the
    labels are renumbered to match.
    """
    K, dmax = len(dims), max(dims)
    R = run_prob.shape[0]
    counts = mask.sum(-1)[run_prob]
    labels = np.full((R, Z.shape[1]), -1, dtype=np.int64)
    dense = np.array([_problem_method(method, int(c)) == "dense" for c in counts], dtype=bool)
    if dense.any():  # deterministic: each distinct (problem, q) once
        idx = np.flatnonzero(dense)
        _, first, inv = np.unique(np.stack([run_prob[idx], run_q[idx]], 1), axis=0, return_index=True, return_inverse=True)
        f = idx[first]
        labels[idx] = _spectral_labels(Z, mask, run_prob[f], run_q[f], run_seed[f], K, "dense")[inv.ravel()]
    for m in ("sparse", "sklearn"):
        idx = np.flatnonzero(~dense & np.array([_problem_method(method, int(c)) == m for c in counts], dtype=bool))
        if idx.size:
            labels[idx] = _spectral_labels(Z, mask, run_prob[idx], run_q[idx], run_seed[idx], K, m)
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


def _spectral_labels(Z, mask, run_prob, run_q, run_seed, K, method="dense"):
    """Spectral clustering of the valid rows of ``Z[run_prob[i]]`` into ``K`` groups for every run ``i``.

    ``Z`` ``(P, N, r)``, ``mask`` ``(P, N)``; ``run_q`` neighbours per run
    (clipped to ``N_i - 1``); ``run_seed`` seeds the ``sparse`` and ``sklearn``
    eigensolvers (the ``dense`` one is deterministic).  Runs are grouped by
    their number of valid rows ``N_i``; the valid rows are gathered, so every
    affinity is ``N_i x N_i`` with no padding.  ``N_i <= K``: every point its
    own group; an all-zero affinity (all points zero): labels ``i mod K``.
    Returns ``(R, N)`` labels, -1 on padding rows.
    """
    R, N = run_prob.shape[0], Z.shape[1]
    labels = np.full((R, N), -1, dtype=np.int64)
    counts = mask.sum(-1)[run_prob]
    for c in np.unique(counts):
        c = int(c)
        runs = np.flatnonzero(counts == c)
        if method == "sparse":
            for p in np.unique(run_prob[runs]):
                rr = runs[run_prob[runs] == p]
                pos = np.flatnonzero(mask[p])
                labels[rr[:, None], pos] = _sparse_labels(Z[p, pos], run_q[rr], run_seed[rr], K)
            continue
        step = max(1, _SPECTRAL_BLOCK // (c * c)) if c else runs.size
        for s in range(0, runs.size, step):
            rr = runs[s : s + step]
            pos = np.argsort(~mask[run_prob[rr]], axis=-1, kind="stable")[:, :c]  # valid rows, in order
            if c <= K:
                labels[rr[:, None], pos] = np.arange(c)
                continue
            Zc = np.take_along_axis(Z[run_prob[rr]], pos[..., None], 1)
            A = _knn_affinity(Zc, np.minimum(run_q[rr], c - 1))
            if method == "dense":
                lab = _spectral_cluster_batched(A, K)
            elif method == "sklearn":
                lab = _spectral_cluster_sklearn(A, K, run_seed[rr])
            else:  # pragma: no cover - validated before
                raise ValueError(f"method must be one of {SPECTRAL_METHODS}, got {method!r}")
            lab[~(A > 0).any((-1, -2))] = np.arange(c) % K  # nothing to cluster
            labels[rr[:, None], pos] = lab
    return labels
