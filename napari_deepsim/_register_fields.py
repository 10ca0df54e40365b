"""The displacement-field section of the Register widget: save, load and apply a field.

:class:`FieldActions` is mixed into
:class:`~napari_deepsim._register_widget.RegisterWidget`, which sets ``_field`` (and
the fixed layer's grid, ``_field_transform``) after every registration. A field can
be saved as ``.npy``, loaded from one, and applied to any Image or Labels layer of its
grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog

from napari_deepsim._choices import spatial_data
from napari_deepsim._controls import add_output, layer_choices, like, remove_outputs
from napari_deepsim._register_job import warp_data
from napari_deepsim._workers import error_message

if TYPE_CHECKING:
    import napari
    import numpy as np
    from qtpy.QtWidgets import QLabel


class FieldActions:
    """Save, load and apply the Register widget's current displacement field.

    The widget provides ``viewer`` and the ``results`` label, and keeps ``_field`` and
    ``_field_transform`` (the fixed layer's scale and translate, None for a loaded file).
    """

    viewer: napari.Viewer
    results: QLabel
    _field: np.ndarray | None
    _field_transform: tuple[np.ndarray, np.ndarray] | None

    def _field_controls(self) -> Container:
        """Make the Save, Load and Apply buttons and the layer to apply the field to."""
        self.save_button = PushButton(text="Save field…")
        self.load_button = PushButton(text="Load field…")
        self.apply_target = ComboBox(label="apply to", choices=self._apply_targets, nullable=True)
        self.apply_button = PushButton(text="Apply field to layer")
        self.save_button.changed.connect(self._save_clicked)
        self.load_button.changed.connect(self._load_clicked)
        self.apply_button.changed.connect(self._apply_clicked)
        return Container(
            widgets=[self.save_button, self.load_button, self.apply_target, self.apply_button]
        )

    def _apply_targets(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, (Image, Labels))

    @property
    def field(self) -> np.ndarray | None:
        """The current displacement field: of the last registration or a loaded file."""
        return self._field

    def save_field(self, path: str | Path) -> str | None:
        """Save the current displacement field as ``.npy`` (float32).

        Parameters
        ----------
        path : str or Path
            Destination file.

        Returns
        -------
        str or None
            The written path, or None when there was nothing to save or it failed.
        """
        from napari_deepsim._io import save_displacement

        if self._field is None:
            show_error("There is no displacement field yet; press Register or load a field.")
            return None
        try:
            return save_displacement(path, self._field)
        except (OSError, ValueError) as err:
            show_error(error_message(err, "Saving the field"))
            return None

    def load_field(self, path: str | Path) -> np.ndarray | None:
        """Load a displacement field saved as ``.npy`` to apply it to layers.

        Parameters
        ----------
        path : str or Path
            A ``(2, H, W)``, ``(3, D, H, W)`` or stack ``(T, 2, H, W)`` float ``.npy`` file.

        Returns
        -------
        numpy.ndarray or None
            The field, or None when the file could not be used.
        """
        from napari_deepsim._io import load_displacement

        try:
            self._field = load_displacement(path, allow_stack=True)
        except ValueError as err:
            show_error(error_message(err, "Loading the field"))
            return None
        self._field_transform = None
        self.results.setText(f"loaded field {Path(path).name} {self._field.shape}")
        return self._field

    def apply_field(self, layer: Layer) -> Layer | None:
        """Warp an Image or Labels layer of the fixed grid with the current field.

        Images use linear and labels nearest-neighbour interpolation; the result is
        added as ``"<layer> warped"`` and replaces an earlier one.

        Parameters
        ----------
        layer : Image or Labels
            A layer whose shape is the field's grid (or, for a stack field, the stack).

        Returns
        -------
        Layer or None
            The added layer, or None when the field cannot be applied.
        """
        try:
            return self._apply_field(layer)
        except ValueError as err:
            show_error(error_message(err, "Applying the field"))
            return None

    def _apply_field(self, layer: Layer) -> Layer:
        import torch

        from napari_deepsim._io import is_displacement

        if self._field is None:
            raise ValueError("there is no displacement field yet; press Register or load a field")
        if not isinstance(layer, (Image, Labels)):
            raise ValueError(f"{layer.name!r} is not an Image or Labels layer")
        data = spatial_data(layer, "target")
        field_ = self._field
        single = field_.shape[1:] == data.shape and is_displacement(field_.shape, field_.dtype)
        stack = (
            field_.ndim == 4
            and field_.shape[0] == data.shape[0]
            and (field_.shape[2:] == data.shape[1:] and field_.shape[1] == data.ndim - 1)
        )
        if not (single or stack):
            grid = (
                field_.shape[1:]
                if is_displacement(field_.shape, field_.dtype)
                else (field_.shape[0], *field_.shape[2:])
            )
            raise ValueError(
                f"the layer {layer.name!r} has shape {data.shape} but the field is defined on a "
                f"grid of shape {tuple(grid)}; apply it to a layer of the fixed image's shape"
            )
        disp = torch.as_tensor(field_[None] if single else field_)
        warped = warp_data(data, disp, isinstance(layer, Labels), not single)
        key = f"applied:{layer.unique_id}"
        remove_outputs(self.viewer, key)
        kind = "labels" if isinstance(layer, Labels) else "image"
        grid = self._field_transform or (layer.scale, layer.translate)
        return add_output(
            self.viewer, kind, warped, f"{layer.name} warped", key, grid, **like(layer)
        )

    def _save_clicked(self, *_args: Any) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save displacement field", "displacement.npy", "NumPy array (*.npy)"
        )
        if path:
            saved = self.save_field(path)
            if saved:
                show_info(f"Saved the displacement field to {saved}.")

    def _load_clicked(self, *_args: Any) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load displacement field", "", "NumPy array (*.npy)"
        )
        if path:
            self.load_field(path)

    def _apply_clicked(self, *_args: Any) -> None:
        layer = self.apply_target.value
        if layer is None:
            show_error("Choose a layer to apply the displacement field to.")
            return
        self.apply_field(layer)
