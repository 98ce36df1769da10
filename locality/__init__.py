"""Locality of the score of Gaussians with banded precision along the diffusion (SPEC Part B)."""

from .schedule import DDPMSchedule

__all__ = ["DDPMSchedule"]
