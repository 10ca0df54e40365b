"""The Register widget: warp a moving layer onto a fixed layer with a trained model.

The registration itself runs in a napari thread worker on NumPy copies of the layer
data; the worker only computes arrays (with :mod:`src_training` and
:mod:`napari_deepsim._overlays`) and never touches Qt or layers. Its ``returned``
signal, delivered on the GUI thread, adds the output layers. Torch and the core are
imported inside functions, so importing this module (and opening napari) stays fast.
Saving, loading and applying fields is :mod:`napari_deepsim._register_fields`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, PushButton, Select
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from napari_deepsim._choices import guess_pair, pair_arrays
from napari_deepsim._controls import (
    FOLDS_STYLE,
    GRID_COLOR,
    JACOBIAN_STYLE,
    add_output,
    device_picker,
    grid_style,
    layer_choices,
    like,
    pair_pickers,
    remove_outputs,
    spacing_picker,
)
from napari_deepsim._models import trained_models
from napari_deepsim._register_fields import FieldActions
from napari_deepsim._register_job import STAGES, Job, Result, run, summary
from napari_deepsim._register_models import ModelChoice
from napari_deepsim._subscriptions import subscribe, watch_layers
from napari_deepsim._workers import error_message, start_worker

if TYPE_CHECKING:
    import napari


class RegisterWidget(ModelChoice, FieldActions, QWidget):
    """Register a moving layer onto a fixed layer and show the warp, grid and Jacobian.

    The model picker offers the built-in models first (the first one is chosen), then
    those trained in this session; a registration model trained in this session
    (announced by :data:`~napari_deepsim._models.trained_models`) is selected as soon
    as it is trained. Data unlike a model's training data gets a warning.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are registered and which receives the outputs.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self._field: np.ndarray | None = None
        self._field_transform: tuple[np.ndarray, np.ndarray] | None = None

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
        self.device = device_picker()
        self.spacing = spacing_picker()
        self.show_grid = CheckBox(text="deformation grid", value=True)
        self.show_jacobian = CheckBox(text="Jacobian and folds", value=True)
        self.show_vectors = CheckBox(text="displacement vectors (2D)", value=False)
        self.show_checkerboard = CheckBox(text="checkerboard", value=True)
        self.register_button = PushButton(text="Register")
        self.results = QLabel("")
        self.results.setWordWrap(True)
        self.results.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.inputs = Container(
            widgets=[
                self.fixed,
                self.moving,
                self.reference,
                self.moving_labels,
                self.fixed_labels,
                self.extras,
                *self._model_widgets(),
                self.device,
                self.spacing,
                self.show_grid,
                self.show_jacobian,
                self.show_vectors,
                self.show_checkerboard,
                self.register_button,
            ]
        )
        self.field_controls = self._field_controls()
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
        self.register_button.changed.connect(self.register)
        events = trained_models.events
        subscribe(self, [events.inserted, events.removed], self._trained_list_changed)
        subscribe(self, [events.trained], self._model_trained)
        watch_layers(self, self.viewer, self.reset_choices)
        self.reset_choices()
        self._guess_inputs()

    # ---- choices -------------------------------------------------------------------

    def _images(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Image)

    def _labels(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Labels)

    def _extras(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        moving = self.moving.value
        if moving is None:
            return []
        chosen = {
            id(w.value) for w in (self.moving, self.fixed, self.moving_labels, self.fixed_labels)
        }
        return [
            (name, layer)
            for name, layer in layer_choices(self.viewer, (Image, Labels))
            if id(layer) not in chosen and np.shape(layer.data) == np.shape(moving.data)
        ]

    def _references(self, _widget: Any = None) -> list[tuple[str, int | str]]:
        fixed = self.fixed.value
        frames = fixed.data.shape[0] if fixed is not None and fixed.ndim == 3 else 0
        return [("previous frame", "previous")] + [(f"frame {t}", t) for t in range(frames)]

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
            self._report(err)
            return None
        context = {
            "model_key": self._model_key() if isinstance(job.model, str) else None,
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

    def _report(self, err: BaseException) -> None:
        show_error(error_message(err, "Registration"))

    def _on_errored(self, err: BaseException) -> None:
        self.results.setText("registration failed")
        self._report(err)

    def _on_finished(self) -> None:
        self.worker = None
        self.register_button.enabled = True

    def _on_returned(self, context: dict[str, Any], result: Result) -> None:
        try:
            self._show_result(context, result)
        except Exception as err:  # never raise into Qt's event loop
            self._report(err)

    def _show_result(self, context: dict[str, Any], result: Result) -> None:
        fixed, moving = context["fixed"], context["moving"]
        if context["model_key"] is not None:  # keep the loaded file for the next run
            self._model_cache = {context["model_key"]: result.model}
        self._field = result.field
        self._field_transform = (np.asarray(fixed.scale), np.asarray(fixed.translate))
        key = str(moving.unique_id)
        remove_outputs(self.viewer, key)
        grid = (fixed.scale, fixed.translate)

        def add(kind: str, data: Any, name: str, **style: Any) -> None:
            add_output(self.viewer, kind, data, name, key, grid, **style)

        if context["jacobian"]:
            add(
                "image", result.jacobian, f"{moving.name} Jacobian", **JACOBIAN_STYLE, visible=False
            )
        if result.checkerboard is not None:
            add(
                "image",
                result.checkerboard,
                f"{moving.name} checkerboard",
                colormap="gray",
                visible=False,
            )
        add("image", result.warped, f"{moving.name} warped", **like(moving))
        if result.warped_labels is not None:
            labels = context["moving_labels"]
            add("labels", result.warped_labels, f"{labels.name} warped", **like(labels))
        for source, data in zip(context["extras"], result.extras, strict=True):
            if isinstance(source, Labels):
                add("labels", data, f"{source.name} warped", **like(source))
            else:
                add(
                    "image", data, f"{source.name} warped", **like(source), blending=source.blending
                )
        if context["jacobian"]:
            add("labels", result.folds, f"{moving.name} folds", **FOLDS_STYLE)
        if result.grid is not None:
            kind, style = grid_style(result.grid, GRID_COLOR)
            add(kind, result.grid, f"{moving.name} grid", **style)
        if result.vectors is not None:
            add(
                "vectors",
                result.vectors,
                f"{moving.name} displacement",
                edge_color="cyan",
                edge_width=0.5,
            )
        self.results.setText(summary(result))
        for line in result.warnings:
            show_warning(line)
