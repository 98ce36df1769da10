r"""Jacobians of denoisers and their numerical rank along sampling trajectories (SPEC A9; paper Lemma 2).

For a MoLRG the closed-form posterior mean is
``E[x_0|x_t] = c_t/s_t sum_k w_k(x_t) P_k x_t``, whose Jacobian is
``c_t/s_t sum_k P_k (w_k I + x_t grad w_k^T)``: its range lies in
``span(U_1, ..., U_K)``, so ``rank <= sum_k d_k`` at every noise level (Lemma 2).
At high SNR ``1/sigma^2`` the weights are one-hot and the Jacobian is
``c_t/s_t P_k``: rank ``d_k`` of the component the point sits on.

The *numerical rank* is, by default, the paper's eq. (46) as the authors' code
computes it (SPEC A9): the *energy rank*, the smallest ``r`` with
``sqrt(cumsum(s^2))[r] > 0.99 ||s||_2`` over the singular values ``s``.  The
relative-threshold rank (singular values above ``rtol = 1e-3`` times the largest)
is the option ``method="threshold"``; it is much stricter, and counts directions
that carry almost none of the Jacobian's energy (an MLP's Jacobian has small
singular values in every direction).  The rank ratio is the rank divided by the
ambient dimension ``n``, plotted against ``SNR = 1/sigma_t`` (the paper's axis)
along the trajectories of a deterministic sampler (the paper's Figures 3 and 7).

Jacobians use reverse mode, by default (``method="replicate"``) with plain autograd:
the batch is copied ``n`` times (a new axis before the coordinates, so the leading
axes keep their meaning for ensembles and per-point ``sigma``), and one backward
pass of the sum over copies ``a`` of copy ``a``'s ``a``-th output gives every row of
every point's Jacobian (a denoiser acts row by row).  The same products as the
``torch.func`` forms below, without their per-operation batching (2-10x less CPU on
the closed-form MoLRG denoisers).  The ``torch.func`` forms are ``jacrev`` (vectorized
over the ``n`` cotangents with ``vmap``) of either

* ``method="rowsum"``: ``x -> sum over rows of denoise(x)``.  A denoiser
  acts row by row, so ``d/dx_j`` of the row sum is row ``j``'s own Jacobian: ``n``
  batched backward passes give every point's Jacobian, for any leading shape
  (ensembles included) and any per-point ``sigma``;
* ``method="vmap"``: ``vmap(jacrev(point -> denoise(point[None])[0]))``, one point at
  a time (``sigma`` must then be a scalar; the denoiser must be vmap-compatible).

A denoiser with a ``jacobian(x, scale, sigma)`` method (an MLP member,
:meth:`molrg.mlp.MLPDenoiser.member`) gives its Jacobian itself under ``"replicate"``:
the chain rule written out as batched products, without the ``torch.func``
transforms (most of the time of a small network's ``jacrev``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .sampling import SAMPLERS, _check_sigmas
from .schedules import karras_sigmas
from .utils import array_namespace, check_choice, check_int, check_random_state, check_real, is_torch, torch_generator

__all__ = ["denoiser_jacobian", "numerical_rank", "RankTrajectory", "rank_along_trajectory"]


def denoiser_jacobian(denoise: Callable, x, scale=1.0, sigma=1.0, *, method: str = "replicate"):
    """Jacobian ``d denoise(x, scale, sigma) / d x`` at every point of a batch.

    Parameters
    ----------
    denoise : callable ``denoise(x, scale, sigma)``
        Any torch-differentiable denoiser acting row by row (closed form, bases,
        empirical, MLP).
    x : tensor or array ``(..., n)``
        Points (numpy inputs are converted to float64 tensors).
    scale, sigma : float or array over the leading axes of ``x``
    method : {"replicate", "rowsum", "vmap"}, default "replicate"
        See the module docstring.

    Returns
    -------
    tensor ``(..., n, n)``
        ``J[..., a, b] = d D_a / d x_b``, same dtype as ``x``.

    Examples
    --------
    >>> import torch
    >>> from molrg import MoLRG
    >>> from molrg.sampling import closed_form_denoiser
    >>> m = MoLRG.random(6, [2], random_state=0)
    >>> J = denoiser_jacobian(closed_form_denoiser(m), torch.randn(3, 6, dtype=torch.float64), 1.0, 1.0)
    >>> torch.allclose(J[0], 0.5 * torch.as_tensor(m.projectors()[0]))
    True
    """
    import torch
    from torch.func import jacrev, vmap

    check_choice("method", method, ("replicate", "rowsum", "vmap"))
    if not is_torch(x):
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    x = x.detach()
    if x.ndim < 1:
        raise ValueError(f"x must have shape (..., n), got {tuple(x.shape)}")
    n = x.shape[-1]
    batch = tuple(x.shape[:-1])
    if method == "vmap":
        if np.ndim(np.asarray(sigma.detach().cpu() if is_torch(sigma) else sigma)) or np.ndim(
            np.asarray(scale.detach().cpu() if is_torch(scale) else scale)
        ):
            raise ValueError("method='vmap' needs scalar scale and sigma; use method='rowsum' for per-point values")
        flat = x.reshape(-1, n)

        def one(p):
            return denoise(p[None], scale, sigma)[0]

        J = vmap(jacrev(one))(flat)
        return J.reshape(batch + (n, n))

    explicit = getattr(denoise, "jacobian", None)
    if method == "replicate" and callable(explicit):  # a denoiser that writes its Jacobian out (molrg.mlp's members)
        return explicit(x, scale, sigma)
    if method == "replicate":
        # n copies of every point, copy a's output coordinate a summed: one backward pass gives all the rows
        with torch.enable_grad():
            rep = x.unsqueeze(-2).expand(batch + (n, n)).clone().requires_grad_(True)
            out = denoise(rep, _per_copy(scale, batch), _per_copy(sigma, batch))
            (J,) = torch.autograd.grad(out.diagonal(dim1=-2, dim2=-1).sum(), rep)
        return J.to(x.dtype)

    def rowsum(z):
        return denoise(z, scale, sigma).reshape(-1, n).sum(0)

    J = jacrev(rowsum)(x)  # (n, *batch, n): J[a, ..., b] = d D_a(x_...) / d x_{..., b}
    return torch.movedim(J, 0, -2)


def _per_copy(v, batch):
    """A per-point ``scale``/``sigma`` over ``batch`` with one more trailing axis for the copies (scalars unchanged)."""
    if is_torch(v):
        return v.detach()[..., None] if v.ndim else v
    a = np.asarray(v)
    return a[..., None] if a.ndim else v


RANK_METHODS = ("energy", "threshold")


def _singular_values(J) -> np.ndarray:
    """Singular values of ``J (..., m, n)`` over the last two axes, float64 numpy, descending."""
    if is_torch(J):
        if J.ndim < 2:
            raise ValueError(f"J must have at least 2 axes, got shape {tuple(J.shape)}")
        return array_namespace(J).linalg.svdvals(J.detach().double()).cpu().numpy()
    J = np.asarray(J)
    if J.dtype.kind not in "biuf":
        raise TypeError(f"J must be a real numeric array, got dtype {J.dtype}")
    if J.ndim < 2:
        raise ValueError(f"J must have at least 2 axes, got shape {J.shape}")
    return np.linalg.svd(J.astype(np.float64), compute_uv=False)


def _rank_from_singular_values(sv: np.ndarray, method: str, threshold: float, rtol: float) -> np.ndarray:
    """Private kernel of :func:`numerical_rank` on descending singular values (clean input)."""
    top = sv[..., :1]
    if method == "energy":
        energy = np.sqrt(np.cumsum(sv**2, axis=-1))  # energy[..., r-1] = ||s_{1..r}||_2
        total = energy[..., -1:]
        # smallest r with energy[r-1] > threshold * total: one more than the count at or below it
        rank = np.minimum((energy <= threshold * total).sum(-1) + 1, sv.shape[-1])
        return np.asarray(np.where(total[..., 0] > 0, rank, 0))
    if method == "threshold":
        return np.asarray(((sv > rtol * top) & (top > 0)).sum(-1))
    raise ValueError(f"method must be one of {list(RANK_METHODS)}, got {method!r}")


def numerical_rank(J, *, method: str = "energy", threshold: float = 0.99, rtol: float = 1e-3):
    r"""Numerical rank of matrices over the last two axes (paper eq. 46).

    With singular values :math:`s_1 \ge s_2 \ge \dots` of ``J``:

    * ``method="energy"`` (default; the paper's eq. 46 as the authors compute it):
      the smallest ``r`` with

      .. math:: \Big(\sum_{i \le r} s_i^2\Big)^{1/2} > \text{threshold}\ \|s\|_2,

      i.e. the fewest directions holding a fraction ``threshold^2`` of the squared
      Frobenius norm;
    * ``method="threshold"``: the count of ``s_i > rtol * s_1`` (relative threshold).

    Parameters
    ----------
    J : array or tensor ``(..., m, n)``
    method : {"energy", "threshold"}, default "energy"
    threshold : float in (0, 1), default 0.99
        Energy fraction (of the 2-norm of the singular values) of ``method="energy"``.
    rtol : float in (0, 1), default 1e-3
        Relative threshold of ``method="threshold"``.

    Returns
    -------
    int array ``J.shape[:-2]`` (numpy); 0 for an all-zero matrix.

    Examples
    --------
    >>> J = np.diag([1.0, 0.5, 1e-2, 1e-5])
    >>> int(numerical_rank(J))  # ||s|| = 1.1181; s_1 = 1 < 0.99 ||s||, sqrt(1.25) > 0.99 ||s||
    2
    >>> int(numerical_rank(J, method="threshold"))
    3
    """
    check_choice("method", method, RANK_METHODS)
    threshold = check_real("threshold", threshold, low=0.0, high=1.0, low_open=True, high_open=True)
    rtol = check_real("rtol", rtol, low=0.0, high=1.0, low_open=True, high_open=True)
    return _rank_from_singular_values(_singular_values(J), method, threshold, rtol)


@dataclass(frozen=True)
class RankTrajectory:
    """Numerical Jacobian ranks along sampling trajectories (:func:`rank_along_trajectory`).

    Attributes
    ----------
    sigma : array ``(S,)``
        The positive noise levels visited (decreasing).
    snr : array ``(S,)``
        ``1 / sigma`` (the paper's axis in Figures 3 and 7).
    energy_rank : int array ``(S, *batch)``
        Energy rank (:func:`numerical_rank`, ``method="energy"``) at each level and trajectory.
    threshold_rank : int array ``(S, *batch)``
        Relative-threshold rank (``method="threshold"``) of the same Jacobians.
    n : int
        Ambient dimension.
    samples : array ``(*batch, n)``
        The trajectories' end points.
    points : array ``(S, *batch, n)`` or None
        The visited points (kept when ``keep_points=True``).
    """

    sigma: np.ndarray
    snr: np.ndarray
    energy_rank: np.ndarray
    threshold_rank: np.ndarray
    n: int
    samples: np.ndarray
    points: np.ndarray | None = None

    @property
    def ranks(self) -> np.ndarray:
        """The energy ranks (the default numerical rank)."""
        return self.energy_rank

    @property
    def rank_ratio(self) -> np.ndarray:
        """Mean energy rank over trajectories divided by ``n``, shape ``(S,)``."""
        return self.energy_rank.reshape(self.energy_rank.shape[0], -1).mean(1) / self.n

    def to_frame(self):
        """Tidy table: one row per noise level with the mean ranks and rank ratios over trajectories."""
        import pandas as pd

        S = self.sigma.shape[0]
        er = self.energy_rank.reshape(S, -1).astype(float)
        tr = self.threshold_rank.reshape(S, -1).astype(float)
        return pd.DataFrame(
            {
                "step": np.arange(S),
                "sigma": self.sigma,
                "snr": self.snr,
                "energy_rank": er.mean(1),
                "energy_rank_ratio": er.mean(1) / self.n,
                "threshold_rank": tr.mean(1),
                "threshold_rank_ratio": tr.mean(1) / self.n,
            }
        )


def rank_along_trajectory(
    denoise: Callable,
    x_T=None,
    *,
    n: int | None = None,
    n_samples: int = 16,
    sigmas=None,
    n_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    solver: str = "heun",
    threshold: float = 0.99,
    rtol: float = 1e-3,
    keep_points: bool = False,
    random_state: Any = None,
    dtype=None,
    device: Any = "cpu",
) -> RankTrajectory:
    """Numerical rank of the denoiser's Jacobian along sampling trajectories (SPEC A9, paper Fig. 3).

    At each positive level ``sigma_i`` of the grid the sampler visits ``x_i``; the
    Jacobian of ``denoise(., 1, sigma_i)`` at ``x_i`` is taken (:func:`denoiser_jacobian`)
    and its numerical rank counted (:func:`numerical_rank`).

    Parameters
    ----------
    denoise : callable ``denoise(x, scale, sigma)``
    x_T : tensor ``(..., n)``, optional
        Starting points at ``sigmas[0]``; drawn as ``sigma_max z`` (``n_samples`` of them) if omitted.
    n : int
        Ambient dimension (needed when ``x_T`` is omitted).
    sigmas, n_steps, sigma_min, sigma_max, rho, solver
        The grid and sampler (default: EDM's 18-step Heun).
    threshold, rtol : float, default 0.99 and 1e-3
        The energy fraction of the energy rank and the relative threshold of the
        threshold rank (:func:`numerical_rank`); both ranks are computed from one SVD.
    keep_points : bool
        Keep the visited points in the result.
    random_state : None, int, numpy Generator
        Starting noise (and DDPM noise).
    dtype, device : default float64 on CPU.

    Returns
    -------
    RankTrajectory
    """
    import torch

    check_choice("solver", solver, SAMPLERS)
    if sigmas is None:
        sigmas = karras_sigmas(check_int("n_steps", n_steps, low=1), sigma_min, sigma_max, rho, append_zero=True)
    sig = _check_sigmas(sigmas)
    rng = check_random_state(random_state)
    dtype = torch.float64 if dtype is None else dtype
    if x_T is None:
        n = check_int("n", n, low=1)
        n_samples = check_int("n_samples", n_samples, low=1)
        gen = torch_generator(rng, device=device)
        x_T = torch.randn((n_samples, n), generator=gen, dtype=dtype, device=device) * float(sig[0])
    elif not is_torch(x_T):
        x_T = torch.as_tensor(np.asarray(x_T), dtype=dtype, device=device)
    n = x_T.shape[-1]
    threshold = check_real("threshold", threshold, low=0.0, high=1.0, low_open=True, high_open=True)
    rtol = check_real("rtol", rtol, low=0.0, high=1.0, low_open=True, high_open=True)
    levels, e_ranks, t_ranks, points = [], [], [], []

    def callback(info):
        xi = info["x"].detach()
        J = denoiser_jacobian(denoise, xi, 1.0, info["sigma"])
        levels.append(info["sigma"])
        sv = _singular_values(J)
        e_ranks.append(_rank_from_singular_values(sv, "energy", threshold, rtol))
        t_ranks.append(_rank_from_singular_values(sv, "threshold", threshold, rtol))
        if keep_points:
            points.append(xi.cpu().numpy())

    kw: dict[str, Any] = {"random_state": rng} if solver == "ddpm" else {}
    out = SAMPLERS[solver](denoise, x_T, sig, callback=callback, **kw)
    sigma = np.asarray(levels)
    return RankTrajectory(
        sigma=sigma,
        snr=1.0 / sigma,
        energy_rank=np.stack(e_ranks),
        threshold_rank=np.stack(t_ranks),
        n=int(n),
        samples=out.detach().cpu().numpy(),
        points=np.stack(points) if keep_points else None,
    )
