"""The Compare metrics widget: run several registration models on one pair, side by side.

Each model's warped image, warped labels, deformation grid (in its own colour),
Jacobian and folds become layers; a table lists Dice, % folding, the std of log J and
the time per model. A rectangle drawn on the ``compare zoom`` Shapes layer shows the
fixed and moving patches and every model's warped patch with its grid, side by side
(:mod:`napari_deepsim._compare_zoom`). The models run one after another in a napari
thread worker (:mod:`napari_deepsim._compare_job`); layers and tiles are made on the
GUI thread. The built-in models are listed first (unticked), then the registration
models trained in this session as they come, then the added files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, PushButton
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_deepsim._choices import guess_pair, pair_arrays
from napari_deepsim._compare_job import CompareJob, Entry, Outcome, run, table
from napari_deepsim._compare_zoom import PREFIX, ZoomView
from napari_deepsim._controls import (
    FOLDS_STYLE,
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
from napari_deepsim._models import builtin_choices, trained_models
from napari_deepsim._register_job import Job
from napari_deepsim._subscriptions import subscribe, watch_layers
from napari_deepsim._workers import error_message, start_worker

if TYPE_CHECKING:
    import napari

    from src_training.networks.modelio import ModelFile

HEADERS = ["model", "Dice", "% folding", "sd log J", "s/pair"]


class CompareWidget(ZoomView, QWidget):
    """Compare registration models (metrics) on one pair: layers, a table and zooms.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer holding the pair; it receives every model's output layers.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.outcomes: list[Outcome] = []
        self._files: list[Path] = []
        self._pair: dict[str, Any] = {}

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
        self.models = QListWidget()
        self.models.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.models.setMaximumHeight(110)
        self.models.setToolTip("Ticked models run on the pair; models trained here appear too")
        self.add_button = QPushButton("Add model files…")
        self.remove_button = QPushButton("Remove")
        self.compare_button = PushButton(text="Compare")
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        zoom_button, tiles = self._zoom_widgets()

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        panel = QWidget()
        column = QVBoxLayout(panel)
        column.addWidget(self.inputs.native)
        column.addWidget(QLabel("models"))
        column.addWidget(self.models)
        column.addLayout(buttons)
        column.addWidget(self.compare_button.native)
        column.addWidget(self.table)
        column.addWidget(zoom_button)
        column.addWidget(tiles)
        column.addStretch()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(panel)
        QVBoxLayout(self).addWidget(scroll)

        self.add_button.clicked.connect(self._add_clicked)
        self.remove_button.clicked.connect(self._remove_clicked)
        self.compare_button.changed.connect(self.compare)
        watch_layers(self, self.viewer, self.reset_choices)
        events = trained_models.events
        subscribe(self, [events.inserted, events.removed], self._list_models)
        self.reset_choices()
        self._list_models()

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

    # ---- models --------------------------------------------------------------------

    def _sources(self) -> dict[str, tuple[str, str | ModelFile]]:
        """Every listed model by its text: its row name and its source.

        The built-in models come first (their text is a one-line description, their row
        name the built-in name), then the models trained here, then the added files.
        """
        sources = {text: (name, name) for text, name in builtin_choices()}
        sources.update({m.name: (m.name, m.model) for m in trained_models.of_kind("registration")})
        sources.update({self._file_name(p): (self._file_name(p), str(p)) for p in self._files})
        return sources

    def _list_models(self, *_args: Any) -> None:
        """List the built-in models, those trained here and the added files, keeping ticks.

        A built-in model starts unticked, every other model ticked.
        """
        states = {
            self.models.item(i).text(): self.models.item(i).checkState()
            for i in range(self.models.count())
        }
        builtins = {text for text, _ in builtin_choices()}
        self.models.clear()
        for text in self._sources():
            item = QListWidgetItem(text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            new = Qt.CheckState.Unchecked if text in builtins else Qt.CheckState.Checked
            item.setCheckState(states.get(text, new))
            self.models.addItem(item)

    def _file_name(self, path: Path) -> str:
        """Name a model file by its stem, or by its path when two stems clash."""
        stems = [p.stem for p in self._files]
        return path.stem if stems.count(path.stem) == 1 else str(path)

    def add_model_files(self, paths: list[str | Path]) -> None:
        """Offer model files for comparison (they are read when Compare runs).

        Parameters
        ----------
        paths : list of str or Path
            Registration model files written by ``deepsim train`` or the training widget.
        """
        for path in map(Path, paths):
            if not path.is_file():
                show_error(f"The model file {path} does not exist; pick an existing .pt file.")
                continue
            if path.resolve() not in [p.resolve() for p in self._files]:
                self._files.append(path)
        self._list_models()

    def _entries(self) -> list[Entry]:
        sources = self._sources()
        return [
            Entry(*sources[item.text()])
            for item in map(self.models.item, range(self.models.count()))
            if item.checkState() == Qt.CheckState.Checked and item.text() in sources
        ]

    def _add_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add registration models", "", "Model files (*.pt *.pth)"
        )
        self.add_model_files(paths)

    def _remove_clicked(self) -> None:
        chosen = {item.text() for item in self.models.selectedItems()}
        self._files = [path for path in self._files if self._file_name(path) not in chosen]
        for model in [m for m in trained_models if m.name in chosen]:
            trained_models.remove(model)
        self._list_models()

    # ---- comparison ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a comparison is in progress."""
        return self.worker is not None

    def compare(self, *_args: Any) -> Any:
        """Start running every ticked model on the pair in a worker thread.

        Returns
        -------
        worker or None
            The started napari worker, or None when the inputs were refused (the reason
            is shown as a notification).
        """
        if self.running:
            show_info("A comparison is already running; wait for it to finish.")
            return None
        try:
            job = self._make_job()
        except ValueError as err:
            self._report(err)
            return None
        self._pair = {
            "fixed": self.fixed.value,
            "moving": self.moving.value,
            "moving_labels": self.moving_labels.value,
        }
        self.compare_button.enabled = False
        self.worker = start_worker(
            run,
            job,
            job.stages,
            f"Comparing {len(job.entries)} models",
            self._on_returned,
            self._report,
            self._on_finished,
        )
        return self.worker

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
        entries = self._entries()
        if not entries:
            raise ValueError(
                "no model is ticked; tick a built-in model, add model files or train models first"
            )
        pair = Job(
            fixed=fixed,
            moving=moving,
            fixed_name=fixed_layer.name,
            moving_name=moving_layer.name,
            model=entries[0].source,  # each model replaces it in turn
            device=str(self.device.value),
            spacing=int(self.spacing.value),
            stack=False,
            reference=0,
            moving_labels=moving_labels,
            fixed_labels=fixed_labels,
            checkerboard=False,
            timing_runs=3,
        )
        return CompareJob(pair, entries)

    def _report(self, err: BaseException) -> None:
        show_error(error_message(err, "Comparison"))

    def _on_finished(self) -> None:
        self.worker = None
        self.compare_button.enabled = True

    def _on_returned(self, outcomes: list[Outcome]) -> None:
        try:
            self._show(outcomes)
        except Exception as err:  # never raise into Qt's event loop
            self._report(err)

    def _show(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        remove_outputs(self.viewer, PREFIX, prefix=True)
        failed = [o for o in outcomes if o.error is not None]
        for outcome in outcomes:
            if outcome.result is not None:
                self._add_layers(outcome)
        dice_before = next(
            (o.result.dice[0] for o in outcomes if o.result is not None and o.result.dice),
            None,
        )
        self._fill_table(outcomes, dice_before)
        if failed:
            show_error(" ".join(f"{o.name}: {o.error}." for o in failed))
        for outcome in outcomes:
            for line in outcome.result.warnings if outcome.result is not None else []:
                show_warning(f"{outcome.name}: {line}")
        self.update_zoom()

    def _add_layers(self, outcome: Outcome) -> None:
        result = outcome.result
        assert result is not None
        fixed, moving = self._pair["fixed"], self._pair["moving"]
        grid = (fixed.scale, fixed.translate)

        def add(kind: str, data: Any, suffix: str, **style: Any) -> None:
            name = f"{outcome.name} {suffix}"
            add_output(self.viewer, kind, data, name, PREFIX + outcome.name, grid, **style)

        add("image", result.jacobian, "Jacobian", **JACOBIAN_STYLE, visible=False)
        add("image", result.warped, "warped", **like(moving))
        if result.warped_labels is not None:
            add(
                "labels", result.warped_labels, "warped labels", **like(self._pair["moving_labels"])
            )
        add("labels", result.folds, "folds", **FOLDS_STYLE, visible=False)
        if result.grid is not None:
            kind, style = grid_style(result.grid, outcome.color)
            add(kind, result.grid, "grid", **style)

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
        self.table.setMinimumHeight(30 * (len(rows) + 1))
