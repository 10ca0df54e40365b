"""Low-level file readers: one array (and its voxel spacing) per file, no interpretation.

Supported image files: TIFF (``.tif``, ``.tiff``), PNG, JPEG (``.jpg``, ``.jpeg``),
NIfTI (``.nii``, ``.nii.gz``) and NumPy (``.npy``); NumPy archives (``.npz``) are read
with :func:`read_npz`. Arrays keep the file's axis order (NIfTI: the voxel order of the
file, ignoring its affine). Nothing here unpickles objects.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Spacing = tuple[float, ...]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".nii", ".nii.gz", ".npy")
NPZ_SUFFIX = ".npz"
COLOUR_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
# Rec. 709 luminance weights of red, green and blue (as skimage.color.rgb2gray).
LUMINANCE = (0.2125, 0.7154, 0.0721)
# Pillow modes whose pixels numpy reads as intensities (or label values) directly.
_PLAIN_PIL_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA")


def file_suffix(path: str | Path) -> str:
    """Return the lower-case suffix of a file name, ``.nii.gz`` counted as one suffix.

    Parameters
    ----------
    path : str or pathlib.Path
        A file name.

    Returns
    -------
    str
        For example ``".png"`` or ``".nii.gz"``; ``""`` without a suffix.
    """
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def file_stem(path: str | Path) -> str:
    """Return a file name without its suffix (``case1.nii.gz`` -> ``case1``).

    Parameters
    ----------
    path : str or pathlib.Path
        A file name.

    Returns
    -------
    str
        The name with :func:`file_suffix` removed.
    """
    name = Path(path).name
    return name[: len(name) - len(file_suffix(name))]


def read_image(path: str | Path, *, as_label: bool = False) -> tuple[np.ndarray, Spacing | None]:
    """Read the array of one image file, in the file's axis order and dtype.

    A 2D colour image (a PNG, JPEG or TIFF of shape ``(H, W, 3)`` or ``(H, W, 4)``)
    becomes grayscale: the Rec. 709 luminance of red, green and blue, alpha ignored; so
    does every frame of a TIFF stack stored as colour (RGB) frames.
    With ``as_label=True`` colours are kept apart instead: a colour PNG or JPEG label
    image becomes one integer per colour (red, green and blue packed into the bits of
    an int64, black = 0), a palette PNG gives its palette indices, and a TIFF is
    returned unchanged (a trailing axis of 3 or 4 is then a channel axis of masks).

    Parameters
    ----------
    path : str or pathlib.Path
        A ``.tif``, ``.tiff``, ``.png``, ``.jpg``, ``.jpeg``, ``.nii``, ``.nii.gz`` or
        ``.npy`` file.
    as_label : bool
        Read label values rather than intensities (see above).

    Returns
    -------
    array : numpy.ndarray
        The pixel or voxel values.
    spacing : tuple of float or None
        NIfTI files: the header zooms, one per array axis (for a 4D file the last one
        is the time step), as the shortest decimals of their float32 values; None for
        the other formats.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the suffix is not supported or the file cannot be read.
    """
    path = _existing_file(path)
    suffix = file_suffix(path)
    reader = _READERS.get(suffix)
    if reader is None:
        raise ValueError(
            f"unsupported file type '{suffix or '(none)'}' of {path}; save it in a supported "
            f"format instead (supported: {', '.join(IMAGE_SUFFIXES)} and {NPZ_SUFFIX})"
        )
    try:
        array, spacing = reader(path, as_label)
    except Exception as error:
        raise _unreadable(path, error, _KINDS[suffix]) from error
    if suffix in COLOUR_SUFFIXES and array.ndim == 3 and array.shape[-1] in (3, 4):
        if not as_label:
            array = to_grayscale(array)
        elif suffix not in (".tif", ".tiff"):
            array = pack_colours(array)
    return array, spacing


def read_image_ras(
    path: str | Path, *, as_label: bool = False
) -> tuple[np.ndarray, Spacing | None]:
    """Read an image file as :func:`read_image` does, a NIfTI file turned to RAS+ order.

    A NIfTI volume's array axes are permuted and flipped to the orientation closest
    to RAS+ that its affine allows (as ``nibabel.as_closest_canonical``), with its
    zooms permuted alike, so two files that store one volume in different voxel
    orders give the same array; a 4D file keeps its last axis (channels or time)
    last. Other formats and 2D NIfTI files are read unchanged.

    Parameters
    ----------
    path : str or pathlib.Path
        An image file, as for :func:`read_image`.
    as_label : bool
        Read label values rather than intensities.

    Returns
    -------
    array : numpy.ndarray
        The pixel or voxel values.
    spacing : tuple of float or None
        The voxel size per array axis, where the file records it.
    """
    array, zooms = read_image(path, as_label=as_label)
    if zooms is None or array.ndim < 3:
        return array, zooms
    import nibabel

    axes = nibabel.io_orientation(nibabel.load(path).affine)
    oriented = nibabel.apply_orientation(array, axes)
    order = [int(axis) for axis in axes[:, 0]]
    spacing = tuple(zooms[order.index(k)] for k in range(3)) + tuple(zooms[3:])
    return np.ascontiguousarray(oriented), spacing


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of a NumPy ``.npz`` archive.

    Parameters
    ----------
    path : str or pathlib.Path
        An ``.npz`` file.

    Returns
    -------
    dict of str to numpy.ndarray
        The arrays by key, in the archive's order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not an ``.npz`` file, cannot be read or holds pickled objects.
    """
    path = _check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as error:
        raise _unreadable(path, error, "NumPy .npz") from error


