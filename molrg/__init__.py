"""MoLRG: mixtures of low-rank Gaussians, their closed-form posterior, denoisers and solvers.

Training a diffusion model's denoiser on MoLRG data is PCA (one component) or
subspace clustering (several): see SPEC Part A.
"""

from .model import MoLRG, check_bases
from .posterior import (
    posterior_logits,
    posterior_mean,
    posterior_mean_from_bases,
    posterior_weights,
    posterior_weights_from_bases,
    score,
    score_from_bases,
)
from .schedules import EDM, VE, VP, NoiseSchedule, get_schedule, karras_sigmas
from .utils import check_random_state, orthonormalize, random_orthonormal

__version__ = "0.1.0"

__all__ = [
    "MoLRG",
    "check_bases",
    "posterior_logits",
    "posterior_mean",
    "posterior_mean_from_bases",
    "posterior_weights",
    "posterior_weights_from_bases",
    "score",
    "score_from_bases",
    "NoiseSchedule",
    "VP",
    "VE",
    "EDM",
    "get_schedule",
    "karras_sigmas",
    "check_random_state",
    "orthonormalize",
    "random_orthonormal",
]
