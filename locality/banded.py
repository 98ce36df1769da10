r"""Symmetric banded matrices: storage and the three kernels the locality package needs (SPEC B1-B3).

Storage is LAPACK's lower symmetric band layout, as used by
:func:`scipy.linalg.cholesky_banded` (``lower=True``) and
:func:`scipy.linalg.solveh_banded`: for a symmetric ``d x d`` matrix ``A`` with
half-width ``u`` (``A[i, j] = 0`` for ``|i - j| > u``),

.. math::  \mathrm{data}[k, j] = A[j + k, j], \qquad 0 \le k \le u,\ 0 \le j < d - k,

so ``data`` has shape ``(u + 1, d)`` (the unused tail ``data[k, d - k:]`` holds 0).
A leading batch axis ``(n, u + 1, d)`` stacks independent matrices of one shape.
A :class:`BandedMatrix` *is* the matrix it stores: entries beyond the band are 0.

Kernels (private, clean input; every loop runs over diagonals or over blocks of
``m >= u`` rows, never over the ``d`` rows one at a time):

* :func:`band_inverse`: the band of ``A^{-1}`` (which is dense) up to a
  requested half-width ``R``, exact up to rounding, by selected inversion of the
  block-tridiagonal form of ``A`` (blocks of ``m = max(u, R)`` rows).  LAPACK's
  banded Cholesky ``A = L L^T`` (``pbtrf``, :func:`scipy.linalg.cholesky_banded`)
  gives the Schur complements ``S_k = L_kk L_kk^T`` at once; with
  ``W_k = L_{k+1,k} L_kk^{-1} = A_{k+1,k} S_k^{-1}`` (nonzero in its first ``u`` rows only),
  ``Z_kk = S_k^{-1} + W_k^T Z_{k+1,k+1} W_k`` and ``Z_{k+1,k} = -Z_{k+1,k+1} W_k``
  backwards.  Only the ``u x u`` corners ``Z_kk[:u, :u]`` are a sequential
  recurrence; every ``m x m`` product is batched over a segment of blocks.
  Time ``O(d m^2)``, memory ``O(d R)``.
* :func:`band_product`: the band of ``A B`` up to half-width ``R`` for two
  symmetric banded matrices whose product is symmetric (they commute, as ``P_0``
  and ``(e I + (1 - e) P_0)^{-1}`` do): ``O(d R (u_A + u_B))``.
* :func:`band_windows`: the local blocks ``A[S_i, S_i]``, ``S_i = {j : |i - j| <= r}``,
  ordered innermost first (offsets ``0, -1, +1, -2, +2, ...``), so the leading
  ``(2 r' + 1)``-block of the radius-``r`` window is the radius-``r'`` window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse

__all__ = ["BandedMatrix", "as_banded", "band_inverse", "band_product", "band_windows", "window_offsets"]

#: memory (in float64 entries) one call of the block kernels may hold per batch chunk
_CHUNK_ENTRIES = 2**23
#: float64 entries of one segment of blocks (n_matrices x blocks x m x m) in :func:`band_inverse` (cache sized)
_SEGMENT_ENTRIES = 2**18
#: smallest block size of :func:`band_inverse` (fewer, larger blocks amortize numpy's per-call cost)
_MIN_BLOCK = 8


@dataclass(frozen=True, eq=False)
class BandedMatrix:
    """A symmetric banded matrix in LAPACK lower band storage (see the module docstring).

    Parameters
    ----------
    data : array of shape (u + 1, d) or (n, u + 1, d)
        ``data[..., k, j] = A[j + k, j]``; real and finite; ``u <= d - 1``.  The
        unused tail of each diagonal is set to 0 (on a copy).

    Examples
    --------
    >>> A = BandedMatrix.from_dense(np.array([[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]]))
    >>> A.half_width, A.d
    (1, 3)
    >>> A.data
    array([[ 2.,  2.,  2.],
           [-1., -1.,  0.]])
    """

    data: np.ndarray

    def __post_init__(self):
        data = np.asarray(self.data)
        if data.dtype.kind not in "fiu":
            raise TypeError(f"data must hold real numbers, got dtype {data.dtype}")
        if data.ndim not in (2, 3) or data.shape[-2] < 1 or data.shape[-1] < 1:
            raise ValueError(f"data must have shape (u + 1, d) or (n, u + 1, d), got shape {data.shape}")
        u, d = data.shape[-2] - 1, data.shape[-1]
        if u > d - 1:
            raise ValueError(f"the half-width u = data.shape[-2] - 1 must be in [0, d - 1] = [0, {d - 1}], got {u}")
        data = np.array(data, dtype=np.float64)
        if not np.all(np.isfinite(data)):
            raise ValueError("data contains NaN or inf")
        data[..., _tail_mask(u, d)] = 0.0
        data.setflags(write=False)
        object.__setattr__(self, "data", data)

    @classmethod
    def _trusted(cls, data: np.ndarray) -> BandedMatrix:
        """Wrap a kernel's output without the checks and the copy (float64, finite, zero tails; kernel use only)."""
        obj = object.__new__(cls)
        data.setflags(write=False)
        object.__setattr__(obj, "data", data)
        return obj

    # ------------------------------------------------------------------ shape
    @property
    def d(self) -> int:
        """Dimension of the (square) matrix."""
        return self.data.shape[-1]

    @property
    def half_width(self) -> int:
        """Stored half-width ``u`` (entries with ``|i - j| > u`` are 0)."""
        return self.data.shape[-2] - 1

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.data.shape[:-2]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.batch_shape + (self.d, self.d)

    def __getitem__(self, index) -> BandedMatrix:
        """Select from the batch axis (only for a batched matrix)."""
        if not self.batch_shape:
            raise TypeError("only a batched BandedMatrix (data of shape (n, u + 1, d)) can be indexed")
        return BandedMatrix(self.data[index])

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_dense(cls, A: Any, half_width: int | None = None) -> BandedMatrix:
        """The band ``|i - j| <= u`` of a symmetric (stack of) dense matrices (lower triangle read).

        ``half_width=None`` keeps every nonzero diagonal (the exact bandwidth).
        """
        A = np.asarray(A, dtype=np.float64)
        if A.ndim not in (2, 3) or A.shape[-1] != A.shape[-2]:
            raise ValueError(f"A must be a square matrix or a stack of them, got shape {A.shape}")
        d = A.shape[-1]
        if half_width is None:
            nz = [k for k in range(d) if np.any(np.diagonal(A, -k, axis1=-2, axis2=-1) != 0)]
            half_width = max(nz) if nz else 0
        u = int(half_width)
        if not 0 <= u <= d - 1:
            raise ValueError(f"half_width must be in [0, {d - 1}], got {half_width}")
        data = np.zeros(A.shape[:-2] + (u + 1, d))
        for k in range(u + 1):
            data[..., k, : d - k] = np.diagonal(A, -k, axis1=-2, axis2=-1)
        return cls(data)

    def to_dense(self) -> np.ndarray:
        """The full ``(..., d, d)`` array (small ``d`` only: it takes ``d^2`` memory)."""
        d, u = self.d, self.half_width
        out = np.zeros(self.shape)
        idx = np.arange(d)
        for k in range(u + 1):
            v = self.data[..., k, : d - k]
            out[..., idx[k:], idx[: d - k]] = v
            out[..., idx[: d - k], idx[k:]] = v
        return out

    def to_sparse(self) -> scipy.sparse.csr_matrix:
        """The matrix as a scipy sparse CSR matrix (unbatched only), e.g. for :func:`scipy.sparse.linalg.eigsh`."""
        if self.batch_shape:
            raise ValueError("to_sparse needs an unbatched BandedMatrix")
        d, u = self.d, self.half_width
        diags = [self.data[0]] + [self.data[k, : d - k] for k in range(1, u + 1)] * 2
        offsets = [0] + list(range(-1, -u - 1, -1)) + list(range(1, u + 1))
        return scipy.sparse.diags(diags, offsets, shape=(d, d), format="csr")

    def diagonal(self, k: int = 0) -> np.ndarray:
        """``A[i + k, i]`` for ``i = 0 .. d - k - 1`` (0 beyond the stored band)."""
        k = abs(int(k))
        if k > self.half_width:
            return np.zeros(self.batch_shape + (max(self.d - k, 0),))
        return self.data[..., k, : self.d - k]

    def with_half_width(self, u: int) -> BandedMatrix:
        """The same matrix stored with half-width ``u`` (truncated, or padded with zero diagonals)."""
        u = int(u)
        if not 0 <= u <= self.d - 1:
            raise ValueError(f"u must be in [0, {self.d - 1}], got {u}")
        if u <= self.half_width:
            return BandedMatrix(self.data[..., : u + 1, :])
        pad = np.zeros(self.batch_shape + (u - self.half_width, self.d))
        return BandedMatrix(np.concatenate([self.data, pad], axis=-2))

    def profile(self, max_radius: int | None = None) -> np.ndarray:
        """Off-diagonal profile ``m_r = mean_i |A[i, i + r]|`` for ``r = 0 .. R``, shape ``(..., R + 1)``."""
        R = self.half_width if max_radius is None else int(max_radius)
        out = np.zeros(self.batch_shape + (R + 1,))
        for k in range(min(R, self.half_width) + 1):
            out[..., k] = np.abs(self.data[..., k, : self.d - k]).mean(axis=-1)
        return out

    def matvec(self, x: Any) -> np.ndarray:
        """``A x`` for ``x`` of shape ``(d,)`` or ``(d, n_rhs)`` (unbatched matrix)."""
        if self.batch_shape:
            raise ValueError("matvec needs an unbatched BandedMatrix")
        x = np.asarray(x, dtype=np.float64)
        d = self.d
        y = self.data[0].reshape((d,) + (1,) * (x.ndim - 1)) * x
        for k in range(1, self.half_width + 1):
            v = self.data[k, : d - k].reshape((d - k,) + (1,) * (x.ndim - 1))
            y[k:] += v * x[: d - k]
            y[: d - k] += v * x[k:]
        return y

    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor in band storage (:func:`scipy.linalg.cholesky_banded`; unbatched).

        Raises ``numpy.linalg.LinAlgError`` when the matrix is not positive definite.
        """
        if self.batch_shape:
            raise ValueError("cholesky needs an unbatched BandedMatrix")
        return scipy.linalg.cholesky_banded(self.data, lower=True)

    def __repr__(self) -> str:
        return f"BandedMatrix(d={self.d}, half_width={self.half_width}, batch_shape={self.batch_shape})"


def _tail_mask(u: int, d: int) -> np.ndarray:
    """Boolean ``(u + 1, d)`` mask of the unused storage ``data[k, d - k:]``."""
    return np.arange(d)[None, :] >= (d - np.arange(u + 1))[:, None]


def as_banded(A: Any, half_width: int | None = None) -> BandedMatrix:
    """``A`` itself when it is a :class:`BandedMatrix`, else :meth:`BandedMatrix.from_dense`."""
    if isinstance(A, BandedMatrix):
        return A if half_width is None or half_width == A.half_width else A.with_half_width(half_width)
    return BandedMatrix.from_dense(A, half_width)


# --------------------------------------------------------------------------- gathering entries
def _gather(data: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Entries ``A[p, q]`` of banded ``data (..., u + 1, d)`` at index arrays ``p``, ``q`` (0 outside)."""
    u, d = data.shape[-2] - 1, data.shape[-1]
    off = np.abs(p - q)
    lo = np.minimum(p, q)
    ok = (off <= u) & (lo >= 0) & (np.maximum(p, q) < d)
    vals = data[..., np.where(ok, off, 0), np.where(ok, lo, 0)]
    return np.where(ok, vals, 0.0)


