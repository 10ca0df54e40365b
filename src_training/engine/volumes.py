"""Reading medical volumes (NIfTI) for a viewer: voxels in RAS+ order with their place in mm.

A front end that shows a volume needs more than its voxels: the voxel size and the
position of the first voxel, so that two volumes of different grids (an MR and an
ultrasound of one patient) lie where their headers put them. :func:`read_volume`
gives those, in the same axis order as the dataset loader reads the file
(:func:`src_training.data.reading.read_image_ras`), and recognises label files as the
loader does: integer ids, or a 4D file of one binary mask per channel (channel ``c``
becomes class ``c + 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from src_training.data.layouts import NIFTI_SUFFIXES, check_finite, label_map
from src_training.data.reading import file_suffix, read_image_ras

LABEL_WORDS = ("label", "seg", "mask", "aseg")


@dataclass(frozen=True)
class Volume:
    """One volume read for display.

    Attributes
    ----------
    data : numpy.ndarray
        The voxels in RAS+ order (intensities as stored, or int64 class ids).
    spacing : tuple of float
        Voxel size per axis in mm.
    origin : tuple of float
        World position (mm) of the first voxel's centre, per axis.
    labels : bool
        The file holds labels.
    grid : dict
        The grid as a field file records it (:func:`src_training.engine.fields.affine_grid`
        of the RAS+ ordered voxels), so that a field on this volume's grid exports to ITK
        in the file's physical space.
    """

    data: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    labels: bool
    grid: dict[str, Any] = field(default_factory=dict)


def is_volume_file(path: str | Path) -> bool:
    """Tell whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``).

    Parameters
    ----------
    path : str or pathlib.Path
        A file name.

    Returns
    -------
    bool
        True for a NIfTI suffix.
    """
    return file_suffix(path) in NIFTI_SUFFIXES


def read_volume(path: str | Path) -> Volume:
    """Read a 3D NIfTI volume or label file in RAS+ order with its voxel size and origin.

    A file is read as labels when it holds one binary mask per channel (4D), or when it
    stores integers and its name says labels (contains one of :data:`LABEL_WORDS`).

    Parameters
    ----------
    path : str or pathlib.Path
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    Volume
        The voxels, spacing, origin and whether they are labels.

    Raises
    ------
    ValueError
        If the file is not a 3D volume or a 4D stack of masks (e.g. a displacement
        field, which the field reader opens), or holds NaN or inf values.
    """
    import nibabel

    from src_training.engine.fields import affine_grid  # loads torch: only when reading

    path = Path(path)
    header = nibabel.load(path)
    shape = tuple(int(n) for n in header.shape)
    masks = len(shape) == 4 and shape[3] <= 16
    if len(shape) != 3 and not masks:
        raise ValueError(
            f"{path.name} has shape {shape}: not a 3D volume or a 4D file of label masks "
            "(open displacement fields as .npz field files)"
        )
    raw, zooms = read_image_ras(path, as_label=masks)
    spacing = tuple(float(z) for z in (zooms or (1.0,) * 3)[:3])
    affine = _ras_affine(header.affine, shape[:3])
    origin = tuple(float(str(np.float32(value))) for value in affine[:3, 3])
    grid = {
        key: value if isinstance(value, str) else np.asarray(value).tolist()
        for key, value in affine_grid(affine, 3).items()
    }
    if masks:
        return Volume(label_map(raw, raw.shape[:3], path), spacing, origin, True, grid)
    check_finite(raw, path)
    named = any(word in path.name.lower() for word in LABEL_WORDS)
    if named and raw.dtype.kind in "iu":
        return Volume(raw.astype(np.int64), spacing, origin, True, grid)
    return Volume(raw, spacing, origin, False, grid)


def _ras_affine(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return the voxel-to-RAS matrix of the voxels as :func:`read_image_ras` orders them."""
    import nibabel

    orientation = nibabel.io_orientation(affine)
    return affine @ nibabel.orientations.inv_ornt_aff(orientation, shape)
