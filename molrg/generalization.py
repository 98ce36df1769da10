r"""Generalization score GL: memorization (about 0) versus generalization (about 1) (SPEC A9).

.. math::

    GL = \frac{\frac1M\sum_j \min_i \|\hat x_j - x_i\|}{\frac1{M'}\sum_j \min_i \|x^{test}_j - x_i\|}

with ``x_i`` the N training samples, ``xhat_j`` M generated samples and
``xtest_j`` fresh samples of the true distribution (the paper's GL score of its
section on memorization and generalization, after Zhang et al. 2024).  A model
that copies its training set scores about 0; one whose samples are as far from
the training set as new data are scores about 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .utils import check_int, check_matrix, is_torch

__all__ = ["nearest_distances", "generalization_score"]


def _as_numpy(name, A):
    if is_torch(A):
        A = A.detach().cpu().numpy()
    return check_matrix(name, A).astype(np.float64, copy=False)


def nearest_distances(Y, X, *, chunk_elements: int = 2**22) -> np.ndarray:
    """Euclidean distance from each row of ``Y`` to its nearest row of ``X``, shape ``(M,)``.

    Computed in float64 in chunks of at most ``chunk_elements`` pairwise distances:
    the nearest row minimizes ``||x||^2 - 2 y.x``, then its distance is computed
    directly (exactly 0 for a copy).

    Examples
    --------
    >>> nearest_distances(np.array([[0.0, 3.0]]), np.array([[0.0, 0.0], [4.0, 3.0]]))
    array([3.])
    """
    Y = _as_numpy("Y", Y)
    X = _as_numpy("X", X)
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"Y has {Y.shape[1]} columns but X has {X.shape[1]}; they must match")
    chunk_elements = check_int("chunk_elements", chunk_elements, low=1)
    step = max(1, chunk_elements // X.shape[0])
    sx = (X * X).sum(1)
    out = np.empty(Y.shape[0])
    for i in range(0, Y.shape[0], step):
        Yc = Y[i : i + step]
        d2 = sx[None, :] - 2.0 * Yc @ X.T  # ||y||^2 is the same for every x
        nearest = X[d2.argmin(1)]
        out[i : i + step] = np.linalg.norm(Yc - nearest, axis=1)  # exact distance, no cancellation
    return out


def generalization_score(generated: Any, train: Any, test: Any) -> float:
    """The GL score of SPEC A9.

    Parameters
    ----------
    generated : array ``(M, n)``
        Samples of the trained model.
    train : array ``(N, n)``
        Its training set.
    test : array ``(M', n)``
        Fresh samples of the true distribution (independent of ``train``).

    Returns
    -------
    float
        ``mean_j min_i ||generated_j - train_i|| / mean_j min_i ||test_j - train_i||``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> train = rng.standard_normal((10, 3))
    >>> generalization_score(train[[0, 1, 2]], train, rng.standard_normal((50, 3)))
    0.0
    """
    generated = _as_numpy("generated", generated)
    train = _as_numpy("train", train)
    test = _as_numpy("test", test)
    n = train.shape[1]
    for name, A in (("generated", generated), ("test", test)):
        if A.shape[1] != n:
            raise ValueError(f"{name} has {A.shape[1]} columns but train has {n}; they must match")
    denom = float(nearest_distances(test, train).mean())
    if denom <= 0:
        raise ValueError("test samples coincide with training samples: the GL denominator is 0")
    return float(nearest_distances(generated, train).mean() / denom)
