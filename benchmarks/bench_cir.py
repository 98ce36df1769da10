"""Benchmark: the localized CIR scores trained one by one and as one batched model (SPEC B5).

Measures, in one run and in CPU seconds (``time.process_time``, robust to other
processes' load; one torch thread):

* training cost per network and Adam step for ``B`` networks of the radii
  ``--radii`` trained one after the other (``B = 1`` calls) and as one batched
  model of ``B`` networks, with the first layer ``"grouped"`` by radius or
  ``"padded"`` to the largest window, and Adam ``fused`` / ``foreach`` /
  ``single`` (:func:`molrg.nn.batched_adam`);
* sampling cost per network and sampler step, one by one and batched.

The ratios (one by one / batched) are what to read; absolute times depend on the
machine's load.

Usage::

    python benchmarks/bench_cir.py                 # the cir-radius configuration, 30 steps per case
    python benchmarks/bench_cir.py --steps 100 --width 128 --batch-size 128
"""

from __future__ import annotations

import argparse
import time

import torch

from locality.cir import simulate_cir
from locality.cir_score import train_local_scores


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--radii", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=30, help="Adam steps per measured case")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-generate", type=int, default=500)
    parser.add_argument("--sampler-steps", type=int, default=10)
    parser.add_argument("--network-batch", type=int, nargs="+", default=[3, 6])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    radii = args.radii
    B = len(radii)
    data = [simulate_cir(1000, 64, random_state=i) for i in range(B)]
    kw = dict(width=args.width, depth=2, steps=args.steps, batch_size=args.batch_size)
    seeds = list(range(B))
    train_local_scores(data[:1], radii[:1], **dict(kw, steps=3), random_state=[0])  # warm-up
    per = lambda s, n: 1e3 * s / (n * args.steps)  # noqa: E731  ms per network-step

    print(f"{B} networks, radii {radii}, width {args.width}, {args.batch_size} series of 64 per step; CPU ms "
          "per network and step (one torch thread)")
    loop, _ = _cpu(lambda: [train_local_scores(data[b], radii[b], **kw, random_state=[b]) for b in range(B)])
    print(f"  one by one (B = 1 calls)              {per(loop, B):7.2f}")
    for nb in args.network_batch:
        t, _ = _cpu(lambda: [train_local_scores(data[a:a + nb], radii[a:a + nb], **kw, random_state=seeds[a:a + nb])
                             for a in range(0, B, nb)])
        print(f"  batched, {nb} networks per model        {per(t, B):7.2f}   (one by one / batched: {loop / t:.2f})")
    for layer in ("grouped", "padded"):
        for opt in ("fused", "foreach", "single"):
            t, fit = _cpu(lambda: train_local_scores(data, radii, **kw, first_layer=layer, optimizer=opt,
                                                     random_state=seeds))
            print(f"  batched, all {B}, {layer:7s}, Adam {opt:7s} {per(t, B):7.2f}   (one by one / batched: {loop / t:.2f})")

    S = args.sampler_steps
    fits = [train_local_scores(data[b], radii[b], **dict(kw, steps=1), random_state=[b]) for b in range(B)]
    t1, _ = _cpu(lambda: [f.sample(args.n_generate, steps=S, random_state=[b]) for b, f in enumerate(fits)])
    print(f"sampling {args.n_generate} series, CPU ms per network and sampler step:")
    print(f"  one by one                            {1e3 * t1 / (B * S):7.2f}")
    for nb in args.network_batch + [B]:
        many = [train_local_scores(data[a:a + nb], radii[a:a + nb], **dict(kw, steps=1), random_state=seeds[a:a + nb])
                for a in range(0, B, nb)]
        t, _ = _cpu(lambda: [f.sample(args.n_generate, steps=S, random_state=seeds[:len(f.radii)]) for f in many])
        print(f"  batched, {nb:2d} networks per model       {1e3 * t / (B * S):7.2f}   (ratio {t1 / t:.2f})")


if __name__ == "__main__":
    main()
