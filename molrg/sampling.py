r"""Samplers that take any denoiser (SPEC A2, A9; k-diffusion ``sampling.py`` style).

A *denoiser* is any callable ``denoise(x, scale, sigma, **extra_args) -> E[x_0 | x_t]``
acting row by row on a batch ``x`` of shape ``(..., n)``, with ``scale`` and
``sigma`` scalars or arrays over the leading axes (STYLE habit 4).  The
closed-form MoLRG posterior mean, a trained DAE, the empirical optimal denoiser
of a training set and the MLP of :mod:`molrg.mlp` all have this form; the
adapters below build the callables.  ``extra_args`` (a dict, k-diffusion's
``sample_euler(model, x, sigmas, extra_args=...)``) is passed through to every
call unchanged, so a denoiser that needs more than ``(x, sigma)`` still fits:
for example the hardmax DAE of SPEC A4, which needs the clean sample,
``sample_heun(dae, x, sigmas, extra_args={"x0": X0})``.

All continuous samplers run in EDM coordinates (``s_t = 1``, ``sigma_t = t``),
where the probability-flow ODE is

.. math::

    \frac{dx}{d\sigma} = \frac{x - D(x, \sigma)}{\sigma}

(Karras et al. 2022, eq. 3 with the Tweedie score).  A schedule with ``s_t != 1``
maps onto it by ``x_t = s_t \tilde x``: the denoisers take ``scale`` so that they
also serve such schedules, and the samplers always pass ``scale = 1``.

* :func:`sample_euler`, :func:`sample_heun`: deterministic probability flow
  (Euler; Heun's second-order method, with an Euler step to ``sigma = 0``,
  Karras et al. Algorithm 1).
* :func:`sample_ddpm`: the stochastic ancestral sampler on a sigma grid; each
  step draws from the Gaussian posterior ``q(x_{i+1} | x_i, x_0 = D(x_i))`` of
  the forward process:
  ``x_{i+1} = D + (sigma_{i+1}^2 / sigma_i^2)(x_i - D) + sigma_{i+1} sqrt(1 - sigma_{i+1}^2/sigma_i^2) z``
  (DDPM, Ho et al. 2020, in VE coordinates; equal to k-diffusion's Euler
  ancestral sampler with ``eta = 1``).
* :func:`sample_ddpm_discrete`: DDPM's Algorithm 2 on a discrete ``alpha_bar``
  schedule (Ho et al. 2020; SPEC B4, B5), for models of the step index
  ``model(x, k, **extra_args)`` that predict the noise, the score or ``x_0``,
  on all steps or a strided subset.
* :func:`sample`: draw ``x_T = sigma_max z`` and run one of the continuous
  samplers on a Karras grid (:func:`molrg.schedules.karras_sigmas`).

Samplers are backend-agnostic (numpy arrays or torch tensors, taken from ``x``;
the dtype of ``x`` is kept) and batched over all leading axes.  The stochastic
samplers take ``random_state``: ``None``, an int, a numpy ``Generator`` (torch
inputs draw from a ``torch.Generator`` seeded from it), a ``torch.Generator``
for torch inputs, or a sequence of per-problem seeds, one per entry of the
leading axis of ``x``, so that a problem's samples do not depend on the batch
it is drawn in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._validation import (
    array_namespace,
    check_array,
    check_choice,
    check_int,
    check_random_state,
    check_real,
    deprecated_alias,
    is_torch,
    problem_generators,
    torch_generator,
)
from .posterior import posterior_mean, posterior_mean_from_bases
from .schedules import karras_sigmas

__all__ = [
    "get_sigmas_karras",
    "sample_euler",
    "sample_heun",
    "sample_ddpm",
    "sample_ddpm_discrete",
    "sample",
    "closed_form_denoiser",
    "bases_denoiser",
    "empirical_denoiser",
    "SAMPLERS",
]

Denoiser = Callable[..., Any]


# --------------------------------------------------------------------------- sigma grid
def get_sigmas_karras(n_steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> np.ndarray:
    """Deprecated alias of ``karras_sigmas(steps, ..., append_zero=True)`` (``FutureWarning``).

    The Karras grid has one implementation, :func:`molrg.schedules.karras_sigmas`.
    """
    warnings.warn(
        "get_sigmas_karras is deprecated; use molrg.karras_sigmas(steps, sigma_min, sigma_max, rho, append_zero=True)",
        FutureWarning,
        stacklevel=2,
    )
    return karras_sigmas(n_steps, sigma_min, sigma_max, rho, append_zero=True)


def _check_sigmas(sigmas, name: str = "sigmas") -> np.ndarray:
    """A strictly decreasing 1-D grid of at least 2 finite noise levels ``>= 0`` (float64 numpy)."""
    if is_torch(sigmas):
        sigmas = sigmas.detach().cpu().numpy()
    sig = check_array(name, sigmas, dtype=np.float64, finite=False).reshape(-1)
    if sig.size < 2:
        raise ValueError(f"{name} must hold at least 2 noise levels, got {sig.size}")
    if not np.all(np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError(f"{name} must be finite and >= 0, got min {np.nanmin(sig) if np.any(~np.isnan(sig)) else sig[0]}")
    if np.any(np.diff(sig) >= 0):
        raise ValueError(f"{name} must be strictly decreasing, got {sig[:6].tolist()}{' ...' if sig.size > 6 else ''}")
    return sig


def _check_start(x):
    """The starting points: a finite real array or tensor with at least one axis."""
    return check_array("x", x, min_ndim=1, expected="(..., n)")


def _check_extra(extra_args) -> dict:
    if extra_args is None:
        return {}
    if not isinstance(extra_args, Mapping):
        raise TypeError(f"extra_args must be a dict of keyword arguments for the denoiser, got {type(extra_args).__name__}")
    return dict(extra_args)


def _notify(callback, x, i, sigma, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "denoised": denoised})


# --------------------------------------------------------------------------- noise sources
class _Noise:
    """Standard normal draws shaped like ``x``, from one stream or one stream per problem (leading axis)."""

    def __init__(self, x, random_state):
        self.torch = is_torch(x)
        self.per_problem = isinstance(random_state, (list, tuple, np.ndarray))
        if self.per_problem:
            if np.ndim(x) < 2 and not self.torch:
                raise ValueError("random_state as a sequence needs x with a leading problem axis (x.ndim >= 2)")
            rngs = problem_generators(random_state, int(x.shape[0]))
            self.streams = [torch_generator(r, device=x.device) for r in rngs] if self.torch else rngs
        elif self.torch:
            self.streams = torch_generator(random_state, device=x.device)
        else:
            if is_torch(random_state):
                raise TypeError("random_state: a torch.Generator needs torch inputs x")
            self.streams = check_random_state(random_state)

    def like(self, x):
        if self.torch:
            torch = array_namespace(x)
            if self.per_problem:
                return torch.stack(
                    [torch.randn(tuple(x.shape[1:]), generator=g, dtype=x.dtype, device=x.device) for g in self.streams]
                )
            return torch.randn(tuple(x.shape), generator=self.streams, dtype=x.dtype, device=x.device)
        if self.per_problem:
            z = np.stack([g.standard_normal(np.shape(x)[1:]) for g in self.streams])
        else:
            z = self.streams.standard_normal(np.shape(x))
        return z.astype(np.asarray(x).dtype, copy=False)


# --------------------------------------------------------------------------- deterministic
def sample_euler(denoise: Denoiser, x, sigmas, *, extra_args: Mapping | None = None, callback: Callable | None = None):
    """Euler's method for the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``.

    Parameters
    ----------
    denoise : callable ``denoise(x, scale, sigma, **extra_args)``
        Any denoiser (see the module docstring); called with ``scale = 1``.
    x : array or tensor ``(..., n)``
        Starting points at noise level ``sigmas[0]`` (typically ``sigmas[0] * z``).
    sigmas : array ``(S + 1,)``
        Strictly decreasing noise levels; the last one may be 0 (e.g.
        ``karras_sigmas(S, append_zero=True)``).
    extra_args : dict, optional
        Keyword arguments passed to every ``denoise`` call (k-diffusion's convention).
    callback : callable, optional
        Called before each step with ``{"x", "i", "sigma", "denoised"}`` (the point
        ``x_i`` at ``sigma_i`` and ``D(x_i, sigma_i)``).

    Returns
    -------
    The points at ``sigmas[-1]``, same type, shape and dtype as ``x``.

    Raises
    ------
    TypeError, ValueError
        ``x`` not a finite real array; ``sigmas`` not a strictly decreasing grid
        of at least 2 finite levels ``>= 0``; ``extra_args`` not a dict.
    """
    return _probability_flow(denoise, x, sigmas, extra_args, callback, heun=False)


def sample_heun(denoise: Denoiser, x, sigmas, *, extra_args: Mapping | None = None, callback: Callable | None = None):
    """Heun's second-order method for the probability-flow ODE (Karras et al. 2022, Algorithm 1).

    Each step to ``sigma_{i+1} > 0`` costs two denoiser calls; the step to
    ``sigma = 0`` is an Euler step (it returns ``D(x, sigma_last)``).  With ``S``
    positive levels and a final zero this is ``2 S - 1`` calls (35 for EDM's 18 steps).
    Arguments and return value as :func:`sample_euler`.

    Examples
    --------
    >>> from molrg import MoLRG, karras_sigmas
    >>> m = MoLRG.random(6, [2], random_state=0)
    >>> z = np.random.default_rng(1).standard_normal((4, 6)) * 80.0
    >>> x0 = sample_heun(closed_form_denoiser(m), z, karras_sigmas(18, append_zero=True))
    >>> bool(np.allclose(x0, x0 @ m.bases[0] @ m.bases[0].T, atol=1e-8))
    True
    """
    return _probability_flow(denoise, x, sigmas, extra_args, callback, heun=True)


def _probability_flow(denoise, x, sigmas, extra_args, callback, *, heun: bool):
    """Euler or Heun steps of ``dx/dsigma = (x - D(x, sigma)) / sigma`` (the public twins validate here)."""
    sig = _check_sigmas(sigmas)
    x = _check_start(x)
    extra = _check_extra(extra_args)
    for i in range(sig.size - 1):
        s_i, s_next = float(sig[i]), float(sig[i + 1])
        denoised = denoise(x, 1.0, s_i, **extra)
        _notify(callback, x, i, s_i, denoised)
        d = (x - denoised) / s_i
        dt = s_next - s_i
        if not heun or s_next == 0.0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = (x_2 - denoise(x_2, 1.0, s_next, **extra)) / s_next
            x = x + (d + d_2) * (0.5 * dt)
    return x


# --------------------------------------------------------------------------- stochastic
def sample_ddpm(
    denoise: Denoiser,
    x,
    sigmas,
    *,
    extra_args: Mapping | None = None,
    random_state: Any = None,
    callback: Callable | None = None,
):
    r"""Stochastic DDPM ancestral sampler on a sigma grid.

    Each step replaces ``x_0`` by ``D = D(x_i, sigma_i)`` in the Gaussian posterior of the
    forward process and samples from it:

    .. math::

        x_{i+1} = D + \frac{\sigma_{i+1}^2}{\sigma_i^2}(x_i - D)
                  + \sigma_{i+1}\sqrt{1 - \sigma_{i+1}^2/\sigma_i^2}\; z_i .

    Parameters
    ----------
    denoise, x, sigmas, extra_args, callback
        As :func:`sample_euler`.
    random_state : None, int, numpy Generator, torch Generator or sequence of seeds
        Source of the fresh noise ``z_i`` (see the module docstring; a sequence
        gives one stream per entry of the leading axis of ``x``).

    Returns
    -------
    The points at ``sigmas[-1]``, same type, shape and dtype as ``x``.
    """
    sig = _check_sigmas(sigmas)
    x = _check_start(x)
    extra = _check_extra(extra_args)
    noise = _Noise(x, random_state)
    for i in range(sig.size - 1):
        s_i, s_next = float(sig[i]), float(sig[i + 1])
        denoised = denoise(x, 1.0, s_i, **extra)
        _notify(callback, x, i, s_i, denoised)
        ratio = (s_next / s_i) ** 2
        x = denoised + (x - denoised) * ratio
        if s_next > 0:
            x = x + noise.like(x) * float(s_next * np.sqrt(1.0 - ratio))
    return x


PREDICTIONS = ("eps", "score", "x0")
VARIANCES = ("beta", "posterior")


def _alpha_bars(schedule) -> np.ndarray:
    ab = getattr(schedule, "alpha_bars", schedule)
    ab = check_array("schedule (alpha_bars)", ab.detach().cpu().numpy() if is_torch(ab) else ab, ndim=1, dtype=np.float64)
    if ab.size < 1 or np.any(ab <= 0) or np.any(ab >= 1) or np.any(np.diff(ab) >= 0):
        raise ValueError("schedule's alpha_bars must be strictly decreasing values in (0, 1)")
    return ab


def _check_steps(steps, T: int) -> np.ndarray:
    if steps is None:
        return np.arange(T)
    if is_torch(steps):
        steps = steps.detach().cpu().numpy()
    k = check_array("steps", steps, ndim=1, dtype=np.float64)
    if k.size < 1 or np.any(k != np.round(k)) or np.any(k < 0) or np.any(k > T - 1) or np.any(np.diff(k) <= 0):
        raise ValueError(f"steps must be strictly increasing integer step indices in [0, {T - 1}], got {np.asarray(steps)[:6].tolist()}")
    return k.astype(np.int64)


def sample_ddpm_discrete(
    model: Callable,
    x,
    schedule,
    *,
    steps=None,
    prediction: str = "eps",
    variance: str = "beta",
    final_noise: bool = False,
    extra_args: Mapping | None = None,
    random_state: Any = None,
    callback: Callable | None = None,
):
    r"""DDPM ancestral sampling on a discrete schedule (Ho et al. 2020, Algorithm 2; SPEC B4, B5).

    The chain runs backwards over the step indices ``steps`` (increasing, a
    subset of ``0 .. T-1``) from ``x`` at the last one.  A step from ``k`` to the
    previous index used ``k'`` (``alpha_bar_{-1} = 1``: the last step lands on
    clean data) is

    .. math::

        \alpha = \bar\alpha_k / \bar\alpha_{k'}, \quad \beta = 1 - \alpha, \qquad
        x \leftarrow \frac{x + \beta\, \hat s(x, k)}{\sqrt{\alpha}} + \sigma_k z,

    with the score ``s_hat`` read from the model's output ``out = model(x, k, **extra_args)``:
    ``"score"``: ``s_hat = out``; ``"eps"``: ``s_hat = -out / sqrt(1 - alpha_bar_k)``;
    ``"x0"``: ``s_hat = -(x - sqrt(alpha_bar_k) out) / (1 - alpha_bar_k)`` (Tweedie).
    The fresh noise has variance ``sigma_k^2 = beta`` (``variance="beta"``) or the
    posterior variance ``beta (1 - alpha_bar_{k'}) / (1 - alpha_bar_k)``
    (``"posterior"``); the final step adds none unless ``final_noise=True``.
    With all steps this is Algorithm 2 exactly (``alpha``, ``beta`` are the
    schedule's own); on a strided subset the merged ``alpha, beta`` give the
    same Markov chain on the sub-grid (DDIM's ``eta = 1`` sampler).

    Parameters
    ----------
    model : callable ``model(x, k, **extra_args)``
        ``x`` shaped like the input, ``k`` a Python int step index; returns an
        array or tensor shaped like ``x`` (the prediction named by ``prediction``).
    x : array or tensor ``(..., n)``
        Starting points, typically ``N(0, I)`` draws at the last step.
    schedule : object with ``alpha_bars``, or an array of them
        ``alpha_bar_k`` for ``k = 0 .. T-1``, strictly decreasing in ``(0, 1)``
        (e.g. :class:`locality.DDPMSchedule`).
    steps : 1-d array of ints, optional
        The step indices used (default: all ``T``).
    prediction : {"eps", "score", "x0"}, default "eps"
    variance : {"beta", "posterior"}, default "beta"
    final_noise : bool, default False
        Add noise on the last step too (the chain of SPEC B4 does: its exact
        covariance recursion ``C <- B C B^T + beta I`` runs over every step).
    extra_args : dict, optional
        Passed to every model call.
    random_state : None, int, numpy Generator, torch Generator or sequence of seeds
        The fresh noise (see the module docstring).
    callback : callable, optional
        Called after each model call with ``{"x", "i", "k", "output"}``.

    Returns
    -------
    Same type, shape and dtype as ``x``.

    Examples
    --------
    >>> ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    >>> score = lambda x, k: -x            # the score of N(0, I) at every step
    >>> x = sample_ddpm_discrete(score, np.random.default_rng(0).standard_normal((20000, 1)), ab,
    ...                          prediction="score", random_state=1)
    >>> round(float(x.var()), 1)
    1.0
    """
    ab = _alpha_bars(schedule)
    k_used = _check_steps(steps, ab.size)
    check_choice("prediction", prediction, PREDICTIONS)
    check_choice("variance", variance, VARIANCES)
    if not isinstance(final_noise, (bool, np.bool_)):
        raise TypeError(f"final_noise must be True or False, got {final_noise!r}")
    x = _check_start(x)
    extra = _check_extra(extra_args)
    noise = _Noise(x, random_state)

    prev = np.concatenate([[-1], k_used[:-1]])
    ab_prev = np.where(prev >= 0, ab[np.maximum(prev, 0)], 1.0)
    ab_now = ab[k_used]
    if steps is None and hasattr(schedule, "alphas") and hasattr(schedule, "betas"):
        alpha, beta = np.asarray(schedule.alphas, dtype=np.float64), np.asarray(schedule.betas, dtype=np.float64)
    else:
        alpha = ab_now / ab_prev
        beta = 1.0 - alpha
    var = beta.copy() if variance == "beta" else beta * (1.0 - ab_prev) / (1.0 - ab_now)
    if not final_noise:
        var[0] = 0.0
    # x <- (x + c * out + d * x) / sqrt(alpha) + sqrt(var) z, from the score form above
    if prediction == "score":
        c_out, c_x = beta, np.zeros_like(beta)
    elif prediction == "eps":
        c_out, c_x = -beta / np.sqrt(1.0 - ab_now), np.zeros_like(beta)
    else:  # x0: s_hat = (sqrt(ab) out - x) / (1 - ab)
        c_out, c_x = beta * np.sqrt(ab_now) / (1.0 - ab_now), -beta / (1.0 - ab_now)
    inv_sqrt_alpha = 1.0 / np.sqrt(alpha)
    noise_std = np.sqrt(var)
    for j in range(k_used.size - 1, -1, -1):
        k = int(k_used[j])
        out = model(x, k, **extra)
        if callback is not None:
            callback({"x": x, "i": k_used.size - 1 - j, "k": k, "output": out})
        x_new = x + float(c_out[j]) * out
        if c_x[j] != 0.0:
            x_new = x_new + float(c_x[j]) * x
        x = x_new * float(inv_sqrt_alpha[j])
        if noise_std[j] > 0:
            x = x + float(noise_std[j]) * noise.like(x)
    return x


SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "ddpm": sample_ddpm}


def _array_kind(dtype, device, backend):
    """``"torch"`` or ``"numpy"`` from ``dtype``/``device`` (default torch float32, as before)."""
    if backend is not None:
        check_choice("backend", backend, ("torch", "numpy"))
        return backend
    if dtype is not None:
        return "torch" if type(dtype).__module__.split(".")[0] == "torch" else "numpy"
    return "torch"


def sample(
    denoise: Denoiser,
    shape,
    *,
    solver: str = "heun",
    steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    sigmas=None,
    extra_args: Mapping | None = None,
    random_state: Any = None,
    dtype=None,
    device: Any = None,
    callback: Callable | None = None,
    n_steps: int | None = None,
    backend: str | None = None,
):
    """Generate samples: ``x_T = sigma_max z`` then a sampler on a Karras grid (SPEC A9).

    Parameters
    ----------
    denoise : callable ``denoise(x, scale, sigma, **extra_args)``
        Any denoiser.
    shape : tuple
        Shape of the output, ``(..., n)`` (e.g. ``(M, n)``, or ``(E, M, n)`` for an ensemble).
    solver : {"heun", "euler", "ddpm"}, default "heun"
    steps, sigma_min, sigma_max, rho
        The Karras grid (:func:`molrg.schedules.karras_sigmas` with a final 0;
        EDM defaults: 18 steps, 0.002 to 80, rho 7).
    sigmas : array, optional
        An explicit decreasing grid (overrides the four previous arguments).
    extra_args : dict, optional
        Passed to every denoiser call.
    random_state : None, int or numpy Generator
        Seeds the starting noise and, for ``"ddpm"``, the fresh noise of every step.
    dtype : numpy or torch dtype, optional
        The array type and precision of the samples: a torch dtype gives torch
        tensors, a numpy dtype numpy arrays; default torch float32.
    device : default "cpu" (torch only)
    callback : callable, optional
        See :func:`sample_euler`.
    n_steps : int, optional
        Deprecated name of ``steps`` (``FutureWarning``).
    backend : {"torch", "numpy"}, optional
        Deprecated (``FutureWarning``): give ``dtype`` (``np.float64`` or ``torch.float32``).

    Returns
    -------
    Samples of the given shape.

    Examples
    --------
    >>> from molrg import MoLRG
    >>> m = MoLRG.random(8, [2, 2], random_state=0)
    >>> X = sample(closed_form_denoiser(m), (16, 8), random_state=1)
    >>> tuple(X.shape), X.dtype
    ((16, 8), torch.float32)
    >>> sample(closed_form_denoiser(m), (16, 8), dtype=np.float64, random_state=1).dtype
    dtype('float64')
    """
    steps = deprecated_alias("n_steps", "steps", n_steps, steps, 18)
    if backend is not None:
        warnings.warn("backend is deprecated in sample(); give dtype=np.float64 (numpy) or a torch dtype", FutureWarning, stacklevel=2)
    check_choice("solver", solver, SAMPLERS)
    kind = _array_kind(dtype, device, backend)
    if sigmas is None:
        steps = check_int("steps", steps, low=1)
        sigma_min = check_real("sigma_min", sigma_min, low=0.0, low_open=True)
        sigma_max = check_real("sigma_max", sigma_max, low=sigma_min, low_open=True)
        sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho, append_zero=True)
    sig = _check_sigmas(sigmas)
    if isinstance(shape, (str, bytes)):
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}")
    try:
        shape = tuple(check_int(f"shape[{j}]", v) for j, v in enumerate(shape))
    except TypeError as exc:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r} ({exc})") from None
    if len(shape) < 1 or min(shape) < 1:
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
    rng = check_random_state(random_state)
    if kind == "torch":
        import torch

        dtype = torch.float32 if dtype is None else dtype
        device = "cpu" if device is None else device
        gen = torch_generator(rng, device=device)
        x = torch.randn(shape, generator=gen, dtype=dtype, device=device) * float(sig[0])
    else:
        dtype = np.float64 if dtype is None else dtype
        x = (rng.standard_normal(shape) * sig[0]).astype(dtype)
    kw = {"random_state": rng} if solver == "ddpm" else {}
    return SAMPLERS[solver](denoise, x, sig, extra_args=extra_args, callback=callback, **kw)


# --------------------------------------------------------------------------- denoiser adapters
class _ClosedForm:
    def __init__(self, model):
        if not hasattr(model, "bases") or not hasattr(model, "weights"):
            raise TypeError(f"model must be a MoLRG, got {type(model).__name__}")
        self.model = model

    def __call__(self, x, scale, sigma, **extra_args):
        if extra_args:
            raise TypeError(f"the closed-form denoiser takes no extra arguments, got {sorted(extra_args)}")
        return posterior_mean(self.model, x, scale, sigma)

    def __repr__(self):
        return f"closed_form_denoiser({self.model!r})"


class _FromBases:
    def __init__(self, bases, log_weights, noise_var):
        self.bases = bases
        self.log_weights = log_weights
        self.noise_var = noise_var

    def __call__(self, x, scale, sigma, **extra_args):
        if extra_args:
            raise TypeError(f"the bases denoiser takes no extra arguments, got {sorted(extra_args)}")
        return posterior_mean_from_bases(self.bases, self.log_weights, x, scale, sigma, self.noise_var)

    def __repr__(self):
        return f"bases_denoiser(K={len(self.bases)})"


def closed_form_denoiser(model) -> Denoiser:
    """The closed-form posterior mean of a MoLRG (SPEC A3) as ``denoise(x, scale, sigma)``."""
    return _ClosedForm(model)


def bases_denoiser(bases, weights=None, noise_std: float = 0.0) -> Denoiser:
    """The softmax DAE of SPEC A4 (eq. 9) with given (e.g. learned) bases as ``denoise(x, scale, sigma)``.

    Parameters
    ----------
    bases : sequence of ``(n, d_k)`` arrays or tensors
        The bases ``U_k`` (for example ``train_dae(...)``'s learned bases).
    weights : array ``(K,)``, optional
        Mixing weights; uniform by default.
    noise_std : float, default 0
        Ambient noise ``delta`` assumed by the posterior.
    """
    if is_torch(bases) or (isinstance(bases, np.ndarray) and bases.ndim == 2):
        bases = (bases,)
    bases = tuple(bases)
    if not bases:
        raise ValueError("bases must contain at least one basis")
    K = len(bases)
    w = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (K,) or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be {K} positive numbers, got {w.tolist()}")
    noise_std = check_real("noise_std", noise_std, low=0.0)
    return _FromBases(bases, np.log(w / w.sum()), noise_std**2)


def empirical_denoiser(X_train, **kwargs) -> Denoiser:
    """The empirical optimal denoiser of a training set (see :class:`molrg.empirical.EmpiricalDenoiser`)."""
    from .empirical import EmpiricalDenoiser

    return EmpiricalDenoiser(X_train, **kwargs)
