"""Validation at the public boundary (issue 12 item 6, SPEC Part C "Errors").

Every bad input of the issue's "Silent NaN" and "Errors that name nothing" bullets
that concerns the posterior, the score, the MoLRG model and the samplers is one case
below: a clear ``ValueError``/``TypeError`` naming the argument (and its shape or
range), never a NaN, an ``IndexError``, a bare broadcast error or a ComplexWarning.
"""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

import molrg.posterior as posterior_module
from molrg import (
    MoLRG,
    closed_form_denoiser,
    karras_sigmas,
    posterior_logits,
    posterior_mean,
    posterior_mean_from_bases,
    posterior_weights,
    sample,
    sample_ddpm,
    sample_euler,
    sample_heun,
    score,
)
from molrg._validation import check_array, check_batch, check_levels
from molrg.empirical import EmpiricalDenoiser
from molrg.schedules import VP

M = MoLRG.random(10, [2, 3], weights=[0.3, 0.7], random_state=0)
X = np.random.default_rng(1).standard_normal((4, 10))
SIG = karras_sigmas(4, append_zero=True)
D = closed_form_denoiser(M)
POSTERIOR = [posterior_mean, score, posterior_weights, posterior_logits]

# (label, call, exception, regex the message must match)
CASES = [
    # posterior mean / score / weights / logits (SPEC A3)
    ("scalar x_t", lambda f: f(M, 1.0, 1.0, 0.3), ValueError, r"x_t must have shape \(\.\.\., 10\).*got shape \(\)"),
    ("x_t wrong n", lambda f: f(M, X[:, :4], 1.0, 0.3), ValueError, r"x_t must have shape \(\.\.\., 10\).*got shape \(4, 4\)"),
    ("NaN in x_t", lambda f: f(M, np.where(X > 1, np.nan, X), 1.0, 0.3), ValueError, "x_t contains NaN or inf"),
    ("inf in x_t", lambda f: f(M, np.where(X > 1, np.inf, X), 1.0, 0.3), ValueError, "x_t contains NaN or inf"),
    ("torch NaN x_t", lambda f: f(M, torch.full((2, 10), float("nan")), 1.0, 0.3), ValueError, "x_t contains NaN or inf"),
    ("string x_t", lambda f: f(M, "abc", 1.0, 0.3), TypeError, "x_t must be an array of real numbers, got the string"),
    ("string entries x_t", lambda f: f(M, np.array([["1"] * 10]), 1.0, 0.3), TypeError, "x_t must hold real numbers, got strings"),
    ("complex x_t", lambda f: f(M, X + 1j, 1.0, 0.3), TypeError, "x_t must hold real numbers, got complex"),
    ("torch complex x_t", lambda f: f(M, torch.zeros(2, 10, dtype=torch.complex64), 1.0, 0.3), TypeError, "x_t must hold real numbers"),
    ("object x_t", lambda f: f(M, np.array([[None] * 10]), 1.0, 0.3), TypeError, "x_t must hold real numbers, got Python objects"),
    ("ragged x_t", lambda f: f(M, [[1.0] * 10, [1.0]], 1.0, 0.3), ValueError, "x_t must be a rectangular array"),
    ("string scale", lambda f: f(M, X, "1.0", 0.3), TypeError, "scale must be an array of real numbers"),
    ("string sigma", lambda f: f(M, X, 1.0, "0.3"), TypeError, "sigma must be an array of real numbers"),
    ("complex sigma", lambda f: f(M, X, 1.0, 0.3 + 0j), TypeError, "sigma must hold real numbers, got complex"),
    ("sigma wrong length", lambda f: f(M, X, 1.0, np.ones(5)), ValueError, r"sigma must be a scalar or an array over the leading axes of x_t, shape \(4,\).*got shape \(5,\)"),
    ("scale wrong shape", lambda f: f(M, X, np.ones((4, 10)), 0.3), ValueError, r"scale must be .*shape \(4,\).*got shape \(4, 10\)"),
    ("sigma zero", lambda f: f(M, X, 1.0, 0.0), ValueError, r"sigma must be positive \(in \(0, inf\)\), got 0.0"),
    ("scale negative", lambda f: f(M, X, -1.0, 0.3), ValueError, "scale must be positive"),
    ("sigma NaN", lambda f: f(M, X, 1.0, np.nan), ValueError, "sigma contains NaN or inf"),
    ("not a model", lambda f: f("M", X, 1.0, 0.3), TypeError, "model must be a MoLRG"),
]
MODEL_CASES = [
    ("n string", lambda: MoLRG.random("10", [2]), TypeError, "n must be an integer, got '10'"),
    ("dims string", lambda: MoLRG.random(10, "ab"), TypeError, "dims must be a positive int or a sequence"),
    ("dims too large", lambda: MoLRG.random(10, [11]), ValueError, r"dims\[0\] must be in \[1, 10\], got 11"),
    ("orthogonal sum too large", lambda: MoLRG.random(10, [6, 6]), ValueError, "sum\\(dims\\) <= n"),
    ("weights string", lambda: MoLRG.random(10, [2, 2], weights="ab"), TypeError, "weights must be an array of real numbers"),
    ("weights complex", lambda: MoLRG.random(10, [2, 2], weights=[0.5 + 0j, 0.5]), TypeError, "weights must hold real numbers, got complex"),
    ("weights NaN", lambda: MoLRG.random(10, [2, 2], weights=[np.nan, 0.5]), ValueError, "weights must be positive"),
    ("weights sum", lambda: MoLRG.random(10, [2, 2], weights=[0.2, 0.5]), ValueError, "weights must sum to 1"),
    ("noise_std string", lambda: MoLRG.random(10, [2], noise_std="0.1"), TypeError, "noise_std must be a real number"),
    ("noise_std inf", lambda: MoLRG.random(10, [2], noise_std=np.inf), ValueError, r"noise_std must be finite and in \[0.0, inf\]"),
    ("orthogonal not bool", lambda: MoLRG.random(10, [2], orthogonal="yes"), TypeError, "orthogonal must be True or False"),
    ("random_state string", lambda: MoLRG.random(10, [2], random_state="x"), TypeError, "random_state must be None"),
    ("bases complex", lambda: MoLRG([np.eye(3)[:, :2] + 0j]), TypeError, r"bases\[0\] must hold real numbers, got complex"),
    ("bases not orthonormal", lambda: MoLRG([2 * np.eye(3)[:, :2]]), ValueError, r"bases\[0\] is not orthonormal"),
    ("sample N huge", lambda: M.sample(10**13), ValueError, r"N must be in \[1, \d+\], got 10000000000000"),
    ("sample N zero", lambda: M.sample(0), ValueError, r"N must be in \[1, "),
    ("sample N string", lambda: M.sample("10"), TypeError, "N must be an integer"),
]
SAMPLER_CASES = [
    ("sigmas increasing", lambda f: f(D, X, [1.0, 2.0, 0.0]), ValueError, "sigmas must be strictly decreasing"),
    ("sigmas too short", lambda f: f(D, X, [1.0]), ValueError, "sigmas must hold at least 2 noise levels, got 1"),
    ("sigmas NaN", lambda f: f(D, X, [np.nan, 0.0]), ValueError, "sigmas must be finite and >= 0"),
    ("sigmas negative", lambda f: f(D, X, [1.0, -1.0]), ValueError, "sigmas must be finite and >= 0"),
    ("sigmas string", lambda f: f(D, X, "abc"), TypeError, "sigmas must be an array of real numbers"),
    ("x NaN", lambda f: f(D, X * np.nan, SIG), ValueError, "x contains NaN or inf"),
    ("x string", lambda f: f(D, "abc", SIG), TypeError, "x must be an array of real numbers"),
    ("x complex", lambda f: f(D, X + 0j, SIG), TypeError, "x must hold real numbers, got complex"),
    ("x scalar", lambda f: f(D, 1.0, SIG), ValueError, r"x must have shape \(\.\.\., n\), got shape \(\)"),
    ("extra_args not a dict", lambda f: f(D, X, SIG, extra_args=[1]), TypeError, "extra_args must be a dict"),
]
OTHER_CASES = [
    ("sample steps 0", lambda: sample(D, (2, 10), steps=0), ValueError, r"steps must be in \[1, inf\], got 0"),
    ("sample shape string", lambda: sample(D, "ab"), TypeError, "shape must be a tuple of ints"),
    ("sample shape zero", lambda: sample(D, (0, 10)), ValueError, "shape must be a non-empty tuple of positive ints"),
    ("sample solver", lambda: sample(D, (2, 10), solver="rk4"), ValueError, "solver must be one of"),
    ("karras steps float", lambda: karras_sigmas(2.5), TypeError, "steps must be an integer, got 2.5"),
    ("karras sigma_min > max", lambda: karras_sigmas(3, 10.0, 1.0), ValueError, r"sigma_max must be finite and in \[10.0, inf\]"),
    ("karras rho 0", lambda: karras_sigmas(3, rho=0.0), ValueError, r"rho must be finite and in \(0.0, inf\]"),
    ("schedule t string", lambda: VP().sigma("0.5"), TypeError, "t must be an array of real numbers"),
    ("schedule t NaN", lambda: VP().scale(np.nan), ValueError, "t contains NaN or inf"),
    ("from_bases n mismatch", lambda: posterior_mean_from_bases([M.bases[0], np.eye(4)[:, :2]], [0.0, 0.0], X, 1.0, 0.3), ValueError, r"bases\[1\] has ambient dimension 4, expected n = 10"),
    ("from_bases weights length", lambda: posterior_mean_from_bases(M.bases, [0.0], X, 1.0, 0.3), ValueError, "weights must have length K = 2"),
    ("from_bases string bases", lambda: posterior_mean_from_bases("ab", [0.0], X, 1.0, 0.3), TypeError, "bases must be a sequence"),
    ("from_bases noise_var", lambda: posterior_mean_from_bases(M.bases, [0.0, 0.0], X, 1.0, 0.3, -1.0), ValueError, "noise_var must be finite"),
    ("empirical x_t shape", lambda: EmpiricalDenoiser(X)(X[:, :3], 1.0, 0.3), ValueError, r"x_t must have shape \(\.\.\., 10\)"),
    ("empirical sigma length", lambda: EmpiricalDenoiser(X)(X, 1.0, np.ones(3)), ValueError, r"sigma must be .*got shape \(3,\)"),
    ("empirical complex", lambda: EmpiricalDenoiser(X + 0j), TypeError, "X_train must hold real numbers, got complex"),
]


