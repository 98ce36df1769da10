# %% [markdown]
# # The phase transition at N = K d
#
# How many samples does a diffusion model need to learn a mixture of $K$
# subspaces of dimension $d$ in $\mathbb{R}^{48}$? Because training is subspace
# clustering (demo 03), the answer is about $K d$: far fewer than the ambient
# dimension. Below it, the samples of some component cannot span its subspace
# (failure is certain); above it, K-subspaces recovers every subspace.
# This runs the registered sweep `molrg-kss` (a table with one row per trial)
# and draws its heatmap with the boundary $N = K d$.

# %%
import matplotlib

matplotlib.use("Agg")

from _common import QUICK, save
from phase_transition import get_experiment, run_grid

exp = get_experiment("molrg-kss")
grid = {"d": [1, 2, 3], "N": [1, 2, 4, 6, 8, 12, 16, 24]} if QUICK else None
table = run_grid(exp, grid, trials=4 if QUICK else 10)
print(table.groupby(["d", "N"])["success"].mean().unstack().round(2))
print(exp.summarize(table, table.attrs["config"]))

# %% [markdown]
# The heatmap: success rate per cell, the dashed staircase is $N = K d$.

# %%
save(exp.plot(table, table.attrs["config"]), "04_phase_transition")
