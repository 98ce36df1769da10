"""MoLRG: mixtures of low-rank Gaussians, their closed-form posterior, denoisers and solvers.

Training a diffusion model's denoiser on MoLRG data is PCA (one component) or
subspace clustering (several): see SPEC Part A.

The package imports lazily (PEP 562 module ``__getattr__``): ``import molrg``
loads nothing but this file, a public name loads its module on first use, and
the numpy modules (model, posterior, schedules, solvers, metrics, sampling, ...)
never import torch.  Only the torch-backed names (the DAEs, the losses, SGD and
the MLP denoiser) load torch, when first used.

To export a new public name, add ``"name": "module"`` to ``_EXPORTS`` below
(and keep torch out of numpy modules: ``tests/test_imports.py`` checks it).
"""

from __future__ import annotations

from ._lazy import attach

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    # the model and its closed-form posterior (SPEC A1-A3)
    "MoLRG": "model",
    "check_bases": "model",
    "posterior_logits": "posterior",
    "posterior_logits_from_norms": "posterior",
    "posterior_mean": "posterior",
    "posterior_mean_from_bases": "posterior",
    "posterior_weights": "posterior",
    "posterior_weights_from_bases": "posterior",
    "score": "posterior",
    "score_from_bases": "posterior",
    "NoiseSchedule": "schedules",
    "VP": "schedules",
    "VE": "schedules",
    "EDM": "schedules",
    "get_schedule": "schedules",
    "karras_sigmas": "schedules",
    "check_random_state": "utils",
    "orthonormalize": "utils",
    "random_orthonormal": "utils",
    # objectives, metrics and solvers (SPEC A5, A6, A8)
    "pca_objective": "objectives",
    "kss_objective": "objectives",
    "projection_energies": "objectives",
    "subspace_error": "metrics",
    "subspace_error_batch": "metrics",
    "success": "metrics",
    "pca_subspace": "solvers",
    "pca_subspace_batch": "solvers",
    "KSubspaces": "solvers",
    "KSubspacesResult": "solvers",
    "PCASubspace": "solvers",
    "k_subspaces": "solvers",
    "k_subspaces_batch": "solvers",
    "oracle_bases": "solvers",
    "spectral_init": "solvers",
    # extensions (issue 7, SPEC A9)
    "sample": "sampling",
    "sample_euler": "sampling",
    "sample_heun": "sampling",
    "sample_ddpm": "sampling",
    "sample_ddpm_discrete": "sampling",
    "get_sigmas_karras": "sampling",
    "closed_form_denoiser": "sampling",
    "bases_denoiser": "sampling",
    "empirical_denoiser": "sampling",
    "EmpiricalDenoiser": "empirical",
    "empirical_posterior_mean": "empirical",
    "denoiser_jacobian": "jacobian",
    "numerical_rank": "jacobian",
    "rank_along_trajectory": "jacobian",
    "MLPDenoiser": "mlp",  # torch
    "train_mlp_denoiser": "mlp",  # torch
    "generalization_score": "generalization",
    "nearest_distances": "generalization",
    # real images bundled with scikit-learn (issue 14)
    "ImageDataset": "data",
    "load_digits": "data",
    "load_image_patches": "data",
    "energy_curve": "data",
    "intrinsic_dimension": "data",
    "clustering_accuracy": "data",
    # DAEs, losses and SGD (issues 2-3, SPEC A4, A5, A7): torch
    "SingleDAE": "denoisers",
    "SoftmaxDAE": "denoisers",
    "HardmaxDAE": "denoisers",
    "make_denoiser": "denoisers",
    "mc_loss": "loss",
    "closed_form_loss": "loss",
    "loss_coefficients": "loss",
    "DAEResult": "sgd",
    "train_dae": "sgd",
}

# submodules that are reachable as attributes (``molrg.solvers``) without an explicit import
_SUBMODULES = {
    "model", "posterior", "schedules", "utils", "objectives", "metrics", "solvers", "sampling",
    "empirical", "jacobian", "mlp", "generalization", "denoisers", "loss", "sgd",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS, _SUBMODULES)
