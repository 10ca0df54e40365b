"""The pair section of the Register widget: what is registered onto what.

:class:`PairPanel` owns the fixed and moving pickers and their labels, the reference
frame of a stack (shown only when fixed and moving are one 2D+t layer) and the layers
carried along with the field (those of the moving layer's shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, PushButton, Select
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info

from napari_deepsim._layers.choices import guess_pair, on_fixed_grid, pair_arrays
from napari_deepsim._layers.placement import align_centres
from napari_deepsim._widgets.controls import layer_choices, pair_pickers

if TYPE_CHECKING:
    import napari


@dataclass
class PairData:
    """The chosen layers read as arrays, the moving side on the fixed grid.

    Attributes
    ----------
    fixed, moving : numpy.ndarray
        The images (of a stack: the same array).
    fixed_labels, moving_labels : numpy.ndarray or None
        Their labels.
    extras : list of (numpy.ndarray, bool)
        The layers carried along, each with whether it holds labels.
    stack : bool
        Fixed and moving are one 2D+t layer.
    as_given : numpy.ndarray or None
        The moving image as the layer holds it, when it was placed on the fixed grid.
    """

    fixed: np.ndarray
    moving: np.ndarray
    fixed_labels: np.ndarray | None
    moving_labels: np.ndarray | None
    extras: list[tuple[np.ndarray, bool]]
    stack: bool
    as_given: np.ndarray | None


class PairPanel:
    """Choose the fixed and moving layers, their labels, a stack's reference and extras.

    The panel owns its pickers (``widgets``, laid out by the widget) and keeps the
    reference and extras pickers in step with the pair.

    Parameters
    ----------
    viewer : napari.Viewer
        Whose layers are offered.
    """

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer
        self.fixed, self.moving, self.moving_labels, self.fixed_labels = pair_pickers(
            self._images, self._labels
        )
        self.reference = ComboBox(label="stack reference", choices=self._references)
        self.reference.tooltip = (
            "Fixed and moving are the same 2D+t stack: register every frame to this frame, or "
            "each frame to the previous one (fields composed, all aligned to frame 0)"
        )
        self.centre = PushButton(text="Align centres")
        self.centre.tooltip = (
            "Move the moving layer (and the layers on its grid) so that its centre lies on "
            "the fixed layer's: the usual start when two volumes' headers do not place them "
            "relative to each other (e.g. MR and ultrasound), as deepsim register does"
        )
        self.centre.changed.connect(self.align_centres)
        self.extras = Select(label="carry along", choices=self._extras)
        self.extras.tooltip = "Layers of the moving layer's shape warped with the same field"
        self.extras.native.setMaximumHeight(80)
        self.pickers = (self.fixed, self.moving, self.moving_labels, self.fixed_labels)
        for chooser in self.pickers:
            chooser.changed.connect(self._inputs_changed)
        labels = [self.moving_labels, self.fixed_labels]
        self.widgets = [self.fixed, self.moving, self.reference, self.centre, *labels]
        self.widgets.append(self.extras)

    def _images(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Image)

    def _labels(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Labels)

    def _extras(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        moving = self.moving.value
        if moving is None:
            return []
        chosen = {id(w.value) for w in self.pickers}
        return [
            (name, layer)
            for name, layer in layer_choices(self.viewer, (Image, Labels))
            if id(layer) not in chosen and np.shape(layer.data) == np.shape(moving.data)
        ]

    def _references(self, _widget: Any = None) -> list[tuple[str, int | str]]:
        fixed = self.fixed.value
        frames = fixed.data.shape[0] if fixed is not None and fixed.ndim == 3 else 0
        return [("previous frame", "previous")] + [(f"frame {t}", t) for t in range(frames)]

    def guess(self) -> None:
        """Preselect the fixed and moving layers and their labels (see ``guess_pair``)."""
        for name, layer in guess_pair(self.viewer).items():
            if layer is not None:
                getattr(self, name).value = layer

    def _inputs_changed(self, *_args: Any) -> None:
        self.extras.reset_choices()
        self.reference.reset_choices()
        self.update_reference_visibility()

    def update_reference_visibility(self) -> None:
        """Show the reference picker only when fixed and moving are one 2D+t stack."""
        fixed = self.fixed.value
        self.reference.visible = (
            fixed is not None and fixed is self.moving.value and fixed.ndim == 3
        )
        self.centre.visible = fixed is not None and fixed is not self.moving.value

    def align_centres(self, *_args: Any) -> None:
        """Shift the moving layer so that its centre lies on the fixed layer's, and say so."""
        fixed, moving = self.fixed.value, self.moving.value
        if fixed is None or moving is None:
            show_error("Choose a fixed and a moving layer first, then press Align centres.")
            return
        try:
            shift, moved = align_centres(self.viewer, fixed, moving)
        except ValueError as err:
            show_error(f"Cannot align centres: {err}.")
            return
        if not moved:
            show_info(f"{moving.name!r} is already centred on {fixed.name!r}.")
            return
        text = ", ".join(f"{value:g}" for value in shift)
        show_info(
            f"Moved {', '.join(repr(name) for name in moved)} by ({text}) in world units so "
            f"that its centre lies on {fixed.name!r}'s; registration starts from there."
        )

    def read(self) -> PairData:
        """Read the chosen layers, refusing what cannot be registered (one clear error).

        Returns
        -------
        PairData
            The arrays; a moving layer of its own where napari shows it, on the fixed grid.
        """
        fixed_layer, moving_layer = self.fixed.value, self.moving.value
        fixed, moving, fixed_labels, moving_labels = pair_arrays(
            fixed_layer, moving_layer, self.fixed_labels.value, self.moving_labels.value
        )
        extras = [(np.asarray(lay.data), isinstance(lay, Labels)) for lay in self.extras.value]
        if any(data.shape != moving.shape for data, _ in extras):
            raise ValueError("every layer to carry along must have the moving layer's shape")
        stack, as_given = fixed_layer is moving_layer, None
        if not stack:  # the moving side where napari shows it, on the fixed grid
            as_given = moving
            moving, moving_labels, extras = on_fixed_grid(
                fixed_layer, moving_layer, fixed.shape, moving, moving_labels, extras
            )
        as_given = None if moving is as_given else as_given
        return PairData(fixed, moving, fixed_labels, moving_labels, extras, stack, as_given)
