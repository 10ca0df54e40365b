"""Applying a field to a layer for the Register widget's field panel.

Images and labels of the field's grid are warped (linear and nearest-neighbour
interpolation, in the engine, in a worker thread); points, shapes and tracks of the
moving image are moved onto the fixed image by the field's inverse. Each result replaces
an earlier one of the same layer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_warning

from napari_deepsim._layers.choices import SOURCE, spatial_data
from napari_deepsim._layers.points import FAR, moved_layer_data, moved_style
from napari_deepsim._widgets.controls import add_output, like, remove_outputs
from napari_deepsim._widgets.workers import error_message, start_worker

if TYPE_CHECKING:
    import napari

    from src_training.engine.public import FieldFile


def move_layer(viewer: napari.Viewer, layer: Layer, field_file: FieldFile) -> Layer:
    """Add a Points, Shapes or Tracks layer moved onto the fixed image by the field's inverse.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the moved layer goes (replacing an earlier one of the same layer).
    layer : Points, Shapes or Tracks
        Positions on the moving image.
    field_file : FieldFile
        The field, with its grid.

    Returns
    -------
    Layer
        The added ``"<layer> moved"``.
    """
    data, state, kind, far = moved_layer_data(layer, field_file)
    key = f"applied:{layer.unique_id}"
    remove_outputs(viewer, key)
    style = moved_style(layer, state)
    state = {**state, **style, "name": f"{layer.name} moved", "metadata": {SOURCE: key}}
    moved = viewer.add_layer(Layer.create(data, state, kind))
    if far:
        show_warning(
            f"{far} point(s) of {layer.name!r} could not be moved exactly (more than "
            f"{FAR} voxels off): the field folds there or they lie outside it."
        )
    return moved


def warp_layer(
    viewer: napari.Viewer,
    layer: Layer,
    field_file: FieldFile,
    grid: tuple[Any, Any] | None,
    done: Callable[[Layer], None] | None = None,
) -> Any:
    """Warp an Image or Labels layer of the field's grid in a worker, then add the result.

    The checks run here (a mistake is raised at once); the warping runs in a napari
    thread worker, so the viewer stays responsive for a stack or a volume, and the
    result is added on the GUI thread as ``"<layer> warped"``, replacing an earlier one.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the warped layer goes.
    layer : Image or Labels
        Of the field's grid (or, for a stack field, the stack).
    field_file : FieldFile
        The field.
    grid : tuple or None
        Scale and translate of the result (None: the layer's own).
    done : callable, optional
        Called with the added layer.

    Returns
    -------
    napari.qt.threading.GeneratorWorker
        The started worker.
    """
    job = _warp_job(layer, field_file)
    labels = job[2]

    def add(warped: Any) -> None:
        key = f"applied:{layer.unique_id}"
        remove_outputs(viewer, key)
        kind = "labels" if labels else "image"
        where = grid or (layer.scale, layer.translate)
        added = add_output(viewer, kind, warped, f"{layer.name} warped", key, where, **like(layer))
        if done is not None:
            done(added)

    def failed(err: BaseException) -> None:
        show_error(error_message(err, "Applying the field"))

    return start_worker(_warped, job, 1, f"Warping {layer.name}", add, failed, lambda: None)


def _warp_job(layer: Layer, field_file: FieldFile) -> tuple[Any, Any, bool, bool]:
    """Check that the field fits the layer; return its data, the field, labels?, stack?."""
    if not isinstance(layer, (Image, Labels)):
        raise ValueError(f"{layer.name!r} is not an Image, Labels, Points, Shapes or Tracks layer")
    data = spatial_data(layer, "target")
    field_ = field_file.displacement
    single = not field_file.stack and field_file.grid == data.shape
    stack = (
        field_file.stack and field_.shape[0] == data.shape[0] and field_file.grid == data.shape[1:]
    )
    if not (single or stack):
        shape = field_file.grid if not field_file.stack else (field_.shape[0], *field_file.grid)
        raise ValueError(
            f"the layer {layer.name!r} has shape {data.shape} but the field is defined on a "
            f"grid of shape {tuple(shape)}; apply it to a layer of the fixed image's shape"
        )
    return data, field_, isinstance(layer, Labels), not single


def _warped(job: tuple[Any, Any, bool, bool]) -> Generator[None, None, Any]:
    """Warp in the worker (one step for the progress bar): the engine's warp of a layer."""
    from src_training.engine.arrays import warp_with_field

    data, field_, labels, stack = job
    yield
    return warp_with_field(data, field_, labels=labels, stack=stack)
