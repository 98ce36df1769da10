r"""Samplers that take any denoiser (SPEC A2, A9; k-diffusion ``sampling.py`` style).

A *denoiser* is any callable ``denoise(x, scale, sigma) -> E[x_0 | x_t]`` acting
row by row on a batch ``x`` of shape ``(..., n)``, with ``scale`` and ``sigma``
scalars or arrays over the leading axes (STYLE habit 4).  The closed-form MoLRG
posterior mean, a trained softmax DAE (its bases), the empirical optimal
denoiser of a training set and the MLP of :mod:`molrg.mlp` all have this form;
the adapters below build the callables.

All samplers run in EDM coordinates (``s_t = 1``, ``sigma_t = t``), where the
probability-flow ODE is

.. math::

    \frac{dx}{d\sigma} = \frac{x - D(x, \sigma)}{\sigma}

(Karras et al. 2022, eq. 3 with the Tweedie score).  A schedule with ``s_t != 1``
maps onto it by ``x_t = s_t \tilde x``: the denoisers take ``scale`` so that they
also serve such schedules, and the samplers always pass ``scale = 1``.

* :func:`sample_euler`, :func:`sample_heun`: deterministic probability flow
  (Euler; Heun's second-order method, with an Euler step to ``sigma = 0``,
  Karras et al. Algorithm 1).
* :func:`sample_ddpm`: the stochastic ancestral sampler; each step draws from the
  Gaussian posterior ``q(x_{i+1} | x_i, x_0 = D(x_i))`` of the forward process:
  ``x_{i+1} = D + (sigma_{i+1}^2 / sigma_i^2)(x_i - D) + sigma_{i+1} sqrt(1 - sigma_{i+1}^2/sigma_i^2) z``
  (DDPM, Ho et al. 2020, in VE coordinates; equal to k-diffusion's Euler
  ancestral sampler with ``eta = 1``).
* :func:`sample`: draw ``x_T = sigma_max z`` and run one of them on a Karras grid.

Samplers are backend-agnostic (numpy arrays or torch tensors; the dtype of
``x`` is kept) and batched over all leading axes.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .posterior import posterior_mean, posterior_mean_from_bases
from .schedules import karras_sigmas
from .utils import check_choice, check_int, check_random_state, check_real, is_torch, torch_generator

__all__ = [
    "get_sigmas_karras",
    "sample_euler",
    "sample_heun",
    "sample_ddpm",
    "sample",
    "closed_form_denoiser",
    "bases_denoiser",
    "empirical_denoiser",
    "SAMPLERS",
]

Denoiser = Callable[[Any, Any, Any], Any]


# --------------------------------------------------------------------------- sigma grid
def get_sigmas_karras(n_steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> np.ndarray:
    """Karras grid of ``n_steps`` decreasing noise levels followed by a final 0 (``n_steps + 1`` values).

    Karras et al. (2022) eq. 5; the defaults are EDM's.  The trailing zero is the
    k-diffusion convention: the last step of a sampler lands on clean data.

    Examples
    --------
    >>> get_sigmas_karras(3, 0.01, 10.0, 1.0).round(6).tolist()
    [10.0, 5.005, 0.01, 0.0]
    """
    return np.append(karras_sigmas(n_steps, sigma_min, sigma_max, rho), 0.0)


def _check_sigmas(sigmas) -> np.ndarray:
    sig = np.asarray(sigmas.detach().cpu() if is_torch(sigmas) else sigmas, dtype=np.float64).reshape(-1)
    if sig.size < 2:
        raise ValueError(f"sigmas must hold at least 2 noise levels, got {sig.size}")
    if not np.all(np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError("sigmas must be finite and >= 0")
    if np.any(np.diff(sig) >= 0):
        raise ValueError("sigmas must be strictly decreasing")
    return sig


def _notify(callback, x, i, sigma, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "denoised": denoised})


# --------------------------------------------------------------------------- deterministic
def sample_euler(denoise: Denoiser, x, sigmas, *, callback: Callable | None = None):
    """Euler's method for the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``.

    Parameters
    ----------
    denoise : callable ``denoise(x, scale, sigma)``
        Any denoiser (see the module docstring); called with ``scale = 1``.
    x : array or tensor ``(..., n)``
        Starting points at noise level ``sigmas[0]`` (typically ``sigmas[0] * z``).
    sigmas : array ``(S + 1,)``
        Strictly decreasing noise levels; the last one may be 0 (e.g. :func:`get_sigmas_karras`).
    callback : callable, optional
        Called before each step with ``{"x", "i", "sigma", "denoised"}`` (the point
        ``x_i`` at ``sigma_i`` and ``D(x_i, sigma_i)``).

    Returns
    -------
    The points at ``sigmas[-1]``, same type, shape and dtype as ``x``.
    """
    sig = _check_sigmas(sigmas)
    for i in range(sig.size - 1):
        s_i, s_next = float(sig[i]), float(sig[i + 1])
        denoised = denoise(x, 1.0, s_i)
        _notify(callback, x, i, s_i, denoised)
        d = (x - denoised) / s_i
        x = x + d * (s_next - s_i)
    return x


def sample_heun(denoise: Denoiser, x, sigmas, *, callback: Callable | None = None):
    """Heun's second-order method for the probability-flow ODE (Karras et al. 2022, Algorithm 1).

    Each step to ``sigma_{i+1} > 0`` costs two denoiser calls; the step to
    ``sigma = 0`` is an Euler step (it returns ``D(x, sigma_last)``).  With ``S``
    positive levels and a final zero this is ``2 S - 1`` calls (35 for EDM's 18 steps).
    Arguments and return value as :func:`sample_euler`.

    Examples
    --------
    >>> from molrg import MoLRG
    >>> m = MoLRG.random(6, [2], random_state=0)
    >>> z = np.random.default_rng(1).standard_normal((4, 6)) * 80.0
    >>> x0 = sample_heun(closed_form_denoiser(m), z, get_sigmas_karras(18))
    >>> bool(np.allclose(x0, x0 @ m.bases[0] @ m.bases[0].T, atol=1e-8))
    True
    """
    sig = _check_sigmas(sigmas)
    for i in range(sig.size - 1):
        s_i, s_next = float(sig[i]), float(sig[i + 1])
        denoised = denoise(x, 1.0, s_i)
        _notify(callback, x, i, s_i, denoised)
        d = (x - denoised) / s_i
        dt = s_next - s_i
        if s_next == 0.0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = (x_2 - denoise(x_2, 1.0, s_next)) / s_next
            x = x + (d + d_2) * (0.5 * dt)
    return x


# --------------------------------------------------------------------------- stochastic
def _normal_like(x, rng, gen):
    if is_torch(x):
        import torch

        return torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    return rng.standard_normal(np.shape(x)).astype(np.asarray(x).dtype, copy=False)


def sample_ddpm(denoise: Denoiser, x, sigmas, *, random_state: Any = None, callback: Callable | None = None):
    r"""Stochastic DDPM ancestral sampler.

    Each step replaces ``x_0`` by ``D = D(x_i, sigma_i)`` in the Gaussian posterior of the
    forward process and samples from it:

    .. math::

        x_{i+1} = D + \frac{\sigma_{i+1}^2}{\sigma_i^2}(x_i - D)
                  + \sigma_{i+1}\sqrt{1 - \sigma_{i+1}^2/\sigma_i^2}\; z_i .

    Parameters
    ----------
    denoise, x, sigmas, callback
        As :func:`sample_euler`.
    random_state : None, int, numpy Generator or torch Generator
        Source of the fresh noise ``z_i`` (torch inputs draw from a ``torch.Generator``
        derived from it).

    Returns
    -------
    The points at ``sigmas[-1]``, same type, shape and dtype as ``x``.
    """
    sig = _check_sigmas(sigmas)
    if is_torch(x):
        rng, gen = None, torch_generator(random_state, device=x.device)
    else:
        if not isinstance(random_state, np.random.Generator) and type(random_state).__module__.startswith("torch"):
            raise TypeError("random_state: a torch.Generator needs torch inputs x")
        rng, gen = check_random_state(random_state), None
    for i in range(sig.size - 1):
        s_i, s_next = float(sig[i]), float(sig[i + 1])
        denoised = denoise(x, 1.0, s_i)
        _notify(callback, x, i, s_i, denoised)
        ratio = (s_next / s_i) ** 2
        x = denoised + (x - denoised) * ratio
        if s_next > 0:
            x = x + _normal_like(x, rng, gen) * float(s_next * np.sqrt(1.0 - ratio))
    return x


SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "ddpm": sample_ddpm}


def sample(
    denoise: Denoiser,
    shape,
    *,
    solver: str = "heun",
    n_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    sigmas=None,
    random_state: Any = None,
    backend: str = "torch",
    dtype=None,
    device: Any = "cpu",
    callback: Callable | None = None,
):
    """Generate samples: ``x_T = sigma_max z`` then a sampler on a Karras grid (SPEC A9).

    Parameters
    ----------
    denoise : callable ``denoise(x, scale, sigma)``
        Any denoiser.
    shape : tuple
        Shape of the output, ``(..., n)`` (e.g. ``(M, n)``, or ``(E, M, n)`` for an ensemble).
    solver : {"heun", "euler", "ddpm"}, default "heun"
    n_steps, sigma_min, sigma_max, rho
        The Karras grid (:func:`get_sigmas_karras`, EDM defaults: 18 steps, 0.002 to 80, rho 7).
    sigmas : array, optional
        An explicit decreasing grid (overrides the four previous arguments).
    random_state : None, int or numpy Generator
        Seeds the starting noise and, for ``"ddpm"``, the fresh noise of every step.
    backend : {"torch", "numpy"}, default "torch"
        Array type of the samples (the denoiser must accept it).
    dtype : default float32 for torch, float64 for numpy
    device : default "cpu" (torch only)
    callback : callable, optional
        See :func:`sample_euler`.

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
    """
    check_choice("solver", solver, SAMPLERS)
    check_choice("backend", backend, ("torch", "numpy"))
    if sigmas is None:
        n_steps = check_int("n_steps", n_steps, low=1)
        sigma_min = check_real("sigma_min", sigma_min, low=0.0, low_open=True)
        sigma_max = check_real("sigma_max", sigma_max, low=sigma_min, low_open=True)
        sigmas = get_sigmas_karras(n_steps, sigma_min, sigma_max, rho)
    sig = _check_sigmas(sigmas)
    try:
        shape = tuple(int(v) for v in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
    if len(shape) < 1 or min(shape) < 1:
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
    rng = check_random_state(random_state)
    if backend == "torch":
        import torch

        dtype = torch.float32 if dtype is None else dtype
        gen = torch_generator(rng, device=device)
        x = torch.randn(shape, generator=gen, dtype=dtype, device=device) * float(sig[0])
    else:
        dtype = np.float64 if dtype is None else dtype
        x = (rng.standard_normal(shape) * sig[0]).astype(dtype)
    kw = {"random_state": rng} if solver == "ddpm" else {}
    return SAMPLERS[solver](denoise, x, sig, callback=callback, **kw)


# --------------------------------------------------------------------------- denoiser adapters
class _ClosedForm:
    def __init__(self, model):
        if not hasattr(model, "bases") or not hasattr(model, "weights"):
            raise TypeError(f"model must be a MoLRG, got {type(model).__name__}")
        self.model = model

    def __call__(self, x, scale, sigma):
        return posterior_mean(self.model, x, scale, sigma)

    def __repr__(self):
        return f"closed_form_denoiser({self.model!r})"


class _FromBases:
    def __init__(self, bases, log_weights, noise_var):
        self.bases = bases
        self.log_weights = log_weights
        self.noise_var = noise_var

    def __call__(self, x, scale, sigma):
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
