"""Benchmark of the locality package (SPEC B1-B4; issue 15 targets).

* Each locality function at d = 3200 (b = 2, t = 0.5, r = 8), banded
  (:mod:`locality.banded`) against the dense reference, CPU seconds and the
  ratio (target >= 20x): the generator, ``ou_precision`` (band R = 16 against the
  dense eigendecomposition), ``effective_radius`` at 50 times (dense: one
  eigendecomposition and the band R = 40 of each ``P_t``), and
  ``localization_error`` (banded: :func:`locality.ou_localization_error`, which
  never forms ``Sigma_t``; dense: ``Sigma_t`` then the windows).
* d = 100 000: ``r_eff(t)`` at 50 times plus ``e_i(r)`` for every r <= 16
  (target: under 60 s on 2 cores), with the peak traced memory (target < 1 GB).
* The exact-covariance trade-off curve of figure 2 (d = 64, T = 1000, 12 radii,
  N = 100), per localization method.
* The single-precision propagation kernel of ``locality-tradeoff`` / ``-best-radius``
  (d = 64, T = 1000, a batch of 81 problems: one trade-off chunk), new
  (:func:`locality.ddpm.generated_covariance` with ``dtype=float32``) against the
  previous kernel (kept below as ``_previous_single``), CPU seconds, ratio and
  ``max |C_new - C_old|``, per method and radius (``r = 0``: the closed-form diagonal
  recursion); and ``window_blocks`` against the direct gather.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_locality.py [--quick] [--propagation-only]``
(``--quick``: d = 800 against dense, d = 20 000 instead of 100 000, 5 draws).
Timings are CPU seconds (``time.process_time``) of one process; on a shared
machine wall time is distorted by the other processes, CPU time much less.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

# submodules (not the package namespace): works however the package is installed
from locality.ddpm import LinearScore, empirical_covariance, gaussian_samples, generated_covariance, tradeoff_curve
from locality.forward import ou_covariance, ou_effective_radius, ou_precision
from locality.localization import (
    _window_blocks_reference,
    _window_index,
    localization_error,
    ou_localization_error,
    window_blocks,
)
from locality.precision import ar1_covariance, random_banded_precision

RADII = [0, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32]


def _cpu(f):
    t0 = time.process_time()
    out = f()
    return time.process_time() - t0, out


def _previous_single(score, chunk: int = 50) -> np.ndarray:
    """The float32 kernel before issue 16 round 2 (dense-column band build, strided Psi slots), for the ratio."""
    sch = score.schedule
    betas, abar = np.asarray(sch.betas), np.asarray(sch.alpha_bars)
    d, r = score.d, int(score.r)
    nb = int(np.prod(score.batch_shape, dtype=int))
    f32 = np.float32
    inv_abar = 1.0 / np.concatenate([[1.0], abar])
    if score.method == "marginal":
        pos, _, _ = _window_index(d, r)
        w = pos.shape[1]
        Wd = np.zeros((nb, d, w, d + w), f32)
        Wd[:, np.arange(d)[:, None, None], np.arange(w)[None, :, None], pos[:, None, :]] = score._W.reshape(nb, d, w, w)
        Wd = np.ascontiguousarray(Wd[..., :d])
        mu: np.ndarray = score._mu.reshape(nb, d, w)
    else:
        V = score._V.reshape(nb, d, d).astype(f32)
        Vt = np.ascontiguousarray(np.swapaxes(V, -1, -2))[:, None]
        mu = score._mu.reshape(nb, d)
        band = (np.abs(np.arange(d)[:, None] - np.arange(d)[None, :]) <= r).astype(f32)
    Psi = np.broadcast_to(np.eye(d, dtype=f32), (nb, d, d)).copy()
    acc = np.zeros((nb, d, d), f32)
    tmp = np.empty((nb, d, d), f32)
    for lo in range(0, sch.T, chunk):
        hi = min(sch.T, lo + chunk)
        K = hi - lo
        a = abar[lo:hi, None]
        if score.method == "marginal":
            G = (-betas[lo:hi, None] / (a * mu[..., None, :] + (1.0 - a))).astype(f32)  # (nb, d, K, w)
            X = G @ Wd  # (nb, d, K, d): X[:, i, j, :] = -beta_k M_k[i, :]
            steps = [X[:, :, j, :] for j in range(K)]
        else:
            g = (-betas[lo:hi, None] / (a * mu[:, None, :] + (1.0 - a))).astype(f32)  # (nb, K, d)
            X = (V[:, None, :, :] * g[:, :, None, :]) @ Vt  # (nb, K, d, d)
            X *= band
            steps = [X[:, j] for j in range(K)]
        store = np.empty((nb, d, K, d), f32)
        sq = np.sqrt(betas[lo:hi] * inv_abar[lo:hi]).astype(f32)
        for j in range(K):
            np.multiply(Psi, sq[j], out=store[:, :, j, :])
            np.matmul(Psi, steps[j], out=tmp)
            Psi += tmp
        for b in range(nb):
            F = store[b].reshape(d, K * d)
            acc[b] += F @ F.T
    P64 = Psi.astype(np.float64)
    C = acc.astype(np.float64) + inv_abar[sch.T] * (P64 @ np.swapaxes(P64, -1, -2))
    C = 0.5 * (C + np.swapaxes(C, -1, -2))
    return C.reshape(score.batch_shape + (d, d))


def bench_propagation(n_problems: int = 81, radii=(0, 4, 16, 32)) -> dict:
    """New vs previous single-precision propagation, one trade-off chunk (module doc)."""
    out = {}
    S = ar1_covariance(64)
    rng = np.random.default_rng(0)
    Ns = [32, 64, 100, 128]
    Sh = np.stack([empirical_covariance(gaussian_samples(S, Ns[b % 4], random_state=rng)) for b in range(n_problems)])
    for method in ("marginal", "truncate"):
        for r in radii:
            t_init, sc = _cpu(lambda: LinearScore(Sh, method=method, r=r))
            t_new, C_new = _cpu(lambda: generated_covariance(sc, dtype=np.float32))
            t_old, C_old = _cpu(lambda: _previous_single(sc))
            out[f"propagation {method} r={r} new"], out[f"propagation {method} r={r} old"] = t_new, t_old
            print(f"propagation d=64 T=1000 {n_problems} problems {method:<8} r={r:<2}: previous {t_old:6.2f} s, "
                  f"new {t_new:6.2f} s, ratio {t_old / t_new:5.2f}x (score setup {t_init:.2f} s); "
                  f"max |C_new - C_old| = {np.abs(C_new - C_old).max():.1e}")
    for r in (8, 32):
        t_new, _ = _cpu(lambda: window_blocks(Sh, r))
        t_old, _ = _cpu(lambda: _window_blocks_reference(Sh, r))
        out[f"window_blocks r={r} new"], out[f"window_blocks r={r} old"] = t_new, t_old
        print(f"window_blocks {n_problems} x 64 x 64, r={r}: gather {t_old:.3f} s, strided {t_new:.3f} s, ratio {t_old / t_new:.1f}x")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (d = 800 vs dense, d = 20 000 at scale, 5 draws)")
    ap.add_argument("--propagation-only", action="store_true", help="only the DDPM propagation kernel (new vs previous)")
    args = ap.parse_args(argv)
    if args.propagation_only:
        return bench_propagation(21 if args.quick else 81)
    d, d_big, draws = (800, 20_000, 5) if args.quick else (3200, 100_000, 20)
    b, t, r = 2, 0.5, 8
    times = np.concatenate([[0.0], np.logspace(-3, 1, 49)])
    out = {}

    def row(name, dense_f, banded_f):
        td, _ = _cpu(dense_f)
        tb, _ = _cpu(banded_f)
        out[f"{name} d={d} dense"], out[f"{name} d={d} banded"] = td, tb
        print(f"{name:<34} d={d}: dense {td:8.2f} s, banded {tb:7.3f} s, ratio {td / tb:7.1f}x")

    Pd = random_banded_precision(d, b, coupling=0.5, random_state=0)
    Pb = random_banded_precision(d, b, coupling=0.5, random_state=0, banded=True)
    row("random_banded_precision", lambda: random_banded_precision(d, b, coupling=0.5, random_state=0),
        lambda: random_banded_precision(d, b, coupling=0.5, random_state=0, banded=True))
    row("ou_precision (R = 16)", lambda: ou_precision(Pd, t), lambda: ou_precision(Pb, t, half_width=16))
    # dense baseline: one eigendecomposition, then only the band R = 40 of each P_t (the fastest dense path)
    row("r_eff(t) at 50 times", lambda: ou_effective_radius(Pd, times, max_radius=40), lambda: ou_effective_radius(Pb, times))
    row(f"localization_error (r = {r})", lambda: localization_error(ou_covariance(np.linalg.inv(Pd), t), r),
        lambda: ou_localization_error(Pb, t, r))

    P = random_banded_precision(d_big, b, coupling=0.5, random_state=0, banded=True)
    tracemalloc.start()
    t1, reff = _cpu(lambda: ou_effective_radius(P, times))
    t2, res = _cpu(lambda: ou_localization_error(P, t, np.arange(17)))
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    out[f"d={d_big} r_eff 50 times"], out[f"d={d_big} e_i(r <= 16)"], out[f"d={d_big} peak MB"] = t1, t2, peak
    print(f"d={d_big}: r_eff(t) at 50 times {t1:.1f} s (max {reff.max()}), e_i(r) for r <= 16 {t2:.1f} s, "
          f"total {t1 + t2:.1f} s; peak traced memory {peak:.0f} MB; sum_i e_i(r = 0, 4, 8) = "
          f"{res.optimal[[0, 4, 8]].sum(axis=1).round(6).tolist()}")

    S = ar1_covariance(64)
    for method in ("marginal", "truncate"):
        dt, res = _cpu(lambda: tradeoff_curve(S, 100, RADII, method=method, n_draws=draws, random_state=0))
        out[f"tradeoff {method}"] = dt
        m = res["exact"].mean(0)
        print(f"trade-off curve d=64 T=1000 {len(RADII)} radii {draws} draws N=100, {method}: {dt:.2f} s; "
              f"min {m.min():.3f} at r={RADII[int(np.argmin(m))]}, non-localized {res['nonlocal'].mean():.3f}")
    out.update(bench_propagation(21 if args.quick else 81))
    return out


if __name__ == "__main__":
    main()
