"""MoLRG beyond figure 4: the Jacobian's low rank and its growth in training (SPEC A9).

``molrg-jacobian-rank`` (the paper's Figure 3b)
    Numerical rank of a denoiser's Jacobian, as a ratio to ``n``, against
    ``SNR = 1/sigma`` (the paper's axis) along 18-step Heun trajectories of the EDM
    schedule, in the authors' setup (n = 48, K = 2, d = 7, N = 700, 15 trajectories).
    Two ranks of the same Jacobians: the *energy rank* of the paper's eq. (46) as the
    authors compute it (smallest r with ``sqrt(cumsum(s^2))[r] > 0.99 ||s||``;
    columns ``energy_rank_*``) and the relative-threshold rank (singular values
    above ``1e-3`` of the largest; ``threshold_rank_*``).  The table is tidy: one
    row per denoiser, trial and noise level (``level`` ``i`` of the Karras grid,
    ``sigma``, ``snr``, ``mid_band``), with the rank ratios averaged over the
    trajectories (``*_rank_ratio``) and their maxima (``*_rank_max``).  Denoisers: the closed-form posterior
    mean (Lemma 2: ``rank <= sum_k d_k``), the softmax DAE trained by SGD on the N
    samples (its learned bases in the same formula), an over-parameterized MLP
    trained on them, and the empirical optimal denoiser (the memorizing reference).
    The *middle SNR band* is ``mid_snr_low <= 1/sigma <=
    mid_snr_high`` (default 0.2 to 5: away from the low-SNR end, where every
    denoiser is close to the data mean, and the high-SNR end, where EDM's skip
    connection makes every denoiser close to the identity).

``molrg-jacobian-training`` (the paper's Figure 7)
    The MLP of ``molrg-jacobian-rank`` trained once for ``mlp_steps`` Adam steps,
    with ``checkpoints`` snapshots log-spaced by half decades up to the end (1000:
    32, 100, 316 and 1000 steps), as the paper reads one run at several iterations;
    the energy rank of each snapshot against SNR on the same trajectories as the
    closed form's, and the gradient norm of the loss against iterations.  The table
    is tidy, in two series (column ``series``): ``"rank"`` rows, one per trial,
    snapshot (``checkpoint``, its number of steps) and noise level (the MLP's and
    the closed form's rank ratios), and ``"grad_norm"`` rows, one per trial and
    stored iteration (``iteration``, ``grad_norm``: the mean over the 20 steps up
    to it).  The claim:
    as training proceeds, the MLP's rank in the middle SNR band approaches the
    closed form's (``mid_gap``, the mean absolute difference of the rank ratios in
    the band, decreases).

Every network of these experiments is trained inside one batched model per chunk
(:mod:`molrg.nn`) with its own random stream, seeded from its task's seed, so a
cell's numbers do not depend on the grid, the chunking or the worker count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..params import param
from ..registry import Experiment, Task, register
from ._karras import KarrasGridParameters, karras_grid

DENOISERS = ("closed_form", "softmax_dae", "mlp", "empirical")
RANKS = ("energy", "threshold")


def _stream(task: Task, purpose: int) -> np.random.SeedSequence:
    """An independent stream of ``task`` for one purpose (0: data, 1: network, 2: sampler start)."""
    return np.random.SeedSequence(task.seed, spawn_key=(purpose,))


def _ok(table):
    return table[table["error"].fillna("") == ""] if "error" in table else table


def _level_rows(traj, p, bound: int, **extra) -> list[dict]:
    """One row per noise level of a trajectory: sigma, SNR, middle band, rank ratios (mean) and maxima."""
    S = traj.sigma.shape[0]
    mid = _mid_band(traj.sigma, p)
    ranks = {r: getattr(traj, f"{r}_rank").reshape(S, -1) for r in RANKS}
    rows = []
    for i in range(S):
        row: dict[str, Any] = {"level": i, "sigma": float(traj.sigma[i]), "snr": float(1.0 / traj.sigma[i]),
                               "mid_band": bool(mid[i]), "rank_bound": bound}
        for r in RANKS:
            row[f"{r}_rank_ratio"] = float(ranks[r][i].mean() / traj.n)
            row[f"{r}_rank_max"] = int(ranks[r][i].max())
        row.update({k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in extra.items()})
        rows.append(row)
    return rows


def _mid_band(sigma, p) -> np.ndarray:
    snr = 1.0 / np.asarray(sigma, dtype=float)
    return (snr >= float(p["mid_snr_low"])) & (snr <= float(p["mid_snr_high"]))


# =========================================================================== Jacobian rank
@dataclass(frozen=True, kw_only=True)
class JacobianParameters(KarrasGridParameters):
    denoiser: str = param(choices=DENOISERS, help="the denoiser whose Jacobian is taken")
    n: int = param(48, ge=2, help="ambient dimension (authors: 48)")
    K: int = param(2, ge=1, help="number of subspaces (authors: 2)")
    d: int = param(7, ge=1, help="subspace dimension (authors: 7)")
    N: int = param(700, ge=1, help="training samples of the trained denoisers (authors: 700)")
    n_samples: int = param(15, ge=1, help="trajectories (authors: 15)")
    threshold: float = param(0.99, gt=0.0, lt=1.0, help="energy fraction of the energy rank (eq. 46)")
    rtol: float = param(1e-3, gt=0.0, lt=1.0, help="relative threshold of the threshold rank")
    mid_snr_low: float = param(0.2, gt=0.0, help="lower end of the middle SNR band (SNR = 1/sigma)")
    mid_snr_high: float = param(5.0, gt=0.0, help="upper end of the middle SNR band")
    dae_steps: int = param(2000, ge=1, help="SGD steps of the softmax DAE")
    mlp_width: int = param(256, ge=1, help="MLP hidden width")
    mlp_depth: int = param(3, ge=1, help="MLP hidden layers")
    mlp_steps: int = param(1000, ge=1, help="Adam steps of the MLP (cosine-decayed learning rate)")
    mlp_batch: int = param(128, ge=1, help="MLP mini-batch size")
    mlp_lr: float = param(1e-2, gt=0.0, help="MLP Adam learning rate (decayed to 5% by a cosine)")

    def validate(self):
        super().validate()
        from molrg.utils import check_int

        check_int("K * d", self.K * self.d, high=self.n)
        if self.mid_snr_high <= self.mid_snr_low:
            raise ValueError(f"mid_snr_high must be > mid_snr_low = {self.mid_snr_low}, got {self.mid_snr_high}")


JAC_QUICK: dict[str, Any] = {"n": 16, "K": 2, "d": 2, "N": 64, "n_samples": 6, "dae_steps": 300,
                             "mlp_width": 64, "mlp_steps": 400, "mlp_batch": 64}


def _softmax_dae_bases(sets, dims, p, seeds):
    """Learned bases of softmax DAEs trained by SGD on each training set (molrg.sgd.train_dae, SPEC A7).

    All sets (same N) train together as one batched problem, spectral start, one
    stream per problem.
    """
    from molrg.sgd import train_dae

    res = train_dae(np.stack(sets), dims, parameterization="softmax", init="spectral", steps=int(p["dae_steps"]),
                    random_state=list(seeds))
    return [tuple(np.asarray(U[b], dtype=np.float64) for U in res.bases) for b in range(len(sets))]


def _nearest_dims(model, X):
    """For each end point, ``d_k`` of the nearest component subspace."""
    res = np.stack([np.linalg.norm(X - (X @ U) @ U.T, axis=-1) for U in model.bases], -1)
    return np.asarray(model.dims)[res.argmin(-1)]


def _prepare(task: Task):
    """The task's model, training set and trajectory starts, from its own streams."""
    from molrg import MoLRG

    p = task.params
    rng = np.random.default_rng(_stream(task, 0))
    model = MoLRG.random(int(p["n"]), [int(p["d"])] * int(p["K"]), random_state=rng)
    X, _ = model.sample(int(p["N"]), random_state=rng)
    x_T = np.random.default_rng(_stream(task, 2)).standard_normal((int(p["n_samples"]), int(p["n"]))) * float(p["sigma_max"])
    return model, X, x_T


