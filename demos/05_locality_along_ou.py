"""
The score of a banded Gaussian stays local along the diffusion
==============================================================
"""

###############################################################################
# Take :math:`p_0 = N(0, \Sigma_0)` whose precision :math:`P_0` is banded
# (bandwidth :math:`b`). Along the OU process :math:`dX = -X\,dt + \sqrt 2\, dW` the
# covariance is :math:`\Sigma_t = e^{-2t}\Sigma_0 + (1 - e^{-2t}) I` and the score is
# :math:`-P_t x` with :math:`P_t = \Sigma_t^{-1}`. :math:`P_t` is no longer exactly
# banded, but its entries decay exponentially away from the diagonal (the locality
# paper's Theorem 2.1), so the score at coordinate :math:`i` depends on a window of
# coordinates around :math:`i`. The effective radius :math:`r_{\rm eff}(t)` starts
# at :math:`b`, grows, then shrinks to 0 as :math:`P_t \to I`.

import matplotlib.pyplot as plt
import numpy as np

from locality import effective_radius, offdiag_profile, ou_precision, random_banded_precision

d = 200
times = np.concatenate([[0.0], np.logspace(-3, 1, 40)])

###############################################################################
# Three bandwidths; left: :math:`r_{\rm eff}(t)`, right: the off-diagonal profile
# :math:`m_r = \mathrm{mean}_i |P_t[i, i+r]|` at the time of the largest radius.

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
for b in (1, 2, 4):
    P0 = random_banded_precision(d, b, random_state=b)
    r_eff = np.array([effective_radius(ou_precision(P0, t)) for t in times])
    ax1.plot(np.maximum(times, 1e-3), r_eff, marker="o", ms=3, label=f"b = {b}")
    t_star = times[np.argmax(r_eff)]
    m = offdiag_profile(ou_precision(P0, t_star))
    m = np.asarray(m)[:25]
    ax2.semilogy(np.arange(m.size), m / m[0], label=f"b = {b}, t = {t_star:.2g}")
    print(f"b={b}: r_eff(0) = {r_eff[0]}, max r_eff = {r_eff.max()} at t = {t_star:.3g}, r_eff(10) = {r_eff[-1]}")
ax1.set(xscale="log", xlabel="t", ylabel="effective radius (eps = 1e-3)", title="r_eff(t) along the OU process")
ax2.axhline(1e-3, color="k", ls=":", lw=1)
ax2.set(xlabel="distance r from the diagonal", ylabel="m_r / m_0", title="exponential decay at the widest time")
ax1.legend()
ax2.legend(fontsize=8)
plt.show()
