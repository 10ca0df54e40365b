"""Target registration error of landmarks marked by label classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from torch import Tensor


def landmark_errors(
    disp: Tensor,
    moving_labels: np.ndarray,
    fixed_labels: np.ndarray,
    landmarks: Sequence[int],
    spacing: Sequence[float] | None = None,
) -> dict[int, float]:
    """Target registration error of landmarks marked by label classes.

    A landmark's fixed centroid ``c_f`` is mapped through the field (linearly
    interpolated there), ``c_f + u(c_f)``, and compared with its moving centroid
    ``c_m``: the error is ``|(c_f + u(c_f) - c_m) * spacing|``. With a zero field it is
    the distance between the two centroids. Landmarks absent from either map are
    skipped.

    Parameters
    ----------
    disp : Tensor
        ``(1, ndim, *spatial)`` displacement in voxels, pulling moving onto fixed.
    moving_labels, fixed_labels : numpy.ndarray
        Class-id maps on the fixed grid (the moving one before warping).
    landmarks : sequence of int
        The class ids that are landmarks.
    spacing : sequence of float, optional
        Voxel size per axis; None for errors in voxels.

    Returns
    -------
    dict
        ``{class id: error}`` for the landmarks present in both maps.
    """
    field = disp[0].detach().float().cpu().numpy()
    size = np.ones(field.shape[0]) if spacing is None else np.asarray(spacing, np.float64)
    errors = {}
    for k in landmarks:
        fixed_mask, moving_mask = fixed_labels == k, moving_labels == k
        if not (fixed_mask.any() and moving_mask.any()):
            continue
        centre = np.array(ndimage.center_of_mass(fixed_mask))
        moved = centre + [
            ndimage.map_coordinates(axis, centre[:, None], order=1, mode="nearest")[0]
            for axis in field
        ]
        offset = moved - np.array(ndimage.center_of_mass(moving_mask))
        errors[int(k)] = float(np.linalg.norm(offset * size))
    return errors
