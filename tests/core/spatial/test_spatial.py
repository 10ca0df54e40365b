"""Spatial transforms against analytic expectations."""

import math

import pytest
import torch

from src_training.spatial import transforms as S

SHAPES = {2: (24, 29), 3: (14, 17, 19)}


def _const_field(shape, axis, value):
    ndim = len(shape)
    disp = torch.zeros(1, ndim, *shape, dtype=torch.float64)
    disp[:, axis] = value
    return disp


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("shift", [1, 3, -2])
def test_integer_shift_equals_roll_in_the_interior(ndim, shift):
    shape = SHAPES[ndim]
    image = torch.rand(1, 2, *shape, dtype=torch.float64)
    for axis in range(ndim):
        warped = S.warp(image, _const_field(shape, axis, shift))
        # warped(x) = image(x + shift)  <=>  roll by -shift along that axis
        expected = torch.roll(image, -shift, dims=2 + axis)
        n = shape[axis]
        inner = slice(max(0, -shift), n - max(0, shift))
        index = [slice(None)] * (2 + ndim)
        index[2 + axis] = inner
        torch.testing.assert_close(warped[tuple(index)], expected[tuple(index)], atol=1e-10, rtol=0)
        # and the border rows take the edge value (padding="border")
        if shift > 0:
            edge = image.narrow(2 + axis, n - 1, 1)
            torch.testing.assert_close(warped.narrow(2 + axis, n - 1, 1), edge)


def test_axis_order_is_not_transposed():
    """A displacement along axis 0 moves rows, along axis 1 moves columns."""
    image = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    image[0, 0, 5, 2] = 1.0
    down = S.warp(image, _const_field((9, 9), 0, 1.0))
    right = S.warp(image, _const_field((9, 9), 1, 1.0))
    assert down[0, 0, 4, 2] == 1.0
    assert right[0, 0, 5, 1] == 1.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_zero_field_is_identity(ndim):
    image = torch.rand(2, 3, *SHAPES[ndim])
    disp = torch.zeros(2, ndim, *SHAPES[ndim])
    torch.testing.assert_close(S.warp(image, disp), image, atol=1e-5, rtol=0)
    labels = torch.randint(0, 7, (2, 1, *SHAPES[ndim]))
    assert torch.equal(S.warp_labels(labels, disp), labels)


def test_half_voxel_shift_interpolates_linearly():
    image = torch.arange(10, dtype=torch.float64).view(1, 1, 1, 10).expand(1, 1, 4, 10)
    warped = S.warp(image.contiguous(), _const_field((4, 10), 1, 0.5))
    torch.testing.assert_close(warped[0, 0, :, :-1], image[0, 0, :, :-1] + 0.5)


def test_label_warp_introduces_no_new_values():
    labels = torch.tensor([0, 3, 255]).repeat_interleave(7).view(1, 1, 3, 7)
    labels = labels.repeat(1, 1, 3, 1)[:, :, :7, :]
    disp = torch.randn(1, 2, *labels.shape[2:]) * 3
    warped = S.warp_labels(labels, disp)
    assert set(warped.unique().tolist()) <= {0, 3, 255}
    assert warped.dtype == labels.dtype


def test_warp_onehot_sums_to_one_and_matches_nearest_at_integer_shift():
    labels = torch.randint(0, 4, (1, 1, 16, 16))
    disp = _const_field((16, 16), 0, 2).float()
    soft = S.warp_onehot(labels, disp, 4)
    torch.testing.assert_close(soft.sum(1), torch.ones(1, 16, 16))
    assert torch.equal(soft.argmax(1, keepdim=True), S.warp_labels(labels, disp))


@pytest.mark.parametrize("ndim", [2, 3])
def test_jacobian_of_identity_is_one(ndim):
    disp = torch.zeros(1, ndim, *SHAPES[ndim])
    det = S.jacobian_determinant(disp)
    assert torch.equal(det, torch.ones_like(det))
    assert S.folding_fraction(disp).item() == 0.0
    assert S.sd_log_jacobian(disp).item() == 0.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_jacobian_of_affine_map_is_its_determinant(ndim):
    torch.manual_seed(0)
    matrix = torch.eye(ndim, dtype=torch.float64) + 0.3 * torch.randn(
        ndim, ndim, dtype=torch.float64
    )
    disp = S.affine_displacement(matrix, torch.randn(ndim, dtype=torch.float64), SHAPES[ndim])
    det = S.jacobian_determinant(disp)
    torch.testing.assert_close(det, torch.full_like(det, torch.linalg.det(matrix).item()))


def test_jacobian_entries_are_not_transposed():
    """u_0 = 0.5 * x_1 (rows move with the column index): J = [[1, .5], [0, 1]]."""
    grid = S.identity_grid((6, 7), dtype=torch.float64)
    disp = torch.stack([0.5 * grid[1], torch.zeros_like(grid[1])])[None]
    jac = S.jacobian_matrix(disp)
    expected = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(jac[0, 3, 3], expected)


def test_folded_field_is_counted_with_sign():
    """A reflection along the columns (x1 -> -x1) has det -1 everywhere: all folded."""
    matrix = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    disp = S.affine_displacement(matrix, torch.zeros(2, dtype=torch.float64), (10, 12))
    det = S.jacobian_determinant(disp)
    torch.testing.assert_close(det, -torch.ones_like(det))
    assert S.folding_fraction(disp).item() == 1.0
    # a field folding only in a band: the fraction equals the band's share
    disp = torch.zeros(1, 2, 20, 20, dtype=torch.float64)
    disp[0, 1, :, 10:] = -3.0  # columns 10.. look 3 to the left: a 3-voxel overlap
    det = S.jacobian_determinant(disp)
    assert (det[0, :, 9] < 0).all() and (det[0, :, 10] < 0).all()
    assert S.folding_fraction(disp).item() == pytest.approx(2 / 20)


