"""The EDM noise grid of the network experiments (MoLRG A9 and digits): its parameters, declared once.

Karras et al. (EDM), eq. (5): ``sigma_i = (sigma_max^(1/rho) + i / (S - 1) (sigma_min^(1/rho)
- sigma_max^(1/rho)))^rho`` for ``i < S = n_steps``, then ``sigma_S = 0``
(:func:`molrg.schedules.karras_sigmas`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..params import Parameters, param


@dataclass(frozen=True, kw_only=True)
class KarrasGridParameters(Parameters):
    """``n_steps``, ``sigma_min``, ``sigma_max``, ``rho`` of the EDM grid (defaults: EDM's and the authors')."""

    n_steps: int = param(18, ge=1, help="Heun levels of the EDM Karras grid (EDM and the authors: 18)")
    sigma_min: float = param(0.002, gt=0.0, help="smallest noise level")
    sigma_max: float = param(80.0, gt=0.0, help="largest noise level")
    rho: float = param(7.0, gt=0.0, help="Karras grid exponent")

    def validate(self):
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min = {self.sigma_min}, got {self.sigma_max}")


def karras_grid(p) -> np.ndarray:
    """The grid of parameters ``p`` (a :class:`KarrasGridParameters` or a mapping), with the final 0."""
    from molrg.schedules import karras_sigmas

    return karras_sigmas(int(p["n_steps"]), float(p["sigma_min"]), float(p["sigma_max"]), float(p["rho"]), append_zero=True)
