"""MoLRG, memorization to generalization (SPEC A9, the paper's Figure 5a).

``molrg-generalization`` (the paper's Figure 5a)
    GL score (SPEC A9) of an MLP denoiser trained on N samples, against ``N/d`` for
    several ``d``: the curves collapse onto one curve in ``N/d``.  Each row also holds
    the two reference lines computed on the same training set: the closed-form MoLRG
    denoiser (``gl_closed_form``, about 1) and the empirical optimal denoiser
    (``gl_empirical``, about 0).  ``off_manifold`` (median distance of the MLP's
    samples to the union of the subspaces, relative to their norm) tells a
    generalizing model (GL about 1, small ``off_manifold``) from an undertrained one
    (GL above 1: samples off the subspaces).

Setup (full scale): n = 16, K = 2, d = 2, 4, 8, N = 2 .. 256, 2 trials; MLP of
width 128 and 3 hidden layers (EDM preconditioning, :mod:`molrg.mlp`), 750 Adam
steps of batch 256 at learning rate 2e-2, cosine-decayed to 1e-3; 18 Heun steps.
The learning rate is what makes the MLP precise enough: at the former 2e-3 (1500
steps of batch 128) the samples at large ``N/d`` lay off the subspaces
(``off_manifold`` 0.29 at d = 2, N = 256, GL 2.18); measured on the hardest cells,
the precision is limited by optimization progress, not by gradient noise (a
lower rate, a decay to 1e-2 of the start or an EMA of the weights did not help;
a larger rate and batch did), so the faster schedule costs no more than the old one.  Measured at full scale (seed 0):
GL at the largest N/d 1.11 (d = 2), 0.90 (d = 4), 0.95 (d = 8), every mean GL in
[0.02, 1.11], GL first >= 0.5 at N/d = 32, 16, 16 (one grid step apart); 131 s of
CPU with one thread (135 s before).

Every network of a chunk is trained inside one batched model (:mod:`molrg.nn`) with
its own random stream, seeded from its task's seed, so a cell's numbers do not
depend on the grid, the chunking or the worker count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..params import param
from ..registry import Experiment, Task, register
from ._karras import KarrasGridParameters, karras_grid
from .molrg_extensions import _ok, _stream


@dataclass(frozen=True, kw_only=True)
class GeneralizationParameters(KarrasGridParameters):
    d: int = param(ge=1, help="subspace dimension")
    N: int = param(ge=1, help="training samples")
    n: int = param(16, ge=2, help="ambient dimension")
    K: int = param(2, ge=1, help="number of subspaces")
    noise_std: float = param(0.0, ge=0.0, help="noise standard deviation (SPEC A1)")
    M: int = param(400, ge=1, help="generated samples per network")
    M_test: int = param(400, ge=1, help="fresh true samples of the GL denominator")
    width: int = param(128, ge=1, help="MLP hidden width")
    depth: int = param(3, ge=1, help="MLP hidden layers")
    steps: int = param(750, ge=1, help="Adam steps")
    batch_size: int = param(256, ge=1, help="mini-batch size")
    lr: float = param(2e-2, gt=0.0, help="Adam learning rate (cosine-decayed to 5% of it)")
    references: bool = param(True, help="also score the closed-form and empirical denoisers")

    def validate(self):
        super().validate()
        from molrg.utils import check_int

        check_int("K * d", self.K * self.d, high=self.n)


# The quick configuration keeps the former slower schedule (learning rate 2e-3): at 2e-2 the MLP
# memorizes the quick grid's N <= 32 (GL 0.33 at d = 2, N = 32), so GL would not reach 0.5 on it.
GEN_QUICK: dict[str, Any] = {"n": 8, "M": 300, "M_test": 300, "width": 128, "steps": 1000, "batch_size": 128,
                             "lr": 2e-3}


def _relative_residual(model, X):
    """Distance of each row to the union of the model's subspaces, relative to its norm."""
    X = np.asarray(X, dtype=np.float64)
    res = np.stack([np.linalg.norm(X - (X @ U) @ U.T, axis=-1) for U in model.bases], -1).min(-1)
    return res / np.maximum(np.linalg.norm(X, axis=-1), 1e-300)


