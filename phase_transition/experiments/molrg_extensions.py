"""MoLRG beyond figure 4: the Jacobian's low rank and memorization to generalization (SPEC A9).

``molrg-jacobian-rank``
    Numerical rank ratio (singular values above ``rtol`` times the largest, over
    ``n``) of a denoiser's Jacobian against ``SNR = 1/sigma^2`` along 18-step Heun
    trajectories (the paper's Figure 3b).  Denoisers: the closed-form posterior
    mean (Lemma 2: ``rank <= sum_k d_k``, ``d_k`` of the nearest component at high
    SNR), the softmax DAE trained by SGD on N samples (its learned bases in the
    same formula), an over-parameterized MLP trained on the same kind of data,
    and the empirical optimal denoiser (the memorizing reference).  One row per
    denoiser and trial; the curve is stored in columns ``rank_ratio_<i>`` (level
    ``i`` of the Karras grid; ``sigma_<i>`` holds the level).

``molrg-generalization``
    GL score (SPEC A9) of an MLP denoiser trained on N samples, against ``N/d`` for
    several ``d`` (the paper's Figure 5a: the curves should collapse).  Each row
    also holds the two reference lines computed on the same training set: the
    closed-form MoLRG denoiser (``gl_closed_form``, about 1) and the empirical
    optimal denoiser (``gl_empirical``, about 0).  All networks of one ``d``
    (every N and trial) train together as one batched ensemble.

``off_manifold`` (median distance of the MLP's samples to the union of the
subspaces, relative to their norm) tells a generalizing model (GL about 1, small
``off_manifold``) from an undertrained one (GL above 1: samples off the subspaces).

Measured here (CPU, contended; n = 8, K = 2, d = 2): with width 256, 3000 Adam
steps of 128 (the default training), GL = 0.30 at N = 32 and 0.75 at N = 128 with
samples within 3% of the union.  The quick configuration (width 128, 600 steps of
64) keeps the monotone trend, GL = 0.07, 0.56, 1.27, 2.16 for N = 2, 8, 32, 128,
but undertrains: at large N its samples leave the subspaces (``off_manifold``
0.3 to 0.45), which pushes GL above 1.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..registry import Experiment, Task, register

# --------------------------------------------------------------------------- jacobian rank
JAC_PARAMS: dict[str, Any] = {
    "n": 48,
    "K": 2,
    "d": 4,
    "N": 64,
    "n_samples": 15,
    "n_steps": 18,
    "sigma_min": 0.002,
    "sigma_max": 80.0,
    "rho": 7.0,
    "rtol": 1e-3,
    "dae_steps": 2000,
    "mlp_width": 256,
    "mlp_depth": 3,
    "mlp_steps": 3000,
    "mlp_batch": 128,
    "mlp_lr": 2e-3,
}
JAC_QUICK: dict[str, Any] = {
    "n": 16,
    "K": 2,
    "d": 2,
    "N": 32,
    "n_samples": 6,
    "dae_steps": 300,
    "mlp_width": 64,
    "mlp_steps": 300,
    "mlp_batch": 64,
}
DENOISERS = ("closed_form", "softmax_dae", "mlp", "empirical")


def _cfg(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    out = dict(defaults)
    out.update({k: v for k, v in config.items() if k in defaults})
    return out


def _sigmas(c):
    from molrg.schedules import karras_sigmas

    return karras_sigmas(int(c["n_steps"]), float(c["sigma_min"]), float(c["sigma_max"]), float(c["rho"]), append_zero=True)


def validate_jacobian(config: Mapping[str, Any]) -> None:
    """Check parameters before anything runs (``ValueError`` naming the argument)."""
    from molrg.utils import check_choice, check_int, check_real

    c = _cfg(config, JAC_PARAMS)
    n = check_int("n", c["n"], low=2)
    K = check_int("K", c["K"], low=1)
    d = check_int("d", c["d"], low=1)
    if K * d > n:
        raise ValueError(f"K * d must be <= n (orthogonal subspaces), got K * d = {K * d} > n = {n}")
    for name in ("N", "n_samples", "n_steps", "dae_steps", "mlp_width", "mlp_depth", "mlp_steps", "mlp_batch"):
        check_int(name, c[name], low=1)
    check_real("rtol", c["rtol"], low=0.0, high=1.0, low_open=True, high_open=True)
    check_real("sigma_min", c["sigma_min"], low=0.0, low_open=True)
    check_real("sigma_max", c["sigma_max"], low=c["sigma_min"], low_open=True)
    den = config.get("denoiser", [])
    for v in den if isinstance(den, (list, tuple)) else [den]:
        check_choice("denoiser", v, DENOISERS)


def _softmax_dae_bases(sets, dims, c, rng):
    """Learned bases of softmax DAEs trained by SGD on each training set (molrg.sgd.train_dae, SPEC A7).

    All sets (same N) train together as one batched problem; spectral start.
    """
    from molrg.sgd import train_dae

    res = train_dae(
        np.stack(sets), dims, parameterization="softmax", init="spectral", steps=int(c["dae_steps"]), random_state=rng
    )
    return [tuple(np.asarray(U[b], dtype=np.float64) for U in res.bases) for b in range(len(sets))]


def _nearest_dims(model, X):
    """For each end point, ``d_k`` of the nearest component subspace."""
    res = np.stack([np.linalg.norm(X - (X @ U) @ U.T, axis=-1) for U in model.bases], -1)
    return np.asarray(model.dims)[res.argmin(-1)]


def run_jacobian(tasks: Sequence[Task]) -> list[dict]:
    """Ranks along trajectories for each task; MLP tasks of a chunk train as one ensemble."""
    import torch

    from molrg import MoLRG
    from molrg.jacobian import rank_along_trajectory
    from molrg.mlp import train_mlp_denoiser
    from molrg.sampling import bases_denoiser, closed_form_denoiser, empirical_denoiser

    out: list[dict | None] = [None] * len(tasks)
    prepared = []
    for j, task in enumerate(tasks):
        c = _cfg(task.params, JAC_PARAMS)
        rng = task.rng
        dims = [int(c["d"])] * int(c["K"])
        model = MoLRG.random(int(c["n"]), dims, random_state=rng)
        X, _ = model.sample(int(c["N"]), random_state=rng)
        x_T = rng.standard_normal((int(c["n_samples"]), int(c["n"]))) * float(c["sigma_max"])
        prepared.append((j, task, c, rng, model, X, x_T))

    mlp_items = [p for p in prepared if p[1].params["denoiser"] == "mlp"]
    mlp_models = {}
    if mlp_items:
        c0 = mlp_items[0][2]
        res = train_mlp_denoiser(
            [p[5] for p in mlp_items],
            width=int(c0["mlp_width"]),
            depth=int(c0["mlp_depth"]),
            steps=int(c0["mlp_steps"]),
            batch_size=int(c0["mlp_batch"]),
            lr=float(c0["mlp_lr"]),
            random_state=mlp_items[0][3],
        )
        for e, p in enumerate(mlp_items):
            mlp_models[p[0]] = res.denoiser(e)

    dae_items = [p for p in prepared if p[1].params["denoiser"] == "softmax_dae"]
    dae_bases = {}
    if dae_items:
        learned = _softmax_dae_bases([p[5] for p in dae_items], dae_items[0][4].dims, dae_items[0][2], dae_items[0][3])
        dae_bases = {p[0]: B for p, B in zip(dae_items, learned)}

    for j, task, c, rng, model, X, x_T in prepared:
        kind = task.params["denoiser"]
        if kind == "closed_form":
            den = closed_form_denoiser(model)
        elif kind == "softmax_dae":
            den = bases_denoiser(dae_bases[j])
        elif kind == "mlp":
            den = mlp_models[j]
        elif kind == "empirical":
            den = empirical_denoiser(X)
        else:
            raise ValueError(f"denoiser must be one of {list(DENOISERS)}, got {kind!r}")
        dtype = torch.float32 if kind == "mlp" else torch.float64
        traj = rank_along_trajectory(
            den, torch.as_tensor(x_T, dtype=dtype), sigmas=_sigmas(c), rtol=float(c["rtol"])
        )
        ranks = traj.ranks  # (S, n_samples)
        bound = int(sum(model.dims))
        near = _nearest_dims(model, traj.samples.astype(np.float64))
        row: dict[str, Any] = {
            "rank_bound": bound,
            "rank_max": int(ranks.max()),
            "rank_final": float(ranks[-1].mean()),
            "rank_final_nearest_match": float(np.mean(ranks[-1] == near)),
            "rank_ratio_mean": float(traj.rank_ratio.mean()),
        }
        for i, (s, r) in enumerate(zip(traj.sigma, traj.rank_ratio)):
            row[f"sigma_{i}"] = float(s)
            row[f"rank_ratio_{i}"] = float(r)
        out[j] = row
    return out  # type: ignore[return-value]


def _ok(table):
    return table[table["error"].fillna("") == ""] if "error" in table else table


def plot_jacobian(table, config: Mapping[str, Any]):
    """Rank ratio against SNR per denoiser, with the Lemma 2 bound ``sum_k d_k / n`` (paper Fig. 3b)."""
    import matplotlib.pyplot as plt

    c = _cfg(config, JAC_PARAMS)
    ok = _ok(table)
    S = int(c["n_steps"])
    snr = 1.0 / _sigmas(c)[:S] ** 2
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    styles = {"closed_form": "o-", "softmax_dae": "s--", "mlp": "^-", "empirical": "x:"}
    for kind in [k for k in DENOISERS if k in set(ok["denoiser"])]:
        rows = ok[ok["denoiser"] == kind]
        cols = [f"rank_ratio_{i}" for i in range(S) if f"rank_ratio_{i}" in rows]
        y = rows[cols].to_numpy(float)
        mean, sd = y.mean(0), y.std(0)
        ax.plot(snr[: len(cols)], mean, styles.get(kind, "o-"), ms=3, label=kind.replace("_", " "))
        ax.fill_between(snr[: len(cols)], mean - sd, mean + sd, alpha=0.15)
    K, d, n = int(c["K"]), int(c["d"]), int(c["n"])
    ax.axhline(K * d / n, color="k", lw=0.8, ls="--", label="Lemma 2 bound sum d_k / n")
    ax.axhline(d / n, color="0.5", lw=0.8, ls=":", label="d_k / n")
    ax.set_xscale("log")
    ax.set_xlabel("SNR = 1 / sigma^2")
    ax.set_ylabel("numerical rank / n")
    ax.set_title(f"Jacobian rank along Heun trajectories (n={n}, K={K}, d={d}, N={c['N']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def summarize_jacobian(table, config: Mapping[str, Any]) -> dict:
    """Per denoiser: max rank seen, the bound, mean rank ratio, high-SNR nearest-dimension match."""
    ok = _ok(table)
    out: dict[str, Any] = {}
    for kind, rows in ok.groupby("denoiser"):
        out[f"{kind}_rank_max"] = int(rows["rank_max"].max())
        out[f"{kind}_rank_ratio_mean"] = float(rows["rank_ratio_mean"].mean())
        out[f"{kind}_final_nearest_match"] = float(rows["rank_final_nearest_match"].mean())
    if len(ok):
        out["rank_bound"] = int(ok["rank_bound"].max())
    if "closed_form" in set(ok.get("denoiser", [])):
        cf = ok[ok["denoiser"] == "closed_form"]
        out["closed_form_bound_violations"] = int((cf["rank_max"] > cf["rank_bound"]).sum())
    return out


# --------------------------------------------------------------------------- generalization
GEN_PARAMS: dict[str, Any] = {
    "n": 16,
    "K": 2,
    "noise_std": 0.0,
    "M": 500,
    "M_test": 500,
    "width": 256,
    "depth": 3,
    "steps": 3000,
    "batch_size": 128,
    "lr": 2e-3,
    "n_steps": 18,
    "sigma_min": 0.002,
    "sigma_max": 80.0,
    "rho": 7.0,
    "references": True,
}
GEN_QUICK: dict[str, Any] = {
    "n": 8,
    "M": 300,
    "M_test": 300,
    "width": 128,
    "steps": 600,
    "batch_size": 64,
}


def validate_generalization(config: Mapping[str, Any]) -> None:
    """Check parameters before anything runs (``ValueError`` naming the argument)."""
    from molrg.utils import check_int, check_real

    c = _cfg(config, GEN_PARAMS)
    n = check_int("n", c["n"], low=2)
    K = check_int("K", c["K"], low=1)
    for name in ("M", "M_test", "width", "depth", "steps", "batch_size", "n_steps"):
        check_int(name, c[name], low=1)
    check_real("lr", c["lr"], low=0.0, low_open=True)
    check_real("noise_std", c["noise_std"], low=0.0)
    for key in ("d", "N"):
        vals = config.get(key, [])
        for v in vals if isinstance(vals, (list, tuple, np.ndarray)) else [vals]:
            v = check_int(key, v, low=1)
            if key == "d" and K * v > n:
                raise ValueError(f"d must satisfy K * d <= n = {n} (orthogonal subspaces), got d = {v} with K = {K}")


def _relative_residual(model, X):
    """Distance of each row to the union of the model's subspaces, relative to its norm."""
    X = np.asarray(X, dtype=np.float64)
    res = np.stack([np.linalg.norm(X - (X @ U) @ U.T, axis=-1) for U in model.bases], -1).min(-1)
    return res / np.maximum(np.linalg.norm(X, axis=-1), 1e-300)


