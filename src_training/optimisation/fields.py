"""Smooth parameterisations of transformations: cubic B-splines, Gaussian smoothing, affines.

Everything follows :mod:`src_training.spatial.transforms`: tensors are ``(B, C, *spatial)``, a
displacement is ``(B, ndim, *spatial)`` in voxels of the grid it lives on, and grids are
aligned at their corners (voxel ``0`` and voxel ``n - 1`` of two grids of one image
coincide), the ``align_corners=True`` convention of
:func:`src_training.spatial.transforms.resize_field`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from src_training.spatial.transforms import affine_displacement

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def bspline_kernel(spacing: int, *, device: torch.device | str | None = None) -> Tensor:
    """Cubic B-spline sampled at ``1 / spacing`` of its knot distance.

    Parameters
    ----------
    spacing : int
        Control-point spacing in voxels.
    device : torch.device or str, optional
        Where to create the kernel.

    Returns
    -------
    Tensor
        ``(4 * spacing - 1,)`` weights ``beta3(t / spacing)`` for ``t = -2s + 1 .. 2s - 1``;
        they sum to ``spacing`` (every voxel receives weights summing to one).
    """
    t = torch.arange(1 - 2 * spacing, 2 * spacing, device=device, dtype=torch.float64)
    x = (t / spacing).abs()
    inner = 2.0 / 3.0 - x**2 + 0.5 * x**3
    outer = (2.0 - x) ** 3 / 6.0
    return torch.where(x < 1, inner, outer).to(torch.float32)


def control_shape(shape: Sequence[int], spacing: int) -> tuple[int, ...]:
    """Size of the control grid of a cubic B-spline covering ``shape`` at ``spacing``.

    Control point ``k`` sits at voxel ``(k - 1) * spacing`` along each axis, so the grid
    reaches one point before the first voxel and two beyond the last, all that the
    4-point support of the cubic B-spline needs.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the dense grid.
    spacing : int
        Control-point spacing in voxels.

    Returns
    -------
    tuple of int
        Spatial shape of the control grid.
    """
    return tuple((n - 1) // spacing + 4 for n in shape)


def bspline_field(control: Tensor, shape: Sequence[int], spacing: int) -> Tensor:
    """Evaluate a cubic B-spline tensor-product field on a dense voxel grid.

    Parameters
    ----------
    control : Tensor
        ``(B, C, *control_shape(shape, spacing))`` control-point values.
    shape : sequence of int
        Spatial shape of the dense grid.
    spacing : int
        Control-point spacing in voxels.

    Returns
    -------
    Tensor
        ``(B, C, *shape)``; ``sum_k control[k] * beta3(x / spacing - k + 1)`` along every axis.
    """
    kernel = bspline_kernel(spacing, device=control.device).to(control.dtype)
    length = kernel.numel()
    field = control
    for axis, n in enumerate(shape):
        moved = field.movedim(2 + axis, -1)
        lead = moved.shape[:-1]
        flat = moved.reshape(-1, 1, moved.shape[-1])
        dense = F.conv_transpose1d(flat, kernel.view(1, 1, length), stride=spacing)
        # control k lands at output index k * spacing + 2 * spacing - 1, i.e. voxel
        # (k - 1) * spacing: voxel 0 is output index 3 * spacing - 1
        dense = dense[..., 3 * spacing - 1 : 3 * spacing - 1 + n]
        field = dense.reshape(*lead, n).movedim(-1, 2 + axis)
    return field


def gaussian_kernel(sigma: float, *, device: torch.device | str | None = None) -> Tensor:
    """Normalised 1D Gaussian of standard deviation ``sigma`` voxels, radius ``ceil(3 sigma)``.

    Parameters
    ----------
    sigma : float
        Standard deviation in voxels (> 0).
    device : torch.device or str, optional
        Where to create the kernel.

    Returns
    -------
    Tensor
        ``(2 r + 1,)`` weights summing to one.
    """
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    return (weights / weights.sum()).to(torch.float32)


def gaussian_smooth(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of every channel, edges extended by replication.

    Parameters
    ----------
    x : Tensor
        ``(B, C, *spatial)`` tensor.
    sigma : float
        Standard deviation in voxels; ``0`` returns ``x`` unchanged.

    Returns
    -------
    Tensor
        The smoothed tensor, same shape.
    """
    if sigma <= 0:
        return x
    ndim = x.dim() - 2
    kernel = gaussian_kernel(sigma, device=x.device).to(x.dtype)
    radius = kernel.numel() // 2
    channels = x.shape[1]
    for axis in range(ndim):
        n = x.shape[2 + axis]
        if n == 1:
            continue
        shape = [1] * ndim
        shape[axis] = kernel.numel()
        weight = kernel.view(1, 1, *shape).expand(channels, 1, *shape)
        pad = [0] * (2 * ndim)
        first = 2 * (ndim - 1 - axis)  # F.pad lists the last axis first
        pad[first : first + 2] = [radius, radius]
        # replicate needs the pad below the size; reflect-free fallback for tiny axes
        mode = "replicate" if radius < n else "constant"
        x = _CONV[ndim](F.pad(x, pad, mode=mode), weight, groups=channels)
    return x


