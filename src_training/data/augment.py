"""Augmentation of registration pairs: one random affine for both images, crops, noise.

Every random choice for a pair comes from :func:`pair_generator`, seeded by the run's
seed, the step and the pair's position in the global batch, so a run split over
several processes draws exactly what one process would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from src_training.spatial.transforms import affine_displacement, warp, warp_labels


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random affine and the intensity noise.

    Attributes
    ----------
    rotation : float
        Largest rotation in degrees (about every axis pair in 3D).
    scale : float
        Largest relative change of scale per axis.
    shear : float
        Largest off-diagonal shear coefficient.
    flip : bool
        Flip each axis with probability 1/2.
    noise : float
        Standard deviation of Gaussian noise added to each image independently.
    """

    rotation: float = 10.0
    scale: float = 0.1
    shear: float = 0.05
    flip: bool = True
    noise: float = 0.0

    @property
    def geometric(self) -> bool:
        """Whether the affine part does anything."""
        return bool(self.rotation or self.scale or self.shear or self.flip)


NO_AUGMENTATION = AugmentConfig(rotation=0.0, scale=0.0, shear=0.0, flip=False, noise=0.0)


def pair_generator(seed: int, step: int, index: int) -> torch.Generator:
    """Return the generator of pair ``index`` in the global batch of ``step``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4099 + index)


def _uniform(generator: torch.Generator, bound: float, size: int = 1) -> Tensor:
    return (torch.rand(size, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def random_affine(ndim: int, config: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Draw a random ``(ndim, ndim)`` matrix: flips, rotation, shear and scale.

    Parameters
    ----------
    ndim : int
        2 or 3.
    config : AugmentConfig
        Ranges.
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    Tensor
        float64 matrix acting on voxel coordinates.
    """
    matrix = torch.eye(ndim, dtype=torch.float64)
    for a in range(ndim):
        for b in range(a + 1, ndim):
            angle = math.radians(float(_uniform(generator, config.rotation)))
            rot = torch.eye(ndim, dtype=torch.float64)
            rot[a, a] = rot[b, b] = math.cos(angle)
            rot[a, b], rot[b, a] = -math.sin(angle), math.sin(angle)
            matrix = rot @ matrix
    shear = torch.eye(ndim, dtype=torch.float64)
    off = ~torch.eye(ndim, dtype=torch.bool)
    shear[off] = _uniform(generator, config.shear, ndim * (ndim - 1))
    scale = torch.diag(1 + _uniform(generator, config.scale, ndim))
    flips = torch.ones(ndim, dtype=torch.float64)
    if config.flip:
        flips = torch.where(torch.rand(ndim, generator=generator) < 0.5, -1.0, 1.0).double()
    return matrix @ shear @ scale @ torch.diag(flips)


def crop_window(
    shape: tuple[int, ...], size: int | None, generator: torch.Generator
) -> tuple[slice, ...]:
    """Draw a random window of side ``size`` (whole axes shorter than that are kept).

    Parameters
    ----------
    shape : tuple of int
        Spatial shape.
    size : int or None
        Side of the crop; None keeps everything.
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    tuple of slice
        One slice per spatial axis.
    """
    if size is None:
        return tuple(slice(0, n) for n in shape)
    window = []
    for n in shape:
        length = min(size, n)
        start = int(torch.randint(n - length + 1, (1,), generator=generator))
        window.append(slice(start, start + length))
    return tuple(window)


def augment_pair(
    images: Tensor,
    labels: Tensor | None,
    config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor | None]:
    """Apply one random affine to both images (and labels) of a pair, then noise.

    Parameters
    ----------
    images : Tensor
        ``(2, C, *spatial)``: moving and fixed.
    labels : Tensor, optional
        ``(2, 1, *spatial)`` class ids, warped with nearest neighbours.
    config : AugmentConfig
        Ranges.
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    tuple of Tensor
        Augmented images and labels.
    """
    shape = tuple(images.shape[2:])
    ndim = len(shape)
    if config.geometric:
        matrix = random_affine(ndim, config, generator)
        disp = affine_displacement(matrix, torch.zeros(ndim, dtype=torch.float64), shape)
        disp = disp.expand(2, *disp.shape[1:])
        images = warp(images, disp.to(images.dtype))
        if labels is not None:
            labels = warp_labels(labels, disp)
    if config.noise > 0:
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
        images = images + config.noise * noise
    return images, labels
