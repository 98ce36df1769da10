"""Locality of the score of Gaussians with banded precision along the diffusion (SPEC Part B)."""

from .schedule import DDPMSchedule
from .precision import (
    ar1_covariance,
    ar1_precision,
    ar1_sample,
    band_mask,
    bandwidth,
    check_covariance,
    check_precision,
    condition_number,
    random_banded_precision,
)
from .forward import (
    decay_rate,
    effective_radius,
    offdiag_profile,
    ou_covariance,
    ou_effective_radius,
    ou_precision,
    ou_profile,
    radius_from_profile,
)
from .localization import (
    LocalizationDecomposition,
    localization_decomposition,
    localization_error,
    marginal_score_matrix,
    truncation_error,
)
from .ddpm import (
    LinearScore,
    dsm_precision,
    empirical_covariance,
    entrywise_error,
    generated_covariance,
    relative_covariance_error,
    sample_backward,
    tradeoff_curve,
)
from .cir import (
    FellerWarning,
    autocorrelation,
    autocorrelation_error,
    cir_autocorrelation,
    cir_stationary,
    cir_wasserstein,
    marginal_histogram,
    simulate_cir,
)
from .cir_score import LocalizedDiffusion, LocalScoreMLP, ddpm_sample, sampler_steps

__all__ = [
    "DDPMSchedule",
    # precision (B1)
    "random_banded_precision",
    "condition_number",
    "bandwidth",
    "band_mask",
    "ar1_covariance",
    "ar1_precision",
    "ar1_sample",
    "check_precision",
    "check_covariance",
    # forward process (B2)
    "ou_covariance",
    "ou_precision",
    "offdiag_profile",
    "ou_profile",
    "effective_radius",
    "radius_from_profile",
    "ou_effective_radius",
    "decay_rate",
    # localization error (B3)
    "localization_error",
    "truncation_error",
    "localization_decomposition",
    "LocalizationDecomposition",
    "marginal_score_matrix",
    # localized DDPM (B4)
    "empirical_covariance",
    "dsm_precision",
    "LinearScore",
    "generated_covariance",
    "sample_backward",
    "relative_covariance_error",
    "entrywise_error",
    "tradeoff_curve",
    # CIR time series with a localized neural score (B5)
    "simulate_cir",
    "cir_stationary",
    "cir_autocorrelation",
    "cir_wasserstein",
    "autocorrelation",
    "autocorrelation_error",
    "marginal_histogram",
    "FellerWarning",
    "LocalizedDiffusion",
    "LocalScoreMLP",
    "ddpm_sample",
    "sampler_steps",
]
