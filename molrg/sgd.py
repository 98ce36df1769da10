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

Optionally (``exact_steps``) a final full-batch phase on the exact loss (its
expectation over ``eps`` and ``t``, SPEC A5), and (``keep_best``) a monotone
safeguard on that exact loss: a problem whose trained bases have a higher exact
loss than its start gets its start back, so training never undoes a start.

The objective summed over problems is ``sum_b loss_b`` (not a mean), so each
problem's gradient is the one it would have alone.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .denoisers import PARAMETERIZATIONS, make_denoiser
from .loss import (
    _expected_loss_and_grad,
    _loss_and_grad_bases,
    _times_from_uniform,
    closed_form_loss,
    get_weighting,
    loss_coefficients,
    time_range,
)
from .posterior import posterior_logits_from_norms
from .schedules import get_schedule
from .utils import (
    check_batch,
    check_choice,
    check_dims,
    check_int,
    check_real,
    orthonormalize,
    problem_generators,
    random_orthonormal,
)

__all__ = ["train_dae", "DAEResult", "problem_generators", "INITS", "LR_SCHEDULES"]

INITS = ("random", "spectral", "near_truth")
LR_SCHEDULES = ("cosine", "constant", "step")

_BUFFER_BYTES = 64 * 2**20  # noise drawn ahead, per chunk of steps


@dataclass(frozen=True)
class DAEResult:
    """Output of :func:`train_dae`.

    Attributes
    ----------
    bases : tuple of K arrays ``(B, n, d_k)`` (``(n, d_k)`` for one unbatched problem)
        Learned orthonormal bases (float64, polar-orthonormalized at the end).
    initial_bases : tuple of K arrays, same shapes
        The start (``init``) the training began from: what the bases would be
        with training switched off (the "start only" panels of the experiments).
    loss_history : array ``(R, B)`` (``(R,)`` unbatched)
        Mini-batch loss averaged over windows of ``history_every`` steps (in the
        final exact phase: the exact loss of SPEC A5).
    history_steps : array ``(R,)``
        Last step (1-based, over both phases) of each window.
    closed_form_loss : array ``(B,)`` or float or None
        SPEC A5 closed form at the learned bases (for ``softmax``: the hardmax
        closed form, the paper's approximation of it, exact for K = 1; None for unequal dims).
    runtime_s : float
        Wall-clock seconds spent in :func:`train_dae` (initialization included).
    used_truth : bool
        True when ``init="near_truth"``: the start used the true bases, report separately.
    kept_start : bool array ``(B,)`` (bool unbatched) or None
        With ``keep_best``: the problems whose start was returned because training
        raised its exact loss (SPEC A5); None without ``keep_best``.
    parameterization, init : str
    dims : tuple of int
    config : dict
        The remaining settings (schedule, lr, steps, ...).
    """

    bases: tuple
    initial_bases: tuple
    loss_history: np.ndarray
    history_steps: np.ndarray
    closed_form_loss: Any
    runtime_s: float
    used_truth: bool
    parameterization: str
    init: str
    dims: tuple
    config: dict = field(default_factory=dict)
    kept_start: Any = None

    @property
    def wall_time(self) -> float:
        """Deprecated alias of :attr:`runtime_s` (docs/glossary.rst)."""
        warnings.warn("DAEResult.wall_time is deprecated; use runtime_s", FutureWarning, stacklevel=2)
        return self.runtime_s

    def bases_of(self, b: int) -> list:
        """The K bases ``(n, d_k)`` of problem ``b``."""
        if self.bases[0].ndim == 2:
            if b != 0:
                raise IndexError(f"one problem only, got b={b}")
            return list(self.bases)
        return [U[b] for U in self.bases]

    def to_frame(self):
        """The loss history as a tidy table: columns ``problem``, ``step``, ``loss``."""
        import pandas as pd

        h = self.loss_history if self.loss_history.ndim == 2 else self.loss_history[:, None]
        R, B = h.shape
        return pd.DataFrame({
            "problem": np.tile(np.arange(B), R),
            "step": np.repeat(np.asarray(self.history_steps), B),
            "loss": h.reshape(-1),
        })


# --------------------------------------------------------------------------- random streams
# --------------------------------------------------------------------------- helpers
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
        G = np.empty((B, n, cuts[-1]))
        for b in range(B):  # each problem's draws in its own stream, then one batched polar factor per component
            for k, d in enumerate(dims):
                G[b, :, cuts[k] : cuts[k + 1]] = rngs[b].standard_normal((n, d)) / math.sqrt(n)
        for k in range(len(dims)):
            U0[..., cuts[k] : cuts[k + 1]] = orthonormalize(truth[k] + perturbation * G[..., cuts[k] : cuts[k + 1]])
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