def window_offsets(r: int) -> np.ndarray:
    """Offsets of a radius-``r`` window, innermost first: ``0, -1, 1, -2, 2, ..., -r, r``."""
    k = np.arange(1, r + 1)
    return np.concatenate([[0], np.stack([-k, k], axis=1).ravel()]).astype(np.int64)


def band_windows(A: BandedMatrix, r: int, rows: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local blocks ``A[S_i, S_i]`` (innermost-first order) of the rows ``rows``, shape ``(..., n_i, w, w)``.

    Kernel (clean input; ``A.half_width >= 2 r`` for exact blocks).  Positions
    outside ``[0, d)`` hold an identity row and column, which leaves the inverse
    of the real block unchanged.  Also returns the validity mask ``(n_i, w)``.
    """
    d, u = A.d, A.half_width
    i = np.arange(d)[rows if rows is not None else slice(None)]
    offs = window_offsets(r)
    pos = i[:, None] + offs[None, :]  # (n_i, w)
    valid = (pos >= 0) & (pos < d)
    w = offs.size
    batch = A.batch_shape
    if i.size == 0:
        return np.zeros(batch + (0, w, w)), valid
    # the diagonals 0..2r of A on the columns i0 - r .. i1 + r, padded: 1 on the diagonal and 0 off it
    # outside [0, d) (the identity rows and columns), 0 beyond the stored band
    i0, i1 = int(i.min()), int(i.max())
    span = i1 - i0 + 1 + 2 * r
    seg = np.zeros(batch + (2 * r + 1, span))
    c0, lo, hi = i0 - r, max(i0 - r, 0), min(i1 + r + 1, d)
    k = min(u, 2 * r)
    seg[..., : k + 1, lo - c0 : hi - c0] = A.data[..., : k + 1, lo:hi]
    seg[..., 0, : lo - c0] = 1.0
    seg[..., 0, hi - c0 :] = 1.0
    # A[i + o_a, i + o_b] = seg[|o_a - o_b|, i - i0 + min(o_a, o_b) + r]: one offset into a sliding view
    flat = seg.reshape(batch + (-1,))
    view = np.lib.stride_tricks.as_strided(
        flat, batch + (i1 - i0 + 1, flat.shape[-1] - (i1 - i0)), flat.strides[:-1] + (flat.strides[-1],) * 2,
        writeable=False)
    base = np.abs(offs[:, None] - offs[None, :]) * span + np.minimum(offs[:, None], offs[None, :]) + r
    return view[..., (i - i0)[:, None, None], base[None]], valid


# --------------------------------------------------------------------------- kernels
def band_product(A: BandedMatrix, B: BandedMatrix, half_width: int) -> BandedMatrix:
    """Band ``|i - j| <= R`` of the product ``A B`` of two symmetric banded matrices that commute.

    Kernel (clean input, same ``d`` and batch shape).  Only the lower band of
    ``A B`` is computed, which is the whole band when ``A B`` is symmetric.
    ``(A B)[j + k, j] = sum_l A[j + k, j + l] B[j + l, j]``, ``|l| <= u_B``.
    """
    d, uA, uB = A.d, A.half_width, B.half_width
    R = int(half_width)
    out = np.zeros(np.broadcast_shapes(A.batch_shape, B.batch_shape) + (R + 1, d))
    # (A B)[j + k, j] += A[j + k, j + l] B[j + l, j]: A[j + k, j + l] = A.data[|k - l|, j + min(k, l)] and
    # B[j + l, j] = B.data[l, j] (l >= 0) or B.data[-l, j + l] (l < 0), slices of the band storage
    # on the columns j in [max(0, -l), d - max(0, min(k, l))) (the zero tails cover the rest)
    for k in range(R + 1):
        acc = out[..., k, :]
        for l in range(-uB, uB + 1):
            if abs(k - l) > uA:
                continue
            mn = min(k, l)
            j0, j1 = max(0, -l), d - max(0, mn)
            if j1 <= j0:
                continue
            a = A.data[..., abs(k - l), j0 + mn : j1 + mn]
            b = B.data[..., l, j0:j1] if l >= 0 else B.data[..., -l, j0 + l : j1 + l]
            acc[..., j0:j1] += a * b
        acc[..., d - k :] = 0.0
    return BandedMatrix._trusted(out)


def band_inverse(A: BandedMatrix, half_width: int) -> BandedMatrix:
    """Band ``|i - j| <= R`` of ``A^{-1}`` for a symmetric positive definite banded ``A`` (batched).

    Kernel (clean input).  Selected inversion of the block-tridiagonal form with
    blocks of ``m = max(u, R, 8)`` rows from the banded Cholesky factor (see the
    module docstring); the blocks are processed in cache-sized segments, the batch
    in chunks so that one chunk holds about ``2^23 / (d m)`` matrices.

    Raises
    ------
    numpy.linalg.LinAlgError
        When ``A`` is not positive definite (its banded Cholesky factorization fails).
    """
    R = min(int(half_width), A.d - 1)
    data = A.data if A.batch_shape else A.data[None]
    n = data.shape[0]
    m = max(A.half_width, R, _MIN_BLOCK)
    per = A.d * m + 1
    step = max(1, _CHUNK_ENTRIES // per)
    if n <= step:  # one chunk: the kernel's output as it is (a view of its padded array, no copy)
        out = _band_inverse_kernel(data, R, m)
    else:
        out = np.concatenate([_band_inverse_kernel(data[s : s + step], R, m) for s in range(0, n, step)], axis=0)
    return BandedMatrix._trusted(out if A.batch_shape else out[0])


def _band_inverse_kernel(data: np.ndarray, R: int, m: int) -> np.ndarray:
    n, d = data.shape[0], data.shape[-1]
    ub = data.shape[1] - 1  # stored half-width of A (and of its Cholesky factor)
    u = max(ub, 1)
    nb = -(-d // m)
    D = nb * m
    # A = L L^T by LAPACK's banded Cholesky (pbtrf), padded with the identity (decoupled: the inverse
    # of the real block is unchanged); S_k = L_kk L_kk^T are the Schur complements of the block form
    Lr = np.empty((n, ub + 1, D))
    pad = np.zeros((ub + 1, D))
    pad[0, d:] = 1.0
    for s in range(n):
        pad[:, :d] = data[s]
        Lr[s] = scipy.linalg.cholesky_banded(pad, lower=True, check_finite=False)
    Lb = Lr.reshape(n, ub + 1, nb, m)  # Lb[:, o, k, c] = L[k m + c + o, k m + c]
    out = np.zeros((n, R + 1, D))
    ob = out.reshape(n, R + 1, nb, m)
    # blocks in segments (cache-sized), from the last one backwards: a segment needs only the corner
    # Z_{e,e}[:R, :u] of the block e after it (X_next = its top-left u x u corner)
    seg = max(1, _SEGMENT_ENTRIES // (n * m * m))
    X_next = np.zeros((n, u, u))
    Z_next = np.zeros((n, R, u))
    for e in range(nb, 0, -seg):
        s = max(0, e - seg)
        Linv, W = _block_pieces(Lb[:, :, s:e], u, nb - s)
        G = np.swapaxes(Linv, -1, -2) @ Linv  # S_k^{-1} = L_kk^{-T} L_kk^{-1}
        # Z_kk = S_k^{-1} + W_k^T Z_{k+1,k+1} W_k: only the u x u corners X_k = Z_kk[:u, :u] are sequential
        Wc = np.ascontiguousarray(np.moveaxis(W[..., :u], 1, 0))  # (e - s, n, u, u)
        WcT = np.swapaxes(Wc, -1, -2).copy()
        X = np.empty((e - s + 1, n, u, u))
        X[:-1] = np.moveaxis(G[:, :, :u, :u], 1, 0)
        X[-1] = X_next
        for k in range(e - s - 1, -1, -1):
            X[k] += WcT[k] @ X[k + 1] @ Wc[k]
        Zd = G + np.swapaxes(W, -1, -2) @ (np.moveaxis(X[1:], 0, 1) @ W)
        Zd = 0.5 * (Zd + np.swapaxes(Zd, -1, -2))
        # the band: entry (k m + c + o, k m + c) sits in Zd[k] (c + o < m) or, for c + o >= m, in
        # Z_{k+1,k} = -Z_{k+1,k+1}[:, :u] W_k (only its first o <= R rows are needed)
        for o in range(R + 1):
            ob[:, o, s:e, : m - o] = np.diagonal(Zd, -o, axis1=-2, axis2=-1)
        if R > 0:
            Zn = np.concatenate([Zd[:, 1:, :R, :u], Z_next[:, None]], axis=1)
            Zo = Zn @ W  # -Z_{k+1,k}[:R], (n, e - s, R, m)
            for o in range(1, R + 1):
                ob[:, o, s:e, m - o :] = -np.diagonal(Zo[:, :, :o], m - o, axis1=-2, axis2=-1)
            Z_next = Zd[:, 0, :R, :u].copy()
        X_next = X[0].copy()
    out = out[:, :, :d]
    out[:, _tail_mask(R, d)] = 0.0
    return out


def _block_pieces(Lb: np.ndarray, u: int, n_left: int) -> tuple[np.ndarray, np.ndarray]:
    """``L_kk^{-1}`` and the nonzero rows of ``W_k = L_{k+1,k} L_kk^{-1}`` for a run of blocks (kernel).

    ``Lb[:, o, k, c] = L[k m + c + o, k m + c]`` for the run's blocks; ``n_left`` counts the blocks from
    the run's first to the matrix's last (the last block has no ``L_{k+1,k}``: ``W = 0``).  Shapes
    ``(n, n_k, m, m)`` and ``(n, n_k, u, m)``.
    """
    n, ub1, nk, m = Lb.shape
    ub = ub1 - 1
    # L_kk^{-1} (lower triangular) by forward substitution, row by row for all blocks at once (row axis first)
    dg = Lb[:, 0]
    rows = np.zeros((m, n, nk, m))
    for i in range(m):
        row = rows[i, ..., : i + 1]
        row[..., i] = 1.0
        for o in range(1, min(ub, i) + 1):
            row[..., : i - o + 1] -= Lb[:, o, :, i - o, None] * rows[i - o, ..., : i - o + 1]
        row /= dg[..., i, None]
    Linv = np.moveaxis(rows, 0, 2)
    # L_{k+1,k} is zero outside its top-right u x u corner Lc_k: Lc_k[p, q] = L[(k+1) m + p, k m + m - u + q]
    Lc = np.zeros((n, nk, u, u))
    kc = min(nk, n_left - 1)  # blocks of the run with a successor
    for p in range(u):
        for q in range(max(p + u - ub, 0), u):
            Lc[:, :kc, p, q] = Lb[:, p + u - q, :kc, m - u + q]
    return Linv, Lc @ Linv[:, :, m - u :, :]
