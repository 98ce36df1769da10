"""Jacobian of denoisers and its numerical rank (molrg.jacobian; SPEC A9, paper Lemma 2)."""

import numpy as np
import pytest
import torch

from molrg import MoLRG
from molrg.jacobian import denoiser_jacobian, numerical_rank, rank_along_trajectory
from molrg.mlp import MLPDenoiser
from molrg.sampling import closed_form_denoiser, empirical_denoiser


@pytest.fixture(scope="module")
def model():
    return MoLRG.random(24, [3, 5, 4], weights=[0.3, 0.3, 0.4], random_state=7)


def _finite_difference(D, x, sigma, h=1e-6):
    n = x.shape[-1]
    cols = []
    for b in range(n):
        e = torch.zeros(n, dtype=x.dtype)
        e[b] = h
        cols.append((D(x + e, 1.0, sigma) - D(x - e, 1.0, sigma)) / (2 * h))
    return torch.stack(cols, -1)


@pytest.mark.parametrize("which", ["closed_form", "empirical", "mlp"])
def test_jacobian_matches_finite_differences_and_methods_agree(model, which):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 24, generator=g, dtype=torch.float64) * 1.5
    if which == "closed_form":
        D = closed_form_denoiser(model)
    elif which == "empirical":
        D = empirical_denoiser(model.sample(15, random_state=1)[0])
    else:
        D = MLPDenoiser(24, width=16, depth=2, random_state=2, dtype=torch.float64)
    J = denoiser_jacobian(D, x, 1.0, 0.8)
    assert J.shape == (4, 24, 24) and J.dtype == torch.float64
    torch.testing.assert_close(J, _finite_difference(D, x, 0.8), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(J, denoiser_jacobian(D, x, 1.0, 0.8, method="vmap"), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(J, denoiser_jacobian(D, x, 1.0, 0.8, method="rowsum"), rtol=1e-10, atol=1e-12)


def test_jacobian_per_point_sigma_and_batch_axes(model):
    D = closed_form_denoiser(model)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 24, generator=g, dtype=torch.float64)
    sig = torch.tensor([[0.1, 1.0, 10.0], [0.5, 2.0, 0.05]], dtype=torch.float64)
    J = denoiser_jacobian(D, x, 1.0, sig)
    assert J.shape == (2, 3, 24, 24)
    for i in range(2):
        for j in range(3):
            Jij = denoiser_jacobian(D, x[i, j][None], 1.0, float(sig[i, j]), method="vmap")[0]
            torch.testing.assert_close(J[i, j], Jij, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(J, denoiser_jacobian(D, x, 1.0, sig.numpy(), method="rowsum"), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(J, denoiser_jacobian(D, x, 1.0, sig.numpy()), rtol=0, atol=0)  # numpy sigma
    with pytest.raises(ValueError, match="method='vmap' needs scalar"):
        denoiser_jacobian(D, x, 1.0, sig, method="vmap")
    with pytest.raises(ValueError, match="method must be one of"):
        denoiser_jacobian(D, x, 1.0, 1.0, method="forward")


def test_numerical_rank_threshold():
    J = np.diag([2.0, 1.0, 1e-2, 1.9e-3, 1e-9])
    assert numerical_rank(J, method="threshold") == 3  # 1.9e-3 < 1e-3 * 2
    assert numerical_rank(J, method="threshold", rtol=1e-4) == 4
    Jt = torch.as_tensor(np.stack([J, np.zeros((5, 5))]))
    assert numerical_rank(Jt, method="threshold").tolist() == [3, 0]
    with pytest.raises(ValueError, match=r"rtol must be finite and in \(0.0, 1.0\)"):
        numerical_rank(J, method="threshold", rtol=0.0)
    with pytest.raises(ValueError, match="J must have at least 2 axes"):
        numerical_rank(np.ones(3))
    with pytest.raises(ValueError, match="method must be one of"):
        numerical_rank(J, method="rtol")


def test_numerical_rank_energy_is_eq46():
    # paper eq. 46: smallest r with sqrt(cumsum(s^2))[r] > 0.99 ||s||_2
    rng = np.random.default_rng(0)
    J = rng.standard_normal((6, 9, 9)) * np.logspace(0, -3, 9)  # decaying columns
    s = np.linalg.svd(J, compute_uv=False)
    for tau in (0.5, 0.9, 0.99):
        ref = [1 + int(np.argmax(np.sqrt(np.cumsum(si**2)) > tau * np.linalg.norm(si))) for si in s]
        np.testing.assert_array_equal(numerical_rank(J, threshold=tau), ref)
    assert numerical_rank(np.diag([2.0, 1.0, 1e-2, 1.9e-3, 1e-9])) == 2  # 2 of 5 hold 99% of the norm
    assert numerical_rank(np.eye(7)) == 7  # flat spectrum: every direction
    assert numerical_rank(np.eye(7), threshold=0.5) == 2  # sqrt(2) > 0.5 sqrt(7) > 1
    assert numerical_rank(np.zeros((2, 4, 4))).tolist() == [0, 0]
    assert numerical_rank(torch.as_tensor(J)).tolist() == numerical_rank(J).tolist()
    with pytest.raises(ValueError, match=r"threshold must be finite and in \(0.0, 1.0\)"):
        numerical_rank(J, threshold=1.0)


def test_lemma2_closed_form_rank_along_trajectories(model):
    """rank <= sum_k d_k at every SNR of the grid; rank d_k of the nearest component at high SNR."""
    traj = rank_along_trajectory(closed_form_denoiser(model), n=24, n_samples=24, random_state=4)
    bound = sum(model.dims)
    assert traj.ranks.shape == (18, 24)
    assert traj.ranks.max() <= bound
    assert traj.ranks[0].min() == bound  # low SNR: weights near uniform, every subspace seen
    X = traj.samples
    res = np.stack([np.linalg.norm(X - (X @ U) @ U.T, axis=1) for U in model.bases], 1)
    nearest = np.asarray(model.dims)[res.argmin(1)]
    np.testing.assert_array_equal(traj.ranks[-1], nearest)
    np.testing.assert_allclose(traj.snr, 1.0 / traj.sigma)
    assert traj.rank_ratio[-1] == pytest.approx(nearest.mean() / 24)
    # high SNR at points near the data (not only trajectory end points)
    Xd, labels = model.sample(30, random_state=5)
    g = np.random.default_rng(6)
    for sigma in (1e-3, 1e-2):
        xt = torch.as_tensor(Xd + sigma * g.standard_normal(Xd.shape))
        r = numerical_rank(denoiser_jacobian(closed_form_denoiser(model), xt, 1.0, sigma))
        np.testing.assert_array_equal(r, np.asarray(model.dims)[labels])


def test_lemma2_holds_on_random_points_all_snr(model):
    D = closed_form_denoiser(model)
    g = torch.Generator().manual_seed(8)
    for sigma in np.logspace(-3, 3, 13):
        x = torch.randn(20, 24, generator=g, dtype=torch.float64) * np.sqrt(1 + sigma**2)
        assert numerical_rank(denoiser_jacobian(D, x, 1.0, float(sigma))).max() <= sum(model.dims)


def test_empirical_denoiser_rank_collapses_at_high_snr():
    m = MoLRG.random(10, [2, 2], random_state=0)
    X, _ = m.sample(12, random_state=1)
    traj = rank_along_trajectory(empirical_denoiser(X), n=10, n_samples=8, random_state=2)
    # range within the span of differences of training points: rank <= N - 1
    assert traj.ranks.max() <= min(10, 12 - 1)
    assert np.median(traj.ranks[-1]) == 0  # memorizing: locally constant near a training point
    # near a training point the Jacobian (w-covariance of the training points / sigma^2) vanishes
    xt = torch.as_tensor(X + 1e-4 * np.random.default_rng(3).standard_normal(X.shape))
    J = denoiser_jacobian(empirical_denoiser(X), xt, 1.0, 1e-3)
    assert torch.linalg.matrix_norm(J, ord=2).max() < 1e-6


@pytest.mark.parametrize("sigma", [0.01, 1.0, 30.0, "per-row"])
def test_mlp_member_jacobian_matches_jacrev(sigma):
    """The MLP members' written-out Jacobian against torch.func.jacrev of the same network (the rowsum path)."""
    net = MLPDenoiser(6, width=32, depth=3, n_models=3, sigma_data=[0.5, 1.0, 2.0], random_state=0)
    member = net.member(1)
    x = torch.randn(2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sig = torch.rand(2, 5, dtype=torch.float64) + 0.1 if sigma == "per-row" else sigma
    J = denoiser_jacobian(member, x, 1.3, sig)
    ref = denoiser_jacobian(member, x, 1.3, sig, method="rowsum")  # jacrev
    assert J.shape == (2, 5, 6, 6) and J.dtype == torch.float64
    torch.testing.assert_close(J, ref, rtol=1e-5, atol=1e-6)
    # an ensemble (leading network axis) through the replicated batch, against jacrev
    xe = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(1))
    Je = denoiser_jacobian(net, xe, 1.0, 0.7)
    assert Je.shape == (3, 4, 6, 6)
    torch.testing.assert_close(Je, denoiser_jacobian(net, xe, 1.0, 0.7, method="rowsum"), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(Je[1], denoiser_jacobian(member, xe[1], 1.0, 0.7), rtol=1e-5, atol=1e-6)
