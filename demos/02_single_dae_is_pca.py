"""
Training the single-component denoiser is PCA
==============================================
"""

###############################################################################
# With one low-rank Gaussian, the paper's denoiser is
# :math:`x_\theta(x_t) = \frac{c_t}{s_t} U U^\top x_t` (eq. 11). Its training loss is
# (Theorem 1)
#
# .. math::
#
#     L(U) = A - \frac{B}{N} \|U^\top X^\top\|_F^2 ,\qquad B > 0,
#
# so minimizing the diffusion loss is maximizing the PCA objective. We train the
# denoiser by SGD exactly as a diffusion model is trained (sampled :math:`t` and
# :math:`\epsilon` at each step) and watch it land on the PCA solution.

import matplotlib.pyplot as plt
import numpy as np
import torch

from molrg import MoLRG, closed_form_loss, pca_subspace, random_orthonormal, subspace_error, train_dae

torch.set_num_threads(1)  # one small problem: a single thread is fastest

n, d, N = 48, 4, 12
model = MoLRG.random(n, [d], random_state=0)
X, _ = model.sample(N, random_state=1)
result = train_dae(X, [d], parameterization="single", steps=1500, random_state=2)
U_pca = pca_subspace(X, d)

###############################################################################
# The closed-form loss :math:`A - (B/N)\,\mathrm{objective}` at the SGD solution,
# at the PCA solution and at 200 random orthonormal bases, drawn from their own
# generator (independent of the model's), with the weighting used in training:

rng = np.random.default_rng(12345)
loss_sgd = closed_form_loss(X, result.bases, parameterization="single", weighting="snr")
loss_pca = closed_form_loss(X, [U_pca], parameterization="single", weighting="snr")
random_losses = np.array([
    closed_form_loss(X, [random_orthonormal(n, d, random_state=rng)], parameterization="single", weighting="snr")
    for _ in range(200)
])
print(f"closed-form loss: SGD {loss_sgd:.4f}, PCA {loss_pca:.4f}, "
      f"best of 200 random bases {random_losses.min():.4f}")
print(f"subspace error: SGD vs PCA {subspace_error(result.bases, [U_pca]):.2e}, "
      f"SGD vs truth {subspace_error(result.bases, model.bases):.2e}")

###############################################################################
# Left: the Monte-Carlo loss that SGD sees, falling to the closed-form loss at
# the PCA subspace. Right: no random subspace comes close.

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
ax1.plot(result.history_steps, result.loss_history, label="Monte-Carlo loss (SGD)")
ax1.axhline(loss_pca, color="k", ls="--", label="closed form at PCA")
ax1.set(xlabel="step", ylabel="loss", title="SGD on the denoising loss", yscale="log")
ax1.legend()
ax2.hist(random_losses, bins=30, color="0.7", label="random bases")
ax2.axvline(loss_pca, color="k", ls="--", label="PCA")
ax2.axvline(loss_sgd, color="C3", ls=":", lw=2, label="SGD")
ax2.set(xlabel="closed-form loss", title="the loss is lowest at the PCA subspace")
ax2.legend()
plt.show()