def test_sd_log_jacobian_of_uniform_scaling_is_zero_and_grows_with_variation():
    scale = S.affine_displacement(1.2 * torch.eye(2), torch.zeros(2), (16, 16))
    assert S.sd_log_jacobian(scale).item() < 1e-5
    wobble = 0.5 * torch.sin(S.identity_grid((16, 16)) / 2)[None]
    assert S.sd_log_jacobian(wobble).item() > 0.1


@pytest.mark.parametrize("ndim", [2, 3])
def test_integrating_zero_velocity_gives_identity(ndim):
    v = torch.zeros(1, ndim, *SHAPES[ndim])
    assert torch.equal(S.integrate_velocity(v), v)


def _smooth_field(ndim, shape, amplitude, seed=0):
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, ndim, *[4] * ndim, generator=gen, dtype=torch.float64)
    mode = "bilinear" if ndim == 2 else "trilinear"
    smooth = torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True)
    return smooth * amplitude / smooth.abs().max()


@pytest.mark.parametrize("ndim", [2, 3])
def test_integrate_v_then_minus_v_is_nearly_identity(ndim):
    shape = (40, 40) if ndim == 2 else (36, 36, 36)
    v = _smooth_field(ndim, shape, amplitude=3.0)
    forward = S.integrate_velocity(v)
    backward = S.integrate_velocity(-v)
    residual = S.compose(forward, backward)
    assert forward.abs().max() > 1.0  # the test moves voxels by more than one voxel
    interior = (slice(None), slice(None), *[slice(4, -4)] * ndim)
    # 7 compositions each interpolate linearly: the residual is 0.1% of the largest
    # displacement on average and < 5% at the kinks of the piecewise-linear test field
    # (without the inverse it would be 100%)
    largest = forward.abs().max()
    assert residual[interior].abs().mean() < 0.005 * largest
    assert residual[interior].abs().max() < 0.05 * largest
    assert S.folding_fraction(forward).item() == 0.0


def test_integrated_constant_velocity_is_a_translation():
    v = _const_field((12, 12), 1, 2.5)
    torch.testing.assert_close(S.integrate_velocity(v, steps=5), v)


def test_compose_order_matches_sequential_warps():
    """On a linear intensity ramp linear interpolation is exact, so the equality is too."""
    shape = (32, 32)
    u = _smooth_field(2, shape, 1.5, seed=1)
    w = _smooth_field(2, shape, 1.5, seed=2)
    grid = S.identity_grid(shape, dtype=torch.float64)
    image = (0.7 * grid[0] - 0.4 * grid[1])[None, None]
    sequential = S.warp(S.warp(image, u), w)
    inner = (..., slice(5, -5), slice(5, -5))
    direct = S.warp(image, S.compose(u, w))
    swapped = S.warp(image, S.compose(w, u))
    torch.testing.assert_close(sequential[inner], direct[inner], atol=1e-9, rtol=0)
    assert (sequential - swapped)[inner].abs().max() > 0.01


def test_compose_translations_adds_them():
    a = _const_field((10, 10), 0, 1.0)
    b = _const_field((10, 10), 1, -2.0)
    torch.testing.assert_close(S.compose(a, b), a + b)


def test_resize_field_rescales_magnitudes():
    matrix = torch.tensor([[1.1, 0.1], [-0.05, 0.9]], dtype=torch.float64)
    small = S.affine_displacement(matrix, torch.tensor([1.0, -2.0], dtype=torch.float64), (11, 21))
    big = S.resize_field(small, (21, 41))
    # the same physical map on a grid twice as fine: an affine map with the same matrix,
    # translation doubled (voxel spacing halves)
    expected = S.affine_displacement(
        matrix, torch.tensor([2.0, -4.0], dtype=torch.float64), (21, 41)
    )
    torch.testing.assert_close(big, expected)


def test_warp_gradcheck_wrt_displacement():
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(1, 1, 6, 7, dtype=torch.float64, generator=gen)
    disp = (0.3 + 0.2 * torch.rand(1, 2, 6, 7, dtype=torch.float64, generator=gen)).requires_grad_()
    assert torch.autograd.gradcheck(lambda d: S.warp(image, d), (disp,), eps=1e-6, atol=1e-5)


def test_warp_broadcasts_one_image_over_a_batch_of_fields():
    image = torch.rand(1, 1, 8, 8)
    disp = torch.stack([_const_field((8, 8), 0, 0.0)[0], _const_field((8, 8), 0, 1.0)[0]]).float()
    out = S.warp(image, disp)
    assert out.shape == (2, 1, 8, 8)
    torch.testing.assert_close(out[0], image[0], atol=1e-5, rtol=0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="spatial shape"):
        S.warp(torch.rand(1, 1, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError, match="2 channels"):
        S.warp(torch.rand(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        S.warp(torch.rand(8, 8), torch.zeros(8, 8))


def test_identity_grid_values():
    grid = S.identity_grid((2, 3))
    assert grid[0].tolist() == [[0, 0, 0], [1, 1, 1]]
    assert grid[1].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert math.isclose(S.identity_grid((5, 4, 3))[2, 1, 2, 2].item(), 2.0)
