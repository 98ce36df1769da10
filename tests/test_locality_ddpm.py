"""Localized DDPM with the DSM-optimal linear score (SPEC B4, paper section 4.1.2, figure 2)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from locality import (
    DDPMSchedule,
    LinearScore,
    ar1_covariance,
    band_mask,
    dsm_precision,
    empirical_covariance,
    entrywise_error,
    generated_covariance,
    relative_covariance_error,
    sample_backward,
    tradeoff_curve,
)


def _naive_propagation(score):
    """C <- B C B^T + beta I from C = I, one step at a time (the SPEC B4 recursion, written directly)."""
    sch = score.schedule
    d = score.d
    C = np.eye(d)
    for k in range(sch.T - 1, -1, -1):
        B = (np.eye(d) - sch.betas[k] * score.matrix(k)) / np.sqrt(sch.alphas[k])
        C = B @ C @ B.T + sch.betas[k] * np.eye(d)
    return C


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    S = ar1_covariance(10)
    X = rng.standard_normal((8, 10)) @ np.linalg.cholesky(S).T  # N < d: singular Sigma_hat
    return S, empirical_covariance(X), DDPMSchedule(T=60)


def test_empirical_covariance_and_dsm_precision(small):
    S, Sh, sch = small
    assert np.linalg.matrix_rank(Sh) == 8
    a = np.array(sch.alpha_bars[[0, 30, 59]])
    P = dsm_precision(Sh, a)
    for Pk, ak in zip(P, a):
        assert_allclose(Pk, np.linalg.inv(ak * Sh + (1 - ak) * np.eye(10)), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="N \\(the number of samples"):
        empirical_covariance(np.ones((1, 10)))


def test_score_matrices(small):
    S, Sh, sch = small
    k = 30
    ak = sch.alpha_bars[k]
    A = ak * Sh + (1 - ak) * np.eye(10)
    full = np.linalg.inv(A)
    assert_allclose(LinearScore(Sh, schedule=sch).matrix(k), full, rtol=1e-10, atol=1e-10)
    assert_allclose(LinearScore(Sh, schedule=sch, method="truncate", r=2).matrix(k), full * band_mask(10, 2),
                    rtol=1e-10, atol=1e-10)
    M = LinearScore(Sh, schedule=sch, method="marginal", r=2).matrix(k)
    assert_allclose(M[5, 3:8], np.linalg.inv(A[3:8, 3:8])[2], rtol=1e-10, atol=1e-10)
    assert_allclose(M[1, 0:4], np.linalg.inv(A[0:4, 0:4])[1], rtol=1e-10, atol=1e-10)
    assert np.all(M[~band_mask(10, 2)] == 0)
    assert_allclose(LinearScore(Sh, schedule=sch, method="marginal", r=9).matrix(k), full, rtol=1e-10, atol=1e-10)
    chunk = LinearScore(Sh, schedule=sch, method="marginal", r=2).matrices(20, 40)
    assert_allclose(chunk[10], M, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method, r", [("none", None), ("truncate", 1), ("marginal", 3)])
def test_exact_propagation_matches_naive_recursion(small, method, r):
    S, Sh, sch = small
    score = LinearScore(np.stack([Sh, S]), schedule=sch, method=method, r=r)
    C = generated_covariance(score, chunk=7)
    for j, sig in enumerate((Sh, S)):
        one = LinearScore(sig, schedule=sch, method=method, r=r)
        assert_allclose(C[j], _naive_propagation(one), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method, r", [("truncate", 1), ("marginal", 3), ("truncate", 5)])
def test_single_precision_propagation_matches_naive_recursion(small, method, r):
    """dtype=float32 (the experiments' path, issue 16): the same recursion, rounding-level difference only."""
    S, Sh, sch = small
    score = LinearScore(np.stack([Sh, S]), schedule=sch, method=method, r=r)
    C = generated_covariance(score, chunk=7, dtype=np.float32)
    assert C.dtype == np.float64 and C.shape == (2, 10, 10)
    for j, sig in enumerate((Sh, S)):
        ref = _naive_propagation(LinearScore(sig, schedule=sch, method=method, r=r))
        assert_allclose(C[j], ref, rtol=0, atol=2e-5)
        # the localization is visible at this tolerance: the non-localized sampler differs by far more
        assert np.abs(_naive_propagation(LinearScore(sig, schedule=sch)) - ref).max() > 1e-3
    with pytest.raises(ValueError, match="dtype must be"):
        generated_covariance(score, dtype=np.int64)


@pytest.mark.parametrize("method, r", [("truncate", 1), ("truncate", 3), ("truncate", 6), ("marginal", 2), ("marginal", 4),
                                       ("marginal", 7)])
def test_single_precision_kernel_in_double_matches_naive_recursion(small, method, r):
    """The float32 kernel's algorithm (row factors, in-place band buffer, Psi^T slots, G^T G), run in float64.

    d = 10: r < 5 uses the centred band layout, r >= 5 the dense-column one; chunk 7 does not divide T = 60.
    """
    from locality.ddpm import _generated_covariance_single

    S, Sh, sch = small
    score = LinearScore(np.stack([Sh, S]), schedule=sch, method=method, r=r)
    C = _generated_covariance_single(score, 7, np.float64)
    for j, sig in enumerate((Sh, S)):
        assert_allclose(C[j], _naive_propagation(LinearScore(sig, schedule=sch, method=method, r=r)), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("method", ["truncate", "marginal"])
def test_radius_zero_is_the_diagonal_recursion(small, method):
    """r = 0: diagonal score matrices, closed-form scalar recursion (both dtypes) against the naive recursion."""
    S, Sh, sch = small
    score = LinearScore(np.stack([Sh, S]), schedule=sch, method=method, r=0)
    for dtype in (np.float64, np.float32):
        C = generated_covariance(score, dtype=dtype)
        for j, sig in enumerate((Sh, S)):
            assert_allclose(C[j], _naive_propagation(LinearScore(sig, schedule=sch, method=method, r=0)), rtol=1e-12, atol=1e-12)


def test_single_precision_accuracy_at_paper_scale():
    """d = 64, T = 1000 (the experiments' setting), singular and regular Sigma_hat: float32 within 2e-6 of float64.

    Measured (issue 16): max |C_32 - C_64| <= 8.7e-7 over both methods and r = 2 .. 32, N = 32 .. 128.
    """
    rng = np.random.default_rng(5)
    S = ar1_covariance(64)
    L = np.linalg.cholesky(S)
    Sh = np.stack([empirical_covariance(rng.standard_normal((N, 64)) @ L.T) for N in (32, 128)])
    for method, r in (("truncate", 4), ("marginal", 12), ("marginal", 40)):
        score = LinearScore(Sh, method=method, r=r)
        C64, C32 = generated_covariance(score), generated_covariance(score, dtype=np.float32)
        assert np.abs(C32 - C64).max() < 2e-6, (method, r)
        assert_allclose(relative_covariance_error(C32, S), relative_covariance_error(C64, S), rtol=1e-5)


def test_marginal_rows_with_shared_windows(small):
    """d = 10, r = 6: rows 3 .. 6 all have the window [0, 10) (one shared eigendecomposition)."""
    S, Sh, sch = small
    k = 17
    ak = sch.alpha_bars[k]
    A = ak * Sh + (1 - ak) * np.eye(10)
    M = LinearScore(Sh, schedule=sch, method="marginal", r=6).matrix(k)
    for i in range(10):
        lo, hi = max(0, i - 6), min(10, i + 7)
        assert_allclose(M[i, lo:hi], np.linalg.inv(A[lo:hi, lo:hi])[i - lo], rtol=1e-10, atol=1e-10)
        assert np.all(M[i, :lo] == 0) and np.all(M[i, hi:] == 0)


def test_nonlocalized_with_true_covariance_recovers_sigma():
    # DDPM discretization error, d = 64, T = 1000: measured 3.4e-3 relative (spectral norm).
    S = ar1_covariance(64)
    C = generated_covariance(LinearScore(S))
    err = relative_covariance_error(C, S)
    assert 1e-4 < err < 1e-2
    assert np.abs(entrywise_error(C, S)).max() < 1e-2
    # same for the marginal score at r >= d - 1 (it is the full score)
    assert_allclose(generated_covariance(LinearScore(S, method="marginal", r=63)), C, rtol=1e-12, atol=1e-12)


def test_sampled_covariance_matches_exact_within_monte_carlo(small):
    S, Sh, sch = small
    n = 20000
    for method, r in (("none", None), ("marginal", 2), ("truncate", 1)):
        score = LinearScore(Sh, schedule=sch, method=method, r=r)
        C = generated_covariance(score)
        X = sample_backward(score, n, random_state=11)
        emp = X.T @ X / n
        se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / n)
        z = np.abs(emp - C) / se
        assert z.max() < 5.0, (method, z.max())
    X1 = sample_backward(score, 10, random_state=4)
    assert_allclose(X1, sample_backward(score, 10, random_state=4))


def test_tradeoff_curve_shapes_and_limits():
    S = ar1_covariance(32)
    res = tradeoff_curve(S, 32, [0, 4, 31], method="marginal", n_draws=3, schedule=DDPMSchedule(T=200),
                         n_generated=50, random_state=0)
    assert res["exact"].shape == res["sampled"].shape == (3, 3)
    assert res["nonlocal"].shape == res["nonlocal_sampled"].shape == (3,)
    m = res["exact"].mean(0)
    assert m[0] > 0.8 and m[1] < m[0]  # r = 0 drops every correlation
    assert_allclose(res["exact"][:, 2], res["nonlocal"], rtol=1e-10)  # r >= d - 1 is the full score


def test_bad_inputs(small):
    S, Sh, sch = small
    with pytest.raises(ValueError, match="method must be one of"):
        LinearScore(Sh, method="band", r=1)
    with pytest.raises(ValueError, match="r must be given"):
        LinearScore(Sh, method="marginal")
    with pytest.raises(ValueError, match="r must be in"):
        LinearScore(Sh, method="truncate", r=-1)
    with pytest.raises(ValueError, match="Sigma_hat must be symmetric"):
        LinearScore(Sh + np.triu(np.ones((10, 10)), 1))
    with pytest.raises(ValueError, match="Sigma_hat must be positive semi-definite"):
        LinearScore(-S)
    with pytest.raises(ValueError, match="k must be in"):
        LinearScore(Sh, schedule=sch).matrix(60)
    with pytest.raises(ValueError, match="N must be in"):
        tradeoff_curve(S, 1, [1])
    with pytest.raises(ValueError, match="alpha_bar"):
        dsm_precision(Sh, 0.0)


@pytest.mark.parametrize("d, r", [(10, 0), (10, 2), (10, 6), (12, 11), (40, 25)])
def test_local_eigh_reconstructs_the_padded_blocks(d, r):
    """_local_eigh (per block size, shared windows, no padding) against window_blocks: V diag(mu) V^T and the spectra."""
    from locality.ddpm import _local_eigh
    from locality.localization import window_blocks

    X = np.random.default_rng(d + r).standard_normal((2, d, 2 * d))
    S = X @ np.swapaxes(X, 1, 2) / d
    mu, V = _local_eigh(S, r)
    B = window_blocks(S, r)
    assert_allclose((V * mu[..., None, :]) @ np.swapaxes(V, -1, -2), B, rtol=0, atol=1e-12)
    assert_allclose(np.swapaxes(V, -1, -2) @ V, np.broadcast_to(np.eye(B.shape[-1]), B.shape), rtol=0, atol=1e-12)
    assert_allclose(np.sort(mu, axis=-1), np.linalg.eigvalsh(B), rtol=0, atol=1e-12)


def test_localized_equals_a_fresh_score(small):
    """LinearScore.localized (Sigma_hat validated once, eigenpairs reused) gives the same matrices as a new score."""
    _, Sh, sch = small
    base = LinearScore(np.stack([Sh, Sh + 0.1 * np.eye(10)]), schedule=sch)
    for src in (base, base.localized("marginal", 3)):
        for method, r in (("none", None), ("truncate", 2), ("marginal", 3), ("marginal", 9), ("truncate", 0)):
            got = src.localized(method, r)
            ref = LinearScore(np.stack([Sh, Sh + 0.1 * np.eye(10)]), schedule=sch, method=method, r=r)
            assert (got.method, got.r, got.batch_shape) == (ref.method, ref.r, ref.batch_shape)
            np.testing.assert_array_equal(got.matrices(0, 60), ref.matrices(0, 60))
    with pytest.raises(ValueError, match="r must be given"):
        base.localized("marginal")


def test_psd_check_for_every_method(small):
    """The PSD check (eigvalsh, or the score's own eigh for 'none' / 'truncate') rejects the same inputs."""
    S, Sh, sch = small
    for method, r in (("none", None), ("truncate", 2), ("marginal", 2)):
        with pytest.raises(ValueError, match="Sigma_hat must be positive semi-definite"):
            LinearScore(Sh - 0.01 * np.eye(10), schedule=sch, method=method, r=r)
        with pytest.raises(ValueError, match="Sigma_hat must be symmetric"):
            LinearScore(Sh + np.triu(np.ones((10, 10)), 1), schedule=sch, method=method, r=r)
        with pytest.raises(ValueError, match="NaN or inf"):
            LinearScore(np.full((10, 10), np.nan), schedule=sch, method=method, r=r)
        LinearScore(Sh, schedule=sch, method=method, r=r)  # singular PSD (N < d) accepted
    mu, V = np.linalg.eigh(Sh)
    sc = LinearScore(Sh, schedule=sch)
    np.testing.assert_array_equal(sc._mu, mu)
    np.testing.assert_array_equal(sc._V, V)
