r"""The MoLRG paper's real-image observations on scikit-learn's bundled digits (issue 14).

The paper shows with U-Nets on CIFAR-10, CelebA, FFHQ, AFHQ and MetFaces (GPUs)
that image data lie near a union of low-dimensional subspaces (figure 1a), that
a trained denoiser's Jacobian is low rank (figure 3a), that data of smaller
intrinsic dimension need fewer samples to generalize (figure 5b) and that the
Jacobian's leading singular vectors edit an image (figures 6 and 9).  Here the
same measurements run on a laptop on :func:`molrg.data.load_digits` (1797
images of 8 x 8 pixels, ``n = 64``, 10 classes, scaled to ``[0, 1]``), with the
EDM-preconditioned MLP denoiser of :mod:`molrg.mlp` in place of a U-Net.

``digits-union-of-subspaces`` (figure 1a)
    K-subspaces (``K = 10``, every ``d_k = d``, swept; spectral start with ``q``
    neighbours) on all 1797 images: clustering accuracy (Hungarian matched) and
    NMI beside scikit-learn's KMeans and SpectralClustering on the same images;
    fitted again to a stratified training split, the held-out relative
    reconstruction error
    ``mean_i min_k ||x_i - P_k x_i||^2 / mean_i ||x_i||^2`` of the union against
    one subspace (PCA of the same split) of dimension ``d`` (the same
    coefficients per image), ``2 d`` and ``K d`` (the same total dimension), and
    the oracle (PCA of each true class).  The per-class energy ranks and
    explained-energy curves are computed from the data in the figure.
``digits-jacobian-rank`` (figure 3a)
    Energy rank (paper eq. 46, threshold 0.99) of the denoiser's Jacobian along
    18-step Heun trajectories against ``SNR = 1/sigma``, as a ratio to ``n``:
    the trained MLP, the same network untrained (the mechanism switched off),
    and the closed-form posterior of the MoLRG fitted by K-subspaces (bases and
    cluster weights), whose rank is at most ``sum_k d_k`` (Lemma 2).
``digits-generalization`` (figure 5b)
    GL score (SPEC A9; pixel-space nearest neighbours in place of the paper's
    copy-detection descriptor) of MLPs trained on N images of a subset (one
    class, two classes, all ten), each subset's energy rank in the legend.
``digits-semantic-editing`` (figures 6 and 9)
    At a middle level of the Heun sampler, move the point along the leading
    right singular vectors of the trained denoiser's Jacobian (and along random
    unit directions) with a range of strengths, finish the sampling, and
    measure the change of the final image per unit strength.

How this differs from the paper: 8 x 8 digits instead of 32 x 32 to 1024 x 1024
photographs; a 3-layer MLP (width 256: about 170k parameters) trained for 750
(Jacobian rank) or 1500 (editing) Adam steps on 2 CPU cores instead of a U-Net,
and MLPs of width 128 trained for 750 steps for GL; pixel distances for GL.

Budgets (issue 16: the four experiments within 50 s of compute).  The MLP
training is most of the cost of the three network experiments, so the Jacobian
and generalization networks train for 750 Adam steps instead of 1500 (their
cosine schedule compressed to the shorter run).  This is a smaller setting, not
a converged one: the denoising loss of the width-256 network on all digits (mean
per tenth of the run) goes 0.647, 0.490, 0.462, 0.451, 0.439, 0.431, 0.422,
0.419, 0.411, 0.409 in 1500 steps and 0.734, 0.562, 0.502, 0.478, 0.464, 0.456,
0.453, 0.446, 0.441, 0.442 in 750 (6.6 against 16.7 CPU s for one network).
Measured at 750 steps (full grids, seed 0): the trained MLP's smallest
energy-rank ratio in the band 0.559 (0.533 at 1500; claim: < 0.7), the
untrained 0.969; GL's Spearman correlation with N 0.886, 1.0, 1.0 for one, two,
ten classes (the same as at 1500; claim: > 0.8), GL at N = 4 1.61, 1.20, 0.90
and at N = 128 2.72, 2.15, 1.91 (less trained: further from memorizing).  The
editing network keeps 1500 steps: at 750 its change ratio fell to 2.21 (2.79 at
1500), too near the claim's 2.

Randomness: every network trains from its own task's seed (one stream per
network inside the ensemble, :func:`molrg.train_mlp_denoiser`), trajectories and
splits come from the task's generator, so a row does not depend on which tasks
share its chunk.  The editing network is the exception by design: it is trained
once per sweep from ``network_seed`` and the trials vary the edited image.

Measured (full configurations, seed 0, 2 shared cores; benchmarks/README.md has
the times):

* union of subspaces: K-subspaces accuracy 0.86 to 0.88 and NMI 0.83 to 0.88 for
  d = 2 to 6 (0.80 / 0.76 at d = 1), KMeans 0.79 / 0.74, SpectralClustering
  0.81 / 0.85.  Held-out error of the union at d = 2 / 4: 0.12 / 0.085, one
  subspace of dimension d 0.26 / 0.18, 2 d 0.18 / 0.11, K d 0.035 / 0.004
  (K d = 20 or 40 of n = 64 directions), PCA of the true classes 0.12 / 0.083.
  Energy rank of the classes 11 to 18 (26 to 32 centered); all digits 26 (37).
* Jacobian rank (750 steps): the trained MLP's energy-rank ratio falls to 0.56
  in the band sigma in [0.1, 10] (mean 0.66; 0.53 and 0.64 with 1500 steps) and
  is about 0.98 at high SNR (its output is
  nearly the input there); untrained 0.97 in the band; the fitted MoLRG's
  closed form at most 12 of its bound 40.
* Editing: the final image changes 2.8 +- 0.3 times more per unit strength
  along v_1..v_3 than along random directions (smallest 2.3 over 12 images and
  3 levels; v_1 alone 3.3; random "edits" 1.04), linearly in the strength
  (largest step / median step <= 1.4).
* Generalization (750 steps): not reproduced (see ``summarize_generalization``
  and the claims table): within this training budget the MLP never memorizes
  (GL above 0.5 already at N = 4: 1.61, 1.20, 0.90 for one, two, ten classes;
  1.29, 0.90, 0.66 with 1500 steps) and its GL grows above 1 with N (2.72, 2.15,
  1.91 at N = 128; 2.13, 1.80, 1.69 with 1500 steps), i.e. its samples are
  noisier than fresh digits; the ordering by intrinsic dimension is reversed
  (GL is lowest for all ten classes, whose test images are far from few
  training images).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..params import Parameters, param
from ..registry import Experiment, Task, register
from ._karras import KarrasGridParameters, karras_grid

SUBSETS = {"one class": (1,), "two classes": (1, 7), "ten classes": tuple(range(10))}


def _params(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The fixed parameters of a sweep configuration (``config["params"]``), or the mapping itself."""
    return config.get("params", config) if hasattr(config, "get") else config


