"""Layer choices shared by the widgets: which layers are inputs, and sensible defaults.

Output layers of the plugin carry :data:`SOURCE` in their metadata and are never
offered as inputs. The ``guess_*`` functions preselect what a user would pick: layers
named like the built-in samples first, otherwise by order and by matching shapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_info

if TYPE_CHECKING:
    import napari

SOURCE = "deepsim_source"  # metadata key tying an output layer to the layer it came from
# a lazy (dask, Zarr) layer larger than this is not read whole: it would stall the viewer
LAZY_LIMIT = 2**30
BIG_STACK = "the Big stack dock (Plugins > DeepSim registration > Big stack)"


def inputs(viewer: napari.Viewer, kind: type[Layer] | tuple[type[Layer], ...]) -> list[Layer]:
    """Return the layers of ``kind`` that are not outputs of this plugin."""
    return [
        layer for layer in viewer.layers if isinstance(layer, kind) and SOURCE not in layer.metadata
    ]


def spatial_data(layer: Layer, what: str) -> np.ndarray:
    """Return a layer's data as a NumPy array, refusing what a model cannot read.

    Parameters
    ----------
    layer : Layer
        An Image or Labels layer.
    what : str
        Its role, for the message (``"fixed"``, ``"moving"``, ...).

    Returns
    -------
    numpy.ndarray
        The 2D or 3D data.
    """
    if getattr(layer, "multiscale", False):
        raise ValueError(
            f"the {what} layer {layer.name!r} is multiscale; register its frames at one of its "
            f"levels with {BIG_STACK}, or open a single-scale layer"
        )
    size = int(np.prod(layer.data.shape)) * np.dtype(layer.data.dtype).itemsize
    if not isinstance(layer.data, np.ndarray) and size > LAZY_LIMIT:
        raise ValueError(
            f"the {what} layer {layer.name!r} is read lazily and holds {size / 2**30:.1f} GiB; "
            f"register it frame by frame into a store with {BIG_STACK}"
        )
    if getattr(layer, "rgb", False):
        raise ValueError(
            f"the {what} layer {layer.name!r} is RGB; split its channels (right-click the "
            "layer in the layer list > Split RGB) and register one channel"
        )
    data = np.asarray(layer.data)
    if data.ndim not in (2, 3):
        raise ValueError(
            f"the {what} layer {layer.name!r} is {data.ndim}D; a registration model needs 2D, "
            "3D or 2D+t layers"
        )
    if np.issubdtype(data.dtype, np.inexact) and not np.isfinite(data).all():
        raise ValueError(
            f"the {what} layer {layer.name!r} contains NaN or inf values; replace them (e.g. "
            "with 0) first"
        )
    return data


def labels_data(layer: Layer | None, what: str) -> np.ndarray | None:
    """Return a Labels layer's data, refusing non-integer label maps.

    Parameters
    ----------
    layer : Layer or None
        The chosen labels layer, if any.
    what : str
        Its role, for the message.

    Returns
    -------
    numpy.ndarray or None
        The label ids.
    """
    if layer is None:
        return None
    data = np.asarray(layer.data)
    if not np.issubdtype(data.dtype, np.integer) and data.dtype != bool:
        raise ValueError(f"the {what} labels {layer.name!r} are not integer label ids")
    return data


def pair_arrays(
    fixed: Layer | None,
    moving: Layer | None,
    fixed_labels: Layer | None,
    moving_labels: Layer | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read a chosen pair and its optional labels, refusing what cannot be registered.

    Parameters
    ----------
    fixed, moving : Layer or None
        The chosen image layers.
    fixed_labels, moving_labels : Layer or None
        Their label maps; the moving labels may have either image's shape.

    Returns
    -------
    tuple of numpy.ndarray
        Fixed, moving, fixed labels (or None) and moving labels (or None).
    """
    if fixed is None or moving is None:
        raise ValueError("choose a fixed and a moving image layer first")
    fixed_data = spatial_data(fixed, "fixed")
    moving_data = spatial_data(moving, "moving")
    if fixed_data.ndim != moving_data.ndim:
        raise ValueError(
            f"the fixed layer {fixed.name!r} is {fixed_data.ndim}D but the moving layer "
            f"{moving.name!r} is {moving_data.ndim}D; choose layers of one dimensionality"
        )
    moving_ids = labels_data(moving_labels, "moving")
    if moving_ids is not None and moving_ids.shape not in (moving_data.shape, fixed_data.shape):
        raise ValueError(
            f"the moving labels {moving_labels.name!r} have shape {moving_ids.shape} but the "
            f"moving image {moving_data.shape}; choose its labels"
        )
    fixed_ids = labels_data(fixed_labels, "fixed")
    if fixed_ids is not None and fixed_ids.shape != fixed_data.shape:
        raise ValueError(
            f"the fixed labels {fixed_labels.name!r} have shape {fixed_ids.shape} but the "
            f"fixed image {fixed_data.shape}; choose its labels"
        )
    return fixed_data, moving_data, fixed_ids, moving_ids


