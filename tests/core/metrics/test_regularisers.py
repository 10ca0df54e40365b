"""Regularisers against analytic values."""

import pytest
import torch

from src_training.metrics.regularisers import bending_energy, diffusion, get_regulariser
from src_training.spatial.transforms import affine_displacement, identity_grid


@pytest.mark.parametrize("ndim", [2, 3])
def test_constant_field_costs_nothing(ndim):
    disp = torch.full((1, ndim, *[7] * ndim), 2.5)
    assert diffusion(disp).item() == 0.0
    assert bending_energy(disp).item() == 0.0


def test_diffusion_of_a_linear_ramp():
    """u_1 = a * x_1: forward differences are a along axis 1 and 0 along axis 0."""
    a = 0.3
    grid = identity_grid((6, 9), dtype=torch.float64)
    disp = torch.stack([torch.zeros_like(grid[0]), a * grid[1]])[None]
    # mean over both channels of the squared difference: axis 1 has a^2 on channel 1 only
    expected = (0.0 + a**2 / 2) / 2
    assert diffusion(disp).item() == pytest.approx(expected)


def test_bending_energy_is_zero_for_affine_and_positive_for_curved_fields():
    matrix = torch.tensor([[1.2, 0.3], [-0.1, 0.9]], dtype=torch.float64)
    affine = affine_displacement(matrix, torch.tensor([1.0, 2.0], dtype=torch.float64), (8, 8))
    assert bending_energy(affine).item() == pytest.approx(0.0, abs=1e-20)
    assert diffusion(affine).item() > 0
    grid = identity_grid((8, 8), dtype=torch.float64)
    quadratic = torch.stack([0.1 * grid[1] ** 2, torch.zeros_like(grid[0])])[None]
    # second difference of 0.1 x^2 is 0.2 on channel 0 along axis 1: mean over 2 channels
    assert bending_energy(quadratic).item() == pytest.approx(0.2**2 / 2)


def test_registry_by_name():
    assert get_regulariser("diffusion") is diffusion
    assert get_regulariser("bending") is bending_energy
    with pytest.raises(ValueError, match="diffusion, bending"):
        get_regulariser("tv")
