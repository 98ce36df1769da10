"""Benchmark: the molrg-kss K = 2 panel, batched K-subspaces vs a per-problem loop (issues 4 and 16).

Panel (defaults): n = 48, K = 2, d in 1..8, N on a grid from 1 to 4 K d_max = 64,
20 trials per cell, noiseless orthogonal MoLRG, spectral init.  The SAME
algorithm runs twice:

* batched: one :func:`molrg.k_subspaces_batch` call per d over all N and trials
  (padding rows masked; inside, problems are grouped by similar N);
* loop: the same :func:`molrg.k_subspaces_batch` with B = 1, problem by problem.

Both use per-problem seeds, so the two give the same bases; the script checks
that the success tables agree.  The spectral start's clustering step
(``molrg._spectral._spectral_labels``: q-nearest affinities, then by default one
batched ``eigh`` of the normalized affinities and the ``cluster_qr``
assignment, over all problems and ``q`` values of a call) is timed
separately (wall time split: spectral labels / rest).  With
``--spectral-method sklearn`` it is scikit-learn's ``SpectralClustering``
once per problem and ``q`` instead (the reference; the setting of the first
measurement of issue 4).  ``--jobs 2`` also times the batched path with one
chunk per d over 2 joblib workers (what ``run_grid`` does on 2 cores), and
``--plain-loop`` the per-problem reference a user would loop over: the public
``KSubspaces(..., spectral_method="sklearn").fit`` one problem at a time.
Then it compares success rates with the oracle (PCA of the true clusters) per
d, and the success of several ``q`` choices for the spectral start.

``--large N [N ...]`` instead times one large problem per N (issue 16; n = 64,
K = 10, d = 5, noise 0.05 by default): ``KSubspaces`` (the sparse spectral
start: exact blocked q-NN search, connected components, LOBPCG) against scikit-learn's ``SpectralClustering`` on the
same sparse affinity (``molrg._spectral.sparse_knn_affinity``, q = 10), with
wall and CPU time, peak memory (``tracemalloc``: numpy and Python allocations)
and subspace error; ratios are printed.  The process's maximum resident set
size (``resource.getrusage``: the data, the imported libraries and every
allocation, BLAS buffers included) is printed too.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_kss.py [--trials 20] [--n-step 2] [--skip-q]
[--spectral-method dense|sklearn] [--jobs 2] [--plain-loop]``, or
``python benchmarks/bench_kss.py --large 20000 100000 [--skip-sklearn-above 20000]``;
without ``--large`` (``make bench``) the panel (with ``--plain-loop``, on by default) is followed by
``--large 20000``; ``--quick`` is 4 trials, no loop and no q study, and N = 5000.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
import warnings

import numpy as np

import molrg
from molrg import _spectral

_SPECTRAL_TIME = [0.0, 0]
_orig_labels = _spectral._spectral_labels


def _timed_labels(*args, **kwargs):
    t = time.perf_counter()
    out = _orig_labels(*args, **kwargs)
    _SPECTRAL_TIME[0] += time.perf_counter() - t
    _SPECTRAL_TIME[1] += 1
    return out


_spectral._spectral_labels = _timed_labels


def _timed(fn):
    """Run ``fn()``; return its result, wall seconds, CPU seconds and peak traced memory (bytes)."""
    tracemalloc.start()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, cpu, peak


def run_large(sizes, n=64, K=10, d=5, noise=0.05, q=10, seed=0, skip_sklearn_above=20000):
    """One large problem per N: KSubspaces (sparse spectral start) vs SpectralClustering on the same affinity."""
    import scipy.sparse.csgraph  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401  (imported before anything is timed)
    from sklearn.cluster import SpectralClustering
    from sklearn.metrics import adjusted_rand_score

    print(f"large K-subspaces: n={n} K={K} d={d} noise_std={noise}; sklearn SpectralClustering on the q={q} affinity")
    for N in sizes:
        model = molrg.MoLRG.random(n, [d] * K, noise_std=noise, random_state=seed)
        X, y = model.sample(N, random_state=seed + 1)
        km, wall, cpu, peak = _timed(lambda: molrg.KSubspaces([d] * K, q=q, random_state=seed).fit(X))
        err = molrg.subspace_error(km.bases_, model.bases)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"N={N:7d} KSubspaces: wall {wall:7.2f} s, CPU {cpu:7.2f} s, peak {peak / 2**20:7.1f} MiB "
              f"(process max RSS so far {rss:.0f} MiB), "
              f"subspace error {err:.4f}, ARI {adjusted_rand_score(y, km.labels_):.4f}, n_iter {km.n_iter_}", flush=True)
        if N > skip_sklearn_above:
            continue
        A, wa, ca, _ = _timed(lambda: _spectral.sparse_knn_affinity(X, [q])[q])
        sc = SpectralClustering(n_clusters=K, affinity="precomputed", assign_labels="cluster_qr", random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "graph is not fully connected"
            lab, ws, cs, _ = _timed(lambda: sc.fit_predict(A))
        print(f"N={N:7d} sklearn SpectralClustering: wall {ws:7.2f} s (+ affinity {wa:.2f} s), CPU {cs:7.2f} s "
              f"(+ {ca:.2f} s), ARI {adjusted_rand_score(y, lab):.4f}", flush=True)
        print(f"N={N:7d} ratio KSubspaces / SpectralClustering: wall {wall / ws:.2f}x ({wall / (ws + wa):.2f}x with "
              f"the affinity), CPU {cpu / cs:.2f}x ({cpu / (cs + ca):.2f}x)", flush=True)


def make_panel(n, K, ds, Ns, trials, seed):
    """Data for every (d, N, trial): dict d -> (X (B, Nmax, n), mask, labels, true bases list, N per row, seeds)."""
    ss = np.random.SeedSequence(seed)
    panel = {}
    for d in ds:
        Xs, ys, Ub, Nb, seeds = [], [], [], [], []
        for N in Ns:
            for t in range(trials):
                child = ss.spawn(1)[0]
                data_seed, solve_seed = child.generate_state(2)
                model = molrg.MoLRG.random(n, [d] * K, random_state=int(data_seed))
                X, y = model.sample(N, random_state=int(data_seed) + 1)
                Xs.append(X)
                ys.append(y)
                Ub.append(model.bases)
                Nb.append(N)
                seeds.append(int(solve_seed))
        B, Nmax = len(Xs), max(Ns)
        Xp = np.zeros((B, Nmax, n))
        mask = np.zeros((B, Nmax), bool)
        lab = np.full((B, Nmax), -1)
        for b, (X, y) in enumerate(zip(Xs, ys)):
            Xp[b, : len(X)] = X
            mask[b, : len(X)] = True
            lab[b, : len(X)] = y
        true = [np.stack([U[k] for U in Ub]) for k in range(K)]
        panel[d] = (Xp, mask, lab, true, np.array(Nb), seeds)
    return panel


def success_table(panel, results, Ns, tau=0.5):
    """dict d -> success rate per N (array)."""
    out = {}
    for d, (X, mask, lab, true, Nb, seeds) in panel.items():
        err = molrg.subspace_error_batch(results[d], true)
        ok = molrg.success(err, tau)
        out[d] = np.array([ok[Nb == N].mean() for N in Ns])
    return out


def run_batched(panel, K, q=None, backend="auto"):
    res, t0 = {}, time.perf_counter()
    for d, (X, mask, lab, true, Nb, seeds) in panel.items():
        res[d] = molrg.k_subspaces_batch(X, [d] * K, mask=mask, q=q, random_state=seeds, spectral_method=backend).bases
    return res, time.perf_counter() - t0


def run_batched_parallel(panel, K, n_jobs):
    """The batched path with one chunk per d spread over ``n_jobs`` joblib workers (as ``run_grid`` does)."""
    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    out = Parallel(n_jobs=n_jobs)(
        delayed(molrg.k_subspaces_batch)(X, [d] * K, mask=mask, random_state=seeds)
        for d, (X, mask, lab, true, Nb, seeds) in panel.items()
    )
    return {d: r.bases for d, r in zip(panel, out)}, time.perf_counter() - t0


def run_loop(panel, K, q=None, backend="auto"):
    res, t0 = {}, time.perf_counter()
    for d, (X, mask, lab, true, Nb, seeds) in panel.items():
        per = []
        for b in range(X.shape[0]):
            N = int(Nb[b])
            r = molrg.k_subspaces_batch(X[b : b + 1, :N], [d] * K, q=q, random_state=[seeds[b]], spectral_method=backend)
            per.append(r.bases)
        res[d] = [np.concatenate([p[k] for p in per]) for k in range(K)]
    return res, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--d-max", type=int, default=8)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--n-step", type=int, default=2, help="N grid: 1, then n-step, 2 n-step, ... up to 4 K d_max")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-loop", action="store_true")
    p.add_argument("--skip-q", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="also time the batched path over this many joblib workers")
    p.add_argument("--plain-loop", action="store_true", default=True,
                   help="also time KSubspaces(spectral_method='sklearn').fit problem by problem (the default)")
    p.add_argument("--skip-plain-loop", dest="plain_loop", action="store_false")
    p.add_argument("--skip-large", action="store_true", help="no --large 20000 run after the panel")
    p.add_argument("--quick", action="store_true", help="4 trials, no loop or q study, and N = 5000 for the large run")
    p.add_argument("--spectral-method", choices=_spectral.SPECTRAL_METHODS, default="auto",
                   help="clustering step of the spectral start (default auto: batched eigh + cluster_qr at these sizes)")
    p.add_argument("--large", type=int, nargs="+", metavar="N",
                   help="time one large problem per N (n=64, K=10, d=5) against SpectralClustering instead")
    p.add_argument("--noise", type=float, default=0.05, help="noise_std of the --large problems")
    p.add_argument("--skip-sklearn-above", type=int, default=20000, help="--large: no SpectralClustering above this N")
    a = p.parse_args(argv)
    if a.quick:
        a.trials, a.skip_loop, a.skip_q = 4, True, True
    if a.large:
        run_large(a.large, noise=a.noise, seed=a.seed, skip_sklearn_above=a.skip_sklearn_above)
        return
    main_panel(a)
    if not a.skip_large:
        print()
        run_large([5000] if a.quick else [20000], noise=a.noise, seed=a.seed)


def main_panel(a):
    """The figure-4 panel: batched vs loops, and success against the oracle."""
    sb = a.spectral_method
    K, ds = a.K, list(range(1, a.d_max + 1))
    Ns = sorted({1, *range(a.n_step, 4 * K * a.d_max + 1, a.n_step)})
    panel = make_panel(a.n, K, ds, Ns, a.trials, a.seed)
    nprob = sum(v[0].shape[0] for v in panel.values())
    print(f"panel: n={a.n} K={K} d=1..{a.d_max} N={Ns[0]}..{Ns[-1]} ({len(Ns)} values) trials={a.trials}: {nprob} problems")
    print(f"spectral clustering step: {sb}")

    _SPECTRAL_TIME[:] = [0.0, 0]
    c_b = time.process_time()
    res_b, t_b = run_batched(panel, K, backend=sb)
    c_b = time.process_time() - c_b
    spec_b = tuple(_SPECTRAL_TIME)
    print(f"batched: {t_b:8.2f} s wall, {c_b:8.2f} s CPU  (spectral labels {spec_b[0]:.2f} s in {spec_b[1]} calls; "
          f"rest {t_b - spec_b[0]:.2f} s)")
    succ_b = success_table(panel, res_b, Ns)
    if a.jobs > 1:
        res_p, t_par = run_batched_parallel(panel, K, a.jobs)
        same = all(np.array_equal(succ_b[d], s) for d, s in success_table(panel, res_p, Ns).items())
        print(f"batched, {a.jobs} workers (one chunk per d): {t_par:8.2f} s; same success table: {same}")
    if not a.skip_loop:
        _SPECTRAL_TIME[:] = [0.0, 0]
        res_l, t_l = run_loop(panel, K, backend=sb)
        spec_l = tuple(_SPECTRAL_TIME)
        print(f"loop:    {t_l:8.2f} s  (spectral labels {spec_l[0]:.2f} s in {spec_l[1]} calls; rest {t_l - spec_l[0]:.2f} s)")
        print(f"ratio loop/batched: end-to-end {t_l / t_b:.2f}x; spectral labels {spec_l[0] / spec_b[0]:.2f}x; "
              f"rest {(t_l - spec_l[0]) / (t_b - spec_b[0]):.2f}x")
        succ_l = success_table(panel, res_l, Ns)
        same = all(np.array_equal(succ_b[d], succ_l[d]) for d in ds)
        print(f"batched and loop success tables identical: {same}")
    if a.plain_loop:
        # the per-problem reference a user would loop over: the public estimator, one problem at a
        # time, with scikit-learn's SpectralClustering as the spectral step (the pre-batching code path)
        t0, c0 = time.perf_counter(), time.process_time()
        for d, (X, mask, lab, true, Nb, seeds) in panel.items():
            for b in range(X.shape[0]):
                molrg.KSubspaces([d] * K, spectral_method="sklearn", random_state=seeds[b]).fit(X[b, : int(Nb[b])])
        t_p, c_p = time.perf_counter() - t0, time.process_time() - c0
        print(f"plain loop (KSubspaces.fit per problem, sklearn spectral step): {t_p:8.2f} s wall, {c_p:8.2f} s CPU; "
              f"ratio plain/batched {t_p / t_b:.2f}x wall, {c_p / c_b:.2f}x CPU"
              + (f", plain/batched with {a.jobs} workers {t_p / t_par:.2f}x wall" if a.jobs > 1 else ""))

    # oracle
    succ_o = {}
    for d, (X, mask, lab, true, Nb, seeds) in panel.items():
        ok = molrg.success(molrg.subspace_error_batch(molrg.oracle_bases(X, lab, [d] * K), true))
        succ_o[d] = np.array([ok[Nb == N].mean() for N in Ns])

    tables = {"default": succ_b}
    if not a.skip_q:
        for name, q in (("q=d+1", lambda d: d + 1), ("q=0.3N/K", "0.3"), ("q=N/K-1", "NK")):
            res = {}
            for d, (X, mask, lab, true, Nb, seeds) in panel.items():
                if callable(q):
                    res[d] = molrg.k_subspaces_batch(X, [d] * K, mask=mask, q=q(d), random_state=seeds,
                                                     spectral_method=sb).bases
                else:  # per-N q: solve each N group separately (q depends on N)
                    parts = [None] * X.shape[0]
                    for N in Ns:
                        idx = np.flatnonzero(Nb == N)
                        qq = max(1, round(0.3 * N / K)) if q == "0.3" else max(1, round(N / K) - 1)
                        r = molrg.k_subspaces_batch(X[idx, :N], [d] * K, q=qq, random_state=[seeds[i] for i in idx],
                                                    spectral_method=sb)
                        for j, i in enumerate(idx):
                            parts[i] = [U[j] for U in r.bases]
                    res[d] = [np.stack([pp[k] for pp in parts]) for k in range(K)]
            tables[name] = success_table(panel, res, Ns)

    print("\nsuccess-rate agreement with the oracle per d (cells equal / max |diff| / mean KSS, mean oracle)")
    header = "d  " + "".join(f"{name:>26s}" for name in tables)
    print(header)
    for d in ds:
        row = f"{d:<3d}"
        for name, tab in tables.items():
            diff = np.abs(tab[d] - succ_o[d])
            row += f"{int((diff == 0).sum()):>6d}/{len(Ns):<3d}{diff.max():5.2f} {tab[d].mean():5.2f} {succ_o[d].mean():5.2f}"
        print(row)
    for name, tab in tables.items():
        worst = max(((d, N, tab[d][i], succ_o[d][i]) for d in ds for i, N in enumerate(Ns)), key=lambda r: abs(r[2] - r[3]))
        print(f"{name}: worst cell d={worst[0]} N={worst[1]}: KSS {worst[2]:.2f} vs oracle {worst[3]:.2f}")


if __name__ == "__main__":
    main()
