"""The Register widget: warp a moving layer onto a fixed layer, with a model or without.

The method is a trained model, an optimisation of the field for this pair (a metric of
the registry, iterations per pyramid level, an optional rigid or affine stage), or a
model whose prediction the optimisation refines. A napari thread worker computes every
array (field, warped data, overlays) from NumPy copies of the layers, never touching Qt,
and yields steps: a stack's frames (``frame 3/8``) and, while optimising, levels and
iterations (status line, loss curve, a preview layer after each level). **Stop** ends
an optimisation within one iteration with its best field, shown like any result, and
cancels anything else at its next step; closing the dock cancels too. The result layers
are added one per turn of the event loop (``layers.py`` beside this module), replacing
the last run's unless "keep previous results" is ticked. Torch is imported inside
functions; the model pickers are ``model.py``, the field actions ``fields.py``.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, Select
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QWidget

from napari_deepsim._jobs.register import STAGES, Job, Result, run, summary
from napari_deepsim._layers.choices import guess_pair, on_fixed_grid, pair_arrays
from napari_deepsim._state.models import trained_models
from napari_deepsim._widgets.controls import (
    device_picker,
    layer_choices,
    pair_pickers,
    spacing_picker,
)
from napari_deepsim._widgets.layout import scrolled
from napari_deepsim._widgets.loss_plot import LossPlot
from napari_deepsim._widgets.optimise_controls import OptimisePicker, check_labels
from napari_deepsim._widgets.register.fields import FieldActions
from napari_deepsim._widgets.register.model import ModelChoice
from napari_deepsim._widgets.subscriptions import subscribe, watch_layers, when_closed
from napari_deepsim._widgets.tips import JACOBIAN_LEGEND, REGISTER_TIP, RESULTS_TIP
from napari_deepsim._widgets.workers import Turns, advance, error_message, gui_wording, start_worker

from .layers import output_choices, remove_preview, result_steps, show_preview

if TYPE_CHECKING:
    import napari

    from napari_deepsim._jobs.optimise import Step
    from src_training.networks.modelio import ModelFile

# each method: whether it uses a model, and whether it optimises the field
METHODS = {"model": (True, False), "optimise": (False, True), "model + refine": (True, True)}


class RegisterWidget(ModelChoice, FieldActions, QWidget):
    """Register a moving layer onto a fixed layer and show the warp, grid and Jacobian.

    The model picker offers the built-in models first (the first one is chosen), then
    those trained in this session; a registration model trained in this session
    (announced by :data:`~napari_deepsim._state.models.trained_models`) is selected as soon as
    it is trained, and so is a feature extractor for the DeepSim metrics of the
    optimisation. Data unlike a model's training data gets a warning notification.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are registered and which receives the outputs.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self._model_cache: dict[tuple[str, Any], ModelFile] = {}
        self._field: np.ndarray | None = None
        self._field_transform: tuple[np.ndarray, np.ndarray] | None = None
        self._stop = threading.Event()
        self._turns: Turns | None = None  # the last result's layers, being added
        self._closed = False
        self._context: dict[str, Any] = {}  # the layers and settings of the current run
        self._started = 0.0  # when Register was pressed: the wall time the user waits

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
        self.method = ComboBox(label="method", choices=list(METHODS), value="model")
        self.method.tooltip = (
            "model: a trained registration model; optimise: no model, the field is optimised "
            "for this pair with a metric; model + refine: the model's field, then optimised"
        )
        self.model_controls = self._model_controls()
        self.optimise = OptimisePicker()
        self.device = device_picker()
        self.spacing = spacing_picker()
        self.outputs = output_choices()
        self.show_grid, self.show_jacobian, self.show_vectors = self.outputs[:3]
        self.show_checkerboard, self.keep = self.outputs[3:]
        self.register_button = PushButton(text="Register", tooltip=REGISTER_TIP)
        self.results = QLabel("")
        self.results.setToolTip(RESULTS_TIP)
        self.results.setWordWrap(True)
        self.results.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = LossPlot("iteration", "")

        self.inputs = Container(
            widgets=[
                self.fixed,
                self.moving,
                self.reference,
                self.moving_labels,
                self.fixed_labels,
                self.extras,
                self.method,
                *self.model_controls,
                *self.optimise.widgets,
                self.device,
                self.spacing,
                *self.outputs,
                self.register_button,
            ]
        )
        self.field_controls = self._field_controls()
        scrolled(self, self.inputs.native, self.results, self.plot, self.field_controls.native)

        for chooser in (self.fixed, self.moving, self.moving_labels, self.fixed_labels):
            chooser.changed.connect(self._inputs_changed)
        self.method.changed.connect(self._method_changed)
        self.register_button.changed.connect(self._button_clicked)
        events = trained_models.events
        subscribe(self, [events.inserted, events.removed], self._trained_list_changed)
        subscribe(self, [events.inserted, events.removed], self._extractors_changed)
        subscribe(self, [events.trained], self._model_trained)
        watch_layers(self, self.viewer, self.reset_choices)
        when_closed(self, self._abandon)
        self.reset_choices()
        self._guess_inputs()
        self._extractors_changed()
        self._method_changed()

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

    def _extractors_changed(self, *_args: Any) -> None:
        self.optimise.extractors_changed()

    def _method_changed(self, *_args: Any) -> None:
        """Show the model pickers, the optimisation's controls and the loss curve as used."""
        uses_model, optimises = METHODS[str(self.method.value)]
        for widget in self.model_controls:
            widget.visible = uses_model
        self.optimise.show(optimises)
        self.optimise.use_refine_defaults(uses_model and optimises)
        self.plot.setVisible(optimises)

    # ---- registration --------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a registration is in progress (its layers being added included)."""
        return self.worker is not None or (self._turns is not None and self._turns.active)

    def _button_clicked(self, *_args: Any) -> None:
        if self.running:
            self.stop()
        else:
            self.register()

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
            "model_key": self._model_key(job.model),
            "fixed": self.fixed.value,
            "moving": self.moving.value,
            "moving_labels": self.moving_labels.value,
            "extras": list(self.extras.value),
            "jacobian": bool(self.show_jacobian.value),
            "keep": bool(self.keep.value),
            "optimising": job.optimise is not None,
        }
        self._context = context
        self._started = time.perf_counter()
        self._stop.clear()
        self.register_button.text = "Stop"
        self.results.setText("registering…")
        self.plot.clear(STAGES)
        self.worker = start_worker(
            partial(run, stop=self._stop.is_set),
            job,
            STAGES,
            f"Registering {job.moving_name}",
            partial(self._on_returned, context),
            self._on_errored,
            partial(self._on_finished, context),
            yielded=partial(self._on_step, context),
            counted=False,
        )
        return self.worker

    def stop(self) -> None:
        """Stop the run: an optimisation keeps its best field, anything else is cancelled.

        An optimisation ends within one iteration and its best field so far is shown; a
        model's run ends at its next step (a stack's next frame) with no new layers.
        """
        if self.worker is not None and self._context.get("optimising"):
            self._stop.set()
            self.results.setText("stopping: the best field so far will be shown…")
        elif self.running:
            self._cancel()
            self.results.setText("stopped: the previous results are unchanged")

    def _cancel(self) -> None:
        """End the worker at its next step and drop the layers not added yet."""
        self._stop.set()
        self._context["cancelled"] = True
        if self.worker is not None:
            self.worker.quit()
        if self._turns is not None:
            self._turns.cancel()
            self._turn_done()

    def _abandon(self) -> None:
        """Cancel the run of a closed dock: nothing it computed is shown."""
        self._closed = True
        self._cancel()

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
        uses_model, optimises = METHODS[str(self.method.value)]
        if uses_model:
            self._check_fits(fixed.ndim, stack, fixed_layer.name)
        spec = self.optimise.spec() if optimises else None
        if spec is not None:
            check_labels(spec, stack, fixed_labels is not None and moving_labels is not None)
        model = self._model_source() if uses_model else None
        if not stack:  # the moving side where napari shows it, on the fixed grid
            moving, moving_labels, extras = on_fixed_grid(
                fixed_layer, moving_layer, fixed.shape, moving, moving_labels, extras
            )
        return Job(
            fixed=fixed,
            moving=moving,
            fixed_name=fixed_layer.name,
            moving_name=moving_layer.name,
            model=model,
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
            optimise=spec,
        )

    def _report(self, err: BaseException) -> None:
        show_error(error_message(err, "Registration"))

    def _on_step(self, context: dict[str, Any], step: Step) -> None:
        """Show a step; the progress bar last (napari may process later events meanwhile)."""
        if self.worker is None or self._closed or context.get("cancelled"):
            return
        try:
            self.results.setText(step.text)
            self.plot.steps = max(1, step.total)
            for iteration, loss in step.losses:
                self.plot.add_loss(iteration, loss)
            if step.preview is not None:
                show_preview(self.viewer, context, step.preview)
            advance(self.worker, step.done, step.total)
        except Exception as err:  # never raise into Qt's event loop
            self._report(err)

    def _on_errored(self, err: BaseException) -> None:
        if not self._closed:
            self.results.setText("registration failed")
            self._report(err)

    def _on_finished(self, context: dict[str, Any]) -> None:
        self.worker = None
        if "result" not in context:  # stopped, cancelled or failed: no result layers
            remove_preview(self.viewer, context)
        if self._turns is None or not self._turns.active:
            self._turn_done()

    def _on_returned(self, context: dict[str, Any], result: Result) -> None:
        if self._closed:
            return
        context["result"] = result
        try:
            if context["model_key"] is not None:  # keep the loaded file for the next run
                self._model_cache = {context["model_key"]: result.model}
            steps = result_steps(self.viewer, context, result)
        except Exception as err:  # never raise into Qt's event loop
            self._report(err)
            return
        self.results.setText("adding the result layers…")
        self._turns = Turns(steps, partial(self._shown, context, result), self._report)

    def _shown(self, context: dict[str, Any], result: Result) -> None:
        """Every result layer is added: keep the field and say what the run gave."""
        self._keep_field(context, result)
        legend = [JACOBIAN_LEGEND] if context["jacobian"] else []
        wall = time.perf_counter() - self._started
        self.results.setText("\n".join([summary(result, wall), *legend]))
        for line in result.warnings:  # the data is unlike the model's training data
            show_warning(gui_wording(line))
        self._turn_done()

    def _turn_done(self) -> None:
        """End the run once its layers are added: the button registers again."""
        self._turns = None
        if not self._closed and self.worker is None:
            self.register_button.text = "Register"
