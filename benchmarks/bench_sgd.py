"""Batched SGD versus a per-problem loop (issue 3, SPEC A7).

Trains B independent MoLRG problems (n = 48, K = 2, d = 4, hardmax, 1500 steps,
default settings) once as one batch and once as a Python loop calling the same
``train_dae`` with B = 1 per problem, and prints the time ratio.  The loop is
timed on ``--loop-subset`` problems and extrapolated linearly to B (each loop
iteration is an independent call of identical cost; the printout says so).

Then it estimates the cost of one full molrg-sgd K = 2 panel (the registered
default grid: d in 1..8 x 18 N values x 20 trials = 2880 problems x 1500 steps)
from the measured batched cost per problem-step, or, with ``--panel``, runs that
sweep through ``run_grid`` (no cache) with ``--jobs`` workers and prints its wall time.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_sgd.py [--B 300] [--steps 1500] [--loop-subset 6] [--threads 1] [--panel --jobs 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from molrg import MoLRG
from molrg.sgd import train_dae


def make_problems(B, n=48, dims=(4, 4), N=40, seed=0):
    X = np.empty((B, N, n))
    for b in range(B):
        model = MoLRG.random(n, dims, random_state=seed + b)
        X[b] = model.sample(N, random_state=seed + 10_000 + b)[0]
    return X


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=300)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--loop-subset", type=int, default=6, help="problems actually timed in the per-problem loop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--panel", action="store_true", help="run the registered molrg-sgd default grid instead of extrapolating")
    ap.add_argument("--jobs", type=int, default=2, help="workers for --panel (joblib)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; n=48, K=2, d=4, N=40, hardmax, random init")

    X = make_problems(args.B)
    seeds = list(range(args.B))
    t0 = time.perf_counter()
    res = train_dae(X, (4, 4), steps=args.steps, random_state=seeds)
    t_batch = time.perf_counter() - t0
    per = t_batch / (args.B * args.steps) * 1e6
    print(f"batched: B={args.B}, {args.steps} steps: {t_batch:.1f} s  ({per:.1f} us per problem-step)")

    m = min(args.loop_subset, args.B)
    t0 = time.perf_counter()
    for b in range(m):
        train_dae(X[b], (4, 4), steps=args.steps, random_state=[seeds[b]])
    t_sub = time.perf_counter() - t0
    t_loop = t_sub * args.B / m
    print(f"loop: {m} problems timed in {t_sub:.1f} s -> {t_loop:.1f} s for B={args.B} (linear extrapolation)")
    print(f"speed-up batched / loop: {t_loop / t_batch:.1f}x")

    # the loop over 1-problem calls reproduces the batched result (per-problem random streams)
    one = train_dae(X[0], (4, 4), steps=args.steps, random_state=[seeds[0]])
    diff = max(np.abs(a[0] @ a[0].T - b @ b.T).max() for a, b in zip(res.bases, one.bases))
    print(f"max |P_batched - P_alone| for problem 0: {diff:.2e}")

    from phase_transition import get_experiment
    from phase_transition.grid import plan_grid

    exp = get_experiment("molrg-sgd")
    plan = plan_grid(exp)
    n_panel = len(plan.points) * plan.config["trials"]
    if args.panel:
        from phase_transition import run_grid

        t0 = time.perf_counter()
        table = run_grid(exp, n_jobs=args.jobs, cache_dir=None, progress=False)
        t_panel = time.perf_counter() - t0
        print(f"panel: the registered molrg-sgd default grid ({n_panel} problems x {plan.config['params']['steps']} "
              f"steps, {len(plan.chunks)} chunks, {args.jobs} workers): {t_panel:.0f} s wall; "
              f"success far above N = 4 K d: {table.loc[table['N'] >= 8 * table['d'], 'success'].mean():.2f}")
    else:
        print(
            f"panel estimate: {n_panel} problems x {args.steps} steps at the batched cost above, one worker "
            f"~ {per * 1e-6 * n_panel * args.steps:.0f} s (extrapolated; run with --panel to measure the real sweep)"
        )


if __name__ == "__main__":
    main()
