r"""Batched SGD on the denoising loss (SPEC A7; paper Algorithm 1).

:func:`train_dae` trains the bases of a single / softmax / hardmax DAE
(:mod:`molrg.denoisers`) on ``B`` independent training sets at once: the
parameter is one ``(B, n, D)`` stack and every step is a handful of batched
matrix products, so the cost per problem-step falls with ``B`` (see
``benchmarks/bench_sgd.py``).

One step, for every problem ``b`` (Algorithm 1):

1. draw ``batch_size`` training samples of problem ``b`` (uniformly, with
   replacement, among its valid rows), one ``t ~ rho`` and one
   ``eps ~ N(0, I_n)`` per sample;
2. ``loss_b = mean_m lambda_t ||x_theta(s_t (x_m + sigma_t eps_m), t) - x_m||^2``
   (SPEC A5, the kernel shared with :func:`molrg.loss.mc_loss`);
3. ``U_b <- U_b - (lr_k / B_coef) grad loss_b`` (``lr_k`` from the schedule,
   ``B_coef = E_t[lambda_t (2 c_t - c_t^2)]`` of SPEC A5: see ``lr``);
4. re-orthonormalize every ``U_k`` (polar factor, or the cheaper QR retraction
   which spans the same subspaces).

The objective summed over problems is ``sum_b loss_b`` (not a mean), so each
problem's gradient is the one it would have alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .denoisers import PARAMETERIZATIONS, make_denoiser
from .loss import _loss_and_grad_bases, _loss_terms, _times_from_uniform, closed_form_loss, get_weighting, loss_coefficients, time_range
from .schedules import get_schedule
from .utils import check_choice, check_dims, check_int, check_real, orthonormalize, problem_generators, random_orthonormal

__all__ = ["train_dae", "DAEResult", "problem_generators", "INITS", "LR_SCHEDULES"]

INITS = ("random", "spectral", "near_truth")
LR_SCHEDULES = ("cosine", "constant", "step")

_BUFFER_BYTES = 64 * 2**20  # noise drawn ahead, per chunk of steps


@dataclass
class DAEResult:
    """Output of :func:`train_dae`.

    Attributes
    ----------
    bases : tuple of K arrays ``(B, n, d_k)`` (``(n, d_k)`` for one unbatched problem)
        Learned orthonormal bases (float64, polar-orthonormalized at the end).
    loss_history : array ``(R, B)`` (``(R,)`` unbatched)
        Mini-batch Monte-Carlo loss averaged over windows of ``history_every`` steps.
    history_steps : array ``(R,)``
        Last step (1-based) of each window.
    closed_form_loss : array ``(B,)`` or float
        SPEC A5 closed form at the learned bases (for ``softmax``: the hardmax
        closed form, the paper's approximation of it, exact for K = 1).
    wall_time : float
        Seconds spent in :func:`train_dae` (initialization included).
    used_truth : bool
        True when ``init="near_truth"``: the start used the true bases, report separately.
    parameterization, init : str
    dims : tuple of int
    config : dict
        The remaining settings (schedule, lr, steps, ...).
    """

    bases: tuple
    loss_history: np.ndarray
    history_steps: np.ndarray
    closed_form_loss: Any
    wall_time: float
    used_truth: bool
    parameterization: str
    init: str
    dims: tuple
    config: dict = field(default_factory=dict)

    def bases_of(self, b: int) -> list:
        """The K bases ``(n, d_k)`` of problem ``b``."""
        if self.bases[0].ndim == 2:
            if b != 0:
                raise IndexError(f"one problem only, got b={b}")
            return list(self.bases)
        return [U[b] for U in self.bases]


# --------------------------------------------------------------------------- random streams
# --------------------------------------------------------------------------- validation helpers
def _check_X(X, mask):
    X = np.asarray(X)
    if X.dtype.kind not in "fiu":
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    batched = X.ndim == 3
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.shape[1] < 1 or X.shape[2] < 1:
        raise ValueError(f"X must have shape (N, n) or (B, N, n) with N, n >= 1, got {np.shape(X)}")
    if mask is None:
        mask = np.ones(X.shape[:2], dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
        if not batched and mask.ndim == 1:
            mask = mask[None]
        if mask.shape != X.shape[:2]:
            raise ValueError(f"mask must have shape {X.shape[:2] if batched else X.shape[1:2]} (rows of X), got {mask.shape}")
        if not mask.any(-1).all():
            raise ValueError("mask must keep at least one row (N >= 1) in every problem")
    if not np.all(np.isfinite(X[mask])):
        raise ValueError("X contains NaN or inf")
    return X, mask, batched


def _initial_bases(init, X, mask, dims, rngs, true_bases, perturbation, spectral_q):
    """Initial stacked bases ``(B, n, D)`` in float64 (numpy); private, validated arguments."""
    B, _, n = X.shape
    D = sum(dims)
    U0 = np.empty((B, n, D))
    cuts = np.cumsum((0,) + dims)
    if init == "random":
        for b in range(B):
            for k, d in enumerate(dims):
                U0[b, :, cuts[k] : cuts[k + 1]] = random_orthonormal(n, d, random_state=rngs[b])
    elif init == "spectral":
        from .solvers import spectral_init

        # one batched call; each problem's generator gives the same draws as a call on that problem alone
        bases = spectral_init(X, dims, mask=mask, q=spectral_q, random_state=rngs)
        U0[:] = np.concatenate([np.asarray(U, dtype=np.float64) for U in bases], axis=-1)
    elif init == "near_truth":
        truth = _check_truth(true_bases, dims, B, n)
        for b in range(B):
            for k, d in enumerate(dims):
                G = rngs[b].standard_normal((n, d)) / math.sqrt(n)
                U0[b, :, cuts[k] : cuts[k + 1]] = orthonormalize(truth[k][b] + perturbation * G)
    else:  # pragma: no cover - validated before
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return U0


def _check_truth(true_bases, dims, B, n):
    if true_bases is None:
        raise ValueError("true_bases is required with init='near_truth'")
    if isinstance(true_bases, np.ndarray) and true_bases.ndim in (2, 3) and len(dims) == 1:
        true_bases = [true_bases]
    try:
        truth = [np.asarray(U, dtype=np.float64) for U in true_bases]
    except (TypeError, ValueError):
        raise ValueError("true_bases must be a sequence of K arrays (n, d_k) or (B, n, d_k)") from None
    if len(truth) != len(dims):
        raise ValueError(f"true_bases must hold K = {len(dims)} bases, got {len(truth)}")
    out = []
    for k, (U, d) in enumerate(zip(truth, dims)):
        if U.ndim == 2:
            U = np.broadcast_to(U, (B,) + U.shape)
        if U.shape != (B, n, d):
            raise ValueError(f"true_bases[{k}] must have shape ({n}, {d}) or ({B}, {n}, {d}), got {U.shape}")
        out.append(U)
    return out


def _lr_factor(lr_schedule, k, steps):
    """Multiplier of ``lr`` at step ``k`` (0-based)."""
    if lr_schedule == "constant":
        return 1.0
    if lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * k / steps))
    # "step": divide by 10 at 50% and again at 75% of the run
    return 0.1 ** ((k >= steps // 2) + (k >= (3 * steps) // 4))


# --------------------------------------------------------------------------- the trainer
def train_dae(
    X,
    dims,
    *,
    parameterization: str = "hardmax",
    init: str = "random",
    true_bases=None,
    perturbation: float = 0.5,
    schedule="vp",
    t_range=None,
    T: int | None = None,
    weighting="snr",
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 0.2,
    lr_schedule: str = "cosine",
    mask=None,
    retraction: str = "qr",
    closed_form: bool = False,
    spectral_q=None,
    history_every: int | None = None,
    dtype=torch.float32,
    device="cpu",
    random_state=None,
) -> DAEResult:
    r"""Train single / softmax / hardmax DAEs by SGD on the denoising loss (SPEC A5, A7; Algorithm 1).

    Parameters
    ----------
    X : array ``(N, n)`` or ``(B, N, n)``
        Training samples (rows) of one problem, or of ``B`` independent problems
        trained together.  Problems with fewer samples are padded and masked.
    dims : int or sequence of int
        Component dimensions ``(d_1, ..., d_K)``, each in ``[1, n]``.
    parameterization : {"single", "softmax", "hardmax"}, default "hardmax"
        SPEC A4 (``single`` needs K = 1).
    init : {"random", "spectral", "near_truth"}, default "random"
        Haar-random bases; the spectral start of K-subspaces
        (:func:`molrg.solvers.spectral_init`, shared, on each problem's valid
        rows); or the paper's start near the truth
        ``U_k^0 = polar(U_k^* + perturbation * G_k)``, ``G_k`` with i.i.d.
        ``N(0, 1/n)`` entries (so each column moves by about ``perturbation``),
        flagged by ``used_truth`` in the result.
    true_bases : sequence of K arrays ``(n, d_k)`` or ``(B, n, d_k)``
        Needed for ``near_truth`` only.
    perturbation : float, default 0.5
        Size of the ``near_truth`` perturbation (>= 0).
    schedule : {"vp", "ve", "edm"} or NoiseSchedule, default "vp"
    t_range : (t_min, t_max), optional
        Default: the schedule's range (VP: ``[1e-3, 1]``).
    T : int, optional
        Draw ``t`` uniformly on the grid ``linspace(t_min, t_max, T)`` instead
        of continuously.
    weighting : {"snr", "uniform", "edm"} or callable, default "snr"
        ``lambda_t`` (:data:`molrg.loss.WEIGHTINGS`).  The default ``1 / sigma_t^2``
        is the epsilon-prediction loss of DDPM; it weights the small-noise times,
        whose stochastic gradients have the best signal-to-noise ratio (measured
        on K = 1, d = 4, N = 8, n = 48: median subspace error 0.01 against 0.2 with
        ``"uniform"`` at the same number of steps).
    steps : int, default 1500
    batch_size : int, default 32
        Samples per problem per step, drawn with replacement among the
        problem's valid rows (so every problem's step is an unbiased estimate
        of its own loss whatever its N, and padded rows never enter).
    lr : float, default 0.2
        Peak learning rate in units of ``1 / B_coef``, ``B_coef = E_t[lambda_t
        (2 c_t - c_t^2)]`` (SPEC A5): the expected step on the single model is
        ``U <- U + lr * 2 (X^T X / N) U``, whatever the schedule and weighting.
    lr_schedule : {"cosine", "constant", "step"}, default "cosine"
        Cosine decay to 0, constant, or /10 at 50% and 75% of the steps.  A
        constant rate leaves a noise floor (SPEC A7).
    mask : bool array ``(B, N)`` (or ``(N,)``), optional
        Valid rows of each problem; every problem needs at least one.
    retraction : {"qr", "polar"}, default "qr"
        After each step.  Both give the same column spaces, hence the same
        projectors and the same trajectory of the loss (which depends on
        ``U_k`` only through ``U_k U_k^T``, with an equivariant gradient);
        Cholesky-QR is the cheaper one.  The returned bases are polar-
        orthonormalized in float64 (orthonormal to ~1e-15).
    closed_form : bool, default False
        Use the eps- and t-expectation of SPEC A5 per sample (``-B_coef
        ||U_j^T x||^2`` plus a constant) instead of sampling ``t`` and ``eps``
        (single and hardmax only).  Off by default: SGD sees the Monte-Carlo loss.
    spectral_q : None, int or sequence of int, optional
        ``q`` of :func:`molrg.solvers.spectral_init` (validated there).
    history_every : int, optional
        Window of the thinned loss history; default ``max(1, steps // 100)``.
    dtype : torch.float32 or torch.float64, default float32
    device : str or torch.device, default "cpu"
    random_state : None, int, Generator, or a sequence of B of them
        See *Random streams*.

    Returns
    -------
    DAEResult

    Notes
    -----
    Random streams.  Problem ``b`` owns one ``numpy`` Generator
    (:func:`problem_generators`), which draws its initialization and seeds one
    ``torch.Generator`` that draws, chunk after chunk of steps, all of its
    mini-batch indices, times and noise.  Nothing random is shared between
    problems, so with ``random_state`` a sequence of per-problem seeds a
    problem gets the same random numbers in any batch, at any position, with
    any number of workers; the batched matrix products then give the same
    result up to floating-point rounding (bit-identical for the same batch
    composition on the same device).  With a scalar seed the streams are tied
    to the positions ``0..B-1`` of this call.

    Examples
    --------
    >>> from molrg import MoLRG
    >>> m = MoLRG.random(12, [2], random_state=0)
    >>> X = m.sample(6, random_state=1)[0]
    >>> res = train_dae(X, 2, parameterization="single", steps=200, random_state=0)
    >>> res.bases[0].shape
    (12, 2)
    """
    t_start = time.perf_counter()
    # ------------------------------------------------------------ validation
    X, mask, batched = _check_X(X, mask)
    B, N, n = X.shape
    dims = check_dims("dims", dims, n)
    if not isinstance(parameterization, str) or parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}")
    if parameterization == "single" and len(dims) != 1:
        raise ValueError(f"parameterization 'single' needs K = 1 component, got dims={dims} (K = {len(dims)})")
    if not isinstance(init, str) or init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    if not isinstance(lr_schedule, str) or lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}")
    check_choice("retraction", retraction, ("qr", "polar"))
    schedule = get_schedule(schedule)
    lo, hi = time_range(schedule, t_range)
    if T is not None:
        T = check_int("T", T, low=1)
    lam_fn = get_weighting(weighting, schedule)
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    perturbation = check_real("perturbation", perturbation, low=0.0)
    history_every = max(1, steps // 100) if history_every is None else check_int("history_every", history_every, low=1)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if closed_form and parameterization == "softmax":
        raise ValueError("closed_form=True needs parameterization 'single' or 'hardmax' (no closed form for softmax)")
    if closed_form and len(set(dims)) != 1:
        raise ValueError(f"closed_form=True needs equal dims, got dims={dims}")
    device = torch.device(device)
    coef = loss_coefficients(schedule, t_range=(lo, hi), T=T, weighting=weighting)
    rngs = problem_generators(random_state, B)

    # ------------------------------------------------------------ initialization
    U0 = _initial_bases(init, X, mask, dims, rngs, true_bases, perturbation, spectral_q)
    dae = make_denoiser(parameterization, torch.as_tensor(U0, dtype=dtype, device=device), dims, dtype=dtype, device=device)
    gens = [torch.Generator(device=device).manual_seed(int(r.integers(0, 2**63 - 1))) for r in rngs]

    Xt = torch.as_tensor(X, dtype=dtype, device=device)
    mask_t = torch.as_tensor(mask, device=device)
    counts = mask_t.sum(-1)  # (B,)
    # valid rows first (stable), so position p < counts[b] is the p-th valid row of problem b
    order = torch.argsort((~mask_t).to(torch.int8), dim=1, stable=True)
    sq_norms = (Xt * Xt).sum(-1)  # for the closed-form per-sample loss

    itemsize = torch.finfo(dtype).bits // 8
    chunk = int(max(1, min(64, steps, _BUFFER_BYTES // max(1, B * batch_size * (n + 2) * itemsize))))
    u_buf = torch.empty((B, chunk, 2, batch_size), dtype=torch.float64, device=device)
    e_buf = None if closed_form else torch.empty((B, chunk, batch_size, n), dtype=dtype, device=device)
    bidx = torch.arange(B, device=device)[:, None]

    manual_grad = parameterization in ("single", "hardmax")
    history, hist_steps = [], []
    acc = torch.zeros(B, dtype=torch.float64, device=device)
    acc_n = 0
    step_scale = lr / coef.gain
    for k in range(steps):
        c = k % chunk
        if c == 0:  # draw the next chunk of each problem's random numbers from its own stream
            m = min(chunk, steps - k)
            for b in range(B):
                torch.rand((m, 2, batch_size), generator=gens[b], dtype=torch.float64, device=device, out=u_buf[b, :m])
                if e_buf is not None:
                    torch.randn((m, batch_size, n), generator=gens[b], dtype=dtype, device=device, out=e_buf[b, :m])
        u_idx, u_t = u_buf[:, c, 0], u_buf[:, c, 1]
        pos = torch.minimum((u_idx * counts[:, None]).long(), counts[:, None] - 1)
        rows = order.gather(1, pos)  # (B, bs)
        x0 = Xt[bidx, rows]  # (B, bs, n)
        if closed_form:
            j_cols = None
            proj = x0 @ dae.U
            if parameterization == "hardmax":
                j = dae.assignments(x0)
                onehot = torch.nn.functional.one_hot(j, len(dims)).to(dtype)
                j_cols = onehot.repeat_interleave(torch.as_tensor(dims, device=device), dim=-1)
                proj = proj * j_cols
            terms = coef.lam * sq_norms[bidx, rows] + coef.noise * dims[0] - coef.gain * (proj * proj).sum(-1)
            per_problem = terms.mean(-1)
            (grad,) = torch.autograd.grad(per_problem.sum(), dae.U)
        elif manual_grad:  # single / hardmax: exact hand-written gradient, no autograd graph
            t = _times_from_uniform(u_t, lo, hi, T).to(dtype)
            per_problem, grad = _loss_and_grad_bases(dae, x0, t, e_buf[:, c], schedule, lam_fn)
        else:
            t = _times_from_uniform(u_t, lo, hi, T).to(dtype)
            per_problem = _loss_terms(dae, x0, t, e_buf[:, c], schedule, lam_fn).mean(-1)  # (B,)
            (grad,) = torch.autograd.grad(per_problem.sum(), dae.U)
        with torch.no_grad():
            dae.U.add_(grad, alpha=-step_scale * _lr_factor(lr_schedule, k, steps))
        dae.retract_(retraction, passes=1)
        acc += per_problem.detach().to(torch.float64)
        acc_n += 1
        if acc_n == history_every or k == steps - 1:
            history.append((acc / acc_n).cpu().numpy())
            hist_steps.append(k + 1)
            acc.zero_()
            acc_n = 0

    # ------------------------------------------------------------ results
    U_final = orthonormalize_blocks(dae.U.detach().to(torch.float64).cpu().numpy(), dims)
    cuts = np.cumsum((0,) + dims)
    bases = tuple(U_final[..., cuts[k] : cuts[k + 1]] for k in range(len(dims)))
    cf = None
    if len(set(dims)) == 1:
        cf = closed_form_loss(X, list(bases), parameterization="single" if len(dims) == 1 else "hardmax", mask=mask, coefficients=coef)
    hist = np.stack(history)
    if not batched:
        bases = tuple(U[0] for U in bases)
        hist = hist[:, 0]
        cf = None if cf is None else float(cf[0])
    config = dict(
        schedule=type(schedule).__name__, t_range=(lo, hi), T=T, weighting=weighting if isinstance(weighting, str) else "callable",
        steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, retraction=retraction, closed_form=closed_form,
        perturbation=perturbation if init == "near_truth" else None, dtype=str(dtype), device=str(device), loss_gain=coef.gain,
    )
    return DAEResult(
        bases=bases,
        loss_history=hist,
        history_steps=np.asarray(hist_steps),
        closed_form_loss=cf,
        wall_time=time.perf_counter() - t_start,
        used_truth=init == "near_truth",
        parameterization=parameterization,
        init=init,
        dims=dims,
        config=config,
    )


def orthonormalize_blocks(U, dims):
    """Polar-orthonormalize each component block of stacked bases ``(..., n, D)`` (numpy, float64)."""
    cuts = np.cumsum((0,) + tuple(dims))
    out = np.empty_like(U)
    for a, b in zip(cuts[:-1], cuts[1:]):
        out[..., a:b] = orthonormalize(U[..., a:b])
    return out
