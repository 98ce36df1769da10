"""Banded storage and algorithms (issue 15): equal to the dense references, and small at d = 100 000."""

import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose

from locality import (
    BandedMatrix,
    condition_number,
    effective_radius,
    localization_error,
    offdiag_profile,
    ou_covariance,
    ou_covariance_band,
    ou_effective_radius,
    ou_localization_error,
    ou_precision,
    ou_profile,
    random_banded_precision,
    truncation_error,
)
from locality.banded import band_inverse, band_product


def _band(A, R):
    """Lower band storage of a dense (stack of) matrices, the reference layout."""
    return BandedMatrix.from_dense(A, R).data


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


CASES = [(40, 0, 0.3), (120, 1, 0.05), (333, 3, 0.5)]


def test_storage_round_trip_and_layout():
    P = random_banded_precision(9, 2, random_state=0)
    B = BandedMatrix.from_dense(P)
    assert B.half_width == 2 and B.d == 9 and B.data.shape == (3, 9)
    assert_allclose(B.to_dense(), P, rtol=0, atol=0)
    assert_allclose(B.data[1, :8], np.diagonal(P, -1), rtol=0, atol=0)
    assert np.all(B.data[2, 7:] == 0)
    assert_allclose(B.matvec(np.arange(9.0)), P @ np.arange(9.0), rtol=1e-14)
    assert_allclose(B.to_sparse().toarray(), P, rtol=0, atol=0)
    assert_allclose(B.with_half_width(5).to_dense(), P, rtol=0, atol=0)
    with pytest.raises(ValueError, match="half-width"):
        BandedMatrix(np.ones((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        BandedMatrix(np.array([[np.nan, 1.0]]))
    with pytest.raises(TypeError, match="real"):
        BandedMatrix(np.array([["a", "b"]]))


@pytest.mark.parametrize("d, b, t", CASES)
def test_generator_same_matrix_in_both_storages(d, b, t):
    Pd = random_banded_precision(d, b, coupling=0.7, random_state=d)
    Pb = random_banded_precision(d, b, coupling=0.7, random_state=d, banded=True)
    assert_allclose(Pb.to_dense(), Pd, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("d, b, t", CASES + [(2000, 2, 1.5)])
def test_band_inverse_and_product_match_dense(d, b, t):
    P = random_banded_precision(d, b, random_state=1, banded=True)
    Pinv = np.linalg.inv(P.to_dense())
    for R in (0, b, 7):
        assert _rel(band_inverse(P, R).data, _band(Pinv, R)) <= 1e-10
    assert _rel(band_product(band_inverse(P, 7 + b), P, 7).data, _band(np.eye(d), 7)) <= 1e-10


@pytest.mark.parametrize("d, b, t", CASES)
def test_ou_precision_covariance_profile_radius_match_dense(d, b, t):
    Pb = random_banded_precision(d, b, coupling=0.8, random_state=2, banded=True)
    Pd = Pb.to_dense()
    ts = np.array([0.0, 1e-3, t, 20.0])
    dense = ou_precision(Pd, ts)
    for R in (b, 6):
        assert _rel(ou_precision(Pb, ts, half_width=R).data, _band(dense, R)) <= 1e-10
    S = ou_covariance(np.linalg.inv(Pd), ts)
    assert _rel(ou_covariance_band(Pb, ts, 5).data, _band(S, 5)) <= 1e-10
    assert_allclose(ou_profile(Pb, ts, max_radius=6), offdiag_profile(dense, 6), rtol=1e-10, atol=1e-14)
    for eps in (1e-2, 1e-3, 1e-6):
        assert_allclose(ou_effective_radius(Pb, ts, eps), effective_radius(dense, eps))
    assert effective_radius(Pb) == effective_radius(Pd) == b
    assert condition_number(Pb) == pytest.approx(condition_number(Pd), rel=1e-10)


@pytest.mark.parametrize("d, b, t", CASES)
def test_localization_errors_match_dense(d, b, t):
    Pb = random_banded_precision(d, b, coupling=0.8, random_state=3, banded=True)
    S = ou_covariance(np.linalg.inv(Pb.to_dense()), t)
    radii = [0, 1, 3, 8]
    e, q = localization_error(S, radii), truncation_error(S, radii)
    res = ou_localization_error(Pb, t, radii)
    scale = float(np.max(np.diag(np.linalg.inv(S))))
    assert_allclose(res.optimal, e, rtol=1e-10, atol=1e-12 * scale)
    assert_allclose(res.truncation, q, rtol=1e-10, atol=1e-12 * scale)
    Sb = BandedMatrix.from_dense(S, 16)  # a banded Sigma is the matrix it stores
    assert_allclose(localization_error(Sb, radii), localization_error(Sb.to_dense(), radii), rtol=1e-10, atol=1e-13)
    assert_allclose(truncation_error(Sb, radii), truncation_error(Sb.to_dense(), radii), rtol=1e-8, atol=1e-12)
    assert res.to_frame().shape == (len(radii) * d, 4)


@pytest.mark.parametrize("d, b, c", [(600, 4, 0.9), (700, 1, 0.5), (500, 0, 0.0), (900, 2, 0.99)])
def test_condition_number_sparse_path_and_coupling_bound(monkeypatch, d, b, c):
    # above DENSE_EIG_MAX_D (2000) kappa comes from Lanczos runs; lowered here to test that path at a small d
    import locality.precision

    monkeypatch.setattr(locality.precision, "DENSE_EIG_MAX_D", 100)
    P = random_banded_precision(d, b, coupling=c, random_state=d, banded=True)
    dense = np.linalg.eigvalsh(P.to_dense())
    assert condition_number(P) == pytest.approx(dense[-1] / dense[0], rel=1e-11)
    assert condition_number(P) <= (3.0 * (1 + c) / (1 - c)) ** 2


def test_lanczos_extreme_eigenvalues_and_fallback(monkeypatch):
    import locality.precision
    from locality.precision import _lanczos_largest

    rng = np.random.default_rng(5)
    lam = np.sort(rng.uniform(1.0, 50.0, 300))
    Q = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    M = (Q * lam) @ Q.T
    assert _lanczos_largest(lambda x: M @ x, 300) == pytest.approx(lam[-1], rel=1e-12)
    assert _lanczos_largest(lambda x: M @ x, 300, max_iter=3) is None
    assert _lanczos_largest(lambda x: 2.0 * x, 50) == pytest.approx(2.0, rel=1e-15)  # invariant at once
    # no convergence within the budget: ARPACK answers
    monkeypatch.setattr(locality.precision, "DENSE_EIG_MAX_D", 100)
    monkeypatch.setattr(locality.precision, "_lanczos_largest", lambda *a, **k: None)
    P = random_banded_precision(400, 2, coupling=0.5, random_state=1, banded=True)
    dense = np.linalg.eigvalsh(P.to_dense())
    assert condition_number(P) == pytest.approx(dense[-1] / dense[0], rel=1e-10)


@pytest.mark.slow
def test_memory_at_d_100000_under_1gb():
    d = 100_000
    tracemalloc.start()
    try:
        P0 = random_banded_precision(d, 2, coupling=0.5, random_state=0, banded=True)
        r = ou_effective_radius(P0, np.array([0.0, 0.3]))
        res = ou_localization_error(P0, 0.5, [0, 2, 4])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r[0] == 2 and r[1] >= 2
    assert np.all(np.diff(res.optimal.sum(axis=1)) < 0)
    assert peak < 1e9, peak / 1e6


def test_effective_radius_rejects_bad_matrices():
    with pytest.raises(ValueError, match="nonzero diagonal"):
        effective_radius(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        effective_radius(np.triu(np.ones((4, 4))))
    with pytest.raises(ValueError, match="eps"):
        effective_radius(np.eye(3), eps=2.0)
    with pytest.raises(ValueError, match="NaN"):
        effective_radius(np.full((2, 2), np.nan))


@pytest.mark.parametrize("segment", [2**18, 1, 3 * 8 * 8 * 2])
@pytest.mark.parametrize("d, b, R", [(1, 0, 0), (2, 1, 1), (7, 0, 3), (37, 1, 0), (61, 3, 5), (200, 4, 21), (90, 12, 3)])
def test_band_inverse_segments_and_batches_match_dense(monkeypatch, segment, d, b, R):
    # the blocks are processed in segments (a few blocks at a time when _SEGMENT_ENTRIES is small): the
    # corners passed between segments, a partial last block and a batch of matrices must not matter
    import locality.banded

    monkeypatch.setattr(locality.banded, "_SEGMENT_ENTRIES", segment)
    P = random_banded_precision(d, b, coupling=0.9, random_state=d + b, banded=True)
    e = np.exp(-2.0 * np.array([0.0, 0.05, 2.0]))[:, None, None]
    data = (1.0 - e) * P.data[None]
    data[:, 0, :] += e[:, 0]
    A = BandedMatrix(data)  # a batch of three: e I + (1 - e) P
    R = min(R, d - 1)
    got = band_inverse(A, R).data
    ref = _band(np.linalg.inv(A.to_dense()), R)
    assert _rel(got, ref) <= 1e-12
    for k in range(3):
        assert_allclose(band_inverse(A[k], R).data, got[k], rtol=1e-13, atol=1e-15)
    with pytest.raises(np.linalg.LinAlgError):
        band_inverse(BandedMatrix(-P.data), R)


@pytest.mark.parametrize("d, u, r, rows", [(1, 0, 0, None), (5, 1, 3, None), (30, 4, 2, slice(3, 17)),
                                           (30, 12, 4, slice(0, 30, 3)), (60, 24, 12, slice(50, 60)), (9, 3, 12, None)])
def test_band_windows_match_dense_blocks(d, u, r, rows):
    from locality.banded import band_windows, window_offsets

    P = random_banded_precision(d, u, coupling=0.5, random_state=d + r, banded=True)
    A = BandedMatrix(np.stack([P.data, 2.0 * P.data]))  # batched
    got, valid = band_windows(A, r, rows)
    dense = A.to_dense()
    i = np.arange(d)[rows if rows is not None else slice(None)]
    offs = window_offsets(r)
    assert got.shape == (2, i.size, offs.size, offs.size)
    for n, row in enumerate(i):
        pos = row + offs
        ok = (pos >= 0) & (pos < d)
        assert np.array_equal(valid[n], ok)
        ref = np.eye(offs.size)
        ref[np.ix_(ok, ok)] = dense[0][np.ix_(pos[ok], pos[ok])]
        assert np.array_equal(got[0, n], ref)
        ref[np.ix_(ok, ok)] = dense[1][np.ix_(pos[ok], pos[ok])]
        assert np.array_equal(got[1, n], ref)


@pytest.mark.parametrize("d, b, R", [(1, 0, 0), (3, 1, 2), (40, 3, 7), (100, 4, 20), (7, 5, 6)])
def test_band_product_matches_dense(d, b, R):
    # P commutes with P^2 + P and with itself: the band of the product against the dense product
    P = random_banded_precision(d, b, coupling=0.7, random_state=d, banded=True)
    Pd = P.to_dense()
    Q = BandedMatrix.from_dense(Pd @ Pd + Pd, min(2 * b, d - 1))
    Qb = BandedMatrix(np.stack([Q.data, 3.0 * Q.data]))  # batched
    got = band_product(Qb, P, R).data
    ref = _band(np.stack([Q.to_dense() @ Pd, 3.0 * Q.to_dense() @ Pd]), R)
    assert _rel(got, ref) <= 1e-14
