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
from .objectives import kss_objective, pca_objective, projection_energies
from .metrics import subspace_error, subspace_error_batch, success
from .solvers import (
    KSubspaces,
    k_subspaces,
    k_subspaces_batch,
    oracle_bases,
    pca_subspace,
    pca_subspace_batch,
    spectral_init,
)
from .sampling import (
    bases_denoiser,
    closed_form_denoiser,
    empirical_denoiser,
    get_sigmas_karras,
    sample,
    sample_ddpm,
    sample_euler,
    sample_heun,
)
from .empirical import EmpiricalDenoiser, empirical_posterior_mean
from .jacobian import denoiser_jacobian, numerical_rank, rank_along_trajectory
from .mlp import MLPDenoiser, train_mlp_denoiser
from .generalization import generalization_score, nearest_distances
from .denoisers import HardmaxDAE, SingleDAE, SoftmaxDAE, make_denoiser
from .loss import closed_form_loss, loss_coefficients, mc_loss
from .sgd import DAEResult, train_dae

_SGD = [  # issues 2-3, SPEC A4, A5, A7
    "SingleDAE", "SoftmaxDAE", "HardmaxDAE", "make_denoiser",
    "mc_loss", "closed_form_loss", "loss_coefficients", "DAEResult", "train_dae",
]

_EXTENSIONS = [  # issue 7, SPEC A9
    "sample", "sample_euler", "sample_heun", "sample_ddpm", "get_sigmas_karras",
    "closed_form_denoiser", "bases_denoiser", "empirical_denoiser",
    "EmpiricalDenoiser", "empirical_posterior_mean",
    "denoiser_jacobian", "numerical_rank", "rank_along_trajectory",
    "MLPDenoiser", "train_mlp_denoiser", "generalization_score", "nearest_distances",
]

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
    "pca_objective",
    "kss_objective",
    "projection_energies",
    "subspace_error",
    "subspace_error_batch",
    "success",
    "pca_subspace",
    "pca_subspace_batch",
    "KSubspaces",
    "k_subspaces",
    "k_subspaces_batch",
    "oracle_bases",
    "spectral_init",
]
__all__ += _EXTENSIONS

__all__ += _SGD