def rotation_matrix(parameters: Tensor, ndim: int) -> Tensor:
    """Rotation matrix from an angle (2D, radians) or a rotation vector (3D).

    Parameters
    ----------
    parameters : Tensor
        ``(1,)`` in 2D, ``(3,)`` axis-angle vector in 3D.
    ndim : int
        2 or 3.

    Returns
    -------
    Tensor
        ``(ndim, ndim)`` orthogonal matrix with determinant 1, differentiable.
    """
    zero = parameters.new_zeros(())
    if ndim == 2:
        angle = parameters[0]
        skew = torch.stack([torch.stack([zero, -angle]), torch.stack([angle, zero])])
    else:
        a, b, c = parameters.unbind()
        skew = torch.stack(
            [torch.stack([zero, -c, b]), torch.stack([c, zero, -a]), torch.stack([-b, a, zero])]
        )
    return torch.linalg.matrix_exp(skew)


def affine_on_grid(
    matrix: Tensor, translation: Tensor, full_shape: Sequence[int], shape: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """Express an affine map given in full-resolution voxels on a coarser, corner-aligned grid.

    The map ``x -> A (x - c) + c + t`` about the full grid's centre ``c`` becomes
    ``y -> K A K^-1 (y - c') + c' + K t`` on a grid of ``shape`` with centre ``c'``,
    where ``K = diag((m - 1) / (n - 1))`` rescales voxel units.

    Parameters
    ----------
    matrix : Tensor
        ``(ndim, ndim)`` matrix ``A`` in full-resolution voxels.
    translation : Tensor
        ``(ndim,)`` translation ``t`` in full-resolution voxels.
    full_shape, shape : sequence of int
        The full grid and the grid to express the map on.

    Returns
    -------
    tuple of Tensor
        The matrix and the translation on the grid of ``shape``.
    """
    scale = torch.tensor(
        [(m - 1) / (n - 1) if n > 1 else 1.0 for m, n in zip(shape, full_shape, strict=True)],
        device=matrix.device,
        dtype=matrix.dtype,
    )
    return scale[:, None] * matrix / scale[None, :], scale * translation


def affine_field(
    matrix: Tensor, translation: Tensor, full_shape: Sequence[int], shape: Sequence[int]
) -> Tensor:
    """Displacement of an affine map (full-resolution voxels) on a grid of ``shape``.

    Parameters
    ----------
    matrix, translation : Tensor
        ``(ndim, ndim)`` and ``(ndim,)``, the map ``x -> A (x - c) + c + t`` about the
        centre ``c`` of the full grid.
    full_shape, shape : sequence of int
        The full grid and the grid to evaluate on.

    Returns
    -------
    Tensor
        ``(1, ndim, *shape)`` displacement in voxels of ``shape``.
    """
    level_matrix, level_translation = affine_on_grid(matrix, translation, full_shape, shape)
    return affine_displacement(level_matrix, level_translation, shape)


def homogeneous_matrix(matrix: Tensor, translation: Tensor, shape: Sequence[int]) -> Tensor:
    """Return the ``(ndim + 1, ndim + 1)`` matrix of ``x -> A (x - c) + c + t`` (voxels).

    Parameters
    ----------
    matrix, translation : Tensor
        ``A`` and ``t``.
    shape : sequence of int
        The grid, whose centre is ``c``.

    Returns
    -------
    Tensor
        ``[[A, c + t - A c], [0, 1]]``: maps a fixed-image voxel index (array axis order,
        homogeneous) to the moving-image position it samples.
    """
    ndim = len(shape)
    centre = torch.tensor([(n - 1) / 2.0 for n in shape], dtype=matrix.dtype)
    out = torch.eye(ndim + 1, dtype=matrix.dtype)
    out[:ndim, :ndim] = matrix
    out[:ndim, ndim] = centre + translation - matrix @ centre
    return out
