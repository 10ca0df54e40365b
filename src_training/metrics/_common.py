"""Shared pieces of the metrics: shape and weight checks, separable box filters, standardisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from src_training.spatial.transforms import spatial_ndim


def _check_pair(warped: Tensor, fixed: Tensor) -> int:
    """Check that two images have the same shape and return their spatial ndim."""
    ndim = spatial_ndim(warped)
    if warped.shape != fixed.shape:
        raise ValueError(
            f"warped and fixed images must have the same shape, got {tuple(warped.shape)} "
            f"and {tuple(fixed.shape)}"
        )
    return ndim


def _window_sum(x: Tensor, radius: int) -> Tensor:
    """Sum of every channel over a cubic window of side ``2 * radius + 1``, zero padded.

    The filter is separable: along each spatial axis the padded input is added to
    itself shifted by ``1 .. 2 * radius`` voxels, in place. On the CPU this is about
    twice as fast as a grouped convolution with a kernel of ones, and it sums the same
    terms. It does not record an autograd graph: :func:`_box_sum` wraps it.
    """
    for axis in range(2, x.dim()):
        size = x.shape[axis]
        pad = [0] * (2 * (x.dim() - 2))  # F.pad lists the last axis first
        first = 2 * (x.dim() - 1 - axis)
        pad[first : first + 2] = [radius, radius]
        padded = F.pad(x, pad)
        x = padded.narrow(axis, 0, size).clone()
        for shift in range(1, 2 * radius + 1):
            x.add_(padded.narrow(axis, shift, size))
    return x


class _BoxSum(torch.autograd.Function):
    """:func:`_window_sum` with its backward pass: the zero-padded window sum is self-adjoint."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, radius: int) -> Tensor:
        ctx.radius = radius
        return _window_sum(x, radius)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _BoxSum.apply(grad, ctx.radius), None


def _box_sum(x: Tensor, radius: int) -> Tensor:
    """Sum of every channel over a cubic window of side ``2 * radius + 1``, zero padded.

    Differentiable (twice, too); see :func:`_window_sum` for the computation.
    """
    return _BoxSum.apply(x, radius)


def _window_count(shape: Sequence[int], radius: int, like: Tensor) -> Tensor:
    """Count the in-image voxels of the window around every voxel, as ``(1, 1, *shape)``."""
    count = like.new_ones((1, 1) + (1,) * len(shape))
    for axis, n in enumerate(shape):
        index = torch.arange(n, device=like.device)
        per_axis = (index + radius).clamp(max=n - 1) - (index - radius).clamp(min=0) + 1
        view = [1] * (2 + len(shape))
        view[2 + axis] = n
        count = count * per_axis.to(like.dtype).view(view)
    return count


def _box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean of every channel over the part of a cubic window that lies inside the image."""
    return _box_sum(x, radius) / _window_count(x.shape[2:], radius, x)


def _standardise(x: Tensor) -> Tensor:
    """Centre each image and channel on its mean and divide by its standard deviation.

    The standard deviation is detached (its derivative is infinite on a constant image,
    which becomes all zeros); the mean is not, as zero padding makes a loss depend on it.
    """
    dims = tuple(range(2, x.dim()))
    std = x.std(dim=dims, keepdim=True, correction=0).detach()
    return (x - x.mean(dim=dims, keepdim=True)) / std.clamp(min=torch.finfo(x.dtype).eps)


def _at_least_float32(x: Tensor) -> Tensor:
    """Return ``x`` in float32 if it is in a half precision (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def check_weight(weight: float, combined: bool) -> None:
    """Refuse a feature weight that is not finite, or not > 0 (>= 0 beside an intensity term).

    Parameters
    ----------
    weight : float
        The weight of a metric's feature (or class-probability) term.
    combined : bool
        Whether the metric adds an intensity term, which makes a weight of 0 meaningful.

    Raises
    ------
    ValueError
        In the words of ``--feature-weight``.
    """
    low_ok = weight >= 0 if combined else weight > 0
    if not (math.isfinite(weight) and low_ok):
        raise ValueError(
            f"--feature-weight must be a finite number {'>= 0' if combined else '> 0'}, "
            f"got {weight}; e.g. --feature-weight 1"
        )
