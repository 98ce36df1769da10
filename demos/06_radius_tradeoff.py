# %% [markdown]
# # Choosing the localization radius: a bias-variance trade-off
#
# Learn the score of the AR(1) target (64 coordinates, tridiagonal precision)
# from N = 100 samples, then generate with DDPM (SPEC B4). The DSM-optimal
# linear score uses the empirical covariance, whose far-off-diagonal entries
# are pure noise. Localizing the score to a window of radius $r$ removes that
# noise (less variance) but also true long-range dependence (more bias):
# the error of the generated covariance is U-shaped in $r$, and a moderate $r$
# beats the non-localized score.

# %%
import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure

from _common import QUICK, save
from locality import DDPMSchedule, ar1_covariance, tradeoff_curve

Sigma = ar1_covariance(64)
radii = np.array([0, 4, 12, 32]) if QUICK else np.array([0, 2, 4, 8, 12, 16, 24, 32])
schedule = DDPMSchedule()
curves = {m: tradeoff_curve(Sigma, 100, radii, method=m, n_draws=3 if QUICK else 10, schedule=schedule, random_state=0)
          for m in ("marginal", "truncate")}

# %%
fig = Figure(figsize=(6, 4), layout="constrained")
ax = fig.subplots()
for m, style in (("marginal", "-o"), ("truncate", "--s")):
    err = curves[m]["exact"]
    ax.errorbar(radii, err.mean(0), err.std(0), fmt=style, ms=4, capsize=3, label=f"{m} localization")
    best = radii[np.argmin(err.mean(0))]
    print(f"{m}: error at r=0 {err.mean(0)[0]:.3f}, best r = {best} ({err.mean(0).min():.3f})")
ref = curves["marginal"]["nonlocal"].mean()
ax.axhline(ref, color="k", ls=":", label=f"non-localized ({ref:.3f})")
ax.set(xlabel="radius r", ylabel="||Sigma_gen - Sigma|| / ||Sigma||", title="DDPM on AR(1), N = 100")
ax.legend()
save(fig, "06_radius_tradeoff")
