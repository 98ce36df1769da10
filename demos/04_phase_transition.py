"""
The phase transition at N = K d
===============================
"""

###############################################################################
# How many samples does a diffusion model need to learn a mixture of :math:`K`
# subspaces of dimension :math:`d` in :math:`\mathbb{R}^{48}`? Because training is
# subspace clustering (previous example), the answer is about :math:`K d`: far fewer
# than the ambient dimension. Below it, the samples of some component cannot span
# its subspace (failure is certain); above it, K-subspaces recovers every subspace.
#
# This runs the registered sweep ``molrg-kss`` on a reduced grid (a tidy table with
# one row per trial) and draws its heatmap with the boundary :math:`N = K d`.

import matplotlib.pyplot as plt

from phase_transition import get_experiment, run_grid

experiment = get_experiment("molrg-kss")
grid = {"d": [1, 2, 3, 4, 5, 6], "N": [1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48]}
table = run_grid(experiment, grid, trials=10, progress=False)
print(table.groupby(["d", "N"])["success"].mean().unstack().round(2))

###############################################################################
# The heatmap: success rate per cell; the dashed staircase is :math:`N = K d`.

fig = experiment.plot(table, table.attrs["config"])
plt.show()
