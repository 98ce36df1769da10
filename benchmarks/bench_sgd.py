"""Batched SGD: kernel rate against the GEMM rate, experiment cost before/after, batched vs loop (issues 3, 16).

First the float32 GEMM rate and the SGD kernel's rate (CPU time, n = 48 and 768,
hardmax and softmax, the fast kernel and the legacy one in the same run, with
their ratio: issue 16's target is >= 10% of the GEMM rate at n = 768).
With ``--experiments D`` it then runs one chunk (d = D, every N, 20 trials) of each
SGD experiment in today's configuration and in the configuration it replaced, in
one run, and prints the CPU times and their ratio.

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
    """B noiseless MoLRG training sets (N, n), one model per problem."""
    X = np.empty((B, N, n))
    for b in range(B):
        model = MoLRG.random(n, dims, random_state=seed + b)
        X[b] = model.sample(N, random_state=seed + 10_000 + b)[0]
    return X


def gemm_rate(n=768, repeats=5):
    """Single-call float32 GEMM rate (GFLOP/s) of an n x n by n x n product on this torch/thread setting."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - t0)
    return 2 * n**3 / best / 1e9


def kernel_rate(n, parameterization, B=64, steps=30, d=4, K=2, batch_size=32, kernel="fast"):
    """CPU microseconds per problem-step of train_dae (float32, start excluded) and two GFLOP/s figures.

    ``nominal``: the flop count of the legacy kernel's five batched products, ``2 * 5 * batch_size * n * K d``
    per problem-step, over the time (the same work unit for both kernels, so the ratio of the rates is the
    speed-up); ``actual``: the flops the kernel itself performs (legacy: the same; fast, with the reduced
    noise draw it uses here (``D = 8 <= n / 6``): two products with the samples and five ``D x D`` by
    ``D x n`` ones (retraction, Gram, ``Ht U``, update, noise term), ``2 n D (2 batch_size + 5 D)``).
    """
    X = make_problems(B, n=n, dims=(d,) * K, N=8 * K * d).astype(np.float32)
    kw = dict(parameterization=parameterization, init="random", batch_size=batch_size, kernel=kernel, random_state=list(range(B)))
    train_dae(X, (d,) * K, steps=2, **kw)  # warm-up
    t0 = time.process_time()
    train_dae(X, (d,) * K, steps=steps, **kw)
    t1 = time.process_time()
    train_dae(X, (d,) * K, steps=0, **kw)  # start and bookkeeping only
    t2 = time.process_time()
    per = ((t1 - t0) - (t2 - t1)) / (B * steps)
    D = K * d
    nominal = 2 * 5 * batch_size * n * D
    actual = nominal if kernel == "legacy" else 2 * n * D * (2 * batch_size + 5 * D)
    return per * 1e6, nominal / per / 1e9, actual / per / 1e9


# (experiment, label, parameters) of one chunk: the previous configuration first, then today's
_COST_CASES = (
    ("molrg-sgd", "previous molrg-sgd / -vs-kss: hardmax, spectral start, 1500 steps", dict(parameterization="hardmax", init="spectral", steps=1500)),
    ("molrg-sgd", "molrg-sgd: softmax, start near the truth, 300 steps", {}),
    ("molrg-sgd-spectral", "molrg-sgd-spectral: softmax, spectral, 100 + 50 exact steps, + K-subspaces", {}),
    ("molrg-sgd-single", "previous molrg-sgd-single: 1500 steps", dict(steps=1500)),
    ("molrg-sgd-single", "molrg-sgd-single: 500 steps", {}),
)


def experiment_costs(d):
    """CPU seconds of one chunk (d, all N, 20 trials) per configuration, measured in one run."""
    from phase_transition import run_grid

    for name, label, params in _COST_CASES:
        t0 = time.process_time()
        df = run_grid(name, grid={"d": [d]}, params=params, cache_dir=None, progress=False)
        print(f"{label}: d = {d}, {len(df)} problems, {time.process_time() - t0:.1f} s CPU", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=300)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--loop-subset", type=int, default=6, help="problems actually timed in the per-problem loop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--panel", action="store_true", help="run the registered molrg-sgd default grid instead of extrapolating")
    ap.add_argument("--jobs", type=int, default=2, help="workers for --panel (joblib)")
    ap.add_argument("--rates-only", action="store_true", help="only the kernel rate against the GEMM rate")
    ap.add_argument("--experiments", type=int, default=0, metavar="D",
                    help="CPU time of one chunk (d = D) of each SGD experiment, today's configuration and the previous one")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = gemm_rate(768)
    print(f"float32 GEMM rate (768 x 768 x 768, {torch.get_num_threads()} thread(s), CPU time): {peak:.1f} GFLOP/s")
    for n in (48, 768):
        for par in ("hardmax", "softmax"):
            res = {kern: kernel_rate(n, par, kernel=kern) for kern in ("legacy", "fast")}
            for kern, (us, rate, actual) in res.items():
                print(f"SGD kernel {kern:6s} n={n:4d} {par:8s}: {us:7.1f} us per problem-step (CPU), nominal {rate:5.2f} GFLOP/s = "
                      f"{100 * rate / peak:4.1f}% of the GEMM rate (actual flops: {actual:5.2f} GFLOP/s = {100 * actual / peak:4.1f}%)")
            print(f"  speed-up fast / legacy (n={n}, {par}): {res['legacy'][0] / res['fast'][0]:.2f}x", flush=True)
    if args.experiments:
        experiment_costs(args.experiments)
    if args.rates_only:
        return
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
