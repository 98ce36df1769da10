"""The claims table: every result of the two papers the toolkit checks, its tests and what was measured.

Each :class:`Claim` names its source (lemma, theorem, proposition or figure),
the tests that assert it (pytest node ids; ``tests/test_claims.py`` checks they
exist), the tolerance those tests use, and the experiment whose summary holds
the measured value.  :func:`claims_table` renders the table from the summaries
of a report run, so the "measured" column is always what the code computed:
a claim whose experiment did not run says so instead of showing a number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Claim", "CLAIMS", "claims_table", "measured_text"]

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class Claim:
    """One checked result.

    ``measure(summary) -> str`` formats the measured value from the summary of
    ``experiment``; a missing key raises ``KeyError`` (a claim that quotes
    nothing is a defect, and the tests catch it).
    """

    source: str
    statement: str
    tests: tuple[str, ...]
    tolerance: str
    experiment: str
    measure: Callable[[Summary], str]


def _g(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_g(x)}" for k, x in v.items())
    return str(v)


def _keys(*keys: str, labels: tuple[str, ...] | None = None) -> Callable[[Summary], str]:
    """``label value; label value`` for the given summary keys."""

    def measure(s: Summary) -> str:
        return "; ".join(f"{lab} {_g(s[k])}" for k, lab in zip(keys, labels or keys))

    return measure


def _boundary(s: Summary) -> str:
    text = (f"success {_g(s['success_below_boundary'])} below the boundary, "
            f"{_g(s['success_above_boundary'])} at or above, {_g(s['success_far_above'])} far above")
    if "cells_matching_oracle" in s:
        text += f"; cells equal to the oracle {s['cells_matching_oracle']}"
    return text


def _sgd(s: Summary) -> str:
    """An SGD row: the boundary numbers after SGD, then the same data's start alone, and what training changed."""
    text = "after SGD: " + _boundary(s)
    text += (f"; start only: success {_g(s['start_success_below_boundary'])} below, "
             f"{_g(s['start_success_above_boundary'])} at or above")
    if "start_cells_matching_oracle" in s:
        text += f", cells equal to the oracle {s['start_cells_matching_oracle']}"
    text += (f"; cells where SGD is below its start {s['cells_below_start']}; trials broken {s['broken']}, "
             f"repaired {s['repaired']}; median error of successes {_g(s['median_error_of_successes'])} "
             f"(start {_g(s['start_median_error_of_successes'])})")
    if "agreement" in s:
        text += f"; agreement with K-subspaces {_g(s['agreement'])}"
    return text


def _prefixed(prefix: str, what: str) -> Callable[[Summary], str]:
    """Every key starting with ``prefix``, as ``rest: value``."""

    def measure(s: Summary) -> str:
        items = [(k[len(prefix):].strip(), v) for k, v in s.items() if k.startswith(prefix)]
        if not items:
            raise KeyError(prefix)
        return f"{what}: " + ", ".join(f"{k}: {_g(v)}" for k, v in items)

    return measure


def _radius(s: Summary) -> str:
    """max_t r_eff per (b, c) across d: ``b=2, c=0.5: 3 / 3 / 3 (d = 50 / 400 / 102400)``."""
    import re

    table: dict[tuple[str, str], dict[int, float]] = {}
    for k, v in s.items():
        m = re.fullmatch(r"max_t r_eff \(d=(\d+), b=(\d+), [sc]=([\d.]+)\)", k)
        if m:
            table.setdefault((m.group(2), m.group(3)), {})[int(m.group(1))] = v
    if not table:
        raise KeyError("max_t r_eff")
    ds = sorted({d for row in table.values() for d in row})
    rows = [f"b={b}, c={sc}: " + " / ".join(_g(row.get(d, float("nan"))) for d in ds) for (b, sc), row in sorted(table.items())]
    return f"max over t of r_eff (d = {' / '.join(map(str, ds))}): " + "; ".join(rows) + f"; r_eff(0) = b: {s['r_eff(0) == b everywhere']}; failed rows {s.get('failed rows', 'n/a')}"


