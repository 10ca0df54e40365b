"""Writing results: images as TIFF (2D) or NIfTI (3D), fields also as ``.npy``.

Nothing is overwritten silently: :func:`prepare_output_dir` refuses a folder that
already holds results unless the caller allows it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def prepare_output_dir(path: str | Path, names: list[str], overwrite: bool = False) -> Path:
    """Create ``path`` and check that none of ``names`` would be overwritten.

    Parameters
    ----------
    path : str or Path
        Output folder.
    names : list of str
        File names about to be written.
    overwrite : bool
        Allow replacing existing files.

    Returns
    -------
    Path
        The folder.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder; choose a folder name")
    clashes = [n for n in names if (folder / n).exists()]
    if clashes and not overwrite:
        raise ValueError(
            f"{folder} already holds {', '.join(clashes[:3])}"
            f"{' ...' if len(clashes) > 3 else ''}; choose another --out or pass --overwrite"
        )
    if folder.is_dir():
        check_writable(folder)
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create the output folder {folder} ({err.strerror}); choose another --out"
        ) from None
    return folder


def check_writable(folder: str | Path, option: str = "--out") -> None:
    """Refuse a folder that files cannot be written to, before any work is done.

    The check writes and removes a temporary file, so it also catches read-only file
    systems and full disks, which permission bits do not show.

    Parameters
    ----------
    folder : str or Path
        An existing folder.
    option : str
        The option that named it, for the message.

    Raises
    ------
    PermissionError
        If a file cannot be created in ``folder``.
    """
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError(
            f"cannot write to the folder {folder} ({err.strerror}); choose another {option}"
        ) from None


def image_suffix(ndim: int) -> str:
    """``.tif`` for 2D results, ``.nii.gz`` for 3D."""
    return ".tif" if ndim == 2 else ".nii.gz"


def write_image(
    path: str | Path, array: np.ndarray, ndim: int, affine: np.ndarray | None = None
) -> Path:
    """Write an image, a stack of images or a vector field.

    2D data goes to TIFF as it is (``(H, W)``, ``(C, H, W)`` or ``(T, ...)``); 3D
    data goes to NIfTI with the channel/vector axis moved last, as NIfTI expects.

    Parameters
    ----------
    path : str or Path
        Output file (``.tif`` or ``.nii.gz``).
    array : numpy.ndarray
        Data with the spatial axes last (and channels first, if any).
    ndim : int
        Number of spatial axes.
    affine : numpy.ndarray, optional
        4x4 voxel-to-world matrix for NIfTI (identity if absent).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if ndim == 2:
        import tifffile

        # minisblack: a 3- or 4-frame stack must not be stored as RGB(A) planes
        tifffile.imwrite(path, np.ascontiguousarray(array), photometric="minisblack")
    else:
        import nibabel as nib

        data = array if array.ndim == 3 else np.moveaxis(array, 0, -1)
        # NIfTI readers expect 32-bit types: labels as int32, everything else as float32
        data = data.astype(np.int32 if np.issubdtype(data.dtype, np.integer) else np.float32)
        nib.save(
            nib.Nifti1Image(np.ascontiguousarray(data), np.eye(4) if affine is None else affine),
            path,
        )
    return path
