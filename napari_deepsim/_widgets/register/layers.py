"""The Register widget's result layers: the warped data, overlays and the live preview.

Everything here runs on the GUI thread with arrays the worker computed (the grid, folds
and vectors included), so it only adds or updates layers, one per step
(:func:`result_steps`; the widget runs one step per turn of the event loop). Result
layers are tagged with the moving layer's id (see
:func:`~napari_deepsim._widgets.controls.add_output`), so a new result replaces the old one:
a layer of the same name and kind gets the new data in place (napari collects garbage
each time it removes a layer, which can take most of a second), the live preview
becomes the warped image, and only layers that have no successor are removed. With
"keep previous results" the old layers stay and the new ones are numbered.

Layers that draw fast: the grid is an image of the warped lines (a Shapes layer of
hundreds of paths took seconds to triangulate), 2D folds an additive red image (a
Labels layer took seconds to add), a volume's folds red points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox
from napari.layers import Labels, Layer

from napari_deepsim._layers.choices import SOURCE
from napari_deepsim._widgets.controls import (
    FOLDS_IMAGE,
    GRID_COLOR,
    JACOBIAN_STYLE,
    add_output,
    grid_style,
    like,
)
from napari_deepsim._widgets.outputs import LayerPlan, update_layer, vector_scale
from napari_deepsim._widgets.tips import CHECKER_TIP, GRID_TIP, JACOBIAN_TIP, VECTORS_TIP

FOLD_POINTS: dict[str, Any] = {"face_color": "red", "border_width": 0, "size": 3}

if TYPE_CHECKING:
    import napari

    from napari_deepsim._jobs.job import Result
    from napari_deepsim._state.run import RunContext


def output_choices() -> tuple[CheckBox, ...]:
    """Make the checkboxes of the overlays a run shows, and of keeping the last results.

    Returns
    -------
    tuple of CheckBox
        Deformation grid, Jacobian and folds, displacement vectors, checkerboard, and
        keep previous results.
    """
    keep = CheckBox(text="keep previous results", value=False)
    keep.tooltip = (
        "Keep the layers of the last run of this moving layer; the new ones are numbered "
        "(moving warped #2). Unticked, a run replaces them."
    )
    return (
        CheckBox(text="deformation grid", value=True, tooltip=GRID_TIP),
        CheckBox(text="Jacobian and folds", value=True, tooltip=JACOBIAN_TIP),
        CheckBox(text="displacement vectors", value=False, tooltip=VECTORS_TIP),
        CheckBox(text="checkerboard", value=True, tooltip=CHECKER_TIP),
        keep,
    )


def result_steps(
    viewer: napari.Viewer, context: RunContext, result: Result
) -> list[Callable[[], None]]:
    """Plan the layer changes of a new result: one step per layer, run on the GUI thread.

    Each step adds, updates or removes one layer, so that the caller can run them one
    per turn of the event loop and the window never freezes for more than one layer.
    The moving layer's previous result layers are replaced (updated in place when they
    can take the new data); with ``context.keep`` they stay and the new layers get
    the next free run number (``moving warped #2``).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    context : RunContext
        The layers of the run (``fixed``, ``moving``, ``moving_labels``, ``extras``),
        whether the Jacobian was asked for (``jacobian``) and whether to keep the
        previous results (``keep``).
    result : Result
        What the worker computed (every overlay already drawn).

    Returns
    -------
    list of callable
        The steps, in order.
    """
    fixed, moving = context.fixed, context.moving
    key, suffix = result_key(viewer, moving, context.keep)
    grid = (fixed.scale, fixed.translate)
    old = {layer.name: layer for layer in viewer.layers if layer.metadata.get(SOURCE) == key}
    preview = _output(viewer, f"{moving.name} preview", str(moving.unique_id))
    stale = [preview] if preview is not None and suffix else []  # kept runs get new layers
    if preview is not None and not suffix:  # it becomes the warped image
        warped_name = f"{moving.name} warped{suffix}"
        stale = (
            [old.pop(warped_name)] if warped_name in old and old[warped_name] is not preview else []
        )
        old.pop(preview.name, None)
        old[warped_name] = preview
    plan = LayerPlan(viewer, key, grid, suffix, old)
    plane = _plane(result, viewer, grid)  # a volume's slice overlays: a plane in 3D
    _data_layers(plan, context, result, plane)
    _overlay_layers(plan, moving.name, result, context.jacobian, plane)
    return plan.finish(stale)


def _data_layers(
    plan: LayerPlan, context: RunContext, result: Result, plane: dict[str, Any]
) -> None:
    """Plan the warped image, its grid, the warped labels and the layers carried along."""
    moving = context.moving
    plan.add("image", result.warped, f"{moving.name} warped", **like(moving))
    if result.grid is not None:
        plan.add("image", result.grid, f"{moving.name} grid", **grid_style(GRID_COLOR), **plane)
    if result.warped_labels is not None:
        labels = context.moving_labels
        plan.add("labels", result.warped_labels, f"{labels.name} warped", **like(labels))
    for source, data in zip(context.extras, result.extras, strict=True):
        if isinstance(source, Labels):
            plan.add("labels", data, f"{source.name} warped", **like(source))
        else:
            style = {**like(source), "blending": source.blending}
            plan.add("image", data, f"{source.name} warped", **style)


def _overlay_layers(
    plan: LayerPlan, name: str, result: Result, jacobian: bool, plane: dict[str, Any]
) -> None:
    """Plan the folds, the Jacobian, the checkerboard and the displacement vectors."""
    if jacobian:
        if result.fold_points is not None:
            plan.add("points", result.fold_points, f"{name} folds", **FOLD_POINTS)
        else:
            plan.add("image", result.folds, f"{name} folds", **FOLDS_IMAGE)
        style = {**JACOBIAN_STYLE, **plane, "visible": False}
        plan.add("image", result.jacobian, f"{name} Jacobian", **style)
    if result.checkerboard is not None:
        checker = {"colormap": "gray", "contrast_limits": (0.0, 1.0), "visible": False}
        plan.add("image", result.checkerboard, f"{name} checkerboard", **checker)
    if result.vectors is not None:
        factor = vector_scale(result.vectors)  # the name says how much arrows are lengthened
        label = f"{name} displacement" + (f" ×{factor:g}" if factor != 1 else "")
        arrows = {"edge_color": "cyan", "edge_width": 0.5, "length": factor}
        plan.add("vectors", result.vectors, label, **arrows)


def _plane(result: Result, viewer: napari.Viewer, grid: tuple[Any, Any]) -> dict[str, Any]:
    """Show a volume's grid and Jacobian as one slice in the 3D view (not a solid block).

    The plane lies across the first axis at the slice the 2D view shows when the result
    arrives (shift-drag moves it in 3D); a pair of 2D images or a stack's frames need none.
    """
    if result.fold_points is None:
        return {}
    shape = result.jacobian.shape
    (scale, *_), (translate, *_) = grid
    shown = (viewer.dims.point[-len(shape)] - translate) / scale  # in the volume's voxels
    position = [float(np.clip(round(shown), 0, shape[0] - 1))]
    position += [(n - 1) / 2 for n in shape[1:]]
    return {"depiction": "plane", "plane": {"position": position, "normal": (1, 0, 0)}}


def result_key(viewer: napari.Viewer, moving: Layer, keep: bool) -> tuple[str, str]:
    """Return the source key and the name suffix of a run's result layers.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    moving : Layer
        The moving layer.
    keep : bool
        Keep the previous results: the next run number free among the layers.

    Returns
    -------
    key, suffix : str
        The moving layer's id and ``""``, or with ``" #n"`` appended to both.
    """
    key = str(moving.unique_id)
    if not keep:
        return key, ""
    taken = {str(layer.metadata.get(SOURCE, "")) for layer in viewer.layers}
    number = 2
    while f"{key} #{number}" in taken:
        number += 1
    return f"{key} #{number}", f" #{number}"


def show_preview(viewer: napari.Viewer, context: RunContext, preview: np.ndarray) -> None:
    """Show the moving image warped by the best transformation of the last level.

    The preview lies on a pyramid level's grid, corner-aligned with the fixed layer, so
    its pixels are larger; the final result layers replace it.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    context : RunContext
        The layers of the run (``fixed``, ``moving``) and whether the last results are
        kept (``keep``).
    preview : numpy.ndarray
        The warped moving image (normalised) on the level's grid.
    """
    fixed, moving = context.fixed, context.moving
    name = f"{moving.name} preview"
    full = np.asarray(fixed.data.shape, float)
    level = np.asarray(preview.shape, float)
    scale = np.asarray(fixed.scale) * (full - 1) / np.maximum(level - 1, 1)
    key = str(moving.unique_id)
    style = {"colormap": "gray", "contrast_limits": (0.0, 1.0)}
    layer = _output(viewer, name, key)
    if layer is None and not context.keep:  # kept results stay as they are
        layer = _output(viewer, f"{moving.name} warped", key)
    if layer is not None:  # the last preview, or the last result's warped image
        update_layer(layer, preview, name, (scale, fixed.translate), style)
        return
    add_output(viewer, "image", preview, name, key, (scale, fixed.translate), **style)


def remove_preview(viewer: napari.Viewer, context: RunContext) -> None:
    """Remove the live preview of a run that ended without a result.

    The preview took over the last result's warped image, if there was one, so that
    layer goes too rather than show the preview's data under its old name.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    context : RunContext
        The layers of the run (``moving``).
    """
    moving = context.moving
    layer = _output(viewer, f"{moving.name} preview", str(moving.unique_id))
    if layer is not None:
        viewer.layers.remove(layer)


def _output(viewer: napari.Viewer, name: str, key: str) -> Layer | None:
    """Return the result layer of ``key`` named ``name``, if there is one."""
    for layer in viewer.layers:
        if layer.name == name and layer.metadata.get(SOURCE) == key:
            return layer
    return None
