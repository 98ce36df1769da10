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
  block-tridiagonal form of ``A`` (blocks of ``m = max(u, R)`` rows):
  ``S_0 = A_00``, ``S_{k+1} = A_{k+1,k+1} - A_{k+1,k} S_k^{-1} A_{k,k+1}`` forwards, then
  ``Z_{k+1,k} = -Z_{k+1,k+1} A_{k+1,k} S_k^{-1}`` and
  ``Z_{kk} = S_k^{-1} - (A_{k+1,k} S_k^{-1})^T Z_{k+1,k}`` backwards (the Schur
  complements of an SPD matrix are SPD, so this is as stable as Cholesky).
  Time ``O(d m^2)``, memory ``O(d m)``.
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
#: smallest block size of :func:`band_inverse` (fewer, larger blocks amortize numpy's per-call cost)
_MIN_BLOCK = 16


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
    d = A.d
    i = np.arange(d)[rows if rows is not None else slice(None)]
    pos = i[:, None] + window_offsets(r)[None, :]  # (n_i, w)
    valid = (pos >= 0) & (pos < d)
    B = _gather(A.data, pos[:, :, None], pos[:, None, :])
    eye = np.eye(pos.shape[1], dtype=bool)[None]
    both = valid[:, :, None] & valid[:, None, :]
    return np.where(both, B, np.where(eye, 1.0, 0.0)), valid


# --------------------------------------------------------------------------- kernels
def band_product(A: BandedMatrix, B: BandedMatrix, half_width: int) -> BandedMatrix:
    """Band ``|i - j| <= R`` of the product ``A B`` of two symmetric banded matrices that commute.

    Kernel (clean input, same ``d`` and batch shape).  Only the lower band of
    ``A B`` is computed, which is the whole band when ``A B`` is symmetric.
    ``(A B)[j + k, j] = sum_l A[j + k, j + l] B[j + l, j]``, ``|l| <= u_B``.
    """
    d, uB = A.d, B.half_width
    R = int(half_width)
    out = np.zeros(np.broadcast_shapes(A.batch_shape, B.batch_shape) + (R + 1, d))
    # B[j + l, j] and A[j + k, j + l] are diagonals of the band storage shifted by l or k (zero
    # outside [0, d) and on the stored zero tails): slices, no index arrays
    b_col = {l: (B.data[..., l, :] if l >= 0 else _shifted(B.data[..., -l, :], l)) for l in range(-uB, uB + 1)}
    for k in range(R + 1):
        acc = out[..., k, :]
        for l in range(-uB, uB + 1):
            if abs(k - l) > A.half_width:
                continue
            a = _shifted(A.data[..., k - l, :], l) if k >= l else _shifted(A.data[..., l - k, :], k)
            acc += a * b_col[l]
        acc[..., d - k:] = 0.0
    return BandedMatrix(out)


def _shifted(x: np.ndarray, s: int) -> np.ndarray:
    """``y[..., j] = x[..., j + s]`` where ``0 <= j + s < d``, else 0 (kernel for :func:`band_product`)."""
    if s == 0:
        return x
    d = x.shape[-1]
    y = np.zeros_like(x)
    if s > 0:
        y[..., : max(d - s, 0)] = x[..., s:]
    else:
        y[..., -s:] = x[..., : max(d + s, 0)]
    return y


def band_inverse(A: BandedMatrix, half_width: int) -> BandedMatrix:
    """Band ``|i - j| <= R`` of ``A^{-1}`` for a symmetric positive definite banded ``A`` (batched).

    Kernel (clean input).  Selected inversion of the block-tridiagonal form with
    blocks of ``m = max(u, R, 16)`` rows (see the module docstring); the batch is
    processed in chunks so that one chunk holds about ``2^23 / (d m)`` matrices (a few hundred MB at most).

    Raises
    ------
    numpy.linalg.LinAlgError
        When a Schur complement is not positive definite (``A`` is not SPD).
    """
    R = min(int(half_width), A.d - 1)
    data = A.data if A.batch_shape else A.data[None]
    n = data.shape[0]
    m = max(A.half_width, R, _MIN_BLOCK)
    per = A.d * m + 1
    step = max(1, _CHUNK_ENTRIES // per)
    out = np.concatenate([_band_inverse_kernel(data[s : s + step], R, m) for s in range(0, n, step)], axis=0)
    return BandedMatrix(out if A.batch_shape else out[0])


def _band_inverse_kernel(data: np.ndarray, R: int, m: int) -> np.ndarray:
    n, d = data.shape[0], data.shape[-1]
    nb = -(-d // m)
    D = nb * m
    pad = np.zeros((n, data.shape[1], D))
    pad[..., :d] = data
    pad[:, 0, d:] = 1.0  # identity on the padding: decoupled, the inverse of the real block is unchanged
    a = np.arange(m)
    base = (np.arange(nb) * m)[:, None, None]
    # block axis first, so that each step reads contiguous (n, m, m) stacks
    diag_blocks = np.ascontiguousarray(np.moveaxis(_gather(pad, base + a[:, None], base + a[None, :]), 1, 0))
    # A_{k+1,k} is zero outside its top-right u x u corner: the Schur updates touch u x u blocks only
    u = max(data.shape[1] - 1, 1)
    Ec = np.ascontiguousarray(np.moveaxis(_gather(pad, base[:-1] + m + a[:u, None], base[:-1] + a[None, m - u :]), 1, 0))
    G = np.empty_like(diag_blocks)  # S_k^{-1}, shape (nb, n, m, m)
    for k in range(nb):
        S = diag_blocks[k]
        if k:
            E = Ec[k - 1]
            S = S.copy()
            S[:, :u, :u] -= E @ G[k - 1, :, m - u :, m - u :] @ np.swapaxes(E, -1, -2)
        G[k] = np.linalg.inv(S)
    Zd = diag_blocks  # overwritten in place from the last block backwards: Z_kk
    Zo = np.empty((max(nb - 1, 1), n, m, m))  # Z_{k+1,k}
    Zd[nb - 1] = G[nb - 1]
    for k in range(nb - 2, -1, -1):
        Y = Ec[k] @ G[k, :, m - u :, :]  # the nonzero rows (first u) of A_{k+1,k} S_k^{-1}
        Zo[k] = -Zd[k + 1, :, :, :u] @ Y
        Zk = G[k] - np.swapaxes(Y, -1, -2) @ Zo[k, :, :u, :]
        Zd[k] = 0.5 * (Zk + np.swapaxes(Zk, -1, -2))
    # gather the band: entry (j + o, j) sits in Zd[block(j)] or, across blocks, in Zo[block(j)]
    out = np.zeros((n, R + 1, d))
    j = np.arange(d)
    bj, aj = j // m, j % m
    for o in range(R + 1):
        p = j + o
        ok = p < d
        bp, ap = np.minimum(p, D - 1) // m, np.minimum(p, D - 1) % m
        same = bp == bj
        v_same = Zd[bj, :, ap, aj].T
        v_cross = Zo[np.minimum(bj, max(nb - 2, 0)), :, ap, aj].T
        out[:, o] = np.where(ok, np.where(same, v_same, v_cross), 0.0)
    return out
