"""Putting a moving NIfTI volume in the voxel order of the fixed one.

Two NIfTI files of one anatomy may store their voxels in different orders (one from
left to right, the other from right to left; axes swapped). Their affines say so, and
registering the arrays as stored would start from a flipped or transposed volume.
:func:`orientation_change` finds the flips and axis swaps that turn a moving file's
voxel order into the fixed file's (the nearest orientation its affine allows, as
``nibabel.io_orientation``); :func:`reorient_array`, :func:`reorient_spacing` and
:func:`reorient_points` apply them to its voxels, voxel size and point coordinates.
The fixed side stays as stored, so every output lies on the fixed file's grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src_training.data.layouts import NIFTI_SUFFIXES
from src_training.data.reading import file_suffix

LETTERS = {(0, 1): "R", (0, -1): "L", (1, 1): "A", (1, -1): "P", (2, 1): "S", (2, -1): "I"}


def _orientation(path: str | Path) -> np.ndarray | None:
    """Return the ``(3, 2)`` nibabel orientation of a 3D NIfTI file's voxel axes, or None."""
    if file_suffix(path) not in NIFTI_SUFFIXES:
        return None
    import nibabel

    image = nibabel.load(path)
    if len(image.shape) < 3:
        return None
    return nibabel.io_orientation(image.affine)[:3]


def axis_codes(path: str | Path) -> str:
    """Return the anatomical direction of each voxel axis of a NIfTI file, e.g. ``"LPS"``."""
    orientation = _orientation(path)
    if orientation is None:
        return ""
    return "".join(LETTERS[(int(axis), int(flip))] for axis, flip in orientation)


def orientation_change(moving: str | Path, fixed: str | Path) -> np.ndarray | None:
    """Return what turns the moving file's voxel order into the fixed file's, if anything.

    Parameters
    ----------
    moving, fixed : str or pathlib.Path
        Image or label files.

    Returns
    -------
    numpy.ndarray or None
        A ``(3, 2)`` nibabel orientation transform (row ``i``: the output axis of input
        axis ``i`` and ``-1`` if it is reversed); None when either file is not a 3D
        NIfTI file or both store their voxels in the same order.
    """
    start, end = _orientation(moving), _orientation(fixed)
    if start is None or end is None or np.array_equal(start, end):
        return None
    import nibabel

    return nibabel.orientations.ornt_transform(start, end)


def reorient_array(volume: np.ndarray, change: np.ndarray | None) -> np.ndarray:
    """Flip and permute the axes of a 3D volume as ``change`` says (nibabel's rule)."""
    if change is None:
        return volume
    import nibabel

    return np.ascontiguousarray(nibabel.apply_orientation(volume, change))


def reorient_spacing(
    spacing: tuple[float, ...] | None, change: np.ndarray | None
) -> tuple[float, ...] | None:
    """Permute a voxel size per axis as ``change`` permutes the axes."""
    if spacing is None or change is None:
        return spacing
    out = [0.0] * 3
    for k in range(3):
        out[int(change[k, 0])] = spacing[k]
    return tuple(out)


def reorient_points(
    coordinates: np.ndarray, shape: tuple[int, ...], change: np.ndarray | None
) -> np.ndarray:
    """Map voxel coordinates ``(n, 3)`` of an array of ``shape`` to the reoriented array."""
    if change is None:
        return coordinates
    out = np.empty_like(coordinates, dtype=np.float64)
    for k in range(3):
        column = coordinates[:, k].astype(np.float64)
        if change[k, 1] < 0:
            column = shape[k] - 1 - column
        out[:, int(change[k, 0])] = column
    return out
