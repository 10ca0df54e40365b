"""The Compare metrics widget: run several registration models on one pair, side by side.

Each model's warped image, warped labels, deformation grid (in its own colour),
Jacobian and folds become layers; a table lists Dice, % folding, the std of log J and
the time per model. A rectangle drawn on the ``compare zoom`` Shapes layer shows the
fixed and moving patches and every model's warped patch with its grid, side by side.
The models run one after another in a napari thread worker
(:mod:`napari_deepsim._compare_job`); layers and tiles are made on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, SpinBox
from napari.layers import Image, Labels, Layer, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QImage, QPainter, QPen, QPixmap, QPolygonF
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QGridLayout,
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

from napari_deepsim._choices import (
    SOURCE,
    disconnect,
    guess_pair,
    inputs,
    pair_arrays,
    start_worker,
    watch_layers,
)
from napari_deepsim._compare_job import CompareJob, Entry, Outcome, Zoom, run, table, zoom, zoom_box
from napari_deepsim._register_job import Job, error_message
from napari_deepsim._register_widget import FOLD_COLORS, GRID_WIDTH
from napari_deepsim._train_job import trained_models
from src_training.runtime.devices import DEVICE_CHOICES as DEVICES

if TYPE_CHECKING:
    import napari

    from src_training.networks.modelio import ModelFile

PREFIX = "compare:"  # SOURCE metadata of this widget's layers: PREFIX + model name
ZOOM_LAYER = "compare zoom"
TILE = 150  # side of a zoom tile in screen pixels
TILE_COLUMNS = 2
HEADERS = ["model", "Dice", "% folding", "sd log J", "s/pair"]


def _tile(patch: Zoom, limits: tuple[float, float], color: str | None) -> QPixmap:
    """Render a patch (grey, with the layer's contrast limits) and its grid lines."""
    low, high = limits
    scaled = np.clip((patch.image - low) / max(high - low, 1e-12), 0.0, 1.0)
    grey = np.ascontiguousarray(np.round(scaled * 255).astype(np.uint8))
    height, width = grey.shape
    image = QImage(grey.data, width, height, width, QImage.Format.Format_Grayscale8).copy()
    factor = TILE / max(height, width)
    pixmap = QPixmap.fromImage(image).scaled(
        max(1, round(width * factor)),
        max(1, round(height * factor)),
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )
    if color is not None and patch.lines:
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(color))
        pen.setWidthF(1.5)
        painter.setPen(pen)
        for line in patch.lines:
            points = [QPointF((c + 0.5) * factor, (r + 0.5) * factor) for r, c in line]
            painter.drawPolyline(QPolygonF(points))
        painter.end()
    return pixmap


