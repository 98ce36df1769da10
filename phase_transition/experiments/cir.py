"""Experiment ``cir-radius``: CIR series from a localized neural score, against the radius r.

SPEC B5, paper section 4.2 and figure 3.  For every radius ``r``, training-set
size ``n_train`` and trial, a task simulates ``n_train`` exact (or
Euler-Maruyama) stationary CIR series of length ``length``, trains one shared
MLP on the ``2r+1`` windows by denoising score matching, generates
``n_generate`` series with the DDPM ancestral sampler and compares generated
and training series with the exact references: the Wasserstein-1 distance of
the marginal to the Gamma law and the autocorrelation against ``exp(-a h dt)``.

All networks of a chunk train as ONE batched model
(:func:`locality.cir_score.train_local_scores`), ``network_batch`` networks at a
time, each from its own seed, so a cell's numbers do not depend on the grid,
the chunking or the worker count.

Expected (the paper's trade-off): ``r = 0`` gives uncorrelated series (lag-1
near 0) with a good marginal; ``r >= 1`` recovers ``exp(-a dt) = 0.61``; a large
radius sees long windows of which the training set holds few independent
examples, so with few training series the spread over trials grows.

Metrics (one row per r, n_train and trial): ``w1``, ``w1_train``, ``w1_exact``
(W1 of ``n_generate`` fresh exact series: the sampling floor of ``w1``),
``acf_lag1``, ``acf_lag1_train``, ``acf_error`` and ``acf_error_train``
(largest ``|rho(h) - exp(-a h dt)|``, ``h = 1..max_lag``), ``final_loss`` (mean
DSM loss over the last 10% of the steps), and the curves for the figure as plain
numeric columns: ``acf_1..acf_{max_lag}``, ``acf_train_1..``,
``hist_0..hist_{hist_bins-1}`` and ``hist_train_*`` (densities on
``hist_bins`` equal bins of ``[0, hist_max]``).

Configuration: an MLP of width 32 and 2 hidden layers, Adam at rate 3e-3
annealed to 0 by a cosine, 1200 steps; each step draws 128 series per network
and scores the windows centred at 4 random positions of each (``positions``:
512 windows per step, an unbiased estimate of the all-positions DSM loss);
250 generated series with a strided DDPM sampler of 100 steps (200 steps
measured the same W1 and autocorrelation; the shared probability-flow Heun
sampler of :mod:`molrg.sampling`, 35-59 network calls, measured twice the W1);
all 18 networks of a chunk (6 radii x 3 trials) train as one batched model.
The quick grid uses width 64, 400 steps, 300 training series and two radii.
Setup differing from SPEC B5: a smaller network and budget (SPEC: 128-128, 3000
steps of 128 series at every position, 1000 sampler steps), three trials per
cell, two training-set sizes.

Budget (issue 16: at most 80 s of compute for the full grid, 261.6 s before).
Before: every position of 64 series per step (4096 windows), autograd, batches
of 6 networks, 500 generated series.  Removed as waste: autograd's bookkeeping
and its slow 2-column product in the output layer's backward (the hand-written
backward of :meth:`locality.cir_score.LocalScoreMLP.dsm_backward`, 1.2x per
step), the concatenation and temporaries of the first layer, and batches of 6
(one batched model per chunk).  Smaller settings: 512 scored windows per step
instead of 4096 (the 64 windows of a series share its diffusion time and data,
so 4 windows of 128 series carry most of what 64 of 64 do) and 250 generated
series instead of 500 (W1 of 250 exact series 0.0067, against 0.0057 for 500,
both below the networks' 0.013-0.027).  ``benchmarks/bench_cir.py`` measured one
chunk at 4.2x less CPU than before in the same run.  Measured with the full
grid (3 trials, seed 0; mean +- spread over trials), the autocorrelation is
closer to the training data's than before: lag-1 minus the training data's
for r = 2, 4, 8, 16 is -0.023, -0.018, -0.017, -0.008 at N = 100 and -0.027,
-0.021, -0.022, -0.012 at N = 1000 (before: -0.012 to -0.038), W1 0.017-0.027
(before 0.017-0.025), r = 0 lag-1 -0.003.  Tried and not kept: 50 sampler
steps (lag-1 0.02 lower at every r), 800 Adam steps (W1 up to 0.036).

Issue 16, second round (target 600 s for the whole report; this experiment had
71.1 s of compute): the same setup, computed with less waste (module docstring
of :mod:`locality.cir_score`, ``benchmarks/bench_cir.py``).  Training: the
activations and backward temporaries in buffers reused between steps (the
fresh megabyte temporaries were returned to the kernel and faulted back in
every step: 370 -> 92 minor page faults per step), the output layer as a
product-and-sum instead of a two-column product, mini-batch rows by
``index_select``, windows gathered with a cached reflected-index table, and Adam
on one flat buffer (:class:`locality.cir_score.FlatAdam`; torch's Adam also
loaded its compiler stack, 1.5 s per fresh process): the same losses up to
rounding.  Sampling: all 250 series of a network in one chain updated in
place, the network evaluated 16 series at a time in buffers allocated once
(1.8-2x).  Metrics: the exact W1 with the Gamma quantile on the grid ``i/n``
only (10x; 25x for a repeated size).  Measured on the busy 2-core machine, one
worker, both chunks of the full grid in the same session: 45.5 and 37.9 s of
CPU before, 24.2 and 21.3 s after (1.8x; wall 100 and 76 s before, 47 and 43 s
after).  The sampler's draws changed (one start and one noise draw per network
and step instead of per batch of 100 series): the table moves within its
Monte-Carlo spread (final losses equal to 4 digits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..params import Parameters, param
from ..registry import Experiment, Task, register

__all__ = ["EXPERIMENT", "CIRParameters", "run", "plot", "summarize"]


@dataclass(frozen=True, kw_only=True)
class CIRParameters(Parameters):
    """Parameters of ``cir-radius`` (SPEC B5)."""

    r: int = param(ge=0, help="localization radius of the score network (grid)")
    n_train: int = param(ge=2, help="training series per network (grid)")
    a: float = param(0.5, gt=0.0, help="CIR mean-reversion rate")
    b: float = param(1.0, gt=0.0, help="CIR long-run mean")
    sigma: float = param(0.5, gt=0.0, help="CIR volatility")
    dt: float = param(1.0, gt=0.0, help="time between recorded values (D of SPEC B5)")
    length: int = param(64, ge=2, help="values per series")
    simulation: str = param("exact", choices=("exact", "euler"), help="training-data simulator")
    em_step: float = param(0.01, gt=0.0, help="Euler-Maruyama inner step (simulation=euler)")
    steps: int = param(1200, ge=1, help="Adam steps of the training")
    batch_size: int = param(128, ge=1, help="series per network and Adam step")
    positions: int | None = param(4, ge=1, help="windows scored per series and step (None: all positions)")
    width: int = param(32, ge=1, help="hidden width of the MLP")
    depth: int = param(2, ge=1, help="hidden layers of the MLP")
    lr: float = param(3e-3, gt=0.0, help="Adam learning rate")
    lr_schedule: str = param("cosine", choices=("constant", "cosine"), help="learning-rate schedule")
    n_generate: int = param(250, ge=2, help="generated series per network")
    sampler_steps: int = param(100, ge=1, le=1000, help="DDPM sampler steps (strided subset of the T = 1000)")
    network_batch: int = param(18, ge=1, help="networks trained as one batched model (changes no number)")
    max_lag: int = param(10, ge=1, help="largest autocorrelation lag compared")
    hist_bins: int = param(30, ge=1, help="histogram bins of the figure")
    hist_max: float = param(3.0, gt=0.0, help="histogram range [0, hist_max]")
    device: str = param("cpu", help="torch device")

    def validate(self):
        from locality.cir import check_cir_params
        from molrg._validation import check_int, check_real

        check_cir_params(self.a, self.b, self.sigma)
        if self.simulation == "euler":
            check_real("em_step", self.em_step, low=0.0, high=self.dt, low_open=True)
            ratio = self.dt / self.em_step
            if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
                raise ValueError(f"dt / em_step must be a whole number (the sub-sampling), got dt={self.dt}, "
                                 f"em_step={self.em_step}")
        check_int("max_lag", self.max_lag, low=1, high=self.length - 1)
        if self.length < 2 * self.r + 1:
            raise ValueError(f"length must be >= 2 r + 1 = {2 * self.r + 1} for r = {self.r}, got {self.length}")


def _curves(X: np.ndarray, p) -> tuple[np.ndarray, np.ndarray]:
    from locality.cir import autocorrelation, marginal_histogram

    rho = autocorrelation(X, p.max_lag)
    _, dens = marginal_histogram(X, bins=p.hist_bins, range=(0.0, p.hist_max))
    return rho, dens


def _simulate(p, n: int, rng) -> np.ndarray:
    from locality.cir import simulate_cir

    return simulate_cir(n, p.length, a=p.a, b=p.b, sigma=p.sigma, dt=p.dt, method=p.simulation,
                        em_step=p.em_step, random_state=rng)


def _run_batch(tasks: Sequence[Task]) -> list[dict]:
    """Train the tasks' networks as one batched model, sample from all, measure each."""
    from locality.cir import autocorrelation_error, cir_wasserstein
    from locality.cir_score import train_local_scores

    p = tasks[0].params
    streams = [task.rng.spawn(4) for task in tasks]  # data, fit, sample, exact reference: per task
    data = [_simulate(task.params, task.params.n_train, s[0]) for task, s in zip(tasks, streams)]
    fit = train_local_scores(
        data, [task.params.r for task in tasks], width=p.width, depth=p.depth, steps=p.steps,
        batch_size=p.batch_size, positions=p.positions, lr=p.lr, lr_schedule=p.lr_schedule, device=p.device,
        random_state=[s[1] for s in streams],
    )
    gen = fit.sample(p.n_generate, steps=p.sampler_steps, random_state=[s[2] for s in streams])
    rows = []
    tail = max(1, p.steps // 10)
    for b, (task, X, s) in enumerate(zip(tasks, data, streams)):
        q, Y = task.params, gen[b]
        ref = dict(a=q.a, b=q.b, sigma=q.sigma)
        rho, dens = _curves(Y, q)
        rho_tr, dens_tr = _curves(X, q)
        row = {
            "w1": cir_wasserstein(Y, **ref),
            "w1_train": cir_wasserstein(X, **ref),
            "w1_exact": cir_wasserstein(_simulate(q, q.n_generate, s[3]), **ref),
            "acf_lag1": float(rho[1]),
            "acf_lag1_train": float(rho_tr[1]),
            "acf_error": autocorrelation_error(Y, q.a, q.dt, q.max_lag),
            "acf_error_train": autocorrelation_error(X, q.a, q.dt, q.max_lag),
            "final_loss": float(fit.loss_history[b, -tail:].mean()),
        }
        row.update({f"acf_{h}": float(rho[h]) for h in range(1, len(rho))})
        row.update({f"acf_train_{h}": float(rho_tr[h]) for h in range(1, len(rho_tr))})
        row.update({f"hist_{j}": float(v) for j, v in enumerate(dens)})
        row.update({f"hist_train_{j}": float(v) for j, v in enumerate(dens_tr)})
        rows.append(row)
    return rows


def run(tasks: Sequence[Task]) -> list[dict]:
    """All tasks of a chunk, ``network_batch`` networks per batched training (each seeded by its task).

    Only the grid keys (``r``, ``n_train``) differ between the tasks of a sweep, and
    :func:`~locality.cir_score.train_local_scores` takes one radius and training set per network.
    """
    import torch

    nb = tasks[0].params.network_batch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: one thread each, as many workers as cores
    try:
        return [row for a in range(0, len(tasks), nb) for row in _run_batch(tasks[a : a + nb])]
    finally:
        torch.set_num_threads(threads)


def _ok(table):
    return table[table["error"].fillna("") == ""] if "error" in table else table


def _mean_curve(rows, prefix: str, n: int) -> np.ndarray:
    cols = [f"{prefix}{j}" for j in range(n)]
    return rows[cols].to_numpy(dtype=float).mean(axis=0)


def _p(config: Mapping[str, Any]) -> Mapping[str, Any]:
    params = config.get("params", config)
    return {**{k: s.default for k, s in CIRParameters.specs().items() if s.has_default}, **params}


def plot(table, config: Mapping[str, Any]):
    """Paper figure 3: per r, the marginal histogram (generated, training, Gamma density) and the
    autocorrelation (generated, training, ``exp(-a h dt)``), for the largest training set, trials
    averaged; right column: lag-1 autocorrelation and W1 against r (mean and spread over trials) for
    every training-set size, beside the training data's own values.
    """
    import matplotlib.pyplot as plt

    from locality.cir import cir_autocorrelation, cir_stationary

    c = _p(config)
    ok = _ok(table)
    sizes = sorted(ok["n_train"].unique())
    big = ok[ok["n_train"] == sizes[-1]] if sizes else ok
    radii = sorted(big["r"].unique())
    ncol = max(1, len(radii)) + 1
    fig, axes = plt.subplots(2, ncol, figsize=(2.4 * ncol, 5.2), squeeze=False)
    bins, hmax, L = int(c["hist_bins"]), float(c["hist_max"]), int(c["max_lag"])
    edges = np.linspace(0.0, hmax, bins + 1)
    xs = np.linspace(0.0, hmax, 300)
    pdf = cir_stationary(c["a"], c["b"], c["sigma"]).pdf(xs)
    lags = np.arange(0, L + 1)
    ref = cir_autocorrelation(lags, c["a"], c["dt"])
    for j, r in enumerate(radii):
        rows = big[big["r"] == r]
        ax = axes[0, j]
        ax.stairs(_mean_curve(rows, "hist_", bins), edges, fill=True, alpha=0.5, label="generated")
        ax.stairs(_mean_curve(rows, "hist_train_", bins), edges, color="k", lw=0.8, label="training")
        ax.plot(xs, pdf, "r-", lw=1.2, label="Gamma (exact)")
        ax.set_title(f"r = {r}   W1 = {rows['w1'].mean():.3f}", fontsize=9)
        ax.set_xlabel("x")
        ax = axes[1, j]
        gen = np.concatenate([[1.0], rows[[f"acf_{h}" for h in range(1, L + 1)]].to_numpy(float).mean(0)])
        tr = np.concatenate([[1.0], rows[[f"acf_train_{h}" for h in range(1, L + 1)]].to_numpy(float).mean(0)])
        ax.plot(lags, gen, "o-", ms=3, label="generated")
        ax.plot(lags, tr, "k--", lw=0.8, label="training")
        ax.plot(lags, ref, "r-", lw=1.2, label="exp(-a h dt)")
        ax.axhline(0.0, color="0.7", lw=0.5)
        ax.set_xlabel("lag h")
    if radii:
        axes[0, 0].set_ylabel("density")
        axes[1, 0].set_ylabel("autocorrelation")
        axes[0, 0].legend(fontsize=7)
        axes[1, 0].legend(fontsize=7)
    for i, (metric, label, exact) in enumerate((("acf_lag1", "lag-1 autocorrelation", np.exp(-c["a"] * c["dt"])),
                                                ("w1", "W1 to the Gamma law", None))):
        ax = axes[i, -1]
        for n in sizes:
            g = ok[ok["n_train"] == n].groupby("r")
            m, s = g[metric].mean(), g[metric].std().fillna(0.0)
            line = ax.errorbar(m.index, m.values, yerr=s.values, marker="o", ms=3, capsize=2, label=f"{n} series")
            ax.axhline(g[f"{metric}_train"].mean().mean(), color=line[0].get_color(), ls=":", lw=0.8)
        if exact is not None:
            ax.axhline(exact, color="r", lw=1.0, label="exp(-a dt)")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("radius r")
        ax.set_title(label + " (dotted: training)", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(
        f"CIR (a={c['a']}, b={c['b']}, sigma={c['sigma']}): localized score of radius r "
        f"({sizes[-1] if sizes else '?'} training series in the panels, {c['n_generate']} generated)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def summarize(table, config: Mapping[str, Any]) -> dict:
    """Headline numbers per training-set size and radius: lag-1 autocorrelation and W1 (mean and
    spread over trials), against the training data's own values and the exact references.
    """
    c = _p(config)
    ok = _ok(table)
    out: dict[str, Any] = {"acf_lag1_exact": float(np.exp(-c["a"] * c["dt"]))}
    if not len(ok):
        return out
    out["w1_exact"] = float(ok["w1_exact"].mean())
    for n, rows in ok.groupby("n_train"):
        g = rows.groupby("r")
        out[f"N={n}: w1_train"] = float(rows["w1_train"].mean())
        out[f"N={n}: acf_lag1_train"] = float(rows["acf_lag1_train"].mean())
        out[f"N={n}: acf_error_train"] = float(rows["acf_error_train"].mean())
        for r, vals in g:
            key = f"N={n}, r={r}"
            out[f"{key}: acf_lag1"] = float(vals["acf_lag1"].mean())
            out[f"{key}: acf_lag1_std"] = float(vals["acf_lag1"].std()) if len(vals) > 1 else 0.0
            out[f"{key}: acf_error"] = float(vals["acf_error"].mean())
            out[f"{key}: w1"] = float(vals["w1"].mean())
            out[f"{key}: w1_std"] = float(vals["w1"].std()) if len(vals) > 1 else 0.0
        out[f"N={n}: r_best_acf_error"] = int(g["acf_error"].mean().idxmin())
    return out


EXPERIMENT = register(
    Experiment(
        name="cir-radius",
        description="CIR series from a localized neural score: histogram and autocorrelation vs radius r (SPEC B5, fig. 3)",
        run=run,
        grid={"r": [0, 1, 2, 4, 8, 16], "n_train": [100, 1000]},
        quick_grid={"r": [0, 2], "n_train": [300]},
        parameters=CIRParameters,
        quick_params={"steps": 400, "width": 64, "n_generate": 200},
        trials=3,
        quick_trials=1,
        chunk_by=("n_train",),
        plot=plot,
        summarize=summarize,
        doc=__doc__,
        family="locality",
    )
)
