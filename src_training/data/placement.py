"""Putting the two images of a pair on one grid, and checking that their labels agree.

The paired layout (``moving_images/``, ``fixed_images/``) holds images of two
modalities on grids of their own, such as MR and ultrasound volumes. Where both voxel
sizes are known (NIfTI files, read in RAS+ order) the moving image keeps its physical
size and its centre lands on the fixed grid's centre, the geometric-centre
initialisation of ITK and elastix; the files' origins are not used. Without voxel
sizes its first and last pixels land on the grid's (the field of view is assumed equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src_training.data.normalise import place_by_spacing, resample

Spacing = tuple[float, ...]


def put_on_grid(
    image: np.ndarray,
    label: np.ndarray | None,
    grid: tuple[int, ...],
    spacing: Spacing | None,
    grid_spacing: Spacing | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample an image and its label map onto a grid, as the module describes.

    Parameters
    ----------
    image : numpy.ndarray
        Spatial image.
    label : numpy.ndarray or None
        Its label map, on the image's grid.
    grid : tuple of int
        The grid's shape.
    spacing, grid_spacing : tuple of float or None
        Voxel size of the image and of the grid; None where unknown.

    Returns
    -------
    image, label : numpy.ndarray
        On the grid (linear interpolation for the image, nearest for the labels).
    """
    moved = None if label is None else array_on_grid(label, grid, spacing, grid_spacing, 0)
    return array_on_grid(image, grid, spacing, grid_spacing, 1), moved


def array_on_grid(
    array: np.ndarray,
    grid: Sequence[int],
    spacing: Spacing | None,
    grid_spacing: Spacing | None,
    order: int,
) -> np.ndarray:
    """Resample one array onto a grid, as the module describes.

    Parameters
    ----------
    array : numpy.ndarray
        Spatial array.
    grid : sequence of int
        The grid's shape.
    spacing, grid_spacing : tuple of float or None
        Voxel size of the array and of the grid; None where unknown.
    order : int
        Spline order: 1 for images, 0 for label maps.

    Returns
    -------
    numpy.ndarray
        On the grid (the array itself where it already is).
    """
    if spacing is None or grid_spacing is None:
        return resample(array, grid, order=order)
    if array.shape == tuple(grid) and spacing == grid_spacing:
        return array
    return place_by_spacing(array, grid, spacing, grid_spacing, order)


def positions_on_grid(
    points: np.ndarray,
    shape: Sequence[int],
    grid: Sequence[int],
    spacing: Spacing | None,
    grid_spacing: Spacing | None,
) -> np.ndarray:
    """Map voxel positions of an image to the grid :func:`put_on_grid` puts it on.

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, ndim)`` positions in the image's voxels, one column per array axis.
    shape, grid : sequence of int
        The image's shape and the grid's.
    spacing, grid_spacing : tuple of float or None
        Their voxel sizes; None where unknown (corners onto corners).

    Returns
    -------
    numpy.ndarray
        ``(N, ndim)`` positions in the grid's voxels.
    """
    size_in, size_out = np.asarray(shape, float), np.asarray(grid, float)
    if spacing is None or grid_spacing is None:
        return points * (size_out - 1) / np.maximum(size_in - 1, 1)
    step = np.asarray(grid_spacing, float) / np.asarray(spacing, float)
    offset = (size_in - 1) / 2 - step * (size_out - 1) / 2
    return (points - offset) / step


def check_label_layouts(raw: Sequence[np.ndarray], paths: Sequence[Path]) -> None:
    """Refuse a case whose moving and fixed label files hold different structures.

    A label file with one axis more than its volume holds one mask per channel
    (channels last): both files of a case must hold the same number.

    Parameters
    ----------
    raw : sequence of numpy.ndarray
        The moving and the fixed label arrays as read.
    paths : sequence of Path
        Their files, named in the message.

    Raises
    ------
    ValueError
        If the channel counts differ.
    """
    counts = [array.shape[-1] if array.ndim == 4 else 1 for array in raw]
    if counts[0] != counts[1]:
        raise ValueError(
            f"the label file {paths[0]} holds {counts[0]} label channel(s) but {paths[1]} "
            f"holds {counts[1]}; give a case's moving and fixed labels the same channels, "
            "one per structure in the same order"
        )
