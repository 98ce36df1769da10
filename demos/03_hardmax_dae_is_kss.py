"""
The hardmax denoiser is K-subspaces
===================================
"""

###############################################################################
# With :math:`K` components of equal dimension, the hardmax denoiser (eq. 16-17)
# projects a noisy point onto the subspace that best fits its clean version. Its
# loss is (Theorem 3)
#
# .. math::
#
#     L(\{U_k\}) = A - \frac{B}{N}\sum_i \max_k \|U_k^\top x_i\|^2 ,
#
# the K-subspaces objective. So SGD on the diffusion loss and the classical
# K-subspaces algorithm should find the same subspaces, and they do. All the
# trials of one sample size train together, as one batched SGD run; a short final
# phase on the exact expectation over the noise (``exact_steps``) removes the
# noise floor that Monte-Carlo gradients leave.

import matplotlib.pyplot as plt
import numpy as np
import torch

from molrg import KSubspaces, MoLRG, subspace_error, train_dae

torch.set_num_threads(1)  # many small problems: one thread is fastest on a shared machine

n, d, K, trials = 48, 3, 2, 5
Ns = [2, 4, 6, 8, 12, 16, 24, 48]
rows = []
for N in Ns:
    models = [MoLRG.random(n, [d] * K, random_state=100 * N + trial) for trial in range(trials)]
    data = np.stack([m.sample(N, random_state=trial)[0] for trial, m in enumerate(models)])
    sgd = train_dae(data, [d] * K, parameterization="hardmax", init="spectral", steps=600, exact_steps=50,
                    random_state=list(range(trials)))
    for trial, model in enumerate(models):
        kss = KSubspaces([d] * K, random_state=trial).fit(data[trial])
        sgd_bases = [U[trial] for U in sgd.bases]
        rows.append((N, subspace_error(sgd_bases, model.bases), subspace_error(kss.bases_, model.bases)))
rows = np.array(rows)

###############################################################################
# Median subspace errors per sample size: both fail below :math:`N = K d = 6`
# and both recover the subspaces above it.

for N in Ns:
    r = rows[rows[:, 0] == N]
    print(f"N={N:3d}: median error SGD {np.median(r[:, 1]):.3f}, K-subspaces {np.median(r[:, 2]):.3f}")

###############################################################################
# Each point is one data set: the error of SGD against the error of K-subspaces
# on the same data. The points lie on the diagonal.

fig, ax = plt.subplots(figsize=(5.8, 4.4), layout="constrained")
points = ax.scatter(rows[:, 2], rows[:, 1], c=np.log2(rows[:, 0]), cmap="viridis")
lim = [0, max(rows[:, 1:3].max(), 0.1) * 1.05]
ax.plot(lim, lim, "k--", lw=1, label="SGD = K-subspaces")
ax.set(xlabel="subspace error, K-subspaces", ylabel="subspace error, SGD on the hardmax DAE",
       title="same data, same answers", xlim=lim, ylim=lim)
fig.colorbar(points, ax=ax, label="log2 N")
ax.legend(loc="upper left")
plt.show()
