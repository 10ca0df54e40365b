"""The Compare metrics widget: run several registration methods on one pair, side by side.

The methods are registration models, optimisations of the field with a metric
(``optimise: ncc``) and models refined by an optimisation
(:mod:`napari_deepsim._widgets.compare.rows`). Each method's warped image, warped labels,
deformation grid (in its own colour), Jacobian and folds become layers; a table lists
Dice, % folding, the std of log J and the time per method. A rectangle drawn on the
``compare zoom`` Shapes layer shows the fixed and moving patches and every method's
warped patch with its grid, side by side (:mod:`napari_deepsim._widgets.compare.zoom`). The
methods run one after another in a napari thread worker
(:mod:`napari_deepsim._jobs.compare`), the progress bar moving through each one's
stages and iterations; **Stop** (or closing the dock) cancels the comparison at its
next step, leaving the last results. The layers are added on the GUI thread, one per
turn of the event loop, replacing the last comparison's. The built-in
models are listed first (unticked), then the registration models trained in this
session as they come. Data unlike a model's training data gets a warning notification.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, PushButton
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_warning
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
)

from napari_deepsim._jobs.compare import CompareJob, Outcome, run, table
from napari_deepsim._jobs.job import Job
from napari_deepsim._layers.choices import guess_pair, on_fixed_grid, pair_arrays
from napari_deepsim._state.models import trained_models
from napari_deepsim._state.run import RunContext
from napari_deepsim._widgets.compare.rows import RowsPanel
from napari_deepsim._widgets.compare.zoom import PREFIX, ZoomPanel
from napari_deepsim._widgets.controls import (
    FOLDS_IMAGE,
    JACOBIAN_STYLE,
    device_picker,
    grid_style,
    layer_choices,
    like,
    pair_pickers,
    remove_outputs,
    spacing_picker,
)
from napari_deepsim._widgets.dock import JobDock
from napari_deepsim._widgets.layout import scrolled
from napari_deepsim._widgets.outputs import LayerPlan
from napari_deepsim._widgets.subscriptions import subscribe, watch_layers, when_closed
from napari_deepsim._widgets.workers import advance, gui_wording

if TYPE_CHECKING:
    import napari

    from napari_deepsim._jobs.progress import Step

HEADERS = ["method", "Dice", "%\nfolding", "sd\nlog J", "s/\npair"]  # narrow: two lines


class CompareWidget(JobDock):
    """Compare registration methods (metrics) on one pair: layers, a table and zooms.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer holding the pair; it receives every model's output layers.
    """

    action = "Compare"
    failure = "Comparison"

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.outcomes: list[Outcome] = []

        self.fixed, self.moving, self.moving_labels, self.fixed_labels = pair_pickers(
            self._images, self._labels
        )
        self.device = device_picker()
        self.spacing = spacing_picker()
        self.inputs = Container(
            widgets=[
                self.fixed,
                self.moving,
                self.moving_labels,
                self.fixed_labels,
                self.device,
                self.spacing,
            ]
        )
        self.rows = RowsPanel()
        self.models, self.optimise = self.rows.models, self.rows.optimise
        self.add_model_files = self.rows.add_model_files
        self.add_optimisation = self.rows.add_optimisation
        self.refine_selected = self.rows.refine_selected
        self.compare_button = PushButton(
            text="Compare", tooltip="Run every ticked method on the pair, one after another"
        )
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()  # numbers as wide as they are, names wrap
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.sectionResized.connect(self._fit_rows)
        self.table.setWordWrap(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.zoom = ZoomPanel(self.viewer, self.fixed)
        self.draw_zoom = self.zoom.draw_zoom

        scrolled(
            self,
            self.inputs.native,
            self.rows,
            self.compare_button.native,
            self.table,
            self.zoom.zoom_button,
            self.zoom.tiles,
        )

        self.follow(self.compare_button, self.compare)
        watch_layers(self, self.viewer, self.reset_choices)
        when_closed(self, self.abandon)
        events = trained_models.events
        subscribe(self, [events.inserted, events.removed], self.rows.list_models)
        subscribe(self, [events.inserted, events.removed], self.optimise.extractors_changed)
        self.reset_choices()
        self.rows.list_models()
        self.optimise.extractors_changed()

    # ---- inputs --------------------------------------------------------------------

    def _images(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Image)

    def _labels(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Labels)

    def reset_choices(self, *_args: Any) -> None:
        """Refresh the layer choosers; fill empty ones with the likely pair."""
        self.inputs.reset_choices()
        for name, layer in guess_pair(self.viewer).items():
            chooser = getattr(self, name)
            if chooser.value is None and layer is not None:
                chooser.value = layer

    # ---- comparison ----------------------------------------------------------------

    def compare(self, *_args: Any) -> Any:
        """Start running every ticked method on the pair in a worker thread.

        Returns
        -------
        worker or None
            The started napari worker, or None when the inputs were refused (the reason
            is shown as a notification).
        """
        job = self.new_job("A comparison is already running; wait for it to finish.")
        if job is None:
            return None
        context = RunContext(self.fixed.value, self.moving.value, self.moving_labels.value)
        return self.launch(
            run,
            job,
            job.stages,
            f"Comparing {len(job.entries)} methods",
            partial(self._on_returned, context),
            self.report,
            yielded=self._on_step,
            counted=False,
        )

    def _make_job(self) -> CompareJob:
        fixed_layer, moving_layer = self.fixed.value, self.moving.value
        if fixed_layer is moving_layer and fixed_layer is not None:
            raise ValueError(
                "fixed and moving are the same layer; compare on a pair of layers (use the "
                "Register widget to register the frames of a stack)"
            )
        fixed, moving, fixed_labels, moving_labels = pair_arrays(
            fixed_layer, moving_layer, self.fixed_labels.value, self.moving_labels.value
        )
        entries = self.rows.entries()
        if not entries:
            raise ValueError(
                "no model is ticked; tick a built-in model, add model files, train models or "
                "add an optimisation first"
            )
        as_given = moving
        moving, moving_labels, _ = on_fixed_grid(  # the moving side where napari shows it
            fixed_layer, moving_layer, fixed.shape, moving, moving_labels, []
        )
        pair = Job(
            fixed=fixed,
            moving=moving,
            fixed_name=fixed_layer.name,
            moving_name=moving_layer.name,
            model=entries[0].source,  # each method replaces it in turn
            device=str(self.device.value),
            spacing=int(self.spacing.value),
            stack=False,
            reference=0,
            moving_labels=moving_labels,
            fixed_labels=fixed_labels,
            checkerboard=False,
            timing_runs=3,
            moving_as_given=None if moving is as_given else as_given,
        )
        return CompareJob(pair, entries)

    def _on_step(self, step: Step) -> None:
        if self.worker is not None:
            advance(self.worker, step.done, step.total)

    def _on_returned(self, context: RunContext, outcomes: list[Outcome]) -> None:
        if self.closed:
            return
        steps: list[Any] = [partial(remove_outputs, self.viewer, PREFIX, prefix=True)]
        for outcome in outcomes:
            if outcome.result is not None:
                steps += self._layer_steps(context, outcome)
        steps.append(partial(self._show, outcomes, context))
        self.add_layers(steps)

    def _show(self, outcomes: list[Outcome], context: RunContext) -> None:
        """Fill the table, report failures and warnings, and redraw the zoom."""
        self.outcomes = outcomes
        failed = [o for o in outcomes if o.error is not None]
        dice_before = next(
            (o.result.dice[0] for o in outcomes if o.result is not None and o.result.dice),
            None,
        )
        self._fill_table(outcomes, dice_before)
        if failed:
            show_error(" ".join(f"{o.name}: {o.error}." for o in failed))
        for outcome in outcomes:  # the data is unlike the model's training data
            for line in outcome.result.warnings if outcome.result is not None else []:
                show_warning(f"{outcome.name}: {gui_wording(line)}")
        self.zoom.show(outcomes, context)

    def _layer_steps(self, context: RunContext, outcome: Outcome) -> list[Any]:
        """Plan one method's layers, one step each."""
        result = outcome.result
        assert result is not None
        grid = (context.fixed.scale, context.fixed.translate)
        plan = LayerPlan(self.viewer, PREFIX + outcome.name, grid)
        name = outcome.name
        plan.add("image", result.jacobian, f"{name} Jacobian", **JACOBIAN_STYLE, visible=False)
        plan.add("image", result.warped, f"{name} warped", **like(context.moving))
        if result.warped_labels is not None:
            style = like(context.moving_labels)
            plan.add("labels", result.warped_labels, f"{name} warped labels", **style)
        plan.add("image", result.folds, f"{name} folds", **FOLDS_IMAGE, visible=False)
        if result.grid is not None:
            plan.add("image", result.grid, f"{name} grid", **grid_style(outcome.color))
        return plan.finish()

    def _fill_table(self, outcomes: list[Outcome], dice_before: float | None) -> None:
        rows = table(outcomes, dice_before)
        colors = [None] + [o.color for o in outcomes]
        self.table.setRowCount(len(rows))
        for r, (row, color) in enumerate(zip(rows, colors, strict=True)):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if c == 0 and color is not None:
                    item.setForeground(QColor(color))
                    item.setToolTip(f"grid colour: {color}")
                self.table.setItem(r, c, item)
        self._fit_rows()

    def _fit_rows(self, *_args: Any) -> None:
        """Fit each row to its wrapped method name and the table's height to its rows."""
        table = self.table
        table.resizeRowsToContents()
        rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
        bar = table.horizontalScrollBar()
        scroll = bar.sizeHint().height() if bar.isVisible() else 0
        header = table.horizontalHeader().sizeHint().height()
        table.setMinimumHeight(header + rows + scroll + 2 * table.frameWidth())
