"""
The posterior mean of a MoLRG is a soft projection
==================================================
"""

###############################################################################
# Data: two lines through the origin in the plane (a mixture of low-rank Gaussians
# with :math:`K = 2`, :math:`d_k = 1`, :math:`n = 2`). Noise the data,
# :math:`x_t = x_0 + \sigma \epsilon`, and ask for the best denoiser
# :math:`E[x_0 \mid x_t]`. The MoLRG paper's Proposition 1 gives it in closed form:
#
# .. math::
#
#     E[x_0 \mid x_t] = \frac{1}{1 + \sigma^2} \sum_k w_k(x_t)\, U_k U_k^\top x_t ,
#
#     w(x_t) = \mathrm{softmax}_k \Big( \frac{\|U_k^\top x_t\|^2}{2 \sigma^2 (1 + \sigma^2)} \Big).
#
# Each arrow below goes from a noisy point to its denoised estimate. At small noise
# the weights are nearly one-hot and the estimate is the projection onto the nearest
# line; at large noise the two projections are averaged and shrunk towards the origin.

import matplotlib.pyplot as plt
import numpy as np

from molrg import MoLRG, posterior_mean, posterior_weights

angle = np.deg2rad(35.0)
model = MoLRG([np.array([[1.0], [0.0]]), np.array([[np.cos(angle)], [np.sin(angle)]])])
grid = np.linspace(-2.5, 2.5, 15)
pts = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)

###############################################################################
# Three noise levels; the colour of an arrow is the posterior weight
# :math:`w_1(x_t)` of the first line.

sigmas = [0.1, 0.6, 2.0]
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained")
for ax, sigma in zip(axes, sigmas):
    mean = posterior_mean(model, pts, 1.0, sigma)
    w = posterior_weights(model, pts, 1.0, sigma)[:, 0]
    arrows = ax.quiver(pts[:, 0], pts[:, 1], mean[:, 0] - pts[:, 0], mean[:, 1] - pts[:, 1], w,
                       cmap="coolwarm", clim=(0, 1), angles="xy", scale_units="xy", scale=1, width=0.004)
    for U in model.bases:
        ax.plot([-3 * U[0, 0], 3 * U[0, 0]], [-3 * U[1, 0], 3 * U[1, 0]], "k-", lw=1)
    ax.set(title=f"sigma = {sigma}", xlim=(-2.7, 2.7), ylim=(-2.7, 2.7), aspect="equal")
fig.colorbar(arrows, ax=axes, shrink=0.8, label="posterior weight of line 1")
fig.suptitle("E[x0 | xt]: arrows from x_t to the estimate")
plt.show()

###############################################################################
# How far the estimate moves: as :math:`\sigma \to 0` the denoiser is the exact
# projection onto the nearest line (its distance to the union of the lines is 0);
# at large :math:`\sigma` it shrinks by :math:`1/(1+\sigma^2)`.

for sigma in sigmas:
    mean = posterior_mean(model, pts, 1.0, sigma)
    dist = np.min([np.linalg.norm(mean - mean @ U @ U.T, axis=1) for U in model.bases], axis=0)
    ratio = np.linalg.norm(mean, axis=1) / np.linalg.norm(pts, axis=1).clip(1e-12)
    print(f"sigma={sigma:4}: median distance of E[x0|xt] to the lines = {np.median(dist):.3f}, "
          f"mean norm ratio |E|/|x_t| = {np.mean(ratio):.3f}")