class CompareWidget(QWidget):
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
        self.zooms: dict[str, Zoom] = {}
        self._files: list[Path] = []
        self._pair: dict[str, Any] = {}

        self.fixed = ComboBox(label="fixed", choices=self._images, nullable=True)
        self.moving = ComboBox(label="moving", choices=self._images, nullable=True)
        self.moving_labels = ComboBox(label="moving labels", choices=self._labels, nullable=True)
        self.fixed_labels = ComboBox(label="fixed labels", choices=self._labels, nullable=True)
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.spacing = SpinBox(label="grid spacing", value=16, min=2, max=512)
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
        self.zoom_button = QPushButton("Draw zoom rectangle")
        self.zoom_button.setToolTip(
            "Draw a rectangle on the image (a noisy patch) to see every model's warp on it"
        )
        self.tiles = QWidget()
        self.tile_grid = QGridLayout(self.tiles)

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
        column.addWidget(self.zoom_button)
        column.addWidget(self.tiles)
        column.addStretch()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(panel)
        QVBoxLayout(self).addWidget(scroll)

        self.add_button.clicked.connect(self._add_clicked)
        self.remove_button.clicked.connect(self._remove_clicked)
        self.compare_button.changed.connect(self.compare)
        self.zoom_button.clicked.connect(self.draw_zoom)
        watch_layers(self, self.viewer, self.reset_choices)
        trained_models.events.inserted.connect(self._list_models)
        trained_models.events.removed.connect(self._list_models)
        self.destroyed.connect(
            partial(
                disconnect,
                [trained_models.events.inserted, trained_models.events.removed],
                self._list_models,
            )
        )
        self.reset_choices()
        self._list_models()

    # ---- inputs --------------------------------------------------------------------

    def _images(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in inputs(self.viewer, Image)]

    def _labels(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in inputs(self.viewer, Labels)]

    def reset_choices(self, *_args: Any) -> None:
        """Refresh the layer choosers; fill empty ones with the likely pair."""
        self.inputs.reset_choices()
        for name, layer in guess_pair(self.viewer).items():
            chooser = getattr(self, name)
            if chooser.value is None and layer is not None:
                chooser.value = layer

    # ---- models --------------------------------------------------------------------

    def _list_models(self, *_args: Any) -> None:
        """List the registration models trained here and the added files, keeping ticks."""
        unticked = {
            self.models.item(i).text()
            for i in range(self.models.count())
            if self.models.item(i).checkState() != Qt.CheckState.Checked
        }
        self.models.clear()
        names = [m.name for m in trained_models if m.model.kind == "registration"]
        names += [self._file_name(path) for path in self._files]
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Unchecked if name in unticked else Qt.CheckState.Checked
            )
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
        sources: dict[str, str | ModelFile] = {
            m.name: m.model for m in trained_models if m.model.kind == "registration"
        }
        sources.update({self._file_name(path): str(path) for path in self._files})
        return [
            Entry(item.text(), sources[item.text()])
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
            show_error(error_message(err))
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
            lambda err: show_error(error_message(err)),
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
                "no model is ticked; add registration model files or train models first"
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

    def _on_finished(self) -> None:
        self.worker = None
        self.compare_button.enabled = True

    def _on_returned(self, outcomes: list[Outcome]) -> None:
        try:
            self._show(outcomes)
        except Exception as err:  # never raise into Qt's event loop
            show_error(error_message(err))

    def _show(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        for layer in list(self.viewer.layers):
            if str(layer.metadata.get(SOURCE, "")).startswith(PREFIX):
                self.viewer.layers.remove(layer)
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
        self.update_zoom()

    def _add_layers(self, outcome: Outcome) -> None:
        result = outcome.result
        assert result is not None
        fixed, moving = self._pair["fixed"], self._pair["moving"]
        grid_layer = fixed

        def add(kind: str, data: Any, suffix: str, **kwargs: Any) -> Layer:
            adder: Callable[..., Layer] = getattr(self.viewer, f"add_{kind}")
            return adder(
                data,
                name=f"{outcome.name} {suffix}",
                scale=grid_layer.scale,
                translate=grid_layer.translate,
                metadata={SOURCE: PREFIX + outcome.name},
                **kwargs,
            )

        add(
            "image",
            result.jacobian,
            "Jacobian",
            colormap="PiYG",
            contrast_limits=(0.0, 2.0),
            visible=False,
        )
        add(
            "image",
            result.warped,
            "warped",
            colormap=moving.colormap,
            contrast_limits=moving.contrast_limits,
        )
        if result.warped_labels is not None:
            labels = self._pair["moving_labels"]
            add("labels", result.warped_labels, "warped labels", opacity=labels.opacity)
        add("labels", result.folds, "folds", colormap=FOLD_COLORS, visible=False)
        if isinstance(result.grid, list):
            add(
                "shapes",
                result.grid,
                "grid",
                shape_type="path",
                edge_color=outcome.color,
                edge_width=GRID_WIDTH,
            )
        elif result.grid is not None:
            add(
                "image",
                result.grid,
                "grid",
                colormap=outcome.color,
                blending="additive",
                contrast_limits=(0.0, 1.0),
            )

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

    # ---- zoom ----------------------------------------------------------------------

    def _zoom_layer(self) -> Shapes | None:
        return next(
            (
                layer
                for layer in self.viewer.layers
                if isinstance(layer, Shapes) and layer.metadata.get(SOURCE) == PREFIX + "zoom"
            ),
            None,
        )

    def draw_zoom(self, *_args: Any) -> Shapes | None:
        """Add (or select) the ``compare zoom`` Shapes layer in rectangle-drawing mode.

        Returns
        -------
        Shapes or None
            The layer whose last rectangle is zoomed on, or None without a fixed layer.
        """
        fixed = self.fixed.value
        if fixed is None:
            show_error("Choose a fixed image layer before drawing a zoom rectangle.")
            return None
        layer = self._zoom_layer()
        if layer is None:
            layer = self.viewer.add_shapes(
                name=ZOOM_LAYER,
                ndim=fixed.ndim,
                scale=fixed.scale,
                translate=fixed.translate,
                edge_color="white",
                edge_width=2,
                face_color="transparent",
                metadata={SOURCE: PREFIX + "zoom"},
            )
            layer.events.data.connect(self.update_zoom)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        return layer

    def update_zoom(self, *_args: Any) -> None:
        """Show the fixed, moving and every model's warped patch in the last rectangle."""
        layer = self._zoom_layer()
        if layer is None or not len(layer.data) or not self.outcomes:
            return
        try:
            self._show_zoom(np.asarray(layer.data[-1]))
        except ValueError as err:
            show_error(error_message(err))

    def _show_zoom(self, corners: np.ndarray) -> None:
        fixed, moving = self._pair["fixed"], self._pair["moving"]
        results = [o for o in self.outcomes if o.result is not None]
        if not results:
            return
        plane, rows, cols = zoom_box(corners, np.shape(fixed.data))
        fixed_data = np.asarray(fixed.data)
        self.zooms = {
            "fixed": zoom(fixed_data, None, plane, rows, cols),
            "moving": zoom(self._moving_on_fixed_grid(fixed_data.shape), None, plane, rows, cols),
        }
        tiles: list[tuple[str, Zoom, tuple[float, float], str | None]] = [
            ("fixed", self.zooms["fixed"], tuple(fixed.contrast_limits), None),
            ("moving", self.zooms["moving"], tuple(moving.contrast_limits), None),
        ]
        for outcome in results:
            result = outcome.result
            assert result is not None
            patch = zoom(result.warped, result.field, plane, rows, cols)
            self.zooms[outcome.name] = patch
            tiles.append((outcome.name, patch, tuple(moving.contrast_limits), outcome.color))
        while self.tile_grid.count():
            item = self.tile_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for index, (name, patch, limits, color) in enumerate(tiles):
            tile = QLabel()
            tile.setPixmap(_tile(patch, limits, color))
            caption = QLabel(name)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            row, col = divmod(index, TILE_COLUMNS)
            self.tile_grid.addWidget(caption, 2 * row, col)
            self.tile_grid.addWidget(tile, 2 * row + 1, col)

    def _moving_on_fixed_grid(self, shape: tuple[int, ...]) -> np.ndarray:
        """Return the moving image on the fixed grid (resampled when the shapes differ)."""
        moving = np.asarray(self._pair["moving"].data, np.float32)
        if moving.shape == shape:
            return moving
        from src_training.data.normalise import resample

        return resample(moving, shape, order=1)
