"""Locality experiments (SPEC Part B; paper figures 1 and 2), registered with the sweep engine.

* ``locality-radius``: ``r_eff(t)`` along the OU process for ``d`` from 50 to
  102 400, several ``b`` and two couplings (the knob that sets ``kappa(P_0)``):
  figure 1, right and bottom.  Banded algorithms throughout
  (:mod:`locality.banded`): ``O(d (b + R)^2)`` per time, no ``d x d`` array.
* ``locality-decay``: the profile ``m_r / m_0`` at the time of largest ``r_eff``,
  fitted by an exponential and by a power law: figure 1, top-left.
* ``locality-error``: ``sum_i`` and ``max_i`` of the exact localization error
  ``e_i(r)`` (and of the truncation error) against ``r`` for ``d`` up to
  102 400 (SPEC B3, :func:`locality.ou_localization_error`).
* ``locality-tradeoff``: relative covariance error of the localized DDPM on the
  AR(1) target against ``r`` for several ``N`` (including the paper's N = 100),
  truncate vs marginal, exact (propagated) and sampled (draws from the exactly
  propagated law ``N(0, C_gen)``), with the non-localized reference and the
  error's profile over ``|i - j|`` (figure 2; the figure is drawn from the table).
* ``locality-best-radius``: the best radius ``r*(N)`` against ``N`` (Remark 3.3(2)).
* ``locality-dimension``: at fixed ``N`` (32, 100, 300) the localized DDPM's error
  (eq. 4.6) at its best radius in ``{4, 8, 16}`` and at the fixed ``r = 4``,
  against ``d`` from 16 to 1024, beside the non-localized error (Theorem 3.4,
  Remark 3.3(1)).  Exact propagation by
  :func:`locality.ddpm.generated_covariance_banded` (``O(T d^2 r)``: banded score
  matrices; the non-localized one in the eigenbasis of ``Sigma_hat``) on a
  strided 50-step schedule (``beta`` from ``0.1 / T`` to ``20 / T``, so
  ``alpha_bar_T`` matches the 1000-step one; discretization floor 0.07 against
  0.0035 at T = 1000, the same at every ``d``); one data draw per ``(d, N)``,
  shared by the radii.  Flatness and growth are read over ``d >= 64`` (well
  above ``2 r + 1`` and the AR(1) correlation length).  ``--set target=banded``:
  the random banded target of SPEC B1 (``Sigma = P_0^{-1}``, one ``P_0`` per draw).

Generator: ``P_0 = L L^T`` with ``L`` banded, diagonal ``U(1, 3)`` and
off-diagonal half-width ``coupling * 1 / b``
(:func:`locality.random_banded_precision`), so ``kappa(P_0) <= (3 (1 + c) / (1 - c))^2``
at every ``d`` (no failed Cholesky at any size); ``kappa(P_0)`` is recorded per
row (sparse eigensolver above ``d = 2000``).

Shared draws: in ``locality-radius``, ``-decay`` and ``-error`` the swept ``t``
or ``r`` are evaluations of ONE random precision per trial (a curve of one
draw, as in the paper), so ``run`` groups the tasks of a trial and draws the
precision from the seed of the group's task with the smallest ``t`` / ``r``
(``chunk_by`` keeps a trial's whole curve in one chunk, so this does not depend
on the number of workers).  In ``locality-tradeoff`` every radius gets its own
data draw, as in the paper ("new data sample" per radius).  In
``locality-best-radius`` (no figure in the paper) every radius and method of a
trial share one data draw (``seed_by=("N",)``: common random numbers), so
``r*(N)`` is read off paired curves.

BLAS threads: every ``run`` here works on small blocks (``64 x 64`` products,
``16 x 16`` block inversions), where threaded BLAS only adds synchronization;
measured on the shared 2-core machine, one ``locality-tradeoff`` group took
6.1 s of CPU with the default thread pool and 0.48 s with one thread, so the
run functions limit BLAS to one thread while they run (the engine's workers
provide the parallelism).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from locality.ddpm import covariance_errors, empirical_covariance, gaussian_samples
from locality.forward import decay_fit, ou_profile, radius_from_profile
from locality.localization import ou_localization_error
from locality.precision import ar1_covariance, condition_number, random_banded_precision
from locality.schedule import DDPMSchedule

from ..params import Parameters, param
from ..plots import successful_rows
from ..registry import Experiment, Task, register

__all__ = ["RADIUS", "DECAY", "ERROR", "TRADEOFF", "BEST_RADIUS", "DIMENSION", "strided_schedule", "dimension_curves"]

_TIMES = [0.0] + [float(f"{t:.4g}") for t in np.logspace(-2.5, 1, 13)]
_TIMES_QUICK = [0.0] + [float(f"{t:.4g}") for t in np.logspace(-2, 1, 11)]
_DIMS = [50, 400, 3200, 25600, 102400]


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True, kw_only=True)
class _Banded(Parameters):
    """The random banded precision of SPEC B1 (fields shared by radius, decay and error)."""

    d: int = param(200, ge=2, help="dimension")
    b: int = param(2, ge=0, help="bandwidth of P_0 (b <= d - 1)")
    coupling: float = param(0.5, ge=0.0, lt=1.0,
                            help="off-diagonal half-width of L is coupling * diag_low / b; kappa(P_0) bounded at every d")
    diag_low: float = param(1.0, gt=0.0, help="lower end of the diagonal of L")
    diag_high: float = param(3.0, gt=0.0, help="upper end of the diagonal of L (>= diag_low)")
    eps: float = param(1e-3, gt=0.0, lt=1.0, help="relative threshold of r_eff (paper eq. 4.1)")

    def validate(self):
        from molrg._validation import check_int, check_real

        check_int("b", self.b, low=0, high=self.d - 1)
        check_real("diag_high", self.diag_high, low=self.diag_low)


@dataclass(frozen=True, kw_only=True)
class RadiusParameters(_Banded):
    t: float = param(0.0, ge=0.0, help="diffusion time of the OU process")


@dataclass(frozen=True, kw_only=True)
class DecayParameters(_Banded):
    r: int = param(0, ge=0, help="off-diagonal index of the profile (r <= d - 1)")
    coupling: float = param(0.8, ge=0.0, lt=1.0, help="as in locality-radius (0.8: a slower decay, more radii to fit)")
    n_times: int = param(60, ge=2, help="log-spaced times in [1e-3, 10] searched for the largest r_eff")

    def validate(self):
        super().validate()
        from molrg._validation import check_int

        check_int("r", self.r, low=0, high=self.d - 1)


@dataclass(frozen=True, kw_only=True)
class ErrorParameters(_Banded):
    r: int = param(0, ge=0, help="localization radius")
    t: float = param(0.5, ge=0.0, help="diffusion time of the OU process")


@dataclass(frozen=True, kw_only=True)
class TradeoffParameters(Parameters):
    N: int = param(64, ge=2, help="training samples")
    r: int = param(0, ge=0, help="localization radius")
    method: str = param("marginal", choices=("truncate", "marginal"), help="localization of the DSM-optimal score")
    d: int = param(64, ge=2, help="length of the AR(1) chain")
    T: int = param(1000, ge=1, help="DDPM steps (beta linear from 1e-4 to 0.02)")
    gamma: float = param(1.0, gt=0.0, help="AR(1) mean reversion (gamma * dt in (0, 2))")
    dt: float = param(0.1, gt=0.0, help="AR(1) time step")
    sigma: float = param(1.0, gt=0.0, help="AR(1) noise level")
    n_generated: int = param(2000, ge=0, help="samples drawn from the generated law for the sampled columns")
    sampled_trials: int = param(3, ge=0, help="trials (the first ones) that get the sampled columns")

    def validate(self):
        ar1_covariance(2, gamma=self.gamma, dt=self.dt, sigma=self.sigma)  # the library's own check of gamma * dt


# --------------------------------------------------------------------------- helpers
def _groups(tasks: Sequence[Task], sweep_key: str) -> dict:
    """Group task indices by (params without ``sweep_key``, trial): one random draw per group."""
    groups: dict = defaultdict(list)
    for idx, task in enumerate(tasks):
        key = tuple(sorted((k, repr(v)) for k, v in task.params.items() if k != sweep_key)) + (task.trial,)
        groups[key].append(idx)
    return groups


def _group_rng(tasks: Sequence[Task], idxs: list[int], sweep_key: str) -> np.random.Generator:
    first = min(idxs, key=lambda i: (tasks[i].params[sweep_key], i))
    return tasks[first].rng


def _draw_precision(p, rng: np.random.Generator):
    return random_banded_precision(int(p["d"]), int(p["b"]), diag_range=(float(p["diag_low"]), float(p["diag_high"])),
                                   coupling=float(p["coupling"]), random_state=rng, banded=True)


def _one_blas_thread(run):
    """Run ``run(tasks)`` with BLAS limited to one thread (module docstring)."""

    @functools.wraps(run)
    def wrapper(tasks):
        with threadpool_limits(limits=1, user_api="blas"):
            return run(tasks)

    return wrapper


def _mean_std(table, by: list[str], col: str):
    return successful_rows(table).groupby(by)[col].agg(["mean", "std"]).reset_index()


# --------------------------------------------------------------------------- locality-radius
@_one_blas_thread
def _run_radius(tasks: Sequence[Task]) -> list[dict]:
    out: list[dict | None] = [None] * len(tasks)
    for idxs in _groups(tasks, "t").values():
        p = tasks[idxs[0]].params
        P0 = _draw_precision(p, _group_rng(tasks, idxs, "t"))
        times = np.array([float(tasks[i].params["t"]) for i in idxs])
        m = ou_profile(P0, times, floor=float(p["eps"]))  # band widened until m_R < eps m_0
        r_eff = radius_from_profile(m, float(p["eps"]))
        kappa = condition_number(P0)
        for j, i in enumerate(idxs):
            out[i] = {"r_eff": int(r_eff[j]), "kappa": kappa,
                      "m1_over_m0": float(m[j, 1] / m[j, 0]) if m.shape[1] > 1 else 0.0}
    return out  # type: ignore[return-value]


def _plot_radius(table, config):
    import matplotlib.pyplot as plt

    stats = _mean_std(table, ["d", "b", "coupling", "t"], "r_eff")
    ds, bs, cs = sorted(stats["d"].unique()), sorted(stats["b"].unique()), sorted(stats["coupling"].unique())
    d0, b0, c0 = ds[-1], bs[len(bs) // 2], cs[0]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=False)
    panels = [("d", ds, {"b": b0, "coupling": c0}), ("b", bs, {"d": d0, "coupling": c0}),
              ("coupling", cs, {"d": d0, "b": b0})]
    kap = successful_rows(table).groupby(["d", "b", "coupling"])["kappa"].mean()
    for ax, (key, values, fixed) in zip(axes, panels):
        for v in values:
            sel = stats[(stats[key] == v) & np.logical_and.reduce([stats[k] == fv for k, fv in fixed.items()])]
            sel = sel[sel["t"] > 0].sort_values("t")
            if sel.empty:
                continue
            label = f"{key}={v}"
            if key == "coupling":
                label += f" (kappa~{kap.get((fixed['d'], fixed['b'], v), float('nan')):.3g})"
            ax.plot(sel["t"], sel["mean"], marker=".", label=label)
            ax.fill_between(sel["t"], sel["mean"] - sel["std"].fillna(0), sel["mean"] + sel["std"].fillna(0), alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("t")
        ax.set_ylabel("r_eff(t)")
        ax.set_title(", ".join(f"{k}={fv}" for k, fv in fixed.items()), fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("Effective localization radius along the OU process (figure 1)")
    fig.tight_layout()
    return fig


def _summarize_radius(table, config) -> dict:
    ok = successful_rows(table)
    stats = _mean_std(table, ["d", "b", "coupling", "t"], "r_eff")
    peak = stats.groupby(["d", "b", "coupling"])["mean"].max()
    out = {f"max_t r_eff (d={d}, b={b}, c={c})": round(float(v), 2) for (d, b, c), v in peak.items()}
    spread = peak.groupby(level=["b", "coupling"]).agg(lambda v: float(v.max() - v.min()))
    out["largest spread of max_t r_eff over d, per (b, c)"] = round(float(spread.max()), 2) if len(spread) else None
    out["d range"] = f"{int(ok['d'].min())}..{int(ok['d'].max())}" if len(ok) else ""
    t0 = stats[stats["t"] == 0]
    out["r_eff(0) == b everywhere"] = bool(np.all(t0["mean"].to_numpy() == t0["b"].to_numpy())) if len(t0) else None
    out["failed rows"] = int(len(table) - len(ok))
    out["max kappa"] = round(float(ok["kappa"].max()), 1) if len(ok) else None
    return out


RADIUS = register(
    Experiment(
        name="locality-radius",
        description="Effective localization radius r_eff(t) of P_t along the OU process, d = 50 .. 102 400 (figure 1)",
        run=_run_radius,
        parameters=RadiusParameters,
        grid={"d": _DIMS, "b": [1, 2, 4], "coupling": [0.5, 0.9], "t": _TIMES},
        quick_grid={"d": [50, 400], "b": [1, 2], "coupling": [0.5], "t": _TIMES_QUICK},
        trials=1,
        quick_trials=2,
        chunk_by=("d", "b", "coupling"),
        plot=_plot_radius,
        summarize=_summarize_radius,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-decay
@_one_blas_thread
def _run_decay(tasks: Sequence[Task]) -> list[dict]:
    out: list[dict | None] = [None] * len(tasks)
    for idxs in _groups(tasks, "r").values():
        p = tasks[idxs[0]].params
        P0 = _draw_precision(p, _group_rng(tasks, idxs, "r"))
        times = np.logspace(-3, 1, int(p["n_times"]))
        eps = float(p["eps"])
        r_eff = radius_from_profile(ou_profile(P0, times, floor=eps), eps)
        j = int(np.argmax(r_eff))
        r_top = max(int(tasks[i].params["r"]) for i in idxs)
        m = ou_profile(P0, times[j], max_radius=min(max(r_top, int(r_eff[j]) + 5), P0.d - 1))
        fit = decay_fit(m, r_min=1, r_max=max(3, min(m.size - 1, int(r_eff[j]) + 5)))
        kappa = condition_number(P0)
        for i in idxs:
            r = int(tasks[i].params["r"])
            out[i] = {
                "m_ratio": float(m[r] / m[0]) if r < m.size else 0.0,
                "t_star": float(times[j]),
                "r_eff_max": int(r_eff[j]),
                "decay_rate": fit.rate,
                "exponential_rmse": fit.exponential_rmse,
                "power_exponent": fit.power_exponent,
                "power_rmse": fit.power_rmse,
                "kappa": kappa,
            }
    return out  # type: ignore[return-value]


def _plot_decay(table, config):
    import matplotlib.pyplot as plt

    stats = _mean_std(table, ["b", "r"], "m_ratio")
    ok = successful_rows(table)
    rates = ok.groupby("b")["decay_rate"].mean()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for b in sorted(stats["b"].unique()):
        sel = stats[(stats["b"] == b) & (stats["mean"] > 0)].sort_values("r")
        ax.semilogy(sel["r"], sel["mean"], marker=".", label=f"b={b}: rate {rates[b]:.2f}/r ({rates[b] / np.log(10):.2f} dec)")
    ax.set_xlabel("r (off-diagonal index)")
    ax.set_ylabel("m_r(t*) / m_0(t*)")
    ax.set_title("Off-diagonal decay of P_t at the time of largest r_eff")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _summarize_decay(table, config) -> dict:
    g = successful_rows(table).groupby("b")
    out = {
        **{f"decay rate per unit r (b={b})": round(float(v), 3) for b, v in g["decay_rate"].mean().items()},
        **{f"t* (b={b})": round(float(v), 4) for b, v in g["t_star"].mean().items()},
        **{f"r_eff max (b={b})": round(float(v), 2) for b, v in g["r_eff_max"].mean().items()},
    }
    ratio = g["exponential_rmse"].mean() / g["power_rmse"].mean()
    out["rmse exponential / power law (per b)"] = {int(b): round(float(v), 3) for b, v in ratio.items()}
    out["exponential fits better at every b"] = bool(np.all(ratio.to_numpy() < 1.0))
    return out


DECAY = register(
    Experiment(
        name="locality-decay",
        description="Exponential decay of m_r(t) = mean_i |P_t[i,i+r]| at the time of largest r_eff (figure 1, top-left)",
        run=_run_decay,
        parameters=DecayParameters,
        grid={"b": [1, 2, 4], "r": list(range(0, 31))},
        quick_grid={"b": [1, 2], "r": list(range(0, 21))},
        quick_params={"d": 100, "n_times": 30},
        trials=5,
        quick_trials=2,
        chunk_by=("b",),
        plot=_plot_decay,
        summarize=_summarize_decay,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-error
@_one_blas_thread
def _run_error(tasks: Sequence[Task]) -> list[dict]:
    out: list[dict | None] = [None] * len(tasks)
    for idxs in _groups(tasks, "r").values():
        p = tasks[idxs[0]].params
        P0 = _draw_precision(p, _group_rng(tasks, idxs, "r"))
        radii = np.array([int(tasks[i].params["r"]) for i in idxs])
        res = ou_localization_error(P0, float(p["t"]), radii)
        kappa = condition_number(P0)
        d = P0.d
        for j, i in enumerate(idxs):
            e, q = res.optimal[j], res.truncation[j]
            out[i] = {"error_sum": float(e.sum()), "error_max": float(e.max()), "error_mean": float(e.sum() / d),
                      "truncation_sum": float(q.sum()), "kappa": kappa}
    return out  # type: ignore[return-value]


def _plot_error(table, config):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, col, title in zip(axes, ["error_sum", "error_max", "error_mean"],
                              ["sum_i e_i(r)  (total, linear in d)", "max_i e_i(r)",
                               "sum_i e_i(r) / d  (per component: independent of d)"]):
        stats = _mean_std(table, ["d", "r"], col)
        for d in sorted(stats["d"].unique()):
            sel = stats[(stats["d"] == d) & (stats["mean"] > 0)].sort_values("r")
            ax.semilogy(sel["r"], sel["mean"], marker=".", label=f"d={d}")
        if col == "error_sum":
            tr = _mean_std(table, ["d", "r"], "truncation_sum")
            for d in sorted(tr["d"].unique()):
                sel = tr[(tr["d"] == d) & (tr["mean"] > 0)].sort_values("r")
                ax.semilogy(sel["r"], sel["mean"], ls=":", color="gray")
            ax.plot([], [], ls=":", color="gray", label="truncation")
        ax.set_xlabel("r")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("Exact localization error of the score (SPEC B3)")
    fig.tight_layout()
    return fig


def _summarize_error(table, config) -> dict:
    out = {}
    stats = _mean_std(table, ["d", "r"], "error_sum")
    for d in sorted(stats["d"].unique()):
        at_d = stats[stats["d"] == d]
        # rounding floor: e_i(r) is a difference of O(P_ii) numbers, noise ~ 1e-16 P_ii per component, a few
        # 1e-13 of sum_i e_i(0) at every d: only radii above 1e-10 of this d's largest sum enter the fit
        sel = at_d[at_d["mean"] > 1e-10 * at_d["mean"].max()].sort_values("r")
        if len(sel) >= 2:
            slope = np.polyfit(sel["r"], np.log10(sel["mean"]), 1)[0]
            out[f"decades per unit r of sum_i e_i (d={d})"] = round(float(-slope), 3)
    r1 = sorted(table["r"].unique())[min(1, table["r"].nunique() - 1)]
    for col, what in (("error_mean", "mean_i"), ("error_max", "max_i")):
        st = _mean_std(table, ["d", "r"], col)
        out[f"{what} e_i(r={r1}) per d"] = {int(d): float(f"{v:.4g}") for d, v in st[st["r"] == r1].set_index("d")["mean"].items()}
    mean = _mean_std(table, ["d", "r"], "error_mean")
    mean = mean[mean["r"] == r1]["mean"]
    out[f"max / min over d of mean_i e_i(r={r1})"] = round(float(mean.max() / mean.min()), 3) if len(mean) else None
    out["failed rows"] = int(len(table) - len(successful_rows(table)))
    return out


ERROR = register(
    Experiment(
        name="locality-error",
        description="Exact localization error e_i(r) of the OU score, d = 50 .. 102 400: sum and max over i against r (SPEC B3)",
        run=_run_error,
        parameters=ErrorParameters,
        grid={"d": _DIMS, "r": list(range(0, 13))},
        quick_grid={"d": [50, 400], "r": list(range(0, 9))},
        trials=3,
        quick_trials=2,
        chunk_by=("d",),
        plot=_plot_error,
        summarize=_summarize_error,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-tradeoff
def _ar1_from(p) -> np.ndarray:
    return ar1_covariance(int(p["d"]), gamma=float(p["gamma"]), dt=float(p["dt"]), sigma=float(p["sigma"]))


def _offset_profile(E: np.ndarray) -> str:
    """``mean_i |E[i, i + k]|`` for ``k = 0 .. d - 1`` as text (3 significant digits): the error map's profile."""
    d = E.shape[0]
    return " ".join(f"{np.abs(np.diagonal(E, k)).mean():.3g}" for k in range(d))


