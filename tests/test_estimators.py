"""The solvers as scikit-learn estimators, the large-N spectral start, scale robustness and bad input (issues 12, 16, 17)."""

import numpy as np
import pytest
import scipy.sparse
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import molrg
from molrg import (
    KSubspaces,
    MoLRG,
    PCASubspace,
    _kss,
    _spectral,
    k_subspaces,
    k_subspaces_batch,
    pca_subspace,
    spectral_init,
    subspace_error,
)


def _expected_failures(estimator):
    """Checks that contradict the model, each with its reason (scikit-learn's expected-failure mechanism)."""
    if isinstance(estimator, KSubspaces):
        return {
            "check_clustering": (
                "K-subspaces clusters points by the subspace through the origin they lie near; the check's "
                "Gaussian blobs around distinct centres are not a union of subspaces, so the ARI > 0.4 it "
                "requires is not a property of this model"
            ),
        }
    return {}


@parametrize_with_checks([KSubspaces(), PCASubspace()], expected_failed_checks=_expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.fixture
def data(rng):
    model = MoLRG.random(24, [3, 3], noise_std=0.02, random_state=rng)
    X, y = model.sample(90, random_state=rng)
    return model, X, y


def _same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_estimator_api_clone_predict_transform(data):
    model, X, y = data
    km = KSubspaces([3, 3], random_state=0)
    with pytest.raises(NotFittedError):
        km.predict(X)
    with pytest.raises(NotFittedError):
        km.transform(X)
    twin = clone(km)
    assert twin.get_params() == km.get_params() and twin is not km
    labels = km.fit_predict(X)
    assert km.n_features_in_ == 24 and km.converged_
    assert_array_equal(labels, km.labels_)
    assert_array_equal(km.predict(X), km.labels_)
    D = km.transform(X)
    assert D.shape == (90, 2)
    assert_array_equal(D.argmin(1), km.labels_)
    # distance to the nearest subspace, squared, is ||x||^2 minus its energy there
    E = molrg.projection_energies(X, km.bases_)
    assert_allclose(D.min(1) ** 2, (X**2).sum(1) - E.max(1), rtol=1e-8, atol=1e-10)
    assert_allclose(km.score(X), -(D.min(1) ** 2).sum(), rtol=1e-12)
    assert list(km.get_feature_names_out()) == ["ksubspaces0", "ksubspaces1"]
    assert _same_partition(labels, y)
    assert subspace_error(km.bases_, model.bases) < 0.05
    # the function twin is the estimator
    res = k_subspaces(X, [3, 3], random_state=0)
    assert_array_equal(res.labels, km.labels_)
    assert res.objective == km.objective_ and res.n_iter == km.n_iter_
    assert list(res.to_frame().columns) == ["problem", "objective", "n_iter", "converged"]


def test_grid_search_over_dims_and_n_init(data):
    model, X, y = data
    search = GridSearchCV(KSubspaces(random_state=0), {"dims": [(1, 1), (3, 3)], "n_init": [1, 2]}, cv=3)
    search.fit(X)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["dims"] == (3, 3)  # score: minus the residual energy
    assert _same_partition(search.best_estimator_.predict(X), y)


def test_pipeline_with_a_scaler(data):
    model, X, y = data
    pipe = make_pipeline(StandardScaler(with_mean=False), KSubspaces([3, 3], random_state=0))
    labels = pipe.fit_predict(X)
    assert _same_partition(labels, y)
    assert pipe.transform(X).shape == (90, 2)


def test_pca_estimator_matches_function(data):
    model, X, y = data
    pca = PCASubspace(d=4).fit(X)
    assert_allclose(pca.basis_, pca_subspace(X, 4), atol=0)
    assert_allclose(pca.inverse_transform(pca.transform(X)), X @ pca.basis_ @ pca.basis_.T, atol=1e-12)
    with pytest.raises(ValueError, match="d must be at most n_features = 24"):
        PCASubspace(d=25).fit(X)


# ----------------------------------------------------------------------------- large N: the sparse spectral start
def test_sparse_affinity_equals_dense_affinity(rng):
    """Same q nearest |cos| neighbours and weights as the dense path (continuous data: no ties)."""
    Z = rng.standard_normal((60, 7))
    for q in (1, 4, 9):
        dense = _spectral._knn_affinity(Z[None], np.array([q]))[0]
        sparse = _spectral.sparse_knn_affinity(Z, [q])[q]
        assert scipy.sparse.issparse(sparse) and sparse.nnz <= 2 * 60 * q
        assert_allclose(sparse.toarray(), dense, atol=1e-12)


def test_blocked_neighbour_search_is_exact_with_ties(rng, monkeypatch):
    """Blocked float32 search = a full stable sort of |cos| (ties: lowest index), over many row blocks."""
    from molrg import _spectral_graphs as g

    Z = rng.standard_normal((700, 6))
    Z[350:420] = Z[:70] * -2.0  # exact |cos| ties: the lower index must come first
    Zn = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    S = np.abs(Zn.astype(np.float32) @ Zn.astype(np.float32).T)
    np.fill_diagonal(S, -1)
    monkeypatch.setattr(g, "_KNN_BLOCK", 700 * 37)  # 37 rows per block: 19 blocks, a short last one
    for q in (1, 7, 30):
        ind = g._knn_abs_cos(Zn, q)
        ref = np.argsort(-S, axis=1, kind="stable")[:, :q]
        vals = np.take_along_axis(S, ind, 1)
        assert_array_equal(vals, np.take_along_axis(S, ref, 1))  # the q largest, in order
        assert (ind == ref).mean() > 0.999  # same indices (float32 rounding may swap exact-tie twins)
        assert np.all(ind != np.arange(700)[:, None])
        assert np.all(ind[:70, 0] == np.arange(350, 420))  # the exact twin first


def _components_graph(rng, K, N_each, n=30, d=2):
    """K exactly orthogonal subspaces (disjoint coordinates): the |cos| graph has no edge between them."""
    X = np.zeros((K * N_each, n))
    for k in range(K):
        X[k * N_each : (k + 1) * N_each, k * d : (k + 1) * d] = rng.standard_normal((N_each, d))
    return X, np.repeat(np.arange(K), N_each)


def test_components_give_the_labels_without_an_eigensolver(rng, monkeypatch):
    from molrg import _spectral_graphs as g

    X, y = _components_graph(rng, 4, 300)
    monkeypatch.setattr(g, "_top_eigenvectors", lambda *a: pytest.fail("eigensolver called with C = K"))
    lab = g._sparse_labels(X, np.array([10]), np.array([0]), 4)[0]
    assert _same_partition(lab, y)
    # more components than K: the K largest are the groups, the rest is left to K-subspaces (-1)
    X5, y5 = _components_graph(rng, 5, 300)
    X5, y5 = X5[: 4 * 300 + 40], y5[: 4 * 300 + 40]  # the fifth is small
    lab = g._sparse_labels(X5, np.array([10]), np.array([0]), 4)[0]
    assert np.all(lab[y5 == 4] == -1) and _same_partition(lab[y5 < 4], y5[y5 < 4])
    km = KSubspaces([2] * 4, spectral_method="sparse", random_state=0).fit(X5)
    assert np.all(km.labels_ >= 0)


def test_sparse_eigenvectors_match_the_dense_eigenspace(rng, monkeypatch):
    """C < K: constrained LOBPCG, stopped by the residual/gap rule, spans the dense top-K eigenspace."""
    from molrg import _spectral_graphs as g

    model = MoLRG.random(40, [3] * 4, noise_std=0.1, random_state=rng)
    X, y = model.sample(1200, random_state=rng)
    A = g.sparse_knn_affinity(X, [10])[10]
    deg = np.asarray(A.sum(1)).ravel()
    M = A.toarray() / np.sqrt(deg)[:, None] / np.sqrt(deg)[None]
    w, V = np.linalg.eigh(M)
    assert w[-4] - w[-5] > 0.01  # a clear gap: the top-4 eigenspace is defined
    C = scipy.sparse.csgraph.connected_components(A, directed=False)[0]
    assert C < 4
    V0 = V[:, -C:]  # the exact top-C block

    def angle(U):
        return np.linalg.norm(U - V[:, -4:] @ (V[:, -4:].T @ U), 2)

    got = g._top_eigenvectors(scipy.sparse.csr_matrix(M), 4, V0, np.random.default_rng(0))
    assert angle(np.linalg.qr(got)[0]) < 0.1
    monkeypatch.setattr(g, "_EIG_MAXITER", 1)  # switched off: one LOBPCG step from the random start
    monkeypatch.setattr(g, "_EIG_ROUND", 1)
    rough = g._top_eigenvectors(scipy.sparse.csr_matrix(M), 4, V0, np.random.default_rng(0))
    assert angle(np.linalg.qr(rough)[0]) > 0.1


def test_auto_method_goes_sparse_above_the_threshold(rng, monkeypatch):
    model = MoLRG.random(20, [3, 3, 3], noise_std=0.02, random_state=rng)
    X, y = model.sample(_spectral.SPARSE_MIN_N + 200, random_state=rng)
    called = []
    dense = _spectral._spectral_cluster_batched
    monkeypatch.setattr(_spectral, "_spectral_cluster_batched", lambda *a: called.append(1) or dense(*a))
    km = KSubspaces([3, 3, 3], random_state=0).fit(X)
    assert not called  # no (N, N) eigendecomposition above the threshold
    assert subspace_error(km.bases_, model.bases) < 0.05 and _same_partition(km.labels_, y)
    explicit = KSubspaces([3, 3, 3], random_state=0, spectral_method="sparse").fit(X)
    assert_array_equal(explicit.labels_, km.labels_)
    KSubspaces([3, 3, 3], random_state=0).fit(X[:300])
    assert called  # and the dense batched path below it


def test_top_eigenpair_refit_equals_full_eigh(rng, monkeypatch):
    """Refits for large r (top d eigenpairs, or an SVD of few rows) span the same subspaces as the full eigh."""
    from molrg import _kss_kernel

    Z = rng.standard_normal((2, 300, 140))
    labels = rng.integers(0, 3, size=(2, 300))
    labels[1, :200] = 0  # cluster 0: more rows than r (eigh), 1 and 2: fewer (SVD)
    U, lam = _kss_kernel._refit(Z, labels, 3, 4)
    monkeypatch.setattr(_kss_kernel, "_SUBSET_EIGH_MIN", 10**6)
    U_ref, lam_ref = _kss_kernel._refit(Z, labels, 3, 4)
    assert_allclose(lam, lam_ref, rtol=1e-10)
    assert_allclose(U @ np.swapaxes(U, -1, -2), U_ref @ np.swapaxes(U_ref, -1, -2), atol=1e-8)


def test_gathered_refit_above_1000_rows_equals_masked_products(rng, monkeypatch):
    """Large N: per-cluster gathered scatter matrices give the batched path's subspaces and eigenvalues."""
    from molrg import _kss_kernel

    Z = rng.standard_normal((2, 1500, 12))
    labels = rng.integers(-1, 3, size=(2, 1500))  # -1: rows in no cluster
    U, lam = _kss_kernel._refit(Z, labels, 3, 4)
    monkeypatch.setattr(_kss_kernel, "_GATHER_MIN_N", 10**9)
    U_ref, lam_ref = _kss_kernel._refit(Z, labels, 3, 4)
    assert_allclose(lam, lam_ref, rtol=1e-10)
    assert_allclose(U @ np.swapaxes(U, -1, -2), U_ref @ np.swapaxes(U_ref, -1, -2), atol=1e-8)


# ----------------------------------------------------------------------------- scale robustness (issue 12 item 6)
@pytest.mark.parametrize("dtype, factor", [(np.float32, 1e20), (np.float64, 1e154), (np.float64, 1e-200)])
def test_solvers_are_scale_equivariant(data, dtype, factor):
    model, X, y = data
    X = X.astype(dtype)
    tol = 1e-3 if dtype == np.float32 else 1e-10
    ref = KSubspaces([3, 3], random_state=0).fit(X)
    big = KSubspaces([3, 3], random_state=0).fit(X * dtype(factor))
    assert all(np.all(np.isfinite(U)) for U in big.bases_)
    assert_array_equal(big.labels_, ref.labels_)
    assert subspace_error(big.bases_, ref.bases_) < tol
    assert big.bases_[0].dtype == dtype
    assert subspace_error(pca_subspace(X * dtype(factor), 3), pca_subspace(X, 3)) < tol
    batch = k_subspaces_batch(np.stack([X, X * dtype(factor)]), [3, 3], random_state=[0, 0])
    assert_array_equal(batch.labels[0], batch.labels[1])
    assert np.isfinite(batch.objective[0])
    assert subspace_error(spectral_init(X * dtype(factor), [3, 3], random_state=0), spectral_init(X, [3, 3], random_state=0)) < tol


def test_without_rescaling_huge_and_tiny_data_break(data, monkeypatch):
    """The mechanism switched off: the same fits give NaN bases or wrong subspaces."""
    model, X, y = data
    monkeypatch.setattr(_kss, "_rescale", lambda X: (X, np.ones(X.shape[0])))
    monkeypatch.setattr(_spectral, "_rescale", lambda X: (X, np.ones(X.shape[0])))

    def broken(X):
        try:
            with np.errstate(all="ignore"):
                km = KSubspaces([3, 3], random_state=0).fit(X)
        except np.linalg.LinAlgError:  # NaN reached LAPACK
            return True
        if not all(np.all(np.isfinite(U)) for U in km.bases_):
            return True
        return km.objective_ == 0.0 or subspace_error(km.bases_, model.bases) > 0.5

    assert not broken(X)
    assert broken(X.astype(np.float32) * np.float32(1e20))
    assert broken(X * 1e154)
    assert broken(X * 1e-200)


# ----------------------------------------------------------------------------- bad input (issue 12 item 6)
BAD_X = [
    ("nan", np.full((6, 4), np.nan), ValueError, "X contains NaN"),
    ("inf", np.full((6, 4), np.inf), ValueError, "X contains"),
    ("complex", np.ones((6, 4)) * 1j, (TypeError, ValueError), "X must hold real numbers"),
    ("strings", np.full((6, 4), "a"), TypeError, "X must hold real numbers"),
    ("objects", np.array([[{}] * 4] * 6, dtype=object), TypeError, "X must hold real numbers"),
    ("1-D", np.ones(6), ValueError, "X must have"),
    ("3-D", np.ones((2, 6, 4)), ValueError, "X must have"),
    ("no rows", np.ones((0, 4)), ValueError, "X"),
]


@pytest.mark.parametrize("case, X, exc, msg", BAD_X, ids=[c[0] for c in BAD_X])
@pytest.mark.parametrize(
    "solver",
    [
        lambda X: KSubspaces([2, 2]).fit(X),
        lambda X: k_subspaces(X, [2, 2]),
        lambda X: PCASubspace(d=2).fit(X),
        lambda X: pca_subspace(X, 2),
        lambda X: spectral_init(X if np.ndim(X) != 3 else X[None], [2, 2]),
    ],
    ids=["KSubspaces", "k_subspaces", "PCASubspace", "pca_subspace", "spectral_init"],
)
def test_bad_input_is_rejected_naming_X(solver, case, X, exc, msg):
    with pytest.raises(exc, match=msg):
        solver(X)


def test_bad_batch_input_and_options(rng):
    X = rng.standard_normal((2, 6, 4))
    with pytest.raises(ValueError, match="X must have 3 axes"):
        k_subspaces_batch(X[0], [2, 2])
    with pytest.raises(TypeError, match="X must hold real numbers"):
        k_subspaces_batch(X.astype(complex), [2, 2])
    with pytest.raises(ValueError, match="mask must have shape"):
        k_subspaces_batch(X, [2, 2], mask=np.ones((2, 5), bool))
    padded = X.copy()
    padded[0, -1] = np.nan  # a padding row may hold anything
    mask = np.ones((2, 6), bool)
    mask[0, -1] = False
    assert np.all(k_subspaces_batch(padded, [2, 2], mask=mask, random_state=[0, 1]).labels[0, -1] == -1)
    with pytest.raises(ValueError, match="q"):
        k_subspaces_batch(X, [2, 2], q=0)
    with pytest.raises(TypeError, match="q must be None"):
        k_subspaces_batch(X, [2, 2], q="ten")
    with pytest.raises(ValueError, match="spectral_method"):
        k_subspaces_batch(X, [2, 2], spectral_method="arpack")
    with pytest.raises(ValueError, match="random_state"):
        KSubspaces([2, 2], random_state=-1).fit(X[0])
    with pytest.raises(TypeError, match="Sparse data"):
        KSubspaces([2, 2]).fit(scipy.sparse.csr_matrix(X[0]))


def test_metrics_and_objectives_name_the_bad_argument():
    E = np.eye(4)
    good = [E[:, :2]]
    cases = [
        (lambda: subspace_error("abc", good), TypeError, "estimated_bases must be a sequence"),
        (lambda: subspace_error([E[:, :2] * 1j], good), TypeError, r"estimated_bases\[0\] must hold real numbers"),
        (lambda: subspace_error(good, [np.full((4, 2), "a")]), TypeError, r"true_bases\[0\] must hold real numbers"),
        (lambda: subspace_error([np.full((4, 2), np.nan)], good), ValueError, r"estimated_bases\[0\] contains NaN"),
        (lambda: subspace_error([np.ones(4)], good), ValueError, r"estimated_bases\[0\] must have shape \(n, d\)"),
        (lambda: molrg.kss_objective(np.ones((3, 4)) * 1j, good), TypeError, "X must hold real numbers"),
        (lambda: molrg.kss_objective(np.ones((3, 5)), good), ValueError, r"bases\[0\] must have shape \(\.\.\., 5, d\)"),
        (lambda: molrg.pca_objective(np.full((3, 4), np.inf), E[:, :2]), ValueError, "X contains NaN or inf"),
        (lambda: molrg.pca_objective(np.ones(4), E[:, :2]), ValueError, "X must have shape"),
    ]
    for fn, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn()