def _generalization(s: Summary) -> str:
    half = {k[len("N_over_d_half_"):]: v for k, v in s.items() if k.startswith("N_over_d_half_")}
    if not half:
        raise KeyError("N_over_d_half_")
    return (f"N/d where GL first >= 0.5: {_g(half)} (spread {_g(s['half_spread_steps'])} grid steps); "
            f"GL in [{_g(s['gl_min'])}, {_g(s['gl_max'])}]; collapse {s['collapse']}; "
            f"GL closed form {_g(s['gl_closed_form_mean'])}, empirical optimum {_g(s['gl_empirical_mean'])}")


def _jacobian_training(s: Summary) -> str:
    gaps = {k[len("mid_gap_"):]: v for k, v in s.items() if k.startswith("mid_gap_") and k[len("mid_gap_"):].isdigit()}
    if not gaps:
        raise KeyError("mid_gap_")
    ranks = {k[len("mlp_mid_rank_ratio_"):]: v for k, v in s.items() if k.startswith("mlp_mid_rank_ratio_")}
    return (f"middle-band gap to the closed form by snapshot (Adam steps) {_g(gaps)}; MLP middle-band rank ratio {_g(ranks)} "
            f"(closed form {_g(s['closed_form_mid_rank_ratio'])}); decreasing {s['mid_gap_decreasing']}")


def _tradeoff(s: Summary) -> str:
    parts = []
    for k, v in s.items():
        if k.endswith(": best r"):
            head = k[: -len(": best r")]
            N = head.split()[0]
            parts.append(f"{head}: min {_g(s[head + ': min error'])} at r = {v} "
                         f"(non-localized {_g(s[N + ': non-localized error'])})")
    if not parts:
        raise KeyError("best r")
    return "; ".join(parts)


def _cir(s: Summary) -> str:
    """Per training-set size: lag-1 autocorrelation and W1 per r (mean +- spread over trials)."""
    import re

    sizes = sorted({int(m.group(1)) for k in s for m in [re.match(r"N=(\d+): w1_train$", k)] if m})
    if not sizes:
        raise KeyError("N=...: w1_train")
    parts = []
    for n in sizes:
        radii = sorted({int(m.group(1)) for k in s for m in [re.match(rf"N={n}, r=(\d+): w1$", k)] if m})
        acf = ", ".join(f"{r}: {s[f'N={n}, r={r}: acf_lag1']:.2f}+-{s[f'N={n}, r={r}: acf_lag1_std']:.2f}" for r in radii)
        w1 = ", ".join(f"{r}: {s[f'N={n}, r={r}: w1']:.3f}" for r in radii)
        parts.append(f"N = {n}: lag-1 by r {acf} (training {_g(s[f'N={n}: acf_lag1_train'])}); "
                     f"W1 by r {w1} (training {_g(s[f'N={n}: w1_train'])})")
    return "; ".join(parts) + f"; exact lag-1 {_g(s['acf_lag1_exact'])}, W1 of as many exact series {_g(s['w1_exact'])}"


_P = "MoLRG paper"
_L = "Locality paper"
_CHECK = "formula-checks"

