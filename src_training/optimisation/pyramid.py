"""The inputs of one optimisation, checked, and their multi-resolution pyramid.

Level ``l`` of ``L`` holds the images downsampled by ``f = 2**(L - 1 - l)``: each axis of
``n`` voxels becomes ``ceil(n / f)`` voxels, after a Gaussian of ``f / 2`` voxels against
aliasing (elastix's default pyramid smoothing). Grids are corner-aligned, the convention of
:func:`src_training.spatial.transforms.resize_field`, so a field moves between levels with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from src_training.optimisation.config import MIN_LEVEL_SIZE
from src_training.optimisation.fields import gaussian_smooth
from src_training.runtime.memory import require_memory
from src_training.spatial.transforms import one_hot, resize_field

ArrayLike = Tensor | np.ndarray


@dataclass(frozen=True)
class Level:
    """The data of one pyramid level, on the optimisation device.

    Attributes
    ----------
    shape : tuple of int
        Spatial shape of the level.
    fixed, moving : Tensor
        ``(1, C, *shape)`` images.
    mask : Tensor or None
        ``(1, 1, *shape)`` fixed-image weights in ``[0, 1]``.
    fixed_labels, moving_labels : Tensor or None
        ``(1, K, *shape)`` one-hot (soft below full resolution) label maps.
    init : Tensor or None
        ``(1, ndim, *shape)`` starting displacement in voxels of the level.
    """

    shape: tuple[int, ...]
    fixed: Tensor
    moving: Tensor
    mask: Tensor | None
    fixed_labels: Tensor | None
    moving_labels: Tensor | None
    init: Tensor | None


def _tensor(value: ArrayLike, name: str) -> Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch tensor or a numpy array, got {type(value)}")
    return value


def check_images(fixed: ArrayLike, moving: ArrayLike) -> tuple[Tensor, Tensor]:
    """Check a pair of ``(1, C, *spatial)`` images and return them as float32 tensors.

    Parameters
    ----------
    fixed, moving : Tensor or numpy.ndarray
        Images of equal shape, 2D or 3D, one of each.

    Returns
    -------
    tuple of Tensor
        The images as float32.
    """
    fixed, moving = _tensor(fixed, "fixed"), _tensor(moving, "moving")
    if fixed.dim() not in (4, 5) or fixed.shape[0] != 1:
        raise ValueError(
            f"fixed must be one (1, C, H, W) or (1, C, D, H, W) image, got shape "
            f"{tuple(fixed.shape)}; add the batch and channel axes with image[None, None]"
        )
    if moving.shape != fixed.shape:
        raise ValueError(
            f"moving {tuple(moving.shape)} and fixed {tuple(fixed.shape)} differ in shape; "
            "resample one onto the other's grid first"
        )
    if min(fixed.shape[2:]) < 2:
        raise ValueError(f"every spatial axis needs 2 voxels or more, got {tuple(fixed.shape)}")
    for name, image in (("fixed", fixed), ("moving", moving)):
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"the {name} image holds NaN or infinite values; clean it first")
    return fixed.float(), moving.float()


def _spatial(value: ArrayLike, name: str, shape: tuple[int, ...], channels: int) -> Tensor:
    """``value`` as ``(1, channels, *shape)``; a bare ``shape`` array gets the leading axes."""
    value = _tensor(value, name)
    if channels == 1 and tuple(value.shape) == shape:
        value = value[None, None]
    if tuple(value.shape) != (1, channels, *shape):
        raise ValueError(
            f"{name} must have shape {(1, channels, *shape)}, got {tuple(value.shape)}"
        )
    return value


def max_levels(shape: tuple[int, ...]) -> int:
    """Return the most pyramid levels an image allows.

    Parameters
    ----------
    shape : tuple of int
        Full-resolution spatial shape.

    Returns
    -------
    int
        The largest ``L`` whose coarsest level keeps ``MIN_LEVEL_SIZE`` voxels along every
        axis; 1 for images smaller than that.
    """
    smallest, levels = min(shape), 1
    while math.ceil(smallest / 2**levels) >= MIN_LEVEL_SIZE:
        levels += 1
    return levels


def level_shapes(shape: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    """Spatial shapes of the pyramid levels, coarsest first, checking they are deep enough.

    Parameters
    ----------
    shape : tuple of int
        Full-resolution spatial shape.
    levels : int
        Number of levels.

    Returns
    -------
    list of tuple of int
        ``levels`` shapes, the last one ``shape``.

    Raises
    ------
    ValueError
        If ``levels`` exceeds :func:`max_levels`.
    """
    deepest = max_levels(shape)
    if levels > deepest:
        raise ValueError(
            f"levels={levels} is too deep for an image of {'x'.join(map(str, shape))} voxels "
            f"(the coarsest level would be under {MIN_LEVEL_SIZE} voxels along an axis); "
            f"use levels <= {deepest}"
        )
    return [
        tuple(math.ceil(n / 2 ** (levels - 1 - level)) for n in shape) for level in range(levels)
    ]


def downsample(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Smooth (sigma = half the reduction factor) and resample ``x`` onto ``shape``.

    Parameters
    ----------
    x : Tensor
        ``(B, C, *spatial)`` image-like tensor.
    shape : tuple of int
        Target spatial shape (corner-aligned).

    Returns
    -------
    Tensor
        ``(B, C, *shape)``.
    """
    if tuple(x.shape[2:]) == shape:
        return x
    factor = max(n / m for n, m in zip(x.shape[2:], shape, strict=True))
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    smoothed = gaussian_smooth(x, 0.5 * factor)
    return F.interpolate(smoothed, size=shape, mode=mode, align_corners=True)


