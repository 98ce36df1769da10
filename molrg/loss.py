r"""The denoising training loss (SPEC A5, paper eq. 6): Monte Carlo and closed form.

.. math::

    L(\theta) = \frac1N \sum_i E_{t\sim\rho}\, \lambda_t\, E_\epsilon
                \big\| x_\theta(s_t x_i + s_t\sigma_t\epsilon, t) - x_i \big\|^2 .

``rho`` is uniform on ``[t_min, t_max]`` (``T=None``) or uniform on the
``T``-point grid ``linspace(t_min, t_max, T)``; ``lambda_t`` is a weighting
(a name or a callable of ``t``).

For the single and hardmax denoisers the expectation over ``eps`` is exact
(``P = U U^T``, ``c = c_t``):

.. math:: E_\epsilon\|cP(x+\sigma\epsilon)-x\|^2 = \|x\|^2 - (2c-c^2)\|U^Tx\|^2 + c^2\sigma^2 d,

hence, for equal dims ``d`` (Theorems 1 and 3),

.. math::

    L = A - \frac{B}{N}\,\mathrm{objective},\qquad
    A = E_t[\lambda_t]\,\frac1N\sum_i\|x_i\|^2 + E_t[\lambda_t c_t^2\sigma_t^2]\,d,\qquad
    B = E_t[\lambda_t(2c_t-c_t^2)] > 0,

with the PCA objective ``sum_i ||U^T x_i||^2`` (single) or the K-subspaces
objective ``sum_i max_k ||U_k^T x_i||^2`` (hardmax), both from
:mod:`molrg.objectives`.  The ``E_t`` coefficients are computed for the SAME
``t`` distribution the Monte-Carlo estimator samples: an exact average over the
grid when ``T`` is given, adaptive quadrature (:func:`scipy.integrate.quad`,
relative accuracy ~1e-10) of the uniform density otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .schedules import NoiseSchedule, get_schedule
from .utils import check_batch, check_int, torch_generator

__all__ = [
    "WEIGHTINGS",
    "get_weighting",
    "time_range",
    "sample_times",
    "LossCoefficients",
    "loss_coefficients",
    "mc_loss",
    "closed_form_loss",
    "expected_sample_loss",
]


# --------------------------------------------------------------------------- weightings
def _uniform(t, schedule):
    return t * 0.0 + 1.0


def _snr(t, schedule):
    s = schedule.sigma(t)
    return 1.0 / (s * s)


def _edm(t, schedule):
    s = schedule.sigma(t)
    return (1.0 + s * s) / (s * s)


WEIGHTINGS = {
    "uniform": _uniform,  # lambda_t = 1 (the x0-prediction loss of eq. 6 as written)
    "snr": _snr,  # lambda_t = 1 / sigma_t^2: the epsilon-prediction loss
    "edm": _edm,  # lambda_t = (sigma_t^2 + 1) / sigma_t^2: EDM's weighting with sigma_data = 1
}


def get_weighting(weighting: Any, schedule: NoiseSchedule) -> Callable:
    """``lambda(t)`` as a function of ``t`` (numpy or torch): a name of :data:`WEIGHTINGS` or a callable.

    A callable is called as ``weighting(t)`` and must return positive weights of ``t``'s shape.
    """
    if callable(weighting):
        return weighting
    if isinstance(weighting, str) and weighting in WEIGHTINGS:
        fn = WEIGHTINGS[weighting]
        return lambda t: fn(t, schedule)
    raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)} or a callable, got {weighting!r}")


# --------------------------------------------------------------------------- time distribution
def time_range(schedule: NoiseSchedule, t_range=None) -> tuple[float, float]:
    """Validated ``(t_min, t_max)``: ``t_range`` or the schedule's default; needs ``sigma(t_min) > 0``."""
    if t_range is None:
        lo, hi = float(schedule.t_min), float(schedule.t_max)
    else:
        try:
            lo, hi = (float(v) for v in t_range)
        except (TypeError, ValueError):
            raise ValueError(f"t_range must be a pair (t_min, t_max), got {t_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo < hi):
        raise ValueError(f"t_range must satisfy 0 <= t_min < t_max (finite), got ({lo}, {hi})")
    smin, smax = float(schedule.sigma(lo)), float(schedule.sigma(hi))
    if not (smin > 0.0 and np.isfinite(smax)):
        raise ValueError(f"t_range must give sigma(t_min) > 0 and finite sigma(t_max), got sigma = ({smin}, {smax})")
    return lo, hi


def _grid(lo, hi, T):
    return np.linspace(lo, hi, T)


def sample_times(size, *, schedule, t_range=None, T=None, generator=None, dtype=torch.float64, device="cpu"):
    """Draw ``t ~ rho`` (uniform on ``[t_min, t_max]``, or on the ``T``-point grid) as a torch tensor."""
    lo, hi = time_range(schedule, t_range)
    u = torch.rand(size, generator=generator, dtype=torch.float64, device=device)
    return _times_from_uniform(u, lo, hi, T).to(dtype)


def _times_from_uniform(u, lo, hi, T):
    """Map uniforms ``u in [0, 1)`` to ``t ~ rho``; private, assumes validated arguments."""
    if T is None:
        return lo + (hi - lo) * u
    k = torch.clamp((u * T).floor(), max=T - 1)
    return lo + (hi - lo) * k / max(T - 1, 1)


# --------------------------------------------------------------------------- closed form
@dataclass(frozen=True)
class LossCoefficients:
    """``E_t`` averages of SPEC A5 for one schedule, time distribution and weighting.

    Attributes
    ----------
    lam : float
        ``E_t[lambda_t]`` (multiplies the mean squared norm of the data).
    noise : float
        ``E_t[lambda_t c_t^2 sigma_t^2]`` (multiplies ``d``).
    gain : float
        ``B = E_t[lambda_t (2 c_t - c_t^2)] > 0`` (multiplies the objective / N).
    method : str
        ``"grid"`` (exact average over the T points) or ``"quad"`` (adaptive quadrature).
    """

    lam: float
    noise: float
    gain: float
    method: str

    def constant(self, mean_sqnorm, d):
        """``A = lam * mean_i ||x_i||^2 + noise * d``."""
        return self.lam * np.asarray(mean_sqnorm, dtype=np.float64) + self.noise * d


def loss_coefficients(schedule="vp", *, t_range=None, T=None, weighting="uniform") -> LossCoefficients:
    """The coefficients ``E_t[lambda]``, ``E_t[lambda c^2 sigma^2]``, ``B`` of the closed form (SPEC A5).

    Averages over the same ``t`` distribution that :func:`mc_loss` and the
    SGD trainer sample: exactly over the grid when ``T`` is an int, by
    :func:`scipy.integrate.quad` of the uniform density on ``t_range`` otherwise.

    Examples
    --------
    >>> c = loss_coefficients("vp", T=1000)
    >>> 0 < c.gain < c.lam
    True
    """
    schedule = get_schedule(schedule)
    lo, hi = time_range(schedule, t_range)
    if T is not None:
        T = check_int("T", T, low=1)
    if isinstance(weighting, str):  # a named weighting: the same numbers for the same schedule, cached
        try:
            return _cached_coefficients(schedule, lo, hi, T, weighting)
        except TypeError:  # an unhashable schedule
            pass
    return _loss_coefficients(schedule, lo, hi, T, weighting)


@functools.lru_cache(maxsize=64)
def _cached_coefficients(schedule, lo, hi, T, weighting):
    """:func:`_loss_coefficients` memoized (the quadrature of the ``"snr"`` weighting takes ~0.5 s, and every
    chunk of an SGD sweep asks for the same coefficients).
    """
    return _loss_coefficients(schedule, lo, hi, T, weighting)


def _loss_coefficients(schedule, lo, hi, T, weighting) -> LossCoefficients:
    """:func:`loss_coefficients` on a resolved schedule and validated ``(lo, hi, T)``."""
    lam_fn = get_weighting(weighting, schedule)

    def parts(t):
        t = np.asarray(t, dtype=np.float64)
        sg = np.asarray(schedule.sigma(t), dtype=np.float64)
        lam = np.asarray(lam_fn(t), dtype=np.float64) * np.ones_like(t)
        c = 1.0 / (1.0 + sg * sg)
        return lam, lam * c * c * sg * sg, lam * c * (2.0 - c)

    if T is not None:
        vals = parts(_grid(lo, hi, T))
        out = [float(v.mean()) for v in vals]
        method = "grid"
    else:
        from scipy.integrate import quad

        out = []
        for k in range(3):
            val, _ = quad(lambda t: float(parts(t)[k]), lo, hi, limit=500, epsabs=0.0, epsrel=1e-10)
            out.append(val / (hi - lo))
        method = "quad"
    if not all(np.isfinite(out)) or out[2] <= 0 or out[0] <= 0:
        raise ValueError(f"weighting gives non-finite or non-positive loss coefficients {out}")
    return LossCoefficients(out[0], out[1], out[2], method)


def expected_sample_loss(x, U, c, sigma):
    """``E_eps ||c U U^T (x + sigma eps) - x||^2 = ||x||^2 - (2c - c^2)||U^T x||^2 + c^2 sigma^2 d`` (numpy).

    ``x``: ``(..., n)``, ``U``: ``(n, d)`` orthonormal; returns ``x.shape[:-1]``.
    """
    x = np.asarray(x, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    p = x @ U
    return (x * x).sum(-1) - (2 * c - c * c) * (p * p).sum(-1) + c * c * sigma * sigma * U.shape[-1]


def _as_batched(X, mask):
    """``(X (B, N, n) float64, mask (B, N), batched)``: the shared data/mask rule of :func:`molrg.utils.check_batch`."""
    return check_batch(X, mask, dtype=np.float64)


def closed_form_loss(X, bases, *, parameterization="hardmax", schedule="vp", t_range=None, T=None, weighting="uniform", mask=None, coefficients=None):
    """The closed-form loss ``A - (B/N) objective`` (SPEC A5, Theorems 1 and 3).

    Parameters
    ----------
    X : array ``(N, n)`` or ``(B, N, n)``
        Training samples, one per row (a batch of problems on the leading axis).
    bases : sequence of K arrays ``(n, d)`` or ``(B, n, d)`` (equal ``d``), or one array
        The parameters ``theta`` (orthonormal).  A single array is one component.
    parameterization : {"single", "hardmax"}
        ``single`` (K = 1): PCA objective ``sum_i ||U^T x_i||^2``; ``hardmax``
        (equal dims): K-subspaces objective ``sum_i max_k ||U_k^T x_i||^2``.
        (For K = 1 the two coincide.)
    schedule, t_range, T, weighting :
        The time distribution and weighting, as in :func:`loss_coefficients`.
    mask : bool array ``(N,)`` or ``(B, N)``, optional
        Valid rows; ``N`` in the formula is the number of valid rows of each problem.
    coefficients : LossCoefficients, optional
        Precomputed coefficients (skips the quadrature).

    Returns
    -------
    float or array ``(B,)``
    """
    from .objectives import kss_objective, pca_objective

    if parameterization not in ("single", "hardmax"):
        raise ValueError(f"parameterization must be 'single' or 'hardmax' for the closed form, got {parameterization!r}")
    X, mask, batched = _as_batched(X, mask)
    if isinstance(bases, (np.ndarray, torch.Tensor)):
        bases = [bases]
    bases = [np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64) for b in bases]
    dims = {b.shape[-1] for b in bases}
    if len(dims) != 1:
        raise ValueError(f"the closed form needs equal dims, got {[b.shape[-1] for b in bases]}")
    d = dims.pop()
    if parameterization == "single" and len(bases) != 1:
        raise ValueError(f"parameterization 'single' needs K = 1 basis, got K = {len(bases)}")
    if not batched:
        bases = [b[None] if b.ndim == 2 else b for b in bases]
    coef = coefficients if coefficients is not None else loss_coefficients(schedule, t_range=t_range, T=T, weighting=weighting)
    Xm = X * mask[..., None]
    counts = mask.sum(-1)
    mean_sq = (Xm * Xm).sum((-1, -2)) / counts
    if parameterization == "single":
        obj = pca_objective(Xm, bases[0], mask=mask)
    else:
        obj = kss_objective(Xm, bases, mask=mask)
    obj = np.asarray(obj, dtype=np.float64).reshape(-1)
    out = coef.constant(mean_sq, d) - coef.gain * obj / counts
    return out if batched else float(out[0])


# --------------------------------------------------------------------------- Monte Carlo
def _loss_terms(denoiser, x0, t, eps, schedule, lam_fn):
    """``lambda_t ||x_theta(s_t (x0 + sigma_t eps), t) - x0||^2`` per sample, shape ``x0.shape[:-1]``.

    The one kernel shared by :func:`mc_loss` and the SGD trainer; private, assumes
    tensors of matching dtype/device: ``x0``, ``eps`` ``(B, m, n)``, ``t`` ``(B, m)``.
    """
    s = schedule.scale(t)
    sg = schedule.sigma(t)
    x_t = s[..., None] * (x0 + sg[..., None] * eps)
    out = denoiser(x_t, s, sg, x0=x0)
    r = out - x0
    return lam_fn(t) * (r * r).sum(-1)


def _loss_and_grad_bases(dae, x0, t, eps, schedule, lam_fn):
    r"""Per-problem mean loss ``(B,)`` and its exact gradient ``(B, n, D)`` for all three DAEs.

    The hand-written gradient of :func:`_loss_terms` (the SGD trainer's kernel,
    checked against autograd in the tests; no autograd graph is built).  With
    ``y = x0 + sigma eps`` (so that ``x_t / s = y``), ``z_k = U_k^T y``, the
    per-sample weights ``w_k`` (one-hot ``mu`` for ``hardmax``, 1 for ``single``,
    the SPEC A3 softmax of ``gamma ||z_k||^2 + const`` for ``softmax``,
    ``gamma = 1 / (2 sigma^2 (1 + sigma^2))``), ``r = c sum_k w_k U_k z_k - x0``
    and ``v_k = U_k^T r``, one sample contributes ``lambda ||r||^2`` to the loss and

    .. math:: \nabla_{U_k} = 2\lambda c\, w_k (r z_k^T + y v_k^T)
              + 2\gamma\, w_k (a_k - \textstyle\sum_j w_j a_j)\, y z_k^T,
              \qquad a_k = 2\lambda c\, v_k^T z_k,

    to the gradient (the second term, through the weights, only for ``softmax``;
    no gradient flows through the hardmax argmax).  Five batched products of
    ``(B, m, n)`` by ``(B, n, D)`` per call.  Private: ``dae`` a module of
    :mod:`molrg.denoisers`, tensors ``(B, m, n)`` / ``(B, m)`` of its dtype.
    """
    U = dae.U.detach()
    Ut = U.transpose(-1, -2)
    sg = schedule.sigma(t)
    c = 1.0 / (1.0 + sg * sg)
    lam = lam_fn(t) * torch.ones_like(t)
    y = torch.addcmul(x0, sg[..., None], eps)  # x0 + sigma eps
    Z = y @ U
    m = x0.shape[-2]
    beta = (2.0 / m) * (lam * c)[..., None]  # (B, m, 1): scale the (B, m, D) factors, not the (B, m, n) ones
    if dae.name == "softmax":
        w = dae.weights_from_projections(Z, sg)  # (B, m, K), float64 softmax of the SPEC A3 logits
        cols = dae.expand(w.to(U.dtype))
    elif dae.name == "hardmax":
        cols = dae.column_mask(x0, sigma=sg)
    else:
        cols = None
    Zw = Z if cols is None else Z * cols
    r = torch.baddbmm(x0, c[..., None] * Zw, Ut, beta=-1.0)  # c sum_k w_k U_k z_k - x0
    V = r @ U
    Vw = V if cols is None else V * cols
    right = beta * Vw
    if dae.name == "softmax":
        gamma = 1.0 / (2.0 * sg * sg * (1.0 + sg * sg))
        a = dae.segment_sums((V * Z).double()) * (2.0 * lam * c)[..., None].double()  # dL/dw_k, (B, m, K)
        abar = (w * a).sum(-1, keepdim=True)
        delta = w * (a - abar) * ((2.0 / m) * gamma)[..., None].double()  # dL/dlogit_k * dlogit/d||z_k||^2 / m
        right = right + dae.expand(delta.to(U.dtype)) * Z
    G = torch.baddbmm(r.transpose(-1, -2) @ (beta * Zw), y.transpose(-1, -2), right)
    loss = (lam * (r * r).sum(-1)).mean(-1)
    return loss, G


def _expected_loss_and_grad(dae, x0, row_weights, sq_norms, coef):
    """Loss averaged exactly over ``eps`` and ``t`` (SPEC A5) and its gradient, for single / hardmax DAEs.

    Per sample ``lam ||x||^2 + noise * d - gain * ||mu * U^T x||^2`` (``mu`` the
    hardmax column mask, all ones for ``single``; equal dims); the per-problem
    loss is the ``row_weights``-weighted sum over the rows (weights summing to 1:
    ``1/m`` for a mini-batch, ``mask / N`` for the full training set) and its
    gradient is ``-2 gain X^T (row_weights * mu * X U)``.  No noise is drawn, so
    for noiseless data the stochastic gradient vanishes at the true bases (no
    noise floor).  Private: ``x0`` ``(B, m, n)``, ``row_weights`` and
    ``sq_norms`` ``(B, m)``, ``coef`` a :class:`LossCoefficients`.
    """
    U = dae.U.detach()
    Z = x0 @ U
    if dae.name == "hardmax":
        Z = Z * dae.column_mask(x0)
    terms = coef.lam * sq_norms + coef.noise * dae.dims[0] - coef.gain * (Z * Z).sum(-1)
    loss = (row_weights * terms).sum(-1)
    G = x0.transpose(-1, -2) @ (Z * (-2.0 * coef.gain * row_weights)[..., None])
    return loss, G


def mc_loss(denoiser, X, *, schedule="vp", t_range=None, T=None, weighting="uniform", n_draws=64, mask=None, random_state=None):
    """Monte-Carlo estimate of the loss (eq. 6) of a DAE on training sets ``X``, with its standard error.

    Each of ``n_draws`` independent draws pairs every training sample with one
    ``t ~ rho`` and one ``eps ~ N(0, I)`` and averages over the samples; the
    draws are i.i.d. with mean ``L(theta)``, so the estimate is their mean and
    the standard error their standard deviation over ``sqrt(n_draws)``.

    Parameters
    ----------
    denoiser : BasesDAE
        A module from :mod:`molrg.denoisers` (``B`` problems).
    X : array ``(N, n)`` or ``(B, N, n)``
    schedule, t_range, T, weighting : see :func:`loss_coefficients`.
    n_draws : int, default 64
    mask : bool array ``(N,)`` or ``(B, N)``, optional
        Valid rows of each problem.
    random_state : None, int, Generator or torch.Generator

    Returns
    -------
    loss, stderr : float or arrays ``(B,)``
    """
    schedule = get_schedule(schedule)
    lo, hi = time_range(schedule, t_range)
    if T is not None:
        T = check_int("T", T, low=1)
    n_draws = check_int("n_draws", n_draws, low=2)
    lam_fn = get_weighting(weighting, schedule)
    X, mask, batched = _as_batched(X, mask)
    dev, dt = denoiser.U.device, denoiser.U.dtype
    x0 = torch.as_tensor(X, dtype=dt, device=dev)
    if x0.shape[0] != denoiser.n_problems:
        raise ValueError(f"X holds {x0.shape[0]} problems but the denoiser has {denoiser.n_problems}")
    w = torch.as_tensor(mask, dtype=torch.float64, device=dev)
    counts = w.sum(-1)
    gen = torch_generator(random_state, device=dev)
    draws = []
    with torch.no_grad():
        for _ in range(n_draws):
            u = torch.rand(x0.shape[:2], generator=gen, dtype=torch.float64, device=dev)
            t = _times_from_uniform(u, lo, hi, T).to(dt)
            eps = torch.randn(x0.shape, generator=gen, dtype=dt, device=dev)
            terms = _loss_terms(denoiser, x0, t, eps, schedule, lam_fn).to(torch.float64)
            draws.append((terms * w).sum(-1) / counts)
    draws = torch.stack(draws).cpu().numpy()
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(n_draws)
    return (mean, se) if batched else (float(mean[0]), float(se[0]))