CLAIMS: tuple[Claim, ...] = (
    Claim(f"{_P}, Lemma 1 / Proposition 1", "Closed-form posterior mean of a MoLRG (soft projection, log-sum-exp weights)",
          ("tests/test_posterior.py::test_matches_dense_mixture", "tests/test_posterior.py::test_finite_in_float32_over_noise_range"),
          "1e-10 relative to the dense scipy mixture", _CHECK, _keys("posterior-dense (max relative error)", labels=("max relative error",))),
    Claim(f"{_P}, score (Tweedie)", "The score is (s E[x_0|x_t] - x_t) / (s^2 sigma^2)",
          ("tests/test_posterior.py::test_score_is_gradient_of_dense_log_density",),
          "1e-6 against a finite difference of the dense log-density", _CHECK,
          _keys("score-fd (max relative error)", labels=("max relative error",))),
    Claim(f"{_P}, Theorem 1", "Single-component DAE loss = A - (B/N) * PCA objective",
          ("tests/test_loss.py::test_monte_carlo_matches_closed_form", "tests/test_loss.py::test_solvers_beat_random_bases"),
          "Monte Carlo within 4 standard errors", _CHECK, _keys("loss-single (max standard errors)", labels=("max |MC - closed form| / se",))),
    Claim(f"{_P}, Theorem 3", "Hardmax DAE loss = A - (B/N) * K-subspaces objective",
          ("tests/test_loss.py::test_monte_carlo_matches_closed_form", "tests/test_loss.py::test_hand_written_gradient_equals_autograd"),
          "Monte Carlo within 4 standard errors", _CHECK, _keys("loss-hardmax (max standard errors)", labels=("max |MC - closed form| / se",))),
    Claim(f"{_P}, figure 4b", "PCA (the trained single DAE) recovers the subspace exactly when N >= d",
          ("tests/test_solvers.py::test_pca_phase_transition_is_exact", "tests/test_molrg_experiments.py::test_pca_boundary_is_exactly_n_equals_d"),
          "exact: success 0 for N < d, 1 for N >= d", "molrg-pca", _boundary),
    Claim(f"{_P}, figure 4a", "SGD on the single DAE loss succeeds above N = d (random start; setup: n = 48, 20 trials, "
          "500 steps of batch 32, VP schedule)",
          ("tests/test_sgd.py::test_k1_phase_transition_targets", "tests/test_molrg_experiments.py::test_sgd_single_learns_the_subspace_above_n_equals_d",
           "tests/test_molrg_experiments.py::test_sgd_single_claim_fails_without_training"),
          "n = 48, d = 4: success >= 0.95 at N = 8, 0 at N = 2; grid: 0 for N < d, >= 0.8 for N >= 2d; steps=0: fails",
          "molrg-sgd-single", _sgd),
    Claim(f"{_P}, figure 4d", "K-subspaces (K = 2): phase transition at N = K d",
          ("tests/test_molrg_experiments.py::test_kss_succeeds_far_above_and_fails_below_k_d", "tests/test_solvers.py::test_kss_always_fails_below_Kd"),
          "success 0 for N < K d, >= 0.9 for N >= 4 K d", "molrg-kss", _boundary),
    Claim(f"{_P}, figure 8", "K-subspaces with K = 3: phase transition at N = 3 d. (With tau = 0.5 one missing direction "
          "costs sqrt(2)/3 = 0.47 < tau in the mean error over 3 components, so a few trials just below N = 3 d count as "
          "successes, for the oracle too.)",
          ("tests/test_molrg_experiments.py::test_three_components_boundary",),
          "quick grid: success 0 for N < K d, >= 0.9 for N >= 4 K d", "molrg-kss-k3", _boundary),
    Claim(f"{_P}, figure 8 (SGD)", "SGD on the softmax DAE (eq. 9) from the paper's start near the truth (eq. 48; it "
          "USES the true bases), K = 3: success far above N = 3 d. Below the boundary the start lets SGD keep directions "
          "the data do not determine, so it succeeds in some cells where the oracle cannot (setup: n = 48, 20 trials, "
          "300 steps of batch 32, perturbation 0.5)",
          ("tests/test_molrg_experiments.py::test_three_components_paper_sgd",
           "tests/test_molrg_experiments.py::test_three_components_sgd_claim_fails_without_training"),
          "quick grid: >= 0.9 for N >= 4 K d, 0 for N < d, start alone 0 everywhere; steps=0: fails", "molrg-sgd-k3", _sgd),
    Claim(f"{_P}, figure 8 (SGD, truth-free)", "SGD on the softmax DAE from the spectral start (no truth), K = 3: "
          "phase transition at N = 3 d, never below its start (no cell below it, no trial broken), median error of "
          "successes <= 1e-4 (setup: as figure 8, 100 steps then 50 exact full-batch steps at learning rate 1000, "
          "keep-best safeguard on the exact loss (for softmax the paper's hardmax approximation, eqs. 16-17): a "
          "problem whose training raised it returns its start)",
          ("tests/test_molrg_experiments.py::test_three_components_boundary", "tests/test_molrg_experiments.py::test_spectral_sgd_k3_keeps_its_start",
           "tests/test_sgd.py::test_keep_best_never_ends_above_the_start"),
          "quick grid: 0 for N < K d, >= 0.9 for N >= 4 K d; 0 cells below the start; median error <= 1e-4",
          "molrg-sgd-k3-spectral", _sgd),
    Claim(f"{_P}, figure 4c", "SGD on the softmax DAE (eq. 9) from the paper's start near the truth (eq. 48; it USES "
          "the true bases), K = 2: phase transition at N = K d (setup: n = 48, 20 trials, 300 steps of batch 32, "
          "perturbation 0.5)",
          ("tests/test_molrg_experiments.py::test_paper_sgd_recovers_above_k_d",
           "tests/test_molrg_experiments.py::test_paper_sgd_claim_fails_without_training"),
          "success 0 for N < K d, >= 0.9 for N >= 4 K d, start alone 0 everywhere; steps=0: fails", "molrg-sgd", _sgd),
    Claim(f"{_P}, figure 4c (truth-free) and Theorem 3 in practice", "SGD on the softmax DAE from the spectral start "
          "never undoes its start (no cell below it, median error of successes <= 1e-4) and succeeds or fails on the "
          "same data sets as K-subspaces (setup: as figure 4c, 100 steps then 50 exact full-batch steps at learning rate "
          "1000, keep-best safeguard on the exact loss: a problem whose training raised it returns its start)",
          ("tests/test_sgd.py::test_k2_hardmax_agrees_with_k_subspaces",
           "tests/test_molrg_experiments.py::test_spectral_sgd_keeps_its_start_and_agrees_with_kss",
           "tests/test_molrg_experiments.py::test_spectral_sgd_claim_fails_without_the_exact_phase",
           "tests/test_sgd.py::test_keep_best_never_ends_above_the_start"),
          "0 cells below the start; median error <= 1e-4 (> 1e-3 without the exact phase); agreement >= 0.9",
          "molrg-sgd-spectral", _sgd),
    Claim(f"{_P}, Lemma 2 and figure 3b", "The Jacobian of the posterior mean has rank <= sum_k d_k at every SNR; a trained MLP's "
          "Jacobian is low rank in the middle SNR band (energy rank, eq. 46). Setup as the authors' (n = 48, K = 2, d = 7, "
          "N = 700, 18 Heun steps); MLP (width 256, 1000 Adam steps, learning rate 1e-2 cosine-decayed) instead of a "
          "U-Net, 3 trials",
          ("tests/test_jacobian.py::test_lemma2_closed_form_rank_along_trajectories", "tests/test_jacobian.py::test_lemma2_holds_on_random_points_all_snr",
           "tests/test_jacobian.py::test_numerical_rank_energy_is_eq46", "tests/test_molrg_extensions.py::test_jacobian_rank_quick",
           "tests/test_molrg_extensions.py::test_trained_mlp_low_rank_in_middle_band",
           "tests/test_molrg_extensions.py::test_untrained_mlp_is_not_low_rank"),
          "closed form: rank <= sum_k d_k at every level, = d_k of the nearest component at high SNR; "
          "MLP: min energy-rank ratio in 0.2 <= SNR <= 5 at most 2.5 sum_k d_k / n (an untrained MLP exceeds it)",
          "molrg-jacobian-rank",
          _keys("rank_bound", "closed_form_energy_rank_max", "closed_form_bound_violations", "softmax_dae_energy_rank_max",
                "mlp_energy_rank_ratio_mid_min", "rank_bound_ratio", "mlp_threshold_rank_max",
                labels=("bound", "closed form max energy rank", "violations", "trained softmax DAE max energy rank",
                        "MLP min energy-rank ratio in the middle band", "bound ratio", "MLP max threshold rank"))),
    Claim(f"{_P}, figure 7", "As training proceeds, the MLP's Jacobian energy rank approaches the closed form's in the middle "
          "SNR band (figure 7a); the gradient norm of the loss against iterations is shown beside it (7b) without a claim: "
          "the mini-batch gradient norm of this MLP does not shrink. Setup as figure 3b; one run of 1000 Adam steps read at "
          "32, 100, 316 and 1000 steps, 2 trials",
          ("tests/test_molrg_extensions.py::test_jacobian_training_rank_approaches_closed_form",
           "tests/test_molrg_extensions.py::test_jacobian_training_without_training_does_not_approach"),
          "middle-band gap decreases at every snapshot and the last is below 0.7 times the first (untrained: not)",
          "molrg-jacobian-training", _jacobian_training),
    Claim(f"{_P}, memorization to generalization (figure 5a)", "GL of a trained MLP against N/d collapses onto one curve: "
          "the N/d where GL first reaches 0.5 agrees across d, GL rises from ~0 (copies) to ~1 (generalizes). "
          "Setup: n = 16, K = 2, d = 2, 4, 8, MLP width 128 with 750 Adam steps (batch 256, learning rate 2e-2 "
          "cosine-decayed to 1e-3), 2 trials",
          ("tests/test_generalization.py::test_empirical_denoiser_memorizes", "tests/test_generalization.py::test_closed_form_generalizes",
           "tests/test_molrg_generalization.py::test_generalization_collapse_quick",
           "tests/test_molrg_generalization.py::test_undertrained_generalization_fails_collapse"),
          "N/d at GL = 0.5 within one grid step across d; every mean GL in [0, 1.3]; empirical optimum GL < 0.1; "
          "closed form 0.8 to 1.2", "molrg-generalization", _generalization),
    # issue 14: the paper's real-image observations on scikit-learn's bundled digits (8 x 8, n = 64), MLP not U-Net
    Claim(f"{_P}, figure 1a (digits)", "Digits lie near a union of subspaces: K-subspaces (K = 10) clusters them better than KMeans, "
          "and 10 subspaces of dimension d reconstruct held-out digits better than one subspace of dimension d or 2d "
          "(not better than one of dimension 10 d, which nearly fills n = 64). Dataset: sklearn digits; paper: CIFAR-10 etc.",
          ("tests/test_digits.py::test_kss_accuracy_above_kmeans_on_digits", "tests/test_digits.py::test_union_of_subspaces_beats_one_subspace_held_out",
           "tests/test_digits.py::test_k1_switches_the_union_off"),
          "quick grid (d = 2, 4): accuracy > KMeans + 0.03; held-out error below PCA(d) and PCA(2d)", "digits-union-of-subspaces",
          _keys("kss_accuracy", "kss_nmi", "kmeans_accuracy", "kmeans_nmi", "spectral_accuracy", "spectral_nmi", "kss_best_d",
                "union_beats_pca_2d_everywhere", "class_energy_rank",
                labels=("KSS accuracy", "NMI", "KMeans accuracy", "NMI", "SpectralClustering accuracy", "NMI", "at d =",
                        "union below PCA(2d) everywhere", "per-class energy rank"))),
    Claim(f"{_P}, figure 3a (digits)", "A denoiser trained on the digits has a low-rank Jacobian in the middle of the noise range; "
          "the fitted MoLRG's closed form has rank <= sum_k d_k (Lemma 2). Network: EDM-preconditioned MLP, not a U-Net; "
          "MLP trained for 750 Adam steps",
          ("tests/test_digits.py::test_trained_denoiser_jacobian_low_rank_in_middle_band", "tests/test_digits.py::test_untrained_network_is_not_low_rank",
           "tests/test_digits.py::test_closed_form_rank_at_most_sum_of_dims"),
          "trained MLP energy-rank ratio < 0.7 somewhere in sigma in [0.1, 10]; untrained >= 0.7; closed form <= 40 / 64",
          "digits-jacobian-rank",
          _keys("mlp_band_min_ratio", "untrained_mlp_band_min_ratio", "closed_form_rank_max", "closed_form_rank_bound",
                labels=("trained MLP min ratio in the band", "untrained MLP", "closed form max rank", "bound"))),
    Claim(f"{_P}, figure 5b (digits)", "Subsets of smaller intrinsic dimension (one class < two < ten) need fewer samples to generalize. "
          "NOT reproduced here: the MLP (width 128, 750 Adam steps) trained on 2 CPU cores never memorizes (GL > 0.5 at N = 4) and its GL grows above 1 "
          "with N (samples noisier than fresh digits); GL uses pixel nearest neighbours, not the paper's copy-detection descriptor",
          ("tests/test_digits.py::test_gl_increases_with_n_for_each_subset",
           "tests/test_digits.py::test_smaller_intrinsic_dimension_generalizes_at_smaller_n"),
          "Spearman(GL, N) > 0.8 per subset (holds); the ordering test is an expected failure (xfail)", "digits-generalization",
          _prefixed("gl_", "mean GL per N")),
    Claim(f"{_P}, figures 6 and 9 (digits)", "Moving along the leading right singular vectors of the trained denoiser's Jacobian "
          "changes the final image more than random directions, smoothly in the strength (MLP on digits, Heun sampler)",
          ("tests/test_digits.py::test_editing_along_singular_vectors_changes_more_than_random",
           "tests/test_digits.py::test_random_directions_switch_the_editing_off"),
          "change ratio (singular / random) > 2; random edits < 2; v1 step uniformity < 2", "digits-semantic-editing",
          _keys("change_ratio_mean", "change_ratio_std", "v1_ratio_mean", "random_kind_change_ratio_mean", "v1_step_uniformity_max",
                labels=("change ratio", "std", "v1 alone", "random edits (mechanism off)", "v1 max/median step"))),
    Claim(f"{_L}, Theorem 2.1 and figure 1", "The precision P_t stays approximately banded along the OU process; r_eff nearly "
          "independent of d (setup: d = 50 to 102 400 with banded algorithms, b = 1, 2, 4, coupling 0.5 / 0.9 so that "
          "kappa(P_0) stays bounded, one random P_0 per (d, b, coupling))",
          ("tests/test_locality_forward.py::test_r_eff_is_b_at_t0_and_zero_at_large_t",
           "tests/test_locality_experiments.py::test_radius_claim_every_b_c_and_d_of_the_quick_grid",
           "tests/test_locality_experiments.py::test_radius_claim_fails_without_locality",
           "tests/test_locality_banded.py::test_ou_precision_covariance_profile_radius_match_dense"),
          "every (b, c) and d of the quick grid: r_eff(0) = b, max_t r_eff within 1 across d, no failed row; "
          "fails for a mean-field (non-banded) P_0", "locality-radius", _radius),
    Claim(f"{_L}, Theorem 2.1 (decay)", "Off-diagonal entries of P_t decay exponentially in |i - j| (setup: d = 200, "
          "coupling 0.8, profile at the time of largest r_eff)",
          ("tests/test_locality_forward.py::test_decay_rate_recovers_geometric_profile", "tests/test_locality_experiments.py::test_decay_experiment",
           "tests/test_locality_experiments.py::test_decay_claim_fails_for_a_power_law_profile"),
          "exponential fit of m_r has a smaller residual than a power-law fit at every b; fails for a power-law profile",
          "locality-decay", lambda s: _prefixed("decay rate per unit r", "natural-log decay rate per unit r")(s)
          + f"; rmse exponential / power law {_g(s['rmse exponential / power law (per b)'])}"),
    Claim(f"{_L}, Theorem 3.2 / equation 3.14", "Exact localization error e_i(r) = P_t[i,i] - ((Sigma_t)_SS^-1)[i,i]",
          ("tests/test_localization.py::test_matches_brute_force_conditional_variance", "tests/test_localization.py::test_nonnegative_monotone_and_zero_beyond_d"),
          "1e-10 against the brute-force conditional variance", _CHECK,
          _keys("localization-brute-force (max absolute error)", labels=("max absolute error",))),
    Claim(f"{_L}, Proposition 3.3", "The marginal score on S is the L2-optimal localized score; truncation error = optimal + distance",
          ("tests/test_localization.py::test_pythagorean_identity", "tests/test_localization.py::test_marginal_score_matrix_rows"),
          "identity to 1e-10", _CHECK, _keys("pythagorean (max absolute error)", labels=("max absolute error",))),
    Claim(f"{_L}, Theorem 3.2 (rate)", "The localization error decays exponentially in r; per component it does not depend "
          "on d (setup: d = 50 to 102 400, b = 2, t = 0.5, coupling 0.5, 3 trials)",
          ("tests/test_locality_experiments.py::test_error_experiment",
           "tests/test_locality_experiments.py::test_error_claim_every_d_of_the_quick_grid",
           "tests/test_locality_experiments.py::test_error_claim_fails_without_locality",
           "tests/test_locality_banded.py::test_localization_errors_match_dense"),
          "log-linear decay; mean_i e_i(r) within a factor 1.5 across d for r <= 3; fails for a mean-field P_0", "locality-error",
          lambda s: _prefixed("decades per unit r of sum_i e_i", "decades per unit r of sum_i e_i")(s) + "; "
          + "; ".join(f"{k}: {_g(v)}" for k, v in s.items() if k.startswith("mean_i"))),
    Claim(f"{_L}, section 4.1.2 / equation 4.6", "Exact propagation of the DDPM covariance; the non-localized sampler recovers Sigma",
          ("tests/test_locality_ddpm.py::test_nonlocalized_with_true_covariance_recovers_sigma",
           "tests/test_locality_ddpm.py::test_sampled_covariance_matches_exact_within_monte_carlo"),
          "relative spectral error < 1e-2 (DDPM discretization)", _CHECK,
          _keys("ddpm-discretization (max relative spectral error)", labels=("relative spectral error",))),
    Claim(f"{_L}, figure 2", "A moderate radius r balances localization and statistical error (U-shaped curve), for "
          "truncation (eq. 4.5) and the marginal score at every N measured (setup: AR(1), d = 64, N = 32, 64, 100 (the "
          "paper's), 128, r in {0, 2, 4, 8, 12, 16, 24, 32}, 20 data draws (a new one per r, as in the paper), exact "
          "propagation in single precision (within 3e-7 of double); sampled columns drawn from N(0, C_gen))",
          ("tests/test_locality_experiments.py::test_tradeoff_quick_grid_u_shape", "tests/test_locality_ddpm.py::test_tradeoff_curve_shapes_and_limits",
           "tests/test_locality_experiments.py::test_tradeoff_claim_fails_without_statistical_error"),
          "quick grid (N = 64, 100), both methods: minimum strictly inside the r range and below the non-localized error; "
          "no U shape with the true covariance", "locality-tradeoff", _tradeoff),
    Claim(f"{_L}, Remark 3.3(2)", "The best localization radius r*(N) grows with the sample size N (about like log N) "
          "(setup: AR(1), d = 64, T = 1000, exact propagation in single precision, 4 data draws per N shared by every r and "
          "method (paired); the paper states it, without a figure)",
          ("tests/test_locality_experiments.py::test_best_radius_grows_with_N",
           "tests/test_locality_experiments.py::test_best_radius_claim_fails_without_statistical_error"),
          "marginal score: r*(N) non-decreasing and r*(256) > r*(16); fails with the true covariance (no statistical error)",
          "locality-best-radius", lambda s: "; ".join(f"{k}: {_g(v)}" for k, v in s.items())),
    Claim(f"{_L}, Theorem 3.4 / Remark 3.3(1)", "At fixed N the localized DDPM's covariance error (eq. 4.6) stays nearly "
          "flat in the dimension d while the non-localized one grows (about like sqrt(d/N) + d/N in spectral norm) "
          "(setup: AR(1), d = 16 .. 1024, N = 32, 100, 300, marginal score, radius set {4, 8, 16} and the fixed r = 4, "
          "exact banded propagation with a 50-step strided schedule (beta from 0.1/T to 20/T; discretization floor 0.07), "
          "one data draw per point; ratios over d >= 64; measured: non-localized 5.3-8.2x over d = 64 .. 1024, "
          "localized 1.4-2.3x at the best r and 1.1-1.2x at r = 4; with --set target=banded (random banded P_0, b = 2): "
          "non-localized 4.7-6.3x, localized 1.2-1.5x)",
          ("tests/test_locality_dimension.py::test_dimension_shape_on_quick_grid",
           "tests/test_locality_dimension.py::test_dimension_flatness_fails_without_localization",
           "tests/test_locality_dimension.py::test_banded_propagation_matches_dense"),
          "quick grid (d = 64, 512; N = 32, 100; 2 draws; T = 25): non-localized increasing and > 2x; localized < 1.5x at "
          "r = 4 and < 2.5x at the best r; fails with localization off (r >= d - 1); banded = dense propagation to 1e-10",
          "locality-dimension", lambda s: "; ".join(f"{k}: {_g(v)}" for k, v in s.items() if "max / min" in k or "slope" in k)),
    Claim(f"{_L}, section 4.2 (CIR simulator)", "Exact CIR transitions: Gamma stationary law, autocorrelation exp(-a h)",
          ("tests/test_cir.py::test_exact_simulator_marginal_passes_ks_and_autocorrelation_matches",),
          "KS p > 0.01 at 20 000 values; autocorrelation within 0.03", _CHECK,
          _keys("cir-exact-acf (max absolute error)", labels=("max autocorrelation error",))),
    Claim(f"{_L}, figure 3", "A localized neural score with radius r >= 2 reproduces the CIR marginal and autocorrelation "
          "of its training data; r = 0 cannot see the correlation (setup: MLP 32-32, 1200 Adam steps of 128 series scoring "
          "4 random windows each, 100 and 1000 training series, 3 trials, 250 generated series, 100-step strided DDPM sampler)",
          ("tests/test_cir_score.py::test_radius_zero_cannot_see_correlations",
           "tests/test_cir_score.py::test_localized_score_matches_the_training_data",
           "tests/test_cir_score.py::test_claim_fails_without_training"),
          "r >= 2: lag-1 within 0.05 of the training data's; W1 <= 8 x max(training W1, W1 of as many exact series); "
          "r = 0: |lag-1| < 0.1", "cir-radius", _cir),
)


def measured_text(claim: Claim, summaries: Mapping[str, Summary]) -> str:
    """The measured value of ``claim`` from ``summaries`` (by experiment name), or why there is none."""
    if claim.experiment not in summaries:
        return f"not run (`{claim.experiment}`)"
    return claim.measure(summaries[claim.experiment])


def claims_table(summaries: Mapping[str, Summary], *, link: Callable[[str], str] | None = None) -> str:
    """The claims as a Markdown table; ``link(experiment)`` may turn the experiment name into a link target."""
    rows = ["| claim | what it says | tests | tolerance | measured (experiment) |", "|---|---|---|---|---|"]
    for c in CLAIMS:
        tests = "<br>".join(f"`{t.split('::')[-1]}`" for t in c.tests)
        exp = f"[{c.experiment}]({link(c.experiment)})" if link else c.experiment
        cells = [c.source, c.statement, tests, c.tolerance, f"{measured_text(c, summaries)} ({exp})"]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)
