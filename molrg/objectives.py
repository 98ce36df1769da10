r"""The two objectives that the denoising loss reduces to (SPEC A5; paper Problems 12 and 18).

For the single (K = 1) and hardmax parameterizations the closed-form loss is
``A - (B/N) * objective`` with

.. math::

    \text{PCA (Problem 12):}\quad \sum_i \|U^T x_i\|^2, \qquad
    \text{K-subspaces (Problem 18):}\quad \sum_i \max_k \|U_k^T x_i\|^2 .

Both functions work on numpy arrays and torch tensors (autograd flows through
the projections; the ``max`` in Problem 18 passes the gradient of the winning
component), with optional leading batch axes and an optional mask of valid rows
so that problems with different sample counts can share one padded batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._validation import array_namespace, check_array, is_torch

__all__ = ["projection_energies", "pca_objective", "kss_objective"]


def _operand(name: str, a, n: int | None = None):
    """Validate ``X`` or one basis: real, at least 2 axes, finite (numpy), ``a.shape[-2] == n`` for a basis."""
    a = check_array(name, a, min_ndim=2, finite=not is_torch(a), expected="(..., N, n)" if n is None else f"(..., {n}, d)")
    if n is not None and a.shape[-2] != n:
        raise ValueError(f"{name} must have shape (..., {n}, d) (n = the columns of X), got shape {tuple(a.shape)}")
    return a


def _as_list(bases) -> list:
    """A single ``(..., n, d)`` array/tensor becomes a one-element list."""
    if is_torch(bases) or hasattr(bases, "ndim"):
        return [bases]
    if isinstance(bases, (str, bytes)):
        raise TypeError(f"bases must be a sequence of arrays or an array of real numbers, got {bases!r}")
    bases = list(bases)
    if not bases:
        raise ValueError("bases must contain at least one basis")
    return bases


def _masked_sum(values, mask, xp):
    """Sum of ``values (..., N)`` over the last axis, only where ``mask (..., N)`` is true/non-zero."""
    if mask is not None:
        if is_torch(values):
            m = xp.as_tensor(mask, device=values.device).to(values.dtype)
        else:
            m = xp.asarray(mask).astype(values.dtype)
        values = values * m
    return values.sum(-1)


def projection_energies(X: Any, bases: Sequence[Any]):
    """Energies ``||U_k^T x_i||^2`` of every sample in every subspace.

    Parameters
    ----------
    X : array or tensor ``(..., N, n)``
        Samples in rows.
    bases : sequence of K arrays/tensors ``(..., n, d_k)`` (or one such array)
        Orthonormal bases; leading axes broadcast against those of ``X``.

    Returns
    -------
    array or tensor ``(..., N, K)``
    """
    X = _operand("X", X)
    bases = [_operand(f"bases[{k}]", U, X.shape[-1]) for k, U in enumerate(_as_list(bases))]
    xp = array_namespace(X, *bases)
    cols = []
    for U in bases:
        Y = X @ U  # (..., N, d_k)
        cols.append((Y * Y).sum(-1))
    return xp.stack(cols, -1)


def pca_objective(X: Any, U: Any, *, mask: Any = None):
    r"""PCA objective ``sum_i ||U^T x_i||^2`` (SPEC A5, paper Problem 12).

    Parameters
    ----------
    X : array or tensor ``(..., N, n)``
        Samples in rows.
    U : array or tensor ``(..., n, d)``
        Orthonormal basis (leading axes broadcast against ``X``).
    mask : bool/float array ``(..., N)``, optional
        Valid rows (padding rows are ignored).

    Returns
    -------
    scalar array/tensor or ``(...)``
        ``||X U||_F^2`` over the valid rows, in the dtype of the inputs.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [3.0, 0.0]])
    >>> float(pca_objective(X, np.array([[1.0], [0.0]])))
    10.0
    """
    X = _operand("X", X)
    U = _operand("U", U, X.shape[-1])
    xp = array_namespace(X, U)
    Y = X @ U
    return _masked_sum((Y * Y).sum(-1), mask, xp)


def kss_objective(X: Any, bases: Sequence[Any], *, mask: Any = None):
    r"""K-subspaces objective ``sum_i max_k ||U_k^T x_i||^2`` (SPEC A5, paper Problem 18).

    Parameters
    ----------
    X : array or tensor ``(..., N, n)``
        Samples in rows.
    bases : sequence of K arrays/tensors ``(..., n, d_k)``
        Orthonormal bases (dims may differ; leading axes broadcast against ``X``).
    mask : bool/float array ``(..., N)``, optional
        Valid rows.

    Returns
    -------
    scalar array/tensor or ``(...)``

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [3.0, 0.0]])
    >>> float(kss_objective(X, [np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]])]))
    13.0
    """
    E = projection_energies(X, bases)
    xp = array_namespace(E)
    best = E.amax(-1) if is_torch(E) else E.max(-1)
    return _masked_sum(best, mask, xp)
