"""Tests of the PCA and K-subspaces objectives (SPEC A5, Problems 12 and 18)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from molrg import kss_objective, pca_objective, projection_energies, random_orthonormal


def test_pca_objective_matches_frobenius(rng):
    X = rng.standard_normal((30, 10))
    U = random_orthonormal(10, 3, random_state=rng)
    assert_allclose(pca_objective(X, U), np.linalg.norm(X @ U) ** 2, rtol=1e-12)


def test_kss_objective_is_sum_of_row_maxima_and_batched(rng):
    X = rng.standard_normal((4, 25, 10))
    bases = [random_orthonormal(10, d, size=(4,), random_state=rng) for d in (2, 3)]
    mask = rng.random((4, 25)) > 0.3
    got = kss_objective(X, bases, mask=mask)
    for b in range(4):
        e = np.stack([np.sum((X[b] @ U[b]) ** 2, 1) for U in bases], 1)
        assert_allclose(got[b], e.max(1)[mask[b]].sum(), rtol=1e-12)
    assert_allclose(projection_energies(X, bases)[1, 3, 1], np.sum((X[1, 3] @ bases[1][1]) ** 2), rtol=1e-12)


def test_objectives_torch_match_numpy_and_backprop(rng):
    X = rng.standard_normal((20, 8))
    bases = [random_orthonormal(8, 2, random_state=rng) for _ in range(3)]
    Ut = [torch.tensor(U, requires_grad=True) for U in bases]
    val = kss_objective(torch.tensor(X), Ut)
    assert_allclose(val.item(), kss_objective(X, bases), rtol=1e-12)
    val.backward()
    assert all(U.grad is not None and torch.isfinite(U.grad).all() for U in Ut)
    mask = torch.tensor(rng.random(20) > 0.5)
    assert_allclose(pca_objective(torch.tensor(X), Ut[0], mask=mask).item(),
                    pca_objective(X, bases[0], mask=mask.numpy()), rtol=1e-12)


def test_float32_stays_float32(rng):
    X = rng.standard_normal((5, 6)).astype(np.float32)
    U = random_orthonormal(6, 2, random_state=rng).astype(np.float32)
    assert pca_objective(X, U).dtype == np.float32
    assert kss_objective(X, [U, U]).dtype == np.float32


def test_empty_bases_raise():
    with pytest.raises(ValueError, match="bases"):
        kss_objective(np.ones((2, 3)), [])
