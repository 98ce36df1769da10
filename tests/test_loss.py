"""Training loss (SPEC A5): Monte Carlo against the closed form A - (B/N) objective."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from molrg import MoLRG
from molrg.denoisers import make_denoiser
from molrg.loss import closed_form_loss, expected_sample_loss, loss_coefficients, mc_loss
from molrg.utils import random_orthonormal


def test_eps_expectation_identity_by_monte_carlo():
    """E||c P (x + sigma eps) - x||^2 = ||x||^2 - (2c - c^2)||U^T x||^2 + c^2 sigma^2 d."""
    rng = np.random.default_rng(0)
    n, d, R = 7, 3, 200_000
    U = random_orthonormal(n, d, random_state=rng)
    x = rng.standard_normal(n)
    for c, sigma in [(0.3, 1.5), (0.9, 0.2), (0.05, 10.0)]:
        eps = rng.standard_normal((R, n))
        vals = (((x + sigma * eps) @ U @ U.T) * c - x) ** 2
        vals = vals.sum(-1)
        exact = expected_sample_loss(x, U, c, sigma)
        assert abs(vals.mean() - exact) < 4 * vals.std() / np.sqrt(R)
        # and the formula is not trivially satisfied: dropping the noise term breaks it
        assert abs(vals.mean() - (exact - c * c * sigma * sigma * d)) > 8 * vals.std() / np.sqrt(R)


def _data(B, N, n, dims, seed):
    Xs = [MoLRG.random(n, dims, noise_std=0.1, random_state=seed + b).sample(N, random_state=seed + 100 + b)[0] for b in range(B)]
    return np.stack(Xs)


@pytest.mark.parametrize(
    "parameterization, dims, kw",
    [
        ("single", (3,), dict(schedule="vp", weighting="uniform")),
        ("single", (3,), dict(schedule="ve", T=10, weighting="snr")),
        ("hardmax", (2, 2), dict(schedule="vp", weighting="uniform")),
        ("hardmax", (2, 2), dict(schedule="edm", T=25, t_range=(0.01, 3.0), weighting="uniform")),
        ("hardmax", (3, 3), dict(schedule="vp", T=50, weighting=lambda t: 1.0 + t)),
    ],
)
def test_monte_carlo_matches_closed_form(parameterization, dims, kw):
    B, N, n = 3, 15, 8
    X = _data(B, N, n, dims, 10)
    rng = np.random.default_rng(1)
    bases = [random_orthonormal(n, d, size=(B,), random_state=rng) for d in dims]
    dae = make_denoiser(parameterization, bases, dtype=torch.float64)
    mc, se = mc_loss(dae, X, n_draws=400, random_state=2, **kw)
    cf = closed_form_loss(X, bases, parameterization=parameterization, **kw)
    assert np.all(se > 0) and np.all(se < 0.1 * np.abs(cf))
    assert np.all(np.abs(mc - cf) < 4 * se), (mc, cf, se)
    # the objective term matters: other bases give a closed form outside the error bars
    other = [random_orthonormal(n, d, size=(B,), random_state=rng) for d in dims]
    cf_other = closed_form_loss(X, other, parameterization=parameterization, **kw)
    assert np.any(np.abs(mc - cf_other) > 4 * se)


def test_mask_matches_unpadded_problem():
    X = _data(2, 12, 6, (2,), 20)
    mask = np.ones((2, 12), dtype=bool)
    mask[1, 7:] = False
    Xp = X.copy()
    Xp[1, 7:] = 1e3  # padding must not matter
    U = random_orthonormal(6, 2, size=(2,), random_state=3)
    full = closed_form_loss(Xp, U, parameterization="single", mask=mask)
    alone = closed_form_loss(X[1, :7], U[1], parameterization="single")
    assert_allclose(full[1], alone, rtol=1e-12)
    dae = make_denoiser("single", U, dtype=torch.float64)
    mc, se = mc_loss(dae, Xp, mask=mask, n_draws=300, random_state=4)
    assert abs(mc[1] - alone) < 4 * se[1]


def test_coefficients_grid_converges_to_quadrature():
    for sched, w in [("vp", "uniform"), ("vp", "snr"), ("ve", "edm")]:
        q = loss_coefficients(sched, weighting=w)
        g = loss_coefficients(sched, weighting=w, T=200_001)
        assert q.method == "quad" and g.method == "grid"
        assert q.gain > 0
        assert_allclose([g.lam, g.noise, g.gain], [q.lam, q.noise, q.gain], rtol=2e-3)


def test_solvers_beat_random_bases():
    """PCA (K = 1) and K-subspaces (K = 2) bases have a lower closed-form loss than 100 random bases."""
    from molrg.solvers import KSubspaces, pca_subspace

    n = 20
    model = MoLRG.random(n, [3], noise_std=0.05, random_state=5)
    X = model.sample(30, random_state=6)[0]
    U = pca_subspace(X, 3)
    rand = random_orthonormal(n, 3, size=(100,), random_state=7)
    best = closed_form_loss(X, U, parameterization="single")
    others = closed_form_loss(np.broadcast_to(X, (100,) + X.shape), rand, parameterization="single")
    assert best < others.min()

    model = MoLRG.random(n, [3, 3], noise_std=0.05, random_state=8)
    X = model.sample(60, random_state=9)[0]
    kss = KSubspaces([3, 3], random_state=10).fit(X)
    best = closed_form_loss(X, list(kss.bases_), parameterization="hardmax")
    rand = [random_orthonormal(n, 3, size=(100,), random_state=s) for s in (11, 12)]
    others = closed_form_loss(np.broadcast_to(X, (100,) + X.shape), rand, parameterization="hardmax")
    assert best < others.min()


def test_bad_input():
    U = random_orthonormal(5, 2, random_state=0)
    X = np.random.default_rng(0).standard_normal((4, 5))
    with pytest.raises(ValueError, match="weighting must be one of"):
        loss_coefficients("vp", weighting="likelihood")
    with pytest.raises(ValueError, match="t_range"):
        loss_coefficients("vp", t_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="t_range must give sigma"):
        loss_coefficients("vp", t_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="schedule must be one of"):
        loss_coefficients("cosine")
    with pytest.raises(ValueError, match="equal dims"):
        closed_form_loss(X, [U, U[:, :1]], parameterization="hardmax")
    with pytest.raises(ValueError, match="parameterization must be 'single' or 'hardmax'"):
        closed_form_loss(X, U, parameterization="softmax")
    with pytest.raises(ValueError, match="T must be in"):
        loss_coefficients("vp", T=0)
    with pytest.raises(ValueError, match="mask must keep"):
        closed_form_loss(X, U, parameterization="single", mask=np.zeros(4, bool))


@pytest.mark.parametrize("parameterization, dims", [("single", (3,)), ("hardmax", (2, 2)), ("hardmax", (1, 3)),
                                                   ("softmax", (2, 2)), ("softmax", (1, 3)), ("softmax", (4,))])
def test_hand_written_gradient_equals_autograd(parameterization, dims):
    """The SGD kernel (all three DAEs, softmax through its weights too) returns the autograd gradient of the MC loss."""
    from molrg.loss import _loss_and_grad_bases, _loss_terms, get_weighting
    from molrg.schedules import get_schedule

    sched = get_schedule("vp")
    lam = get_weighting("snr", sched)
    rng = np.random.default_rng(30)
    U = np.concatenate([random_orthonormal(9, d, size=(4,), random_state=rng) for d in dims], -1)
    dae = make_denoiser(parameterization, U, dims)
    g = torch.Generator().manual_seed(31)
    x0, eps = torch.randn(2, 4, 6, 9, generator=g, dtype=torch.float64)
    t = 1e-3 + torch.rand(4, 6, generator=g, dtype=torch.float64)
    loss, G = _loss_and_grad_bases(dae, x0, t, eps, sched, lam)
    ref = _loss_terms(dae, x0, t, eps, sched, lam).mean(-1)
    (G_ref,) = torch.autograd.grad(ref.sum(), dae.U)
    assert_allclose(loss.numpy(), ref.detach().numpy(), rtol=1e-12)
    assert_allclose(G.numpy(), G_ref.numpy(), rtol=1e-10, atol=1e-12 * G_ref.abs().max().item())


@pytest.mark.parametrize("parameterization, dims", [("single", (3,)), ("hardmax", (2, 2))])
def test_expected_gradient_equals_autograd_of_the_closed_form(parameterization, dims):
    """The exact (eps- and t-averaged) kernel of the SGD's closed-form modes: loss = closed_form_loss, gradient = autograd."""
    from molrg.loss import _expected_loss_and_grad

    rng = np.random.default_rng(40)
    B, N, n = 3, 11, 9
    X = _data(B, N, n, dims, 41)
    mask = rng.random((B, N)) < 0.8
    mask[:, 0] = True
    bases = [random_orthonormal(n, d, size=(B,), random_state=rng) for d in dims]
    dae = make_denoiser(parameterization, bases, dtype=torch.float64)
    coef = loss_coefficients("vp", weighting="snr")
    x0 = torch.as_tensor(X * mask[..., None])
    w = torch.as_tensor(mask / mask.sum(-1, keepdims=True))
    loss, G = _expected_loss_and_grad(dae, x0, w, (x0 * x0).sum(-1), coef)
    assert_allclose(loss.numpy(), closed_form_loss(X, bases, parameterization=parameterization, mask=mask, coefficients=coef), rtol=1e-12)
    U = dae.U.detach().clone().requires_grad_(True)
    Z = x0 @ U
    if parameterization == "hardmax":
        Z = Z * dae.column_mask(x0)
    ref = (w * (coef.lam * (x0 * x0).sum(-1) + coef.noise * dims[0] - coef.gain * (Z * Z).sum(-1))).sum(-1)
    (G_ref,) = torch.autograd.grad(ref.sum(), U)
    assert_allclose(G.numpy(), G_ref.numpy(), rtol=1e-12, atol=1e-14)
