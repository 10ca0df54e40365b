"""Preparing arrays: intensity normalisation, the smallest size, and resampling to a grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

MIN_SIZE = 2
ONE_VALUE_SHARE = 0.99
PERCENTILES = (1.0, 99.0)
NORMALISATION = "per image and channel: percentiles 1 and 99 mapped to 0 and 1, not clipped"


def normalise_intensity(
    image: np.ndarray, percentiles: tuple[float, float] = PERCENTILES
) -> np.ndarray:
    """Map an image's robust intensity range to ``[0, 1]``, per image.

    The ``percentiles[0]``-th percentile becomes 0 and the ``percentiles[1]``-th
    becomes 1; values outside are kept (not clipped), so bright rims and dark
    spots stay distinguishable. NaN and inf are ignored by the percentiles. A
    constant image becomes all zeros.

    Parameters
    ----------
    image : numpy.ndarray
        Any real-valued array.
    percentiles : tuple of float
        Low and high percentile.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    values = np.asarray(image, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("the image has no finite pixel values; check the file")
    low, high = np.percentile(finite, percentiles)
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def check_spatial_size(shape: Sequence[int], what: str) -> None:
    """Refuse images with fewer than :data:`MIN_SIZE` pixels along an axis.

    Registration needs differences between neighbouring pixels (the regulariser and
    the Jacobian), so an axis of one pixel gives no result; smaller images than the
    network's ``2**depth`` are padded and work.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape.
    what : str
        How to name the image in the message.

    Raises
    ------
    ValueError
        If an axis is shorter than :data:`MIN_SIZE`.
    """
    if min(shape) < MIN_SIZE:
        raise ValueError(
            f"{what} is only {tuple(int(n) for n in shape)} pixels; registration needs at least "
            f"{MIN_SIZE} pixels along every axis, so use a larger image"
        )


def check_not_constant(image: np.ndarray, what: str) -> None:
    """Refuse a constant image: it has nothing to align.

    Every metric is flat on it, a model's field is meaningless and an optimisation runs
    without moving, so it is refused before any work.

    Parameters
    ----------
    image : numpy.ndarray
        Any real-valued array (NaN and inf are ignored).
    what : str
        How to name the image in the message.

    Raises
    ------
    ValueError
        If every finite value of the image is the same.
    """
    finite = _finite(image)
    if finite.size and finite.min() == finite.max():
        raise ValueError(
            f"{what} is constant (every pixel is {float(finite.flat[0]):g}), so there is "
            "nothing to align; choose an image that shows the structures to register"
        )


def one_value_warning(image: np.ndarray, what: str) -> str | None:
    """Describe an image that is :data:`ONE_VALUE_SHARE` or more a single value.

    A mostly empty canvas or a padded crop is registered by its few other pixels,
    which a user should know.

    Parameters
    ----------
    image : numpy.ndarray
        Any real-valued array (NaN and inf are ignored).
    what : str
        How to name the image in the message.

    Returns
    -------
    str or None
        The warning, or None.
    """
    finite = _finite(image)
    if finite.size == 0:
        return None
    dominant = np.median(finite)  # a value covering over half the pixels is the median
    share = float(np.mean(finite == dominant))
    if share < ONE_VALUE_SHARE:
        return None
    return (
        f"{what} is {100 * share:.1f} % one value ({float(dominant):g}); only its other "
        "pixels guide the registration"
    )


def _finite(image: np.ndarray) -> np.ndarray:
    values = np.asarray(image)
    return values[np.isfinite(values)] if values.dtype.kind in "fc" else values.ravel()


def resample(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample an array onto a grid of another shape, mapping corner onto corner.

    The first and last element along each axis land on the first and last element of
    the output (the physical extent is assumed equal; file affines are not used).

    Parameters
    ----------
    array : numpy.ndarray
        Spatial array, one axis per entry of ``shape``.
    shape : sequence of int
        Output shape.
    order : int
        Spline order: 0 (nearest, for labels; keeps the dtype) or 1 (linear, for
        images; computed in float32, or float64 for float64 input).

    Returns
    -------
    numpy.ndarray
        The resampled array (the input itself if the shape already matches).

    Raises
    ------
    ValueError
        If ``shape`` has a different number of axes than ``array``.
    """
    shape = tuple(int(size) for size in shape)
    if len(shape) != array.ndim:
        raise ValueError(f"cannot resample an array of shape {array.shape} to shape {shape}")
    if shape == array.shape:
        return array
    scale = [
        (size_in - 1) / max(size_out - 1, 1)
        for size_in, size_out in zip(array.shape, shape, strict=True)
    ]
    return resample_onto(array, shape, scale, [0.0] * len(shape), order, mode="nearest")


def resample_onto(
    array: np.ndarray,
    shape: Sequence[int],
    step: Sequence[float],
    offset: Sequence[float],
    order: int,
    mode: str = "constant",
) -> np.ndarray:
    """Resample an array onto another grid: output index ``i`` reads ``step * i + offset``.

    This places two images by their physical (world) coordinates, such as napari
    layers with different scales or translations: where the output grid lies outside
    the array, the result is 0.

    Parameters
    ----------
    array : numpy.ndarray
        Spatial array, one axis per entry of ``shape``.
    shape : sequence of int
        Output shape.
    step, offset : sequence of float
        Per axis, the array's index of output index ``i`` is ``step * i + offset``.
    order : int
        Spline order, as for :func:`resample`.
    mode : str
        What lies outside the array: 0 (``constant``) or its edge (``nearest``).

    Returns
    -------
    numpy.ndarray
        The resampled array.
    """
    shape = tuple(int(size) for size in shape)
    if not len(shape) == len(step) == len(offset) == array.ndim:
        raise ValueError(f"cannot resample an array of shape {array.shape} to shape {shape}")
    if order > 0 and array.dtype != np.float64:
        array = array.astype(np.float32)
    return ndimage.affine_transform(  # a diagonal matrix, given whole: a 1-D one warns
        array, np.diag(step), offset=list(offset), output_shape=shape, order=order, mode=mode
    )


def place_by_spacing(
    array: np.ndarray,
    shape: Sequence[int],
    spacing: Sequence[float],
    grid_spacing: Sequence[float],
    order: int,
) -> np.ndarray:
    """Resample an array onto a grid by physical size, the two centres aligned.

    Output index ``i`` lies ``(i - (n_out - 1) / 2) * grid_spacing`` from the grid's
    centre and reads the array at the same physical distance from its own centre, so
    a voxel keeps its size (a larger array is cropped, a smaller one padded with 0):
    the geometric-centre initialisation of ITK and elastix.

    Parameters
    ----------
    array : numpy.ndarray
        The array to place, one axis per entry of ``shape``.
    shape : sequence of int
        The grid's shape.
    spacing, grid_spacing : sequence of float
        Voxel size of the array and of the output grid, per axis, in one unit.
    order : int
        Spline order, as for :func:`resample`.

    Returns
    -------
    numpy.ndarray
        The array on the grid.
    """
    step = [out / into for out, into in zip(grid_spacing, spacing, strict=True)]
    offset = [
        (size_in - 1) / 2 - s * (size_out - 1) / 2
        for size_in, size_out, s in zip(array.shape, shape, step, strict=True)
    ]
    return resample_onto(array, shape, step, offset, order)
