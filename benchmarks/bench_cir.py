"""Benchmark: training and sampling time of the localized CIR score per radius r (SPEC B5).

Times ``LocalizedDiffusion.fit`` (DSM, Adam) and ``sample`` (DDPM ancestral) for
several radii on exact CIR series, with one torch thread.  The cost per Adam step
is ``batch * length`` rows through the shared MLP; the radius only widens the
first layer (``2r + 1`` inputs), so the time should hardly grow with r.

Usage::

    python benchmarks/bench_cir.py            # quick configuration (a few seconds per r)
    python benchmarks/bench_cir.py --full     # SPEC configuration (about 80 s per r on an idle core)

Prints one line per radius and writes nothing.  Timings on a shared machine are
inflated by the other processes: compare radii within one run only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from locality.cir import autocorrelation, cir_wasserstein, simulate_cir
from locality.cir_score import LocalizedDiffusion

QUICK = dict(n_train=300, hidden=(64, 64), n_iter=500, batch_size=64, lr=3e-3, lr_schedule="cosine", n_gen=200, steps=100)
FULL = dict(n_train=1000, hidden=(128, 128), n_iter=3000, batch_size=128, lr=1e-3, lr_schedule="constant", n_gen=500, steps=1000)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the SPEC B5 configuration instead of the quick one")
    parser.add_argument("--radii", type=int, nargs="+", default=[0, 1, 3, 8, 16])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = FULL if args.full else QUICK
    rng = np.random.default_rng(args.seed)
    X = simulate_cir(cfg["n_train"], 64, random_state=rng)
    print(f"{'full' if args.full else 'quick'} configuration: {cfg}")
    print(f"training data: W1 {cir_wasserstein(X):.4f}, lag-1 autocorrelation {autocorrelation(X, 1)[1]:.3f}")
    print(f"{'r':>3} {'fit_s':>8} {'ms/step':>8} {'sample_s':>9} {'W1':>7} {'lag1':>6}")
    for r in args.radii:
        model = LocalizedDiffusion(
            r, hidden=cfg["hidden"], n_iter=cfg["n_iter"], batch_size=cfg["batch_size"], lr=cfg["lr"],
            lr_schedule=cfg["lr_schedule"], random_state=rng,
        ).fit(X)
        t0 = time.perf_counter()
        Y = model.sample(cfg["n_gen"], n_steps=cfg["steps"], random_state=rng)
        sample_s = time.perf_counter() - t0
        print(
            f"{r:>3} {model.fit_time_s_:>8.1f} {1e3 * model.fit_time_s_ / cfg['n_iter']:>8.2f} {sample_s:>9.1f} "
            f"{cir_wasserstein(Y):>7.4f} {autocorrelation(Y, 1)[1]:>6.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
