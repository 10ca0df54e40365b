"""The Register widget: warp a moving layer onto a fixed layer with a trained model.

The registration itself runs in a napari thread worker on NumPy copies of the layer
data; the worker only computes arrays (with :mod:`src_training` and
:mod:`napari_deepsim._overlays`) and never touches Qt or layers. Its ``returned``
signal, delivered on the GUI thread, adds the output layers. Torch and the core are
imported inside functions, so importing this module (and opening napari) stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from napari_deepsim._choices import (
    SOURCE,
    disconnect,
    guess_pair,
    inputs,
    pair_arrays,
    spatial_data,
    start_worker,
    watch_layers,
)
from napari_deepsim._register_job import (
    STAGES,
    Job,
    Result,
    error_message,
    run,
    summary,
    warp_data,
)
from napari_deepsim._train_job import TrainedModel, trained_models
from src_training.runtime.devices import DEVICE_CHOICES as DEVICES

if TYPE_CHECKING:
    import napari

    from src_training.networks.modelio import ModelFile

GRID_COLOR = "yellow"
GRID_WIDTH = 1.0
FOLD_COLORS = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "red"})


class RegisterWidget(QWidget):
    """Register a moving layer onto a fixed layer and show the warp, grid and Jacobian.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are registered and which receives the outputs.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self._model_cache: dict[tuple[str, float], ModelFile] = {}
        self._field: np.ndarray | None = None
        self._field_transform: tuple[np.ndarray, np.ndarray] | None = None

        self.fixed = ComboBox(label="fixed", choices=self._images, nullable=True)
        self.moving = ComboBox(label="moving", choices=self._images, nullable=True)
        self.reference = ComboBox(label="stack reference", choices=self._references)
        self.reference.tooltip = (
            "Fixed and moving are the same 2D+t stack: register every frame to this frame, or "
            "each frame to the previous one (fields composed, all aligned to frame 0)"
        )
        self.moving_labels = ComboBox(label="moving labels", choices=self._labels, nullable=True)
        self.fixed_labels = ComboBox(label="fixed labels", choices=self._labels, nullable=True)
        self.extras = Select(label="carry along", choices=self._extras)
        self.extras.tooltip = "Layers of the moving layer's shape warped with the same field"
        self.extras.native.setMaximumHeight(80)
        self.trained = ComboBox(label="model", choices=self._trained_models, nullable=True)
        self.trained.tooltip = "A registration model trained in this viewer"
        self.model_file = FileEdit(
            label="or model file", mode="r", filter="Model files (*.pt *.pth)"
        )
        self.model_info = Label(value="")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.spacing = SpinBox(label="grid spacing", value=16, min=2, max=512)
        self.show_grid = CheckBox(text="deformation grid", value=True)
        self.show_jacobian = CheckBox(text="Jacobian and folds", value=True)
        self.show_vectors = CheckBox(text="displacement vectors (2D)", value=False)
        self.show_checkerboard = CheckBox(text="checkerboard", value=True)
        self.register_button = PushButton(text="Register")
        self.results = QLabel("")
        self.results.setWordWrap(True)
        self.results.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.save_button = PushButton(text="Save field…")
        self.load_button = PushButton(text="Load field…")
        self.apply_target = ComboBox(label="apply to", choices=self._apply_targets, nullable=True)
        self.apply_button = PushButton(text="Apply field to layer")

        self.inputs = Container(
            widgets=[
                self.fixed,
                self.moving,
                self.reference,
                self.moving_labels,
                self.fixed_labels,
                self.extras,
                self.trained,
                self.model_file,
                self.model_info,
                self.device,
                self.spacing,
                self.show_grid,
                self.show_jacobian,
                self.show_vectors,
                self.show_checkerboard,
                self.register_button,
            ]
        )
        self.field_controls = Container(
            widgets=[self.save_button, self.load_button, self.apply_target, self.apply_button]
        )
        panel = QWidget()
        column = QVBoxLayout(panel)
        column.addWidget(self.inputs.native)
        column.addWidget(self.results)
        column.addWidget(self.field_controls.native)
        column.addStretch()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(panel)
        QVBoxLayout(self).addWidget(scroll)

        for chooser in (self.fixed, self.moving, self.moving_labels, self.fixed_labels):
            chooser.changed.connect(self._inputs_changed)
        self.model_file.changed.connect(self._model_file_changed)
        self.trained.changed.connect(self._trained_changed)
        trained_models.events.inserted.connect(self._trained_list_changed)
        self.destroyed.connect(
            partial(disconnect, [trained_models.events.inserted], self._trained_list_changed)
        )
        self.register_button.changed.connect(self.register)
        self.save_button.changed.connect(self._save_clicked)
        self.load_button.changed.connect(self._load_clicked)
        self.apply_button.changed.connect(self._apply_clicked)
        watch_layers(self, self.viewer, self.reset_choices)
        self.reset_choices()
        self._guess_inputs()

    # ---- choices -------------------------------------------------------------------

    def _images(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in inputs(self.viewer, Image)]

    def _labels(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in inputs(self.viewer, Labels)]

    def _extras(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        moving = self.moving.value
        if moving is None:
            return []
        chosen = {
            id(w.value) for w in (self.moving, self.fixed, self.moving_labels, self.fixed_labels)
        }
        return [
            (layer.name, layer)
            for layer in inputs(self.viewer, (Image, Labels))
            if id(layer) not in chosen and np.shape(layer.data) == np.shape(moving.data)
        ]

    def _references(self, _widget: Any = None) -> list[tuple[str, int | str]]:
        fixed = self.fixed.value
        frames = fixed.data.shape[0] if fixed is not None and fixed.ndim == 3 else 0
        return [("previous frame", "previous")] + [(f"frame {t}", t) for t in range(frames)]

    def _apply_targets(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, (Image, Labels)) and layer.metadata.get(SOURCE) is None
        ]

    def reset_choices(self, *_args: Any) -> None:
        """Refresh every layer chooser from the viewer's current layers."""
        self.inputs.reset_choices()
        self.field_controls.reset_choices()
        self._update_reference_visibility()

    def _guess_inputs(self) -> None:
        """Preselect the fixed and moving layers and their labels (see ``guess_pair``)."""
        for name, layer in guess_pair(self.viewer).items():
            if layer is not None:
                getattr(self, name).value = layer

    def _inputs_changed(self, *_args: Any) -> None:
        self.extras.reset_choices()
        self.reference.reset_choices()
        self._update_reference_visibility()

    def _update_reference_visibility(self) -> None:
        fixed = self.fixed.value
        self.reference.visible = (
            fixed is not None and fixed is self.moving.value and fixed.ndim == 3
        )

    # ---- model ---------------------------------------------------------------------

    def _trained_models(self, _widget: Any = None) -> list[tuple[str, ModelFile]]:
        return [(m.name, m.model) for m in trained_models if m.model.kind == "registration"]

    def _trained_list_changed(self, *_args: Any) -> None:
        self.trained.reset_choices()

    def set_model(self, model: str | Path | ModelFile) -> None:
        """Use a registration model: a model file path or a model trained in this viewer.

        Parameters
        ----------
        model : str, Path or ModelFile
            A file written by ``deepsim train``, or an in-memory registration model
            (added to the models trained in this session if it is not listed yet).
        """
        if isinstance(model, (str, Path)):
            self.trained.value = None
            self.model_file.value = Path(model)
            return
        if model.kind != "registration":
            show_error(
                f"The model is a {model.kind} model; the Register widget needs a registration "
                "model."
            )
            return
        if all(m.model is not model for m in trained_models):
            metric = model.metadata.get("metric", "unknown metric")
            trained_models.append(TrainedModel(f"{metric} model (given)", model))
        self.trained.reset_choices()
        self.trained.value = model

    def _trained_changed(self, *_args: Any) -> None:
        model = self.trained.value
        if model is None:
            self.model_info.value = ""
            return
        metric = model.metadata.get("metric", "unknown metric")
        self.model_info.value = f"using the {model.ndim}D {metric} model trained here"

    def _model_file_changed(self, *_args: Any) -> None:
        if str(self.model_file.value) not in ("", "."):
            self.trained.value = None

    def _model_source(self) -> str | ModelFile:
        if self.trained.value is not None:
            return self.trained.value
        path = Path(self.model_file.value)
        if str(path) in ("", ".") or path.is_dir():
            raise ValueError(
                "no model chosen; pick a registration model file (.pt) or train one first"
            )
        if not path.is_file():
            raise ValueError(f"the model file {path} does not exist; pick an existing .pt file")
        return self._model_cache.get((str(path), path.stat().st_mtime), str(path))

    # ---- registration --------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a registration is in progress."""
        return self.worker is not None

    def register(self, *_args: Any) -> Any:
        """Start registering the chosen layers in a worker thread.

        Returns
        -------
        worker or None
            The started napari worker, or None when the inputs were refused (the reason
            is shown as a notification).
        """
        if self.running:
            show_info("A registration is already running; wait for it to finish.")
            return None
        try:
            job = self._make_job()
        except ValueError as err:
            show_error(error_message(err))
            return None
        path = Path(self.model_file.value)
        context = {
            "model_key": (str(path), path.stat().st_mtime) if isinstance(job.model, str) else None,
            "fixed": self.fixed.value,
            "moving": self.moving.value,
            "moving_labels": self.moving_labels.value,
            "extras": list(self.extras.value),
            "jacobian": bool(self.show_jacobian.value),
        }
        self.register_button.enabled = False
        self.results.setText("registering…")
        self.worker = start_worker(
            run,
            job,
            STAGES,
            f"Registering {job.moving_name}",
            partial(self._on_returned, context),
            self._on_errored,
            self._on_finished,
        )
        return self.worker

    def _make_job(self) -> Job:
        fixed_layer, moving_layer = self.fixed.value, self.moving.value
        fixed, moving, fixed_labels, moving_labels = pair_arrays(
            fixed_layer, moving_layer, self.fixed_labels.value, self.moving_labels.value
        )
        stack = fixed_layer is moving_layer
        extras = [
            (np.asarray(layer.data), isinstance(layer, Labels)) for layer in self.extras.value
        ]
        if any(data.shape != moving.shape for data, _ in extras):
            raise ValueError("every layer to carry along must have the moving layer's shape")
        return Job(
            fixed=fixed,
            moving=moving,
            fixed_name=fixed_layer.name,
            moving_name=moving_layer.name,
            model=self._model_source(),
            device=str(self.device.value),
            spacing=int(self.spacing.value),
            stack=stack,
            reference=self.reference.value if stack else 0,
            moving_labels=moving_labels,
            fixed_labels=fixed_labels,
            extras=extras,
            grid=bool(self.show_grid.value),
            vectors=bool(self.show_vectors.value),
            checkerboard=bool(self.show_checkerboard.value),
        )

    def _on_errored(self, err: BaseException) -> None:
        self.results.setText("registration failed")
        show_error(error_message(err))

    def _on_finished(self) -> None:
        self.worker = None
        self.register_button.enabled = True

    def _on_returned(self, context: dict[str, Any], result: Result) -> None:
        try:
            self._show_result(context, result)
        except Exception as err:  # never raise into Qt's event loop
            show_error(error_message(err))

    def _show_result(self, context: dict[str, Any], result: Result) -> None:
        fixed, moving = context["fixed"], context["moving"]
        if context["model_key"] is not None:  # keep the loaded file for the next run
            self._model_cache = {context["model_key"]: result.model}
        self._field = result.field
        self._field_transform = (np.asarray(fixed.scale), np.asarray(fixed.translate))
        key = moving.unique_id
        self._remove_outputs(key)
        add = partial(self._add_output, key, fixed)
        if context["jacobian"]:
            add(
                "image",
                result.jacobian,
                f"{moving.name} Jacobian",
                colormap="PiYG",
                contrast_limits=(0.0, 2.0),
                visible=False,
            )
        if result.checkerboard is not None:
            add(
                "image",
                result.checkerboard,
                f"{moving.name} checkerboard",
                colormap="gray",
                visible=False,
            )
        add(
            "image",
            result.warped,
            f"{moving.name} warped",
            colormap=moving.colormap,
            contrast_limits=moving.contrast_limits,
        )
        if result.warped_labels is not None:
            labels = context["moving_labels"]
            add("labels", result.warped_labels, f"{labels.name} warped", opacity=labels.opacity)
        for source, data in zip(context["extras"], result.extras, strict=True):
            if isinstance(source, Labels):
                add("labels", data, f"{source.name} warped", opacity=source.opacity)
            else:
                add(
                    "image",
                    data,
                    f"{source.name} warped",
                    colormap=source.colormap,
                    contrast_limits=source.contrast_limits,
                    blending=source.blending,
                )
        if context["jacobian"]:
            add("labels", result.folds, f"{moving.name} folds", colormap=FOLD_COLORS)
        if isinstance(result.grid, list):
            add(
                "shapes",
                result.grid,
                f"{moving.name} grid",
                shape_type="path",
                edge_color=GRID_COLOR,
                edge_width=GRID_WIDTH,
            )
        elif result.grid is not None:
            add(
                "image",
                result.grid,
                f"{moving.name} grid",
                colormap="yellow",
                blending="additive",
                contrast_limits=(0.0, 1.0),
            )
        if result.vectors is not None:
            add(
                "vectors",
                result.vectors,
                f"{moving.name} displacement",
                edge_color="cyan",
                edge_width=0.5,
            )
        self.results.setText(summary(result))

    def _add_output(
        self, key: str, grid_layer: Layer, kind: str, data: Any, name: str, **kwargs: Any
    ) -> Layer:
        adder: Callable[..., Layer] = getattr(self.viewer, f"add_{kind}")
        return adder(
            data,
            name=name,
            scale=grid_layer.scale,
            translate=grid_layer.translate,
            metadata={SOURCE: key},
            **kwargs,
        )

    def _remove_outputs(self, key: str) -> None:
        for layer in list(self.viewer.layers):
            if layer.metadata.get(SOURCE) == key:
                self.viewer.layers.remove(layer)

    # ---- displacement fields -------------------------------------------------------

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
            show_error(error_message(err))
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
            show_error(error_message(err))
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
            show_error(error_message(err))
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
        self._remove_outputs(key)
        scale, translate = self._field_transform or (layer.scale, layer.translate)
        kind = "labels" if isinstance(layer, Labels) else "image"
        extra = (
            {"opacity": layer.opacity}
            if kind == "labels"
            else {"colormap": layer.colormap, "contrast_limits": layer.contrast_limits}
        )
        adder: Callable[..., Layer] = getattr(self.viewer, f"add_{kind}")
        return adder(
            warped,
            name=f"{layer.name} warped",
            scale=scale,
            translate=translate,
            metadata={SOURCE: key},
            **extra,
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