def run_generalization(tasks: Sequence[Task]) -> list[dict]:
    """GL of the MLP (one batched ensemble over the chunk's tasks) and of the two references."""
    from molrg import MoLRG
    from molrg.generalization import generalization_score
    from molrg.mlp import train_mlp_denoiser
    from molrg.sampling import closed_form_denoiser, empirical_denoiser, sample

    if not tasks:
        return []
    prepared = []
    for task in tasks:
        c = _cfg(task.params, GEN_PARAMS)
        rng = task.rng
        d, N, n, K = int(task.params["d"]), int(task.params["N"]), int(c["n"]), int(c["K"])
        model = MoLRG.random(n, [d] * K, noise_std=float(c["noise_std"]), random_state=rng)
        X, _ = model.sample(N, random_state=rng)
        test, _ = model.sample(int(c["M_test"]), random_state=rng)
        prepared.append((task, c, rng, model, X, test))
    c0 = prepared[0][1]
    for _, c, *_ in prepared[1:]:
        if any(c[k] != c0[k] for k in ("n", "width", "depth", "steps", "batch_size", "lr")):
            raise ValueError("the tasks of one chunk must share n, width, depth, steps, batch_size and lr")
    sampler = dict(
        steps=int(c0["n_steps"]), sigma_min=float(c0["sigma_min"]), sigma_max=float(c0["sigma_max"]), rho=float(c0["rho"])
    )
    res = train_mlp_denoiser(
        [p[4] for p in prepared],
        width=int(c0["width"]),
        depth=int(c0["depth"]),
        steps=int(c0["steps"]),
        batch_size=int(c0["batch_size"]),
        lr=float(c0["lr"]),
        random_state=prepared[0][2],
    )
    E, M, n = len(prepared), int(c0["M"]), int(c0["n"])
    generated = sample(res.model, (E, M, n), random_state=prepared[0][2], **sampler).numpy()
    rows = []
    for e, (task, c, rng, model, X, test) in enumerate(prepared):
        row = {
            "N_over_d": float(task.params["N"]) / float(task.params["d"]),
            "gl_mlp": generalization_score(generated[e], X, test),
            "off_manifold": float(np.median(_relative_residual(model, generated[e]))),
            "train_loss": float(res.losses[-max(1, res.losses.shape[0] // 20) :, e].mean()),
            "mlp_params": int(res.model.n_parameters()),
        }
        if c["references"]:
            cf = sample(closed_form_denoiser(model), (M, n), dtype=np.float64, random_state=rng, **sampler)
            em = sample(empirical_denoiser(X), (M, n), dtype=np.float64, random_state=rng, **sampler)
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
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N / d")
    ax.set_ylabel("GL score")
    c = _cfg(config, GEN_PARAMS)
    ax.set_title(f"Memorization to generalization (n={c['n']}, K={c['K']}, MLP width {c['width']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def summarize_generalization(table, config: Mapping[str, Any]) -> dict:
    """Per d: mean GL at each N, its Spearman correlation with N, the N/d where GL first reaches 0.5."""
    from scipy.stats import spearmanr

    ok = _ok(table)
    out: dict[str, Any] = {}
    for d, rows in ok.groupby("d"):
        g = rows.groupby("N")["gl_mlp"].mean()
        for N, v in g.items():
            out[f"gl_d{d}_N{N}"] = float(v)
        if len(g) >= 2:
            out[f"spearman_d{d}"] = float(spearmanr(g.index.to_numpy(), g.to_numpy())[0])
        above = g[g >= 0.5]
        out[f"N_over_d_half_d{d}"] = float(above.index[0] / d) if len(above) else float("nan")
    for ref in ("gl_closed_form", "gl_empirical"):
        if ref in ok:
            out[f"{ref}_mean"] = float(ok[ref].mean())
    return out


JACOBIAN = register(
    Experiment(
        name="molrg-jacobian-rank",
        description="Numerical rank of the denoiser's Jacobian vs SNR along Heun trajectories (SPEC A9, Lemma 2, fig. 3b)",
        run=run_jacobian,
        grid={"denoiser": list(DENOISERS)},
        quick_grid={"denoiser": list(DENOISERS)},
        params=JAC_PARAMS,
        quick_params=JAC_QUICK,
        trials=5,
        quick_trials=2,
        chunk_by=None,
        plot=plot_jacobian,
        summarize=summarize_jacobian,
        validate=validate_jacobian,
        doc=__doc__,
        family="molrg",
    )
)

GENERALIZATION = register(
    Experiment(
        name="molrg-generalization",
        description="GL score of an MLP denoiser vs N/d for several d, with closed-form and empirical references (SPEC A9, fig. 5a)",
        run=run_generalization,
        grid={"d": [2, 4, 8], "N": [2, 4, 8, 16, 32, 64, 128, 256]},
        quick_grid={"d": [2, 4], "N": [2, 8, 32, 128]},
        params=GEN_PARAMS,
        quick_params=GEN_QUICK,
        trials=3,
        quick_trials=1,
        chunk_by=("d",),
        plot=plot_generalization,
        summarize=summarize_generalization,
        validate=validate_generalization,
        doc=__doc__,
        family="molrg",
    )
)
