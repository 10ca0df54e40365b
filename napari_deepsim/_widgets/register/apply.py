"""Applying a field to a layer for the Register widget's field panel.

Images and labels of the field's grid are warped (linear and nearest-neighbour
interpolation, in the engine); points, shapes and tracks of the moving image are moved
onto the fixed image by the field's inverse. Each result replaces an earlier one of the
same layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_warning

from napari_deepsim._layers.choices import SOURCE, spatial_data
from napari_deepsim._layers.points import FAR, moved_layer_data, moved_style
from napari_deepsim._widgets.controls import add_output, like, remove_outputs

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
    viewer: napari.Viewer, layer: Layer, field_file: FieldFile, grid: tuple[Any, Any] | None
) -> Layer:
    """Add an Image or Labels layer of the field's grid warped by the field.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the warped layer goes (replacing an earlier one of the same layer).
    layer : Image or Labels
        Of the field's grid (or, for a stack field, the stack).
    field_file : FieldFile
        The field.
    grid : tuple or None
        Scale and translate of the result (None: the layer's own).

    Returns
    -------
    Layer
        The added ``"<layer> warped"``.
    """
    from src_training.engine.arrays import warp_with_field

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
    labels = isinstance(layer, Labels)
    warped = warp_with_field(data, field_, labels=labels, stack=not single)
    key = f"applied:{layer.unique_id}"
    remove_outputs(viewer, key)
    kind = "labels" if isinstance(layer, Labels) else "image"
    return add_output(
        viewer,
        kind,
        warped,
        f"{layer.name} warped",
        key,
        grid or (layer.scale, layer.translate),
        **like(layer),
    )