def npz_keys(path: str | Path) -> list[str]:
    """List the array keys of an ``.npz`` archive without reading the arrays.

    Parameters
    ----------
    path : str or pathlib.Path
        An ``.npz`` file.

    Returns
    -------
    list of str
        The keys, in the archive's order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not an ``.npz`` file or cannot be read.
    """
    path = _check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.files)
    except Exception as error:
        raise _unreadable(path, error, "NumPy .npz") from error


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """Convert colour pixels ``(..., 3 or 4)`` to their luminance (alpha ignored).

    Parameters
    ----------
    rgb : numpy.ndarray
        Red, green, blue (and alpha) on the last axis.

    Returns
    -------
    numpy.ndarray
        float64 luminance in the input's value range, one axis fewer.
    """
    return np.asarray(rgb[..., :3], dtype=np.float64) @ np.asarray(LUMINANCE)


def pack_colours(rgb: np.ndarray) -> np.ndarray:
    """Turn each colour of an 8- or 16-bit ``(..., 3 or 4)`` image into one integer.

    Red, green and blue are packed into the bits of an int64 (alpha ignored), so a
    colour gets the same value in every file and black is 0.

    Parameters
    ----------
    rgb : numpy.ndarray
        Unsigned integer colours on the last axis.

    Returns
    -------
    numpy.ndarray
        int64 values, one axis fewer.
    """
    bits = 8 * min(rgb.dtype.itemsize, 2)
    channels = np.asarray(rgb[..., :3], dtype=np.int64)
    return (channels[..., 0] << (2 * bits)) | (channels[..., 1] << bits) | channels[..., 2]


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}; check the path")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise PermissionError(
            f"{path} is not readable (permission denied); make it readable, e.g. chmod u+r"
        ) from None
    return path


def _check_npz(path: str | Path) -> Path:
    path = _existing_file(path)
    if file_suffix(path) != NPZ_SUFFIX:
        raise ValueError(f"{path} is not a NumPy {NPZ_SUFFIX} archive")
    return path


def _unreadable(path: Path, error: Exception, kind: str) -> ValueError:
    return ValueError(
        f"could not read {path}: {error}; check that it is a complete {kind} file "
        "(save or copy it again)"
    )


def _read_tiff(path: Path, as_label: bool) -> tuple[np.ndarray, None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array = np.asarray(series.asarray())
        # a stack of colour frames (axes ending in S, samples): grey like a single image
        colour = series.axes.endswith("S") and array.shape[-1] in (3, 4)
        if colour and not as_label and array.ndim > 3:
            array = to_grayscale(array)
    return array, None


def _read_pillow(path: Path, as_label: bool) -> tuple[np.ndarray, None]:
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "LA":
            image = image.getchannel("L")
        elif image.mode not in _PLAIN_PIL_MODES and not (as_label and image.mode == "P"):
            image = image.convert("RGB")
        return np.asarray(image), None


def _read_nifti(path: Path, as_label: bool) -> tuple[np.ndarray, Spacing]:
    import nibabel

    image = nibabel.load(path)
    array = np.asarray(image.dataobj)
    # The header stores float32 zooms: keep their shortest decimal form (0.4, not 0.4000000059).
    return array, tuple(float(str(np.float32(zoom))) for zoom in image.header.get_zooms())


def _read_npy(path: Path, as_label: bool) -> tuple[np.ndarray, None]:
    return np.load(path, allow_pickle=False), None


_Reader = Callable[[Path, bool], tuple[np.ndarray, Spacing | None]]
_READERS: dict[str, _Reader] = {
    ".tif": _read_tiff,
    ".tiff": _read_tiff,
    ".png": _read_pillow,
    ".jpg": _read_pillow,
    ".jpeg": _read_pillow,
    ".nii": _read_nifti,
    ".nii.gz": _read_nifti,
    ".npy": _read_npy,
}
_KINDS = {
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI",
    ".npy": "NumPy .npy",
}
