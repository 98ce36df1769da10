"""Samplers (molrg.sampling) and the empirical optimal denoiser (molrg.empirical), SPEC A9."""

import numpy as np
import pytest
import torch

from molrg import MoLRG, karras_sigmas
from molrg.empirical import EmpiricalDenoiser, empirical_posterior_mean
from molrg.mlp import MLPDenoiser, train_mlp_denoiser
from molrg.sampling import (
    bases_denoiser,
    closed_form_denoiser,
    empirical_denoiser,
    sample,
    sample_ddpm,
    sample_ddpm_discrete,
    sample_euler,
    sample_heun,
)


def _assign(model, X):
    res = np.stack([np.linalg.norm(X - (X @ U) @ U.T, axis=1) for U in model.bases], 1)
    return res.argmin(1), res.min(1) / np.linalg.norm(X, axis=1)


DTYPES = {"numpy": np.float64, "torch": torch.float32}


@pytest.fixture(scope="module")
def model():
    return MoLRG.random(48, [4, 4, 4], weights=[0.5, 0.3, 0.2], random_state=3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_closed_form_samples_lie_on_union_with_right_moments(model, backend):
    M = 6000
    X = sample(closed_form_denoiser(model), (M, 48), steps=64, random_state=11, dtype=DTYPES[backend])
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
    X = sample(closed_form_denoiser(model), (3000, 48), steps=18, random_state=5, dtype=np.float64)
    var_heun = np.mean(np.sum(X**2, 1)) / 4
    Xe = sample(closed_form_denoiser(model), (3000, 48), steps=18, solver="euler", random_state=5, dtype=np.float64)
    var_euler = np.mean(np.sum(Xe**2, 1)) / 4
    assert abs(var_heun - 1) < 0.15
    assert abs(var_euler - 1) > abs(var_heun - 1)


def test_ddpm_sampler_converges_with_steps():
    m = MoLRG.random(12, [2, 2], random_state=0)
    X = sample(closed_form_denoiser(m), (4000, 12), solver="ddpm", steps=200, random_state=2, dtype=np.float64)
    labels, rel = _assign(m, X)
    assert np.median(rel) < 1e-2
    for k, U in enumerate(m.bases):
        Xk = X[labels == k]
        C = Xk.T @ Xk / len(Xk)
        assert np.linalg.norm(C - U @ U.T) < 3 * np.sqrt(6 / len(Xk)) + 0.05


def test_single_gaussian_heun_matches_exact_flow():
    # K = 1: the probability flow is linear, a(sigma) = a_T sqrt(1 + sigma^2) / sqrt(1 + sigma_T^2)
    m = MoLRG.random(5, [2], random_state=1)
    sig = karras_sigmas(400, 0.01, 10.0)
    x = np.random.default_rng(0).standard_normal((3, 5)) * 10.0
    out = sample_heun(closed_form_denoiser(m), x, sig)
    U = m.bases[0]
    expected = (x @ U) @ U.T * np.sqrt(1 + 0.01**2) / np.sqrt(1 + 100.0) + (x - (x @ U) @ U.T) * 0.01 / 10.0
    np.testing.assert_allclose(out, expected, rtol=2e-4, atol=1e-8)  # Heun, O(h^2): measured 3e-5
    out_euler = sample_euler(closed_form_denoiser(m), x, sig)
    assert np.abs(out_euler - expected).max() > 10 * np.abs(out - expected).max()


def test_seeded_and_dtype_preserved(model):
    D = closed_form_denoiser(model)
    a = sample(D, (5, 48), solver="ddpm", steps=10, random_state=7)
    b = sample(D, (5, 48), solver="ddpm", steps=10, random_state=7)
    c = sample(D, (5, 48), solver="ddpm", steps=10, random_state=8)
    assert a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = np.random.default_rng(0).standard_normal((2, 3, 48)).astype(np.float32) * 80
    for f in (sample_euler, sample_heun):
        y = f(D, x, karras_sigmas(5, append_zero=True))
        assert y.dtype == np.float32 and y.shape == (2, 3, 48)
    y = sample_ddpm(D, x, karras_sigmas(5, append_zero=True), random_state=0)
    assert y.dtype == np.float32


def test_callback_and_bases_adapter(model):
    seen = []
    D1 = closed_form_denoiser(model)
    D2 = bases_denoiser(model.bases, model.weights)
    x = torch.randn(4, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 80
    sig = karras_sigmas(6, append_zero=True)
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
    with pytest.raises(ValueError, match="steps must be in"):
        sample(D, (2, 48), steps=0)
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
    G = sample(empirical_denoiser(X), (200, 8), random_state=6, dtype=np.float64)
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
    np.testing.assert_array_equal(r1.loss_history, r2.loss_history)
    assert r1.loss_history.shape == (150, 2)
    assert np.all(r1.loss_history[-30:].mean(0) < r1.loss_history[:30].mean(0))
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


# --------------------------------------------------------------------------- extra_args, one sampler family
def test_hardmax_dae_is_sampled_through_extra_args():
    # The hardmax DAE (SPEC A4, eqs. 16-17) needs the clean sample x0: extra_args carries it to every call.
    from molrg.denoisers import HardmaxDAE

    m = MoLRG.random(12, [2, 2, 2], random_state=4)
    X0, labels = m.sample(60, random_state=5)
    dae = HardmaxDAE(np.concatenate(m.bases, axis=1), dims=m.dims, dtype=torch.float64)
    sig = karras_sigmas(18, append_zero=True)
    z = torch.randn(60, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * float(sig[0])
    for f in (sample_euler, sample_heun, sample_ddpm):
        out = f(dae, z, sig, extra_args={"x0": torch.as_tensor(X0)})
        out = out.detach().numpy()
        assigned, rel = _assign(m, out)
        np.testing.assert_array_equal(assigned, labels)  # each sample lands in its x0's subspace
        assert np.max(rel) < 1e-6
    # switched off: without x0 the denoiser cannot run, with shuffled x0 the samples follow the wrong labels
    with pytest.raises(ValueError, match="x0"):
        sample_heun(dae, z, sig)
    perm = np.random.default_rng(0).permutation(60)
    out = sample_heun(dae, z, sig, extra_args={"x0": torch.as_tensor(X0[perm])}).detach().numpy()
    assert np.mean(_assign(m, out)[0] == labels) < 0.7
    np.testing.assert_array_equal(_assign(m, out)[0], labels[perm])


def test_extra_args_reach_any_denoiser_and_are_checked():
    calls = []

    def denoise(x, scale, sigma, *, shift):
        calls.append(shift)
        return x * 0.0 + shift

    x = np.ones((3, 2)) * 10.0
    out = sample_euler(denoise, x, [10.0, 1.0, 0.0], extra_args={"shift": 2.0})
    np.testing.assert_allclose(out, 2.0)
    assert calls == [2.0, 2.0]
    with pytest.raises(TypeError, match="extra_args must be a dict"):
        sample_euler(denoise, x, [10.0, 0.0], extra_args=[("shift", 1.0)])
    with pytest.raises(TypeError, match="no extra arguments"):
        sample_euler(closed_form_denoiser(MoLRG.random(2, [1], random_state=0)), x, [1.0, 0.0], extra_args={"a": 1})


def _gauss_predictors(ab, var0):
    """Exact eps / score / x0 predictions for N(0, var0 I) data at step k."""

    def shrink(k):
        return np.sqrt(ab[k]) * var0 / (ab[k] * var0 + 1.0 - ab[k])

    return {
        "x0": lambda x, k: shrink(k) * x,
        "eps": lambda x, k: (x - np.sqrt(ab[k]) * shrink(k) * x) / np.sqrt(1.0 - ab[k]),
        "score": lambda x, k: -(x - np.sqrt(ab[k]) * shrink(k) * x) / (1.0 - ab[k]),
    }


@pytest.mark.parametrize("strided", [False, True])
def test_discrete_ddpm_predictions_agree_and_reach_the_data_variance(strided):
    ab = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    steps = np.unique(np.round(np.linspace(0, 999, 100)).astype(int)) if strided else None
    x = np.random.default_rng(0).standard_normal((8000, 2))
    outs = {p: sample_ddpm_discrete(f, x, ab, steps=steps, prediction=p, random_state=1) for p, f in _gauss_predictors(ab, 0.25).items()}
    np.testing.assert_allclose(outs["eps"], outs["x0"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(outs["score"], outs["x0"], rtol=1e-8, atol=1e-10)
    # generated variance 0.25 within Monte-Carlo error (+ a discretization bias for 100 strided steps)
    assert abs(outs["eps"].var() - 0.25) < (0.015 if strided else 0.01)
    # switched off: a wrong prediction type (eps read as a score) misses the variance by far
    wrong = sample_ddpm_discrete(_gauss_predictors(ab, 0.25)["eps"], x, ab, steps=steps, prediction="score", random_state=1)
    assert abs(wrong.var() - 0.25) > 0.1


def test_discrete_ddpm_is_the_locality_backward_chain():
    # SPEC B4: x_{k-1} = (x_k - beta_k M_k x_k) / sqrt(alpha_k) + sqrt(beta_k) z, noise on every step
    from locality.ddpm import LinearScore, sample_backward
    from locality.precision import ar1_covariance
    from locality.schedule import DDPMSchedule

    sch = DDPMSchedule(T=60)
    sc = LinearScore(ar1_covariance(10), schedule=sch, method="truncate", r=2)
    mats = {k: M for k, M in sc.chunks()}
    ref = sample_backward(sc, 7, random_state=3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 10))
    out = sample_ddpm_discrete(lambda x, k: -(x @ mats[k].T), x, sch, prediction="score", final_noise=True, random_state=rng)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_discrete_ddpm_is_the_cir_sampler():
    # SPEC B5: the strided eps sampler of locality.cir_score, same torch noise stream: the same bits
    from locality.cir_score import ddpm_sample, sampler_steps
    from locality.schedule import DDPMSchedule
    from molrg.utils import torch_generator

    sch = DDPMSchedule()
    ab = torch.as_tensor(np.array(sch.alpha_bars), dtype=torch.float32)

    def eps_model(x, k):  # k an int or a (batch,) tensor of step indices
        a = ab[k]
        a = a[:, None] if a.ndim else a
        return (x - torch.sqrt(a) * 0.5 * x / (a * 0.25 + 1 - a)) / torch.sqrt(1 - a)  # exact for N(0, 0.25)

    for n_steps, variance in [(50, "beta"), (1000, "posterior")]:
        ref = ddpm_sample(eps_model, 6, 8, sch, steps=n_steps, variance=variance, random_state=2)
        gen = torch_generator(2)
        x = torch.randn(6, 8, generator=gen)
        steps = sampler_steps(sch.T, n_steps)
        out = sample_ddpm_discrete(eps_model, x, sch, steps=steps, variance=variance, random_state=gen)
        assert torch.equal(out, ref)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_per_problem_streams_do_not_depend_on_the_batch(kind):
    ab = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 200))
    f = _gauss_predictors(ab, 1.0)["eps"]
    D = closed_form_denoiser(MoLRG.random(5, [2], random_state=0))
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    if kind == "torch":
        x = torch.as_tensor(x)
    seeds = [11, 12, 13]
    sig = karras_sigmas(8, append_zero=True)
    full_d = sample_ddpm_discrete(f, x, ab, random_state=seeds)
    full_a = sample_ddpm(D, x * 80.0, sig, random_state=seeds)
    for b in range(3):
        one_d = sample_ddpm_discrete(f, x[b : b + 1], ab, random_state=[seeds[b]])
        one_a = sample_ddpm(D, x[b : b + 1] * 80.0, sig, random_state=[seeds[b]])
        np.testing.assert_array_equal(np.asarray(one_d)[0], np.asarray(full_d)[b])
        np.testing.assert_array_equal(np.asarray(one_a)[0], np.asarray(full_a)[b])
    # one shared stream does depend on the batch
    shared = sample_ddpm_discrete(f, x, ab, random_state=11)
    alone = sample_ddpm_discrete(f, x[1:2], ab, random_state=11)
    assert not np.allclose(np.asarray(shared)[1], np.asarray(alone)[0])
    with pytest.raises(ValueError, match="one entry per problem"):
        sample_ddpm_discrete(f, x, ab, random_state=[1, 2])


def test_discrete_ddpm_invalid_arguments():
    ab = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 10))
    f = lambda x, k: x  # noqa: E731
    x = np.zeros((2, 3))
    cases = [
        (dict(schedule=ab[::-1]), ValueError, "strictly decreasing values in \\(0, 1\\)"),
        (dict(steps=[0, 20]), ValueError, r"steps must be strictly increasing integer step indices in \[0, 9\]"),
        (dict(steps=[3, 1]), ValueError, "steps must be strictly increasing"),
        (dict(prediction="v"), ValueError, "prediction must be one of"),
        (dict(variance="small"), ValueError, "variance must be one of"),
        (dict(final_noise="yes"), TypeError, "final_noise must be True or False"),
        (dict(x=np.full((2, 3), np.nan)), ValueError, "x contains NaN or inf"),
        (dict(x="abc"), TypeError, "x must be an array of real numbers"),
        (dict(x=np.zeros((2, 3), complex)), TypeError, "x must hold real numbers, got complex"),
        (dict(schedule="abc"), TypeError, "alpha_bars"),
    ]
    for kw, exc, match in cases:
        args = dict(x=x, schedule=ab)
        args.update({k: v for k, v in kw.items() if k in args})
        opts = {k: v for k, v in kw.items() if k not in ("x", "schedule")}
        with pytest.raises(exc, match=match):
            sample_ddpm_discrete(f, args["x"], args["schedule"], **opts)


def test_deprecated_names_warn_and_agree(model):
    from molrg.sampling import get_sigmas_karras

    with pytest.warns(FutureWarning, match="get_sigmas_karras is deprecated"):
        old = get_sigmas_karras(5, 0.01, 10.0)
    np.testing.assert_array_equal(old, karras_sigmas(5, 0.01, 10.0, append_zero=True))
    with pytest.warns(FutureWarning, match="n_steps is deprecated; use steps"):
        np.testing.assert_array_equal(karras_sigmas(n_steps=4), karras_sigmas(4))
    D = closed_form_denoiser(model)
    with pytest.warns(FutureWarning, match="n_steps is deprecated"):
        a = sample(D, (3, 48), n_steps=4, random_state=0, dtype=np.float64)
    with pytest.warns(FutureWarning, match="backend is deprecated"):
        b = sample(D, (3, 48), steps=4, random_state=0, backend="numpy")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="give steps only"):
        sample(D, (3, 48), steps=4, n_steps=5)
