# %% [markdown]
# # The hardmax denoiser is K-subspaces
#
# With $K$ components of equal dimension, the hardmax denoiser (eq. 16-17)
# projects a noisy point onto the subspace that best fits its clean version.
# SPEC A5 (Theorem 3): its loss is $A - \frac{B}{N}\sum_i \max_k \|U_k^\top x_i\|^2$,
# the K-subspaces objective. So SGD on the diffusion loss and the classical
# K-subspaces algorithm should find the same subspaces, and they do.

# %%
import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure

from _common import QUICK, save
from molrg import KSubspaces, MoLRG, closed_form_loss, subspace_error, train_dae

n, d, K = 48, 3, 2
Ns = [4, 6, 12, 24] if QUICK else [2, 4, 6, 8, 12, 16, 24, 48]
trials = 3 if QUICK else 10
steps = 300 if QUICK else 1500
rows = []
for N in Ns:
    for trial in range(trials):
        model = MoLRG.random(n, [d] * K, random_state=100 * N + trial)
        X, _ = model.sample(N, random_state=trial)
        kss = KSubspaces([d] * K, random_state=trial).fit(X)
        sgd = train_dae(X, [d] * K, parameterization="hardmax", init="spectral", steps=steps, random_state=trial)
        rows.append((N, subspace_error(sgd.bases, model.bases), subspace_error(kss.bases_, model.bases),
                     closed_form_loss(X, sgd.bases, weighting="snr"), closed_form_loss(X, kss.bases_, weighting="snr")))
rows = np.array(rows)

# %%
for N in Ns:
    r = rows[rows[:, 0] == N]
    print(f"N={N:3d}: median error SGD {np.median(r[:, 1]):.3f}, KSS {np.median(r[:, 2]):.3f}; "
          f"loss SGD/KSS = {np.median(r[:, 3] / r[:, 4]):.4f}")

# %%
fig = Figure(figsize=(5.5, 4), layout="constrained")
ax = fig.subplots()
ax.scatter(rows[:, 2], rows[:, 1], c=np.log2(rows[:, 0]), cmap="viridis")
lim = [0, max(rows[:, 1:3].max(), 0.1) * 1.05]
ax.plot(lim, lim, "k--", lw=1)
ax.axvline(K * d, color="0.5")
ax.set(xlabel="subspace error, K-subspaces", ylabel="subspace error, SGD on the hardmax DAE",
       title="same data, same answers (colour: log2 N)")
save(fig, "03_hardmax_dae_is_kss")