def build_pyramid(
    fixed: Tensor,
    moving: Tensor,
    levels: int,
    *,
    labels: tuple[ArrayLike, ArrayLike] | None,
    init: ArrayLike | None,
    mask: ArrayLike | None,
    device: torch.device,
) -> list[Level]:
    """Check the optional inputs and build every level on ``device``, coarsest first.

    Parameters
    ----------
    fixed, moving : Tensor
        ``(1, C, *spatial)`` images from :func:`check_images`.
    levels : int
        Number of levels.
    labels : tuple or None
        ``(moving_labels, fixed_labels)`` integer class ids, ``(1, 1, *spatial)`` or
        ``spatial``.
    init : Tensor or numpy.ndarray or None
        ``(1, ndim, *spatial)`` starting displacement.
    mask : Tensor or numpy.ndarray or None
        ``(1, 1, *spatial)`` or ``spatial`` fixed-image mask, boolean or weights in [0, 1].
    device : torch.device
        The optimisation device.

    Returns
    -------
    list of Level
        The pyramid.
    """
    shape = tuple(fixed.shape[2:])
    ndim = len(shape)
    shapes = level_shapes(shape, levels)
    classes = 0
    if labels is not None:
        moving_ids = _spatial(labels[0], "moving labels", shape, 1)
        fixed_ids = _spatial(labels[1], "fixed labels", shape, 1)
        for name, ids in (("moving", moving_ids), ("fixed", fixed_ids)):
            if ids.is_floating_point() or ids.is_complex() or int(ids.min()) < 0:
                raise ValueError(f"{name} labels must be integer class ids >= 0")
        classes = int(max(moving_ids.max(), fixed_ids.max())) + 1
    if init is not None:
        init = _spatial(init, "init", shape, ndim).float()
        if not bool(torch.isfinite(init).all()):
            raise ValueError("the init displacement holds NaN or infinite values")
    if mask is not None:
        mask = _spatial(mask, "mask", shape, 1).float()
        if float(mask.min()) < 0 or float(mask.max()) > 1:
            raise ValueError("mask values must lie in [0, 1] (or be boolean)")
        if float(mask.max()) == 0:
            raise ValueError("the mask is empty: it must select some fixed-image voxels")
    _check_memory(fixed, classes, device)
    fixed_onehot = moving_onehot = None
    if labels is not None:
        moving_onehot = one_hot(moving_ids, classes)
        fixed_onehot = one_hot(fixed_ids, classes)
    pyramid = []
    for level_shape in shapes:

        def level(x: Tensor | None, shape: tuple[int, ...] = level_shape) -> Tensor | None:
            return None if x is None else downsample(x.to(device), shape)

        pyramid.append(
            Level(
                shape=level_shape,
                fixed=level(fixed),
                moving=level(moving),
                mask=level(mask),
                fixed_labels=level(fixed_onehot),
                moving_labels=level(moving_onehot),
                init=None if init is None else resize_field(init.to(device), level_shape),
            )
        )
    return pyramid


def _check_memory(fixed: Tensor, classes: int, device: torch.device) -> None:
    """Refuse an optimisation whose full-resolution level cannot fit on the device."""
    voxels = fixed[0, 0].numel()
    ndim = fixed.dim() - 2
    # images, warped image and the metric's moments and gradients (~40 per channel), the
    # field, its gradient and Adam's two moments, sampling grids, and warped labels
    floats = 40 * fixed.shape[1] + 16 * ndim + 6 * classes
    shape = "x".join(str(n) for n in fixed.shape[2:])
    require_memory(
        4 * floats * voxels,
        f"optimising the registration of a {shape} pair",
        device,
        "crop or downsample the images, or use a device with more memory",
    )
