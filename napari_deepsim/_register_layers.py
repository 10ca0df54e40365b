"""The Register widget's result layers: the warped data, overlays and the live preview.

Everything here runs on the GUI thread with arrays the worker computed, so it only adds
or updates layers. Result layers are tagged with the moving layer's id (see
:func:`~napari_deepsim._controls.add_output`), so a new result replaces the old one:
a layer of the same name and kind gets the new data in place (napari collects garbage
each time it removes a layer, which can take most of a second), the live preview
becomes the warped image, and only layers that have no successor are removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Layer

from napari_deepsim._choices import SOURCE
from napari_deepsim._controls import (
    FOLDS_STYLE,
    GRID_COLOR,
    JACOBIAN_STYLE,
    add_output,
    grid_style,
    like,
)

if TYPE_CHECKING:
    import napari

    from napari_deepsim._register_job import Result


def show_result(viewer: napari.Viewer, context: dict[str, Any], result: Result) -> None:
    """Replace the moving layer's result layers with a new result's.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    context : dict
        The layers of the run (``fixed``, ``moving``, ``moving_labels``, ``extras``) and
        whether the Jacobian was asked for (``jacobian``).
    result : Result
        What the worker computed.
    """
    fixed, moving = context["fixed"], context["moving"]
    key = str(moving.unique_id)
    grid = (fixed.scale, fixed.translate)
    old = {layer.name: layer for layer in viewer.layers if layer.metadata.get(SOURCE) == key}
    preview = old.pop(f"{moving.name} preview", None)
    stale = []
    if preview is not None:  # it becomes the warped image
        stale = [old.pop(f"{moving.name} warped")] if f"{moving.name} warped" in old else []
        old[f"{moving.name} warped"] = preview

    def add(kind: str, data: Any, name: str, **style: Any) -> None:
        layer = old.pop(name, None)
        if layer is not None and _reusable(layer, kind, data):
            _update(layer, data, name, grid, style)
            return
        if layer is not None:
            viewer.layers.remove(layer)
        add_output(viewer, kind, data, name, key, grid, **style)

    if context["jacobian"]:
        add("image", result.jacobian, f"{moving.name} Jacobian", **JACOBIAN_STYLE, visible=False)
    if result.checkerboard is not None:
        add(
            "image",
            result.checkerboard,
            f"{moving.name} checkerboard",
            colormap="gray",
            visible=False,
        )
    add("image", result.warped, f"{moving.name} warped", **like(moving))
    if result.warped_labels is not None:
        labels = context["moving_labels"]
        add("labels", result.warped_labels, f"{labels.name} warped", **like(labels))
    for source, data in zip(context["extras"], result.extras, strict=True):
        if isinstance(source, Labels):
            add("labels", data, f"{source.name} warped", **like(source))
        else:
            add("image", data, f"{source.name} warped", **like(source), blending=source.blending)
    if context["jacobian"]:
        add("labels", result.folds, f"{moving.name} folds", **FOLDS_STYLE)
    if result.grid is not None:
        kind, style = grid_style(result.grid, GRID_COLOR)
        add(kind, result.grid, f"{moving.name} grid", **style)
    if result.vectors is not None:
        add(
            "vectors",
            result.vectors,
            f"{moving.name} displacement",
            edge_color="cyan",
            edge_width=0.5,
        )
    for layer in [*old.values(), *stale]:
        viewer.layers.remove(layer)


def _reusable(layer: Layer, kind: str, data: Any) -> bool:
    """Whether a result layer can take new data in place (same kind, dimensions, count)."""
    if type(layer).__name__.lower() != kind:
        return False
    if kind == "shapes":
        return len(layer.data) == len(data)
    return bool(np.ndim(data) == np.ndim(layer.data))


def _update(
    layer: Layer, data: Any, name: str, grid: tuple[Any, Any], style: dict[str, Any]
) -> None:
    """Give a result layer new data, grid and look (its visibility stays the user's)."""
    layer.name = name
    layer.data = data
    layer.scale, layer.translate = grid
    for attribute in ("colormap", "contrast_limits", "blending"):
        if attribute in style:
            setattr(layer, attribute, style[attribute])


def show_preview(viewer: napari.Viewer, context: dict[str, Any], preview: np.ndarray) -> None:
    """Show the moving image warped by the best transformation of the last level.

    The preview lies on a pyramid level's grid, corner-aligned with the fixed layer, so
    its pixels are larger; the final result layers replace it.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    context : dict
        The layers of the run (``fixed``, ``moving``).
    preview : numpy.ndarray
        The warped moving image (normalised) on the level's grid.
    """
    fixed, moving = context["fixed"], context["moving"]
    name = f"{moving.name} preview"
    full = np.asarray(fixed.data.shape, float)
    level = np.asarray(preview.shape, float)
    scale = np.asarray(fixed.scale) * (full - 1) / np.maximum(level - 1, 1)
    key = str(moving.unique_id)
    style = {"colormap": "gray", "contrast_limits": (0.0, 1.0)}
    layer = _output(viewer, name, key)
    if layer is None:
        layer = _output(viewer, f"{moving.name} warped", key)
    if layer is not None:  # the last preview, or the last result's warped image
        _update(layer, preview, name, (scale, fixed.translate), style)
        return
    add_output(viewer, "image", preview, name, key, (scale, fixed.translate), **style)


def remove_preview(viewer: napari.Viewer, context: dict[str, Any]) -> None:
    """Remove the live preview of a run that ended without a result.

    The preview took over the last result's warped image, if there was one, so that
    layer goes too rather than show the preview's data under its old name.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    context : dict
        The layers of the run (``moving``).
    """
    moving = context["moving"]
    layer = _output(viewer, f"{moving.name} preview", str(moving.unique_id))
    if layer is not None:
        viewer.layers.remove(layer)


def _output(viewer: napari.Viewer, name: str, key: str) -> Layer | None:
    """Return the result layer of ``key`` named ``name``, if there is one."""
    for layer in viewer.layers:
        if layer.name == name and layer.metadata.get(SOURCE) == key:
            return layer
    return None
