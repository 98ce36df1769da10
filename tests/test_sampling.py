"""Samplers (molrg.sampling) and the empirical optimal denoiser (molrg.empirical), SPEC A9."""

import numpy as np
import pytest
import torch

from molrg import MoLRG
from molrg.empirical import EmpiricalDenoiser, empirical_posterior_mean
from molrg.mlp import MLPDenoiser, train_mlp_denoiser
from molrg.sampling import (
    bases_denoiser,
    closed_form_denoiser,
    empirical_denoiser,
    get_sigmas_karras,
    sample,
    sample_ddpm,
    sample_euler,
    sample_heun,
)


def _assign(model, X):
    res = np.stack([np.linalg.norm(X - (X @ U) @ U.T, axis=1) for U in model.bases], 1)
    return res.argmin(1), res.min(1) / np.linalg.norm(X, axis=1)


@pytest.fixture(scope="module")
def model():
    return MoLRG.random(48, [4, 4, 4], weights=[0.5, 0.3, 0.2], random_state=3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_closed_form_samples_lie_on_union_with_right_moments(model, backend):
    M = 6000
    X = sample(closed_form_denoiser(model), (M, 48), n_steps=64, random_state=11, backend=backend)
    X = np.asarray(X, dtype=np.float64)
    labels, rel = _assign(model, X)
    assert np.median(rel) < 1e-2
    assert np.quantile(rel, 0.99) < 1e-2
    # component frequencies: binomial MC error
    freq = np.bincount(labels, minlength=3) / M
    np.testing.assert_allclose(freq, model.weights, atol=4 * np.sqrt(0.25 / M))
    for k, U in enumerate(model.bases):
        Xk = X[labels == k]
        C = Xk.T @ Xk / len(Xk)
        d = U.shape[1]
        mc = np.sqrt((d * d + d) / len(Xk))  # RMS Frobenius error of a sample covariance of N(0, U U^T)
        assert np.linalg.norm(C - U @ U.T) < 3 * mc


def test_heun_18_steps_variance_bias_is_small(model):
    # 18 EDM steps inflate the variance by a few percent (measured ~9%), far below Euler's
    X = sample(closed_form_denoiser(model), (3000, 48), n_steps=18, random_state=5, backend="numpy")
    var_heun = np.mean(np.sum(X**2, 1)) / 4
    Xe = sample(closed_form_denoiser(model), (3000, 48), n_steps=18, solver="euler", random_state=5, backend="numpy")
    var_euler = np.mean(np.sum(Xe**2, 1)) / 4
    assert abs(var_heun - 1) < 0.15
    assert abs(var_euler - 1) > abs(var_heun - 1)


def test_ddpm_sampler_converges_with_steps():
    m = MoLRG.random(12, [2, 2], random_state=0)
    X = sample(closed_form_denoiser(m), (4000, 12), solver="ddpm", n_steps=200, random_state=2, backend="numpy")
    labels, rel = _assign(m, X)
    assert np.median(rel) < 1e-2
    for k, U in enumerate(m.bases):
        Xk = X[labels == k]
        C = Xk.T @ Xk / len(Xk)
        assert np.linalg.norm(C - U @ U.T) < 3 * np.sqrt(6 / len(Xk)) + 0.05


def test_single_gaussian_heun_matches_exact_flow():
    # K = 1: the probability flow is linear, a(sigma) = a_T sqrt(1 + sigma^2) / sqrt(1 + sigma_T^2)
    m = MoLRG.random(5, [2], random_state=1)
    sig = get_sigmas_karras(400, 0.01, 10.0)[:-1]
    x = np.random.default_rng(0).standard_normal((3, 5)) * 10.0
    out = sample_heun(closed_form_denoiser(m), x, sig)
    U = m.bases[0]
    expected = (x @ U) @ U.T * np.sqrt(1 + 0.01**2) / np.sqrt(1 + 100.0) + (x - (x @ U) @ U.T) * 0.01 / 10.0
    np.testing.assert_allclose(out, expected, rtol=2e-4, atol=1e-8)  # Heun, O(h^2): measured 3e-5
    out_euler = sample_euler(closed_form_denoiser(m), x, sig)
    assert np.abs(out_euler - expected).max() > 10 * np.abs(out - expected).max()


def test_seeded_and_dtype_preserved(model):
    D = closed_form_denoiser(model)
    a = sample(D, (5, 48), solver="ddpm", n_steps=10, random_state=7)
    b = sample(D, (5, 48), solver="ddpm", n_steps=10, random_state=7)
    c = sample(D, (5, 48), solver="ddpm", n_steps=10, random_state=8)
    assert a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = np.random.default_rng(0).standard_normal((2, 3, 48)).astype(np.float32) * 80
    for f in (sample_euler, sample_heun):
        y = f(D, x, get_sigmas_karras(5))
        assert y.dtype == np.float32 and y.shape == (2, 3, 48)
    y = sample_ddpm(D, x, get_sigmas_karras(5), random_state=0)
    assert y.dtype == np.float32


def test_callback_and_bases_adapter(model):
    seen = []
    D1 = closed_form_denoiser(model)
    D2 = bases_denoiser(model.bases, model.weights)
    x = torch.randn(4, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 80
    sig = get_sigmas_karras(6)
    y1 = sample_heun(D1, x, sig, callback=lambda info: seen.append(info["sigma"]))
    y2 = sample_heun(D2, x, sig)
    np.testing.assert_allclose(seen, sig[:-1])
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)


def test_invalid_arguments(model):
    D = closed_form_denoiser(model)
    with pytest.raises(ValueError, match="solver must be one of"):
        sample(D, (2, 48), solver="rk4")
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_heun(D, np.zeros((1, 48)), [1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        sample_euler(D, np.zeros((1, 48)), [1.0, -1.0])
    with pytest.raises(ValueError, match="n_steps must be in"):
        sample(D, (2, 48), n_steps=0)
    with pytest.raises(ValueError, match="shape must be"):
        sample(D, (0, 48))
    with pytest.raises(TypeError, match="model must be a MoLRG"):
        closed_form_denoiser(object())
    with pytest.raises(ValueError, match="weights must be"):
        bases_denoiser(model.bases, [1.0, -1.0, 1.0])


# --------------------------------------------------------------------------- empirical denoiser
def test_empirical_matches_direct_mixture_and_chunks(rng):
    X = rng.standard_normal((30, 6))
    x = rng.standard_normal((4, 7, 6)) * 2
    s, sg = 0.7, rng.uniform(0.3, 2.0, size=(4, 7))
    d2 = ((x[..., None, :] - s * X) ** 2).sum(-1)  # (4, 7, 30)
    logw = -d2 / (2 * s**2 * sg[..., None] ** 2)
    w = np.exp(logw - logw.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    expected = w @ X
    out = empirical_posterior_mean(X, x, s, sg)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    out_small = empirical_posterior_mean(X, x, s, sg, chunk_elements=31)
    np.testing.assert_allclose(out_small, expected, rtol=1e-10, atol=1e-12)
    out_t = EmpiricalDenoiser(X)(torch.as_tensor(x, dtype=torch.float32), s, torch.as_tensor(sg))
    assert out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_empirical_extreme_sigma_finite(rng):
    X = rng.standard_normal((10, 4))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    tiny = empirical_posterior_mean(X, x, 1.0, 1e-6)
    assert np.all(np.isfinite(tiny)) and tiny.dtype == np.float32
    # nearest training point at tiny sigma
    nearest = X[np.argmin(((x[:, None] - X) ** 2).sum(-1), 1)]
    np.testing.assert_allclose(tiny, nearest, rtol=1e-6, atol=1e-6)
    huge = empirical_posterior_mean(X, x, 1.0, 1e6)
    np.testing.assert_allclose(huge, np.broadcast_to(X.mean(0), (3, 4)), rtol=1e-5, atol=1e-5)


def test_empirical_sampling_reproduces_training_points(rng):
    m = MoLRG.random(8, [2, 2], random_state=4)
    X, _ = m.sample(16, random_state=5)
    G = sample(empirical_denoiser(X), (200, 8), random_state=6, backend="numpy")
    dist = np.sqrt(((G[:, None] - X) ** 2).sum(-1)).min(1)
    assert np.max(dist) < 1e-6


def test_empirical_invalid():
    with pytest.raises(ValueError, match="x_t must have shape"):
        empirical_posterior_mean(np.zeros((3, 4)), np.zeros((2, 5)), 1.0, 1.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        empirical_posterior_mean(np.zeros((3, 4)), np.zeros((2, 4)), 1.0, 0.0)
    with pytest.raises(ValueError, match="X_train must have 2 axes"):
        EmpiricalDenoiser(np.zeros(4))


# --------------------------------------------------------------------------- MLP denoiser
def test_mlp_shapes_preconditioning_and_members():
    net = MLPDenoiser(5, width=16, depth=2, n_models=3, sigma_data=[0.5, 1.0, 2.0], random_state=0)
    x = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(1))
    y = net(x, 1.0, 0.3)
    assert y.shape == (3, 7, 5)
    for e in range(3):
        torch.testing.assert_close(net.member(e)(x[e], 1.0, 0.3), y[e], rtol=1e-5, atol=1e-6)
    # scale: D(s x, s, sigma) == D(x, 1, sigma)
    torch.testing.assert_close(net(2.0 * x, 2.0, 0.3), y, rtol=1e-5, atol=1e-6)
    # EDM preconditioning: at tiny sigma the denoiser is (nearly) the identity
    torch.testing.assert_close(net(x, 1.0, 1e-7), x, rtol=1e-5, atol=1e-5)
    a = MLPDenoiser(5, width=8, random_state=3)
    b = MLPDenoiser(5, width=8, random_state=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match=r"x must have shape \(3, \.\.\., 5\)"):
        net(torch.zeros(2, 4, 5), 1.0, 1.0)
    with pytest.raises(ValueError, match="sigma_data must be positive"):
        MLPDenoiser(5, sigma_data=0.0)
    with pytest.raises(ValueError, match="width must be in"):
        MLPDenoiser(5, width=0)


def test_mlp_training_reduces_loss_and_is_seeded(rng):
    X = MoLRG.random(6, [2], random_state=0).sample(32, random_state=1)[0]
    r1 = train_mlp_denoiser([X, X[:4]], width=32, depth=2, steps=150, batch_size=32, random_state=5)
    r2 = train_mlp_denoiser([X, X[:4]], width=32, depth=2, steps=150, batch_size=32, random_state=5)
    np.testing.assert_array_equal(r1.losses, r2.losses)
    assert r1.losses.shape == (150, 2)
    assert np.all(r1.losses[-30:].mean(0) < r1.losses[:30].mean(0))
    # the trained network denoises its training set better than the untrained one
    g = torch.Generator().manual_seed(9)
    x0 = torch.as_tensor(X, dtype=torch.float32)
    xt = x0 + 0.5 * torch.randn(x0.shape, generator=g)
    untrained = MLPDenoiser(6, width=32, depth=2, sigma_data=r1.model.sigma_data[0].item(), random_state=5)
    err_trained = ((r1.denoiser(0)(xt, 1.0, 0.5) - x0) ** 2).mean().item()
    err_untrained = ((untrained(xt, 1.0, 0.5) - x0) ** 2).mean().item()
    assert err_trained < 0.8 * err_untrained
    with pytest.raises(ValueError, match="steps must be in"):
        train_mlp_denoiser(X, steps=0)
    with pytest.raises(ValueError, match=r"X\[1\] has 5 columns"):
        train_mlp_denoiser([X, np.zeros((3, 5))], steps=1)
