"""Shared pieces of the metrics: shape checks, separable box filters, standardisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from src_training.spatial import spatial_ndim


def _check_pair(warped: Tensor, fixed: Tensor) -> int:
    """Check that two images have the same shape and return their spatial ndim."""
    ndim = spatial_ndim(warped)
    if warped.shape != fixed.shape:
        raise ValueError(
            f"warped and fixed images must have the same shape, got {tuple(warped.shape)} "
            f"and {tuple(fixed.shape)}"
        )
    return ndim


def _box_sum(x: Tensor, radius: int) -> Tensor:
    """Sum of every channel over a cubic window of side ``2 * radius + 1``, zero padded.

    The filter is separable: one 1D convolution with a kernel of ones per spatial
    axis, grouped so that all channels are filtered in the same pass.
    """
    ndim = spatial_ndim(x)
    conv = F.conv2d if ndim == 2 else F.conv3d
    channels = x.shape[1]
    for axis in range(ndim):
        kernel_shape = [1] * ndim
        kernel_shape[axis] = 2 * radius + 1
        padding = [0] * ndim
        padding[axis] = radius
        weight = x.new_ones(channels, 1, *kernel_shape)
        x = conv(x, weight, padding=tuple(padding), groups=channels)
    return x


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
