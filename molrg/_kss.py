r"""K-subspaces clustering (SPEC A6; paper Problem 18): estimator, function twins, batched driver.

:class:`KSubspaces` is a scikit-learn estimator; :func:`k_subspaces` is its
function twin (it calls the estimator); :func:`k_subspaces_batch` solves ``B``
independent problems at once.  All three validate their options once into a
frozen :class:`KSSOptions` and hand it to :func:`_solve`, which runs the
spectral (:mod:`molrg._spectral`) or random start and the batched iteration
(:mod:`molrg._kss_kernel`) and keeps the best run of every problem.

The objective ``sum_i max_k ||U_k^T x_i||^2`` is computed on data rescaled by a
power of 2 (exact, :func:`molrg._pca._rescale`) and scaled back, so bases and
labels are the same for ``c X`` as for ``X`` whatever the magnitude of ``c``.
"""

from __future__ import annotations

import dataclasses
import warnings
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._kss_kernel import _kss_kernel, _reduce
from ._pca import _rescale, _sign_flip, check_batch3, check_input
from ._spectral import SPECTRAL_METHODS, _resolve_alias, _spectral_runs, _spectral_starts, check_q
from ._validation import check_choice, check_dims, check_int, check_random_state, problem_generators
from .utils import random_orthonormal

__all__ = ["INITS", "KSubspaces", "KSubspacesResult", "KSSOptions", "k_subspaces", "k_subspaces_batch", "ConvergenceWarning"]

INITS = ("spectral", "random")


@dataclasses.dataclass(frozen=True)
class KSSOptions:
    """The validated options of one K-subspaces call (built once by :meth:`create`, then passed down)."""

    dims: tuple[int, ...]
    init: str = "spectral"
    n_init: int = 1
    max_iter: int = 100
    q: tuple[int, ...] | None = None
    spectral_method: str = "auto"

    @classmethod
    def create(cls, dims, n, *, init="spectral", n_init=1, max_iter=100, q=None, spectral_method="auto"):
        """Validate every option against the ambient dimension ``n``; raises ValueError/TypeError naming it."""
        dims = check_dims("dims", dims)
        if max(dims) > n:
            raise ValueError(f"dims must be at most n_features = {n} (the columns of X), got dims = {dims}")
        return cls(
            dims=dims,
            init=check_choice("init", init, INITS),
            n_init=check_int("n_init", n_init, low=1),
            max_iter=check_int("max_iter", max_iter, low=1),
            q=check_q(q),
            spectral_method=check_choice("spectral_method", spectral_method, SPECTRAL_METHODS),
        )


@dataclasses.dataclass(frozen=True)
class KSubspacesResult:
    """Result of :func:`k_subspaces_batch` (and of :func:`k_subspaces`, without the leading axis)."""

    bases: tuple  #: K arrays ``(B, n, d_k)``
    labels: np.ndarray  #: ``(B, N)`` int, -1 on padding rows
    objective: np.ndarray  #: ``(B,)`` ``sum_i max_k ||U_k^T x_i||^2``
    n_iter: np.ndarray  #: ``(B,)`` refits of the kept run
    converged: np.ndarray  #: ``(B,)`` bool: labels stopped changing before ``max_iter``

    def to_frame(self) -> pd.DataFrame:
        """One row per problem: ``problem``, ``objective``, ``n_iter``, ``converged``."""
        obj = np.atleast_1d(self.objective)
        return pd.DataFrame(
            {"problem": np.arange(obj.size), "objective": obj, "n_iter": np.atleast_1d(self.n_iter),
             "converged": np.atleast_1d(self.converged)}
        )

    def __iter__(self):  # the old NamedTuple's unpacking, for one release
        warnings.warn(
            "unpacking a KSubspacesResult is deprecated; use its fields (bases, labels, objective, n_iter)",
            FutureWarning,
            stacklevel=2,
        )
        return iter((self.bases, self.labels, self.objective, self.n_iter))


