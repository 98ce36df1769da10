"""Denoiser parameterizations single / softmax / hardmax (SPEC A4)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from molrg import MoLRG, posterior_mean
from molrg.denoisers import HardmaxDAE, SingleDAE, SoftmaxDAE, make_denoiser
from molrg.utils import random_orthonormal


def _stack(B, n, dims, seed):
    rng = np.random.default_rng(seed)
    return [random_orthonormal(n, d, size=(B,), random_state=rng) for d in dims]


def _inputs(B, M, n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, M, n, generator=g, dtype=dtype)
    s = 0.2 + torch.rand(B, M, generator=g, dtype=dtype)
    sg = torch.exp(3 * torch.randn(B, M, generator=g, dtype=dtype) - 1)  # sigma spread over ~1e-4..1e3
    return x, s, sg


def test_single_matches_formula():
    B, M, n, d = 3, 7, 9, 2
    (U,) = _stack(B, n, [d], 0)
    x, s, sg = _inputs(B, M, n, 1)
    out = SingleDAE(U)(x, s, sg).detach().numpy()
    c = 1.0 / (1.0 + sg.numpy() ** 2)
    ref = np.einsum("bij,bmj->bmi", U @ np.swapaxes(U, 1, 2), x.numpy()) * (c / s.numpy())[..., None]
    assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dims", [(2, 2, 2), (1, 3), (3,)])
def test_softmax_is_the_model_posterior_mean(dims):
    """Softmax DAE (eq. 9) = SPEC A3 posterior mean of the MoLRG with those bases, per problem."""
    B, M, n = 3, 6, 10
    bases = _stack(B, n, dims, 2)
    weights = np.arange(1, len(dims) + 1, dtype=float)
    weights /= weights.sum()
    x, s, sg = _inputs(B, M, n, 3)
    out = SoftmaxDAE(bases, weights=weights)(x, s, sg).detach().numpy()
    for b in range(B):
        model = MoLRG([U[b] for U in bases], weights)
        ref = posterior_mean(model, x[b].numpy(), s[b].numpy(), sg[b].numpy())
        assert_allclose(out[b], ref, rtol=1e-10, atol=1e-12)


def test_softmax_with_one_component_equals_single():
    (U,) = _stack(2, 8, [3], 4)
    x, s, sg = _inputs(2, 5, 8, 5)
    assert_allclose(SoftmaxDAE(U)(x, s, sg).detach().numpy(), SingleDAE(U)(x, s, sg).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_hardmax_matches_formula_and_blocks_gradient():
    B, M, n, dims = 2, 40, 12, (3, 3)
    bases = _stack(B, n, dims, 6)
    x0, _, _ = _inputs(B, M, n, 7)
    x_t, s, sg = _inputs(B, M, n, 8)
    dae = HardmaxDAE(bases)
    out = dae(x_t, s, sg, x0=x0)
    X0, Xt = x0.numpy(), x_t.numpy()
    energies = np.stack([((X0 @ U) ** 2).sum(-1) for U in bases], -1)
    j = energies.argmax(-1)
    assert 0 < j.mean() < 1  # both components used
    ref = np.empty_like(Xt)
    for b in range(B):
        for m in range(M):
            U = bases[j[b, m]][b]
            c = 1.0 / (1.0 + sg[b, m].item() ** 2)
            ref[b, m] = c / s[b, m].item() * U @ (U.T @ Xt[b, m])
    assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    # a component that wins no sample gets exactly zero gradient (argmax not differentiated)
    x0_only0 = torch.as_tensor(np.einsum("bij,bmj->bmi", bases[0], np.random.default_rng(9).standard_normal((B, M, 3))))
    loss = ((dae(x_t, s, sg, x0=x0_only0) - x0_only0) ** 2).sum()
    (g,) = torch.autograd.grad(loss, dae.U)
    assert torch.all(g[..., 3:] == 0)
    assert torch.linalg.norm(g[..., :3]) > 1e-3


def test_hardmax_unequal_dims_uses_expected_logits():
    """j maximizes log pi_k + (||U_k^T x0||^2 + sigma^2 d_k) / (2 sigma^2 (1 + sigma^2)) - d_k/2 log(1 + 1/sigma^2)."""
    B, M, n, dims = 2, 30, 10, (1, 4)
    bases = _stack(B, n, dims, 10)
    x0, _, _ = _inputs(B, M, n, 11)
    sg = torch.full((B, M), 0.3, dtype=torch.float64)
    j = HardmaxDAE(bases).assignments(x0, sigma=sg).numpy()
    E = np.stack([((x0.numpy() @ U) ** 2).sum(-1) for U in bases], -1)
    v, d = 0.09, np.array(dims, float)
    logits = np.log(0.5) + (E + v * d) / (2 * v * (1 + v)) - 0.5 * d * np.log1p(1 / v)
    assert_allclose(j, logits.argmax(-1))
    assert np.any(j != E.argmax(-1))  # the dimension term matters here


def test_float32_stays_float32_and_unbatched_call():
    (U,) = _stack(1, 6, [2], 12)
    dae = make_denoiser("softmax", U[0].astype(np.float32))
    assert dae.U.dtype == torch.float32 and dae.U.shape == (1, 6, 2)
    x = torch.randn(5, 6)
    out = dae(x, 1.0, torch.full((5,), 1e-6))
    assert out.shape == (5, 6) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out = make_denoiser("hardmax", U[0].astype(np.float32))(x, 1.0, 1e6, x0=x)
    assert out.shape == (5, 6) and torch.isfinite(out).all()


@pytest.mark.parametrize("dims", [(3, 3), (2, 4)])
def test_retractions_orthonormalize_and_agree_on_subspaces(dims):
    rng = np.random.default_rng(13)
    A = rng.standard_normal((4, 15, sum(dims)))
    Q = make_denoiser("softmax", A, dims).retract_("qr")
    P = make_denoiser("softmax", A, dims).retract_("polar")
    for dq, dp in zip(Q.bases(), P.bases()):
        dq, dp = dq.detach().numpy(), dp.detach().numpy()
        assert_allclose(np.swapaxes(dq, 1, 2) @ dq, np.broadcast_to(np.eye(dq.shape[-1]), (4,) + (dq.shape[-1],) * 2), atol=1e-12)
        assert_allclose(dq @ np.swapaxes(dq, 1, 2), dp @ np.swapaxes(dp, 1, 2), atol=1e-10)


def test_bad_input():
    (U,) = _stack(2, 6, [4], 14)
    with pytest.raises(ValueError, match="parameterization must be one of"):
        make_denoiser("maxsoft", U)
    with pytest.raises(ValueError, match="'single' needs K = 1"):
        make_denoiser("single", U, dims=(2, 2))
    with pytest.raises(ValueError, match="dims must sum"):
        make_denoiser("softmax", U, dims=(2, 3))
    dae = make_denoiser("hardmax", U, dims=(2, 2))
    with pytest.raises(ValueError, match="x0"):
        dae(torch.randn(2, 3, 6, dtype=torch.float64), 1.0, 1.0)
    with pytest.raises(ValueError, match="x_t must have shape"):
        dae(torch.randn(2, 3, 5, dtype=torch.float64), 1.0, 1.0, x0=torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="weights"):
        make_denoiser("softmax", U, dims=(2, 2), weights=[0.7, 0.7])
