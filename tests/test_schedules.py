"""Noise schedules (SPEC A2)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from molrg import EDM, VE, VP, get_schedule, karras_sigmas


def test_vp_matches_alpha_bar_formula():
    sch = VP()
    t = np.linspace(1e-3, 1, 50)
    ab = np.exp(-0.1 * t - (20 - 0.1) * t**2 / 2)
    assert_allclose(sch.scale(t), np.sqrt(ab), rtol=1e-13)
    assert_allclose(sch.sigma(t), np.sqrt((1 - ab) / ab), rtol=1e-10)
    # the marginal variance of x_t for unit-variance data is s^2 (1 + sigma^2) = 1 (variance preserving)
    assert_allclose(sch.scale(t) ** 2 * (1 + sch.sigma(t) ** 2), 1.0, rtol=1e-12)


def test_ve_and_edm():
    ve = VE(sigma_min=0.01, sigma_max=50.0)
    assert_allclose(ve.sigma(np.array([0.0, 1.0])), [0.01, 50.0], rtol=1e-14)
    assert_allclose(ve.scale(np.array([0.3])), [1.0])
    edm = EDM()
    assert_allclose(edm.sigma(np.array([0.5, 2.0])), [0.5, 2.0])
    g = edm.grid(18)
    assert g.shape == (18,) and np.all(np.diff(g) < 0)
    assert_allclose([g[0], g[-1]], [80.0, 0.002], rtol=1e-12)
    assert_allclose(karras_sigmas(3, 1.0, 1.0), 1.0)


def test_schedules_accept_torch_tensors():
    t = torch.linspace(0.1, 1, 5, dtype=torch.float32)
    for sch in (VP(), VE(), EDM()):
        s, sg = sch.scale(t), sch.sigma(t)
        assert isinstance(s, torch.Tensor) and s.dtype == torch.float32
        assert_allclose(sg.numpy(), sch.sigma(t.double().numpy()), rtol=1e-5)


def test_get_schedule():
    assert isinstance(get_schedule("VP"), VP)
    assert get_schedule("ve", sigma_max=10.0).sigma_max == 10.0
    with pytest.raises(ValueError, match="schedule must be one of"):
        get_schedule("cosine")
    with pytest.raises(ValueError, match="beta_max"):
        VP(beta_min=1.0, beta_max=0.5)


def test_karras_grid_is_one_function():
    # the Karras grid (Karras et al. 2022, eq. 5) has one implementation; EDM.grid and the samplers use it
    sig = karras_sigmas(5, 0.01, 10.0, 3.0)
    ramp = np.linspace(0, 1, 5)
    assert_allclose(sig, (10.0 ** (1 / 3) + ramp * (0.01 ** (1 / 3) - 10.0 ** (1 / 3))) ** 3, rtol=1e-14)
    assert_allclose(karras_sigmas(5, 0.01, 10.0, 3.0, append_zero=True), np.append(sig, 0.0))
    assert_allclose(EDM(sigma_min=0.01, sigma_max=10.0, rho=3.0).grid(5), sig)
    assert EDM().grid(18, append_zero=True)[-1] == 0.0
    with pytest.raises(TypeError, match="append_zero must be True or False"):
        karras_sigmas(5, append_zero="yes")