def k_subspaces_batch(
    X: Any,
    dims: Any,
    *,
    mask: Any = None,
    init: str = "spectral",
    n_init: int = 1,
    max_iter: int = 100,
    q: Any = None,
    random_state: Any = None,
    spectral_method: str = "auto",
    spectral_backend: str | None = None,
) -> KSubspacesResult:
    """K-subspaces on ``B`` independent problems at once (SPEC A6; paper Problem 18).

    All problems (and all their restarts) run through one batched kernel:
    assignments are one batched matrix product, refits one batched ``eigh``
    over ``(runs, K)`` scatter matrices; each run stops as soon as its labels
    stop changing.  Problems of very different ``N`` are processed in groups of
    similar ``N`` (their padding cut), so that small problems do not pay for the
    largest one.

    Parameters
    ----------
    X : array ``(B, N, n)``
        Problems stacked along the first axis, samples in rows, finite.
    dims : int or sequence of K ints
        Subspace dimensions ``d_k`` (shared by the batch; may differ from each other).
    mask : bool array ``(B, N)``, optional
        Valid rows, so problems with different ``N`` share one padded batch.
    init : {"spectral", "random"}, default "spectral"
        Starting bases (see :func:`molrg.spectral_init`); ``random`` draws Haar bases.
    n_init : int, default 1
        Restarts per problem; the run with the largest objective is kept.  With
        ``spectral`` each restart also tries every ``q`` of
        :func:`molrg.solvers.spectral_q_values`; the dense spectral start is
        deterministic, so there restarts repeat the same runs (they differ with
        the ``sparse`` and ``sklearn`` methods through their eigensolver's
        seed): use several ``q`` values instead.
    max_iter : int, default 100
        Maximum number of refits per run (a :class:`ConvergenceWarning` is
        issued if some run reaches it).
    q : None, int or sequence of ints
        Neighbours kept per row by the spectral start.
    random_state : None, int, Generator, or a sequence of B of them
        A sequence gives problem ``b`` its own stream, so its result does not
        depend on the batch it is solved in; a single value gives ``B`` child
        streams, tied to batch positions (:func:`molrg.utils.problem_generators`).
    spectral_method : {"auto", "dense", "sparse", "sklearn"}, default "auto"
        Clustering step of the spectral start (:mod:`molrg._spectral`):
        ``auto`` is ``dense`` (batched ``eigh``) up to 1000 valid rows and
        ``sparse`` (q-NN graph, LOBPCG) above.
    spectral_backend : {"batched", "sklearn"}, optional
        Deprecated name of ``spectral_method`` (``"batched"`` is ``"dense"``).

    Returns
    -------
    KSubspacesResult
        K arrays ``(B, n, d_k)``, ``(B, N)`` labels (-1 on padding), ``(B,)``
        objectives, refit counts and convergence flags.
    """
    spectral_method = _resolve_alias(spectral_method, spectral_backend, "spectral_backend", "spectral_method")
    X, mask = check_batch3(X, mask)
    B, N, n = X.shape
    opts = KSSOptions.create(dims, n, init=init, n_init=n_init, max_iter=max_iter, q=q, spectral_method=spectral_method)
    res = _solve(X, mask, opts, problem_generators(random_state, B))
    _warn_unconverged(res.converged, opts.max_iter, stacklevel=2)
    return res


