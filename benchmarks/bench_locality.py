"""Benchmark of the locality package (SPEC B2, B4; issue 5 performance targets).

* r_eff(t) at 50 times for d = 2000 (target < 60 s on 2 cores): one
  eigendecomposition of P_0, then the exact dense profile (``max_radius=None``)
  and the banded profile (``max_radius=200``).
* The exact-covariance trade-off curve of figure 2 (d = 64, T = 1000, 12 radii,
  20 data draws), per localization method (target < 60 s).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_locality.py [--quick]`` (one BLAS
thread: on the shared 2-core machine, threaded BLAS was 4-10x slower through
oversubscription).  Prints one line per case.  Measured (contended, 1 thread):
r_eff at 50 times d = 2000: banded R = 200 8.0 s (1 thread), dense 87 s (threaded BLAS, contended);
trade-off curve 20 draws: marginal 29.5 s, truncate 27.6 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

# submodules (not the package namespace): works however the package is installed
from locality.ddpm import tradeoff_curve
from locality.forward import ou_effective_radius
from locality.precision import ar1_covariance, random_banded_precision

RADII = [0, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (d = 500, 5 draws)")
    args = ap.parse_args(argv)
    d, draws = (500, 5) if args.quick else (2000, 20)
    out = {}
    times = np.concatenate([[0.0], np.logspace(-3, 1, 49)])
    P0 = random_banded_precision(d, 2, random_state=0)
    for label, R in (("dense", None), ("banded R=200", 200)):
        t0 = time.perf_counter()
        r = ou_effective_radius(P0, times, max_radius=R)
        dt = time.perf_counter() - t0
        out[f"r_eff 50 times d={d} {label}"] = dt
        print(f"r_eff(t) at 50 times, d={d}, b=2, {label}: {dt:.2f} s (max r_eff {r.max()}, r_eff(0) {r[0]})")
    S = ar1_covariance(64)
    for method in ("marginal", "truncate"):
        t0 = time.perf_counter()
        res = tradeoff_curve(S, 100, RADII, method=method, n_draws=draws, random_state=0)
        dt = time.perf_counter() - t0
        out[f"tradeoff {method}"] = dt
        m = res["exact"].mean(0)
        print(f"trade-off curve d=64 T=1000 {len(RADII)} radii {draws} draws N=100, {method}: {dt:.2f} s; "
              f"min {m.min():.3f} at r={RADII[int(np.argmin(m))]}, non-localized {res['nonlocal'].mean():.3f}; "
              f"curve {np.round(m, 3).tolist()}")
    return out


if __name__ == "__main__":
    main()
