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

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_locality.py [--quick]``
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
from locality.ddpm import tradeoff_curve
from locality.forward import ou_covariance, ou_effective_radius, ou_precision
from locality.localization import localization_error, ou_localization_error
from locality.precision import ar1_covariance, random_banded_precision

RADII = [0, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32]


def _cpu(f):
    t0 = time.process_time()
    out = f()
    return time.process_time() - t0, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (d = 800 vs dense, d = 20 000 at scale, 5 draws)")
    args = ap.parse_args(argv)
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
    return out


if __name__ == "__main__":
    main()
