"""Locality of the score of Gaussians with banded precision along the diffusion (SPEC Part B).

The package imports lazily (PEP 562 module ``__getattr__``): ``import locality``
loads nothing but this file, a public name loads its module on first use, and
the numpy modules (schedule, precision, forward, localization, ddpm, cir) never
import torch.  Only the CIR score network (:mod:`locality.cir_score`) loads
torch, when one of its names is first used.

To export a new public name, add ``"name": "module"`` to ``_EXPORTS`` below.
"""

from __future__ import annotations

from molrg._lazy import attach

# public name -> submodule that defines it
_EXPORTS = {
    "DDPMSchedule": "schedule",
    # banded storage
    "BandedMatrix": "banded",
    "as_banded": "banded",
    # precision (B1)
    "random_banded_precision": "precision",
    "condition_number": "precision",
    "bandwidth": "precision",
    "band_mask": "precision",
    "ar1_covariance": "precision",
    "ar1_precision": "precision",
    "ar1_sample": "precision",
    "check_precision": "precision",
    "check_covariance": "precision",
    # forward process (B2)
    "ou_covariance": "forward",
    "ou_precision": "forward",
    "ou_covariance_band": "forward",
    "offdiag_profile": "forward",
    "ou_profile": "forward",
    "effective_radius": "forward",
    "radius_from_profile": "forward",
    "ou_effective_radius": "forward",
    "decay_rate": "forward",
    "decay_fit": "forward",
    "DecayFit": "forward",
    # localization error (B3)
    "localization_error": "localization",
    "truncation_error": "localization",
    "localization_decomposition": "localization",
    "LocalizationDecomposition": "localization",
    "marginal_score_matrix": "localization",
    "ou_localization_error": "localization",
    "OULocalizationError": "localization",
    # localized DDPM (B4)
    "empirical_covariance": "ddpm",
    "dsm_precision": "ddpm",
    "LinearScore": "ddpm",
    "generated_covariance": "ddpm",
    "sample_backward": "ddpm",
    "relative_covariance_error": "ddpm",
    "entrywise_error": "ddpm",
    "tradeoff_curve": "ddpm",
    "covariance_errors": "ddpm",
    "gaussian_samples": "ddpm",
    # CIR time series with a localized neural score (B5)
    "simulate_cir": "cir",
    "cir_stationary": "cir",
    "cir_autocorrelation": "cir",
    "cir_wasserstein": "cir",
    "autocorrelation": "cir",
    "autocorrelation_error": "cir",
    "marginal_histogram": "cir",
    "FellerWarning": "cir",
    "LocalizedDiffusion": "cir_score",  # torch
    "LocalScoreMLP": "cir_score",  # torch
    "LocalScoreFit": "cir_score",  # torch
    "train_local_scores": "cir_score",  # torch
    "ddpm_sample": "cir_score",  # torch
    "sampler_steps": "cir_score",  # torch
}

_SUBMODULES = {"banded", "schedule", "precision", "forward", "localization", "ddpm", "cir", "cir_score"}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS, _SUBMODULES)
