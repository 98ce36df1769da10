"""Many small MLPs as one (molrg.nn): batched matmuls against vmap, and the Adam forms.

Prints CPU seconds per training step (time.process_time, so the load of other
processes distorts less than wall time) for the MLP ensembles of molrg-generalization
(E networks, n inputs, width 256, depth 3, batch 256), side by side in one run:

* forward + backward: stacked weights with ``torch.baddbmm`` against
  ``torch.func.functional_call`` + ``vmap`` over per-network parameters, and a plain
  loop over E separate networks;
* the optimizer step: Adam ``fused=True``, ``foreach=True`` and the single-tensor loop;
* a whole training step (forward, backward, Adam): autograd on the per-network leaves +
  fused Adam (what :func:`molrg.mlp.train_mlp_denoiser` did before) against
  :class:`molrg.nn.StackedTrainer` (hand-written backward through numpy's BLAS, one fused
  Adam call on the stacked buffer), alternated ``--repeats`` times (the minimum and the
  median of the per-step times: other processes on a shared machine distort single runs);
* the Jacobians of :func:`molrg.jacobian.denoiser_jacobian` (8 points, n = 64): the default
  ``method="replicate"`` (plain autograd on n copies; an MLP member's written-out
  Jacobian) against ``method="rowsum"`` (``torch.func.jacrev`` + ``vmap``), for the
  closed-form MoLRG denoiser (10 subspaces of dimension 6) and an MLP member.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_mlp.py [--models 24] [--n 8] [--width 256]
[--batch 256] [--steps 30] [--repeats 5] [--quick]`` (molrg-generalization's chunks: ``--models 16
--n 16 --width 128``).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from molrg.nn import BatchedMLP, StackedTrainer, batched_adam


def _per_step(fn, steps):
    fn()  # warm-up
    t0 = time.process_time()
    for _ in range(steps):
        fn()
    return (time.process_time() - t0) / steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="8 networks, 5 steps, 2 repeats")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.quick:
        a.models, a.steps, a.repeats = 8, 5, 2
    E, n_in = a.models, a.n + 17
    net = BatchedMLP(n_in, a.n, n_models=E, width=a.width, depth=3, random_state=0)
    x = torch.randn(E, a.batch, n_in)
    y = torch.randn(E, a.batch, a.n)

    def fb_bmm():
        net.zero_grad(set_to_none=True)
        ((net(x) - y) ** 2).mean(dim=(1, 2)).sum().backward()

    # vmap over per-network parameter dicts
    from torch.func import functional_call, grad, vmap

    solo = BatchedMLP(n_in, a.n, n_models=1, width=a.width, depth=3, random_state=0)
    named = dict(net.named_parameters())
    params = {k: torch.stack([named[f"layers.{b}.{k.split('.')[-1]}"].detach() for b in range(E)]) for k, _ in solo.named_parameters()}

    def one_loss(p, xb, yb):
        out = functional_call(solo, p, (xb[None],))[0]
        return ((out - yb) ** 2).mean()

    g_vmap = vmap(grad(one_loss))

    def fb_vmap():
        g_vmap(params, x, y)

    nets = [torch.nn.Sequential(
        torch.nn.Linear(n_in, a.width), torch.nn.SiLU(), torch.nn.Linear(a.width, a.width), torch.nn.SiLU(),
        torch.nn.Linear(a.width, a.width), torch.nn.SiLU(), torch.nn.Linear(a.width, a.n)) for _ in range(E)]

    def fb_loop():
        for e, m in enumerate(nets):
            m.zero_grad(set_to_none=True)
            ((m(x[e]) - y[e]) ** 2).mean().backward()

    t_bmm, t_vmap, t_loop = (_per_step(f, a.steps) for f in (fb_bmm, fb_vmap, fb_loop))
    print(f"forward+backward, E = {E}, n = {a.n}, width {a.width}, batch {a.batch} (CPU s per step):")
    print(f"  baddbmm   {t_bmm * 1e3:8.2f} ms   (1.00)")
    print(f"  vmap      {t_vmap * 1e3:8.2f} ms   ({t_vmap / t_bmm:.2f}x)")
    print(f"  E loops   {t_loop * 1e3:8.2f} ms   ({t_loop / t_bmm:.2f}x)")
    fb_bmm()
    times = {}
    for method in ("fused", "foreach", "single"):
        m = copy.deepcopy(net)
        for p, q in zip(m.parameters(), net.parameters()):
            p.grad = q.grad.clone()
        opt = batched_adam(m.parameters(), 1e-3, method=method)
        times[method] = _per_step(opt.step, a.steps)
    print("Adam step on the stacked parameters (CPU s per step):")
    for method, t in times.items():
        print(f"  {method:8s}  {t * 1e3:8.2f} ms   ({t / times['fused']:.2f}x fused)")

    # a whole training step: autograd + fused Adam on the leaves against StackedTrainer
    auto_net = copy.deepcopy(net)
    auto_opt = batched_adam(auto_net.parameters(), 1e-3, method="fused")

    def step_autograd():
        auto_opt.zero_grad(set_to_none=True)
        ((auto_net(x) - y) ** 2).mean(dim=(1, 2)).sum().backward()
        auto_opt.step()

    trainer = StackedTrainer(copy.deepcopy(net), 1e-3)

    def step_stacked():
        with torch.no_grad():
            trainer.loss_and_grad(x, y)
            trainer.step()

    res = {"autograd + fused Adam": [], "StackedTrainer": []}
    for _ in range(a.repeats):
        res["autograd + fused Adam"].append(_per_step(step_autograd, a.steps))
        res["StackedTrainer"].append(_per_step(step_stacked, a.steps))
    base = np.median(res["autograd + fused Adam"])
    print(f"training step (CPU s per step, min and median of {a.repeats} alternated runs):")
    for name, ts in res.items():
        print(f"  {name:22s} min {min(ts) * 1e3:8.2f} ms  median {np.median(ts) * 1e3:8.2f} ms   "
              f"({base / np.median(ts):.2f}x)")

    # Jacobians along a trajectory: the default (replicate / explicit) against jacrev + vmap
    from molrg import MoLRG
    from molrg.jacobian import denoiser_jacobian
    from molrg.mlp import MLPDenoiser
    from molrg.sampling import closed_form_denoiser

    dens = {
        "closed form": (closed_form_denoiser(MoLRG.random(64, [6] * 10, random_state=0)), torch.float64),
        "MLP member": (MLPDenoiser(64, width=a.width, depth=3, random_state=0).member(0), torch.float32),
    }
    print("denoiser_jacobian, 8 points, n = 64 (CPU s per call, first calls included in neither):")
    for name, (den, dtype) in dens.items():
        xj = torch.randn(8, 64, dtype=dtype)
        t = {m: [] for m in ("replicate", "rowsum")}
        for _ in range(a.repeats):
            for m in t:
                t[m].append(_per_step(lambda: denoiser_jacobian(den, xj, 1.0, 0.5, method=m), a.steps))
        rep, ref = np.median(t["replicate"]), np.median(t["rowsum"])
        print(f"  {name:12s} replicate {rep * 1e3:7.2f} ms   rowsum (jacrev) {ref * 1e3:7.2f} ms   ({ref / rep:.2f}x)")


if __name__ == "__main__":
    main()