def on_fixed_grid(
    fixed: Layer,
    moving: Layer,
    shape: tuple[int, ...],
    moving_data: np.ndarray,
    moving_labels: np.ndarray | None,
    extras: list[tuple[np.ndarray, bool]],
) -> tuple[np.ndarray, np.ndarray | None, list[tuple[np.ndarray, bool]]]:
    """Resample the moving layer's arrays onto the fixed layer's grid in world coordinates.

    napari places a layer by its scale and translate; registering the pixels as they
    are would stretch a moving layer of another size or scale onto the fixed one. Here
    each array of the moving layer's shape is resampled where the fixed layer's pixels
    lie in the world (0 outside the moving layer), and a notification says so.

    Parameters
    ----------
    fixed, moving : Layer
        The pair (different layers).
    shape : tuple of int
        The fixed layer's data shape.
    moving_data : numpy.ndarray
        The moving image.
    moving_labels : numpy.ndarray or None
        Its labels (resampled when they have its shape).
    extras : list of (numpy.ndarray, bool)
        Layers carried along and whether each is labels.

    Returns
    -------
    moving_data, moving_labels, extras
        On the fixed grid where they were on the moving one.
    """
    from src_training.engine.public import resample_onto

    own = tuple(np.shape(moving.data))
    fixed_scale, moving_scale = np.asarray(fixed.scale, float), np.asarray(moving.scale, float)
    fixed_at, moving_at = np.asarray(fixed.translate, float), np.asarray(moving.translate, float)
    if own == shape and np.allclose(fixed_scale, moving_scale) and np.allclose(fixed_at, moving_at):
        return moving_data, moving_labels, extras
    step, offset = fixed_scale / moving_scale, (fixed_at - moving_at) / moving_scale

    def onto(array: Any, labels: bool) -> Any:
        if array is None or array.shape != own:
            return array
        return resample_onto(array, shape, step, offset, 0 if labels else 1)

    show_info(
        f"The moving layer {moving.name!r} {own} (scale {_numbers(moving_scale)}, translate "
        f"{_numbers(moving_at)}) lies on another grid than the fixed layer {fixed.name!r} "
        f"{shape} (scale {_numbers(fixed_scale)}, translate {_numbers(fixed_at)}); it was "
        "resampled onto the fixed grid where napari shows it (0 outside it)."
    )
    moved = [(onto(data, labels), labels) for data, labels in extras]
    return onto(moving_data, False), onto(moving_labels, True), moved


def _numbers(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def partner(image: Layer | None, labels: Iterable[Layer], taken: Iterable[Layer] = ()) -> Any:
    """Find an image's labels: ``"<name> labels"``, else the first free one of its shape.

    Parameters
    ----------
    image : Layer or None
        The image layer.
    labels : iterable of Layer
        Candidate Labels layers.
    taken : iterable of Layer
        Layers already chosen for something else.

    Returns
    -------
    Layer or None
        The matching labels layer.
    """
    if image is None:
        return None
    taken_ids = {id(layer) for layer in taken}
    free = [layer for layer in labels if id(layer) not in taken_ids]
    for layer in free:
        if layer.name == f"{image.name} labels":
            return layer
    shape = np.shape(image.data)
    return next((layer for layer in free if np.shape(layer.data) == shape), None)


def guess_pair(viewer: napari.Viewer) -> dict[str, Layer | None]:
    """Preselect fixed, moving and their labels.

    Layers named ``fixed`` and ``moving`` win; otherwise the first two images in layer
    order. Each image gets the labels named after it, or the first free labels layer of
    its shape.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.

    Returns
    -------
    dict
        ``fixed``, ``moving``, ``fixed_labels`` and ``moving_labels`` (None when there
        is nothing sensible).
    """
    images = inputs(viewer, Image)
    labels = inputs(viewer, Labels)
    named = {layer.name: layer for layer in images}
    fixed = named.get("fixed", images[0] if images else None)
    others = [layer for layer in images if layer is not fixed]
    moving = named.get("moving", others[0] if others else None)
    fixed_labels = partner(fixed, labels)
    moving_labels = partner(moving, labels, [fixed_labels] if fixed_labels else [])
    return {
        "fixed": fixed,
        "moving": moving,
        "fixed_labels": fixed_labels,
        "moving_labels": moving_labels,
    }


def guess_training(viewer: napari.Viewer, stack: bool) -> Layer | None:
    """Preselect a training image: one with labels first, then one with several frames.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    stack : bool
        Only consider layers of more than two dimensions (stacks of frames, for
        registration training).

    Returns
    -------
    Layer or None
        The guess; its labels are ``partner(image, ...)``.
    """
    labels = inputs(viewer, Labels)
    images = [
        layer for layer in inputs(viewer, Image) if not (stack and layer.ndim < 3) and not layer.rgb
    ]
    ranked = sorted(images, key=lambda layer: (partner(layer, labels) is None, layer.ndim < 3))
    return ranked[0] if ranked else None
