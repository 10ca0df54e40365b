"""Export a displacement field as an ITK displacement-field transform (``.nii.gz``, ``.mha``).

ITK's transforms map a point of the fixed image's physical space to the point of the
moving image it samples: ``T(p) = p + d(p)``; resampling gives
``out(p) = moving(T(p))``. That is the project's ``warped(x) = moving(x + u(x))``
in physical units, so the vectors keep their sign and only change units and order:

* ITK orders image axes fastest first, ``(x, y[, z])``: a C-ordered array
  (``axes == "zyx"``) is reversed, a NIfTI-ordered one (``"xyz"``) kept;
* a vector's components are physical (millimetres, micrometres: the unit of the
  spacing), along ITK's physical axes: ``d = direction @ (spacing * u)`` with ``u`` in
  voxels along ITK's axes;
* physical space is ITK's LPS; a NIfTI file stores RAS, so its affine has the signs
  of the first two rows flipped (ITK flips them back when it reads the file), while
  the vectors are stored as ITK's LPS components (what ITK and ANTs write and read).

Neither writer needs ITK: MetaImage is a text header and raw data, NIfTI goes through
nibabel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src_training.spatial.fieldio import FieldFile

SUFFIXES = (".nii.gz", ".nii", ".mha")


def itk_suffix(path: str | Path) -> str | None:
    """Return the ITK field suffix of ``path`` (``.nii.gz``, ``.nii``, ``.mha``), or None.

    Parameters
    ----------
    path : str or Path
        A file name.

    Returns
    -------
    str or None
        The suffix, or None for any other file.
    """
    name = str(path).lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def itk_geometry(
    field_file: FieldFile,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Express a field as ITK sees it: vectors, spacing, origin, direction in ITK's order.

    Parameters
    ----------
    field_file : FieldFile
        A single (not a stack) field and its grid.

    Returns
    -------
    vectors : numpy.ndarray
        float64 ``(*reversed ITK size, ndim)``: C-ordered, so ``vectors[z, y, x]`` is the
        physical displacement at ITK index ``(x, y, z)``, components ``(x, y[, z])``.
    spacing, origin : numpy.ndarray
        ``(ndim,)`` in ITK's axis order.
    direction : numpy.ndarray
        ``(ndim, ndim)`` direction cosines.
    """
    if field_file.stack:
        raise ValueError(
            "an ITK displacement field holds one field, not a stack of them; save the "
            "stack's fields as .npz, or register one pair of frames and export its field"
        )
    n = field_file.ndim
    # itk_axis[i]: the ITK axis of array axis i; order[a]: the array axis of ITK axis a
    itk_axis = ["xyz".index(name) for name in field_file.axes]
    order = [itk_axis.index(a) for a in range(n)]
    spacing = np.asarray(field_file.spacing)[order]
    origin = np.asarray(field_file.origin)[order]
    voxels = field_file.displacement.astype(np.float64)[order] * spacing.reshape(n, *[1] * n)
    physical = np.einsum("ij,j...->i...", field_file.direction, voxels)
    # memory order: slowest ITK axis first, i.e. array axes for ITK (z, y, x), then components
    memory = [order[a] for a in reversed(range(n))]
    vectors = np.transpose(physical, [1 + axis for axis in memory] + [0])
    return np.ascontiguousarray(vectors), spacing, origin, field_file.direction


def write_itk_field(path: str | Path, field_file: FieldFile) -> Path:
    """Write a field as an ITK displacement field (float32 vectors, physical units).

    Parameters
    ----------
    path : str or Path
        ``.nii.gz``, ``.nii`` or ``.mha`` file.
    field_file : FieldFile
        The field and its grid.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    suffix = itk_suffix(path)
    if suffix is None:
        raise ValueError(
            f"cannot write {path.name} as an ITK displacement field; save it as .nii.gz or .mha"
        )
    if not path.parent.is_dir():
        raise ValueError(
            f"cannot save {path.name}: the folder {path.parent} does not exist; choose an "
            "existing folder"
        )
    vectors, spacing, origin, direction = itk_geometry(field_file)
    if suffix == ".mha":
        _write_mha(path, vectors, spacing, origin, direction)
    else:
        _write_nifti(path, vectors, spacing, origin, direction)
    return path


def _write_mha(
    path: Path, vectors: np.ndarray, spacing: np.ndarray, origin: np.ndarray, direction: np.ndarray
) -> None:
    n = len(spacing)
    header = [
        "ObjectType = Image",
        f"NDims = {n}",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        "CompressedData = False",
        # MetaIO lists the direction matrix column by column
        f"TransformMatrix = {_numbers(direction.T.ravel())}",
        f"Offset = {_numbers(origin)}",
        f"CenterOfRotation = {_numbers([0] * n)}",
        f"ElementSpacing = {_numbers(spacing)}",
        f"DimSize = {' '.join(str(s) for s in vectors.shape[-2::-1])}",
        f"ElementNumberOfChannels = {n}",
        "ElementType = MET_FLOAT",
        "ElementDataFile = LOCAL",
    ]
    with open(path, "wb") as out:
        out.write(("\n".join(header) + "\n").encode("ascii"))
        out.write(vectors.astype("<f4").tobytes())


def _numbers(values: np.ndarray | list[int]) -> str:
    return " ".join(repr(float(v)) for v in values)


def _write_nifti(
    path: Path, vectors: np.ndarray, spacing: np.ndarray, origin: np.ndarray, direction: np.ndarray
) -> None:
    import nibabel as nib

    n = len(spacing)
    # nibabel indexes (i, j, k, t, component) with i fastest: ITK's order
    data = np.transpose(vectors, [*reversed(range(n)), n])
    data = data.reshape(*data.shape[:n], *[1] * (3 - n), 1, n)
    affine = np.eye(4)
    affine[:n, :n] = direction * spacing
    affine[:n, 3] = origin
    affine[:2] *= -1  # LPS to RAS
    image = nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.float32), affine)
    image.header.set_intent("vector")
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
