"""Benchmark: sampler throughput with the closed-form denoiser, and one MLP training (SPEC A9, issue 7).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_sampling.py [--threads 1] [--quick]``.
Prints one line per measurement (samples per second, seconds per training).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from molrg import MoLRG
from molrg.mlp import train_mlp_denoiser
from molrg.sampling import closed_form_denoiser, sample


def bench_sampler(n=48, dims=(4, 4, 4), M=4096, n_steps=18, backend="torch", dtype=None, repeats=3):
    model = MoLRG.random(n, list(dims), random_state=0)
    D = closed_form_denoiser(model)
    dtype = dtype if dtype is not None else (np.float64 if backend == "numpy" else None)
    sample(D, (64, n), steps=n_steps, dtype=dtype, random_state=0)  # warm-up
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        sample(D, (M, n), steps=n_steps, dtype=dtype, random_state=r)
        best = min(best, time.perf_counter() - t0)
    return M / best, best


def bench_mlp(n=8, dims=(2, 2), N=64, width=256, steps=3000, batch_size=128):
    model = MoLRG.random(n, list(dims), random_state=0)
    X, _ = model.sample(N, random_state=1)
    res = train_mlp_denoiser(X, width=width, steps=steps, batch_size=batch_size, random_state=2)
    t0 = time.perf_counter()
    sample(res.denoiser(0), (1000, n), random_state=3)
    return res.runtime_s, time.perf_counter() - t0, res.model.n_parameters()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="300 MLP steps instead of 3000")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    for backend, dtype in (("torch", torch.float32), ("torch", torch.float64), ("numpy", None)):
        sps, t = bench_sampler(backend=backend, dtype=dtype)
        name = f"{backend}/{str(dtype).replace('torch.', '') if dtype else 'float64'}"
        print(f"sampler heun-18 closed form n=48 K=3 d=4 M=4096 [{name}]: {sps:,.0f} samples/s ({t:.3f} s, 35 denoiser calls)")
    steps = 300 if args.quick else 3000
    train_s, sample_s, n_par = bench_mlp(steps=steps)
    print(
        f"MLP training n=8 K=2 d=2 N=64 width=256 depth=3 ({n_par} params) {steps} Adam steps of 128: "
        f"{train_s:.1f} s ({1e3 * train_s / steps:.1f} ms/step); heun-18 sampling of 1000: {sample_s:.2f} s"
    )


if __name__ == "__main__":
    main()
