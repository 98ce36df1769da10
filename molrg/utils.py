"""Shared helpers: orthonormal bases, and (re-exported) randomness, validation and array backends.

The validation and random-state helpers live in the torch-free module
:mod:`molrg._validation` (shared by ``molrg`` and ``locality``) and are
re-exported here under their old names.  Every stochastic public function of
the toolkit takes ``random_state`` (None, an int or a
:class:`numpy.random.Generator`) and normalizes it once with
:func:`check_random_state`; torch code derives a :class:`torch.Generator` from
it with :func:`torch_generator`.  Validators raise :class:`ValueError` (or
:class:`TypeError`) whose message names the argument, shows the value and the
allowed range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import *  # noqa: F401,F403  (re-exported: the names have always lived here)
from ._validation import __all__ as _VALIDATION_ALL
from ._validation import array_namespace, check_int, check_random_state, is_torch

__all__ = [*_VALIDATION_ALL, "random_orthonormal", "orthonormalize"]


# --------------------------------------------------------------------------- orthonormal bases
def random_orthonormal(n: int, d: int, *, size: tuple[int, ...] = (), random_state: Any = None) -> np.ndarray:
    """Haar-random orthonormal ``n x d`` bases, shape ``size + (n, d)``.

    QR of a Gaussian matrix with the signs of ``diag(R)`` folded into ``Q``
    (Mezzadri 2007), which makes ``Q`` Haar-distributed on the Stiefel manifold.
    """
    n = check_int("n", n, low=1)
    d = check_int("d", d, low=1, high=n)
    rng = check_random_state(random_state)
    G = rng.standard_normal(tuple(size) + (n, d))
    Q, R = np.linalg.qr(G)
    signs = np.sign(np.diagonal(R, axis1=-2, axis2=-1))
    signs[signs == 0] = 1.0
    return Q * signs[..., None, :]


def orthonormalize(A):
    """Polar factor ``U = W V^T`` of ``A = W S V^T`` (the closest orthonormal matrix).

    Works on numpy arrays and torch tensors with any leading batch axes, shape
    ``(..., n, d)`` with ``d <= n``.  Used as the retraction after a gradient
    step (SPEC A7) and for perturbed starts.
    """
    if is_torch(A):
        W, _, Vh = array_namespace(A).linalg.svd(A, full_matrices=False)
        return W @ Vh
    W, _, Vh = np.linalg.svd(np.asarray(A), full_matrices=False)
    return W @ Vh