def _strict(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning or RuntimeWarning would fail the case
        with pytest.raises(exc, match=match):
            call()


@pytest.mark.parametrize("f", POSTERIOR, ids=lambda f: f.__name__)
@pytest.mark.parametrize("label, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_posterior_bad_input(label, call, exc, match, f):
    _strict(lambda: call(f), exc, match)


@pytest.mark.parametrize("label, call, exc, match", MODEL_CASES + OTHER_CASES, ids=[c[0] for c in MODEL_CASES + OTHER_CASES])
def test_model_and_helper_bad_input(label, call, exc, match):
    _strict(call, exc, match)


@pytest.mark.parametrize("f", [sample_euler, sample_heun, sample_ddpm], ids=lambda f: f.__name__)
@pytest.mark.parametrize("label, call, exc, match", SAMPLER_CASES, ids=[c[0] for c in SAMPLER_CASES])
def test_sampler_bad_input(label, call, exc, match, f):
    _strict(lambda: call(f), exc, match)


# --------------------------------------------------------------------------- extreme scales (no silent NaN)
@pytest.mark.parametrize("lam", [1e200, 1e300, 1e-200, 1e-300])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_extreme_scales_give_the_exact_answer(lam, kind):
    # E[x_0 | x_t] depends on x_t / s_t: (lam x, lam s) has the mean of (x, s), the score divided by lam
    x = torch.as_tensor(lam * X) if kind == "torch" else lam * X
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = np.asarray(posterior_mean(M, x, lam, 0.3))
        sc = np.asarray(score(M, x, lam, 0.3))
        w = np.asarray(posterior_weights(M, x, lam, 0.3))
    assert_allclose(mean, posterior_mean(M, X, 1.0, 0.3), rtol=1e-12)
    assert_allclose(sc * lam, score(M, X, 1.0, 0.3), rtol=1e-12)
    assert_allclose(w, posterior_weights(M, X, 1.0, 0.3), rtol=1e-12, atol=1e-300)


def test_huge_entry_with_unit_scale_is_the_hard_assignment_limit():
    # x_t = 1e200 u: the weights saturate on argmax_k ||U_k^T u||, the mean is c P_j x_t (finite)
    u = X[0]
    j = int(np.argmax([np.sum((u @ U) ** 2) for U in M.bases]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = posterior_mean(M, 1e200 * u, 1.0, 0.3)
    P = M.bases[j] @ M.bases[j].T
    assert_allclose(mean, 1e200 * (P @ u) / (1 + 0.3**2), rtol=1e-12)
    assert np.all(np.isfinite(score(M, 1e200 * u, 1.0, 0.3)))


def test_float32_stays_float32_and_finite_at_1e20():
    x = (X * 1e20).astype(np.float32)
    for arr in (x, torch.as_tensor(x)):
        out = posterior_mean(M, arr, 1.0, 0.3)
        assert out.dtype in (np.float32, torch.float32)
        assert np.all(np.isfinite(np.asarray(out)))
        assert_allclose(np.asarray(out), posterior_mean(M, x.astype(np.float64), 1.0, 0.3), rtol=1e-5)


def test_rescaling_switched_off_fails(monkeypatch):
    # the mechanism: without the exact power-of-two rescaling, ||U^T x_t||^2 overflows and the
    # answer at 1e200 is NaN (scale 1e200) or wrong (scale 1), as before the fix
    ref = posterior_mean(M, X, 1.0, 0.3)
    u = X[0]
    j = int(np.argmax([np.sum((u @ U) ** 2) for U in M.bases]))
    limit = 1e200 * (M.bases[j] @ M.bases[j].T @ u) / (1 + 0.3**2)
    assert_allclose(posterior_mean(M, 1e200 * u, 1.0, 0.3), limit, rtol=1e-12)  # on
    monkeypatch.setattr(posterior_module, "_EXP_LIMIT_FLOAT64", 1023)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off_scaled = posterior_mean(M, 1e200 * X, 1e200, 0.3)
        off_unit = posterior_mean(M, 1e200 * u, 1.0, 0.3)
    assert not np.allclose(off_scaled, ref, rtol=1e-6)
    assert not np.allclose(off_unit, limit, rtol=1e-6)


# --------------------------------------------------------------------------- the shared helpers
def test_check_batch_one_rule_for_data_and_masks():
    Xb = np.zeros((2, 3, 4), dtype=np.float32)
    Xv, m, batched = check_batch(Xb)
    assert batched and Xv.dtype == np.float32 and m.shape == (2, 3) and m.all()
    Xv, m, batched = check_batch(np.ones((3, 4), dtype=int), [1, 0, 1])
    assert not batched and Xv.shape == (1, 3, 4) and Xv.dtype == np.float64 and m.tolist() == [[True, False, True]]
    padded = np.ones((2, 3, 4))
    padded[1, 2] = np.nan  # padding may hold anything
    check_batch(padded, [[True] * 3, [True, True, False]])
    for args, exc, match in [
        ((np.zeros(4),), ValueError, r"X must have 2 or 3 axes \(N, n\) or \(B, N, n\), got shape \(4,\)"),
        ((np.zeros((0, 4)),), ValueError, "N >= 1 rows"),
        ((padded,), ValueError, "X contains NaN or inf"),
        ((Xb, np.ones((2, 4), bool)), ValueError, r"mask must have shape \(2, 3\)"),
        ((Xb, np.full((2, 3), 0.5)), TypeError, "mask must be boolean"),
        ((Xb, [[True] * 3, [False] * 3]), ValueError, "mask must keep at least one row"),
        ((Xb + 1j,), TypeError, "X must hold real numbers, got complex"),
    ]:
        with pytest.raises(exc, match=match):
            check_batch(*args)


def test_check_levels_and_array_messages():
    assert check_levels("sigma", 0.5, (3, 4)).shape == ()
    assert check_levels("sigma", np.ones(3), (3, 4)).shape == (3,)
    assert check_levels("sigma", np.ones((1, 4)), (3, 4)).shape == (1, 4)
    with pytest.raises(ValueError, match=r"sigma must be a scalar or an array over the leading axes of x_t, shape \(3, 4\)"):
        check_levels("sigma", np.ones(4), (3, 4))
    t = check_levels("scale", 2.0, (3,), like=torch.zeros(3, 2))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    assert check_array("a", [1, 2]).dtype == np.float64
    assert check_array("a", np.ones(2, np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"a must have 2 axes, got shape \(2,\)"):
        check_array("a", [1, 2], ndim=2)
