"""The pair section of the Register widget: what is registered onto what.

:class:`PairPanel` owns the fixed and moving pickers and their labels, the reference
frame of a stack (shown only when fixed and moving are one 2D+t layer) and the layers
carried along with the field (those of the moving layer's shape).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Select
from napari.layers import Image, Labels, Layer

from napari_deepsim._layers.choices import guess_pair
from napari_deepsim._widgets.controls import layer_choices, pair_pickers

if TYPE_CHECKING:
    import napari


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
        self.extras = Select(label="carry along", choices=self._extras)
        self.extras.tooltip = "Layers of the moving layer's shape warped with the same field"
        self.extras.native.setMaximumHeight(80)
        self.pickers = (self.fixed, self.moving, self.moving_labels, self.fixed_labels)
        for chooser in self.pickers:
            chooser.changed.connect(self._inputs_changed)
        labels = [self.moving_labels, self.fixed_labels]
        self.widgets = [self.fixed, self.moving, self.reference, *labels, self.extras]

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