def k_subspaces(
    X: Any,
    dims: Any,
    *,
    init: str = "spectral",
    n_init: int = 1,
    max_iter: int = 100,
    q: Any = None,
    random_state: Any = None,
    spectral_method: str = "auto",
    spectral_backend: str | None = None,
) -> KSubspacesResult:
    """Function twin of :class:`KSubspaces` for one problem ``X`` ``(N, n)``: ``KSubspaces(...).fit(X)``.

    Returns a :class:`KSubspacesResult` without the leading axis: bases a tuple
    of K arrays ``(n, d_k)``, labels ``(N,)``, a float objective, an int count.

    Examples
    --------
    >>> from molrg import MoLRG
    >>> X, y = MoLRG.random(48, [2, 2], random_state=0).sample(40, random_state=1)
    >>> res = k_subspaces(X, [2, 2], random_state=0)
    >>> [U.shape for U in res.bases]
    [(48, 2), (48, 2)]
    """
    spectral_method = _resolve_alias(spectral_method, spectral_backend, "spectral_backend", "spectral_method")
    est = KSubspaces(
        dims, init=init, n_init=n_init, max_iter=max_iter, q=q, random_state=random_state, spectral_method=spectral_method
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est.fit(X)
    for w in caught:  # re-issue, pointing at the caller of k_subspaces
        warnings.warn(w.message, w.category, stacklevel=2)
    return KSubspacesResult(est.bases_, est.labels_, est.objective_, est.n_iter_, est.converged_)


class KSubspaces(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-subspaces clustering (SPEC A6; paper Problem 18), a scikit-learn estimator.

    Maximizes ``sum_i max_k ||U_k^T x_i||^2`` over orthonormal bases ``U_k``
    (equivalently minimizes the squared distances to the nearest subspace),
    the problem that training the hardmax DAE reduces to (Theorem 3).

    Parameters
    ----------
    dims : int or sequence of K ints
        Subspace dimensions (an int means K = 1).
    init : {"spectral", "random"}, default "spectral"
    n_init : int, default 1
        Restarts; the best objective is kept (see :func:`k_subspaces_batch`).
    max_iter : int, default 100
    q : None, int or sequence of ints
        Neighbours of the spectral start (:func:`molrg.solvers.spectral_q_values`).
    random_state : None, int, SeedSequence or Generator
    spectral_method : {"auto", "dense", "sparse", "sklearn"}, default "auto"
        Clustering step of the spectral start (:mod:`molrg._spectral`).
    spectral_backend : {"batched", "sklearn"}, optional
        Deprecated name of ``spectral_method``.

    Attributes
    ----------
    bases_ : tuple of K arrays ``(n, d_k)``
    labels_ : int array ``(N,)``
    objective_ : float
        ``sum_i max_k ||U_k^T x_i||^2`` (``inf`` when it exceeds the float64 range).
    n_iter_ : int
        Refits done by the kept run.
    converged_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> from molrg import MoLRG, subspace_error
    >>> model = MoLRG.random(48, [4, 4], random_state=0)
    >>> X, _ = model.sample(60, random_state=1)
    >>> km = KSubspaces([4, 4], random_state=0).fit(X)
    >>> bool(subspace_error(km.bases_, model.bases) < 1e-6)
    True
    """

    _parameter_constraints: dict = {
        "dims": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "init": [StrOptions(set(INITS))],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "q": [None, Interval(Integral, 1, None, closed="left"), "array-like"],
        "random_state": [None, Interval(Integral, 0, None, closed="left"), np.random.Generator, np.random.SeedSequence],
        "spectral_method": [StrOptions(set(SPECTRAL_METHODS))],
        "spectral_backend": [None, Hidden(StrOptions({"batched", "sklearn", "deprecated"}))],
    }

    def __init__(
        self,
        dims=(2, 2),
        *,
        init="spectral",
        n_init=1,
        max_iter=100,
        q=None,
        random_state=None,
        spectral_method="auto",
        spectral_backend=None,
    ):
        self.dims = dims
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.q = q
        self.random_state = random_state
        self.spectral_method = spectral_method
        self.spectral_backend = spectral_backend

    def fit(self, X, y=None):
        """Fit on ``X`` ``(N, n)`` (finite real numbers; float32 stays float32); returns ``self``."""
        self._validate_params()
        method = _resolve_alias(self.spectral_method, self.spectral_backend, "spectral_backend", "spectral_method")
        X = check_input(self, X, reset=True)
        opts = KSSOptions.create(
            self.dims, X.shape[1], init=self.init, n_init=self.n_init, max_iter=self.max_iter, q=self.q,
            spectral_method=method,
        )
        res = _solve(X[None], np.ones((1, X.shape[0]), bool), opts, [check_random_state(self.random_state)])
        _warn_unconverged(res.converged, opts.max_iter, stacklevel=2)
        self.bases_ = tuple(U[0] for U in res.bases)
        self.labels_ = res.labels[0]
        self.objective_ = float(res.objective[0])
        self.n_iter_ = int(res.n_iter[0])
        self.converged_ = bool(res.converged[0])
        return self

    def transform(self, X):
        """Distances ``||x_i - U_k U_k^T x_i||`` ``(N, K)`` of every row to every fitted subspace."""
        check_is_fitted(self)
        X = check_input(self, X, reset=False)
        Xs, scale = _rescale(X[None])
        out = np.empty((X.shape[0], len(self.bases_)), dtype=X.dtype)
        for k, U in enumerate(self.bases_):
            U = U.astype(X.dtype, copy=False)
            R = Xs[0] - (Xs[0] @ U) @ U.T
            out[:, k] = np.linalg.norm(R, axis=1) / scale[0]
        return out

    def predict(self, X):
        """Nearest subspace ``argmax_k ||U_k^T x_i||`` (= ``argmin`` of :meth:`transform`) of each row."""
        check_is_fitted(self)
        X = check_input(self, X, reset=False)
        Xs, _ = _rescale(X[None])
        return np.stack([((Xs[0] @ U.astype(X.dtype, copy=False)) ** 2).sum(-1) for U in self.bases_], -1).argmax(-1)

    def score(self, X, y=None):
        """Opposite of the squared distances of ``X`` to their nearest subspace (``KMeans.score`` analogue)."""
        D = self.transform(X).astype(np.float64)
        return -float((D.min(1) ** 2).sum())

    @property
    def _n_features_out(self):
        return len(self.bases_)


# --------------------------------------------------------------------------- the driver
def _warn_unconverged(conv: np.ndarray, max_iter: int, stacklevel: int) -> None:
    if not np.all(conv):
        warnings.warn(
            f"K-subspaces did not converge within max_iter = {max_iter} iterations for "
            f"{int((~np.asarray(conv)).sum())} of {np.size(conv)} problem(s); increase max_iter",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )


def _count_groups(counts: np.ndarray, ratio: float = 1.25, floor: int = 8) -> list[np.ndarray]:
    """Problems grouped by their number of valid rows: each group spans counts ``<= max(floor, ratio * smallest)``."""
    order = np.argsort(counts, kind="stable")
    groups, start = [], 0
    for i in range(1, order.size + 1):
        if i == order.size or counts[order[i]] > max(floor, ratio * counts[order[start]]):
            groups.append(np.sort(order[start:i]))
            start = i
    return groups


def _solve(X: np.ndarray, mask: np.ndarray, opts: KSSOptions, rngs: list) -> KSubspacesResult:
    """Validated inputs -> :class:`KSubspacesResult`.  Shared by every public entry point.

    Problems are solved in groups of similar valid-row counts
    (:func:`_count_groups`), each with its valid rows gathered to the front and
    its padding cut to the group's largest count, so the row-space dimension
    ``r`` (and the cost of every ``r x r`` eigendecomposition) follows the
    problem sizes instead of the batch's largest ``N``.  Every problem uses its
    own generator, so the grouping does not change which random numbers it gets.
    """
    B, N, n = X.shape
    counts = mask.sum(-1)
    groups = _count_groups(counts)
    if len(groups) == 1 and counts.max() == N:
        return _solve_block(X, mask, opts, rngs)
    bases = [np.empty((B, n, d), dtype=X.dtype) for d in opts.dims]
    labels = np.full((B, N), -1, dtype=np.int64)
    obj, n_iter, conv = np.empty(B), np.empty(B, dtype=np.int64), np.empty(B, dtype=bool)
    for idx in groups:
        c = max(int(counts[idx].max()), 1)
        pos = np.argsort(~mask[idx], axis=-1, kind="stable")[:, :c]  # valid rows first, in order
        Xg = np.take_along_axis(X[idx], pos[..., None], 1)
        mg = np.take_along_axis(mask[idx], pos, 1)
        res = _solve_block(Xg, mg, opts, [rngs[i] for i in idx])
        for k in range(len(opts.dims)):
            bases[k][idx] = res.bases[k]
        labels[idx[:, None], pos] = res.labels
        obj[idx], n_iter[idx], conv[idx] = res.objective, res.n_iter, res.converged
    return KSubspacesResult(tuple(bases), labels, obj, n_iter, conv)


def _solve_block(X: np.ndarray, mask: np.ndarray, opts: KSSOptions, rngs: list) -> KSubspacesResult:
    """:func:`_solve` on one padded block (no grouping)."""
    B, N, n = X.shape
    dims = opts.dims
    K, dmax = len(dims), max(dims)
    Xm, scale = _rescale(np.where(mask[..., None], X, 0).astype(X.dtype, copy=False))
    Z, Q = _reduce(Xm, dmax)
    labels0 = None
    if opts.init == "random":
        S = opts.n_init
        run_prob = np.repeat(np.arange(B), S)
        U0 = np.zeros((B, S, K, n, dmax), dtype=X.dtype)
        for b in range(B):
            for s in range(S):
                for k, d in enumerate(dims):
                    U0[b, s, k, :, :d] = random_orthonormal(n, d, random_state=rngs[b])
        U0 = U0.reshape(B * S, K, n, dmax)
        if Q is not None:  # project the Haar bases: same energies for points in the row space
            U0 = np.swapaxes(Q, -1, -2)[run_prob][:, None] @ U0
    elif opts.init == "spectral":
        run_prob, run_q, run_seed = _spectral_runs(mask.sum(-1), dims, opts.q, rngs, opts.spectral_method, opts.n_init)
        U0, labels0 = _spectral_starts(Z, mask, run_prob, run_q, run_seed, dims, opts.spectral_method)
    else:  # pragma: no cover - validated before
        raise ValueError(f"init must be one of {INITS}, got {opts.init!r}")

    U, labels, obj, n_iter, conv = _kss_kernel(Z, mask, run_prob, U0, dims, opts.max_iter, labels0)

    # best run per problem (first on ties): runs of one problem are contiguous
    order = np.lexsort((-obj, run_prob))
    first = np.r_[0, np.flatnonzero(np.diff(run_prob[order])) + 1]
    sel = order[first]
    U, labels, obj, n_iter, conv = U[sel], labels[sel], obj[sel], n_iter[sel], conv[sel]
    if Q is not None:
        U = Q[:, None] @ U
    bases = tuple(_sign_flip(np.ascontiguousarray(U[:, k, :, :d])) for k, d in enumerate(dims))
    with np.errstate(over="ignore"):
        obj = obj / scale / scale  # back to the data's scale (inf beyond the float64 range)
    return KSubspacesResult(bases, labels, obj, n_iter, conv)