@_one_blas_thread
def _run_tradeoff(tasks: Sequence[Task]) -> list[dict]:
    """One chunk: every ``N`` and trial of one ``(r, method)`` (``chunk_by``), propagated as one batch.

    Each task's data draw comes from its own seed (so nothing depends on the
    chunking); the localized propagation of all draws of the chunk is one
    batched single-precision call (:func:`locality.ddpm.generated_covariance`
    with ``dtype=float32``: within ``8.7e-7`` of float64; ``r = 0`` exactly, by the
    diagonal recursion), and the population curve (the same sampler fed the true
    covariance, which does not depend on ``N``) rides in the same batch as its
    last problem, once per chunk.
    """
    out: list[dict | None] = [None] * len(tasks)
    by_setting: dict = defaultdict(list)  # everything but N and the trial: one batch, one population value
    for idx, task in enumerate(tasks):
        by_setting[tuple(sorted((k, repr(v)) for k, v in task.params.items() if k != "N"))].append(idx)
    for idxs in by_setting.values():
        p = tasks[idxs[0]].params
        Sigma = _ar1_from(p)
        sch = DDPMSchedule(T=int(p["T"]))
        rngs = [tasks[i].rng for i in idxs]
        # one data draw per task, N samples from its own stream
        Sh = np.stack([empirical_covariance(gaussian_samples(Sigma, int(tasks[i].params["N"]), random_state=g))
                       for i, g in zip(idxs, rngs)])
        n_gen, n_samp = int(p["n_generated"]), int(p["sampled_trials"])
        mask = np.array([n_gen > 0 and tasks[i].trial < n_samp for i in idxs] + [False])
        # the same localized sampler fed the true covariance (pure localization error, no statistical
        # error) rides along as the last problem of the batch: one propagation for the whole chunk
        res = covariance_errors(Sigma, np.concatenate([Sh, Sigma[None]]), method=str(p["method"]), r=int(p["r"]),
                                schedule=sch, n_generated=n_gen, sample_mask=mask,
                                random_state=[rngs[j] for j in np.flatnonzero(mask)], dtype=np.float32)
        pop = float(res["exact"][-1])
        scale = np.linalg.norm(Sigma, 2)
        for j, i in enumerate(idxs):
            row = {"rel_error": float(res["exact"][j]), "rel_error_nonlocal": float(res["nonlocal"][j]),
                   "rel_error_population": pop,
                   "rel_error_sampled": float("nan"), "rel_error_nonlocal_sampled": float("nan"),
                   "error_by_offset": _offset_profile((res["Sigma_gen"][j] - Sigma) / scale) if tasks[i].trial == 0 else ""}
            if mask[j]:
                row["rel_error_sampled"] = float(res["sampled"][j])
                row["rel_error_nonlocal_sampled"] = float(res["nonlocal_sampled"][j])
            out[i] = row
    return out  # type: ignore[return-value]


