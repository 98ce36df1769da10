"""The mixture of low-rank Gaussians (MoLRG), SPEC A1 (paper: Definition 1, eq. 7).

A sample picks component ``k`` with probability ``pi_k`` and returns
``x = U_k a + e`` with ``a ~ N(0, I_{d_k})`` and ``e ~ N(0, delta^2 I_n)``.
Rows of the data matrix are samples: ``X.shape == (N, n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_array, check_dims, check_int, check_random_state, check_real, is_torch
from .utils import random_orthonormal

__all__ = ["MoLRG", "check_bases"]

_ORTHO_TOL = 1e-6
_MAX_SAMPLES = 2**31  # at most this many float64 entries (16 GiB) in one sample call


def check_bases(name: str, bases: Any, n: int | None = None) -> tuple[np.ndarray, ...]:
    """Validate a sequence of orthonormal bases ``U_k`` of shape ``(n, d_k)``.

    Raises ``ValueError`` naming ``name`` when a basis is not 2-D, has more
    columns than rows, has a different ambient dimension, contains NaN/inf or is
    not orthonormal (``||U^T U - I||_max > 1e-6``), and ``TypeError`` when it is
    not a sequence of arrays of real numbers (strings, complex, objects).
    """
    if is_torch(bases) or (isinstance(bases, np.ndarray) and bases.ndim == 2):
        bases = (bases,)
    if isinstance(bases, (str, bytes)) or not hasattr(bases, "__iter__"):
        raise TypeError(f"{name} must be a sequence of (n, d_k) arrays, got {type(bases).__name__}")
    bases = [
        check_array(f"{name}[{k}]", U.detach().cpu().numpy() if is_torch(U) else U, dtype=np.float64, finite=False)
        for k, U in enumerate(bases)
    ]
    if not bases:
        raise ValueError(f"{name} must contain at least one basis")
    n = bases[0].shape[0] if n is None else n
    for k, U in enumerate(bases):
        if U.ndim != 2 or U.shape[1] < 1 or U.shape[1] > U.shape[0]:
            raise ValueError(f"{name}[{k}] must have shape (n, d) with 1 <= d <= n, got {U.shape}")
        if U.shape[0] != n:
            raise ValueError(f"{name}[{k}] has ambient dimension {U.shape[0]}, expected n = {n}")
        if not np.all(np.isfinite(U)):
            raise ValueError(f"{name}[{k}] contains NaN or inf")
        dev = np.abs(U.T @ U - np.eye(U.shape[1])).max()
        if dev > _ORTHO_TOL:
            raise ValueError(f"{name}[{k}] is not orthonormal: max |U^T U - I| = {dev:.3g} > {_ORTHO_TOL}")
    return tuple(bases)


@dataclass(frozen=True, eq=False)
class MoLRG:
    """A mixture of low-rank Gaussians (SPEC A1).

    Parameters
    ----------
    bases : sequence of arrays, each ``(n, d_k)``
        Orthonormal bases ``U_k`` of the component subspaces.
    weights : array ``(K,)``, optional
        Mixing weights ``pi_k > 0`` summing to 1 (within 1e-8); uniform by default.
    noise_std : float, default 0
        Standard deviation ``delta`` of the isotropic ambient noise.

    Examples
    --------
    >>> model = MoLRG.random(48, [4, 4], random_state=0)
    >>> X, labels = model.sample(100, random_state=1)
    >>> X.shape, model.dims
    ((100, 48), (4, 4))
    """

    bases: tuple
    weights: np.ndarray | None = None
    noise_std: float = 0.0

    def __post_init__(self):
        bases = check_bases("bases", self.bases)
        K = len(bases)
        if self.weights is None:
            weights = np.full(K, 1.0 / K)
        else:
            weights = check_array("weights", self.weights, dtype=np.float64, finite=False).reshape(-1)
            if weights.shape != (K,):
                raise ValueError(f"weights must have length K = {K}, got {weights.shape[0]}")
            if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
                raise ValueError(f"weights must be positive, got {weights.tolist()}")
            if abs(weights.sum() - 1.0) > 1e-8:
                raise ValueError(f"weights must sum to 1 (within 1e-8), got sum {weights.sum():.12g}")
        noise_std = check_real("noise_std", self.noise_std, low=0.0)
        for U in bases:
            U.setflags(write=False)
        weights.setflags(write=False)
        object.__setattr__(self, "bases", bases)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "noise_std", noise_std)

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(
        cls,
        n: int,
        dims: int | Sequence[int],
        *,
        weights: Sequence[float] | None = None,
        orthogonal: bool = True,
        noise_std: float = 0.0,
        random_state: Any = None,
    ) -> MoLRG:
        """A random MoLRG in ``R^n`` with component dimensions ``dims``.

        ``orthogonal=True``: the bases are disjoint column blocks of one
        Haar-random ``n x n`` orthogonal matrix (needs ``sum(dims) <= n``; the
        setting of the recovery theorems). ``orthogonal=False``: independent
        Haar-random bases, which may overlap.

        Raises ``ValueError``/``TypeError`` naming the argument for a bad ``n``,
        ``dims`` (positive ints, each ``<= n``), ``weights`` (positive, summing
        to 1), ``orthogonal`` (a bool), ``noise_std`` (finite, ``>= 0``) or
        ``random_state``.
        """
        n = check_int("n", n, low=1)
        dims = check_dims("dims", dims, n)
        if not isinstance(orthogonal, (bool, np.bool_)):
            raise TypeError(f"orthogonal must be True or False, got {orthogonal!r}")
        rng = check_random_state(random_state)
        if orthogonal:
            total = sum(dims)
            if total > n:
                raise ValueError(f"orthogonal bases need sum(dims) <= n, got sum(dims) = {total} > n = {n}")
            Q = random_orthonormal(n, total, random_state=rng)
            cuts = np.cumsum((0,) + dims)
            bases = tuple(Q[:, cuts[k] : cuts[k + 1]] for k in range(len(dims)))
        else:
            bases = tuple(random_orthonormal(n, d, random_state=rng) for d in dims)
        return cls(bases, weights, noise_std)  # type: ignore[arg-type]  # validated in __post_init__

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Ambient dimension."""
        return self.bases[0].shape[0]

    @property
    def dims(self) -> tuple[int, ...]:
        """Component dimensions ``(d_1, ..., d_K)``."""
        return tuple(U.shape[1] for U in self.bases)

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return len(self.bases)

    def projectors(self) -> np.ndarray:
        """Orthogonal projectors ``P_k = U_k U_k^T``, shape ``(K, n, n)``."""
        return np.stack([U @ U.T for U in self.bases])

    def covariances(self) -> np.ndarray:
        """Component covariances ``U_k U_k^T + delta^2 I``, shape ``(K, n, n)``."""
        return self.projectors() + self.noise_std**2 * np.eye(self.n)

    # ------------------------------------------------------------------ sampling
    def sample(self, N: int, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``N`` samples.

        Parameters
        ----------
        N : int
            Number of samples, ``1 <= N <= 2**31 / n`` (at most 2**31 entries, 16 GiB).
        random_state : None, int or numpy.random.Generator

        Returns
        -------
        X : array ``(N, n)``
            One sample per row.
        labels : int array ``(N,)``
            The component of each sample.
        """
        N = check_int("N", N, low=1, high=_MAX_SAMPLES // self.n)
        rng = check_random_state(random_state)
        labels = rng.choice(self.n_components, size=N, p=self.weights)
        X = np.empty((N, self.n))
        for k, U in enumerate(self.bases):
            idx = np.flatnonzero(labels == k)
            X[idx] = rng.standard_normal((idx.size, U.shape[1])) @ U.T
        if self.noise_std > 0:
            X += self.noise_std * rng.standard_normal(X.shape)
        return X, labels

    def __repr__(self) -> str:
        return (
            f"MoLRG(n={self.n}, dims={self.dims}, weights={np.round(np.asarray(self.weights), 4).tolist()}, "
            f"noise_std={self.noise_std})"
        )