def _train_mlps(items, p, snapshot_steps=(), track_grad_norm=False, steps=None):
    """One batched ensemble over ``items`` (task, X), each network on its task's own stream."""
    from molrg.mlp import train_mlp_denoiser

    return train_mlp_denoiser(
        [X for _, X in items],
        width=int(p["mlp_width"]),
        depth=int(p["mlp_depth"]),
        steps=int(p["mlp_steps"] if steps is None else steps),
        batch_size=int(p["mlp_batch"]),
        lr=float(p["mlp_lr"]),
        track_grad_norm=track_grad_norm,
        snapshot_steps=snapshot_steps,
        random_state=[_stream(t, 1) for t, _ in items],
    )


def _trajectory(den, x_T, p, dtype):
    import torch

    from molrg.jacobian import rank_along_trajectory

    return rank_along_trajectory(den, torch.as_tensor(x_T, dtype=dtype), sigmas=karras_grid(p),
                                 threshold=float(p["threshold"]), rtol=float(p["rtol"]))


def run_jacobian(tasks: Sequence[Task]) -> list[dict]:
    """Ranks along trajectories for each task; the MLPs (and DAEs) of a chunk train as one batched model."""
    import torch

    from molrg.sampling import bases_denoiser, closed_form_denoiser, empirical_denoiser

    prepared = [(task, *_prepare(task)) for task in tasks]
    mlp = [(t, X) for t, _, X, _ in prepared if t.params["denoiser"] == "mlp"]
    mlp_den = {}
    if mlp:
        res = _train_mlps(mlp, mlp[0][0].params)
        mlp_den = {id(t): res.denoiser(e) for e, (t, _) in enumerate(mlp)}
    dae = [(t, m, X) for t, m, X, _ in prepared if t.params["denoiser"] == "softmax_dae"]
    dae_bases = {}
    if dae:
        learned = _softmax_dae_bases([X for *_, X in dae], dae[0][1].dims, dae[0][0].params, [_stream(t, 1) for t, *_ in dae])
        dae_bases = {id(t): B for (t, *_), B in zip(dae, learned)}

    rows = []
    for task, model, X, x_T in prepared:
        p, kind = task.params, task.params["denoiser"]
        if kind == "closed_form":
            den = closed_form_denoiser(model)
        elif kind == "softmax_dae":
            den = bases_denoiser(dae_bases[id(task)])
        elif kind == "mlp":
            den = mlp_den[id(task)]
        elif kind == "empirical":
            den = empirical_denoiser(X)
        else:
            raise ValueError(f"denoiser must be one of {list(DENOISERS)}, got {kind!r}")
        traj = _trajectory(den, x_T, p, torch.float32 if kind == "mlp" else torch.float64)
        near = _nearest_dims(model, traj.samples.astype(np.float64))
        # at the last (highest-SNR) level: the fraction of trajectories whose energy rank is d_k of the nearest subspace
        match = np.full(traj.sigma.shape[0], np.nan)
        match[-1] = float(np.mean(traj.energy_rank[-1] == near))
        rows.append(_level_rows(traj, p, int(sum(model.dims)), energy_rank_nearest_match=match))
    return rows


