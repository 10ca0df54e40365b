"""Image data: intensity normalisation (datasets and pair sampling grow here)."""

from __future__ import annotations

import numpy as np

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
