"""Shared test configuration: headless matplotlib, one torch thread per test worker."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
