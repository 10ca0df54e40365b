"""The displacement-field section of the Register widget: save, load and apply a field.

:class:`FieldPanel` is a panel of
:class:`~napari_deepsim._widgets.register.widget.RegisterWidget`, which hands it the field of
every registration (:meth:`FieldPanel.keep`) with the fixed layer's grid and what made
it. A field is saved as a field file (``.npz``: the field, its grid and
provenance), as an ITK displacement field (``.nii.gz``, ``.mha``) for itk, SimpleITK,
ANTs or transformix, or as a bare ``.npy``; loaded from a field file or an older
``.npy``; and applied to Image and Labels layers of its grid (warped) or to Points,
Shapes and Tracks layers (moved by the field's inverse, in world coordinates). The
"field" picker also offers the fields opened with napari's File > Open (one layer per
axis, from :mod:`napari_deepsim._io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info
from psygnal import Signal
from qtpy.QtWidgets import QFileDialog

from napari_deepsim._layers.choices import SOURCE
from napari_deepsim._layers.points import GEOMETRY
from napari_deepsim._volumes import GRID, moved_by
from napari_deepsim._widgets.controls import layer_choices
from napari_deepsim._widgets.register.apply import move_layer, warp_layer
from napari_deepsim._widgets.tips import FIELD_TIPS
from napari_deepsim._widgets.workers import error_message

if TYPE_CHECKING:
    import napari
    import numpy as np

    from src_training.engine.public import FieldFile

CURRENT = "last registration or loaded file"
FORMATS = (
    "DeepSim field with grid and provenance (*.npz);;"
    "ITK displacement field (*.nii.gz *.mha);;NumPy array, no grid (*.npy)"
)


class FieldPanel(Container):
    """Save, load and apply the Register widget's current displacement field.

    The panel owns its buttons and pickers and the current field: ``field`` (of the last
    registration, kept by :meth:`keep`, or of a loaded file), ``transform`` (the fixed
    layer's scale and translate, None for a file without a grid), ``provenance`` (what
    made it) and ``stack``. A loaded file is announced by :attr:`said`.

    Parameters
    ----------
    viewer : napari.Viewer
        Whose layers the field is applied to.
    """

    said = Signal(str)

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.field: np.ndarray | None = None
        self.transform: tuple[np.ndarray, np.ndarray] | None = None
        self.grid: dict[str, Any] = {}
        self.provenance: dict[str, str] | None = None
        self.stack = False
        self.save_button = PushButton(text="Save field…")
        self.save_button.tooltip = (
            "Save the field: .npz keeps the grid (scale, origin) and what made it; .nii.gz or "
            ".mha is an ITK displacement field (physical units) for itk, SimpleITK or ANTs"
        )
        self.load_button = PushButton(text="Load field…", tooltip=FIELD_TIPS["load"])
        self.field_source = ComboBox(label="field", choices=self.sources)
        self.field_source.tooltip = (
            "The field to apply: the last registration's (or the loaded file's), or a field "
            "opened with File > Open (its axis layers)"
        )
        self.apply_target = ComboBox(label="apply to", choices=self._apply_targets, nullable=True)
        self.apply_target.tooltip = (
            "Images and labels of the fixed grid are warped; points, shapes and tracks drawn "
            "on the moving image are moved onto the fixed image"
        )
        self.apply_button = PushButton(text="Apply field to layer", tooltip=FIELD_TIPS["apply"])
        self.save_button.changed.connect(self._save_clicked)
        self.load_button.changed.connect(self._load_clicked)
        self.apply_button.changed.connect(self._apply_clicked)
        buttons = [self.save_button, self.load_button, self.field_source]
        self.extend([*buttons, self.apply_target, self.apply_button])

    def _apply_targets(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        from napari_deepsim._io import MARK

        layers = layer_choices(self.viewer, (Image, Labels, *GEOMETRY))
        return [(name, layer) for name, layer in layers if not layer.metadata.get(MARK)]

    def sources(self, _widget: Any = None) -> list[tuple[str, str | None]]:
        """Return the fields to apply: the current one, then each opened in napari."""
        names = dict.fromkeys(name for name in self._opened_fields())
        return [(CURRENT, None), *((f"{name} (opened)", name) for name in names)]

    def _opened_fields(self) -> dict[str, list[Layer]]:
        """Find the axis layers of each field opened in the viewer, by the field's name."""
        from napari_deepsim._io import FIELD, MARK

        found: dict[str, list[Layer]] = {}
        for layer in self.viewer.layers:
            if layer.metadata.get(MARK) and SOURCE not in layer.metadata:
                found.setdefault(str(layer.metadata.get(FIELD, {}).get("name", "")), []).append(
                    layer
                )
        return found

    def keep(self, result: Any, fixed: Layer, moving: Layer, key: tuple[str, Any] | None) -> None:
        """Keep a registration's field with the fixed layer's grid and what made it.

        Parameters
        ----------
        result : Result
            The registration's result.
        fixed, moving : Layer
            The layers it registered (one layer: the frames of a stack).
        key : tuple or None
            The model's name or file (None: a model trained in napari, or none).
        """
        import numpy as np

        from src_training.engine.public import provenance

        self.field = result.field
        self.stack = fixed is moving
        self.transform = (np.asarray(fixed.scale), np.asarray(fixed.translate))
        self.grid = {**fixed.metadata.get(GRID, {}), "moved": moved_by(moving)}
        method = [str(key[0]) if key else "a model trained in napari"] if result.model else []
        if result.optimisation is not None:
            method.append(f"optimisation ({result.optimisation.metric})")
        self.provenance = provenance(" refined by ".join(method), fixed.name, moving.name)

    def field_file(self) -> FieldFile | None:
        """Return the chosen field with its grid and provenance (None when there is none).

        Returns
        -------
        FieldFile or None
            The field of the "field" picker: the current one or one opened in napari.
        """
        from napari_deepsim._io import field_from_layers
        from src_training.engine.public import FieldFile

        chosen = self.field_source.value
        if chosen is not None and chosen in self._opened_fields():
            layers = self._opened_fields()[chosen]
            return field_from_layers([(layer.data, layer.metadata) for layer in layers])
        if self.field is None:
            return None
        n = self.field.ndim - 1 - self.stack
        spacing, origin = ((), ()) if self.transform is None else self.transform
        return FieldFile(
            self.field,
            tuple(spacing[-n:]),
            tuple(origin[-n:]),
            provenance=self.provenance or {},
            stack=self.stack,
        )

    def save_field(self, path: str | Path) -> str | None:
        """Save the chosen displacement field; the file's suffix chooses the format.

        Parameters
        ----------
        path : str or Path
            ``.npz`` (field, grid and provenance), ``.nii.gz`` or ``.mha`` (ITK
            displacement field) or ``.npy`` (the array alone).

        Returns
        -------
        str or None
            The written path, or None when there was nothing to save or it failed.
        """
        from napari_deepsim._io import save_any

        try:
            field_file = self.field_file()
            if field_file is None:
                show_error("There is no displacement field yet; press Register or load a field.")
                return None
            grid = {} if self.field_source.value in self._opened_fields() else self.grid
            return save_any(path, field_file, grid)
        except (OSError, ValueError) as err:
            show_error(error_message(err, "Saving the field"))
            return None

    def load_field(self, path: str | Path) -> np.ndarray | None:
        """Load a field file (``.npz``) or an older ``.npy`` field to apply it to layers.

        Parameters
        ----------
        path : str or Path
            A field file, or a ``(2, H, W)``, ``(3, D, H, W)`` or ``(T, 2, H, W)`` ``.npy``.

        Returns
        -------
        numpy.ndarray or None
            The field, or None when the file could not be used.
        """
        import numpy as np

        from src_training.engine.public import load_field

        try:
            loaded = load_field(path, allow_stack=True)
        except (OSError, ValueError) as err:
            show_error(error_message(err, "Loading the field"))
            return None
        self.field = loaded.displacement
        self.stack = loaded.stack
        npz, lead = str(path).endswith(".npz"), [1.0] * loaded.stack
        spacing, origin = [*lead, *loaded.spacing], [*[0.0] * loaded.stack, *loaded.origin]
        self.transform = (np.array(spacing), np.array(origin)) if npz else None
        self.grid = {}
        self.provenance = loaded.provenance
        self.field_source.value = None
        made = loaded.provenance.get("method")
        self.said.emit(
            f"loaded field {Path(path).name} {self.field.shape}"
            + (f" made by {made}" if made else "")
        )
        return self.field

    def apply_field(self, layer: Layer) -> Any:
        """Apply the chosen field to a layer: warp images and labels, move geometry.

        Images use linear and labels nearest-neighbour interpolation, in a worker; points,
        shapes and tracks of the moving image are moved onto the fixed image at once. The
        result is added as ``"<layer> warped"`` (or ``"<layer> moved"``) and replaces an
        earlier one.

        Parameters
        ----------
        layer : Image, Labels, Points, Shapes or Tracks
            An image of the field's grid (or, for a stack field, the stack), or
            positions on the moving image.

        Returns
        -------
        Layer, worker or None
            The moved layer, the worker warping an image or labels, or None when the
            field cannot be applied.
        """
        try:
            field_file = self.field_file()
            if field_file is None:
                raise ValueError(
                    "there is no displacement field yet; press Register or load a field"
                )
            if isinstance(layer, GEOMETRY):
                return move_layer(self.viewer, layer, field_file)
            grid: tuple[Any, Any] | None = self.transform  # None: a file without a grid
            if self.field_source.value is not None:  # a field opened in napari: its file's grid
                lead = int(field_file.stack)
                spacing, origin = [*field_file.spacing], [*field_file.origin]
                grid = ([1.0] * lead + spacing, [0.0] * lead + origin)
            said = f"applied the field to {layer.name!r}"
            return warp_layer(self.viewer, layer, field_file, grid, lambda _: self.said.emit(said))
        except ValueError as err:
            show_error(error_message(err, "Applying the field"))
            return None

    def _save_clicked(self, *_args: Any) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self.native, "Save displacement field", "displacement.npz", FORMATS
        )
        if path:
            saved = self.save_field(path)
            if saved:
                show_info(f"Saved the displacement field to {saved}.")

    def _load_clicked(self, *_args: Any) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.native, "Load displacement field", "", "Displacement field (*.npz *.npy)"
        )
        if path:
            self.load_field(path)

    def _apply_clicked(self, *_args: Any) -> None:
        layer = self.apply_target.value
        if layer is None:
            show_error("Choose a layer to apply the displacement field to.")
            return
        self.apply_field(layer)
