"""What the widgets share on screen: layer, pair and device pickers, and result layers.

The pickers list the input layers of :func:`napari_deepsim._layers.choices.inputs`. Result
layers are added on the grid of the layer they belong to and tagged with
:data:`~napari_deepsim._layers.choices.SOURCE`, so they are never offered as inputs and a
new result replaces the old one; their styles (grid colour, Jacobian
colormap, fold colour) are the same in the Register and Compare widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, SpinBox
from napari.layers import Labels, Layer

from napari_deepsim._layers.choices import SOURCE, inputs
from napari_deepsim._widgets.tips import EXTRACTOR_FILE_TIP, FIXED_TIP, LABELS_TIP, MOVING_TIP
from src_training.engine.public import DEVICE_CHOICES, PRECISION_CHOICES

if TYPE_CHECKING:
    import napari

GRID_COLOR = "yellow"
JACOBIAN_STYLE: dict[str, Any] = {
    "colormap": "PiYG",
    "contrast_limits": (0.0, 2.0),
    "colorbar": True,
}
FOLDS_IMAGE: dict[str, Any] = {"colormap": "red", "blending": "additive", "contrast_limits": (0, 1)}


def layer_choices(
    viewer: napari.Viewer, kind: type[Layer] | tuple[type[Layer], ...]
) -> list[tuple[str, Layer]]:
    """Return the input layers of ``kind`` as ``(name, layer)`` choices of a picker.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    kind : type of Layer or tuple of them
        ``Image``, ``Labels`` or both.

    Returns
    -------
    list of (str, Layer)
        The choices, in layer order.
    """
    return [(layer.name, layer) for layer in inputs(viewer, kind)]


def pair_pickers(
    images: Callable[..., list[tuple[str, Layer]]],
    labels: Callable[..., list[tuple[str, Layer]]],
) -> tuple[ComboBox, ComboBox, ComboBox, ComboBox]:
    """Make the pickers of a registration pair.

    Parameters
    ----------
    images, labels : callable
        The choices of the image and of the labels pickers.

    Returns
    -------
    tuple of ComboBox
        ``fixed``, ``moving``, ``moving labels`` and ``fixed labels``, each nullable.
        Picking an image unselects its labels when they have another shape (a stack's
        labels left chosen after picking one of its frames would refuse the run).
    """
    fixed = ComboBox(label="fixed", choices=images, nullable=True, tooltip=FIXED_TIP)
    moving = ComboBox(label="moving", choices=images, nullable=True, tooltip=MOVING_TIP)
    moving_labels = ComboBox(
        label="moving labels", choices=labels, nullable=True, tooltip=LABELS_TIP
    )
    fixed_labels = ComboBox(label="fixed labels", choices=labels, nullable=True, tooltip=LABELS_TIP)
    for image, its_labels in ((fixed, fixed_labels), (moving, moving_labels)):
        image.changed.connect(partial(_drop_other_shapes, image, its_labels))
    return fixed, moving, moving_labels, fixed_labels


def _drop_other_shapes(image: ComboBox, labels: ComboBox, *_args: object) -> None:
    """Unselect ``labels`` when they no longer have the shape of the picked image."""
    picked, chosen = image.value, labels.value
    if picked is not None and chosen is not None and chosen.data.shape != picked.data.shape:
        labels.value = None


def extractor_pickers(
    choices: Callable[..., list[tuple[str, Any]]], tooltip: str
) -> tuple[ComboBox, FileEdit]:
    """Make the feature-extractor pickers: one the viewer knows, or a file.

    Parameters
    ----------
    choices : callable
        The extractors to offer.
    tooltip : str
        What the picker offers, for its tooltip.

    Returns
    -------
    tuple
        The ``feature extractor`` picker (nullable) and the ``or extractor file`` field.
    """
    picker = ComboBox(label="feature extractor", choices=choices, nullable=True, tooltip=tooltip)
    file = FileEdit(
        label="or extractor file",
        mode="r",
        filter="Model files (*.pt *.pth)",
        tooltip=EXTRACTOR_FILE_TIP,
    )
    return picker, file


def device_picker() -> ComboBox:
    """Make the device picker (``auto`` picks a GPU when there is one).

    Returns
    -------
    ComboBox
        The picker.
    """
    return ComboBox(
        label="device",
        choices=list(DEVICE_CHOICES),
        value="auto",
        tooltip="Where the network runs: auto takes a GPU (cuda or mps) when there is one, "
        "else the cpu",
    )


def precision_picker() -> ComboBox:
    """Make the precision picker (``auto``: bfloat16 on a GPU that has it, else float32).

    Returns
    -------
    ComboBox
        The picker.
    """
    picker = ComboBox(label="precision", choices=list(PRECISION_CHOICES), value="auto")
    picker.tooltip = "bf16/fp16 run the network in half precision: faster on GPUs"
    return picker


def spacing_picker() -> SpinBox:
    """Make the picker of the deformation grid's spacing in pixels.

    Returns
    -------
    SpinBox
        The picker.
    """
    return SpinBox(
        label="grid spacing",
        value=16,
        min=2,
        max=512,
        tooltip="Distance between the lines of the deformation grid, in pixels of the fixed layer",
    )


def like(layer: Layer) -> dict[str, Any]:
    """Return the style that makes a warped copy of ``layer`` look like it.

    Parameters
    ----------
    layer : Image or Labels
        The source layer.

    Returns
    -------
    dict
        Its opacity (labels), or its colormap and contrast limits (images).
    """
    if isinstance(layer, Labels):
        return {"opacity": layer.opacity}
    return {"colormap": layer.colormap, "contrast_limits": layer.contrast_limits}


def grid_style(color: str) -> dict[str, Any]:
    """Return the style of a deformation grid image (warped lines) drawn in ``color``.

    Parameters
    ----------
    color : str
        A napari colormap name (a colour's name).

    Returns
    -------
    dict
        An additive image of that colour, 0 transparent; a line at full colour even
        where it falls between two pixels (each then holds half of it).
    """
    return {"colormap": color, "blending": "additive", "contrast_limits": (0.0, 0.5)}


def add_output(
    viewer: napari.Viewer,
    kind: str,
    data: Any,
    name: str,
    key: str,
    grid: tuple[Any, Any],
    *,
    colorbar: bool = False,
    **style: Any,
) -> Layer:
    """Add a result layer tagged with ``key`` as its :data:`SOURCE`.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    kind : str
        ``image``, ``labels``, ``shapes`` or ``vectors``.
    data : object
        The layer data.
    name : str
        The layer name.
    key : str
        What the layer is a result of; :func:`remove_outputs` removes by it.
    grid : (scale, translate)
        Where the layer lies in world coordinates.
    colorbar : bool
        Show the image layer's colour bar (its range and colours) on the canvas while the
        layer is visible. A hidden layer gets it when first shown: napari builds a colour
        bar's visual at once, which would double the time the layer takes to add.
    **style
        Further keyword arguments of ``viewer.add_<kind>``.

    Returns
    -------
    Layer
        The added layer.
    """
    adder: Callable[..., Layer] = getattr(viewer, f"add_{kind}")
    scale, translate = grid
    layer = adder(
        data, name=name, scale=scale, translate=translate, metadata={SOURCE: key}, **style
    )
    if colorbar and layer.visible:
        layer.colorbar.visible = True
    elif colorbar:
        _colorbar_when_shown(layer)
    return layer


def _colorbar_when_shown(layer: Layer) -> None:
    """Show a hidden layer's colour bar the first time the layer is shown."""

    def shown(*_args: Any) -> None:
        if layer.visible:
            layer.events.visible.disconnect(shown)
            layer.colorbar.visible = True

    layer.events.visible.connect(shown)


def remove_outputs(viewer: napari.Viewer, key: str, *, prefix: bool = False) -> None:
    """Remove the result layers of ``key`` (or of every key starting with it).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    key : str
        The :data:`SOURCE` of the layers to remove.
    prefix : bool
        Remove every layer whose source starts with ``key``.
    """
    for layer in list(viewer.layers):
        source = str(layer.metadata.get(SOURCE, ""))
        if source == key or (prefix and source.startswith(key)):
            viewer.layers.remove(layer)
