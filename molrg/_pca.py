r"""PCA of the data and of each true cluster (SPEC A6; paper Problem 12).

:func:`pca_subspace` / :func:`pca_subspace_batch` return the top-``d`` right
singular vectors of the data matrix ``X`` ``(N, n)`` (rows are samples, so these
are the left singular vectors of the paper's column matrix, i.e. the top
eigenvectors of ``X^T X``); :class:`PCASubspace` is the same as a scikit-learn
estimator; :func:`oracle_bases` is PCA of each TRUE cluster (a reference only).

Numerical choices (documented here because SPEC leaves them open):

* Scale: the data are rescaled by a power of 2 (exact in floating point) so
  that their largest magnitude lies in ``[0.5, 1)`` before any product is
  formed (:func:`_rescale`); the bases do not depend on the scale, so float32
  data near ``1e20`` or float64 data near ``1e154`` or ``1e-200`` give the same
  bases as data of order one.
* Signs: every returned basis column has its largest-magnitude entry positive
  (scikit-learn ``svd_flip`` convention).
* Rank deficiency (``N < d`` or zero singular values, relative tolerance
  ``max(N, n) * eps * s_max`` as in ``numpy.linalg.matrix_rank``): the missing
  columns are a deterministic orthonormal completion, pivoted Gram-Schmidt of
  the standard basis vectors ``e_1, ..., e_n`` projected off the numerical
  range (the largest residual first).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_batch, check_dims, check_int, check_matrix

__all__ = ["pca_subspace", "pca_subspace_batch", "oracle_bases", "PCASubspace"]


def pca_subspace(X: Any, d: int) -> np.ndarray:
    """PCA basis: the top-``d`` principal directions of the rows of ``X`` (SPEC A6, paper Problem 12).

    Maximizes ``sum_i ||U^T x_i||^2`` over orthonormal ``U`` (no centring: the
    MoLRG has zero mean).  When ``N < d`` or ``X`` has zero singular values the
    missing directions are a deterministic orthonormal completion (module
    docstring); columns are sign-fixed.  Scale-equivariant: ``pca_subspace(c X, d)``
    equals ``pca_subspace(X, d)`` for every ``c != 0`` representable in ``X``'s dtype.

    Parameters
    ----------
    X : array ``(N, n)``
        Samples in rows, finite real numbers.
    d : int
        Subspace dimension, ``1 <= d <= n``.

    Returns
    -------
    U : array ``(n, d)``
        Orthonormal, in the dtype of ``X`` (float32 stays float32).

    Raises
    ------
    TypeError
        ``X`` holds strings, complex numbers or objects; ``d`` is not an integer.
    ValueError
        ``X`` is not 2-D, is empty or holds NaN/inf; ``d`` outside ``[1, n]``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[3.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    >>> np.abs(pca_subspace(X, 2))
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    """
    X = check_data(X, batched=False)
    d = check_int("d", d, low=1, high=X.shape[1])
    Xs, _ = _rescale(X[None])
    return _pca_kernel(Xs, np.array([X.shape[0]]), d)[0]


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
    X, mask = check_batch3(X, mask)
    d = check_int("d", d, low=1, high=X.shape[2])
    Xs, _ = _rescale(np.where(mask[..., None], X, 0).astype(X.dtype, copy=False))
    return _pca_kernel(Xs, mask.sum(-1), d)


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
    X = np.asarray(X) if not hasattr(X, "ndim") else X
    batched = getattr(X, "ndim", 0) == 3
    X = check_data(X, batched=batched)
    dims = check_dims("dims", dims, X.shape[-1])
    labels = np.asarray(labels)
    if labels.shape != X.shape[:-1]:
        raise ValueError(f"labels must have shape {X.shape[:-1]} (one per row of X), got {labels.shape}")
    if labels.dtype.kind not in "iu" or (labels.size and labels.max() >= len(dims)):
        raise ValueError(f"labels must be integers < K = {len(dims)} (negative: padding)")
    Xb, Lb = (X, labels) if batched else (X[None], labels[None])
    Xb, _ = _rescale(np.where(Lb[..., None] >= 0, Xb, 0).astype(Xb.dtype, copy=False))
    out = []
    for k, d in enumerate(dims):
        m = Lb == k
        out.append(_pca_kernel(np.where(m[..., None], Xb, 0), m.sum(-1), d))
    return tuple(U if batched else U[0] for U in out)


class PCASubspace(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """PCA without centring as a scikit-learn estimator (SPEC A6; paper Problem 12).

    ``fit`` computes :func:`pca_subspace`; ``transform`` returns the
    coordinates ``X U`` in the fitted basis, ``inverse_transform`` maps them
    back (``U U^T x``, the single-component denoiser's projection, eq. 11).

    Parameters
    ----------
    d : int, default 1
        Subspace dimension, ``1 <= d <= n_features``.

    Attributes
    ----------
    basis_ : array ``(n_features, d)``
        Orthonormal, sign-fixed basis.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[3.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    >>> PCASubspace(d=1).fit(X).transform(X)
    array([[3.],
           [0.]])
    """

    _parameter_constraints: dict = {"d": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, d: int = 1):
        self.d = d

    def fit(self, X, y=None):
        """Fit the basis on ``X`` ``(N, n)``; returns ``self``."""
        self._validate_params()
        X = check_input(self, X, reset=True)
        if self.d > X.shape[1]:
            raise ValueError(f"d must be at most n_features = {X.shape[1]} (the columns of X), got d = {self.d}")
        self.basis_ = pca_subspace(X, self.d)
        return self

    def transform(self, X):
        """Coordinates ``X U`` ``(N, d)`` in the fitted basis."""
        check_is_fitted(self)
        X = check_input(self, X, reset=False)
        return X @ self.basis_.astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        """Map coordinates ``(N, d)`` back to ``(N, n)``: ``Y U^T``."""
        check_is_fitted(self)
        Y = check_matrix("X", X, width=self.basis_.shape[1])
        return Y @ self.basis_.T.astype(Y.dtype, copy=False)

    @property
    def _n_features_out(self):
        return self.basis_.shape[1]


# --------------------------------------------------------------------------- validation shared by the solvers
def check_input(estimator, X: Any, *, reset: bool) -> np.ndarray:
    """An estimator's data rule: real ``(N, n)`` input, float32 kept, messages naming ``X``.

    Strings and objects that are not numbers raise TypeError, complex numbers
    ValueError ("Complex data not supported", scikit-learn's wording), wrong
    axes ValueError; then scikit-learn's ``validate_data`` (NaN/inf, empty data,
    sparse input, ``n_features_in_``: set when ``reset``, checked otherwise).
    """
    if not scipy.sparse.issparse(X) and not hasattr(X, "__dataframe__") and not hasattr(X, "iloc"):
        a = np.asarray(X)
        if a.dtype.kind in "USa":
            raise TypeError(f"X must hold real numbers, got strings (dtype {a.dtype})")
        if a.dtype.kind == "c":
            raise ValueError(f"X must hold real numbers: Complex data not supported (dtype {a.dtype})")
        if a.dtype.kind == "O":
            try:
                a = a.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"X must hold real numbers, got Python objects ({exc})") from None
        if a.ndim != 2:
            raise ValueError(
                f"X must have 2 axes (N samples, n features), got shape {a.shape}; "
                "Reshape your data using X.reshape(-1, 1) (one feature) or X.reshape(1, -1) (one sample)"
            )
        if a.shape[0] < 1:
            raise ValueError(f"X must have at least one row (N >= 1): 0 sample(s) (shape={a.shape})")
        if a.shape[1] < 1:
            raise ValueError(f"X must have at least one column: 0 feature(s) (shape={a.shape}) while a minimum of 1 is required.")
        X = a
    return validate_data(estimator, X, dtype=[np.float64, np.float32], reset=reset)


def check_data(X: Any, *, batched: bool) -> np.ndarray:
    """The solvers' data rule: finite real ``(N, n)`` (or ``(B, N, n)``) with ``N, n >= 1``."""
    X = check_matrix("X", X, ndim=3 if batched else 2)
    if X.shape[-2] < 1:
        raise ValueError(f"X must have at least one row (N >= 1), got shape {X.shape}")
    if X.shape[-1] < 1:
        raise ValueError(f"X must have at least one column (n >= 1), got shape {X.shape}")
    return X


def check_batch3(X: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch ``(B, N, n)`` and its mask ``(B, N)`` by the shared rule (:func:`molrg._validation.check_batch`)."""
    if np.ndim(X) != 3:
        raise ValueError(f"X must have 3 axes (B, N, n), got shape {np.shape(X)}")
    X, mask, _ = check_batch(X, mask)
    return X, mask


# --------------------------------------------------------------------------- kernels (private: clean input)
def _rescale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each problem ``X[b]`` ``(B, N, n)`` by a power of 2 so its largest magnitude is in ``[0.5, 1)``.

    Exact (only exponents change), so every later step gives the same result
    as on data of order one and nothing overflows or underflows when squares
    are formed.  Returns the scaled data and the factors ``(B,)`` applied
    (all-zero problems: factor 1).
    """
    amax = np.abs(X).max(axis=(-1, -2)) if X.size else np.zeros(X.shape[0])
    _, e = np.frexp(amax)
    e = np.where(amax > 0, e, 0).astype(np.int64)
    if not e.any():
        return X, np.ones(X.shape[0])
    Xs = np.ldexp(X, -e[:, None, None].astype(np.int32)).astype(X.dtype, copy=False)
    return Xs, np.ldexp(1.0, -e)


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
