"""Locality experiments (SPEC Part B; paper figures 1 and 2), registered with the sweep engine.

* ``locality-radius``: ``r_eff(t)`` along the OU process for several ``d``, ``b``
  and condition numbers (knob ``offdiag_scale``): figure 1, right and bottom.
* ``locality-decay``: the profile ``m_r / m_0`` at the time of largest ``r_eff``,
  with its fitted exponential rate: figure 1, top-left.
* ``locality-error``: ``sum_i`` and ``max_i`` of the exact localization error
  ``e_i(r)`` (and of the truncation error) against ``r`` for several ``d`` (SPEC B3).
* ``locality-tradeoff``: relative covariance error of the localized DDPM on the
  AR(1) target against ``r`` for several ``N``, truncate vs marginal, exact
  (propagated) and sampled, with the non-localized reference and the entrywise
  error maps for a small, the best and a large ``r``: figure 2.

Shared draws: in ``locality-radius``, ``-decay`` and ``-error`` the swept ``t``
or ``r`` are evaluations of ONE random precision per trial (a curve of one
draw, as in the paper), so ``run`` groups the tasks of a trial and draws the
precision from the seed of the group's task with the smallest ``t`` / ``r``
(``chunk_by`` keeps a trial's whole curve in one chunk, so this does not depend
on the number of workers).  In ``locality-tradeoff`` every radius gets its own
data draw, as in the paper ("new data sample" per radius).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from locality.ddpm import (
    LinearScore,
    empirical_covariance,
    entrywise_error,
    generated_covariance,
    relative_covariance_error,
    sample_backward,
)
from locality.forward import decay_rate, ou_profile, radius_from_profile
from locality.localization import localization_error, truncation_error
from locality.precision import ar1_covariance, random_banded_precision
from locality.schedule import DDPMSchedule
from molrg.utils import check_int, check_real

from ..registry import Experiment, Task, register

__all__ = ["RADIUS", "DECAY", "ERROR", "TRADEOFF"]

_TIMES = [0.0] + [float(f"{t:.4g}") for t in np.logspace(-3, 1, 25)]
_TIMES_QUICK = [0.0] + [float(f"{t:.4g}") for t in np.logspace(-2, 1, 11)]


# --------------------------------------------------------------------------- helpers
def _param(config: Mapping[str, Any], key: str, default: Any) -> Any:
    """A fixed parameter from a run configuration (top level or under ``"params"``)."""
    if config is not None:
        if key in config:
            return config[key]
        p = config.get("params") if hasattr(config, "get") else None
        if isinstance(p, Mapping) and key in p:
            return p[key]
    return default


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


def _draw_precision(p: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    return random_banded_precision(
        int(p["d"]),
        int(p["b"]),
        diag_range=(float(p["diag_low"]), float(p["diag_high"])),
        offdiag_scale=float(p["offdiag_scale"]),
        random_state=rng,
    )


def _kappa(P: np.ndarray) -> float:
    lam = np.linalg.eigvalsh(P)
    return float(lam[-1] / lam[0])


def _validate_common(config: Mapping[str, Any]) -> None:
    for key in ("diag_low", "diag_high"):
        if key in config:
            check_real(key, config[key], low=0.0, low_open=True)
    if "eps" in config:
        check_real("eps", config["eps"], low=0.0, high=1.0, low_open=True, high_open=True)
    if "offdiag_scale" in config:
        check_real("offdiag_scale", config["offdiag_scale"], low=0.0)


def _mean_std(table, by: list[str], col: str):
    g = table[table["error"].fillna("") == ""] if "error" in table else table
    return g.groupby(by)[col].agg(["mean", "std"]).reset_index()


# --------------------------------------------------------------------------- locality-radius
def _run_radius(tasks: Sequence[Task]) -> list[dict]:
    out: list[dict | None] = [None] * len(tasks)
    for idxs in _groups(tasks, "t").values():
        p = tasks[idxs[0]].params
        P0 = _draw_precision(p, _group_rng(tasks, idxs, "t"))
        times = np.array([float(tasks[i].params["t"]) for i in idxs])
        m = ou_profile(P0, times)  # (n_t, d)
        r_eff = radius_from_profile(m, float(p["eps"]))
        kappa = _kappa(P0)
        for j, i in enumerate(idxs):
            out[i] = {"r_eff": int(r_eff[j]), "kappa": kappa, "m1_over_m0": float(m[j, 1] / m[j, 0]) if m.shape[1] > 1 else 0.0}
    return out  # type: ignore[return-value]


def _plot_radius(table, config):
    import matplotlib.pyplot as plt

    stats = _mean_std(table, ["d", "b", "offdiag_scale", "t"], "r_eff")
    ds, bs, ss = sorted(stats["d"].unique()), sorted(stats["b"].unique()), sorted(stats["offdiag_scale"].unique())
    d0, b0, s0 = ds[len(ds) // 2], bs[len(bs) // 2], ss[len(ss) // 2]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=False)
    panels = [("d", ds, {"b": b0, "offdiag_scale": s0}), ("b", bs, {"d": d0, "offdiag_scale": s0}),
              ("offdiag_scale", ss, {"d": d0, "b": b0})]
    kap = table.groupby(["d", "b", "offdiag_scale"])["kappa"].mean() if "kappa" in table else None
    for ax, (key, values, fixed) in zip(axes, panels):
        for v in values:
            sel = stats[(stats[key] == v) & np.logical_and.reduce([stats[k] == fv for k, fv in fixed.items()])]
            sel = sel[sel["t"] > 0].sort_values("t")
            if sel.empty:
                continue
            label = f"{key}={v}"
            if key == "offdiag_scale" and kap is not None:
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
    stats = _mean_std(table, ["d", "b", "offdiag_scale", "t"], "r_eff")
    peak = stats.groupby(["d", "b", "offdiag_scale"])["mean"].max()
    out = {f"max_t r_eff (d={d}, b={b}, s={s})": round(float(v), 2) for (d, b, s), v in peak.items()}
    t0 = stats[stats["t"] == 0]
    out["r_eff(0) == b everywhere"] = bool(np.all(t0["mean"].to_numpy() == t0["b"].to_numpy())) if len(t0) else None
    return out


_COMMON = {"diag_low": 1.0, "diag_high": 3.0, "eps": 1e-3}

RADIUS = register(
    Experiment(
        name="locality-radius",
        description="Effective localization radius r_eff(t) of P_t along the OU process (paper figure 1)",
        run=_run_radius,
        grid={"d": [50, 200, 800], "b": [1, 2, 4], "offdiag_scale": [0.5, 1.0, 2.0], "t": _TIMES},
        quick_grid={"d": [50, 100], "b": [1, 2], "offdiag_scale": [1.0], "t": _TIMES_QUICK},
        params=dict(_COMMON),
        trials=5,
        quick_trials=2,
        chunk_by=("d", "b", "offdiag_scale"),
        plot=_plot_radius,
        summarize=_summarize_radius,
        validate=_validate_common,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-decay
def _run_decay(tasks: Sequence[Task]) -> list[dict]:
    out: list[dict | None] = [None] * len(tasks)
    for idxs in _groups(tasks, "r").values():
        p = tasks[idxs[0]].params
        P0 = _draw_precision(p, _group_rng(tasks, idxs, "r"))
        times = np.logspace(-3, 1, int(p["n_times"]))
        r_eff = radius_from_profile(ou_profile(P0, times), float(p["eps"]))
        j = int(np.argmax(r_eff))
        m = ou_profile(P0, times[j])
        rate = decay_rate(m, r_min=1, r_max=max(2, min(m.size - 1, int(r_eff[j]) + 5)))
        for i in idxs:
            r = int(tasks[i].params["r"])
            out[i] = {
                "m_ratio": float(m[r] / m[0]) if r < m.size else 0.0,
                "t_star": float(times[j]),
                "r_eff_max": int(r_eff[j]),
                "decay_rate": rate,
                "kappa": _kappa(P0),
            }
    return out  # type: ignore[return-value]


def _plot_decay(table, config):
    import matplotlib.pyplot as plt

    stats = _mean_std(table, ["b", "r"], "m_ratio")
    rates = table.groupby("b")["decay_rate"].mean()
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
    g = table.groupby("b")
    return {
        **{f"decay rate per unit r (b={b})": round(float(v), 3) for b, v in g["decay_rate"].mean().items()},
        **{f"t* (b={b})": round(float(v), 4) for b, v in g["t_star"].mean().items()},
        **{f"r_eff max (b={b})": round(float(v), 2) for b, v in g["r_eff_max"].mean().items()},
    }


DECAY = register(
    Experiment(
        name="locality-decay",
        description="Exponential decay of m_r(t) = mean_i |P_t[i,i+r]| at the time of largest r_eff (figure 1, top-left)",
        run=_run_decay,
        grid={"b": [1, 2, 4], "r": list(range(0, 41))},
        quick_grid={"b": [1, 2], "r": list(range(0, 21))},
        params={**_COMMON, "d": 200, "offdiag_scale": 1.0, "n_times": 60},
        quick_params={"d": 100, "n_times": 30},
        trials=5,
        quick_trials=2,
        chunk_by=("b",),
        plot=_plot_decay,
        summarize=_summarize_decay,
        validate=_validate_common,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-error
def _run_error(tasks: Sequence[Task]) -> list[dict]:
    out: list[dict | None] = [None] * len(tasks)
    for idxs in _groups(tasks, "r").values():
        p = tasks[idxs[0]].params
        P0 = _draw_precision(p, _group_rng(tasks, idxs, "r"))
        lam, Q = np.linalg.eigh(P0)
        e2t = np.exp(-2.0 * float(p["t"]))
        Sigma_t = (Q * (e2t / lam + 1.0 - e2t)) @ Q.T
        Sigma_t = 0.5 * (Sigma_t + Sigma_t.T)
        radii = np.array([int(tasks[i].params["r"]) for i in idxs])
        e = localization_error(Sigma_t, radii)
        q = truncation_error(Sigma_t, radii)
        d = P0.shape[0]
        for j, i in enumerate(idxs):
            out[i] = {
                "error_sum": float(e[j].sum()),
                "error_max": float(e[j].max()),
                "error_mean": float(e[j].sum() / d),
                "truncation_sum": float(q[j].sum()),
            }
    return out  # type: ignore[return-value]


def _plot_error(table, config):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, col, title in zip(axes, ["error_sum", "error_max", "error_mean"],
                              ["sum_i e_i(r)  (total, linear in d)", "max_i e_i(r)", "sum_i e_i(r) / d  (per component: independent of d)"]):
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
        sel = stats[(stats["d"] == d) & (stats["mean"] > 1e-14 * stats["mean"].max())].sort_values("r")
        if len(sel) >= 2:
            slope = np.polyfit(sel["r"], np.log10(sel["mean"]), 1)[0]
            out[f"decades per unit r of sum_i e_i (d={d})"] = round(float(-slope), 3)
    r1 = sorted(table["r"].unique())[min(1, table["r"].nunique() - 1)]
    for col, what in (("error_mean", "mean_i"), ("error_max", "max_i")):
        st = _mean_std(table, ["d", "r"], col)
        out[f"{what} e_i(r={r1}) per d"] = {int(d): round(float(v), 4) for d, v in st[st["r"] == r1].set_index("d")["mean"].items()}
    return out


ERROR = register(
    Experiment(
        name="locality-error",
        description="Exact localization error e_i(r) of the OU score: sum and max over i against r (SPEC B3)",
        run=_run_error,
        grid={"d": [50, 200, 800], "r": list(range(0, 13))},
        quick_grid={"d": [50, 100], "r": list(range(0, 9))},
        params={**_COMMON, "b": 2, "offdiag_scale": 1.0, "t": 0.5},
        trials=5,
        quick_trials=2,
        chunk_by=("d",),
        plot=_plot_error,
        summarize=_summarize_error,
        validate=_validate_common,
        doc=__doc__,
        family="locality",
    )
)


# --------------------------------------------------------------------------- locality-tradeoff
def _ar1_from(p: Mapping[str, Any]) -> np.ndarray:
    return ar1_covariance(int(p["d"]), gamma=float(p["gamma"]), dt=float(p["dt"]), sigma=float(p["sigma"]))


def _run_tradeoff(tasks: Sequence[Task]) -> list[dict]:
    out: list[dict | None] = [None] * len(tasks)
    by_setting: dict = defaultdict(list)
    for idx, task in enumerate(tasks):
        key = tuple(sorted((k, repr(v)) for k, v in task.params.items()))
        by_setting[key].append(idx)
    for idxs in by_setting.values():
        p = tasks[idxs[0]].params
        Sigma = _ar1_from(p)
        L = np.linalg.cholesky(Sigma)
        sch = DDPMSchedule(T=int(p["T"]))
        N, d = int(p["N"]), int(p["d"])
        rngs = [tasks[i].rng for i in idxs]
        X = np.stack([rng.standard_normal((N, d)) @ L.T for rng in rngs])
        Sh = empirical_covariance(X)  # (n, d, d): one data draw per trial
        ref = LinearScore(Sh, schedule=sch, method="none")
        sc = LinearScore(Sh, schedule=sch, method=str(p["method"]), r=int(p["r"]))
        err = relative_covariance_error(generated_covariance(sc), Sigma)
        err_ref = relative_covariance_error(generated_covariance(ref), Sigma)
        n_gen, n_samp = int(p["n_generated"]), int(p["sampled_trials"])
        for j, i in enumerate(idxs):
            row = {"rel_error": float(err[j]), "rel_error_nonlocal": float(err_ref[j]),
                   "rel_error_sampled": float("nan"), "rel_error_nonlocal_sampled": float("nan")}
            if n_gen > 0 and tasks[i].trial < n_samp:
                sub_sc = LinearScore(Sh[j], schedule=sch, method=str(p["method"]), r=int(p["r"]))
                sub_ref = LinearScore(Sh[j], schedule=sch, method="none")
                Xg = sample_backward(sub_sc, n_gen, random_state=rngs[j])
                Xr = sample_backward(sub_ref, n_gen, random_state=rngs[j])
                row["rel_error_sampled"] = float(relative_covariance_error(empirical_covariance(Xg), Sigma))
                row["rel_error_nonlocal_sampled"] = float(relative_covariance_error(empirical_covariance(Xr), Sigma))
            out[i] = row
    return out  # type: ignore[return-value]


def tradeoff_maps(config: Mapping[str, Any], radii: Sequence[int], N: int, method: str = "marginal"):
    """Entrywise error maps ``(Sigma_gen - Sigma) / ||Sigma||_2`` of one data draw for each radius (figure 2, bottom)."""
    d = int(_param(config, "d", TRADEOFF.params["d"]))
    p = {k: _param(config, k, v) for k, v in TRADEOFF.params.items()}
    Sigma = _ar1_from(p)
    rng = np.random.default_rng(int(_param(config, "seed", 0) or 0))
    X = rng.standard_normal((int(N), d)) @ np.linalg.cholesky(Sigma).T
    Sh = empirical_covariance(X)
    sch = DDPMSchedule(T=int(p["T"]))
    return [entrywise_error(generated_covariance(LinearScore(Sh, schedule=sch, method=method, r=int(r))), Sigma)
            for r in radii]


def _best_radius(table, N, method="marginal"):
    st = _mean_std(table[(table["N"] == N) & (table["method"] == method)], ["r"], "rel_error")
    return int(st.loc[st["mean"].idxmin(), "r"]) if len(st) else 0


def _plot_tradeoff(table, config):
    import matplotlib.pyplot as plt

    Ns = sorted(table["N"].unique())
    fig = plt.figure(figsize=(13, 7.5))
    ax = fig.add_subplot(2, 1, 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, N in zip(colors, Ns):
        for method, ls in (("marginal", "-"), ("truncate", "--")):
            st = _mean_std(table[(table["N"] == N) & (table["method"] == method)], ["r"], "rel_error").sort_values("r")
            if st.empty:
                continue
            ax.errorbar(st["r"], st["mean"], yerr=st["std"].fillna(0), ls=ls, color=c, marker=".", capsize=2,
                        label=f"N={N}, {method} (exact)")
            sm = _mean_std(table[(table["N"] == N) & (table["method"] == method)], ["r"], "rel_error_sampled").dropna()
            if len(sm):
                ax.plot(sm["r"], sm["mean"], ls="none", marker="x" if method == "marginal" else "+", color=c)
        ref = table.loc[table["N"] == N, "rel_error_nonlocal"].mean()
        ax.axhline(ref, color=c, ls=":", lw=1)
    ax.plot([], [], ls=":", color="gray", label="non-localized (4.4)")
    ax.plot([], [], ls="none", marker="x", color="gray", label="sampled")
    ax.set_xlabel("localization radius r")
    ax.set_ylabel("||Sigma_gen - Sigma||_2 / ||Sigma||_2")
    ax.set_title("Localized DDPM on the AR(1) target: localization vs statistical error (figure 2)")
    ax.legend(fontsize=7, ncol=3)
    N0 = Ns[len(Ns) // 2]
    radii_all = sorted(table["r"].unique())
    picks = [int(radii_all[min(1, len(radii_all) - 1)]), _best_radius(table, N0), int(radii_all[-1])]
    maps = tradeoff_maps(config, picks, N0)
    vmax = max(float(np.max(np.abs(m))) for m in maps)
    for j, (r, m) in enumerate(zip(picks, maps)):
        axm = fig.add_subplot(2, 3, 4 + j)
        im = axm.imshow(np.abs(m), vmin=0, vmax=vmax, cmap="viridis")
        axm.set_title(f"|entrywise error|, N={N0}, r={r}" + (" (best)" if j == 1 else ""), fontsize=9)
    fig.colorbar(im, ax=fig.axes[-3:], shrink=0.8)
    return fig


def _summarize_tradeoff(table, config) -> dict:
    out = {}
    for N in sorted(table["N"].unique()):
        for method in sorted(table["method"].unique()):
            st = _mean_std(table[(table["N"] == N) & (table["method"] == method)], ["r"], "rel_error").sort_values("r")
            if st.empty:
                continue
            k = int(st["mean"].idxmin())
            out[f"N={N} {method}: best r"] = int(st.loc[k, "r"])
            out[f"N={N} {method}: min error"] = round(float(st.loc[k, "mean"]), 4)
        out[f"N={N}: non-localized error"] = round(float(table.loc[table["N"] == N, "rel_error_nonlocal"].mean()), 4)
    return out


def _validate_tradeoff(config: Mapping[str, Any]) -> None:
    if "d" in config:
        check_int("d", config["d"], low=2)
    if "T" in config:
        check_int("T", config["T"], low=1)
    if "n_generated" in config:
        check_int("n_generated", config["n_generated"], low=0)
    if "sampled_trials" in config:
        check_int("sampled_trials", config["sampled_trials"], low=0)
    for key in ("gamma", "dt", "sigma"):
        if key in config:
            check_real(key, config[key], low=0.0, low_open=True)


TRADEOFF = register(
    Experiment(
        name="locality-tradeoff",
        description="Localized DDPM on the AR(1) target: covariance error against r, truncate vs marginal (figure 2)",
        run=_run_tradeoff,
        grid={"N": [32, 64, 128], "r": [0, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32], "method": ["truncate", "marginal"]},
        quick_grid={"N": [64], "r": [0, 2, 4, 8, 12, 16, 24, 32], "method": ["truncate", "marginal"]},
        params={"d": 64, "T": 1000, "gamma": 1.0, "dt": 0.1, "sigma": 1.0, "n_generated": 2000, "sampled_trials": 3},
        quick_params={"n_generated": 500, "sampled_trials": 1},
        trials=20,
        quick_trials=3,
        chunk_by=("N", "method"),
        plot=_plot_tradeoff,
        summarize=_summarize_tradeoff,
        validate=_validate_tradeoff,
        doc=__doc__,
        family="locality",
    )
)