def plot_jacobian(table, config: Mapping[str, Any]):
    """Energy and threshold rank ratios against SNR = 1/sigma per denoiser, with the Lemma 2 bound (paper Fig. 3b)."""
    import matplotlib.pyplot as plt

    c = {**config.get("params", {}), **config}
    tidy = _ok(table)
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6), sharey=True)
    styles = {"closed_form": "o-", "softmax_dae": "s--", "mlp": "^-", "empirical": "x:"}
    for ax, r in zip(axes, RANKS):
        col = f"{r}_rank_ratio"
        if col not in tidy:
            continue
        for kind in [k for k in DENOISERS if k in set(tidy["denoiser"])]:
            g = tidy[tidy["denoiser"] == kind].groupby("level")
            snr, mean, sd = g["snr"].mean().to_numpy(), g[col].mean().to_numpy(), g[col].std().fillna(0).to_numpy()
            ax.plot(snr, mean, styles.get(kind, "o-"), ms=3, label=kind.replace("_", " "))
            ax.fill_between(snr, mean - sd, mean + sd, alpha=0.15)
        ax.axvspan(float(c.get("mid_snr_low", 0.2)), float(c.get("mid_snr_high", 5.0)), color="0.9", zorder=0,
                   label="middle SNR band")
        ax.set_xscale("log")
        ax.set_xlabel("SNR = 1 / sigma")
        ax.set_title({"energy": "energy rank (eq. 46, 0.99 of ||s||)", "threshold": "threshold rank (s > 1e-3 s_max)"}[r],
                     fontsize=9)
    ok = _ok(table)
    if len(ok) and "rank_bound" in ok:
        n = int(c.get("n", 48))
        for ax in axes:
            ax.axhline(float(ok["rank_bound"].max()) / n, color="k", lw=0.8, ls="--", label="Lemma 2 bound sum d_k / n")
    axes[0].set_ylabel("numerical rank / n")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Jacobian rank along Heun trajectories (n={c.get('n')}, K={c.get('K')}, d={c.get('d')}, N={c.get('N')})",
                 fontsize=9)
    fig.tight_layout()
    return fig