def _best_radius(table, N, method="marginal"):
    st = _mean_std(table[(table["N"] == N) & (table["method"] == method)], ["r"], "rel_error")
    return int(st.loc[st["mean"].idxmin(), "r"]) if len(st) else 0


def _plot_tradeoff(table, config):
    """Figure 2 from the table alone: the curves (top) and the error's profile over |i - j| (bottom)."""
    import matplotlib.pyplot as plt

    ok = successful_rows(table)
    Ns = sorted(ok["N"].unique())
    fig = plt.figure(figsize=(13, 7.5))
    ax = fig.add_subplot(2, 1, 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, N in zip(colors, Ns):
        for method, ls in (("marginal", "-"), ("truncate", "--")):
            st = _mean_std(ok[(ok["N"] == N) & (ok["method"] == method)], ["r"], "rel_error").sort_values("r")
            if st.empty:
                continue
            ax.errorbar(st["r"], st["mean"], yerr=st["std"].fillna(0), ls=ls, color=c, marker=".", capsize=2,
                        label=f"N={N}, {method} (exact)")
            sm = _mean_std(ok[(ok["N"] == N) & (ok["method"] == method)], ["r"], "rel_error_sampled").dropna(subset=["mean"])
            if len(sm):
                ax.plot(sm["r"], sm["mean"], ls="none", marker="x" if method == "marginal" else "+", color=c)
        ax.axhline(ok.loc[ok["N"] == N, "rel_error_nonlocal"].mean(), color=c, ls=":", lw=1)
    ax.plot([], [], ls=":", color="gray", label="non-localized (4.4)")
    ax.plot([], [], ls="none", marker="x", color="gray", label="sampled from N(0, C_gen)")
    ax.set_xlabel("localization radius r")
    ax.set_ylabel("||Sigma_gen - Sigma||_2 / ||Sigma||_2")
    ax.set_title("Localized DDPM on the AR(1) target: localization vs statistical error (figure 2)")
    ax.legend(fontsize=7, ncol=3)
    N0 = Ns[len(Ns) // 2] if Ns else None
    radii_all = sorted(ok["r"].unique())
    if N0 is not None and "error_by_offset" in ok and len(radii_all):
        picks = [int(radii_all[min(1, len(radii_all) - 1)]), _best_radius(ok, N0), int(radii_all[-1])]
        for j, r in enumerate(picks):
            axm = fig.add_subplot(2, 3, 4 + j)
            for method, ls in (("marginal", "-"), ("truncate", "--")):
                rows = ok[(ok["N"] == N0) & (ok["r"] == r) & (ok["method"] == method) & (ok["error_by_offset"].fillna("") != "")]
                if len(rows):
                    prof = np.array(str(rows["error_by_offset"].iloc[0]).split(), dtype=float)
                    axm.semilogy(np.arange(prof.size), np.maximum(prof, 1e-12), ls=ls, label=method)
            axm.set_xlabel("|i - j|")
            axm.set_title(f"mean |entrywise error|, N={N0}, r={r}" + (" (best)" if j == 1 else ""), fontsize=9)
            axm.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _summarize_tradeoff(table, config) -> dict:
    ok = successful_rows(table)
    out: dict[str, Any] = {}
    for N in sorted(ok["N"].unique()):
        ref = float(ok.loc[ok["N"] == N, "rel_error_nonlocal"].mean())
        for method in sorted(ok["method"].unique()):
            st = _mean_std(ok[(ok["N"] == N) & (ok["method"] == method)], ["r"], "rel_error").sort_values("r")
            if st.empty:
                continue
            k = int(st["mean"].idxmin())
            out[f"N={N} {method}: best r"] = int(st.loc[k, "r"])
            out[f"N={N} {method}: min error"] = round(float(st.loc[k, "mean"]), 4)
            out[f"N={N} {method}: interior minimum"] = bool(st["r"].min() < st.loc[k, "r"] < st["r"].max())
            out[f"N={N} {method}: beats non-localized"] = bool(st.loc[k, "mean"] < ref)
        out[f"N={N}: non-localized error"] = round(ref, 4)
    sm = ok["rel_error_sampled"].dropna()
    if len(sm):
        both = ok.dropna(subset=["rel_error_sampled"])
        out["mean |sampled - exact|"] = round(float(np.mean(np.abs(both["rel_error_sampled"] - both["rel_error"]))), 4)
    return out


TRADEOFF = register(
    Experiment(
        name="locality-tradeoff",
        description="Localized DDPM on the AR(1) target: covariance error against r, truncate vs marginal (figure 2)",
        run=_run_tradeoff,
        parameters=TradeoffParameters,
        grid={"N": [32, 64, 100, 128], "r": [0, 2, 4, 8, 12, 16, 24, 32], "method": ["truncate", "marginal"]},
        quick_grid={"N": [64, 100], "r": [0, 2, 4, 8, 12, 16, 24, 32], "method": ["truncate", "marginal"]},
        quick_params={"n_generated": 500, "sampled_trials": 1},
        trials=20,
        quick_trials=3,
        chunk_by=("r", "method"),
        plot=_plot_tradeoff,
        summarize=_summarize_tradeoff,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-best-radius
@dataclass(frozen=True, kw_only=True)
class BestRadiusParameters(TradeoffParameters):
    n_generated: int = param(0, ge=0, help="samples drawn from the generated law (0: exact errors only)")


def best_radii(table) -> dict[tuple[str, int], int]:
    """``r*(N)``: the radius of smallest mean error, per (method, N), from a trade-off table (failed rows skipped)."""
    ok = successful_rows(table)
    out = {}
    for (method, N), g in ok.groupby(["method", "N"]):
        curve = g.groupby("r")["rel_error"].mean()
        out[(str(method), int(N))] = int(curve.idxmin())
    return out


def _plot_best_radius(table, config):
    import matplotlib.pyplot as plt

    ok = successful_rows(table)
    rs = best_radii(table)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for method, marker in (("marginal", "o"), ("truncate", "s")):
        Ns = sorted(N for m, N in rs if m == method)
        if not Ns:
            continue
        r = np.array([rs[(method, N)] for N in Ns], dtype=float)
        axes[0].plot(Ns, r, marker=marker, ls="none", label=f"{method}: r*(N)")
        slope, icpt = np.polyfit(np.log(Ns), r, 1)
        grid = np.geomspace(min(Ns), max(Ns), 50)
        axes[0].plot(grid, icpt + slope * np.log(grid), ls="--", label=f"{method}: {icpt:.1f} + {slope:.2f} log N")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("N")
    axes[0].set_ylabel("best radius r*")
    axes[0].set_title("Remark 3.3(2): the best radius grows like log N", fontsize=9)
    axes[0].legend(fontsize=7)
    ax = axes[1]
    N0 = sorted(ok["N"].unique())[len(ok["N"].unique()) // 2]
    for method, ls in (("marginal", "-"), ("truncate", "--")):
        g = ok[(ok["method"] == method)]
        pop = g.groupby("r")["rel_error_population"].mean()
        ax.semilogy(pop.index, pop.to_numpy(), ls=ls, color="k", label=f"{method}: localization error (true Sigma)")
        cur = g[g["N"] == N0].groupby("r")["rel_error"].mean()
        ax.semilogy(cur.index, cur.to_numpy(), ls=ls, color="tab:blue", label=f"{method}: total, N={N0}")
    ax.axhline(ok.loc[ok["N"] == N0, "rel_error_nonlocal"].mean(), color="tab:red", ls=":", label=f"statistical error (no localization), N={N0}")
    ax.set_xlabel("r")
    ax.set_ylabel("relative covariance error")
    ax.set_title("Localization and statistical parts", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _summarize_best_radius(table, config) -> dict:
    rs = best_radii(table)
    out: dict[str, Any] = {}
    for method in sorted({m for m, _ in rs}):
        Ns = sorted(N for m, N in rs if m == method)
        r = [rs[(method, N)] for N in Ns]
        out[f"{method}: r*(N)"] = {N: v for N, v in zip(Ns, r)}
        out[f"{method}: r* non-decreasing in N"] = bool(np.all(np.diff(r) >= 0))
        out[f"{method}: slope of r* against log N"] = round(float(np.polyfit(np.log(Ns), r, 1)[0]), 3) if len(Ns) > 1 else None
    return out


BEST_RADIUS = register(
    Experiment(
        name="locality-best-radius",
        description="Best localization radius r*(N) of the localized DDPM against N, with the log N trend (Remark 3.3(2))",
        run=_run_tradeoff,
        parameters=BestRadiusParameters,
        grid={"N": [16, 32, 64, 128, 256, 1024, 4096], "r": [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48],
              "method": ["truncate", "marginal"]},
        quick_grid={"N": [16, 64, 256, 1024], "r": [1, 2, 4, 8, 16, 32, 48], "method": ["truncate", "marginal"]},
        trials=4,
        quick_trials=3,
        chunk_by=("r", "method"),
        seed_by=("N",),  # every radius and method on the same data draws: r*(N) compares paired curves
        plot=_plot_best_radius,
        summarize=_summarize_best_radius,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-dimension
_FIXED_RADIUS = 4
@dataclass(frozen=True, kw_only=True)
class DimensionParameters(Parameters):
    d: int = param(64, ge=2, help="length of the AR(1) chain (the ambient dimension)")
    N: int = param(100, ge=2, help="training samples")
    r: int = param(4, ge=0, help="localization radius (r >= d - 1: no localization)")
    method: str = param("marginal", choices=("truncate", "marginal"), help="localization of the DSM-optimal score")
    T: int = param(50, ge=1, help="steps of the strided DDPM schedule (beta linear from 0.1 / T to 20 / T)")
    fixed_radius: int = param(_FIXED_RADIUS, ge=0, help="the fixed moderate radius reported beside the best one")
    target: str = param("ar1", choices=("ar1", "banded"),
                        help="AR(1) chain, or Sigma = P_0^{-1} with P_0 the random banded precision of SPEC B1 (one per draw)")
    b: int = param(2, ge=0, help="bandwidth of P_0 (target='banded')")
    coupling: float = param(0.5, ge=0.0, lt=1.0, help="off-diagonal coupling of P_0 (target='banded'; kappa bounded in d)")
    gamma: float = param(1.0, gt=0.0, help="AR(1) mean reversion (gamma * dt in (0, 2))")
    dt: float = param(0.1, gt=0.0, help="AR(1) time step")
    sigma: float = param(1.0, gt=0.0, help="AR(1) noise level")

    def validate(self):
        ar1_covariance(2, gamma=self.gamma, dt=self.dt, sigma=self.sigma)
        if self.target == "banded":
            from molrg._validation import check_int

            check_int("b", self.b, low=0, high=self.d - 1)


def strided_schedule(T: int) -> DDPMSchedule:
    """The SPEC B4 schedule with ``T`` steps instead of 1000: ``beta`` linear from ``0.1 / T`` to ``20 / T``.

    ``sum_k beta_k`` (hence ``alpha_bar_T``) stays that of the 1000-step schedule;
    measured discretization floor (error of the non-localized sampler fed the true
    covariance, AR(1), d = 1024): 0.0035 at T = 1000, 0.036 at T = 100, 0.073 at T = 50.
    """
    return DDPMSchedule(T=T, beta_min=0.1 / T, beta_max=20.0 / T)


def _sym_relative_error(C: np.ndarray, Sigma: np.ndarray, sigma_norm: float | None = None) -> float:
    """``||C - Sigma||_2 / ||Sigma||_2`` (eq. 4.6) for symmetric ``C``: largest |eigenvalue|, no SVD.

    ``sigma_norm``: ``||Sigma||_2`` when already known (one eigvalsh of ``Sigma`` per draw, not per call).
    """
    if sigma_norm is None:
        sigma_norm = float(np.max(np.linalg.eigvalsh(Sigma)))
    return float(np.max(np.abs(np.linalg.eigvalsh(C - Sigma))) / sigma_norm)


@_one_blas_thread
def _run_dimension(tasks: Sequence[Task]) -> list[dict]:
    from locality.ddpm import LinearScore, generated_covariance_banded

    out: list[dict | None] = [None] * len(tasks)
    for idxs in _groups(tasks, "r").values():
        p = tasks[idxs[0]].params
        rng = _group_rng(tasks, idxs, "r")
        if p["target"] == "ar1":
            Sigma = _ar1_from(p)
        else:
            P0 = random_banded_precision(int(p["d"]), int(p["b"]), coupling=float(p["coupling"]), random_state=rng)
            Sigma = np.linalg.inv(P0)
            Sigma = 0.5 * (Sigma + Sigma.T)
        sch = strided_schedule(int(p["T"]))
        Sh = empirical_covariance(gaussian_samples(Sigma, int(p["N"]), random_state=rng))
        norm = float(np.max(np.linalg.eigvalsh(Sigma)))  # ||Sigma||_2, shared by the group's errors
        nonlocal_score = LinearScore(Sh, schedule=sch, method="none")
        ref = _sym_relative_error(generated_covariance_banded(nonlocal_score), Sigma, norm)
        for i in idxs:
            sc = nonlocal_score.localized(str(p["method"]), int(tasks[i].params["r"]))  # Sigma_hat validated once
            out[i] = {"rel_error": _sym_relative_error(generated_covariance_banded(sc), Sigma, norm),
                      "rel_error_nonlocal": ref}
    return out  # type: ignore[return-value]


def _fixed_radius(config) -> int:
    params = (config or {}).get("params", {}) if isinstance(config, dict) else {}
    return int(params.get("fixed_radius", _FIXED_RADIUS))


def dimension_curves(table, fixed_radius: int = _FIXED_RADIUS) -> dict[int, dict[str, dict[int, float]]]:
    """Per ``N``: mean error (eq. 4.6) against ``d`` of the non-localized and the localized sampler.

    Keys ``"nonlocal"``, ``"best"`` (the localized error at the radius of smallest
    mean error at that ``(d, N)``), ``"best_r"`` and ``"fixed"`` (at ``fixed_radius``;
    empty if that radius was not swept); failed rows skipped.
    """
    ok = successful_rows(table)
    fixed = int(fixed_radius)
    out: dict[int, dict[str, dict[int, float]]] = {}
    for N, g in ok.groupby("N"):
        cur = g.groupby(["d", "r"])["rel_error"].mean().unstack("r")
        out[int(N)] = {
            "nonlocal": {int(d): float(v) for d, v in g.groupby("d")["rel_error_nonlocal"].mean().items()},
            "best": {int(d): float(v) for d, v in cur.min(axis=1).items()},
            "best_r": {int(d): int(v) for d, v in cur.idxmin(axis=1).items()},
            "fixed": {int(d): float(v) for d, v in cur[fixed].items()} if fixed in cur else {},
        }
    return out


def _plot_dimension(table, config):
    import matplotlib.pyplot as plt

    curves = dimension_curves(table, _fixed_radius(config))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, (N, cv) in zip(colors, curves.items()):
        for key, ls, lab in (("nonlocal", ":", "non-localized"), ("best", "-", "localized, best r"),
                             ("fixed", "--", f"localized, r={_fixed_radius(config)}")):
            if cv[key]:
                ds = sorted(cv[key])
                ax.loglog(ds, [cv[key][d] for d in ds], ls=ls, marker=".", color=c, label=f"N={N}, {lab}")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("||Sigma_gen - Sigma||_2 / ||Sigma||_2")
    ax.set_title("Localized DDPM: error against d at fixed N (Theorem 3.4)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


_D_LOCAL = 64  # flatness and growth are read over d >= 64: well above 2 r + 1 and the AR(1) correlation length


def _summarize_dimension(table, config) -> dict:
    out: dict[str, Any] = {}
    for N, cv in dimension_curves(table, _fixed_radius(config)).items():
        ds = np.array(sorted(cv["nonlocal"]))
        nl = np.array([cv["nonlocal"][d] for d in ds])
        best = np.array([cv["best"][d] for d in ds])
        big = ds >= _D_LOCAL
        out[f"N={N}: d"] = [int(d) for d in ds]
        out[f"N={N}: non-localized error"] = [round(float(v), 3) for v in nl]
        out[f"N={N}: localized error (best r)"] = [round(float(v), 3) for v in best]
        out[f"N={N}: best r"] = [cv["best_r"][d] for d in ds]
        if cv["fixed"]:
            out[f"N={N}: localized error (fixed r)"] = [round(float(cv["fixed"][d]), 3) for d in ds]
        if big.sum() < 2:
            continue
        out[f"N={N}: non-localized increasing in d (d >= {_D_LOCAL})"] = bool(np.all(np.diff(nl[big]) > 0))
        out[f"N={N}: non-localized max / min over d >= {_D_LOCAL}"] = round(float(nl[big].max() / nl[big].min()), 3)
        fit = big & (ds >= 2 * N)
        if fit.sum() >= 2:
            out[f"N={N}: slope of log non-localized error against log d (d >= 2N)"] = round(
                float(np.polyfit(np.log(ds[fit]), np.log(nl[fit]), 1)[0]), 3)
        out[f"N={N}: localized (best r) max / min over d >= {_D_LOCAL}"] = round(float(best[big].max() / best[big].min()), 3)
        if cv["fixed"]:
            fx = np.array([cv["fixed"][d] for d in ds])
            out[f"N={N}: localized (fixed r) max / min over d >= {_D_LOCAL}"] = round(float(fx[big].max() / fx[big].min()), 3)
    return out


DIMENSION = register(
    Experiment(
        name="locality-dimension",
        description="Localized vs non-localized DDPM error against d = 16 .. 1024 at fixed N (Theorem 3.4, Remark 3.3(1))",
        run=_run_dimension,
        parameters=DimensionParameters,
        grid={"d": [16, 32, 64, 128, 256, 512, 1024], "N": [32, 100, 300], "r": [4, 8, 16]},
        quick_grid={"d": [64, 512], "N": [32, 100], "r": [4, 8, 16]},
        quick_params={"T": 25},
        trials=1,
        quick_trials=2,
        chunk_by=("d", "N"),
        plot=_plot_dimension,
        summarize=_summarize_dimension,
        doc=__doc__,
        family="locality",
    )
)
