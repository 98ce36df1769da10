"""The discrete DDPM schedule (Ho et al. 2020) used by the locality experiments (SPEC B4, B5).

``beta_k`` linear from ``beta_min`` to ``beta_max`` over ``T`` steps,
``alpha_k = 1 - beta_k``, ``alpha_bar_k = prod_{j <= k} alpha_j``.  Index ``k``
runs over ``0 .. T-1`` (step ``k`` of the paper is index ``k - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from molrg._validation import check_int, check_real

__all__ = ["DDPMSchedule"]


@dataclass(frozen=True)
class DDPMSchedule:
    """Linear-beta DDPM schedule: ``T`` steps, ``beta`` from ``beta_min`` to ``beta_max``.

    Attributes ``betas``, ``alphas``, ``alpha_bars`` are float64 arrays of length ``T``.

    Examples
    --------
    >>> sch = DDPMSchedule()
    >>> sch.T, round(float(sch.alpha_bars[-1]), 6)
    (1000, 4e-05)
    """

    T: int = 1000
    beta_min: float = 1e-4
    beta_max: float = 0.02
    betas: np.ndarray = field(init=False, repr=False)
    alphas: np.ndarray = field(init=False, repr=False)
    alpha_bars: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        T = check_int("T", self.T, low=1)
        lo = check_real("beta_min", self.beta_min, low=0.0, high=1.0, low_open=True, high_open=True)
        hi = check_real("beta_max", self.beta_max, low=lo, high=1.0, high_open=True)
        betas = np.linspace(lo, hi, T)
        alphas = 1.0 - betas
        alpha_bars = np.cumprod(alphas)
        for name, arr in (("betas", betas), ("alphas", alphas), ("alpha_bars", alpha_bars)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def torch(self, name: str, *, device=None, dtype=None):
        """One of the arrays (``"betas"``, ``"alphas"``, ``"alpha_bars"``) as a torch tensor."""
        import torch

        if name not in ("betas", "alphas", "alpha_bars"):
            raise ValueError(f"name must be one of 'betas', 'alphas', 'alpha_bars', got {name!r}")
        return torch.as_tensor(np.array(getattr(self, name)), device=device, dtype=dtype or torch.float32)
