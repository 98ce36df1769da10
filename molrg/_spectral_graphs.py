r"""Similarity graphs and spectral embeddings of the spectral start (private kernels of :mod:`molrg._spectral`).

Dense path: q-nearest absolute-cosine affinities ``(R, N, N)`` of many small
problems at once (:func:`_knn_affinity`), one batched ``eigh``
(:func:`_spectral_cluster_batched`) and scikit-learn's ``cluster_qr``
reproduced in numpy (:func:`_cluster_qr_batched`); the scikit-learn reference
(:func:`_spectral_cluster_sklearn`).  Sparse path for one large problem: the
q-NN graph with ``O(N q)`` entries from an exact blocked brute-force search
(:func:`sparse_knn_affinity`, :func:`_knn_abs_cos`), its connected components
and LOBPCG for the remaining top eigenvectors (:func:`_sparse_cluster`).
Inputs are clean (validated by the callers).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

__all__ = ["sparse_knn_affinity"]


# --------------------------------------------------------------------------- dense path
def _knn_affinity(Z: np.ndarray, q: np.ndarray) -> np.ndarray:
    """q-nearest absolute-cosine affinities of the rows of every ``Z[i]`` ``(R, N, r)``, as ``(R, N, N)``.

    All rows are valid (the caller gathers the valid rows of equal-``N`` runs);
    ``q`` ``(R,)`` is per run, in ``[1, N - 1]``.  Row ``i`` keeps its ``q``
    largest ``|cos(z_i, z_j)|``, ``j != i``, chosen by a stable sort (ties:
    lowest index first), so exactly ``q`` entries per row; then
    ``A <- (A + A^T) / 2``.  Zero rows have cosine 0 with everything (no weight).
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
    drop_first=False``): the eigenvectors ``x`` of the ``K`` largest
    eigenvalues of ``D^{-1/2} A D^{-1/2}`` (isolated nodes use degree 1, as
    ``scipy.sparse.csgraph.laplacian``), rescaled to ``u = D^{-1/2} x``, then
    :func:`_cluster_qr_batched`.  ``cluster_qr`` is invariant to an orthogonal
    change of basis of the embedding, so eigenvector signs and order do not
    matter; only a degenerate ``K``-th eigenvalue (more than ``K`` connected
    components) leaves the choice open, and the methods may then differ.
    """
    deg = A.sum(-1)
    dd = np.where(deg > 0, np.sqrt(deg), 1)
    M = A / dd[:, :, None] / dd[:, None, :]
    _, V = np.linalg.eigh(M)
    return _cluster_qr_batched(V[:, :, -K:] / dd[:, :, None])


def _spectral_cluster_sklearn(A: np.ndarray, K: int, seeds: np.ndarray) -> np.ndarray:
    """Reference method: scikit-learn ``SpectralClustering`` on each ``A[i]`` (seeded ARPACK start)."""
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


# --------------------------------------------------------------------------- sparse path
_KNN_BLOCK = 1 << 24  # similarity entries (float32) per row block of the neighbour search: 64 MiB
_KNN_STEP = 8  # column stride of the subsample that sets each row's candidate threshold
_EIG_ROUND = 10  # LOBPCG iterations between two checks of the stopping rule
_EIG_MAXITER = 100  # LOBPCG iterations at most
_EIG_REL = 0.05  # stop when ||M V - V diag(w)||_F <= _EIG_REL * (w_K - w_{K+1})  (Davis-Kahan: sin angle)


def _knn_abs_cos(Zn: np.ndarray, q: int) -> np.ndarray:
    """Indices ``(N, q)`` of the ``q`` largest ``|cos(z_i, z_j)|``, ``j != i``, of normalized rows ``Zn``, nearest first.

    Exact brute force in float32 row blocks of ``_KNN_BLOCK`` entries: one GEMM
    ``|Zn_b Zn^T|`` per block (self set to -1); a row's threshold ``t_i`` is its
    ``q``-th largest entry among every ``_KNN_STEP``-th column, so at least ``q``
    entries are ``>= t_i`` and the ``q`` largest are among them (about
    ``_KNN_STEP q`` candidates); the candidates are sorted by row, then by
    decreasing ``|cos|``, then by index (ties: lowest index first, as the dense
    path).  Time ``O(N^2 r)`` (the GEMM), memory ``O(N q + _KNN_BLOCK)``.
    ``1 <= q <= N - 1``.
    """
    N = Zn.shape[0]
    Z32 = np.ascontiguousarray(Zn, dtype=np.float32)
    b = max(1, min(N, _KNN_BLOCK // N))
    step = max(1, min(_KNN_STEP, (N - 1) // (q + 1)))
    if len(range(0, N, step)) - 1 < q:  # the subsample must hold q entries besides the row's own
        step = 1
    out = np.empty((N, q), dtype=np.int64)
    for s in range(0, N, b):
        S = Z32[s : s + b] @ Z32.T
        nb = S.shape[0]
        np.abs(S, out=S)
        own = np.arange(nb)
        S[own, s + own] = -1.0  # never its own neighbour
        t = np.partition(S[:, ::step], -q, axis=1)[:, -q]
        flat = np.flatnonzero(S >= t[:, None])
        row, col = np.divmod(flat, N)
        key = row + 0.5 * (1.0 - S.ravel()[flat].astype(np.float64))  # by row, then |cos| descending
        order = np.argsort(key, kind="stable")  # stable: increasing column on equal |cos|
        first = np.r_[0, np.cumsum(np.bincount(row, minlength=nb))[:-1]]
        out[s : s + nb] = col[order[(first[:, None] + np.arange(q)).ravel()]].reshape(nb, q)
    return out


def sparse_knn_affinity(Z: np.ndarray, qs) -> dict[int, sp.csr_matrix]:
    """Sparse q-nearest absolute-cosine affinities of the rows of ``Z`` ``(N, r)``, one per ``q`` in ``qs``.

    The neighbours are searched once, for the largest ``q``
    (:func:`_knn_abs_cos`: exact brute force, float32 similarities); the
    weights ``|cos(z_i, z_j)|`` are recomputed in ``Z``'s dtype; each ``A_q``
    is symmetrized, ``(A + A^T) / 2``, as the dense :func:`_knn_affinity`.
    Every ``q`` is clipped to ``[1, N - 1]``.  Memory ``O(N q)`` besides the
    search's blocks.
    """
    N = Z.shape[0]
    qs = sorted({min(max(int(v), 1), max(N - 1, 1)) for v in qs})
    if N < 2:
        return {q: sp.csr_matrix((N, N), dtype=Z.dtype) for q in qs}
    norms = np.linalg.norm(Z, axis=-1, keepdims=True)
    Zn = Z / np.where(norms > 0, norms, 1)
    ind = _knn_abs_cos(Zn, qs[-1])
    out = {}
    rows = np.arange(N)
    for q in qs:
        nbr = ind[:, :q]  # exactly q per row, nearest first
        w = np.empty(nbr.shape, dtype=Zn.dtype)
        for c in range(q):  # one (N, r) gather at a time: memory O(N (q + r)), not O(N q r)
            w[:, c] = np.abs(np.einsum("ij,ij->i", Zn, Zn[nbr[:, c]]))
        A = sp.csr_matrix((w.ravel(), (np.repeat(rows, q), nbr.ravel())), shape=(N, N))
        out[q] = (0.5 * (A + A.T)).tocsr()
    return out


def _sparse_labels(Zv: np.ndarray, qs: np.ndarray, seeds: np.ndarray, K: int) -> np.ndarray:
    """Labels ``(len(qs), N)`` of the valid rows ``Zv`` ``(N, r)`` of one problem, one row per run (q, seed).

    -1 marks rows left to the first K-subspaces assignment (components beyond
    the ``K`` largest, :func:`_sparse_cluster`).
    """
    N = Zv.shape[0]
    if N <= K:
        return np.broadcast_to(np.arange(N), (len(qs), N)).copy()
    qs = np.minimum(qs, N - 1)
    affinities = sparse_knn_affinity(Zv, qs)
    out = np.empty((len(qs), N), dtype=np.int64)
    for i, (q, seed) in enumerate(zip(qs, seeds)):
        A = affinities[int(q)]
        A.eliminate_zeros()
        if A.nnz == 0:
            out[i] = np.arange(N) % K
            continue
        out[i] = _sparse_cluster(A, K, np.random.default_rng(int(seed)))
    return out


def _sparse_cluster(A: sp.csr_matrix, K: int, rng: np.random.Generator) -> np.ndarray:
    """Spectral clustering of a sparse affinity (no explicit zeros) into ``K`` groups: labels ``(N,)``.

    The embedding is the top ``K`` eigenvectors ``x`` of ``M = D^{-1/2} A D^{-1/2}``,
    rescaled to ``D^{-1/2} x``, then ``cluster_qr``.  The connected components
    of positive volume are found first (``scipy.sparse.csgraph``): each gives
    an exact eigenvector of ``M`` with eigenvalue 1, ``D^{1/2} 1_c`` (the top
    of the spectrum).  With ``C`` such components:

    * ``C = K``: they span the top eigenspace, whose embedding rows are the
      component indicators (up to scale), so the labels are the components
      (numbered by decreasing size; no eigensolver);
    * ``C < K``: LOBPCG for the ``K - C`` next eigenvectors only, constrained
      orthogonal to the ``C`` known ones (:func:`_top_eigenvectors`);
    * ``C > K``: eigenvalue 1 is ``C``-fold and the top-``K`` eigenspace is not
      defined; the ``K`` largest components (by size, the first on ties) are the
      groups and the other rows get -1 (the first K-subspaces assignment places
      them).  The dense and scikit-learn methods pick some ``K``-dimensional part
      of that eigenspace instead (results differ only in this degenerate case).
    """
    from scipy.sparse.csgraph import connected_components

    N = A.shape[0]
    deg = np.asarray(A.sum(1)).ravel()
    dd = np.where(deg > 0, np.sqrt(deg), 1)
    _, comp = connected_components(A, directed=False)
    size = np.bincount(comp)
    pos = np.flatnonzero(np.bincount(comp, weights=deg) > 0)  # components of positive volume
    if pos.size >= K:
        keep = pos[np.argsort(-size[pos], kind="stable")[:K]]
        slot = np.full(size.size, -1)
        slot[keep] = np.arange(K)
        return slot[comp]  # what cluster_qr of the indicator embedding gives, up to the group numbers
    V0 = np.zeros((N, pos.size))
    inpos = np.isin(comp, pos)
    V0[inpos, np.searchsorted(pos, comp[inpos])] = dd[inpos]
    V0 /= np.linalg.norm(V0, axis=0)
    Dinv = sp.diags(1 / dd)
    M = (Dinv @ A @ Dinv).tocsr()
    V = _top_eigenvectors(M, K, V0, rng)
    return _cluster_qr_batched((V / dd[:, None])[None])[0]


def _top_eigenvectors(M: sp.csr_matrix, K: int, V0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Top ``K`` eigenvectors ``(N, K)`` of the symmetric ``M`` whose top ``C`` are the orthonormal ``V0`` ``(N, C)``.

    LOBPCG (``scipy.sparse.linalg.lobpcg``) on a block of ``K - C + 2`` vectors
    from ``rng``, constrained orthogonal to ``V0``, in rounds of ``_EIG_ROUND``
    iterations (each warm-started from the last Ritz vectors), until the
    residual of the wanted ``K - C`` Ritz pairs is small against the gap to
    the next Ritz value, ``||M V - V diag(w)||_F <= 0.05 (w_K - w_{K+1})``
    (Davis-Kahan: the sine of the angle to the eigenspace is below about
    0.05; ``cluster_qr`` needs the top eigenspace only roughly), or after
    ``_EIG_MAXITER`` iterations.  Measured at N = 20 000, K = 10 (n = 64, d = 5,
    noise 0.05, q = 10): the top ten eigenvalues lie above 0.9996, the next
    near 0.93, and the rule stops after about 20 iterations where a fixed
    tolerance of 1e-5 ran 100 (same labels).  ARPACK without shift-invert
    misses eigenvalues of multiplicity above one (the components' eigenvalue
    1), hence the block method.  Small problems (``N - C < 5`` block) use a dense ``eigh``.
    """
    from scipy.sparse.linalg import lobpcg

    N, C = V0.shape
    want = K - C
    m = want + 2
    if N - C < 5 * m:
        w, V = np.linalg.eigh(M.toarray())
        return V[:, ::-1][:, :K]
    X = rng.standard_normal((N, m))
    done = 0
    Y = V0 if C else None
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # maxiter reached: expected, checked below
            w, X = lobpcg(M, X, Y=Y, largest=True, tol=1e-8, maxiter=_EIG_ROUND)
        done += _EIG_ROUND
        order = np.argsort(w)[::-1]
        w, X = w[order], X[:, order]
        R = M @ X[:, :want] - X[:, :want] * w[:want]
        if done >= _EIG_MAXITER or np.linalg.norm(R) <= _EIG_REL * (w[want - 1] - w[want]):
            break
    return np.hstack([V0, X[:, :want]])
