"""Closed-form posterior mean, weights and score against dense Gaussian-mixture algebra (SPEC A3)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.special import logsumexp

from molrg import MoLRG, posterior_mean, posterior_mean_from_bases, posterior_weights, score
from phase_transition.experiments.checks import dense_posterior  # the independent reference (scipy, dense)

MODELS = [
    dict(n=7, dims=[3], weights=None, orthogonal=True),
    dict(n=9, dims=[2, 4], weights=[0.3, 0.7], orthogonal=True),
    dict(n=8, dims=[1, 3, 2], weights=[0.5, 0.2, 0.3], orthogonal=False),
    dict(n=10, dims=[2, 2, 3], weights=[0.1, 0.6, 0.3], orthogonal=True, noise_std=0.2),
]
SCALE_SIGMA = [(1.0, 0.05), (0.7, 0.3), (0.35, 1.0), (1.0, 4.0), (0.05, 20.0)]


@pytest.mark.parametrize("spec", MODELS)
@pytest.mark.parametrize("s, sigma", SCALE_SIGMA)
def test_matches_dense_mixture(spec, s, sigma, rng):
    model = MoLRG.random(**spec, random_state=rng)
    X0, _ = model.sample(12, random_state=rng)
    x = s * X0 + s * sigma * rng.standard_normal(X0.shape)
    w_ref, m_ref, _ = dense_posterior(model, x, s, sigma)
    assert_allclose(posterior_weights(model, x, s, sigma), w_ref, rtol=1e-10, atol=1e-13)
    mean = posterior_mean(model, x, s, sigma)
    assert_allclose(mean, m_ref, rtol=1e-10, atol=1e-10 * np.abs(m_ref).max())
    sc_ref = (s * m_ref - x) / (s**2 * sigma**2)
    assert_allclose(score(model, x, s, sigma), sc_ref, rtol=1e-9, atol=1e-9 * np.abs(sc_ref).max())


@pytest.mark.parametrize("spec", MODELS[1:3])
def test_score_is_gradient_of_dense_log_density(spec, rng):
    model = MoLRG.random(**spec, random_state=rng)
    s, sigma = 0.8, 0.6
    x = rng.standard_normal((4, model.n))

    def logp(z):
        return logsumexp(dense_posterior(model, z, s, sigma)[2], axis=-1)

    h = 1e-5
    eye = np.eye(model.n)
    fd = np.stack([(logp(x + h * eye[j]) - logp(x - h * eye[j])) / (2 * h) for j in range(model.n)], axis=-1)
    assert_allclose(score(model, x, s, sigma), fd, rtol=1e-6, atol=1e-6)


def test_per_sample_scale_and_sigma_broadcast(rng):
    model = MoLRG.random(6, [2, 2], random_state=0)
    x = rng.standard_normal((5, 6))
    s = np.linspace(0.2, 1.0, 5)
    sig = np.linspace(0.1, 3.0, 5)
    batched = posterior_mean(model, x, s, sig)
    single = np.stack([posterior_mean(model, x[i], s[i], sig[i]) for i in range(5)])
    assert_allclose(batched, single, rtol=1e-13)
    with pytest.raises(ValueError, match=r"scale must be a scalar or an array over the leading axes of x_t, shape \(5,\)"):
        posterior_mean(model, x, np.ones((5, 6)), 1.0)
    with pytest.raises(ValueError, match="positive"):
        posterior_mean(model, x, 1.0, 0.0)


@pytest.mark.parametrize("sigma", [1e-6, 1e-3, 1.0, 1e3, 1e6])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_finite_in_float32_over_noise_range(sigma, backend, rng):
    model = MoLRG.random(16, [2, 3, 4], weights=[0.2, 0.3, 0.5], orthogonal=False, random_state=1)
    X0, _ = model.sample(32, random_state=rng)
    x = (X0 + sigma * rng.standard_normal(X0.shape)).astype(np.float32)
    if backend == "torch":
        x = torch.from_numpy(x)
    for f in (posterior_weights, posterior_mean, score):
        out = f(model, x, 1.0, sigma)
        out = out.numpy() if backend == "torch" else out
        assert out.dtype == np.float32
        assert np.all(np.isfinite(out)), f.__name__
    w = posterior_weights(model, x, 1.0, sigma)
    w = w.numpy() if backend == "torch" else w
    assert_allclose(w.sum(-1), 1.0, rtol=1e-5)


def test_small_noise_limit_is_projection_onto_nearest_subspace(rng):
    model = MoLRG.random(12, [3, 3], random_state=2)
    X0, y = model.sample(20, random_state=rng)
    m = posterior_mean(model, X0, 1.0, 1e-6)
    assert_allclose(m, X0, atol=1e-9)
    assert np.all(posterior_weights(model, X0, 1.0, 1e-6).argmax(-1) == y)


def test_torch_matches_numpy_and_is_differentiable(rng):
    model = MoLRG.random(10, [2, 3], weights=[0.4, 0.6], random_state=3)
    x = rng.standard_normal((6, 10))
    ref = posterior_mean(model, x, 0.6, 0.7)
    U = [torch.tensor(B, requires_grad=True) for B in model.bases]
    out = posterior_mean_from_bases(U, np.log(model.weights), torch.tensor(x), 0.6, 0.7)
    assert_allclose(out.detach().numpy(), ref, rtol=1e-12)
    out.square().sum().backward()
    assert all(torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0 for u in U)
    # a leading batch axis over problems on the bases
    Ub = torch.stack([torch.tensor(model.bases[0]), torch.tensor(model.bases[0])])  # (2, n, d)
    xb = torch.tensor(x).expand(2, 6, 10)
    outb = posterior_mean_from_bases([Ub], [0.0], xb, 0.6, 0.7)
    assert outb.shape == (2, 6, 10)


def test_bad_inputs(rng):
    model = MoLRG.random(5, [2], random_state=0)
    with pytest.raises(ValueError, match=r"x_t must have shape \(\.\.\., 5\).*got shape \(3, 4\)"):
        posterior_mean(model, rng.standard_normal((3, 4)), 1.0, 1.0)
    with pytest.raises(TypeError, match="model must be a MoLRG"):
        posterior_mean("not a model", rng.standard_normal((3, 5)), 1.0, 1.0)
