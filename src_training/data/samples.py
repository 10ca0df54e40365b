"""A built-in sample: a synthetic noisy cell time-lapse with labels and known motion.

Everything is generated deterministically from a seed (no file is shipped and
nothing is downloaded). Each frame is one base scene of cells (cytoplasm and
nucleus, bright phase-contrast-like rims, textured interiors) pulled back through a
smooth deformation that drifts over time, plus Gaussian noise and one patch of much
stronger noise: the kind of patch where pixel metrics let the deformation wander.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CLASS_NAMES = ("background", "cytoplasm", "nucleus")


@dataclass(frozen=True)
class CellSequence:
    """A synthetic time-lapse.

    Attributes
    ----------
    images : numpy.ndarray
        ``(T, H, W)`` float32 intensities, roughly in ``[0, 1]``.
    labels : numpy.ndarray
        ``(T, H, W)`` uint8 classes: 0 background, 1 cytoplasm, 2 nucleus.
    displacements : numpy.ndarray
        ``(T, 2, H, W)`` float32: frame ``t`` is the base scene sampled at
        ``x + displacements[t](x)``.
    noisy_patch : tuple of slice
        Rows and columns of the patch with strong noise.
    """

    images: np.ndarray
    labels: np.ndarray
    displacements: np.ndarray
    noisy_patch: tuple[slice, slice]


def _smooth_field(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    coarse = rng.normal(size=(2, 5, 5))
    field = np.stack([ndimage.zoom(c, size / 5, order=3)[:size, :size] for c in coarse])
    return (amplitude * field / np.abs(field).max()).astype(np.float32)


def _base_scene(rng: np.random.Generator, size: int, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    labels = np.zeros((size, size), np.uint8)
    body = np.zeros((size, size), np.float32)
    radius = size / 11
    centres: list[np.ndarray] = []
    while len(centres) < n_cells:
        c = rng.uniform(radius * 1.3, size - radius * 1.3, size=2)
        if all(np.hypot(*(c - o)) > 2.1 * radius for o in centres):
            centres.append(c)
    for cy, cx in centres:
        a, b = radius * rng.uniform(0.8, 1.25, size=2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dy * np.cos(theta) + dx * np.sin(theta)) / a
        v = (-dy * np.sin(theta) + dx * np.cos(theta)) / b
        r = np.hypot(u, v)
        labels[r < 1] = 1
        body = np.maximum(body, np.exp(-((r - 1) ** 2) / 0.01))  # bright rim
        ny, nx = rng.uniform(-0.25, 0.25, size=2)
        nucleus = np.hypot(u - ny, v - nx) < rng.uniform(0.35, 0.5)
        labels[nucleus] = 2
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5).astype(np.float32)
    texture /= np.abs(texture).max()
    level = np.array([0.25, 0.55, 0.4], np.float32)[labels]
    image = level + 0.35 * body + 0.08 * texture * (labels > 0)
    return image.astype(np.float32), labels


def noisy_cell_sequence(
    n_frames: int = 8,
    size: int = 128,
    seed: int = 0,
    noise: float = 0.06,
    patch_noise: float = 0.3,
) -> CellSequence:
    """Generate the synthetic noisy cell time-lapse.

    Parameters
    ----------
    n_frames : int
        Number of frames ``T``.
    size : int
        Frames are ``size x size`` pixels.
    seed : int
        Seed of the generator; equal seeds give identical sequences.
    noise : float
        Standard deviation of the Gaussian noise on every pixel.
    patch_noise : float
        Standard deviation of the extra noise in the noisy patch.

    Returns
    -------
    CellSequence
        Images, labels, the true displacements and the noisy patch location.
    """
    if n_frames < 2 or size < 32:
        raise ValueError(f"need n_frames >= 2 and size >= 32, got {n_frames} and {size}")
    rng = np.random.default_rng(seed)
    base, base_labels = _base_scene(rng, size, n_cells=max(2, (size // 40) ** 2 + 3))
    drift = _smooth_field(rng, size, amplitude=size / 40)
    wobble = _smooth_field(rng, size, amplitude=size / 80)
    grid = np.mgrid[0:size, 0:size].astype(np.float32)
    p0, p1 = int(size * 0.55), int(size * 0.85)
    patch = (slice(p0, p1), slice(p0, p1))
    images, labels, fields = [], [], []
    for t in range(n_frames):
        disp = t * drift + np.sin(t) * wobble
        coords = grid + disp
        image = ndimage.map_coordinates(base, coords, order=1, mode="nearest")
        label = ndimage.map_coordinates(base_labels, coords, order=0, mode="nearest")
        image = image + rng.normal(0, noise, image.shape).astype(np.float32)
        image[patch] += rng.normal(0, patch_noise, image[patch].shape).astype(np.float32)
        images.append(image)
        labels.append(label)
        fields.append(disp)
    return CellSequence(
        images=np.stack(images).astype(np.float32),
        labels=np.stack(labels).astype(np.uint8),
        displacements=np.stack(fields).astype(np.float32),
        noisy_patch=patch,
    )
