r"""Solvers for the two problems the denoising loss reduces to (SPEC A6): the public names in one place.

The code lives in one module per idea (each re-exported here, so
``from molrg.solvers import ...`` keeps working):

* :mod:`molrg._pca`: PCA (paper Problem 12), :func:`pca_subspace`,
  :func:`pca_subspace_batch`, the :class:`PCASubspace` estimator and the
  :func:`oracle_bases` reference (PCA of each true cluster).
* :mod:`molrg._kss`: K-subspaces (paper Problem 18), the :class:`KSubspaces`
  estimator, its function twin :func:`k_subspaces` and the batched
  :func:`k_subspaces_batch`, with their validated options (:class:`KSSOptions`).
* :mod:`molrg._kss_kernel`: the batched assign / refit iteration (private).
* :mod:`molrg._spectral`: the spectral start (:func:`spectral_init`), dense and
  batched for small problems, a sparse q-nearest-neighbour graph for large ones;
  its graphs and embeddings in :mod:`molrg._spectral_graphs` (private).

Numerical choices are documented in each module's docstring.
"""

from __future__ import annotations

from ._kss import INITS, ConvergenceWarning, KSSOptions, KSubspaces, KSubspacesResult, k_subspaces, k_subspaces_batch
from ._kss_kernel import _kss_kernel  # noqa: F401  (re-exported for tests)
from ._pca import PCASubspace, oracle_bases, pca_subspace, pca_subspace_batch
from ._spectral import SPARSE_MIN_N, SPECTRAL_METHODS, spectral_init, spectral_q_values

__all__ = [
    "INITS",
    "pca_subspace",
    "pca_subspace_batch",
    "PCASubspace",
    "oracle_bases",
    "spectral_init",
    "spectral_q_values",
    "SPECTRAL_METHODS",
    "SPARSE_MIN_N",
    "KSubspaces",
    "KSubspacesResult",
    "KSSOptions",
    "k_subspaces",
    "k_subspaces_batch",
    "ConvergenceWarning",
]
