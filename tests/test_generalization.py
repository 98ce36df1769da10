"""GL score (molrg.generalization, SPEC A9) with the two reference denoisers."""

import numpy as np
import pytest
import torch

from molrg import MoLRG
from molrg.generalization import generalization_score, nearest_distances
from molrg.sampling import closed_form_denoiser, empirical_denoiser, sample


def test_nearest_distances_brute_force(rng):
    Y, X = rng.standard_normal((37, 5)), rng.standard_normal((11, 5))
    brute = np.sqrt(((Y[:, None] - X) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distances(Y, X), brute, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(nearest_distances(Y, X, chunk_elements=12), brute, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(nearest_distances(torch.as_tensor(Y), X), brute, rtol=1e-10, atol=1e-12)


def test_gl_of_copies_is_zero_and_of_fresh_samples_is_one(rng):
    m = MoLRG.random(8, [2, 2], random_state=0)
    train, _ = m.sample(30, random_state=1)
    test, _ = m.sample(2000, random_state=2)
    fresh, _ = m.sample(2000, random_state=3)
    assert generalization_score(train[rng.integers(0, 30, 100)], train, test) == pytest.approx(0.0, abs=1e-6)
    assert generalization_score(fresh, train, test) == pytest.approx(1.0, abs=0.05)


@pytest.fixture(scope="module")
def setting():
    m = MoLRG.random(8, [2, 2], random_state=10)
    train, _ = m.sample(40, random_state=11)
    test, _ = m.sample(600, random_state=12)
    return m, train, test


def test_empirical_denoiser_memorizes(setting):
    m, train, test = setting
    G = sample(empirical_denoiser(train), (600, 8), random_state=13)
    assert generalization_score(G, train, test) < 0.1


def test_closed_form_generalizes(setting):
    m, train, test = setting
    G = sample(closed_form_denoiser(m), (600, 8), random_state=14)
    assert 0.8 <= generalization_score(G, train, test) <= 1.2


def test_invalid_inputs():
    A = np.zeros((3, 4))
    with pytest.raises(ValueError, match="generated has 5 columns but train has 4"):
        generalization_score(np.zeros((2, 5)), A, A + 1)
    with pytest.raises(ValueError, match="GL denominator is 0"):
        generalization_score(A, A, A)
    with pytest.raises(ValueError, match="train must have 2 axes"):
        generalization_score(A, np.zeros(4), A)
    with pytest.raises(ValueError, match="Y has 3 columns but X has 4"):
        nearest_distances(np.zeros((1, 3)), A)