def summarize_jacobian(table, config: Mapping[str, Any]) -> dict:
    """Per denoiser: max ranks, mean and middle-band rank ratios, the bound, its violations."""
    ok = _ok(table)
    out: dict[str, Any] = {}
    for kind, rows in ok.groupby("denoiser"):
        for r in RANKS:
            out[f"{kind}_{r}_rank_max"] = int(rows[f"{r}_rank_max"].max())
        mid = rows[rows["mid_band"].astype(bool)]
        out[f"{kind}_energy_rank_ratio_mid_min"] = float(mid["energy_rank_ratio"].min()) if len(mid) else float("nan")
        out[f"{kind}_energy_rank_ratio_mid_mean"] = float(mid["energy_rank_ratio"].mean()) if len(mid) else float("nan")
        out[f"{kind}_final_nearest_match"] = float(rows["energy_rank_nearest_match"].mean())  # last level only
    if len(ok):
        out["rank_bound"] = int(ok["rank_bound"].max())
        out["n"] = int(config.get("params", config).get("n", 48)) if isinstance(config, Mapping) else 48
        out["rank_bound_ratio"] = out["rank_bound"] / out["n"]
    if "closed_form" in set(ok.get("denoiser", [])):
        cf = ok[ok["denoiser"] == "closed_form"]
        # levels (of any trial) where either rank exceeds the bound
        out["closed_form_bound_violations"] = int(((cf["energy_rank_max"] > cf["rank_bound"])
                                                   | (cf["threshold_rank_max"] > cf["rank_bound"])).sum())
    return out


def lemma2_mlp_claim(summary: Mapping[str, Any], factor: float = 2.5) -> bool:
    """The Lemma 2 row's condition: closed form within the bound, trained MLP low rank in the middle band.

    True when the closed form never exceeds ``sum_k d_k`` and the trained MLP's
    smallest energy-rank ratio in the middle SNR band is at most ``factor`` times
    the bound ratio ``sum_k d_k / n`` (an untrained MLP, near the identity of EDM's
    skip connection plus a random map, is near full rank there).
    """
    return bool(summary["closed_form_bound_violations"] == 0
                and summary["mlp_energy_rank_ratio_mid_min"] <= factor * summary["rank_bound_ratio"])


