"""Tests of PCA, K-subspaces, the spectral start and the oracle (SPEC A6, A8)."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from molrg import (
    KSubspaces,
    MoLRG,
    k_subspaces,
    k_subspaces_batch,
    kss_objective,
    oracle_bases,
    pca_objective,
    pca_subspace,
    pca_subspace_batch,
    random_orthonormal,
    spectral_init,
    subspace_error,
    subspace_error_batch,
    success,
)
from molrg.solvers import ConvergenceWarning, _kss_kernel


def _proj(U):
    return U @ U.T


# ----------------------------------------------------------------------------- PCA
def test_pca_phase_transition_is_exact():
    """Noiseless, n = 48: error < 1e-8 iff N >= d, and > 1 when N < d (SPEC A8)."""
    rng = np.random.default_rng(0)
    for d in range(1, 9):
        model = MoLRG.random(48, d, random_state=rng)
        X, _ = model.sample(20, random_state=rng)
        for N in range(1, 21):
            err = subspace_error(pca_subspace(X[:N], d), model.bases)
            if N >= d:
                assert err < 1e-8, (d, N, err)
            else:
                assert err > 1, (d, N, err)


def test_pca_orthonormal_deterministic_sign_fixed_float32(rng):
    X = rng.standard_normal((3, 10))
    U = pca_subspace(X, 6)  # N < d: completion
    assert_allclose(U.T @ U, np.eye(6), atol=1e-12)
    assert_allclose(U, pca_subspace(X.copy(), 6), rtol=0, atol=0)
    assert np.all(np.take_along_axis(U, np.abs(U).argmax(0)[None], 0) > 0)
    # sign convention: flipping the data changes nothing
    assert_allclose(pca_subspace(-X, 6), U, atol=1e-12)
    U32 = pca_subspace(X.astype(np.float32), 2)
    assert U32.dtype == np.float32
    assert subspace_error(U32.astype(np.float64), U[:, :2]) < 1e-4
    # zero data: the completion is the first standard basis vectors
    assert_allclose(pca_subspace(np.zeros((2, 5)), 2), np.eye(5)[:, :2], atol=0)


def test_pca_batch_with_mask_equals_single(rng):
    B, Nmax, n, d = 5, 12, 9, 3
    X = rng.standard_normal((B, Nmax, n))
    Ns = [1, 3, 5, 12, 7]
    mask = np.arange(Nmax)[None] < np.array(Ns)[:, None]
    Ub = pca_subspace_batch(np.where(mask[..., None], X, 99.0), d, mask=mask)
    for b, N in enumerate(Ns):
        assert_allclose(_proj(Ub[b]), _proj(pca_subspace(X[b, :N], d)), atol=1e-10)


def test_pca_beats_random_bases(rng):
    X, _ = MoLRG.random(20, [3], noise_std=0.3, random_state=rng).sample(30, random_state=rng)
    best = pca_objective(X, pca_subspace(X, 3))
    rand = pca_objective(X, random_orthonormal(20, 3, size=(100,), random_state=rng))
    assert best > rand.max()


# ----------------------------------------------------------------------------- K-subspaces
def _kss_success(N, trials, seed, K=2, d=4):
    rng = np.random.default_rng(seed)
    Xs, truth = [], []
    for _ in range(trials):
        model = MoLRG.random(48, [d] * K, random_state=rng)
        Xs.append(model.sample(N, random_state=rng)[0])
        truth.append(model.bases)
    res = k_subspaces_batch(np.stack(Xs), [d] * K, random_state=list(range(trials)))
    true = [np.stack([t[k] for t in truth]) for k in range(K)]
    return success(subspace_error_batch(res.bases, true))


def test_kss_spectral_succeeds_at_N_40():
    assert _kss_success(40, 20, seed=1).mean() >= 0.95


@pytest.mark.parametrize("N", [2, 5, 7])
def test_kss_always_fails_below_Kd(N):
    assert _kss_success(N, 20, seed=2).mean() == 0.0


def test_kss_estimator_contract_and_twin(rng):
    model = MoLRG.random(48, [4, 4], random_state=rng)
    X, y = model.sample(40, random_state=rng)
    km = KSubspaces([4, 4], random_state=3)
    assert km.fit(X) is km
    assert subspace_error(km.bases_, model.bases) < 1e-8
    assert km.labels_.shape == (40,) and km.n_iter_ >= 1
    assert_allclose(km.objective_, kss_objective(X, km.bases_), rtol=1e-12)
    # labels agree with the truth up to a permutation, and predict reproduces them
    assert max(np.mean(km.labels_ == y), np.mean(km.labels_ != y)) == 1.0
    assert_array_equal(km.predict(X), km.labels_)
    res = k_subspaces(X, [4, 4], random_state=3)
    assert_allclose(res.objective, km.objective_, rtol=1e-12)
    assert_array_equal(res.labels, km.labels_)
    for U, V in zip(res.bases, km.bases_):
        assert_allclose(U, V, atol=1e-12)


def test_kss_beats_random_bases(rng):
    model = MoLRG.random(20, [2, 2], noise_std=0.1, random_state=rng)
    X, _ = model.sample(40, random_state=rng)
    km = KSubspaces([2, 2], init="random", n_init=3, random_state=0).fit(X)
    rand = kss_objective(X, [random_orthonormal(20, 2, size=(100,), random_state=rng) for _ in range(2)])
    assert km.objective_ > rand.max()


@pytest.mark.parametrize("init", ["random", "spectral"])
def test_batched_kernel_equals_per_problem_fits(rng, init):
    dims = [3, 2]
    Ns = [30, 18, 25, 12]
    Xs = [MoLRG.random(16, dims, noise_std=0.05, random_state=rng).sample(N, random_state=rng)[0] for N in Ns]
    X = np.zeros((len(Ns), max(Ns), 16))
    mask = np.zeros(X.shape[:2], bool)
    for b, Xi in enumerate(Xs):
        X[b, : len(Xi)], mask[b, : len(Xi)] = Xi, True
    seeds = [11, 12, 13, 14]
    res = k_subspaces_batch(X, dims, mask=mask, init=init, n_init=2, random_state=seeds)
    for b, Xi in enumerate(Xs):
        km = KSubspaces(dims, init=init, n_init=2, random_state=seeds[b]).fit(Xi)
        assert_array_equal(res.labels[b, : len(Xi)], km.labels_)
        assert np.all(res.labels[b, len(Xi) :] == -1)
        assert_allclose(res.objective[b], km.objective_, rtol=1e-10)
        for k in range(2):
            assert_allclose(_proj(res.bases[k][b]), _proj(km.bases_[k]), atol=1e-8)


def test_unequal_dims_recovered(rng):
    model = MoLRG.random(30, [2, 5, 3], random_state=rng)
    X, y = model.sample(60, random_state=rng)
    km = KSubspaces([2, 5, 3], random_state=0).fit(X)
    assert [U.shape for U in km.bases_] == [(30, 2), (30, 5), (30, 3)]
    assert subspace_error(km.bases_, model.bases) < 1e-8
    assert subspace_error(oracle_bases(X, y, [2, 5, 3]), model.bases) < 1e-8


def test_empty_cluster_is_reseeded_not_crashing(rng):
    X = rng.standard_normal((1, 10, 6))
    U0 = np.zeros((1, 2, 6, 2))
    U0[0, 0] = random_orthonormal(6, 2, random_state=rng)  # cluster 1 starts with a zero basis: it gets no point
    U, labels, obj, n_iter, conv = _kss_kernel(X, np.ones((1, 10), bool), np.array([0]), U0, (2, 2), 50)
    assert np.all(np.isfinite(U)) and conv[0]
    assert set(labels[0]) == {0, 1}
    # fewer points than clusters: still no error
    km = KSubspaces([2, 2, 2], init="random", random_state=0).fit(rng.standard_normal((2, 6)))
    assert all(np.allclose(U.T @ U, np.eye(2)) for U in km.bases_)


def test_convergence_warning_points_at_caller(rng):
    X, _ = MoLRG.random(20, [3, 3], noise_std=0.5, random_state=rng).sample(60, random_state=rng)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        KSubspaces([3, 3], init="random", max_iter=1, random_state=0).fit(X)
    hits = [w for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert hits and hits[0].filename == __file__


def test_batch_result_independent_of_batch_composition(rng):
    X = rng.standard_normal((3, 15, 8))
    a = k_subspaces_batch(X, [2, 2], init="random", random_state=[5, 6, 7])
    b = k_subspaces_batch(X[1:2], [2, 2], init="random", random_state=[6])
    assert_array_equal(a.labels[1], b.labels[0])


def test_spectral_init_returns_orthonormal_bases(rng):
    model = MoLRG.random(48, [4, 4], random_state=rng)
    X, _ = model.sample(40, random_state=rng)
    bases = spectral_init(X, [4, 4], random_state=0)
    assert all(np.allclose(U.T @ U, np.eye(4), atol=1e-12) for U in bases)
    assert subspace_error(bases, model.bases) < 1e-8  # noiseless, orthogonal: the start is already exact
    assert len(spectral_init(X[:3], [4, 4], q=[1, 2], random_state=0)) == 2


@pytest.mark.parametrize("method", ["dense", "sparse", "sklearn"])
def test_spectral_init_batch_equals_per_problem_calls(rng, method):
    B, Nmax, n, dims = 6, 30, 16, [3, 2]
    X, mask = np.zeros((B, Nmax, n)), np.zeros((B, Nmax), bool)
    for b, N in enumerate([2, 5, 11, 17, 30, 23]):
        X[b, :N] = MoLRG.random(n, dims, noise_std=0.05, random_state=rng).sample(N, random_state=rng)[0]
        mask[b, :N] = True
    X[~mask] = 7.0  # padding is ignored, whatever it holds
    batch = spectral_init(X, dims, mask=mask, random_state=list(range(B)), method=method)
    assert [U.shape for U in batch] == [(B, n, 3), (B, n, 2)]
    for b in range(B):
        alone = spectral_init(X[b][mask[b]], dims, random_state=np.random.default_rng(b), method=method)
        for k in range(2):
            assert_allclose(batch[k][b], alone[k], atol=1e-12)
    with pytest.raises(ValueError, match="mask"):
        spectral_init(X[0], dims, mask=mask[0])
    with pytest.raises(ValueError, match="mask"):
        spectral_init(X, dims, mask=np.zeros((B, Nmax), bool))


# ----------------------------------------------------------------------------- spectral backends
def _same_partition(a, b):
    """Equal up to a permutation of the group numbers (and -1 at the same places)."""
    if not np.array_equal(a < 0, b < 0):
        return False
    m = a >= 0
    pairs = set(zip(a[m].tolist(), b[m].tolist()))
    return len(pairs) == len(set(a[m].tolist())) == len(set(b[m].tolist()))


def _top_gap(Z, q, K):
    """Gap between the K-th and (K+1)-th eigenvalues of D^-1/2 A D^-1/2 (0: degenerate, either choice valid)."""
    from molrg._spectral import _knn_affinity

    A = _knn_affinity(Z[None], np.array([q]))[0]
    deg = A.sum(1)
    dd = np.sqrt(np.where(deg > 0, deg, 1))
    ev = np.linalg.eigvalsh(A / dd[:, None] / dd[None])[::-1]
    return ev[K - 1] - ev[K]


@pytest.mark.parametrize("K", [2, 3])
def test_batched_spectral_labels_equal_sklearn(rng, K):
    """Batched eigh + cluster_qr = scikit-learn SpectralClustering on the same affinity (up to a permutation).

    Several N, d, q; padded batches with scattered padding rows.  The two may
    differ only where the top eigenspace is degenerate (more than K connected
    components): those runs are skipped, and must stay a minority.
    """
    from molrg._spectral import _spectral_labels

    checked = 0
    for d in (1, 2, 4):
        for N in (6, 13, 24, 40):
            for noise in (0.0, 0.05):
                B, Nmax = 4, N + 5
                X = np.zeros((B, Nmax, 30))
                mask = np.zeros((B, Nmax), bool)
                for b in range(B):
                    Nb = N - b  # different N in one batch
                    Xb, _ = MoLRG.random(30, [d] * K, noise_std=noise, random_state=rng).sample(Nb, random_state=rng)
                    rows = np.sort(rng.permutation(Nmax)[:Nb])  # padding rows anywhere
                    X[b, rows], mask[b, rows] = Xb, True
                    X[b, ~mask[b]] = 7.0  # padding content must not matter
                for q in (d + 1, max(1, N // K - 1), 2):
                    run_prob, run_q, seeds = np.arange(B), np.full(B, q), np.arange(B) + 3
                    a = _spectral_labels(X, mask, run_prob, run_q, seeds, K, "dense")
                    c = _spectral_labels(X, mask, run_prob, run_q, seeds, K, "sklearn")
                    for b in range(B):
                        assert np.all(a[b, ~mask[b]] == -1) and np.all(a[b, mask[b]] >= 0)
                        Zb = X[b, mask[b]]
                        if Zb.shape[0] > K and _top_gap(Zb, min(q, Zb.shape[0] - 1), K) < 1e-8:
                            continue
                        checked += 1
                        assert _same_partition(a[b], c[b]), (K, d, N, noise, q, b)
    assert checked >= 200  # most runs are non-degenerate, all of them agree


def test_spectral_backends_reachable_and_agree_on_separated_data(rng):
    model = MoLRG.random(48, [3, 3], noise_std=0.01, random_state=rng)
    X, y = model.sample(40, random_state=rng)
    for method in ("dense", "sparse", "sklearn"):
        bases = spectral_init(X, [3, 3], q=19, random_state=0, method=method)
        assert subspace_error(bases, model.bases) < 0.1
        km = KSubspaces([3, 3], random_state=0, spectral_method=method).fit(X)
        assert _same_partition(km.labels_, y)
        res = k_subspaces_batch(X[None], [3, 3], random_state=[0], spectral_method=method)
        assert_array_equal(res.labels[0], km.labels_)
        assert _same_partition(k_subspaces(X, [3, 3], random_state=0, spectral_method=method).labels, y)
    with pytest.raises(ValueError, match="method must be one of"):
        spectral_init(X, [3, 3], method="arpack")
    with pytest.raises(ValueError, match="spectral_method"):
        KSubspaces([3, 3], spectral_method="arpack").fit(X)


def test_deprecated_backend_names_still_work(rng):
    X, _ = MoLRG.random(20, [2, 2], noise_std=0.01, random_state=rng).sample(30, random_state=rng)
    with pytest.warns(FutureWarning, match="spectral_method='dense'"):
        old = KSubspaces([2, 2], random_state=0, spectral_backend="batched").fit(X)
    new = KSubspaces([2, 2], random_state=0, spectral_method="dense").fit(X)
    assert_array_equal(old.labels_, new.labels_)
    with pytest.warns(FutureWarning, match="method='sklearn'"):
        spectral_init(X, [2, 2], random_state=0, backend="sklearn")
    with pytest.warns(FutureWarning, match="unpacking"):
        bases, labels, objective, n_iter = k_subspaces(X, [2, 2], random_state=0)
    assert_array_equal(labels, new.labels_)


def test_grouped_batch_equals_per_problem_fits_with_scattered_padding(rng):
    """Problems of very different N (several count groups), padding rows anywhere: same as one-by-one fits."""
    dims = [2, 2]
    Ns = [3, 9, 20, 33, 50]
    Nmax = 56
    X = rng.standard_normal((len(Ns), Nmax, 24))  # padding rows hold garbage
    mask = np.zeros(X.shape[:2], bool)
    Xs = []
    for b, N in enumerate(Ns):
        rows = np.sort(rng.permutation(Nmax)[:N])
        Xi = MoLRG.random(24, dims, noise_std=0.02, random_state=rng).sample(N, random_state=rng)[0]
        X[b, rows], mask[b, rows] = Xi, True
        Xs.append(Xi)
    seeds = [21, 22, 23, 24, 25]
    res = k_subspaces_batch(X, dims, mask=mask, random_state=seeds)
    for b, Xi in enumerate(Xs):
        km = KSubspaces(dims, random_state=seeds[b]).fit(Xi)
        assert_array_equal(res.labels[b, mask[b]], km.labels_)
        assert np.all(res.labels[b, ~mask[b]] == -1)
        assert_allclose(res.objective[b], km.objective_, rtol=1e-10)
        assert res.n_iter[b] == km.n_iter_
        for k in range(2):
            assert_allclose(_proj(res.bases[k][b]), _proj(km.bases_[k]), atol=1e-8)


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise(rng):
    X = rng.standard_normal((10, 5))
    with pytest.raises(ValueError, match="X contains NaN"):
        pca_subspace(np.full((3, 5), np.nan), 2)
    with pytest.raises(ValueError, match="X contains infinity"):
        KSubspaces([2, 2]).fit(np.full((3, 5), np.inf))
    with pytest.raises(ValueError, match="X must have 2 axes"):
        KSubspaces([2, 2]).fit(X[None])
    with pytest.raises(ValueError, match="X must have 3 axes"):
        k_subspaces_batch(X, [2, 2])
    with pytest.raises(ValueError, match="N >= 1"):
        pca_subspace(np.zeros((0, 5)), 2)
    with pytest.raises(ValueError, match=r"d must be in \[1, 5\]"):
        pca_subspace(X, 6)
    with pytest.raises(ValueError, match=r"dims must be at most n_features = 5"):
        KSubspaces([2, 6]).fit(X)
    with pytest.raises(ValueError, match="init"):
        KSubspaces([2, 2], init="kmeans++").fit(X)
    with pytest.raises(ValueError, match="n_init"):
        KSubspaces([2, 2], n_init=0).fit(X)
    with pytest.raises(ValueError, match="max_iter"):
        k_subspaces(X, [2, 2], max_iter=0)
    with pytest.raises(ValueError, match="mask"):
        k_subspaces_batch(X[None], [2, 2], mask=np.ones((1, 3), bool))
    with pytest.raises(ValueError, match="random_state"):
        k_subspaces_batch(X[None], [2, 2], random_state=[1, 2])
    with pytest.raises(ValueError, match="X has 4 features"):
        KSubspaces([2, 2], random_state=0).fit(X).predict(np.ones((2, 4)))
    with pytest.raises(ValueError, match="labels"):
        oracle_bases(X, np.zeros(9, int), [2])
