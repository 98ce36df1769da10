"""Tests of the recovery metric and success (SPEC A8)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from molrg import MoLRG, random_orthonormal, subspace_error, subspace_error_batch, success


def test_zero_for_identical_bases(rng):
    model = MoLRG.random(20, [3, 5, 2], random_state=rng)
    assert subspace_error(model.bases, model.bases) < 1e-13


def test_invariant_to_permutation_and_rotation(rng):
    model = MoLRG.random(20, [3, 3, 3], orthogonal=False, random_state=rng)
    other = MoLRG.random(20, [3, 3, 3], orthogonal=False, random_state=rng)
    ref = subspace_error(other.bases, model.bases)
    rotated = [U @ random_orthonormal(3, 3, random_state=rng) for U in other.bases]
    permuted = [rotated[2], rotated[0], rotated[1]]
    assert_allclose(subspace_error(permuted, model.bases), ref, rtol=1e-12)
    assert_allclose(subspace_error(model.bases, permuted), ref, rtol=1e-12)
    # the matched value is the brute-force minimum over permutations
    import itertools

    P = [U @ U.T for U in other.bases]
    Q = [U @ U.T for U in model.bases]
    brute = min(np.mean([np.linalg.norm(P[p[k]] - Q[k]) for k in range(3)]) for p in itertools.permutations(range(3)))
    assert_allclose(ref, brute, rtol=1e-10)


@pytest.mark.parametrize("d", [1, 3, 6])
def test_orthogonal_subspaces_give_sqrt_2d(rng, d):
    Q = random_orthonormal(15, 2 * d, random_state=rng)
    assert_allclose(subspace_error(Q[:, :d], Q[:, d:]), np.sqrt(2 * d), rtol=1e-12)


def test_unequal_dims_and_torch_input(rng):
    Q = random_orthonormal(10, 5, random_state=rng)
    # P_hat = span(q1, q2, q3), P = span(q1, q2): ||P_hat - P||_F = 1
    assert_allclose(subspace_error(torch.tensor(Q[:, :3]), Q[:, :2]), 1.0, rtol=1e-12)


def test_batch_equals_single(rng):
    B = 6
    est = [random_orthonormal(12, d, size=(B,), random_state=rng) for d in (2, 4)]
    true = [random_orthonormal(12, d, size=(B,), random_state=rng) for d in (2, 4)]
    got = subspace_error_batch(est, true)
    want = [subspace_error([U[b] for U in est], [V[b] for V in true]) for b in range(B)]
    assert_allclose(got, want, rtol=1e-12)


def test_success_threshold():
    assert success(0.5) and not success(0.51)
    assert_allclose(success(np.array([0.1, 0.6]), tau=0.2), [True, False])
    with pytest.raises(ValueError, match="tau"):
        success(0.1, tau=0.0)
    with pytest.raises(ValueError, match="tau"):
        success(0.1, tau=-1)


def test_bad_inputs_raise(rng):
    U = random_orthonormal(6, 2, random_state=rng)
    with pytest.raises(ValueError, match="not orthonormal"):
        subspace_error(2 * U, U)
    with pytest.raises(ValueError, match="K = 2"):
        subspace_error([U, U], [U])
    with pytest.raises(ValueError, match="NaN"):
        subspace_error(np.full((6, 2), np.nan), U)
    with pytest.raises(ValueError, match="share leading axes and n"):
        subspace_error(U, random_orthonormal(7, 2, random_state=rng))