JACOBIAN = register(
    Experiment(
        name="molrg-jacobian-rank",
        description="Energy and threshold rank of the denoiser's Jacobian vs SNR = 1/sigma along Heun trajectories "
                    "(SPEC A9, Lemma 2, fig. 3b)",
        run=run_jacobian,
        parameters=JacobianParameters,
        grid={"denoiser": list(DENOISERS)},
        quick_grid={"denoiser": list(DENOISERS)},
        quick_params=JAC_QUICK,
        trials=3,
        quick_trials=2,
        chunk_by=None,
        plot=plot_jacobian,
        summarize=summarize_jacobian,
        doc=__doc__,
        family="molrg",
    )
)


# =========================================================================== Jacobian rank in training (figure 7)
@dataclass(frozen=True, kw_only=True)
class JacobianTrainingParameters(JacobianParameters):
    denoiser: str = param("mlp", choices=("mlp",), help="always the MLP")
    grad_points: int = param(24, ge=2, help="iterations at which the gradient norm is stored (log-spaced)")
    checkpoints: int = param(4, ge=2, le=8, help="snapshots of the run, log-spaced by half decades up to mlp_steps")


def checkpoint_steps(mlp_steps: int, checkpoints: int) -> list[int]:
    """The snapshots of a run of ``mlp_steps`` steps: ``round(mlp_steps 10^(-j/2))``, ``j < checkpoints``, increasing."""
    return sorted({max(1, round(mlp_steps * 10.0 ** (-j / 2))) for j in range(checkpoints)})


def run_jacobian_training(tasks: Sequence[Task]) -> list[list[dict]]:
    """Per task: one MLP run (a batched model per chunk) read at its snapshots; rank rows and gradient-norm rows."""
    import torch

    from molrg.sampling import closed_form_denoiser

    prepared = [(task, *_prepare(task)) for task in tasks]
    p0 = tasks[0].params
    snaps = checkpoint_steps(int(p0["mlp_steps"]), int(p0["checkpoints"]))
    res = _train_mlps([(t, X) for t, _, X, _ in prepared], p0, snapshot_steps=snaps, track_grad_norm=True)
    out = []
    for e, (task, model, X, x_T) in enumerate(prepared):
        p = task.params
        cf = _trajectory(closed_form_denoiser(model), x_T, p, torch.float64)
        S = cf.sigma.shape[0]
        cf_ratio = cf.energy_rank.reshape(S, -1).mean(1) / cf.n
        g = res.grad_norm_history[:, e]
        rows = []
        for step, snapshot in res.snapshots:
            traj = _trajectory(snapshot.member(e), x_T, p, torch.float32)
            loss = float(res.loss_history[max(0, step - 20): step, e].mean())  # mean over the 20 steps up to it
            rows += [{"series": "rank", "checkpoint": int(step), **r, "train_loss": loss}
                     for r in _level_rows(traj, p, int(sum(model.dims)), closed_form_energy_rank_ratio=cf_ratio)]
        its = np.unique(np.geomspace(1, len(g), int(p["grad_points"])).round().astype(int))
        rows += [{"series": "grad_norm", "iteration": int(it), "grad_norm": float(g[max(0, it - 20): it].mean())}
                 for it in its]  # mean over the 20 steps up to each stored iteration
        out.append(rows)
    return out


