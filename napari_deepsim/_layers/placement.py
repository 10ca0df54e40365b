"""Placing the moving layer on the fixed one before registration (no Qt).

Registration starts from where napari shows the two layers (their ``scale`` and
``translate``). When the headers of two volumes do not relate them (an MR and an
ultrasound whose NIfTI origins are both a placeholder), the usual start is ITK's
geometric-centre initialisation: shift the moving volume so that the centres of the
two fields of view coincide. :func:`align_centres` does that in napari, to the moving
layer and to every layer on its grid (its labels, layers carried along), so that what
the user sees is what is registered, and what the command line's ``deepsim register``
does with two NIfTI files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Layer

if TYPE_CHECKING:
    import napari


def centre(layer: Layer) -> np.ndarray:
    """Return the world position of the centre of a layer's field of view.

    Parameters
    ----------
    layer : Layer
        An Image or Labels layer.

    Returns
    -------
    numpy.ndarray
        Per world axis, the midpoint between the first and last voxel centres.
    """
    shape = np.asarray(np.shape(layer.data)[-layer.ndim :], float)
    return np.asarray(layer.translate, float) + (shape - 1) / 2 * np.asarray(layer.scale, float)


def same_grid(layer: Layer, other: Layer) -> bool:
    """Tell whether two layers share shape, scale and translate.

    Parameters
    ----------
    layer, other : Layer
        Image or Labels layers.

    Returns
    -------
    bool
        True when their voxels lie at the same world positions.
    """
    return (
        np.shape(layer.data) == np.shape(other.data)
        and np.allclose(layer.scale, other.scale)
        and np.allclose(layer.translate, other.translate)
    )


def align_centres(
    viewer: napari.Viewer, fixed: Layer, moving: Layer
) -> tuple[np.ndarray, list[str]]:
    """Shift the moving layer and the layers on its grid so its centre lies on the fixed one's.

    Parameters
    ----------
    viewer : napari.Viewer
        Whose layers on the moving layer's grid move with it.
    fixed, moving : Layer
        The pair; they must have the same number of dimensions.

    Returns
    -------
    shift : numpy.ndarray
        The world shift applied (zero when the centres already coincide).
    names : list of str
        The layers that moved, the moving layer first.

    Raises
    ------
    ValueError
        If the two layers differ in dimensions, or are one layer.
    """
    if fixed is moving:
        raise ValueError("fixed and moving are one layer: there is nothing to place")
    if fixed.ndim != moving.ndim:
        raise ValueError(
            f"the fixed layer {fixed.name!r} is {fixed.ndim}D and the moving layer "
            f"{moving.name!r} {moving.ndim}D; choose two layers of the same dimensions"
        )
    shift = centre(fixed) - centre(moving)
    group = [moving] + [
        layer
        for layer in viewer.layers
        if layer is not moving
        and layer is not fixed
        and hasattr(layer, "data")
        and layer.ndim == moving.ndim
        and same_grid(layer, moving)
    ]
    if np.allclose(shift, 0):
        return np.zeros_like(shift), []
    for layer in group:
        layer.translate = np.asarray(layer.translate, float) + shift
    return shift, [layer.name for layer in group]
