"""Fields that travel: a registration's field file, its ITK export, points moved by it.

The CLI (``deepsim register``, ``deepsim export-field``) and the Register widget both
describe a field with :class:`~src_training.spatial.fieldio.FieldFile` (its grid and
provenance), export it with :func:`export_itk` and move landmarks with
:func:`move_world_points`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src_training.data.reading import file_suffix
from src_training.spatial.fieldio import FieldFile, load_field
from src_training.spatial.itkfield import write_itk_field
from src_training.spatial.points import check_points, move_points


def file_grid(path: str | Path, ndim: int, spacing: tuple[float, ...] | None) -> dict[str, Any]:
    """Describe the grid of an image file as a field file records it.

    NIfTI volumes keep the file's voxel order (ITK's ``x, y, z``) and their header's
    orientation (its affine, turned from RAS to ITK's LPS); other files are C-ordered
    (``z, y, x``) with the identity direction.

    Parameters
    ----------
    path : str or Path
        The fixed image file.
    ndim : int
        Its number of spatial axes.
    spacing : tuple of float or None
        The voxel size the reader found, if any.

    Returns
    -------
    dict
        ``spacing``, ``origin``, ``axes`` and ``direction`` for :class:`FieldFile`.
    """
    if file_suffix(path) not in (".nii", ".nii.gz"):
        return {"spacing": spacing or (), "axes": "zyx"[3 - ndim :]}
    import nibabel as nib

    return affine_grid(nib.load(path).affine, ndim)


def affine_grid(affine: np.ndarray, ndim: int) -> dict[str, Any]:
    """Describe the grid of a NIfTI affine (RAS, voxel order ``x, y, z``) as a field records it.

    Parameters
    ----------
    affine : numpy.ndarray
        ``(4, 4)`` voxel-to-RAS matrix.
    ndim : int
        Number of spatial axes.

    Returns
    -------
    dict
        ``spacing``, ``origin`` and ``direction`` in ITK's LPS, and ``axes`` ``"xyz"``.
    """
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, float)  # RAS to LPS
    steps = affine[:ndim, :ndim]
    sizes = np.linalg.norm(steps, axis=0)
    return {
        "spacing": tuple(float(s) for s in sizes),
        "origin": tuple(float(o) for o in affine[:ndim, 3]),
        "axes": "xyz"[:ndim],
        "direction": steps / sizes,
    }


def export_itk(source: str | Path | FieldFile, destination: str | Path) -> Path:
    """Write a field (a field file, a bare ``.npy`` or one in memory) as an ITK transform.

    Parameters
    ----------
    source : str, Path or FieldFile
        The field.
    destination : str or Path
        ``.nii.gz``, ``.nii`` or ``.mha`` file.

    Returns
    -------
    Path
        The written file.
    """
    field_file = source if isinstance(source, FieldFile) else load_field(source, allow_stack=True)
    return write_itk_field(destination, field_file)


def move_world_points(field_file: FieldFile, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move points of the moving image, in world coordinates, onto the fixed grid.

    World coordinates are those of the field's grid, ``origin + spacing * voxel`` per
    array axis (napari's world); the last ``ndim`` columns are moved, leading ones (a
    frame, a track id) kept; for a stack field the column before the spatial ones is
    the frame.

    Parameters
    ----------
    field_file : FieldFile
        The field and its grid.
    points : numpy.ndarray
        ``(N, D)`` world coordinates.

    Returns
    -------
    moved : numpy.ndarray
        ``(N, D)`` world coordinates on the fixed grid.
    residual : numpy.ndarray
        ``(N,)`` residual of the inversion in voxels (large where the field folds).
    """
    n = field_file.ndim
    spacing, origin = np.asarray(field_file.spacing), np.asarray(field_file.origin)
    voxels = check_points(points, n, field_file.stack)
    voxels[:, -n:] = (voxels[:, -n:] - origin) / spacing
    moved, residual = move_points(field_file.displacement, voxels, field_file.stack)
    moved[:, -n:] = moved[:, -n:] * spacing + origin
    return moved, residual
