"""Noise schedules of the forward process ``x_t = s_t x_0 + s_t sigma_t eps`` (SPEC A2).

Everything downstream depends on a schedule only through ``(s_t, sigma_t)``:
``scale(t)`` and ``sigma(t)`` accept floats, numpy arrays and torch tensors and
return the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import array_namespace, check_array, check_int, check_real, deprecated_alias

__all__ = ["NoiseSchedule", "VP", "VE", "EDM", "get_schedule", "karras_sigmas", "SCHEDULES"]


class NoiseSchedule:
    """Base class: subclasses define ``scale(t)`` (``s_t``) and ``sigma(t)`` (``sigma_t``).

    ``t_min``/``t_max`` give the time range on which the schedule is meant to be used.
    """

    t_min: float = 1e-3
    t_max: float = 1.0

    def scale(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def sigma(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def shrinkage(self, t):
        """``c_t = 1 / (1 + sigma_t^2)`` (SPEC A3)."""
        return 1.0 / (1.0 + self.sigma(t) ** 2)


def _as_t(t):
    """Times as given (torch) or as a float64 numpy array; real and finite (``ValueError``/``TypeError`` naming ``t``)."""
    if array_namespace(t) is not np:
        return t
    return check_array("t", t, dtype=np.float64)


def _check_sigma_range(schedule) -> None:
    """``0 < sigma_min < sigma_max`` of a VE or EDM schedule."""
    check_real("sigma_min", schedule.sigma_min, low=0.0, low_open=True)
    check_real("sigma_max", schedule.sigma_max, low=schedule.sigma_min, low_open=True)


@dataclass(frozen=True)
class VP(NoiseSchedule):
    """Variance preserving (DDPM in continuous time, Song et al. 2021).

    ``beta(t) = beta_min + t (beta_max - beta_min)``,
    ``alpha_bar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2)``,
    ``s_t = sqrt(alpha_bar)``, ``sigma_t = sqrt((1 - alpha_bar) / alpha_bar) = sqrt(expm1(B(t)))``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def __post_init__(self):
        check_real("beta_min", self.beta_min, low=0.0, low_open=True)
        check_real("beta_max", self.beta_max, low=self.beta_min)

    def _integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def scale(self, t):
        t = _as_t(t)
        xp = array_namespace(t)
        return xp.exp(-0.5 * self._integral(t))

    def sigma(self, t):
        t = _as_t(t)
        xp = array_namespace(t)
        return xp.sqrt(xp.expm1(self._integral(t)))


@dataclass(frozen=True)
class VE(NoiseSchedule):
    """Variance exploding: ``s_t = 1``, ``sigma_t = sigma_min (sigma_max / sigma_min)^t``."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self):
        _check_sigma_range(self)

    def scale(self, t):
        t = _as_t(t)
        return t * 0.0 + 1.0

    def sigma(self, t):
        t = _as_t(t)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t


@dataclass(frozen=True)
class EDM(NoiseSchedule):
    """EDM (Karras et al. 2022): ``s_t = 1``, ``sigma_t = t`` on ``[sigma_min, sigma_max]``.

    Sampling uses the Karras grid :func:`karras_sigmas` with exponent ``rho``.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self):
        _check_sigma_range(self)
        check_real("rho", self.rho, low=0.0, low_open=True)

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return self.sigma_min

    @property
    def t_max(self) -> float:  # type: ignore[override]
        return self.sigma_max

    def scale(self, t):
        t = _as_t(t)
        return t * 0.0 + 1.0

    def sigma(self, t):
        return _as_t(t)

    def grid(self, steps: int, *, append_zero: bool = False) -> np.ndarray:
        """The Karras time (= sigma) grid, decreasing, ``steps`` points (:func:`karras_sigmas`)."""
        return karras_sigmas(steps, self.sigma_min, self.sigma_max, self.rho, append_zero=append_zero)


def karras_sigmas(
    steps: int | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    *,
    append_zero: bool = False,
    n_steps: int | None = None,
) -> np.ndarray:
    r"""The Karras noise grid (Karras et al. 2022, eq. 5), the toolkit's one copy of it.

    .. math::

        \sigma_i = \Big(\sigma_{max}^{1/\rho} + \frac{i}{S-1}
                   \big(\sigma_{min}^{1/\rho} - \sigma_{max}^{1/\rho}\big)\Big)^\rho,
        \qquad i = 0, \dots, S - 1 .

    Parameters
    ----------
    steps : int
        Number of noise levels ``S >= 1`` (the sampler's step count).
    sigma_min, sigma_max : float
        ``0 < sigma_min <= sigma_max``; EDM's defaults 0.002 and 80.
    rho : float, default 7
        Exponent ``> 0``.
    append_zero : bool, default False
        Append a final 0 (``S + 1`` values, the k-diffusion convention: a
        sampler's last step then lands on clean data).
    n_steps : int, optional
        Deprecated name of ``steps`` (``FutureWarning``).

    Returns
    -------
    ndarray ``(S,)`` (or ``(S + 1,)``), decreasing from ``sigma_max`` to ``sigma_min`` (then 0).

    Examples
    --------
    >>> karras_sigmas(3, 0.01, 10.0, 1.0, append_zero=True).round(6).tolist()
    [10.0, 5.005, 0.01, 0.0]
    """
    steps = deprecated_alias("n_steps", "steps", n_steps, steps, None)
    if steps is None:
        raise TypeError("karras_sigmas() missing the number of noise levels: steps")
    steps = check_int("steps", steps, low=1)
    sigma_min = check_real("sigma_min", sigma_min, low=0.0, low_open=True)
    sigma_max = check_real("sigma_max", sigma_max, low=sigma_min)
    rho = check_real("rho", rho, low=0.0, low_open=True)
    if not isinstance(append_zero, (bool, np.bool_)):
        raise TypeError(f"append_zero must be True or False, got {append_zero!r}")
    if steps == 1:
        out = np.array([sigma_max])
    else:
        ramp = np.linspace(0.0, 1.0, steps)
        lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
        out = (hi + ramp * (lo - hi)) ** rho
    return np.append(out, 0.0) if append_zero else out


SCHEDULES = {"vp": VP, "ve": VE, "edm": EDM}


def get_schedule(schedule="vp", **kwargs) -> NoiseSchedule:
    """A schedule by name (``"vp"``, ``"ve"``, ``"edm"``) with its keyword options, or pass one through."""
    if isinstance(schedule, NoiseSchedule):
        if kwargs:
            raise ValueError("schedule options given together with a schedule object")
        return schedule
    if isinstance(schedule, str) and schedule.lower() in SCHEDULES:
        return SCHEDULES[schedule.lower()](**kwargs)
    raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a NoiseSchedule, got {schedule!r}")