def _lr_factor(lr_schedule, k, steps, final_ratio):
    """Multiplier of ``lr`` at step ``k`` (0-based)."""
    if lr_schedule == "constant":
        return 1.0
    if lr_schedule == "cosine":  # from 1 down to final_ratio (0: to zero)
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * k / steps))
    # "step": divide by 10 at 50% and again at 75% of the run
    return 0.1 ** ((k >= steps // 2) + (k >= (3 * steps) // 4))


def _torch_dtype(dtype, X):
    """The training dtype: ``dtype`` when given, else that of the input ``X`` (integers: float64)."""
    if dtype is None:
        if isinstance(X, torch.Tensor):
            return X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float64
        return torch.float32 if np.asarray(X).dtype == np.float32 else torch.float64
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        try:
            out = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}.get(np.dtype(dtype))
        except TypeError:
            out = None
    if out not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be float32 or float64 (torch, numpy or a name), got {dtype!r}")
    return out


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
    lr_final: float = 0.0,
    exact_steps: int = 0,
    exact_lr: float = 1000.0,
    average: float = 0.0,
    keep_best: bool = False,
    keep_best_rtol: float = 1e-10,
    kernel: str = "auto",
    noise: str = "auto",
    mask=None,
    retraction: str = "qr",
    closed_form: bool = False,
    spectral_q=None,
    history_every: int | None = None,
    dtype=None,
    device=None,
    random_state=None,
) -> DAEResult:
    r"""Train single / softmax / hardmax DAEs by SGD on the denoising loss (SPEC A5, A7; Algorithm 1).

    Parameters
    ----------
    X : array or tensor ``(N, n)`` or ``(B, N, n)``
        Training samples (rows) of one problem, or of ``B`` independent problems
        trained together.  Problems with fewer samples are padded and masked.
    dims : int or sequence of int
        Component dimensions ``(d_1, ..., d_K)``, each in ``[1, n]``.
    parameterization : {"single", "softmax", "hardmax"}, default "hardmax"
        SPEC A4 (``single`` needs K = 1; ``softmax`` is eq. 9, the model the
        paper trains in its figures 4c and 8).
    init : {"random", "spectral", "near_truth"}, default "random"
        Haar-random bases; the spectral start of K-subspaces
        (:func:`molrg.solvers.spectral_init`, shared, on each problem's valid
        rows); or the paper's start near the truth (its eq. 48)
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
        SGD steps (>= 0; 0 trains nothing: the result is the start, plus the
        exact phase if ``exact_steps > 0``).
    batch_size : int, default 32
        Samples per problem per step, drawn with replacement among the
        problem's valid rows (so every problem's step is an unbiased estimate
        of its own loss whatever its N, and padded rows never enter).
    lr : float, default 0.2
        Peak learning rate in units of ``1 / B_coef``, ``B_coef = E_t[lambda_t
        (2 c_t - c_t^2)]`` (SPEC A5): the expected step on the single model is
        ``U <- U + lr * 2 (X^T X / N) U``, whatever the schedule and weighting.
    lr_schedule : {"cosine", "constant", "step"}, default "cosine"
        Cosine decay from ``lr`` to ``lr_final``, constant, or /10 at 50% and
        75% of the steps.  A constant rate leaves a noise floor (SPEC A7).
    lr_final : float, default 0.0
        Final rate of the cosine schedule, in ``[0, lr]``.
    exact_steps : int, default 0
        A final phase after the SGD steps: ``exact_steps`` full-batch gradient
        steps on the EXACT loss, its expectation over ``eps`` and ``t`` in closed
        form (SPEC A5; Theorems 1 and 3), ``U_k <- retract(U_k + exact_lr * 2
        (X_k^T X_k / N) U_k)`` with ``X_k`` the samples assigned to component k.
        For ``softmax`` this is the hardmax loss, the paper's approximation of
        the softmax one (eqs. 16-17), exact for K = 1.  Its gradient has no
        Monte-Carlo noise, so it removes SGD's noise floor (issue 13: from a
        good start, the median subspace error falls from ~1e-2 to float
        precision); it needs equal dims and uniform weights.
    exact_lr : float, default 1000.0
        Step of the exact phase (same units as ``lr``).  The update is a shifted
        power iteration, ``orth((I + 2 exact_lr C_k) U_k)``, stable for any value;
        it converges at the rate ``(1 + 2 exact_lr lambda_{d+1}) / (1 + 2 exact_lr
        lambda_d)`` of ``C_k``'s eigenvalues, so a large step matters where a
        component is fitted from about ``d`` points (tiny ``lambda_d``): on
        ``molrg-sgd-k3-spectral`` (d = 8, 420 problems) 50 steps at 10 left 72
        problems above their start's exact loss, at 1000 five (measured).
    average : float, default 0.0
        Iterate averaging: the fraction (in ``[0, 1]``) of the last SGD steps
        whose projectors ``U_k U_k^T`` are averaged; the bases are then the top
        ``d_k`` eigenvectors of the averages (before the exact phase).
    keep_best : bool, default False
        Monotone safeguard on the exact loss ``L`` (SPEC A5 closed form,
        evaluated in float64 on the full training set: the single model's for
        K = 1, the hardmax model's otherwise, the objective of the exact phase
        and of Theorem 3; for ``softmax`` with K >= 2 it is the paper's hardmax
        approximation of the softmax loss, eqs. 16-17): each problem returns its
        trained bases unless ``L(trained) > L(start) + keep_best_rtol |L(start)|``,
        and then its start (``kept_start`` in the result).  Training is then a
        descent method on ``L`` from the start: it can repair a start, never
        undo it.  Why it is needed (issue 13, measured on ``molrg-sgd-k3-spectral``,
        d = 8, 420 problems): the spectral start is already a minimum of ``L``
        in every trial (SGD + 50 exact steps never lowered it by more than 1e-9)
        and SGD on the softmax's Monte-Carlo loss raised it in 72 trials; near
        ``N = K d`` a component fitted from exactly ``d`` points has an
        ill-conditioned scatter matrix, which the exact phase (a shifted power
        iteration) restores slowly, so 2 trials crossed ``tau``.  Needs equal dims.
    keep_best_rtol : float, default 1e-10
        Relative tolerance of that comparison (>= 0): a trained end at the same
        optimum as its start differs from it by rounding only (float32 iterates
        within ~1e-7 of the optimum, where ``L`` is quadratic: ~1e-13 relative,
        measured), a trained end in a worse basin by 5e-7 and more (measured).
    kernel : {"auto", "fast", "legacy"}, default "auto"
        ``"fast"`` (issue 16): the iterate held transposed, the QR retraction
        folded into the next step as a ``D x D`` transform, and (small ``D``) the
        noise drawn through an exact reparametrization, ``(m + n) D`` normals per
        problem and step instead of ``m n`` (see :func:`_fast_sgd_step`): the same
        stochastic gradient in law, so for a given seed the statistics, not the
        numbers, of the old kernel.  ``"legacy"``: the previous kernel
        (:func:`molrg.loss._loss_and_grad_bases` on ``m x n`` noise, explicit
        retraction), kept for comparison.  ``"auto"``: fast unless
        ``closed_form``, ``average``, ``retraction="polar"`` or a hardmax DAE
        with unequal dims asks for the legacy one.
    noise : {"auto", "reduced", "full"}, default "auto"
        Fast kernel only: ``"reduced"`` draws ``(m + n) D`` normals per problem
        and step (the exact reparametrization), ``"full"`` the legacy kernel's
        ``m n`` (the same random numbers as ``kernel="legacy"``, so the same
        result up to rounding: 1e-15 in float64, tested); ``"auto"``: reduced
        when ``6 D <= n`` and ``(m + n) D < m n`` (n = 768, D = 8; n = 48,
        D <= 8), else full.
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
        Window of the thinned loss history; default ``max(1, (steps + exact_steps) // 100)``.
    dtype : torch / numpy dtype or name, optional
        float32 or float64; default: the dtype of ``X`` (integers: float64).
    device : str or torch.device, optional
        Default: the device of ``X`` (a tensor), else the CPU.
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
    dtype = _torch_dtype(dtype, X)
    if device is None:
        device = X.device if isinstance(X, torch.Tensor) else "cpu"
    X, mask, batched = check_batch(X, mask)
    X = np.where(mask[..., None], X, 0.0).astype(np.float64, copy=False)  # padded rows may hold anything
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
    check_choice("kernel", kernel, ("auto", "fast", "legacy"))
    check_choice("noise", noise, ("auto", "reduced", "full"))
    schedule = get_schedule(schedule)
    lo, hi = time_range(schedule, t_range)
    if T is not None:
        T = check_int("T", T, low=1)
    lam_fn = get_weighting(weighting, schedule)
    steps = check_int("steps", steps, low=0)
    exact_steps = check_int("exact_steps", exact_steps, low=0)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    lr_final = check_real("lr_final", lr_final, low=0.0, high=lr)
    exact_lr = check_real("exact_lr", exact_lr, low=0.0, low_open=True)
    average = check_real("average", average, low=0.0, high=1.0)
    perturbation = check_real("perturbation", perturbation, low=0.0)
    if not isinstance(keep_best, (bool, np.bool_)):
        raise ValueError(f"keep_best must be a bool, got {keep_best!r}")
    keep_best_rtol = check_real("keep_best_rtol", keep_best_rtol, low=0.0)
    total = steps + exact_steps
    history_every = max(1, total // 100) if history_every is None else check_int("history_every", history_every, low=1)
    if closed_form and parameterization == "softmax":
        raise ValueError("closed_form=True needs parameterization 'single' or 'hardmax' (no closed form for softmax)")
    if (closed_form or exact_steps) and len(set(dims)) != 1:
        raise ValueError(f"closed_form=True and exact_steps > 0 need equal dims, got dims={dims}")
    if keep_best and len(set(dims)) != 1:
        raise ValueError(f"keep_best=True needs equal dims (the closed-form loss), got dims={dims}")
    legacy_only = bool(closed_form) or average > 0 or retraction == "polar" or (parameterization == "hardmax" and len(set(dims)) != 1)
    if kernel == "fast" and legacy_only:
        raise ValueError("kernel='fast' needs closed_form=False, average=0, retraction='qr' and (hardmax) equal dims")
    fast = kernel == "fast" or (kernel == "auto" and not legacy_only)
    device = torch.device(device)
    coef = loss_coefficients(schedule, t_range=(lo, hi), T=T, weighting=weighting)
    rngs = problem_generators(random_state, B)

    # ------------------------------------------------------------ initialization
    U0 = _initial_bases(init, X, mask, dims, rngs, true_bases, perturbation, spectral_q)
    dae = make_denoiser(parameterization, torch.as_tensor(U0, dtype=dtype, device=device), dims, dtype=dtype, device=device)
    gens = [torch.Generator(device=device).manual_seed(int(r.integers(0, 2**63 - 1))) for r in rngs]
    # the closed-form kernels act through the hardmax (single for K = 1) model, on the same parameter
    if closed_form or exact_steps:
        exact_model = dae if parameterization != "softmax" else make_denoiser("single" if len(dims) == 1 else "hardmax", dae.U.detach(), dims)
        exact_model.U.data = dae.U.data
        if exact_model.name == "hardmax" and not exact_model.uniform_weights:  # pragma: no cover - weights are uniform here
            raise ValueError("the exact phase needs uniform weights")

    Xt = torch.as_tensor(X, dtype=dtype, device=device)
    mask_t = torch.as_tensor(mask, device=device)
    counts = mask_t.sum(-1)  # (B,)
    # valid rows first (stable), so position p < counts[b] is the p-th valid row of problem b
    order = torch.argsort((~mask_t).to(torch.int8), dim=1, stable=True)
    sq_norms = (Xt * Xt).sum(-1)  # for the closed-form per-sample loss

    itemsize = torch.finfo(dtype).bits // 8
    chunk = int(max(1, min(64, max(steps, 1), _BUFFER_BYTES // max(1, B * batch_size * (n + 2) * itemsize))))
    u_buf = torch.empty((B, chunk, 2, batch_size), dtype=torch.float64, device=device)
    e_buf = None if closed_form or fast else torch.empty((B, chunk, batch_size, n), dtype=dtype, device=device)
    bidx = torch.arange(B, device=device)[:, None]
    mb_weights = torch.full((B, batch_size), 1.0 / batch_size, dtype=dtype, device=device)

    history, hist_steps = [], []
    acc = torch.zeros(B, dtype=torch.float64, device=device)
    acc_n = 0

    def record(k, per_problem):
        nonlocal acc_n
        acc.add_(per_problem.detach().to(torch.float64))
        acc_n += 1
        if acc_n == history_every or k == total - 1 or k == steps - 1:
            history.append((acc / acc_n).cpu().numpy())
            hist_steps.append(k + 1)
            acc.zero_()
            acc_n = 0

    step_scale = lr / coef.gain
    final_ratio = lr_final / lr
    avg_from = steps - int(round(average * steps)) if average > 0 else steps
    P_sum = None
    if fast:
        V = dae.U.detach().transpose(-1, -2).contiguous()  # (B, D, n)
        D = V.shape[1]
        # the reduced draw saves two products with the samples but adds D x D work (measured: faster at
        # n = 768, D = 8 and n = 48, D <= 8; slower at n = 48, D = 12 (0.91x) and D = 16 (0.83x))
        reduced = noise == "reduced" or (noise == "auto" and 6 * D <= n and (batch_size + n) * D < batch_size * n)
        width = batch_size * D + D * n if reduced else batch_size * n
        chunk = int(max(1, min(64, max(steps, 1), _BUFFER_BYTES // max(1, B * width * itemsize))))
        u_buf = torch.empty((B, chunk, 2, batch_size), dtype=torch.float64, device=device)
        n_buf = torch.empty((B, chunk, width), dtype=dtype, device=device)
        X_flat, sq_flat = Xt.reshape(B * N, n), sq_norms.reshape(B * N)
        row_base = (torch.arange(B, device=device) * N)[:, None, None]
        x0_buf = torch.empty((B * batch_size, n), dtype=dtype, device=device)
        for k in range(steps):
            c = k % chunk
            if c == 0:
                m = min(chunk, steps - k)
                for b in range(B):
                    torch.rand((m, 2, batch_size), generator=gens[b], dtype=torch.float64, device=device, out=u_buf[b, :m])
                    torch.randn((m, width), generator=gens[b], dtype=dtype, device=device, out=n_buf[b, :m])
                # the chunk's rows (flat indices into X_flat) and time coefficients at once, step-major
                u = u_buf[:, :m]
                pos = torch.minimum((u[:, :, 0] * counts[:, None, None]).long(), counts[:, None, None] - 1)
                rows_all = (order.gather(1, pos.reshape(B, -1)).view(B, m, batch_size) + row_base).transpose(0, 1).contiguous()
                coefs_all = _time_coefficients(dae.name, _times_from_uniform(u[:, :, 1], lo, hi, T).to(dtype).transpose(0, 1),
                                               schedule, lam_fn, batch_size)
            rows = rows_all[c].view(-1)
            x0 = torch.index_select(X_flat, 0, rows, out=x0_buf).view(B, batch_size, n)
            sq = sq_flat.index_select(0, rows).view(B, batch_size)
            coefs = [a[c] for a in coefs_all]
            eta = step_scale * _lr_factor(lr_schedule, k, steps, final_ratio)
            if reduced:
                g = n_buf[:, c, : batch_size * D].view(B, batch_size, D)
                Ht = n_buf[:, c, batch_size * D :].view(B, D, n)
                per_problem, V = _fast_sgd_step(dae, V, x0, sq, None, g, Ht, schedule, lam_fn, eta, coefs=coefs)
            else:  # the legacy kernel's draws
                per_problem, V = _fast_sgd_step(dae, V, x0, sq, None, None, None, schedule, lam_fn, eta,
                                                eps=n_buf[:, c].view(B, batch_size, n), coefs=coefs)
            record(k, per_problem)
        if exact_steps:
            row_w = mask_t.to(dtype) / counts[:, None].to(dtype)
            for k in range(steps, total):
                per_problem, V = _fast_exact_step(exact_model.name, dims, V, Xt, row_w, sq_norms, coef, exact_lr)
                record(k, per_problem)
        if total:
            V, T_, _ = _retraction(V, dims)
            with torch.no_grad():
                dae.U.copy_((T_ @ V).transpose(-1, -2))
    for k in range(0 if fast else steps):  # the legacy kernel
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
            per_problem, grad = _expected_loss_and_grad(exact_model, x0, mb_weights, sq_norms[bidx, rows], coef)
        else:
            t = _times_from_uniform(u_t, lo, hi, T).to(dtype)
            per_problem, grad = _loss_and_grad_bases(dae, x0, t, e_buf[:, c], schedule, lam_fn)  # type: ignore[index]
        with torch.no_grad():
            dae.U.add_(grad, alpha=-step_scale * _lr_factor(lr_schedule, k, steps, final_ratio))
        dae.retract_(retraction, passes=1)
        if k >= avg_from:
            P = _projectors(dae.U.detach(), dims).to(torch.float64)
            P_sum = P if P_sum is None else P_sum.add_(P)
        record(k, per_problem)
    if P_sum is not None:  # bases of the averaged projectors: top d_k eigenvectors
        with torch.no_grad():
            dae.U.copy_(_top_eigenvectors(P_sum, dims).to(dtype))

    # ------------------------------------------------------------ exact phase (no Monte Carlo)
    if exact_steps and not fast:
        row_w = mask_t.to(dtype) / counts[:, None].to(dtype)
        exact_scale = exact_lr / coef.gain
        for k in range(steps, total):
            per_problem, grad = _expected_loss_and_grad(exact_model, Xt, row_w, sq_norms, coef)
            with torch.no_grad():
                dae.U.add_(grad, alpha=-exact_scale)
            dae.retract_(retraction, passes=1)
            record(k, per_problem)

    # ------------------------------------------------------------ results
    cuts = np.cumsum((0,) + dims)

    def split(U):
        U = orthonormalize_blocks(U, dims)
        out = tuple(U[..., cuts[k] : cuts[k + 1]] for k in range(len(dims)))
        return out if batched else tuple(V[0] for V in out)

    bases = split(dae.U.detach().to(torch.float64).cpu().numpy())
    initial = split(U0)
    cf = kept = None
    if len(set(dims)) == 1:
        model = "single" if len(dims) == 1 else "hardmax"

        def exact_loss(bs):
            return closed_form_loss(X, [U if batched else U[None] for U in bs], parameterization=model, mask=mask,
                                    coefficients=coef)

        cf = exact_loss(bases)
        if keep_best:  # the monotone safeguard: a problem keeps its start unless training did not raise L
            cf0 = exact_loss(initial)
            kept = cf > cf0 + keep_best_rtol * np.abs(cf0)
            cf = np.where(kept, cf0, cf)
            if batched:
                bases = tuple(np.where(kept[:, None, None], V, U) for U, V in zip(bases, initial))
            elif kept[0]:
                bases = initial
    hist = np.stack(history) if history else np.empty((0, B))
    if not batched:
        hist = hist[:, 0]
        cf = None if cf is None else float(cf[0])
        kept = None if kept is None else bool(kept[0])
    config = dict(
        schedule=type(schedule).__name__, t_range=(lo, hi), T=T, weighting=weighting if isinstance(weighting, str) else "callable",
        steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, lr_final=lr_final, exact_steps=exact_steps,
        exact_lr=exact_lr, average=average, keep_best=bool(keep_best), keep_best_rtol=keep_best_rtol,
        kernel="fast" if fast else "legacy", noise=noise, retraction=retraction, closed_form=closed_form,
        perturbation=perturbation if init == "near_truth" else None, dtype=str(dtype), device=str(device), loss_gain=coef.gain,
    )
    return DAEResult(
        bases=bases,
        initial_bases=initial,
        loss_history=hist,
        history_steps=np.asarray(hist_steps, dtype=np.int64),
        closed_form_loss=cf,
        runtime_s=time.perf_counter() - t_start,
        used_truth=init == "near_truth",
        parameterization=parameterization,
        init=init,
        dims=dims,
        config=config,
        kept_start=kept,
    )


def _projectors(U, dims):
    """Projectors ``(B, K, n, n)`` of the stacked bases ``(B, n, D)`` (torch)."""
    cuts = np.cumsum((0,) + tuple(dims))
    return torch.stack([U[..., a:b] @ U[..., a:b].transpose(-1, -2) for a, b in zip(cuts[:-1], cuts[1:])], 1)


def _top_eigenvectors(P, dims):
    """Stacked bases ``(B, n, D)``: the top ``d_k`` eigenvectors of each ``P[:, k]`` (torch, symmetric)."""
    _, vecs = torch.linalg.eigh(P)  # ascending
    return torch.cat([vecs[:, k, :, -d:] for k, d in enumerate(dims)], -1)


def orthonormalize_blocks(U, dims):
    """Polar-orthonormalize each component block of stacked bases ``(..., n, D)`` (numpy, float64)."""
    cuts = np.cumsum((0,) + tuple(dims))
    out = np.empty_like(U)
    for a, b in zip(cuts[:-1], cuts[1:]):
        out[..., a:b] = orthonormalize(U[..., a:b])
    return out


# --------------------------------------------------------------------------- the fast kernel (issue 16)
# The iterate is held TRANSPOSED and un-normalized, ``V (B, D, n)``; each step starts with the
# Cholesky-QR retraction of the previous one, ``U^T = T V`` (T block-diagonal, one (B, D, D) product).
# The per-sample arrays (projections, residuals, gradient factors) are held sample-minor, (B, D, m),
# and the per-component ones (posterior weights) as (B, K, m): on the CPU, torch runs broadcasts and
# reductions over a short innermost axis element by element, and these layouts put the batch size
# m = 32 innermost.  The trainer gathers the mini-batch rows with one index_select on the flattened
# data and computes the time coefficients of a whole chunk of steps at once (issue 16: 1.3x-1.8x per
# chunk of the five SGD experiments over the previous fast kernel, benchmarks/bench_sgd.py).
def _block_transform(Gv, dims):
    """``(T, bad)``: ``T = blockdiag(L_k^{-1})`` with ``L_k L_k^T`` the diagonal blocks of ``Gv = V V^T``, so
    that ``T V`` is the Cholesky-QR retraction of every component (the QR retraction of SPEC A7), and the
    bool ``(B,)`` mask of the problems with a block that is not numerically positive definite (their ``T``
    is not valid: the caller re-orthonormalizes them explicitly).
    """
    K, d0 = len(dims), dims[0]
    B, D, _ = Gv.shape
    T = torch.zeros_like(Gv)
    if len(set(dims)) == 1:
        blocks = torch.diagonal(Gv.reshape(B, K, d0, K, d0), dim1=1, dim2=3).permute(0, 3, 1, 2)  # (B, K, d, d)
        L, info = torch.linalg.cholesky_ex(blocks)
        eye = torch.eye(d0, dtype=Gv.dtype, device=Gv.device)
        Linv = torch.linalg.solve_triangular(L, eye, upper=False)  # (B, K, d, d)
        torch.diagonal(T.view(B, K, d0, K, d0), dim1=1, dim2=3).copy_(Linv.permute(0, 2, 3, 1))
        return T, (info != 0).any(-1)
    cuts = np.cumsum((0,) + tuple(dims))
    bad = torch.zeros(B, dtype=torch.bool, device=Gv.device)
    for a, b in zip(cuts[:-1], cuts[1:]):
        L, info = torch.linalg.cholesky_ex(Gv[:, a:b, a:b])
        bad |= info != 0
        T[:, a:b, a:b] = torch.linalg.solve_triangular(L, torch.eye(int(b - a), dtype=Gv.dtype, device=Gv.device), upper=False)
    return T, bad


def _retract_rows(V, dims):
    """Explicit polar re-orthonormalization of every component of the transposed stack ``V (B, D, n)``."""
    cuts = np.cumsum((0,) + tuple(dims))
    return torch.cat([orthonormalize(V[:, a:b].transpose(-1, -2)).transpose(-1, -2) for a, b in zip(cuts[:-1], cuts[1:])], 1)


def _retraction(V, dims):
    """``(V, T, Gv)``: the transform ``T`` with ``U = T V`` orthonormal per component, ``Gv = V V^T``.

    A problem with a component that lost rank numerically (float32 after a large exact-phase step, measured:
    some problem of the batch at nearly every step of molrg-sgd-k3-spectral, d = 8) is re-orthonormalized
    explicitly (polar) and gets ``T = I``; the others keep their Cholesky-QR transform.
    """
    Gv = V @ V.transpose(-1, -2)
    T, bad = _block_transform(Gv, dims)
    if bool(bad.any()):
        idx = bad.nonzero().squeeze(1)
        V = V.clone()
        V[idx] = _retract_rows(V[idx], dims)
        Gv[idx] = V[idx] @ V[idx].transpose(-1, -2)
        T[idx] = torch.eye(V.shape[1], dtype=V.dtype, device=V.device)
    return V, T, Gv


def _gram_factor(G):
    """``(F, Ginv_F, solve)`` for the joint Gram ``G = U^T U`` (PSD): ``F F^T = G``, ``Ginv_F = G^+ F``, and
    ``solve(M) = G^+ M``.  Cholesky when every ``G`` is positive definite, else an eigendecomposition
    (two components spanning overlapping subspaces).
    """
    L, info = torch.linalg.cholesky_ex(G)
    if not bool((info != 0).any()):  # G^{-1} = L^{-T} L^{-1}, applied as two products (cheaper than cholesky_solve)
        LinvT = torch.linalg.solve_triangular(L, torch.eye(G.shape[-1], dtype=G.dtype, device=G.device), upper=False).transpose(-1, -2)
        return L, LinvT, (lambda M: LinvT @ (LinvT.transpose(-1, -2) @ M))
    ev, Q = torch.linalg.eigh(G)
    keep = ev > ev[..., -1:] * (G.shape[-1] * torch.finfo(G.dtype).eps * 10)
    root = torch.where(keep, ev.clamp_min(0).sqrt(), torch.zeros_like(ev))
    inv = torch.where(keep, 1.0 / torch.where(keep, ev, torch.ones_like(ev)), torch.zeros_like(ev))
    F = Q * root[..., None, :]
    Ginv = (Q * inv[..., None, :]) @ Q.transpose(-1, -2)
    return F, Ginv @ F, (lambda M: Ginv @ M)


def _psd_root(R, sg):
    """``F`` with ``F F^T = S = sum_m sg_m^2 R_m R_m^T`` (``R (B, m, D)``, best a transposed view of a
    ``(B, D, m)`` array): when ``m >= D`` the Cholesky factor of ``S``, and for the problems where ``S`` is
    not numerically positive definite the ``R`` factor of a QR of ``diag(sg) R`` (valid for any rank);
    else ``(diag(sg) R)^T`` padded to ``D`` columns.
    """
    At = sg[..., None, :] * R.transpose(-1, -2)  # (diag(sg) R)^T, (B, D, m)
    B, D, m = At.shape
    if m >= D:
        L, info = torch.linalg.cholesky_ex(At @ At.transpose(-1, -2))
        bad = info != 0
        if bool(bad.any()):
            idx = bad.nonzero().squeeze(1)
            L[idx] = torch.linalg.qr(At[idx].transpose(-1, -2), mode="r")[1].transpose(-1, -2)
        return L
    out = torch.zeros((B, D, D), dtype=At.dtype, device=At.device)
    out[..., :m] = At
    return out


def _fast_sgd_step(dae, V, x0, sq, t, g, Ht, schedule, lam_fn, eta, eps=None, coefs=None):
    r"""One SGD step of :func:`molrg.loss._loss_and_grad_bases` (the same loss, the same gradient's law) on the
    transposed stack ``V``; returns ``(loss (B,), V_new)``.

    Exact reparametrization of the noise (issue 16).  With ``U = T V`` (orthonormal components),
    ``G = U^T U = F F^T`` and ``y = x_0 + sigma eps``, everything but one term of the gradient depends on
    ``eps`` only through ``e = U^T eps ~ N(0, G)``, drawn as ``e = F g`` with ``g ~ N(0, I_D)`` per sample
    (``g``: ``(B, m, D)``).  The loss is ``lambda ||r||^2 = lambda ((c G Z_w - 2 p) . c Z_w + ||x_0||^2)``
    (``p = U^T x_0``, ``Z = p + sigma e``), and the gradient is

    .. math:: \nabla_U = U M + X_0^T (\rho - \beta Z_w) + \textstyle\sum_m \sigma_m \epsilon_m \rho_m^T,
              \qquad M = \textstyle\sum_m c_m \beta_m Z_{w,m} Z_{w,m}^T,

    ``rho`` the per-sample right factor of the old kernel.  Splitting ``eps = P eps + (I - P) eps``
    (``P`` the projector onto the span of ``U``; ``P eps_m = U G^+ F g_m``, and ``(I - P) eps_m`` is
    independent of ``g``), the last sum is ``U G^+ F sum_m sigma_m g_m rho_m^T + (I - P) E`` where
    ``E = sum_m sigma_m xi_m rho_m^T`` with fresh ``xi_m ~ N(0, I_n)``: given the ``rho``'s its rows are
    i.i.d. ``N(0, S)``, ``S = sum_m sigma_m^2 rho_m rho_m^T``, so ``E = H F_S^T`` with ``F_S F_S^T = S``
    and ``H`` an ``n x D`` standard normal (``Ht``: ``(B, D, n)``).  That is ``(m + n) D`` normals per
    problem and step instead of ``m n``, and two products with the samples instead of five; the
    stochastic gradient has exactly the law of the old one (tested: mean and covariance).

    With ``eps`` ``(B, m, n)`` given instead (``g``, ``Ht`` ignored), the noise enters as drawn, with the
    legacy kernel's random numbers: ``e = U^T eps`` and the last sum computed as it stands (four
    products with the samples, no factorization of ``G``); cheaper when ``(m + n) D >= m n``.

    ``coefs``: the per-sample time coefficients of :func:`_time_coefficients` (then ``t`` is not used),
    computed by the trainer for a chunk of steps at once.
    """
    if coefs is None:
        coefs = _time_coefficients(dae.name, t, schedule, lam_fn, x0.shape[-2])
    sg, c, lam, beta = coefs[:4]  # (B, m)
    # per-sample arrays are held sample-minor, (B, D, m): per-sample scalars then broadcast over a
    # leading axis and component sums run over a middle one, both vectorized along m (torch's CPU kernels
    # are slow on a short innermost axis: a (360, 32, 8) product with a (360, 32, 1) one takes 3x a plain one)
    sgr, cr, br = sg[:, None, :], c[:, None, :], beta[:, None, :]
    dims = dae.dims
    Ut, G = _orthonormal_rows(V, dims)  # U^T (B, D, n) with orthonormal components, G = U^T U
    pT = Ut @ x0.transpose(-1, -2)  # U^T x0 per sample, (B, D, m)
    if eps is None:
        W = Ht @ Ut.transpose(-1, -2)  # Ht U: (B, D, D)
        if G is None:  # one component: G = I
            eT = g.transpose(-1, -2)
        else:
            F, Ginv_F, solve = _gram_factor(G)
            eT = F @ g.transpose(-1, -2)  # e = F g per sample
    else:
        eT = Ut @ eps.transpose(-1, -2)  # U^T eps
    ZT = torch.addcmul(pT, sgr, eT)
    if dae.name == "softmax":  # the posterior weights of SPEC A3 from Z = U^T x_t / s_t (SoftmaxDAE.weights_from_projections)
        logits = posterior_logits_from_norms(_segment_sums_t(ZT * ZT, dims).transpose(1, 2), dims, dae.log_weights, 1.0, sg)
        w = _softmax_k(logits.transpose(1, 2))  # (B, K, m), float64
        wf = w.to(V.dtype)
    elif dae.name == "hardmax":  # equal dims and uniform weights: argmax_k ||U_k^T x0|| (ties to the lowest index)
        j = _segment_sums_t(pT * pT, dims).argmax(1)
        wf = torch.nn.functional.one_hot(j, len(dims)).to(V.dtype).transpose(1, 2)
    else:
        wf = None
    cZwT = cr * ZT if wf is None else _times_components(ZT, wf * cr, dims)  # c Z_w
    lr_ = coefs[4][:, None, :]  # 2 lam / m: beta Z_w = (2 lam / m) c Z_w
    if G is None:
        VrT = cZwT - pT
    else:
        VrT = torch.baddbmm(pT, G.transpose(-1, -2), cZwT, beta=-1.0)  # U^T r = c G Z_w - p, r = c U Z_w - x0
    loss = (lam * (((VrT - pT) * cZwT).sum(1) + sq)).mean(-1)
    if dae.name == "softmax":
        wa = w * _segment_sums_t(VrT * ZT, dims).double()  # w_k a_k / (2 lam c), (B, K, m)
        abar = wa[:, 0]
        for k in range(1, len(dims)):
            abar = abar + wa[:, k]
        delta = (wa - w * abar[:, None]) * coefs[5][:, None]  # w_k (a_k - sum_j w_j a_j) (2 / m) gamma
        rightT = _times_components(VrT, wf * br, dims, ZT, delta.to(V.dtype))  # beta Vr w + delta Z
    else:
        rightT = br * (VrT if wf is None else _times_components(VrT, wf, dims))
    Mm = cZwT @ (lr_ * cZwT).transpose(-1, -2)  # sum_m c beta Zw Zw^T (symmetric)
    if eps is None:
        Mg = (sgr * g.transpose(-1, -2)) @ rightT.transpose(-1, -2)  # sum_m sigma g rho^T
        Fs = _psd_root(rightT.transpose(-1, -2), sg)
        UE = W.transpose(-1, -2) @ Fs.transpose(-1, -2)  # U^T E = (U^T H) F_S^T
        C = Mm + Mg - UE if G is None else Mm + Ginv_F @ Mg - solve(UE)
    else:
        C = Mm
    # V_new = U - eta (X0^T A + noise term + U C)^T  with  A = rho - beta Zw; the next step re-orthonormalizes
    Vn = torch.baddbmm(Ut, C.transpose(-1, -2), Ut, alpha=-eta)
    if eps is None:
        Vn.baddbmm_(Fs, Ht, alpha=-eta)
    else:
        Vn.baddbmm_(sgr * rightT, eps, alpha=-eta)
    Vn.baddbmm_(torch.addcmul(rightT, lr_, cZwT, value=-1.0), x0, alpha=-eta)
    return loss, Vn


# Helpers of the fast kernel on sample-minor arrays (B, D, m) and component values (B, K, m).
def _segment_sums_t(aT, dims):
    """Component sums of ``aT`` ``(B, D, m)``: ``(B, K, m)`` (``BasesDAE.segment_sums`` on the transposed layout)."""
    B, D, m = aT.shape
    if len(set(dims)) == 1:
        return aT.view(B, len(dims), dims[0], m).sum(2)
    cuts = np.cumsum((0,) + tuple(dims))
    return torch.stack([aT[:, p:q].sum(1) for p, q in zip(cuts[:-1], cuts[1:])], 1)


def _times_components(aT, w, dims, bT=None, v=None):
    """``aT * expand(w)`` (``+ bT * expand(v)``): ``aT``, ``bT`` ``(B, D, m)`` times per-component values
    ``w``, ``v`` ``(B, K, m)`` on each component's rows (``BasesDAE.expand``).
    """
    B, D, m = aT.shape
    if len(set(dims)) == 1:
        shape = (B, len(dims), dims[0], m)
        out = aT.view(shape) * w[:, :, None, :]
        if bT is not None:
            out.addcmul_(bT.view(shape), v[:, :, None, :])
        return out.view(B, D, m)
    reps = torch.as_tensor(dims, device=w.device)
    out = aT * w.repeat_interleave(reps, dim=1)
    return out if bT is None else out.addcmul_(bT, v.repeat_interleave(reps, dim=1))


def _softmax_k(logits):
    """``torch.softmax(logits, 1)`` for ``logits`` ``(B, K, m)`` (any strides, short K): ``(B, K, m)`` contiguous."""
    K = logits.shape[1]
    if K == 1:
        return torch.ones(logits.shape, dtype=logits.dtype, device=logits.device)
    top = logits[:, 0]
    for j in range(1, K):
        top = torch.maximum(top, logits[:, j])
    e = (logits - top[:, None]).exp_().contiguous()
    tot = e[:, 0]
    for j in range(1, K):
        tot = tot + e[:, j]
    return e.div_(tot[:, None])


def _orthonormal_rows(V, dims):
    """``(Ut, G)``: ``Ut = T V`` (``T`` of :func:`_retraction`: the Cholesky-QR retraction of every component
    of the transposed stack ``V (B, D, n)``) and the joint Gram ``G = Ut Ut^T`` (None for one component:
    the identity).  Equal dims: the
    ``K`` diagonal blocks are factored as one ``(B K, d, d)`` batch and ``T`` is applied block by block.
    """
    K = len(dims)
    if len(set(dims)) == 1 or K == 1:
        B, D, n = V.shape
        d = dims[0]
        Gv = V @ V.transpose(-1, -2)
        L, info = torch.linalg.cholesky_ex(torch.diagonal(Gv.view(B, K, d, K, d), dim1=1, dim2=3).permute(0, 3, 1, 2))
        if bool((info != 0).any()):  # a component lost rank: those problems re-orthonormalized explicitly (rare)
            V, T, _ = _retraction(V, dims)
            Ut = torch.bmm(T, V)
        else:  # T = blockdiag(L_k^{-1}) as one (B, D, D) matrix: one product over B, cheaper than B K small ones
            T = Gv.new_zeros((B, D, D))
            eye = torch.eye(d, dtype=V.dtype, device=V.device)
            torch.diagonal(T.view(B, K, d, K, d), dim1=1, dim2=3).copy_(torch.linalg.solve_triangular(L, eye, upper=False).permute(0, 2, 3, 1))
            Ut = torch.bmm(T, V)
    else:
        V, T, _ = _retraction(V, dims)
        Ut = T @ V
    return Ut, (None if K == 1 else Ut @ Ut.transpose(-1, -2))


def _time_coefficients(name, t, schedule, lam_fn, m):
    """Per-sample coefficients of :func:`_fast_sgd_step` at times ``t`` (any shape): ``(sigma, c, lambda,
    beta = 2 lambda c / m, 2 lambda / m)``, and for the softmax DAE ``2 lambda c (2 / m) gamma`` in float64,
    ``gamma = 1 / (2 sigma^2 (1 + sigma^2))``.
    """
    sg = schedule.sigma(t)
    c = 1.0 / (1.0 + sg * sg)
    lam = lam_fn(t) * torch.ones_like(t)
    lc = lam * c
    out = [sg, c, lam, (2.0 / m) * lc, (2.0 / m) * lam]
    if name == "softmax":
        gamma = 1.0 / (2.0 * sg * sg * (1.0 + sg * sg))
        out.append((2.0 * lc).double() * ((2.0 / m) * gamma).double())
    return out


def _fast_exact_step(name, dims, V, X, row_w, sq_norms, coef, exact_lr):
    """One exact-phase step (:func:`molrg.loss._expected_loss_and_grad`) on the transposed stack ``V``:
    ``U <- U + 2 exact_lr (X^T (row_w mu X U))``, i.e. ``V_new = T V + 2 exact_lr (row_w mu Z)^T X``.
    """
    V, T, _ = _retraction(V, dims)
    Z = (X @ V.transpose(-1, -2)) @ T.transpose(-1, -2)
    K, d = len(dims), dims[0]
    if name == "hardmax":
        s = (Z * Z).reshape(Z.shape[:-1] + (K, d)).sum(-1)
        Z = Z * torch.nn.functional.one_hot(s.argmax(-1), K).to(Z.dtype).repeat_interleave(d, dim=-1)
    loss = (row_w * (coef.lam * sq_norms + coef.noise * d - coef.gain * (Z * Z).sum(-1))).sum(-1)
    Vn = torch.bmm(T, V)
    Vn.baddbmm_((Z * row_w[..., None]).transpose(-1, -2), X, alpha=2.0 * exact_lr)
    return loss, Vn
