"""Intensity profiles, to tell whether an image looks like a model's training data.

Models see images normalised per image (percentiles 1 and 99 mapped to 0 and 1), so
the raw range and dtype of an image do not matter to them, but the shape of its
intensity distribution does: EM sections are bright cells between thin dark
membranes, phase-contrast frames a mid-grey background with dark and bright rims. A
profile records, over the training images, the range of each normalised quantile in
:data:`QUANTILES` (and, for the model card, the raw dtype and percentiles). An image
whose normalised quantiles lie more than :data:`TOLERANCE` outside those ranges is
unlike the training data, and the model's result may be poor on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from src_training.data.normalise import normalise_intensity

QUANTILES = (5, 25, 50, 75, 95)
RAW_PERCENTILES = (1, 50, 99)
TOLERANCE = 0.15


def normalised_quantiles(image: np.ndarray) -> np.ndarray:
    """Return the :data:`QUANTILES` of an image after the models' normalisation.

    Parameters
    ----------
    image : numpy.ndarray
        Any real-valued image with its original intensities (all channels together).

    Returns
    -------
    numpy.ndarray
        One value per quantile.
    """
    values = normalise_intensity(np.asarray(image))
    return np.percentile(values[np.isfinite(values)], QUANTILES)


def intensity_profile(images: Iterable[np.ndarray]) -> dict[str, Any]:
    """Describe the intensities of a model's training images.

    Parameters
    ----------
    images : iterable of numpy.ndarray
        The raw training images (as read from their files).

    Returns
    -------
    dict
        JSON-ready: ``dtypes``, ``raw_percentiles`` (percentile to ``[min, max]`` over
        images), ``quantiles`` and their normalised ``low`` and ``high`` over images.
    """
    quantiles, raw, dtypes = [], [], set()
    for image in images:
        image = np.asarray(image)
        dtypes.add(str(image.dtype))
        raw.append(np.percentile(image, RAW_PERCENTILES))
        quantiles.append(normalised_quantiles(image))
    if not quantiles:
        raise ValueError("an intensity profile needs at least one image")
    q, r = np.array(quantiles), np.array(raw)
    return {
        "dtypes": sorted(dtypes),
        "raw_percentiles": {
            str(p): [float(r[:, i].min()), float(r[:, i].max())]
            for i, p in enumerate(RAW_PERCENTILES)
        },
        "quantiles": list(QUANTILES),
        "low": [round(float(v), 4) for v in q.min(axis=0)],
        "high": [round(float(v), 4) for v in q.max(axis=0)],
    }


def profile_distance(profile: dict[str, Any], image: np.ndarray) -> float:
    """Return how far an image's normalised quantiles lie outside a profile's ranges.

    Parameters
    ----------
    profile : dict
        From :func:`intensity_profile`.
    image : numpy.ndarray
        An image with its original intensities.

    Returns
    -------
    float
        The largest distance of a quantile from its training range (0 inside it).
    """
    values = normalised_quantiles(image)
    low, high = np.asarray(profile["low"]), np.asarray(profile["high"])
    return float(np.max(np.maximum(low - values, 0) + np.maximum(values - high, 0)))


def unlike_training(
    profile: dict[str, Any] | None, image: np.ndarray, what: str, model: str
) -> str | None:
    """Return a one-line warning when an image is unlike a model's training data.

    Parameters
    ----------
    profile : dict or None
        The model's training profile; None (not recorded) never warns.
    image : numpy.ndarray
        An image with its original intensities.
    what : str
        How the message names the image.
    model : str
        How the message names the model (a built-in name or a file).

    Returns
    -------
    str or None
        The warning, or None when the image looks like the training data.
    """
    if not profile:
        return None
    distance = profile_distance(profile, image)
    if distance <= TOLERANCE:
        return None
    median = QUANTILES.index(50)
    value = float(normalised_quantiles(image)[median])
    low, high = profile["low"][median], profile["high"][median]
    return (
        f"{what} looks unlike the training data of {model} (normalised median intensity "
        f"{value:.2f}, training {low:.2f}-{high:.2f}; distribution off by {distance:.2f}); "
        f"the registration may be poor: fine-tune with `deepsim train DATA --init {model}`"
    )


def data_warnings(metadata: dict[str, Any], images: Sequence[tuple[np.ndarray, str]]) -> list[str]:
    """Return a warning when an image is unlike a model's training data (the first such).

    Parameters
    ----------
    metadata : dict
        A model file's metadata; its ``intensity_profile`` (the built-in models record
        one) is the reference, and ``builtin`` names the model.
    images : sequence of (numpy.ndarray, str)
        Images with their original intensities, and how messages name them.

    Returns
    -------
    list of str
        At most one line (none for a model without a profile).
    """
    profile = metadata.get("intensity_profile")
    name = str(metadata.get("builtin", "the model"))
    for image, what in images:
        line = unlike_training(profile, image, what, name)
        if line is not None:
            return [line]
    return []
