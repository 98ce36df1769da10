"""Benchmark: the localized CIR scores of ``cir-radius`` (SPEC B5, issues 6 and 16).

Measures, in one run and in CPU seconds (``time.process_time``, one torch thread;
the ratios are what to read, absolute times depend on the machine's load):

* training cost per network and Adam step, for the six radii ``--radii``:
  networks trained one by one (``B = 1`` calls) and as one batched model, the
  gradient by autograd or by the hand-written backward pass
  (:meth:`locality.cir_score.LocalScoreMLP.dsm_backward`), every position of
  every series scored or ``P`` random windows per series (``positions``), Adam
  fused / foreach / single-tensor (:func:`molrg.nn.batched_adam`), and the first
  layer grouped by radius or zero-padded;
* sampling cost per network and sampler step (500 series), networks one by one
  and batched, and the batched sampler's evaluation block (``batch_size``:
  series whose windows go through the network together);
* the exact W1 metric (:func:`locality.cir.cir_wasserstein`, 250 x 64 values):
  the quantile on the grid only (cold and cached) against the quantile-cell
  formula with the Gamma quantile evaluated at every value (before issue 16's
  second round);
* one chunk of ``cir-radius`` (18 networks: 6 radii x 3 trials), before and
  after issue 16: the previous configuration (autograd, 64 series x 64 positions
  per step, batches of 6 networks, 500 generated series) against the current one
  (hand-written backward, 128 series x 4 windows per step, one batch of 18, 250
  generated series), both with 1200 Adam steps and 100 sampler steps: per-step
  costs measured here, multiplied out to the full chunk.

Usage::

    python benchmarks/bench_cir.py                 # 30 Adam steps and 5 sampler steps per case
    python benchmarks/bench_cir.py --steps 100 --sampler-steps 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from locality.cir import simulate_cir
from locality.cir_score import train_local_scores


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def _w1_quantile_everywhere(x, a=0.5, b=1.0, sigma=0.5):
    """The quantile-cell W1 with the Gamma quantile evaluated at every value (the previous form)."""
    from scipy import stats

    x = np.sort(np.ravel(x))
    k, theta = 2 * a * b / sigma**2, sigma**2 / (2 * a)
    law, upper = stats.gamma(k, scale=theta), stats.gamma(k + 1, scale=theta)

    def M(u):
        return k * theta * upper.cdf(law.ppf(u))

    n = x.size
    u0, u1 = np.arange(n) / n, np.arange(1, n + 1) / n
    us = np.clip(law.cdf(x), u0, u1)
    return float(np.sum(np.maximum(x * (2 * us - u0 - u1) - 2 * M(us) + M(u0) + M(u1), 0.0)))


def _bench_w1():
    from locality import cir as cir_mod

    X = [simulate_cir(250, 64, random_state=100 + i) for i in range(6)]
    t_old, w_old = _cpu(lambda: [_w1_quantile_everywhere(x) for x in X])
    cir_mod._partial_moments_on_grid.cache_clear()
    t_cold, w_new = _cpu(lambda: [cir_mod.cir_wasserstein(X[0])])
    t_warm, w_new2 = _cpu(lambda: [cir_mod.cir_wasserstein(x) for x in X[1:]])
    err = max(abs(a - b) for a, b in zip(w_old, w_new + w_new2))
    print("exact W1 of 250 x 64 values, CPU ms per call:")
    print(f"  Gamma quantile at every value (before)                  {1e3 * t_old / len(X):7.2f}")
    print(f"  quantile on the grid only, first size (cold)            {1e3 * t_cold:7.2f}")
    print(f"  quantile on the grid only, cached grid                  {1e3 * t_warm / (len(X) - 1):7.2f}"
          f"   (largest difference {err:.1e})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--radii", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=30, help="Adam steps per measured case")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--n-generate", type=int, default=500, help="series of the sampling rows")
    parser.add_argument("--sampler-steps", type=int, default=5, help="sampler steps per measured case")
    parser.add_argument("--skip-forms", action="store_true", help="only the chunk before / after")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    radii = args.radii
    B = len(radii)
    data = [simulate_cir(1000, 64, random_state=i) for i in range(3 * B)]
    base = dict(width=args.width, depth=2, steps=args.steps, lr=3e-3, lr_schedule="cosine")
    old = dict(base, batch_size=64, gradient="autograd")  # before issue 16: every position, autograd
    new = dict(base, batch_size=128, positions=4, gradient="manual")  # after: 4 windows of 128 series
    train_local_scores(data[:1], radii[:1], **dict(new, steps=3), random_state=[0])  # warm-up
    # torch.optim.Adam loads torch's compiler stack on first use (about 1.5 s): outside the timings
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3, fused=True)
    per = lambda s, n: 1e3 * s / (n * args.steps)  # noqa: E731  ms per network-step

    if not args.skip_forms:
        print(f"{B} networks, radii {radii}, width {args.width}, series of 64; CPU ms per network and Adam step "
              "(one torch thread)")
        loop, _ = _cpu(lambda: [train_local_scores(data[b], radii[b], **old, random_state=[b]) for b in range(B)])
        print(f"  64 series x 64 positions, autograd, one by one (B = 1)   {per(loop, B):7.2f}")
        cases = [("64 x 64, autograd, batched", old), ("64 x 64, hand-written backward", dict(old, gradient="manual")),
                 ("128 series x 4 windows, hand-written", new)]
        for label, kw in cases:
            t, _ = _cpu(lambda: train_local_scores(data[:B], radii, **kw, random_state=list(range(B))))
            print(f"  {label:55s} {per(t, B):7.2f}   (one by one / this: {loop / t:.2f})")
        for layer in ("grouped", "padded"):
            for opt in ("flat", "fused", "foreach", "single"):
                t, _ = _cpu(lambda: train_local_scores(data[:B], radii, **new, first_layer=layer, optimizer=opt,
                                                       random_state=list(range(B))))
                print(f"  128 x 4, hand-written, {layer:7s}, Adam {opt:7s}               {per(t, B):7.2f}")
        S = args.sampler_steps
        fits = [train_local_scores(data[b], radii[b], **dict(new, steps=1), random_state=[b]) for b in range(B)]
        t1, _ = _cpu(lambda: [f.sample(args.n_generate, steps=S, random_state=[b]) for b, f in enumerate(fits)])
        print(f"sampling {args.n_generate} series, CPU ms per network and sampler step:")
        print(f"  one by one                                              {1e3 * t1 / (B * S):7.2f}")
        many = train_local_scores(data[:B], radii, **dict(new, steps=1), random_state=list(range(B)))
        t, _ = _cpu(lambda: many.sample(args.n_generate, steps=S, random_state=list(range(B))))
        print(f"  batched, {B} networks                                    {1e3 * t / (B * S):7.2f}   (ratio {t1 / t:.2f})")
        nets = [r for r in radii for _ in range(3)]  # a cir-radius chunk: 3 trials per radius
        chunk = train_local_scores(data[:len(nets)], nets, **dict(new, steps=1), random_state=list(range(len(nets))))
        print(f"sampling 250 series from {len(nets)} networks batched, CPU ms per network and sampler step, "
              "by evaluation block:")
        for block in (4, 8, 16, 32, 100):
            t, _ = _cpu(lambda: chunk.sample(250, steps=S, batch_size=block, random_state=list(range(len(nets)))))
            print(f"  block of {block:3d} series                                    {1e3 * t / (len(nets) * S):7.2f}")
        _bench_w1()

    # one chunk of cir-radius: 18 networks, 1200 Adam steps, 500 generated series
    nets = [r for r in radii for _ in range(3)]
    n, S, full_steps, sampler = len(nets), args.sampler_steps, 1200, 100
    print(f"one chunk of cir-radius ({n} networks, {full_steps} Adam steps, {sampler} sampler steps), "
          f"CPU s multiplied out from {args.steps} Adam steps and {S} sampler steps:")
    rows = []
    for label, kw, nb, n_gen in (("before: autograd, 64 x 64, batches of 6, 500 series", old, 6, 500),
                                 ("after: hand-written, 128 x 4, one batch of 18, 250 series", new, n, 250)):
        t_train, t_sample = 0.0, 0.0
        for a in range(0, n, nb):
            t, fit = _cpu(lambda: train_local_scores(data[a:a + nb], nets[a:a + nb], **kw,
                                                     random_state=list(range(a, a + nb))))
            t_train += t
            t, _ = _cpu(lambda: fit.sample(n_gen, steps=S, random_state=list(range(len(fit.radii)))))
            t_sample += t
        train_s, sample_s = t_train * full_steps / args.steps, t_sample * sampler / S
        rows.append(train_s + sample_s)
        print(f"  {label:58s} training {train_s:6.1f}  sampling {sample_s:5.1f}  total {train_s + sample_s:6.1f}")
    print(f"  before / after: {rows[0] / rows[1]:.2f}")


if __name__ == "__main__":
    main()
