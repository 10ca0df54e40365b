"""Moving points with a field: the inverse against analytic affines and smooth fields."""

import math

import numpy as np
import pytest
import torch

from src_training.spatial.points import invert_points, move_points, sample_field
from src_training.spatial.transforms import affine_displacement, identity_grid

SHAPES = {2: (64, 80), 3: (24, 28, 32)}


def _rotation(ndim: int, angle: float, scale: float) -> np.ndarray:
    matrix = np.eye(ndim)
    c, s = math.cos(angle), math.sin(angle)
    matrix[-2:, -2:] = [[c, -s], [s, c]]
    return scale * matrix


def _interior(shape, points, margin):
    return np.all((points >= margin) & (points <= np.array(shape) - 1 - margin), axis=1)


@pytest.mark.parametrize("ndim", [2, 3])
def test_inverse_of_an_affine_field_is_the_inverse_affine(ndim):
    shape = SHAPES[ndim]
    matrix = _rotation(ndim, math.radians(6), 1.05)
    shift = np.array([1.5, -2.0, 0.75][:ndim])
    centre = (np.array(shape) - 1) / 2
    disp = affine_displacement(torch.as_tensor(matrix), torch.as_tensor(shift), shape)[0]
    rng = np.random.default_rng(0)
    moving = rng.uniform(0, np.array(shape) - 1, (500, ndim))
    fixed, residual = invert_points(disp.numpy(), moving)
    expected = (moving - centre - shift) @ np.linalg.inv(matrix).T + centre
    inside = _interior(shape, expected, 4)
    error = np.linalg.norm(fixed - expected, axis=1)[inside]
    assert inside.sum() > 150
    assert error.max() < 0.05, error.max()
    assert residual[inside].max() < 1e-3


@pytest.mark.parametrize("ndim", [2, 3])
def test_points_of_a_smooth_field_go_back_where_they_came_from(ndim):
    shape = SHAPES[ndim]
    grid = identity_grid(shape, dtype=torch.float64).numpy()
    waves = [np.sin(2 * np.pi * grid[(a + 1) % ndim] / shape[(a + 1) % ndim]) for a in range(ndim)]
    disp = np.stack([2.5 * wave for wave in waves])  # up to 2.5 voxels, Lipschitz < 0.3
    rng = np.random.default_rng(1)
    fixed = rng.uniform(5, np.array(shape) - 6, (400, ndim))
    moving = fixed + sample_field(disp, fixed)  # where the warp samples the moving image
    found, residual = invert_points(disp, moving)
    assert np.abs(found - fixed).max() < 0.01
    assert residual.max() < 1e-3


def test_sampling_is_exact_on_the_grid_and_linear_between():
    disp = np.random.default_rng(2).normal(size=(2, 6, 7))
    on_grid = np.array([[0, 0], [5, 6], [2, 3]], float)
    np.testing.assert_allclose(sample_field(disp, on_grid), disp[:, [0, 5, 2], [0, 6, 3]].T)
    between = sample_field(disp, np.array([[2.5, 3.0]]))[0]
    np.testing.assert_allclose(between, (disp[:, 2, 3] + disp[:, 3, 3]) / 2)


def test_extra_columns_are_kept_and_a_stack_moves_each_frame_with_its_field():
    disp = np.zeros((3, 2, 10, 12))
    disp[1, 0] = 2.0  # frame 1 samples the moving image two rows further down
    tracks = np.array([[7, 0, 5.0, 5.0], [7, 1, 5.0, 5.0], [8, 2, 3.0, 4.0]])
    moved, residual = move_points(disp, tracks, stack=True)
    np.testing.assert_allclose(moved, [[7, 0, 5, 5], [7, 1, 3, 5], [8, 2, 3, 4]], atol=1e-9)
    assert residual.max() < 1e-9
    shifted = np.zeros((2, 10, 12))
    shifted[1] = -1.0
    moved, _ = move_points(shifted, np.array([[4.0, 2.0, 3.0]]))
    np.testing.assert_allclose(moved, [[4.0, 2.0, 4.0]])
    with pytest.raises(ValueError, match="cannot be moved by a 3D field"):
        move_points(np.zeros((3, 4, 4, 4)), np.zeros((2, 2)))
