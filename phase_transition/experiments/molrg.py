"""MoLRG phase-transition experiments: paper figures 4 and 8 (SPEC A6-A8).

Every trial draws a random MoLRG (orthogonal bases, ``K`` components of
dimension ``d`` in ``R^n``) and ``N`` training samples from its own seed, solves
for the subspaces and records the Hungarian-matched subspace error (SPEC A8) and
``success = error <= tau``.  Trials sharing ``d`` form one chunk and are solved in
one batched call (problems with different ``N`` are padded and masked).

Registered experiments
----------------------
``molrg-pca``         K = 1, PCA (figure 4b): success iff N >= d.
``molrg-sgd-single``  K = 1, SGD on the single-component DAE (figure 4a).
``molrg-kss``         K-subspaces with spectral start, K a parameter (figure 4d; ``--set K=3``: figure 8),
                      with the oracle (PCA of the true clusters) beside it.
``molrg-sgd``         SGD on the hardmax (default) or softmax DAE, K a parameter (figure 4c).
``molrg-sgd-vs-kss``  SGD and K-subspaces on the SAME data sets: both success rates and their agreement.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

import molrg
from molrg.denoisers import PARAMETERIZATIONS
from molrg.sgd import INITS, train_dae
from molrg.utils import check_choice, check_int, check_real

from ..plots import success_heatmap
from ..registry import Experiment, Task, register

# N grids: fine where the boundaries N = d (K = 1) and N = K d lie, reaching 4 K d_max.
_N_K1 = list(range(1, 33))
_N_K2 = [1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64]
_D = list(range(1, 9))


# --------------------------------------------------------------------------- data
def draw_problems(tasks: Sequence[Task], K: int):
    """One random MoLRG and training set per task, padded into one batch.

    Returns ``X (B, N_max, n)``, ``mask (B, N_max)``, ``labels (B, N_max)`` (-1 on
    padding), the true bases as K arrays ``(B, n, d)`` and one generator per task,
    continuing the task's own stream (so a problem's solution depends on its seed
    only, never on the chunk it runs in).
    """
    p0 = tasks[0].params
    n, d = int(p0["n"]), int(p0["d"])
    Ns = [int(t.params["N"]) for t in tasks]
    B, N_max = len(tasks), max(Ns)
    X = np.zeros((B, N_max, n))
    mask = np.zeros((B, N_max), dtype=bool)
    labels = np.full((B, N_max), -1)
    true = [np.empty((B, n, d)) for _ in range(K)]
    rngs = []
    for b, task in enumerate(tasks):
        if int(task.params["d"]) != d or int(task.params["n"]) != n:
            raise ValueError("a chunk must share n and d")  # guaranteed by chunk_by
        rng = task.rng
        model = molrg.MoLRG.random(n, [d] * K, noise_std=float(task.params["noise_std"]), random_state=rng)
        Xb, yb = model.sample(Ns[b], random_state=rng)
        X[b, : Ns[b]], mask[b, : Ns[b]], labels[b, : Ns[b]] = Xb, True, yb
        for k in range(K):
            true[k][b] = model.bases[k]
        rngs.append(rng)
    return X, mask, labels, true, rngs


def _recovery(est, true, tau: float, prefix: str = "") -> dict[str, np.ndarray]:
    err = molrg.subspace_error_batch(est, true)
    return {f"{prefix}subspace_error": err, f"{prefix}success": err <= tau}


def _rows(columns: Mapping[str, np.ndarray], B: int) -> list[dict]:
    return [{k: (v[b].item() if hasattr(v[b], "item") else v[b]) for k, v in columns.items()} for b in range(B)]


def _K(tasks) -> int:
    return int(tasks[0].params.get("K", 1))


# --------------------------------------------------------------------------- solvers on a chunk
def _solve_pca(tasks, X, mask, true, rngs):
    d = int(tasks[0].params["d"])
    U = molrg.pca_subspace_batch(X, d, mask=mask)
    return [U]


def _solve_kss(tasks, X, mask, true, rngs):
    p = tasks[0].params
    res = molrg.k_subspaces_batch(
        X, [int(p["d"])] * _K(tasks), mask=mask, init=p["kss_init"], n_init=int(p["n_init"]), random_state=rngs
    )
    return list(res.bases)


def _solve_sgd(tasks, X, mask, true, rngs):
    p = tasks[0].params
    K = _K(tasks)
    res = train_dae(
        X,
        [int(p["d"])] * K,
        parameterization=p["parameterization"],
        init=p["init"],
        true_bases=true if p["init"] == "near_truth" else None,
        schedule=p["schedule"],
        steps=int(p["steps"]),
        batch_size=int(p["batch_size"]),
        lr=float(p["lr"]),
        mask=mask,
        random_state=rngs,
    )
    return list(res.bases)


def _make_run(solver):
    def run(tasks: Sequence[Task]) -> list[dict]:
        K = _K(tasks)
        X, mask, labels, true, rngs = draw_problems(tasks, K)
        cols = _recovery(solver(tasks, X, mask, true, rngs), true, float(tasks[0].params["tau"]))
        if K > 1:  # the oracle belongs in every comparison (SPEC A6)
            oracle = molrg.oracle_bases(X, labels, [int(tasks[0].params["d"])] * K)
            cols.update(_recovery(list(oracle), true, float(tasks[0].params["tau"]), "oracle_"))
        return _rows(cols, len(tasks))

    return run


def _run_sgd_vs_kss(tasks: Sequence[Task]) -> list[dict]:
    K = _K(tasks)
    X, mask, labels, true, rngs = draw_problems(tasks, K)
    tau = float(tasks[0].params["tau"])
    # each solver gets its own child stream of the trial, so neither depends on the other's draws
    kss_rngs = [r.spawn(1)[0] for r in rngs]
    sgd_rngs = [r.spawn(1)[0] for r in rngs]
    cols = _recovery(_solve_sgd(tasks, X, mask, true, sgd_rngs), true, tau)
    cols.update(_recovery(_solve_kss(tasks, X, mask, true, kss_rngs), true, tau, "kss_"))
    oracle = molrg.oracle_bases(X, labels, [int(tasks[0].params["d"])] * K)
    cols.update(_recovery(list(oracle), true, tau, "oracle_"))
    cols["agree"] = cols["success"] == cols["kss_success"]
    return _rows(cols, len(tasks))


# --------------------------------------------------------------------------- validation
def _validate(config: Mapping) -> None:
    grid, params = config["grid"], config["params"]
    n = check_int("n", params["n"], low=1)
    K = check_int("K", params.get("K", 1), low=1)
    for d in grid["d"]:
        check_int("d", d, low=1, high=n)
        if K * int(d) > n:
            raise ValueError(f"orthogonal components need K*d <= n, got K={K}, d={d}, n={n}")
    for N in grid["N"]:
        check_int("N", N, low=1)
    check_real("noise_std", params["noise_std"], low=0.0)
    check_real("tau", params["tau"], low=0.0, low_open=True)
    if "kss_init" in params:
        check_choice("kss_init", params["kss_init"], ("spectral", "random"))
        check_int("n_init", params["n_init"], low=1)
    if "parameterization" in params:
        check_choice("parameterization", params["parameterization"], PARAMETERIZATIONS)
        if params["parameterization"] == "single" and K != 1:
            raise ValueError(f"parameterization 'single' needs K = 1, got K = {K}")
        check_choice("init", params["init"], INITS)
        check_choice("schedule", params["schedule"], ("vp", "ve", "edm"))
        check_int("steps", params["steps"], low=1)
        check_int("batch_size", params["batch_size"], low=1)
        check_real("lr", params["lr"], low=0.0, low_open=True)


# --------------------------------------------------------------------------- figures and summaries
def _boundary(config):
    K = int(config["params"].get("K", 1))
    return (lambda d: K * d), ("N = d" if K == 1 else f"N = {K} d")


def _plot_success(title: str):
    def plot(table: pd.DataFrame, config: Mapping):
        boundary, label = _boundary(config)
        panels = [("success", title)]
        if "oracle_success" in table:
            panels.append(("oracle_success", "oracle (PCA of the true clusters)"))
        return success_heatmap(table, panels, boundary=boundary, boundary_label=label)

    return plot


def _plot_sgd_vs_kss(table: pd.DataFrame, config: Mapping):
    boundary, label = _boundary(config)
    panels = [("success", "SGD (hardmax DAE)"), ("kss_success", "K-subspaces (spectral)"),
              ("agree", "agreement"), ("oracle_success", "oracle")]
    return success_heatmap(table, panels, boundary=boundary, boundary_label=label)


def _summarize(table: pd.DataFrame, config: Mapping) -> dict:
    """Success below the boundary (N < K d), at and above it, and far above it (N >= 4 K d)."""
    ok = table[table["error"] == ""]
    K = int(config["params"].get("K", 1))
    below, above, far = ok["N"] < K * ok["d"], ok["N"] >= K * ok["d"], ok["N"] >= 4 * K * ok["d"]
    out = {
        "success_below_boundary": float(ok.loc[below, "success"].mean()) if below.any() else float("nan"),
        "success_above_boundary": float(ok.loc[above, "success"].mean()) if above.any() else float("nan"),
        "success_far_above": float(ok.loc[far, "success"].mean()) if far.any() else float("nan"),
        "trials": int(len(ok)),
        "failed_trials": int((table["error"] != "").sum()),
    }
    if "oracle_success" in ok:
        cells = ok.groupby(["d", "N"])[["success", "oracle_success"]].mean()
        out["cells_matching_oracle"] = f"{int((cells['success'] == cells['oracle_success']).sum())}/{len(cells)}"
    if "agree" in ok:
        out["agreement"] = float(ok["agree"].mean())
        out["kss_success_far_above"] = float(ok.loc[far, "kss_success"].mean()) if far.any() else float("nan")
    return out


# --------------------------------------------------------------------------- registration
_COMMON = dict(n=48, noise_std=0.0, tau=0.5)
_SGD = dict(init="spectral", schedule="vp", steps=1500, batch_size=32, lr=0.2)
_SGD_QUICK = dict(steps=500)
_QUICK_K1 = dict(d=[1, 2, 3, 4], N=[1, 2, 3, 4, 5, 6, 8])
_QUICK_K2 = dict(d=[2, 3], N=[2, 4, 6, 8, 12, 16, 24])

register(Experiment(
    name="molrg-pca",
    description="K = 1: PCA recovers the subspace iff N >= d (paper figure 4b, Theorem 2)",
    run=_make_run(_solve_pca),
    grid=dict(d=_D, N=_N_K1),
    quick_grid=_QUICK_K1,
    params=dict(_COMMON),
    chunk_by=("d",),
    plot=_plot_success("PCA, K = 1"),
    summarize=_summarize,
    validate=_validate,
    family="molrg",
    doc="Noiseless: success is exactly 1 for N >= d and 0 for N < d (the top-d singular vectors of fewer than d points "
        "cannot span the subspace).",
))

register(Experiment(
    name="molrg-sgd-single",
    description="K = 1: SGD on the single-component DAE learns the subspace iff N >= d (paper figure 4a)",
    run=_make_run(_solve_sgd),
    grid=dict(d=_D, N=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 28, 32]),
    quick_grid=_QUICK_K1,
    params=dict(_COMMON, parameterization="single", **dict(_SGD, init="random")),
    quick_params=_SGD_QUICK,
    chunk_by=("d",),
    plot=_plot_success("SGD, single DAE, K = 1"),
    summarize=_summarize,
    validate=_validate,
    family="molrg",
    doc="Algorithm 1 on eq. (11): the training loss is PCA's objective up to constants (Theorem 1).",
))

_N_K3 = _N_K2 + [72, 80, 96]  # reaching 4 K d_max = 96
_QUICK_K3 = dict(d=[2, 3], N=[3, 6, 9, 12, 18, 24, 36])
# K = 2 (figures 4c, 4d) and K = 3 (figure 8) from one definition each
for _k, _suffix, _grid, _quick, _fig in (
    (2, "", dict(d=_D, N=_N_K2), _QUICK_K2, ("paper figure 4d", "paper figure 4c")),
    (3, "-k3", dict(d=_D, N=_N_K3), _QUICK_K3, ("paper figure 8", "paper figure 8")),
):
    register(Experiment(
        name=f"molrg-kss{_suffix}",
        description=f"K = {_k}: K-subspaces (spectral start) recovers the subspaces iff N >~ K d ({_fig[0]})",
        run=_make_run(_solve_kss),
        grid=_grid,
        quick_grid=_quick,
        params=dict(_COMMON, K=_k, kss_init="spectral", n_init=1),
        chunk_by=("d",),
        plot=_plot_success("K-subspaces, spectral start"),
        summarize=_summarize,
        validate=_validate,
        family="molrg",
        doc="Problem 18 solved by alternating assignment and PCA refits; the oracle (PCA of the true clusters) shows "
            "what the data allow. `--set K=...` changes the number of components.",
    ))
    register(Experiment(
        name=f"molrg-sgd{_suffix}",
        description=f"K = {_k}: SGD on the hardmax (or softmax) DAE recovers the subspaces iff N >~ K d ({_fig[1]})",
        run=_make_run(_solve_sgd),
        grid=_grid,
        quick_grid=_quick,
        params=dict(_COMMON, K=_k, parameterization="hardmax", **_SGD),
        quick_params=_SGD_QUICK,
        chunk_by=("d",),
        plot=_plot_success("SGD, hardmax DAE"),
        summarize=_summarize,
        validate=_validate,
        family="molrg",
        doc="Algorithm 1 on eq. (16-17) from the spectral start (`--set init=near_truth` for the paper's start near the "
            "truth, which uses the true bases; `--set parameterization=softmax` for eq. 9).",
    ))

register(Experiment(
    name="molrg-sgd-vs-kss",
    description="SGD (hardmax DAE) and K-subspaces on the same data sets: success rates and agreement (Theorem 3)",
    run=_run_sgd_vs_kss,
    grid=dict(d=_D, N=_N_K2),
    quick_grid=_QUICK_K2,
    params=dict(_COMMON, K=2, parameterization="hardmax", kss_init="spectral", n_init=1, **_SGD),
    quick_params=_SGD_QUICK,
    chunk_by=("d",),
    plot=_plot_sgd_vs_kss,
    summarize=_summarize,
    validate=_validate,
    family="molrg",
    doc="Theorem 3: minimizing the hardmax DAE's loss is the K-subspaces problem, so both solvers should succeed and "
        "fail on the same data sets.",
))
