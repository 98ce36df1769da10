"""MoLRG phase-transition experiments: paper figures 4 and 8 (SPEC A6-A8).

Every trial draws a random MoLRG (orthogonal bases, ``K`` components of
dimension ``d`` in ``R^n``) and ``N`` training samples from its own seed, solves
for the subspaces and records the Hungarian-matched subspace error (SPEC A8) and
``success = error <= tau``.  Trials sharing ``d`` form one chunk and are solved in
one batched call (problems with different ``N`` are padded and masked).

Registered experiments
----------------------
``molrg-pca``               K = 1, PCA (figure 4b): success iff N >= d.
``molrg-sgd-single``        K = 1, SGD on the single-component DAE from a random start (figure 4a).
``molrg-kss``               K-subspaces with spectral start, K = 2 (figure 4d), with the oracle (PCA of the
                            true clusters) beside it; ``molrg-kss-k3``: K = 3 (figure 8).
``molrg-sgd``               SGD as the paper ran it (figure 4c, appendix E.1): the softmax DAE (eq. 9) from
                            the start near the truth (eq. 48; it USES the true bases), K = 2;
                            ``molrg-sgd-k3``: K = 3 (figure 8).
``molrg-sgd-spectral``      truth-free: the same SGD from the spectral start of K-subspaces, with a final
                            exact phase (no Monte-Carlo noise floor) and the ``keep_best`` safeguard (a
                            trial whose training raised its exact loss returns its start, flagged in
                            ``kept_start``: training never undoes a start), and K-subspaces on the SAME data
                            sets (success of both and their agreement: Theorem 3);
                            ``molrg-sgd-k3-spectral``: K = 3.  ``--set init=random`` for a random start.

Every SGD experiment records, on the same data, the success of its start alone
(``start_success``: training switched off) beside the trained one, and its
figure shows both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

import molrg
from molrg.sgd import INITS, train_dae

from ..params import Parameters, param
from ..plots import success_heatmap, successful_rows
from ..registry import Experiment, Task, register

# N grids: fine where the boundaries N = d (K = 1) and N = K d lie, reaching 4 K d_max.
_N_K1 = list(range(1, 33))
# SGD budgets (measured in benchmarks/README.md, "SGD experiments"): steps of the paper's runs, of the
# truth-free runs (then the exact phase), and of the quick grids
_STEPS_SINGLE = 500
_STEPS_PAPER = 300
_STEPS_SPECTRAL = 100
_EXACT_STEPS = 50
_STEPS_QUICK = 300
_STEPS_QUICK_SPECTRAL = 100
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
    """Train the DAEs of a chunk; returns (learned bases, start bases, kept_start or None).

    The start is the untrained result; ``kept_start`` marks the problems whose start
    the ``keep_best`` safeguard returned (training raised their exact loss).
    """
    p = tasks[0].params
    res = train_dae(
        X,
        [int(p["d"])] * _K(tasks),
        parameterization=p["parameterization"],
        init=p["init"],
        true_bases=true if p["init"] == "near_truth" else None,
        perturbation=float(p["perturbation"]),
        schedule=p["schedule"],
        steps=int(p["steps"]),
        batch_size=int(p["batch_size"]),
        lr=float(p["lr"]),
        exact_steps=int(p["exact_steps"]),
        exact_lr=float(p["exact_lr"]),
        keep_best=bool(p["keep_best"]),
        mask=mask,
        dtype=np.float32,  # float32 kernels (the start and the returned bases are float64)
        random_state=rngs,
    )
    return list(res.bases), list(res.initial_bases), res.kept_start


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


def _run_sgd(tasks: Sequence[Task]) -> list[dict]:
    """SGD, its start alone, the oracle and (``compare_kss``) K-subspaces, all on the same data sets."""
    p = tasks[0].params
    K, tau = _K(tasks), float(p["tau"])
    X, mask, labels, true, rngs = draw_problems(tasks, K)
    # each solver gets its own child stream of the trial, so neither depends on the other's draws
    kss_rngs = [r.spawn(1)[0] for r in rngs]
    sgd_rngs = [r.spawn(1)[0] for r in rngs]
    learned, start, kept = _solve_sgd(tasks, X, mask, true, sgd_rngs)
    cols = _recovery(learned, true, tau)
    cols.update(_recovery(start, true, tau, "start_"))
    if kept is not None:
        cols["kept_start"] = np.asarray(kept, dtype=bool)
    if p["compare_kss"]:
        kss = molrg.k_subspaces_batch(X, [int(p["d"])] * K, mask=mask, init="spectral", n_init=1, random_state=kss_rngs)
        cols.update(_recovery(list(kss.bases), true, tau, "kss_"))
        cols["agree"] = cols["success"] == cols["kss_success"]
    if K > 1:
        oracle = molrg.oracle_bases(X, labels, [int(p["d"])] * K)
        cols.update(_recovery(list(oracle), true, tau, "oracle_"))
    return _rows(cols, len(tasks))


# --------------------------------------------------------------------------- typed parameters
@dataclass(frozen=True, kw_only=True)
class MoLRGParameters(Parameters):
    """The data of every MoLRG recovery experiment (SPEC A1, A8): K = 1 unless a subclass adds ``K``."""

    d: int = param(ge=1, help="subspace dimension of every component")
    N: int = param(ge=1, help="training samples")
    n: int = param(48, ge=1, help="ambient dimension")
    noise_std: float = param(0.0, ge=0.0, help="noise standard deviation delta (SPEC A1)")
    tau: float = param(0.5, gt=0.0, help="success threshold on the subspace error (SPEC A8)")

    def validate(self):
        from molrg.utils import check_int

        K = int(self.get("K", 1))
        check_int("d", self.d, low=1, high=self.n)
        if K * self.d > self.n:
            raise ValueError(f"orthogonal components need K*d <= n, got K={K}, d={self.d}, n={self.n}")


@dataclass(frozen=True, kw_only=True)
class KSSParameters(MoLRGParameters):
    """K-subspaces (SPEC A6)."""

    K: int = param(2, ge=1, help="number of components")
    kss_init: str = param("spectral", choices=("spectral", "random"), help="K-subspaces start")
    n_init: int = param(1, ge=1, help="K-subspaces restarts (best objective kept)")


@dataclass(frozen=True, kw_only=True)
class SGDParameters(MoLRGParameters):
    """SGD on the denoising loss (SPEC A7, Algorithm 1)."""

    K: int = param(2, ge=1, help="number of components")
    parameterization: str = param("softmax", choices=("single", "softmax", "hardmax"), help="DAE (SPEC A4): eq. 11, 9 or 16-17")
    init: str = param("near_truth", choices=INITS, help="start: random, spectral, or near_truth (eq. 48, uses the truth)")
    perturbation: float = param(0.5, ge=0.0, help="size of the near_truth perturbation")
    schedule: str = param("vp", choices=("vp", "ve", "edm"), help="noise schedule (SPEC A2)")
    steps: int = param(_STEPS_PAPER, ge=0, help="SGD steps (0: the start only)")
    batch_size: int = param(32, ge=1, help="samples per problem per step")
    lr: float = param(0.2, gt=0.0, help="peak learning rate (cosine decay), in units of 1 / B_coef")
    exact_steps: int = param(0, ge=0, help="final full-batch steps on the exact (eps- and t-averaged) loss")
    exact_lr: float = param(1000.0, gt=0.0, help="step of the exact phase (a shifted power iteration: any value is stable)")
    keep_best: bool = param(False, help="return the start where training raised the exact loss (monotone safeguard)")
    compare_kss: bool = param(False, help="also run K-subspaces (spectral start) on the same data sets")

    def validate(self):
        super().validate()
        if self.parameterization == "single" and self.K != 1:
            raise ValueError(f"parameterization 'single' needs K = 1, got K = {self.K}")


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


_PARAM_NAMES = {"single": "single DAE (eq. 11)", "softmax": "softmax DAE (eq. 9)", "hardmax": "hardmax DAE (eqs. 16-17)"}
_INIT_NAMES = {"near_truth": "start near the truth (eq. 48, uses the truth)", "spectral": "spectral start", "random": "random start"}


def sgd_title(params: Mapping) -> str:
    """What the SGD panel shows, from the parameters actually used (parameterization, start, steps)."""
    extra = f" + {params['exact_steps']} exact" if params.get("exact_steps") else ""
    if params.get("keep_best"):
        extra += ", keep best (exact loss)"
    return (f"SGD, {_PARAM_NAMES[params['parameterization']]}, K = {params.get('K', 1)}\n"
            f"{_INIT_NAMES[params['init']]}, {params['steps']} steps{extra}")


def _plot_sgd(table: pd.DataFrame, config: Mapping):
    """SGD beside its start alone (same data, no training), then K-subspaces / agreement, then the oracle."""
    boundary, label = _boundary(config)
    p = config["params"]
    title = sgd_title(p).replace(", keep best", "\nkeep best")  # three short lines fit the panel's width
    panels = [("success", title), ("start_success", f"start only (no training):\n{_INIT_NAMES[p['init']]}")]
    if "kss_success" in table:
        panels += [("kss_success", "K-subspaces (spectral start)"), ("agree", "agreement SGD / K-subspaces")]
    if "oracle_success" in table:
        panels.append(("oracle_success", "oracle (PCA of the true clusters)"))
    return success_heatmap(table, panels, boundary=boundary, boundary_label=label)


def _median(x) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def _summarize(table: pd.DataFrame, config: Mapping) -> dict:
    """Success below the boundary (N < K d), at and above it, and far above it (N >= 4 K d); for SGD also its start.

    ``cells_matching_oracle``: grid cells whose success rate equals the oracle's.
    SGD experiments add the same numbers for the start alone (``start_...``),
    ``cells_below_start`` (cells where SGD's success rate is below its start's),
    the trials SGD ``broke`` (start succeeded, SGD failed) and ``repaired``, and
    the median subspace error of the successful trials, trained and start; with the
    ``keep_best`` safeguard, ``kept_start`` (the fraction of trials whose start it returned).
    """
    ok = successful_rows(table)
    K = int(config["params"].get("K", 1))
    below, above, far = ok["N"] < K * ok["d"], ok["N"] >= K * ok["d"], ok["N"] >= 4 * K * ok["d"]

    def rate(col, where):
        return float(ok.loc[where, col].mean()) if where.any() else float("nan")

    out = {
        "success_below_boundary": rate("success", below),
        "success_above_boundary": rate("success", above),
        "success_far_above": rate("success", far),
        "trials": int(len(ok)),
        "failed_trials": int(len(table) - len(ok)),
    }
    cols = [c for c in ("success", "start_success", "oracle_success", "kss_success") if c in ok]
    cells = ok.groupby(["d", "N"])[cols].mean()
    if "oracle_success" in ok:
        out["cells_matching_oracle"] = f"{int((cells['success'] == cells['oracle_success']).sum())}/{len(cells)}"
    if "start_success" in ok:
        out["start_success_below_boundary"] = rate("start_success", below)
        out["start_success_above_boundary"] = rate("start_success", above)
        if "oracle_success" in ok:
            out["start_cells_matching_oracle"] = f"{int((cells['start_success'] == cells['oracle_success']).sum())}/{len(cells)}"
        out["cells_below_start"] = int((cells["success"] < cells["start_success"]).sum())
        out["broken"] = int((ok["start_success"] & ~ok["success"]).sum())
        out["repaired"] = int((~ok["start_success"] & ok["success"]).sum())
        out["median_error_of_successes"] = _median(ok.loc[ok["success"], "subspace_error"])
        out["start_median_error_of_successes"] = _median(ok.loc[ok["start_success"], "start_subspace_error"])
    if "kept_start" in ok:
        out["kept_start"] = float(ok["kept_start"].astype(bool).mean())
    if "agree" in ok:
        out["agreement"] = float(ok["agree"].mean())
        out["kss_success_far_above"] = rate("kss_success", far)
    return out


# --------------------------------------------------------------------------- registration
@dataclass(frozen=True, kw_only=True)
class KSS3Parameters(KSSParameters):
    K: int = param(3, ge=1, help="number of components")


@dataclass(frozen=True, kw_only=True)
class SGDSingleParameters(SGDParameters):
    K: int = param(1, ge=1, help="number of components")
    parameterization: str = param("single", choices=("single", "softmax", "hardmax"), help="DAE (SPEC A4): eq. 11, 9 or 16-17")
    init: str = param("random", choices=INITS, help="start: random, spectral, or near_truth (eq. 48, uses the truth)")
    steps: int = param(_STEPS_SINGLE, ge=0, help="SGD steps (0: the start only)")


@dataclass(frozen=True, kw_only=True)
class SGD3Parameters(SGDParameters):
    K: int = param(3, ge=1, help="number of components")


@dataclass(frozen=True, kw_only=True)
class SGDSpectralParameters(SGDParameters):
    init: str = param("spectral", choices=INITS, help="start: random, spectral, or near_truth (eq. 48, uses the truth)")
    steps: int = param(_STEPS_SPECTRAL, ge=0, help="SGD steps (0: the start only)")
    exact_steps: int = param(_EXACT_STEPS, ge=0, help="final full-batch steps on the exact (eps- and t-averaged) loss")
    keep_best: bool = param(True, help="return the start where training raised the exact loss (monotone safeguard)")
    compare_kss: bool = param(True, help="also run K-subspaces (spectral start) on the same data sets")


@dataclass(frozen=True, kw_only=True)
class SGD3SpectralParameters(SGDSpectralParameters):
    K: int = param(3, ge=1, help="number of components")
    compare_kss: bool = param(False, help="also run K-subspaces (spectral start) on the same data sets")


_QUICK_K1 = dict(d=[1, 2, 3, 4], N=[1, 2, 3, 4, 5, 6, 8])
_QUICK_K2 = dict(d=[2, 3], N=[2, 4, 6, 8, 12, 16, 24])
_N_K3 = _N_K2 + [72, 80, 96]  # reaching 4 K d_max = 96
_QUICK_K3 = dict(d=[2, 3], N=[3, 6, 9, 12, 18, 24, 36])
_SETUP = ("n = 48, orthogonal bases, noiseless, 20 trials per cell (quick: 5), tau = 0.5; VP schedule, "
          "snr weighting, batch 32")

register(Experiment(
    name="molrg-pca",
    description="K = 1: PCA recovers the subspace iff N >= d (paper figure 4b, Theorem 2)",
    run=_make_run(_solve_pca),
    grid=dict(d=_D, N=_N_K1),
    quick_grid=_QUICK_K1,
    parameters=MoLRGParameters,
    chunk_by=("d",),
    plot=_plot_success("PCA, K = 1"),
    summarize=_summarize,
    family="molrg",
    doc="Noiseless: success is exactly 1 for N >= d and 0 for N < d (the top-d singular vectors of fewer than d points "
        "cannot span the subspace).",
))

register(Experiment(
    name="molrg-sgd-single",
    description="K = 1: SGD on the single-component DAE learns the subspace iff N >= d (paper figure 4a)",
    run=_run_sgd,
    grid=dict(d=_D, N=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 28, 32]),
    quick_grid=_QUICK_K1,
    parameters=SGDSingleParameters,
    quick_params=dict(steps=_STEPS_QUICK),
    chunk_by=("d",),
    plot=_plot_sgd,
    summarize=_summarize,
    family="molrg",
    doc="Algorithm 1 on eq. (11) from a random start: the training loss is PCA's objective up to constants "
        "(Theorem 1). The start-only panel (random bases) fails everywhere: what succeeds is training.",
))

for _k, _suffix, _grid, _quick, _kss_params, _sgd_params, _spec_params, _fig in (
    (2, "", dict(d=_D, N=_N_K2), _QUICK_K2, KSSParameters, SGDParameters, SGDSpectralParameters,
     ("paper figure 4d", "paper figure 4c")),
    (3, "-k3", dict(d=_D, N=_N_K3), _QUICK_K3, KSS3Parameters, SGD3Parameters, SGD3SpectralParameters,
     ("paper figure 8", "paper figure 8")),
):
    register(Experiment(
        name=f"molrg-kss{_suffix}",
        description=f"K = {_k}: K-subspaces (spectral start) recovers the subspaces iff N >~ K d ({_fig[0]})",
        run=_make_run(_solve_kss),
        grid=_grid,
        quick_grid=_quick,
        parameters=_kss_params,
        chunk_by=("d",),
        plot=_plot_success("K-subspaces, spectral start"),
        summarize=_summarize,
        family="molrg",
        doc="Problem 18 solved by alternating assignment and PCA refits; the oracle (PCA of the true clusters) shows "
            "what the data allow. `--set K=...` changes the number of components.",
    ))
    register(Experiment(
        name=f"molrg-sgd{_suffix}",
        description=(f"K = {_k}: SGD on the softmax DAE from the paper's start near the truth recovers the subspaces "
                     f"iff N >~ K d ({_fig[1]}; the start uses the true bases)"),
        run=_run_sgd,
        grid=_grid,
        quick_grid=_quick,
        parameters=_sgd_params,
        quick_params=dict(steps=_STEPS_QUICK),
        chunk_by=("d",),
        plot=_plot_sgd,
        summarize=_summarize,
        family="molrg",
        doc="Algorithm 1 on the softmax DAE (eq. 9) from the paper's tailor-made start (eq. 48: the true bases "
            "perturbed, then re-orthonormalized), as in the paper's appendix E.1. The start USES the truth (the "
            "theorem is about the global optimum); the truth-free run is the `-spectral` experiment beside it.",
    ))
    register(Experiment(
        name=f"molrg-sgd{_suffix}-spectral",
        description=(f"K = {_k}: truth-free SGD (softmax DAE, spectral start, exact final phase) never undoes its "
                     f"start" + (" and agrees with K-subspaces on the same data (Theorem 3)" if _k == 2 else "")),
        run=_run_sgd,
        grid=_grid,
        quick_grid=_quick,
        parameters=_spec_params,
        quick_params=dict(steps=_STEPS_QUICK_SPECTRAL),
        chunk_by=("d",),
        plot=_plot_sgd,
        summarize=_summarize,
        family="molrg",
        doc="The same SGD from the spectral start of K-subspaces (no truth used), followed by a short full-batch phase "
            "on the exact loss (its expectation over the noise in closed form, SPEC A5), which removes SGD's noise "
            "floor, and a monotone safeguard: a trial whose training raised that exact loss returns its start "
            "(`kept_start`; `--set keep_best=false` switches it off). `--set init=random` starts from random bases." + (
                " K-subspaces runs on the same data sets: Theorem 3 says both solve one problem." if _k == 2 else ""),
    ))
