"""MoLRG data model (SPEC A1)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from molrg import MoLRG, random_orthonormal


@pytest.mark.parametrize("orthogonal", [True, False])
def test_random_bases_are_orthonormal(orthogonal):
    m = MoLRG.random(20, [3, 5, 2], orthogonal=orthogonal, random_state=0)
    assert m.dims == (3, 5, 2) and m.n == 20 and m.n_components == 3
    for U in m.bases:
        assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-12)
    if orthogonal:
        Q = np.concatenate(m.bases, axis=1)
        assert_allclose(Q.T @ Q, np.eye(10), atol=1e-12)
    else:  # independent Haar bases overlap: principal angles not all 90 degrees
        assert np.linalg.norm(m.bases[0].T @ m.bases[1]) > 1e-3


def test_sample_shapes_labels_and_reproducibility():
    m = MoLRG.random(12, [2, 3], weights=[0.25, 0.75], random_state=1)
    X, y = m.sample(4000, random_state=2)
    X2, y2 = m.sample(4000, random_state=2)
    assert X.shape == (4000, 12) and y.shape == (4000,)
    assert_allclose(X, X2, rtol=0, atol=0)
    assert_allclose(np.mean(y == 1), 0.75, atol=4 * np.sqrt(0.75 * 0.25 / 4000))
    # noiseless samples lie exactly on their component's subspace
    for k, U in enumerate(m.bases):
        R = X[y == k] - X[y == k] @ U @ U.T
        assert np.abs(R).max() < 1e-12


def test_component_covariance_matches_monte_carlo():
    m = MoLRG.random(6, [2, 1], noise_std=0.3, random_state=3)
    X, y = m.sample(40000, random_state=4)
    covs = m.covariances()
    for k in range(2):
        emp = X[y == k].T @ X[y == k] / np.sum(y == k)
        # entries of a sample covariance have std <= sqrt(2/Nk) * max variance (1.09); 5 sigma
        assert np.abs(emp - covs[k]).max() < 5 * 1.09 * np.sqrt(2 / np.sum(y == k))
    assert_allclose(covs[0], m.bases[0] @ m.bases[0].T + 0.09 * np.eye(6), atol=1e-14)


def test_random_orthonormal_is_haar_like():
    Q = random_orthonormal(5, 2, size=(3000,), random_state=0)
    assert Q.shape == (3000, 5, 2)
    # E[Q Q^T] = (d/n) I for a Haar-random d-frame
    assert_allclose(np.mean(Q @ np.swapaxes(Q, -1, -2), axis=0), 0.4 * np.eye(5), atol=0.03)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0, dims=[1]), "n must be"),
        (dict(n=5, dims=[0]), r"dims\[0\] must be"),
        (dict(n=5, dims=[6]), r"dims\[0\] must be"),
        (dict(n=5, dims=[3, 3]), "sum\\(dims\\) <= n"),
        (dict(n=5, dims=[1, 1], weights=[-0.5, 1.5]), "weights must be positive"),
        (dict(n=5, dims=[1, 1], weights=[0.5, 0.6]), "sum to 1"),
        (dict(n=5, dims=[1, 1], weights=[1.0]), "length K = 2"),
        (dict(n=5, dims=[1], noise_std=-1.0), "noise_std"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MoLRG.random(**kwargs, random_state=0)


def test_bad_bases_and_sample_size():
    with pytest.raises(ValueError, match="not orthonormal"):
        MoLRG([np.ones((4, 2))])
    with pytest.raises(ValueError, match="ambient dimension"):
        MoLRG([np.eye(4)[:, :2], np.eye(5)[:, :2]])
    with pytest.raises(ValueError, match="NaN"):
        MoLRG([np.full((3, 1), np.nan)])
    m = MoLRG.random(4, [1], random_state=0)
    with pytest.raises(ValueError, match="N must be"):
        m.sample(0)
    with pytest.raises(TypeError, match="random_state"):
        m.sample(3, random_state="seed")
