# %% [markdown]
# # The score of a banded Gaussian stays local along the diffusion
#
# Take $p_0 = N(0, \Sigma_0)$ whose precision $P_0$ is banded (bandwidth $b$).
# Along the OU process $dX = -X\,dt + \sqrt 2\, dW$ the covariance is
# $\Sigma_t = e^{-2t}\Sigma_0 + (1 - e^{-2t}) I$ and the score is $-P_t x$ with
# $P_t = \Sigma_t^{-1}$ (SPEC B2). $P_t$ is no longer exactly banded, but its
# entries decay exponentially away from the diagonal, so the score at
# coordinate $i$ depends on a window of coordinates around $i$. The effective
# radius $r_{\rm eff}(t)$ starts at $b$, grows, then shrinks to 0 as $P_t \to I$.

# %%
import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure

from _common import QUICK, save
from locality import effective_radius, offdiag_profile, ou_precision, random_banded_precision

d = 60 if QUICK else 200
times = np.concatenate([[0.0], np.logspace(-3, 1, 15 if QUICK else 40)])

# %% [markdown]
# Three bandwidths; left: $r_{\rm eff}(t)$, right: the off-diagonal profile
# $m_r = \mathrm{mean}_i |P_t[i, i+r]|$ at the time of largest radius.

# %%
fig = Figure(figsize=(10, 3.8), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for b in (1, 2, 4):
    P0 = random_banded_precision(d, b, random_state=b)
    Pt = ou_precision(P0, times)
    r_eff = np.array([effective_radius(P) for P in Pt])
    ax1.plot(np.maximum(times, 1e-3), r_eff, marker="o", ms=3, label=f"b = {b}")
    t_star = times[np.argmax(r_eff)]
    m = offdiag_profile(ou_precision(P0, t_star))
    ax2.semilogy(np.arange(m.size)[:25], (m / m[0])[:25], label=f"b = {b}, t = {t_star:.2g}")
    print(f"b={b}: r_eff(0) = {r_eff[0]}, max r_eff = {r_eff.max()} at t = {t_star:.3g}, r_eff(10) = {r_eff[-1]}")
ax1.set(xscale="log", xlabel="t", ylabel="effective radius (eps = 1e-3)", title="r_eff(t) along the OU process")
ax2.axhline(1e-3, color="k", ls=":", lw=1)
ax2.set(xlabel="distance r from the diagonal", ylabel="m_r / m_0", title="exponential decay at the widest time")
ax1.legend()
ax2.legend(fontsize=8)
save(fig, "05_locality_along_ou")