def plot_jacobian_training(table, config: Mapping[str, Any]):
    """(a) MLP energy rank vs SNR per training budget, with the closed form; (b) gradient norm vs iterations (paper Fig. 7)."""
    import matplotlib.pyplot as plt

    c = {**config.get("params", {}), **config}
    ok = _ok(table)
    tidy = ok[ok["series"] == "rank"] if "series" in ok else ok.iloc[:0]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    cmap = plt.get_cmap("viridis")
    its = sorted(set(tidy["checkpoint"])) if len(tidy) else []
    for j, it in enumerate(its):
        g = tidy[tidy["checkpoint"] == it].groupby("level")
        ax.plot(g["snr"].mean(), g["energy_rank_ratio"].mean(), "^-", ms=3, color=cmap(j / max(1, len(its) - 1)),
                label=f"MLP, {int(it)} iterations")
    if len(tidy):
        g = tidy.groupby("level")
        ax.plot(g["snr"].mean(), g["closed_form_energy_rank_ratio"].mean(), "ko--", ms=3, label="closed form (Lemma 2)")
    ax.axvspan(float(c.get("mid_snr_low", 0.2)), float(c.get("mid_snr_high", 5.0)), color="0.9", zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("SNR = 1 / sigma")
    ax.set_ylabel("energy rank / n")
    ax.set_title("(a) Jacobian energy rank as training proceeds", fontsize=9)
    ax.legend(fontsize=7)
    if len(ok):
        for trial, r in ok[ok["series"] == "grad_norm"].groupby("trial"):
            bx.plot(r["iteration"], r["grad_norm"], "-", lw=1, alpha=0.8, label=f"trial {trial}")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("training iterations")
    bx.set_ylabel("||grad of the loss||")
    bx.set_title("(b) gradient norm of the loss", fontsize=9)
    fig.tight_layout()
    return fig


def summarize_jacobian_training(table, config: Mapping[str, Any]) -> dict:
    """Per snapshot: mean middle-band gap to the closed form, MLP middle-band rank ratio, loss; gradient norms.

    ``mid_gap``: the mean over the middle-band levels (and trials) of ``|MLP ratio - closed-form ratio|``.
    """
    ok = _ok(table)
    out: dict[str, Any] = {}
    rank = ok[(ok["series"] == "rank") & ok["mid_band"].astype(bool)] if "series" in ok else ok.iloc[:0]
    if not len(rank):
        return out
    rank = rank.assign(gap=(rank["energy_rank_ratio"] - rank["closed_form_energy_rank_ratio"]).abs())
    g = rank.groupby("checkpoint")
    gaps = g["gap"].mean()
    for it, v in gaps.items():
        out[f"mid_gap_{int(it)}"] = float(v)
        out[f"mlp_mid_rank_ratio_{int(it)}"] = float(g["energy_rank_ratio"].mean()[it])
        out[f"train_loss_{int(it)}"] = float(g["train_loss"].mean()[it])
    grad = ok[ok["series"] == "grad_norm"].groupby("iteration")["grad_norm"].mean()
    if len(grad):
        out["grad_norm_first"], out["grad_norm_last"] = float(grad.iloc[0]), float(grad.iloc[-1])
    out["closed_form_mid_rank_ratio"] = float(rank["closed_form_energy_rank_ratio"].mean())
    out["mid_gap_first"], out["mid_gap_last"] = float(gaps.iloc[0]), float(gaps.iloc[-1])
    out["mid_gap_decreasing"] = bool(np.all(np.diff(gaps.to_numpy()) < 0))
    return out


def training_claim(summary: Mapping[str, Any], factor: float = 0.7) -> bool:
    """The figure 7 row's condition: the middle-band gap to the closed form falls with every budget, by ``factor`` overall."""
    return bool(summary["mid_gap_decreasing"] and summary["mid_gap_last"] <= factor * summary["mid_gap_first"])


JACOBIAN_TRAINING = register(
    Experiment(
        name="molrg-jacobian-training",
        description="Energy rank of a trained MLP's Jacobian vs SNR at several training budgets, and its gradient norm "
                    "(SPEC A9, fig. 7)",
        run=run_jacobian_training,
        parameters=JacobianTrainingParameters,
        grid={"mlp_steps": [1000]},
        quick_grid={"mlp_steps": [400]},
        quick_params={k: v for k, v in JAC_QUICK.items() if k not in ("dae_steps", "mlp_steps")},
        trials=2,
        quick_trials=1,
        chunk_by=("mlp_steps",),
        plot=plot_jacobian_training,
        summarize=summarize_jacobian_training,
        doc=__doc__,
        family="molrg",
    )
)