def run_generalization(tasks: Sequence[Task]) -> list[dict]:
    """GL of the MLP (one batched model over the chunk's tasks, a stream per network) and of the two references."""
    import torch

    from molrg import MoLRG
    from molrg.generalization import generalization_score
    from molrg.mlp import train_mlp_denoiser
    from molrg.sampling import closed_form_denoiser, empirical_denoiser, sample, sample_heun

    if not tasks:
        return []
    prepared = []
    for task in tasks:
        p = task.params
        rng = np.random.default_rng(_stream(task, 0))
        model = MoLRG.random(int(p["n"]), [int(p["d"])] * int(p["K"]), noise_std=float(p["noise_std"]), random_state=rng)
        X, _ = model.sample(int(p["N"]), random_state=rng)
        test, _ = model.sample(int(p["M_test"]), random_state=rng)
        prepared.append((task, rng, model, X, test))
    p0 = tasks[0].params
    for task in tasks[1:]:
        if any(task.params[k] != p0[k] for k in ("n", "width", "depth", "steps", "batch_size", "lr", "M")):
            raise ValueError("the tasks of one chunk must share n, width, depth, steps, batch_size, lr and M")
    sig = karras_grid(p0)
    res = train_mlp_denoiser(
        [X for _, _, _, X, _ in prepared],
        width=int(p0["width"]),
        depth=int(p0["depth"]),
        steps=int(p0["steps"]),
        batch_size=int(p0["batch_size"]),
        lr=float(p0["lr"]),
        random_state=[_stream(t, 1) for t in tasks],
    )
    M, n = int(p0["M"]), int(p0["n"])
    # each network's sampler start from its own task's stream
    x_T = np.stack([np.random.default_rng(_stream(t, 2)).standard_normal((M, n)) for t in tasks]) * float(sig[0])
    with torch.no_grad():
        generated = sample_heun(res.model, torch.as_tensor(x_T, dtype=torch.float32), sig).numpy()
    sampler = dict(sigmas=sig, dtype=np.float64)
    rows = []
    for e, (task, rng, model, X, test) in enumerate(prepared):
        p = task.params
        row = {
            "N_over_d": float(p["N"]) / float(p["d"]),
            "gl_mlp": generalization_score(generated[e], X, test),
            "off_manifold": float(np.median(_relative_residual(model, generated[e]))),
            "train_loss": float(res.loss_history[-max(1, res.loss_history.shape[0] // 20):, e].mean()),
            "mlp_params": int(res.model.n_parameters()),
        }
        if p["references"]:
            cf = sample(closed_form_denoiser(model), (M, n), random_state=rng, **sampler)
            em = sample(empirical_denoiser(X), (M, n), random_state=rng, **sampler)
            row["gl_closed_form"] = generalization_score(cf, X, test)
            row["gl_empirical"] = generalization_score(em, X, test)
        rows.append(row)
    return rows


def plot_generalization(table, config: Mapping[str, Any]):
    """GL against N/d, one line per d, with the closed-form and empirical references (paper Fig. 5a)."""
    import matplotlib.pyplot as plt

    ok = _ok(table)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for d, rows in ok.groupby("d"):
        g = rows.groupby("N_over_d")["gl_mlp"]
        x, m, s = g.mean().index.to_numpy(float), g.mean().to_numpy(), g.std().fillna(0).to_numpy()
        ax.errorbar(x, m, yerr=s, marker="o", ms=3, capsize=2, label=f"MLP, d = {d}")
    if "gl_closed_form" in ok:
        ax.axhline(ok["gl_closed_form"].mean(), color="k", ls="--", lw=0.9, label="closed-form posterior mean")
    if "gl_empirical" in ok:
        ax.axhline(ok["gl_empirical"].mean(), color="0.4", ls=":", lw=0.9, label="empirical optimal denoiser")
    ax.axhline(0.5, color="0.7", lw=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N / d")
    ax.set_ylabel("GL score")
    c = {**config.get("params", {}), **config}
    ax.set_title(f"Memorization to generalization (n={c.get('n')}, K={c.get('K')}, MLP width {c.get('width')})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def collapse_check(table) -> dict:
    """The collapse of GL onto one curve in ``N/d`` (paper Fig. 5a), as numbers.

    Per ``d``: the first ``N/d`` of the grid where the mean GL reaches 0.5, its index in
    the grid of ``N/d`` ratios (``log2``, the grid being powers of 2), and the range of
    GL.  ``half_spread_steps`` is the spread of those indices across ``d`` (the claim:
    at most one grid step); ``gl_min``/``gl_max`` the extreme mean GL (claim: in
    ``[0, 1.3]``).
    """
    ok = _ok(table)
    out: dict[str, Any] = {}
    steps = []
    lo, hi = np.inf, -np.inf
    for d, rows in ok.groupby("d"):
        g = rows.groupby("N_over_d")["gl_mlp"].mean().sort_index()
        lo, hi = min(lo, float(g.min())), max(hi, float(g.max()))
        above = g[g >= 0.5]
        r = float(above.index[0]) if len(above) else float("nan")
        out[f"N_over_d_half_d{d}"] = r
        if len(above):
            steps.append(np.log2(r))
    out["half_spread_steps"] = float(np.ptp(steps)) if len(steps) == ok["d"].nunique() and steps else float("inf")
    out["gl_min"], out["gl_max"] = float(lo), float(hi)
    out["collapse"] = bool(out["half_spread_steps"] <= 1.0 and lo >= 0.0 and hi <= 1.3)
    return out


def summarize_generalization(table, config: Mapping[str, Any]) -> dict:
    """Per d: mean GL at each N and its Spearman correlation with N; the collapse check; the references."""
    from scipy.stats import spearmanr

    ok = _ok(table)
    out: dict[str, Any] = {}
    for d, rows in ok.groupby("d"):
        g = rows.groupby("N")["gl_mlp"].mean()
        for N, v in g.items():
            out[f"gl_d{d}_N{N}"] = float(v)
        if len(g) >= 2:
            out[f"spearman_d{d}"] = float(spearmanr(g.index.to_numpy(), g.to_numpy())[0])
    out.update(collapse_check(ok))
    for ref in ("gl_closed_form", "gl_empirical"):
        if ref in ok:
            out[f"{ref}_mean"] = float(ok[ref].mean())
    return out


GENERALIZATION = register(
    Experiment(
        name="molrg-generalization",
        description="GL score of an MLP denoiser vs N/d for several d, with closed-form and empirical references "
                    "(SPEC A9, fig. 5a)",
        run=run_generalization,
        parameters=GeneralizationParameters,
        grid={"d": [2, 4, 8], "N": [2, 4, 8, 16, 32, 64, 128, 256]},
        quick_grid={"d": [2, 4], "N": [2, 8, 32]},
        quick_params=GEN_QUICK,
        trials=2,
        quick_trials=1,
        chunk_by=("d",),
        plot=plot_generalization,
        summarize=summarize_generalization,
        doc=__doc__,
        family="molrg",
    )
)
