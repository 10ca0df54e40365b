"""The Register widget: warp a moving layer onto a fixed layer, with a model or without.

A trained model, an optimisation of the field for this pair, or a model whose prediction
the optimisation refines. The widget wires its panels (pair, model, optimisation, field
actions) to one run (:class:`~napari_deepsim._widgets.dock.JobDock`): a worker computes
from NumPy copies of the layers and yields steps (frames, levels, iterations: status
line, loss curve, a preview after each level). **Stop** ends an optimisation within one
iteration with its best field and cancels anything else at its next step. The result
layers (``layers.py``) replace the last run's unless "keep previous results" is ticked.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.utils.notifications import show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel

from napari_deepsim._jobs.job import Job, Result
from napari_deepsim._jobs.register import STAGES, run, summary
from napari_deepsim._state.models import trained_models
from napari_deepsim._state.run import RunContext
from napari_deepsim._widgets.controls import (
    device_picker,
    spacing_picker,
)
from napari_deepsim._widgets.dock import JobDock
from napari_deepsim._widgets.layout import scrolled
from napari_deepsim._widgets.loss_plot import LossPlot
from napari_deepsim._widgets.model_panel import ModelPanel
from napari_deepsim._widgets.optimise_controls import OptimisePicker, check_labels
from napari_deepsim._widgets.register.fields import FieldPanel
from napari_deepsim._widgets.register.pair import PairPanel
from napari_deepsim._widgets.subscriptions import subscribe, watch_layers, when_closed
from napari_deepsim._widgets.tips import JACOBIAN_LEGEND, METHOD_TIP, REGISTER_TIP, RESULTS_TIP
from napari_deepsim._widgets.workers import advance, gui_wording
from src_training.engine.options import OWN

from .layers import output_choices, remove_preview, result_steps, show_preview

if TYPE_CHECKING:
    import napari

    from napari_deepsim._jobs.progress import Step

# each method: whether it uses a model, and whether it optimises the field
METHODS = {"model": (True, False), "optimise": (False, True), "model + refine": (True, True)}


class RegisterWidget(JobDock):
    """Register a moving layer onto a fixed layer and show the warp, grid and Jacobian.

    The model picker offers the built-in models, then those trained in this session (the
    newest trained in this viewer is chosen, as soon as it is trained or when the widget is
    docked; see :class:`~napari_deepsim._widgets.model_panel.ModelPanel`). Data unlike a
    model's training data gets a warning notification.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are registered and which receives the outputs.
    """

    action = "Register"
    failure = "Registration"

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self._context: RunContext | None = None  # the layers and settings of the current run

        self.pair = PairPanel(self.viewer)
        self.fixed, self.moving, self.moving_labels, self.fixed_labels = self.pair.pickers
        self.reference, self.extras = self.pair.reference, self.pair.extras
        self.method = ComboBox(label="method", choices=list(METHODS), value="model")
        self.method.tooltip = METHOD_TIP
        self.model_panel = ModelPanel(self.viewer)
        self.trained, self.model_file, self.model_info = self.model_panel.widgets
        self.set_model = self.model_panel.set_model
        self.optimise = OptimisePicker(own=True)
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
                *self.pair.widgets,
                self.method,
                *self.model_panel.widgets,
                *self.optimise.widgets,
                self.device,
                self.spacing,
                *self.outputs,
                self.register_button,
            ]
        )
        self.field_controls = FieldPanel(self.viewer)
        self.save_field = self.field_controls.save_field
        self.load_field = self.field_controls.load_field
        self.apply_field = self.field_controls.apply_field
        self.field_controls.said.connect(self.results.setText, check_nargs=False)
        scrolled(self, self.inputs.native, self.results, self.plot, self.field_controls.native)

        self.method.changed.connect(self._method_changed)
        self.follow(self.register_button, self.register)
        events = trained_models.events
        subscribe(self, [events.inserted, events.removed], self.model_panel.refresh)
        subscribe(self, [events.inserted, events.removed], self.optimise.extractors_changed)
        subscribe(self, [events.trained], self.model_panel.model_trained)
        watch_layers(self, self.viewer, self.reset_choices)
        subscribe(self, [self.viewer.layers.events.removed], self._layer_removed)
        when_closed(self, self.abandon)
        self.reset_choices()
        self.pair.guess()
        self.optimise.extractors_changed()
        self._method_changed()

    @property
    def field(self) -> np.ndarray | None:
        """The current displacement field: of the last registration or a loaded file."""
        return self.field_controls.field

    # ---- choices -------------------------------------------------------------------

    def reset_choices(self, *_args: Any) -> None:
        """Refresh every layer chooser from the viewer's current layers."""
        self.inputs.reset_choices()
        self.field_controls.reset_choices()
        self.pair.update_reference_visibility()

    def _method_changed(self, *_args: Any) -> None:
        """Show the model pickers, the optimisation's controls and the loss curve as used."""
        uses_model, optimises = METHODS[str(self.method.value)]
        for widget in self.model_panel.widgets:
            widget.visible = uses_model
        self.optimise.show(optimises)
        self.optimise.use_refine_defaults(uses_model and optimises)
        self.plot.setVisible(optimises)

    # ---- registration --------------------------------------------------------------

    def register(self, *_args: Any) -> Any:
        """Start registering the chosen layers in a worker thread.

        Returns
        -------
        worker or None
            The started napari worker, or None when the inputs were refused (the reason
            is shown as a notification).
        """
        job = self.new_job("A registration is already running; wait for it to finish.")
        if job is None:
            return None
        context = RunContext(
            fixed=self.fixed.value,
            moving=self.moving.value,
            moving_labels=self.moving_labels.value,
            extras=list(self.extras.value),
            jacobian=bool(self.show_jacobian.value),
            keep=bool(self.keep.value),
            optimising=job.optimise is not None,
            model_key=self.model_panel.key(job.model),
        )
        self._context = context
        self.results.setText("registering…")
        self.plot.clear(STAGES)
        return self.launch(
            partial(run, stop=self.stop_event.is_set),
            job,
            STAGES,
            f"Registering {job.moving_name}",
            partial(self._on_returned, context),
            self._on_errored,
            yielded=partial(self._on_step, context),
            counted=False,
            ended=partial(self._on_ended, context),
        )

    def stop(self) -> None:
        """Stop the run: an optimisation keeps its best field, anything else is cancelled.

        An optimisation ends within one iteration and its best field so far is shown; a
        model's run ends at its next step (a stack's next frame) with no new layers.
        """
        if self.worker is not None and self._context is not None and self._context.optimising:
            self.ask_to_stop()
            self.results.setText("stopping: the best field so far will be shown…")
        elif self.running:
            self.cancel()
            self.results.setText("stopped: the previous results are unchanged")

    def _layer_removed(self, event: Any) -> None:
        """Cancel a run whose fixed or moving layer left the viewer: nothing is added."""
        context = self._context
        if context is None:
            return
        inputs = {"moving": context.moving, "fixed": context.fixed}
        role = self.input_removed(event.value, inputs)
        if role is not None:
            remove_preview(self.viewer, context)
            name = event.value.name
            self.results.setText(f"stopped: the {role} layer {name!r} was removed; nothing added")

    def _make_job(self) -> Job:
        fixed_layer, moving_layer = self.fixed.value, self.moving.value
        pair = self.pair.read()
        uses_model, optimises = METHODS[str(self.method.value)]
        if uses_model:
            self.model_panel.check_fits(pair.fixed.ndim, pair.stack, fixed_layer.name)
        spec = self.optimise.spec() if optimises else None
        if spec is not None:
            labelled = pair.fixed_labels is not None and pair.moving_labels is not None
            check_labels(spec, pair.stack, labelled)
            if spec.metric == OWN:
                self.model_panel.check_metric_known()
        return Job(
            fixed=pair.fixed,
            moving=pair.moving,
            fixed_name=fixed_layer.name,
            moving_name=moving_layer.name,
            model=self.model_panel.source() if uses_model else None,
            device=str(self.device.value),
            spacing=int(self.spacing.value),
            stack=pair.stack,
            reference=self.reference.value if pair.stack else 0,
            moving_labels=pair.moving_labels,
            fixed_labels=pair.fixed_labels,
            extras=pair.extras,
            grid=bool(self.show_grid.value),
            vectors=bool(self.show_vectors.value),
            checkerboard=bool(self.show_checkerboard.value),
            optimise=spec,
            moving_as_given=pair.as_given,
        )

    def _on_step(self, context: RunContext, step: Step) -> None:
        """Show a step; the progress bar last (napari may process later events meanwhile)."""
        if self.worker is None or self.closed or not self.run_state.active:
            return
        try:
            self.results.setText(step.text)
            self.plot.steps = max(1, step.total)
            for iteration, loss, level in step.losses:
                self.plot.add_loss(iteration, loss, level)
            if step.preview is not None:
                show_preview(self.viewer, context, step.preview)
            advance(self.worker, step.done, step.total)
        except Exception as err:  # never raise into Qt's event loop
            self.report(err)

    def _on_errored(self, err: BaseException) -> None:
        self.results.setText("registration failed")
        self.report(err)

    def _on_ended(self, context: RunContext) -> None:
        if context.result is None:  # stopped, cancelled or failed: no result layers
            remove_preview(self.viewer, context)

    def _on_returned(self, context: RunContext, result: Result) -> None:
        if self.closed or not self.run_state.active:  # closed, or cancelled meanwhile
            return
        context.result = result
        optimised = result.optimisation
        if optimised is not None and optimised.stopped and optimised.iterations == 0:
            self.results.setText(
                "stopped before the first iteration: the previous results are unchanged"
            )
            self.settle()
            return
        try:
            if context.model_key is not None:  # keep the loaded file for the next run
                self.model_panel.remember(context.model_key, result.model)
            steps = result_steps(self.viewer, context, result)
        except Exception as err:  # never raise into Qt's event loop
            self.report(err)
            return
        self.results.setText("adding the result layers…")
        self.add_layers([*steps, partial(self._shown, context, result)])

    def _shown(self, context: RunContext, result: Result) -> None:
        """Every result layer is added: keep the field and say what the run gave."""
        self.field_controls.keep(result, context.fixed, context.moving, context.model_key)
        legend = [JACOBIAN_LEGEND] if context.jacobian else []
        wall = time.perf_counter() - self.started
        self.results.setText("\n".join([summary(result, wall), *legend]))
        for line in result.warnings:  # the data is unlike the model's training data
            show_warning(gui_wording(line))