# =========================================================================== 1. union of subspaces
@dataclass(frozen=True, kw_only=True)
class UnionParameters(Parameters):
    d: int = param(ge=1, le=6, help="dimension d_k = d of every K-subspaces component (swept)")
    K: int = param(10, ge=1, le=20, help="number of subspaces (10: one per digit)")
    q: int = param(5, ge=1, help="neighbours of K-subspaces' spectral start (5 gives the largest KSS objective of 3, 5, 10)")
    test_size: float = param(0.3, gt=0.0, lt=1.0, help="held-out fraction (stratified split, per trial)")
    kmeans_n_init: int = param(10, ge=1, help="restarts of the KMeans baseline")
    spectral_neighbors: int = param(10, ge=2, help="neighbours of the SpectralClustering baseline's affinity graph")


def _residual(bases, X) -> float:
    """Relative reconstruction error ``mean_i min_k ||x_i - P_k x_i||^2 / mean_i ||x_i||^2``."""
    energy = np.stack([((X @ U) ** 2).sum(-1) for U in bases], -1).max(-1)
    total = (X**2).sum(-1)
    return float((total - energy).mean() / total.mean())


def run_union(tasks: Sequence[Task]) -> list[dict]:
    """K-subspaces, KMeans and SpectralClustering on all images; held-out residuals of fits to a training split."""
    import warnings

    from sklearn.cluster import KMeans, SpectralClustering
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.model_selection import train_test_split

    from molrg import KSubspaces, pca_subspace
    from molrg.data import clustering_accuracy, load_digits

    data = load_digits()
    rows = []
    for task in tasks:
        p = task.params
        seed = int(task.rng.integers(2**31 - 1))
        Xtr, Xte, ytr, yte = train_test_split(data.X, data.labels, test_size=float(p["test_size"]),
                                              stratify=data.labels, random_state=seed)
        K, d = int(p["K"]), int(p["d"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a K-subspaces run that hits max_iter is still a clustering
            kss = KSubspaces([d] * K, q=int(p["q"]), random_state=seed).fit(data.X)  # clustering: all images
            kss_train = KSubspaces([d] * K, q=int(p["q"]), random_state=seed).fit(Xtr)  # held-out error
        km = KMeans(K, n_init=int(p["kmeans_n_init"]), random_state=seed).fit(data.X)
        sc = SpectralClustering(K, affinity="nearest_neighbors", n_neighbors=int(p["spectral_neighbors"]),
                                random_state=seed).fit(data.X)
        oracle = [pca_subspace(Xtr[ytr == c], d) for c in np.unique(ytr)]
        row: dict[str, Any] = {"n_train": int(len(Xtr)), "n_test": int(len(Xte))}
        for name, labels in (("kss", kss.labels_), ("kmeans", km.labels_), ("spectral", sc.labels_)):
            row[f"{name}_accuracy"] = clustering_accuracy(data.labels, labels)
            row[f"{name}_nmi"] = float(normalized_mutual_info_score(data.labels, labels))
        row["heldout_union"] = _residual(kss_train.bases_, Xte)
        row["heldout_oracle"] = _residual(oracle, Xte)
        for label, dim in (("pca_d", d), ("pca_2d", 2 * d), ("pca_Kd", K * d)):
            row[f"heldout_{label}"] = _residual([pca_subspace(Xtr, min(dim, data.n))], Xte)
        row["train_union"] = _residual(kss_train.bases_, Xtr)
        row["kss_n_iter"] = int(kss.n_iter_)
        rows.append(row)
    return rows


def _class_dimensions(threshold: float = 0.99) -> dict:
    """Energy rank (eq. 46) of each digit class, uncentered (linear) and centered (affine)."""
    from molrg.data import intrinsic_dimension, load_digits

    data = load_digits()
    out = {}
    for c in data.classes:
        Xc = data.X[data.labels == c]
        out[int(c)] = (intrinsic_dimension(Xc, threshold=threshold), intrinsic_dimension(Xc, threshold=threshold, center=True))
    out["all"] = (intrinsic_dimension(data.X, threshold=threshold), intrinsic_dimension(data.X, threshold=threshold, center=True))
    return out


def plot_union(table, config: Mapping[str, Any]):
    """(a) accuracy / NMI against d; (b) held-out error: union vs one subspace; (c) per-class energy curves."""
    import matplotlib.pyplot as plt

    from molrg.data import energy_curve, load_digits

    p = _params(config)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    g = table.groupby("d")
    ds = np.asarray(sorted(table["d"].unique()), float)
    ax = axes[0]
    for metric, ls in (("accuracy", "-"), ("nmi", "--")):
        ax.plot(ds, g[f"kss_{metric}"].mean().to_numpy(), "o" + ls, color="C0", label=f"K-subspaces {metric}")
        for name, color in (("kmeans", "C1"), ("spectral", "C2")):
            ax.axhline(table[f"{name}_{metric}"].mean(), color=color, ls=ls, lw=1,
                       label=f"{'KMeans' if name == 'kmeans' else 'SpectralClustering'} {metric}")
    ax.set_xlabel("subspace dimension d (every component)")
    ax.set_ylabel("score (all 1797 images)")
    ax.set_title(f"Clustering the digits, K = {p.get('K', 10)}", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1]
    for col, label, style in (("heldout_union", "union of K subspaces of dim d", "o-"),
                              ("heldout_oracle", "oracle: PCA per true class, dim d", "x:"),
                              ("heldout_pca_d", "one subspace, dim d", "s--"),
                              ("heldout_pca_2d", "one subspace, dim 2d", "^--"),
                              ("heldout_pca_Kd", "one subspace, dim K d", "v--")):
        ax.plot(ds, g[col].mean().to_numpy(), style, ms=4, label=label)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("d")
    ax.set_ylabel("held-out relative reconstruction error")
    ax.set_title("Union of subspaces vs one subspace (held out)", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[2]
    data = load_digits()
    dims = _class_dimensions()
    for c in data.classes:
        curve = energy_curve(data.X[data.labels == c])
        ax.plot(np.arange(1, curve.size + 1), curve, lw=1, label=f"digit {c}: energy rank {dims[int(c)][0]} ({dims[int(c)][1]} centered)")
    curve = energy_curve(data.X)
    ax.plot(np.arange(1, curve.size + 1), curve, "k--", lw=1.2, label=f"all digits: {dims['all'][0]} ({dims['all'][1]} centered)")
    ax.axhline(0.99, color="0.5", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("number of directions r")
    ax.set_ylabel("sqrt(cumsum s^2) / ||s||")
    ax.set_title("Explained energy per class (eq. 46 threshold 0.99)", fontsize=9)
    ax.legend(fontsize=5)
    fig.tight_layout()
    return fig


def summarize_union(table, config: Mapping[str, Any]) -> dict:
    """Accuracy and NMI of the three clusterings, held-out errors per d, per-class energy ranks."""
    out: dict[str, Any] = {}
    g = table.groupby("d")
    best_d = int(g["kss_accuracy"].mean().idxmax())
    out["kss_best_d"] = best_d
    for name in ("kss", "kmeans", "spectral"):
        rows = table[table["d"] == best_d] if name == "kss" else table
        out[f"{name}_accuracy"] = float(rows[f"{name}_accuracy"].mean())
        out[f"{name}_nmi"] = float(rows[f"{name}_nmi"].mean())
    for d, rows in g:
        out[f"kss_accuracy_d{d}"] = float(rows["kss_accuracy"].mean())
        for col in ("union", "pca_d", "pca_2d", "pca_Kd", "oracle"):
            out[f"heldout_{col}_d{d}"] = float(rows[f"heldout_{col}"].mean())
    out["union_beats_pca_d_everywhere"] = bool((table["heldout_union"] < table["heldout_pca_d"]).all())
    out["union_beats_pca_2d_everywhere"] = bool((table["heldout_union"] < table["heldout_pca_2d"]).all())
    out["union_beats_pca_Kd_anywhere"] = bool((table["heldout_union"] < table["heldout_pca_Kd"]).any())
    dims = _class_dimensions()
    out["class_energy_rank"] = {str(k): v[0] for k, v in dims.items()}
    out["class_energy_rank_centered"] = {str(k): v[1] for k, v in dims.items()}
    return out


UNION = register(
    Experiment(
        name="digits-union-of-subspaces",
        description="Digits: K-subspaces vs KMeans / SpectralClustering, held-out union vs one subspace, per-class energy ranks (fig. 1a)",
        run=run_union,
        parameters=UnionParameters,
        grid={"d": [1, 2, 3, 4, 6]},
        quick_grid={"d": [2, 4]},
        trials=2,
        quick_trials=1,
        chunk_by=None,
        plot=plot_union,
        summarize=summarize_union,
        doc=__doc__,
        family="digits",
    )
)


# =========================================================================== shared: the trained denoiser
def _train_mlps(sets, p, seeds):
    """MLP denoisers (EDM preconditioning, :func:`molrg.train_mlp_denoiser`) on each training set, as one ensemble.

    ``seeds``: one per network (its own stream: a network does not depend on the others in the ensemble).
    """
    from molrg.mlp import train_mlp_denoiser

    return train_mlp_denoiser(list(sets), width=int(p["width"]), depth=int(p["depth"]), steps=int(p["steps"]),
                              batch_size=int(p["batch_size"]), lr=float(p["lr"]), random_state=[int(s) for s in seeds])


def _fitted_molrg(X, p, seed):
    """The MoLRG fitted to ``X`` by K-subspaces: its bases and the cluster proportions as weights."""
    import warnings

    from molrg import KSubspaces, MoLRG

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kss = KSubspaces([int(p["d"])] * int(p["K"]), q=int(p["q"]), random_state=int(seed)).fit(X)
    counts = np.bincount(kss.labels_, minlength=int(p["K"])).astype(float) + 1.0  # +1: no empty component
    return MoLRG(kss.bases_, counts / counts.sum())


# =========================================================================== 2. Jacobian rank
DENOISERS = ("mlp", "untrained_mlp", "closed_form")


@dataclass(frozen=True, kw_only=True)
class JacobianParameters(KarrasGridParameters):
    denoiser: str = param(choices=DENOISERS, help="trained MLP, the same MLP untrained, or the fitted MoLRG's closed form")
    width: int = param(256, ge=1, help="MLP hidden width")
    depth: int = param(3, ge=1, help="MLP hidden layers")
    steps: int = param(750, ge=1, help="Adam steps of the MLP")
    batch_size: int = param(128, ge=1, help="MLP mini-batch")
    lr: float = param(2e-3, gt=0.0, help="Adam learning rate (cosine-decayed)")
    n_samples: int = param(8, ge=1, help="Heun trajectories per trial")
    threshold: float = param(0.99, gt=0.0, lt=1.0, help="energy fraction of the energy rank (paper eq. 46)")
    d: int = param(4, ge=1, le=6, help="dimension of every component of the fitted MoLRG")
    K: int = param(10, ge=1, le=20, help="components of the fitted MoLRG")
    q: int = param(5, ge=1, help="neighbours of K-subspaces' spectral start")
    band_sigma_min: float = param(0.1, gt=0.0, help="lower end of the middle noise band")
    band_sigma_max: float = param(10.0, gt=0.0, help="upper end of the middle noise band")

    def validate(self):
        super().validate()
        if self.band_sigma_max <= self.band_sigma_min:
            raise ValueError(f"band_sigma_max must be > band_sigma_min = {self.band_sigma_min}, got {self.band_sigma_max}")


def run_jacobian(tasks: Sequence[Task]) -> list[dict]:
    """Energy ranks along Heun trajectories; the trained MLPs of a chunk train as one ensemble on all digits."""
    import torch

    from molrg.data import load_digits
    from molrg.jacobian import rank_along_trajectory
    from molrg.mlp import MLPDenoiser
    from molrg.sampling import closed_form_denoiser

    if not tasks:
        return []
    data = load_digits()
    X = data.X
    p0 = tasks[0].params
    trained = [t for t in tasks if t.params["denoiser"] == "mlp"]
    nets = {}
    if trained:
        res = _train_mlps([X] * len(trained), p0, [t.seed for t in trained])
        nets = {id(t): res.denoiser(e) for e, t in enumerate(trained)}
    cf_tasks = [t for t in tasks if t.params["denoiser"] == "closed_form"]
    model = _fitted_molrg(X, p0, cf_tasks[0].seed) if cf_tasks else None
    sig = karras_grid(p0)
    rows = []
    for task in tasks:
        p, rng = task.params, task.rng
        kind = p["denoiser"]
        if kind == "mlp":
            den, dtype, bound = nets[id(task)], torch.float32, data.n
        elif kind == "untrained_mlp":
            net = MLPDenoiser(data.n, width=int(p["width"]), depth=int(p["depth"]),
                              sigma_data=float(np.sqrt(np.mean(X**2))), random_state=task.seed)
            den, dtype, bound = net.member(0), torch.float32, data.n
        elif kind == "closed_form":
            den, dtype, bound = closed_form_denoiser(model), torch.float64, int(sum(model.dims))
        else:  # pragma: no cover - the parameters' choices
            raise ValueError(f"denoiser must be one of {list(DENOISERS)}, got {kind!r}")
        x_T = torch.as_tensor(rng.standard_normal((int(p["n_samples"]), data.n)) * float(sig[0]), dtype=dtype)
        traj = rank_along_trajectory(den, x_T, sigmas=sig, threshold=float(p["threshold"]))
        ratio = traj.rank_ratio
        band = (traj.sigma >= float(p["band_sigma_min"])) & (traj.sigma <= float(p["band_sigma_max"]))
        ranks = traj.energy_rank.reshape(traj.sigma.shape[0], -1)
        # tidy: one row per noise level of this denoiser and trial
        rows.append([{"level": i, "sigma": float(s), "snr": float(1.0 / s), "band": bool(band[i]), "rank_bound": bound,
                      "energy_rank_ratio": float(ratio[i]), "energy_rank_max": int(ranks[i].max())}
                     for i, s in enumerate(traj.sigma)])
    return rows


def plot_jacobian(table, config: Mapping[str, Any]):
    """Energy-rank ratio against SNR = 1/sigma per denoiser, the middle band shaded, Lemma 2's bound (fig. 3a)."""
    import matplotlib.pyplot as plt

    p = _params(config)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    labels = {"mlp": "trained MLP", "untrained_mlp": "untrained MLP", "closed_form": "fitted MoLRG, closed form"}
    for kind, style in (("mlp", "o-"), ("untrained_mlp", "x:"), ("closed_form", "s--")):
        rows = table[table["denoiser"] == kind]
        if not len(rows):
            continue
        g = rows.groupby("level")
        snr, y = g["snr"].mean().to_numpy(), g["energy_rank_ratio"]
        ax.plot(snr, y.mean().to_numpy(), style, ms=3, label=labels[kind])
        if rows["trial"].nunique() > 1:
            ax.fill_between(snr, y.min().to_numpy(), y.max().to_numpy(), alpha=0.15)
    bound = table.loc[table["denoiser"] == "closed_form", "rank_bound"]
    if len(bound):
        ax.axhline(float(bound.max()) / 64, color="k", lw=0.8, ls="--", label="Lemma 2 bound sum_k d_k / n")
    lo, hi = float(p.get("band_sigma_min", 0.1)), float(p.get("band_sigma_max", 10.0))
    ax.axvspan(1.0 / hi, 1.0 / lo, color="0.9", zorder=0, label="middle band")
    ax.set_xscale("log")
    ax.set_xlabel("SNR = 1 / sigma")
    ax.set_ylabel("energy rank / n (n = 64)")
    ax.set_title(f"Digits: denoiser Jacobian rank along Heun trajectories (MLP width {p.get('width')}, "
                 f"{p.get('steps')} steps)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def summarize_jacobian(table, config: Mapping[str, Any]) -> dict:
    """Per denoiser: smallest and mean rank ratio in the middle band, largest rank; the closed form's bound."""
    out: dict[str, Any] = {}
    for kind, rows in table.groupby("denoiser"):
        band = rows[rows["band"].astype(bool)]
        out[f"{kind}_band_min_ratio"] = float(band["energy_rank_ratio"].min())
        out[f"{kind}_band_mean_ratio"] = float(band["energy_rank_ratio"].mean())
        out[f"{kind}_rank_max"] = int(rows["energy_rank_max"].max())
    cf = table[table["denoiser"] == "closed_form"]
    if len(cf):
        out["closed_form_rank_bound"] = int(cf["rank_bound"].max())
        # levels (of any trial) where the rank exceeds the bound
        out["closed_form_bound_violations"] = int((cf["energy_rank_max"] > cf["rank_bound"]).sum())
    return out


JACOBIAN = register(
    Experiment(
        name="digits-jacobian-rank",
        description="Digits: energy rank of a trained MLP denoiser's Jacobian vs SNR, beside the untrained MLP and the fitted MoLRG (fig. 3a)",
        run=run_jacobian,
        parameters=JacobianParameters,
        grid={"denoiser": list(DENOISERS)},
        quick_grid={"denoiser": list(DENOISERS)},
        quick_params={"width": 128, "steps": 600, "n_samples": 4},
        trials=2,
        quick_trials=1,
        chunk_by=(),
        plot=plot_jacobian,
        summarize=summarize_jacobian,
        doc=__doc__,
        family="digits",
    )
)


# =========================================================================== 3. generalization
@dataclass(frozen=True, kw_only=True)
class GeneralizationParameters(KarrasGridParameters):
    subset: str = param(choices=tuple(SUBSETS), help="digits trained on: one class (1), two classes (1, 7) or all ten")
    N: int = param(ge=1, le=128, help="training images (drawn from the subset, test images excluded)")
    width: int = param(128, ge=1, help="MLP hidden width")
    depth: int = param(3, ge=1, help="MLP hidden layers")
    steps: int = param(750, ge=1, help="Adam steps (all networks of a chunk train as one ensemble)")
    batch_size: int = param(64, ge=1, help="MLP mini-batch")
    lr: float = param(2e-3, gt=0.0, help="Adam learning rate (cosine-decayed)")
    M: int = param(200, ge=1, help="generated images per network")
    n_test: int = param(50, ge=1, le=50, help="held-out images of the subset (the GL denominator)")


def _subset_dimension(subset: str, center: bool = False, data=None) -> int:
    from molrg.data import intrinsic_dimension, load_digits

    data = load_digits() if data is None else data
    return intrinsic_dimension(data.subset(SUBSETS[subset]).X, center=center)


def run_generalization(tasks: Sequence[Task]) -> list[dict]:
    """GL of MLPs trained on N images of a subset; every network of the chunk trains in one ensemble."""
    import torch

    from molrg.data import load_digits
    from molrg.generalization import generalization_score
    from molrg.sampling import sample_heun

    if not tasks:
        return []
    data = load_digits()  # once per chunk: the subsets and their energy ranks are the same for every task
    subsets = {name: data.subset(SUBSETS[name]).X for name in {t.params["subset"] for t in tasks}}
    dims = {(name, c): _subset_dimension(name, c, data) for name in subsets for c in (False, True)}
    prepared = []
    for task in tasks:
        p, rng = task.params, task.rng
        X = subsets[p["subset"]]
        order = rng.permutation(len(X))
        test, pool = X[order[: int(p["n_test"])]], X[order[int(p["n_test"]):]]
        if int(p["N"]) > len(pool):
            raise ValueError(f"N must be <= {len(pool)} for subset {p['subset']!r} (its images minus n_test), got {p['N']}")
        prepared.append((task, pool[: int(p["N"])], test, rng))
    p0 = tasks[0].params
    res = _train_mlps([train for _, train, _, _ in prepared], p0, [t.seed for t in tasks])
    sig = karras_grid(p0)
    # starting noise from each task's own stream, so a row does not depend on the other tasks of its chunk
    x_T = np.stack([rng.standard_normal((int(p0["M"]), prepared[0][1].shape[1])) for *_, rng in prepared]) * float(sig[0])
    with torch.no_grad():
        generated = sample_heun(res.model, torch.as_tensor(x_T, dtype=torch.float32), sig).numpy()
    rows = []
    for e, (task, train, test, _) in enumerate(prepared):
        rows.append({
            "gl": generalization_score(generated[e], train, test),
            "energy_rank": dims[task.params["subset"], False],
            "energy_rank_centered": dims[task.params["subset"], True],
            "train_loss": float(res.loss_history[-max(1, res.loss_history.shape[0] // 20):, e].mean()),
        })
    return rows


def _transition(g) -> float:
    """Smallest N where the mean GL curve ``g`` (indexed by N) reaches 0.5, interpolated in log N (NaN if never)."""
    Ns, v = g.index.to_numpy(float), g.to_numpy(float)
    above = np.nonzero(v >= 0.5)[0]
    if not above.size:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(Ns[0])
    f = (0.5 - v[i - 1]) / (v[i] - v[i - 1])
    return float(np.exp(np.log(Ns[i - 1]) + f * (np.log(Ns[i]) - np.log(Ns[i - 1]))))


def plot_generalization(table, config: Mapping[str, Any]):
    """GL against N per subset, each subset's energy rank in the legend (fig. 5b)."""
    import matplotlib.pyplot as plt

    p = _params(config)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for subset in [s for s in SUBSETS if s in set(table["subset"])]:
        rows = table[table["subset"] == subset]
        g = rows.groupby("N")["gl"]
        m, s = g.mean(), g.std().fillna(0.0)
        r, rc = int(rows["energy_rank"].iloc[0]), int(rows["energy_rank_centered"].iloc[0])
        ax.errorbar(m.index, m.to_numpy(), yerr=s.to_numpy(), marker="o", ms=3, capsize=2,
                    label=f"{subset} {SUBSETS[subset] if len(SUBSETS[subset]) < 10 else '(0-9)'}: energy rank {r} ({rc} centered)")
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (training images)")
    ax.set_ylabel("GL score (pixel nearest neighbours)")
    ax.set_title(f"Digits: memorization to generalization (MLP width {p.get('width')}, {p.get('steps')} steps)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def summarize_generalization(table, config: Mapping[str, Any]) -> dict:
    """Per subset: mean GL at each N, Spearman(GL, N), the N where GL reaches 0.5, the energy rank."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    for subset in [s for s in SUBSETS if s in set(table["subset"])]:
        rows = table[table["subset"] == subset]
        g = rows.groupby("N")["gl"].mean()
        key = subset.replace(" ", "_")
        out[f"gl_{key}"] = {int(N): float(v) for N, v in g.items()}
        if len(g) >= 2:
            out[f"spearman_{key}"] = float(spearmanr(g.index.to_numpy(), g.to_numpy())[0])
        out[f"N_half_{key}"] = _transition(g)
        out[f"energy_rank_{key}"] = int(rows["energy_rank"].iloc[0])
    return out


GENERALIZATION = register(
    Experiment(
        name="digits-generalization",
        description="Digits: GL score vs N for one class, two classes and all ten (pixel nearest neighbours; fig. 5b)",
        run=run_generalization,
        parameters=GeneralizationParameters,
        grid={"subset": list(SUBSETS), "N": [4, 8, 16, 32, 64, 128]},
        quick_grid={"subset": ["one class", "ten classes"], "N": [4, 16, 64]},
        quick_params={"M": 100},
        trials=1,
        quick_trials=1,
        chunk_by=(),
        plot=plot_generalization,
        summarize=summarize_generalization,
        doc=__doc__,
        family="digits",
    )
)


# =========================================================================== 4. semantic editing
@dataclass(frozen=True, kw_only=True)
class EditingParameters(KarrasGridParameters):
    edit_step: int = param(ge=1, help="index of the Karras level where the edit is made (18 levels: 8 is sigma = 3.26)")
    direction_kind: str = param(choices=("singular", "random"),
                                help="edit along the Jacobian's singular vectors, or (mechanism off) along random ones")
    width: int = param(256, ge=1, help="MLP hidden width")
    depth: int = param(3, ge=1, help="MLP hidden layers")
    steps: int = param(1500, ge=1, help="Adam steps of the MLP")
    batch_size: int = param(128, ge=1, help="MLP mini-batch")
    lr: float = param(2e-3, gt=0.0, help="Adam learning rate (cosine-decayed)")
    network_seed: int = param(0, ge=0, help="seed of the network (trained once per chunk; trials vary the image)")
    n_directions: int = param(3, ge=1, le=8, help="leading right singular vectors edited along")
    n_random: int = param(3, ge=1, le=8, help="random unit directions (the reference)")
    max_strength: float = param(4.0, gt=0.0, help="largest |strength| (step along a unit direction)")
    n_strengths: int = param(7, ge=3, le=15, help="strengths, evenly spaced in [-max_strength, max_strength]")
    n_steps: int = param(18, ge=2, help="Heun levels of the Karras grid (at least 2: one edit step and the rest)")
    n_show: int = param(1, ge=0, help="trials whose edited images are stored (column 'images', for the figure)")

    def validate(self):
        super().validate()
        if self.edit_step >= self.n_steps:
            raise ValueError(f"edit_step must be < n_steps = {self.n_steps}, got {self.edit_step}")
        if self.n_strengths % 2 == 0:
            raise ValueError(f"n_strengths must be odd (the grid includes strength 0), got {self.n_strengths}")


def _edit_strengths(p) -> np.ndarray:
    return np.linspace(-float(p["max_strength"]), float(p["max_strength"]), int(p["n_strengths"]))


def run_editing(tasks: Sequence[Task]) -> list[dict]:
    """Edit each trial's image along singular and random directions at its level; one network per chunk."""
    import torch

    from molrg.data import load_digits
    from molrg.jacobian import denoiser_jacobian
    from molrg.sampling import sample_heun

    if not tasks:
        return []
    data = load_digits()
    p0 = tasks[0].params
    den = _train_mlps([data.X], p0, [int(p0["network_seed"])]).denoiser(0)
    sig = karras_grid(p0)
    lam = torch.as_tensor(_edit_strengths(p0), dtype=torch.float32)
    nz = lam != 0
    rows = []
    for task in tasks:
        p, rng = task.params, task.rng
        m, k, r = int(p["edit_step"]), int(p["n_directions"]), int(p["n_random"])
        x_T = torch.as_tensor(rng.standard_normal((1, data.n)) * float(sig[0]), dtype=torch.float32)
        random_dirs = rng.standard_normal((k + r, data.n))
        with torch.no_grad():
            x_m = sample_heun(den, x_T, sig[: m + 1])
        J = denoiser_jacobian(den, x_m, 1.0, float(sig[m]))[0].double()
        _, S, Vh = torch.linalg.svd(J)
        R = torch.as_tensor(random_dirs / np.linalg.norm(random_dirs, axis=1, keepdims=True), dtype=torch.float32)
        edit = Vh[:k].float() if p["direction_kind"] == "singular" else R[r:]
        D = torch.cat([edit, R[:r]], 0)  # (k + r, n): the edit directions, then the random reference
        start = x_m[0] + lam[None, :, None] * D[:, None, :]  # (k + r, strengths, n)
        with torch.no_grad():
            final = sample_heun(den, start, sig[m:])
        base = final[:, ~nz].mean(1)  # strength 0 (identical rows)
        change = (final - base[:, None]).norm(dim=-1)  # (k + r, strengths)
        per_unit = (change[:, nz] / lam[nz].abs()).mean(1).numpy()  # mean over nonzero strengths
        steps_v1 = (final[0, 1:] - final[0, :-1]).norm(dim=-1) / (lam[1:] - lam[:-1])
        row: dict[str, Any] = {"sigma_edit": float(sig[m]), "s1_over_rms": float(S[0] / S.pow(2).mean().sqrt())}
        for j in range(k):
            row[f"change_v{j + 1}"] = float(per_unit[j])
        row["change_random"] = float(per_unit[k:].mean())
        row["change_ratio"] = float(per_unit[:k].mean() / per_unit[k:].mean())
        row["v1_ratio"] = float(per_unit[0] / per_unit[k:].mean())
        row["v1_step_uniformity"] = float(steps_v1.max() / steps_v1.median())  # 1: change linear in the strength
        row["images"] = (json.dumps(np.round(final[[*range(k), k]].numpy(), 3).tolist(), separators=(",", ":"))
                         if task.trial < int(p["n_show"]) else "")
        rows.append(row)
    return rows


def plot_editing(table, config: Mapping[str, Any]):
    """Edited digits (rows: v_1 .. v_k, a random direction; columns: strengths) and change per unit strength."""
    import matplotlib.pyplot as plt

    p = _params(config)
    lam = _edit_strengths(p)
    random_kind = table[table["direction_kind"] == "random"]
    table = table[table["direction_kind"] == "singular"]
    shown = table[table["images"].fillna("").astype(str) != ""]
    levels = sorted(shown["edit_step"].unique()) if len(shown) else []
    levels = levels[len(levels) // 2 : len(levels) // 2 + 1]  # the images of the middle level
    k = int(p.get("n_directions", 3))
    fig = plt.figure(figsize=(4 + 0.9 * len(lam), 4.2))
    grid = fig.add_gridspec(k + 1, len(lam) * max(1, len(levels)) + 4)
    for li, step in enumerate(levels):
        imgs = np.asarray(json.loads(shown[shown["edit_step"] == step]["images"].iloc[0]))
        for row in range(imgs.shape[0]):
            for col in range(imgs.shape[1]):
                ax = fig.add_subplot(grid[row, li * len(lam) + col])
                ax.imshow(imgs[row, col].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"{lam[col]:+.2g}", fontsize=6)
                if col == 0:
                    name = f"v{row + 1}" if row < k else "random"
                    ax.set_ylabel(name if col else f"{name}\nsigma={shown[shown['edit_step'] == step]['sigma_edit'].iloc[0]:.2g}"
                                  if row == 0 else name, fontsize=6)
    ax = fig.add_subplot(grid[:, -3:])
    cols = [f"change_v{j + 1}" for j in range(k)] + ["change_random"]
    g = table.groupby("sigma_edit")
    for c in cols:
        ax.errorbar(g[c].mean().index, g[c].mean().to_numpy(), yerr=g[c].std().fillna(0).to_numpy(), marker="o", ms=3,
                    capsize=2, label=c.replace("change_", ""), ls="--" if c == "change_random" else "-")
    if len(random_kind):
        g = random_kind.groupby("sigma_edit")["change_v1"]
        ax.plot(g.mean().index, g.mean().to_numpy(), "x:", color="0.4", label="random edit (mechanism off)")
    ax.set_xscale("log")
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.set_xlabel("sigma at the edit")
    ax.set_ylabel("final-image change per unit strength")
    ax.legend(fontsize=6)
    fig.suptitle("Digits: editing along the denoiser Jacobian's singular vectors vs random directions", fontsize=8)
    return fig


def summarize_editing(table, config: Mapping[str, Any]) -> dict:
    """Change ratio (singular over random) mean and spread per level and overall; v1 smoothness."""
    out: dict[str, Any] = {}
    if (table["direction_kind"] == "random").any():
        out["random_kind_change_ratio_mean"] = float(table.loc[table["direction_kind"] == "random", "change_ratio"].mean())
    table = table[table["direction_kind"] == "singular"]
    out |= {
        "change_ratio_mean": float(table["change_ratio"].mean()),
        "change_ratio_std": float(table["change_ratio"].std()) if len(table) > 1 else 0.0,
        "change_ratio_min": float(table["change_ratio"].min()),
        "v1_ratio_mean": float(table["v1_ratio"].mean()),
        "v1_step_uniformity_max": float(table["v1_step_uniformity"].max()),
    }
    for s, rows in table.groupby("sigma_edit"):
        out[f"change_ratio_sigma{s:.3g}"] = float(rows["change_ratio"].mean())
    return out


EDITING = register(
    Experiment(
        name="digits-semantic-editing",
        description="Digits: editing along the denoiser Jacobian's leading singular vectors vs random directions (figs. 6, 9)",
        run=run_editing,
        parameters=EditingParameters,
        grid={"edit_step": [6, 8, 10], "direction_kind": ["singular", "random"]},
        quick_grid={"edit_step": [8], "direction_kind": ["singular", "random"]},
        trials=4,
        quick_trials=3,
        chunk_by=(),
        plot=plot_editing,
        summarize=summarize_editing,
        doc=__doc__,
        family="digits",
    )
)
