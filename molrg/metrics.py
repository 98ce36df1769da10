r"""Subspace recovery error and success (SPEC A8).

.. math::

    \mathrm{err} = \min_{\pi} \frac{1}{K} \sum_k \|\hat P_{\pi(k)} - P_k\|_F ,
    \qquad \text{success} \iff \mathrm{err} \le \tau \ (\tau = 0.5).

The permutation is found with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`).  The pairwise distances use the
cancellation-free identity (valid for orthonormal ``U`` ``(n, p)``, ``V`` ``(n, q)``)

.. math::

    \|UU^T - VV^T\|_F^2 = \|(I - VV^T)U\|_F^2 + \|(I - UU^T)V\|_F^2
                        = p + q - 2\|U^T V\|_F^2 ,

evaluated through the two residuals, so identical subspaces give an error at
round-off level (about ``1e-15``) rather than the ``1e-8`` that the square root
of a cancelled difference would give, and no ``n x n`` projector is formed.
Unequal dimensions are allowed (the distance then includes ``|p - q|``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._validation import check_array, check_real, is_torch

__all__ = ["projector_distances", "subspace_error", "subspace_error_batch", "success"]


def _to_numpy(name: str, a) -> np.ndarray:
    """``a`` as a float64 numpy array; strings, complex numbers and objects raise TypeError naming ``name``."""
    if is_torch(a):
        a = a.detach().cpu().numpy()
    return check_array(name, a, finite=False).astype(np.float64, copy=False)


def _check_stack(name: str, bases, batched: bool) -> list[np.ndarray]:
    """Validate a sequence of K bases, each ``(n, d_k)`` (or ``(B, n, d_k)`` when ``batched``).

    A single array is one basis (K = 1); for ``batched`` a ``(B, K, n, d)`` array is K bases.
    """
    nd = 3 if batched else 2
    if isinstance(bases, (str, bytes, numbers.Number)):
        raise TypeError(f"{name} must be a sequence of arrays or an array of real numbers, got {bases!r}")
    if is_torch(bases) or isinstance(bases, np.ndarray):
        a = _to_numpy(name, bases)
        if a.ndim == nd:
            bases = [a]
        elif a.ndim == nd + 1:
            bases = [a[:, k] if batched else a[k] for k in range(a.shape[1 if batched else 0])]
        else:
            raise ValueError(f"{name} must have {nd} or {nd + 1} axes as an array, got shape {a.shape}")
    else:
        bases = [_to_numpy(f"{name}[{k}]", U) for k, U in enumerate(bases)]
    if not bases:
        raise ValueError(f"{name} must contain at least one basis")
    for k, U in enumerate(bases):
        if U.ndim != nd:
            raise ValueError(f"{name}[{k}] must have shape {'(B, n, d)' if batched else '(n, d)'}, got {U.shape}")
    lead = bases[0].shape[:-2]
    n = bases[0].shape[-2]
    for k, U in enumerate(bases):
        if U.ndim != nd or U.shape[-1] < 1 or U.shape[-1] > U.shape[-2]:
            raise ValueError(f"{name}[{k}] must have shape {'(B, n, d)' if batched else '(n, d)'} with 1 <= d <= n, got {U.shape}")
        if U.shape[:-2] != lead or U.shape[-2] != n:
            raise ValueError(f"{name}[{k}] has shape {U.shape}, inconsistent with {name}[0] of shape {bases[0].shape}")
        if not np.all(np.isfinite(U)):
            raise ValueError(f"{name}[{k}] contains NaN or inf")
        G = np.swapaxes(U, -1, -2) @ U
        dev = np.abs(G - np.eye(U.shape[-1])).max()
        if dev > 1e-6:
            raise ValueError(f"{name}[{k}] is not orthonormal: max |U^T U - I| = {dev:.3g} > 1e-06")
    return bases


def projector_distances(estimated_bases: Sequence[Any], true_bases: Sequence[Any]) -> np.ndarray:
    """Pairwise ``||P_hat_j - P_k||_F`` for stacks of bases with leading axes.

    Private-kernel style: assumes validated orthonormal float64 bases, each
    ``(..., n, d)``.  Returns ``(..., K_hat, K)``, computed as batched matrix
    products (one per pair of components, no loop over problems).
    """
    out = np.empty(estimated_bases[0].shape[:-2] + (len(estimated_bases), len(true_bases)))
    for j, U in enumerate(estimated_bases):
        for k, V in enumerate(true_bases):
            M = np.swapaxes(V, -1, -2) @ U  # (..., q, p)
            r1 = U - V @ M  # (I - V V^T) U
            r2 = V - U @ np.swapaxes(M, -1, -2)  # (I - U U^T) V
            out[..., j, k] = np.sqrt((r1 * r1).sum((-1, -2)) + (r2 * r2).sum((-1, -2)))
    return out


def _match(cost: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum() / cost.shape[1])


def subspace_error(estimated_bases: Sequence[Any], true_bases: Sequence[Any]) -> float:
    r"""Recovery error ``min_pi (1/K) sum_k ||P_hat_{pi(k)} - P_k||_F`` (SPEC A8).

    Parameters
    ----------
    estimated_bases, true_bases : sequence of K arrays ``(n, d_k)`` (or one ``(n, d)`` array for K = 1)
        Orthonormal bases (numpy or torch); the two lists must have the same K
        and ambient dimension; the dims may differ.

    Returns
    -------
    float
        0 for identical subspaces; invariant to the order of the components and
        to rotations inside each subspace; ``sqrt(2 d)`` for two mutually
        orthogonal ``d``-dimensional subspaces (K = 1).

    Examples
    --------
    >>> import numpy as np
    >>> E = np.eye(4)
    >>> round(subspace_error([E[:, :2], E[:, 2:]], [E[:, 2:], E[:, :2]]), 12)
    0.0
    >>> round(subspace_error(E[:, :2], E[:, 2:]) ** 2, 12)
    4.0
    """
    est = _check_stack("estimated_bases", estimated_bases, batched=False)
    true = _check_stack("true_bases", true_bases, batched=False)
    _check_compatible(est, true)
    return _match(projector_distances(est, true))


def subspace_error_batch(estimated_bases: Sequence[Any], true_bases: Sequence[Any]) -> np.ndarray:
    """:func:`subspace_error` for B problems at once.

    Parameters
    ----------
    estimated_bases, true_bases : sequence of K arrays ``(B, n, d_k)``, or one ``(B, K, n, d)`` array
        The cost matrices ``(B, K, K)`` are one batched computation; the
        Hungarian assignment then runs per problem.

    Returns
    -------
    array ``(B,)``
    """
    est = _check_stack("estimated_bases", estimated_bases, batched=True)
    true = _check_stack("true_bases", true_bases, batched=True)
    _check_compatible(est, true)
    cost = projector_distances(est, true)
    return np.array([_match(c) for c in cost], dtype=np.float64)


def _check_compatible(est, true) -> None:
    if len(est) != len(true):
        raise ValueError(f"estimated_bases has K = {len(est)} components but true_bases has K = {len(true)}")
    if est[0].shape[:-1] != true[0].shape[:-1]:
        raise ValueError(
            f"estimated_bases and true_bases must share leading axes and n, got {est[0].shape} and {true[0].shape}"
        )


def success(err: Any, tau: float = 0.5):
    """Success indicator ``err <= tau`` (SPEC A8; default ``tau = 0.5``).

    Parameters
    ----------
    err : float or array
        Subspace errors.
    tau : float, default 0.5
        Threshold, must be > 0.

    Returns
    -------
    bool or bool array
    """
    tau = check_real("tau", tau, low=0.0, low_open=True)
    out = np.asarray(err, dtype=np.float64) <= tau
    return bool(out) if out.ndim == 0 else out
