"""Moving Points, Shapes and Tracks layers with a displacement field (no Qt).

A landmark drawn on the moving image at world position ``p`` shows the same structure
as the fixed position ``q`` with ``q + u(q) = p``; :func:`moved_layer_data` finds every
``q`` by inverting the field (:func:`src_training.engine.fields.move_world_points`)
and returns a copy of the layer with the moved coordinates. World coordinates follow
the layer's ``scale`` and ``translate`` (``world = data * scale + translate``) and the
field's grid (its spacing and origin). :func:`moved_style` draws the copy in a colour
of its own, so that it does not hide under the original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Layer, Points, Shapes, Tracks

if TYPE_CHECKING:
    from src_training.engine.public import FieldFile

GEOMETRY = (Points, Shapes, Tracks)
FAR = 0.5  # voxels: a point whose inversion leaves more is reported
MOVED_COLOURS = {"orange": (1.0, 0.647, 0.0), "dodgerblue": (0.118, 0.565, 1.0)}
MOVED_COLORMAPS = ("magma", "viridis")  # a moved Tracks layer's, unlike its original's


def moved_style(layer: Layer, state: dict[str, Any]) -> dict[str, Any]:
    """Return the style of a moved copy, told apart from the original layer at a glance.

    Parameters
    ----------
    layer : Points, Shapes or Tracks
        The original layer.
    state : dict
        Its state (``as_layer_data_tuple``).

    Returns
    -------
    dict
        A face colour (points) or edge colour (shapes), of the two
        :data:`MOVED_COLOURS` the one farther from the original's mean colour, or a
        tracks colormap other than the original's.
    """
    if isinstance(layer, Tracks):
        return {"colormap": next(c for c in MOVED_COLORMAPS if c != state.get("colormap"))}
    key = "face_color" if isinstance(layer, Points) else "edge_color"
    colours = np.asarray(state.get(key, np.zeros((0, 4))), float).reshape(-1, 4)
    mean = colours[:, :3].mean(axis=0) if len(colours) else np.ones(3)
    name = max(
        MOVED_COLOURS, key=lambda c: float(np.abs(np.subtract(MOVED_COLOURS[c], mean)).sum())
    )
    return {key: name}


def moved_layer_data(layer: Layer, field_file: FieldFile) -> tuple[Any, dict[str, Any], str, int]:
    """Return a copy of a Points, Shapes or Tracks layer moved onto the fixed grid.

    Parameters
    ----------
    layer : Points, Shapes or Tracks
        Positions on the moving image; their last ``ndim`` coordinates are moved
        (leading ones, a time or a plane outside the field, are kept; a stack field
        takes the frame from the coordinate before the spatial ones).
    field_file : FieldFile
        The field and its grid.

    Returns
    -------
    data, state, kind
        The layer data tuple of the moved copy (napari's ``as_layer_data_tuple``).
    far : int
        How many points the inversion could not place within :data:`FAR` voxels (where
        the field folds).
    """
    from src_training.engine.fields import move_world_points

    data, state, kind = layer.as_layer_data_tuple()
    scale, translate = np.asarray(layer.scale), np.asarray(layer.translate)
    if isinstance(layer, Shapes):
        vertices = np.concatenate(data) if len(data) else np.zeros((0, layer.ndim))
    else:
        vertices = np.asarray(data, np.float64)
    first = 1 if isinstance(layer, Tracks) else 0  # a track id leads the coordinates
    world = vertices[:, first:] * scale + translate
    moved, residual = move_world_points(field_file, world)
    vertices = vertices.astype(np.float64)
    vertices[:, first:] = (moved - translate) / scale
    if isinstance(layer, Shapes):
        data = np.split(vertices, np.cumsum([len(shape) for shape in data])[:-1])
    else:
        data = vertices
    return data, state, kind, int((residual > FAR).sum())
