"""Formula checks: each closed form of SPEC against an independent computation, on fresh random draws.

The claims table of the report (:mod:`phase_transition.claims`) quotes these
numbers, so they are computed, not typed.  Every check returns the largest
``discrepancy`` over its draw and the ``tolerance`` the test suite asserts;
``within = discrepancy <= tolerance``.  The independent references live here
and the tests import them from here (one reference, not two that drift):

* ``posterior-dense`` (MoLRG Lemma 1 / Proposition 1, SPEC A3): relative error
  of :func:`molrg.posterior_mean` against :func:`dense_posterior`, the posterior
  mean of the full-covariance Gaussian mixture computed with scipy;
* ``score-fd`` (Tweedie, SPEC A3): :func:`molrg.score` against a central finite
  difference of the dense log-density, relative to the score's scale;
* ``loss-single`` and ``loss-hardmax`` (Theorems 1 and 3, SPEC A5): the
  Monte-Carlo loss against the closed form ``A - (B/N) objective``, in standard
  errors (``|mc - cf| / se``, tolerance 4);
* ``localization-brute-force`` (locality Theorem 3.2 / eq. 3.14, SPEC B3):
  :func:`locality.localization_error` against :func:`brute_force_localization`,
  the conditional variance ``p_i^T (Sigma - Sigma_:S Sigma_SS^-1 Sigma_S:) p_i``;
* ``pythagorean`` (Proposition 3.3, SPEC B3): truncation error minus
  (optimal error + squared distance);
* ``ddpm-chain`` (SPEC B4): the sample covariance of Monte-Carlo DDPM chains
  against the exactly propagated covariance, in standard errors (largest over
  the 55 entries and two localizations, tolerance 5): the sampled columns of
  ``locality-tradeoff`` draw from ``N(0, C_gen)`` directly;
* ``ddpm-discretization`` (SPEC B4): relative spectral error of the exactly
  propagated covariance of the non-localized DDPM with the true covariance
  (the DDPM discretization error; the test bounds it by 1e-2);
* ``cir-exact-acf`` (SPEC B5): largest error of the lag-1 and lag-3
  autocorrelations of the exact CIR simulator against ``exp(-a h)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from ..params import Parameters, param
from ..registry import Experiment, Task, register

__all__ = ["dense_posterior", "brute_force_localization", "CHECKS", "CheckParameters"]


# --------------------------------------------------------------------------- independent references
def dense_posterior(model, x: np.ndarray, s: float, sigma: float):
    """Posterior of a MoLRG computed as a dense Gaussian mixture with scipy (no low-rank algebra).

    Given k, ``x_0 ~ N(0, S0_k)`` with ``S0_k = U_k U_k^T + delta^2 I`` and
    ``x_t | x_0 ~ N(s x_0, s^2 sigma^2 I)``, so ``x_t ~ N(0, s^2 (S0_k + sigma^2 I))``
    and ``E[x_0 | x_t, k] = S0_k (S0_k + sigma^2 I)^{-1} x_t / s``.

    Returns ``(weights (M, K), mean (M, n), log joint (M, K))``.
    """
    n = model.n
    covs0 = model.covariances()
    logp = np.stack(
        [
            np.log(model.weights[k])
            + multivariate_normal(np.zeros(n), s**2 * (covs0[k] + sigma**2 * np.eye(n))).logpdf(x)
            for k in range(model.n_components)
        ],
        axis=-1,
    ).reshape(x.shape[0], -1)
    w = np.exp(logp - logsumexp(logp, axis=-1, keepdims=True))
    means = np.stack([np.linalg.solve(C + sigma**2 * np.eye(n), C @ x.T).T / s for C in covs0], axis=1)
    return w, np.einsum("mk,mkn->mn", w, means), logp


def brute_force_localization(Sigma: np.ndarray, r: int) -> np.ndarray:
    """``Var(s_i(x) | x_S) = p_i^T (Sigma - Sigma_:S Sigma_SS^{-1} Sigma_S:) p_i``, one row at a time."""
    d = len(Sigma)
    P = np.linalg.inv(Sigma)
    out = np.empty(d)
    for i in range(d):
        S = [j for j in range(d) if abs(i - j) <= r]
        cond = Sigma - Sigma[:, S] @ np.linalg.solve(Sigma[np.ix_(S, S)], Sigma[S, :])
        out[i] = P[i] @ cond @ P[i]
    return out


# --------------------------------------------------------------------------- the checks
_SCALE_SIGMA = [(1.0, 0.05), (0.7, 0.3), (0.35, 1.0), (1.0, 4.0), (0.05, 20.0)]
_MODEL_SPECS = [
    dict(n=9, dims=[2, 4], weights=[0.3, 0.7], orthogonal=True),
    dict(n=8, dims=[1, 3, 2], weights=[0.5, 0.2, 0.3], orthogonal=False),
    dict(n=10, dims=[2, 2, 3], weights=[0.1, 0.6, 0.3], orthogonal=True, noise_std=0.2),
]


def _check_posterior(rng) -> float:
    from molrg import MoLRG, posterior_mean

    worst = 0.0
    for spec in _MODEL_SPECS:
        model = MoLRG.random(**spec, random_state=rng)
        X0, _ = model.sample(12, random_state=rng)
        for s, sigma in _SCALE_SIGMA:
            x = s * X0 + s * sigma * rng.standard_normal(X0.shape)
            ref = dense_posterior(model, x, s, sigma)[1]
            worst = max(worst, float(np.abs(posterior_mean(model, x, s, sigma) - ref).max() / np.abs(ref).max()))
    return worst


def _check_score(rng) -> float:
    from molrg import MoLRG, score

    worst, s, sigma, h = 0.0, 0.8, 0.6, 1e-5
    for spec in _MODEL_SPECS[:2]:
        model = MoLRG.random(**spec, random_state=rng)
        x = rng.standard_normal((4, model.n))
        eye = np.eye(model.n)

        def logp(z):
            return logsumexp(dense_posterior(model, z, s, sigma)[2], axis=-1)

        fd = np.stack([(logp(x + h * eye[j]) - logp(x - h * eye[j])) / (2 * h) for j in range(model.n)], axis=-1)
        worst = max(worst, float(np.abs(score(model, x, s, sigma) - fd).max() / np.abs(fd).max()))
    return worst


def _check_loss(parameterization: str) -> Callable[[np.random.Generator], float]:
    def check(rng) -> float:
        import torch

        from molrg import MoLRG
        from molrg.denoisers import make_denoiser
        from molrg.loss import closed_form_loss, mc_loss
        from molrg.utils import random_orthonormal

        B, N, n = 4, 15, 8
        dims = (3,) if parameterization == "single" else (2, 2)
        X = np.stack([MoLRG.random(n, dims, noise_std=0.1, random_state=rng).sample(N, random_state=rng)[0] for _ in range(B)])
        bases = [random_orthonormal(n, d, size=(B,), random_state=rng) for d in dims]
        dae = make_denoiser(parameterization, bases, dtype=torch.float64)
        mc, se = mc_loss(dae, X, n_draws=400, random_state=rng, schedule="vp", weighting="uniform")
        cf = closed_form_loss(X, bases, parameterization=parameterization, schedule="vp", weighting="uniform")
        return float(np.max(np.abs(mc - cf) / se))

    return check


def _sigma_t(rng):
    from locality import ou_covariance, random_banded_precision

    P0 = random_banded_precision(25, 2, random_state=rng)
    return ou_covariance(np.linalg.inv(P0), 0.3)


def _check_localization(rng) -> float:
    from locality import localization_error

    S = _sigma_t(rng)
    return max(float(np.abs(localization_error(S, r) - brute_force_localization(S, r)).max()) for r in (0, 1, 3, 7, 12))


def _check_pythagorean(rng) -> float:
    from locality import localization_decomposition

    S = _sigma_t(rng)
    return max(
        float(np.abs(dec.truncation - dec.optimal - dec.distance).max())
        for dec in (localization_decomposition(S, r) for r in (0, 2, 5))
    )


def _check_ddpm(rng) -> float:
    from locality import LinearScore, ar1_covariance, generated_covariance, relative_covariance_error

    S = ar1_covariance(64)
    return float(relative_covariance_error(generated_covariance(LinearScore(S)), S))


def _check_ddpm_chain(rng) -> float:
    """Monte-Carlo DDPM chains against the exactly propagated covariance, in standard errors (SPEC B4).

    ``locality-tradeoff`` draws its sampled columns from ``N(0, C_gen)``; this is
    the check that the chain's output has that law (marginal and truncated scores).
    """
    from locality import DDPMSchedule, LinearScore, ar1_covariance, generated_covariance, sample_backward

    S = ar1_covariance(10)
    X = rng.standard_normal((8, 10)) @ np.linalg.cholesky(S).T
    Sh = X.T @ X / len(X)
    n, worst = 4000, 0.0
    for method, r in (("marginal", 2), ("truncate", 1)):
        score = LinearScore(Sh, schedule=DDPMSchedule(T=100), method=method, r=r)
        C = generated_covariance(score)
        Xg = sample_backward(score, n, random_state=rng)
        se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / n)
        worst = max(worst, float(np.max(np.abs(Xg.T @ Xg / n - C) / se)))
    return worst


def _check_cir(rng) -> float:
    from locality import autocorrelation, simulate_cir

    a = 0.5
    X = simulate_cir(20_000, 8, a=a, b=1.0, sigma=0.5, random_state=rng)
    rho = autocorrelation(X, 3)
    return float(np.abs(rho[[1, 3]] - np.exp(-a * np.array([1.0, 3.0]))).max())


#: name -> (check(rng) -> discrepancy, tolerance asserted by the tests, unit)
CHECKS: dict[str, tuple[Callable[[np.random.Generator], float], float, str]] = {
    "posterior-dense": (_check_posterior, 1e-10, "relative error"),
    "score-fd": (_check_score, 1e-6, "relative error"),
    "loss-single": (_check_loss("single"), 4.0, "standard errors"),
    "loss-hardmax": (_check_loss("hardmax"), 4.0, "standard errors"),
    "localization-brute-force": (_check_localization, 1e-10, "absolute error"),
    "pythagorean": (_check_pythagorean, 1e-10, "absolute error"),
    "ddpm-discretization": (_check_ddpm, 1e-2, "relative spectral error"),
    "ddpm-chain": (_check_ddpm_chain, 5.0, "standard errors"),
    "cir-exact-acf": (_check_cir, 0.03, "absolute error"),
}


def run(tasks: Sequence[Task]) -> list[dict]:
    out = []
    for task in tasks:
        check, tol, unit = CHECKS[task.params["check"]]
        value = check(task.rng)
        out.append({"discrepancy": value, "tolerance": tol, "unit": unit, "within": bool(value <= tol)})
    return out


def plot(table: pd.DataFrame, config: Mapping[str, Any]):
    """Largest discrepancy / tolerance per check (log scale); ``table`` holds the successful rows."""
    from matplotlib.figure import Figure

    worst = table.groupby("check", sort=False)[["discrepancy", "tolerance"]].max()
    ratio = np.maximum(worst["discrepancy"] / worst["tolerance"], 1e-18)
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.barh(worst.index, ratio, color=["tab:green" if v <= 1 else "tab:red" for v in ratio])
    ax.axvline(1.0, color="k", ls="--", lw=1, label="tolerance")
    ax.set_xscale("log")
    ax.set_xlabel("largest discrepancy / tolerance (log scale)")
    ax.set_title(f"Closed forms vs independent computations ({config['trials']} draws)", fontsize=10)
    ax.legend(loc="lower right")
    return fig


def summarize(table: pd.DataFrame, config: Mapping[str, Any]) -> dict:
    """Largest discrepancy per check; ``all within tolerance`` also requires that no draw failed."""
    out = {f"{name} (max {unit})": float(table.loc[table["check"] == name, "discrepancy"].max())
           for name, (_, _, unit) in CHECKS.items() if (table["check"] == name).any()}
    out["all within tolerance"] = bool(table["within"].all()) and int(config.get("n_errors", 0)) == 0
    return out


@dataclass(frozen=True, kw_only=True)
class CheckParameters(Parameters):
    """The one parameter of ``formula-checks``: which check (the grid key)."""

    check: str = param(choices=tuple(CHECKS), help="which closed form is checked against its independent computation")


EXPERIMENT = register(
    Experiment(
        name="formula-checks",
        description="Closed forms against independent computations: posterior, score, loss, localization error, DDPM, CIR",
        run=run,
        grid={"check": list(CHECKS)},
        quick_grid={"check": list(CHECKS)},
        parameters=CheckParameters,
        trials=5,
        quick_trials=2,
        chunk_by=None,
        plot=plot,
        summarize=summarize,
        doc=__doc__,
        family="checks",
    )
)
